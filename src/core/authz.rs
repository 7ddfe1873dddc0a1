//! Revocation the cluster enforces: kube-apiserver (and, through it, every
//! kubelet) asks certop's authorization webhook about each request made
//! with a client certificate, and certop refuses those whose certificate it
//! revoked. kube-apiserver names the certificate by the SHA-256 of its DER
//! in the request's credential id (`X509SHA256=<hex>`, Kubernetes 1.32+);
//! the index below maps those digests to what the ledger says of them.
//! Pure: the index is filled from ledger shards the operator watches.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use chrono::{DateTime, Utc};
use kube::ResourceExt;

use super::ledger::LedgerEntry;
use crate::api::{ApiServerEnforcement, CertificateRevocation, RevocationReason};
use crate::pki::{SerialNumber, from_unix, parse_pem_certificate};

/// The user-info extra key under which kube-apiserver reports a request's
/// credential id.
pub const CREDENTIAL_ID_KEY: &str = "authentication.kubernetes.io/credential-id";

/// The credential-id prefix of an x509 client certificate.
pub const X509_PREFIX: &str = "X509SHA256=";

/// The group kube-apiserver lets through before it asks any authorizer
/// (its privileged-group short circuit): no webhook sees, let alone
/// refuses, a request made by one of its members.
pub const PRIVILEGED_GROUP: &str = "system:masters";

/// Whether a certificate with these subject organizations (groups) is
/// beyond any authorization webhook, revoked or not.
pub fn bypasses_authorization(organizations: &[String]) -> bool {
    organizations.iter().any(|o| o == PRIVILEGED_GROUP)
}

/// A revoked certificate as the webhook names it in a denial.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RevokedCredential {
    pub ca: String,
    /// Lower-case hex, as the ledger and the CRL write it.
    pub serial: String,
    pub reason: RevocationReason,
    pub revoked_at: DateTime<Utc>,
}

/// A CertificateRevocation's `status.apiServer` as a replica saw it, with
/// the resourceVersion a write over it must name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reported {
    pub resource_version: Option<String>,
    pub api_server: Option<ApiServerEnforcement>,
}

/// Where the index learns of revoked digests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceKind {
    /// A ledger shard: certificates certop issued and revoked.
    Shard,
    /// A CertificateRevocation's `spec.certificateSHA256s`.
    Revocation,
}

impl SourceKind {
    fn prefix(self) -> &'static str {
        match self {
            SourceKind::Shard => "shard/",
            SourceKind::Revocation => "revocation/",
        }
    }
}

/// Every revoked certificate of every CA certop runs, by SHA-256. Built
/// from the ledger shards and the CertificateRevocations that name digests
/// (both of which every replica watches), so answering a
/// SubjectAccessReview costs one hash lookup and no API call. Each source
/// (a shard, a revocation) is replaced whole by its next version. A digest
/// stays refused while any source names it: the ledger entry that
/// `kubectl certop revoke --cert` marks and the revocation itself both do,
/// and deleting the revocation does not un-revoke the entry.
#[derive(Clone, Debug, Default)]
pub struct RevokedCredentials {
    /// Which CertificateRevocations revoked a certificate (CA, normalized
    /// serial): from their `spec.serialNumbers` and `status.revoked`, so a
    /// denial of a certificate the ledger records is told to its
    /// revocation.
    by_serial: HashMap<(String, String), BTreeSet<String>>,
    /// What each CertificateRevocation said of its serials, to forget it.
    serials_of: HashMap<String, Vec<(String, String)>>,
    /// What each CertificateRevocation's `status.apiServer` says, and its
    /// resourceVersion: what a replica's report is merged into.
    reported: HashMap<String, Reported>,
    /// Ledger shards that could not be parsed: what they record is refused
    /// only if this replica read them before (they keep that state).
    unreadable: HashSet<String>,
    by_digest: HashMap<String, BTreeMap<String, RevokedCredential>>,
    by_source: HashMap<String, Vec<String>>,
}

impl RevokedCredentials {
    /// Replaces what `shard` (a ledger ConfigMap of CA `ca`) said with its
    /// current entries: revoked ones with a recorded digest are held,
    /// everything else is dropped.
    pub fn replace_shard(&mut self, shard: &str, ca: &str, entries: &[LedgerEntry]) {
        self.unreadable.remove(shard);
        let revoked = entries.iter().filter_map(|entry| {
            let (revocation, digest) = (entry.revoked.as_ref()?, entry.fingerprint.as_ref()?);
            Some((
                digest.clone(),
                RevokedCredential {
                    ca: ca.to_string(),
                    serial: entry.serial.clone(),
                    reason: revocation.reason,
                    revoked_at: from_unix(revocation.at),
                },
            ))
        });
        self.replace_source(&format!("{}{shard}", SourceKind::Shard.prefix()), revoked);
    }

