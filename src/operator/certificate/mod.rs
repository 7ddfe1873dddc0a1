//! The ClusterCertificate controller: keeps each declared certificate valid
//! and matching its spec in a `kubernetes.io/tls` Secret.
//!
//! A pass gathers what is (the object, its CA, its Secret), asks `decide`
//! what to do, and carries it out in an order where every prefix is safe:
//! the Secret (server-side applied), then the ledger entry of the
//! certificate the Secret holds, then the status. Each step is derived
//! again by the next pass from what exists, so a write that fails anywhere
//! is finished by the next pass, never repeated with a new key: the ledger
//! is written for the certificate the Secret holds (so it has no entry for
//! a certificate that was never handed out), and a status that does not
//! name the Secret's serial means "not yet recorded".

mod cleanup;
mod decide;
mod issue;
pub mod revocation_mark;
mod secret;
mod status;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::DeleteParams;
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, ResourceExt};
use tracing::{info, warn};

use cleanup::{cleanup, remove_moved_secret};
pub use decide::{Decision, Issuer, SecretRead, decide};
use issue::{Held, Issued, Recorded, issue_into_secret, record, revoked_for_good};
use secret::{Base, Written};

use crate::operator::store::authority_cache::Keys;
pub use secret::{Ownership, ownership};

use crate::api::{ClusterCertificate, SecretDeletionPolicy};
use crate::core::ledger::{LedgerEntry, RevocationRule};
use crate::core::plan::{
    IssueReason, RenewalPolicy, SecretData, TLS_CERT_KEY, TLS_PRIVATE_KEY_KEY,
};
use crate::operator::conditions;
use crate::operator::reason::{Blocked, Reason};
use crate::operator::runtime::finalize::reconcile_with_finalizer;
use crate::operator::{Context, Error, store::authority_cache, store::crl, store::ledger_store};
use crate::pki::{CertificateInfo, PrivateKey, RevocationReason, issue, parse_chain};

/// Retry for conditions that another object's change ends (and whose watch
/// triggers a reconcile sooner).
const WAITING_RETRY: Duration = Duration::from_secs(60);

/// Longest wait between two looks at a certificate: a valid one's next
/// look is its renewal, and this bounds the harm of a clock jump (and of
/// a change no watch shows, for one blocked until a change).
pub const MAX_REQUEUE: Duration = Duration::from_secs(8 * 3600);
/// How long to wait before looking at a valid certificate again.
pub fn requeue_until(renewal_time: DateTime<Utc>, now: DateTime<Utc>) -> Duration {
    (renewal_time - now)
        .to_std()
        .unwrap_or(Duration::from_secs(1))
        .clamp(Duration::from_secs(1), MAX_REQUEUE)
}

/// A pass of one certificate. Its next look is its wake in
/// `certificate_queue` (`look_again`): the `Action` returned is always
/// `await_change`, and the controller's runner does not read it.
pub async fn reconcile(cert: Arc<ClusterCertificate>, ctx: Arc<Context>) -> Result<Action, Error> {
    ctx.certificate_queue.cancel_wake(&cert.name_any());
    let shared = &ctx;
    let ctx: &Context = &ctx;
    reconcile_with_finalizer(
        "clustercertificate",
        cert,
        ctx,
        |o| async move { apply(&o, shared).await },
        |o| async move { cleanup(&o, ctx).await },
    )
    .await
}

pub fn error_policy(cert: Arc<ClusterCertificate>, error: &Error, ctx: Arc<Context>) -> Action {
    let delay = crate::operator::runtime::backoff::retry_delay(
        "clustercertificate",
        &cert.name_any(),
        error,
        &ctx,
    );
    look_again(&cert, &ctx, delay)
}

/// When a certificate the store holds but cannot unpack is looked at again.
pub const UNREADABLE_RETRY: Duration = Duration::from_secs(60);

/// The certificate's next look, `wait` from now, as its wake in
/// `certificate_queue`: a CA's outage or an API server's failure that
/// sends every certificate to wait does not fill kube-runtime's queue
/// (whose map and slab never shrink) with all of them.
pub fn look_again(cert: &ClusterCertificate, ctx: &Context, wait: Duration) -> Action {
    ctx.certificate_queue.wake_after(&cert.name_any(), wait);
    Action::await_change()
}

