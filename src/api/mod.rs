//! The custom resources of the `certop.dev/v1` API: their Rust types,
//! their OpenAPI schemas and the CEL rules the API server enforces at
//! admission. These types are the public API; field names follow the
//! conventions of cert-manager and Kubernetes so users meet no surprises.
//!
//! `v1` is the storage version. `v1alpha1`, the version certop served
//! before, is still served with the identical schema (conversion `None`: the
//! API server only rewrites `apiVersion`), marked deprecated so the API
//! server warns whoever still writes it (docs/user-guide.md, "API versions
//! and deprecation policy").

// kube-derive's `printcolumn(...)` repeats keys such as `type_` by design.
#![allow(clippy::duplicated_attributes)]

mod certificate_authority;
mod certificate_policy;
mod certificate_revocation;
mod cluster_certificate;
mod duration;
pub mod object_name;
mod revocation_reason;
#[cfg(test)]
mod tests;

pub use certificate_authority::{
    CaKeySource, CaRotation, CaRotationRecord, CaRotationStatus, CaSettings, CaSpecError,
    CertificateAuthority, CertificateAuthoritySpec, CertificateAuthorityStatus, CrlSettings,
    DEFAULT_CA_LIFETIME_HOURS, DEFAULT_CRL_VALIDITY_HOURS, DEFAULT_POD_CERTIFICATE_HOURS,
    DEFAULT_ROTATION_OVERLAP_HOURS, DEFAULT_TRUST_DOMAIN, DNS_NAMES_ANNOTATION, IssuancePolicy,
    MIN_CA_LIFETIME, PodCertificateSettings, PodCertificates, TrustBundle, ca_key_pair,
};
pub use certificate_policy::{
    AllowedIdentity, CertificatePolicy, CertificatePolicySpec, PolicyRef,
};
pub use certificate_revocation::{
    ApiServerEnforcement, CertificateRevocation, CertificateRevocationSpec,
    CertificateRevocationStatus, CrlPublished, MAX_RECORDED_SERIALS, RevokedSerial,
};
pub use cluster_certificate::{
    ClusterCertificate, ClusterCertificateSpec, ClusterCertificateStatus, IssuerRef, KeyUsage,
    PrivateKeySettings, Profile, RevocationRecord, RotationPolicy, SecretDeletionPolicy,
    SecretTemplate, SecretTemplateError, SecretVersion,
};
pub use duration::{DurationError, GoDuration, MAX_HOURS};
pub use revocation_reason::RevocationReason;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, CustomResourceDefinitionVersion,
};
use kube::CustomResourceExt;
use kube::KubeSchema;
use serde::{Deserialize, Serialize};

/// The API group of every certop resource.
pub const GROUP: &str = "certop.dev";

/// The version the Rust types are and the API server stores.
pub const VERSION: &str = "v1";

/// The version certop served before `v1`: still served, deprecated.
pub const DEPRECATED_VERSION: &str = "v1alpha1";

