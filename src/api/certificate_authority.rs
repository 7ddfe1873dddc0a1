use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::{DNS_SUBDOMAIN_PATTERN, DURATION_PATTERN, GoDuration, KeyAlgorithm, Subject};

/// The certificate and key of a CA Secret: certop's `tls.*`, or kubeadm's
/// `ca.*` (how a person lays out a CA to adopt).
pub fn ca_key_pair(secret: &k8s_openapi::api::core::v1::Secret) -> Option<(&[u8], &[u8])> {
    let data = secret.data.as_ref()?;
    let pair = |c: &str, k: &str| Some((data.get(c)?.0.as_slice(), data.get(k)?.0.as_slice()));
    pair("tls.crt", "tls.key").or_else(|| pair("ca.crt", "ca.key"))
}

/// Default CA lifetime: ten years.
pub const DEFAULT_CA_LIFETIME_HOURS: i64 = 87_600;

/// The shortest CA lifetime certop makes: a CA must outlive what it signs.
pub const MIN_CA_LIFETIME: chrono::Duration = chrono::Duration::hours(1);

/// One internal certificate authority. certop creates its key (or adopts an
/// existing one), signs certificates and CRLs with it, and publishes its
/// certificate as a trust bundle.
#[derive(CustomResource, KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "certop.dev",
    version = "v1",
    kind = "CertificateAuthority",
    doc = "An internal certificate authority. certop keeps its key in a Secret in its own namespace (generated, or adopted from an existing Secret), signs with it the ClusterCertificates that name it in issuerRef and the CRLs of its CertificateRevocations, publishes its certificate as a trust bundle, and replaces its key before it expires as spec.rotation says. A CA that has a key never gets a new one: delete and re-create it to start a new CA. Cluster-scoped.",
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
        name = "Rotation",
        type_ = "string",
        json_path = ".status.rotation.phase"
    ),
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
#[x_kube(validation = kube::core::Rule::new("self.subject == oldSelf.subject && (has(self.keyAlgorithm) ? self.keyAlgorithm : 'ECDSA-P256') == (has(oldSelf.keyAlgorithm) ? oldSelf.keyAlgorithm : 'ECDSA-P256') && (has(self.duration) ? self.duration : '') == (has(oldSelf.duration) ? oldSelf.duration : '') && has(self.keySource) == has(oldSelf.keySource) && (!has(self.keySource) || self.keySource == oldSelf.keySource)").message("subject, keyAlgorithm, duration and keySource of a CertificateAuthority are fixed once its key exists; create a new CertificateAuthority to change them"))]
pub struct CertificateAuthoritySpec {
    /// The subject of the CA certificate; ignored for an adopted CA.
    pub subject: Subject,
    /// The algorithm of a generated CA key. Default ECDSA-P256.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_algorithm: Option<KeyAlgorithm>,
    /// Lifetime of a generated CA certificate, in Go duration syntax. Default 87600h (10 years).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32), regex(pattern = DURATION_PATTERN))]
    #[x_kube(validation = kube::core::Rule::new("duration(self) >= duration('1h') && duration(self) <= duration('876000h')").message("duration must be between 1h and 876000h (100 years)"))]
    pub duration: Option<GoDuration>,
    /// Where the CA's certificate and key live.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_source: Option<CaKeySource>,
    /// Certificate revocation list settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crl: Option<CrlSettings>,
    /// Publication of the CA certificate as a ConfigMap in selected namespaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust_bundle: Option<TrustBundle>,
    /// What this CA may sign; the rest is refused with a reason. Without
    /// it the CA signs anything but `system:masters` and the `super-admin`
    /// profile, which must be allowed by name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<IssuancePolicy>,
    /// Sign only under a CertificatePolicy: while none names this CA,
    /// nothing is signed (instead of anything but privileged identities).
    /// Set it on every CA whose certificates are worth more than their
    /// names: any client certificate of etcd's CA is etcd's root. Default
    /// false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub require_policy: Option<bool>,
    /// When and how the CA replaces its own key before it expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation: Option<CaRotation>,
    /// Sign PodCertificateRequests for the signer `certop.dev/<ca name>`
    /// and publish the CA as ClusterTrustBundles of that signer. `{}`
    /// opts in with the defaults; without it certop never touches a
    /// PodCertificateRequest for this CA.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_certificates: Option<PodCertificates>,
}

