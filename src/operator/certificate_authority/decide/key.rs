//! Which key a CA signs with, decided from its Secret as read: the key it
//! holds (loaded, bound to the CA, held by no CA created earlier), a key
//! to create (none was ever made), or why the CA cannot sign. Pure.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::ByteString;
use kube::ResourceExt;

use crate::api::{CertificateAuthority, meta};
use crate::core::rotation::RotationMarks;
use crate::operator::reason::{Blocked, Reason};
use crate::pki::{Authority, PkiError};

/// Where a CA's certificate and key come from, decided from what the Secret
/// holds. Pure, so every case is a row in a table test.
#[derive(Debug, PartialEq)]
pub enum CaSource<'a> {
    /// Sign with the certificate and key found in the Secret.
    Existing { cert: &'a [u8], key: &'a [u8] },
    /// No Secret and none ever made: create the CA.
    Create,
    /// Cannot proceed; the reason and message go to the Ready condition.
    Unavailable { reason: Reason, message: String },
}

/// `created_before`: the fingerprint the CA is bound to (its annotation),
/// or the serial its status last showed; either means a key existed.
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
                reason: Reason::InvalidCASecret,
                message: format!(
                    "Secret {namespace}/{secret_name} holds neither tls.crt/tls.key nor ca.crt/ca.key; add the CA certificate and key"
                ),
            },
        },
        None if adopt => CaSource::Unavailable {
            reason: Reason::CASecretNotFound,
            message: format!(
                "spec.keySource.adopt is true but Secret {namespace}/{secret_name} does not exist; create it with the CA's ca.crt and ca.key"
            ),
        },
        None => match created_before {
            Some(serial) => CaSource::Unavailable {
                reason: Reason::CASecretDeleted,
                message: format!(
                    "Secret {namespace}/{secret_name} with the key of CA {serial} is gone; certop will not silently create a new CA, which would break trust. Restore the Secret from a backup (kubectl certop restore FILE, or a saved copy of the Secret) and this CA resumes with its key; only to start a new CA, delete and re-create this CertificateAuthority"
                ),
            },
            None => CaSource::Create,
        },
    }
}

/// The Secret of a CA holds a key pair other than the one it is bound to.
#[derive(Debug, PartialEq, thiserror::Error)]
#[error(
    "the CA is bound to the certificate with fingerprint {bound}, but its Secret now holds {loaded}; certop refuses to sign with a key it was not given. Restore the original Secret, or delete and re-create the CertificateAuthority to trust the new key"
)]
pub struct BindingError {
    pub bound: String,
    pub loaded: String,
}

/// Whether the key pair loaded is the one the CA is bound to. Pure.
pub fn check_binding(bound: Option<&str>, loaded: &str) -> Result<(), BindingError> {
    match bound {
        Some(fp) if fp != loaded => Err(BindingError {
            bound: fp.to_string(),
            loaded: loaded.to_string(),
        }),
        _ => Ok(()),
    }
}

/// The other CertificateAuthority that holds this key pair first, if any:
/// two CAs never share a key (policies, `requirePolicy` and signer names
/// are per CA, so a second CA on the same key would sign outside them).
/// The CA bound earliest (by creation, then name) keeps it. Pure.
pub fn key_holder<'a>(
    ca: &CertificateAuthority,
    fingerprint: &str,
    others: &'a [Arc<CertificateAuthority>],
) -> Option<&'a CertificateAuthority> {
    let holds = |other: &CertificateAuthority| {
        [
            meta::CA_FINGERPRINT,
            meta::CA_NEXT_FINGERPRINT,
            meta::CA_PREVIOUS_FINGERPRINT,
        ]
        .iter()
        .any(|a| other.annotations().get(*a).map(String::as_str) == Some(fingerprint))
            || other.status.as_ref().and_then(|s| s.fingerprint.as_deref()) == Some(fingerprint)
    };
    let first = |c: &CertificateAuthority| {
        (
            c.metadata.creation_timestamp.as_ref().map(|t| t.0),
            c.name_any(),
        )
    };
    others
        .iter()
        .map(|o| o.as_ref())
        .filter(|o| o.name_any() != ca.name_any() && holds(o))
        .filter(|o| first(o) < first(ca))
        .min_by_key(|o| first(o))
}

