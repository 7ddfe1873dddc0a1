//! The pass's writes, one per decision: the certificate with its times
//! and the `Issued` condition (after its ledger entry), or `Denied` /
//! `Failed` with a reason; each in one status write.

use chrono::{DateTime, Utc};
use k8s_openapi::api::certificates::v1beta1::PodCertificateRequest;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{Patch, PatchParams};
use kube::{Api, ResourceExt};
use tracing::{info, warn};

use crate::core::ledger::LedgerEntry;
use crate::core::pod_certificate::begin_refresh_at;
use crate::operator::conditions::to_timestamp;
use crate::operator::reason::Reason;
use crate::operator::store::authority_cache::KeyRing;
use crate::operator::store::ledger_store::{self, Recorded};
use crate::operator::{Context, Error};
use crate::pki::{LeafTemplate, POD_BACKDATE, SerialNumber, issue_for_public_key};

fn condition(type_: &str, reason: Reason, message: String, now: DateTime<Utc>) -> Condition {
    Condition {
        type_: type_.into(),
        status: "True".into(),
        reason: reason.as_str().into(),
        message,
        last_transition_time: Time(to_timestamp(now)),
        observed_generation: None,
    }
}

/// Ends the request `Denied` or `Failed` with a reason.
pub async fn conclude(
    request: &PodCertificateRequest,
    ctx: &Context,
    type_: &str,
    reason: Reason,
    message: String,
    now: DateTime<Utc>,
) -> Result<(), Error> {
    warn!(request = %name(request), signer = %request.spec.signer_name, decision = type_, %reason, %message, "pod certificate refused");
    patch_status(
        request,
        ctx,
        serde_json::json!({"status": {"conditions": [condition(type_, reason, message, now)]}}),
    )
    .await?;
    ctx.metrics.failed(reason.as_str());
    Ok(())
}

/// Signs the request, records the certificate in the CA's ledger, then
/// hands it out in one status write. The ledger comes first: a
/// certificate is never out without an entry a revocation can find. The
/// serial is derived from the request's UID and the signing key, so a
/// pass that signs again (the status write failed, certop restarted, a
/// new leader took over) makes the same serial: the request has one
/// ledger entry, whose digest is the last certificate signed, the only
/// one that can have been handed out.
pub async fn issue(
    request: &PodCertificateRequest,
    ctx: &Context,
    ca: &str,
    ring: &KeyRing,
    template: &LeafTemplate,
    spki: &[u8],
    now: DateTime<Utc>,
) -> Result<(), Error> {
    let uid = request.metadata.uid.as_deref().unwrap_or_default();
    let seed = format!("{uid}/{}", ring.signing.certificate().fingerprint);
    let serial = SerialNumber::derived(seed.as_bytes());
    // The backdate never reaches before the CA's notBefore (a CA younger
    // than POD_BACKDATE): the span stays the lifetime decided, which
    // kube-apiserver requires to be at least 1h.
    let backdate = POD_BACKDATE
        .min(now - ring.signing.certificate().not_before)
        .max(chrono::Duration::zero());
    let mut template = template.clone();
    template.lifetime += POD_BACKDATE - backdate;
    let issued = match issue_for_public_key(&template, spki, serial, backdate, &ring.signing, now) {
        Ok(i) => i,
        Err(e) => {
            let message = e.to_string();
            return conclude(request, ctx, "Failed", Reason::SigningFailed, message, now).await;
        }
    };
    let cert = &issued.certificate;
    // Issued when signed: notBefore plus this certificate's backdate, not
    // the usual one (`LedgerEntry::of`), which would date it minutes ahead,
    // and a revocation made in those minutes (by namespace or
    // ServiceAccount, each "issued before" its creation) would miss it.
    let entry = LedgerEntry {
        issued_at: (cert.not_before + backdate).timestamp(),
        ..LedgerEntry::of(cert, None, ring.signing_index)
    };
    let recorded =
        ledger_store::record_gathered(ctx, ca, entry, &ledger_store::rules_of_ca(ctx, ca), now)
            .await?;
    if recorded != Recorded::Live {
        let message = format!(
            "a CertificateRevocation of CertificateAuthority {ca} covers this certificate (serial {}); it is not handed out",
            cert.serial
        );
        return conclude(request, ctx, "Failed", Reason::Revoked, message, now).await;
    }
    let refresh = begin_refresh_at(cert.not_before, cert.not_after, &request.spec.pod_uid);
    let message = format!(
        "signed by CertificateAuthority {ca}, serial {}, for {}",
        cert.serial,
        template.uris.join(", ")
    );
    let time = |t: DateTime<Utc>| Time(to_timestamp(t));
    patch_status(
        request,
        ctx,
        serde_json::json!({"status": {
            "certificateChain": issued.chain_pem,
            "notBefore": time(cert.not_before),
            "notAfter": time(cert.not_after),
            "beginRefreshAt": time(refresh),
            "conditions": [condition("Issued", Reason::Issued, message, now)],
        }}),
    )
    .await?;
    ctx.metrics.issued("PodCertificateRequest");
    info!(request = %name(request), signer = %request.spec.signer_name, serial = %cert.serial, "pod certificate issued");
    Ok(())
}

fn name(request: &PodCertificateRequest) -> String {
    format!(
        "{}/{}",
        request.namespace().unwrap_or_default(),
        request.name_any()
    )
}

/// A merge patch of the request's status subresource, one of at most
/// `STATUS_WRITES_IN_FLIGHT`.
async fn patch_status(
    request: &PodCertificateRequest,
    ctx: &Context,
    patch: serde_json::Value,
) -> Result<(), Error> {
    // Never closed: an error here cannot happen, and writing anyway is safe.
    let _permit = ctx.pod_certificate_writes.acquire().await;
    let namespace = request.namespace().unwrap_or_default();
    Api::<PodCertificateRequest>::namespaced(ctx.client.clone(), &namespace)
        .patch_status(
            &request.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await?;
    Ok(())
}
