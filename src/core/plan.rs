//! The planning step: given what a certificate should be, what its Secret
//! holds, the CA and the clock, decide whether to issue (and why) or when to
//! look again. Pure: no I/O and no clock of its own, so every case is a row
//! in a table test.

use std::fmt;

use aws_lc_rs::digest;
use chrono::{DateTime, Duration, Utc};

use crate::api::{ClusterCertificateSpec, RotationPolicy};
use crate::pki::{
    CertificateInfo, LeafTemplate, PrivateKey, SpecField, key_matches_certificate, parse_chain,
};

/// Keys of a `kubernetes.io/tls` Secret.
pub const TLS_CERT_KEY: &str = "tls.crt";
pub const TLS_PRIVATE_KEY_KEY: &str = "tls.key";
pub const CA_CERT_KEY: &str = "ca.crt";

/// A change of the CA's CRL distribution point re-issues every certificate
/// of the CA; the re-issues are spread over this long (by the jitter of
/// each serial) from when the change was first seen, not done all at once.
pub const DISTRIBUTION_POINT_SPREAD: Duration = Duration::hours(1);

/// At most this share of the renewal window is taken off the renewal time,
/// so certificates issued together do not all renew at the same instant.
const JITTER_SHARE_OF_WINDOW: f64 = 0.1;

/// The least time any certificate serves before it is renewed, whatever
/// its spec: half of the shortest duration the API server admits (1m).
/// It bounds renewals to two a minute per certificate.
pub const MIN_RENEWAL_AGE: Duration = Duration::seconds(30);

/// The data of a certificate's Secret, as read.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SecretData {
    pub tls_crt: Option<Vec<u8>>,
    pub tls_key: Option<Vec<u8>>,
    pub ca_crt: Option<Vec<u8>>,
}

/// When to renew, from the spec.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RenewalPolicy {
    pub renew_before: Option<Duration>,
    pub renew_before_percentage: Option<i32>,
    pub rotation: RotationPolicy,
    /// A request to re-issue now (`kubectl certop renew`): an opaque value,
    /// honoured when it differs from the one the current certificate was
    /// issued for. Values are compared, never clocks: a client whose clock
    /// is ahead or behind ours asks for exactly one issuance.
    pub requested: Option<String>,
    /// The request value the Secret's certificate was issued for.
    pub honoured: Option<String>,
    /// A serial that was revoked: if it is the current certificate's, the
    /// certificate is replaced at once, never with the same key.
    pub revoked_serial: Option<String>,
    /// When a change of the CA's CRL distribution point was first seen for
    /// this certificate (its status keeps it); None: seen now.
    pub distribution_point_change_seen: Option<DateTime<Utc>>,
    /// The CA is retiring a key: a certificate that key signed is
    /// re-issued by the new one at its turn, not at once.
    pub reissue: Option<crate::core::rotation::Reissue>,
}

impl RenewalPolicy {
    pub fn from_spec(spec: &ClusterCertificateSpec) -> Self {
        RenewalPolicy {
            renew_before: spec.renew_before.as_ref().and_then(|d| d.to_chrono().ok()),
            renew_before_percentage: spec.renew_before_percentage,
            rotation: spec
                .private_key
                .as_ref()
                .and_then(|k| k.rotation_policy)
                .unwrap_or_default(),
            requested: None,
            honoured: None,
            revoked_serial: None,
            distribution_point_change_seen: None,
            reissue: None,
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
    CaRotated,
    SpecChanged(SpecField),
    Expired,
    Revoked,
    RenewalRequested,
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
            IssueReason::CaRotated => "CARotated",
            IssueReason::SpecChanged(_) => "SpecChanged",
            IssueReason::Expired => "Expired",
            IssueReason::Revoked => "Revoked",
            IssueReason::RenewalRequested => "RenewalRequested",
            IssueReason::RenewalDue => "RenewalDue",
        }
    }

