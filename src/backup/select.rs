//! What goes into a backup: every certop resource, and of the Secrets and
//! ConfigMaps only those certop made for them, told by certop's own marks
//! (the `app.kubernetes.io/managed-by: certop` label and the annotation
//! naming the CA or ClusterCertificate). Nothing certop did not create is
//! ever taken, so restore never writes another owner's object. Pure.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::Secret;
use serde_json::Value;

use super::document::{Backup, FORMAT, FORMAT_VERSION, Role};
use crate::api::{CertificateAuthority, meta};
use crate::operator::certificate::{Ownership, ownership as secret_ownership};

/// The annotation that marks one part of a CRL stored in parts.
const CRL_PART: &str = "certop.dev/crl-part";

/// What the backup command read from the cluster.
#[derive(Default)]
pub struct Listed {
    /// certop's namespace.
    pub namespace: String,
    pub certificate_authorities: Vec<Value>,
    pub cluster_certificates: Vec<Value>,
    pub certificate_revocations: Vec<Value>,
    pub certificate_policies: Vec<Value>,
    /// Secrets of certop's namespace with certop's label.
    pub operator_secrets: Vec<Value>,
    /// ConfigMaps of certop's namespace with certop's label.
    pub operator_config_maps: Vec<Value>,
    /// Secrets of every namespace with certop's label.
    pub labelled_secrets: Vec<Value>,
}

/// A backup, and what the user must know about what it lacks.
pub struct Selection {
    pub backup: Backup,
    pub notes: Vec<String>,
}

pub(crate) fn name(v: &Value) -> &str {
    v["metadata"]["name"].as_str().unwrap_or_default()
}

pub(crate) fn namespace(v: &Value) -> &str {
    v["metadata"]["namespace"].as_str().unwrap_or_default()
}

fn label<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v["metadata"]["labels"][key].as_str()
}

pub(crate) fn annotation<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v["metadata"]["annotations"][key].as_str()
}

fn managed(v: &Value) -> bool {
    label(v, meta::MANAGED_BY) == Some(meta::MANAGED_BY_VALUE)
}

fn deleting(v: &Value) -> bool {
    !v["metadata"]["deletionTimestamp"].is_null()
}

/// Fields the API server sets, which a restored object gets anew. certop
/// sets no owner references (its objects are found by their marks), and
/// its finalizer is added again by the operator's first pass.
const SERVER_FIELDS: [&str; 10] = [
    "uid",
    "resourceVersion",
    "managedFields",
    "creationTimestamp",
    "generation",
    "selfLink",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "ownerReferences",
    "finalizers",
];

pub(crate) fn strip(mut v: Value) -> Value {
    if let Some(m) = v["metadata"].as_object_mut() {
        for f in SERVER_FIELDS {
            m.remove(f);
        }
    }
    v
}

/// A revocation without `issuedBefore` covers certificates issued before
/// it was created; a restored object is created anew, so its creation
/// time is written into the spec or the rule would reach every certificate
/// issued since (the replacements of the ones it revoked among them).
pub(crate) fn pin_issued_before(mut v: Value) -> Value {
    let created = v["metadata"]["creationTimestamp"].clone();
    if v["spec"]["issuedBefore"].is_null()
        && created.is_string()
        && let Some(spec) = v["spec"].as_object_mut()
    {
        spec.insert("issuedBefore".into(), created);
    }
    v
}

fn sorted(mut objects: Vec<Value>) -> Vec<Value> {
    objects.sort_by(|a, b| (namespace(a), name(a)).cmp(&(namespace(b), name(b))));
    objects
}

