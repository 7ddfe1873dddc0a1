use chrono::{DateTime, Utc};

/// What went wrong in the PKI core. Messages name the input at fault and never
/// include key material.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("no PEM certificate found in {0}")]
    NoCertificate(String),
    #[error("cannot parse the certificate in {what}: {reason}")]
    BadCertificate { what: String, reason: String },
    #[error("cannot parse the private key in {0} (expected PEM PKCS#8, PKCS#1 or SEC1)")]
    BadPrivateKey(String),
    #[error("the private key in {0} uses an algorithm certop does not support")]
    UnsupportedKey(String),
    #[error("the private key does not match the certificate")]
    KeyMismatch,
    #[error("the certificate \"{0}\" is not a CA (basicConstraints CA:TRUE is missing)")]
    NotACa(String),
    #[error("the CA certificate \"{0}\" may not sign certificates (keyUsage lacks keyCertSign)")]
    CaCannotSign(String),
    #[error(
        "the CA certificate \"{subject}\" has a subject certop cannot write as an issuer name ({why}): its certificates would name another issuer and not chain; use a CA whose subject has each attribute once"
    )]
    CaSubjectUnsupported { subject: String, why: String },
    #[error("the CA certificate \"{subject}\" expired at {not_after}")]
    CaExpired {
        subject: String,
        not_after: DateTime<Utc>,
    },
    #[error("the CA certificate \"{subject}\" is not valid before {not_before}")]
    CaNotYetValid {
        subject: String,
        not_before: DateTime<Utc>,
    },
    #[error("invalid certificate spec: {0}")]
    InvalidSpec(String),
    #[error("time {0} cannot be written in a certificate")]
    TimeOutOfRange(DateTime<Utc>),
    #[error("key generation failed for {0}")]
    KeyGeneration(&'static str),
    #[error("the signed certificate does not match spec field {0}; it was discarded")]
    IssuedMismatch(&'static str),
    #[error("the system random number generator is unavailable")]
    RandomUnavailable,
    #[error("signing failed: {0}")]
    Signing(String),
    #[error("cannot use the {what}: {reason}")]
    Parse { what: String, reason: String },
}

impl PkiError {
    pub(crate) fn signing(e: rcgen::Error) -> Self {
        PkiError::Signing(e.to_string())
    }
}
