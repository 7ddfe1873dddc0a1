//! CA object -> its keys. A CA key is parsed once per change of its
//! Secret: the Secret is fetched only when the resourceVersion the shared
//! metadata store shows differs from the one the cached signer came from.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use kube::ResourceExt;
use kube::runtime::reflector::ObjectRef;

use crate::api::{CaRotationRecord, CertificateAuthority};
use crate::core::rotation::{MarksError, RotationMarks, key_secret_name, stored_marks};
use crate::operator::{Context, Error};
use crate::pki::{Authority, CertificateInfo, PkiError};

/// Parsed CA keys, by the name of the Secret (in the operator's
/// namespace) they came from, remembered with its resourceVersion.
#[derive(Default)]
pub struct AuthorityCache {
    entries: Mutex<HashMap<String, (String, Arc<Authority>)>>,
    /// One load of a key Secret at a time: the passes that miss the cache
    /// together (hundreds, when a backlog starts) wait for the first one's
    /// read instead of each reading the Secret.
    loading: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl AuthorityCache {
    fn get(&self, secret_name: &str, version: &str, now: DateTime<Utc>) -> Option<Arc<Authority>> {
        let entries = self.entries.lock().ok()?;
        let (v, authority) = entries.get(secret_name)?;
        (v == version && now < authority.certificate().not_after).then(|| authority.clone())
    }

    pub fn get_or_load(
        &self,
        secret_name: &str,
        secret_version: &str,
        cert_pem: &[u8],
        key_pem: &[u8],
        now: DateTime<Utc>,
    ) -> Result<Arc<Authority>, PkiError> {
        if let Some(a) = self.get(secret_name, secret_version, now) {
            return Ok(a);
        }
        let authority = Arc::new(Authority::load(cert_pem, key_pem, now)?);
        if let Ok(mut entries) = self.entries.lock() {
            entries.insert(
                secret_name.to_string(),
                (secret_version.to_string(), authority.clone()),
            );
        }
        Ok(authority)
    }

    /// The lock a load of `secret_name` holds.
    fn loading(&self, secret_name: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.loading
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(secret_name.to_string())
            .or_default()
            .clone()
    }

    pub fn forget(&self, secret_name: &str) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.remove(secret_name);
        }
    }
}

pub use crate::api::ca_key_pair as key_pair;

/// The keys of a CA: the one that signs, and those trusted beside it
/// during a rotation. Every Secret certop writes carries all of their
/// certificates in `ca.crt`.
#[derive(Debug)]
pub struct KeyRing {
    pub signing: Arc<Authority>,
    pub signing_index: u32,
    /// A rotation's staged key: trusted, not yet signing.
    pub next: Option<Arc<Authority>>,
    /// A rotation's old key, when its Secret still holds it: it signs its
    /// own CRL until its certificates are gone.
    pub previous: Option<(u32, Arc<Authority>)>,
    /// A rotation's old CA certificate, trusted until its certificates are
    /// gone: from its key, or from certop's record once the key is gone
    /// (trust needs no key).
    pub retiring: Option<RetiringCa>,
    /// When the signing key began to sign, as recorded.
    pub switched_at: Option<DateTime<Utc>>,
    pub overlap: chrono::Duration,
}

/// The certificate of a CA key being retired.
#[derive(Clone, Debug)]
pub struct RetiringCa {
    pub index: u32,
    pub certificate: CertificateInfo,
    /// As it goes into trust bundles.
    pub pem: String,
}

impl KeyRing {
    /// The index of the key of this ring that signed `leaf`, if one did.
    pub fn signer_of(&self, leaf: &CertificateInfo) -> Option<u32> {
        if leaf.is_issued_by(self.signing.certificate()) {
            return Some(self.signing_index);
        }
        if let Some((index, previous)) = &self.previous
            && leaf.is_issued_by(previous.certificate())
        {
            return Some(*index);
        }
        self.retiring
            .as_ref()
            .filter(|r| leaf.is_issued_by(&r.certificate))
            .map(|r| r.index)
    }

    /// The CRL distribution point a certificate of this ring's signing key
    /// carries: the CA's `spec.crl.distributionPointURL`, else certop's
    /// own for that key; none when the CA cannot sign CRLs.
    pub fn crl_url(&self, ca: &CertificateAuthority, ctx: &Context) -> Option<String> {
        self.signing.certificate().can_sign_crls.then(|| {
            ca.spec
                .crl
                .as_ref()
                .and_then(|c| c.distribution_point_url.clone())
                .unwrap_or_else(|| ctx.default_crl_url(&ca.name_any(), self.signing_index))
        })
    }