/// Picks certop's objects out of what was listed, server fields stripped.
pub fn select(listed: Listed, now: DateTime<Utc>, certop_version: &str) -> Selection {
    let mut notes = Vec::new();
    let mut live = |objects: Vec<Value>, kind: &str| -> Vec<Value> {
        objects
            .into_iter()
            .filter(|v| {
                let gone = deleting(v);
                if gone {
                    notes.push(format!("{kind} {} is being deleted: left out", name(v)));
                }
                !gone
            })
            .collect()
    };
    let mut cas = live(listed.certificate_authorities, "CertificateAuthority");
    let certs = live(listed.cluster_certificates, "ClusterCertificate");
    let revocations = live(listed.certificate_revocations, "CertificateRevocation");
    let policies = live(listed.certificate_policies, "CertificatePolicy");
    // The first CA bound to a key wins a tie: restore creates them in
    // the order they were created.
    cas.sort_by(|a, b| {
        let created = |v: &Value| {
            v["metadata"]["creationTimestamp"]
                .as_str()
                .map(str::to_string)
        };
        (created(a), name(a)).cmp(&(created(b), name(b)))
    });
    let ca_names: BTreeSet<&str> = cas.iter().map(name).collect();
    let of_a_ca = |v: &Value| {
        managed(v)
            && !deleting(v)
            && annotation(v, meta::CERTIFICATE_AUTHORITY).is_some_and(|ca| ca_names.contains(ca))
    };

    let ca_key_secrets: Vec<Value> = listed
        .operator_secrets
        .iter()
        .filter(|s| of_a_ca(s))
        .cloned()
        .collect();
    let key_names: BTreeSet<&str> = ca_key_secrets.iter().map(name).collect();
    for ca in &cas {
        let Ok(typed) = serde_json::from_value::<CertificateAuthority>(ca.clone()) else {
            continue;
        };
        let adopted = typed.spec.key_source.as_ref().and_then(|k| k.adopt) == Some(true);
        if let Ok(settings) = typed.settings()
            && adopted
            && !key_names.contains(settings.secret_name.as_str())
        {
            notes.push(format!(
                "CertificateAuthority {} adopts Secret {}/{}, which certop did not create: it is not in the backup; back it up with the tools of whoever made it, and put it back before restoring",
                name(ca),
                listed.namespace,
                settings.secret_name
            ));
        }
    }

    let state = |marks: &[&str]| -> Vec<Value> {
        listed
            .operator_config_maps
            .iter()
            .filter(|c| of_a_ca(c) && marks.iter().any(|m| label(c, m).is_some()))
            .cloned()
            .collect()
    };
    let ledger = state(&[meta::LEDGER]);
    let mut crls = state(&[meta::CRL, meta::CRL_COPY]);
    // Parts before the object that names them, copies before what is served.
    crls.sort_by(|a, b| {
        let rank = |v: &Value| {
            (
                annotation(v, CRL_PART).is_none(),
                label(v, meta::CRL).is_some(),
                name(v).to_string(),
            )
        };
        rank(a).cmp(&rank(b))
    });

    let certificate_secrets: Vec<Value> = certs
        .iter()
        .filter_map(|c| {
            let (cert, ns, secret) = (
                name(c),
                c["spec"]["secretNamespace"].as_str()?,
                c["spec"]["secretName"].as_str()?,
            );
            let found = listed
                .labelled_secrets
                .iter()
                .find(|s| namespace(s) == ns && name(s) == secret && !deleting(s))?;
            let typed: Secret = serde_json::from_value(found.clone()).ok()?;
            (secret_ownership(Some(&typed), cert) == Ownership::Ours).then(|| found.clone())
        })
        .collect();

    let finish = |objects: Vec<Value>| objects.into_iter().map(strip).collect::<Vec<_>>();
    let backup = Backup {
        format: FORMAT.into(),
        version: FORMAT_VERSION,
        created_at: now,
        certop_version: certop_version.into(),
        namespace: listed.namespace,
        ca_key_secrets: finish(sorted(ca_key_secrets)),
        ledger_config_maps: finish(sorted(ledger)),
        crl_config_maps: finish(crls),
        certificate_authorities: finish(cas),
        certificate_secrets: finish(sorted(certificate_secrets)),
        cluster_certificates: finish(sorted(certs)),
        certificate_revocations: finish(sorted(
            revocations.into_iter().map(pin_issued_before).collect(),
        )),
        certificate_policies: finish(sorted(policies)),
    };
    Selection { backup, notes }
}

/// How many objects of each role a backup holds, for the command's summary.
pub fn summary(backup: &Backup) -> String {
    Role::RESTORE_ORDER
        .iter()
        .map(|r| format!("{} {}", backup.objects(*r).len(), describe(*r)))
        .collect::<Vec<_>>()
        .join(", ")
}

