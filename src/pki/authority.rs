use chrono::{DateTime, Utc};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

use super::inspect::pem_encode;
use super::{
    CertificateInfo, PkiError, PrivateKey, SerialNumber, key_matches_certificate, to_x509_time,
};
use crate::api::{DEFAULT_CA_LIFETIME_HOURS, KeyAlgorithm, MIN_CA_LIFETIME};

/// What a new CA should be.
#[derive(Clone, Debug, PartialEq)]
pub struct CaRequest {
    pub common_name: String,
    pub organizations: Vec<String>,
    pub algorithm: KeyAlgorithm,
    pub lifetime: chrono::Duration,
}

impl CaRequest {
    pub fn new(common_name: &str) -> Self {
        CaRequest {
            common_name: common_name.to_string(),
            organizations: Vec::new(),
            algorithm: KeyAlgorithm::default(),
            lifetime: chrono::Duration::hours(DEFAULT_CA_LIFETIME_HOURS),
        }
    }
}

/// A CA certificate with its key, validated and ready to sign.
pub struct Authority {
    certificate: CertificateInfo,
    /// Encoded once: the trust anchor others put in their bundles.
    certificate_pem: String,
    /// What every issued chain ends with: the CA certificate and the rest
    /// of its Secret's chain, or, when the CA carries a cross-signature of
    /// its own key by another CA, that cross-certificate instead, so a
    /// client that trusts only the other CA still builds a path.
    chain_pem: String,
    algorithm: KeyAlgorithm,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authority")
            .field("subject", &self.certificate.subject())
            .field("serial", &self.certificate.serial)
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

/// A CA certificate's fields but validity: its name, basicConstraints CA
/// (critical), keyUsage keyCertSign + cRLSign + digitalSignature
/// (critical), a random 16-byte serial.
fn ca_params(request: &CaRequest) -> Result<CertificateParams, PkiError> {
    super::profile::check_one_organization(&request.organizations)?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    for org in &request.organizations {
        dn.push(DnType::OrganizationName, org.as_str());
    }
    dn.push(DnType::CommonName, request.common_name.as_str());
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.serial_number = Some(SerialNumber::random()?.to_rcgen());
    Ok(params)
}

impl Authority {
    /// Creates a self-signed CA: basicConstraints CA (critical), keyUsage
    /// keyCertSign + cRLSign + digitalSignature (critical), a subject key
    /// identifier, a random 16-byte serial.
    pub fn create(request: &CaRequest, now: DateTime<Utc>) -> Result<Self, PkiError> {
        if request.common_name.is_empty() || request.common_name.len() > 64 {
            return Err(PkiError::InvalidSpec(format!(
                "CA commonName must be 1 to 64 characters, not {}",
                request.common_name.len()
            )));
        }
        if request.lifetime < MIN_CA_LIFETIME {
            return Err(PkiError::InvalidSpec(format!(
                "a CA's duration must be at least 1h (a CA must outlive what it signs), not {}s",
                request.lifetime.num_seconds()
            )));
        }
        let key = PrivateKey::generate(request.algorithm)?;
        let mut params = ca_params(request)?;
        params.not_before = to_x509_time(now - super::BACKDATE)?;
        params.not_after = to_x509_time(now + request.lifetime)?;
        let cert = params.self_signed(key.pair()).map_err(PkiError::signing)?;
        let info = CertificateInfo::from_der(cert.der(), "the new CA certificate")?;
        Self::from_parts(info, key)
    }

    /// Loads an existing CA (for example kubeadm's `ca.crt`/`ca.key`, RSA
    /// with a PKCS#1 key) and checks that it can sign now: it is a CA, may
    /// sign certificates, is within its validity, and the key matches.
    pub fn load(cert_pem: &[u8], key_pem: &[u8], now: DateTime<Utc>) -> Result<Self, PkiError> {
        let mut chain = super::parse_chain(cert_pem, "the CA certificate")?;
        let info = chain.remove(0);
        let key_text = std::str::from_utf8(key_pem)
            .map_err(|_| PkiError::BadPrivateKey("the CA key".into()))?;
        let key = PrivateKey::from_pem(key_text, "the CA key")?;
        if !info.is_ca {
            return Err(PkiError::NotACa(info.subject()));
        }
        if !info.can_sign_certificates {
            return Err(PkiError::CaCannotSign(info.subject()));
        }
        if now > info.not_after {
            return Err(PkiError::CaExpired {
                subject: info.subject(),
                not_after: info.not_after,
            });
        }
        if now < info.not_before {
            return Err(PkiError::CaNotYetValid {
                subject: info.subject(),
                not_before: info.not_before,
            });
        }
        if !key_matches_certificate(&key, &info) {
            return Err(PkiError::KeyMismatch);
        }
        if let Some(why) = unwritable_issuer_name(&info) {
            return Err(PkiError::CaSubjectUnsupported {
                subject: info.subject(),
                why,
            });
        }
        let mut authority = Self::from_parts(info, key)?;
        if !chain.is_empty() {
            let cross = chain[0].subject_der == authority.certificate.subject_der
                && chain[0].public_key_bits == authority.certificate.public_key_bits;
            let rest: String = chain.iter().map(CertificateInfo::to_pem).collect();
            authority.chain_pem = if cross {
                rest
            } else {
                format!("{}{rest}", authority.certificate_pem)
            };
        }
        Ok(authority)
    }

