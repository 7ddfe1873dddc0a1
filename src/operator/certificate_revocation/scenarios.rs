//! The revocation controller against the in-memory API server: each write
//! of a pass (the ledger shard, the CRL's copy, the published CRL, the
//! ClusterCertificate's record, the status) fails in turn, with each kind
//! of fault, and the passes that follow finish the revocation; at no point
//! does the published CRL lose an entry whose certificate has not expired.

use std::sync::{Arc, Mutex};

use chrono::{Duration, Utc};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::ResourceExt;
use serde_json::json;

use crate::api::{
    CertificateAuthority, CertificateRevocation, ClusterCertificate, RevocationRecord, meta,
};
use crate::core::ledger::{self, LedgerEntry, Revocation};
use crate::operator::conditions::{self, READY};
use crate::operator::runtime::managed_namespaces::ManagedNamespaces;
use crate::operator::signing_request::CsrPolicy;
use crate::operator::store::{crl, ledger_store};
use crate::operator::testing::fake_api::{FakeApi, Fault};
use crate::operator::testing::{self, NS, Writers, runtime};
use crate::operator::{Context, Error};
use crate::pki::{Authority, RevocationReason, parse_crl};

const CA_PATH: &str = "/apis/certop.dev/v1/certificateauthorities/ca";
const CERT_PATH: &str = "/apis/certop.dev/v1/clustercertificates/web";
const REV_PATH: &str = "/apis/certop.dev/v1/certificaterevocations/rev";
/// Revoked before the scenario starts, and listed in the CRL already.
const EARLIER: &str = "a0a1";
/// The certificate the ClusterCertificate `web` holds: the one revoked.
const CURRENT: &str = "b0b2";

struct World {
    api: FakeApi,
    ctx: Arc<Context>,
    authority: Authority,
    writers: Mutex<Writers>,
}

fn entry(serial: &str, revoked: bool) -> LedgerEntry {
    let now = Utc::now();
    LedgerEntry {
        serial: serial.into(),
        issued_at: (now - Duration::hours(1)).timestamp(),
        not_after: (now + Duration::days(10)).timestamp(),
        organizations: Vec::new(),
        dns_names: vec!["web.example.com".into()],
        ip_addresses: Vec::new(),
        uris: vec![],
        certificate: Some("web".into()),
        revoked: revoked.then(|| Revocation {
            at: (now - Duration::minutes(30)).timestamp(),
            reason: RevocationReason::Superseded,
        }),
        key: 0,
        fingerprint: None,
    }
}

/// A Ready CA whose ledger holds `EARLIER` (revoked, in a published CRL)
/// and `CURRENT` (the certificate of ClusterCertificate `web`), and a
/// CertificateRevocation `rev` of `CURRENT`.
async fn world() -> World {
    let api = FakeApi::new(&[NS]);
    let authority = testing::put_ready_ca(&api, "ca", json!({}));
    for e in [entry(EARLIER, true), entry(CURRENT, false)] {
        let shard = ledger::shard_of(&e.serial);
        let cm = ledger_store::shard_config_map("ca", shard, NS, &[e]);
        api.put(
            &format!("/api/v1/namespaces/{NS}/configmaps/{}", cm.name_any()),
            serde_json::to_value(&cm).expect("json"),
        );
    }
    let not_before = Utc::now() - Duration::hours(1);
    api.put(
        CERT_PATH,
        json!({"apiVersion": "certop.dev/v1", "kind": "ClusterCertificate",
               "metadata": {"name": "web", "generation": 1},
               "spec": {"issuerRef": {"name": "ca"}, "secretName": "web-tls", "secretNamespace": NS,
                        "dnsNames": ["web.example.com"]},
               "status": {"serialNumber": CURRENT, "notBefore": not_before}}),
    );
    api.put(
        REV_PATH,
        json!({"apiVersion": "certop.dev/v1", "kind": "CertificateRevocation",
               "metadata": {"name": "rev", "generation": 1, "creationTimestamp": "2099-01-01T00:00:00Z"},
               "spec": {"issuerRef": {"name": "ca"}, "serialNumbers": [CURRENT], "reason": "keyCompromise"}}),
    );
    let policy = CsrPolicy {
        max_lifetime: Duration::hours(24),
        kubelet_ca: None,
        approve_kubelets: false,
        kubelet_serving: Default::default(),
    };
    let (ctx, writers) = testing::context(&api, policy, ManagedNamespaces::All);
    let w = World {
        api,
        ctx,
        authority,
        writers: Mutex::new(writers),
    };
    w.sync();
    let ca: CertificateAuthority = w.api.get(CA_PATH).expect("CA");
    crl::publish(&w.ctx, &ca, &w.authority, 0, Utc::now())
        .await
        .expect("the first CRL");
    assert_eq!(w.crl_serials(), Some(vec![EARLIER.to_string()]));
    w
}

