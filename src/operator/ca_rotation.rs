//! Carrying out a CA rotation step (`crate::core::rotation` decides which): one
//! API write per step, each certop's record in the CA's status (written at
//! the resourceVersion the pass read, so a step is taken once) or a key
//! Secret created (never replaced) under a name fixed before its key
//! existed. The annotations on the CA mirror the record. The next pass
//! derives the state again from what is stored.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{DeleteParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use tracing::info;

use crate::api::{CaSettings, CertificateAuthority, CertificateAuthorityStatus, meta};
use crate::core::rotation::{RotationMarks, StartReason, key_secret_name};
use crate::operator::runtime::context::FIELD_MANAGER;
use crate::operator::{Context, Error, store::crl};
use crate::pki::{Authority, CaRequest};

/// The staged key of a rotation, read from its Secret: None when the
/// Secret does not exist; Err when it holds no usable CA.
pub async fn load_next(
    ctx: &Context,
    settings: &CaSettings,
    marks: &RotationMarks,
    now: DateTime<Utc>,
) -> Result<Result<Option<Arc<Authority>>, String>, Error> {
    let Some(index) = marks.next_index() else {
        return Ok(Ok(None));
    };
    let name = key_secret_name(&settings.secret_name, index);
    let Some(secret) = ctx.operator_secrets().get_opt(&name).await? else {
        return Ok(Ok(None));
    };
    let Some((cert, key)) = crate::operator::store::authority_cache::key_pair(&secret) else {
        return Ok(Err(format!(
            "Secret {}/{name} of the staged key holds no CA key pair",
            ctx.namespace
        )));
    };
    let version = secret.resource_version().unwrap_or_default();
    Ok(ctx
        .authorities
        .get_or_load(&name, &version, cert, key, now)
        .map(Some)
        .map_err(|e| format!("Secret {}/{name} of the staged key: {e}", ctx.namespace)))
}

