//! The pass's reads: the answers to the questions `decide` asks, from the
//! API server (Nodes, SubjectAccessReviews) and the CA's key Secret.

use std::sync::Arc;

use k8s_openapi::api::authorization::v1::ResourceAttributes;
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use k8s_openapi::api::core::v1::Node;
use kube::api::ListParams;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, ResourceExt};

use super::decide::{Answers, Question};
use crate::core::csr::kubelet_serving::OtherNodes;
use crate::operator::runtime::access_review::{self, Requester};
use crate::operator::store::authority_cache::{self, KeyRing};
use crate::operator::{Context, Error};

/// Answers `question` into `answers`; the CA's keys, when asked for, are
/// kept in `ring` for signing.
pub async fn answer(
    question: &Question,
    csr: &CertificateSigningRequest,
    ctx: &Context,
    answers: &mut Answers,
    ring: &mut Option<Arc<KeyRing>>,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(), Error> {
    match question {
        Question::OtherNodes { node } => {
            answers.other_nodes = Some(other_nodes(node, ctx).await?);
        }
        Question::AccessCheck(subresources) => {
            answers.allowed_subresource = Some(allowed_subresource(csr, ctx, subresources).await?);
        }
        Question::UsablePolicies { ca } => {
            let all = ctx.policies.state();
            let governing = crate::core::policy::governing(&all, ca);
            answers.usable_policies =
                Some(access_review::usable_policies(&requester(csr), ctx, &governing).await?);
        }
        Question::SigningKey { ca } => {
            *ring = match ctx.cas.get(&ObjectRef::new(ca)) {
                Some(ca) => match authority_cache::keyring(ctx, &ca, now).await? {
                    authority_cache::Keys::Ready(ring) => Some(ring),
                    authority_cache::Keys::Unusable(_) => None,
                },
                None => None,
            };
            answers.signing_key_ready = Some(ring.is_some());
        }
    }
    Ok(())
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
        match crate::list_pages::next(&params, &page.metadata) {
            Some(next) => params = next,
            None => return Ok(others),
        }
    }
}

/// The first of `subresources` of certificatesigningrequests the CSR's
/// requester may create.
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
        if access_review::may(&requester(csr), ctx, attributes).await? {
            return Ok(Some(sub));
        }
    }
    Ok(None)
}

/// The CSR's requester (user, groups, uid and extra, as the CSR records them).
fn requester(csr: &CertificateSigningRequest) -> Requester {
    Requester {
        user: csr.spec.username.clone(),
        groups: csr.spec.groups.clone(),
        uid: csr.spec.uid.clone(),
        extra: csr.spec.extra.clone(),
    }
}
