//! Issuance (key generation + signing) per algorithm, certop against a bare
//! rcgen loop doing the same work in the same run; and building + signing
//! CRLs of 1k, 10k and 100k entries. `make bench` runs it; figures go in
//! docs/benchmarks.md. Without `--bench` (`cargo test --all-targets`)
//! criterion runs each benchmark once, and the inputs that are slow in a
//! debug build (RSA-3072 and RSA-4096 keys, CRLs of 10k and 100k entries)
//! are left out.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failed step should panic

use std::hint::black_box;
use std::time::Duration as StdDuration;

use certop::api::{ClusterCertificateSpec, IssuerRef, KeyAlgorithm, PrivateKeySettings};
use certop::pki::{
    Authority, CaRequest, CrlRequest, LeafTemplate, PrivateKey, RevocationReason, RevokedEntry,
    SerialNumber, build_crl, issue, parse_crl,
};
use chrono::{Duration, Utc};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, Issuer, KeyPair,
    KeyUsagePurpose, RsaKeySize, SanType,
};

/// Whether `cargo bench` runs this (it passes `--bench`) rather than
/// `cargo test`.
fn benchmarking() -> bool {
    std::env::args().any(|a| a == "--bench")
}

fn spec(algorithm: KeyAlgorithm) -> ClusterCertificateSpec {
    ClusterCertificateSpec {
        issuer_ref: IssuerRef {
            name: "bench".into(),
        },
        secret_name: "bench".into(),
        secret_namespace: "default".into(),
        common_name: Some("web".into()),
        dns_names: vec!["web.example.com".into(), "web.default.svc".into()],
        ip_addresses: vec!["10.0.0.10".into()],
        private_key: Some(PrivateKeySettings {
            algorithm: Some(algorithm),
            rotation_policy: None,
        }),
        ..Default::default()
    }
}

/// The same certificate with rcgen alone: what any Rust issuer must pay.
fn bare_rcgen(algorithm: KeyAlgorithm, issuer: &Issuer<'_, KeyPair>) -> Vec<u8> {
    let key = match algorithm {
        KeyAlgorithm::EcdsaP256 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256),
        KeyAlgorithm::EcdsaP384 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384),
        KeyAlgorithm::EcdsaP521 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P521_SHA512),
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
    }
    .expect("key");
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "web");
    params.distinguished_name = dn;
    params.subject_alt_names = vec![
        SanType::DnsName("web.example.com".try_into().expect("ia5")),
        SanType::DnsName("web.default.svc".try_into().expect("ia5")),
        SanType::IpAddress("10.0.0.10".parse().expect("ip")),
    ];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now;
    params.not_after = now + time::Duration::days(90);
    let cert = params.signed_by(&key, issuer).expect("sign");
    let _pem = key.serialize_pem();
    cert.der().to_vec()
}

fn issuance(c: &mut Criterion) {
    let ca = Authority::create(&CaRequest::new("bench CA"), Utc::now()).expect("CA");
    let rcgen_issuer = Issuer::from_ca_cert_pem(
        ca.certificate_pem(),
        KeyPair::from_pem(&ca.key_pem()).expect("ca key"),
    )
    .expect("issuer");
    let mut group = c.benchmark_group("issue");
    let slow_in_debug = [KeyAlgorithm::Rsa3072, KeyAlgorithm::Rsa4096];
    for algorithm in KeyAlgorithm::ALL
        .into_iter()
        .filter(|a| benchmarking() || !slow_in_debug.contains(a))
    {
        if algorithm.is_rsa() {
            group
                .sample_size(10)
                .measurement_time(StdDuration::from_secs(20));
        } else {
            group
                .sample_size(100)
                .measurement_time(StdDuration::from_secs(5));
        }
        let template = LeafTemplate::from_spec(&spec(algorithm)).expect("template");
        group.bench_function(BenchmarkId::new("certop", algorithm.as_str()), |b| {
            b.iter(|| {
                let key = PrivateKey::generate(algorithm).expect("key");
                let issued = issue(&template, &key, &ca, Utc::now()).expect("issue");
                black_box((issued, key.to_pem()))
            })
        });
        group.bench_function(BenchmarkId::new("bare-rcgen", algorithm.as_str()), |b| {
            b.iter(|| black_box(bare_rcgen(algorithm, &rcgen_issuer)))
        });
    }
    group.finish();
}

