//! What to do about one ClusterCertificate, decided from what was observed
//! (the object, its issuer, its Secret) and the clock. Pure: every case is
//! a row in a table test, and the reconciler only carries the decision out.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;

use super::WAITING_RETRY;
use super::secret::{Ownership, ownership, secret_data};
use crate::api::{ClusterCertificate, RevocationRecord, meta};
use crate::core::plan::{IssueReason, Plan, RenewalPolicy, plan};
use crate::operator::reason::{Blocked, Reason};
use crate::operator::runtime::managed_namespaces::ManagedNamespaces;
use crate::operator::store::authority_cache::KeyRing;
use crate::pki::{Authority, CertificateInfo, LeafTemplate};

/// The issuer as observed: the CA object's state and, when Ready, its signer.
pub enum Issuer {
    Blocked(Blocked),
    Ready {
        ring: Arc<KeyRing>,
        crl_url: Option<String>,
        /// Who may get which identity from this CA.
        governance: Governance,
    },
}

/// What decides who may get which identity from a CA, as observed: the
/// CA's own `spec.policy` and `spec.requirePolicy`, every
/// CertificatePolicy, whether the admission guard that makes
/// `spec.policyRef` trustworthy is in force, and the API server's Service
/// addresses (privileged).
#[derive(Clone, Debug)]
pub struct Governance {
    pub ca: String,
    pub ca_policy: Option<crate::api::IssuancePolicy>,
    pub require_policy: bool,
    pub api_server_ips: Vec<std::net::IpAddr>,
    pub policies: Vec<Arc<crate::api::CertificatePolicy>>,
    pub guard: Result<(), crate::operator::runtime::admission_guard::GuardFault>,
}

/// How soon a certificate refused for want of the admission guard looks
/// again (the guard is looked at every 15 s).
pub const GUARD_RETRY: Duration = Duration::from_secs(15);

impl Issuer {
    /// Ready, with no old key retiring (a rotation's re-issues wait for
    /// the turn of the certificate the Secret holds).
    pub fn signs_alone(&self) -> bool {
        matches!(self, Issuer::Ready { ring, .. } if ring.retiring.is_none())
    }
}

/// What the reconciler does next.
#[derive(Debug)]
pub enum Decision {
    /// Cannot progress: say why in the status (and an Event).
    Blocked(Blocked),
    /// Sign a new certificate and write the Secret.
    Issue(Box<Issuance>),
    /// An issuance failed and its backoff, recorded in the status, has
    /// this long to run, or a certificate names a policy and the admission
    /// guard was not looked at yet: look again then, and write nothing.
    RetryLater(Duration),
    /// The Secret's certificate is good until `renewal_time`.
    UpToDate {
        current: Box<CertificateInfo>,
        renewal_time: DateTime<Utc>,
        change_pending_since: Option<DateTime<Utc>>,
        /// The index of the CA key that signed it.
        key: u32,
        /// What the Secret's `ca.crt` must hold.
        bundle: String,
    },
}

/// Everything the writer needs to issue.
#[derive(Debug)]
pub struct Issuance {
    pub template: LeafTemplate,
    pub authority: Arc<Authority>,
    /// The index of the signing key, for the ledger.
    pub key: u32,
    /// The CA's trust bundle, for `ca.crt`.
    pub bundle: String,
    pub reason: IssueReason,
    pub reuse_key: bool,
    /// Never reused, even when the Secret (and its annotation) was deleted.
    pub revision: i64,
    /// The renewal request this issuance answers, recorded on the Secret.
    pub renewal_request: Option<String>,
}

/// The renewal policy of a certificate as observed: its spec, the renewal
/// request on the object and the one its Secret answers, the revocation
/// recorded on the object.
/// A `secretNamespace` certop does not manage is refused before anything
/// is read or signed: it holds no permission on Secrets there, and a key
/// made for a Secret it cannot write would only be thrown away. Looked at
/// again on a change (the list changes only with a restart, which passes
/// over every certificate).
pub fn unmanaged_namespace(namespace: &str, managed: &ManagedNamespaces) -> Option<Blocked> {
    (!managed.contains(namespace)).then(|| {
        Blocked::new(
            Reason::NamespaceNotManaged,
            format!(
                "namespace {namespace} is not one certop manages ({}): add it to the chart's managedNamespaces (certop run --managed-namespaces), or choose a managed spec.secretNamespace",
                managed.describe()
            ),
            None,
        )
    })
}