    /// The trust bundle: the signing CA first, then the staged and the
    /// retiring one.
    pub fn bundle_pem(&self) -> String {
        let mut pem = self.signing.certificate_pem().to_string();
        if let Some(next) = &self.next {
            pem.push_str(next.certificate_pem());
        }
        if let Some(retiring) = &self.retiring {
            pem.push_str(&retiring.pem);
        }
        pem
    }

    /// How certificates of the retiring key are re-issued, if one is retiring.
    pub fn reissue(&self) -> Option<crate::core::rotation::Reissue> {
        self.retiring.as_ref().map(|retiring| {
            crate::core::rotation::Reissue::new(
                retiring.certificate.clone(),
                crate::core::rotation::switched_at(
                    self.signing.certificate(),
                    self.switched_at,
                    self.overlap,
                ),
                self.overlap,
            )
        })
    }
}

/// The retiring CA certificate of a rotation: its key's, or else the one
/// certop recorded at the switch, if it is the one the CA is bound to
/// retire. Pure.
pub fn retiring_ca(
    marks: &RotationMarks,
    key: Option<&Authority>,
    record: Option<&CaRotationRecord>,
) -> Option<RetiringCa> {
    let index = marks.previous_index()?;
    let fingerprint = marks.previous_fingerprint.as_deref()?;
    if let Some(key) = key.filter(|k| k.certificate().fingerprint == fingerprint) {
        return Some(RetiringCa {
            index,
            certificate: key.certificate().clone(),
            pem: key.certificate_pem().to_string(),
        });
    }
    let pem = record?.previous_certificate.as_deref()?;
    let certificate = crate::pki::parse_chain(pem.as_bytes(), "previousCertificate")
        .ok()?
        .into_iter()
        .next()
        .filter(|c| c.fingerprint == fingerprint)?;
    Some(RetiringCa {
        index,
        certificate,
        pem: pem.to_string(),
    })
}

/// The marks a CA's keys are read by: certop's record, or (before it
/// has one) its annotations.
pub fn marks_of(ca: &CertificateAuthority) -> Result<RotationMarks, MarksError> {
    stored_marks(ca.annotations(), record_of(ca)).marks
}

/// certop's record of a CA's rotation, if it wrote one.
pub fn record_of(ca: &CertificateAuthority) -> Option<&CaRotationRecord> {
    ca.status.as_ref()?.rotation.as_ref()?.record.as_ref()
}

/// Why a CA key cannot sign; each names the Secret or the CA to fix.
#[derive(Debug, thiserror::Error)]
pub enum Unusable {
    #[error(
        "CertificateAuthority {ca} is bound to the CA certificate {bound}; Secret {namespace}/{secret} holds another"
    )]
    BoundToAnother {
        ca: String,
        bound: String,
        namespace: String,
        secret: String,
    },
    #[error("the Secret {namespace}/{secret} of CertificateAuthority {ca} is gone")]
    SecretGone {
        ca: String,
        namespace: String,
        secret: String,
    },
    #[error("the Secret {namespace}/{secret} of CertificateAuthority {ca} holds no CA key pair")]
    NoKeyPair {
        ca: String,
        namespace: String,
        secret: String,
    },
    #[error("CertificateAuthority {ca} cannot sign: {source}")]
    CannotSign { ca: String, source: PkiError },
    #[error("CertificateAuthority {ca}: {source}")]
    Spec {
        ca: String,
        source: crate::api::CaSpecError,
    },
    #[error("CertificateAuthority {ca}: {source}")]
    Marks { ca: String, source: MarksError },
}

/// A CA key as read: usable, or why not.
pub enum Loaded {
    Usable(Arc<Authority>),
    Unusable(Unusable),
}

impl Loaded {
    /// The key, if usable.
    pub fn usable(self) -> Option<Arc<Authority>> {
        match self {
            Loaded::Usable(a) => Some(a),
            Loaded::Unusable(_) => None,
        }
    }
}

/// A CA's keys as read: a ring that can sign, or why the CA cannot (a
/// message for the condition of what it would sign).
pub enum Keys {
    Ready(Arc<KeyRing>),
    Unusable(Unusable),
}

