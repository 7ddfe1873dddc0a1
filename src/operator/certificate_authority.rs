//! The CertificateAuthority controller: zero-touch CA keys, adoption of an
//! existing CA, trust-bundle ConfigMaps and the CA's status.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use kube::api::{DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::{Api, Resource, ResourceExt};
use tracing::{info, warn};

use super::conditions::{self, READY};
use super::context::FIELD_MANAGER;
use super::finalize::reconcile_with_finalizer;
use super::{Context, Error, crl};
use crate::api::{CertificateAuthority, CertificateAuthorityStatus, meta, to_chrono};
use crate::ledger::crl_refresh_time;
use crate::pki::{Authority, CaRequest};

/// How often a CA is looked at when nothing changes: keeps trust bundles
/// and status current even if a watch event was missed.
const RESYNC: Duration = Duration::from_secs(3600);

/// The Secret, in the operator's namespace, that holds a CA.
pub fn secret_name(ca: &CertificateAuthority) -> String {
    ca.spec
        .key_source
        .as_ref()
        .and_then(|k| k.secret_name.clone())
        .unwrap_or_else(|| format!("{}-ca", ca.name_any()))
}

/// Where a CA's certificate and key come from, decided from what the Secret
/// holds. Pure, so every case is a row in a table test.
#[derive(Debug, PartialEq)]
pub enum CaSource<'a> {
    /// Sign with the certificate and key found in the Secret.
    Existing { cert: &'a [u8], key: &'a [u8] },
    /// No Secret and none ever made: create the CA.
    Create,
    /// Cannot proceed; the reason and message go to the Ready condition.
    Unavailable {
        reason: &'static str,
        message: String,
    },
}

pub fn decide_source<'a>(
    secret: Option<&'a BTreeMap<String, ByteString>>,
    secret_name: &str,
    namespace: &str,
    adopt: bool,
    created_before: Option<&str>,
) -> CaSource<'a> {
    let pair = |c: &str, k: &str| {
        let data = secret?;
        Some((data.get(c)?.0.as_slice(), data.get(k)?.0.as_slice()))
    };
    match secret {
        Some(_) => match pair("tls.crt", "tls.key").or_else(|| pair("ca.crt", "ca.key")) {
            Some((cert, key)) => CaSource::Existing { cert, key },
            None => CaSource::Unavailable {
                reason: "InvalidCASecret",
                message: format!(
                    "Secret {namespace}/{secret_name} holds neither tls.crt/tls.key nor ca.crt/ca.key; add the CA certificate and key"
                ),
            },
        },
        None if adopt => CaSource::Unavailable {
            reason: "CASecretNotFound",
            message: format!(
                "spec.keySource.adopt is true but Secret {namespace}/{secret_name} does not exist; create it with the CA's ca.crt and ca.key"
            ),
        },
        None => match created_before {
            Some(serial) => CaSource::Unavailable {
                reason: "CASecretDeleted",
                message: format!(
                    "Secret {namespace}/{secret_name} with the key of CA serial {serial} is gone; certop will not silently create a new CA, which would break trust. Restore the Secret, or delete and re-create this CertificateAuthority to start a new CA"
                ),
            },
            None => CaSource::Create,
        },
    }
}

pub async fn reconcile(ca: Arc<CertificateAuthority>, ctx: Arc<Context>) -> Result<Action, Error> {
    reconcile_with_finalizer(
        "certificateauthority",
        ca,
        &ctx,
        |o| {
            let ctx = ctx.clone();
            async move { apply(&o, &ctx).await }
        },
        |o| {
            let ctx = ctx.clone();
            async move { cleanup(&o, &ctx).await }
        },
    )
    .await
}

pub fn error_policy(ca: Arc<CertificateAuthority>, error: &Error, _ctx: Arc<Context>) -> Action {
    warn!(ca = %ca.name_any(), %error, "reconcile failed");
    Action::requeue(Duration::from_secs(10))
}

