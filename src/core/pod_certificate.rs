//! PodCertificateRequests (`certificates.k8s.io/v1beta1`): the public key a
//! request carries, the leaf a pod gets, how long it lives and when the
//! kubelet should refresh it. Pure: the controller does the I/O.
//!
//! The leaf's content comes only from what kube-apiserver verified of the
//! request (it checks that the kubelet making it runs the pod, and fills
//! the pod's namespace and ServiceAccount): one URI SAN, the pod's SPIFFE
//! ID `spiffe://<trust domain>/ns/<namespace>/sa/<serviceAccount>`, no
//! subject (so no common name or organization an API server would read
//! as a user or group), usages digital signature (and key encipherment
//! for RSA), server and client auth. DNS names come only from the
//! `certop.dev/dns-names` annotation, where the CA lists it as allowed
//! and its policies allow each name.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::oid_registry::{OID_KEY_TYPE_EC_PUBLIC_KEY, OID_PKCS1_RSAENCRYPTION};
use x509_parser::prelude::FromDer;
use x509_parser::public_key::PublicKey;
use x509_parser::x509::SubjectPublicKeyInfo;

use crate::api::{DNS_NAMES_ANNOTATION, KeyAlgorithm, KeyUsage, PodCertificateSettings};
use crate::pki::{LeafTemplate, POD_BACKDATE};

/// The key type certop suggests to a request whose key it does not sign.
pub const SUGGESTED_KEY_TYPE: &str = "ECDSAP256";

/// A request's maxExpirationSeconds when it gives none (the API's default).
pub const DEFAULT_MAX_EXPIRATION_SECONDS: i32 = 86_400;

/// The shortest certificate kube-apiserver accepts for a request.
pub const MIN_LIFETIME: chrono::Duration = chrono::Duration::hours(1);

/// How far beginRefreshAt must stay from notBefore and from notAfter
/// (kube-apiserver refuses it closer).
const REFRESH_MARGIN: chrono::Duration = chrono::Duration::minutes(10);

/// The pod's identity, as kube-apiserver verified it for the request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodIdentity<'a> {
    pub namespace: &'a str,
    pub service_account: &'a str,
    pub pod_name: &'a str,
    pub pod_uid: &'a str,
    pub node_name: &'a str,
}

impl PodIdentity<'_> {
    /// The pod's SPIFFE ID in `trust_domain`.
    pub fn spiffe_id(&self, trust_domain: &str) -> String {
        format!(
            "spiffe://{trust_domain}/ns/{}/sa/{}",
            self.namespace, self.service_account
        )
    }

    /// The user kube-apiserver knows the pod's ServiceAccount as: the
    /// requester the CA's CertificatePolicies are asked about.
    pub fn service_account_user(&self) -> String {
        format!(
            "system:serviceaccount:{}:{}",
            self.namespace, self.service_account
        )
    }

    /// The ServiceAccount's groups, as kube-apiserver gives them.
    pub fn service_account_groups(&self) -> Vec<String> {
        vec![
            "system:serviceaccounts".to_string(),
            format!("system:serviceaccounts:{}", self.namespace),
            "system:authenticated".to_string(),
        ]
    }
}

/// Why a request's key cannot be signed. `Unsupported` is the API's
/// `UnsupportedKeyType`; its message suggests a type certop signs.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("the request carries neither spec.stubPKCS10Request nor spec.pkixPublicKey")]
    Missing,
    #[error("the request's {0} does not parse: {1}")]
    Unparsable(&'static str, String),
    #[error(
        "certop does not sign {0} keys; use {SUGGESTED_KEY_TYPE} (or ECDSAP384, ECDSAP521, ED25519, RSA3072, RSA4096)"
    )]
    Unsupported(String),
}