/// What a CA signs for pods (PodCertificateRequests): a leaf whose only
/// name is the pod's SPIFFE ID, `spiffe://<trustDomain>/ns/<namespace>/sa/<serviceAccount>`.
#[derive(KubeSchema, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodCertificates {
    /// The longest lifetime of a pod certificate; a request's
    /// maxExpirationSeconds, the CA's spec.policy.maxDuration and its own
    /// notAfter may make it shorter. At least 1h (the API's shortest), at
    /// most 8760h. Default 24h.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32), regex(pattern = DURATION_PATTERN))]
    #[x_kube(validation = kube::core::Rule::new("duration(self) >= duration('1h') && duration(self) <= duration('8760h')").message("podCertificates.maxDuration must be between 1h and 8760h (a year)"))]
    pub max_duration: Option<GoDuration>,
    /// The SPIFFE trust domain of the pods' IDs. Default `cluster.local`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 255), regex(pattern = TRUST_DOMAIN_PATTERN))]
    pub trust_domain: Option<String>,
    /// The keys of a request's unverifiedUserAnnotations this CA reads;
    /// a request with any other key is Denied
    /// (InvalidUnverifiedUserAnnotations). certop understands one:
    /// `certop.dev/dns-names` (comma-separated DNS names added to the
    /// leaf, each still checked by the CA's policies). Default none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    #[x_kube(validation = kube::core::Rule::new("self.all(k, k in ['certop.dev/dns-names'])").message("podCertificates.allowedUnverifiedAnnotations may list only certop.dev/dns-names"))]
    pub allowed_unverified_annotations: Vec<String>,
}

/// A SPIFFE trust domain: lower-case letters, digits, dots, dashes and underscores.
pub(crate) const TRUST_DOMAIN_PATTERN: &str = r"^[a-z0-9._-]+$";

/// The default SPIFFE trust domain of pod certificates.
pub const DEFAULT_TRUST_DOMAIN: &str = "cluster.local";

/// The default longest lifetime of a pod certificate: a day.
pub const DEFAULT_POD_CERTIFICATE_HOURS: i64 = 24;

/// The unverifiedUserAnnotation certop reads: DNS names for the leaf.
pub const DNS_NAMES_ANNOTATION: &str = "certop.dev/dns-names";

/// `spec.podCertificates` resolved: defaults applied, bounds checked.
#[derive(Clone, Debug, PartialEq)]
pub struct PodCertificateSettings {
    pub max_lifetime: chrono::Duration,
    pub trust_domain: String,
    pub allowed_annotations: Vec<String>,
}

impl PodCertificates {
    /// The settings, or what is wrong with the field (one stored before
    /// admission checked it).
    pub fn settings(&self) -> Result<PodCertificateSettings, CaSpecError> {
        let max_lifetime = duration_or(
            "spec.podCertificates.maxDuration",
            self.max_duration.as_ref(),
            chrono::Duration::hours(DEFAULT_POD_CERTIFICATE_HOURS),
        )?;
        if max_lifetime < chrono::Duration::hours(1) || max_lifetime > chrono::Duration::hours(8760)
        {
            return Err(CaSpecError::PodCertificateDurationOutOfRange(text_of(
                self.max_duration.as_ref(),
            )));
        }
        Ok(PodCertificateSettings {
            max_lifetime,
            trust_domain: self
                .trust_domain
                .clone()
                .unwrap_or_else(|| DEFAULT_TRUST_DOMAIN.to_string()),
            allowed_annotations: self.allowed_unverified_annotations.clone(),
        })
    }
}

