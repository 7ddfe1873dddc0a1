//! What restore writes, in which order, and when it refuses: decided from
//! the backup and what the cluster already holds, before anything is
//! written. Pure: `kubectl certop restore` reads and writes around it.
//!
//! An object the cluster already has with the same content is left as it
//! is; one it has with other content is never overwritten: restore
//! refuses and names it (or, with `--keep-existing`, keeps the cluster's).
//! So restore never lowers a CRL number or replaces a key the cluster
//! uses, and running it twice is harmless.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

use super::document::{Backup, Role};
use super::select::{annotation, name, namespace, pin_issued_before};
use crate::api::{CertificateAuthority, meta};

/// One object restore may write, with its namespace as it will be written.
#[derive(Clone, Debug, PartialEq)]
pub struct Restorable {
    pub role: Role,
    pub object: Value,
}

impl Restorable {
    pub fn name(&self) -> &str {
        name(&self.object)
    }

    /// None for cluster-scoped objects.
    pub fn namespace(&self) -> Option<&str> {
        Some(namespace(&self.object)).filter(|n| !n.is_empty())
    }

    pub fn api_version(&self) -> &str {
        self.object["apiVersion"].as_str().unwrap_or("v1")
    }

    /// `Secret certop-system/root-ca`, `CertificateAuthority root`.
    pub fn describe(&self) -> String {
        match self.namespace() {
            Some(ns) => format!("{} {ns}/{}", self.role.kind(), self.name()),
            None => format!("{} {}", self.role.kind(), self.name()),
        }
    }

    /// The object to create: without status, which a custom resource takes
    /// only through its status subresource.
    pub fn without_status(&self) -> Value {
        let mut v = self.object.clone();
        if let Some(m) = v.as_object_mut() {
            m.remove("status");
        }
        v
    }

    pub fn status(&self) -> Option<&Value> {
        self.object.get("status").filter(|s| !s.is_null())
    }
}

/// Every object of the backup in restore order, those of certop's
/// namespace moved into `target_namespace`.
pub fn restorables(backup: &Backup, target_namespace: &str) -> Vec<Restorable> {
    Role::RESTORE_ORDER
        .iter()
        .flat_map(|role| {
            backup.objects(*role).iter().map(move |o| {
                let mut object = o.clone();
                if role.in_operator_namespace()
                    && let Some(m) = object["metadata"].as_object_mut()
                {
                    m.insert("namespace".into(), Value::from(target_namespace));
                }
                Restorable {
                    role: *role,
                    object,
                }
            })
        })
        .collect()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Create,
    Unchanged,
    Differs,
}

/// What restore does with `wanted` given what the cluster holds.
pub fn compare(wanted: &Restorable, existing: Option<&Value>) -> Outcome {
    let Some(existing) = existing else {
        return Outcome::Create;
    };
    let existing = if wanted.role == Role::CertificateRevocation {
        pin_issued_before(existing.clone())
    } else {
        existing.clone()
    };
    if content(&wanted.object) == content(&existing) {
        Outcome::Unchanged
    } else {
        Outcome::Differs
    }
}

