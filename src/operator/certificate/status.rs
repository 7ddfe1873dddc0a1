//! A ClusterCertificate's status, derived from what exists: the Secret's
//! certificate and provenance when Ready, the blocking reason otherwise.
//! Written with server-side apply only when it changed; Events are recorded
//! when what they announce changed (a new serial, a new reason), so a pass
//! that is repeated after a failure does not announce twice.

use std::time::Duration;

use chrono::{DateTime, Utc};
use kube::ResourceExt;
use kube::runtime::controller::Action;

use super::decide::revocation_of;
use super::{Held, MAX_REQUEUE, look_again, ready_reason, requeue_until, secret};
use crate::api::{ClusterCertificate, ClusterCertificateStatus, SecretVersion, meta};
use crate::core::plan::IssueReason;
use crate::operator::conditions::{self, ISSUING, READY};
use crate::operator::reason::{Blocked, Reason};
use crate::operator::runtime::backoff;
use crate::operator::{Context, Error};

/// Writes the status with server-side apply.
async fn write(
    cert: &ClusterCertificate,
    ctx: &Context,
    status: &ClusterCertificateStatus,
) -> Result<(), Error> {
    ctx.apply_status::<ClusterCertificate>(&cert.name_any(), status)
        .await?;
    Ok(())
}

fn location(cert: &ClusterCertificate) -> String {
    format!("{}/{}", cert.spec.secret_namespace, cert.spec.secret_name)
}

/// The status of a certificate whose Secret holds `held`.
pub fn ready_status(
    cert: &ClusterCertificate,
    held: &Held,
    now: DateTime<Utc>,
) -> ClusterCertificateStatus {
    let mut status = cert.status.clone().unwrap_or_default();
    let leaf = &held.leaf;
    let (revision, reason, _) = secret::provenance_of(&held.secret);
    let code = reason.unwrap_or_else(|| Reason::Issued.to_string());
    let serial = leaf.serial.to_string();
    let fresh = status.serial_number.as_deref() != Some(serial.as_str());
    status.observed_generation = cert.metadata.generation;
    status.secret = Some(location(cert));
    status.not_before = Some(leaf.not_before);
    status.not_after = Some(leaf.not_after);
    status.renewal_time = Some(held.renewal_time);
    status.pending_change_since = held.change_pending_since;
    status.serial_number = Some(serial);
    status.fingerprint = Some(leaf.fingerprint.clone());
    if revision.is_some() {
        status.revision = revision;
    }
    status.failed_issuance_attempts = None;
    status.secret_version = held.secret.resource_version().map(|resource_version| {
        Box::new(SecretVersion {
            resource_version,
            renewal_request: held
                .secret
                .annotations()
                .get(meta::RENEWAL_REQUEST)
                .cloned(),
        })
    });
    if fresh && code == IssueReason::Revoked.code() {
        status.last_revocation = revocation_of(cert);
    }
    let reason = if fresh {
        ready_reason(&code).to_string()
    } else {
        conditions::find(&status.conditions, READY)
            .filter(|c| c.status == "True")
            .map_or_else(|| ready_reason(&code).to_string(), |c| c.reason.clone())
    };
    let message = format!(
        "certificate serial {} is valid until {}",
        leaf.serial,
        leaf.not_after.to_rfc3339()
    );
    let generation = cert.metadata.generation;
    conditions::set(
        &mut status.conditions,
        READY,
        true,
        &reason,
        &message,
        generation,
        now,
    );
    conditions::set(
        &mut status.conditions,
        ISSUING,
        false,
        Reason::UpToDate.as_str(),
        "no issuance needed",
        generation,
        now,
    );
    status
}

pub async fn ready(
    cert: &ClusterCertificate,
    ctx: &Context,
    held: &Held,
    now: DateTime<Utc>,
) -> Result<Ready, Error> {
    let previous = cert.status.clone().unwrap_or_default();
    let status = ready_status(cert, held, now);
    let unchanged = !worth_writing(&previous, &status);
    if !unchanged {
        write(cert, ctx, &status).await?;
    }
    let leaf = &held.leaf;
    if previous.serial_number != status.serial_number {
        let ready = conditions::find(&status.conditions, READY);
        let reason = ready.map_or(Reason::Issued.as_str(), |c| c.reason.as_str());
        let (_, code, _) = secret::provenance_of(&held.secret);
        let revision = status.revision.unwrap_or(1);
        let note = format!(
            "certificate serial {} is valid until {} (revision {revision}; {})",
            leaf.serial,
            leaf.not_after.to_rfc3339(),
            code.as_deref().unwrap_or(Reason::Issued.as_str())
        );
        let action = format!("IssueRevision{revision}");
        // One Event per issuance, on the certificate; the Secret says the
        // same in its annotations (serial, revision, reason), which
        // `kubectl describe secret` shows without a second request.
        ctx.event_once(cert, reason, &action, note).await;
    }
    Ok(Ready {
        wake: requeue_until(held.renewal_time, now),
        unchanged,
    })
}

