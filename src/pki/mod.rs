//! The PKI core: key generation, certificate authorities, issuance from a
//! spec, inspection and CRLs. Pure and synchronous: no Kubernetes, no async,
//! so every decision can be tested without a cluster.

mod authority;
mod crl;
mod error;
#[cfg(test)]
pub mod fixtures;
mod inspect;
mod issue;
mod key;
mod profile;
mod serial;
#[cfg(test)]
mod tests;

/// The reason codes a CRL entry carries are the API's own.
pub use crate::api::RevocationReason;
pub use authority::{Authority, CaRequest};
pub use crl::{CrlRequest, ParsedCrl, RevokedEntry, SignedCrl, build_crl, parse_crl};
pub use error::PkiError;
pub(crate) use inspect::pem_encode;
pub use inspect::{CertificateInfo, parse_chain, parse_pem_certificate};
pub use issue::{IssuedCertificate, issue, issue_for_public_key, issue_for_request};
pub use key::{PrivateKey, key_algorithm_of as key_algorithm_of_spki, key_matches_certificate};
pub use profile::{
    DEFAULT_SERVICE_CIDR, LeafTemplate, SpecField, check_dns_name, profile_fixes_subject,
    profile_name, usage_name,
};
pub use serial::{SerialNumber, fingerprint};

use chrono::{DateTime, TimeZone, Utc};

/// How far notBefore is set back from the moment of issuance, as kubeadm
/// and Kubernetes' own signer do, so a peer whose clock is a little behind
/// does not see "not yet valid". notAfter is still issuance + lifetime.
pub const BACKDATE: chrono::Duration = chrono::Duration::minutes(5);

/// How far a pod certificate's notBefore is set back: kube-apiserver
/// refuses a PodCertificateRequest's notBefore more than 5 minutes from
/// its own clock, so the usual BACKDATE would be refused.
pub const POD_BACKDATE: chrono::Duration = chrono::Duration::minutes(1);

/// How far past a whole lifetime an issuer's notAfter may land: kubeadm
/// reads the clock for notBefore, makes the key, then reads it again for
/// notAfter, so its kubeconfig certificates are a second or two over.
const ISSUER_CLOCK_SLACK_SECONDS: i64 = 10;

/// The lifetime a certificate was issued for, so that renewing it keeps
/// it: notAfter - notBefore less the backdate (kubeadm's and certop's),
/// trimmed to the whole hour or minute it overshoots by a few seconds.
/// A span of whole hours has no backdate (certop's before it backdated).
pub fn issued_lifetime(not_before: DateTime<Utc>, not_after: DateTime<Utc>) -> chrono::Duration {
    let span = (not_after - not_before).num_seconds();
    let over = |seconds: i64, unit: i64| seconds.rem_euclid(unit);
    if over(span, 3600) == 0 || span <= BACKDATE.num_seconds() {
        return chrono::Duration::seconds(span);
    }
    let lifetime = span - BACKDATE.num_seconds();
    let trimmed = [3600, 60]
        .into_iter()
        .map(|unit| over(lifetime, unit))
        .find(|o| *o <= ISSUER_CLOCK_SLACK_SECONDS && *o < lifetime)
        .map_or(lifetime, |o| lifetime - o);
    chrono::Duration::seconds(trimmed)
}

/// When certop (or kubeadm) signed a certificate: notBefore is backdated
/// BACKDATE from that moment. Where notBefore met the CA's own (a leaf of a
/// CA younger than the backdate) this is later than the real moment, so
/// what is measured from it (a certificate's age, its renewal) comes later,
/// never sooner; it is never past notAfter.
pub fn issued_at(cert: &CertificateInfo) -> DateTime<Utc> {
    (cert.not_before + BACKDATE).min(cert.not_after)
}

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
