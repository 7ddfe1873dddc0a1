//! A CA's ClusterTrustBundle, for the pods that mount its signer's trust
//! (`clusterTrustBundle` projected volumes by `signerName`): when the CA
//! opts in (`spec.podCertificates`), one bundle named
//! `certop.dev:<ca>:trust` with `spec.signerName: certop.dev/<ca>`,
//! holding every CA certificate trusted now (both during a rotation's
//! overlap). It is created only where no bundle of that name exists, and
//! updated or deleted only when certop's label and annotation say it made
//! it, under the uid and resourceVersion of the bundle so judged: one
//! deleted and made again by someone else in between (same name) is never
//! overwritten or deleted. The ConfigMap trust bundles (`trust_bundle`)
//! are kept as they are.

use std::collections::BTreeMap;

use k8s_openapi::api::certificates::v1beta1::{ClusterTrustBundle, ClusterTrustBundleSpec};
use kube::api::{DeleteParams, ObjectMeta, PostParams, Preconditions};
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
                remove(&api, &b).await?;
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
        (Some(b), true) => update(&api, b, trusted_pem).await?,
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
        remove(&api, &b).await?;
    }
    Ok(())
}

/// Writes `trusted_pem` into `bundle`, certop's as read: the write carries
/// its uid and resourceVersion, so a bundle replaced since (someone
/// else's now) is refused (409) and left as it is; the next pass looks again.
async fn update(
    api: &Api<ClusterTrustBundle>,
    mut bundle: ClusterTrustBundle,
    trusted_pem: &str,
) -> Result<(), Error> {
    if bundle.spec.trust_bundle == trusted_pem {
        return Ok(());
    }
    bundle.spec.trust_bundle = trusted_pem.to_string();
    match api
        .replace(&bundle.name_any(), &PostParams::default(), &bundle)
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if matches!(e.code, 404 | 409) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Deletes `bundle`, certop's as read, under its uid and resourceVersion:
/// one replaced since, by someone else under the same name, is left alone
/// (kube-apiserver refuses the precondition with 409).
async fn remove(api: &Api<ClusterTrustBundle>, bundle: &ClusterTrustBundle) -> Result<(), Error> {
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: bundle.uid(),
            resource_version: bundle.resource_version(),
        }),
        ..DeleteParams::default()
    };
    match api.delete(&bundle.name_any(), &params).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if matches!(e.code, 404 | 409) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::operator::testing::fake_api::FakeApi;
    use crate::operator::testing::runtime;

    const PATH: &str = "/apis/certificates.k8s.io/v1beta1/clustertrustbundles/certop.dev:ca:trust";

    fn bundle(uid: &str, ours: bool, pem: &str) -> serde_json::Value {
        let mut b = json!({"apiVersion": "certificates.k8s.io/v1beta1", "kind": "ClusterTrustBundle",
            "metadata": {"name": "certop.dev:ca:trust", "uid": uid},
            "spec": {"signerName": "certop.dev/ca", "trustBundle": pem}});
        if ours {
            b["metadata"]["labels"] = json!({meta::MANAGED_BY: meta::MANAGED_BY_VALUE});
            b["metadata"]["annotations"] = json!({meta::CERTIFICATE_AUTHORITY: "ca"});
        }
        b
    }

    /// certop read its bundle; before it writes, someone deletes it and
    /// makes their own under the same name (as they may once certop's is
    /// gone). Neither certop's delete nor its update touches theirs; with
    /// nothing in between, both do their work.
    #[test]
    fn a_bundle_replaced_by_someone_else_after_certop_read_its_own_is_never_deleted_or_overwritten()
    {
        runtime().block_on(async {
            for replaced in [true, false] {
                for write in ["delete", "update"] {
                    let case = format!("{write}, replaced: {replaced}");
                    let fake = FakeApi::new(&[]);
                    fake.put(PATH, bundle("ours", true, "old"));
                    let api: Api<ClusterTrustBundle> = Api::all(fake.client());
                    let read = api.get(&bundle_name("ca")).await.expect("read");
                    assert!(is_ours(&read, "ca"));
                    if replaced {
                        fake.remove(PATH);
                        fake.put(PATH, bundle("theirs", false, "theirs"));
                    }
                    match write {
                        "delete" => remove(&api, &read).await.expect("delete"),
                        _ => update(&api, read, "new").await.expect("update"),
                    }
                    let now: Option<ClusterTrustBundle> = fake.get(PATH);
                    let left = now.map(|b| (b.uid(), b.spec.trust_bundle));
                    let want = match (replaced, write) {
                        (true, _) => Some((Some("theirs".into()), "theirs".into())),
                        (false, "delete") => None,
                        (false, _) => Some((Some("ours".into()), "new".into())),
                    };
                    assert_eq!(left, want, "{case}");
                }
            }
        });
    }
}