/// How a CA rotates: a new key and certificate are trusted beside the old
/// ones for `overlap` before they sign; then every certificate is re-issued
/// by the new CA, and the old one is trusted until none of its
/// certificates is left.
#[derive(KubeSchema, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CaRotation {
    /// How long both CAs are trusted before the new one signs: the time
    /// every client has to reload its trust bundle, counted from when
    /// certop published the new CA in every trust bundle. At least 1m (the
    /// kubelet's sync period: no pod that mounts a bundle can reload it
    /// sooner), at most 8760h. Default 24h.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32), regex(pattern = DURATION_PATTERN))]
    #[x_kube(validation = kube::core::Rule::new("duration(self) >= duration('1m') && duration(self) <= duration('8760h')").message("rotation.overlap must be between 1m and 8760h (a year)"))]
    pub overlap: Option<GoDuration>,
    /// How long before the CA certificate's notAfter a rotation starts by
    /// itself. Default a fifth of the CA's lifetime.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32), regex(pattern = DURATION_PATTERN))]
    #[x_kube(validation = kube::core::Rule::new("duration(self) <= duration('876000h')").message("rotation.renewBefore must be at most 876000h (100 years)"))]
    pub renew_before: Option<GoDuration>,
    /// Whether the CA rotates by itself when renewBefore is reached.
    /// Default true for a CA certop created, false for an adopted one
    /// (whose certificate other files on the nodes trust): rotate those
    /// with `kubectl certop rotate-ca`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub automatic: Option<bool>,
    /// Whether the old CA also signs the new CA's key (a cross-certificate,
    /// added to every chain the new CA issues), so certificates of the new
    /// CA validate for clients that trust only the old one. Default false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cross_sign: Option<bool>,
}

/// What a CertificateAuthority may sign. An empty list allows any value
/// (except `system:masters` and `super-admin`, which must be listed).
#[derive(KubeSchema, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IssuancePolicy {
    /// Profiles a ClusterCertificate may use.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 20))]
    pub allowed_profiles: Vec<crate::api::Profile>,
    /// Organizations (groups) a certificate may carry.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 50), inner(length(min = 1, max = 64)))]
    pub allowed_organizations: Vec<String>,
    /// DNS names a certificate may carry: a name, `.suffix` for every name
    /// under a domain, or `*` for any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100), inner(length(min = 1, max = 253)))]
    #[serde(rename = "allowedDNSNames")]
    pub allowed_dns_names: Vec<String>,
    /// The longest lifetime the CA signs (ClusterCertificates and CSRs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32), regex(pattern = DURATION_PATTERN))]
    #[x_kube(validation = kube::core::Rule::new("duration(self) <= duration('876000h')").message("policy.maxDuration must be at most 876000h (100 years)"))]
    pub max_duration: Option<GoDuration>,
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
#[x_kube(validation = kube::core::Rule::new("!has(self.refreshBefore) || duration(self.refreshBefore) < duration(has(self.validity) ? self.validity : '24h')").message("crl.refreshBefore must be shorter than crl.validity (default 24h)"))]
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
    #[x_kube(validation = kube::core::Rule::new("duration(self) >= duration('1m') && duration(self) <= duration('8760h')").message("crl.validity must be between 1m and 8760h (a year)"))]
    pub validity: Option<GoDuration>,
    /// How long before nextUpdate the CRL is re-signed. Default a third of validity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32), regex(pattern = DURATION_PATTERN))]
    pub refresh_before: Option<GoDuration>,
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
    /// The conditions, `Ready` first of all, each with a reason and a
    /// message that says what to fix.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The `metadata.generation` of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Hex serial number of the CA certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial_number: Option<String>,
    /// SHA-256 fingerprint of the CA certificate, colon-separated hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    /// Start of the CA certificate's validity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<chrono::DateTime<chrono::Utc>>,
    /// End of the CA certificate's validity: it signs nothing valid past it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_after: Option<chrono::DateTime<chrono::Utc>>,
    /// Number of the CRL most recently published.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crl_number: Option<i64>,
    /// thisUpdate of the CRL most recently published: when it was signed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crl_this_update: Option<chrono::DateTime<chrono::Utc>>,
    /// nextUpdate of the CRL most recently published: consumers treat it as
    /// stale after this; certop publishes the next one before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crl_next_update: Option<chrono::DateTime<chrono::Utc>>,
    /// Certificates issued by this CA that have not yet expired.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issued_certificates: Option<i64>,
    /// Revoked certificates that have not yet expired (CRL entries).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_certificates: Option<i64>,
    /// Unexpired certificates whose ledger entry has no SHA-256 (recorded
    /// before certop recorded it, and not filled from a Secret since): once
    /// revoked, kube-apiserver's authorization webhook cannot refuse them.
    /// Revoke such a certificate with `kubectl certop revoke --cert FILE`,
    /// or renew it (`kubectl certop renew`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificates_without_digest: Option<i64>,
    /// The Secret, in the operator's namespace, holding the signing key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_name: Option<String>,
    /// Where the CA's key rotation stands.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation: Option<CaRotationStatus>,
}

