//! A backup as `kubectl certop backup` wrote it from a running cluster
//! (tests/fixtures/backup-v1-written.age, encrypted to the throwaway age
//! key beside it): format version 1 with the objects as this release's API
//! server returned them. Every later certop must restore it (the
//! promise of a versioned format), so these files are never edited: a new
//! format version gets files of its own.
//!
//! Taken from a control plane with certop running: CertificateAuthority
//! `cluster`, ClusterCertificates `web` and `api` (Secrets in namespace
//! `apps`), `api`'s first certificate revoked by serial
//! (CertificateRevocation `api-key-leaked`, so `api` was re-issued) and a
//! CertificatePolicy `team`.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::DynamicObject;
use serde_json::Value;

use super::Backup;
use super::restore_plan::{
    Outcome, Preconditions, adopted_keys_needed, compare, namespaces_needed, refusals, restorables,
};
use super::seal::{identities, open};
use crate::api::{
    CertificateAuthority, CertificatePolicy, CertificateRevocation, ClusterCertificate, meta,
};
use crate::core::ledger::LedgerEntry;
use crate::pki::{CertificateInfo, PrivateKey, key_matches_certificate, parse_chain, parse_crl};

fn written() -> Backup {
    let opening = identities(include_bytes!(
        "../../tests/fixtures/backup-v1-written.identity"
    ))
    .expect("the fixture's identity");
    let document = open(
        include_bytes!("../../tests/fixtures/backup-v1-written.age"),
        &opening,
    )
    .expect("the fixture opens with its identity");
    Backup::from_json(&document).expect("a version 1 document reads")
}

fn typed<T: serde::de::DeserializeOwned>(objects: &[Value]) -> Vec<T> {
    objects
        .iter()
        .map(|o| serde_json::from_value(o.clone()).expect("reads as this certop's type"))
        .collect()
}

fn bytes(secret: &Secret, key: &str) -> Vec<u8> {
    secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|b| b.0.clone())
        .unwrap_or_else(|| panic!("{key} in the Secret"))
}

/// Into an empty cluster, into certop's usual namespace or another one:
/// every object is created, in restore order, and nothing is refused.
#[test]
fn a_backup_this_version_wrote_restores_whole_into_an_empty_cluster() {
    let backup = written();
    assert_eq!(backup.version, 1);
    assert_eq!(backup.namespace, "certop-system");
    for namespace in ["certop-system", "pki"] {
        let all = restorables(&backup, namespace);
        let described: Vec<String> = all.iter().map(|r| r.describe()).collect();
        assert_eq!(described.len(), 13, "{described:#?}");
        assert_eq!(
            namespaces_needed(&all),
            BTreeSet::from(["apps".to_string(), namespace.to_string()])
        );
        let planned: Vec<_> = all.iter().map(|r| (r.clone(), compare(r, None))).collect();
        assert!(
            planned.iter().all(|(_, o)| *o == Outcome::Create),
            "{planned:#?}"
        );
        let pre = Preconditions {
            missing_namespaces: Vec::new(),
            missing_adopted_keys: adopted_keys_needed(&backup),
        };
        assert_eq!(
            refusals(&planned, &pre, namespace, false),
            Vec::<String>::new()
        );
        for r in &all {
            // What restore sends the API server.
            let object: DynamicObject =
                serde_json::from_value(r.without_status()).expect("an object to create");
            assert!(object.metadata.uid.is_none(), "{}", r.describe());
            assert!(
                object.metadata.resource_version.is_none(),
                "{}",
                r.describe()
            );
        }
    }
}

