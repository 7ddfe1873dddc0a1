//! What a requester may do, asked of the API server with
//! SubjectAccessReviews: the CSR and PodCertificateRequest controllers
//! ask which of a CA's CertificatePolicies a requester may `use`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::api::PostParams;
use kube::{Api, ResourceExt};

use crate::api::CertificatePolicy;
use crate::operator::{Context, Error};

/// Who asks: as a CSR records its requester, or a pod's ServiceAccount.
#[derive(Clone, Debug, Default)]
pub struct Requester {
    pub user: Option<String>,
    pub groups: Option<Vec<String>>,
    pub uid: Option<String>,
    pub extra: Option<BTreeMap<String, Vec<String>>>,
}

/// The names of the policies (of those governing a CA) that `requester`
/// may `use`.
pub async fn usable_policies(
    requester: &Requester,
    ctx: &Context,
    governing: &[Arc<CertificatePolicy>],
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
        if may(requester, ctx, attributes).await? {
            usable.insert(name);
        }
    }
    Ok(usable)
}

/// Whether `requester` may do what `attributes` say.
pub async fn may(
    requester: &Requester,
    ctx: &Context,
    attributes: ResourceAttributes,
) -> Result<bool, Error> {
    let api: Api<SubjectAccessReview> = Api::all(ctx.client.clone());
    let review = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: requester.user.clone(),
            groups: requester.groups.clone(),
            uid: requester.uid.clone(),
            extra: requester.extra.clone(),
            resource_attributes: Some(attributes),
            ..Default::default()
        },
        ..Default::default()
    };
    let answer = api.create(&PostParams::default(), &review).await?;
    Ok(answer.status.is_some_and(|s| s.allowed))
}
