//! The CertificateSigningRequest controller: certop signs approved CSRs
//! for its signers `certop.dev/<ca>`, and, when configured, approves
//! (after checking the node's identity and names) and signs kubelet CSRs.
//!
//! A pass decides (`decide`, pure) what the CSR needs, answering the
//! questions the decision asks (`answer`: Nodes, SubjectAccessReviews, the
//! CA's key), then makes the one write it names (`write`). A CSR's writes
//! are final (a condition, or the certificate), so a pass whose write
//! fails is simply decided again.

mod answer;
mod decide;
#[cfg(test)]
mod scenarios;
mod write;

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use kube::ResourceExt;
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use tracing::{info, warn};

pub use decide::{Answers, Decision, Observed, Question, decide};

use crate::core::csr::kubelet_serving::ServingNameRules;
use crate::operator::reason::Reason;
use crate::operator::runtime::finalize::instrumented;
use crate::operator::{Context, Error};

const CONTROLLER: &str = "certificatesigningrequest";

/// How often a CSR waits for its CA to be able to sign.
const CA_WAIT: Duration = Duration::from_secs(10);

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

pub async fn reconcile(
    csr: Arc<CertificateSigningRequest>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    instrumented(CONTROLLER, &csr.name_any(), &ctx, pass(&csr, &ctx)).await
}

pub fn error_policy(
    csr: Arc<CertificateSigningRequest>,
    error: &Error,
    ctx: Arc<Context>,
) -> Action {
    crate::operator::runtime::backoff::retry(CONTROLLER, &csr.name_any(), error, &ctx)
}

/// Every question `decide` can ask, once each, and the decision.
const MOST_QUESTIONS: usize = 4;

async fn pass(csr: &CertificateSigningRequest, ctx: &Context) -> Result<Action, Error> {
    let now = Utc::now();
    let Some(ca_name) = decide::signer_ca(&csr.spec.signer_name, &ctx.csr_policy) else {
        return Ok(Action::await_change());
    };
    let ca = ctx.cas.get(&ObjectRef::new(ca_name));
    let content = crate::core::csr::parse(&csr.spec.request.0);
    let policies = ctx.policies.state();
    let api_server_ips = ctx.api_server_ips();
    let mut answers = Answers::default();
    let mut ring = None;
    let mut decision = Decision::Nothing;
    // Each answer fills the field its question asks for, so no question
    // comes twice and the loop ends; the bound only makes that visible.
    for _ in 0..=MOST_QUESTIONS {
        decision = decide(&Observed {
            csr,
            content: &content,
            policy: &ctx.csr_policy,
            ca: ca.as_deref(),
            policies: &policies,
            api_server_ips: &api_server_ips,
            answers: &answers,
        });
        let Decision::Ask(question) = &decision else {
            break;
        };
        answer::answer(question, csr, ctx, &mut answers, &mut ring, now).await?;
    }
    match decision {
        Decision::Nothing => {}
        Decision::Ask(question) => {
            warn!(csr = %csr.name_any(), ?question, "a CSR decision still asks after every answer");
            return Ok(Action::requeue(CA_WAIT));
        }
        Decision::Approve(message) => write::review(csr, ctx, true, message, now).await?,
        Decision::Deny(message) => write::review(csr, ctx, false, message, now).await?,
        Decision::Leave(message) => {
            info!(csr = %csr.name_any(), %message, "kubelet CSR left pending");
        }
        Decision::LeaveForPerson(message) => {
            info!(csr = %csr.name_any(), %message, "kubelet CSR left for a person");
            let reason = Reason::PendingApproval.as_str();
            ctx.event(csr, true, reason, "Review", message).await;
        }
        Decision::Fail { reason, message } => write::fail(csr, ctx, reason, message, now).await?,
        Decision::WaitForCa => return Ok(Action::requeue(CA_WAIT)),
        Decision::Sign { ca, template } => match &ring {
            Some(ring) => write::sign(csr, ctx, &ca, ring, &template, now).await?,
            None => return Ok(Action::requeue(CA_WAIT)),
        },
    }
    Ok(Action::await_change())
}