async fn apply(ca: &CertificateAuthority, ctx: &Context) -> Result<Action, Error> {
    let name = ca.name_any();
    let now = Utc::now();
    let secret_name = secret_name(ca);
    let secrets = ctx.operator_secrets();
    let secret = secrets.get_opt(&secret_name).await?;
    let previous = ca.status.clone().unwrap_or_default();
    let adopt = ca
        .spec
        .key_source
        .as_ref()
        .and_then(|k| k.adopt)
        .unwrap_or(false);
    let source = decide_source(
        secret.as_ref().and_then(|s| s.data.as_ref()),
        &secret_name,
        &ctx.namespace,
        adopt,
        previous.serial_number.as_deref(),
    );
    let version = secret
        .as_ref()
        .and_then(|s| s.resource_version())
        .unwrap_or_default();
    let loaded = match source {
        CaSource::Existing { cert, key } => ctx
            .authorities
            .get_or_load(&name, &version, cert, key, now)
            .map_err(|e| {
                (
                    "InvalidCASecret",
                    format!("Secret {}/{secret_name}: {e}", ctx.namespace),
                )
            }),
        CaSource::Create => match create(ca, ctx, &secret_name).await? {
            Some(authority) => Ok(authority),
            // Another writer created it first: read theirs on the next pass.
            None => return Ok(Action::requeue(Duration::from_secs(1))),
        },
        CaSource::Unavailable { reason, message } => Err((reason, message)),
    };

    let mut status = previous.clone();
    status.observed_generation = ca.metadata.generation;
    let mut next_look = RESYNC;
    match &loaded {
        Ok(authority) => {
            let cert = authority.certificate();
            status.serial_number = Some(cert.serial.to_string());
            status.fingerprint = Some(cert.fingerprint.clone());
            status.not_before = Some(cert.not_before);
            status.not_after = Some(cert.not_after);
            status.issued_certificates = Some(issued_count(ctx, &name));
            let message = format!(
                "CA serial {} valid until {}",
                cert.serial,
                cert.not_after.to_rfc3339()
            );
            conditions::set(
                &mut status.conditions,
                READY,
                true,
                "Ready",
                &message,
                ca.metadata.generation,
                now,
            );
            ctx.metrics.authority(&name, cert.not_after);
            sync_trust_bundle(ca, ctx, authority.certificate_pem()).await?;
            if authority.certificate().can_sign_crls {
                next_look =
                    next_look.min(keep_crl_fresh(ca, ctx, authority, &mut status, now).await?);
            }
        }
        Err((reason, message)) => {
            conditions::set(
                &mut status.conditions,
                READY,
                false,
                reason,
                message,
                ca.metadata.generation,
                now,
            );
            let was = conditions::find(&previous.conditions, READY).map(|c| c.reason.clone());
            if was.as_deref() != Some(reason) {
                ctx.event(ca, true, reason, reason, message.clone()).await;
            }
        }
    }
    if status != previous {
        ctx.apply_status::<CertificateAuthority>(&name, &status)
            .await?;
    }
    Ok(Action::requeue(next_look))
}

/// Signs a CRL when there is none or the current one is due for refresh
/// (`refreshBefore` ahead of its nextUpdate), so it never goes stale while
/// the operator runs; fills the CRL fields of the status; returns when to
/// look again.
async fn keep_crl_fresh(
    ca: &CertificateAuthority,
    ctx: &Context,
    authority: &Authority,
    status: &mut CertificateAuthorityStatus,
    now: chrono::DateTime<Utc>,
) -> Result<Duration, Error> {
    let name = ca.name_any();
    let (_, refresh_before) = crl::schedule(ca);
    let current = ctx.crls.get(&name);
    let due = crl_refresh_time(
        current.as_ref().map(|c| c.next_update),
        false,
        refresh_before,
        now,
    );
    let crl = match current {
        Some(c) if due > now => c,
        _ => {
            let lock = ctx.crl_lock(&name);
            let _guard = lock.lock().await;
            crl::publish(ctx, ca, authority, now).await?
        }
    };
    status.crl_number = i64::try_from(crl.number).ok();
    status.crl_this_update = Some(crl.this_update);
    status.crl_next_update = Some(crl.next_update);
    status.revoked_certificates = i64::try_from(crl.entries).ok();
    if !crl.stored {
        let message = format!(
            "the CRL ({} bytes) is too large for one object; the leader serves it over HTTP",
            crl.der.len()
        );
        conditions::set(
            &mut status.conditions,
            "CRLStored",
            false,
            "TooLarge",
            &message,
            ca.metadata.generation,
            now,
        );
    } else {
        status.conditions.retain(|c| c.type_ != "CRLStored");
    }
    let refresh_at = crl_refresh_time(Some(crl.next_update), false, refresh_before, now);
    Ok((refresh_at - now)
        .to_std()
        .unwrap_or(Duration::from_secs(1))
        .max(Duration::from_secs(1)))
}

