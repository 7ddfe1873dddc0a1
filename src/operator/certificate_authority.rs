//! The CertificateAuthority controller: zero-touch CA keys, adoption of an
//! existing CA, trust-bundle ConfigMaps and the CA's status.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::{Api, Resource, ResourceExt};
use tracing::info;

use crate::api::{
    CaRotationStatus, CaSettings, CertificateAuthority, CertificateAuthorityStatus, meta,
};
use crate::core::ledger::crl_refresh_time;
use crate::core::rotation::{
    self, Observed, Phase, RotationMarks, RotationSettings, Step, key_secret_name,
};
use crate::operator::conditions::{self, READY};
use crate::operator::reason::Reason;
use crate::operator::runtime::context::FIELD_MANAGER;
use crate::operator::runtime::finalize::reconcile_with_finalizer;
use crate::operator::runtime::managed_namespaces::ManagedNamespaces;
use crate::operator::store::authority_cache::{self, KeyRing};
use crate::operator::store::ledger_store;
use crate::operator::{Context, Error, ca_rotation, store::crl};
use crate::pki::{Authority, CaRequest};

/// How often a CA is looked at when nothing changes: keeps trust bundles
/// and status current even if a watch event was missed.
const RESYNC: Duration = Duration::from_secs(3600);

/// The Secret, in the operator's namespace, that holds a CA (None when the
/// spec cannot name one; the CA's condition says why).
pub fn secret_name(ca: &CertificateAuthority) -> Option<String> {
    ca.settings().ok().map(|s| s.secret_name)
}

/// Where a CA's certificate and key come from, decided from what the Secret
/// holds. Pure, so every case is a row in a table test.
#[derive(Debug, PartialEq)]
pub enum CaSource<'a> {
    /// Sign with the certificate and key found in the Secret.
    Existing { cert: &'a [u8], key: &'a [u8] },
    /// No Secret and none ever made: create the CA.
    Create,
    /// Cannot proceed; the reason and message go to the Ready condition.
    Unavailable { reason: Reason, message: String },
}

/// `bound`: the fingerprint the CA is bound to (its annotation), or the
/// serial its status last showed; either means a key existed.
pub fn decide_source<'a>(
    secret: Option<&'a BTreeMap<String, ByteString>>,
    secret_name: &str,
    namespace: &str,
    adopt: bool,
    created_before: Option<&str>,
) -> CaSource<'a> {
    let pair = |c: &str, k: &str| {
        let data = secret?;
        Some((data.get(c)?.0.as_slice(), data.get(k)?.0.as_slice()))
    };
    match secret {
        Some(_) => match pair("tls.crt", "tls.key").or_else(|| pair("ca.crt", "ca.key")) {
            Some((cert, key)) => CaSource::Existing { cert, key },
            None => CaSource::Unavailable {
                reason: Reason::InvalidCASecret,
                message: format!(
                    "Secret {namespace}/{secret_name} holds neither tls.crt/tls.key nor ca.crt/ca.key; add the CA certificate and key"
                ),
            },
        },
        None if adopt => CaSource::Unavailable {
            reason: Reason::CASecretNotFound,
            message: format!(
                "spec.keySource.adopt is true but Secret {namespace}/{secret_name} does not exist; create it with the CA's ca.crt and ca.key"
            ),
        },
        None => match created_before {
            Some(serial) => CaSource::Unavailable {
                reason: Reason::CASecretDeleted,
                message: format!(
                    "Secret {namespace}/{secret_name} with the key of CA {serial} is gone; certop will not silently create a new CA, which would break trust. Restore the Secret, or delete and re-create this CertificateAuthority to start a new CA"
                ),
            },
            None => CaSource::Create,
        },
    }
}

pub async fn reconcile(ca: Arc<CertificateAuthority>, ctx: Arc<Context>) -> Result<Action, Error> {
    let ctx: &Context = &ctx;
    reconcile_with_finalizer(
        "certificateauthority",
        ca,
        ctx,
        |o| async move { apply(&o, ctx).await },
        |o| async move { cleanup(&o, ctx).await },
    )
    .await
}

pub fn error_policy(ca: Arc<CertificateAuthority>, error: &Error, ctx: Arc<Context>) -> Action {
    crate::operator::runtime::backoff::retry("certificateauthority", &ca.name_any(), error, &ctx)
}

/// The condition a CA near its end carries.
pub const EXPIRING: &str = "Expiring";

/// When a CA's approaching end is announced: the last fifth of its
/// lifetime (the window a rotation would use). Pure.
pub fn expiry_warning_time(
    not_before: chrono::DateTime<Utc>,
    not_after: chrono::DateTime<Utc>,
) -> chrono::DateTime<Utc> {
    not_after - (not_after - not_before) / 5
}

/// Whether the key pair loaded is the one the CA is bound to. Pure.
pub fn check_binding(bound: Option<&str>, loaded: &str) -> Result<(), String> {
    match bound {
        Some(fp) if fp != loaded => Err(format!(
            "the CA is bound to the certificate with fingerprint {fp}, but its Secret now holds {loaded}; certop refuses to sign with a key it was not given. Restore the original Secret, or delete and re-create the CertificateAuthority to trust the new key"
        )),
        _ => Ok(()),
    }
}

/// The other CertificateAuthority that holds this key pair first, if any:
/// two CAs never share a key (policies, `requirePolicy` and signer names
/// are per CA, so a second CA on the same key would sign outside them).
/// The CA bound earliest (by creation, then name) keeps it. Pure.
pub fn key_holder<'a>(
    ca: &CertificateAuthority,
    fingerprint: &str,
    others: &'a [std::sync::Arc<CertificateAuthority>],
) -> Option<&'a CertificateAuthority> {
    let holds = |other: &CertificateAuthority| {
        [
            meta::CA_FINGERPRINT,
            meta::CA_NEXT_FINGERPRINT,
            meta::CA_PREVIOUS_FINGERPRINT,
        ]
        .iter()
        .any(|a| other.annotations().get(*a).map(String::as_str) == Some(fingerprint))
            || other.status.as_ref().and_then(|s| s.fingerprint.as_deref()) == Some(fingerprint)
    };
    let first = |c: &CertificateAuthority| {
        (
            c.metadata.creation_timestamp.as_ref().map(|t| t.0),
            c.name_any(),
        )
    };
    others
        .iter()
        .map(|o| o.as_ref())
        .filter(|o| o.name_any() != ca.name_any() && holds(o))
        .filter(|o| first(o) < first(ca))
        .min_by_key(|o| first(o))
}

async fn apply(ca: &CertificateAuthority, ctx: &Context) -> Result<Action, Error> {
    apply_at(ca, ctx, Utc::now()).await
}

