//! Kubernetes CertificateSigningRequests: certop signs approved CSRs for its
//! signers `certop.dev/<ca>`, and, when configured, approves (after
//! checking the node's identity and names) and signs kubelet CSRs.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestCondition,
};
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, ResourceExt};
use tracing::{info, warn};

use super::conditions::to_timestamp;
use super::{Context, Error, ledger_store};
use crate::csr::kubelet_serving::{OtherNodes, ServingNameRules};
use crate::csr::{self, KUBELET_CLIENT_SIGNER, KUBELET_SERVING_SIGNER, Review, SIGNER_PREFIX};
use crate::ledger::LedgerEntry;
use crate::pki::issue_for_request;

/// What the operator is configured to do with CSRs.
#[derive(Clone, Debug)]
pub struct CsrPolicy {
    /// Longest certificate signed for a CSR; `expirationSeconds` may ask for less.
    pub max_lifetime: chrono::Duration,
    /// The CertificateAuthority that signs kubelet CSRs; None: kubelet CSRs are not certop's.
    pub kubelet_ca: Option<String>,
    /// Approve kubelet CSRs that pass the identity checks (and deny the others).
    pub approve_kubelets: bool,
    /// Which names a kubelet serving certificate may hold without a person.
    pub kubelet_serving: ServingNameRules,
}

fn condition(csr: &CertificateSigningRequest, type_: &str) -> bool {
    csr.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == type_ && c.status == "True"))
}

/// The CA that signs for this signer name, if certop serves it.
fn signer_ca<'a>(signer: &'a str, policy: &'a CsrPolicy) -> Option<&'a str> {
    match signer.strip_prefix(SIGNER_PREFIX) {
        Some(ca) => Some(ca),
        None if signer == KUBELET_CLIENT_SIGNER || signer == KUBELET_SERVING_SIGNER => {
            policy.kubelet_ca.as_deref()
        }
        None => None,
    }
}

pub async fn reconcile(
    csr: Arc<CertificateSigningRequest>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let started = std::time::Instant::now();
    let result = handle(&csr, &ctx).await;
    ctx.metrics
        .reconciled("certificatesigningrequest", started.elapsed().as_secs_f64());
    if result.is_ok() {
        ctx.backoff
            .reset(&format!("certificatesigningrequest/{}", csr.name_any()));
    }
    result
}

pub fn error_policy(
    csr: Arc<CertificateSigningRequest>,
    error: &Error,
    ctx: Arc<Context>,
) -> Action {
    super::backoff::retry("certificatesigningrequest", &csr.name_any(), error, &ctx)
}

