use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::IssuerRef;
use super::RevocationReason;

/// A request to revoke certificates a CA issued: by serial number, or by
/// rule (organization, DNS name or suffix, IP address, URI or URI prefix),
/// for certificates issued before a time. certop revokes every live certificate that
/// matches, lists it in the CA's CRL, and re-issues affected
/// ClusterCertificates with new keys.
#[derive(CustomResource, KubeSchema, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "certop.dev",
    version = "v1",
    kind = "CertificateRevocation",
    doc = "A revocation of certificates a CertificateAuthority issued, by serial number or by rule; certop lists them in the CA's CRL and re-issues the ClusterCertificates they cover with new keys. Deleting it does not un-revoke what it revoked. Cluster-scoped.",
    plural = "certificaterevocations",
    shortname = "crev",
    status = "CertificateRevocationStatus",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(name = "Issuer", type_ = "string", json_path = ".spec.issuerRef.name"),
    printcolumn(name = "Reason", type_ = "string", json_path = ".spec.reason"),
    printcolumn(
        name = "Revoked",
        type_ = "integer",
        json_path = ".status.revokedCertificates"
    ),
    printcolumn(
        name = "Status",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].message",
        priority = "1"
    ),
    printcolumn(
        name = "API server",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"ApiServerEnforceable\")].reason",
        priority = "1"
    ),
    printcolumn(
        name = "Last denied",
        type_ = "date",
        json_path = ".status.apiServer.lastDeniedTime",
        priority = "1"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new("(has(self.serialNumbers) && size(self.serialNumbers) > 0) || (has(self.organizations) && size(self.organizations) > 0) || (has(self.dnsNames) && size(self.dnsNames) > 0) || (has(self.ipAddresses) && size(self.ipAddresses) > 0) || (has(self.certificateSHA256s) && size(self.certificateSHA256s) > 0) || (has(self.certificates) && size(self.certificates) > 0) || (has(self.uris) && size(self.uris) > 0)").message("match something: set serialNumbers, organizations, dnsNames, ipAddresses, certificateSHA256s, certificates or uris"))]
#[x_kube(validation = kube::core::Rule::new("self == oldSelf").message("a CertificateRevocation cannot be changed; create another one"))]
pub struct CertificateRevocationSpec {
    /// The CertificateAuthority whose certificates are revoked.
    pub issuer_ref: IssuerRef,
    /// RFC 5280 reason code. Default unspecified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<RevocationReason>,
    /// Hex serial numbers (as `openssl x509 -serial` prints them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = 1000),
        inner(length(min = 1, max = 40), regex(pattern = r"^[0-9a-fA-F]+$"))
    )]
    pub serial_numbers: Vec<String>,
    /// Certificates with one of these organizations (groups).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100), inner(length(min = 1, max = 64)))]
    pub organizations: Vec<String>,
    /// Certificates naming one of these DNS names; a leading `.` matches
    /// every name under that suffix.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = 100),
        inner(
            length(min = 1, max = 253),
            regex(
                pattern = r"^\.?(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
            )
        )
    )]
    pub dns_names: Vec<String>,
    /// Certificates naming one of these IP addresses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100), inner(length(max = 45)))]
    #[x_kube(validation = kube::core::Rule::new("self.all(ip, isIP(ip))").message("each of ipAddresses must be an IPv4 or IPv6 address"))]
    pub ip_addresses: Vec<String>,
    /// Certificates naming one of these URIs (a pod certificate names its
    /// SPIFFE ID, `spiffe://<trustDomain>/ns/<namespace>/sa/<serviceAccount>`).
    /// One ending in `/` matches every URI that starts with it:
    /// `spiffe://cluster.local/ns/shop/` revokes the certificates of every
    /// pod in namespace shop; without it the URI matches exactly:
    /// `spiffe://cluster.local/ns/shop/sa/cart` revokes those of one
    /// ServiceAccount's pods. Certificates issued before certop recorded
    /// URIs in its ledger are not matched (revoke them by serial).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = 100),
        inner(
            length(min = 1, max = 2048),
            regex(pattern = r"^[a-zA-Z][a-zA-Z0-9+.-]*:[^\s]+$")
        )
    )]
    pub uris: Vec<String>,
    /// SHA-256 digests (hex) of certificates to refuse at kube-apiserver,
    /// through certop's authorization webhook: for certificates of this CA
    /// that certop did not issue (by `certop pki` or kubeadm), whose digest
    /// its ledger cannot know. `kubectl certop revoke --cert FILE` sets it
    /// with the certificate's serial.
    #[serde(
        default,
        rename = "certificateSHA256s",
        skip_serializing_if = "Vec::is_empty"
    )]
    #[schemars(
        length(max = 1000),
        inner(length(min = 64, max = 64), regex(pattern = r"^[0-9a-fA-F]{64}$"))
    )]
    pub certificate_sha256s: Vec<String>,
    /// Certificates of this CA, PEM, that certop did not issue (by
    /// `certop pki` or kubeadm against an adopted CA). certop checks that
    /// the CA signed each one and records it in the CA's ledger as revoked,
    /// so its CRL lists it and kube-apiserver refuses it until it expires,
    /// even after this object is deleted. `kubectl certop revoke --cert
    /// FILE` sets it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 10), inner(length(min = 1, max = 16384)))]
    pub certificates: Vec<String>,
    /// Only certificates issued before this time. Default: when this
    /// object was created, so the rule revokes what exists now and does not
    /// block re-issuance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issued_before: Option<chrono::DateTime<chrono::Utc>>,
}