pub fn renewal_policy(cert: &ClusterCertificate, secret: Option<&Secret>) -> RenewalPolicy {
    let mut policy = RenewalPolicy::from_spec(&cert.spec);
    policy.revoked_serial = revocation_of(cert).map(|r| r.serial_number);
    policy.requested = cert.annotations().get(meta::RENEW_REQUESTED_AT).cloned();
    policy.honoured = secret.and_then(|s| s.annotations().get(meta::RENEWAL_REQUEST).cloned());
    policy.distribution_point_change_seen =
        cert.status.as_ref().and_then(|s| s.pending_change_since);
    policy
}

/// The revocation certop recorded on a ClusterCertificate, if any.
pub fn revocation_of(cert: &ClusterCertificate) -> Option<Box<RevocationRecord>> {
    cert.annotations()
        .get(meta::REVOCATION)
        .and_then(|r| serde_json::from_str(r).ok())
}

pub fn revision_of(secret: &Secret) -> Option<i64> {
    secret
        .annotations()
        .get(meta::REVISION)
        .and_then(|r| r.parse().ok())
}

/// The wait left of a failed issuance's backoff, as the status records it
/// (and its condition says). Every pass honours it, whatever started the
/// pass: the watch event of the failure's own status write starts one at
/// once, and issuing again there was a loop. A spec changed since the
/// failure is tried at once.
fn issuance_backoff(cert: &ClusterCertificate, now: DateTime<Utc>) -> Option<Duration> {
    let status = cert.status.as_ref()?;
    if status.observed_generation != cert.metadata.generation {
        return None;
    }
    let attempts = status.failed_issuance_attempts?;
    let last = status.last_failure_time?;
    crate::operator::runtime::backoff::ISSUANCE.remaining(attempts.unsigned_abs(), last, now)
}

pub fn decide(
    cert: &ClusterCertificate,
    issuer: Issuer,
    secret: Option<&Secret>,
    now: DateTime<Utc>,
) -> Decision {
    let (template, ring) = match admitted(cert, issuer) {
        Ok(admitted) => admitted,
        Err(decision) => return decision,
    };
    if let Ownership::Foreign(message) = ownership(secret, &cert.name_any()) {
        return Decision::Blocked(Blocked::new(
            Reason::SecretConflict,
            message,
            Some(WAITING_RETRY),
        ));
    }
    let data = secret.map(secret_data);
    let mut policy = renewal_policy(cert, secret);
    policy.reissue = ring.reissue();
    match plan(
        &template,
        &policy,
        data.as_ref(),
        ring.signing.certificate(),
        now,
    ) {
        Plan::UpToDate {
            current,
            renewal_time,
            change_pending_since,
        } => Decision::UpToDate {
            key: match &ring.retiring {
                Some(retiring) if current.is_issued_by(&retiring.certificate) => retiring.index,
                _ => ring.signing_index,
            },
            current,
            renewal_time,
            change_pending_since,
            bundle: ring.bundle_pem(),
        },
        Plan::Issue { reason, reuse_key } => after_backoff(cert, now, || Issuance {
            reuse_key,
            renewal_request: policy.requested,
            ..Issuance::by(&ring, template, reason, next_revision(cert, secret))
        }),
    }
}

impl Issuance {
    /// An issuance by the CA's signing key, with a new key and no renewal
    /// request answered.
    fn by(ring: &KeyRing, template: LeafTemplate, reason: IssueReason, revision: i64) -> Self {
        Issuance {
            template,
            authority: ring.signing.clone(),
            key: ring.signing_index,
            bundle: ring.bundle_pem(),
            reason,
            reuse_key: false,
            revision,
            renewal_request: None,
        }
    }
}

/// The issuance, unless the backoff of a failed one still runs.
fn after_backoff(
    cert: &ClusterCertificate,
    now: DateTime<Utc>,
    issuance: impl FnOnce() -> Issuance,
) -> Decision {
    match issuance_backoff(cert, now) {
        Some(wait) => Decision::RetryLater(wait),
        None => Decision::Issue(Box::new(issuance())),
    }
}

