//! Certificates a revocation names by content (`spec.certificates`): those
//! the CA signed without certop (`certop pki`, kubeadm against an adopted
//! CA), which its ledger cannot know. Each one is checked against the CA's
//! keys and becomes a ledger entry, so the revocation outlives its object:
//! the CRL lists it and the webhook refuses it until it expires. Pure.

use crate::api::CertificateRevocation;
use crate::core::ledger::LedgerEntry;
use crate::operator::reason::{Blocked, Reason};
use crate::pki::{CertificateInfo, parse_pem_certificate};

/// The ledger entries of the revocation's certificates, each with the index
/// of the key (among `keys`, those that sign CRLs) that signed it; or why
/// one cannot be recorded. A certificate the CA did not sign is refused
/// whole: listing it would put another CA's serial in this CA's CRL. So is
/// a certificate of the CA's own key (its self-signed certificate, a
/// rotation's cross-certificate): it verifies under that key, but a CRL
/// listing its own CA would break every chain through it.
pub fn entries(
    rev: &CertificateRevocation,
    keys: &[(u32, &CertificateInfo)],
) -> Result<Vec<LedgerEntry>, Blocked> {
    let ca = &rev.spec.issuer_ref.name;
    rev.spec
        .certificates
        .iter()
        .enumerate()
        .map(|(i, pem)| {
            let field = format!("spec.certificates[{i}]");
            let cert = parse_pem_certificate(pem.as_bytes(), &field).map_err(|e| {
                Blocked::new(
                    Reason::InvalidSpec,
                    format!("{e}; give the certificate as PEM (kubectl certop revoke --cert FILE)"),
                    None,
                )
            })?;
            if keys.iter().any(|(_, ca_cert)| cert.certifies_key_of(ca_cert)) {
                return Err(Blocked::new(
                    Reason::InvalidSpec,
                    format!(
                        "{field} (serial {}, subject {}) is a certificate of CertificateAuthority {ca} itself, not one it issued; listing it in its own CRL would refuse every chain through it: to retire a CA key, rotate the CA",
                        cert.serial,
                        cert.subject()
                    ),
                    None,
                ));
            }
            let key = keys
                .iter()
                .find(|(_, ca_cert)| cert.is_issued_by(ca_cert))
                .map(|(index, _)| *index)
                .ok_or_else(|| {
                    Blocked::new(
                        Reason::InvalidSpec,
                        format!(
                            "{field} (serial {}, subject {}) was not signed by a key of CertificateAuthority {ca} that signs its CRL; revoke it at the CA that issued it",
                            cert.serial,
                            cert.subject()
                        ),
                        None,
                    )
                })?;
            Ok(LedgerEntry::of(&cert, None, key))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{CertificateRevocationSpec, IssuerRef};

    fn revocation(pems: Vec<String>) -> CertificateRevocation {
        CertificateRevocation::new(
            "r",
            CertificateRevocationSpec {
                issuer_ref: IssuerRef { name: "ca".into() },
                certificates: pems,
                ..Default::default()
            },
        )
    }

    #[test]
    fn a_certificate_is_recorded_under_the_key_that_signed_it_and_others_are_refused() {
        let old = crate::pki::fixtures::authority("ca");
        let new = crate::pki::fixtures::authority("ca");
        let stranger = crate::pki::fixtures::authority("other");
        let by_old = crate::pki::fixtures::leaf(&old, "offline.example");
        let by_stranger = crate::pki::fixtures::leaf(&stranger, "offline.example");
        let keys = [(3, new.certificate()), (2, old.certificate())];

        let recorded = entries(&revocation(vec![by_old.to_pem()]), &keys).expect("recorded");
        assert_eq!(recorded.len(), 1);
        assert_eq!(recorded[0].key, 2);
        assert_eq!(recorded[0].serial, by_old.serial.to_string());
        assert_eq!(recorded[0].fingerprint, Some(by_old.sha256_hex()));
        assert_eq!(recorded[0].revoked, None);

        let refused = entries(
            &revocation(vec![by_old.to_pem(), by_stranger.to_pem()]),
            &keys,
        )
        .expect_err("another CA's certificate");
        assert_eq!(refused.reason, Reason::InvalidSpec);
        assert!(
            refused.message.contains("spec.certificates[1] (serial "),
            "{}",
            refused.message
        );
        assert!(refused.message.contains("CertificateAuthority ca"));

        let garbage =
            entries(&revocation(vec!["not a certificate".into()]), &keys).expect_err("not PEM");
        assert_eq!(garbage.reason, Reason::InvalidSpec);
        assert!(
            garbage.message.contains("spec.certificates[0]"),
            "{}",
            garbage.message
        );
        assert!(
            garbage.message.contains("--cert FILE"),
            "{}",
            garbage.message
        );
    }

    #[test]
    fn the_ca_s_own_certificates_are_refused() {
        let old = crate::pki::fixtures::authority("ca");
        let new = crate::pki::fixtures::authority("ca");
        let cross = old
            .cross_sign(&new, &crate::pki::CaRequest::new("ca"), chrono::Utc::now())
            .expect("cross-certificate");
        let keys = [(1, new.certificate()), (0, old.certificate())];
        for (pem, case) in [
            (
                old.certificate().to_pem(),
                "the old key's self-signed certificate",
            ),
            (
                new.certificate().to_pem(),
                "the signing key's self-signed certificate",
            ),
            (cross, "the old key's cross-certificate of the new one"),
        ] {
            let refused = entries(&revocation(vec![pem]), &keys).expect_err(case);
            assert_eq!(refused.reason, Reason::InvalidSpec, "{case}");
            assert!(
                refused.message.contains("rotate the CA"),
                "{case}: {}",
                refused.message
            );
        }
    }
}
