//! The webhook's own serving certificate: issued by each replica, in
//! memory, from the signing key of the CertificateAuthority named by
//! `--authz-ca`. It is never written anywhere: no Secret to leak, nothing
//! to clean up. It lives a day and is replaced (in place, connections
//! keep working) at half its life or as soon as the CA signs with another
//! key; kube-apiserver trusts it through the CA certificate that
//! `certop authz-config` puts in the webhook kubeconfig.

use std::net::IpAddr;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client};
use rustls::ServerConfig;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::api::{CertificateAuthority, KeyAlgorithm, KeyUsage};
use crate::core::rotation::key_secret_name;
use crate::operator::store::authority_cache::{key_pair, marks_of};
use crate::pki::{Authority, LeafTemplate, PrivateKey, issue};

/// How long the webhook's certificate lives; it is replaced at half that.
pub const LIFETIME: chrono::Duration = chrono::Duration::hours(24);

/// Why the webhook has no serving certificate (yet): each says what to fix.
#[derive(Debug, thiserror::Error)]
pub enum ServingError {
    #[error("CertificateAuthority {0} (--authz-ca) does not exist: create it or name another")]
    NoSuchCa(String),
    #[error("CertificateAuthority {ca}: {message}")]
    CaNotUsable { ca: String, message: String },
    #[error(
        "the Secret {namespace}/{secret} of CertificateAuthority {ca} holds no CA key pair yet: wait until the CA is Ready"
    )]
    NoKey {
        ca: String,
        namespace: String,
        secret: String,
    },
    #[error("cannot read CertificateAuthority {ca} or its key: {source}")]
    Api { ca: String, source: kube::Error },
    #[error("cannot issue the webhook's serving certificate: {0}")]
    Issue(#[from] crate::pki::PkiError),
    #[error("rustls refused the webhook's serving certificate: {0}")]
    Tls(#[from] rustls::Error),
}

/// A serving certificate and the CA key that signed it.
pub struct Serving {
    pub config: Arc<ServerConfig>,
    pub not_after: DateTime<Utc>,
    pub issued_at: DateTime<Utc>,
    /// The CA certificate's fingerprint: a new signing key means a new
    /// certificate at once.
    pub ca_fingerprint: String,
}

impl Serving {
    /// Whether to replace it now: at half its life, or when the CA signs
    /// with another key than the one that signed it.
    pub fn due(&self, signing_fingerprint: Option<&str>, now: DateTime<Utc>) -> bool {
        let half = self.issued_at + (self.not_after - self.issued_at) / 2;
        now >= half || signing_fingerprint.is_some_and(|fp| fp != self.ca_fingerprint)
    }
}

/// The template of the webhook's certificate: serverAuth for the names
/// kube-apiserver dials (`--authz-names`), an IP where a name parses as one.
pub fn template(names: &[String]) -> LeafTemplate {
    let (ips, dns): (Vec<&String>, Vec<&String>) =
        names.iter().partition(|n| n.parse::<IpAddr>().is_ok());
    LeafTemplate {
        common_name: Some("certop-authz-webhook".to_string()),
        organizations: Vec::new(),
        dns_names: dns.into_iter().cloned().collect(),
        ip_addresses: ips.into_iter().filter_map(|n| n.parse().ok()).collect(),
        uris: Vec::new(),
        usages: [KeyUsage::DigitalSignature, KeyUsage::ServerAuth]
            .into_iter()
            .collect(),
        key_algorithm: KeyAlgorithm::EcdsaP256,
        lifetime: LIFETIME,
        crl_distribution_point: None,
    }
}

/// The CA's current signing key, read from its Secret and checked against
/// the fingerprint the CA is bound to.
pub async fn signing_key(
    client: &Client,
    namespace: &str,
    ca_name: &str,
    now: DateTime<Utc>,
) -> Result<Authority, ServingError> {
    let api_error = |source| ServingError::Api {
        ca: ca_name.to_string(),
        source,
    };
    let not_usable = |message: String| ServingError::CaNotUsable {
        ca: ca_name.to_string(),
        message,
    };
    let ca = Api::<CertificateAuthority>::all(client.clone())
        .get_opt(ca_name)
        .await
        .map_err(api_error)?
        .ok_or_else(|| ServingError::NoSuchCa(ca_name.to_string()))?;
    let settings = ca.settings().map_err(|e| not_usable(e.to_string()))?;
    let marks = marks_of(&ca).map_err(|e| not_usable(e.to_string()))?;
    let secret_name = key_secret_name(&settings.secret_name, marks.signing);
    let secret = Api::<Secret>::namespaced(client.clone(), namespace)
        .get_opt(&secret_name)
        .await
        .map_err(api_error)?;
    let no_key = || ServingError::NoKey {
        ca: ca_name.to_string(),
        namespace: namespace.to_string(),
        secret: secret_name.clone(),
    };
    let (cert, key) = secret.as_ref().and_then(key_pair).ok_or_else(no_key)?;
    let authority = Authority::load(cert, key, now)?;
    match &marks.signing_fingerprint {
        Some(bound) if *bound != authority.certificate().fingerprint => Err(not_usable(format!(
            "it is bound to the CA certificate {bound}, but Secret {namespace}/{secret_name} holds another"
        ))),
        _ => Ok(authority),
    }
}

/// Issues a serving certificate for `names` and makes the TLS config of it.
pub fn serving(
    ca: &Authority,
    names: &[String],
    now: DateTime<Utc>,
) -> Result<Serving, ServingError> {
    let key = PrivateKey::generate(KeyAlgorithm::EcdsaP256)?;
    let issued = issue(&template(names), &key, ca, now)?;
    let chain = vec![
        CertificateDer::from(issued.certificate.der.clone()),
        CertificateDer::from(ca.certificate().der.clone()),
    ];
    let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.to_pkcs8_der()));
    let mut config = ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, key_der)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Serving {
        config: Arc::new(config),
        not_after: issued.certificate.not_after,
        issued_at: now,
        ca_fingerprint: ca.certificate().fingerprint.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::CaRequest;

    #[test]
    fn the_serving_certificate_names_what_kube_apiserver_dials_and_is_replaced_in_time() {
        let now = Utc::now();
        let ca = Authority::create(&CaRequest::new("authz-ca"), now).expect("ca");
        let names = vec![
            "127.0.0.1".to_string(),
            "certop.certop-system.svc".to_string(),
        ];
        let t = template(&names);
        assert_eq!(t.dns_names, vec!["certop.certop-system.svc".to_string()]);
        assert_eq!(
            t.ip_addresses,
            vec!["127.0.0.1".parse::<IpAddr>().expect("ip")]
        );
        let s = serving(&ca, &names, now).expect("serving");
        let fp = ca.certificate().fingerprint.clone();
        assert!(!s.due(Some(&fp), now));
        assert!(!s.due(None, now + chrono::Duration::hours(11)));
        assert!(s.due(Some(&fp), now + chrono::Duration::hours(13)));
        assert!(
            s.due(Some("another"), now),
            "a new CA key replaces it at once"
        );
    }
}
