//! The PodCertificateRequest controller: certop signs, for each
//! CertificateAuthority that opted in (`spec.podCertificates`), the
//! requests of its signer `certop.dev/<ca>`, the certificate a kubelet
//! writes into a pod's `podCertificate` volume.
//!
//! A pass decides (`decide`, pure) what the request needs, answering the
//! questions the decision asks (which CertificatePolicies the pod's
//! ServiceAccount may use, the CA's key), then makes the one write it
//! names (`write`): the chain and its times with the `Issued` condition in
//! one status write, or `Denied` / `Failed` with a reason. A request's
//! answer is final, so a pass whose write fails is simply decided again,
//! and signs again under the same serial (`write::issue`).

mod decide;
#[cfg(test)]
mod scenarios;
mod write;

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use k8s_openapi::api::certificates::v1beta1::PodCertificateRequest;
use kube::ResourceExt;
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use tracing::warn;

pub use decide::{Answers, CA_WAIT_LIMIT, Decision, Observed, Question, SigningKey, decide};

use crate::operator::runtime::access_review::{self, Requester};
use crate::operator::runtime::finalize::instrumented;
use crate::operator::store::authority_cache::{self, KeyRing};
use crate::operator::{Context, Error};

const CONTROLLER: &str = "podcertificaterequest";

/// How often a request waits for its CA to be able to sign.
const CA_WAIT: Duration = Duration::from_secs(10);

/// Passes at once, at the least (`--concurrency` when higher). A pass
/// mostly waits: for its ledger record, then its status write. Many
/// waiting at once is what lets the ledger write their records in groups
/// (`ledger_store::record`), a shard write per group instead of one per
/// request, and what keeps the API server busy with the status writes; a
/// waiting pass holds little more than its request. Under a backlog a
/// pass spends about `GATHER` (1.5 s) in the ledger, so the rate is at
/// most about this many / 1.6 s: 640 a second, above what the API server
/// takes in status writes on the project's machine (420–620 a second).
pub const CONCURRENCY: u16 = 1024;

/// Status writes in flight at most, of all those passes: kube-apiserver's
/// flow control gives one client's flow a bounded share of its seats and
/// queues, and refuses the rest with 429 (each a request, retried); 512
/// writes at once met 646 refusals in a 10,000-request backlog.
pub const STATUS_WRITES_IN_FLIGHT: usize = 128;

/// Every question `decide` can ask, once each, and the decision.
const MOST_QUESTIONS: usize = 2;

pub async fn reconcile(
    request: Arc<PodCertificateRequest>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let name = format!(
        "{}/{}",
        request.namespace().unwrap_or_default(),
        request.name_any()
    );
    instrumented(CONTROLLER, &name, &ctx, pass(&request, &ctx)).await
}

pub fn error_policy(
    request: Arc<PodCertificateRequest>,
    error: &Error,
    ctx: Arc<Context>,
) -> Action {
    crate::operator::runtime::backoff::retry(CONTROLLER, &request.name_any(), error, &ctx)
}

async fn pass(request: &PodCertificateRequest, ctx: &Context) -> Result<Action, Error> {
    let now = Utc::now();
    let Some(ca_name) = decide::signer_ca(&request.spec.signer_name) else {
        return Ok(Action::await_change());
    };
    let ca = ctx.cas.get(&ObjectRef::new(ca_name));
    if ca
        .as_ref()
        .is_none_or(|ca| ca.spec.pod_certificates.is_none())
    {
        // Not opted in: never read further, never written.
        return Ok(Action::await_change());
    }
    let key = crate::core::pod_certificate::public_key(
        &request.spec.stub_pkc_s10_request.0,
        request
            .spec
            .pkix_public_key
            .as_ref()
            .map(|k| k.0.as_slice()),
    );
    let policies = ctx.policies.state();
    let api_server_ips = ctx.api_server_ips();
    let mut answers = Answers::default();
    let mut ring = None;
    let mut decision = Decision::Nothing;
    // Each answer fills the field its question asks for, so no question
    // comes twice and the loop ends; the bound only makes that visible.
    for _ in 0..=MOST_QUESTIONS {
        decision = decide(&Observed {
            request,
            ca: ca.as_deref(),
            key: &key,
            policies: &policies,
            api_server_ips: &api_server_ips,
            answers: &answers,
            now,
        });
        let Decision::Ask(question) = &decision else {
            break;
        };
        answer(question, request, ctx, &mut answers, &mut ring, now).await?;
    }
    match decision {
        Decision::Nothing => {}
        Decision::Ask(question) => {
            warn!(request = %request.name_any(), ?question, "a pod certificate decision still asks after every answer");
            return Ok(Action::requeue(CA_WAIT));
        }
        Decision::Deny { reason, message } => {
            write::conclude(request, ctx, "Denied", reason, message, now).await?;
        }
        Decision::Fail { reason, message } => {
            write::conclude(request, ctx, "Failed", reason, message, now).await?;
        }
        Decision::WaitForCa => return Ok(Action::requeue(CA_WAIT)),
        Decision::Issue { ca, template, spki } => match &ring {
            Some(ring) => write::issue(request, ctx, &ca, ring, &template, &spki, now).await?,
            None => return Ok(Action::requeue(CA_WAIT)),
        },
    }
    Ok(Action::await_change())
}

/// Answers `question` into `answers`; the CA's keys, when asked for, are
/// kept in `ring` for signing.
async fn answer(
    question: &Question,
    request: &PodCertificateRequest,
    ctx: &Context,
    answers: &mut Answers,
    ring: &mut Option<Arc<KeyRing>>,
    now: chrono::DateTime<Utc>,
) -> Result<(), Error> {
    match question {
        Question::UsablePolicies { ca } => {
            let all = ctx.policies.state();
            let governing = crate::core::policy::governing(&all, ca);
            let identity = decide::identity(request);
            let requester = Requester {
                user: Some(identity.service_account_user()),
                groups: Some(identity.service_account_groups()),
                uid: Some(request.spec.service_account_uid.clone()),
                extra: None,
            };
            answers.usable_policies =
                Some(access_review::usable_policies(&requester, ctx, &governing).await?);
        }
        Question::SigningKey { ca } => {
            let found = ctx.cas.get(&ObjectRef::new(ca));
            *ring = match &found {
                Some(ca) => match authority_cache::keyring(ctx, ca, now).await? {
                    authority_cache::Keys::Ready(ring) => Some(ring),
                    authority_cache::Keys::Unusable(_) => None,
                },
                None => None,
            };
            answers.signing = Some(match (ring.as_ref(), found) {
                (Some(ring), Some(ca)) => Some(SigningKey {
                    not_after: ring.signing.certificate().not_after,
                    crl_url: ring.crl_url(&ca, ctx),
                }),
                _ => None,
            });
        }
    }
    Ok(())
}
