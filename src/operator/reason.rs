//! Every reason certop writes into a condition or an Event, in one enum:
//! the doc comment of each variant is what it means and how to fix it
//! (docs/user-guide.md lists the same; a test keeps them together).

use std::time::Duration;

/// Why an object is Ready or not, what certop did to it (an Event), or
/// what certop decided about a CSR.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    /// The spec is refused by certop's own checks (the message names the
    /// field). Fix the spec; nothing is retried until it changes.
    InvalidSpec,
    /// The named CertificateAuthority does not exist. Create it or fix
    /// `spec.issuerRef.name`.
    IssuerNotFound,
    /// The CertificateAuthority is being set up; this passes by itself.
    IssuerPending,
    /// The CertificateAuthority exists but cannot sign (its own Ready
    /// condition says why). Fix the CA.
    IssuerNotReady,
    /// The target Secret exists and is not this certificate's. Delete it or
    /// choose another `spec.secretName`.
    SecretConflict,
    /// The target namespace does not exist. Create it or fix
    /// `spec.secretNamespace`.
    NamespaceNotFound,
    /// The target namespace is not one certop manages (`certop run
    /// --managed-namespaces`, the chart's `managedNamespaces`): certop holds
    /// no permission on Secrets there. Add the namespace to that list (the
    /// chart grants it) or choose a managed `spec.secretNamespace`.
    NamespaceNotManaged,
    /// The API server refused the Secret certop wrote (the message quotes
    /// it): an admission policy, an immutable Secret, a quota. Fix the cause;
    /// certop retries slowly and issues no new certificate meanwhile.
    SecretRejected,
    /// No policy allows what the spec asks for (docs/policy.md): the
    /// message says which policy, field and value, or that the CA is
    /// governed and `spec.policyRef` must name a policy, or that the
    /// admission guard is not in force. Change the spec or the policy.
    PolicyViolation,
    /// Signing failed (the message says why); retried with backoff.
    IssuanceFailed,
    /// A ledger shard of the CA cannot be read; certop will not overwrite
    /// it. Restore it from a backup or delete it (losing its entries).
    LedgerCorrupt,
    /// A ledger shard is near the API server's object size limit.
    LedgerFull,
    /// The CA's key Secret does not hold a usable certificate and key.
    InvalidCASecret,
    /// `keySource.adopt` is set and the Secret to adopt does not exist.
    CASecretNotFound,
    /// The CA's key Secret was deleted after certop bound the CA to it;
    /// certop will not silently make a new CA. Restore the Secret, or
    /// delete and re-create the CertificateAuthority.
    CASecretDeleted,
    /// The CA's key Secret now holds a different key pair than the one the
    /// CA is bound to (`certop.dev/ca-fingerprint`). Restore the original,
    /// or delete and re-create the CertificateAuthority to trust the new one.
    CAKeyChanged,
    /// The CA's key Secret holds the key of another CertificateAuthority
    /// (created earlier): two CAs never share a key, since policies and
    /// signer names are per CA. Point `keySource.secretName` elsewhere.
    CAKeyInUse,
    /// The CA certificate has expired.
    CAExpired,
    /// A trust-bundle ConfigMap of that name exists in a selected namespace
    /// and certop did not create it; certop leaves it alone. Delete it or
    /// set `spec.trustBundle.configMapName`.
    ConfigMapConflict,
    /// Serial numbers a CertificateRevocation names that this CA never
    /// issued; they are not listed in its CRL. Fix `spec.serialNumbers` or
    /// `spec.issuerRef`.
    UnknownSerials,
    /// The CRL number cannot grow any more (someone set it to the maximum);
    /// the last CRL is still served. Delete the CRL ConfigMap's number
    /// annotation only if you know no client holds a higher number.
    CRLNumberExhausted,
    /// A CA rotation cannot go on (its staged key's Secret is gone or holds
    /// another key, or its switch would come after the CA's own notAfter);
    /// the CA keeps signing with its current key. The message says what to
    /// restore or change.
    RotationBlocked,
    /// The CA is in the last fifth of its life and does not rotate by
    /// itself. Rotate it (`kubectl certop rotate-ca NAME`).
    CANearExpiry,
    /// Making a new CA's key or certificate failed (the message says why).
    CACreationFailed,
    /// The CRL outgrew one object; the leader serves it over HTTP.
    TooLarge,
    /// A kubelet's CSR that certop approved: the requester is the node it
    /// names and may ask for it (a CSR condition).
    CertopKubeletApprove,
    /// A kubelet's CSR that certop denied: it asks for more than a node may
    /// (a CSR condition; the message says what).
    CertopKubeletDeny,
    /// A kubelet serving CSR names something certop cannot prove is the
    /// node's; it is left for a person (an Event with the approve command).
    PendingApproval,
    /// An approved CSR whose `spec.request` is not a PEM certificate
    /// request with a valid self-signature. Submit a new CSR.
    BadRequest,
    /// An approved CSR breaks its signer's rules (a kubelet signer's
    /// subject, usages or names). Submit a CSR that keeps them.
    SignerRules,
    /// An approved CSR for `certop.dev/<ca>` names no CertificateAuthority.
    SignerUnknown,
    /// An approved CSR asks for something certop does not sign (a usage,
    /// key or name type). Submit a CSR without it.
    UnsupportedRequest,
    /// Signing an approved CSR failed (the message says why).
    SigningFailed,
    /// certop cannot prove the CA's CRL lists every revoked certificate: a
    /// ledger shard is unreadable and no CRL it verified (the published
    /// one or its copy) is left to carry what the shard held. The message
    /// names the shards: restore them (or the copy) from a backup, or
    /// delete them and revoke again what must stay revoked.
    CRLIncomplete,
    /// The rotation annotations on a CA differ from certop's record
    /// (`status.rotation.record`), which the rotation follows: certop
    /// restored them (an Event). End a retirement early with
    /// `certop.dev/end-retirement`, not by removing an annotation.
    RotationMarksRestored,
    /// The Secret of a retiring CA key is gone: its certificate stays
    /// trusted from certop's record until its certificates are re-issued,
    /// but its CRL can no longer be re-signed. Restore the Secret to keep
    /// that CRL fresh.
    RetiringKeyMissing,
    /// Certificates of a retiring CA that certop does not re-issue (signed
    /// for CSRs, or of ClusterCertificates deleted with their Secrets kept)
    /// keep the old CA trusted; the message names them. Revoke them, or end
    /// the retirement with `certop.dev/end-retirement: <serial>`.
    RetirementHeld,
    /// A staged CA certificate is not yet in the `ca.crt` of every Secret
    /// of the CA's certificates; the overlap starts once it is. The
    /// message names them; a Secret certop cannot write holds it.
    BundlesPending,
    /// A CertificateRevocation did everything it asks (its Ready
    /// condition and an Event): the covered certificates are marked in the
    /// CA's ledger, listed in the CRL of the key that signed them, and
    /// replaced. Also the warning Event on a ClusterCertificate whose
    /// certificate a revocation covered: certop replaces it with a new key
    /// by itself. Nothing to fix. On a PodCertificateRequest or a CSR
    /// (condition `Failed`): a revocation covers the certificate being
    /// issued, which is not handed out.
    Revoked,
    /// A CertificateRevocation's `ApiServerEnforceable=True`: certop's
    /// authorization webhook refuses every certificate it revoked, where
    /// kube-apiserver asks it (`certop authz-config`); `status.apiServer`
    /// shows that it asks and what it refused. Nothing to fix.
    Enforceable,
    /// A revoked certificate carries `O=system:masters`: kube-apiserver
    /// lets that group through before asking any authorizer, so no webhook
    /// can refuse it and it keeps working until it expires. Rotate the CA
    /// (`kubectl certop rotate-ca NAME`) and remove the old CA from
    /// kube-apiserver's `--client-ca-file` once the rotation ends.
    SystemMasters,
    /// Revoked certificates certop recorded no SHA-256 for (issued before it
    /// did): its webhook cannot name them, so kube-apiserver still accepts
    /// them. Revoke each from its file with `kubectl certop revoke --cert
    /// FILE --ca CA`.
    DigestUnknown,
    /// The certificate was issued for the first time or repaired (the
    /// Secret was missing or did not match the spec); a `Ready=True` reason
    /// and a Normal Event. Nothing to fix.
    Issued,
    /// The certificate was renewed (its renewal time came, it expired, or
    /// `kubectl certop renew` asked); a `Ready=True` reason and a Normal
    /// Event. Nothing to fix.
    Renewed,
    /// The certificate was re-issued because its serial was revoked; a
    /// `Ready=True` reason and a Normal Event. Nothing to fix.
    Reissued,
    /// An issuance of a certificate already in service has started (a
    /// Normal Event naming why). Nothing to fix.
    Reissuing,
    /// The Secret of a good certificate took a new trust bundle (a CA
    /// rotation) or a `spec.secretTemplate` edit without a new
    /// certificate (a Normal Event). Nothing to fix.
    SecretUpdated,
    /// A certificate's notAfter was cut to its CA's notAfter (a warning
    /// Event). Rotate the CA (`kubectl certop rotate-ca NAME`) to get the
    /// full duration back.
    DurationClamped,
    /// No issuance is under way (the `Issuing=False` condition).
    UpToDate,
    /// A CA (or a certificate) can sign and is current: nothing to fix.
    Ready,
    /// certop created a CA's first key and certificate (a Normal Event).
    Created,
    /// A CA rotation started, as requested or as the CA nears its end: a
    /// new key is made and trusted beside the current one (a Normal Event).
    RotationStarted,
    /// A CA rotation's new key is trusted beside the current one; it signs
    /// an overlap after certop has published it everywhere (a Normal Event).
    RotationStaged,
    /// A CA rotation's new key signs from now on; the old one stays trusted
    /// until its certificates are re-issued (a Normal Event).
    RotationSwitched,
    /// A CA rotation ended: the old CA left the trust bundles and its key
    /// and CRL were deleted. A warning when the retirement was ended early
    /// (`certop.dev/end-retirement`): its unexpired certificates no longer
    /// verify; re-issue any still in use.
    RotationFinished,
    /// A PodCertificateRequest's key is of a type certop does not sign
    /// (none Kubernetes 1.36 admits: RSA under 3072 bits or another curve
    /// would be one); the message suggests one it does (ECDSAP256). Change
    /// the pod's podCertificate volume's keyType.
    UnsupportedKeyType,
    /// A PodCertificateRequest carries an unverifiedUserAnnotations key
    /// certop does not read, or one its CA does not allow
    /// (`spec.podCertificates.allowedUnverifiedAnnotations`), or a bad
    /// value. Fix the pod's podCertificate volume or the CA.
    InvalidUnverifiedUserAnnotations,
    /// The CertificateAuthority of a PodCertificateRequest's signer could
    /// not sign within the request's wait (its Ready condition says why),
    /// or expires too soon for the API's shortest pod certificate (1h).
    /// Fix or rotate the CA; the kubelet asks again.
    CANotReady,
    /// The API server does not serve PodCertificateRequests or
    /// ClusterTrustBundles (`certificates.k8s.io/v1beta1`): the CA's
    /// `spec.podCertificates` waits. Enable them (the message names the
    /// flags) and restart certop.
    PodCertificateAPIMissing,
    /// A ClusterTrustBundle of the CA's name (`certop.dev:<ca>:trust`)
    /// exists and certop did not create it; certop leaves it alone. Delete
    /// it to let certop publish the CA there.
    ClusterTrustBundleConflict,
}