    /// True when the certificate in place is valid and only due: the
    /// re-issue is a renewal, not a repair.
    pub fn is_renewal(&self) -> bool {
        matches!(
            self,
            IssueReason::RenewalDue
                | IssueReason::Expired
                | IssueReason::RenewalRequested
                | IssueReason::CaRotated
        )
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
            IssueReason::CaRotated => f.write_str("the CA rotated its key: the new key signs now"),
            IssueReason::SpecChanged(field) => write!(
                f,
                "the certificate no longer matches spec field {}",
                field.as_str()
            ),
            IssueReason::Expired => f.write_str("the certificate has expired"),
            IssueReason::Revoked => f.write_str("the certificate was revoked"),
            IssueReason::RenewalRequested => f.write_str("a renewal was requested"),
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
        current: Box<CertificateInfo>,
        renewal_time: DateTime<Utc>,
        /// A CRL distribution point change waits for its turn since then.
        change_pending_since: Option<DateTime<Utc>>,
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
    let (leaf, reuse_key) = match usable_pair(template, policy, secret) {
        Ok(pair) => pair,
        Err(plan) => return plan,
    };
    let issue = |reason| Plan::Issue { reason, reuse_key };
    let (ca, rotation_turn) = match judging_ca(&leaf, ca, policy, now) {
        Ok(judge) => judge,
        Err(reason) => return issue(reason),
    };
    if policy.revoked_serial.as_deref() == Some(leaf.serial.to_string().as_str()) {
        // A revoked certificate's key is never used again.
        return Plan::Issue {
            reason: IssueReason::Revoked,
            reuse_key: false,
        };
    }
    let pending = match spec_change(template, &leaf, ca, policy, now) {
        Ok(pending) => pending,
        Err(reason) => return issue(reason),
    };
    if now >= leaf.not_after {
        return issue(IssueReason::Expired);
    }
    if policy.requested.is_some() && policy.requested != policy.honoured {
        return issue(IssueReason::RenewalRequested);
    }
    let renewal_time = renewal_time(&leaf, policy);
    if now >= renewal_time {
        return issue(IssueReason::RenewalDue);
    }
    let renewal_time = rotation_turn.map_or(renewal_time, |t| renewal_time.min(t));
    Plan::UpToDate {
        renewal_time: pending.map_or(renewal_time, |p| renewal_time.min(p.turn)),
        change_pending_since: pending.map(|p| p.seen),
        current: Box::new(leaf),
    }
}

/// The Secret's certificate and whether its key may be reused, once both
/// are there, readable and a pair; else the issuance that replaces them.
fn usable_pair(
    template: &LeafTemplate,
    policy: &RenewalPolicy,
    secret: &SecretData,
) -> Result<(CertificateInfo, bool), Plan> {
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
    // ca.crt is not the certificate's business: the writer keeps it equal
    // to the CA's trust bundle without a new certificate.
    let (Some(tls_crt), Some(_)) = (&secret.tls_crt, &secret.tls_key) else {
        let missing = [
            (TLS_CERT_KEY, &secret.tls_crt),
            (TLS_PRIVATE_KEY_KEY, &secret.tls_key),
        ]
        .into_iter()
        .find(|(_, v)| v.is_none())
        .map_or(TLS_CERT_KEY, |(k, _)| k);
        return Err(issue(IssueReason::MissingData(missing)));
    };
    let mut chain = parse_chain(tls_crt, TLS_CERT_KEY).map_err(|e| {
        issue(IssueReason::CorruptData {
            field: TLS_CERT_KEY,
            reason: e.to_string(),
        })
    })?;
    let leaf = chain.swap_remove(0);
    let Some(key) = key else {
        return Err(issue(IssueReason::CorruptData {
            field: TLS_PRIVATE_KEY_KEY,
            reason: "not a PEM private key of a supported algorithm".into(),
        }));
    };
    if !key_matches_certificate(&key, &leaf) {
        return Err(issue(IssueReason::KeyMismatch));
    }
    Ok((leaf, reuse_key))
}

/// The CA a certificate is judged against, and its turn to be re-issued
/// if a retiring key signed it: a certificate of a retiring key serves
/// until its turn to be re-issued by the new key comes.
fn judging_ca<'a>(
    leaf: &CertificateInfo,
    ca: &'a CertificateInfo,
    policy: &'a RenewalPolicy,
    now: DateTime<Utc>,
) -> Result<(&'a CertificateInfo, Option<DateTime<Utc>>), IssueReason> {
    if leaf.is_issued_by(ca) {
        return Ok((ca, None));
    }
    match &policy.reissue {
        Some(r) if leaf.is_issued_by(&r.previous) => {
            let turn = r.switched_at
                + Duration::milliseconds(
                    (r.spread.num_milliseconds() as f64 * jitter_fraction(leaf)) as i64,
                );
            if now >= turn {
                return Err(IssueReason::CaRotated);
            }
            Ok((&r.previous, Some(turn)))
        }
        _ => Err(IssueReason::NotIssuedByCurrentCa),
    }
}

