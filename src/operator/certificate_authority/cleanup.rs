//! A CertificateAuthority's deletion (its finalizer): what certop made
//! for it goes, what it was given stays.

use kube::ResourceExt;
use kube::runtime::controller::Action;
use tracing::info;

use super::{cluster_trust_bundle, trust_bundle};
use crate::api::CertificateAuthority;
use crate::core::rotation::key_secret_name;
use crate::operator::{Context, Error, store::authority_cache, store::crl};

/// A CA goes: its trust bundles (and ClusterTrustBundle) go with it. Its key Secret stays, since a
/// key certop cannot replace is never deleted; delete it by hand to retire
/// the CA for good.
pub async fn cleanup(ca: &CertificateAuthority, ctx: &Context) -> Result<Action, Error> {
    let name = ca.name_any();
    trust_bundle::remove_all(ctx, &name).await?;
    cluster_trust_bundle::remove_ours(ctx, &name).await?;
    if let Ok(settings) = ca.settings() {
        let marks = authority_cache::marks_of(ca).unwrap_or_default();
        // The keys a CA can hold at once: retiring, signing, staged.
        for index in marks.signing.saturating_sub(1)..=marks.signing.saturating_add(1) {
            ctx.authorities
                .forget(&key_secret_name(&settings.secret_name, index));
            ctx.crls.forget(&crl::crl_path(&name, index));
        }
    }
    ctx.metrics.forget_authority(&name);
    info!(ca = %name, "CertificateAuthority deleted; its key Secret is kept");
    Ok(Action::await_change())
}
