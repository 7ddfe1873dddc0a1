//! A CA's status: derived here from the pass's decision and what its
//! writes published (pure), and written at the resourceVersion the pass
//! read.

use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Api, ResourceExt};

use super::crl_refresh::Refreshed;
use super::decide::{Announcement, Publish, reason_changed};
use super::trust_bundle::{BundleOutcome, trust_bundle_problem};
use crate::api::{CertificateAuthority, CertificateAuthorityStatus};
use crate::core::rotation;
use crate::operator::conditions::{self, READY};
use crate::operator::reason::{Blocked, Reason};
use crate::operator::runtime::context::FIELD_MANAGER;
use crate::operator::runtime::managed_namespaces::ManagedNamespaces;
use crate::operator::{Context, Error, store::crl, store::ledger_store};
use crate::pki::CertificateInfo;

/// How often a CA is looked at when nothing changes: keeps trust bundles
/// and status current even if a watch event was missed.
pub const RESYNC: Duration = Duration::from_secs(3600);
/// The condition a CA near its end carries.
pub const EXPIRING: &str = "Expiring";
/// The condition that says a rotation cannot go on.
pub const ROTATION: &str = "Rotation";
/// The condition a CA carries while certop cannot prove its CRL complete.
pub const CRL_COMPLETE: &str = "CRLComplete";
/// Where the trust bundles could not go.
const TRUST_BUNDLE: &str = "TrustBundle";
/// Why `spec.podCertificates` cannot be served (the API is not enabled).
const POD_CERTIFICATES: &str = "PodCertificates";
/// An unreadable or full ledger shard.
const LEDGER: &str = "Ledger";
/// A CRL too large for one object, or whose number cannot grow.
const CRL_STORED: &str = "CRLStored";

/// Whether an object is a CA certop may sign with right now.
pub fn is_ready(ca: &CertificateAuthority) -> bool {
    ca.status
        .as_ref()
        .is_some_and(|s| conditions::is_true(&s.conditions, READY))
        && ca.metadata.deletion_timestamp.is_none()
}

/// Sets a secondary condition False with a reason, or removes it when all is well.
pub fn set_or_clear(
    list: &mut Vec<Condition>,
    type_: &str,
    problem: Option<(Reason, String)>,
    generation: Option<i64>,
    now: DateTime<Utc>,
) {
    match problem {
        Some((reason, message)) => conditions::set(
            list,
            type_,
            false,
            reason.as_str(),
            &message,
            generation,
            now,
        ),
        None => list.retain(|c| c.type_ != type_),
    }
}

/// The status of a CA that cannot sign, and the Event when its reason is new.
pub fn not_ready(
    ca: &CertificateAuthority,
    blocked: &Blocked,
    now: DateTime<Utc>,
) -> (CertificateAuthorityStatus, Option<Announcement>) {
    let previous = ca.status.clone().unwrap_or_default();
    let mut status = previous.clone();
    status.observed_generation = ca.metadata.generation;
    let reason = blocked.reason;
    conditions::set(
        &mut status.conditions,
        READY,
        false,
        reason.as_str(),
        &blocked.message,
        ca.metadata.generation,
        now,
    );
    let event = reason_changed(&previous, READY, reason).then(|| Announcement {
        reason,
        warning: true,
        action: reason.as_str(),
        message: blocked.message.clone(),
    });
    (status, event)
}

/// The status of a CA that signs with `cert`, from its Secret `secret_name`.
pub fn serving(
    ca: &CertificateAuthority,
    previous: &CertificateAuthorityStatus,
    secret_name: &str,
    cert: &CertificateInfo,
    now: DateTime<Utc>,
) -> CertificateAuthorityStatus {
    let mut status = previous.clone();
    status.observed_generation = ca.metadata.generation;
    status.secret_name = Some(secret_name.to_string());
    status.serial_number = Some(cert.serial.to_string());
    status.fingerprint = Some(cert.fingerprint.clone());
    status.not_before = Some(cert.not_before);
    status.not_after = Some(cert.not_after);
    let message = format!(
        "CA serial {} valid until {}",
        cert.serial,
        cert.not_after.to_rfc3339()
    );
    conditions::set(
        &mut status.conditions,
        READY,
        true,
        Reason::Ready.as_str(),
        &message,
        ca.metadata.generation,
        now,
    );
    status
}

/// The Expiring condition (`message`: why it is set, None: it is not),
/// and the warning Event when it starts.
pub fn expiring(
    ca: &CertificateAuthority,
    status: &mut CertificateAuthorityStatus,
    previous: &CertificateAuthorityStatus,
    message: Option<String>,
    now: DateTime<Utc>,
) -> Option<Announcement> {
    let Some(message) = message else {
        status.conditions.retain(|c| c.type_ != EXPIRING);
        return None;
    };
    conditions::set(
        &mut status.conditions,
        EXPIRING,
        true,
        Reason::CANearExpiry.as_str(),
        &message,
        ca.metadata.generation,
        now,
    );
    (!conditions::is_true(&previous.conditions, EXPIRING)).then_some(Announcement {
        reason: Reason::CANearExpiry,
        warning: true,
        action: "Check",
        message,
    })
}

