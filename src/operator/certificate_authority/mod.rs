//! The CertificateAuthority controller: zero-touch CA keys, adoption of an
//! existing CA, rotation, trust-bundle ConfigMaps, CRLs and the CA's status.
//!
//! A pass decides which key signs (`decide::key`, pure, from the key's
//! Secret as read), creating it (`key`) when none was ever made. Then it
//! gathers what the rest of the decision needs (the ledger, the rotation's
//! keys; what the ledger lacks comes from the Secrets (`held`): the
//! certificates of an older ledger restored are recorded again
//! (`lost_entries`), entries recorded without a SHA-256 get it
//! (`digest_backfill`)), asks `decide` for every write and the status, and makes the
//! writes in order: the binding (`key`), the rotation's write (`rotation`;
//! a step recorded ends the pass), the trust bundles (`trust_bundle`), the
//! CRLs (`crl_refresh`), the ClusterTrustBundle of a CA that signs
//! for pods (`cluster_trust_bundle`), and the status (`status`, finished from what was
//! published). The next pass derives everything again from what exists,
//! so a write that fails anywhere is finished by it, never repeated with a
//! new key.

mod cleanup;
mod cluster_trust_bundle;
mod crl_refresh;
mod decide;
mod digest_backfill;
mod held;
mod key;
mod lost_entries;
mod publish;
mod rotation;
#[cfg(test)]
mod scenarios;
mod status;
mod trust_bundle;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use kube::ResourceExt;
use kube::runtime::controller::Action;

pub use key::secret_name;
pub use status::is_ready;
pub use trust_bundle::is_our_bundle;

use crate::api::CertificateAuthority;
use crate::core::rotation::{RotationMarks, key_secret_name};
use crate::operator::reason::Blocked;
use crate::operator::runtime::finalize::reconcile_with_finalizer;
use crate::operator::{Context, Error, store::ledger_store};
use crate::pki::{Authority, CertificateInfo};
use decide::{Announcement, KeyDecision, KeyObserved, Observed, Spec};

const CONTROLLER: &str = "certificateauthority";
/// When to look again while ledger entries wait for their SHA-256, or
/// certificates the ledger lost wait to be recorded again.
const BACKFILL_AGAIN: Duration = Duration::from_secs(10);

pub async fn reconcile(ca: Arc<CertificateAuthority>, ctx: Arc<Context>) -> Result<Action, Error> {
    let ctx: &Context = &ctx;
    reconcile_with_finalizer(
        CONTROLLER,
        ca,
        ctx,
        |o| async move { apply_at(&o, ctx, Utc::now()).await },
        |o| async move { cleanup::cleanup(&o, ctx).await },
    )
    .await
}

pub fn error_policy(ca: Arc<CertificateAuthority>, error: &Error, ctx: Arc<Context>) -> Action {
    crate::operator::runtime::backoff::retry(CONTROLLER, &ca.name_any(), error, &ctx)
}

/// A CA whose key signs, as a pass serves it.
pub struct Serving<'a> {
    pub ca: &'a CertificateAuthority,
    pub ctx: &'a Context,
    pub spec: &'a Spec,
    /// The rotation marks, bound to the signing key.
    pub marks: RotationMarks,
    pub signing: Arc<Authority>,
}

/// One pass with the clock at `now` (scenarios move it).
pub(super) async fn apply_at(
    ca: &CertificateAuthority,
    ctx: &Context,
    now: DateTime<Utc>,
) -> Result<Action, Error> {
    let spec = match decide::spec(ca) {
        Ok(spec) => spec,
        Err(blocked) => return not_ready(ca, ctx, &blocked, now).await,
    };
    let secret_name = key_secret_name(&spec.settings.secret_name, spec.marks.signing);
    let read = key::read(ctx, &secret_name, now).await?;
    let signing = match decide::key(&KeyObserved {
        ca,
        marks: &spec.marks,
        secret_name: &secret_name,
        namespace: &ctx.namespace,
        secret: read.secret.as_ref().and_then(|s| s.data.as_ref()),
        loaded: read.loaded.as_ref(),
        cas: &ctx.cas.state(),
    }) {
        KeyDecision::Sign(authority) => authority,
        KeyDecision::NotReady(blocked) => return not_ready(ca, ctx, &blocked, now).await,
        KeyDecision::Create => match key::create(ca, ctx, &spec.settings).await? {
            Some(authority) => authority,
            // Another writer created it first: read theirs on the next pass.
            None => return Ok(Action::requeue(Duration::from_secs(1))),
        },
    };
    let mut marks = spec.marks.clone();
    marks.signing_fingerprint = Some(signing.certificate().fingerprint.clone());
    let serving = Serving {
        ca,
        ctx,
        spec: &spec,
        marks,
        signing,
    };
    serve(&serving, now).await
}