impl Reason {
    /// Every reason, for the test that keeps the user guide's table whole.
    pub const ALL: [Reason; 60] = [
        Reason::InvalidSpec,
        Reason::IssuerNotFound,
        Reason::IssuerPending,
        Reason::IssuerNotReady,
        Reason::SecretConflict,
        Reason::NamespaceNotFound,
        Reason::NamespaceNotManaged,
        Reason::SecretRejected,
        Reason::PolicyViolation,
        Reason::IssuanceFailed,
        Reason::LedgerCorrupt,
        Reason::LedgerFull,
        Reason::InvalidCASecret,
        Reason::CASecretNotFound,
        Reason::CASecretDeleted,
        Reason::CAKeyChanged,
        Reason::CAKeyInUse,
        Reason::CAExpired,
        Reason::ConfigMapConflict,
        Reason::UnknownSerials,
        Reason::CRLNumberExhausted,
        Reason::RotationBlocked,
        Reason::CANearExpiry,
        Reason::CACreationFailed,
        Reason::TooLarge,
        Reason::CertopKubeletApprove,
        Reason::CertopKubeletDeny,
        Reason::PendingApproval,
        Reason::BadRequest,
        Reason::SignerRules,
        Reason::SignerUnknown,
        Reason::UnsupportedRequest,
        Reason::SigningFailed,
        Reason::CRLIncomplete,
        Reason::RotationMarksRestored,
        Reason::RetiringKeyMissing,
        Reason::RetirementHeld,
        Reason::BundlesPending,
        Reason::Revoked,
        Reason::Enforceable,
        Reason::SystemMasters,
        Reason::DigestUnknown,
        Reason::Issued,
        Reason::Renewed,
        Reason::Reissued,
        Reason::Reissuing,
        Reason::SecretUpdated,
        Reason::DurationClamped,
        Reason::UpToDate,
        Reason::Ready,
        Reason::Created,
        Reason::RotationStarted,
        Reason::RotationStaged,
        Reason::RotationSwitched,
        Reason::RotationFinished,
        Reason::UnsupportedKeyType,
        Reason::InvalidUnverifiedUserAnnotations,
        Reason::CANotReady,
        Reason::PodCertificateAPIMissing,
        Reason::ClusterTrustBundleConflict,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::InvalidSpec => "InvalidSpec",
            Reason::IssuerNotFound => "IssuerNotFound",
            Reason::IssuerPending => "IssuerPending",
            Reason::IssuerNotReady => "IssuerNotReady",
            Reason::SecretConflict => "SecretConflict",
            Reason::NamespaceNotFound => "NamespaceNotFound",
            Reason::NamespaceNotManaged => "NamespaceNotManaged",
            Reason::SecretRejected => "SecretRejected",
            Reason::PolicyViolation => "PolicyViolation",
            Reason::IssuanceFailed => "IssuanceFailed",
            Reason::LedgerCorrupt => "LedgerCorrupt",
            Reason::LedgerFull => "LedgerFull",
            Reason::InvalidCASecret => "InvalidCASecret",
            Reason::CASecretNotFound => "CASecretNotFound",
            Reason::CASecretDeleted => "CASecretDeleted",
            Reason::CAKeyChanged => "CAKeyChanged",
            Reason::CAKeyInUse => "CAKeyInUse",
            Reason::CAExpired => "CAExpired",
            Reason::ConfigMapConflict => "ConfigMapConflict",
            Reason::UnknownSerials => "UnknownSerials",
            Reason::CRLNumberExhausted => "CRLNumberExhausted",
            Reason::RotationBlocked => "RotationBlocked",
            Reason::CANearExpiry => "CANearExpiry",
            Reason::CACreationFailed => "CACreationFailed",
            Reason::TooLarge => "TooLarge",
            Reason::CertopKubeletApprove => "CertopKubeletApprove",
            Reason::CertopKubeletDeny => "CertopKubeletDeny",
            Reason::PendingApproval => "PendingApproval",
            Reason::BadRequest => "BadRequest",
            Reason::SignerRules => "SignerRules",
            Reason::SignerUnknown => "SignerUnknown",
            Reason::UnsupportedRequest => "UnsupportedRequest",
            Reason::SigningFailed => "SigningFailed",
            Reason::CRLIncomplete => "CRLIncomplete",
            Reason::RotationMarksRestored => "RotationMarksRestored",
            Reason::RetiringKeyMissing => "RetiringKeyMissing",
            Reason::RetirementHeld => "RetirementHeld",
            Reason::BundlesPending => "BundlesPending",
            Reason::Revoked => "Revoked",
            Reason::Enforceable => "Enforceable",
            Reason::SystemMasters => "SystemMasters",
            Reason::DigestUnknown => "DigestUnknown",
            Reason::Issued => "Issued",
            Reason::Renewed => "Renewed",
            Reason::Reissued => "Reissued",
            Reason::Reissuing => "Reissuing",
            Reason::SecretUpdated => "SecretUpdated",
            Reason::DurationClamped => "DurationClamped",
            Reason::UpToDate => "UpToDate",
            Reason::Ready => "Ready",
            Reason::Created => "Created",
            Reason::RotationStarted => "RotationStarted",
            Reason::RotationStaged => "RotationStaged",
            Reason::RotationSwitched => "RotationSwitched",
            Reason::RotationFinished => "RotationFinished",
            Reason::UnsupportedKeyType => "UnsupportedKeyType",
            Reason::InvalidUnverifiedUserAnnotations => "InvalidUnverifiedUserAnnotations",
            Reason::CANotReady => "CANotReady",
            Reason::PodCertificateAPIMissing => "PodCertificateAPIMissing",
            Reason::ClusterTrustBundleConflict => "ClusterTrustBundleConflict",
        }
    }

    /// A wait that ends by itself in a moment: recorded in the status, not
    /// announced as a warning Event.
    pub fn is_transient(self) -> bool {
        self == Reason::IssuerPending
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An object cannot progress now: the reason and message go to its Ready
/// condition and (once per change) a warning Event.
#[derive(Clone, Debug, PartialEq)]
pub struct Blocked {
    pub reason: Reason,
    pub message: String,
    /// When to look again without a watch event; None: only on a change.
    pub retry: Option<Duration>,
}

impl Blocked {
    pub fn new(reason: Reason, message: impl Into<String>, retry: Option<Duration>) -> Self {
        Blocked {
            reason,
            message: message.into(),
            retry,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Reason;

    /// The user guide's table of reasons is the enum: a reason certop can
    /// write and the guide does not explain is a failure here.
    #[test]
    fn the_user_guide_explains_every_reason() {
        let guide = include_str!("../../docs/user-guide.md");
        let missing: Vec<&str> = Reason::ALL
            .iter()
            .map(|r| r.as_str())
            .filter(|r| {
                !guide.contains(&format!("| `{r}`")) && !guide.contains(&format!("/ `{r}`"))
            })
            .collect();
        assert!(missing.is_empty(), "docs/user-guide.md lacks {missing:?}");
    }

    /// ALL lists every variant once: as many as `as_str`'s exhaustive
    /// match has arms (a variant missing from ALL would escape the test
    /// above).
    #[test]
    fn every_reason_is_listed_once() {
        let names: std::collections::BTreeSet<&str> =
            Reason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(names.len(), Reason::ALL.len());
        let arms = include_str!("reason.rs")
            .lines()
            .filter(|l| l.trim_start().starts_with("Reason::") && l.contains(" => \""))
            .count();
        assert_eq!(arms, Reason::ALL.len());
    }
}
