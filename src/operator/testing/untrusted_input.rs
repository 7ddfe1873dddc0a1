//! Property-based fuzzing (proptest, stable Rust) of every parser that reads
//! input certop does not control: adopted CA material and Secret contents
//! (PEM certificates and keys), CSRs, ledger shards, CRL ConfigMaps and
//! durations. Each one gets arbitrary bytes, and mutations (flipped,
//! inserted, cut bytes) of a valid sample both as raw bytes and re-armored as
//! PEM so the DER parsers behind the armor see them too. The property: an
//! error or a value, never a panic; a valid sample still parses.
//!
//! `make test` runs 256 cases per parser; `make fuzz` runs
//! `CERTOP_FUZZ_CASES` (default 20000) per parser and prints the count.

use std::collections::BTreeMap;

use base64::Engine;
use chrono::Utc;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::ConfigMap;
use proptest::prelude::*;

use crate::api::{GoDuration, meta};
use crate::operator::{store::crl, store::ledger_store};
use crate::pki::{Authority, CaRequest, PrivateKey, parse_chain, parse_crl};

fn cases() -> u32 {
    std::env::var("CERTOP_FUZZ_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(256)
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: cases(),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// A mutation of `sample`: some bytes replaced, inserted or cut.
fn mutated(sample: Vec<u8>) -> impl Strategy<Value = Vec<u8>> {
    let len = sample.len().max(1);
    prop::collection::vec((0..len, any::<u8>(), 0u8..3), 1..8).prop_map(move |edits| {
        let mut bytes = sample.clone();
        for (at, byte, kind) in edits {
            let at = at.min(bytes.len());
            match kind {
                0 if at < bytes.len() => bytes[at] = byte,
                1 => bytes.insert(at, byte),
                _ => {
                    bytes.truncate(at);
                }
            }
        }
        bytes
    })
}

/// Bytes as a PEM block of `tag`, so the parser behind the armor sees them.
fn armored(tag: &str, der: &[u8]) -> Vec<u8> {
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    format!("-----BEGIN {tag}-----\n{body}\n-----END {tag}-----\n").into_bytes()
}

fn der_of(pem_bytes: &[u8]) -> Vec<u8> {
    pem::parse(pem_bytes)
        .map(|p| p.into_contents())
        .unwrap_or_default()
}

/// Raw bytes, a mutated sample, or a mutated sample's DER re-armored.
fn inputs(sample: Vec<u8>, tag: &'static str) -> impl Strategy<Value = Vec<u8>> {
    let der = der_of(&sample);
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..2048),
        mutated(sample),
        mutated(der).prop_map(move |d| armored(tag, &d)),
    ]
}

struct Samples {
    ca: Authority,
    leaf_chain: Vec<u8>,
    csr: Vec<u8>,
    crl_cm: ConfigMap,
}

fn samples() -> Samples {
    let now = Utc::now();
    let ca = Authority::create(&CaRequest::new("fuzz CA"), now).expect("CA");
    let spec = crate::api::ClusterCertificateSpec {
        issuer_ref: crate::api::IssuerRef { name: "ca".into() },
        secret_name: "s".into(),
        secret_namespace: "ns".into(),
        dns_names: vec!["a.example.com".into()],
        ..Default::default()
    };
    let template = crate::pki::LeafTemplate::from_spec(&spec).expect("template");
    let key = PrivateKey::generate(template.key_algorithm).expect("key");
    let leaf = crate::pki::issue(&template, &key, &ca, now).expect("issue");
    let csr_key = rcgen::KeyPair::generate().expect("key");
    let mut params = rcgen::CertificateParams::new(vec!["n1.example".to_string()]).expect("params");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "system:node:n1");
    let csr = params
        .serialize_request(&csr_key)
        .expect("csr")
        .pem()
        .expect("pem")
        .into_bytes();
    let signed = crate::pki::build_crl(
        &ca,
        &crate::pki::CrlRequest {
            number: 7,
            this_update: crate::pki::whole_seconds(now),
            next_update: crate::pki::whole_seconds(now) + chrono::Duration::hours(1),
            entries: &[],
        },
    )
    .expect("CRL");
    let mut crl_cm = ConfigMap::default();
    crl_cm.metadata.annotations = Some(BTreeMap::from([
        (meta::CERTIFICATE_AUTHORITY.into(), "ca".into()),
        ("certop.dev/crl-number".into(), "7".into()),
    ]));
    crl_cm.binary_data = Some(BTreeMap::from([(
        crl::DER_KEY.into(),
        ByteString(signed.der),
    )]));
    crl_cm.data = Some(BTreeMap::from([(crl::PEM_KEY.into(), signed.pem)]));
    Samples {
        ca,
        leaf_chain: leaf.chain_pem.into_bytes(),
        csr,
        crl_cm,
    }
}