/// Where a CA's key rotation stands.
#[derive(KubeSchema, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CaRotationStatus {
    /// `Stable` (one key), `Staged` (a new key trusted, not yet signing)
    /// or `Retiring` (the new key signs; the old one is trusted until its
    /// certificates are gone).
    pub phase: String,
    /// The number of the newest rotation (0: the CA's first key).
    pub number: i64,
    /// Hex serial of the staged CA certificate (phase Staged).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_serial_number: Option<String>,
    /// Hex serial of the CA certificate being retired (phase Retiring).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_serial_number: Option<String>,
    /// Unexpired certificates of the retiring CA (phase Retiring).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_certificates: Option<i64>,
    /// When the next step is due: the switch (Staged), or the next
    /// automatic rotation (Stable).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_step_at: Option<chrono::DateTime<chrono::Utc>>,
    /// The certificates that keep the retiring CA trusted (phase
    /// Retiring), from the ledger: `<serial> ClusterCertificate <name>`
    /// (marked when that ClusterCertificate is gone and its Secret was
    /// kept), or `<serial> (CSR)` for one signed for a
    /// CertificateSigningRequest; the first 20, then how many more.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub previous_holders: Vec<String>,
    /// certop's own record of the rotation, the state it acts on. Only
    /// certop writes it (the status subresource, which `kubectl edit`,
    /// `apply` and `replace` of the CA do not touch); the rotation
    /// annotations on the CA mirror it, and a hand edit of them is undone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record: Option<CaRotationRecord>,
}

/// What certop recorded of a CA's keys. Written in one status write per
/// rotation step (at the resourceVersion it read), so a step is taken
/// once and the next pass reads it back.
#[derive(KubeSchema, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CaRotationRecord {
    /// The newest rotation (0: none yet).
    pub number: i64,
    /// The index of the key that signs.
    pub signing_key: i64,
    /// Fingerprint of the signing CA certificate (the CA's binding).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_fingerprint: Option<String>,
    /// Fingerprint of the staged CA certificate, once bound.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_fingerprint: Option<String>,
    /// Fingerprint of the retiring CA certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_fingerprint: Option<String>,
    /// The rotate request the newest rotation answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answered_request: Option<String>,
    /// When certop had published the staged CA certificate in every trust
    /// bundle, by certop's clock (written only after the publication
    /// succeeded): the overlap is counted from here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_trusted_since: Option<chrono::DateTime<chrono::Utc>>,
    /// When the staged key began to sign, by certop's clock.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub switched_at: Option<chrono::DateTime<chrono::Utc>>,
    /// The retiring CA certificate (PEM, public): it stays in the trust
    /// bundles from here even if its key's Secret is gone, since trust
    /// needs no key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_certificate: Option<String>,
}

