use chrono::{DateTime, Utc};
use rcgen::{
    CertificateParams, CrlDistributionPoint, DistinguishedName, DnType, ExtendedKeyUsagePurpose,
    IsCa, KeyUsagePurpose, SanType,
};
use x509_parser::prelude::FromDer;

use super::{
    Authority, CertificateInfo, LeafTemplate, PkiError, PrivateKey, SerialNumber, to_x509_time,
};
use crate::api::KeyUsage;

/// A freshly signed leaf certificate.
#[derive(Debug)]
pub struct IssuedCertificate {
    pub certificate: CertificateInfo,
    /// The leaf then the CA's chain (`Authority::chain_pem`), PEM: what `tls.crt` holds.
    pub chain_pem: String,
    /// True when notAfter was cut short to the CA's own notAfter.
    pub clamped_to_ca: bool,
}

/// Signs `template` for `key` with `ca`. The certificate's notAfter never
/// passes the CA's; its AKI is the CA's SKI; its serial is random.
pub fn issue(
    template: &LeafTemplate,
    key: &PrivateKey,
    ca: &Authority,
    now: DateTime<Utc>,
) -> Result<IssuedCertificate, PkiError> {
    sign(
        template,
        key.pair(),
        key.algorithm(),
        SerialNumber::random()?,
        super::BACKDATE,
        ca,
        now,
    )
}

/// Signs `template` for the public key of a PKCS#10 request (DER), whose
/// self-signature rcgen checks. The request's own extensions are ignored:
/// only the template is signed.
pub fn issue_for_request(
    template: &LeafTemplate,
    request_der: &[u8],
    ca: &Authority,
    now: DateTime<Utc>,
) -> Result<IssuedCertificate, PkiError> {
    let request = rcgen::CertificateSigningRequestParams::from_der(&request_der.to_vec().into())
        .map_err(|e| PkiError::InvalidSpec(format!("the certificate request is not valid: {e}")))?;
    sign(
        template,
        &request.public_key,
        template.key_algorithm,
        SerialNumber::random()?,
        super::BACKDATE,
        ca,
        now,
    )
}

/// Signs `template` for a public key (a DER SubjectPublicKeyInfo) whose
/// holder proved it elsewhere (a PodCertificateRequest: kube-apiserver
/// checks the proof at admission), under `serial`: a request signed again
/// (its first hand-out failed) gets the same serial, so it is one
/// certificate in the ledger, not two. Backdated by `backdate` (at most
/// `POD_BACKDATE`: kube-apiserver refuses a notBefore more than 5 minutes
/// from its clock; the caller keeps it after the CA's notBefore so the
/// span is exactly lifetime + backdate).
pub fn issue_for_public_key(
    template: &LeafTemplate,
    spki_der: &[u8],
    serial: SerialNumber,
    backdate: chrono::Duration,
    ca: &Authority,
    now: DateTime<Utc>,
) -> Result<IssuedCertificate, PkiError> {
    let unsupported = || PkiError::UnsupportedKey("the request's public key".to_string());
    let key_algorithm = x509_parser::x509::SubjectPublicKeyInfo::from_der(spki_der)
        .ok()
        .and_then(|(_, spki)| super::key_algorithm_of_spki(&spki))
        .ok_or_else(unsupported)?;
    let public_key = rcgen::SubjectPublicKeyInfo::from_der(spki_der).map_err(|_| unsupported())?;
    sign(
        template,
        &public_key,
        key_algorithm,
        serial,
        backdate.min(super::POD_BACKDATE),
        ca,
        now,
    )
}