    /// Replaces what a CertificateRevocation said: the digests it names
    /// (`spec.certificateSHA256s`) and those of the certificates it holds
    /// (`spec.certificates`, each with its own serial), revoked since it was
    /// created. One being deleted says nothing.
    pub fn replace_revocation(&mut self, revocation: &CertificateRevocation) {
        let source = format!(
            "{}{}",
            SourceKind::Revocation.prefix(),
            revocation.name_any()
        );
        if revocation.metadata.deletion_timestamp.is_some() {
            self.remove_source(&source);
            self.forget_attribution(&revocation.name_any());
            return;
        }
        let spec = &revocation.spec;
        self.attribute(revocation);
        let serial = match spec.serial_numbers.as_slice() {
            [one] => one.to_ascii_lowercase(),
            _ => "unknown".to_string(),
        };
        let revoked_at = revocation
            .metadata
            .creation_timestamp
            .as_ref()
            .and_then(|t| DateTime::from_timestamp(t.0.as_second(), 0))
            .unwrap_or(DateTime::<Utc>::MIN_UTC);
        let credential = RevokedCredential {
            ca: spec.issuer_ref.name.clone(),
            serial,
            reason: spec.reason.unwrap_or_default(),
            revoked_at,
        };
        let held = spec.certificates.iter().filter_map(|pem| {
            let cert = parse_pem_certificate(pem.as_bytes(), "spec.certificates").ok()?;
            let named = RevokedCredential {
                serial: cert.serial.to_string(),
                ..credential.clone()
            };
            Some((cert.sha256_hex(), named))
        });
        // A digest named both ways keeps the held certificate's serial
        // (the later pairing of a digest replaces the earlier).
        let revoked: Vec<(String, RevokedCredential)> = spec
            .certificate_sha256s
            .iter()
            .map(|digest| (digest.clone(), credential.clone()))
            .chain(held)
            .collect();
        self.replace_source(&source, revoked.into_iter());
    }

    /// Forgets what a deleted CertificateRevocation said.
    pub fn remove_revocation(&mut self, name: &str) {
        self.remove_source(&format!("{}{name}", SourceKind::Revocation.prefix()));
        self.forget_attribution(name);
    }

    /// What a CertificateRevocation's status reports of the API server,
    /// as this replica last saw it.
    pub fn reported(&self, name: &str) -> Option<&Reported> {
        self.reported.get(name)
    }

    /// Records which serials of its CA a revocation revoked.
    fn attribute(&mut self, revocation: &CertificateRevocation) {
        let name = revocation.name_any();
        self.forget_attribution(&name);
        self.reported.insert(
            name.clone(),
            Reported {
                resource_version: revocation.resource_version(),
                api_server: revocation
                    .status
                    .as_ref()
                    .and_then(|s| s.api_server.clone()),
            },
        );
        let ca = &revocation.spec.issuer_ref.name;
        let recorded = revocation
            .status
            .iter()
            .flat_map(|s| s.revoked.iter().map(|r| &r.serial_number));
        let serials: BTreeSet<(String, String)> = revocation
            .spec
            .serial_numbers
            .iter()
            .chain(recorded)
            .map(|s| (ca.clone(), normalized_serial(s)))
            .collect();
        for key in &serials {
            self.by_serial
                .entry(key.clone())
                .or_default()
                .insert(name.clone());
        }
        self.serials_of.insert(name, serials.into_iter().collect());
    }

    fn forget_attribution(&mut self, name: &str) {
        self.reported.remove(name);
        for key in self.serials_of.remove(name).unwrap_or_default() {
            if let Some(names) = self.by_serial.get_mut(&key) {
                names.remove(name);
                if names.is_empty() {
                    self.by_serial.remove(&key);
                }
            }
        }
    }

    /// The CertificateRevocations that revoked a digest: those naming it,
    /// and those that revoked the serial a ledger shard records for it.
    pub fn revocations_of(&self, sha256_hex: &str) -> BTreeSet<String> {
        let Some(sources) = self.by_digest.get(&sha256_hex.to_ascii_lowercase()) else {
            return BTreeSet::new();
        };
        self.attributed(sources)
    }