/// The pass of a CA whose key signs: gather, decide, write in order.
async fn serve(s: &Serving<'_>, now: DateTime<Utc>) -> Result<Action, Error> {
    let (ca, ctx, name) = (s.ca, s.ctx, s.ca.name_any());
    let settings = &s.spec.settings;
    let statuses = lost_entries::statuses(ctx, &name);
    let mut ledger = ledger_store::load(ctx, &name).await?;
    let next = rotation::load_next(ctx, settings, &s.marks, now).await?;
    let previous_key = rotation::load_previous(ca, ctx, settings, &s.marks, now).await?;
    let keys: Vec<(u32, &CertificateInfo)> = [
        Some((s.marks.signing, &s.signing)),
        next.indexed(),
        previous_key.indexed(),
    ]
    .into_iter()
    .flatten()
    .map(|(index, a)| (index, a.certificate()))
    .collect();
    let recovered = lost_entries::recover(ctx, &name, statuses, &ledger.entries, &keys, now).await;
    if recovered.recorded > 0 {
        ledger = ledger_store::load(ctx, &name).await?;
    }
    let signers: Vec<&CertificateInfo> = keys.iter().map(|(_, c)| *c).collect();
    let backfilled =
        digest_backfill::backfill(ctx, &name, &mut ledger.entries, &signers, now).await;
    let exists = |c: &str| ctx.certificates.contains(c);
    let decision = decide::decide(
        &Observed {
            ca,
            spec: s.spec,
            marks: &s.marks,
            signing: &s.signing,
            ledger: &ledger,
            next: &next,
            previous_key: &previous_key,
            certificate_exists: &exists,
        },
        now,
    );
    if let Some(fingerprint) = &decision.bind {
        key::bind(ca, ctx, fingerprint).await?;
    }
    if let Some(warning) = &decision.rotation_warning {
        announce(ca, ctx, warning).await;
    }
    rotation::take(s, &decision.rotation, &decision.status).await?;
    let Some(publish) = &decision.publish else {
        return match decision.rotation {
            decide::RotationWrite::Record { .. } => Ok(Action::requeue(Duration::from_secs(1))),
            decide::RotationWrite::Keep { .. } => {
                status::write(ca, ctx, &decision.status, Duration::from_secs(1)).await
            }
        };
    };
    if let Some(warning) = &publish.expiring_warning {
        announce(ca, ctx, warning).await;
    }
    let published = publish::publish(s, publish, &ledger, now).await?;
    let finish = status::Finish {
        ca,
        publish,
        published: &published,
        ledger: &ledger,
        managed: &ctx.managed_namespaces,
        now,
        wall: Utc::now(),
    };
    let (status, mut next_look, warning) = status::finish(&finish, decision.status);
    if backfilled.more || recovered.more {
        next_look = next_look.min(BACKFILL_AGAIN);
    }
    if let Some(warning) = &warning {
        announce(ca, ctx, warning).await;
    }
    status::write(ca, ctx, &status, next_look).await
}

/// Records an Event.
async fn announce(ca: &CertificateAuthority, ctx: &Context, said: &Announcement) {
    let (reason, note) = (said.reason.as_str(), said.message.clone());
    ctx.event(ca, said.warning, reason, said.action, note).await;
}

/// A CA that cannot sign: its Ready condition says why (an Event when the
/// reason is new).
async fn not_ready(
    ca: &CertificateAuthority,
    ctx: &Context,
    blocked: &Blocked,
    now: DateTime<Utc>,
) -> Result<Action, Error> {
    let (status, event) = status::not_ready(ca, blocked, now);
    if let Some(event) = &event {
        announce(ca, ctx, event).await;
    }
    status::write(ca, ctx, &status, status::RESYNC).await
}