fn sign(
    template: &LeafTemplate,
    public_key: &impl rcgen::PublicKeyData,
    key_algorithm: crate::api::KeyAlgorithm,
    serial: SerialNumber,
    backdate: chrono::Duration,
    ca: &Authority,
    now: DateTime<Utc>,
) -> Result<IssuedCertificate, PkiError> {
    if key_algorithm != template.key_algorithm {
        return Err(PkiError::InvalidSpec(format!(
            "the key is {} but the spec asks for {}",
            key_algorithm, template.key_algorithm
        )));
    }
    super::profile::check_one_organization(&template.organizations)?;
    let ca_cert = ca.certificate();
    if now >= ca_cert.not_after {
        return Err(PkiError::CaExpired {
            subject: ca_cert.subject(),
            not_after: ca_cert.not_after,
        });
    }
    let wanted_not_after = now + template.lifetime;
    let clamped_to_ca = wanted_not_after > ca_cert.not_after;
    let not_after = wanted_not_after.min(ca_cert.not_after);

    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    for org in &template.organizations {
        dn.push(DnType::OrganizationName, org.as_str());
    }
    if let Some(cn) = &template.common_name {
        dn.push(DnType::CommonName, cn.as_str());
    }
    params.distinguished_name = dn;
    params.is_ca = IsCa::ExplicitNoCa;
    params.serial_number = Some(serial.to_rcgen());
    // Backdated as kubeadm and the Kubernetes signer do, not before the CA
    // (unless asked to issue for a time before the CA itself).
    let backdated = now - backdate;
    let not_before = if backdated < ca_cert.not_before && now >= ca_cert.not_before {
        ca_cert.not_before
    } else {
        backdated
    };
    params.not_before = to_x509_time(not_before)?;
    params.not_after = to_x509_time(not_after)?;
    params.use_authority_key_identifier_extension = true;
    params.subject_alt_names = subject_alt_names(template)?;
    for usage in &template.usages {
        match key_usage_purpose(*usage) {
            Purpose::Basic(p) => params.key_usages.push(p),
            Purpose::Extended(p) => params.insert_extended_key_usage(p),
        }
    }
    if let Some(url) = &template.crl_distribution_point {
        params.crl_distribution_points = vec![CrlDistributionPoint {
            uris: vec![url.clone()],
        }];
    }
    let cert = params
        .signed_by(public_key, ca.issuer())
        .map_err(PkiError::signing)?;
    let certificate = CertificateInfo::from_der(cert.der(), "the issued certificate")?;
    // Read back what was signed: a certificate that does not say what the
    // spec asks for is never handed out.
    if let Some(field) = template.first_mismatch(&certificate, ca.certificate()) {
        return Err(PkiError::IssuedMismatch(field.as_str()));
    }
    if certificate.issuer_der != ca.certificate().subject_der {
        return Err(PkiError::IssuedMismatch("issuer (the CA's subject)"));
    }
    let chain_pem = format!("{}{}", certificate.to_pem(), ca.chain_pem());
    Ok(IssuedCertificate {
        certificate,
        chain_pem,
        clamped_to_ca,
    })
}

/// The template's names as rcgen's SANs; a DNS name or URI must be ASCII.
fn subject_alt_names(template: &LeafTemplate) -> Result<Vec<SanType>, PkiError> {
    let ia5 = |s: &str, field: &str| {
        s.to_string()
            .try_into()
            .map_err(|_| PkiError::InvalidSpec(format!("{field}: {s:?} must be ASCII")))
    };
    let mut names = Vec::new();
    for name in &template.dns_names {
        names.push(SanType::DnsName(ia5(name, "dnsNames")?));
    }
    names.extend(
        template
            .ip_addresses
            .iter()
            .map(|ip| SanType::IpAddress(*ip)),
    );
    for uri in &template.uris {
        names.push(SanType::URI(ia5(uri, "uris")?));
    }
    Ok(names)
}

/// Where a usage goes: the key usage extension, or the extended one.
enum Purpose {
    Basic(KeyUsagePurpose),
    Extended(ExtendedKeyUsagePurpose),
}

fn key_usage_purpose(usage: KeyUsage) -> Purpose {
    match usage {
        KeyUsage::DigitalSignature => Purpose::Basic(KeyUsagePurpose::DigitalSignature),
        KeyUsage::ContentCommitment => Purpose::Basic(KeyUsagePurpose::ContentCommitment),
        KeyUsage::KeyEncipherment => Purpose::Basic(KeyUsagePurpose::KeyEncipherment),
        KeyUsage::KeyAgreement => Purpose::Basic(KeyUsagePurpose::KeyAgreement),
        KeyUsage::DataEncipherment => Purpose::Basic(KeyUsagePurpose::DataEncipherment),
        KeyUsage::ServerAuth => Purpose::Extended(ExtendedKeyUsagePurpose::ServerAuth),
        KeyUsage::ClientAuth => Purpose::Extended(ExtendedKeyUsagePurpose::ClientAuth),
        KeyUsage::CodeSigning => Purpose::Extended(ExtendedKeyUsagePurpose::CodeSigning),
        KeyUsage::EmailProtection => Purpose::Extended(ExtendedKeyUsagePurpose::EmailProtection),
        KeyUsage::OcspSigning => Purpose::Extended(ExtendedKeyUsagePurpose::OcspSigning),
        KeyUsage::TimeStamping => Purpose::Extended(ExtendedKeyUsagePurpose::TimeStamping),
    }
}
