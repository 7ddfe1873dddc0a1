//! Certificates for tests of every layer, made through the production
//! issuance path (backdate included), never by hand.

use chrono::{Duration, Utc};

use super::{Authority, CaRequest, CertificateInfo, LeafTemplate, PrivateKey, issue};
use crate::api::{KeyAlgorithm, KeyUsage};

/// A CA made a day ago, as `certop pki init` or kubeadm would hold it.
pub fn authority(common_name: &str) -> Authority {
    Authority::create(&CaRequest::new(common_name), Utc::now() - Duration::days(1)).expect("CA")
}

/// A day-long serving certificate `ca` signs now for `name`: one issued
/// without certop, as a revocation names it by content.
pub fn leaf(ca: &Authority, name: &str) -> CertificateInfo {
    let key = PrivateKey::generate(KeyAlgorithm::EcdsaP256).expect("key");
    let template = LeafTemplate {
        common_name: Some(name.to_string()),
        organizations: Vec::new(),
        dns_names: vec![name.to_string()],
        ip_addresses: Vec::new(),
        uris: Vec::new(),
        usages: [KeyUsage::DigitalSignature, KeyUsage::ServerAuth]
            .into_iter()
            .collect(),
        key_algorithm: KeyAlgorithm::EcdsaP256,
        lifetime: Duration::days(1),
        crl_distribution_point: None,
    };
    issue(&template, &key, ca, Utc::now())
        .expect("issue")
        .certificate
}