/// One CA key by the Secret that holds it, checked against the
/// fingerprint the CA is bound to.
pub async fn load_key(
    ctx: &Context,
    ca_name: &str,
    secret_name: &str,
    bound: Option<&str>,
    now: DateTime<Utc>,
) -> Result<Loaded, Error> {
    let check_bound = |a: Arc<Authority>| match bound {
        Some(fp) if *fp != a.certificate().fingerprint => {
            Loaded::Unusable(Unusable::BoundToAnother {
                ca: ca_name.to_string(),
                bound: fp.to_string(),
                namespace: ctx.namespace.clone(),
                secret: secret_name.to_string(),
            })
        }
        _ => Loaded::Usable(a),
    };
    let known_version = ctx
        .ca_secrets
        .get(&ObjectRef::new(secret_name).within(&ctx.namespace))
        .and_then(|m| m.resource_version());
    let cached = || {
        known_version
            .as_ref()
            .and_then(|v| ctx.authorities.get(secret_name, v, now))
    };
    if let Some(a) = cached() {
        return Ok(check_bound(a));
    }
    let loading = ctx.authorities.loading(secret_name);
    let _loading = loading.lock().await;
    // Another pass may have loaded it while this one waited.
    if let Some(a) = cached() {
        return Ok(check_bound(a));
    }
    let Some(secret) = ctx.operator_secrets().get_opt(secret_name).await? else {
        return Ok(Loaded::Unusable(Unusable::SecretGone {
            ca: ca_name.to_string(),
            namespace: ctx.namespace.clone(),
            secret: secret_name.to_string(),
        }));
    };
    let Some((cert, key)) = key_pair(&secret) else {
        return Ok(Loaded::Unusable(Unusable::NoKeyPair {
            ca: ca_name.to_string(),
            namespace: ctx.namespace.clone(),
            secret: secret_name.to_string(),
        }));
    };
    let version = secret.resource_version().unwrap_or_default();
    Ok(
        match ctx
            .authorities
            .get_or_load(secret_name, &version, cert, key, now)
        {
            Ok(a) => check_bound(a),
            Err(source) => Loaded::Unusable(Unusable::CannotSign {
                ca: ca_name.to_string(),
                source,
            }),
        },
    )
}

/// A Ready CA's keys; or why it cannot sign. A staged or retiring key that
/// cannot be loaded is left out (the CA's own status says why); the
/// signing key must load and be the one the CA is bound to.
pub async fn keyring(
    ctx: &Context,
    ca: &CertificateAuthority,
    now: DateTime<Utc>,
) -> Result<Keys, Error> {
    let ca_name = ca.name_any();
    let settings = match ca.settings() {
        Ok(s) => s,
        Err(source) => {
            return Ok(Keys::Unusable(Unusable::Spec {
                ca: ca_name,
                source,
            }));
        }
    };
    let marks = match marks_of(ca) {
        Ok(m) => m,
        Err(source) => {
            return Ok(Keys::Unusable(Unusable::Marks {
                ca: ca_name,
                source,
            }));
        }
    };
    let secret = |index| key_secret_name(&settings.secret_name, index);
    let signing = match load_key(
        ctx,
        &ca_name,
        &secret(marks.signing),
        marks.signing_fingerprint.as_deref(),
        now,
    )
    .await?
    {
        Loaded::Usable(a) => a,
        Loaded::Unusable(why) => return Ok(Keys::Unusable(why)),
    };
    let record = record_of(ca);
    let mut ring = KeyRing {
        signing,
        signing_index: marks.signing,
        next: None,
        previous: None,
        retiring: None,
        switched_at: record.and_then(|r| r.switched_at),
        overlap: settings.rotation_overlap,
    };
    if let (Some(index), Some(fp)) = (marks.next_index(), &marks.next_fingerprint) {
        ring.next = load_key(ctx, &ca_name, &secret(index), Some(fp), now)
            .await?
            .usable();
    }
    if let (Some(index), Some(fp)) = (marks.previous_index(), &marks.previous_fingerprint) {
        ring.previous = load_key(ctx, &ca_name, &secret(index), Some(fp), now)
            .await?
            .usable()
            .map(|a| (index, a));
    }
    ring.retiring = retiring_ca(
        &marks,
        ring.previous.as_ref().map(|(_, a)| a.as_ref()),
        record,
    );
    Ok(Keys::Ready(Arc::new(ring)))
}