/// One pass with the clock at `now` (scenarios move it).
pub(super) async fn apply_at(
    ca: &CertificateAuthority,
    ctx: &Context,
    now: chrono::DateTime<Utc>,
) -> Result<Action, Error> {
    let name = ca.name_any();
    let previous = ca.status.clone().unwrap_or_default();
    let settings = match ca.settings() {
        Ok(s) => s,
        Err(message) => {
            let status = not_ready(
                ca,
                ctx,
                &previous,
                Reason::InvalidSpec,
                message.to_string(),
                now,
            )
            .await;
            return write_status(ca, ctx, &previous, status, None).await;
        }
    };
    // certop's record says which keys the CA has; the annotations only
    // mirror it (and start it, for a CA recorded before it existed).
    let stored = rotation::stored_marks(ca.annotations(), authority_cache::record_of(ca));
    let mut marks = match stored.marks.clone() {
        Ok(m) => m,
        Err(message) => {
            let status = not_ready(
                ca,
                ctx,
                &previous,
                Reason::RotationBlocked,
                message.to_string(),
                now,
            )
            .await;
            return write_status(ca, ctx, &previous, status, None).await;
        }
    };
    // The key that signs: the first one, or the one a rotation made.
    let secret_name = key_secret_name(&settings.secret_name, marks.signing);
    let secrets = ctx.operator_secrets();
    let secret = secrets.get_opt(&secret_name).await?;
    let adopt = ca
        .spec
        .key_source
        .as_ref()
        .and_then(|k| k.adopt)
        .unwrap_or(false)
        && marks.signing == 0;
    let bound = marks.signing_fingerprint.clone();
    let source = decide_source(
        secret.as_ref().and_then(|s| s.data.as_ref()),
        &secret_name,
        &ctx.namespace,
        adopt,
        bound
            .as_deref()
            .map(|fp| format!("fingerprint {fp}"))
            .or_else(|| {
                previous
                    .serial_number
                    .as_ref()
                    .map(|s| format!("serial {s}"))
            })
            .as_deref(),
    );
    let version = secret
        .as_ref()
        .and_then(|s| s.resource_version())
        .unwrap_or_default();
    let loaded = match source {
        CaSource::Existing { cert, key } => ctx
            .authorities
            .get_or_load(&secret_name, &version, cert, key, now)
            .map_err(|e| {
                let reason = match e {
                    crate::pki::PkiError::CaExpired { .. } => Reason::CAExpired,
                    _ => Reason::InvalidCASecret,
                };
                (
                    reason,
                    format!("Secret {}/{secret_name}: {e}", ctx.namespace),
                )
            })
            .and_then(|a| {
                check_binding(bound.as_deref(), &a.certificate().fingerprint)
                    .map(|()| a)
                    .map_err(|m| (Reason::CAKeyChanged, m))
            })
            .and_then(|a| {
                match key_holder(ca, &a.certificate().fingerprint, &ctx.cas.state()) {
                    Some(holder) => Err((
                        Reason::CAKeyInUse,
                        format!(
                            "Secret {}/{secret_name} holds the key of CertificateAuthority {}; two CAs never share a key (policies are per CA). Give this CA a key of its own (keySource.secretName)",
                            ctx.namespace,
                            holder.name_any()
                        ),
                    )),
                    None => Ok(a),
                }
            }),
        CaSource::Create => match create(ca, ctx, &settings).await? {
            Some(authority) => Ok(authority),
            // Another writer created it first: read theirs on the next pass.
            None => return Ok(Action::requeue(Duration::from_secs(1))),
        },
        CaSource::Unavailable { reason, message } => Err((reason, message)),
    };

    let authority = match loaded {
        Ok(a) => a,
        Err((reason, message)) => {
            let status = not_ready(ca, ctx, &previous, reason, message, now).await;
            return write_status(ca, ctx, &previous, status, None).await;
        }
    };
    // Bind the CA to its key (the mirror first, then the record in this
    // pass's status): a pass that dies between them binds from the mirror.
    if bound.is_none() {
        bind(ca, ctx, &authority.certificate().fingerprint).await?;
        marks.signing_fingerprint = Some(authority.certificate().fingerprint.clone());
    }
    let mut status = previous.clone();
    status.observed_generation = ca.metadata.generation;
    status.secret_name = Some(secret_name.clone());
    let cert = authority.certificate();
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
        "Ready",
        &message,
        ca.metadata.generation,
        now,
    );
    let ledger = ledger_store::load(ctx, &name).await?;

    // The rotation: at most one step (one write) a pass; the next pass
    // (the CA's own watch event) derives the state again and goes on.
    let ring = match rotate(
        ca,
        ctx,
        &settings,
        &marks,
        &stored,
        &authority,
        &ledger,
        &mut status,
        now,
    )
    .await?
    {
        Rotated::Stepped => {
            return write_status(ca, ctx, &previous, status, Some(Duration::from_secs(1))).await;
        }
        Rotated::Committed => return Ok(Action::requeue(Duration::from_secs(1))),
        Rotated::Ring(ring) => ring,
    };

    // A CA near its end that will not rotate by itself is said loudly,
    // well before its leaves get cut short.
    let warn_at = expiry_warning_time(cert.not_before, cert.not_after);
    let was_warning = conditions::is_true(&previous.conditions, EXPIRING);
    let rotates_itself = settings.rotate_before.is_some();
    if now >= warn_at && !rotates_itself && ring.next.is_none() {
        let message = format!(
            "the CA certificate expires at {} (in {} days) and spec.rotation.automatic is false; certificates it signs are cut short to that time. Rotate it with `kubectl certop rotate-ca {name}`",
            cert.not_after.to_rfc3339(),
            (cert.not_after - now).num_days()
        );
        conditions::set(
            &mut status.conditions,
            EXPIRING,
            true,
            Reason::CANearExpiry.as_str(),
            &message,
            ca.metadata.generation,
            now,
        );
        if !was_warning {
            let reason = Reason::CANearExpiry.as_str();
            ctx.event(ca, true, reason, "Check", message).await;
        }
    } else {
        status.conditions.retain(|c| c.type_ != EXPIRING);
    }
    let until_warning = (warn_at - now)
        .to_std()
        .unwrap_or(RESYNC)
        .max(Duration::from_secs(1));
    let published = sync_trust_bundle(ca, ctx, &settings.bundle_name, &ring.bundle_pem()).await?;
    // The staged CA is in every trust bundle from now: recorded only after
    // the publication succeeded (a failed write above returns first; a
    // failed status write below records a later time next pass), by
    // certop's clock, and the overlap counts from it.
    // So are the `ca.crt` of the Secrets certop keeps for this CA's
    // ClusterCertificates (the certificate controller rewrites them on the
    // same change): checked, not assumed.
    let unpublished = status
        .rotation
        .as_ref()
        .and_then(|r| r.record.as_ref())
        .filter(|r| r.next_trusted_since.is_none());
    let pending = match (&ring.next, unpublished) {
        (Some(next), Some(_)) => secrets_without(ctx, &name, next.certificate_pem()).await?,
        _ => Vec::new(),
    };
    if let (Some(next), Some(rotation_status)) = (&ring.next, status.rotation.as_mut())
        && let Some(record) = rotation_status.record.as_mut()
        && record.next_trusted_since.is_none()
        && pending.is_empty()
    {
        record.next_trusted_since = Some(now.max(Utc::now()));
        rotation_status.next_step_at = rotation::switch_time(
            next.certificate(),
            record.next_trusted_since,
            settings.rotation_overlap,
        );
    }
    set_or_clear(
        &mut status.conditions,
        "TrustBundle",
        trust_bundle_problem(&settings.bundle_name, &published, &ctx.managed_namespaces),
        ca.metadata.generation,
        now,
    );
    status.issued_certificates = Some(
        ledger
            .entries
            .iter()
            .filter(|e| e.revoked.is_none() && !e.is_expired(now))
            .count() as i64,
    );
    ctx.metrics
        .ledger(&name, ledger.unreadable.len(), ledger.largest_shard_bytes);
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
    set_or_clear(
        &mut status.conditions,
        "Ledger",
        ledger
            .unreadable
            .first()
            .map(|e| (e.reason(), e.to_string()))
            .or(full),
        ca.metadata.generation,
        now,
    );
    let mut next_look = RESYNC.min(until_warning);
    if !pending.is_empty() {
        next_look = Duration::from_secs(10);
        let shown: Vec<&str> = pending.iter().take(5).map(String::as_str).collect();
        set_or_clear(
            &mut status.conditions,
            ROTATION,
            Some((
                Reason::BundlesPending,
                format!(
                    "the staged CA certificate is not yet in the ca.crt of {} Secrets of this CA's certificates ({}{}); the overlap starts once it is in all of them. A Secret certop cannot write (see its ClusterCertificate's condition) holds the rotation here",
                    pending.len(),
                    shown.join(", "),
                    if pending.len() > shown.len() {
                        ", ..."
                    } else {
                        ""
                    }
                ),
            )),
            ca.metadata.generation,
            now,
        );
    } else if conditions::find(&status.conditions, ROTATION)
        .is_some_and(|c| c.reason == Reason::BundlesPending.as_str())
    {
        status.conditions.retain(|c| c.type_ != ROTATION);
    }
    if let Some(at) = status.rotation.as_ref().and_then(|r| r.next_step_at) {
        next_look = next_look.min(
            (at - now)
                .to_std()
                .unwrap_or_default()
                .max(Duration::from_secs(1)),
        );
    }
    // Each key that answers for certificates keeps its own CRL fresh: the
    // signing key, and a retiring key until its certificates are gone.
    let ledger_whole = ledger.unreadable.is_empty();
    let mut incomplete = Vec::new();
    if let Some((index, old)) = &ring.previous
        && old.certificate().can_sign_crls
    {
        match keep_crl_fresh(ca, ctx, old, *index, None, ledger_whole, now).await {
            Ok((crl, wait)) => {
                next_look = next_look.min(wait);
                incomplete.extend(
                    crl.incomplete
                        .map(|m| format!("the retiring key's CRL: {m}")),
                );
            }
            Err(Error::CrlNumberExhausted(_)) => {}
            Err(e) => return Err(e),
        }
    }
    if authority.certificate().can_sign_crls {
        // The number the CA's status recorded for its signing key's CRL
        // is a floor: a stored CRL below it (an earlier one put back) is
        // not current, whatever this replica remembers.
        let floor = previous.crl_number.and_then(|n| u64::try_from(n).ok());
        match keep_crl_fresh(ca, ctx, &authority, marks.signing, floor, ledger_whole, now).await {
            Ok((crl, wait)) => {
                next_look = next_look.min(wait);
                incomplete.extend(crl.incomplete.clone());
                fill_crl_status(ca, &mut status, &crl, now);
            }
            Err(Error::CrlNumberExhausted(message)) => set_or_clear(
                &mut status.conditions,
                "CRLStored",
                Some((Reason::CRLNumberExhausted, message)),
                ca.metadata.generation,
                now,
            ),
            Err(e) => return Err(e),
        }
    }
    report_crl_completeness(ca, ctx, &previous, &mut status, incomplete, now).await;
    write_status(ca, ctx, &previous, status, Some(next_look)).await
}