/// The request's public key (DER SubjectPublicKeyInfo) and its type: from
/// the stub PKCS#10 request that 1.36 kubelets send, else from the older
/// pkixPublicKey. kube-apiserver checked at admission that the requester
/// holds the key (the stub's signature, or proofOfPossession over the pod
/// UID), and the spec is immutable after.
pub fn public_key(
    stub_pkcs10: &[u8],
    pkix: Option<&[u8]>,
) -> Result<(Vec<u8>, KeyAlgorithm), KeyError> {
    let spki_der = if !stub_pkcs10.is_empty() {
        let (_, request) = X509CertificationRequest::from_der(stub_pkcs10)
            .map_err(|e| KeyError::Unparsable("stubPKCS10Request", e.to_string()))?;
        request.certification_request_info.subject_pki.raw.to_vec()
    } else {
        match pkix {
            Some(der) if !der.is_empty() => der.to_vec(),
            _ => return Err(KeyError::Missing),
        }
    };
    let (_, spki) = SubjectPublicKeyInfo::from_der(&spki_der)
        .map_err(|e| KeyError::Unparsable("public key", e.to_string()))?;
    match crate::pki::key_algorithm_of_spki(&spki) {
        // Kubernetes admits RSA from 3072 bits only.
        Some(KeyAlgorithm::Rsa2048) => Err(KeyError::Unsupported("RSA2048".to_string())),
        Some(algorithm) => Ok((spki_der, algorithm)),
        None => Err(KeyError::Unsupported(key_type_name(&spki))),
    }
}

/// The API's name of a key type certop does not sign, for the message.
fn key_type_name(spki: &SubjectPublicKeyInfo<'_>) -> String {
    let oid = &spki.algorithm.algorithm;
    if *oid == OID_KEY_TYPE_EC_PUBLIC_KEY {
        "this ECDSA curve's".to_string()
    } else if *oid == OID_PKCS1_RSAENCRYPTION {
        match spki.parsed() {
            Ok(PublicKey::RSA(rsa)) => format!("RSA{}", rsa.key_size()),
            _ => "this RSA".to_string(),
        }
    } else {
        format!("{oid}")
    }
}

/// The most DNS names a pod's annotation adds: as many as a
/// ClusterCertificate may list. Without a bound, one pod's 256 KiB of
/// annotation makes a ledger entry of that size, and a few fill the CA's
/// ledger shards, so the CA records (and issues) nothing more.
pub const MAX_DNS_NAMES: usize = 100;

/// The longest DNS name (RFC 1035).
const MAX_DNS_NAME_LENGTH: usize = 253;

/// Why a request's unverifiedUserAnnotations are refused: the API's
/// `InvalidUnverifiedUserAnnotations`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AnnotationError {
    #[error(
        "unverifiedUserAnnotations {0:?} means nothing to certop (it reads only {DNS_NAMES_ANNOTATION}); remove it from the pod's podCertificate volume"
    )]
    Unknown(String),
    #[error(
        "unverifiedUserAnnotations {key:?} is not allowed by CertificateAuthority {ca}: add it to spec.podCertificates.allowedUnverifiedAnnotations, or remove it from the pod"
    )]
    NotAllowed { key: String, ca: String },
    #[error("unverifiedUserAnnotations {DNS_NAMES_ANNOTATION}: {0}")]
    BadDnsName(String),
    #[error(
        "unverifiedUserAnnotations {DNS_NAMES_ANNOTATION} lists {0} names, at most {MAX_DNS_NAMES} are signed: list fewer"
    )]
    TooManyDnsNames(usize),
}