/// What the operator resumes from reads as this certop reads it: the four
/// kinds as its types, the CA key as the CA certificate's, the CRL signed
/// by it listing the revoked serial, the ledger recording every
/// certificate, and each certificate Secret holding the serial its
/// ClusterCertificate's status names.
#[test]
fn a_backup_this_version_wrote_holds_what_the_operator_resumes_from() {
    let backup = written();
    let cas: Vec<CertificateAuthority> = typed(&backup.certificate_authorities);
    let certificates: Vec<ClusterCertificate> = typed(&backup.cluster_certificates);
    let revocations: Vec<CertificateRevocation> = typed(&backup.certificate_revocations);
    let policies: Vec<CertificatePolicy> = typed(&backup.certificate_policies);
    assert_eq!(
        (
            cas.len(),
            certificates.len(),
            revocations.len(),
            policies.len()
        ),
        (1, 2, 1, 1)
    );

    let key_secrets: Vec<Secret> = typed(&backup.ca_key_secrets);
    let [key_secret] = key_secrets.as_slice() else {
        panic!("one CA key Secret: {key_secrets:?}")
    };
    let ca_certificate: CertificateInfo = parse_chain(&bytes(key_secret, "tls.crt"), "tls.crt")
        .expect("the CA certificate")
        .remove(0);
    let key = PrivateKey::from_pem(
        std::str::from_utf8(&bytes(key_secret, "tls.key")).expect("PEM"),
        "tls.key",
    )
    .expect("the CA key");
    assert!(key_matches_certificate(&key, &ca_certificate));
    let ca_status = cas[0].status.clone().unwrap_or_default();
    assert_eq!(
        ca_status.fingerprint.as_deref(),
        Some(ca_certificate.fingerprint.as_str())
    );

    let revoked: Vec<String> = revocations[0]
        .status
        .iter()
        .flat_map(|s| s.revoked.iter().map(|r| r.serial_number.clone()))
        .collect();
    assert_eq!(revoked.len(), 1, "{revoked:?}");
    let crl_maps: Vec<ConfigMap> = typed(&backup.crl_config_maps);
    let published = crl_maps
        .iter()
        .find(|c| {
            c.metadata
                .labels
                .as_ref()
                .is_some_and(|l| l.contains_key(meta::CRL))
        })
        .expect("the published CRL");
    let der = &published
        .binary_data
        .as_ref()
        .and_then(|b| b.get("crl.der"))
        .expect("crl.der")
        .0;
    let crl = parse_crl(der, Some(&ca_certificate)).expect("a CRL the CA signed");
    let listed: Vec<String> = crl.entries.iter().map(|(s, _, _)| s.to_string()).collect();
    assert_eq!(listed, revoked);
    assert_eq!(crl.number, ca_status.crl_number.map(|n| n as u64));

    let ledger: BTreeSet<String> = typed::<ConfigMap>(&backup.ledger_config_maps)
        .iter()
        .flat_map(|c| {
            let json = c
                .data
                .as_ref()
                .and_then(|d| d.get("entries.json"))
                .expect("entries.json");
            serde_json::from_str::<Vec<LedgerEntry>>(json).expect("a ledger shard")
        })
        .map(|e| e.serial)
        .collect();
    assert!(ledger.contains(&revoked[0]), "{ledger:?}");

    let secrets: Vec<Secret> = typed(&backup.certificate_secrets);
    for certificate in &certificates {
        let name = certificate.metadata.name.clone().unwrap_or_default();
        let serial = certificate
            .status
            .as_ref()
            .and_then(|s| s.serial_number.clone())
            .expect("a serial in the status");
        let secret = secrets
            .iter()
            .find(|s| s.metadata.name.as_deref() == Some(certificate.spec.secret_name.as_str()))
            .unwrap_or_else(|| panic!("{name}'s Secret"));
        let leaf = parse_chain(&bytes(secret, "tls.crt"), "tls.crt")
            .expect("the certificate")
            .remove(0);
        assert_eq!(leaf.serial.to_string(), serial, "{name}");
        assert!(ledger.contains(&serial), "{name}'s serial in the ledger");
        assert!(!revoked.contains(&serial), "{name} was re-issued");
    }
}