/// A change that waits for its turn: first seen at `seen`, due at `turn`.
#[derive(Clone, Copy)]
struct PendingChange {
    seen: DateTime<Utc>,
    turn: DateTime<Utc>,
}

/// Whether the certificate still matches its spec. Only the CRL URL
/// changed (it is checked last): the certificate is still good, so its
/// re-issue waits for its turn in the spread.
fn spec_change(
    template: &LeafTemplate,
    leaf: &CertificateInfo,
    ca: &CertificateInfo,
    policy: &RenewalPolicy,
    now: DateTime<Utc>,
) -> Result<Option<PendingChange>, IssueReason> {
    match template.first_mismatch(leaf, ca) {
        Some(SpecField::CrlDistributionPoint) => {
            let seen = policy.distribution_point_change_seen.unwrap_or(now);
            let turn = seen
                + Duration::milliseconds(
                    (DISTRIBUTION_POINT_SPREAD.num_milliseconds() as f64 * jitter_fraction(leaf))
                        as i64,
                );
            if now >= turn {
                return Err(IssueReason::SpecChanged(SpecField::CrlDistributionPoint));
            }
            Ok(Some(PendingChange { seen, turn }))
        }
        Some(field) => Err(IssueReason::SpecChanged(field)),
        None => Ok(None),
    }
}

/// When to renew a certificate: `renewBefore` before notAfter, else
/// `renewBeforePercentage` of the lifetime, else a third of it (renewal at
/// two thirds, as cert-manager does); then earlier by a jitter of up to 10%
/// of that window, derived from the serial (so stable for a certificate,
/// spread across certificates, and drawn anew with each new serial).
///
/// The lifetime and the age are measured from the moment of issuance
/// (`pki::issued_at`), not from notBefore: notBefore is backdated five
/// minutes, and counting those would put the renewal of a 1- or 2-minute
/// certificate before it was even issued, re-issuing it without end.
///
/// Whatever the settings, a certificate lives at least `min_age` before it
/// is renewed: a window as long as the lifetime (`duration: 1m` with
/// `renewBeforePercentage: 99`, or `renewBefore: 23h59m` of 24h) would
/// otherwise put the renewal at the issuance itself.
pub fn renewal_time(cert: &CertificateInfo, policy: &RenewalPolicy) -> DateTime<Utc> {
    let issued = crate::pki::issued_at(cert);
    let lifetime = cert.not_after - issued;
    let window = match (policy.renew_before, policy.renew_before_percentage) {
        (Some(before), _) if before < lifetime => before,
        (_, Some(p)) => lifetime * p.clamp(1, 99) / 100,
        _ => lifetime / 3,
    };
    let jitter_ms =
        (window.num_milliseconds() as f64 * JITTER_SHARE_OF_WINDOW * jitter_fraction(cert)) as i64;
    let wanted = cert.not_after - window - Duration::milliseconds(jitter_ms);
    crate::pki::whole_seconds(wanted.max(issued + min_age(lifetime)))
}

/// The least time a certificate serves before renewal: a tenth of its
/// lifetime, and at least half of it or five minutes, whichever is less;
/// never less than `MIN_RENEWAL_AGE`, whatever the lifetime (one cut short
/// by its CA's notAfter included).
pub fn min_age(lifetime: Duration) -> Duration {
    (lifetime / 10)
        .max((lifetime / 2).min(Duration::minutes(5)))
        .max(MIN_RENEWAL_AGE)
}