/// The renewal `secret_read` found due (`SecretRead::ReplaceUnread`),
/// decided without the Secret: what the status recorded of it stands for
/// it, and the write that replaces it fails unless it is still that
/// version.
pub fn decide_unread_renewal(
    cert: &ClusterCertificate,
    issuer: Issuer,
    reason: IssueReason,
    now: DateTime<Utc>,
) -> Decision {
    let (template, ring) = match admitted(cert, issuer) {
        Ok(admitted) => admitted,
        Err(decision) => return decision,
    };
    after_backoff(cert, now, || Issuance {
        renewal_request: cert.annotations().get(meta::RENEW_REQUESTED_AT).cloned(),
        ..Issuance::by(&ring, template, reason, next_revision(cert, None))
    })
}

/// What every decision to issue needs first: a valid spec, a Ready
/// issuer, and a policy that allows the spec. The template carries the
/// issuer's CRL distribution point.
fn admitted(
    cert: &ClusterCertificate,
    issuer: Issuer,
) -> Result<(LeafTemplate, Arc<KeyRing>), Decision> {
    let mut template = valid_template(cert).map_err(Decision::Blocked)?;
    let (ring, crl_url, governance) = match issuer {
        Issuer::Blocked(b) => return Err(Decision::Blocked(b)),
        Issuer::Ready {
            ring,
            crl_url,
            governance,
        } => (ring, crl_url, governance),
    };
    if cert.spec.policy_ref.is_some()
        && matches!(
            governance.guard,
            Err(crate::operator::runtime::admission_guard::GuardFault::NotLookedAt)
        )
    {
        // Not looked at yet is not out of force: refusing would turn a
        // good certificate Ready=False until the next look. Write nothing.
        return Err(Decision::RetryLater(GUARD_RETRY));
    }
    authorize(cert, &governance, &template).map_err(Decision::Blocked)?;
    template.crl_distribution_point = crl_url;
    Ok((template, ring))
}

/// The spec as a template, if certop's own checks (the core's, and the
/// `secretTemplate`'s) let it through.
fn valid_template(cert: &ClusterCertificate) -> Result<LeafTemplate, Blocked> {
    let invalid = |message: String| Blocked::new(Reason::InvalidSpec, message, None);
    let template = LeafTemplate::from_spec(&cert.spec).map_err(|e| invalid(e.to_string()))?;
    if let Some(t) = &cert.spec.secret_template {
        t.validate().map_err(|e| invalid(e.to_string()))?;
    }
    Ok(template)
}

/// Whether a policy allows the template; a refusal for want of the
/// admission guard is looked at again soon (the guard may come back).
fn authorize(
    cert: &ClusterCertificate,
    governance: &Governance,
    template: &LeafTemplate,
) -> Result<(), Blocked> {
    crate::core::policy::authorize_certificate(
        crate::core::policy::Authority {
            name: &governance.ca,
            policy: governance.ca_policy.as_ref(),
            require_policy: governance.require_policy,
            api_server_ips: &governance.api_server_ips,
        },
        &governance.policies,
        cert.spec.policy_ref.as_ref().map(|r| r.name.as_str()),
        governance.guard.clone(),
        cert.spec.profile,
        template,
    )
    .map_err(|denial| {
        let retry = matches!(denial, crate::core::policy::Denial::GuardNotInForce(_))
            .then_some(GUARD_RETRY);
        Blocked::new(Reason::PolicyViolation, denial.to_string(), retry)
    })
}

/// The revision of the next issuance: one past the highest the Secret or
/// the status recorded.
fn next_revision(cert: &ClusterCertificate, secret: Option<&Secret>) -> i64 {
    secret
        .and_then(revision_of)
        .max(cert.status.as_ref().and_then(|s| s.revision))
        .unwrap_or(0)
        .saturating_add(1)
}

