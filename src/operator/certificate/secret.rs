//! A certificate's Secret: whose it is, what it holds, what certop wants in
//! it, and the one way certop writes it (server-side apply as field manager
//! `certop`, at the resourceVersion read, so other tools' labels,
//! annotations, finalizers and owner references survive, and a concurrent
//! writer causes a conflict and a fresh pass, never a lost update).

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};

use crate::api::{ClusterCertificate, meta};
use crate::core::plan::{CA_CERT_KEY, SecretData, TLS_CERT_KEY, TLS_PRIVATE_KEY_KEY};
use crate::operator::Error;
use crate::operator::reason::{Blocked, Reason};
use crate::operator::runtime::context::FIELD_MANAGER;
use crate::operator::store::written_secrets::WrittenSecrets;

/// Whose a Secret is, from its label, annotation and type. Pure.
#[derive(Debug, PartialEq, Eq)]
pub enum Ownership {
    Absent,
    Ours,
    /// Somebody else's: never written. The message says whose.
    Foreign(String),
}

pub fn ownership(secret: Option<&Secret>, certificate: &str) -> Ownership {
    let Some(secret) = secret else {
        return Ownership::Absent;
    };
    let name = format!(
        "{}/{}",
        secret.namespace().unwrap_or_default(),
        secret.name_any()
    );
    let managed =
        secret.labels().get(meta::MANAGED_BY).map(String::as_str) == Some(meta::MANAGED_BY_VALUE);
    let tls = secret
        .type_
        .as_deref()
        .is_none_or(|t| t == "kubernetes.io/tls");
    match secret.annotations().get(meta::CERTIFICATE) {
        Some(owner) if managed && owner == certificate && tls => Ownership::Ours,
        Some(owner) if managed && owner == certificate => Ownership::Foreign(format!(
            "Secret {name} is of type {} and certop writes kubernetes.io/tls; delete it or choose another secretName",
            secret.type_.as_deref().unwrap_or_default()
        )),
        Some(owner) if managed => Ownership::Foreign(format!(
            "Secret {name} belongs to ClusterCertificate {owner}; choose another secretName"
        )),
        _ => Ownership::Foreign(format!(
            "Secret {name} exists and is not managed by certop; certop never overwrites it: delete it or choose another secretName"
        )),
    }
}

pub fn secret_data(secret: &Secret) -> SecretData {
    let data = secret.data.as_ref();
    let get = |k: &str| data.and_then(|d| d.get(k)).map(|v| v.0.clone());
    SecretData {
        tls_crt: get(TLS_CERT_KEY),
        tls_key: get(TLS_PRIVATE_KEY_KEY),
        ca_crt: get(CA_CERT_KEY),
    }
}

/// What certop records on the Secret beside the key pair.
pub struct Provenance<'a> {
    pub serial: String,
    pub revision: i64,
    pub reason: &'a str,
    pub renewal_request: Option<&'a str>,
}

/// The Secret certop wants: the data, certop's label and annotations, and
/// the spec's `secretTemplate` (certop's own keys win).
pub fn desired(cert: &ClusterCertificate, data: SecretData, provenance: &Provenance) -> Secret {
    let mut labels = BTreeMap::new();
    let mut annotations = BTreeMap::new();
    if let Some(t) = &cert.spec.secret_template {
        labels.extend(t.labels.clone());
        annotations.extend(t.annotations.clone());
    }
    labels.insert(meta::MANAGED_BY.into(), meta::MANAGED_BY_VALUE.into());
    annotations.insert(meta::CERTIFICATE.into(), cert.name_any());
    annotations.insert(meta::SERIAL.into(), provenance.serial.clone());
    annotations.insert(meta::REVISION.into(), provenance.revision.to_string());
    annotations.insert(meta::ISSUER.into(), cert.spec.issuer_ref.name.clone());
    annotations.insert(meta::ISSUE_REASON.into(), provenance.reason.to_string());
    if let Some(r) = provenance.renewal_request {
        annotations.insert(meta::RENEWAL_REQUEST.into(), r.to_string());
    }
    let bytes = |v: Option<Vec<u8>>| ByteString(v.unwrap_or_default());
    Secret {
        metadata: ObjectMeta {
            name: Some(cert.spec.secret_name.clone()),
            namespace: Some(cert.spec.secret_namespace.clone()),
            labels: Some(labels),
            annotations: Some(annotations),
            ..Default::default()
        },
        type_: Some("kubernetes.io/tls".into()),
        data: Some(BTreeMap::from([
            (TLS_CERT_KEY.into(), bytes(data.tls_crt)),
            (TLS_PRIVATE_KEY_KEY.into(), bytes(data.tls_key)),
            (CA_CERT_KEY.into(), bytes(data.ca_crt)),
        ])),
        ..Default::default()
    }
}

/// The provenance of what an existing Secret holds, as its annotations say.
pub fn provenance_of(secret: &Secret) -> (Option<i64>, Option<String>, Option<String>) {
    let a = secret.annotations();
    (
        a.get(meta::REVISION).and_then(|r| r.parse().ok()),
        a.get(meta::ISSUE_REASON).cloned(),
        a.get(meta::RENEWAL_REQUEST).cloned(),
    )
}

