use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::{
    DNS_LABEL_PATTERN, DNS_NAME_PATTERN, DNS_SUBDOMAIN_PATTERN, DURATION_PATTERN, GoDuration,
    KeyAlgorithm,
};

/// One certificate and its private key, kept current in a Secret.
#[derive(CustomResource, KubeSchema, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "certop.dev",
    version = "v1",
    kind = "ClusterCertificate",
    doc = "A certificate and its private key that certop issues from a CertificateAuthority (spec.issuerRef) into a kubernetes.io/tls Secret (spec.secretName in spec.secretNamespace), and re-issues before it expires (spec.renewBefore), when its spec changes, or when it is revoked. Cluster-scoped.",
    plural = "clustercertificates",
    shortname = "ccert",
    status = "ClusterCertificateStatus",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(name = "Secret", type_ = "string", json_path = ".spec.secretName"),
    printcolumn(name = "Issuer", type_ = "string", json_path = ".spec.issuerRef.name"),
    printcolumn(name = "Expires", type_ = "string", json_path = ".status.notAfter"),
    printcolumn(name = "Renewal", type_ = "string", json_path = ".status.renewalTime"),
    printcolumn(
        name = "Status",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].message",
        priority = "1"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!(has(self.renewBefore) && has(self.renewBeforePercentage))").message("set at most one of renewBefore and renewBeforePercentage"))]
