//! Carrying out a CA rotation step (`decide::rotation` decides which): one
//! API write per step, each certop's record in the CA's status (written at
//! the resourceVersion the pass read, so a step is taken once) or a key
//! Secret created (never replaced) under a name fixed before its key
//! existed. The annotations on the CA mirror the record. The next pass
//! derives the state again from what is stored. And the reads of the
//! rotation's keys, for the decision.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{DeleteParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use tracing::info;

use super::Serving;
use super::decide::Announcement;
use super::decide::RotationWrite;
use super::status;
use crate::api::{CaSettings, CertificateAuthority, CertificateAuthorityStatus, meta};
use crate::core::rotation::{RotationMarks, key_secret_name};
use crate::operator::{Context, Error, store::authority_cache, store::crl};
use crate::pki::{Authority, CaRequest};

/// Why a key of a rotation cannot be used; the Rotation condition says it.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum KeyError {
    #[error("Secret {namespace}/{secret} of the staged key holds no CA key pair")]
    StagedHoldsNoKeyPair { namespace: String, secret: String },
    #[error("Secret {namespace}/{secret} of the staged key: {problem}")]
    StagedUnusable {
        namespace: String,
        secret: String,
        problem: String,
    },
    #[error("the Secret {namespace}/{secret} of the retiring key is gone")]
    RetiringGone { namespace: String, secret: String },
    /// What the key cache says of the retiring key's Secret.
    #[error("{0}")]
    RetiringUnusable(String),
}

/// A key of a rotation (the staged one, or the retiring one), as read.
#[derive(Clone, Debug)]
pub enum RotationKey {
    /// The marks name none, or (the staged key) its Secret does not exist yet.
    Absent,
    Usable {
        index: u32,
        authority: Arc<Authority>,
    },
    Unusable(KeyError),
}

impl RotationKey {
    pub fn usable(&self) -> Option<&Arc<Authority>> {
        self.indexed().map(|(_, authority)| authority)
    }

    /// The key with its index, when it is usable.
    pub fn indexed(&self) -> Option<(u32, &Arc<Authority>)> {
        match self {
            RotationKey::Usable { index, authority } => Some((*index, authority)),
            _ => None,
        }
    }
}

/// The staged key of a rotation, read from its Secret.
pub async fn load_next(
    ctx: &Context,
    settings: &CaSettings,
    marks: &RotationMarks,
    now: DateTime<Utc>,
) -> Result<RotationKey, Error> {
    let Some(index) = marks.next_index() else {
        return Ok(RotationKey::Absent);
    };
    let name = key_secret_name(&settings.secret_name, index);
    let Some(secret) = ctx.operator_secrets().get_opt(&name).await? else {
        return Ok(RotationKey::Absent);
    };
    let (namespace, secret_name) = (ctx.namespace.clone(), name.clone());
    let Some((cert, key)) = authority_cache::key_pair(&secret) else {
        return Ok(RotationKey::Unusable(KeyError::StagedHoldsNoKeyPair {
            namespace,
            secret: secret_name,
        }));
    };
    let version = secret.resource_version().unwrap_or_default();
    Ok(
        match ctx.authorities.get_or_load(&name, &version, cert, key, now) {
            Ok(authority) => RotationKey::Usable { index, authority },
            Err(e) => RotationKey::Unusable(KeyError::StagedUnusable {
                namespace,
                secret: secret_name,
                problem: e.to_string(),
            }),
        },
    )
}

/// The retiring key of a rotation, when the marks name one: loaded and
/// checked against the fingerprint the CA is bound to retire, or why not.
pub async fn load_previous(
    ca: &CertificateAuthority,
    ctx: &Context,
    settings: &CaSettings,
    marks: &RotationMarks,
    now: DateTime<Utc>,
) -> Result<RotationKey, Error> {
    let (Some(index), Some(fp)) = (marks.previous_index(), &marks.previous_fingerprint) else {
        return Ok(RotationKey::Absent);
    };
    let secret = key_secret_name(&settings.secret_name, index);
    // Asked of the API server, not the cache: the watch that brings a
    // deletion here may run ahead of the store's.
    if ctx
        .operator_secrets()
        .get_metadata_opt(&secret)
        .await?
        .is_none()
    {
        ctx.authorities.forget(&secret);
        return Ok(RotationKey::Unusable(KeyError::RetiringGone {
            namespace: ctx.namespace.clone(),
            secret,
        }));
    }
    let loaded = authority_cache::load_key(ctx, &ca.name_any(), &secret, Some(fp), now).await?;
    Ok(match loaded {
        authority_cache::Loaded::Usable(authority) => RotationKey::Usable { index, authority },
        authority_cache::Loaded::Unusable(why) => {
            RotationKey::Unusable(KeyError::RetiringUnusable(why.to_string()))
        }
    })
}

/// Takes the rotation's write.
pub async fn take(
    s: &Serving<'_>,
    write: &RotationWrite,
    status: &CertificateAuthorityStatus,
) -> Result<(), Error> {
    let (ca, ctx, marks) = (s.ca, s.ctx, &s.marks);
    match write {
        RotationWrite::Record {
            marks: after,
            announcement,
        } => record(ca, ctx, after, announcement.as_ref(), status).await,
        RotationWrite::Keep {
            restore_mirror,
            remove_retired: remove,
            create_key: stage,
        } => {
            if let Some(said) = restore_mirror {
                mirror(ca, ctx, marks).await?;
                super::announce(ca, ctx, said).await;
            }
            if *remove {
                remove_retired(ca, ctx, &s.spec.settings, marks).await?;
            }
            if let Some(index) = stage {
                create_key(ca, ctx, &s.spec.settings, *index, &s.signing).await?;
            }
            Ok(())
        }
    }
}

/// Records a step: the status at the resourceVersion read (a conflict:
/// another writer came first, the next pass reads it), then the mirror,
/// then the Event. A failed mirror is repaired by a later pass.
async fn record(
    ca: &CertificateAuthority,
    ctx: &Context,
    after: &RotationMarks,
    announcement: Option<&Announcement>,
    status: &CertificateAuthorityStatus,
) -> Result<(), Error> {
    if !status::write_at_read_version(ca, ctx, status).await? {
        return Ok(());
    }
    let mirrored = mirror(ca, ctx, after).await;
    if let Some(said) = announcement {
        info!(ca = %ca.name_any(), number = after.number, step = %said.reason, "rotation step recorded");
        super::announce(ca, ctx, said).await;
    }
    mirrored
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