/// A number in [0, 1) that depends only on the certificate's serial.
fn jitter_fraction(cert: &CertificateInfo) -> f64 {
    let d = digest::digest(&digest::SHA256, cert.serial.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&d.as_ref()[..8]);
    (u64::from_be_bytes(first) >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use chrono::TimeZone;

    use super::*;
    use crate::api::{IssuerRef, KeyAlgorithm, PrivateKeySettings};
    use crate::pki::{Authority, CaRequest, issue};

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
            .single()
            .expect("valid date")
    }

    fn spec() -> ClusterCertificateSpec {
        ClusterCertificateSpec {
            issuer_ref: IssuerRef { name: "ca".into() },
            secret_name: "web".into(),
            secret_namespace: "default".into(),
            common_name: Some("web".into()),
            dns_names: vec!["web.example.com".into()],
            duration: Some("2160h".parse().expect("duration")),
            ..Default::default()
        }
    }

    struct World {
        ca: Authority,
        other_ca: Authority,
        template: LeafTemplate,
        policy: RenewalPolicy,
        secret: SecretData,
        leaf: CertificateInfo,
    }

    /// A CA made a day before t0, as in a running cluster.
    fn ca() -> Authority {
        Authority::create(&CaRequest::new("ca"), t0() - Duration::days(1)).expect("ca")
    }

    /// A CA and a Secret holding a certificate issued at t0 for `spec()`,
    /// through the production issuance path.
    fn world() -> World {
        let other_ca = ca();
        let ca = ca();
        let template = LeafTemplate::from_spec(&spec()).expect("template");
        let key = PrivateKey::generate(template.key_algorithm).expect("key");
        let issued = issue(&template, &key, &ca, t0()).expect("issue");
        let secret = SecretData {
            tls_crt: Some(issued.chain_pem.clone().into_bytes()),
            tls_key: Some(key.to_pem().into_bytes()),
            ca_crt: Some(ca.certificate_pem().as_bytes().to_vec()),
        };
        World {
            ca,
            other_ca,
            template,
            policy: RenewalPolicy::from_spec(&spec()),
            secret,
            leaf: issued.certificate,
        }
    }

    fn reason(plan: Plan) -> Option<IssueReason> {
        match plan {
            Plan::Issue { reason, .. } => Some(reason),
            Plan::UpToDate { .. } => None,
        }
    }

    #[test]
    fn plan_table() {
        let w = world();
        let day = Duration::days(1);
        let other_key = PrivateKey::generate(KeyAlgorithm::EcdsaP256)
            .expect("key")
            .to_pem()
            .into_bytes();
        type Edit = Box<dyn Fn(&mut SecretData, &mut LeafTemplate)>;
        // (case, change to the Secret and template or None for no Secret, clock, expected reason)
        type Case = (
            &'static str,
            Option<Edit>,
            DateTime<Utc>,
            Option<IssueReason>,
        );
        let cases: Vec<Case> = vec![
            (
                "fresh certificate",
                Some(Box::new(|_, _| {})),
                t0() + day,
                None,
            ),
            ("no Secret", None, t0(), Some(IssueReason::SecretMissing)),
            (
                "no tls.crt",
                Some(Box::new(|s, _| s.tls_crt = None)),
                t0(),
                Some(IssueReason::MissingData(TLS_CERT_KEY)),
            ),
            (
                "no tls.key",
                Some(Box::new(|s, _| s.tls_key = None)),
                t0(),
                Some(IssueReason::MissingData(TLS_PRIVATE_KEY_KEY)),
            ),
            (
                "no ca.crt: rewritten, not re-issued",
                Some(Box::new(|s, _| s.ca_crt = None)),
                t0() + day,
                None,
            ),
            (
                "garbage tls.crt",
                Some(Box::new(|s, _| s.tls_crt = Some(b"junk".to_vec()))),
                t0(),
                Some(IssueReason::CorruptData {
                    field: TLS_CERT_KEY,
                    reason: "no PEM certificate found in tls.crt".into(),
                }),
            ),
            (
                "garbage tls.key",
                Some(Box::new(|s, _| s.tls_key = Some(b"junk".to_vec()))),
                t0(),
                Some(IssueReason::CorruptData {
                    field: TLS_PRIVATE_KEY_KEY,
                    reason: "not a PEM private key of a supported algorithm".into(),
                }),
            ),
            (
                "key of another certificate",
                Some(Box::new(move |s, _| s.tls_key = Some(other_key.clone()))),
                t0(),
                Some(IssueReason::KeyMismatch),
            ),
            (
                "CA bundle edited: rewritten, not re-issued",
                Some(Box::new(|s, _| {
                    s.ca_crt = s.tls_crt.clone().map(|c| c[..c.len() / 2].to_vec())
                })),
                t0() + day,
                None,
            ),
            (
                "DNS names changed",
                Some(Box::new(|_, t| t.dns_names.push("new.example.com".into()))),
                t0(),
                Some(IssueReason::SpecChanged(SpecField::DnsNames)),
            ),
            (
                "DNS names reordered",
                Some(Box::new(|_, t| t.dns_names.reverse())),
                t0() + day,
                None,
            ),
            (
                "common name changed",
                Some(Box::new(|_, t| t.common_name = Some("api".into()))),
                t0(),
                Some(IssueReason::SpecChanged(SpecField::CommonName)),
            ),
            (
                "organizations changed",
                Some(Box::new(|_, t| t.organizations = vec!["acme".into()])),
                t0(),
                Some(IssueReason::SpecChanged(SpecField::Organizations)),
            ),
            (
                "IPs changed",
                Some(Box::new(|_, t| {
                    t.ip_addresses.push("10.0.0.1".parse().expect("ip"))
                })),
                t0(),
                Some(IssueReason::SpecChanged(SpecField::IpAddresses)),
            ),
            (
                "URIs changed",
                Some(Box::new(|_, t| t.uris.push("spiffe://x/y".into()))),
                t0(),
                Some(IssueReason::SpecChanged(SpecField::Uris)),
            ),
            (
                "usages changed",
                Some(Box::new(|_, t| {
                    t.usages.insert(crate::api::KeyUsage::ClientAuth);
                })),
                t0(),
                Some(IssueReason::SpecChanged(SpecField::Usages)),
            ),
            (
                "algorithm changed",
                Some(Box::new(|_, t| t.key_algorithm = KeyAlgorithm::EcdsaP384)),
                t0(),
                Some(IssueReason::SpecChanged(SpecField::KeyAlgorithm)),
            ),
            (
                "duration changed",
                Some(Box::new(|_, t| t.lifetime = Duration::days(30))),
                t0(),
                Some(IssueReason::SpecChanged(SpecField::Duration)),
            ),
            (
                "CRL URL added: waits for its turn in the spread",
                Some(Box::new(|_, t| {
                    t.crl_distribution_point = Some("http://x/crl".into())
                })),
                t0(),
                None,
            ),
            // Renewal at day 60 less a jitter of at most 3 days (10% of a 30-day window).
            (
                "before the renewal window",
                Some(Box::new(|_, _| {})),
                t0() + Duration::days(56),
                None,
            ),
            (
                "renewal due",
                Some(Box::new(|_, _| {})),
                t0() + Duration::days(60),
                Some(IssueReason::RenewalDue),
            ),
            (
                "expired",
                Some(Box::new(|_, _| {})),
                t0() + Duration::days(91),
                Some(IssueReason::Expired),
            ),
        ];
        for (name, edit, now, expected) in cases {
            let mut secret = w.secret.clone();
            let mut template = w.template.clone();
            let secret = edit.map(|e| {
                e(&mut secret, &mut template);
                secret
            });
            let got = reason(plan(
                &template,
                &w.policy,
                secret.as_ref(),
                w.ca.certificate(),
                now,
            ));
            assert_eq!(got, expected, "{name}");
        }
    }

    #[test]
    fn a_renewal_request_is_a_value_answered_once_whatever_the_clocks() {
        let w = world();
        let ask = |requested: Option<&str>, honoured: Option<&str>| {
            let policy = RenewalPolicy {
                requested: requested.map(str::to_string),
                honoured: honoured.map(str::to_string),
                ..w.policy.clone()
            };
            reason(plan(
                &w.template,
                &policy,
                Some(&w.secret),
                w.ca.certificate(),
                t0() + Duration::hours(2),
            ))
        };
        // A request stamped in the future by a client whose clock runs
        // ahead, or in the past: either way one issuance, then done.
        let future = "2099-01-01T00:00:00Z";
        let past = "2000-01-01T00:00:00Z";
        assert_eq!(ask(Some(future), None), Some(IssueReason::RenewalRequested));
        assert_eq!(ask(Some(future), Some(future)), None);
        assert_eq!(
            ask(Some(past), Some(future)),
            Some(IssueReason::RenewalRequested)
        );
        assert_eq!(ask(Some(past), Some(past)), None);
        assert_eq!(ask(None, Some(past)), None);
    }

    #[test]
    fn a_new_crl_url_reissues_certificates_spread_over_an_hour_from_when_it_was_seen() {
        let w = world();
        let mut moved = w.template.clone();
        moved.crl_distribution_point = Some("http://new.example/crl".into());
        let seen = t0() + Duration::days(1);
        let policy = RenewalPolicy {
            distribution_point_change_seen: Some(seen),
            ..w.policy.clone()
        };
        let at = |now| plan(&moved, &policy, Some(&w.secret), w.ca.certificate(), now);
        let turn = match at(seen) {
            Plan::UpToDate {
                renewal_time,
                change_pending_since,
                ..
            } => {
                assert_eq!(change_pending_since, Some(seen));
                renewal_time
            }
            other => panic!("waits for its turn, got {other:?}"),
        };
        assert!(
            turn >= seen && turn < seen + DISTRIBUTION_POINT_SPREAD,
            "{turn}"
        );
        assert_eq!(
            reason(at(seen + DISTRIBUTION_POINT_SPREAD)),
            Some(IssueReason::SpecChanged(SpecField::CrlDistributionPoint))
        );
        // Across many certificates the turns spread over the hour.
        let turns: BTreeSet<i64> = (0..40)
            .map(|_| {
                let key = PrivateKey::generate(w.template.key_algorithm).expect("key");
                let leaf = issue(&w.template, &key, &w.ca, t0()).expect("issue");
                let secret = SecretData {
                    tls_crt: Some(leaf.chain_pem.into_bytes()),
                    tls_key: Some(key.to_pem().into_bytes()),
                    ca_crt: w.secret.ca_crt.clone(),
                };
                match plan(&moved, &policy, Some(&secret), w.ca.certificate(), seen) {
                    Plan::UpToDate { renewal_time, .. } => (renewal_time - seen).num_minutes(),
                    other => panic!("{other:?}"),
                }
            })
            .collect();
        assert!(turns.len() > 15, "spread over the hour: {turns:?}");
    }

    #[test]
    fn renewal_never_comes_before_a_sane_age_from_issuance_whatever_the_settings() {
        let ca = ca();
        // (duration, renewBefore, renewBeforePercentage, least age before renewal)
        let cases: [(&str, Option<&str>, Option<i32>, Duration); 7] = [
            ("1m", None, Some(99), Duration::seconds(30)),
            ("1m", None, None, Duration::seconds(30)),
            ("2m", None, None, Duration::seconds(60)),
            ("40m", None, Some(99), Duration::minutes(5)),
            ("24h", Some("23h59m"), None, Duration::minutes(144)),
            ("10m", Some("9m59s"), None, Duration::minutes(5)),
            ("2160h", None, None, Duration::days(54)),
        ];
        for (duration, before, percentage, least) in cases {
            let mut s = spec();
            s.duration = Some(duration.parse().expect("duration"));
            s.renew_before = before.map(|b| b.parse().expect("renewBefore"));
            s.renew_before_percentage = percentage;
            let template = LeafTemplate::from_spec(&s).expect("template");
            for _ in 0..20 {
                let key = PrivateKey::generate(template.key_algorithm).expect("key");
                let leaf = issue(&template, &key, &ca, t0())
                    .expect("issue")
                    .certificate;
                let at = renewal_time(&leaf, &RenewalPolicy::from_spec(&s));
                assert!(
                    at >= t0() + least && at < leaf.not_after,
                    "{duration} {before:?} {percentage:?}: renewal at {at} for a certificate issued at {} ({} .. {})",
                    t0(),
                    leaf.not_before,
                    leaf.not_after
                );
            }
        }
    }

    proptest::proptest! {
        /// Whatever spec the API server admits (duration at least 1m,
        /// renewBefore shorter than it, or a percentage of 1-99), a
        /// certificate issued through the production path at t0 is not
        /// planned for re-issue before t0 + MIN_RENEWAL_AGE.
        #[test]
        fn no_admitted_spec_reissues_a_certificate_sooner_than_the_floor(
            seconds in 60i64..3 * 86_400,
            window in proptest::option::of(0.0f64..1.0),
            percentage in proptest::option::of(1i32..=99),
        ) {
            let mut s = spec();
            s.duration = Some(format!("{seconds}s").parse().expect("duration"));
            s.renew_before = window.map(|f| {
                format!("{}s", ((seconds as f64 * f) as i64).min(seconds - 1))
                    .parse()
                    .expect("renewBefore")
            });
            s.renew_before_percentage = percentage.filter(|_| window.is_none());
            let template = LeafTemplate::from_spec(&s).expect("an admitted spec");
            let ca = ca();
            let key = PrivateKey::generate(template.key_algorithm).expect("key");
            let issued = issue(&template, &key, &ca, t0()).expect("issue");
            let secret = SecretData {
                tls_crt: Some(issued.chain_pem.into_bytes()),
                tls_key: Some(key.to_pem().into_bytes()),
                ca_crt: None,
            };
            let policy = RenewalPolicy::from_spec(&s);
            let at = renewal_time(&issued.certificate, &policy);
            proptest::prop_assert!(at >= t0() + MIN_RENEWAL_AGE, "renewal at {} for issuance at {}", at, t0());
            let just_before = t0() + MIN_RENEWAL_AGE - Duration::seconds(1);
            let got = plan(&template, &policy, Some(&secret), ca.certificate(), just_before);
            proptest::prop_assert!(matches!(got, Plan::UpToDate { .. }), "{:?}", got);
        }
    }

    #[test]
    fn a_revoked_certificate_is_replaced_with_a_new_key_even_when_keys_are_kept() {
        let w = world();
        let revoked = RenewalPolicy {
            rotation: RotationPolicy::Never,
            revoked_serial: Some(w.leaf.serial.to_string()),
            ..w.policy.clone()
        };
        let got = plan(
            &w.template,
            &revoked,
            Some(&w.secret),
            w.ca.certificate(),
            t0(),
        );
        assert_eq!(
            got,
            Plan::Issue {
                reason: IssueReason::Revoked,
                reuse_key: false
            }
        );
        let other = RenewalPolicy {
            revoked_serial: Some("abcd".into()),
            ..w.policy.clone()
        };
        assert_eq!(
            reason(plan(
                &w.template,
                &other,
                Some(&w.secret),
                w.ca.certificate(),
                t0()
            )),
            None
        );
    }

    #[test]
    fn a_certificate_from_another_ca_is_reissued() {
        let w = world();
        let got = plan(
            &w.template,
            &w.policy,
            Some(&w.secret),
            w.other_ca.certificate(),
            t0(),
        );
        assert_eq!(reason(got), Some(IssueReason::NotIssuedByCurrentCa));
    }

    #[test]
    fn a_certificate_of_a_retiring_key_is_reissued_at_its_turn_after_the_switch() {
        let w = world();
        let spread = Duration::hours(1);
        let mut turns = BTreeSet::new();
        for _ in 0..40 {
            let mut w = world();
            w.policy.reissue = Some(crate::core::rotation::Reissue {
                previous: w.ca.certificate().clone(),
                switched_at: t0() + Duration::days(1),
                spread,
            });
            let turn = match plan(
                &w.template,
                &w.policy,
                Some(&w.secret),
                w.other_ca.certificate(),
                t0() + Duration::days(1),
            ) {
                Plan::UpToDate { renewal_time, .. } => renewal_time,
                other => panic!("re-issued at the switch itself: {other:?}"),
            };
            assert!(turn <= t0() + Duration::days(1) + spread, "{turn}");
            turns.insert(turn.timestamp() / 60);
            assert_eq!(
                reason(plan(
                    &w.template,
                    &w.policy,
                    Some(&w.secret),
                    w.other_ca.certificate(),
                    turn
                )),
                Some(IssueReason::CaRotated)
            );
        }
        assert!(turns.len() > 15, "re-issues bunch together: {turns:?}");
        // A certificate of neither key is re-issued at once.
        let mut policy = w.policy.clone();
        policy.reissue = Some(crate::core::rotation::Reissue {
            previous: w.other_ca.certificate().clone(),
            switched_at: t0(),
            spread,
        });
        assert_eq!(
            reason(plan(
                &w.template,
                &policy,
                Some(&w.secret),
                w.other_ca.certificate(),
                t0()
            )),
            Some(IssueReason::NotIssuedByCurrentCa)
        );
    }

    #[test]
    fn up_to_date_reports_the_renewal_time() {
        let w = world();
        match plan(
            &w.template,
            &w.policy,
            Some(&w.secret),
            w.ca.certificate(),
            t0(),
        ) {
            Plan::UpToDate {
                current,
                renewal_time,
                change_pending_since: None,
            } => {
                assert_eq!(current.serial, w.leaf.serial);
                assert_eq!(renewal_time, super::renewal_time(&w.leaf, &w.policy));
            }
            other => panic!("expected UpToDate, got {other:?}"),
        }
    }

    #[test]
    fn renewal_time_follows_the_policy_minus_a_bounded_jitter() {
        let w = world();
        let lifetime = Duration::days(90);
        let cases = [
            (RenewalPolicy::default(), lifetime / 3),
            (
                RenewalPolicy {
                    renew_before: Some(Duration::days(10)),
                    ..Default::default()
                },
                Duration::days(10),
            ),
            (
                RenewalPolicy {
                    renew_before_percentage: Some(50),
                    ..Default::default()
                },
                lifetime / 2,
            ),
            // A renewBefore as long as the certificate (cut short by its CA) falls back to a third.
            (
                RenewalPolicy {
                    renew_before: Some(Duration::days(100)),
                    ..Default::default()
                },
                lifetime / 3,
            ),
        ];
        for (policy, window) in cases {
            let at = renewal_time(&w.leaf, &policy);
            let latest = w.leaf.not_after - window;
            assert!(at <= latest, "{policy:?}: {at} after {latest}");
            assert!(
                at >= latest - window / 10,
                "{policy:?}: jitter beyond 10% of the window"
            );
            assert_eq!(
                at,
                renewal_time(&w.leaf, &policy),
                "jitter is deterministic"
            );
        }
    }

    #[test]
    fn jitter_spreads_certificates_issued_together() {
        let w = world();
        let key = PrivateKey::generate(KeyAlgorithm::EcdsaP256).expect("key");
        let times: BTreeSet<DateTime<Utc>> = (0..20)
            .map(|_| {
                let c = issue(&w.template, &key, &w.ca, t0())
                    .expect("issue")
                    .certificate;
                renewal_time(&c, &RenewalPolicy::default())
            })
            .collect();
        assert!(
            times.len() >= 19,
            "20 certificates issued together got only {} distinct renewal times",
            times.len()
        );
    }

    #[test]
    fn rotation_policy_never_reuses_a_sound_key_of_the_right_algorithm() {
        let w = world();
        let never = RenewalPolicy {
            rotation: RotationPolicy::Never,
            ..w.policy.clone()
        };
        let due = t0() + Duration::days(61);
        assert_eq!(
            plan(
                &w.template,
                &never,
                Some(&w.secret),
                w.ca.certificate(),
                due
            ),
            Plan::Issue {
                reason: IssueReason::RenewalDue,
                reuse_key: true
            }
        );
        assert_eq!(
            plan(
                &w.template,
                &w.policy,
                Some(&w.secret),
                w.ca.certificate(),
                due
            ),
            Plan::Issue {
                reason: IssueReason::RenewalDue,
                reuse_key: false
            }
        );
        let mut p384 = w.template.clone();
        p384.key_algorithm = KeyAlgorithm::EcdsaP384;
        assert!(matches!(
            plan(&p384, &never, Some(&w.secret), w.ca.certificate(), due),
            Plan::Issue {
                reuse_key: false,
                ..
            }
        ));
        let mut s = spec();
        s.private_key = Some(PrivateKeySettings {
            algorithm: None,
            rotation_policy: Some(RotationPolicy::Never),
        });
        assert_eq!(RenewalPolicy::from_spec(&s).rotation, RotationPolicy::Never);
    }
}
