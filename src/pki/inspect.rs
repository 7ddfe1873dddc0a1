use std::collections::BTreeSet;
use std::net::IpAddr;

use chrono::{DateTime, Utc};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::{DistributionPointName, GeneralName, ParsedExtension};
use x509_parser::prelude::FromDer;

use super::key::key_algorithm_of;
use super::{PkiError, SerialNumber, fingerprint, from_unix};
use crate::api::{KeyAlgorithm, KeyUsage};

/// What certop needs to know of a certificate, parsed once with x509-parser
/// and owned, so decisions never touch DER again.
#[derive(Clone, Debug, PartialEq)]
pub struct CertificateInfo {
    pub der: Vec<u8>,
    pub common_name: Option<String>,
    pub organizations: Vec<String>,
    pub serial: SerialNumber,
    pub fingerprint: String,
    pub not_before: DateTime<Utc>,
    pub not_after: DateTime<Utc>,
    pub dns_names: Vec<String>,
    pub ip_addresses: Vec<IpAddr>,
    pub uris: Vec<String>,
    pub is_ca: bool,
    pub can_sign_certificates: bool,
    pub can_sign_crls: bool,
    /// Key usages and extended key usages together, as a spec names them.
    pub usages: BTreeSet<KeyUsage>,
    pub key_algorithm: Option<KeyAlgorithm>,
    pub subject_key_id: Option<Vec<u8>>,
    pub authority_key_id: Option<Vec<u8>>,
    pub crl_distribution_points: Vec<String>,
    pub(crate) subject_der: Vec<u8>,
    pub(crate) issuer_der: Vec<u8>,
    pub(crate) public_key_bits: Vec<u8>,
}

impl CertificateInfo {
    /// The SHA-256 of the DER in lower-case hex without separators: the
    /// form kube-apiserver and the kubelet put in a client's credential id
    /// (`X509SHA256=<hex>`), by which a revoked certificate is refused.
    pub fn sha256_hex(&self) -> String {
        self.fingerprint.replace(':', "").to_ascii_lowercase()
    }

    pub fn from_der(der: &[u8], what: &str) -> Result<Self, PkiError> {
        let bad = |reason: String| PkiError::BadCertificate {
            what: what.to_string(),
            reason,
        };
        let (rest, cert) = X509Certificate::from_der(der).map_err(|e| bad(e.to_string()))?;
        if !rest.is_empty() {
            return Err(bad("trailing data after the certificate".into()));
        }
        let tbs = &cert.tbs_certificate;
        let mut info = CertificateInfo {
            der: der.to_vec(),
            common_name: tbs
                .subject
                .iter_common_name()
                .next()
                .and_then(|cn| cn.as_str().ok())
                .map(str::to_string),
            organizations: tbs
                .subject
                .iter_organization()
                .filter_map(|o| o.as_str().ok().map(str::to_string))
                .collect(),
            serial: SerialNumber::from_bytes(tbs.raw_serial()),
            fingerprint: fingerprint(der),
            not_before: from_unix(tbs.validity.not_before.timestamp()),
            not_after: from_unix(tbs.validity.not_after.timestamp()),
            dns_names: Vec::new(),
            ip_addresses: Vec::new(),
            uris: Vec::new(),
            is_ca: cert.is_ca(),
            // Without a keyUsage extension a key's use is unrestricted.
            can_sign_certificates: true,
            can_sign_crls: true,
            usages: BTreeSet::new(),
            key_algorithm: key_algorithm_of(&tbs.subject_pki),
            subject_key_id: None,
            authority_key_id: None,
            crl_distribution_points: Vec::new(),
            subject_der: tbs.subject.as_raw().to_vec(),
            issuer_der: tbs.issuer.as_raw().to_vec(),
            public_key_bits: tbs.subject_pki.subject_public_key.data.to_vec(),
        };
        for ext in cert.iter_extensions() {
            info.read_extension(ext.parsed_extension());
        }
        Ok(info)
    }

    /// Takes what certop needs from one extension; the others are ignored.
    fn read_extension(&mut self, ext: &ParsedExtension) {
        match ext {
            ParsedExtension::SubjectAlternativeName(san) => {
                for name in &san.general_names {
                    match name {
                        GeneralName::DNSName(n) => self.dns_names.push(n.to_string()),
                        GeneralName::URI(u) => self.uris.push(u.to_string()),
                        GeneralName::IPAddress(bytes) => {
                            self.ip_addresses.extend(ip_from_bytes(bytes));
                        }
                        _ => {}
                    }
                }
            }
            ParsedExtension::KeyUsage(ku) => self.read_key_usage(ku),
            ParsedExtension::ExtendedKeyUsage(eku) => self.read_extended_key_usage(eku),
            ParsedExtension::SubjectKeyIdentifier(id) => self.subject_key_id = Some(id.0.to_vec()),
            ParsedExtension::AuthorityKeyIdentifier(aki) => {
                self.authority_key_id = aki.key_identifier.as_ref().map(|id| id.0.to_vec());
            }
            ParsedExtension::CRLDistributionPoints(points) => {
                for point in points.iter() {
                    if let Some(DistributionPointName::FullName(names)) = &point.distribution_point
                    {
                        for name in names {
                            if let GeneralName::URI(u) = name {
                                self.crl_distribution_points.push(u.to_string());
                            }
                        }
                    }
                }
            }
            _ => {}
        }
    }

