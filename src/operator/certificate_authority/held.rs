//! What the Secret of a ClusterCertificate of a CA holds, as the CA's pass
//! reads it: the ledger's evidence when the ledger lacks something (a
//! digest, `digest_backfill`; a whole entry, `lost_entries`). A Secret's
//! content alone proves nothing: each reader checks the CA's signature.

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::Secret;
use kube::Api;

use crate::core::plan::TLS_CERT_KEY;
use crate::operator::Context;
use crate::pki::{CertificateInfo, parse_pem_certificate};

/// What a ClusterCertificate says of its Secret: where it is, and the
/// serial (and notAfter) its status names as the certificate it holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Held {
    pub namespace: String,
    pub secret: String,
    pub serial: Option<String>,
    pub not_after: Option<DateTime<Utc>>,
}

/// The Secret of ClusterCertificate `name`, if it is one of CA `ca`'s and
/// in a namespace certop manages (it may read the Secret).
pub fn held_of(ctx: &Context, ca: &str, name: &str) -> Option<Held> {
    let cert = ctx.certificates.summary(name)?;
    let readable = ctx.managed_namespaces.contains(&cert.secret_namespace);
    (&*cert.issuer == ca && readable).then(|| Held {
        namespace: cert.secret_namespace.to_string(),
        secret: cert.secret_name.into(),
        serial: cert.serial.map(String::from),
        not_after: cert.not_after,
    })
}

/// The leaf certificate Secret `namespace/secret` holds, parsed; None when
/// the Secret is gone, holds none, or is not certop's to read (RBAC
/// narrower than --namespaces). An error only for a failed read.
pub async fn read_leaf(
    ctx: &Context,
    namespace: &str,
    secret: &str,
) -> Result<Option<CertificateInfo>, kube::Error> {
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), namespace);
    let found = match api.get_opt(secret).await {
        Ok(Some(found)) => found,
        Ok(None) => return Ok(None),
        Err(kube::Error::Api(e)) if e.code == 403 => return Ok(None),
        Err(e) => return Err(e),
    };
    let Some(pem) = found.data.as_ref().and_then(|d| d.get(TLS_CERT_KEY)) else {
        return Ok(None);
    };
    Ok(parse_pem_certificate(&pem.0, secret).ok())
}