/// Creates the CA and its Secret. The Secret is created, never replaced:
/// if another replica got there first the API server refuses ours, and
/// `None` says to read theirs. So a CA never gets a second key.
async fn create(
    ca: &CertificateAuthority,
    ctx: &Context,
    secret_name: &str,
) -> Result<Option<Arc<Authority>>, Error> {
    let request = CaRequest {
        common_name: ca.spec.subject.common_name.clone(),
        organizations: ca.spec.subject.organizations.clone(),
        algorithm: ca.spec.key_algorithm.unwrap_or_default(),
        lifetime: ca
            .spec
            .duration
            .map(to_chrono)
            .unwrap_or_else(|| chrono::Duration::hours(crate::pki::DEFAULT_CA_LIFETIME_HOURS)),
    };
    let authority = match Authority::create(&request, Utc::now()) {
        Ok(a) => a,
        Err(e) => {
            ctx.event(ca, true, "CACreationFailed", "Create", e.to_string())
                .await;
            return Err(Error::Pki {
                what: format!("creating CA {}", ca.name_any()),
                source: e,
            });
        }
    };
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(secret_name.to_string()),
            namespace: Some(ctx.namespace.clone()),
            labels: Some(BTreeMap::from([(
                meta::MANAGED_BY.into(),
                meta::MANAGED_BY_VALUE.into(),
            )])),
            annotations: Some(BTreeMap::from([(
                meta::CERTIFICATE_AUTHORITY.into(),
                ca.name_any(),
            )])),
            ..Default::default()
        },
        type_: Some("kubernetes.io/tls".into()),
        data: Some(BTreeMap::from([
            (
                "tls.crt".into(),
                ByteString(authority.certificate_pem().as_bytes().to_vec()),
            ),
            (
                "tls.key".into(),
                ByteString(authority.key_pem().into_bytes()),
            ),
        ])),
        ..Default::default()
    };
    match ctx
        .operator_secrets()
        .create(&PostParams::default(), &secret)
        .await
    {
        Ok(_) => {
            let cert = authority.certificate();
            info!(ca = %ca.name_any(), serial = %cert.serial, "created CA");
            ctx.event(
                ca,
                false,
                "Created",
                "Create",
                format!(
                    "Created CA {} serial {}, valid until {}",
                    cert.subject(),
                    cert.serial,
                    cert.not_after.to_rfc3339()
                ),
            )
            .await;
            Ok(Some(Arc::new(authority)))
        }
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(None),
        Err(e) => Err(e.into()),
    }
}

fn issued_count(ctx: &Context, ca_name: &str) -> i64 {
    ctx.certificates
        .state()
        .iter()
        .filter(|c| c.spec.issuer_ref.name == ca_name)
        .filter(|c| c.status.as_ref().is_some_and(|s| s.serial_number.is_some()))
        .count() as i64
}

fn bundle_name(ca: &CertificateAuthority) -> String {
    ca.spec
        .trust_bundle
        .as_ref()
        .and_then(|t| t.config_map_name.clone())
        .unwrap_or_else(|| format!("{}-ca", ca.name_any()))
}

fn bundle_selector(ca_name: &str) -> String {
    format!(
        "{}={},{}",
        meta::MANAGED_BY,
        meta::MANAGED_BY_VALUE,
        trust_bundle_label(ca_name)
    )
}

fn trust_bundle_label(ca_name: &str) -> String {
    format!("certop.dev/trust-bundle-{}", short_hash(ca_name))
}

/// A label key part that fits Kubernetes' 63-character limit for any CA name.
fn short_hash(s: &str) -> String {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, s.as_bytes());
    d.as_ref()[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// Puts `ca.crt` in a ConfigMap in every namespace the selector picks, and
/// removes it from namespaces it no longer picks.
async fn sync_trust_bundle(
    ca: &CertificateAuthority,
    ctx: &Context,
    ca_pem: &str,
) -> Result<(), Error> {
    let name = ca.name_any();
    let wanted: BTreeSet<String> = match &ca.spec.trust_bundle {
        None => BTreeSet::new(),
        Some(tb) => {
            let selector = label_selector_string(&tb.namespace_selector);
            let namespaces: Api<Namespace> = Api::all(ctx.client.clone());
            namespaces
                .list_metadata(&ListParams::default().labels(&selector))
                .await?
                .items
                .iter()
                .map(|n| n.name_any())
                .collect()
        }
    };
    let config_maps: Api<ConfigMap> = Api::all(ctx.client.clone());
    let existing = config_maps
        .list_metadata(&ListParams::default().labels(&bundle_selector(&name)))
        .await?;
    for cm in &existing.items {
        let ns = cm.namespace().unwrap_or_default();
        if !wanted.contains(&ns) {
            let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &ns);
            match api.delete(&cm.name_any(), &DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    let cm_name = bundle_name(ca);
    for ns in &wanted {
        let cm = ConfigMap {
            metadata: ObjectMeta {
                name: Some(cm_name.clone()),
                namespace: Some(ns.clone()),
                labels: Some(BTreeMap::from([
                    (meta::MANAGED_BY.into(), meta::MANAGED_BY_VALUE.into()),
                    (trust_bundle_label(&name), "true".into()),
                ])),
                annotations: Some(BTreeMap::from([(
                    meta::CERTIFICATE_AUTHORITY.into(),
                    name.clone(),
                )])),
                ..Default::default()
            },
            data: Some(BTreeMap::from([("ca.crt".into(), ca_pem.to_string())])),
            ..Default::default()
        };
        let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), ns);
        api.patch(
            &cm_name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&cm),
        )
        .await?;
    }
    Ok(())
}