/// The issuing CA as observed: missing, being set up, not Ready, or its
/// signer and CRL distribution point.
async fn issuer(
    cert: &ClusterCertificate,
    ctx: &Context,
    now: DateTime<Utc>,
) -> Result<Issuer, Error> {
    let ca_name = &cert.spec.issuer_ref.name;
    let waiting = |reason, message: String, retry| {
        Ok(Issuer::Blocked(Blocked::new(reason, message, Some(retry))))
    };
    let Some(ca) = ctx.cas.get(&ObjectRef::new(ca_name)) else {
        return waiting(
            Reason::IssuerNotFound,
            format!(
                "CertificateAuthority {ca_name} does not exist; create it or fix spec.issuerRef.name"
            ),
            WAITING_RETRY,
        );
    };
    if ca.status.as_ref().is_none_or(|s| s.conditions.is_empty()) {
        return waiting(
            Reason::IssuerPending,
            format!("waiting for CertificateAuthority {ca_name} to be set up"),
            Duration::from_secs(2),
        );
    }
    if !crate::operator::certificate_authority::is_ready(&ca) {
        let why = ca
            .status
            .as_ref()
            .and_then(|s| {
                crate::operator::conditions::find(&s.conditions, crate::operator::conditions::READY)
            })
            .map(|c| format!(": {}", c.message))
            .unwrap_or_default();
        return waiting(
            Reason::IssuerNotReady,
            format!("CertificateAuthority {ca_name} is not Ready{why}"),
            WAITING_RETRY,
        );
    }
    match authority_cache::keyring(ctx, &ca, now).await? {
        Keys::Ready(ring) => {
            // Certificates point at the CRL of the key that signs them, if
            // the CA can sign one.
            let crl_url = ring.crl_url(&ca, ctx);
            Ok(Issuer::Ready {
                ring,
                crl_url,
                governance: decide::Governance {
                    ca: ca_name.to_string(),
                    ca_policy: ca.spec.policy.clone(),
                    require_policy: ca.spec.require_policy.unwrap_or(false),
                    api_server_ips: ctx.api_server_ips(),
                    policies: ctx.policies.state(),
                    guard: ctx.guard.get(),
                },
            })
        }
        Keys::Unusable(why) => waiting(Reason::IssuerNotReady, why.to_string(), WAITING_RETRY),
    }
}

async fn apply(cert: &ClusterCertificate, ctx: &Arc<Context>) -> Result<Action, Error> {
    apply_at(cert, ctx, Utc::now()).await
}

/// One pass with the clock at `now` (the scenarios move it).
pub(super) async fn apply_at(
    cert: &ClusterCertificate,
    ctx: &Arc<Context>,
    now: DateTime<Utc>,
) -> Result<Action, Error> {
    let (namespace, name) = (&cert.spec.secret_namespace, &cert.spec.secret_name);
    let known = ctx.written_secrets.known(namespace, name);
    let shown = ctx.written_secrets.shown(namespace, name);
    let read = decide::secret_read(cert, known, shown.as_deref(), now);
    apply_pass(cert, ctx, now, false, read).await
}

