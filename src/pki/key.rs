use std::fmt;

use rcgen::{KeyPair, PublicKeyData, RsaKeySize};
use x509_parser::oid_registry::{
    OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384, OID_NIST_EC_P521,
    OID_PKCS1_RSAENCRYPTION, OID_SIG_ED25519,
};
use x509_parser::prelude::FromDer;
use x509_parser::public_key::PublicKey;
use x509_parser::x509::SubjectPublicKeyInfo;

use super::{CertificateInfo, PkiError};
use crate::api::KeyAlgorithm;

/// A private key and the algorithm it is for. Its `Debug` never shows the
/// key, so it can sit in structs that are logged.
pub struct PrivateKey {
    pair: KeyPair,
    algorithm: KeyAlgorithm,
}

impl PrivateKey {
    pub fn generate(algorithm: KeyAlgorithm) -> Result<Self, PkiError> {
        let pair = match algorithm {
            KeyAlgorithm::EcdsaP256 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256),
            KeyAlgorithm::EcdsaP384 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384),
            KeyAlgorithm::Ed25519 => KeyPair::generate_for(&rcgen::PKCS_ED25519),
            KeyAlgorithm::Rsa2048 => {
                KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, RsaKeySize::_2048)
            }
            KeyAlgorithm::Rsa3072 => {
                KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, RsaKeySize::_3072)
            }
            KeyAlgorithm::Rsa4096 => {
                KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, RsaKeySize::_4096)
            }
            // Only ever a pod's own key, never one certop makes.
            KeyAlgorithm::EcdsaP521 => return Err(PkiError::KeyGeneration(algorithm.as_str())),
        }
        .map_err(|_| PkiError::KeyGeneration(algorithm.as_str()))?;
        Ok(PrivateKey { pair, algorithm })
    }

    /// Parses a PEM private key (PKCS#8, PKCS#1 "RSA PRIVATE KEY" as kubeadm
    /// writes it, or SEC1 "EC PRIVATE KEY"). `what` names the source in errors.
    pub fn from_pem(pem: &str, what: &str) -> Result<Self, PkiError> {
        let pair = KeyPair::from_pem(pem).map_err(|_| PkiError::BadPrivateKey(what.to_string()))?;
        let spki = pair.subject_public_key_info();
        let algorithm = SubjectPublicKeyInfo::from_der(&spki)
            .ok()
            .and_then(|(_, spki)| key_algorithm_of(&spki))
            .filter(|a| KeyAlgorithm::ALL.contains(a))
            .ok_or_else(|| PkiError::UnsupportedKey(what.to_string()))?;
        Ok(PrivateKey { pair, algorithm })
    }

    pub fn algorithm(&self) -> KeyAlgorithm {
        self.algorithm
    }

    /// PEM PKCS#8, the form every Kubernetes component reads.
    /// PKCS#8 DER, for a TLS server that holds the key only in memory.
    pub fn to_pkcs8_der(&self) -> Vec<u8> {
        self.pair.serialize_der()
    }

    pub fn to_pem(&self) -> String {
        self.pair.serialize_pem()
    }

    /// The public half, PEM "PUBLIC KEY" (as kube-apiserver's
    /// --service-account-key-file reads it).
    pub fn public_key_pem(&self) -> String {
        self.pair.public_key_pem()
    }

    pub(crate) fn pair(&self) -> &KeyPair {
        &self.pair
    }

    pub(crate) fn into_pair(self) -> KeyPair {
        self.pair
    }
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PrivateKey({}, redacted)", self.algorithm)
    }
}

/// The algorithm of a public key, of those certop knows (`ALL` and a
/// pod's ECDSA P-521); a caller that takes only what certop generates
/// checks `KeyAlgorithm::ALL`.
pub fn key_algorithm_of(spki: &SubjectPublicKeyInfo<'_>) -> Option<KeyAlgorithm> {
    let oid = &spki.algorithm.algorithm;
    if *oid == OID_KEY_TYPE_EC_PUBLIC_KEY {
        let curve = spki.algorithm.parameters.as_ref()?.as_oid().ok()?;
        if curve == OID_EC_P256 {
            Some(KeyAlgorithm::EcdsaP256)
        } else if curve == OID_NIST_EC_P384 {
            Some(KeyAlgorithm::EcdsaP384)
        } else if curve == OID_NIST_EC_P521 {
            Some(KeyAlgorithm::EcdsaP521)
        } else {
            None
        }
    } else if *oid == OID_SIG_ED25519 {
        Some(KeyAlgorithm::Ed25519)
    } else if *oid == OID_PKCS1_RSAENCRYPTION {
        match spki.parsed().ok()? {
            PublicKey::RSA(rsa) => match rsa.key_size() {
                2048 => Some(KeyAlgorithm::Rsa2048),
                3072 => Some(KeyAlgorithm::Rsa3072),
                4096 => Some(KeyAlgorithm::Rsa4096),
                _ => None,
            },
            _ => None,
        }
    } else {
        None
    }
}

/// True when the key is the private half of the certificate's public key.
pub fn key_matches_certificate(key: &PrivateKey, cert: &CertificateInfo) -> bool {
    key.pair.der_bytes() == cert.public_key_bits.as_slice()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_algorithm_generates_and_round_trips_through_pem() {
        for alg in KeyAlgorithm::ALL {
            let key = PrivateKey::generate(alg).expect("generate");
            let back = PrivateKey::from_pem(&key.to_pem(), "test").expect("parse back");
            assert_eq!(back.algorithm(), alg);
            assert_eq!(back.pair.der_bytes(), key.pair.der_bytes());
        }
    }

    /// A P-521 key is a pod's own, never certop's: not generated, and not
    /// loaded as a CA's or a ClusterCertificate's key.
    #[test]
    fn a_p521_key_is_neither_generated_nor_loaded() {
        assert!(PrivateKey::generate(KeyAlgorithm::EcdsaP521).is_err());
        assert!(!KeyAlgorithm::ALL.contains(&KeyAlgorithm::EcdsaP521));
        assert!("ECDSA-P521".parse::<KeyAlgorithm>().is_err());
        let p521 = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P521_SHA512).expect("key");
        assert!(matches!(
            PrivateKey::from_pem(&p521.serialize_pem(), "ca.key"),
            Err(PkiError::UnsupportedKey(what)) if what == "ca.key"
        ));
    }

    #[test]
    fn garbage_is_a_clear_error_that_names_the_source() {
        let err = PrivateKey::from_pem("not a key", "ca.key").expect_err("must fail");
        assert!(err.to_string().contains("ca.key"), "{err}");
    }

    #[test]
    fn debug_never_shows_the_key() {
        let key = PrivateKey::generate(KeyAlgorithm::EcdsaP256).expect("generate");
        let pem = key.to_pem();
        let body = pem.lines().nth(1).expect("pem body");
        assert!(!format!("{key:?}").contains(body));
    }
}