async fn handle(csr: &CertificateSigningRequest, ctx: &Context) -> Result<Action, Error> {
    let done = csr.status.as_ref().is_some_and(|s| s.certificate.is_some())
        || condition(csr, "Denied")
        || condition(csr, "Failed");
    let signer = csr.spec.signer_name.as_str();
    let Some(ca_name) = signer_ca(signer, &ctx.csr_policy) else {
        return Ok(Action::await_change());
    };
    if done {
        return Ok(Action::await_change());
    }
    let usages = csr.spec.usages.clone().unwrap_or_default();
    let content = csr::parse(&csr.spec.request.0);
    if !condition(csr, "Approved") {
        let kubelet = signer == KUBELET_CLIENT_SIGNER || signer == KUBELET_SERVING_SIGNER;
        if kubelet && ctx.csr_policy.approve_kubelets {
            let review = match &content {
                Err(e) => Review::Deny(e.clone()),
                Ok(c) => review_kubelet(csr, c, &usages, ctx).await?,
            };
            decide(csr, ctx, review).await?;
        }
        return Ok(Action::await_change());
    }
    let content = match content {
        Ok(c) => c,
        Err(e) => return fail(csr, ctx, "BadRequest", e).await,
    };
    if let Err(e) = csr::signer_rules(signer, &content, &usages) {
        return fail(csr, ctx, "SignerRules", e).await;
    }
    let Some(ca) = ctx.cas.get(&ObjectRef::new(ca_name)) else {
        return fail(
            csr,
            ctx,
            "SignerUnknown",
            format!("CertificateAuthority {ca_name} does not exist"),
        )
        .await;
    };
    let now = Utc::now();
    let ring = match super::authority_cache::keyring(ctx, &ca, now).await? {
        Ok(r) => r,
        // The CA may be getting ready: try again rather than fail for good.
        Err(_) => return Ok(Action::requeue(Duration::from_secs(10))),
    };
    let lifetime = csr::lifetime(csr.spec.expiration_seconds, ctx.csr_policy.max_lifetime);
    let template = match csr::template(&content, &usages, lifetime) {
        Ok(t) => t,
        Err(e) => return fail(csr, ctx, "UnsupportedRequest", e).await,
    };
    // certop's own signers obey the same policies as ClusterCertificates,
    // for the CSR's requester; the kubelet signers have their own rules (a
    // node's identity, names checked against its Node).
    let template = if signer.starts_with(SIGNER_PREFIX) {
        let all = ctx.policies.state();
        let usable = usable_policies(csr, ctx, &crate::policy::governing(&all, ca_name)).await?;
        match crate::policy::authorize_signing_request(
            crate::policy::Authority {
                name: ca_name,
                policy: ca.spec.policy.as_ref(),
                require_policy: ca.spec.require_policy.unwrap_or(false),
                api_server_ips: &ctx.api_server_ips(),
            },
            &all,
            &usable,
            csr.spec.username.as_deref().unwrap_or_default(),
            &template,
        ) {
            Ok(t) => t,
            Err(e) => return fail(csr, ctx, "PolicyViolation", e.to_string()).await,
        }
    } else {
        template
    };
    let issued = match issue_for_request(&template, &content.der, &ring.signing, now) {
        Ok(i) => i,
        Err(e) => return fail(csr, ctx, "SigningFailed", e.to_string()).await,
    };
    ledger_store::record(
        ctx,
        ca_name,
        LedgerEntry::of(&issued.certificate, None, ring.signing_index),
        &ledger_store::rules_of_ca(ctx, ca_name),
        now,
    )
    .await?;
    let patch = serde_json::json!({"status": {"certificate": k8s_openapi::ByteString(issued.certificate.to_pem().into_bytes())}});
    let api: Api<CertificateSigningRequest> = Api::all(ctx.client.clone());
    api.patch_status(
        &csr.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await?;
    ctx.metrics.issued("CertificateSigningRequest");
    info!(csr = %csr.name_any(), signer, serial = %issued.certificate.serial, "signed");
    Ok(Action::await_change())
}

async fn review_kubelet(
    csr: &CertificateSigningRequest,
    content: &csr::CsrContent,
    usages: &[String],
    ctx: &Context,
) -> Result<Review, Error> {
    let username = csr.spec.username.clone().unwrap_or_default();
    let groups = csr.spec.groups.clone().unwrap_or_default();
    if csr.spec.signer_name == KUBELET_CLIENT_SIGNER {
        return Ok(csr::review_kubelet_client(
            content, &username, &groups, usages,
        ));
    }
    let others = match username.strip_prefix("system:node:") {
        Some(node) => other_nodes(node, ctx).await?,
        None => OtherNodes::default(),
    };
    Ok(csr::review_kubelet_serving(
        content,
        &username,
        &groups,
        usages,
        &ctx.csr_policy.kubelet_serving,
        &others,
    ))
}

/// Every Node's name and addresses but `requester`'s, listed in pages so a
/// large cluster's Nodes are never all in memory at once (only their names
/// and addresses are kept). One list per kubelet serving CSR reviewed: a
/// node asks for one at start and at each renewal.
async fn other_nodes(requester: &str, ctx: &Context) -> Result<OtherNodes, Error> {
    let api: Api<Node> = Api::all(ctx.client.clone());
    let mut others = OtherNodes::new(requester);
    let mut params = ListParams::default().limit(500);
    loop {
        let page = api.list(&params).await?;
        for node in &page.items {
            let addresses = node
                .status
                .as_ref()
                .and_then(|s| s.addresses.as_deref())
                .unwrap_or_default();
            others.add(
                &node.name_any(),
                addresses
                    .iter()
                    .map(|a| (a.type_.as_str(), a.address.as_str())),
            );
        }
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => params = params.continue_token(&token),
            None => return Ok(others),
        }
    }
}

fn new_condition(type_: &str, reason: &str, message: String) -> CertificateSigningRequestCondition {
    let now = Time(to_timestamp(Utc::now()));
    CertificateSigningRequestCondition {
        type_: type_.into(),
        status: "True".into(),
        reason: Some(reason.into()),
        message: Some(message),
        last_update_time: Some(now.clone()),
        last_transition_time: Some(now),
    }
}

/// The first of `subresources` of certificatesigningrequests the CSR's
/// requester may create, asked of the API server (SubjectAccessReview with
/// the requester's user, groups, uid and extra, as the CSR records them).
async fn allowed_subresource(
    csr: &CertificateSigningRequest,
    ctx: &Context,
    subresources: &[&'static str],
) -> Result<Option<&'static str>, Error> {
    for sub in subresources {
        let attributes = ResourceAttributes {
            group: Some("certificates.k8s.io".into()),
            resource: Some("certificatesigningrequests".into()),
            subresource: Some(sub.to_string()),
            verb: Some("create".into()),
            ..Default::default()
        };
        if requester_may(csr, ctx, attributes).await? {
            return Ok(Some(sub));
        }
    }
    Ok(None)
}

