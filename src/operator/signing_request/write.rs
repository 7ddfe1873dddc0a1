//! The pass's writes, one per decision: a review through the approval
//! subresource, a Failed condition, or a signed certificate in the status
//! (after its ledger entry).

use chrono::{DateTime, Utc};
use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestCondition,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Patch, PatchParams};
use kube::{Api, ResourceExt};
use tracing::{info, warn};

use crate::core::ledger::LedgerEntry;
use crate::operator::conditions::to_timestamp;
use crate::operator::reason::Reason;
use crate::operator::store::authority_cache::KeyRing;
use crate::operator::store::ledger_store::Recorded;
use crate::operator::{Context, Error, store::ledger_store};
use crate::pki::{LeafTemplate, issue_for_request};

fn new_condition(
    type_: &str,
    reason: Reason,
    message: String,
    now: DateTime<Utc>,
) -> CertificateSigningRequestCondition {
    let now = Time(to_timestamp(now));
    CertificateSigningRequestCondition {
        type_: type_.into(),
        status: "True".into(),
        reason: Some(reason.as_str().into()),
        message: Some(message),
        last_update_time: Some(now.clone()),
        last_transition_time: Some(now),
    }
}

/// Approves or denies through the approval subresource, as `kubectl
/// certificate approve|deny` would.
pub async fn review(
    csr: &CertificateSigningRequest,
    ctx: &Context,
    approve: bool,
    message: String,
    now: DateTime<Utc>,
) -> Result<(), Error> {
    let (type_, reason) = match approve {
        true => ("Approved", Reason::CertopKubeletApprove),
        false => ("Denied", Reason::CertopKubeletDeny),
    };
    info!(csr = %csr.name_any(), decision = type_, %message, "kubelet CSR reviewed");
    let patch =
        serde_json::json!({"status": {"conditions": [new_condition(type_, reason, message, now)]}});
    Api::<CertificateSigningRequest>::all(ctx.client.clone())
        .patch_subresource(
            "approval",
            &csr.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await?;
    Ok(())
}

/// Marks a CSR Failed with a reason; the Approved condition stays.
pub async fn fail(
    csr: &CertificateSigningRequest,
    ctx: &Context,
    reason: Reason,
    message: String,
    now: DateTime<Utc>,
) -> Result<(), Error> {
    warn!(csr = %csr.name_any(), %reason, %message, "CSR failed");
    let mut conditions = csr
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    conditions.push(new_condition("Failed", reason, message, now));
    patch_status(
        csr,
        ctx,
        serde_json::json!({"status": {"conditions": conditions}}),
    )
    .await?;
    ctx.metrics.failed(reason.as_str());
    Ok(())
}

/// Signs the CSR, records the certificate in the CA's ledger, then hands
/// it out in the status. The ledger comes first: a certificate is never
/// out without an entry a revocation rule can find. If the status write
/// fails, the next pass signs again and the first entry stays, for a
/// certificate nobody received (it expires unused).
pub async fn sign(
    csr: &CertificateSigningRequest,
    ctx: &Context,
    ca: &str,
    ring: &KeyRing,
    template: &LeafTemplate,
    now: DateTime<Utc>,
) -> Result<(), Error> {
    let der = match crate::core::csr::parse(&csr.spec.request.0) {
        Ok(content) => content.der,
        Err(e) => return fail(csr, ctx, Reason::BadRequest, e.to_string(), now).await,
    };
    let issued = match issue_for_request(template, &der, &ring.signing, now) {
        Ok(i) => i,
        Err(e) => return fail(csr, ctx, Reason::SigningFailed, e.to_string(), now).await,
    };
    let recorded = ledger_store::record(
        ctx,
        ca,
        LedgerEntry::of(&issued.certificate, None, ring.signing_index),
        &ledger_store::rules_of_ca(ctx, ca),
        now,
    )
    .await?;
    // A certificate a revocation covers as it is recorded (one whose
    // issuedBefore is still to come) is not handed out: a relying party
    // that reads no CRL would take it, as for a ClusterCertificate or a pod.
    if recorded != Recorded::Live {
        let message = format!(
            "a CertificateRevocation of CertificateAuthority {ca} covers this certificate (serial {}); it is not handed out",
            issued.certificate.serial
        );
        return fail(csr, ctx, Reason::Revoked, message, now).await;
    }
    let pem = k8s_openapi::ByteString(issued.certificate.to_pem().into_bytes());
    patch_status(
        csr,
        ctx,
        serde_json::json!({"status": {"certificate": pem}}),
    )
    .await?;
    ctx.metrics.issued("CertificateSigningRequest");
    info!(csr = %csr.name_any(), signer = %csr.spec.signer_name, serial = %issued.certificate.serial, "signed");
    Ok(())
}

/// A merge patch of the CSR's status subresource.
async fn patch_status(
    csr: &CertificateSigningRequest,
    ctx: &Context,
    patch: serde_json::Value,
) -> Result<(), Error> {
    Api::<CertificateSigningRequest>::all(ctx.client.clone())
        .patch_status(
            &csr.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await?;
    Ok(())
}
