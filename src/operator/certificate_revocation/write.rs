//! The pass's writes, in the order it makes them: the ledger marks, each
//! key's CRL, the replacements, the status.

use chrono::{DateTime, Utc};
use kube::ResourceExt;
use kube::runtime::controller::Action;
use tracing::info;

use super::decide::{CrlStep, CrlSummary, Replacement, Revocation, WAITING_RETRY};
use super::status::Outcome;
use crate::api::{CertificateAuthority, CertificateRevocation, CertificateRevocationStatus};
use crate::core::ledger::RevocationRule;
use crate::operator::certificate::revocation_mark;
use crate::operator::reason::Reason;
use crate::operator::store::authority_cache::KeyRing;
use crate::operator::store::{crl, ledger_store};
use crate::operator::{Context, Error};

/// Marks the covered entries in the ledger shards the decision names.
pub async fn ledger(
    ctx: &Context,
    rev: &CertificateRevocation,
    rule: &RevocationRule,
    revocation: &Revocation,
    now: DateTime<Utc>,
) -> Result<(), Error> {
    let ca = &rev.spec.issuer_ref.name;
    let shards = &revocation.ledger.shards_to_write;
    ledger_store::mark(ctx, ca, shards, rule, revocation.reason, now).await?;
    let newly = revocation.ledger.newly.len();
    if newly > 0 {
        info!(revocation = %rev.name_any(), ca = %ca, count = newly, "revoked");
        ctx.metrics
            .revoked(revocation.reason.as_str(), newly as u64);
    }
    Ok(())
}

/// Signs again the CRLs the decision names and keeps the others; returns
/// each CRL as it is now, in the order of `steps`.
pub async fn crls(
    ctx: &Context,
    ca: &CertificateAuthority,
    ring: &KeyRing,
    steps: &[CrlStep],
    now: DateTime<Utc>,
) -> Result<Vec<Option<CrlSummary>>, Error> {
    let mut out = Vec::new();
    for step in steps {
        let authority = match &ring.previous {
            Some((index, previous)) if *index == step.index && !step.signing => previous,
            _ => &ring.signing,
        };
        out.push(match step.resign {
            true => Some(CrlSummary::from(
                &crl::publish(ctx, ca, authority, step.index, now).await?,
            )),
            false => step.held,
        });
    }
    Ok(out)
}

/// Records the revocation on a ClusterCertificate so its controller
/// replaces the certificate with a new key, and says so in an Event.
pub async fn replacement(ctx: &Context, r: &Replacement) -> Result<(), Error> {
    revocation_mark::mark(ctx, &r.certificate.name_any(), &r.record).await?;
    let revocation = r.record.revocation.as_deref().unwrap_or_default();
    ctx.event(
        r.certificate.as_ref(),
        true,
        Reason::Revoked.as_str(),
        "Revoke",
        format!(
            "serial {} was revoked ({}) by CertificateRevocation {revocation}; replacing it with a new key",
            r.record.serial_number,
            r.record.reason.as_str()
        ),
    )
    .await;
    Ok(())
}

/// Writes the status and its Event: a Ready one always (and the pass is
/// done until the revocation changes), a not-Ready one when it changed
/// (and the pass is tried again in `WAITING_RETRY`).
pub async fn status(
    ctx: &Context,
    rev: &CertificateRevocation,
    outcome: Outcome,
) -> Result<Action, Error> {
    let name = rev.name_any();
    let reason = outcome.reason.as_str();
    // `status.apiServer` is the webhook's (field manager `certop-authz`):
    // applied without it, this field manager neither owns nor clears it.
    let applied = CertificateRevocationStatus {
        api_server: None,
        ..outcome.status.clone()
    };
    if outcome.ready {
        ctx.apply_status::<CertificateRevocation>(&name, &applied)
            .await?;
        ctx.event(rev, false, reason, "Revoke", outcome.message)
            .await;
        return Ok(Action::await_change());
    }
    if rev.status.as_ref() != Some(&outcome.status) {
        ctx.apply_status::<CertificateRevocation>(&name, &applied)
            .await?;
        ctx.event(rev, true, reason, reason, outcome.message).await;
    }
    Ok(Action::requeue(WAITING_RETRY))
}