fn crl(c: &mut Criterion) {
    let ca = Authority::create(&CaRequest::new("bench CA"), Utc::now()).expect("CA");
    let now = Utc::now();
    let mut group = c.benchmark_group("crl");
    group.sample_size(10);
    let sizes: &[usize] = if benchmarking() {
        &[1_000, 10_000, 100_000]
    } else {
        &[1_000]
    };
    for &size in sizes {
        let entries: Vec<RevokedEntry> = (0..size)
            .map(|_| RevokedEntry {
                serial: SerialNumber::random().expect("rng"),
                revoked_at: now,
                reason: RevocationReason::KeyCompromise,
                not_after: now + Duration::days(30),
            })
            .collect();
        let request = CrlRequest {
            number: 1,
            this_update: now,
            next_update: now + Duration::hours(24),
            entries: &entries,
        };
        let signed = build_crl(&ca, &request).expect("crl");
        let parsed = parse_crl(&signed.der, Some(ca.certificate())).expect("signed by the CA");
        assert_eq!(parsed.entries.len(), size, "the CRL lists every entry");
        group.bench_function(BenchmarkId::new("build-and-sign", size), |b| {
            b.iter(|| {
                let request = CrlRequest {
                    number: 1,
                    this_update: now,
                    next_update: now + Duration::hours(24),
                    entries: &entries,
                };
                black_box(build_crl(&ca, &request).expect("crl"))
            })
        });
    }
    group.finish();
}

/// The work of a rule revocation over 10k live certificates: match and mark
/// them in the ledger, write the ledger back as JSON (what is stored), and
/// build + sign the CRL that lists them.
fn revoke_10k(c: &mut Criterion) {
    use certop::core::ledger::{self, LedgerEntry, RevocationRule};
    let ca = Authority::create(&CaRequest::new("bench CA"), Utc::now()).expect("CA");
    let now = Utc::now();
    let entries: Vec<LedgerEntry> = (0..10_000)
        .map(|i| LedgerEntry {
            serial: SerialNumber::random().expect("rng").to_string(),
            issued_at: (now - Duration::hours(1)).timestamp(),
            not_after: (now + Duration::days(30)).timestamp(),
            organizations: vec!["system:nodes".into()],
            dns_names: vec![format!("node-{i}.corp.example")],
            ip_addresses: vec![format!("10.0.{}.{}", i / 250, i % 250)],
            uris: vec![],
            certificate: Some(format!("kubelet-serving-node-{i}")),
            revoked: None,
            key: 0,
            fingerprint: None,
        })
        .collect();
    let rule = RevocationRule {
        dns_names: vec![".corp.example".into()],
        issued_before: now,
        ..Default::default()
    };
    let mut group = c.benchmark_group("revoke");
    group.sample_size(10);
    group.bench_function("10k-by-rule-then-resign-crl", |b| {
        b.iter(|| {
            let mut ledger = entries.clone();
            let revoked = ledger::revoke(&mut ledger, &rule, RevocationReason::KeyCompromise, now);
            assert_eq!(revoked.len(), 10_000);
            let stored = serde_json::to_string(&ledger).expect("json");
            let crl_entries = ledger::revoked_entries(&ledger);
            let request = CrlRequest {
                number: 2,
                this_update: now,
                next_update: now + Duration::hours(24),
                entries: &crl_entries,
            };
            black_box((stored.len(), build_crl(&ca, &request).expect("crl")))
        })
    });
    group.finish();
}

criterion_group!(benches, issuance, crl, revoke_10k);
criterion_main!(benches);