/// One pass. `replacing` is set on the pass that replaces a certificate a
/// revocation covered the moment it was recorded: that can happen once
/// (the replacement is newer than the revocation), unless a revocation's
/// `issuedBefore` lies in the future, which is then reported.
async fn apply_pass(
    cert: &ClusterCertificate,
    ctx: &Arc<Context>,
    now: DateTime<Utc>,
    replacing: bool,
    read: SecretRead,
) -> Result<Action, Error> {
    if let Some(blocked) =
        decide::unmanaged_namespace(&cert.spec.secret_namespace, &ctx.managed_namespaces)
    {
        return status::blocked(cert, ctx, blocked, None, now).await;
    }
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &cert.spec.secret_namespace);
    // A spec the core refuses is refused before anything is read.
    let issuer = match crate::pki::LeafTemplate::from_spec(&cert.spec) {
        Ok(_) => issuer(cert, ctx, now).await?,
        Err(_) => Issuer::Blocked(Blocked::new(Reason::InvalidSpec, "", None)),
    };
    if let Some(blocked) = namespace_still_missing(cert, ctx).await? {
        return status::blocked(cert, ctx, blocked, None, now).await;
    }
    // The Secret as certop last wrote it, while the watch shows nothing
    // newer, is what a GET would return (`written_secrets`).
    let written = ctx
        .written_secrets
        .get(&cert.spec.secret_namespace, &cert.spec.secret_name);
    // A renewal is made unread only while no old key retires: during a
    // CA rotation, which key signed the Secret's certificate decides
    // when it is re-issued (`plan`).
    let read = match read {
        SecretRead::ReplaceUnread { .. } if written.is_some() || !issuer.signs_alone() => {
            SecretRead::Read
        }
        read => read,
    };
    let observed = match (&issuer, &read) {
        (Issuer::Blocked(_), _) => None,
        (Issuer::Ready { .. }, _) if written.is_some() => written,
        (Issuer::Ready { .. }, SecretRead::Read) => secrets.get_opt(&cert.spec.secret_name).await?,
        (Issuer::Ready { .. }, SecretRead::CreateUnread | SecretRead::ReplaceUnread { .. }) => None,
    };
    let (decision, base) = match &read {
        SecretRead::ReplaceUnread {
            resource_version,
            reason,
        } => (
            decide::decide_unread_renewal(cert, issuer, reason.clone(), now),
            Base::Recorded(resource_version.clone()),
        ),
        _ => (
            decide(cert, issuer, observed.as_ref(), now),
            observed
                .as_ref()
                .and_then(|s| s.resource_version())
                .map_or(Base::Absent, Base::Read),
        ),
    };
    // `issued`: the reason of the issuance this pass made, if it made one.
    let (held, issued) = match decision {
        Decision::Blocked(blocked) => {
            return status::blocked(cert, ctx, blocked, None, now).await;
        }
        // The status already says when the next try is: nothing to write.
        Decision::RetryLater(wait) => return Ok(look_again(cert, ctx, wait)),
        Decision::Issue(issuance) => {
            let issued =
                issue_into_secret(cert, ctx, &secrets, observed.as_ref(), base, &issuance, now);
            match issued.await? {
                Issued::Held(held) => (*held, Some(issuance.reason)),
                Issued::Ended(action) => return Ok(action),
                Issued::SecretChanged if read != SecretRead::Read => {
                    return Box::pin(apply_pass(cert, ctx, now, replacing, SecretRead::Read)).await;
                }
                // Read absent, then created by someone else before the
                // create: the next pass reads it.
                Issued::SecretChanged => {
                    return Ok(look_again(cert, ctx, Duration::from_secs(1)));
                }
            }
        }
        Decision::UpToDate {
            current,
            renewal_time,
            change_pending_since,
            key,
            bundle,
        } => {
            let Some(secret) = observed else {
                return Ok(look_again(cert, ctx, Duration::from_secs(1)));
            };
            let wanted =
                match keep_secret_current(cert, ctx, &secrets, secret, &current, bundle).await? {
                    Written::Stored(wanted) => *wanted,
                    Written::Refused(blocked) => {
                        return status::blocked(cert, ctx, blocked, None, now).await;
                    }
                    Written::Changed => {
                        return Ok(look_again(cert, ctx, Duration::from_secs(1)));
                    }
                };
            let held = Held {
                secret: wanted,
                leaf: *current,
                renewal_time,
                change_pending_since,
                key,
            };
            (held, None)
        }
    };
    if let Some(ended) = ensure_recorded(cert, ctx, &held, issued.as_ref(), replacing, now).await? {
        return Ok(ended);
    }
    remove_moved_secret(cert, ctx).await?;
    let ready = status::ready(cert, ctx, &held, now).await?;
    if ready.unchanged {
        // The last pass this issuance starts (its status is written and
        // nothing more is): the copy of the Secret served its echoes and
        // would only hold memory until it aged out (kept if this pass
        // rewrote the Secret: that write's event is still to come).
        ctx.written_secrets
            .forget(&cert.spec.secret_namespace, &cert.spec.secret_name);
    }
    Ok(look_again(cert, ctx, ready.wake))
}

/// Records the certificate the Secret holds in the ledger, unless the
/// status already names it (the status is written after the ledger).
/// Some: the pass ended here (blocked, or replaced a certificate a
/// revocation covered the moment it was recorded).
async fn ensure_recorded(
    cert: &ClusterCertificate,
    ctx: &Arc<Context>,
    held: &Held,
    issued: Option<&IssueReason>,
    replacing: bool,
    now: DateTime<Utc>,
) -> Result<Option<Action>, Error> {
    let recorded = cert
        .status
        .as_ref()
        .and_then(|s| s.serial_number.as_deref())
        == Some(held.leaf.serial.to_string().as_str());
    if recorded {
        return Ok(None);
    }
    let blocked = match record(cert, ctx, &held.leaf, held.key, now).await? {
        Recorded::Live => return Ok(None),
        // The Secret is written and the status waits for the record: the
        // next pass finishes (this one frees its place for others).
        Recorded::Pending => {
            return Ok(Some(look_again(cert, ctx, ledger_store::DEFERRED_RETRY)));
        }
        Recorded::Blocked(blocked) => blocked,
        Recorded::Revoked if replacing => revoked_for_good(cert, &held.leaf.serial.to_string()),
        Recorded::Revoked => {
            warn!(certificate = %cert.name_any(), serial = %held.leaf.serial, "a revocation covers the certificate just recorded; replacing it");
            let record = crate::api::RevocationRecord {
                serial_number: held.leaf.serial.to_string(),
                reason: RevocationReason::Unspecified,
                revoked_at: now,
                revocation: None,
            };
            // On the object, not only on this pass's copy: the replacement's
            // record may wait for a group (`record_deferred`), and the pass
            // that then writes the status says the revocation
            // (`status.lastRevocation`) from the object.
            let revoked = revocation_mark::mark(ctx, &cert.name_any(), &record).await?;
            return Box::pin(apply_pass(&revoked, ctx, now, true, SecretRead::Read))
                .await
                .map(Some);
        }
    };
    status::blocked(cert, ctx, blocked, issued, now)
        .await
        .map(Some)
}