    fn attributed(&self, sources: &BTreeMap<String, RevokedCredential>) -> BTreeSet<String> {
        let mut names = BTreeSet::new();
        for (source, credential) in sources {
            if let Some(name) = source.strip_prefix(SourceKind::Revocation.prefix()) {
                names.insert(name.to_string());
            }
            let key = (credential.ca.clone(), normalized_serial(&credential.serial));
            names.extend(self.by_serial.get(&key).into_iter().flatten().cloned());
        }
        names
    }

    /// Every CertificateRevocation at least one of whose certificates this
    /// index refuses: those whose enforcement a review shows.
    pub fn enforced_revocations(&self) -> BTreeSet<String> {
        let mut names = BTreeSet::new();
        for sources in self.by_digest.values() {
            names.extend(self.attributed(sources));
        }
        names
    }

    /// A shard that cannot be parsed: it keeps what it said before (if
    /// anything) and is counted until it can be read or is deleted.
    pub fn mark_unreadable(&mut self, shard: &str) {
        self.unreadable.insert(shard.to_string());
    }

    /// How many ledger shards could not be read: their revoked
    /// certificates may be let through.
    pub fn unreadable_shards(&self) -> usize {
        self.unreadable.len()
    }

    /// Forgets what a deleted shard said.
    pub fn remove_shard(&mut self, shard: &str) {
        self.unreadable.remove(shard);
        self.remove_source(&format!("{}{shard}", SourceKind::Shard.prefix()));
    }

    /// After a full listing of ledger shards (or of revocations): forgets
    /// those of that kind the listing no longer had, deleted while no watch
    /// was looking.
    pub fn keep_only(&mut self, kind: SourceKind, listed: &HashSet<String>) {
        match kind {
            SourceKind::Shard => self.unreadable.retain(|shard| listed.contains(shard)),
            SourceKind::Revocation => {
                let gone: Vec<String> = self
                    .serials_of
                    .keys()
                    .chain(self.reported.keys())
                    .filter(|name| !listed.contains(*name))
                    .cloned()
                    .collect();
                for name in gone {
                    self.forget_attribution(&name);
                    self.reported.remove(&name);
                }
            }
        }
        let prefix = kind.prefix();
        let gone: Vec<String> = self
            .by_source
            .keys()
            .filter(|s| {
                s.strip_prefix(prefix)
                    .is_some_and(|name| !listed.contains(name))
            })
            .cloned()
            .collect();
        for source in gone {
            self.remove_source(&source);
        }
    }

    fn replace_source(
        &mut self,
        source: &str,
        revoked: impl Iterator<Item = (String, RevokedCredential)>,
    ) {
        self.remove_source(source);
        let mut held = Vec::new();
        for (digest, credential) in revoked {
            let digest = digest.to_ascii_lowercase();
            self.by_digest
                .entry(digest.clone())
                .or_default()
                .insert(source.to_string(), credential);
            held.push(digest);
        }
        if !held.is_empty() {
            self.by_source.insert(source.to_string(), held);
        }
    }

    fn remove_source(&mut self, source: &str) {
        for digest in self.by_source.remove(source).unwrap_or_default() {
            if let Some(sources) = self.by_digest.get_mut(&digest) {
                sources.remove(source);
                if sources.is_empty() {
                    self.by_digest.remove(&digest);
                }
            }
        }
    }

    /// What the first source (by name: a revocation's `revocation/`
    /// before a ledger `shard/`) says of a revoked digest.
    pub fn get(&self, sha256_hex: &str) -> Option<&RevokedCredential> {
        self.by_digest
            .get(&sha256_hex.to_ascii_lowercase())
            .and_then(|sources| sources.values().next())
    }

    pub fn len(&self) -> usize {
        self.by_digest.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_digest.is_empty()
    }
}

/// A serial as the ledger writes it (lower-case hex, no padding).
fn normalized_serial(serial: &str) -> String {
    SerialNumber::from_hex(serial).map_or_else(|| serial.to_ascii_lowercase(), |s| s.to_string())
}

/// What the webhook answers. certop never allows: it only refuses, or has
/// no opinion and lets the next authorizer (Node, RBAC) decide.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    NoOpinion,
    Denied {
        reason: String,
        /// The refused certificate's SHA-256 (lower-case hex): what the
        /// webhook notes, to tell the refusal to the revocations that
        /// revoked it later, off the request's path (`revocations_of`).
        digest: String,
    },
}