pub(crate) fn describe(role: Role) -> &'static str {
    match role {
        Role::CaKeySecret => "CA key Secrets",
        Role::LedgerConfigMap => "ledger ConfigMaps",
        Role::CrlConfigMap => "CRL ConfigMaps",
        Role::CertificateAuthority => "CertificateAuthorities",
        Role::CertificateSecret => "certificate Secrets",
        Role::ClusterCertificate => "ClusterCertificates",
        Role::CertificateRevocation => "CertificateRevocations",
        Role::CertificatePolicy => "CertificatePolicies",
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const NS: &str = "certop-system";

    fn object(
        kind: &str,
        ns: Option<&str>,
        name: &str,
        labels: Value,
        annotations: Value,
    ) -> Value {
        let mut v = json!({
            "apiVersion": "v1", "kind": kind,
            "metadata": {"name": name, "labels": labels, "annotations": annotations,
                         "uid": "u-1", "resourceVersion": "42", "creationTimestamp": "2026-12-01T00:00:00Z",
                         "managedFields": [{"manager": "certop"}]},
        });
        if let Some(ns) = ns {
            v["metadata"]["namespace"] = json!(ns);
        }
        v
    }

    fn ca(name: &str, key_source: Value) -> Value {
        let mut v = object("CertificateAuthority", None, name, json!({}), json!({}));
        v["apiVersion"] = json!("certop.dev/v1");
        v["spec"] = json!({"subject": {"commonName": name}, "keySource": key_source});
        v["status"] = json!({"crlNumber": 7});
        v
    }

    fn ours() -> Value {
        json!({"app.kubernetes.io/managed-by": "certop"})
    }

    fn names(objects: &[Value]) -> Vec<String> {
        objects
            .iter()
            .map(|v| format!("{}/{}", namespace(v), name(v)))
            .collect()
    }

    fn listed() -> Listed {
        let mut cert = object("ClusterCertificate", None, "web", json!({}), json!({}));
        cert["spec"] = json!({"issuerRef": {"name": "root"}, "secretName": "web-tls", "secretNamespace": "apps"});
        let mut rev = object("CertificateRevocation", None, "rev", json!({}), json!({}));
        rev["spec"] = json!({"issuerRef": {"name": "root"}, "serialNumbers": ["0a"]});
        let mut pinned = object(
            "CertificateRevocation",
            None,
            "pinned",
            json!({}),
            json!({}),
        );
        pinned["spec"] =
            json!({"issuerRef": {"name": "root"}, "issuedBefore": "2026-01-01T00:00:00Z"});
        let key = |name: &str, ca: &str, index: &str| {
            let mut v = object(
                "Secret",
                Some(NS),
                name,
                ours(),
                json!({"certop.dev/certificate-authority": ca, "certop.dev/ca-key-index": index}),
            );
            v["type"] = json!("kubernetes.io/tls");
            v["data"] = json!({"tls.key": "a2V5"});
            v
        };
        let cm = |name: &str, labels: Value, annotations: Value| {
            object("ConfigMap", Some(NS), name, labels, annotations)
        };
        let cert_secret = |ns: &str, name: &str, owner: &str| {
            let mut v = object(
                "Secret",
                Some(ns),
                name,
                ours(),
                json!({"certop.dev/certificate": owner}),
            );
            v["type"] = json!("kubernetes.io/tls");
            v
        };
        let mut gone = ca("gone", json!(null));
        gone["metadata"]["deletionTimestamp"] = json!("2026-12-05T00:00:00Z");
        Listed {
            namespace: NS.into(),
            certificate_authorities: vec![
                ca("root", json!(null)),
                ca(
                    "kubeadm",
                    json!({"secretName": "kubeadm-ca", "adopt": true}),
                ),
                gone,
            ],
            cluster_certificates: vec![cert],
            certificate_revocations: vec![rev, pinned],
            certificate_policies: vec![],
            operator_secrets: vec![
                key("root-ca", "root", "0"),
                key("root-ca-1", "root", "1"),
                key("kubeadm-ca-1", "kubeadm", "1"),
                // Another CA's, which is not backed up; and one not ours.
                key("other-ca", "other", "0"),
                object("Secret", Some(NS), "kubeadm-ca", json!({}), json!({})),
                // A certificate Secret that happens to live here.
                cert_secret(NS, "web-tls", "web"),
            ],
            operator_config_maps: vec![
                cm(
                    "certop-ledger-aa-00",
                    json!({"app.kubernetes.io/managed-by": "certop", "certop.dev/ledger": "aa"}),
                    json!({"certop.dev/certificate-authority": "root"}),
                ),
                cm(
                    "root-crl",
                    json!({"app.kubernetes.io/managed-by": "certop", "certop.dev/crl": "aa"}),
                    json!({"certop.dev/certificate-authority": "root"}),
                ),
                cm(
                    "root-crl-part-0",
                    json!({"app.kubernetes.io/managed-by": "certop", "certop.dev/crl": "aa"}),
                    json!({"certop.dev/certificate-authority": "root", "certop.dev/crl-part": "0"}),
                ),
                cm(
                    "root-crl-copy",
                    json!({"app.kubernetes.io/managed-by": "certop", "certop.dev/crl-copy": "aa"}),
                    json!({"certop.dev/certificate-authority": "root"}),
                ),
                // A trust bundle: the operator publishes it again.
                cm(
                    "root-bundle",
                    ours(),
                    json!({"certop.dev/certificate-authority": "root"}),
                ),
                // Someone's ConfigMap with certop's ledger label but not ours.
                cm(
                    "fake-ledger",
                    json!({"certop.dev/ledger": "aa"}),
                    json!({"certop.dev/certificate-authority": "root"}),
                ),
            ],
            labelled_secrets: vec![
                cert_secret("apps", "web-tls", "web"),
                // certop's, but of a certificate that names another Secret.
                cert_secret("apps", "api-tls", "web"),
                // Same name, but owned by another certificate.
                cert_secret("other", "web-tls", "api"),
            ],
        }
    }

    #[test]
    fn only_what_certop_made_for_the_backed_up_resources_is_taken() {
        let now = DateTime::parse_from_rfc3339("2026-12-06T00:00:00Z")
            .expect("t")
            .to_utc();
        let Selection { backup, notes } = select(listed(), now, "0.1.0");
        assert_eq!(
            names(&backup.certificate_authorities),
            ["/kubeadm", "/root"].map(String::from)
        );
        assert_eq!(
            names(&backup.ca_key_secrets),
            [
                format!("{NS}/kubeadm-ca-1"),
                format!("{NS}/root-ca"),
                format!("{NS}/root-ca-1")
            ]
        );
        assert_eq!(
            names(&backup.ledger_config_maps),
            [format!("{NS}/certop-ledger-aa-00")]
        );
        assert_eq!(
            names(&backup.crl_config_maps),
            [
                format!("{NS}/root-crl-part-0"),
                format!("{NS}/root-crl-copy"),
                format!("{NS}/root-crl")
            ],
            "parts first, then the copy, then the served CRL"
        );
        assert_eq!(
            names(&backup.certificate_secrets),
            ["apps/web-tls".to_string()]
        );
        assert!(
            notes
                .iter()
                .any(|n| n.contains("adopts Secret certop-system/kubeadm-ca")),
            "{notes:?}"
        );
        assert!(
            notes.iter().any(|n| n.contains("gone is being deleted")),
            "{notes:?}"
        );
    }

    #[test]
    fn server_fields_go_and_status_and_marks_stay() {
        let now = DateTime::parse_from_rfc3339("2026-12-06T00:00:00Z")
            .expect("t")
            .to_utc();
        let backup = select(listed(), now, "0.1.0").backup;
        let all: Vec<&Value> = Role::RESTORE_ORDER
            .iter()
            .flat_map(|r| backup.objects(*r))
            .collect();
        for v in &all {
            for f in SERVER_FIELDS {
                assert!(v["metadata"].get(f).is_none(), "{f} kept in {v}");
            }
        }
        assert_eq!(backup.certificate_authorities[1]["status"]["crlNumber"], 7);
        assert_eq!(
            annotation(&backup.ca_key_secrets[1], meta::CA_KEY_INDEX),
            Some("0")
        );
        assert_eq!(backup.ca_key_secrets[1]["data"]["tls.key"], "a2V5");
    }

    #[test]
    fn a_revocation_keeps_the_time_it_covers() {
        let now = DateTime::parse_from_rfc3339("2026-12-06T00:00:00Z")
            .expect("t")
            .to_utc();
        let backup = select(listed(), now, "0.1.0").backup;
        let by_name = |n: &str| {
            backup
                .certificate_revocations
                .iter()
                .find(|v| name(v) == n)
                .expect("revocation")
                .clone()
        };
        assert_eq!(
            by_name("rev")["spec"]["issuedBefore"],
            "2026-12-01T00:00:00Z"
        );
        assert_eq!(
            by_name("pinned")["spec"]["issuedBefore"],
            "2026-01-01T00:00:00Z"
        );
    }
}