/// What is observed of the key that signs.
pub struct KeyObserved<'a> {
    pub ca: &'a CertificateAuthority,
    pub marks: &'a RotationMarks,
    /// Its Secret, in the operator's namespace `namespace`.
    pub secret_name: &'a str,
    pub namespace: &'a str,
    pub secret: Option<&'a BTreeMap<String, ByteString>>,
    /// The key pair the Secret holds, loaded; None when it holds none.
    pub loaded: Option<&'a Result<Arc<Authority>, PkiError>>,
    /// Every CertificateAuthority, as the store holds them.
    pub cas: &'a [Arc<CertificateAuthority>],
}

/// The key a pass signs with.
#[derive(Debug)]
pub enum KeyDecision {
    /// It cannot sign: the Ready condition says why.
    NotReady(Blocked),
    /// No key was ever made: create it (create-only).
    Create,
    /// This key.
    Sign(Arc<Authority>),
}

pub fn key(o: &KeyObserved) -> KeyDecision {
    let adopt =
        o.ca.spec
            .key_source
            .as_ref()
            .and_then(|k| k.adopt)
            .unwrap_or(false)
            && o.marks.signing == 0;
    let bound = o.marks.signing_fingerprint.as_deref();
    let previous_serial = o.ca.status.as_ref().and_then(|s| s.serial_number.as_ref());
    let created_before = bound
        .map(|fp| format!("fingerprint {fp}"))
        .or_else(|| previous_serial.map(|s| format!("serial {s}")));
    let not_ready = |reason, message| KeyDecision::NotReady(Blocked::new(reason, message, None));
    let source = decide_source(
        o.secret,
        o.secret_name,
        o.namespace,
        adopt,
        created_before.as_deref(),
    );
    let loaded = match (source, o.loaded) {
        (CaSource::Create, _) => return KeyDecision::Create,
        (CaSource::Unavailable { reason, message }, _) => return not_ready(reason, message),
        (CaSource::Existing { .. }, Some(loaded)) => loaded,
        // decide_source and the gather read the same pair: unreachable.
        (CaSource::Existing { .. }, None) => return KeyDecision::Create,
    };
    let authority = match loaded {
        Ok(a) => a,
        Err(e) => {
            let reason = match e {
                PkiError::CaExpired { .. } => Reason::CAExpired,
                _ => Reason::InvalidCASecret,
            };
            let message = format!("Secret {}/{}: {e}", o.namespace, o.secret_name);
            return not_ready(reason, message);
        }
    };
    let fingerprint = &authority.certificate().fingerprint;
    if let Err(e) = check_binding(bound, fingerprint) {
        return not_ready(Reason::CAKeyChanged, e.to_string());
    }
    if let Some(holder) = key_holder(o.ca, fingerprint, o.cas) {
        let message = format!(
            "Secret {}/{} holds the key of CertificateAuthority {}; two CAs never share a key (policies are per CA). Give this CA a key of its own (keySource.secretName)",
            o.namespace,
            o.secret_name,
            holder.name_any()
        );
        return not_ready(Reason::CAKeyInUse, message);
    }
    KeyDecision::Sign(authority.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ca_that_held_a_key_first_keeps_it() {
        let ca = |name: &str, created: i64, annotations: &[(&str, &str)]| {
            let spec = serde_json::from_value(serde_json::json!({"subject": {"commonName": name}}))
                .expect("spec");
            let mut c = CertificateAuthority::new(name, spec);
            c.metadata.creation_timestamp =
                Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                    crate::operator::conditions::to_timestamp(
                        chrono::DateTime::from_timestamp(created, 0).expect("time"),
                    ),
                ));
            c.metadata.annotations = Some(
                annotations
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            );
            std::sync::Arc::new(c)
        };
        let owner = ca("owner", 100, &[(meta::CA_FINGERPRINT, "aa")]);
        let rotating = ca("rotating", 50, &[(meta::CA_NEXT_FINGERPRINT, "bb")]);
        let alias = ca("alias", 200, &[]);
        let all = vec![owner.clone(), rotating.clone(), alias.clone()];
        let holder =
            |c: &CertificateAuthority, fp: &str| key_holder(c, fp, &all).map(|h| h.name_any());
        assert_eq!(holder(&alias, "aa").as_deref(), Some("owner"));
        assert_eq!(
            holder(&alias, "bb").as_deref(),
            Some("rotating"),
            "a staged key is held too"
        );
        assert_eq!(holder(&owner, "aa"), None, "its own key");
        assert_eq!(holder(&alias, "cc"), None, "a key nobody holds");
        // Created at the same time: the name decides, the same way for both.
        let twin = ca("a-twin", 100, &[(meta::CA_FINGERPRINT, "aa")]);
        let all = vec![owner.clone(), twin.clone()];
        assert_eq!(
            key_holder(&owner, "aa", &all)
                .map(|h| h.name_any())
                .as_deref(),
            Some("a-twin")
        );
        assert!(key_holder(&twin, "aa", &all).is_none());
    }

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
                reason: Reason::InvalidCASecret,
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
                reason: Reason::CASecretNotFound,
                ..
            }
        ));
        match decide_source(None, "s", "ns", false, Some("abcd")) {
            CaSource::Unavailable { reason, message } => {
                assert_eq!(reason, Reason::CASecretDeleted);
                assert!(
                    message.contains("abcd")
                        && message.contains("will not silently create")
                        && message.contains("from a backup"),
                    "{message}"
                );
            }
            other => panic!("a deleted CA Secret must not lead to {other:?}"),
        }
    }

    #[test]
    fn a_ca_is_bound_to_its_key() {
        assert!(check_binding(None, "AA").is_ok());
        assert!(check_binding(Some("AA"), "AA").is_ok());
        let refused = check_binding(Some("AA"), "BB").expect_err("another key is refused");
        assert_eq!(
            refused,
            BindingError {
                bound: "AA".into(),
                loaded: "BB".into()
            }
        );
        let message = refused.to_string();
        assert!(
            message.contains("AA") && message.contains("BB"),
            "{message}"
        );
    }

    /// A CertificateAuthority named `name`, created at `created` (Unix
    /// seconds), with `spec` over a minimal one and these annotations.
    fn ca_object(
        name: &str,
        created: i64,
        spec: serde_json::Value,
        annotations: &[(&str, &str)],
    ) -> CertificateAuthority {
        let mut full = serde_json::json!({"subject": {"commonName": name}});
        if let (Some(f), Some(extra)) = (full.as_object_mut(), spec.as_object()) {
            f.extend(extra.clone());
        }
        let annotations: BTreeMap<&str, &str> = annotations.iter().copied().collect();
        let created = chrono::DateTime::from_timestamp(created, 0).expect("time");
        serde_json::from_value(serde_json::json!({
            "apiVersion": "certop.dev/v1", "kind": "CertificateAuthority",
            "metadata": {"name": name, "annotations": annotations, "creationTimestamp": created},
            "spec": full,
        }))
        .expect("a CertificateAuthority")
    }

    #[derive(Debug, PartialEq)]
    enum Expect {
        Create,
        Sign,
        NotReady(Reason),
    }

    /// Every way to the key a pass signs with, one row each: what the
    /// Secret holds, how it loaded, what the CA is bound to, and who else
    /// holds the key.
    #[test]
    fn the_key_a_ca_signs_with_or_why_it_cannot_sign() {
        let own = Arc::new(
            Authority::create(&crate::pki::CaRequest::new("key"), chrono::Utc::now()).expect("CA"),
        );
        let fp = own.certificate().fingerprint.clone();
        let pair = data(&[("tls.crt", "C"), ("tls.key", "K")]);
        let no_pair = data(&[("other", "x")]);
        let expired: Result<Arc<Authority>, PkiError> = Err(PkiError::CaExpired {
            subject: "CN=key".into(),
            not_after: chrono::Utc::now(),
        });
        let unusable: Result<Arc<Authority>, PkiError> = Err(PkiError::CaSubjectUnsupported {
            subject: "O=a, O=b".into(),
            why: "two O".into(),
        });
        let loads: Result<Arc<Authority>, PkiError> = Ok(own.clone());
        let bound_here = [(meta::CA_FINGERPRINT, fp.as_str())];
        let adopt = serde_json::json!({"keySource": {"adopt": true}});
        let holder = Arc::new(ca_object("first", 10, serde_json::json!({}), &bound_here));
        let none: &[(&str, &str)] = &[];
        type Row<'a> = (
            &'a str,
            serde_json::Value,
            &'a [(&'a str, &'a str)],
            Option<&'a BTreeMap<String, ByteString>>,
            Option<&'a Result<Arc<Authority>, PkiError>>,
            bool,
            Expect,
        );
        let rows: Vec<Row> = vec![
            (
                "no Secret, none ever made",
                serde_json::json!({}),
                none,
                None,
                None,
                false,
                Expect::Create,
            ),
            (
                "no Secret to adopt",
                adopt.clone(),
                none,
                None,
                None,
                false,
                Expect::NotReady(Reason::CASecretNotFound),
            ),
            (
                "the bound key's Secret is gone",
                serde_json::json!({}),
                &[(meta::CA_FINGERPRINT, "AA")],
                None,
                None,
                false,
                Expect::NotReady(Reason::CASecretDeleted),
            ),
            (
                "a Secret without a key pair",
                serde_json::json!({}),
                none,
                Some(&no_pair),
                None,
                false,
                Expect::NotReady(Reason::InvalidCASecret),
            ),
            (
                "an expired CA",
                serde_json::json!({}),
                none,
                Some(&pair),
                Some(&expired),
                false,
                Expect::NotReady(Reason::CAExpired),
            ),
            (
                "a CA certop cannot sign with",
                serde_json::json!({}),
                none,
                Some(&pair),
                Some(&unusable),
                false,
                Expect::NotReady(Reason::InvalidCASecret),
            ),
            (
                "another key than the bound one",
                serde_json::json!({}),
                &[(meta::CA_FINGERPRINT, "AA")],
                Some(&pair),
                Some(&loads),
                false,
                Expect::NotReady(Reason::CAKeyChanged),
            ),
            (
                "a key an earlier CA holds",
                serde_json::json!({}),
                none,
                Some(&pair),
                Some(&loads),
                true,
                Expect::NotReady(Reason::CAKeyInUse),
            ),
            (
                "its own key, not yet bound",
                serde_json::json!({}),
                none,
                Some(&pair),
                Some(&loads),
                false,
                Expect::Sign,
            ),
            (
                "its own key, bound",
                serde_json::json!({}),
                &bound_here,
                Some(&pair),
                Some(&loads),
                false,
                Expect::Sign,
            ),
            (
                "an adopted key",
                adopt,
                none,
                Some(&pair),
                Some(&loads),
                false,
                Expect::Sign,
            ),
        ];
        for (case, spec, annotations, secret, loaded, held, expect) in rows {
            let ca = ca_object("ca", 100, spec, annotations);
            let marks = crate::core::rotation::stored_marks(ca.annotations(), None)
                .marks
                .expect("marks");
            let cas = if held {
                vec![holder.clone()]
            } else {
                Vec::new()
            };
            let decision = key(&KeyObserved {
                ca: &ca,
                marks: &marks,
                secret_name: "ca-ca",
                namespace: "certop-system",
                secret,
                loaded,
                cas: &cas,
            });
            let got = match &decision {
                KeyDecision::Create => Expect::Create,
                KeyDecision::Sign(a) => {
                    assert_eq!(a.certificate().fingerprint, fp, "{case}");
                    Expect::Sign
                }
                KeyDecision::NotReady(blocked) => {
                    assert!(
                        blocked.message.contains("certop-system/ca-ca")
                            || blocked.reason == Reason::CAKeyChanged,
                        "{case}: {}",
                        blocked.message
                    );
                    assert_eq!(blocked.retry, None, "{case}");
                    Expect::NotReady(blocked.reason)
                }
            };
            assert_eq!(got, expect, "{case}");
        }
    }
}