/// The verdict on a request whose user info carries `credential_ids` (the
/// values of `CREDENTIAL_ID_KEY`): denied when any names a revoked
/// certificate.
pub fn review(credential_ids: &[String], revoked: &RevokedCredentials) -> Verdict {
    credential_ids
        .iter()
        .filter_map(|id| id.strip_prefix(X509_PREFIX))
        .find_map(|digest| Some((digest, revoked.get(digest)?)))
        .map_or(Verdict::NoOpinion, |(digest, r)| Verdict::Denied {
            digest: digest.to_ascii_lowercase(),
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
pub(crate) mod tests {
    use super::*;
    use crate::core::ledger::Revocation;

    /// A ledger entry as certop writes it, revoked or not, with a digest or not.
    pub(crate) fn entry(serial: &str, digest: Option<&str>, revoked: bool) -> LedgerEntry {
        LedgerEntry {
            serial: serial.into(),
            issued_at: 0,
            not_after: 4_000_000_000,
            organizations: vec![],
            dns_names: vec![],
            ip_addresses: vec![],
            uris: vec![],
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
            Verdict::Denied { reason, .. } if reason.contains("serial 0a")
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
    fn a_revocation_naming_digests_refuses_them_until_it_is_deleted() {
        use crate::api::{CertificateRevocationSpec, IssuerRef};
        let mut rev = CertificateRevocation::new(
            "leaked-admin-conf",
            CertificateRevocationSpec {
                issuer_ref: IssuerRef {
                    name: "kubernetes".into(),
                },
                reason: Some(RevocationReason::KeyCompromise),
                serial_numbers: vec!["0A1B".into()],
                certificate_sha256s: vec!["CC".into()],
                ..Default::default()
            },
        );
        let mut index = RevokedCredentials::default();
        index.replace_shard("s1", "kubernetes", &[entry("0a", Some("aa"), true)]);
        index.replace_revocation(&rev);
        assert!(matches!(
            review(&ids("cc"), &index),
            Verdict::Denied { reason, .. } if reason.contains("serial 0a1b")
                && reason.contains("CertificateAuthority kubernetes")
        ));
        assert_eq!(index.len(), 2);
        rev.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
            ));
        index.replace_revocation(&rev);
        assert_eq!(review(&ids("cc"), &index), Verdict::NoOpinion);
        rev.metadata.deletion_timestamp = None;
        index.replace_revocation(&rev);
        index.remove_revocation("leaked-admin-conf");
        assert_eq!(review(&ids("cc"), &index), Verdict::NoOpinion);
        assert_ne!(
            review(&ids("aa"), &index),
            Verdict::NoOpinion,
            "the ledger's entry stays"
        );
    }

    #[test]
    fn a_revocation_holding_certificates_names_each_by_its_own_serial() {
        use crate::api::{CertificateRevocationSpec, IssuerRef};
        use crate::pki::fixtures;
        let ca = fixtures::authority("kubernetes");
        let (one, two) = (
            crate::pki::fixtures::leaf(&ca, "one.example"),
            crate::pki::fixtures::leaf(&ca, "two.example"),
        );
        let rev = CertificateRevocation::new(
            "two-leaks",
            CertificateRevocationSpec {
                issuer_ref: IssuerRef {
                    name: "kubernetes".into(),
                },
                certificates: vec![one.to_pem(), two.to_pem(), "not PEM".into()],
                certificate_sha256s: vec![one.sha256_hex().to_uppercase()],
                ..Default::default()
            },
        );
        let mut index = RevokedCredentials::default();
        index.replace_revocation(&rev);
        assert_eq!(index.len(), 2, "one digest named twice, and the other");
        for cert in [&one, &two] {
            let serial = format!("serial {}", cert.serial);
            assert!(
                matches!(review(&ids(&cert.sha256_hex()), &index),
                    Verdict::Denied { ref reason, .. } if reason.contains(&serial)),
                "{serial}"
            );
        }
    }

    #[test]
    fn a_digest_two_sources_name_stays_refused_until_neither_does() {
        use crate::api::{CertificateRevocationSpec, IssuerRef};
        // `kubectl certop revoke --cert` of a certificate certop issued:
        // the revocation names its digest, and the ledger entry it marks
        // records the same one. Deleting the revocation (or a second one
        // naming the digest) must not forget what the ledger still says.
        let revocation = |name: &str| {
            CertificateRevocation::new(
                name,
                CertificateRevocationSpec {
                    issuer_ref: IssuerRef { name: "ca".into() },
                    serial_numbers: vec!["0a".into()],
                    certificate_sha256s: vec!["aa".into()],
                    ..Default::default()
                },
            )
        };
        let mut index = RevokedCredentials::default();
        index.replace_shard("s1", "ca", &[entry("0a", Some("aa"), true)]);
        index.replace_revocation(&revocation("by-file"));
        index.replace_revocation(&revocation("by-file-again"));
        index.remove_revocation("by-file");
        assert_ne!(
            review(&ids("aa"), &index),
            Verdict::NoOpinion,
            "the ledger and another revocation still name it"
        );
        index.remove_revocation("by-file-again");
        assert_ne!(
            review(&ids("aa"), &index),
            Verdict::NoOpinion,
            "the ledger still marks it revoked"
        );
        // The other order: the shard is re-read (a new entry), then the
        // revocation names the digest again and the shard's entry is pruned.
        index.replace_revocation(&revocation("by-file"));
        index.replace_shard(
            "s1",
            "ca",
            &[
                entry("0a", Some("aa"), true),
                entry("0b", Some("bb"), false),
            ],
        );
        index.replace_shard("s1", "ca", &[]);
        assert_ne!(
            review(&ids("aa"), &index),
            Verdict::NoOpinion,
            "the revocation still names it"
        );
        assert_eq!(index.len(), 1);
        index.remove_revocation("by-file");
        assert!(index.is_empty());
    }

    #[test]
    fn a_refusal_is_told_to_the_revocations_that_revoked_the_certificate() {
        use crate::api::{
            CertificateRevocationSpec, CertificateRevocationStatus, IssuerRef, RevokedSerial,
        };
        let revocation =
            |name: &str, ca: &str, serials: &[&str], recorded: &[&str], digests: &[&str]| {
                let mut r = CertificateRevocation::new(
                    name,
                    CertificateRevocationSpec {
                        issuer_ref: IssuerRef { name: ca.into() },
                        serial_numbers: serials.iter().map(|s| s.to_string()).collect(),
                        certificate_sha256s: digests.iter().map(|s| s.to_string()).collect(),
                        ..Default::default()
                    },
                );
                r.status = Some(CertificateRevocationStatus {
                    revoked: recorded
                        .iter()
                        .map(|s| RevokedSerial {
                            serial_number: s.to_string(),
                            reason: RevocationReason::KeyCompromise,
                            revoked_at: DateTime::UNIX_EPOCH,
                            not_after: DateTime::UNIX_EPOCH,
                            key: 0,
                        })
                        .collect(),
                    ..Default::default()
                });
                r
            };
        let mut index = RevokedCredentials::default();
        index.replace_shard(
            "s1",
            "ca",
            &[
                entry("0a", Some("aa"), true),
                entry("0b", Some("bb"), true),
                entry("0c", Some("cc"), true),
            ],
        );
        index.replace_shard("s2", "other", &[entry("0d", Some("dd"), true)]);
        // By serial (spec, written with padding and in upper case), by a
        // rule (its status's record), by digest (revoke --cert); a serial
        // of another CA is not theirs.
        index.replace_revocation(&revocation("by-name", "ca", &["000A"], &[], &[]));
        index.replace_revocation(&revocation("by-rule", "ca", &[], &["0a", "0b"], &[]));
        index.replace_revocation(&revocation("by-file", "ca", &["0e"], &[], &["ee"]));
        index.replace_revocation(&revocation("wrong-ca", "ca", &["0d"], &[], &[]));
        let names = |index: &RevokedCredentials, digest: &str| -> Vec<String> {
            match review(&ids(&digest.to_ascii_uppercase()), index) {
                Verdict::Denied { digest, .. } => {
                    index.revocations_of(&digest).into_iter().collect()
                }
                Verdict::NoOpinion => vec!["(no opinion)".into()],
            }
        };
        // (digest, the revocations its refusal is told to)
        let rows: [(&str, &[&str]); 5] = [
            ("aa", &["by-name", "by-rule"]),
            ("bb", &["by-rule"]),
            ("cc", &[]),
            ("dd", &[]),
            ("ee", &["by-file"]),
        ];
        for (digest, expected) in rows {
            assert_eq!(names(&index, digest), expected, "{digest}");
        }
        assert_eq!(
            index.enforced_revocations().into_iter().collect::<Vec<_>>(),
            ["by-file", "by-name", "by-rule"]
        );
        assert!(index.reported("wrong-ca").is_some());
        // Deleted, or gone from a relisting: forgotten.
        index.remove_revocation("by-name");
        assert_eq!(names(&index, "aa"), ["by-rule"]);
        index.keep_only(
            SourceKind::Revocation,
            &HashSet::from(["by-file".to_string()]),
        );
        assert_eq!(names(&index, "aa"), Vec::<String>::new());
        assert!(index.reported("by-rule").is_none() && index.reported("wrong-ca").is_none());
        assert_eq!(names(&index, "ee"), ["by-file"]);
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