/// A CertificateAuthority's spec resolved into the values certop uses,
/// defaults applied and every bound checked: what admission cannot see (or
/// an object admitted before a rule existed) is refused here with a message
/// that names the field, never a panic.
#[derive(Clone, Debug, PartialEq)]
pub struct CaSettings {
    /// Lifetime of a generated CA certificate.
    pub lifetime: chrono::Duration,
    /// The Secret in the operator's namespace holding the key pair.
    pub secret_name: String,
    /// The trust-bundle ConfigMap's name.
    pub bundle_name: String,
    /// nextUpdate - thisUpdate of each CRL.
    pub crl_validity: chrono::Duration,
    /// How long before nextUpdate the CRL is re-signed.
    pub crl_refresh_before: chrono::Duration,
    /// How long a new key is trusted before it signs.
    pub rotation_overlap: chrono::Duration,
    /// How long before the CA's notAfter it rotates by itself; None when
    /// it rotates only on request.
    pub rotate_before: Option<chrono::Duration>,
    /// Whether the old CA cross-signs the new one.
    pub cross_sign: bool,
    /// What it signs for pods, when it opted in.
    pub pod_certificates: Option<PodCertificateSettings>,
}

/// The shortest rotation overlap: the kubelet's default sync period, the
/// soonest a pod that mounts a trust bundle sees it change. A shorter one
/// would serve certificates of a CA that clients cannot have loaded.
pub const MIN_ROTATION_OVERLAP: chrono::Duration = chrono::Duration::minutes(1);

/// Default rotation overlap: a day.
pub const DEFAULT_ROTATION_OVERLAP_HOURS: i64 = 24;

/// Default CRL validity: a day.
pub const DEFAULT_CRL_VALIDITY_HOURS: i64 = 24;

/// Why a CertificateAuthority's spec cannot be used; each names the field
/// and what to write there (the message of its `InvalidSpec` condition).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CaSpecError {
    #[error("{field}: {source}")]
    Duration {
        field: &'static str,
        source: super::DurationError,
    },
    #[error("spec.duration {0} is shorter than 1h: a CA must outlive what it signs")]
    LifetimeTooShort(String),
    #[error(
        "the CA name is too long for its Secret name {0:?} (at most 253 characters): set spec.keySource.secretName"
    )]
    SecretNameTooLong(String),
    #[error(
        "the CA name is too long for its trust-bundle ConfigMap name {0:?} (at most 253 characters): set spec.trustBundle.configMapName"
    )]
    BundleNameTooLong(String),
    #[error("spec.crl.validity must be between 1m and 8760h, not {0}")]
    CrlValidityOutOfRange(String),
    #[error("spec.crl.refreshBefore must be shorter than spec.crl.validity")]
    CrlRefreshNotShorter,
    #[error("spec.rotation.overlap must be at most 8760h, not {0}")]
    RotationOverlapTooLong(String),
    #[error("spec.podCertificates.maxDuration must be between 1h and 8760h, not {0}")]
    PodCertificateDurationOutOfRange(String),
}

impl CertificateAuthority {
    /// The spec resolved, in steps: the CA's lifetime, its object names,
    /// its CRL schedule, its rotation.
    pub fn settings(&self) -> Result<CaSettings, CaSpecError> {
        let spec = &self.spec;
        let lifetime = duration_or(
            "spec.duration",
            spec.duration.as_ref(),
            chrono::Duration::hours(DEFAULT_CA_LIFETIME_HOURS),
        )?;
        if lifetime < MIN_CA_LIFETIME {
            return Err(CaSpecError::LifetimeTooShort(text_of(
                spec.duration.as_ref(),
            )));
        }
        let (secret_name, bundle_name) = object_names(&kube::ResourceExt::name_any(self), spec)?;
        let (crl_validity, crl_refresh_before) = crl_schedule(spec.crl.as_ref())?;
        let rotation = spec.rotation.clone().unwrap_or_default();
        let adopted = spec.key_source.as_ref().and_then(|k| k.adopt) == Some(true);
        let (rotation_overlap, rotate_before) = rotation_schedule(&rotation, adopted, lifetime)?;
        let pod_certificates = match &spec.pod_certificates {
            Some(p) => Some(p.settings()?),
            None => None,
        };
        Ok(CaSettings {
            pod_certificates,
            cross_sign: rotation.cross_sign.unwrap_or(false),
            rotation_overlap,
            rotate_before,
            lifetime,
            secret_name,
            bundle_name,
            crl_validity,
            crl_refresh_before,
        })
    }
}

