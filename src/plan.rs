//! The planning step: given what a certificate should be, what its Secret
//! holds, the CA and the clock, decide whether to issue (and why) or when to
//! look again. Pure: no I/O and no clock of its own, so every case is a row
//! in a table test.

use std::collections::BTreeSet;
use std::fmt;

use aws_lc_rs::digest;
use chrono::{DateTime, Duration, Utc};

use crate::api::{ClusterCertificateSpec, RotationPolicy, to_chrono};
use crate::pki::{CertificateInfo, LeafTemplate, PrivateKey, key_matches_certificate, parse_chain};

/// Keys of a `kubernetes.io/tls` Secret.
pub const TLS_CERT_KEY: &str = "tls.crt";
pub const TLS_PRIVATE_KEY_KEY: &str = "tls.key";
pub const CA_CERT_KEY: &str = "ca.crt";

/// At most this share of the renewal window is taken off the renewal time,
/// so certificates issued together do not all renew at the same instant.
const JITTER_SHARE_OF_WINDOW: f64 = 0.1;

/// The data of a certificate's Secret, as read.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SecretData {
    pub tls_crt: Option<Vec<u8>>,
    pub tls_key: Option<Vec<u8>>,
    pub ca_crt: Option<Vec<u8>>,
}

/// When to renew, from the spec.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct RenewalPolicy {
    pub renew_before: Option<Duration>,
    pub renew_before_percentage: Option<u8>,
    pub rotation: RotationPolicy,
}

impl RenewalPolicy {
    pub fn from_spec(spec: &ClusterCertificateSpec) -> Self {
        RenewalPolicy {
            renew_before: spec.renew_before.map(to_chrono),
            renew_before_percentage: spec.renew_before_percentage,
            rotation: spec
                .private_key
                .as_ref()
                .and_then(|k| k.rotation_policy)
                .unwrap_or_default(),
        }
    }
}

/// A field of the spec that the certificate no longer matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpecField {
    CommonName,
    Organizations,
    DnsNames,
    IpAddresses,
    Uris,
    Usages,
    KeyAlgorithm,
    Duration,
    CrlDistributionPoint,
}

impl SpecField {
    fn as_str(self) -> &'static str {
        match self {
            SpecField::CommonName => "commonName",
            SpecField::Organizations => "organizations",
            SpecField::DnsNames => "dnsNames",
            SpecField::IpAddresses => "ipAddresses",
            SpecField::Uris => "uris",
            SpecField::Usages => "usages",
            SpecField::KeyAlgorithm => "privateKey.algorithm",
            SpecField::Duration => "duration",
            SpecField::CrlDistributionPoint => "the CA's CRL distribution point",
        }
    }
}

/// Why a certificate is (re)issued. Its `Display` is the sentence that
/// Events and the Issuing condition carry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IssueReason {
    SecretMissing,
    MissingData(&'static str),
    CorruptData { field: &'static str, reason: String },
    KeyMismatch,
    NotIssuedByCurrentCa,
    CaBundleOutdated,
    SpecChanged(SpecField),
    Expired,
    RenewalDue,
}

impl IssueReason {
    /// A CamelCase reason for conditions and Events.
    pub fn code(&self) -> &'static str {
        match self {
            IssueReason::SecretMissing => "SecretMissing",
            IssueReason::MissingData(_) => "MissingData",
            IssueReason::CorruptData { .. } => "CorruptData",
            IssueReason::KeyMismatch => "KeyMismatch",
            IssueReason::NotIssuedByCurrentCa => "IssuerChanged",
            IssueReason::CaBundleOutdated => "CABundleOutdated",
            IssueReason::SpecChanged(_) => "SpecChanged",
            IssueReason::Expired => "Expired",
            IssueReason::RenewalDue => "RenewalDue",
        }
    }

    /// True when the certificate in place is valid and only due: the
    /// re-issue is a renewal, not a repair.
    pub fn is_renewal(&self) -> bool {
        matches!(self, IssueReason::RenewalDue | IssueReason::Expired)
    }
}

impl fmt::Display for IssueReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IssueReason::SecretMissing => f.write_str("the Secret does not exist"),
            IssueReason::MissingData(k) => write!(f, "the Secret has no {k}"),
            IssueReason::CorruptData { field, reason } => {
                write!(f, "the Secret's {field} cannot be used: {reason}")
            }
            IssueReason::KeyMismatch => {
                f.write_str("the private key does not match the certificate")
            }
            IssueReason::NotIssuedByCurrentCa => {
                f.write_str("the certificate was not issued by the current CA")
            }
            IssueReason::CaBundleOutdated => {
                f.write_str("the Secret's ca.crt is not the current CA certificate")
            }
            IssueReason::SpecChanged(field) => write!(
                f,
                "the certificate no longer matches spec field {}",
                field.as_str()
            ),
            IssueReason::Expired => f.write_str("the certificate has expired"),
            IssueReason::RenewalDue => f.write_str("the renewal time has come"),
        }
    }
}

/// What to do about a certificate.
#[derive(Clone, Debug, PartialEq)]
pub enum Plan {
    /// Sign a new certificate. `reuse_key` is true when the rotation policy
    /// keeps the Secret's key and that key is sound and of the right algorithm.
    Issue {
        reason: IssueReason,
        reuse_key: bool,
    },
    /// The certificate is good; look again at `renewal_time`.
    UpToDate {
        current: CertificateInfo,
        renewal_time: DateTime<Utc>,
    },
}