/// Labels and annotations certop reads and writes.
pub mod meta {
    /// On every object certop creates; Secrets are watched by it.
    pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
    pub const MANAGED_BY_VALUE: &str = "certop";
    /// On a certificate's Secret: the ClusterCertificate that owns it.
    pub const CERTIFICATE: &str = "certop.dev/certificate";
    /// On a certificate's Secret: the serial of the certificate it holds.
    pub const SERIAL: &str = "certop.dev/serial";
    /// On a certificate's Secret: how many times it has been issued.
    pub const REVISION: &str = "certop.dev/revision";
    /// On a certificate's Secret: the CertificateAuthority that signed it.
    pub const ISSUER: &str = "certop.dev/issuer";
    /// On a CA's Secret and trust-bundle ConfigMaps: the CertificateAuthority.
    pub const CERTIFICATE_AUTHORITY: &str = "certop.dev/certificate-authority";
    /// On a ClusterCertificate: a request to re-issue now (`kubectl certop
    /// renew`). Its value is opaque (the plugin writes a timestamp): a new
    /// value is a new request.
    pub const RENEW_REQUESTED_AT: &str = "certop.dev/renew-requested-at";
    /// On a certificate's Secret: the renewal request its certificate answers.
    pub const RENEWAL_REQUEST: &str = "certop.dev/renewal-request";
    /// On a certificate's Secret: why its certificate was issued (a reason code).
    pub const ISSUE_REASON: &str = "certop.dev/issue-reason";
    /// On a CertificateAuthority: the SHA-256 fingerprint of the CA
    /// certificate it is bound to. A key Secret holding another one is refused.
    pub const CA_FINGERPRINT: &str = "certop.dev/ca-fingerprint";
    /// On a CertificateAuthority: the number of the newest rotation (the
    /// index of the newest key; absent = 0, the first key).
    pub const CA_ROTATION: &str = "certop.dev/ca-rotation";
    /// On a CertificateAuthority: the index of the key that signs.
    pub const CA_SIGNING_KEY: &str = "certop.dev/ca-signing-key";
    /// On a CertificateAuthority: the fingerprint of the staged key of a
    /// rotation (trusted, not yet signing).
    pub const CA_NEXT_FINGERPRINT: &str = "certop.dev/ca-next-fingerprint";
    /// On a CertificateAuthority: the fingerprint of the key a rotation
    /// replaced, trusted until none of its certificates is left.
    pub const CA_PREVIOUS_FINGERPRINT: &str = "certop.dev/ca-previous-fingerprint";
    /// On a CertificateAuthority: a request to rotate (`kubectl certop
    /// rotate-ca`); an opaque value, a new value is a new request.
    pub const ROTATE_REQUESTED_AT: &str = "certop.dev/rotate-requested-at";
    /// On a CertificateAuthority: the rotate request the newest rotation answers.
    pub const ROTATE_REQUEST_ANSWERED: &str = "certop.dev/rotate-request-answered";
    /// On a CertificateAuthority: end the retirement of the CA certificate
    /// with this serial (hex) now, though certificates it signed are still
    /// served (they stop verifying once it leaves the trust bundles). The
    /// serial, not a yes, so it cannot end a later rotation's retirement.
    pub const END_RETIREMENT: &str = "certop.dev/end-retirement";
    /// On a CA key Secret: the index of the key it holds.
    pub const CA_KEY_INDEX: &str = "certop.dev/ca-key-index";
    /// On a ClusterCertificate: the latest revocation of one of its serials
    /// (JSON `RevocationRecord`); if it is the current certificate's, that
    /// certificate is replaced, with a new key, at once.
    pub const REVOCATION: &str = "certop.dev/revocation";
    /// On ledger and CRL ConfigMaps: which CA they belong to.
    pub const LEDGER: &str = "certop.dev/ledger";
    pub const CRL: &str = "certop.dev/crl";
    /// On the copy certop keeps of each CRL it verified (not served): which
    /// CA it belongs to.
    pub const CRL_COPY: &str = "certop.dev/crl-copy";
    /// On a CertificateRevocation that `kubectl certop revoke --cert`
    /// created: the organizations (groups) of the certificate's subject,
    /// as a JSON list, so its status can say whether kube-apiserver can
    /// refuse it (a `system:masters` certificate it cannot). Read only
    /// to warn: it never changes what is revoked.
    pub const SUBJECT_ORGANIZATIONS: &str = "certop.dev/subject-organizations";
    /// Finalizer that lets certop clean up Secrets and ConfigMaps.
    pub const FINALIZER: &str = "certop.dev/cleanup";
}

/// Go's `time.ParseDuration` syntax, which the API server's CEL `duration()`
/// also uses; an OpenAPI pattern so `kubectl apply` names the field at fault.
pub(crate) const DURATION_PATTERN: &str = r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$";

/// A DNS-1123 subdomain, as Kubernetes requires of object names.
pub(crate) const DNS_SUBDOMAIN_PATTERN: &str =
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";

/// A lower-case DNS name for a certificate SAN, optionally a `*.` wildcard.
pub(crate) const DNS_NAME_PATTERN: &str =
    r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";

/// A DNS-1123 label, as Kubernetes requires of namespace names.
pub(crate) const DNS_LABEL_PATTERN: &str = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";