#[x_kube(validation = Rule::new("!has(self.renewBefore) || duration(self.renewBefore) < duration(has(self.duration) ? self.duration : '2160h')").message("renewBefore must be shorter than duration (default 2160h)"))]
#[x_kube(validation = Rule::new("!has(self.duration) || duration(self.duration) >= duration('1m')").message("duration must be at least 1m"))]
#[x_kube(validation = Rule::new("has(self.profile) || has(self.commonName) || (has(self.dnsNames) && size(self.dnsNames) > 0) || (has(self.ipAddresses) && size(self.ipAddresses) > 0) || (has(self.uris) && size(self.uris) > 0)").message("set a profile, or at least one of commonName, dnsNames, ipAddresses, uris"))]
#[x_kube(validation = Rule::new("!has(self.profile) || !(self.profile in ['kube-apiserver', 'etcd-server', 'etcd-peer', 'kubelet-client', 'kubelet-serving']) || has(self.nodeName)").message("this profile names the node: set nodeName"))]
pub struct ClusterCertificateSpec {
    /// The CertificateAuthority that signs this certificate.
    pub issuer_ref: IssuerRef,
    /// The CertificatePolicy this certificate is issued under. Creating or
    /// changing a spec that names a policy needs the RBAC verb `use` on it
    /// (enforced at admission by the ValidatingAdmissionPolicy
    /// `certop-policy-use`). Required when any CertificatePolicy governs
    /// the issuer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_ref: Option<super::PolicyRef>,
    /// Name of the `kubernetes.io/tls` Secret that receives the certificate and key.
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS_SUBDOMAIN_PATTERN))]
    pub secret_name: String,
    /// Namespace of that Secret.
    #[schemars(length(min = 1, max = 63), regex(pattern = DNS_LABEL_PATTERN))]
    pub secret_namespace: String,
    /// A preset for one of the cluster's components (kubeadm's set): it fixes
    /// the subject, usages and well-known SANs that the component expects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<Profile>,
    /// The node a profile is for (its name becomes a subject or SAN).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS_SUBDOMAIN_PATTERN))]
    pub node_name: Option<String>,
    /// The node's advertise address, added to the SANs of the kube-apiserver and etcd profiles.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 45))]
    #[x_kube(validation = Rule::new("isIP(self)").message("advertiseAddress must be an IPv4 or IPv6 address"))]
    pub advertise_address: Option<String>,
    /// The Service CIDR, or two for dual-stack (`10.96.0.0/12,fd00:10:96::/112`); the
    /// first address of the first is a SAN of the kube-apiserver profile. Default 10.96.0.0/12.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 100))]
    #[x_kube(validation = Rule::new("size(self.split(',')) <= 2 && self.split(',').all(c, isCIDR(c))").message("serviceCIDR must be a CIDR such as 10.96.0.0/12, or two separated by a comma (dual-stack)"))]
    #[serde(rename = "serviceCIDR")]
    pub service_cidr: Option<String>,
    /// The cluster's DNS domain, for the kube-apiserver profile. Default cluster.local.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS_SUBDOMAIN_PATTERN))]
    pub dns_domain: Option<String>,
    /// The subject's common name (for a client certificate, its Kubernetes
    /// user name). Without a profile, set it or at least one of dnsNames,
    /// ipAddresses, uris.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    pub common_name: Option<String>,
    /// The subject's organization (for a client certificate, its Kubernetes
    /// group). One: certop cannot yet sign a subject with two.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 1), inner(length(min = 1, max = 64)))]
    pub organizations: Vec<String>,
    /// DNS subject alternative names; `*.` may lead for a wildcard.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100), inner(length(min = 1, max = 253), regex(pattern = DNS_NAME_PATTERN)))]
    #[x_kube(validation = Rule::new("self.all(n, !isIP(n))").message("an IP address belongs in ipAddresses, not dnsNames"))]
    pub dns_names: Vec<String>,
    /// IP address subject alternative names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100), inner(length(max = 45)))]
    #[x_kube(validation = Rule::new("self.all(ip, isIP(ip))").message("each of ipAddresses must be an IPv4 or IPv6 address"))]
    pub ip_addresses: Vec<String>,
    /// URI subject alternative names, such as SPIFFE IDs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 20), inner(length(max = 512)))]
    #[x_kube(validation = Rule::new("self.all(u, isURL(u))").message("each of uris must be an absolute URI"))]
    pub uris: Vec<String>,
    /// Key usages and extended key usages; a profile sets its own and refuses these.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub usages: Vec<KeyUsage>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key: Option<PrivateKeySettings>,
    /// Lifetime of the certificate, in Go duration syntax. Default 2160h (90 days).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32), regex(pattern = DURATION_PATTERN))]
    #[x_kube(validation = Rule::new("duration(self) <= duration('876000h')").message("duration must be at most 876000h (100 years)"))]
    pub duration: Option<GoDuration>,
    /// Renew this long before notAfter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32), regex(pattern = DURATION_PATTERN))]
    #[x_kube(validation = Rule::new("duration(self) <= duration('876000h')").message("renewBefore must be at most 876000h (100 years)"))]
    pub renew_before: Option<GoDuration>,
    /// Renew when this percentage of the lifetime remains. Default: renew at
    /// two thirds of the lifetime (33).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 99))]
    pub renew_before_percentage: Option<i32>,
    /// Extra labels and annotations for the Secret.
    // Boxed: rarely set, and every pass's copy pays for inline size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_template: Option<Box<SecretTemplate>>,
    /// What happens to the Secret when this ClusterCertificate is deleted. Default Delete.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_deletion_policy: Option<SecretDeletionPolicy>,
    /// Revoke the current certificate (reason cessationOfOperation) when
    /// this ClusterCertificate is deleted. Default true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoke_on_delete: Option<bool>,
}

/// What happens to a certificate's Secret when the ClusterCertificate goes.
#[derive(
    schemars::JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize,
)]
pub enum SecretDeletionPolicy {
    /// Delete the Secret with the ClusterCertificate.
    #[default]
    Delete,
    /// Keep the Secret (certop stops managing it).
    Retain,
}

/// The CertificateAuthority that signs a certificate.
#[derive(KubeSchema, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct IssuerRef {
    /// The CertificateAuthority's name.
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS_SUBDOMAIN_PATTERN))]
    pub name: String,
}