/// What a CertificateRevocation did.
#[derive(KubeSchema, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CertificateRevocationStatus {
    /// The conditions, `Ready` first of all, each with a reason and a
    /// message that says what to fix.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The `metadata.generation` of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// How many certificates this revocation revoked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_certificates: Option<i64>,
    /// When it last revoked a certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_revocation_time: Option<chrono::DateTime<chrono::Utc>>,
    /// The certificates it revoked (the first 2,000), each until it
    /// expires: a record kept apart from the CA's ledger, so
    /// that the CA's CRL keeps listing them even if the ledger shard that
    /// holds them is lost. certop writes it; the CRL is built from the
    /// ledger, these records and the last CRL it verified, together.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 2000))]
    pub revoked: Vec<RevokedSerial>,
    /// Where the CA's CRL lists these certificates: for each CA key that
    /// signed some of them, the number of the first CRL that lists them
    /// all (what `openssl crl -crlnumber` prints). Written by the
    /// revocation controller with the status it derives.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub crl_published: Vec<CrlPublished>,
    /// What kube-apiserver's requests to certop's authorization webhook
    /// show: that it asks, and whether it was refused a certificate this
    /// revocation revoked. Written by the webhook (field manager
    /// `certop-authz`), never by the revocation controller, at most once
    /// per revocation every 10 seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_server: Option<ApiServerEnforcement>,
}

/// The first CRL of one CA key that lists every certificate of that key a
/// CertificateRevocation revoked.
#[derive(KubeSchema, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CrlPublished {
    /// The index of the CA key whose CRL it is (0, the CA's first key, is
    /// not written).
    #[serde(default, skip_serializing_if = "is_first_key")]
    #[schemars(extend("format" = "int64", "maximum" = 4_294_967_295u64))]
    pub key: u32,
    /// The CRL number (as the CA's `status.crlNumber`).
    pub crl_number: i64,
    /// How many of this revocation's certificates it lists.
    #[schemars(extend("format" = "int64", "maximum" = 4_294_967_295u64))]
    pub certificates: u32,
}

/// What certop's authorization webhook saw of kube-apiserver for one
/// CertificateRevocation: the proof that the API server refuses it.
#[derive(KubeSchema, Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiServerEnforcement {
    /// The last SubjectAccessReview kube-apiserver sent a replica whose
    /// index refuses this revocation's certificates: the webhook is
    /// configured and answering. Refreshed at most every 10 minutes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_review_time: Option<chrono::DateTime<chrono::Utc>>,
    /// The first request made with one of its certificates that the
    /// webhook refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_denied_time: Option<chrono::DateTime<chrono::Utc>>,
    /// The latest such request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_denied_time: Option<chrono::DateTime<chrono::Utc>>,
    /// How many such requests the webhook refused (summed over replicas).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub denied_requests: Option<i64>,
}

/// How many revoked certificates a CertificateRevocation's status records
/// (about 130 bytes each, well under the API's object size limit); past
/// that the ledger and the copy of the last verified CRL keep the rest.
pub const MAX_RECORDED_SERIALS: usize = 2000;

/// One certificate a CertificateRevocation revoked, as its CA's CRL lists it.
#[derive(KubeSchema, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RevokedSerial {
    /// Lower-case hex, as the ledger and `openssl x509 -serial` (in upper
    /// case) write it.
    pub serial_number: String,
    pub reason: RevocationReason,
    /// The revocation date the CRL gives it.
    pub revoked_at: chrono::DateTime<chrono::Utc>,
    /// The certificate's notAfter: the CRL lists it until then (RFC 5280).
    pub not_after: chrono::DateTime<chrono::Utc>,
    /// The index of the CA key that signed it (0, the CA's first key, is
    /// not written): each key has its own CRL.
    #[serde(default, skip_serializing_if = "is_first_key")]
    #[schemars(extend("format" = "int64", "maximum" = 4_294_967_295u64))]
    pub key: u32,
}

fn is_first_key(key: &u32) -> bool {
    *key == 0
}