/// Whether the CSR's requester (user, groups, uid and extra, as the CSR
/// records them) may do what `attributes` say, asked of the API server.
async fn requester_may(
    csr: &CertificateSigningRequest,
    ctx: &Context,
    attributes: ResourceAttributes,
) -> Result<bool, Error> {
    let api: Api<SubjectAccessReview> = Api::all(ctx.client.clone());
    let review = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: csr.spec.username.clone(),
            groups: csr.spec.groups.clone(),
            uid: csr.spec.uid.clone(),
            extra: csr.spec.extra.clone(),
            resource_attributes: Some(attributes),
            ..Default::default()
        },
        ..Default::default()
    };
    let answer = api.create(&PostParams::default(), &review).await?;
    Ok(answer.status.is_some_and(|s| s.allowed))
}

/// The names of the policies (of those governing the CA) that the CSR's
/// requester may `use`.
async fn usable_policies(
    csr: &CertificateSigningRequest,
    ctx: &Context,
    governing: &[Arc<crate::api::CertificatePolicy>],
) -> Result<BTreeSet<String>, Error> {
    let mut usable = BTreeSet::new();
    for policy in governing {
        let name = policy.name_any();
        let attributes = ResourceAttributes {
            group: Some(crate::api::GROUP.into()),
            resource: Some("certificatepolicies".into()),
            name: Some(name.clone()),
            verb: Some("use".into()),
            ..Default::default()
        };
        if requester_may(csr, ctx, attributes).await? {
            usable.insert(name);
        }
    }
    Ok(usable)
}

/// Approves or denies through the approval subresource, as
/// `kubectl certificate approve|deny` would; a CSR left pending gets no
/// write, so it is not reviewed again until it changes.
async fn decide(
    csr: &CertificateSigningRequest,
    ctx: &Context,
    review: Review,
) -> Result<(), Error> {
    let review = match review {
        Review::AccessCheck(subresources) => {
            match allowed_subresource(csr, ctx, &subresources).await? {
                Some(sub) => Review::Approve(format!(
                    "{} may create certificatesigningrequests/{sub} (SubjectAccessReview)",
                    csr.spec.username.as_deref().unwrap_or_default()
                )),
                None => Review::Leave(format!(
                    "{} may create none of certificatesigningrequests/{}; left for another approver",
                    csr.spec.username.as_deref().unwrap_or_default(),
                    subresources.join(", ")
                )),
            }
        }
        other => other,
    };
    let (type_, reason, message) = match review {
        Review::Approve(m) => ("Approved", "CertopKubeletApprove", m),
        Review::Deny(m) => ("Denied", "CertopKubeletDeny", m),
        Review::Leave(m) => {
            info!(csr = %csr.name_any(), %m, "kubelet CSR left pending");
            return Ok(());
        }
        Review::Pending(m) => {
            let name = csr.name_any();
            let note = format!(
                "{m}. If every name is this node's, approve it by hand: kubectl certificate approve {name}"
            );
            info!(csr = %name, message = %note, "kubelet CSR left for a person");
            ctx.event(csr, true, "PendingApproval", "Review", note)
                .await;
            return Ok(());
        }
        Review::AccessCheck(_) => return Ok(()),
    };
    info!(csr = %csr.name_any(), decision = type_, %message, "kubelet CSR reviewed");
    let patch =
        serde_json::json!({"status": {"conditions": [new_condition(type_, reason, message)]}});
    let api: Api<CertificateSigningRequest> = Api::all(ctx.client.clone());
    api.patch_subresource(
        "approval",
        &csr.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await?;
    Ok(())
}

/// Marks a CSR Failed with a reason; the Approved condition stays.
async fn fail(
    csr: &CertificateSigningRequest,
    ctx: &Context,
    reason: &str,
    message: String,
) -> Result<Action, Error> {
    warn!(csr = %csr.name_any(), reason, %message, "CSR failed");
    let mut conditions = csr
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    conditions.push(new_condition("Failed", reason, message));
    let patch = serde_json::json!({"status": {"conditions": conditions}});
    let api: Api<CertificateSigningRequest> = Api::all(ctx.client.clone());
    api.patch_status(
        &csr.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await?;
    ctx.metrics.failed(reason);
    Ok(Action::await_change())
}