/// Whether `status` says more than `previous`. A recorded version of the
/// Secret is kept current (a renewal at a stale one signs a certificate
/// for a write bound to fail); a status that never recorded one (written
/// before certop recorded it) records it with its next issuance, not with
/// a write of every certificate at the upgrade.
fn worth_writing(previous: &ClusterCertificateStatus, status: &ClusterCertificateStatus) -> bool {
    match previous.secret_version {
        Some(_) => status != previous,
        None => {
            let unrecorded = ClusterCertificateStatus {
                secret_version: None,
                ..status.clone()
            };
            unrecorded != *previous
        }
    }
}

/// What `ready` did.
pub struct Ready {
    /// When to look again: its renewal, or sooner (`requeue_until`).
    pub wake: Duration,
    /// The status already said all of it, so nothing was written: no echo
    /// of this pass will start another.
    pub unchanged: bool,
}

/// Says an issuance is under way (`Issuing=True` with its reason), as
/// cert-manager does, before the key is made; written only when it changes.
/// Returns the object with that status, for the rest of the pass.
pub async fn issuing(
    cert: &ClusterCertificate,
    ctx: &Context,
    reason: &IssueReason,
    now: DateTime<Utc>,
) -> Result<ClusterCertificate, Error> {
    let previous = cert.status.clone().unwrap_or_default();
    let mut status = previous.clone();
    set_issuing(&mut status, reason, cert.metadata.generation, now);
    if status != previous {
        write(cert, ctx, &status).await?;
    }
    let mut updated = cert.clone();
    updated.status = Some(status);
    Ok(updated)
}

fn set_issuing(
    status: &mut ClusterCertificateStatus,
    reason: &IssueReason,
    generation: Option<i64>,
    now: DateTime<Utc>,
) {
    conditions::set(
        &mut status.conditions,
        ISSUING,
        true,
        reason.code(),
        &format!("issuing a certificate: {reason}"),
        generation,
        now,
    );
}

/// The status of a certificate that cannot progress; `issuing` is the
/// reason of the issuance the pass was making, which stays under way.
pub fn blocked_status(
    cert: &ClusterCertificate,
    blocked: &Blocked,
    issuing: Option<&IssueReason>,
    now: DateTime<Utc>,
) -> ClusterCertificateStatus {
    let mut status = cert.status.clone().unwrap_or_default();
    status.observed_generation = cert.metadata.generation;
    if let Some(reason) = issuing {
        set_issuing(&mut status, reason, cert.metadata.generation, now);
    }
    conditions::set(
        &mut status.conditions,
        READY,
        false,
        blocked.reason.as_str(),
        &blocked.message,
        cert.metadata.generation,
        now,
    );
    status
}

/// Records why a certificate cannot be issued now; an Event when the reason
/// or message changes, not on every pass.
pub async fn blocked(
    cert: &ClusterCertificate,
    ctx: &Context,
    mut blocked: Blocked,
    issuing: Option<&IssueReason>,
    now: DateTime<Utc>,
) -> Result<Action, Error> {
    if blocked.reason == Reason::InvalidSpec && blocked.message.is_empty() {
        blocked.message = crate::pki::LeafTemplate::from_spec(&cert.spec)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
    }
    let previous = cert.status.clone().unwrap_or_default();
    let status = blocked_status(cert, &blocked, issuing, now);
    let was = conditions::find(&previous.conditions, READY)
        .map(|c| (c.reason.clone(), c.message.clone()));
    if status != previous {
        write(cert, ctx, &status).await?;
    }
    let reason = blocked.reason.as_str();
    if !blocked.reason.is_transient() && was != Some((reason.to_string(), blocked.message.clone()))
    {
        ctx.event(cert, true, reason, reason, blocked.message.clone())
            .await;
    }
    // Blocked until a change, it is still looked at again within
    // `MAX_REQUEUE`: that bounds the harm of a change no watch shows
    // certop (the Service CIDRs a policy reads).
    Ok(look_again(cert, ctx, blocked.retry.unwrap_or(MAX_REQUEUE)))
}

/// An issuance failed: count it, say why, and retry with backoff.
pub async fn failed(
    cert: &ClusterCertificate,
    ctx: &Context,
    reason: &IssueReason,
    error: String,
    now: DateTime<Utc>,
) -> Result<Action, Error> {
    let mut status = cert.status.clone().unwrap_or_default();
    // A changed spec starts the count afresh.
    let earlier = if status.observed_generation == cert.metadata.generation {
        status.failed_issuance_attempts.unwrap_or(0)
    } else {
        0
    };
    let attempts = earlier.saturating_add(1);
    status.failed_issuance_attempts = Some(attempts);
    status.last_failure_time = Some(now);
    status.observed_generation = cert.metadata.generation;
    let retry = backoff::ISSUANCE.delay(attempts.unsigned_abs());
    let message = format!(
        "issuance failed ({reason}): {error}; attempt {attempts}, next in {}s",
        retry.as_secs()
    );
    let generation = cert.metadata.generation;
    conditions::set(
        &mut status.conditions,
        READY,
        false,
        Reason::IssuanceFailed.as_str(),
        &message,
        generation,
        now,
    );
    conditions::set(
        &mut status.conditions,
        ISSUING,
        true,
        reason.code(),
        &message,
        generation,
        now,
    );
    write(cert, ctx, &status).await?;
    ctx.metrics.failed(reason.code());
    let event_reason = Reason::IssuanceFailed.as_str();
    ctx.event(cert, true, event_reason, reason.code(), message)
        .await;
    Ok(look_again(cert, ctx, retry))
}