/// Presets for the certificates the cluster's own components need.
#[derive(schemars::JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Profile {
    KubeApiserver,
    KubeApiserverKubeletClient,
    KubeApiserverEtcdClient,
    FrontProxyClient,
    EtcdServer,
    EtcdPeer,
    EtcdHealthcheckClient,
    Admin,
    SuperAdmin,
    ControllerManager,
    Scheduler,
    KubeletClient,
    KubeletServing,
    Server,
    Client,
}

/// Key usages (RFC 5280 keyUsage) and extended key usages, named as in cert-manager.
#[derive(
    schemars::JsonSchema,
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
)]
pub enum KeyUsage {
    #[serde(rename = "digital signature")]
    DigitalSignature,
    #[serde(rename = "content commitment")]
    ContentCommitment,
    #[serde(rename = "key encipherment")]
    KeyEncipherment,
    #[serde(rename = "key agreement")]
    KeyAgreement,
    #[serde(rename = "data encipherment")]
    DataEncipherment,
    #[serde(rename = "server auth")]
    ServerAuth,
    #[serde(rename = "client auth")]
    ClientAuth,
    #[serde(rename = "code signing")]
    CodeSigning,
    #[serde(rename = "email protection")]
    EmailProtection,
    #[serde(rename = "ocsp signing")]
    OcspSigning,
    #[serde(rename = "timestamping")]
    TimeStamping,
}

/// The certificate's private key.
#[derive(KubeSchema, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PrivateKeySettings {
    /// The private key's algorithm. Default ECDSA-P256.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub algorithm: Option<KeyAlgorithm>,
    /// Whether a renewal replaces the key. Default Always.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation_policy: Option<RotationPolicy>,
}

/// Whether a renewal generates a new private key.
#[derive(
    schemars::JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize,
)]
pub enum RotationPolicy {
    /// Every issuance generates a new key.
    #[default]
    Always,
    /// Keep the key while it matches the spec's algorithm.
    Never,
}

/// Extra metadata for the Secret.
#[derive(KubeSchema, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SecretTemplate {
    /// Labels: keys and values as Kubernetes allows them (checked at admission).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 64, "additionalProperties" = {"type": "string", "maxLength": 63}))]
    #[x_kube(validation = Rule::new(r"self.all(k, size(k) <= 317 && k.matches('^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$') && self[k].matches('^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$'))").message("secretTemplate.labels: each key must be [prefix/]name (name at most 63 characters of letters, digits, '-', '_', '.') and each value at most 63 such characters"))]
    pub labels: BTreeMap<String, String>,
    /// Annotations: keys as Kubernetes allows them, 256 KiB in all (checked
    /// by certop, which says which key is at fault).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// Why a `spec.secretTemplate` cannot be written as the Secret's metadata;
/// each names the key and the rule it breaks.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SecretTemplateError {
    #[error("spec.secretTemplate.{field} key {key:?}: {rule}")]
    Key {
        field: &'static str,
        key: String,
        rule: &'static str,
    },
    #[error(
        "spec.secretTemplate.labels[{key:?}] value {value:?} must be at most 63 characters of letters, digits, '-', '_' and '.', starting and ending with a letter or digit"
    )]
    LabelValue { key: String, value: String },
    #[error("spec.secretTemplate.annotations exceed 256 KiB in total")]
    AnnotationsTooLarge,
}

impl SecretTemplate {
    /// Checks every key and value as the API server will when the Secret
    /// is written, so a bad one is an `InvalidSpec` condition that names it
    /// instead of a write refused on every retry.
    pub fn validate(&self) -> Result<(), SecretTemplateError> {
        let key_of = |field: &'static str, key: &str| {
            metadata_key(key).map_err(|rule| SecretTemplateError::Key {
                field,
                key: key.to_string(),
                rule,
            })
        };
        for (key, value) in &self.labels {
            key_of("labels", key)?;
            if value.len() > 63 || !(value.is_empty() || is_label_name(value)) {
                return Err(SecretTemplateError::LabelValue {
                    key: key.clone(),
                    value: value.clone(),
                });
            }
        }
        for key in self.annotations.keys() {
            key_of("annotations", key)?;
        }
        let size: usize = self
            .annotations
            .iter()
            .map(|(k, v)| k.len() + v.len())
            .sum();
        if size > 256 * 1024 {
            return Err(SecretTemplateError::AnnotationsTooLarge);
        }
        Ok(())
    }
}