    /// A certificate for `subject`'s key and name, signed by this CA: a
    /// rotation's cross-signature, so that certificates the new CA signs
    /// chain to this one for clients that have not learnt the new CA yet.
    /// Valid while both CAs are.
    /// `request` is what `subject` was created from (its name, exactly).
    pub fn cross_sign(
        &self,
        subject: &Authority,
        request: &CaRequest,
        now: DateTime<Utc>,
    ) -> Result<String, PkiError> {
        let mut params = ca_params(request)?;
        params.not_before = to_x509_time(now - super::BACKDATE)?;
        params.not_after = to_x509_time(
            self.certificate
                .not_after
                .min(subject.certificate.not_after),
        )?;
        params.use_authority_key_identifier_extension = true;
        let cert = params
            .signed_by(subject.issuer.key(), &self.issuer)
            .map_err(PkiError::signing)?;
        let info = CertificateInfo::from_der(cert.der(), "the cross-certificate")?;
        if info.subject_der != subject.certificate.subject_der {
            return Err(PkiError::BadCertificate {
                what: "the cross-certificate".into(),
                reason: "its subject differs from the CA it certifies".into(),
            });
        }
        Ok(pem_encode("CERTIFICATE", cert.der()))
    }

    fn from_parts(certificate: CertificateInfo, key: PrivateKey) -> Result<Self, PkiError> {
        let algorithm = key.algorithm();
        let pair = key.into_pair();
        let issuer =
            Issuer::from_ca_cert_der(&certificate.der.clone().into(), pair).map_err(|e| {
                PkiError::BadCertificate {
                    what: "the CA certificate".into(),
                    reason: e.to_string(),
                }
            })?;
        let certificate_pem = pem_encode("CERTIFICATE", &certificate.der);
        Ok(Authority {
            certificate,
            chain_pem: certificate_pem.clone(),
            certificate_pem,
            algorithm,
            issuer,
        })
    }

    pub fn certificate(&self) -> &CertificateInfo {
        &self.certificate
    }

    pub fn certificate_pem(&self) -> &str {
        &self.certificate_pem
    }

    /// What follows the leaf in every chain this CA issues.
    pub fn chain_pem(&self) -> &str {
        &self.chain_pem
    }

    /// The CA key as PEM PKCS#8, for storing it; never log it.
    pub fn key_pem(&self) -> String {
        self.issuer.key().serialize_pem()
    }

    pub fn algorithm(&self) -> KeyAlgorithm {
        self.algorithm
    }

    pub(crate) fn issuer(&self) -> &Issuer<'static, KeyPair> {
        &self.issuer
    }
}

/// Why rcgen cannot write this CA's subject back as the issuer name of
/// what it signs, if it cannot: rcgen 0.14 keeps one value per attribute
/// type (a second O or OU would replace the first) and refuses an RDN of
/// several attributes. Its leaves would then name an issuer that is not
/// the CA, and chain nowhere.
fn unwritable_issuer_name(ca: &CertificateInfo) -> Option<String> {
    use x509_parser::prelude::{FromDer, X509Name};
    let Ok((_, name)) = X509Name::from_der(&ca.subject_der) else {
        return Some("it cannot be parsed".into());
    };
    let mut seen = std::collections::BTreeSet::new();
    for rdn in name.iter() {
        if rdn.iter().count() > 1 {
            return Some("an RDN holds several attributes".into());
        }
        for attribute in rdn.iter() {
            let oid = attribute.attr_type();
            if !seen.insert(oid.to_id_string()) {
                let name = x509_parser::objects::oid2sn(oid, x509_parser::objects::oid_registry())
                    .map_or_else(|_| oid.to_id_string(), str::to_string);
                return Some(format!("{name} appears more than once"));
            }
        }
    }
    None
}
