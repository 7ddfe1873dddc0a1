//! The CertificateAuthority controller: zero-touch CA keys, adoption of an
//! existing CA, rotation, trust-bundle ConfigMaps, CRLs and the CA's status.
//!
//! A pass decides which key signs (`decide::key`, pure, from the key's
//! Secret as read), creating it (`key`) when none was ever made. Then it
//! gathers what the rest of the decision needs (the ledger, the rotation's
//! keys), asks `decide` for every write and the status, and makes the
//! writes in order: the binding (`key`), the rotation's write (`rotation`;
//! a step recorded ends the pass), the trust bundles (`trust_bundle`), the
//! CRLs (`crl_refresh`), and the status (`status`, finished from what was
//! published). The next pass derives everything again from what exists,
//! so a write that fails anywhere is finished by it, never repeated with a
//! new key.

mod crl_refresh;
mod decide;
mod key;
mod rotation;
mod rotation_plan;
#[cfg(test)]
mod scenarios;
mod status;
mod trust_bundle;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use tracing::info;

pub use decide::{CaSource, decide_source, expiry_warning_time, key_holder};
pub use trust_bundle::is_our_bundle;

use super::conditions::{self, READY};
use super::finalize::reconcile_with_finalizer;
use super::reason::Blocked;
use super::{Context, Error, authority_cache, crl, ledger_store};
use crate::api::CertificateAuthority;
use crate::pki::Authority;
use crate::rotation::{RotationMarks, key_secret_name};
use decide::{KeyDecision, KeyObserved, Observed, Spec};

const CONTROLLER: &str = "certificateauthority";

/// The Secret, in the operator's namespace, that holds a CA (None when the
/// spec cannot name one; the CA's condition says why).
pub fn secret_name(ca: &CertificateAuthority) -> Option<String> {
    ca.settings().ok().map(|s| s.secret_name)
}

/// Whether an object is a CA certop may sign with right now.
pub fn is_ready(ca: &CertificateAuthority) -> bool {
    ca.status
        .as_ref()
        .is_some_and(|s| conditions::is_true(&s.conditions, READY))
        && ca.meta().deletion_timestamp.is_none()
}

pub async fn reconcile(ca: Arc<CertificateAuthority>, ctx: Arc<Context>) -> Result<Action, Error> {
    let ctx: &Context = &ctx;
    reconcile_with_finalizer(
        CONTROLLER,
        ca,
        ctx,
        |o| async move { apply_at(&o, ctx, Utc::now()).await },
        |o| async move { cleanup(&o, ctx).await },
    )
    .await
}

pub fn error_policy(ca: Arc<CertificateAuthority>, error: &Error, ctx: Arc<Context>) -> Action {
    super::backoff::retry(CONTROLLER, &ca.name_any(), error, &ctx)
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
    let ledger = ledger_store::load(ctx, &name).await?;
    let next = rotation::load_next(ctx, settings, &s.marks, now).await?;
    let previous_key = rotation::load_previous(ca, ctx, settings, &s.marks, now).await?;
    let exists = |c: &str| ctx.certificates.get(&ObjectRef::new(c)).is_some();
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
        rotation::announce(ca, ctx, warning).await;
    }
    rotation::take(s, &decision.rotation, &decision.status).await?;
    let Some(publish) = &decision.publish else {
        return match decision.rotation {
            rotation_plan::RotationWrite::Record { .. } => {
                Ok(Action::requeue(Duration::from_secs(1)))
            }
            rotation_plan::RotationWrite::Keep { .. } => {
                status::write(ca, ctx, &decision.status, Duration::from_secs(1)).await
            }
        };
    };
    if let Some(warning) = &publish.expiring_warning {
        rotation::announce(ca, ctx, warning).await;
    }
    let bundles = trust_bundle::sync(ca, ctx, &publish.bundle_name, &publish.bundle_pem).await?;
    let pending = match &publish.awaiting {
        Some(awaiting) => trust_bundle::secrets_without(ctx, &name, &awaiting.pem).await?,
        None => Vec::new(),
    };
    ctx.metrics
        .ledger(&name, ledger.unreadable.len(), ledger.largest_shard_bytes);
    let mut crls = Vec::new();
    for job in &publish.crls {
        crls.push(crl_refresh::refresh(ca, ctx, job, ledger.unreadable.is_empty(), now).await?);
    }
    let published = status::Published {
        bundles,
        pending,
        crls,
    };
    let finish = status::Finish {
        ca,
        publish,
        published: &published,
        ledger: &ledger,
        managed: &ctx.managed_namespaces,
        now,
        wall: Utc::now(),
    };
    let (status, next_look, warning) = status::finish(&finish, decision.status);
    if let Some(warning) = &warning {
        rotation::announce(ca, ctx, warning).await;
    }
    status::write(ca, ctx, &status, next_look).await
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
        rotation::announce(ca, ctx, event).await;
    }
    status::write(ca, ctx, &status, status::RESYNC).await
}

/// A CA goes: its trust bundles go with it. Its key Secret stays, since a
/// key certop cannot replace is never deleted; delete it by hand to retire
/// the CA for good.
async fn cleanup(ca: &CertificateAuthority, ctx: &Context) -> Result<Action, Error> {
    let name = ca.name_any();
    trust_bundle::remove_all(ctx, &name).await?;
    if let Ok(settings) = ca.settings() {
        let marks = authority_cache::marks_of(ca).unwrap_or_default();
        // The keys a CA can hold at once: retiring, signing, staged.
        for index in marks.signing.saturating_sub(1)..=marks.signing.saturating_add(1) {
            ctx.authorities
                .forget(&key_secret_name(&settings.secret_name, index));
            ctx.crls.forget(&crl::crl_path(&name, index));
        }
    }
    ctx.metrics.forget_authority(&name);
    info!(ca = %name, "CertificateAuthority deleted; its key Secret is kept");
    Ok(Action::await_change())
}
