//! What a serving pass publishes, in order: the trust bundles (ConfigMaps,
//! and the ClusterTrustBundle of a CA that signs for pods), then the
//! check that the certificates' Secrets carry a staged CA certificate,
//! then each key's CRL. `status::finish` turns what came of it into the
//! status.

use chrono::{DateTime, Utc};
use kube::ResourceExt;

use super::decide::Publish;
use super::status::Published;
use super::{Serving, cluster_trust_bundle, crl_refresh, trust_bundle};
use crate::operator::{Error, store::ledger_store};

pub async fn publish(
    s: &Serving<'_>,
    publish: &Publish,
    ledger: &ledger_store::Loaded,
    now: DateTime<Utc>,
) -> Result<Published, Error> {
    let (ca, ctx, name) = (s.ca, s.ctx, s.ca.name_any());
    let bundles = trust_bundle::sync(ca, ctx, &publish.bundle_name, &publish.bundle_pem).await?;
    let pod_certificates = cluster_trust_bundle::sync(ca, ctx, &publish.bundle_pem).await?;
    let pending = match &publish.awaiting {
        Some(awaiting) => trust_bundle::secrets_without(ctx, &name, &awaiting.pem).await?,
        None => Vec::new(),
    };
    ctx.metrics
        .ledger(&name, ledger.unreadable.len(), ledger.largest_shard_bytes);
    let mut crls = Vec::new();
    for job in &publish.crls {
        crls.push(crl_refresh::refresh(ca, ctx, job, ledger.unreadable.is_empty(), now).await?);
    }
    Ok(Published {
        bundles,
        pod_certificates,
        pending,
        crls,
    })
}