/// The condition a CA carries while certop cannot prove its CRL complete.
pub const CRL_COMPLETE: &str = "CRLComplete";

/// Sets `CRLComplete=False` (reason `CRLIncomplete`, the message says what
/// to restore) while a CRL of the CA could not be proven to list every
/// revoked certificate, with a warning Event when that starts; removes it
/// once the CRLs are whole again.
async fn report_crl_completeness(
    ca: &CertificateAuthority,
    ctx: &Context,
    previous: &CertificateAuthorityStatus,
    status: &mut CertificateAuthorityStatus,
    incomplete: Vec<String>,
    now: chrono::DateTime<Utc>,
) {
    let problem = (!incomplete.is_empty()).then(|| (Reason::CRLIncomplete, incomplete.join("; ")));
    let was = conditions::find(&previous.conditions, CRL_COMPLETE)
        .is_some_and(|c| c.reason == Reason::CRLIncomplete.as_str());
    if let Some((reason, message)) = problem.as_ref().filter(|_| !was) {
        ctx.event(ca, true, reason.as_str(), "PublishCRL", message.clone())
            .await;
    }
    set_or_clear(
        &mut status.conditions,
        CRL_COMPLETE,
        problem,
        ca.metadata.generation,
        now,
    );
}

/// What a pass did about the CA's rotation.
enum Rotated {
    /// It wrote a key Secret; the status says where it stands.
    Stepped,
    /// It wrote a step into certop's record (the status): nothing more
    /// this pass.
    Committed,
    /// Nothing to write now: the keys to trust and sign with.
    Ring(Box<KeyRing>),
}

/// How many holders of a retiring key the status names.
const HOLDERS_SHOWN: usize = 20;

