//! CA object -> its signer. A CA key is parsed once per change of its
//! Secret: the Secret is fetched only when the resourceVersion the shared
//! metadata store shows differs from the one the cached signer came from.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::runtime::reflector::ObjectRef;

use super::{Context, Error};
use crate::api::{CertificateAuthority, meta};
use crate::pki::{Authority, PkiError};

/// Parsed CAs, keyed by CertificateAuthority name, remembered with the
/// resourceVersion of the Secret they came from.
#[derive(Default)]
pub struct AuthorityCache {
    entries: Mutex<HashMap<String, (String, Arc<Authority>)>>,
}

impl AuthorityCache {
    fn get(&self, ca_name: &str, version: &str, now: DateTime<Utc>) -> Option<Arc<Authority>> {
        let entries = self.entries.lock().ok()?;
        let (v, authority) = entries.get(ca_name)?;
        (v == version && now < authority.certificate().not_after).then(|| authority.clone())
    }

    pub fn get_or_load(
        &self,
        ca_name: &str,
        secret_version: &str,
        cert_pem: &[u8],
        key_pem: &[u8],
        now: DateTime<Utc>,
    ) -> Result<Arc<Authority>, PkiError> {
        if let Some(a) = self.get(ca_name, secret_version, now) {
            return Ok(a);
        }
        let authority = Arc::new(Authority::load(cert_pem, key_pem, now)?);
        if let Ok(mut entries) = self.entries.lock() {
            entries.insert(
                ca_name.to_string(),
                (secret_version.to_string(), authority.clone()),
            );
        }
        Ok(authority)
    }

    pub fn forget(&self, ca_name: &str) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.remove(ca_name);
        }
    }
}

/// The certificate and key of a CA Secret: certop's `tls.*` or kubeadm's `ca.*`.
pub fn key_pair(secret: &Secret) -> Option<(&[u8], &[u8])> {
    let data = secret.data.as_ref()?;
    let pair = |c: &str, k: &str| Some((data.get(c)?.0.as_slice(), data.get(k)?.0.as_slice()));
    pair("tls.crt", "tls.key").or_else(|| pair("ca.crt", "ca.key"))
}

/// A Ready CA's signer; or why it cannot sign (a message for the
/// certificate's condition). Verifies the key is the one the CA is bound to.
pub async fn signer(
    ctx: &Context,
    ca: &CertificateAuthority,
    now: DateTime<Utc>,
) -> Result<Result<Arc<Authority>, String>, Error> {
    let ca_name = ca.name_any();
    let secret_name = match ca.settings() {
        Ok(s) => s.secret_name,
        Err(e) => return Ok(Err(format!("CertificateAuthority {ca_name}: {e}"))),
    };
    let known_version = ctx
        .ca_secrets
        .get(&ObjectRef::new(&secret_name).within(&ctx.namespace))
        .and_then(|m| m.resource_version());
    let bound = ca.annotations().get(meta::CA_FINGERPRINT);
    let check = |a: Arc<Authority>| match bound {
        Some(fp) if *fp != a.certificate().fingerprint => Err(format!(
            "CertificateAuthority {ca_name} is bound to the CA certificate {fp}; its Secret holds another"
        )),
        _ => Ok(a),
    };
    if let Some(v) = &known_version
        && let Some(a) = ctx.authorities.get(&ca_name, v, now)
    {
        return Ok(check(a));
    }
    let Some(secret) = ctx.operator_secrets().get_opt(&secret_name).await? else {
        return Ok(Err(format!(
            "the Secret {}/{secret_name} of CertificateAuthority {ca_name} is gone",
            ctx.namespace
        )));
    };
    let Some((cert, key)) = key_pair(&secret) else {
        return Ok(Err(format!(
            "the Secret {}/{secret_name} of CertificateAuthority {ca_name} holds no CA key pair",
            ctx.namespace
        )));
    };
    let version = secret.resource_version().unwrap_or_default();
    Ok(ctx
        .authorities
        .get_or_load(&ca_name, &version, cert, key, now)
        .map_err(|e| format!("CertificateAuthority {ca_name} cannot sign: {e}"))
        .and_then(check))
}