/// True when the Secret lacks a label or annotation certop wants on it (a
/// `secretTemplate` edit): applied without a new certificate.
pub fn metadata_missing(existing: &Secret, wanted: &Secret) -> bool {
    let has_all = |have: &BTreeMap<String, String>, want: &BTreeMap<String, String>| {
        want.iter().all(|(k, v)| have.get(k) == Some(v))
    };
    !has_all(existing.labels(), wanted.labels())
        || !has_all(existing.annotations(), wanted.annotations())
}

/// What became of a Secret certop wrote: stored (as the API server
/// returned it), refused for a reason retrying cannot fix, or not written
/// because the Secret is not what the write was based on (one exists
/// where none was found, or one not read changed since the version the
/// status recorded): read it and decide again.
pub enum Written {
    Stored(Box<Secret>),
    Refused(Blocked),
    Changed,
}

/// What a write of a Secret is based on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Base {
    /// No Secret was found: create one.
    Absent,
    /// The Secret was read at this resourceVersion.
    Read(String),
    /// The status recorded this resourceVersion of the Secret, which was
    /// not read (`SecretRead::ReplaceUnread`).
    Recorded(String),
}

/// Writes `secret`: server-side applied over the version `base` names,
/// or created, so a Secret that nobody read (or that appeared or changed
/// since) is never overwritten: the write fails with `Changed` instead,
/// or, over a Secret that was read, with the API server's conflict (the
/// pass is retried). A failure that retrying cannot fix is returned as
/// `Refused`, so it reaches the status instead of costing a new
/// certificate per retry.
pub async fn apply(
    api: &Api<Secret>,
    mut secret: Secret,
    base: Base,
    copies: &WrittenSecrets,
) -> Result<Written, Error> {
    let name = secret.name_any();
    let namespace = secret.namespace().unwrap_or_default();
    let unread = matches!(base, Base::Recorded(_));
    let written = match base {
        Base::Read(version) | Base::Recorded(version) => {
            secret.metadata.resource_version = Some(version);
            api.patch(
                &name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&secret),
            )
            .await
        }
        Base::Absent => {
            let params = PostParams {
                field_manager: Some(FIELD_MANAGER.to_string()),
                ..PostParams::default()
            };
            match api.create(&params, &secret).await {
                Err(kube::Error::Api(s)) if s.code == 409 => return Ok(Written::Changed),
                written => written,
            }
        }
    };
    // kube-apiserver creates a missing Secret on the apply whatever
    // version it names (as the read would have: certop's certificate's
    // Secret was deleted); only another version is refused.
    if unread && matches!(&written, Err(kube::Error::Api(s)) if s.code == 409) {
        return Ok(Written::Changed);
    }
    match written {
        Ok(applied) => {
            copies.wrote(&applied);
            Ok(Written::Stored(Box::new(applied)))
        }
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(Written::Refused(Blocked::new(
            Reason::NamespaceNotFound,
            format!("namespace {namespace} does not exist; create it or fix spec.secretNamespace"),
            Some(super::WAITING_RETRY),
        ))),
        Err(kube::Error::Api(s)) if matches!(s.code, 400 | 403 | 422) => {
            Ok(Written::Refused(Blocked::new(
                Reason::SecretRejected,
                format!(
                    "the API server refused Secret {namespace}/{name}: {}",
                    s.message
                ),
                Some(std::time::Duration::from_secs(300)),
            )))
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(managed: bool, owner: Option<&str>) -> Secret {
        let mut s = Secret::default();
        s.metadata.name = Some("tls".into());
        s.metadata.namespace = Some("ns".into());
        if managed {
            s.metadata.labels = Some(BTreeMap::from([(
                meta::MANAGED_BY.into(),
                meta::MANAGED_BY_VALUE.into(),
            )]));
        }
        if let Some(o) = owner {
            s.metadata.annotations = Some(BTreeMap::from([(meta::CERTIFICATE.into(), o.into())]));
        }
        s
    }

    #[test]
    fn secrets_of_others_are_never_ours() {
        assert_eq!(ownership(None, "a"), Ownership::Absent);
        assert_eq!(
            ownership(Some(&secret(true, Some("a"))), "a"),
            Ownership::Ours
        );
        match ownership(Some(&secret(true, Some("b"))), "a") {
            Ownership::Foreign(m) => assert!(m.contains("belongs to ClusterCertificate b"), "{m}"),
            other => panic!("{other:?}"),
        }
        let mut opaque = secret(true, Some("a"));
        opaque.type_ = Some("Opaque".into());
        match ownership(Some(&opaque), "a") {
            Ownership::Foreign(m) => assert!(m.contains("of type Opaque"), "{m}"),
            other => panic!("{other:?}"),
        }
        for s in [
            secret(false, None),
            secret(false, Some("a")),
            secret(true, None),
        ] {
            match ownership(Some(&s), "a") {
                Ownership::Foreign(m) => assert!(m.contains("not managed by certop"), "{m}"),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn others_metadata_is_not_a_difference_but_a_missing_template_label_is() {
        let mut wanted = secret(true, Some("a"));
        let mut existing = wanted.clone();
        existing
            .labels_mut()
            .insert("other-tool/label".into(), "kept".into());
        assert!(!metadata_missing(&existing, &wanted));
        wanted.labels_mut().insert("team".into(), "web".into());
        assert!(metadata_missing(&existing, &wanted));
    }
}