/// Decides the rotation's next step and takes it; fills `status.rotation`
/// (certop's record included) and the Rotation condition.
#[allow(clippy::too_many_arguments)]
async fn rotate(
    ca: &CertificateAuthority,
    ctx: &Context,
    settings: &CaSettings,
    marks: &RotationMarks,
    stored: &rotation::StoredMarks,
    signing: &Arc<Authority>,
    loaded: &ledger_store::Loaded,
    status: &mut CertificateAuthorityStatus,
    now: chrono::DateTime<Utc>,
) -> Result<Rotated, Error> {
    let name = ca.name_any();
    let ledger = loaded.entries.as_slice();
    let mut record = authority_cache::record_of(ca).cloned().unwrap_or_default();
    marks.write_into(&mut record);
    let mut problem = None;
    let next = match ca_rotation::load_next(ctx, settings, marks, now).await? {
        Ok(n) => n,
        Err(message) => {
            problem = Some(message);
            None
        }
    };
    let previous_key = match (marks.previous_index(), &marks.previous_fingerprint) {
        (Some(index), Some(fp)) => {
            let secret = key_secret_name(&settings.secret_name, index);
            // Asked of the API server, not the cache: the watch that
            // brings a deletion here may run ahead of the store's.
            if ctx
                .operator_secrets()
                .get_metadata_opt(&secret)
                .await?
                .is_none()
            {
                ctx.authorities.forget(&secret);
                Some(Err(format!(
                    "the Secret {}/{secret} of the retiring key is gone",
                    ctx.namespace
                )))
            } else {
                Some(
                    match authority_cache::load_key(ctx, &name, &secret, Some(fp), now).await? {
                        authority_cache::Loaded::Usable(a) => Ok((index, a)),
                        authority_cache::Loaded::Unusable(why) => Err(why.to_string()),
                    },
                )
            }
        }
        _ => None,
    };
    let previous = previous_key.clone().and_then(Result::ok);
    let retiring = authority_cache::retiring_ca(
        marks,
        previous.as_ref().map(|(_, a)| a.as_ref()),
        Some(&record),
    );
    // Kept from the key while it is there (a rotation switched before the
    // record existed included), so it outlives the key's Secret.
    if let Some(r) = &retiring
        && record.previous_certificate.is_none()
    {
        record.previous_certificate = Some(r.pem.clone());
    }
    let holders = marks
        .previous_index()
        .map(|index| crate::core::ledger::live_entries_of_key(ledger, index, now))
        .unwrap_or_default();
    let previous_live = holders.len();
    let last_reissue = marks
        .previous_index()
        .and_then(|index| crate::core::ledger::last_reissue(ledger, index, marks.signing));
    let rotation_settings = RotationSettings {
        overlap: settings.rotation_overlap,
        rotate_before: settings.rotate_before,
    };
    let unbind_requested = stored.recorded
        && marks.next_fingerprint.is_some()
        && !ca.annotations().contains_key(meta::CA_NEXT_FINGERPRINT);
    let step = match &problem {
        Some(message) => Step::Blocked(message.clone()),
        None => rotation::decide(&Observed {
            marks,
            signing: signing.certificate(),
            next: next.as_ref().map(|n| n.certificate()),
            next_trusted_since: record.next_trusted_since,
            previous: retiring.as_ref().map(|r| &r.certificate),
            switched_at: record.switched_at,
            previous_live,
            last_reissue,
            end_retirement: ca
                .annotations()
                .get(meta::END_RETIREMENT)
                .map(String::as_str),
            unbind_requested,
            settings: rotation_settings,
            now,
        }),
    };
    // What an unreadable shard records is not counted above: it may hold
    // certificates of the retiring key that still need it trusted.
    let step = match step {
        Step::Retire { early: false } if !loaded.unreadable.is_empty() => {
            let shards: Vec<String> = loaded.unreadable.iter().map(|e| e.shard()).collect();
            Step::Blocked(format!(
                "the retiring CA is kept in the trust bundles: ledger shards {} cannot be parsed, and certificates it signed may be recorded there. Restore them (or delete them to give up what they record), or end the retirement with the annotation {}",
                shards.join(", "),
                meta::END_RETIREMENT
            ))
        }
        step => step,
    };
    let phase = marks.phase().unwrap_or(Phase::Stable);
    let exists = |certificate: &str| {
        ctx.certificates
            .get(&kube::runtime::reflector::ObjectRef::new(certificate))
            .is_some()
    };
    let mut rotation_status = CaRotationStatus {
        phase: phase.as_str().to_string(),
        number: i64::from(marks.number),
        next_serial_number: next.as_ref().map(|n| n.certificate().serial.to_string()),
        previous_serial_number: retiring.as_ref().map(|r| r.certificate.serial.to_string()),
        previous_certificates: (phase == Phase::Retiring).then_some(previous_live as i64),
        next_step_at: None,
        previous_holders: rotation::holder_names(&holders, exists, HOLDERS_SHOWN),
        record: None,
    };
    let was = conditions::find(&status.conditions, ROTATION).map(|c| c.reason.clone());
    // What is wrong with the rotation, if anything: a step that cannot be
    // taken, then a retiring key whose Secret is gone, then certificates
    // certop does not re-issue that hold the retirement.
    let mut trouble: Option<(Reason, String)> = None;
    if let Step::Blocked(message) = &step {
        trouble = Some((Reason::RotationBlocked, message.clone()));
    } else if phase == Phase::Retiring
        && let Some(Err(why)) = &previous_key
    {
        let serial = rotation_status
            .previous_serial_number
            .clone()
            .unwrap_or_else(|| "unknown".into());
        let message = match &retiring {
            Some(_) => format!(
                "{why}: the retiring CA certificate (serial {serial}) stays trusted from certop's record (status.rotation.record) until its {previous_live} certificates are re-issued at their turns, but its CRL can no longer be re-signed and goes stale at its nextUpdate. Restore the Secret to keep that CRL fresh"
            ),
            None => format!(
                "{why}, and certop has no record of the retiring CA certificate (serial {serial}): it can no longer be put in the trust bundles. Restore the Secret"
            ),
        };
        trouble = Some((Reason::RetiringKeyMissing, message));
    } else if phase == Phase::Retiring
        && previous_live > 0
        && now
            >= rotation::retire_time(
                rotation::switched_at(
                    signing.certificate(),
                    record.switched_at,
                    settings.rotation_overlap,
                ),
                settings.rotation_overlap,
            )
    {
        let serial = rotation_status
            .previous_serial_number
            .clone()
            .unwrap_or_default();
        let shown = rotation::holder_names(&holders, exists, 5);
        trouble = Some((
            Reason::RetirementHeld,
            format!(
                "{previous_live} certificates of the retiring CA (serial {serial}) are still valid and certop does not re-issue them (signed for CSRs, or of ClusterCertificates deleted with their Secrets kept): {}{}. The old CA stays trusted until they expire. Revoke them (a CertificateRevocation with their serialNumbers; status.rotation.previousHolders lists them), or end the retirement now with the annotation {}={serial} (they stop verifying)",
                shown.join(", "),
                if previous_live > shown.len() {
                    ", ..."
                } else {
                    ""
                },
                meta::END_RETIREMENT
            ),
        ));
    }
    if let Some((reason, message)) = &trouble
        && was.as_deref() != Some(reason.as_str())
    {
        ctx.event(ca, true, reason.as_str(), "Rotate", message.clone())
            .await;
    }
    set_or_clear(
        &mut status.conditions,
        ROTATION,
        trouble,
        ca.metadata.generation,
        now,
    );
    let commits = matches!(
        step,
        Step::Start { .. }
            | Step::BindNext { .. }
            | Step::Unbind
            | Step::Switch
            | Step::Retire { .. }
    );
    if commits {
        let after = marks.after(&step);
        rotation::record_step(&mut record, &after, &step, signing.certificate_pem(), now);
        rotation_status.phase = after.phase().unwrap_or(phase).as_str().to_string();
        rotation_status.number = i64::from(after.number);
        rotation_status.record = Some(record);
        status.rotation = Some(rotation_status);
        if !ca_rotation::commit(ca, ctx, status).await? {
            return Ok(Rotated::Committed);
        }
        let mirrored = ca_rotation::mirror(ca, ctx, &after).await;
        match &step {
            Step::Start { number, why, .. } => ca_rotation::started(ca, ctx, *number, *why).await,
            Step::BindNext { .. } => {
                if let Some(next) = &next {
                    ca_rotation::staged(ca, ctx, next, settings.rotation_overlap).await;
                }
            }
            Step::Switch => {
                if let Some(next) = &next {
                    ca_rotation::switched(ca, ctx, after.number, signing, next).await;
                }
            }
            Step::Retire { early } => {
                let serial = status
                    .rotation
                    .as_ref()
                    .and_then(|r| r.previous_serial_number.clone());
                ca_rotation::retired(ca, ctx, serial, early.then_some(previous_live)).await;
            }
            _ => {}
        }
        mirrored?;
        return Ok(Rotated::Committed);
    }
    // A hand edit of the mirror is undone (the record is what certop
    // acts on), and said.
    if let Some(differs) = &stored.mirror_differs {
        ca_rotation::mirror(ca, ctx, marks).await?;
        ctx.event(
            ca,
            true,
            Reason::RotationMarksRestored.as_str(),
            "Rotate",
            format!(
                "the rotation annotations differ from certop's record (status.rotation.record): {differs}; certop restored them and the rotation goes on from its record. To end a retirement early, set {} to the retiring CA's serial",
                meta::END_RETIREMENT
            ),
        )
        .await;
    }
    let stepped = match step {
        Step::Wait { until } => {
            rotation_status.next_step_at = until;
            if phase == Phase::Stable {
                ca_rotation::remove_retired(ca, ctx, settings, marks).await?;
            }
            false
        }
        Step::CreateKey { index } => {
            ca_rotation::create_key(ca, ctx, settings, index, signing).await?;
            true
        }
        _ => false,
    };
    if phase == Phase::Staged
        && let Some(n) = &next
        && marks.next_fingerprint.is_some()
    {
        rotation_status.next_step_at = rotation::switch_time(
            n.certificate(),
            record.next_trusted_since,
            settings.rotation_overlap,
        );
    }
    let switched_at = record.switched_at;
    rotation_status.record = Some(record);
    status.rotation = Some(rotation_status);
    if stepped {
        return Ok(Rotated::Stepped);
    }
    Ok(Rotated::Ring(Box::new(KeyRing {
        signing: signing.clone(),
        signing_index: marks.signing,
        next: next.filter(|n| {
            marks.next_fingerprint.as_deref() == Some(n.certificate().fingerprint.as_str())
        }),
        previous,
        retiring,
        switched_at,
        overlap: settings.rotation_overlap,
    })))
}

