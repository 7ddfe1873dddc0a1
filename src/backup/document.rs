//! The backup's inner document (what the age file decrypts to): one JSON
//! object with a format name and version, where it was taken, and the
//! objects by role. Roles rather than one list so that restore writes them
//! in an order that never shows the operator a CA without its key, and so
//! that `age -d backup.age | jq .caKeySecrets` reads as it says.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The `format` field: what this document is.
pub const FORMAT: &str = "certop.dev/backup";
/// The newest format version this certop writes and reads. A later certop
/// reads every earlier version; an earlier certop refuses a later one.
pub const FORMAT_VERSION: u32 = 1;

/// What certop keeps in a backup, as restore writes it back.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Backup {
    pub format: String,
    pub version: u32,
    pub created_at: DateTime<Utc>,
    /// The certop (`certop --version`) that wrote it.
    pub certop_version: String,
    /// The operator's namespace the namespaced objects came from.
    pub namespace: String,
    #[serde(default)]
    pub ca_key_secrets: Vec<Value>,
    #[serde(default)]
    pub ledger_config_maps: Vec<Value>,
    #[serde(default)]
    pub crl_config_maps: Vec<Value>,
    #[serde(default)]
    pub certificate_authorities: Vec<Value>,
    #[serde(default)]
    pub certificate_secrets: Vec<Value>,
    #[serde(default)]
    pub cluster_certificates: Vec<Value>,
    #[serde(default)]
    pub certificate_revocations: Vec<Value>,
    #[serde(default)]
    pub certificate_policies: Vec<Value>,
}

/// A role an object plays in a backup. The order of the variants is the
/// order restore writes them in: keys, ledger and CRL state before the CAs
/// that use them, a certificate's Secret before the ClusterCertificate, so
/// that a running operator never creates a key or a certificate that the
/// backup holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    CaKeySecret,
    LedgerConfigMap,
    CrlConfigMap,
    CertificateAuthority,
    CertificateSecret,
    ClusterCertificate,
    CertificateRevocation,
    CertificatePolicy,
}

impl Role {
    /// Every role, in restore order.
    pub const RESTORE_ORDER: [Role; 8] = [
        Role::CaKeySecret,
        Role::LedgerConfigMap,
        Role::CrlConfigMap,
        Role::CertificateAuthority,
        Role::CertificateSecret,
        Role::ClusterCertificate,
        Role::CertificateRevocation,
        Role::CertificatePolicy,
    ];

    pub fn kind(self) -> &'static str {
        match self {
            Role::CaKeySecret | Role::CertificateSecret => "Secret",
            Role::LedgerConfigMap | Role::CrlConfigMap => "ConfigMap",
            Role::CertificateAuthority => "CertificateAuthority",
            Role::ClusterCertificate => "ClusterCertificate",
            Role::CertificateRevocation => "CertificateRevocation",
            Role::CertificatePolicy => "CertificatePolicy",
        }
    }

    /// The resource's plural, as the API server's paths name it.
    pub fn plural(self) -> &'static str {
        match self {
            Role::CaKeySecret | Role::CertificateSecret => "secrets",
            Role::LedgerConfigMap | Role::CrlConfigMap => "configmaps",
            Role::CertificateAuthority => "certificateauthorities",
            Role::ClusterCertificate => "clustercertificates",
            Role::CertificateRevocation => "certificaterevocations",
            Role::CertificatePolicy => "certificatepolicies",
        }
    }

    /// certop's own kinds: cluster-scoped.
    pub fn is_custom_resource(self) -> bool {
        !matches!(
            self,
            Role::CaKeySecret
                | Role::CertificateSecret
                | Role::LedgerConfigMap
                | Role::CrlConfigMap
        )
    }

    /// Kinds with a status subresource: their status is written apart
    /// from the object (a CertificatePolicy has none).
    pub fn has_status(self) -> bool {
        self.is_custom_resource() && self != Role::CertificatePolicy
    }

    /// Objects that live in the operator's namespace (restored into the
    /// target's, whatever the source's was called).
    pub fn in_operator_namespace(self) -> bool {
        matches!(
            self,
            Role::CaKeySecret | Role::LedgerConfigMap | Role::CrlConfigMap
        )
    }
}

impl Backup {
    pub fn objects(&self, role: Role) -> &[Value] {
        match role {
            Role::CaKeySecret => &self.ca_key_secrets,
            Role::LedgerConfigMap => &self.ledger_config_maps,
            Role::CrlConfigMap => &self.crl_config_maps,
            Role::CertificateAuthority => &self.certificate_authorities,
            Role::CertificateSecret => &self.certificate_secrets,
            Role::ClusterCertificate => &self.cluster_certificates,
            Role::CertificateRevocation => &self.certificate_revocations,
            Role::CertificatePolicy => &self.certificate_policies,
        }
    }