/// Decides what to do with one certificate. `ca` is the current CA
/// certificate; `now` the clock.
pub fn plan(
    template: &LeafTemplate,
    policy: &RenewalPolicy,
    secret: Option<&SecretData>,
    ca: &CertificateInfo,
    now: DateTime<Utc>,
) -> Plan {
    let Some(secret) = secret else {
        return Plan::Issue {
            reason: IssueReason::SecretMissing,
            reuse_key: false,
        };
    };
    let key = secret
        .tls_key
        .as_deref()
        .and_then(|k| std::str::from_utf8(k).ok())
        .and_then(|k| PrivateKey::from_pem(k, TLS_PRIVATE_KEY_KEY).ok());
    let reuse_key = policy.rotation == RotationPolicy::Never
        && key
            .as_ref()
            .is_some_and(|k| k.algorithm() == template.key_algorithm);
    let issue = |reason| Plan::Issue { reason, reuse_key };

    let (Some(tls_crt), Some(_), Some(ca_crt)) = (&secret.tls_crt, &secret.tls_key, &secret.ca_crt)
    else {
        let missing = [
            (TLS_CERT_KEY, &secret.tls_crt),
            (TLS_PRIVATE_KEY_KEY, &secret.tls_key),
            (CA_CERT_KEY, &secret.ca_crt),
        ]
        .into_iter()
        .find(|(_, v)| v.is_none())
        .map_or(TLS_CERT_KEY, |(k, _)| k);
        return issue(IssueReason::MissingData(missing));
    };
    let chain = match parse_chain(tls_crt, TLS_CERT_KEY) {
        Ok(chain) => chain,
        Err(e) => {
            return issue(IssueReason::CorruptData {
                field: TLS_CERT_KEY,
                reason: e.to_string(),
            });
        }
    };
    let leaf = &chain[0];
    let Some(key) = key else {
        return issue(IssueReason::CorruptData {
            field: TLS_PRIVATE_KEY_KEY,
            reason: "not a PEM private key of a supported algorithm".into(),
        });
    };
    if !key_matches_certificate(&key, leaf) {
        return issue(IssueReason::KeyMismatch);
    }
    if !leaf.is_issued_by(ca) {
        return issue(IssueReason::NotIssuedByCurrentCa);
    }
    match parse_chain(ca_crt, CA_CERT_KEY) {
        Ok(bundle) if bundle.iter().any(|c| c.der == ca.der) => {}
        _ => return issue(IssueReason::CaBundleOutdated),
    }
    if let Some(field) = mismatched_field(template, leaf, ca) {
        return issue(IssueReason::SpecChanged(field));
    }
    if now >= leaf.not_after {
        return issue(IssueReason::Expired);
    }
    let renewal_time = renewal_time(leaf, policy);
    if now >= renewal_time {
        return issue(IssueReason::RenewalDue);
    }
    Plan::UpToDate {
        current: leaf.clone(),
        renewal_time,
    }
}

/// The first spec field the certificate does not match, if any. Lists are
/// compared as sets: order carries no meaning in a certificate's names.
pub fn mismatched_field(
    t: &LeafTemplate,
    cert: &CertificateInfo,
    ca: &CertificateInfo,
) -> Option<SpecField> {
    fn set<T: Ord + Clone>(v: &[T]) -> BTreeSet<T> {
        v.iter().cloned().collect()
    }
    let lifetime = cert.not_after - cert.not_before;
    let clamped = cert.not_after == ca.not_after && lifetime < t.lifetime;
    let checks = [
        (cert.common_name != t.common_name, SpecField::CommonName),
        (
            set(&cert.organizations) != set(&t.organizations),
            SpecField::Organizations,
        ),
        (
            set(&cert.dns_names) != set(&t.dns_names),
            SpecField::DnsNames,
        ),
        (
            set(&cert.ip_addresses) != set(&t.ip_addresses),
            SpecField::IpAddresses,
        ),
        (set(&cert.uris) != set(&t.uris), SpecField::Uris),
        (cert.usages != t.usages, SpecField::Usages),
        (
            cert.key_algorithm != Some(t.key_algorithm),
            SpecField::KeyAlgorithm,
        ),
        (lifetime != t.lifetime && !clamped, SpecField::Duration),
        (
            cert.crl_distribution_points.first() != t.crl_distribution_point.as_ref(),
            SpecField::CrlDistributionPoint,
        ),
    ];
    checks
        .into_iter()
        .find(|(differs, _)| *differs)
        .map(|(_, field)| field)
}

/// When to renew a certificate: `renewBefore` before notAfter, else
/// `renewBeforePercentage` of the lifetime, else a third of it (renewal at
/// two thirds, as cert-manager does); then earlier by a jitter of up to 10%
/// of that window, derived from the serial so it is stable for a
/// certificate and spread across certificates.
pub fn renewal_time(cert: &CertificateInfo, policy: &RenewalPolicy) -> DateTime<Utc> {
    let lifetime = cert.not_after - cert.not_before;
    let window = match (policy.renew_before, policy.renew_before_percentage) {
        (Some(before), _) if before < lifetime => before,
        (_, Some(p)) => lifetime * i32::from(p) / 100,
        _ => lifetime / 3,
    };
    let jitter_ms =
        (window.num_milliseconds() as f64 * JITTER_SHARE_OF_WINDOW * jitter_fraction(cert)) as i64;
    cert.not_after - window - Duration::milliseconds(jitter_ms)
}

/// A number in [0, 1) that depends only on the certificate's serial.
fn jitter_fraction(cert: &CertificateInfo) -> f64 {
    let d = digest::digest(&digest::SHA256, cert.serial.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&d.as_ref()[..8]);
    (u64::from_be_bytes(first) >> 11) as f64 / (1u64 << 53) as f64
}
