//! Revocation the cluster enforces: kube-apiserver (and, through it, every
//! kubelet) asks certop's authorization webhook about each request made
//! with a client certificate, and certop refuses those whose certificate it
//! revoked. kube-apiserver names the certificate by the SHA-256 of its DER
//! in the request's credential id (`X509SHA256=<hex>`, Kubernetes 1.32+);
//! the index below maps those digests to what the ledger says of them.
//! Pure: the index is filled from ledger shards the operator watches.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use super::ledger::LedgerEntry;
use crate::api::RevocationReason;
use crate::pki::from_unix;

/// The user-info extra key under which kube-apiserver reports a request's
/// credential id.
pub const CREDENTIAL_ID_KEY: &str = "authentication.kubernetes.io/credential-id";

/// The credential-id prefix of an x509 client certificate.
pub const X509_PREFIX: &str = "X509SHA256=";

/// A revoked certificate as the webhook names it in a denial.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RevokedCredential {
    pub ca: String,
    /// Lower-case hex, as the ledger and the CRL write it.
    pub serial: String,
    pub reason: RevocationReason,
    pub revoked_at: DateTime<Utc>,
    /// Which shard said so: a shard's next version replaces what it said.
    shard: String,
}

/// Every revoked certificate of every CA certop runs, by SHA-256. Built
/// from the ledger shards (which every replica watches), so answering a
/// SubjectAccessReview costs one hash lookup and no API call.
#[derive(Clone, Debug, Default)]
pub struct RevokedCredentials {
    by_digest: HashMap<String, RevokedCredential>,
    by_shard: HashMap<String, Vec<String>>,
}

impl RevokedCredentials {
    /// Replaces what `shard` (a ledger ConfigMap of CA `ca`) said with its
    /// current entries: revoked ones with a recorded digest are held,
    /// everything else is dropped.
    pub fn replace_shard(&mut self, shard: &str, ca: &str, entries: &[LedgerEntry]) {
        self.remove_shard(shard);
        let mut held = Vec::new();
        for entry in entries {
            let (Some(revocation), Some(digest)) = (&entry.revoked, &entry.fingerprint) else {
                continue;
            };
            let digest = digest.to_ascii_lowercase();
            self.by_digest.insert(
                digest.clone(),
                RevokedCredential {
                    ca: ca.to_string(),
                    serial: entry.serial.clone(),
                    reason: revocation.reason,
                    revoked_at: from_unix(revocation.at),
                    shard: shard.to_string(),
                },
            );
            held.push(digest);
        }
        if !held.is_empty() {
            self.by_shard.insert(shard.to_string(), held);
        }
    }

    /// Forgets what a deleted shard said.
    pub fn remove_shard(&mut self, shard: &str) {
        for digest in self.by_shard.remove(shard).unwrap_or_default() {
            if self
                .by_digest
                .get(&digest)
                .is_some_and(|r| r.shard == shard)
            {
                self.by_digest.remove(&digest);
            }
        }
    }

    pub fn get(&self, sha256_hex: &str) -> Option<&RevokedCredential> {
        self.by_digest.get(&sha256_hex.to_ascii_lowercase())
    }

    pub fn len(&self) -> usize {
        self.by_digest.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_digest.is_empty()
    }
}

/// What the webhook answers. certop never allows: it only refuses, or has
/// no opinion and lets the next authorizer (Node, RBAC) decide.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    NoOpinion,
    Denied { reason: String },
}

/// The verdict on a request whose user info carries `credential_ids` (the
/// values of `CREDENTIAL_ID_KEY`): denied when any names a revoked
/// certificate.
pub fn review(credential_ids: &[String], revoked: &RevokedCredentials) -> Verdict {
    credential_ids
        .iter()
        .filter_map(|id| id.strip_prefix(X509_PREFIX))
        .find_map(|digest| revoked.get(digest))
        .map_or(Verdict::NoOpinion, |r| Verdict::Denied {
            reason: format!(
                "certop: the client certificate (serial {}, CertificateAuthority {}) was revoked ({}) at {}",
                r.serial,
                r.ca,
                r.reason.as_str(),
                r.revoked_at.to_rfc3339()
            ),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::ledger::Revocation;

    fn entry(serial: &str, digest: Option<&str>, revoked: bool) -> LedgerEntry {
        LedgerEntry {
            serial: serial.into(),
            issued_at: 0,
            not_after: 4_000_000_000,
            organizations: vec![],
            dns_names: vec![],
            ip_addresses: vec![],
            certificate: None,
            revoked: revoked.then_some(Revocation {
                at: 1_800_000_000,
                reason: RevocationReason::KeyCompromise,
            }),
            key: 0,
            fingerprint: digest.map(str::to_string),
        }
    }

    fn ids(digest: &str) -> Vec<String> {
        vec![format!("{X509_PREFIX}{digest}")]
    }

    #[test]
    fn only_revoked_certificates_with_a_recorded_digest_are_refused() {
        let mut index = RevokedCredentials::default();
        index.replace_shard(
            "s1",
            "cluster-ca",
            &[
                entry("0a", Some("aa"), true),
                entry("0b", Some("bb"), false),
                entry("0c", None, true),
            ],
        );
        assert_eq!(index.len(), 1);
        assert!(matches!(
            review(&ids("aa"), &index),
            Verdict::Denied { reason } if reason.contains("serial 0a")
                && reason.contains("CertificateAuthority cluster-ca")
                && reason.contains("keyCompromise")
        ));
        assert_eq!(review(&ids("AA"), &index), review(&ids("aa"), &index));
        assert_eq!(review(&ids("bb"), &index), Verdict::NoOpinion);
        assert_eq!(review(&[], &index), Verdict::NoOpinion);
    }

    #[test]
    fn only_x509_credential_ids_are_looked_up() {
        let mut index = RevokedCredentials::default();
        index.replace_shard("s1", "ca", &[entry("0a", Some("aa"), true)]);
        for other in ["aa", "JTI=aa", "X509SHA1=aa", "x509sha256=aa"] {
            assert_eq!(
                review(&[other.into()], &index),
                Verdict::NoOpinion,
                "{other}"
            );
        }
        let several = vec!["JTI=zz".to_string(), format!("{X509_PREFIX}aa")];
        assert_ne!(review(&several, &index), Verdict::NoOpinion);
    }

    #[test]
    fn a_shard_s_next_version_replaces_what_it_said_and_deletion_forgets_it() {
        let mut index = RevokedCredentials::default();
        index.replace_shard("s1", "ca", &[entry("0a", Some("aa"), true)]);
        index.replace_shard("s2", "ca", &[entry("0b", Some("bb"), true)]);
        assert_eq!(index.len(), 2);
        // The revocation of 0a expired out of its shard (pruned).
        index.replace_shard("s1", "ca", &[]);
        assert_eq!(review(&ids("aa"), &index), Verdict::NoOpinion);
        assert_ne!(review(&ids("bb"), &index), Verdict::NoOpinion);
        index.remove_shard("s2");
        assert!(index.is_empty());
        // Deleting a shard that said nothing is harmless.
        index.remove_shard("s3");
    }
}
