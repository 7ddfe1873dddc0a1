//! A revocation recorded on a ClusterCertificate: the annotation that tells
//! its controller the certificate its Secret holds is revoked and is to be
//! replaced with a new key, and tells its status which revocation it was.

use kube::Api;
use kube::api::{Patch, PatchParams};

use crate::api::{ClusterCertificate, RevocationRecord, meta};
use crate::operator::{Context, Error};

/// Merge-patches the record onto ClusterCertificate `name` (others'
/// annotations untouched) and returns the object as stored: a pass that
/// goes on from it sees the mark, as every later pass does.
pub async fn mark(
    ctx: &Context,
    name: &str,
    record: &RevocationRecord,
) -> Result<ClusterCertificate, Error> {
    let patch = serde_json::json!({
        "metadata": {"annotations": {meta::REVOCATION: serde_json::to_string(record)?}}
    });
    let api: Api<ClusterCertificate> = Api::all(ctx.client.clone());
    Ok(api
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?)
}
