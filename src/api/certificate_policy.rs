use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::{DNS_SUBDOMAIN_PATTERN, DURATION_PATTERN, GoDuration, KeyAlgorithm};
use crate::api::{KeyUsage, Profile};

/// Which identities may be signed, and by whom. A policy applies to the
/// CertificateAuthorities it names; a requester may use it only if RBAC
/// grants them the verb `use` on it (checked at admission for a
/// ClusterCertificate that names it in `spec.policyRef`, and with a
/// SubjectAccessReview for a CSR). A request is signed only if every
/// identity field it carries is allowed: a field the policy leaves out may
/// not be asked for at all. Privileged identities (`system:` users and
/// groups, `kubeadm:` groups, the components' names, the API server's
/// Service names) are allowed only by an exact entry, never by a pattern.
#[derive(CustomResource, KubeSchema, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "certop.dev",
    version = "v1",
    kind = "CertificatePolicy",
    doc = "Which identities the CertificateAuthorities it names may sign: a request is signed only if the policy allows every identity it asks for, and only for a requester RBAC grants the verb use on the policy. Cluster-scoped.",
    plural = "certificatepolicies",
    shortname = "cpol",
    printcolumn(
        name = "Authorities",
        type_ = "string",
        json_path = ".spec.authorities"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct CertificatePolicySpec {
    /// The CertificateAuthorities this policy governs. A CA that any policy
    /// names signs only what one of its policies allows.
    #[schemars(length(min = 1, max = 50), inner(length(min = 1, max = 253), regex(pattern = DNS_SUBDOMAIN_PATTERN)))]
    pub authorities: Vec<String>,
    /// The identity fields a request may carry, and their allowed values.
    #[serde(default)]
    pub allowed: AllowedIdentity,
}

/// Bounds on every identity field. Patterns are literal except `*`, which
/// matches any run of characters (dots included). An omitted name field
/// allows no value; an omitted `usages`, `keyAlgorithms` or `maxDuration`
/// does not bound that attribute.
#[derive(KubeSchema, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AllowedIdentity {
    /// Common names (Kubernetes user names), as patterns.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100), inner(length(min = 1, max = 64)))]
    pub common_names: Vec<String>,
    /// Organizations (Kubernetes groups), as patterns.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100), inner(length(min = 1, max = 64)))]
    pub organizations: Vec<String>,
    /// DNS names, as patterns (`*.example.com` allows every name under
    /// example.com, wildcard names included).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100), inner(length(min = 1, max = 253)))]
    #[serde(rename = "dnsNames")]
    pub dns_names: Vec<String>,
    /// IP addresses, as CIDRs (`10.0.0.0/8`, `fd00::/64`, `10.1.2.3/32`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100), inner(length(max = 49)))]
    #[x_kube(validation = kube::core::Rule::new("self.all(c, isCIDR(c))").message("each of allowed.ipAddresses must be a CIDR such as 10.0.0.0/8 or 10.1.2.3/32"))]
    pub ip_addresses: Vec<String>,
    /// URIs, as patterns (`spiffe://cluster.local/ns/team-a/*`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100), inner(length(min = 1, max = 512)))]
    pub uris: Vec<String>,
    /// Key usages and extended key usages a certificate may carry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 20))]
    pub usages: Option<Vec<KeyUsage>>,
    /// Private key algorithms a certificate may have.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 6))]
    pub key_algorithms: Option<Vec<KeyAlgorithm>>,
    /// Profiles a ClusterCertificate may use. A profile brings no identity
    /// of its own here: the names it fills are checked like any other.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 20))]
    pub profiles: Vec<Profile>,
    /// The longest lifetime signed. A ClusterCertificate asking for more is
    /// refused; a CSR is signed for at most this long.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32), regex(pattern = DURATION_PATTERN))]
    #[x_kube(validation = kube::core::Rule::new("duration(self) >= duration('1m') && duration(self) <= duration('876000h')").message("allowed.maxDuration must be between 1m and 876000h (100 years)"))]
    pub max_duration: Option<GoDuration>,
}

/// The CertificatePolicy a ClusterCertificate is issued under.
#[derive(KubeSchema, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PolicyRef {
    /// The CertificatePolicy's name.
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS_SUBDOMAIN_PATTERN))]
    pub name: String,
}