/// The DNS names the request's annotations ask for, each checked: only
/// keys the CA allows, and only names that are DNS names.
pub fn annotated_dns_names(
    annotations: Option<&BTreeMap<String, String>>,
    settings: &PodCertificateSettings,
    ca: &str,
) -> Result<Vec<String>, AnnotationError> {
    let mut names = BTreeSet::new();
    for (key, value) in annotations.into_iter().flatten() {
        if key != DNS_NAMES_ANNOTATION {
            return Err(AnnotationError::Unknown(key.clone()));
        }
        if !settings.allowed_annotations.iter().any(|a| a == key) {
            return Err(AnnotationError::NotAllowed {
                key: key.clone(),
                ca: ca.to_string(),
            });
        }
        for name in value.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            // Echoed whole, a name past the DNS limit would make a message
            // kube-apiserver refuses (over 32 KiB), and the request would
            // never be answered: its start is enough to find it.
            if name.len() > MAX_DNS_NAME_LENGTH {
                let start: String = name.chars().take(64).collect();
                return Err(AnnotationError::BadDnsName(format!(
                    "the name starting {start:?} is {} bytes long; a DNS name has at most {MAX_DNS_NAME_LENGTH}",
                    name.len()
                )));
            }
            let name = name.to_ascii_lowercase();
            crate::pki::check_dns_name(&name, "a name")
                .map_err(|e| AnnotationError::BadDnsName(e.to_string()))?;
            names.insert(name);
        }
    }
    if names.len() > MAX_DNS_NAMES {
        return Err(AnnotationError::TooManyDnsNames(names.len()));
    }
    Ok(names.into_iter().collect())
}

/// The leaf's lifetime: the least of the request's maxExpirationSeconds
/// and the CA's podCertificates.maxDuration (the CA's policy and its own
/// notAfter cut it further when it is signed).
pub fn lifetime(
    max_expiration_seconds: Option<i32>,
    settings: &PodCertificateSettings,
) -> chrono::Duration {
    let asked = chrono::Duration::seconds(i64::from(
        max_expiration_seconds.unwrap_or(DEFAULT_MAX_EXPIRATION_SECONDS),
    ));
    asked.min(settings.max_lifetime)
}

/// What certop signs for the pod: its SPIFFE ID (and the annotated DNS
/// names), for `lifetime` as the whole span notAfter - notBefore (what
/// kube-apiserver compares with maxExpirationSeconds, and what the CA's
/// policies cap). The backdate comes out of it only once the policies
/// have capped it (`signing_lifetime`), so it never lengthens the span.
pub fn template(
    identity: &PodIdentity,
    settings: &PodCertificateSettings,
    dns_names: Vec<String>,
    key_algorithm: KeyAlgorithm,
    lifetime: chrono::Duration,
    crl_distribution_point: Option<String>,
) -> LeafTemplate {
    let mut usages = BTreeSet::from([
        KeyUsage::DigitalSignature,
        KeyUsage::ServerAuth,
        KeyUsage::ClientAuth,
    ]);
    if key_algorithm.is_rsa() {
        usages.insert(KeyUsage::KeyEncipherment);
    }
    LeafTemplate {
        common_name: None,
        organizations: Vec::new(),
        dns_names,
        ip_addresses: Vec::new(),
        uris: vec![identity.spiffe_id(&settings.trust_domain)],
        usages,
        key_algorithm,
        lifetime,
        crl_distribution_point,
    }
}

/// The lifetime to sign from now for a whole span `span`: the span less
/// the backdate, so notAfter - notBefore is exactly `span`.
pub fn signing_lifetime(span: chrono::Duration) -> chrono::Duration {
    span - POD_BACKDATE
}

