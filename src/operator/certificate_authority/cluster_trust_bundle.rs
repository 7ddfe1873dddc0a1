//! A CA's ClusterTrustBundle, for the pods that mount its signer's trust
//! (`clusterTrustBundle` projected volumes by `signerName`): when the CA
//! opts in (`spec.podCertificates`), one bundle named
//! `certop.dev:<ca>:trust` with `spec.signerName: certop.dev/<ca>`,
//! holding every CA certificate trusted now (both during a rotation's
//! overlap). It is created only where no bundle of that name exists, and
//! updated or deleted only when certop's label and annotation say it made
//! it. The ConfigMap trust bundles (`trust_bundle`) are kept as they are.

use std::collections::BTreeMap;

use k8s_openapi::api::certificates::v1beta1::{ClusterTrustBundle, ClusterTrustBundleSpec};
use kube::api::{DeleteParams, ObjectMeta, PostParams};
use kube::{Api, ResourceExt};

use crate::api::{CertificateAuthority, meta};
use crate::core::csr::SIGNER_PREFIX;
use crate::operator::reason::Reason;
use crate::operator::{Context, Error};

/// The one bundle of a CA's signer: the signer name with `:` for `/`, as
/// the API requires, and a suffix.
pub fn bundle_name(ca: &str) -> String {
    format!("{}:{ca}:trust", SIGNER_PREFIX.trim_end_matches('/'))
}

/// The API's limit on a ClusterTrustBundle's name.
const MAX_NAME: usize = 253;

/// Whether certop made this bundle for this CA.
fn is_ours(bundle: &ClusterTrustBundle, ca: &str) -> bool {
    bundle.labels().get(meta::MANAGED_BY).map(String::as_str) == Some(meta::MANAGED_BY_VALUE)
        && bundle
            .annotations()
            .get(meta::CERTIFICATE_AUTHORITY)
            .map(String::as_str)
            == Some(ca)
}

/// Keeps the CA's bundle as `trusted_pem` says (or removes it when the CA
/// no longer opts in); what stood in the way, for the CA's
/// `PodCertificates` condition.
pub async fn sync(
    ca: &CertificateAuthority,
    ctx: &Context,
    trusted_pem: &str,
) -> Result<Option<(Reason, String)>, Error> {
    let name = ca.name_any();
    let wanted = ca.spec.pod_certificates.is_some();
    if !ctx.pod_certificate_api.trust_bundles {
        return Ok(wanted
            .then(|| ctx.pod_certificate_api.missing())
            .flatten()
            .map(|m| (Reason::PodCertificateAPIMissing, m)));
    }
    let bundle = bundle_name(&name);
    if bundle.len() > MAX_NAME {
        return Ok(wanted.then(|| {
            (
                Reason::InvalidSpec,
                format!(
                    "the CA name is too long for its ClusterTrustBundle name {bundle:?} (at most {MAX_NAME} characters): use a shorter CertificateAuthority name"
                ),
            )
        }));
    }
    let api: Api<ClusterTrustBundle> = Api::all(ctx.client.clone());
    let existing = api.get_opt(&bundle).await?;
    match (existing, wanted) {
        (None, false) => {}
        (Some(b), false) => {
            if is_ours(&b, &name) {
                remove(&api, &bundle).await?;
            }
        }
        (Some(b), true) if !is_ours(&b, &name) => {
            return Ok(Some((
                Reason::ClusterTrustBundleConflict,
                format!(
                    "ClusterTrustBundle {bundle} exists and certop did not create it; certop leaves it alone: delete it to let certop publish the CA there"
                ),
            )));
        }
        (Some(mut b), true) => {
            if b.spec.trust_bundle != trusted_pem {
                b.spec.trust_bundle = trusted_pem.to_string();
                api.replace(&bundle, &PostParams::default(), &b).await?;
            }
        }
        (None, true) => {
            let b = ClusterTrustBundle {
                metadata: ObjectMeta {
                    name: Some(bundle.clone()),
                    labels: Some(BTreeMap::from([(
                        meta::MANAGED_BY.to_string(),
                        meta::MANAGED_BY_VALUE.to_string(),
                    )])),
                    annotations: Some(BTreeMap::from([(
                        meta::CERTIFICATE_AUTHORITY.to_string(),
                        name.clone(),
                    )])),
                    ..Default::default()
                },
                spec: ClusterTrustBundleSpec {
                    signer_name: Some(format!("{SIGNER_PREFIX}{name}")),
                    trust_bundle: trusted_pem.to_string(),
                },
            };
            match api.create(&PostParams::default(), &b).await {
                Ok(_) => {}
                // Another writer made one: the next pass looks at it.
                Err(kube::Error::Api(e)) if e.code == 409 => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(None)
}

/// The CA is deleted: its bundle goes, if certop made it.
pub async fn remove_ours(ctx: &Context, ca: &str) -> Result<(), Error> {
    if !ctx.pod_certificate_api.trust_bundles {
        return Ok(());
    }
    let api: Api<ClusterTrustBundle> = Api::all(ctx.client.clone());
    let bundle = bundle_name(ca);
    if bundle.len() > MAX_NAME {
        return Ok(());
    }
    if let Some(b) = api.get_opt(&bundle).await?
        && is_ours(&b, ca)
    {
        remove(&api, &bundle).await?;
    }
    Ok(())
}

async fn remove(api: &Api<ClusterTrustBundle>, name: &str) -> Result<(), Error> {
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}