fn crl_der(cm: &ConfigMap) -> Vec<u8> {
    cm.binary_data
        .as_ref()
        .and_then(|b| b.get(crl::DER_KEY))
        .map(|v| v.0.clone())
        .unwrap_or_default()
}

#[test]
fn valid_samples_parse() {
    let s = samples();
    assert_eq!(
        parse_chain(&s.leaf_chain, "tls.crt").map(|c| c.len()).ok(),
        Some(2)
    );
    assert!(crate::core::csr::parse(&s.csr).is_ok());
    assert!(crl::from_config_maps(&s.crl_cm, |_| None, Some(s.ca.certificate())).is_some());
    assert!(
        Authority::load(
            s.ca.certificate_pem().as_bytes(),
            s.ca.key_pem().as_bytes(),
            Utc::now()
        )
        .is_ok()
    );
}

proptest! {
    #![proptest_config(config())]

    /// Secret tls.crt / ca.crt, adopted ca.crt.
    #[test]
    fn certificate_chains(bytes in inputs(samples().leaf_chain, "CERTIFICATE")) {
        let _ = parse_chain(&bytes, "tls.crt");
    }

    /// Secret tls.key, adopted ca.key (and the pair, as adoption loads it).
    #[test]
    fn private_keys_and_adopted_cas(bytes in inputs(samples().ca.key_pem().into_bytes(), "PRIVATE KEY")) {
        if let Ok(text) = std::str::from_utf8(&bytes) {
            let _ = PrivateKey::from_pem(text, "tls.key");
        }
        let s = samples();
        let _ = Authority::load(s.ca.certificate_pem().as_bytes(), &bytes, Utc::now());
        let _ = Authority::load(&bytes, s.ca.key_pem().as_bytes(), Utc::now());
    }

    /// CertificateSigningRequest spec.request.
    #[test]
    fn signing_requests(bytes in inputs(samples().csr, "CERTIFICATE REQUEST")) {
        let _ = crate::core::csr::parse(&bytes);
    }

    /// Ledger shard ConfigMaps' entries.json.
    #[test]
    fn ledger_shards(bytes in prop_oneof![
        prop::collection::vec(any::<u8>(), 0..1024),
        mutated(br#"[{"s":"ab","b":1,"a":2,"o":["x"],"d":["a.example"],"i":["10.0.0.1"],"c":"web","r":{"t":3,"r":"keyCompromise"}}]"#.to_vec()),
    ]) {
        let cm = ConfigMap {
            data: Some(BTreeMap::from([(
                "entries.json".to_string(),
                String::from_utf8_lossy(&bytes).into_owned(),
            )])),
            ..Default::default()
        };
        let _ = ledger_store::entries_of(&cm);
    }

    /// CRL ConfigMaps as every replica reads them (tampered DER, PEM, number).
    #[test]
    fn crl_config_maps(der in inputs(armored("X509 CRL", &crl_der(&samples().crl_cm)), "X509 CRL"), number in any::<u64>()) {
        let s = samples();
        let raw = der_of(&der);
        let mut cm = s.crl_cm.clone();
        if let Some(b) = cm.binary_data.as_mut() {
            b.insert(crl::DER_KEY.into(), ByteString(if raw.is_empty() { der.clone() } else { raw.clone() }));
        }
        if let Some(a) = cm.metadata.annotations.as_mut() {
            a.insert("certop.dev/crl-number".into(), number.to_string());
        }
        let _ = crl::from_config_maps(&cm, |_| None, None);
        let _ = crl::from_config_maps(&cm, |_| None, Some(s.ca.certificate()));
        // The same bytes as a CRL stored in parts, and a part of them alone.
        let der_bytes = if raw.is_empty() { der.clone() } else { raw.clone() };
        let (parts, marks) = crl::parts_of("certop-crl-x", "ns", "ca", number, &Default::default(), &der_bytes);
        let mut main = cm.clone();
        main.metadata.name = Some("certop-crl-x".into());
        main.binary_data = None;
        if let Some(a) = main.metadata.annotations.as_mut() {
            a.extend(marks);
        }
        let find = |n: &str| parts.iter().find(|p| p.metadata.name.as_deref() == Some(n)).cloned();
        let _ = crl::from_config_maps(&main, find, Some(s.ca.certificate()));
        let _ = crl::from_config_maps(&main, |_| parts.first().cloned(), None);
        let _ = parse_crl(&raw, Some(s.ca.certificate()));
    }

    /// Durations from any admitted (or not) object or flag.
    #[test]
    fn durations(text in prop_oneof![".{0,40}", "[0-9.]{1,30}(ns|us|ms|s|m|h|d){1,3}"]) {
        let _ = serde_json::from_value::<GoDuration>(serde_json::Value::String(text.clone())).map(|d| d.to_chrono());
        let _ = text.parse::<GoDuration>();
    }
}