/// The condition that says a rotation cannot go on.
pub const ROTATION: &str = "Rotation";

/// Sets a secondary condition False with a reason, or removes it when all is well.
fn set_or_clear(
    conditions_: &mut Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition>,
    type_: &str,
    problem: Option<(Reason, String)>,
    generation: Option<i64>,
    now: chrono::DateTime<Utc>,
) {
    match problem {
        Some((reason, message)) => conditions::set(
            conditions_,
            type_,
            false,
            reason.as_str(),
            &message,
            generation,
            now,
        ),
        None => conditions_.retain(|c| c.type_ != type_),
    }
}

/// The status of a CA that cannot sign; an Event when the reason changes.
async fn not_ready(
    ca: &CertificateAuthority,
    ctx: &Context,
    previous: &CertificateAuthorityStatus,
    reason: Reason,
    message: String,
    now: chrono::DateTime<Utc>,
) -> CertificateAuthorityStatus {
    let mut status = previous.clone();
    status.observed_generation = ca.metadata.generation;
    conditions::set(
        &mut status.conditions,
        READY,
        false,
        reason.as_str(),
        &message,
        ca.metadata.generation,
        now,
    );
    let was = conditions::find(&previous.conditions, READY).map(|c| c.reason.clone());
    if was.as_deref() != Some(reason.as_str()) {
        ctx.event(ca, true, reason.as_str(), reason.as_str(), message)
            .await;
    }
    status
}

async fn write_status(
    ca: &CertificateAuthority,
    ctx: &Context,
    previous: &CertificateAuthorityStatus,
    status: CertificateAuthorityStatus,
    next_look: Option<Duration>,
) -> Result<Action, Error> {
    // At the resourceVersion the pass read, as a rotation step is: a pass
    // from a view the store had not caught up with (a timer firing before
    // a step's watch event) never writes back the record the step replaced.
    if status != *previous && !ca_rotation::commit(ca, ctx, &status).await? {
        return Ok(Action::requeue(Duration::from_secs(1)));
    }
    Ok(Action::requeue(next_look.unwrap_or(RESYNC)))
}

