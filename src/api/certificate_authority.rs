use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use kube::core::Duration;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::{DNS_SUBDOMAIN_PATTERN, DURATION_PATTERN, KeyAlgorithm, Subject};

/// One internal certificate authority. certop creates its key (or adopts an
/// existing one), signs certificates and CRLs with it, and publishes its
/// certificate as a trust bundle.
#[derive(CustomResource, KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "certop.dev",
    version = "v1alpha1",
    kind = "CertificateAuthority",
    plural = "certificateauthorities",
    shortname = "ca",
    status = "CertificateAuthorityStatus",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(name = "Expires", type_ = "string", json_path = ".status.notAfter"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct CertificateAuthoritySpec {
    /// The subject of the CA certificate; ignored for an adopted CA.
    pub subject: Subject,
    /// The algorithm of a generated CA key. Default ECDSA-P256.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_algorithm: Option<KeyAlgorithm>,
    /// Lifetime of a generated CA certificate, in Go duration syntax. Default 87600h (10 years).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32), regex(pattern = DURATION_PATTERN))]
    pub duration: Option<Duration>,
    /// Where the CA's certificate and key live.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_source: Option<CaKeySource>,
    /// Certificate revocation list settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crl: Option<CrlSettings>,
    /// Publication of the CA certificate as a ConfigMap in selected namespaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust_bundle: Option<TrustBundle>,
}

/// The Secret, in the operator's namespace, that holds the CA's certificate
/// and key (`tls.crt`/`tls.key`, or kubeadm's `ca.crt`/`ca.key`).
#[derive(KubeSchema, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CaKeySource {
    /// Name of the Secret. Default `<ca-name>-ca`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253), regex(pattern = DNS_SUBDOMAIN_PATTERN))]
    pub secret_name: Option<String>,
    /// When true the Secret must already exist (for example kubeadm's CA);
    /// certop validates and uses it and never generates a key for this CA.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adopt: Option<bool>,
}

/// How the CA publishes revocation.
#[derive(KubeSchema, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new("!has(self.validity) || !has(self.refreshBefore) || duration(self.refreshBefore) < duration(self.validity)").message("crl.refreshBefore must be shorter than crl.validity"))]
pub struct CrlSettings {
    /// URL written into issued certificates' CRL distribution point.
    /// Default: the operator Service's `/crl/<ca>.crl`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 512))]
    #[x_kube(validation = kube::core::Rule::new("isURL(self) && (self.startsWith('http://') || self.startsWith('https://'))").message("crl.distributionPointURL must be an http:// or https:// URL"))]
    #[serde(rename = "distributionPointURL")]
    pub distribution_point_url: Option<String>,
    /// How long a CRL is valid (nextUpdate - thisUpdate). Default 24h.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32), regex(pattern = DURATION_PATTERN))]
    pub validity: Option<Duration>,
    /// How long before nextUpdate the CRL is re-signed. Default a third of validity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32), regex(pattern = DURATION_PATTERN))]
    pub refresh_before: Option<Duration>,
}

/// Publication of the CA certificate (`ca.crt`) as a ConfigMap.
#[derive(KubeSchema, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TrustBundle {
    /// Name of the ConfigMap. Default `<ca-name>-ca`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253), regex(pattern = DNS_SUBDOMAIN_PATTERN))]
    pub config_map_name: Option<String>,
    /// Namespaces that receive the ConfigMap.
    pub namespace_selector: LabelSelector,
}

/// What certop observed of a CertificateAuthority.
#[derive(KubeSchema, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CertificateAuthorityStatus {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Hex serial number of the CA certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial_number: Option<String>,
    /// SHA-256 fingerprint of the CA certificate, colon-separated hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<chrono::DateTime<chrono::Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_after: Option<chrono::DateTime<chrono::Utc>>,
    /// Number of the CRL most recently published.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crl_number: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crl_this_update: Option<chrono::DateTime<chrono::Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crl_next_update: Option<chrono::DateTime<chrono::Utc>>,
    /// Certificates issued by this CA that have not yet expired.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issued_certificates: Option<i64>,
    /// Revoked certificates that have not yet expired (CRL entries).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_certificates: Option<i64>,
}