/// A LabelSelector as the string form list calls take.
fn label_selector_string(
    selector: &k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector,
) -> String {
    let mut parts: Vec<String> = selector
        .match_labels
        .iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    for expr in selector.match_expressions.iter().flatten() {
        let values = expr.values.clone().unwrap_or_default().join(",");
        parts.push(match expr.operator.as_str() {
            "In" => format!("{} in ({values})", expr.key),
            "NotIn" => format!("{} notin ({values})", expr.key),
            "Exists" => expr.key.clone(),
            _ => format!("!{}", expr.key),
        });
    }
    parts.join(",")
}

/// A CA goes: its trust bundles go with it. Its key Secret stays, since a
/// key certop cannot replace is never deleted; delete it by hand to retire
/// the CA for good.
async fn cleanup(ca: &CertificateAuthority, ctx: &Context) -> Result<Action, Error> {
    let name = ca.name_any();
    let config_maps: Api<ConfigMap> = Api::all(ctx.client.clone());
    for cm in config_maps
        .list_metadata(&ListParams::default().labels(&bundle_selector(&name)))
        .await?
        .items
    {
        let api: Api<ConfigMap> =
            Api::namespaced(ctx.client.clone(), &cm.namespace().unwrap_or_default());
        match api.delete(&cm.name_any(), &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    ctx.authorities.forget(&name);
    ctx.crls.forget(&name);
    ctx.metrics.forget_authority(&name);
    info!(ca = %name, "CertificateAuthority deleted; its key Secret is kept");
    Ok(Action::await_change())
}

/// Whether an object is a CA certop may sign with right now.
pub fn is_ready(ca: &CertificateAuthority) -> bool {
    ca.status
        .as_ref()
        .is_some_and(|s| conditions::is_true(&s.conditions, READY))
        && ca.meta().deletion_timestamp.is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(pairs: &[(&str, &str)]) -> BTreeMap<String, ByteString> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
            .collect()
    }

    #[test]
    fn source_of_a_ca_key() {
        let tls = data(&[("tls.crt", "C"), ("tls.key", "K")]);
        let kubeadm = data(&[("ca.crt", "C2"), ("ca.key", "K2")]);
        let empty = data(&[("other", "x")]);
        assert_eq!(
            decide_source(Some(&tls), "s", "ns", false, None),
            CaSource::Existing {
                cert: b"C",
                key: b"K"
            }
        );
        assert_eq!(
            decide_source(Some(&kubeadm), "s", "ns", true, None),
            CaSource::Existing {
                cert: b"C2",
                key: b"K2"
            }
        );
        assert!(matches!(
            decide_source(Some(&empty), "s", "ns", false, None),
            CaSource::Unavailable {
                reason: "InvalidCASecret",
                ..
            }
        ));
        assert_eq!(
            decide_source(None, "s", "ns", false, None),
            CaSource::Create
        );
        assert!(matches!(
            decide_source(None, "s", "ns", true, None),
            CaSource::Unavailable {
                reason: "CASecretNotFound",
                ..
            }
        ));
        match decide_source(None, "s", "ns", false, Some("abcd")) {
            CaSource::Unavailable { reason, message } => {
                assert_eq!(reason, "CASecretDeleted");
                assert!(
                    message.contains("abcd") && message.contains("will not silently create"),
                    "{message}"
                );
            }
            other => panic!("a deleted CA Secret must not lead to {other:?}"),
        }
    }

    #[test]
    fn label_selectors_render_as_list_calls_expect() {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
            LabelSelector, LabelSelectorRequirement,
        };
        let s = LabelSelector {
            match_labels: Some(BTreeMap::from([("trust".into(), "yes".into())])),
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "env".into(),
                operator: "In".into(),
                values: Some(vec!["a".into(), "b".into()]),
            }]),
        };
        assert_eq!(label_selector_string(&s), "trust=yes,env in (a,b)");
        assert!(trust_bundle_label(&"x".repeat(253)).len() <= 63 + "certop.dev/".len());
    }
}