/// Records the fingerprint of the CA certificate on the CA object.
async fn bind(ca: &CertificateAuthority, ctx: &Context, fingerprint: &str) -> Result<(), Error> {
    let patch = serde_json::json!({
        "metadata": {"annotations": {meta::CA_FINGERPRINT: fingerprint}}
    });
    Api::<CertificateAuthority>::all(ctx.client.clone())
        .patch(
            &ca.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await?;
    Ok(())
}

/// Signs a CRL of key `index` when there is none or the current one is
/// due for refresh (`refreshBefore` ahead of its nextUpdate), so it never
/// goes stale while the operator runs; returns it and when to look again.
///
/// A CRL marked incomplete is signed again once the ledger is whole (the
/// unreadable shard restored or given up), so the mark goes; and certop's
/// copy of the CRL is kept current from the verified published one.
async fn keep_crl_fresh(
    ca: &CertificateAuthority,
    ctx: &Context,
    authority: &Authority,
    index: u32,
    floor: Option<u64>,
    ledger_whole: bool,
    now: chrono::DateTime<Utc>,
) -> Result<(crl::PublishedCrl, Duration), Error> {
    let (_, refresh_before) = crl::schedule(ca);
    // What is stored is verified, not trusted: a deleted, tampered or
    // older CRL ConfigMap is published again.
    let current = crl::verify_stored(ctx, ca, authority, index, floor).await?;
    let due = crl_refresh_time(
        current.as_ref().map(|c| c.next_update),
        current
            .as_ref()
            .is_some_and(|c| c.incomplete.is_some() && ledger_whole),
        refresh_before,
        now,
    );
    let crl = match current {
        Some(c) if due > now => {
            crl::keep_copy(ctx, ca, authority, index, &c).await?;
            ctx.crls
                .offer(&crl::crl_path(&ca.name_any(), index), c.clone());
            c
        }
        _ => crl::publish(ctx, ca, authority, index, now).await?,
    };
    let refresh_at = crl_refresh_time(Some(crl.next_update), false, refresh_before, now);
    let wait = (refresh_at - now)
        .to_std()
        .unwrap_or(Duration::from_secs(1))
        .max(Duration::from_secs(1));
    Ok((crl, wait))
}

/// The CRL fields of a CA's status, from its signing key's CRL.
fn fill_crl_status(
    ca: &CertificateAuthority,
    status: &mut CertificateAuthorityStatus,
    crl: &crl::PublishedCrl,
    now: chrono::DateTime<Utc>,
) {
    status.crl_number = i64::try_from(crl.number).ok();
    status.crl_this_update = Some(crl.this_update);
    status.crl_next_update = Some(crl.next_update);
    status.revoked_certificates = i64::try_from(crl.entries).ok();
    if !crl.stored {
        let message = format!(
            "the CRL ({} bytes) is too large for one object; the leader serves it over HTTP",
            crl.der.len()
        );
        conditions::set(
            &mut status.conditions,
            "CRLStored",
            false,
            Reason::TooLarge.as_str(),
            &message,
            ca.metadata.generation,
            now,
        );
    } else {
        status.conditions.retain(|c| c.type_ != "CRLStored");
    }
}

/// Creates the CA and its Secret. The Secret is created, never replaced:
/// if another replica got there first the API server refuses ours, and
/// `None` says to read theirs. So a CA never gets a second key.
async fn create(
    ca: &CertificateAuthority,
    ctx: &Context,
    settings: &CaSettings,
) -> Result<Option<Arc<Authority>>, Error> {
    let secret_name = settings.secret_name.as_str();
    let request = CaRequest {
        common_name: ca.spec.subject.common_name.clone(),
        organizations: ca.spec.subject.organizations.clone(),
        algorithm: ca.spec.key_algorithm.unwrap_or_default(),
        lifetime: settings.lifetime,
    };
    let created = tokio::task::spawn_blocking(move || Authority::create(&request, Utc::now()))
        .await
        .map_err(Error::Task)?;
    let authority = match created {
        Ok(a) => a,
        Err(e) => {
            let reason = Reason::CACreationFailed.as_str();
            ctx.event(ca, true, reason, "Create", e.to_string()).await;
            return Err(Error::Pki {
                what: format!("creating CA {}", ca.name_any()),
                source: e,
            });
        }
    };
    let secret = ca_rotation::key_secret(ca, ctx, secret_name, 0, &authority);
    if !ca_rotation::create_key_secret(ctx, &secret).await? {
        return Ok(None);
    }
    let cert = authority.certificate();
    info!(ca = %ca.name_any(), serial = %cert.serial, "created CA");
    ctx.event(
        ca,
        false,
        "Created",
        "Create",
        format!(
            "Created CA {} serial {}, valid until {}",
            cert.subject(),
            cert.serial,
            cert.not_after.to_rfc3339()
        ),
    )
    .await;
    Ok(Some(Arc::new(authority)))
}

fn bundle_selector(ca_name: &str) -> String {
    format!(
        "{}={},{}",
        meta::MANAGED_BY,
        meta::MANAGED_BY_VALUE,
        trust_bundle_label(ca_name)
    )
}

fn trust_bundle_label(ca_name: &str) -> String {
    format!("certop.dev/trust-bundle-{}", short_hash(ca_name))
}

/// A label key part that fits Kubernetes' 63-character limit for any CA name.
fn short_hash(s: &str) -> String {
    crate::api::object_name::digest_hex(s, 8)
}

/// Whether a ConfigMap is one of this CA's trust bundles (certop created
/// it): its label and annotation say so. Anything else is never written
/// or deleted.
pub fn is_our_bundle(cm: &kube::core::ObjectMeta, ca_name: &str) -> bool {
    let labels = cm.labels.as_ref();
    let annotations = cm.annotations.as_ref();
    labels
        .and_then(|l| l.get(meta::MANAGED_BY))
        .map(String::as_str)
        == Some(meta::MANAGED_BY_VALUE)
        && labels
            .and_then(|l| l.get(&trust_bundle_label(ca_name)))
            .is_some()
        && annotations
            .and_then(|a| a.get(meta::CERTIFICATE_AUTHORITY))
            .map(String::as_str)
            == Some(ca_name)
}

/// Where a trust bundle could not go, for the CA's status.
#[derive(Debug, Default, PartialEq)]
struct BundleOutcome {
    /// A ConfigMap of that name is there and certop did not create it.
    conflicts: Vec<String>,
    /// The selector picks them but certop does not manage them.
    unmanaged: Vec<String>,
}

/// The TrustBundle condition: a conflict (someone else's ConfigMap) first,
/// then selected namespaces certop may not write into.
fn trust_bundle_problem(
    bundle_name: &str,
    outcome: &BundleOutcome,
    managed: &ManagedNamespaces,
) -> Option<(Reason, String)> {
    if !outcome.conflicts.is_empty() {
        return Some((
            Reason::ConfigMapConflict,
            format!(
                "ConfigMap {bundle_name} exists in namespaces {} and certop did not create it; certop leaves it alone: delete it or set spec.trustBundle.configMapName",
                outcome.conflicts.join(", ")
            ),
        ));
    }
    (!outcome.unmanaged.is_empty()).then(|| {
        (
            Reason::NamespaceNotManaged,
            format!(
                "the namespaceSelector picks namespaces {} that certop does not manage ({}); the trust bundle is not published there: add them to the chart's managedNamespaces (certop run --managed-namespaces) or narrow spec.trustBundle.namespaceSelector",
                outcome.unmanaged.join(", "),
                managed.describe()
            ),
        )
    })
}

/// Puts `ca.crt` in a ConfigMap in every managed namespace the selector
/// picks, and removes it from namespaces it no longer picks. A ConfigMap of
/// that name that certop did not create is left alone; the namespaces where
/// that happened, and the selected ones certop does not manage, are
/// returned for the CA's status.
async fn sync_trust_bundle(
    ca: &CertificateAuthority,
    ctx: &Context,
    cm_name: &str,
    ca_pem: &str,
) -> Result<BundleOutcome, Error> {
    let name = ca.name_any();
    let selected: BTreeSet<String> = match &ca.spec.trust_bundle {
        None => BTreeSet::new(),
        Some(tb) => {
            let selector = label_selector_string(&tb.namespace_selector);
            let namespaces: Api<Namespace> = Api::all(ctx.client.clone());
            namespaces
                .list_metadata(&ListParams::default().labels(&selector))
                .await?
                .items
                .iter()
                .map(|n| n.name_any())
                .collect()
        }
    };
    let (wanted, unmanaged): (BTreeSet<String>, BTreeSet<String>) = selected
        .into_iter()
        .partition(|ns| ctx.managed_namespaces.contains(ns));
    let ours = our_bundles(ctx, &name).await?;
    let mut have = BTreeSet::new();
    for cm in &ours {
        let ns = cm.namespace().unwrap_or_default();
        if wanted.contains(&ns) && cm.name_any() == cm_name {
            have.insert(ns);
            continue;
        }
        let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &ns);
        match api.delete(&cm.name_any(), &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    let mut conflicts = Vec::new();
    for ns in &wanted {
        let cm = ConfigMap {
            metadata: ObjectMeta {
                name: Some(cm_name.to_string()),
                namespace: Some(ns.clone()),
                labels: Some(BTreeMap::from([
                    (meta::MANAGED_BY.into(), meta::MANAGED_BY_VALUE.into()),
                    (trust_bundle_label(&name), "true".into()),
                ])),
                annotations: Some(BTreeMap::from([(
                    meta::CERTIFICATE_AUTHORITY.into(),
                    name.clone(),
                )])),
                ..Default::default()
            },
            data: Some(BTreeMap::from([("ca.crt".into(), ca_pem.to_string())])),
            ..Default::default()
        };
        let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), ns);
        if have.contains(ns) {
            api.patch(
                cm_name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&cm),
            )
            .await?;
            continue;
        }
        // Not ours: create it, which fails if anybody's is there.
        match api.create(&PostParams::default(), &cm).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 409 => conflicts.push(ns.clone()),
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(BundleOutcome {
        conflicts,
        unmanaged: unmanaged.into_iter().collect(),
    })
}