/// A namespace found missing is looked up again before any key is made
/// for it: a certificate stuck on it costs a read per retry, not a key.
async fn namespace_still_missing(
    cert: &ClusterCertificate,
    ctx: &Context,
) -> Result<Option<Blocked>, Error> {
    let waiting_for_namespace = cert
        .status
        .as_ref()
        .and_then(|s| conditions::find(&s.conditions, conditions::READY))
        .is_some_and(|c| c.reason == Reason::NamespaceNotFound.as_str());
    if !waiting_for_namespace
        || Api::<Namespace>::all(ctx.client.clone())
            .get_opt(&cert.spec.secret_namespace)
            .await?
            .is_some()
    {
        return Ok(None);
    }
    Ok(Some(Blocked::new(
        Reason::NamespaceNotFound,
        format!(
            "namespace {} does not exist; create it or fix spec.secretNamespace",
            cert.spec.secret_namespace
        ),
        Some(WAITING_RETRY),
    )))
}

/// A secretTemplate edit and a new trust bundle (a CA rotation) reach the
/// Secret of a good certificate without a new certificate; returns the
/// Secret as certop wants it, or why the API server refused it.
async fn keep_secret_current(
    cert: &ClusterCertificate,
    ctx: &Context,
    secrets: &Api<Secret>,
    secret: Secret,
    current: &CertificateInfo,
    bundle: String,
) -> Result<Written, Error> {
    let (revision, reason, request) = secret::provenance_of(&secret);
    let provenance = secret::Provenance {
        serial: current.serial.to_string(),
        revision: revision.unwrap_or(1),
        reason: reason.as_deref().unwrap_or(Reason::Issued.as_str()),
        renewal_request: request.as_deref(),
    };
    let mut data = secret::secret_data(&secret);
    let bundle_changed = data.ca_crt.as_deref() != Some(bundle.as_bytes());
    data.ca_crt = Some(bundle.into_bytes());
    let mut wanted = secret::desired(cert, data, &provenance);
    wanted.metadata.uid = secret.metadata.uid.clone();
    // Unwritten, it is the version read (the status records it).
    wanted.metadata.resource_version = secret.metadata.resource_version.clone();
    let metadata_changed = secret::metadata_missing(&secret, &wanted);
    if !bundle_changed && !metadata_changed {
        return Ok(Written::Stored(Box::new(wanted)));
    }
    let base = secret.resource_version().map_or(Base::Absent, Base::Read);
    match secret::apply(secrets, wanted, base, &ctx.written_secrets).await? {
        Written::Stored(applied) => wanted = *applied,
        other @ (Written::Refused(_) | Written::Changed) => return Ok(other),
    }
    let what = match (bundle_changed, metadata_changed) {
        (true, true) => "the CA's trust bundle (ca.crt) and spec.secretTemplate",
        (true, false) => "the CA's trust bundle (ca.crt)",
        _ => "spec.secretTemplate",
    };
    ctx.event(
        cert,
        false,
        Reason::SecretUpdated.as_str(),
        "Update",
        format!("Applied {what} to the Secret"),
    )
    .await;
    Ok(Written::Stored(Box::new(wanted)))
}

/// The certificate a Secret holds, parsed (for status of what exists).
pub fn leaf_of(secret: &Secret) -> Option<CertificateInfo> {
    let data = secret::secret_data(secret);
    parse_chain(data.tls_crt.as_deref()?, TLS_CERT_KEY)
        .ok()?
        .into_iter()
        .next()
}

/// Whether a reason re-issues a certificate that was in service (vs. a repair).
pub fn ready_reason(code: &str) -> Reason {
    match code {
        c if c == IssueReason::Revoked.code() => Reason::Reissued,
        c if [
            IssueReason::RenewalDue.code(),
            IssueReason::Expired.code(),
            IssueReason::RenewalRequested.code(),
        ]
        .contains(&c) =>
        {
            Reason::Renewed
        }
        _ => Reason::Issued,
    }
}