impl World {
    /// The stores see what the API server holds (a watch caught up).
    fn sync(&self) {
        let mut w = self.writers.lock().expect("writers");
        let ca: Option<CertificateAuthority> = self.api.get(CA_PATH);
        testing::init(&mut w.cas, ca.into_iter().collect());
        let cert: Option<ClusterCertificate> = self.api.get(CERT_PATH);
        w.certificates.replace(cert.into_iter().collect());
        let rev: Option<CertificateRevocation> = self.api.get(REV_PATH);
        testing::init(&mut w.revocations, rev.into_iter().collect());
    }

    async fn pass(&self) -> Result<(), Error> {
        self.sync();
        let rev: CertificateRevocation = self.api.get(REV_PATH).expect("revocation");
        super::reconcile(Arc::new(rev), self.ctx.clone())
            .await
            .map(|_| ())
    }

    /// The serials the published CRL lists, if it holds one the CA signed.
    fn crl_serials(&self) -> Option<Vec<String>> {
        let path = format!(
            "/api/v1/namespaces/{NS}/configmaps/{}",
            crl::config_map_name("ca", 0)
        );
        let cm: ConfigMap = self.api.get(&path)?;
        let der = cm.binary_data?.get(crl::DER_KEY)?.0.clone();
        let parsed = parse_crl(&der, Some(self.authority.certificate())).ok()?;
        Some(
            parsed
                .entries
                .iter()
                .map(|(s, _, _)| s.to_string())
                .collect(),
        )
    }

    fn revocation(&self) -> CertificateRevocation {
        self.api.get(REV_PATH).expect("revocation")
    }

    fn record_on_certificate(&self) -> Option<RevocationRecord> {
        let cert: ClusterCertificate = self.api.get(CERT_PATH).expect("certificate");
        serde_json::from_str(cert.annotations().get(meta::REVOCATION)?).ok()
    }

    fn ledger_entry(&self, serial: &str) -> LedgerEntry {
        self.api
            .list("/api/v1", "configmaps", Some(NS))
            .into_iter()
            .filter_map(|v| serde_json::from_value::<ConfigMap>(v).ok())
            .filter(|cm| cm.labels().contains_key(meta::LEDGER))
            .flat_map(|cm| ledger_store::entries_of(&cm).expect("ledger parses"))
            .find(|e| e.serial == serial)
            .expect("the entry is in the ledger")
    }
}

#[test]
fn a_clean_pass_makes_five_writes_and_the_next_none() {
    runtime().block_on(async {
        let w = world().await;
        let before = w.api.writes();
        w.pass().await.expect("pass");
        assert_eq!(
            w.api.writes() - before,
            5,
            "shard, copy, CRL, record, status: {:?}",
            w.api.log()
        );
        let before = w.api.writes();
        w.pass().await.expect("pass");
        assert_eq!(w.api.writes(), before, "a Ready revocation writes nothing");
        assert_eq!(
            w.api
                .event_reasons()
                .iter()
                .filter(|r| *r == "Revoked")
                .count(),
            2,
            "one Event on the revocation, one on the certificate"
        );
    });
}