/// Writes the CA's status (a rotation step is certop's record in it),
/// applied only at the resourceVersion the pass read, so two writers (or a
/// pass from a stale view) cannot both take a step, nor one write back a
/// record another step replaced. False on a conflict: the next pass reads
/// what the other wrote.
pub async fn commit(
    ca: &CertificateAuthority,
    ctx: &Context,
    status: &CertificateAuthorityStatus,
) -> Result<bool, Error> {
    let mut patch = serde_json::json!({
        "apiVersion": "certop.dev/v1alpha1",
        "kind": "CertificateAuthority",
        "status": status,
    });
    if let Some(v) = ca.resource_version() {
        patch["metadata"] = serde_json::json!({ "resourceVersion": v });
    }
    match Api::<CertificateAuthority>::all(ctx.client.clone())
        .patch_status(
            &ca.name_any(),
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await
    {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Writes the rotation annotations as the record says (the mirror that
/// `kubectl get -o yaml`, older tools and the plugin read). A failure is
/// repaired by a later pass, since the record is what certop acts on.
pub async fn mirror(
    ca: &CertificateAuthority,
    ctx: &Context,
    marks: &RotationMarks,
) -> Result<(), Error> {
    let annotations: serde_json::Map<String, serde_json::Value> = marks
        .mirror()
        .into_iter()
        .map(|(key, value)| {
            (
                key.to_string(),
                value.map_or(serde_json::Value::Null, Into::into),
            )
        })
        .collect();
    Api::<CertificateAuthority>::all(ctx.client.clone())
        .patch(
            &ca.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&serde_json::json!({ "metadata": { "annotations": annotations } })),
        )
        .await?;
    Ok(())
}

/// Announces a rotation that started (its record is written).
pub async fn started(ca: &CertificateAuthority, ctx: &Context, number: u32, why: StartReason) {
    let why = match why {
        StartReason::Requested => "as requested",
        StartReason::Due => "as its certificate nears its end",
    };
    info!(ca = %ca.name_any(), number, "rotation started");
    ctx.event(
        ca,
        false,
        "RotationStarted",
        "Rotate",
        format!(
            "Rotation {number} started {why}: a new key is made and trusted beside the current one"
        ),
    )
    .await;
}

/// Makes the staged key of rotation `index` in its Secret. The Secret is
/// created, never replaced: a pass that died after creating it finds it,
/// so one rotation never makes a second key.
pub async fn create_key(
    ca: &CertificateAuthority,
    ctx: &Context,
    settings: &CaSettings,
    index: u32,
    old: &Arc<Authority>,
) -> Result<(), Error> {
    let name = key_secret_name(&settings.secret_name, index);
    let request = CaRequest {
        common_name: ca.spec.subject.common_name.clone(),
        organizations: ca.spec.subject.organizations.clone(),
        algorithm: ca.spec.key_algorithm.unwrap_or_default(),
        lifetime: settings.lifetime,
    };
    let old = old.clone();
    let cross_sign = settings.cross_sign;
    let made = tokio::task::spawn_blocking(move || {
        let now = Utc::now();
        let new = Authority::create(&request, now)?;
        let cross = cross_sign
            .then(|| old.cross_sign(&new, &request, now))
            .transpose()?;
        Ok::<_, crate::pki::PkiError>((new, cross))
    })
    .await
    .map_err(Error::Task)?
    .map_err(|source| Error::Pki {
        what: format!("creating the new key of CA {}", ca.name_any()),
        source,
    })?;
    let (authority, cross) = made;
    let mut secret = key_secret(ca, ctx, &name, index, &authority);
    // The cross-certificate follows the CA certificate: loading the key
    // makes it the end of every chain the new CA issues.
    if let (Some(cross), Some(data)) = (cross, secret.data.as_mut()) {
        let chain = format!("{}{cross}", authority.certificate_pem());
        data.insert("tls.crt".into(), ByteString(chain.into_bytes()));
    }
    if create_key_secret(ctx, &secret).await? {
        let cert = authority.certificate();
        info!(ca = %ca.name_any(), index, serial = %cert.serial, "staged a new CA key");
    }
    Ok(())
}

/// Creates a CA key Secret, never replacing one: false when it already
/// exists (another pass or replica made it first; the next pass reads it).
pub async fn create_key_secret(ctx: &Context, secret: &Secret) -> Result<bool, Error> {
    match ctx
        .operator_secrets()
        .create(&PostParams::default(), secret)
        .await
    {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// The Secret holding a CA key, as certop creates it.
pub fn key_secret(
    ca: &CertificateAuthority,
    ctx: &Context,
    name: &str,
    index: u32,
    authority: &Authority,
) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(ctx.namespace.clone()),
            labels: Some(BTreeMap::from([(
                meta::MANAGED_BY.into(),
                meta::MANAGED_BY_VALUE.into(),
            )])),
            annotations: Some(BTreeMap::from([
                (meta::CERTIFICATE_AUTHORITY.into(), ca.name_any()),
                (meta::CA_KEY_INDEX.into(), index.to_string()),
            ])),
            ..Default::default()
        },
        type_: Some("kubernetes.io/tls".into()),
        data: Some(BTreeMap::from([
            (
                "tls.crt".into(),
                ByteString(authority.certificate_pem().as_bytes().to_vec()),
            ),
            (
                "tls.key".into(),
                ByteString(authority.key_pem().into_bytes()),
            ),
        ])),
        ..Default::default()
    }
}

/// Announces a bound staged key: from now on it is trusted (in every
/// bundle) and no other key can take its place.
pub async fn staged(
    ca: &CertificateAuthority,
    ctx: &Context,
    next: &Authority,
    overlap: chrono::Duration,
) {
    ctx.event(
        ca,
        false,
        "RotationStaged",
        "Rotate",
        format!(
            "New CA certificate serial {} is trusted beside the current one in every trust bundle and ca.crt; it signs an overlap ({}s) after certop has published it in every trust bundle",
            next.certificate().serial,
            overlap.num_seconds()
        ),
    )
    .await;
}

/// Announces a switch: the staged key signs from now on; the old one is
/// kept, trusted, to answer for its certificates (its CRL) until they
/// are re-issued.
pub async fn switched(
    ca: &CertificateAuthority,
    ctx: &Context,
    number: u32,
    old: &Authority,
    next: &Authority,
) {
    info!(ca = %ca.name_any(), number, "rotation switched");
    ctx.event(
        ca,
        false,
        "RotationSwitched",
        "Rotate",
        format!(
            "CA certificate serial {} signs from now on; the certificates of serial {} are re-issued by it, and serial {} stays trusted until none of them is left",
            next.certificate().serial,
            old.certificate().serial,
            old.certificate().serial
        ),
    )
    .await;
}

/// Announces a retirement: the old CA leaves the trust bundles.
pub async fn retired(
    ca: &CertificateAuthority,
    ctx: &Context,
    previous_serial: Option<String>,
    early: Option<usize>,
) {
    info!(ca = %ca.name_any(), "rotation finished");
    let serial = previous_serial.as_deref().unwrap_or("unknown");
    let message = match early {
        Some(live) => format!(
            "The retirement of the old CA (serial {serial}) was ended by {}: it leaves the trust bundles with {live} of its certificates still unexpired (they no longer verify), and its key and CRL are deleted",
            meta::END_RETIREMENT
        ),
        None => format!(
            "No certificate of the old CA (serial {serial}) is left: it leaves the trust bundles, and its key and CRL are deleted"
        ),
    };
    ctx.event(ca, early.is_some(), "RotationFinished", "Rotate", message)
        .await;
}

/// After a rotation finished, the retired key's Secret (if certop made it)
/// and its CRL ConfigMap go. Derived from the marks, so a failed delete is
/// done by a later pass.
pub async fn remove_retired(
    ca: &CertificateAuthority,
    ctx: &Context,
    settings: &CaSettings,
    marks: &RotationMarks,
) -> Result<(), Error> {
    let Some(retired) = marks.signing.checked_sub(1) else {
        return Ok(());
    };
    let name = ca.name_any();
    let adopted = ca.spec.key_source.as_ref().and_then(|k| k.adopt) == Some(true);
    {
        let secret_name = key_secret_name(&settings.secret_name, retired);
        let known = ctx
            .ca_secrets
            .get(&kube::runtime::reflector::ObjectRef::new(&secret_name).within(&ctx.namespace));
        // Only a key certop made: an adopted Secret is the owner's.
        let ours = known.as_ref().is_some_and(|m| {
            m.labels().get(meta::MANAGED_BY).map(String::as_str) == Some(meta::MANAGED_BY_VALUE)
                && m.annotations()
                    .get(meta::CERTIFICATE_AUTHORITY)
                    .map(String::as_str)
                    == Some(name.as_str())
        }) && !(adopted && retired == 0);
        if ours {
            delete::<Secret>(ctx, &secret_name).await?;
            ctx.authorities.forget(&secret_name);
            info!(ca = %name, key = retired, "deleted the retired CA key");
        }
    }
    let path = crl::crl_path(&name, retired);
    if ctx.crls.get(&path).is_some() {
        // The copy first: while the published CRL is cached, a pass whose
        // deletion failed comes back for both.
        delete::<ConfigMap>(ctx, &crl::copy_name(&name, retired)).await?;
        delete::<ConfigMap>(ctx, &crl::config_map_name(&name, retired)).await?;
        ctx.crls.forget(&path);
    }
    Ok(())
}

async fn delete<K>(ctx: &Context, name: &str) -> Result<(), Error>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}