/// Whether a pass reads the Secret before it decides.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecretRead {
    Read,
    /// Create the Secret without reading it first: one request fewer per
    /// new certificate. The create fails if a Secret of that name exists,
    /// and the pass is made again with the read, so nothing is
    /// overwritten unread.
    CreateUnread,
    /// Renew without reading the Secret first: one request fewer per
    /// renewal. The write replaces the Secret only at `resource_version`,
    /// the version the status recorded; if the Secret changed since, the
    /// pass is made again with the read. A Secret deleted since is
    /// created again, as the read would have had it.
    ReplaceUnread {
        resource_version: String,
        reason: IssueReason,
    },
}

/// A renewal the status alone shows due, of a Secret it recorded at a
/// version (`status.secretVersion`): expired, requested (a renewal
/// request other than the one the Secret's certificate answers) or past
/// its renewal time, in the order `plan` judges them. None for anything
/// the Secret itself must be read for: a key to reuse, a revocation of
/// the current serial, a spec not yet issued for, a CRL distribution
/// point change waiting for its turn, a certificate not Ready.
pub fn unread_renewal(cert: &ClusterCertificate, now: DateTime<Utc>) -> Option<SecretRead> {
    let status = cert.status.as_ref()?;
    let version = status.secret_version.as_deref()?;
    let ready = crate::operator::conditions::is_true(
        &status.conditions,
        crate::operator::conditions::READY,
    );
    let revoked = revocation_of(cert)
        .is_some_and(|r| status.serial_number.as_deref() == Some(r.serial_number.as_str()));
    let rotation = RenewalPolicy::from_spec(&cert.spec).rotation;
    if !ready
        || status.observed_generation.is_none()
        || status.observed_generation != cert.metadata.generation
        || status.pending_change_since.is_some()
        || rotation == crate::api::RotationPolicy::Never
        || revoked
    {
        return None;
    }
    let requested = cert.annotations().get(meta::RENEW_REQUESTED_AT);
    let reason = if status.not_after.is_some_and(|t| now >= t) {
        IssueReason::Expired
    } else if requested.is_some() && requested != version.renewal_request.as_ref() {
        IssueReason::RenewalRequested
    } else if status.renewal_time.is_some_and(|t| now >= t) {
        IssueReason::RenewalDue
    } else {
        return None;
    };
    Some(SecretRead::ReplaceUnread {
        resource_version: version.resource_version.clone(),
        reason,
    })
}