    pub fn objects_mut(&mut self, role: Role) -> &mut Vec<Value> {
        match role {
            Role::CaKeySecret => &mut self.ca_key_secrets,
            Role::LedgerConfigMap => &mut self.ledger_config_maps,
            Role::CrlConfigMap => &mut self.crl_config_maps,
            Role::CertificateAuthority => &mut self.certificate_authorities,
            Role::CertificateSecret => &mut self.certificate_secrets,
            Role::ClusterCertificate => &mut self.cluster_certificates,
            Role::CertificateRevocation => &mut self.certificate_revocations,
            Role::CertificatePolicy => &mut self.certificate_policies,
        }
    }

    /// The document as written inside the encrypted file.
    pub fn to_json(&self) -> Result<Vec<u8>, DocumentError> {
        serde_json::to_vec_pretty(self).map_err(|e| DocumentError::Malformed(e.to_string()))
    }

    /// Reads a document, refusing one of another format or of a later
    /// version (whose meaning this certop cannot know) before anything else.
    pub fn from_json(bytes: &[u8]) -> Result<Backup, DocumentError> {
        #[derive(Deserialize)]
        struct Header {
            format: Option<String>,
            version: Option<u32>,
        }
        let header: Header =
            serde_json::from_slice(bytes).map_err(|e| DocumentError::Malformed(e.to_string()))?;
        if header.format.as_deref() != Some(FORMAT) {
            return Err(DocumentError::NotABackup(header.format));
        }
        match header.version {
            Some(v) if (1..=FORMAT_VERSION).contains(&v) => {}
            other => return Err(DocumentError::UnknownVersion(other)),
        }
        serde_json::from_slice(bytes).map_err(|e| DocumentError::Malformed(e.to_string()))
    }
}

/// A decrypted document certop cannot restore from.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum DocumentError {
    #[error(
        "the decrypted file is not a certop backup (format {0:?}, expected \"certop.dev/backup\")"
    )]
    NotABackup(Option<String>),
    #[error(
        "the backup has format version {0:?}; this certop reads versions 1 to {FORMAT_VERSION}: restore it with the certop that wrote it, or a later one"
    )]
    UnknownVersion(Option<u32>),
    #[error("the backup's document cannot be read: {0}")]
    Malformed(String),
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_document_is_read_only_when_its_format_and_version_are_known() {
        let doc = |v: Value| serde_json::to_vec(&v).expect("json");
        let base = json!({"format": FORMAT, "version": 1, "createdAt": "2026-12-06T00:00:00Z",
                          "certopVersion": "0.1.0", "namespace": "certop-system"});
        let cases: Vec<(&str, Value, Result<(), DocumentError>)> = vec![
            ("version 1", base.clone(), Ok(())),
            (
                "a later version",
                json!({"format": FORMAT, "version": FORMAT_VERSION + 1}),
                Err(DocumentError::UnknownVersion(Some(FORMAT_VERSION + 1))),
            ),
            (
                "no version",
                json!({"format": FORMAT}),
                Err(DocumentError::UnknownVersion(None)),
            ),
            (
                "another format",
                json!({"format": "velero", "version": 1}),
                Err(DocumentError::NotABackup(Some("velero".into()))),
            ),
        ];
        for (name, value, want) in cases {
            assert_eq!(Backup::from_json(&doc(value)).map(|_| ()), want, "{name}");
        }
        let mut written = Backup::from_json(&doc(base)).expect("read");
        written
            .objects_mut(Role::CertificateAuthority)
            .push(json!({"kind": "CertificateAuthority"}));
        let again = Backup::from_json(&written.to_json().expect("json")).expect("read");
        assert_eq!(again, written);
    }

    /// A document of format version 1, written by hand with every role
    /// and its custom resources as `v1alpha1`: every later certop must
    /// read it (tests/fixtures/backup-v1.json is never edited; a new
    /// version gets a file of its own). One `kubectl certop backup` wrote
    /// from a cluster is restored in `backup::written`.
    #[test]
    fn a_version_1_document_stays_readable() {
        let fixture = include_bytes!("../../tests/fixtures/backup-v1.json");
        let backup = Backup::from_json(fixture).expect("version 1 reads");
        assert_eq!(backup.version, 1);
        for role in Role::RESTORE_ORDER {
            assert_eq!(backup.objects(role).len(), 1, "{role:?}");
        }
        let ca: crate::api::CertificateAuthority =
            serde_json::from_value(backup.certificate_authorities[0].clone()).expect("CA");
        assert_eq!(ca.spec.subject.common_name, "cluster");
    }

    #[test]
    fn keys_and_state_are_restored_before_what_uses_them() {
        let at = |r| {
            Role::RESTORE_ORDER
                .iter()
                .position(|x| *x == r)
                .expect("role")
        };
        assert!(at(Role::CaKeySecret) < at(Role::CertificateAuthority));
        assert!(at(Role::LedgerConfigMap) < at(Role::CertificateAuthority));
        assert!(at(Role::CrlConfigMap) < at(Role::CertificateAuthority));
        assert!(at(Role::CertificateSecret) < at(Role::ClusterCertificate));
        assert!(at(Role::CertificateAuthority) < at(Role::ClusterCertificate));
        let mut sorted = Role::RESTORE_ORDER;
        sorted.sort();
        assert_eq!(sorted, Role::RESTORE_ORDER);
    }
}