/// What makes two objects the same for restore: labels, annotations and
/// everything outside metadata but the status (which the operator keeps
/// current).
fn content(v: &Value) -> Value {
    let mut c: Map<String, Value> = v
        .as_object()
        .map(|m| {
            m.iter()
                .filter(|(k, _)| {
                    !["metadata", "status", "apiVersion", "kind"].contains(&k.as_str())
                })
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default();
    for field in ["labels", "annotations"] {
        let value = v["metadata"][field].clone();
        let empty = value.as_object().is_none_or(Map::is_empty);
        c.insert(
            field.into(),
            if empty {
                Value::Object(Map::new())
            } else {
                value
            },
        );
    }
    Value::Object(c)
}

/// The namespaces that must exist before restore writes: certop's, and
/// every namespace a certificate's Secret goes into.
pub fn namespaces_needed(restorables: &[Restorable]) -> BTreeSet<String> {
    restorables
        .iter()
        .filter_map(|r| r.namespace().map(str::to_string))
        .collect()
}

/// The key Secrets of adopted CAs that the backup does not hold (certop
/// did not make them): the cluster must hold them before the CA is
/// restored, or the operator would see a CA without its key.
pub fn adopted_keys_needed(backup: &Backup) -> Vec<(String, String)> {
    let in_backup: BTreeSet<&str> = backup.ca_key_secrets.iter().map(name).collect();
    backup
        .certificate_authorities
        .iter()
        .filter_map(|v| {
            let ca: CertificateAuthority = serde_json::from_value(v.clone()).ok()?;
            let adopted = ca.spec.key_source.as_ref().and_then(|k| k.adopt) == Some(true);
            let secret = ca.settings().ok()?.secret_name;
            (adopted && !in_backup.contains(secret.as_str())).then(|| (name(v).to_string(), secret))
        })
        .collect()
}

/// What must hold before restore writes anything.
#[derive(Debug, Default)]
pub struct Preconditions {
    pub missing_namespaces: Vec<String>,
    /// (CA, Secret) pairs of adopted keys absent from the cluster.
    pub missing_adopted_keys: Vec<(String, String)>,
}

/// Every reason to write nothing, each saying what to do; empty when
/// restore may go ahead.
pub fn refusals(
    planned: &[(Restorable, Outcome)],
    pre: &Preconditions,
    target_namespace: &str,
    keep_existing: bool,
) -> Vec<String> {
    let mut out: Vec<String> = pre
        .missing_namespaces
        .iter()
        .map(|ns| format!("namespace {ns} does not exist: create it (and install certop's CRDs and chart) first"))
        .collect();
    out.extend(pre.missing_adopted_keys.iter().map(|(ca, secret)| {
        format!(
            "CertificateAuthority {ca} adopts Secret {target_namespace}/{secret}, which is not in the backup (certop did not create it) nor in the cluster: put it back first"
        )
    }));
    if !keep_existing {
        out.extend(
            planned
                .iter()
                .filter(|(_, o)| *o == Outcome::Differs)
                .map(|(r, _)| {
                    let what = match annotation(&r.object, meta::CERTIFICATE_AUTHORITY) {
                        Some(ca) => format!(" (of CertificateAuthority {ca})"),
                        None => String::new(),
                    };
                    format!(
                        "{}{what} exists with other content: restore never overwrites it; delete it to restore the backup's, or pass --keep-existing to keep the cluster's",
                        r.describe()
                    )
                }),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::backup::document::{FORMAT, FORMAT_VERSION};

    fn backup() -> Backup {
        Backup {
            format: FORMAT.into(),
            version: FORMAT_VERSION,
            namespace: "old-ns".into(),
            ca_key_secrets: vec![json!({"apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": "root-ca", "namespace": "old-ns",
                             "labels": {"app.kubernetes.io/managed-by": "certop"},
                             "annotations": {"certop.dev/certificate-authority": "root"}},
                "type": "kubernetes.io/tls", "data": {"tls.key": "a2V5"}})],
            certificate_authorities: vec![
                json!({"apiVersion": "certop.dev/v1", "kind": "CertificateAuthority",
                       "metadata": {"name": "root"}, "spec": {"subject": {"commonName": "root"}},
                       "status": {"crlNumber": 3}}),
                json!({"apiVersion": "certop.dev/v1", "kind": "CertificateAuthority",
                       "metadata": {"name": "kubeadm"},
                       "spec": {"subject": {"commonName": "kubernetes"}, "keySource": {"secretName": "kubeadm-ca", "adopt": true}}}),
            ],
            certificate_secrets: vec![json!({"apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": "web-tls", "namespace": "apps"}, "data": {"tls.crt": "Y2VydA=="}})],
            certificate_revocations: vec![
                json!({"apiVersion": "certop.dev/v1", "kind": "CertificateRevocation",
                "metadata": {"name": "rev"},
                "spec": {"issuerRef": {"name": "root"}, "issuedBefore": "2026-12-01T00:00:00Z"}}),
            ],
            ..Default::default()
        }
    }

    #[test]
    fn objects_come_in_restore_order_in_the_target_namespace() {
        let all = restorables(&backup(), "certop-system");
        let described: Vec<String> = all.iter().map(Restorable::describe).collect();
        assert_eq!(
            described,
            [
                "Secret certop-system/root-ca",
                "CertificateAuthority root",
                "CertificateAuthority kubeadm",
                "Secret apps/web-tls",
                "CertificateRevocation rev",
            ]
        );
        assert_eq!(
            namespaces_needed(&all),
            BTreeSet::from(["apps".to_string(), "certop-system".to_string()])
        );
        assert!(all[1].without_status().get("status").is_none());
        assert_eq!(all[1].status(), Some(&json!({"crlNumber": 3})));
    }

    #[test]
    fn an_existing_object_is_left_alone_if_the_same_and_refused_if_not() {
        let all = restorables(&backup(), "certop-system");
        let key = &all[0];
        let live = |f: &dyn Fn(&mut Value)| {
            let mut v = key.object.clone();
            v["metadata"]["uid"] = json!("x");
            v["metadata"]["resourceVersion"] = json!("9");
            f(&mut v);
            v
        };
        let rev = &all[4];
        let mut live_rev = rev.object.clone();
        live_rev["spec"]
            .as_object_mut()
            .expect("spec")
            .remove("issuedBefore");
        live_rev["metadata"]["creationTimestamp"] = json!("2026-12-01T00:00:00Z");
        let mut later_rev = live_rev.clone();
        later_rev["metadata"]["creationTimestamp"] = json!("2026-12-02T00:00:00Z");
        let cases: Vec<(&str, &Restorable, Option<Value>, Outcome)> = vec![
            ("absent", key, None, Outcome::Create),
            (
                "same but for server fields",
                key,
                Some(live(&|_| {})),
                Outcome::Unchanged,
            ),
            (
                "another key",
                key,
                Some(live(&|v| v["data"]["tls.key"] = json!("b3RoZXI="))),
                Outcome::Differs,
            ),
            (
                "another label",
                key,
                Some(live(&|v| v["metadata"]["labels"]["x"] = json!("y"))),
                Outcome::Differs,
            ),
            (
                "a status the operator moved on",
                &all[1],
                Some({
                    let mut v = all[1].object.clone();
                    v["status"]["crlNumber"] = json!(9);
                    v
                }),
                Outcome::Unchanged,
            ),
            (
                "a revocation covering the same time",
                rev,
                Some(live_rev),
                Outcome::Unchanged,
            ),
            (
                "a revocation made later",
                rev,
                Some(later_rev),
                Outcome::Differs,
            ),
        ];
        for (name, wanted, existing, want) in cases {
            assert_eq!(compare(wanted, existing.as_ref()), want, "{name}");
        }
    }

    #[test]
    fn restore_refuses_what_it_would_overwrite_or_leave_without_a_key() {
        let b = backup();
        let all = restorables(&b, "certop-system");
        assert_eq!(
            adopted_keys_needed(&b),
            [("kubeadm".to_string(), "kubeadm-ca".to_string())]
        );
        let planned = vec![
            (all[0].clone(), Outcome::Differs),
            (all[1].clone(), Outcome::Unchanged),
            (all[3].clone(), Outcome::Create),
        ];
        let pre = Preconditions {
            missing_namespaces: vec!["apps".into()],
            missing_adopted_keys: adopted_keys_needed(&b),
        };
        let refused = refusals(&planned, &pre, "certop-system", false);
        assert_eq!(refused.len(), 3, "{refused:?}");
        assert!(refused[0].starts_with("namespace apps does not exist"));
        assert!(refused[1].contains("adopts Secret certop-system/kubeadm-ca"));
        assert!(
            refused[2].starts_with("Secret certop-system/root-ca (of CertificateAuthority root) exists with other content"),
            "{}",
            refused[2]
        );
        let kept = refusals(&planned, &pre, "certop-system", true);
        assert_eq!(
            kept.len(),
            2,
            "--keep-existing still needs namespaces and keys"
        );
        assert!(refusals(&planned, &Preconditions::default(), "certop-system", true).is_empty());
    }
}
