use chrono::{DateTime, Utc};
use rcgen::{CertificateRevocationListParams, KeyIdMethod, RevokedCertParams};

use super::{Authority, PkiError, SerialNumber, to_x509_time};
use crate::api::RevocationReason;

/// rcgen's name for a reason code.
fn to_rcgen(reason: RevocationReason) -> rcgen::RevocationReason {
    match reason {
        RevocationReason::Unspecified => rcgen::RevocationReason::Unspecified,
        RevocationReason::KeyCompromise => rcgen::RevocationReason::KeyCompromise,
        RevocationReason::CaCompromise => rcgen::RevocationReason::CaCompromise,
        RevocationReason::AffiliationChanged => rcgen::RevocationReason::AffiliationChanged,
        RevocationReason::Superseded => rcgen::RevocationReason::Superseded,
        RevocationReason::CessationOfOperation => rcgen::RevocationReason::CessationOfOperation,
        RevocationReason::CertificateHold => rcgen::RevocationReason::CertificateHold,
    }
}

/// One revoked certificate as the CRL lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RevokedEntry {
    pub serial: SerialNumber,
    pub revoked_at: DateTime<Utc>,
    pub reason: RevocationReason,
    /// The certificate's notAfter: once past, the entry leaves the CRL.
    pub not_after: DateTime<Utc>,
}

/// What a CRL should say.
#[derive(Clone, Debug, PartialEq)]
pub struct CrlRequest<'a> {
    pub number: u64,
    pub this_update: DateTime<Utc>,
    pub next_update: DateTime<Utc>,
    pub entries: &'a [RevokedEntry],
}

/// A signed CRL.
#[derive(Clone, Debug, PartialEq)]
pub struct SignedCrl {
    pub der: Vec<u8>,
    pub pem: String,
    /// Entries in the CRL (expired certificates left out).
    pub entry_count: usize,
}

/// Builds and signs a v2 CRL with a CRL number, an authority key identifier
/// (the CA's SKI) and reason codes; entries of certificates that expired
/// before thisUpdate are left out, as RFC 5280 §3.3 allows.
pub fn build_crl(ca: &Authority, request: &CrlRequest<'_>) -> Result<SignedCrl, PkiError> {
    if request.next_update <= request.this_update {
        return Err(PkiError::InvalidSpec(
            "CRL nextUpdate must be after thisUpdate".into(),
        ));
    }
    if !ca.certificate().can_sign_crls {
        return Err(PkiError::CaCannotSign(format!(
            "{} (keyUsage lacks cRLSign)",
            ca.certificate().subject()
        )));
    }
    let revoked_certs = request
        .entries
        .iter()
        .filter(|e| e.not_after >= request.this_update)
        .map(|e| {
            Ok(RevokedCertParams {
                serial_number: e.serial.to_rcgen(),
                revocation_time: to_x509_time(e.revoked_at)?,
                reason_code: match e.reason {
                    // RFC 5280 §5.3.1: the unspecified code SHOULD be absent.
                    RevocationReason::Unspecified => None,
                    r => Some(to_rcgen(r)),
                },
                invalidity_date: None,
            })
        })
        .collect::<Result<Vec<_>, PkiError>>()?;
    let entry_count = revoked_certs.len();
    let key_identifier_method = match &ca.certificate().subject_key_id {
        Some(ski) => KeyIdMethod::PreSpecified(ski.clone()),
        None => KeyIdMethod::Sha256,
    };
    let params = CertificateRevocationListParams {
        this_update: to_x509_time(request.this_update)?,
        next_update: to_x509_time(request.next_update)?,
        crl_number: rcgen::SerialNumber::from(request.number),
        issuing_distribution_point: None,
        revoked_certs,
        key_identifier_method,
    };
    let crl = params.signed_by(ca.issuer()).map_err(PkiError::signing)?;
    let pem = crl.pem().map_err(PkiError::signing)?;
    Ok(SignedCrl {
        der: crl.der().to_vec(),
        pem,
        entry_count,
    })
}

impl std::str::FromStr for RevocationReason {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RevocationReason::ALL
            .into_iter()
            .find(|r| r.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                let known: Vec<_> = RevocationReason::ALL.iter().map(|r| r.as_str()).collect();
                format!("unknown reason {s:?}; expected one of {}", known.join(", "))
            })
    }
}

impl RevocationReason {
    /// From an RFC 5280 reason code; codes certop does not record read as
    /// unspecified.
    pub fn from_code(code: u8) -> Self {
        match code {
            1 => RevocationReason::KeyCompromise,
            2 => RevocationReason::CaCompromise,
            3 => RevocationReason::AffiliationChanged,
            4 => RevocationReason::Superseded,
            5 => RevocationReason::CessationOfOperation,
            6 => RevocationReason::CertificateHold,
            _ => RevocationReason::Unspecified,
        }
    }
}

/// A CRL as read back: what a replica may serve only once it verified.
#[derive(Clone, Debug, PartialEq)]
pub struct ParsedCrl {
    pub number: Option<u64>,
    pub this_update: DateTime<Utc>,
    pub next_update: Option<DateTime<Utc>>,
    /// (serial, revocation time, reason) of each entry.
    pub entries: Vec<(SerialNumber, DateTime<Utc>, RevocationReason)>,
}

/// Parses a DER CRL and, given its CA, checks it is signed by it (issuer
/// name and signature). Anything else, garbage included, is an error.
pub fn parse_crl(der: &[u8], ca: Option<&super::CertificateInfo>) -> Result<ParsedCrl, PkiError> {
    use x509_parser::prelude::{FromDer, X509Certificate};
    use x509_parser::revocation_list::CertificateRevocationList;
    let bad = |reason: String| PkiError::Parse {
        what: "CRL".into(),
        reason,
    };
    let (rest, crl) = CertificateRevocationList::from_der(der).map_err(|e| bad(e.to_string()))?;
    if !rest.is_empty() {
        return Err(bad("trailing bytes after the CRL".into()));
    }
    if let Some(ca) = ca {
        let (_, issuer) = X509Certificate::from_der(&ca.der).map_err(|e| bad(e.to_string()))?;
        if crl.issuer().as_raw() != issuer.subject().as_raw() {
            return Err(bad("issued by another CA".into()));
        }
        crl.verify_signature(issuer.public_key())
            .map_err(|e| bad(format!("signature does not verify: {e}")))?;
    }
    let time = |t: x509_parser::time::ASN1Time| super::from_unix(t.timestamp());
    Ok(ParsedCrl {
        number: crl
            .crl_number()
            .and_then(|n| n.to_string().parse::<u64>().ok()),
        this_update: time(crl.last_update()),
        next_update: crl.next_update().map(time),
        entries: crl
            .iter_revoked_certificates()
            .map(|r| {
                (
                    SerialNumber::from_bytes(r.raw_serial()),
                    time(r.revocation_date),
                    r.reason_code()
                        .map_or(RevocationReason::Unspecified, |(_, c)| {
                            RevocationReason::from_code(c.0)
                        }),
                )
            })
            .collect(),
    })
}
