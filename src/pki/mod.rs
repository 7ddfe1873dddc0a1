//! The PKI core: key generation, certificate authorities, issuance from a
//! spec, inspection and CRLs. Pure and synchronous: no Kubernetes, no async,
//! so every decision can be tested without a cluster.

mod authority;
mod crl;
mod error;
mod inspect;
mod issue;
mod key;
mod profile;
mod serial;
#[cfg(test)]
mod tests;

pub use authority::{Authority, CaRequest, DEFAULT_CA_LIFETIME_HOURS};
pub use crl::{
    CrlRequest, ParsedCrl, RevocationReason, RevokedEntry, SignedCrl, build_crl, parse_crl,
};
pub use error::PkiError;
pub use inspect::{CertificateInfo, parse_chain, parse_pem_certificate};
pub use issue::{IssuedCertificate, issue, issue_for_request};
pub use key::{PrivateKey, key_algorithm_of as key_algorithm_of_spki, key_matches_certificate};
pub use profile::{LeafTemplate, SpecField, profile_name, usage_name};
pub use serial::{SerialNumber, fingerprint};

use chrono::{DateTime, TimeZone, Utc};

/// X.509 times have one-second resolution: certop truncates to it so that
/// what it records equals what the certificate says.
pub(crate) fn to_x509_time(t: DateTime<Utc>) -> Result<time::OffsetDateTime, PkiError> {
    time::OffsetDateTime::from_unix_timestamp(t.timestamp())
        .map_err(|_| PkiError::TimeOutOfRange(t))
}

pub fn from_unix(seconds: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(seconds, 0)
        .single()
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// Truncates to whole seconds, the resolution of X.509 validity.
pub fn whole_seconds(t: DateTime<Utc>) -> DateTime<Utc> {
    from_unix(t.timestamp())
}