/// A duration field of the spec, or `default` when it is not set.
fn duration_or(
    field: &'static str,
    value: Option<&super::GoDuration>,
    default: chrono::Duration,
) -> Result<chrono::Duration, CaSpecError> {
    match value {
        Some(d) => d
            .to_chrono()
            .map_err(|source| CaSpecError::Duration { field, source }),
        None => Ok(default),
    }
}

/// A duration field as written, for a message ("" when not set).
fn text_of(value: Option<&super::GoDuration>) -> String {
    value.map_or("", |d| d.as_str()).to_string()
}

/// The key Secret's and the trust bundle's names: as the spec sets them,
/// else `<name>-ca`, each within the API's 253 characters.
fn object_names(
    name: &str,
    spec: &CertificateAuthoritySpec,
) -> Result<(String, String), CaSpecError> {
    let default_name = format!("{name}-ca");
    let secret_name = spec
        .key_source
        .as_ref()
        .and_then(|k| k.secret_name.clone())
        .unwrap_or_else(|| default_name.clone());
    let bundle_name = spec
        .trust_bundle
        .as_ref()
        .and_then(|t| t.config_map_name.clone())
        .unwrap_or_else(|| default_name.clone());
    if secret_name.len() > 253 {
        return Err(CaSpecError::SecretNameTooLong(default_name));
    }
    if spec.trust_bundle.is_some() && bundle_name.len() > 253 {
        return Err(CaSpecError::BundleNameTooLong(default_name));
    }
    Ok((secret_name, bundle_name))
}

/// (validity, how long before nextUpdate to re-sign) of the CA's CRLs.
fn crl_schedule(
    crl: Option<&CrlSettings>,
) -> Result<(chrono::Duration, chrono::Duration), CaSpecError> {
    let written = crl.and_then(|c| c.validity.as_ref());
    let validity = duration_or(
        "spec.crl.validity",
        written,
        chrono::Duration::hours(DEFAULT_CRL_VALIDITY_HOURS),
    )?;
    if validity < chrono::Duration::minutes(1) || validity > chrono::Duration::hours(8760) {
        return Err(CaSpecError::CrlValidityOutOfRange(text_of(written)));
    }
    let refresh_before = duration_or(
        "spec.crl.refreshBefore",
        crl.and_then(|c| c.refresh_before.as_ref()),
        validity / 3,
    )?;
    if refresh_before >= validity {
        return Err(CaSpecError::CrlRefreshNotShorter);
    }
    Ok((validity, refresh_before))
}

/// (overlap, how long before notAfter the CA rotates by itself: None when
/// only on request) of a CA of `lifetime`; an adopted CA rotates only on
/// request unless `automatic` says otherwise.
fn rotation_schedule(
    rotation: &CaRotation,
    adopted: bool,
    lifetime: chrono::Duration,
) -> Result<(chrono::Duration, Option<chrono::Duration>), CaSpecError> {
    let overlap = duration_or(
        "spec.rotation.overlap",
        rotation.overlap.as_ref(),
        chrono::Duration::hours(DEFAULT_ROTATION_OVERLAP_HOURS),
    )?;
    if overlap > chrono::Duration::hours(8760) {
        return Err(CaSpecError::RotationOverlapTooLong(text_of(
            rotation.overlap.as_ref(),
        )));
    }
    // Admission refuses an overlap under 1m; one stored before that
    // rule (an upgrade) is raised to it rather than stop the CA from
    // signing: below 1m no client that mounts a trust bundle can have
    // loaded the new CA before it signs.
    let overlap = overlap.max(MIN_ROTATION_OVERLAP);
    let rotate_before = match &rotation.renew_before {
        Some(d) => Some(d.to_chrono().map_err(|source| CaSpecError::Duration {
            field: "spec.rotation.renewBefore",
            source,
        })?),
        None => None,
    };
    let rotate_before = rotation
        .automatic
        .unwrap_or(!adopted)
        .then_some(rotate_before)
        .map(|b| b.unwrap_or(lifetime / 5));
    Ok((overlap, rotate_before))
}
