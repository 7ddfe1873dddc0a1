//! The key a CA signs with: read from its Secret (and loaded through the
//! key cache) for the decision; created when none was ever made, with a
//! create call, so a second writer gets a conflict and reads the first
//! one's key; and the CA bound to it by the annotation
//! `certop.dev/ca-fingerprint`.

use std::sync::Arc;

use chrono::Utc;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Patch, PatchParams};
use kube::{Api, ResourceExt};
use tracing::info;

use super::rotation::{create_key_secret, key_secret};
use crate::api::{CaSettings, CertificateAuthority, meta};
use crate::operator::reason::Reason;
use crate::operator::{Context, Error, store::authority_cache};
use crate::pki::{Authority, CaRequest, PkiError};

/// The Secret, in the operator's namespace, that holds a CA (None when the
/// spec cannot name one; the CA's condition says why).
pub fn secret_name(ca: &CertificateAuthority) -> Option<String> {
    ca.settings().ok().map(|s| s.secret_name)
}

/// The signing key's Secret as read, and its key pair loaded.
pub struct Read {
    pub secret: Option<Secret>,
    pub loaded: Option<Result<Arc<Authority>, PkiError>>,
}

/// Reads the Secret `secret_name` and loads the key pair it holds.
pub async fn read(
    ctx: &Context,
    secret_name: &str,
    now: chrono::DateTime<Utc>,
) -> Result<Read, Error> {
    let secret = ctx.operator_secrets().get_opt(secret_name).await?;
    let loaded = secret.as_ref().and_then(|s| {
        let (cert, key) = authority_cache::key_pair(s)?;
        let version = s.resource_version().unwrap_or_default();
        Some(
            ctx.authorities
                .get_or_load(secret_name, &version, cert, key, now),
        )
    });
    Ok(Read { secret, loaded })
}

/// Creates the CA and its Secret. The Secret is created, never replaced:
/// if another replica got there first the API server refuses ours, and
/// `None` says to read theirs. So a CA never gets a second key.
pub async fn create(
    ca: &CertificateAuthority,
    ctx: &Context,
    settings: &CaSettings,
) -> Result<Option<Arc<Authority>>, Error> {
    let request = CaRequest {
        common_name: ca.spec.subject.common_name.clone(),
        organizations: ca.spec.subject.organizations.clone(),
        algorithm: ca.spec.key_algorithm.unwrap_or_default(),
        lifetime: settings.lifetime,
    };
    let created = tokio::task::spawn_blocking(move || Authority::create(&request, Utc::now()))
        .await
        .map_err(Error::Task)?;
    let authority = match created {
        Ok(a) => a,
        Err(e) => {
            let reason = Reason::CACreationFailed.as_str();
            ctx.event(ca, true, reason, "Create", e.to_string()).await;
            return Err(Error::Pki {
                what: format!("creating CA {}", ca.name_any()),
                source: e,
            });
        }
    };
    let secret = key_secret(ca, ctx, &settings.secret_name, 0, &authority);
    if !create_key_secret(ctx, &secret).await? {
        return Ok(None);
    }
    let cert = authority.certificate();
    info!(ca = %ca.name_any(), serial = %cert.serial, "created CA");
    let message = format!(
        "Created CA {} serial {}, valid until {}",
        cert.subject(),
        cert.serial,
        cert.not_after.to_rfc3339()
    );
    let reason = Reason::Created.as_str();
    ctx.event(ca, false, reason, "Create", message).await;
    Ok(Some(Arc::new(authority)))
}

/// Records the fingerprint of the CA certificate on the CA object (the
/// mirror first; this pass's status then records it in certop's record):
/// a pass that dies between them binds from the mirror.
pub async fn bind(
    ca: &CertificateAuthority,
    ctx: &Context,
    fingerprint: &str,
) -> Result<(), Error> {
    let patch = serde_json::json!({
        "metadata": {"annotations": {meta::CA_FINGERPRINT: fingerprint}}
    });
    Api::<CertificateAuthority>::all(ctx.client.clone())
        .patch(
            &ca.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await?;
    Ok(())
}