/// When the kubelet should begin to refresh: in the last part of the
/// lifetime, between 60% and 80% of it, at a point fixed by the pod's UID
/// so the pods of a rollout spread out and a pod's point never moves; at
/// least 10 minutes from either end (kube-apiserver's rule).
pub fn begin_refresh_at(
    not_before: DateTime<Utc>,
    not_after: DateTime<Utc>,
    pod_uid: &str,
) -> DateTime<Utc> {
    let span = (not_after - not_before).num_seconds().max(0);
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, pod_uid.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&d.as_ref()[..8]);
    // A point in [0, 1) from the UID's digest, in millionths.
    let point = i64::try_from(u64::from_be_bytes(first) % 1_000_000).unwrap_or(0);
    let offset = span * 6 / 10 + span * 2 / 10 * point / 1_000_000;
    let at = not_before + chrono::Duration::seconds(offset);
    at.max(not_before + REFRESH_MARGIN)
        .min(not_after - REFRESH_MARGIN)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, KeyPair, PublicKeyData};

    fn settings(allowed: &[&str]) -> PodCertificateSettings {
        PodCertificateSettings {
            max_lifetime: chrono::Duration::hours(24),
            trust_domain: "cluster.local".into(),
            allowed_annotations: allowed.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn stub_of(key: &KeyPair) -> Vec<u8> {
        CertificateParams::default()
            .serialize_request(key)
            .expect("csr")
            .der()
            .to_vec()
    }

    #[test]
    fn the_key_comes_from_the_stub_request_or_the_pkix_field_and_its_type_is_named() {
        let cases: Vec<(&str, &'static rcgen::SignatureAlgorithm, KeyAlgorithm)> = vec![
            (
                "P-256",
                &rcgen::PKCS_ECDSA_P256_SHA256,
                KeyAlgorithm::EcdsaP256,
            ),
            (
                "P-384",
                &rcgen::PKCS_ECDSA_P384_SHA384,
                KeyAlgorithm::EcdsaP384,
            ),
            ("Ed25519", &rcgen::PKCS_ED25519, KeyAlgorithm::Ed25519),
            (
                "P-521",
                &rcgen::PKCS_ECDSA_P521_SHA512,
                KeyAlgorithm::EcdsaP521,
            ),
        ];
        for (case, alg, algorithm) in cases {
            let key = KeyPair::generate_for(alg).expect("key");
            let spki = key.subject_public_key_info();
            for (how, got) in [
                ("stub", public_key(&stub_of(&key), None)),
                ("pkix", public_key(&[], Some(&spki))),
            ] {
                assert_eq!(got, Ok((spki.clone(), algorithm)), "{case} {how}");
            }
        }
        let rsa = KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_3072)
            .expect("rsa");
        assert_eq!(
            public_key(&stub_of(&rsa), None).map(|(_, a)| a),
            Ok(KeyAlgorithm::Rsa3072)
        );
        let small = KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)
            .expect("rsa");
        let err = public_key(&stub_of(&small), None).expect_err("RSA 2048 is not admitted");
        assert!(err.to_string().contains("use ECDSAP256"), "{err}");
        assert_eq!(public_key(&[], None), Err(KeyError::Missing));
        assert!(matches!(
            public_key(b"junk", None),
            Err(KeyError::Unparsable("stubPKCS10Request", _))
        ));
    }

    #[test]
    fn annotations_pass_only_where_the_ca_allows_each_key_and_every_name_is_a_dns_name() {
        let map = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let allowed = settings(&[DNS_NAMES_ANNOTATION]);
        let none = settings(&[]);
        // Names in the order the leaf lists them (sorted).
        let mut most_names: Vec<String> = (0..100).map(|i| format!("n{i}.shop.svc")).collect();
        most_names.sort();
        let most = most_names.join(",");
        let too_many = format!("{most},n100.shop.svc");
        type Case<'a> = (
            &'a str,
            BTreeMap<String, String>,
            &'a PodCertificateSettings,
            Result<Vec<&'a str>, &'a str>,
        );
        let cases: Vec<Case> = vec![
            ("no annotations", map(&[]), &none, Ok(vec![])),
            (
                "names allowed",
                map(&[(DNS_NAMES_ANNOTATION, "b.example.com, A.example.com")]),
                &allowed,
                Ok(vec!["a.example.com", "b.example.com"]),
            ),
            (
                "the key not allowed by the CA",
                map(&[(DNS_NAMES_ANNOTATION, "a.example.com")]),
                &none,
                Err("spec.podCertificates.allowedUnverifiedAnnotations"),
            ),
            (
                "a key certop does not read",
                map(&[("example.com/role", "admin")]),
                &allowed,
                Err("means nothing to certop"),
            ),
            (
                "more names than a ClusterCertificate may list",
                map(&[(DNS_NAMES_ANNOTATION, &too_many)]),
                &allowed,
                Err("at most 100"),
            ),
            (
                "as many names as a ClusterCertificate may list",
                map(&[(DNS_NAMES_ANNOTATION, &most)]),
                &allowed,
                Ok(most_names.iter().map(String::as_str).collect()),
            ),
            (
                "an IP where a name goes",
                map(&[(DNS_NAMES_ANNOTATION, "10.0.0.1")]),
                &allowed,
                Err("IP address"),
            ),
        ];
        // A name far past the DNS limit is refused in a message that fits
        // a condition (kube-apiserver refuses one over 32 KiB, and the
        // request would never be answered).
        let long = map(&[(DNS_NAMES_ANNOTATION, &"a".repeat(200_000))]);
        let err = annotated_dns_names(Some(&long), &allowed, "ca")
            .expect_err("a name longer than 253")
            .to_string();
        assert!(err.len() < 1024, "{} bytes", err.len());
        assert!(err.contains("253"), "{err}");
        for (case, annotations, settings, want) in cases {
            let got = annotated_dns_names(Some(&annotations), settings, "ca");
            match want {
                Ok(names) => assert_eq!(
                    got,
                    Ok(names.iter().map(|s| s.to_string()).collect()),
                    "{case}"
                ),
                Err(text) => {
                    let err = got.expect_err(case).to_string();
                    assert!(err.contains(text), "{case}: {err}");
                }
            }
        }
    }

    #[test]
    fn the_lifetime_is_the_least_of_the_request_and_the_ca() {
        let s = settings(&[]);
        let h = chrono::Duration::hours;
        assert_eq!(lifetime(None, &s), h(24));
        assert_eq!(lifetime(Some(3600), &s), h(1));
        assert_eq!(lifetime(Some(7 * 86_400), &s), h(24));
    }

    #[test]
    fn the_leaf_names_only_the_pods_service_account_and_spans_exactly_its_lifetime() {
        let identity = PodIdentity {
            namespace: "shop",
            service_account: "cart",
            pod_name: "cart-1",
            pod_uid: "u-1",
            node_name: "n1",
        };
        let t = template(
            &identity,
            &settings(&[]),
            vec![],
            KeyAlgorithm::EcdsaP256,
            chrono::Duration::hours(2),
            None,
        );
        assert_eq!(
            t.uris,
            vec!["spiffe://cluster.local/ns/shop/sa/cart".to_string()]
        );
        assert_eq!((t.common_name, t.organizations.len()), (None, 0));
        assert_eq!(t.lifetime, chrono::Duration::hours(2));
        assert_eq!(
            signing_lifetime(t.lifetime) + POD_BACKDATE,
            chrono::Duration::hours(2)
        );
        assert!(!t.usages.contains(&KeyUsage::KeyEncipherment));
    }

    #[test]
    fn refresh_is_spread_by_pod_in_the_last_part_and_kept_from_both_ends() {
        let nb = DateTime::<Utc>::from_timestamp(1_800_000_000, 0).expect("time");
        let day = nb + chrono::Duration::hours(24);
        let points: BTreeSet<i64> = (0..50)
            .map(|i| begin_refresh_at(nb, day, &format!("uid-{i}")).timestamp())
            .collect();
        assert!(points.len() > 40, "spread: {points:?}");
        for p in &points {
            let from_start = p - nb.timestamp();
            assert!(
                (86_400 * 6 / 10..=86_400 * 8 / 10).contains(&from_start),
                "{from_start}"
            );
        }
        assert_eq!(
            begin_refresh_at(nb, day, "a"),
            begin_refresh_at(nb, day, "a")
        );
        // The shortest lifetime still leaves 10 minutes at each end.
        let hour = nb + chrono::Duration::hours(1);
        for i in 0..50 {
            let at = begin_refresh_at(nb, hour, &format!("uid-{i}"));
            assert!(at >= nb + REFRESH_MARGIN && at <= hour - REFRESH_MARGIN);
        }
    }
}