#[test]
fn each_write_failing_in_turn_is_finished_by_the_next_pass_and_the_crl_keeps_every_entry() {
    runtime().block_on(async {
        let clean = world().await;
        let before = clean.api.writes();
        clean.pass().await.expect("clean pass");
        let writes = clean.api.writes() - before;
        for fault in Fault::EVERY {
            for n in 1..=writes {
                let case = format!("{fault:?} at write {n}");
                let w = world().await;
                w.api.fail_write(n, fault);
                let mut passes = 0;
                loop {
                    let _ = w.pass().await;
                    passes += 1;
                    let listed = w.crl_serials().unwrap_or_default();
                    assert!(
                        listed.iter().any(|s| s == EARLIER),
                        "{case}: the CRL lost {EARLIER} after pass {passes}: {listed:?}"
                    );
                    let rev = w.revocation();
                    let ready = rev
                        .status
                        .as_ref()
                        .is_some_and(|s| conditions::is_true(&s.conditions, READY));
                    if ready || passes == 4 {
                        break;
                    }
                }
                assert!(
                    passes <= 2,
                    "{case}: finished by the next pass, not {passes}"
                );
                let rev = w.revocation();
                let status = rev.status.expect("status");
                let condition = conditions::find(&status.conditions, READY).expect("Ready");
                assert_eq!(
                    (condition.status.as_str(), condition.reason.as_str()),
                    ("True", "Revoked"),
                    "{case}"
                );
                assert_eq!(status.revoked_certificates, Some(1), "{case}");
                assert_eq!(status.revoked.len(), 1, "{case}: recorded");
                let marked = w.ledger_entry(CURRENT).revoked.expect("marked");
                assert_eq!(marked.reason, RevocationReason::KeyCompromise, "{case}");
                let mut listed = w.crl_serials().expect("a CRL");
                listed.sort();
                assert_eq!(listed, [EARLIER, CURRENT], "{case}: both listed");
                let record = w.record_on_certificate().expect("recorded on web");
                assert_eq!(record.serial_number, CURRENT, "{case}");
                assert_eq!(record.revocation.as_deref(), Some("rev"), "{case}");
            }
        }
    });
}

#[test]
fn a_new_generation_with_everything_done_writes_only_its_status() {
    runtime().block_on(async {
        let w = world().await;
        w.pass().await.expect("pass");
        let before = w.api.writes();
        // A new generation: the pass looks again, finds every entry marked
        // and the CRL this replica holds listing them, and signs nothing.
        let mut rev = serde_json::to_value(w.revocation()).expect("json");
        rev["metadata"]["generation"] = json!(2);
        w.api.put(REV_PATH, rev);
        w.pass().await.expect("pass");
        assert_eq!(
            w.api.log()[before..],
            ["PATCH /apis/certop.dev/v1/certificaterevocations/rev/status".to_string()],
            "only the status"
        );
    });
}

/// A revocation naming, by content, a certificate the CA signed without
/// certop (`kubectl certop revoke --cert`), with each write failing in turn.
#[test]
fn a_certificate_certop_never_issued_is_recorded_revoked_and_outlives_its_revocation() {
    runtime().block_on(async {
        let offline = |w: &World| {
            let cert = crate::pki::fixtures::leaf(&w.authority, "offline.example");
            let mut rev = serde_json::to_value(w.revocation()).expect("json");
            rev["spec"] = json!({"issuerRef": {"name": "ca"}, "reason": "keyCompromise",
                                 "certificates": [cert.to_pem()]});
            w.api.put(REV_PATH, rev);
            cert
        };
        let faults = [Fault::Status(500), Fault::Status(409), Fault::Drop];
        for (n, fault) in (0..=4).flat_map(|n| faults.iter().map(move |f| (n, *f))) {
            let case = format!("{fault:?} at write {n}");
            let w = world().await;
            let cert = offline(&w);
            let serial = cert.serial.to_string();
            if n > 0 {
                w.api.fail_write(n, fault);
            }
            for _ in 0..3 {
                if w.pass().await.is_ok()
                    && w.revocation()
                        .status
                        .is_some_and(|s| conditions::is_true(&s.conditions, READY))
                {
                    break;
                }
            }
            let status = w.revocation().status.expect("status");
            assert!(conditions::is_true(&status.conditions, READY), "{case}");
            assert_eq!(status.revoked_certificates, Some(1), "{case}");
            let entry = w.ledger_entry(&serial);
            assert_eq!(entry.fingerprint, Some(cert.sha256_hex()), "{case}");
            assert_eq!(entry.certificate, None, "{case}: no ClusterCertificate");
            assert_eq!(
                entry.revoked.map(|r| r.reason),
                Some(RevocationReason::KeyCompromise),
                "{case}"
            );
            let listed = w.crl_serials().expect("a CRL");
            assert!(listed.contains(&serial), "{case}: {listed:?}");
            assert!(listed.iter().any(|s| s == EARLIER), "{case}: {listed:?}");
            assert!(
                w.record_on_certificate().is_none(),
                "{case}: web's certificate is not named"
            );
            // The revocation deleted: the ledger still holds the entry, so
            // the next CRL lists it again.
            w.api.remove(REV_PATH);
            w.sync();
            let ca: CertificateAuthority = w.api.get(CA_PATH).expect("CA");
            crl::publish(&w.ctx, &ca, &w.authority, 0, Utc::now())
                .await
                .expect("a CRL without the revocation");
            assert!(
                w.crl_serials().expect("a CRL").contains(&serial),
                "{case}: the CRL still lists it"
            );
        }
    });
}