/// What the pass's publishing writes did.
pub struct Published {
    /// Where the trust bundle could not go.
    pub bundles: BundleOutcome,
    /// Why pods cannot get this CA's certificates or trust, if they cannot.
    pub pod_certificates: Option<(Reason, String)>,
    /// The certificates' Secrets whose `ca.crt` lacks the staged CA, as
    /// `namespace/name`.
    pub pending: Vec<String>,
    /// Each CRL kept fresh, in the order of `Publish::crls`.
    pub crls: Vec<Refreshed>,
}

/// What the status is finished from.
pub struct Finish<'a> {
    pub ca: &'a CertificateAuthority,
    pub publish: &'a Publish,
    pub published: &'a Published,
    pub ledger: &'a ledger_store::Loaded,
    pub managed: &'a ManagedNamespaces,
    pub now: DateTime<Utc>,
    /// certop's own clock, which records when the staged CA was published.
    pub wall: DateTime<Utc>,
}

/// The status once the pass has published, when to look again, and the
/// warning that a CRL cannot be proven complete when that starts.
pub fn finish(
    f: &Finish,
    mut status: CertificateAuthorityStatus,
) -> (CertificateAuthorityStatus, Duration, Option<Announcement>) {
    let generation = f.ca.metadata.generation;
    let now = f.now;
    record_publication(f, &mut status);
    let problem = trust_bundle_problem(&f.publish.bundle_name, &f.published.bundles, f.managed);
    set_or_clear(
        &mut status.conditions,
        TRUST_BUNDLE,
        problem,
        generation,
        now,
    );
    set_or_clear(
        &mut status.conditions,
        POD_CERTIFICATES,
        f.published.pod_certificates.clone(),
        generation,
        now,
    );
    ledger(f.ca, &mut status, f.ledger, now);
    let mut next_look = f.publish.next_look;
    let pending = &f.published.pending;
    if !pending.is_empty() {
        next_look = Duration::from_secs(10);
        let problem = Some((Reason::BundlesPending, bundles_pending_message(pending)));
        set_or_clear(&mut status.conditions, ROTATION, problem, generation, now);
    } else if conditions::find(&status.conditions, ROTATION)
        .is_some_and(|c| c.reason == Reason::BundlesPending.as_str())
    {
        status.conditions.retain(|c| c.type_ != ROTATION);
    }
    if let Some(at) = status.rotation.as_ref().and_then(|r| r.next_step_at) {
        let wait = (at - now).to_std().unwrap_or_default();
        next_look = next_look.min(wait.max(Duration::from_secs(1)));
    }
    let mut incomplete = Vec::new();
    for (job, refreshed) in f.publish.crls.iter().zip(&f.published.crls) {
        match refreshed {
            Refreshed::Fresh { crl, wait } => {
                next_look = next_look.min(*wait);
                if job.signing {
                    incomplete.extend(crl.incomplete.clone());
                    fill_crl_status(f.ca, &mut status, crl, now);
                } else {
                    let retiring = crl.incomplete.as_ref();
                    incomplete.extend(retiring.map(|m| format!("the retiring key's CRL: {m}")));
                }
            }
            Refreshed::Exhausted(message) if job.signing => {
                let problem = Some((Reason::CRLNumberExhausted, message.clone()));
                set_or_clear(&mut status.conditions, CRL_STORED, problem, generation, now);
            }
            Refreshed::Exhausted(_) => {}
        }
    }
    let warning = crl_completeness(f.ca, &mut status, incomplete, now);
    (status, next_look, warning)
}

/// The staged CA is in every trust bundle from now: recorded only after
/// the publication succeeded (a failed write returns first; a failed
/// status write records a later time next pass), by certop's clock, and
/// the overlap counts from it. So are the `ca.crt` of the Secrets certop
/// keeps for this CA's ClusterCertificates (the certificate controller
/// rewrites them on the same change): checked, not assumed.
fn record_publication(f: &Finish, status: &mut CertificateAuthorityStatus) {
    if let (Some(awaiting), Some(rotation_status)) = (&f.publish.awaiting, status.rotation.as_mut())
        && let Some(record) = rotation_status.record.as_mut()
        && record.next_trusted_since.is_none()
        && f.published.pending.is_empty()
    {
        record.next_trusted_since = Some(f.now.max(f.wall));
        rotation_status.next_step_at = rotation::switch_time(
            &awaiting.certificate,
            record.next_trusted_since,
            awaiting.overlap,
        );
    }
}

fn bundles_pending_message(pending: &[String]) -> String {
    let shown: Vec<&str> = pending.iter().take(5).map(String::as_str).collect();
    format!(
        "the staged CA certificate is not yet in the ca.crt of {} Secrets of this CA's certificates ({}{}); the overlap starts once it is in all of them. A Secret certop cannot write (see its ClusterCertificate's condition) holds the rotation here",
        pending.len(),
        shown.join(", "),
        if pending.len() > shown.len() {
            ", ..."
        } else {
            ""
        }
    )
}