/// A certificate whose status names no serial, and whose `Ready` says
/// nothing or only why the Secret was never reached (the issuer, the
/// namespace, the spec, a policy), most likely has no Secret: it is new.
/// Any other reason came from a pass that read a Secret (another
/// certificate's, one revoked for good): reading again is cheaper than a
/// key made for a create bound to fail. So is a Secret `known` to exist
/// (certop wrote it, or the Secret watch showed it): a status names no
/// serial while the record of the Secret's certificate waits for its
/// group (`ledger_store::record_deferred`), and a pass then, after the
/// watch listed again or the operator restarted, would sign a certificate
/// only to have its create refused.
///
/// A renewal due by the status (`unread_renewal`) is made unread unless
/// the Secret watch showed the Secret at another version than the status
/// recorded (`shown`).
pub fn secret_read(
    cert: &ClusterCertificate,
    known: bool,
    shown: Option<&str>,
    now: DateTime<Utc>,
) -> SecretRead {
    if let Some(unread) = unread_renewal(cert, now)
        && let SecretRead::ReplaceUnread {
            resource_version, ..
        } = &unread
        && shown.is_none_or(|v| v == resource_version)
    {
        return unread;
    }
    let status = cert.status.as_ref();
    if known || status.is_some_and(|s| s.serial_number.is_some() || s.revision.is_some()) {
        return SecretRead::Read;
    }
    let ready = status.and_then(|s| {
        crate::operator::conditions::find(&s.conditions, crate::operator::conditions::READY)
    });
    let never_reached_the_secret = |reason: &str| {
        [
            Reason::IssuerNotFound,
            Reason::IssuerPending,
            Reason::IssuerNotReady,
            Reason::NamespaceNotFound,
            Reason::NamespaceNotManaged,
            Reason::InvalidSpec,
            Reason::PolicyViolation,
        ]
        .iter()
        .any(|r| r.as_str() == reason)
    };
    match ready {
        None => SecretRead::CreateUnread,
        Some(c) if never_reached_the_secret(&c.reason) => SecretRead::CreateUnread,
        Some(_) => SecretRead::Read,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::ByteString;

    use super::*;
    use crate::api::{ClusterCertificateSpec, IssuerRef, SecretTemplate};
    use crate::core::plan::{CA_CERT_KEY, TLS_CERT_KEY, TLS_PRIVATE_KEY_KEY};
    use crate::operator::runtime::admission_guard::GuardFault;
    use crate::pki::{CaRequest, PrivateKey, issue};

    fn cert(edit: impl FnOnce(&mut ClusterCertificateSpec)) -> ClusterCertificate {
        let mut spec = ClusterCertificateSpec {
            issuer_ref: IssuerRef { name: "ca".into() },
            secret_name: "web".into(),
            secret_namespace: "default".into(),
            dns_names: vec!["web.example.com".into()],
            ..Default::default()
        };
        edit(&mut spec);
        ClusterCertificate::new("web", spec)
    }

    #[test]
    fn a_secret_namespace_outside_the_managed_ones_is_refused_with_what_to_fix() {
        let only = |names: &[&str]| ManagedNamespaces::from_list(names);
        let cases: &[(&str, ManagedNamespaces, bool)] = &[
            ("team-a", ManagedNamespaces::All, false),
            ("default", only(&["default", "kube-system"]), false),
            ("kube-system", only(&["default", "kube-system"]), false),
            ("team-a", only(&["default", "kube-system"]), true),
            ("certop-system", only(&["default"]), true),
        ];
        for (namespace, managed, refused) in cases {
            let blocked = unmanaged_namespace(namespace, managed);
            assert_eq!(blocked.is_some(), *refused, "{namespace} in {managed:?}");
            if let Some(b) = blocked {
                assert_eq!(b.reason, Reason::NamespaceNotManaged);
                assert!(b.message.contains(namespace), "{}", b.message);
                assert!(b.message.contains("managedNamespaces"), "{}", b.message);
                assert!(b.message.contains(&managed.describe()), "{}", b.message);
            }
        }
    }

    /// A CA made a day before `now`, as in a running cluster.
    fn ca(now: DateTime<Utc>) -> Authority {
        Authority::create(&CaRequest::new("ca"), now - chrono::Duration::days(1)).expect("ca")
    }

    fn ready(authority: &Arc<Authority>) -> Issuer {
        Issuer::Ready {
            ring: Arc::new(KeyRing {
                signing: authority.clone(),
                signing_index: 0,
                next: None,
                previous: None,
                retiring: None,
                switched_at: None,
                overlap: chrono::Duration::zero(),
            }),
            crl_url: None,
            governance: Governance {
                ca: "ca".into(),
                ca_policy: None,
                require_policy: false,
                api_server_ips: Vec::new(),
                policies: Vec::new(),
                guard: Ok(()),
            },
        }
    }

    /// A Secret holding a certificate for `c`, as certop writes it.
    fn secret_for(c: &ClusterCertificate, authority: &Authority, now: DateTime<Utc>) -> Secret {
        let template = LeafTemplate::from_spec(&c.spec).expect("template");
        let key = PrivateKey::generate(template.key_algorithm).expect("key");
        let issued = issue(&template, &key, authority, now).expect("issue");
        let mut s = Secret::default();
        s.metadata.name = Some("web".into());
        s.metadata.namespace = Some("default".into());
        s.metadata.labels = Some(BTreeMap::from([(
            meta::MANAGED_BY.into(),
            meta::MANAGED_BY_VALUE.into(),
        )]));
        s.metadata.annotations = Some(BTreeMap::from([
            (meta::CERTIFICATE.into(), "web".into()),
            (meta::REVISION.into(), "4".into()),
        ]));
        s.data = Some(BTreeMap::from([
            (
                TLS_CERT_KEY.into(),
                ByteString(issued.chain_pem.into_bytes()),
            ),
            (
                TLS_PRIVATE_KEY_KEY.into(),
                ByteString(key.to_pem().into_bytes()),
            ),
            (
                CA_CERT_KEY.into(),
                ByteString(authority.certificate_pem().as_bytes().to_vec()),
            ),
        ]));
        s
    }

    fn reason_of(d: &Decision) -> String {
        match d {
            Decision::Blocked(b) => format!("blocked {}", b.reason),
            Decision::Issue(i) => format!("issue {} r{}", i.reason.code(), i.revision),
            Decision::RetryLater(wait) => format!("retry in {}s", wait.as_secs()),
            Decision::UpToDate { .. } => "up to date".into(),
        }
    }

    #[test]
    fn decision_table() {
        let now = Utc::now();
        let authority = Arc::new(ca(now));
        let good = cert(|_| {});
        let secret = secret_for(&good, &authority, now);
        let mut foreign = secret.clone();
        foreign.metadata.labels = None;
        let mut requested = good.clone();
        requested
            .annotations_mut()
            .insert(meta::RENEW_REQUESTED_AT.into(), "x".into());
        let mut answered = secret.clone();
        answered
            .annotations_mut()
            .insert(meta::RENEWAL_REQUEST.into(), "x".into());
        let pending = || Issuer::Blocked(Blocked::new(Reason::IssuerPending, "wait", None));
        let with_guard = |guard: GuardFault| match ready(&authority) {
            Issuer::Ready {
                ring,
                crl_url,
                mut governance,
            } => {
                governance.guard = Err(guard);
                Issuer::Ready {
                    ring,
                    crl_url,
                    governance,
                }
            }
            blocked => blocked,
        };
        let named = cert(|s| {
            s.policy_ref = Some(crate::api::PolicyRef {
                name: "team".into(),
            })
        });
        let named_secret = secret_for(&named, &authority, now);
        let cases: Vec<(&str, ClusterCertificate, Issuer, Option<&Secret>, &str)> = vec![
            (
                "no Secret",
                good.clone(),
                ready(&authority),
                None,
                "issue SecretMissing r1",
            ),
            (
                "valid Secret",
                good.clone(),
                ready(&authority),
                Some(&secret),
                "up to date",
            ),
            (
                "issuer pending",
                good.clone(),
                pending(),
                Some(&secret),
                "blocked IssuerPending",
            ),
            (
                "foreign Secret",
                good.clone(),
                ready(&authority),
                Some(&foreign),
                "blocked SecretConflict",
            ),
            (
                "bad label in secretTemplate",
                cert(|s| {
                    s.secret_template = Some(Box::new(SecretTemplate {
                        labels: BTreeMap::from([("bad key!".into(), "v".into())]),
                        ..Default::default()
                    }))
                }),
                ready(&authority),
                Some(&secret),
                "blocked InvalidSpec",
            ),
            (
                "spec refused before the issuer is even looked at",
                cert(|s| s.dns_names = vec!["10.0.0.1".into()]),
                pending(),
                None,
                "blocked InvalidSpec",
            ),
            (
                "duration beyond what can be represented",
                cert(|s| s.duration = serde_json::from_str("\"9999999999999999h\"").ok()),
                ready(&authority),
                None,
                "blocked InvalidSpec",
            ),
            (
                "renewal requested",
                requested.clone(),
                ready(&authority),
                Some(&secret),
                "issue RenewalRequested r5",
            ),
            (
                "renewal request answered",
                requested,
                ready(&authority),
                Some(&answered),
                "up to date",
            ),
            // The operator has just started: a guard not looked at yet is
            // not a guard out of force, and the status keeps what it said.
            (
                "policy named, guard not looked at yet",
                named.clone(),
                with_guard(GuardFault::NotLookedAt),
                Some(&named_secret),
                "retry in 15s",
            ),
            (
                "policy named, guard missing",
                named.clone(),
                with_guard(GuardFault::Missing {
                    kind: "ValidatingAdmissionPolicy",
                }),
                Some(&named_secret),
                "blocked PolicyViolation",
            ),
            (
                "no policy named, guard not looked at yet",
                good.clone(),
                with_guard(GuardFault::NotLookedAt),
                Some(&secret),
                "up to date",
            ),
        ];
        for (name, c, issuer, s, expected) in cases {
            assert_eq!(reason_of(&decide(&c, issuer, s, now)), expected, "{name}");
        }
    }

    #[test]
    fn a_failed_issuance_waits_out_its_backoff_unless_the_spec_changed() {
        let now = Utc::now();
        let authority = Arc::new(ca(now));
        let failed = |attempts: i32, ago: i64, observed: i64| {
            let mut c = cert(|_| {});
            c.metadata.generation = Some(2);
            c.status = Some(crate::api::ClusterCertificateStatus {
                failed_issuance_attempts: Some(attempts),
                last_failure_time: Some(now - chrono::Duration::seconds(ago)),
                observed_generation: Some(observed),
                ..Default::default()
            });
            c
        };
        let cases = [
            ("just failed", failed(1, 0, 2), "retry in 5s"),
            ("third failure, 15 s ago", failed(3, 15, 2), "retry in 5s"),
            (
                "the backoff has run",
                failed(1, 5, 2),
                "issue SecretMissing r1",
            ),
            (
                "spec changed since",
                failed(4, 0, 1),
                "issue SecretMissing r1",
            ),
        ];
        for (name, c, expected) in cases {
            assert_eq!(
                reason_of(&decide(&c, ready(&authority), None, now)),
                expected,
                "{name}"
            );
        }
        // A Secret holding a good certificate is not held up by the backoff.
        let good = failed(1, 0, 2);
        let secret = secret_for(&good, &authority, now);
        assert_eq!(
            reason_of(&decide(&good, ready(&authority), Some(&secret), now)),
            "up to date"
        );
    }

    #[test]
    fn revision_never_goes_back_even_when_the_secret_was_deleted() {
        let now = Utc::now();
        let authority = Arc::new(ca(now));
        let mut c = cert(|_| {});
        c.status = Some(crate::api::ClusterCertificateStatus {
            revision: Some(7),
            ..Default::default()
        });
        assert_eq!(
            reason_of(&decide(&c, ready(&authority), None, now)),
            "issue SecretMissing r8"
        );
    }

    #[test]
    fn only_a_certificate_that_never_reached_a_secret_creates_one_unread() {
        let now = Utc::now();
        let with = |serial: Option<&str>, revision: Option<i64>, ready: Option<Reason>| {
            let mut c = cert(|_| {});
            let mut status = crate::api::ClusterCertificateStatus {
                serial_number: serial.map(str::to_string),
                revision,
                ..Default::default()
            };
            if let Some(reason) = ready {
                crate::operator::conditions::set(
                    &mut status.conditions,
                    crate::operator::conditions::READY,
                    false,
                    reason.as_str(),
                    "",
                    None,
                    now,
                );
            }
            c.status = Some(status);
            c
        };
        let cases = [
            ("no status", cert(|_| {}), SecretRead::CreateUnread),
            (
                "empty status",
                with(None, None, None),
                SecretRead::CreateUnread,
            ),
            (
                "issuer not ready yet",
                with(None, None, Some(Reason::IssuerPending)),
                SecretRead::CreateUnread,
            ),
            (
                "namespace missing",
                with(None, None, Some(Reason::NamespaceNotFound)),
                SecretRead::CreateUnread,
            ),
            ("issued", with(Some("01"), Some(1), None), SecretRead::Read),
            (
                "a revision only",
                with(None, Some(3), None),
                SecretRead::Read,
            ),
            (
                "another certificate's Secret",
                with(None, None, Some(Reason::SecretConflict)),
                SecretRead::Read,
            ),
            (
                "revoked for good",
                with(None, None, Some(Reason::IssuanceFailed)),
                SecretRead::Read,
            ),
        ];
        for (name, c, expected) in cases {
            assert_eq!(secret_read(&c, false, None, now), expected, "{name}");
            assert_eq!(
                secret_read(&c, true, Some("1"), now),
                SecretRead::Read,
                "{name}, its Secret known to exist"
            );
        }
    }

    /// A Ready certificate whose status recorded its Secret at version
    /// "7", renewal at `now`, expiry a day later.
    fn recorded(
        now: DateTime<Utc>,
        edit: impl FnOnce(&mut ClusterCertificate),
    ) -> ClusterCertificate {
        let mut c = cert(|_| {});
        c.metadata.generation = Some(1);
        let mut status = crate::api::ClusterCertificateStatus {
            observed_generation: Some(1),
            serial_number: Some("0a".into()),
            revision: Some(1),
            renewal_time: Some(now),
            not_after: Some(now + chrono::Duration::days(1)),
            secret_version: Some(Box::new(crate::api::SecretVersion {
                resource_version: "7".into(),
                renewal_request: None,
            })),
            ..Default::default()
        };
        crate::operator::conditions::set(
            &mut status.conditions,
            crate::operator::conditions::READY,
            true,
            "Issued",
            "",
            Some(1),
            now,
        );
        c.status = Some(status);
        edit(&mut c);
        c
    }

    #[test]
    fn only_a_renewal_the_status_shows_due_is_made_unread() {
        let now = Utc::now();
        fn status(c: &mut ClusterCertificate) -> &mut crate::api::ClusterCertificateStatus {
            c.status.get_or_insert_default()
        }
        let request = |c: &mut ClusterCertificate, value: &str| {
            c.annotations_mut()
                .insert(meta::RENEW_REQUESTED_AT.into(), value.into());
        };
        let unread = |reason| SecretRead::ReplaceUnread {
            resource_version: "7".into(),
            reason,
        };
        let cases: Vec<(&str, ClusterCertificate, Option<SecretRead>)> = vec![
            (
                "due",
                recorded(now, |_| {}),
                Some(unread(IssueReason::RenewalDue)),
            ),
            (
                "not yet due",
                recorded(now, |c| {
                    status(c).renewal_time = Some(now + chrono::Duration::seconds(1))
                }),
                None,
            ),
            (
                "expired",
                recorded(now, |c| status(c).not_after = Some(now)),
                Some(unread(IssueReason::Expired)),
            ),
            (
                "a renewal request the Secret does not answer",
                recorded(now, |c| {
                    status(c).renewal_time = Some(now + chrono::Duration::hours(1));
                    request(c, "r2");
                }),
                Some(unread(IssueReason::RenewalRequested)),
            ),
            (
                "a renewal request the Secret answers",
                recorded(now, |c| {
                    status(c).renewal_time = Some(now + chrono::Duration::hours(1));
                    request(c, "r1");
                    if let Some(v) = status(c).secret_version.as_mut() {
                        v.renewal_request = Some("r1".into());
                    }
                }),
                None,
            ),
            (
                "no version recorded (before certop recorded it)",
                recorded(now, |c| status(c).secret_version = None),
                None,
            ),
            (
                "not Ready",
                recorded(now, |c| status(c).conditions.clear()),
                None,
            ),
            (
                "a spec not yet issued for",
                recorded(now, |c| c.metadata.generation = Some(2)),
                None,
            ),
            (
                "a key to reuse",
                recorded(now, |c| {
                    c.spec.private_key = Some(crate::api::PrivateKeySettings {
                        rotation_policy: Some(crate::api::RotationPolicy::Never),
                        ..Default::default()
                    })
                }),
                None,
            ),
            (
                "the current serial revoked",
                recorded(now, |c| {
                    let record = crate::api::RevocationRecord {
                        serial_number: "0a".into(),
                        reason: crate::api::RevocationReason::KeyCompromise,
                        revoked_at: now,
                        revocation: None,
                    };
                    c.annotations_mut().insert(
                        meta::REVOCATION.into(),
                        serde_json::to_string(&record).expect("json"),
                    );
                }),
                None,
            ),
            (
                "a CRL distribution point change waiting for its turn",
                recorded(now, |c| status(c).pending_change_since = Some(now)),
                None,
            ),
        ];
        for (name, c, expected) in cases {
            assert_eq!(unread_renewal(&c, now), expected, "{name}");
            let read = secret_read(&c, true, Some("7"), now);
            match &expected {
                Some(unread) => assert_eq!(&read, unread, "{name}, shown at the recorded version"),
                None => assert_eq!(read, SecretRead::Read, "{name}"),
            }
        }
        let due = recorded(now, |_| {});
        assert_eq!(
            secret_read(&due, true, Some("8"), now),
            SecretRead::Read,
            "the watch showed another version: read it"
        );
    }
}