/// A label or annotation key: an optional DNS-subdomain prefix and `/`,
/// then a name of at most 63 characters.
fn metadata_key(key: &str) -> Result<(), &'static str> {
    let (prefix, name) = match key.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if let Some(p) = prefix {
        let label = is_dns_subdomain(p);
        if p.is_empty() || p.len() > 253 || !label {
            return Err("the prefix before '/' must be a lower-case DNS subdomain");
        }
    }
    if name.is_empty() || name.len() > 63 || !is_label_name(name) {
        return Err(
            "the name must be 1 to 63 characters of letters, digits, '-', '_' and '.', starting and ending with a letter or digit",
        );
    }
    Ok(())
}

fn is_label_name(s: &str) -> bool {
    let ok = |c: char| c.is_ascii_alphanumeric();
    s.starts_with(ok) && s.ends_with(ok) && s.chars().all(|c| ok(c) || matches!(c, '-' | '_' | '.'))
}

fn is_dns_subdomain(s: &str) -> bool {
    s.split('.').all(|label| {
        let ok = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
        !label.is_empty()
            && label.len() <= 63
            && label.starts_with(ok)
            && label.ends_with(ok)
            && label.chars().all(|c| ok(c) || c == '-')
    })
}

/// What certop observed of a ClusterCertificate.
#[derive(KubeSchema, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterCertificateStatus {
    /// The conditions, `Ready` first of all, each with a reason and a
    /// message that says what to fix.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The `metadata.generation` of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `namespace/name` of the Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// Start of the current certificate's validity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<chrono::DateTime<chrono::Utc>>,
    /// End of the current certificate's validity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_after: Option<chrono::DateTime<chrono::Utc>>,
    /// When certop renews the certificate (jitter included).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renewal_time: Option<chrono::DateTime<chrono::Utc>>,
    /// Hex serial number of the current certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial_number: Option<String>,
    /// SHA-256 fingerprint of the current certificate, colon-separated hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    /// Number of issuances so far; each issuance increments it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<i64>,
    /// Consecutive failed issuance attempts; reset by a success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_issuance_attempts: Option<i32>,
    /// When the last failed issuance attempt happened; the next one waits
    /// a backoff that grows with `failedIssuanceAttempts`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failure_time: Option<chrono::DateTime<chrono::Utc>>,
    /// When certop first saw the CA's CRL distribution point change for
    /// this certificate: its re-issue is spread over the hour after.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_change_since: Option<chrono::DateTime<chrono::Utc>>,
    /// The Secret as the last write of this status saw it. A renewal
    /// replaces a Secret still at that version without reading it first:
    /// the write fails if the Secret changed since, and the renewal then
    /// reads it.
    // Boxed: every pass's copy pays for inline size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_version: Option<Box<SecretVersion>>,
    /// The most recent revocation of one of this certificate's serials.
    // Boxed: rarely set, and every pass's copy pays for inline size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_revocation: Option<Box<RevocationRecord>>,
}

/// A version of a certificate's Secret, and what it holds that a renewal
/// needs to know.
#[derive(KubeSchema, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecretVersion {
    /// The Secret's `metadata.resourceVersion`.
    pub resource_version: String,
    /// The renewal request (`certop.dev/renew-requested-at` on this
    /// object) its certificate answers, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renewal_request: Option<String>,
}

/// A revoked serial, as the status shows it.
#[derive(KubeSchema, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RevocationRecord {
    /// Hex serial number of the revoked certificate.
    pub serial_number: String,
    pub reason: super::RevocationReason,
    /// The revocation date the CRL gives it.
    pub revoked_at: chrono::DateTime<chrono::Utc>,
    /// The CertificateRevocation that asked for it, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revocation: Option<String>,
}