/// The trust-bundle ConfigMaps of a CA that certop created, in the
/// namespaces it manages (the only ones it may list in).
async fn our_bundles(
    ctx: &Context,
    ca_name: &str,
) -> Result<Vec<kube::core::PartialObjectMeta<ConfigMap>>, Error> {
    let mut ours = Vec::new();
    for api in ctx.managed_namespaces.apis::<ConfigMap>(&ctx.client) {
        ours.extend(
            api.list_metadata(&ListParams::default().labels(&bundle_selector(ca_name)))
                .await?
                .items
                .into_iter()
                .filter(|cm| is_our_bundle(&cm.metadata, ca_name)),
        );
    }
    Ok(ours)
}

/// The Secrets certop keeps for this CA's ClusterCertificates (in the
/// namespaces it manages; a Secret whose ClusterCertificate is gone is no
/// longer kept) whose `ca.crt` does not carry `ca_pem` yet, as
/// `namespace/name`.
async fn secrets_without(ctx: &Context, ca_name: &str, ca_pem: &str) -> Result<Vec<String>, Error> {
    let selector = format!("{}={}", meta::MANAGED_BY, meta::MANAGED_BY_VALUE);
    let mut missing = Vec::new();
    for api in ctx
        .managed_namespaces
        .apis::<k8s_openapi::api::core::v1::Secret>(&ctx.client)
    {
        for secret in api
            .list(&ListParams::default().labels(&selector))
            .await?
            .items
        {
            let annotations = secret.annotations();
            let kept = annotations.get(meta::ISSUER).map(String::as_str) == Some(ca_name)
                && annotations.get(meta::CERTIFICATE).is_some_and(|c| {
                    ctx.certificates
                        .get(&kube::runtime::reflector::ObjectRef::new(c))
                        .is_some()
                });
            let carries = secret
                .data
                .as_ref()
                .and_then(|d| d.get("ca.crt"))
                .is_some_and(|b| String::from_utf8_lossy(&b.0).contains(ca_pem.trim()));
            if kept && !carries {
                missing.push(format!(
                    "{}/{}",
                    secret.namespace().unwrap_or_default(),
                    secret.name_any()
                ));
            }
        }
    }
    Ok(missing)
}

/// A LabelSelector as the string form list calls take.
fn label_selector_string(
    selector: &k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector,
) -> String {
    let mut parts: Vec<String> = selector
        .match_labels
        .iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    for expr in selector.match_expressions.iter().flatten() {
        let values = expr.values.clone().unwrap_or_default().join(",");
        parts.push(match expr.operator.as_str() {
            "In" => format!("{} in ({values})", expr.key),
            "NotIn" => format!("{} notin ({values})", expr.key),
            "Exists" => expr.key.clone(),
            _ => format!("!{}", expr.key),
        });
    }
    parts.join(",")
}

