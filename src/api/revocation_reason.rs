//! The revocation reasons of RFC 5280 as the API spells them: a field of
//! CertificateRevocation and of a ClusterCertificate's revocation record,
//! and what `pki` writes into a CRL entry.

use serde::{Deserialize, Serialize};

/// RFC 5280 §5.3.1 reason codes certop records (removeFromCRL and
/// privilegeWithdrawn/aACompromise are for delta CRLs and attribute
/// certificates, which certop does not issue).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub enum RevocationReason {
    #[default]
    Unspecified,
    KeyCompromise,
    CaCompromise,
    AffiliationChanged,
    Superseded,
    CessationOfOperation,
    CertificateHold,
}

impl RevocationReason {
    pub const ALL: [RevocationReason; 7] = [
        RevocationReason::Unspecified,
        RevocationReason::KeyCompromise,
        RevocationReason::CaCompromise,
        RevocationReason::AffiliationChanged,
        RevocationReason::Superseded,
        RevocationReason::CessationOfOperation,
        RevocationReason::CertificateHold,
    ];

    /// The name used in manifests and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            RevocationReason::Unspecified => "unspecified",
            RevocationReason::KeyCompromise => "keyCompromise",
            RevocationReason::CaCompromise => "caCompromise",
            RevocationReason::AffiliationChanged => "affiliationChanged",
            RevocationReason::Superseded => "superseded",
            RevocationReason::CessationOfOperation => "cessationOfOperation",
            RevocationReason::CertificateHold => "certificateHold",
        }
    }
}