    fn read_key_usage(&mut self, ku: &x509_parser::extensions::KeyUsage) {
        self.can_sign_certificates = ku.key_cert_sign();
        self.can_sign_crls = ku.crl_sign();
        for (set, usage) in [
            (ku.digital_signature(), KeyUsage::DigitalSignature),
            (ku.non_repudiation(), KeyUsage::ContentCommitment),
            (ku.key_encipherment(), KeyUsage::KeyEncipherment),
            (ku.data_encipherment(), KeyUsage::DataEncipherment),
            (ku.key_agreement(), KeyUsage::KeyAgreement),
        ] {
            if set {
                self.usages.insert(usage);
            }
        }
    }

    fn read_extended_key_usage(&mut self, eku: &x509_parser::extensions::ExtendedKeyUsage) {
        for (set, usage) in [
            (eku.server_auth, KeyUsage::ServerAuth),
            (eku.client_auth, KeyUsage::ClientAuth),
            (eku.code_signing, KeyUsage::CodeSigning),
            (eku.email_protection, KeyUsage::EmailProtection),
            (eku.ocsp_signing, KeyUsage::OcspSigning),
            (eku.time_stamping, KeyUsage::TimeStamping),
        ] {
            if set {
                self.usages.insert(usage);
            }
        }
    }

    /// The subject as text (RFC 4514 style). Formatted on demand: issuance
    /// is a hot path and rarely needs it.
    pub fn subject(&self) -> String {
        name_to_string(&self.subject_der)
    }

    pub fn issuer(&self) -> String {
        name_to_string(&self.issuer_der)
    }

    /// True when `ca` issued this certificate: the issuer name matches the
    /// CA's subject and the signature verifies with the CA's public key.
    pub fn is_issued_by(&self, ca: &CertificateInfo) -> bool {
        if self.issuer_der != ca.subject_der {
            return false;
        }
        let (Ok((_, cert)), Ok((_, ca_cert))) = (
            X509Certificate::from_der(&self.der),
            X509Certificate::from_der(&ca.der),
        ) else {
            return false;
        };
        cert.verify_signature(Some(ca_cert.public_key())).is_ok()
    }

    /// Whether both certificates certify the same public key: a CA's
    /// self-signed certificate and its cross-certificate are both
    /// certificates of the CA itself, whoever signed them.
    pub fn certifies_key_of(&self, other: &CertificateInfo) -> bool {
        self.public_key_bits == other.public_key_bits
    }

    /// The time left until notAfter, zero when expired.
    pub fn remaining(&self, now: DateTime<Utc>) -> chrono::Duration {
        (self.not_after - now).max(chrono::Duration::zero())
    }

    pub fn to_pem(&self) -> String {
        pem_encode("CERTIFICATE", &self.der)
    }
}

pub(crate) fn pem_encode(label: &str, der: &[u8]) -> String {
    let p = ::pem::Pem::new(label, der.to_vec());
    ::pem::encode_config(
        &p,
        ::pem::EncodeConfig::new().set_line_ending(::pem::LineEnding::LF),
    )
}

fn name_to_string(der: &[u8]) -> String {
    x509_parser::x509::X509Name::from_der(der)
        .map(|(_, name)| name.to_string())
        .unwrap_or_else(|_| "<unparsable name>".to_string())
}

fn ip_from_bytes(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(bytes).ok().map(IpAddr::from),
        _ => None,
    }
}

/// Parses every certificate of a PEM bundle, in order. `what` names the
/// source in errors. An input with no certificate is an error.
pub fn parse_chain(pem: &[u8], what: &str) -> Result<Vec<CertificateInfo>, PkiError> {
    let mut out = Vec::new();
    for (i, block) in x509_parser::pem::Pem::iter_from_buffer(pem).enumerate() {
        let block = block.map_err(|e| PkiError::BadCertificate {
            what: what.to_string(),
            reason: format!("PEM block {}: {e}", i + 1),
        })?;
        if block.label != "CERTIFICATE" {
            continue;
        }
        out.push(CertificateInfo::from_der(&block.contents, what)?);
    }
    if out.is_empty() {
        return Err(PkiError::NoCertificate(what.to_string()));
    }
    Ok(out)
}

/// Parses the first certificate of a PEM input.
pub fn parse_pem_certificate(pem: &[u8], what: &str) -> Result<CertificateInfo, PkiError> {
    parse_chain(pem, what).map(|mut chain| chain.swap_remove(0))
}