/// `issuedCertificates`, `certificatesWithoutDigest`, and the Ledger
/// condition: an unreadable shard, or one at the size limit.
fn ledger(
    ca: &CertificateAuthority,
    status: &mut CertificateAuthorityStatus,
    ledger: &ledger_store::Loaded,
    now: DateTime<Utc>,
) {
    status.issued_certificates = Some(
        ledger
            .entries
            .iter()
            .filter(|e| e.revoked.is_none() && !e.is_expired(now))
            .count() as i64,
    );
    status.certificates_without_digest =
        Some(crate::core::ledger::without_digest(&ledger.entries, now).count() as i64);
    let full = (ledger.largest_shard_bytes >= ledger_store::SHARD_LIMIT_BYTES).then(|| {
        (
            Reason::LedgerFull,
            format!(
                "a ledger shard holds {} bytes, at the limit of {}; certificates of this CA cannot be recorded until entries expire",
                ledger.largest_shard_bytes,
                ledger_store::SHARD_LIMIT_BYTES
            ),
        )
    });
    let problem = ledger
        .unreadable
        .first()
        .map(|e| (e.reason(), e.to_string()))
        .or(full);
    set_or_clear(
        &mut status.conditions,
        LEDGER,
        problem,
        ca.metadata.generation,
        now,
    );
}

/// The CRL fields of a CA's status, from its signing key's CRL.
fn fill_crl_status(
    ca: &CertificateAuthority,
    status: &mut CertificateAuthorityStatus,
    crl: &crl::PublishedCrl,
    now: DateTime<Utc>,
) {
    status.crl_number = i64::try_from(crl.number).ok();
    status.crl_this_update = Some(crl.this_update);
    status.crl_next_update = Some(crl.next_update);
    status.revoked_certificates = i64::try_from(crl.entries).ok();
    let problem = (!crl.stored).then(|| {
        (
            Reason::TooLarge,
            format!(
                "the CRL ({} bytes) is too large for one object; the leader serves it over HTTP",
                crl.der.len()
            ),
        )
    });
    set_or_clear(
        &mut status.conditions,
        CRL_STORED,
        problem,
        ca.metadata.generation,
        now,
    );
}

/// Sets `CRLComplete=False` (reason `CRLIncomplete`, the message says what
/// to restore) while a CRL of the CA could not be proven to list every
/// revoked certificate, with a warning Event when that starts; removes it
/// once the CRLs are whole again.
fn crl_completeness(
    ca: &CertificateAuthority,
    status: &mut CertificateAuthorityStatus,
    incomplete: Vec<String>,
    now: DateTime<Utc>,
) -> Option<Announcement> {
    let problem = (!incomplete.is_empty()).then(|| (Reason::CRLIncomplete, incomplete.join("; ")));
    let previous = ca.status.clone().unwrap_or_default();
    let was = conditions::find(&previous.conditions, CRL_COMPLETE)
        .is_some_and(|c| c.reason == Reason::CRLIncomplete.as_str());
    let warning = problem
        .as_ref()
        .filter(|_| !was)
        .map(|(reason, message)| Announcement {
            reason: *reason,
            warning: true,
            action: "PublishCRL",
            message: message.clone(),
        });
    set_or_clear(
        &mut status.conditions,
        CRL_COMPLETE,
        problem,
        ca.metadata.generation,
        now,
    );
    warning
}

/// Writes the status when it changed, at the resourceVersion the pass
/// read; looks again after `next_look`, or in a second when another
/// writer came first.
pub async fn write(
    ca: &CertificateAuthority,
    ctx: &Context,
    status: &CertificateAuthorityStatus,
    next_look: Duration,
) -> Result<Action, Error> {
    // As a rotation step is: a pass from a view the store had not caught
    // up with (a timer firing before a step's watch event) never writes
    // back the record the step replaced.
    let previous = ca.status.clone().unwrap_or_default();
    if *status != previous && !write_at_read_version(ca, ctx, status).await? {
        return Ok(Action::requeue(Duration::from_secs(1)));
    }
    Ok(Action::requeue(next_look))
}

/// Writes the CA's status (a rotation step is certop's record in it),
/// applied only at the resourceVersion the pass read, so two writers (or a
/// pass from a stale view) cannot both take a step, nor one write back a
/// record another step replaced. False on a conflict: the next pass reads
/// what the other wrote.
pub async fn write_at_read_version(
    ca: &CertificateAuthority,
    ctx: &Context,
    status: &CertificateAuthorityStatus,
) -> Result<bool, Error> {
    let mut patch = serde_json::json!({
        "apiVersion": "certop.dev/v1",
        "kind": "CertificateAuthority",
        "status": status,
    });
    if let Some(v) = ca.resource_version() {
        patch["metadata"] = serde_json::json!({ "resourceVersion": v });
    }
    match Api::<CertificateAuthority>::all(ctx.client.clone())
        .patch_status(
            &ca.name_any(),
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await
    {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
        Err(e) => Err(e.into()),
    }
}