/// Key algorithms certop generates. RSA keys exist for compatibility with
/// kubeadm clusters; ECDSA P-256 is the default everywhere. ECDSA P-521 is
/// only ever a pod's own key (Kubernetes admits it in a
/// PodCertificateRequest): no CRD field admits it and certop never
/// generates it, so it is not in `ALL`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema,
)]
pub enum KeyAlgorithm {
    #[default]
    #[serde(rename = "ECDSA-P256")]
    EcdsaP256,
    #[serde(rename = "ECDSA-P384")]
    EcdsaP384,
    #[serde(rename = "Ed25519")]
    Ed25519,
    #[serde(rename = "RSA-2048")]
    Rsa2048,
    #[serde(rename = "RSA-3072")]
    Rsa3072,
    #[serde(rename = "RSA-4096")]
    Rsa4096,
    #[serde(rename = "ECDSA-P521")]
    #[schemars(skip)]
    EcdsaP521,
}

impl KeyAlgorithm {
    pub const ALL: [KeyAlgorithm; 6] = [
        KeyAlgorithm::EcdsaP256,
        KeyAlgorithm::EcdsaP384,
        KeyAlgorithm::Ed25519,
        KeyAlgorithm::Rsa2048,
        KeyAlgorithm::Rsa3072,
        KeyAlgorithm::Rsa4096,
    ];

    /// The name used in manifests and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyAlgorithm::EcdsaP256 => "ECDSA-P256",
            KeyAlgorithm::EcdsaP384 => "ECDSA-P384",
            KeyAlgorithm::Ed25519 => "Ed25519",
            KeyAlgorithm::Rsa2048 => "RSA-2048",
            KeyAlgorithm::Rsa3072 => "RSA-3072",
            KeyAlgorithm::Rsa4096 => "RSA-4096",
            KeyAlgorithm::EcdsaP521 => "ECDSA-P521",
        }
    }

    pub fn is_rsa(self) -> bool {
        matches!(
            self,
            KeyAlgorithm::Rsa2048 | KeyAlgorithm::Rsa3072 | KeyAlgorithm::Rsa4096
        )
    }
}

impl std::fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for KeyAlgorithm {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        KeyAlgorithm::ALL
            .into_iter()
            .find(|a| a.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                let known: Vec<_> = KeyAlgorithm::ALL.iter().map(|a| a.as_str()).collect();
                format!(
                    "unknown key algorithm {s:?}; expected one of {}",
                    known.join(", ")
                )
            })
    }
}

/// The subject of a CA certificate.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Subject {
    /// The subject's common name.
    #[schemars(length(min = 1, max = 64))]
    pub common_name: String,
    /// The subject's organization. One: certop cannot yet sign a subject
    /// with two.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 1), inner(length(min = 1, max = 64)))]
    pub organizations: Vec<String>,
}

/// Every CRD certop defines, in a stable order, for `certop crd` and `crds/`.
pub fn crds() -> Vec<CustomResourceDefinition> {
    [
        CertificateAuthority::crd(),
        ClusterCertificate::crd(),
        CertificateRevocation::crd(),
        CertificatePolicy::crd(),
    ]
    .into_iter()
    .map(serving_deprecated_version)
    .collect()
}

/// What the API server says to whoever reads or writes `kind` as
/// `v1alpha1` (the CRD's `deprecationWarning`); `certop pki issue` says the
/// same of a manifest.
pub fn deprecation_warning(kind: &str) -> String {
    format!(
        "{GROUP}/{DEPRECATED_VERSION} {kind} is deprecated; use {GROUP}/{VERSION} (the same fields)"
    )
}

/// A CRD of the `v1` types that also serves `v1alpha1`: a copy of the `v1`
/// version entry (the same schema, printer columns and subresources), not
/// stored, deprecated with a warning that names the version to use. Objects
/// written as `v1alpha1` before `v1` existed stay stored so until rewritten
/// (`kubectl certop migrate-storage`).
fn serving_deprecated_version(mut crd: CustomResourceDefinition) -> CustomResourceDefinition {
    let kind = crd.spec.names.kind.clone();
    let deprecated = crd
        .spec
        .versions
        .first()
        .map(|v1| CustomResourceDefinitionVersion {
            name: DEPRECATED_VERSION.to_string(),
            served: true,
            storage: false,
            deprecated: Some(true),
            deprecation_warning: Some(deprecation_warning(&kind)),
            ..v1.clone()
        });
    crd.spec.versions.extend(deprecated);
    crd
}