#[test]
fn a_certificate_of_another_ca_is_refused_and_nothing_is_written() {
    runtime().block_on(async {
        let w = world().await;
        let stranger = crate::pki::fixtures::authority("other");
        let cert = crate::pki::fixtures::leaf(&stranger, "offline.example");
        let mut rev = serde_json::to_value(w.revocation()).expect("json");
        rev["spec"] = json!({"issuerRef": {"name": "ca"}, "certificates": [cert.to_pem()]});
        w.api.put(REV_PATH, rev);
        let before = w.api.writes();
        w.pass().await.expect("pass");
        assert_eq!(
            w.api.log()[before..],
            ["PATCH /apis/certop.dev/v1/certificaterevocations/rev/status".to_string()],
            "only the status"
        );
        let status = w.revocation().status.expect("status");
        let ready = conditions::find(&status.conditions, READY).expect("Ready");
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("False", "InvalidSpec")
        );
        assert!(
            ready.message.contains("was not signed by"),
            "{}",
            ready.message
        );
        assert_eq!(w.crl_serials(), Some(vec![EARLIER.to_string()]));
    });
}

/// A revocation that names a certificate by content and also matches by
/// name reaches every shard the CA has; the certificate's own shard may
/// not exist yet, and must still receive it, or the CRL never lists it
/// and deleting the revocation un-revokes it.
#[test]
fn a_named_certificate_whose_shard_does_not_exist_yet_is_recorded_by_a_rule_matching_names_too() {
    runtime().block_on(async {
        let w = world().await;
        let written = [ledger::shard_of(EARLIER), ledger::shard_of(CURRENT)];
        let cert =
            std::iter::repeat_with(|| crate::pki::fixtures::leaf(&w.authority, "offline.example"))
                .find(|c| !written.contains(&ledger::shard_of(&c.serial.to_string())))
                .expect("a certificate of a shard not written yet");
        let serial = cert.serial.to_string();
        let mut rev = serde_json::to_value(w.revocation()).expect("json");
        rev["spec"] = json!({"issuerRef": {"name": "ca"}, "reason": "keyCompromise",
                             "dnsNames": ["nothing.example"], "certificates": [cert.to_pem()]});
        w.api.put(REV_PATH, rev);
        w.pass().await.expect("pass");
        let status = w.revocation().status.expect("status");
        assert!(conditions::is_true(&status.conditions, READY));
        let listed = w.crl_serials().expect("a CRL");
        assert!(
            listed.contains(&serial),
            "the CRL lists {serial}: {listed:?}"
        );
        assert_eq!(w.ledger_entry(&serial).fingerprint, Some(cert.sha256_hex()));
    });
}

#[test]
fn the_controller_s_status_write_never_takes_back_what_the_webhook_reported() {
    use crate::operator::authz::RevokedIndex;
    use crate::operator::authz::report::{Observations, Reporter};
    runtime().block_on(async {
        let w = world().await;
        // The pass starts from the revocation as its store held it, with
        // the webhook's first report (one refusal) ...
        let index = RevokedIndex::listed(Default::default());
        let observations = Observations::default();
        let mut reporter = Reporter::default();
        // The index, as the webhook's watch fills it: the ledger entry of
        // CURRENT (revoked, with its digest) and the revocation naming it.
        let digest = "cd".repeat(32);
        let mut revoked = entry(CURRENT, true);
        revoked.fingerprint = Some(digest.clone());
        index
            .credentials
            .write()
            .expect("lock")
            .replace_shard("shard", "ca", &[revoked]);
        let report = |n: usize| {
            for _ in 0..n {
                observations.reviewed(Utc::now());
                observations.denied(digest.clone(), Utc::now());
            }
            index
                .credentials
                .write()
                .expect("lock")
                .replace_revocation(&w.revocation());
        };
        report(1);
        reporter
            .tick(&w.api.client(), &index, &observations, Utc::now())
            .await;
        w.sync();
        let seen = w.revocation();
        // ... and the webhook reports again before the pass writes.
        report(2);
        reporter
            .tick(&w.api.client(), &index, &observations, Utc::now())
            .await;
        super::reconcile(Arc::new(seen), w.ctx.clone())
            .await
            .expect("pass");
        let status = w.revocation().status.expect("status");
        assert!(conditions::is_true(&status.conditions, READY));
        assert_eq!(
            status.api_server.and_then(|a| a.denied_requests),
            Some(3),
            "the controller's write left the webhook's field alone"
        );
    });
}