/// A CA goes: its trust bundles go with it. Its key Secret stays, since a
/// key certop cannot replace is never deleted; delete it by hand to retire
/// the CA for good.
async fn cleanup(ca: &CertificateAuthority, ctx: &Context) -> Result<Action, Error> {
    let name = ca.name_any();
    for cm in our_bundles(ctx, &name).await? {
        let api: Api<ConfigMap> =
            Api::namespaced(ctx.client.clone(), &cm.namespace().unwrap_or_default());
        match api.delete(&cm.name_any(), &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
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

/// Whether an object is a CA certop may sign with right now.
pub fn is_ready(ca: &CertificateAuthority) -> bool {
    ca.status
        .as_ref()
        .is_some_and(|s| conditions::is_true(&s.conditions, READY))
        && ca.meta().deletion_timestamp.is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ca_that_held_a_key_first_keeps_it() {
        let ca = |name: &str, created: i64, annotations: &[(&str, &str)]| {
            let spec = serde_json::from_value(serde_json::json!({"subject": {"commonName": name}}))
                .expect("spec");
            let mut c = CertificateAuthority::new(name, spec);
            c.metadata.creation_timestamp =
                Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                    crate::operator::conditions::to_timestamp(
                        chrono::DateTime::from_timestamp(created, 0).expect("time"),
                    ),
                ));
            c.metadata.annotations = Some(
                annotations
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            );
            std::sync::Arc::new(c)
        };
        let owner = ca("owner", 100, &[(meta::CA_FINGERPRINT, "aa")]);
        let rotating = ca("rotating", 50, &[(meta::CA_NEXT_FINGERPRINT, "bb")]);
        let alias = ca("alias", 200, &[]);
        let all = vec![owner.clone(), rotating.clone(), alias.clone()];
        let holder =
            |c: &CertificateAuthority, fp: &str| key_holder(c, fp, &all).map(|h| h.name_any());
        assert_eq!(holder(&alias, "aa").as_deref(), Some("owner"));
        assert_eq!(
            holder(&alias, "bb").as_deref(),
            Some("rotating"),
            "a staged key is held too"
        );
        assert_eq!(holder(&owner, "aa"), None, "its own key");
        assert_eq!(holder(&alias, "cc"), None, "a key nobody holds");
        // Created at the same time: the name decides, the same way for both.
        let twin = ca("a-twin", 100, &[(meta::CA_FINGERPRINT, "aa")]);
        let all = vec![owner.clone(), twin.clone()];
        assert_eq!(
            key_holder(&owner, "aa", &all)
                .map(|h| h.name_any())
                .as_deref(),
            Some("a-twin")
        );
        assert!(key_holder(&twin, "aa", &all).is_none());
    }

    #[test]
    fn a_trust_bundle_reports_someone_elses_config_map_first_then_unmanaged_namespaces() {
        let managed = ManagedNamespaces::from_list(&["default"]);
        let outcome = |conflicts: &[&str], unmanaged: &[&str]| BundleOutcome {
            conflicts: conflicts.iter().map(|s| s.to_string()).collect(),
            unmanaged: unmanaged.iter().map(|s| s.to_string()).collect(),
        };
        let cases: &[(BundleOutcome, Option<Reason>, &[&str])] = &[
            (outcome(&[], &[]), None, &[]),
            (
                outcome(&["default"], &["team-a"]),
                Some(Reason::ConfigMapConflict),
                &["default", "configMapName"],
            ),
            (
                outcome(&[], &["team-a", "team-b"]),
                Some(Reason::NamespaceNotManaged),
                &["team-a, team-b", "(default)", "managedNamespaces"],
            ),
        ];
        for (outcome, reason, says) in cases {
            let problem = trust_bundle_problem("ca-bundle", outcome, &managed);
            assert_eq!(problem.as_ref().map(|p| p.0), *reason, "{outcome:?}");
            for text in *says {
                let message = &problem.as_ref().expect("a problem").1;
                assert!(message.contains(text), "{message} says {text}");
            }
        }
    }

    fn data(pairs: &[(&str, &str)]) -> BTreeMap<String, ByteString> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
            .collect()
    }

    #[test]
    fn source_of_a_ca_key() {
        let tls = data(&[("tls.crt", "C"), ("tls.key", "K")]);
        let kubeadm = data(&[("ca.crt", "C2"), ("ca.key", "K2")]);
        let empty = data(&[("other", "x")]);
        assert_eq!(
            decide_source(Some(&tls), "s", "ns", false, None),
            CaSource::Existing {
                cert: b"C",
                key: b"K"
            }
        );
        assert_eq!(
            decide_source(Some(&kubeadm), "s", "ns", true, None),
            CaSource::Existing {
                cert: b"C2",
                key: b"K2"
            }
        );
        assert!(matches!(
            decide_source(Some(&empty), "s", "ns", false, None),
            CaSource::Unavailable {
                reason: Reason::InvalidCASecret,
                ..
            }
        ));
        assert_eq!(
            decide_source(None, "s", "ns", false, None),
            CaSource::Create
        );
        assert!(matches!(
            decide_source(None, "s", "ns", true, None),
            CaSource::Unavailable {
                reason: Reason::CASecretNotFound,
                ..
            }
        ));
        match decide_source(None, "s", "ns", false, Some("abcd")) {
            CaSource::Unavailable { reason, message } => {
                assert_eq!(reason, Reason::CASecretDeleted);
                assert!(
                    message.contains("abcd") && message.contains("will not silently create"),
                    "{message}"
                );
            }
            other => panic!("a deleted CA Secret must not lead to {other:?}"),
        }
    }

    #[test]
    fn a_ca_is_announced_as_expiring_in_the_last_fifth_of_its_life() {
        let nb = chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .expect("t")
            .to_utc();
        let na = nb + chrono::Duration::days(100);
        assert_eq!(expiry_warning_time(nb, na), nb + chrono::Duration::days(80));
    }

    #[test]
    fn a_ca_is_bound_to_its_key() {
        assert!(check_binding(None, "AA").is_ok());
        assert!(check_binding(Some("AA"), "AA").is_ok());
        let refused = check_binding(Some("AA"), "BB").expect_err("another key is refused");
        assert!(
            refused.contains("AA") && refused.contains("BB"),
            "{refused}"
        );
    }

    #[test]
    fn only_bundles_certop_made_are_ours() {
        let mut m = kube::core::ObjectMeta::default();
        assert!(!is_our_bundle(&m, "ca"), "kube-root-ca.crt and the like");
        m.labels = Some(BTreeMap::from([
            (meta::MANAGED_BY.into(), meta::MANAGED_BY_VALUE.into()),
            (trust_bundle_label("ca"), "true".into()),
        ]));
        assert!(!is_our_bundle(&m, "ca"), "no CA annotation");
        m.annotations = Some(BTreeMap::from([(
            meta::CERTIFICATE_AUTHORITY.into(),
            "ca".into(),
        )]));
        assert!(is_our_bundle(&m, "ca"));
        assert!(!is_our_bundle(&m, "other"));
    }

    #[test]
    fn label_selectors_render_as_list_calls_expect() {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
            LabelSelector, LabelSelectorRequirement,
        };
        let s = LabelSelector {
            match_labels: Some(BTreeMap::from([("trust".into(), "yes".into())])),
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "env".into(),
                operator: "In".into(),
                values: Some(vec!["a".into(), "b".into()]),
            }]),
        };
        assert_eq!(label_selector_string(&s), "trust=yes,env in (a,b)");
        assert!(trust_bundle_label(&"x".repeat(253)).len() <= 63 + "certop.dev/".len());
    }
}
