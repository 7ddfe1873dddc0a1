//! Reconciler scenarios against the in-memory API server: every write of a
//! pass fails in turn (500, 409, 422, a dropped connection), and the passes
//! that follow converge with nothing lost, no second key, no extra ledger
//! entry, and a revocation still applied.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, Utc};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::ResourceExt;
use kube::core::PartialObjectMeta;
use kube::runtime::watcher;
use serde_json::json;

use crate::api::{CertificateAuthority, CertificateRevocation, ClusterCertificate, meta};
use crate::core::ledger::LedgerEntry;
use crate::core::plan::{TLS_CERT_KEY, TLS_PRIVATE_KEY_KEY};
use crate::operator::runtime::managed_namespaces::ManagedNamespaces;
use crate::operator::signing_request::CsrPolicy;
use crate::operator::testing::fake_api::{FakeApi, Fault};
use crate::operator::testing::{self, NS, Writers, b64, init, runtime};
use crate::operator::{
    Context, certificate, certificate_revocation, conditions, store::ledger_store,
};
use crate::pki::{
    Authority, CaRequest, RevocationReason, key_matches_certificate, parse_chain, parse_crl,
};

const CA_PATH: &str = "/apis/certop.dev/v1/certificateauthorities/ca";
const CERT_PATH: &str = "/apis/certop.dev/v1/clustercertificates/web";
const REV_PATH: &str = "/apis/certop.dev/v1/certificaterevocations/rev";
const SECRET_PATH: &str = "/api/v1/namespaces/app/secrets/web-tls";

struct World {
    api: FakeApi,
    ctx: Arc<Context>,
    authority: Authority,
    writers: Mutex<Writers>,
}

/// A Ready CA (key in its Secret, bound by fingerprint) and a
/// ClusterCertificate for it, in a fake API server.
fn world() -> World {
    world_managing(ManagedNamespaces::All)
}

/// `world()` under a backlog: records are deferred, and every ledger
/// shard of the CA was just written, so the next record waits for a group.
fn backlogged_world() -> World {
    let w = world();
    w.ctx.ledger_groups.set_deferral(true);
    ledger_store::as_if_busy(&w.ctx, "ca");
    w
}

/// `world()` with the operator limited to `managed` namespaces.
fn world_managing(managed_namespaces: ManagedNamespaces) -> World {
    let api = FakeApi::new(&[NS, "app", "default"]);
    let authority = testing::put_ready_ca(&api, "ca", json!({}));
    api.put(
        CERT_PATH,
        json!({"apiVersion": "certop.dev/v1", "kind": "ClusterCertificate",
               "metadata": {"name": "web", "generation": 1, "finalizers": [meta::FINALIZER]},
               "spec": {"issuerRef": {"name": "ca"}, "secretName": "web-tls", "secretNamespace": "app",
                        "dnsNames": ["web.example.com"]}}),
    );
    let csr_policy = CsrPolicy {
        max_lifetime: chrono::Duration::hours(24),
        kubelet_ca: None,
        approve_kubelets: false,
        kubelet_serving: Default::default(),
    };
    let (ctx, writers) = testing::context(&api, csr_policy, managed_namespaces);
    let world = World {
        api,
        ctx,
        authority,
        writers: Mutex::new(writers),
    };
    world.sync();
    world
}

impl World {
    /// The stores see what the API server holds (a watch caught up).
    fn sync(&self) {
        let mut w = self.writers.lock().expect("writers");
        testing::sync_cas(&self.api, &mut w);
        let cert: Option<ClusterCertificate> = self.api.get(CERT_PATH);
        w.certificates.replace(cert.into_iter().collect());
        let rev: Option<CertificateRevocation> = self.api.get(REV_PATH);
        init(&mut w.revocations, rev.into_iter().collect());
        // The certificate's Secret as the Secret watch shows it.
        let shown = match self.api.get::<Secret>(SECRET_PATH) {
            Some(s) => watcher::Event::Apply(PartialObjectMeta {
                metadata: s.metadata,
                ..Default::default()
            }),
            None => watcher::Event::Delete(PartialObjectMeta {
                metadata: kube::api::ObjectMeta {
                    name: Some("web-tls".into()),
                    namespace: Some("app".into()),
                    ..Default::default()
                },
                ..Default::default()
            }),
        };
        self.ctx.written_secrets.observe(&shown);
    }

    async fn certificate_pass(&self) -> Result<(), crate::operator::Error> {
        self.sync();
        let cert: ClusterCertificate = self.api.get(CERT_PATH).expect("certificate");
        certificate::reconcile(Arc::new(cert), self.ctx.clone())
            .await
            .map(|_| ())
    }

    /// A pass with the clock at `now`, then the passes the watch events of
    /// its own writes start (the own-write echoes), while they write.
    /// Returns the number of passes.
    async fn certificate_passes_at(&self, now: DateTime<Utc>) -> usize {
        for n in 1..=20 {
            let before = self.api.writes();
            self.sync();
            let cert: ClusterCertificate = self.api.get(CERT_PATH).expect("certificate");
            let _ = certificate::apply_at(&cert, &self.ctx, now).await;
            if self.api.writes() == before {
                return n;
            }
        }
        20
    }

    /// The revision of the Secret's certificate: how many were issued.
    fn revision(&self) -> i64 {
        self.secret()
            .and_then(|s| s.annotations().get(meta::REVISION)?.parse().ok())
            .unwrap_or(0)
    }

    async fn revocation_pass(&self) -> Result<(), crate::operator::Error> {
        self.sync();
        let rev: CertificateRevocation = self.api.get(REV_PATH).expect("revocation");
        certificate_revocation::reconcile(Arc::new(rev), self.ctx.clone())
            .await
            .map(|_| ())
    }

    fn secret(&self) -> Option<Secret> {
        self.api.get(SECRET_PATH)
    }

    fn ledger(&self) -> Vec<LedgerEntry> {
        self.api
            .list("/api/v1", "configmaps", Some(NS))
            .into_iter()
            .filter_map(|v| serde_json::from_value::<ConfigMap>(v).ok())
            .filter(|cm| cm.labels().contains_key(meta::LEDGER))
            .flat_map(|cm| ledger_store::entries_of(&cm).expect("ledger parses"))
            .collect()
    }

    /// The serial the Secret's certificate has, after checking the key
    /// matches it and it chains to the CA.
    fn secret_serial(&self) -> String {
        let s = self.secret().expect("the Secret exists");
        let data = s.data.expect("data");
        let chain = parse_chain(&data[TLS_CERT_KEY].0, "tls.crt").expect("certificate");
        let key = crate::pki::PrivateKey::from_pem(
            std::str::from_utf8(&data[TLS_PRIVATE_KEY_KEY].0).expect("utf8"),
            "tls.key",
        )
        .expect("key");
        assert!(
            key_matches_certificate(&key, &chain[0]),
            "key and certificate match"
        );
        assert!(chain[0].is_issued_by(self.authority.certificate()));
        chain[0].serial.to_string()
    }

    fn status(&self) -> crate::api::ClusterCertificateStatus {
        let cert: ClusterCertificate = self.api.get(CERT_PATH).expect("certificate");
        cert.status.unwrap_or_default()
    }

    /// Passes until one succeeds with nothing left to write.
    async fn settle_certificate(&self) {
        for _ in 0..6 {
            let before = self.api.writes();
            if self.certificate_pass().await.is_ok() && self.api.writes() == before {
                return;
            }
        }
        panic!("the certificate did not settle: {:?}", self.api.log());
    }
}

/// Puts the CertificateRevocation `rev`, created at `created`, with `spec`.
fn put_revocation(w: &World, created: impl serde::Serialize, spec: serde_json::Value) {
    w.api.put(
        REV_PATH,
        json!({"apiVersion": "certop.dev/v1", "kind": "CertificateRevocation",
               "metadata": {"name": "rev", "generation": 1, "creationTimestamp": created},
               "spec": spec}),
    );
}

/// The invariants after any sequence of failed and retried passes.
fn assert_converged(w: &World, case: &str) {
    let serial = w.secret_serial();
    let status = w.status();
    assert_eq!(
        status.serial_number.as_deref(),
        Some(serial.as_str()),
        "{case}: status names the Secret's certificate"
    );
    assert!(
        conditions::is_true(&status.conditions, conditions::READY),
        "{case}: Ready"
    );
    let ledger = w.ledger();
    assert_eq!(
        ledger.len(),
        1,
        "{case}: one ledger entry, no phantom: {ledger:?}"
    );
    assert_eq!(
        ledger[0].serial, serial,
        "{case}: the ledger has the Secret's certificate"
    );
    let secret = w.secret().expect("Secret");
    assert_eq!(
        secret.annotations().get(meta::REVISION).map(String::as_str),
        Some("1"),
        "{case}: issued once, no second key"
    );
}

#[test]
fn a_clean_first_pass_issues_once_and_the_next_writes_nothing() {
    runtime().block_on(async {
        let w = world();
        w.certificate_pass().await.expect("first pass");
        assert_converged(&w, "clean");
        let writes = w.api.writes();
        w.certificate_pass().await.expect("second pass");
        assert_eq!(
            w.api.writes(),
            writes,
            "a settled certificate writes nothing: {:?}",
            w.api.log()
        );
    });
}

/// How far ahead the certificate's wake is set, in whole seconds.
fn wake_in(w: &World) -> Option<u64> {
    w.ctx.certificate_queue.wake_of("web").map(|at| {
        at.saturating_duration_since(tokio::time::Instant::now())
            .as_secs()
    })
}

#[test]
fn every_next_look_of_a_certificate_is_its_wake_in_the_queue_never_a_kube_runtime_requeue() {
    runtime().block_on(async {
        let w = world();
        w.settle_certificate().await;
        let pass = |w: &World| {
            let cert: ClusterCertificate = w.api.get(CERT_PATH).expect("certificate");
            certificate::reconcile(Arc::new(cert), w.ctx.clone())
        };
        let kept_out = kube::runtime::controller::Action::await_change();
        assert_eq!(pass(&w).await.expect("pass"), kept_out, "Ready");
        let renewal = w.status().renewal_time.expect("renewal time");
        let wanted = certificate::requeue_until(renewal, Utc::now()).as_secs();
        let set = wake_in(&w).expect("a wake");
        assert!(
            set <= wanted && wanted - set < 5,
            "Ready: the wake is the renewal (or the longest wait): {set} s for {wanted} s"
        );
        assert_eq!(w.ctx.certificate_queue.lengths(), (0, 1));
        // Its status write fails: the error's backoff, in place of the renewal.
        w.api.fail_write(1, Fault::Status(500));
        w.api.remove(CA_PATH);
        w.sync();
        let cert: ClusterCertificate = w.api.get(CERT_PATH).expect("certificate");
        let error = certificate::reconcile(Arc::new(cert.clone()), w.ctx.clone())
            .await
            .expect_err("the status write fails");
        let action = certificate::error_policy(Arc::new(cert), &error, w.ctx.clone());
        assert_eq!(action, kept_out, "an error");
        assert!(
            wake_in(&w).is_some_and(|s| s <= 1),
            "backoff: {:?}",
            wake_in(&w)
        );
        assert_eq!(w.ctx.certificate_queue.lengths(), (0, 1), "one wake");
        // Its issuer gone: the retry of a wait for it.
        assert_eq!(pass(&w).await.expect("blocked pass"), kept_out, "blocked");
        assert!(!conditions::is_true(
            &w.status().conditions,
            conditions::READY
        ));
        assert!(
            wake_in(&w).is_some_and(|s| (55..=60).contains(&s)),
            "{:?}",
            wake_in(&w)
        );
        assert_eq!(w.ctx.certificate_queue.lengths(), (0, 1));
    });
}

#[test]
fn every_write_of_the_first_pass_fails_in_turn_and_the_next_passes_converge() {
    runtime().block_on(async {
        let clean = world();
        clean.certificate_pass().await.expect("clean pass");
        let writes = clean.api.writes();
        assert!(
            writes >= 3,
            "Secret, ledger and status at least: {:?}",
            clean.api.log()
        );
        for fault in Fault::EVERY {
            for n in 1..=writes {
                let w = world();
                w.api.fail_write(n, fault);
                let _ = w.certificate_pass().await;
                w.settle_certificate().await;
                assert_converged(
                    &w,
                    &format!("{fault:?} at write {n} of {:?}", clean.api.log()),
                );
            }
        }
    });
}

#[test]
fn a_stuck_certificate_grows_neither_the_ledger_nor_its_revision() {
    runtime().block_on(async {
        let w = world();
        let mut cert: serde_json::Value = w.api.get(CERT_PATH).expect("cert");
        cert["spec"]["secretNamespace"] = json!("missing");
        w.api.put(CERT_PATH, cert);
        for _ in 0..3 {
            w.certificate_pass()
                .await
                .expect("a blocked pass is not an error");
        }
        let settled = w.api.writes();
        for _ in 0..3 {
            w.certificate_pass()
                .await
                .expect("a blocked pass is not an error");
        }
        assert_eq!(
            w.api.writes(),
            settled,
            "a stuck certificate writes nothing more: {:?}",
            w.api.log()
        );
        let issuing = conditions::find(&w.status().conditions, conditions::ISSUING)
            .cloned()
            .expect("Issuing");
        assert_eq!(
            (issuing.status.as_str(), issuing.reason.as_str()),
            ("True", "SecretMissing"),
            "an issuance is under way"
        );
        assert!(
            w.ledger().is_empty(),
            "no ledger entry for certificates nobody holds"
        );
        let status = w.status();
        let ready = conditions::find(&status.conditions, conditions::READY).expect("Ready");
        assert_eq!(ready.reason, "NamespaceNotFound");
        assert!(ready.message.contains("missing"), "{}", ready.message);
        assert_eq!(
            w.api
                .event_reasons()
                .iter()
                .filter(|r| *r == "NamespaceNotFound")
                .count(),
            1,
            "one Event for the reason, not one per retry"
        );
    });
}

#[test]
fn a_certificate_for_a_namespace_certop_does_not_manage_touches_nothing_there() {
    runtime().block_on(async {
        let w = world_managing(ManagedNamespaces::from_list(&["default"]));
        let reads = w.api.reads();
        for _ in 0..2 {
            w.certificate_pass()
                .await
                .expect("a refused certificate is not an error");
        }
        let status = w.status();
        let ready = conditions::find(&status.conditions, conditions::READY).expect("Ready");
        assert_eq!(ready.reason, "NamespaceNotManaged");
        assert!(ready.message.contains("app"), "{}", ready.message);
        assert!(
            w.api
                .log()
                .iter()
                .all(|write| !write.contains("/namespaces/app/")),
            "nothing written in the unmanaged namespace: {:?}",
            w.api.log()
        );
        assert!(w.api.get::<Secret>(SECRET_PATH).is_none(), "no Secret");
        assert!(w.ledger().is_empty(), "no certificate was signed");
        assert_eq!(w.api.reads(), reads, "nothing was read either");
    });
}

#[test]
fn a_new_certificate_creates_its_secret_unread_and_one_that_exists_is_read_never_overwritten() {
    runtime().block_on(async {
        let w = world();
        w.certificate_pass().await.expect("issue");
        assert!(
            !w.api.read_log().iter().any(|p| p == SECRET_PATH),
            "no GET of a Secret a new certificate has not made: {:?}",
            w.api.read_log()
        );
        assert!(
            w.api
                .log()
                .iter()
                .any(|l| l.starts_with("POST ") && l.ends_with("/namespaces/app/secrets")),
            "created: {:?}",
            w.api.log()
        );
        assert_eq!(w.api.event_reasons(), ["Issued"], "one Event per issuance");

        let foreign = world();
        foreign.api.put(
            SECRET_PATH,
            json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                   "metadata": {"name": "web-tls", "namespace": "app"},
                   "data": {"password": "aHVudGVyMg=="}}),
        );
        let _ = foreign.certificate_pass().await;
        let kept: serde_json::Value = foreign.api.get(SECRET_PATH).expect("Secret");
        assert_eq!(
            kept["data"],
            json!({"password": "aHVudGVyMg=="}),
            "not overwritten"
        );
        assert!(
            foreign.api.read_log().iter().any(|p| p == SECRET_PATH),
            "read after the create failed"
        );
        let ready = conditions::find(&foreign.status().conditions, conditions::READY)
            .cloned()
            .expect("Ready");
        assert_eq!(ready.reason, "SecretConflict", "{}", ready.message);
        let reads = foreign.api.read_log().len();
        let writes = foreign.api.writes();
        let _ = foreign.certificate_pass().await;
        assert!(
            !foreign.api.log()[writes..]
                .iter()
                .any(|l| l.starts_with("POST ")),
            "a certificate that met a Secret reads it first: {:?}",
            &foreign.api.read_log()[reads..]
        );
    });
}

#[test]
fn under_a_backlog_the_record_is_written_with_others_and_the_status_waits_for_it() {
    runtime().block_on(async {
        let w = backlogged_world();
        w.certificate_pass().await.expect("issue");
        let serial = w.secret_serial();
        assert_eq!(
            w.status().serial_number,
            None,
            "no status names a serial not yet recorded"
        );
        assert!(w.ledger().is_empty(), "the record waits for its group");
        // A pass meanwhile neither signs again nor writes anything.
        let writes = w.api.writes();
        w.certificate_pass().await.expect("pending");
        assert_eq!(w.api.writes(), writes, "{:?}", &w.api.log()[writes..]);

        tokio::time::sleep(ledger_store::DEFERRED_RETRY).await;
        w.settle_certificate().await;
        assert_eq!(w.status().serial_number, Some(serial.clone()));
        assert_eq!(
            w.secret_serial(),
            serial,
            "the same certificate, no second key"
        );
        let recorded: Vec<String> = w.ledger().into_iter().map(|e| e.serial).collect();
        assert_eq!(recorded, [serial]);
        assert_eq!(
            w.api
                .log()
                .iter()
                .filter(|l| l.starts_with("POST ") && l.ends_with("/namespaces/app/secrets"))
                .count(),
            1
        );
    });
}

#[test]
fn a_deferred_record_whose_write_fails_is_recorded_by_a_later_pass() {
    runtime().block_on(async {
        let w = backlogged_world();
        w.certificate_pass().await.expect("issue");
        let serial = w.secret_serial();
        // The group's write (the next write of all) fails.
        w.api.fail_write(1, Fault::Status(500));
        tokio::time::sleep(ledger_store::DEFERRED_RETRY).await;
        assert!(w.ledger().is_empty());
        assert!(
            w.certificate_pass().await.is_err(),
            "the pass that takes the failure fails (and backs off)"
        );
        assert_eq!(w.status().serial_number, None);
        // The shard is still busy: the record is deferred again, and its
        // next pass finishes.
        w.settle_certificate().await;
        tokio::time::sleep(ledger_store::DEFERRED_RETRY).await;
        w.settle_certificate().await;
        assert_eq!(w.status().serial_number, Some(serial.clone()));
        assert_eq!(w.secret_serial(), serial, "recorded, never re-issued");
        assert_eq!(
            w.ledger().into_iter().map(|e| e.serial).collect::<Vec<_>>(),
            [serial]
        );
    });
}

/// Passes, each followed by the wait a deferred record asks for, until
/// one writes nothing.
async fn settle_deferred(w: &World) {
    for _ in 0..6 {
        let before = w.api.writes();
        let ok = w.certificate_pass().await.is_ok();
        tokio::time::sleep(ledger_store::DEFERRED_RETRY).await;
        if ok && w.api.writes() == before {
            return;
        }
    }
    panic!("the certificate did not settle: {:?}", w.api.log());
}

#[test]
fn a_certificate_deleted_while_its_record_is_deferred_has_the_certificate_it_handed_out_revoked() {
    runtime().block_on(async {
        let w = backlogged_world();
        w.certificate_pass().await.expect("issue");
        let serial = w.secret_serial();
        assert_eq!(w.status().serial_number, None, "the record waits");
        // Deleted before a pass took the record's outcome: the status
        // names no serial, yet the Secret held (handed out) one.
        let mut cert: serde_json::Value = w.api.get(CERT_PATH).expect("cert");
        cert["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        w.api.put(CERT_PATH, cert);
        w.certificate_pass().await.expect("cleanup");
        assert!(w.secret().is_none(), "the Secret went");
        tokio::time::sleep(ledger_store::DEFERRED_RETRY).await;
        let entry = w
            .ledger()
            .into_iter()
            .find(|e| e.serial == serial)
            .expect("recorded");
        assert!(
            entry.revoked.is_some(),
            "the certificate the Secret held is revoked on delete: {entry:?}"
        );
    });
}

#[test]
fn a_revocation_created_while_a_record_waits_for_its_group_is_not_taken_as_revoked_for_good() {
    runtime().block_on(async {
        let w = backlogged_world();
        let issued = Utc::now();
        w.certificate_pass().await.expect("issue");
        let serial = w.secret_serial();
        // A second later, before the group is written, a revocation of its
        // name (issuedBefore: its creation, now past when the group is
        // written); its own pass found no entry for the serial yet.
        put_revocation(
            &w,
            (issued + Duration::seconds(1)).to_rfc3339(),
            json!({"issuerRef": {"name": "ca"}, "dnsNames": ["web.example.com"]}),
        );
        w.sync();
        tokio::time::sleep(ledger_store::DEFERRED_RETRY).await;
        settle_deferred(&w).await;
        let entry = w
            .ledger()
            .into_iter()
            .find(|e| e.serial == serial)
            .expect("recorded");
        assert!(entry.revoked.is_some(), "the write applied the revocation");
        assert!(
            !w.api.event_reasons().contains(
                &crate::operator::reason::Reason::IssuanceFailed
                    .as_str()
                    .to_string()
            ),
            "not called revoked for good (a false IssuanceFailed warning and Ready=False): {:?}",
            w.api.event_reasons()
        );
        let ready = conditions::find(&w.status().conditions, conditions::READY)
            .cloned()
            .expect("Ready");
        assert_eq!(ready.status, "True", "{}: {}", ready.reason, ready.message);
        assert_ne!(
            w.secret_serial(),
            serial,
            "the revoked certificate left service: a replacement issued now is not covered"
        );
    });
}

/// Each write of the pass that finds its new certificate revoked (the
/// Secret, the ledger record, the revocation mark on the object, the
/// replacement's writes) may fail: the passes after it still end with a
/// certificate the revocation does not cover, and say which one it did.
#[test]
fn a_certificate_found_revoked_when_recorded_is_replaced_whichever_write_fails() {
    runtime().block_on(async {
        for failing in 1..=6 {
            let w = world();
            w.ctx.ledger_groups.set_deferral(false);
            let now = Utc::now();
            put_revocation(
                &w,
                (now - Duration::seconds(10)).to_rfc3339(),
                json!({"issuerRef": {"name": "ca"}, "dnsNames": ["web.example.com"],
                       "issuedBefore": (now + Duration::seconds(1)).to_rfc3339()}),
            );
            w.api.fail_write(failing, Fault::Status(500));
            let _ = w.certificate_pass().await;
            // The certificate the revocation covers, if the pass handed one out.
            let covered = w.secret().map(|_| w.secret_serial());
            // Past the revocation's issuedBefore: what is issued now is not covered.
            tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
            for _ in 0..4 {
                let _ = w.certificate_pass().await;
            }
            let held = w.secret_serial();
            let status = w.status();
            assert_eq!(
                status.serial_number.as_deref(),
                Some(held.as_str()),
                "write {failing} failed: the status names what the Secret holds"
            );
            assert_eq!(
                status.last_revocation.map(|r| r.serial_number),
                covered.clone(),
                "write {failing} failed: the status names the revoked serial, if one was handed out"
            );
            assert_ne!(Some(held), covered, "write {failing} failed: replaced");
        }
    });
}

#[test]
fn a_certificate_found_revoked_by_a_deferred_record_says_so_in_its_status_once_replaced() {
    runtime().block_on(async {
        for deferral in [false, true] {
            let w = world();
            w.ctx.ledger_groups.set_deferral(deferral);
            ledger_store::as_if_busy(&w.ctx, "ca");
            // Covers what is issued until a second from now: the first
            // certificate, not its replacement.
            let now = Utc::now();
            put_revocation(
                &w,
                (now - Duration::seconds(10)).to_rfc3339(),
                json!({"issuerRef": {"name": "ca"}, "dnsNames": ["web.example.com"],
                       "issuedBefore": (now + Duration::seconds(1)).to_rfc3339()}),
            );
            w.certificate_pass().await.expect("issue");
            let first = w.secret_serial();
            tokio::time::sleep(ledger_store::DEFERRED_RETRY).await;
            // Still a backlog when the pass takes what the write found: the
            // replacement's record waits for a group too.
            ledger_store::as_if_busy(&w.ctx, "ca");
            let _ = w.certificate_pass().await;
            tokio::time::sleep(ledger_store::DEFERRED_RETRY).await;
            settle_deferred(&w).await;
            assert_ne!(w.secret_serial(), first, "deferral {deferral}: replaced");
            assert_eq!(
                w.status().last_revocation.map(|r| r.serial_number),
                Some(first),
                "deferral {deferral}: status.lastRevocation names the revoked serial"
            );
        }
    });
}

#[test]
fn a_pass_after_a_deferred_record_signs_nothing_when_the_watch_listed_again() {
    runtime().block_on(async {
        let w = backlogged_world();
        w.certificate_pass().await.expect("issue");
        let serial = w.secret_serial();
        // The Secret watch lists again (the copies go with it) before the
        // next pass, whose certificate's status names no serial yet.
        w.ctx.written_secrets.observe(&watcher::Event::Init);
        let secret_posts = |w: &World| {
            w.api
                .log()
                .iter()
                .filter(|l| l.starts_with("POST ") && l.ends_with("/namespaces/app/secrets"))
                .count()
        };
        let posts = secret_posts(&w);
        tokio::time::sleep(ledger_store::DEFERRED_RETRY).await;
        settle_deferred(&w).await;
        assert_eq!(
            secret_posts(&w),
            posts,
            "no second key signed for a create bound to fail: {:?}",
            w.api.log()
        );
        assert_eq!(w.status().serial_number, Some(serial));
    });
}

#[test]
fn the_echo_of_an_issuance_reads_no_secret_until_another_writer_changes_it() {
    runtime().block_on(async {
        let w = world();
        w.certificate_pass().await.expect("issue");
        let serial = w.status().serial_number.expect("recorded");
        // The pass the status write's echo starts, after the watch showed
        // the Secret certop wrote: nothing read, nothing written.
        let (reads, writes) = (w.api.read_log().len(), w.api.writes());
        w.certificate_pass().await.expect("echo");
        assert!(
            !w.api.read_log()[reads..].iter().any(|p| p == SECRET_PATH),
            "the copy certop wrote was used: {:?}",
            &w.api.read_log()[reads..]
        );
        assert_eq!(w.api.writes(), writes, "{:?}", &w.api.log()[writes..]);
        // That pass wrote nothing, so no echo of it follows: the copy is
        // dropped (copies held 9 MB at 10,000 certificates), and a later
        // pass reads the Secret.
        let reads = w.api.read_log().len();
        w.certificate_pass().await.expect("a later pass");
        assert!(
            w.api.read_log()[reads..].iter().any(|p| p == SECRET_PATH),
            "the copy outlived the last pass that needed it"
        );

        // Someone else empties ca.crt: the watch shows a new version, the
        // copy is dropped, and the pass reads and repairs the Secret.
        let mut changed: serde_json::Value = w.api.get(SECRET_PATH).expect("Secret");
        changed["data"]["ca.crt"] = json!("");
        w.api.put(SECRET_PATH, changed);
        let reads = w.api.read_log().len();
        w.settle_certificate().await;
        assert!(
            w.api.read_log()[reads..].iter().any(|p| p == SECRET_PATH),
            "read after another writer's change"
        );
        let secret: Secret = w.api.get(SECRET_PATH).expect("Secret");
        let ca = secret
            .data
            .as_ref()
            .and_then(|d| d.get("ca.crt"))
            .map(|b| b.0.clone())
            .unwrap_or_default();
        assert!(!ca.is_empty(), "the trust bundle was written back");
        assert_eq!(
            w.status().serial_number,
            Some(serial),
            "no new certificate for it"
        );

        // A watch that has not shown certop's write yet: the pass reads.
        let lagging = world();
        lagging.certificate_pass().await.expect("issue");
        let reads = lagging.api.read_log().len();
        let cert: ClusterCertificate = lagging.api.get(CERT_PATH).expect("certificate");
        certificate::reconcile(Arc::new(cert), lagging.ctx.clone())
            .await
            .expect("echo before the Secret's watch event");
        assert!(
            lagging.api.read_log()[reads..]
                .iter()
                .any(|p| p == SECRET_PATH),
            "read while the watch has not shown the write"
        );
    });
}

#[test]
fn other_tools_metadata_survives_and_a_template_change_needs_no_new_certificate() {
    runtime().block_on(async {
        let w = world();
        w.certificate_pass().await.expect("issue");
        let serial = w.secret_serial();
        let mut secret: serde_json::Value = w.api.get(SECRET_PATH).expect("secret");
        secret["metadata"]["labels"]["other-tool/keep"] = json!("yes");
        secret["metadata"]["finalizers"] = json!(["other-tool/hold"]);
        w.api.put(SECRET_PATH, secret);
        let mut cert: serde_json::Value = w.api.get(CERT_PATH).expect("cert");
        cert["spec"]["secretTemplate"] = json!({"labels": {"team": "web"}});
        cert["metadata"]["generation"] = json!(2);
        w.api.put(CERT_PATH, cert);
        w.settle_certificate().await;
        let secret = w.secret().expect("secret");
        assert_eq!(secret.labels().get("team").map(String::as_str), Some("web"));
        assert_eq!(
            secret.labels().get("other-tool/keep").map(String::as_str),
            Some("yes")
        );
        assert_eq!(secret.finalizers(), ["other-tool/hold".to_string()]);
        assert_eq!(w.secret_serial(), serial, "no new certificate for a label");
    });
}

#[test]
fn a_renewal_request_from_a_clock_in_the_future_issues_exactly_once() {
    runtime().block_on(async {
        let w = world();
        w.certificate_pass().await.expect("issue");
        let first = w.secret_serial();
        let mut cert: serde_json::Value = w.api.get(CERT_PATH).expect("cert");
        cert["metadata"]["annotations"] = json!({meta::RENEW_REQUESTED_AT: "2099-01-01T00:00:00Z"});
        w.api.put(CERT_PATH, cert);
        w.settle_certificate().await;
        let second = w.secret_serial();
        assert_ne!(first, second, "renewed");
        for _ in 0..3 {
            w.certificate_pass().await.expect("pass");
        }
        assert_eq!(w.secret_serial(), second, "and only once");
    });
}

#[test]
fn a_revocation_is_finished_whichever_of_its_writes_fails() {
    runtime().block_on(async {
        // How many writes a clean revocation pass makes.
        let setup = || async {
            let w = world();
            w.certificate_pass().await.expect("issue");
            let serial = w.secret_serial();
            put_revocation(&w, "2099-01-01T00:00:00Z", json!({"issuerRef": {"name": "ca"}, "serialNumbers": [serial], "reason": "keyCompromise"}));
            (w, serial)
        };
        let (clean, _) = setup().await;
        let before = clean.api.writes();
        clean.revocation_pass().await.expect("clean revocation");
        let writes = clean.api.writes() - before;
        for fault in [Fault::Status(500), Fault::Status(422), Fault::Drop] {
            for n in 1..=writes {
                let (w, revoked) = setup().await;
                w.api.fail_write(n, fault);
                let _ = w.revocation_pass().await;
                for _ in 0..4 {
                    let _ = w.revocation_pass().await;
                }
                w.settle_certificate().await;
                let case = format!("{fault:?} at revocation write {n}");
                let rev: CertificateRevocation = w.api.get(REV_PATH).expect("rev");
                assert!(
                    rev.status.as_ref().is_some_and(|s| conditions::is_true(&s.conditions, conditions::READY)),
                    "{case}: the revocation is Ready"
                );
                let entry = w.ledger().into_iter().find(|e| e.serial == revoked).expect("entry");
                assert!(entry.revoked.is_some(), "{case}: marked in the ledger");
                let crl: ConfigMap = w
                    .api
                    .get(&format!("/api/v1/namespaces/{NS}/configmaps/{}", crate::operator::store::crl::config_map_name("ca", 0)))
                    .expect("CRL ConfigMap");
                let der = &crl.binary_data.expect("binary")[crate::operator::store::crl::DER_KEY].0;
                let parsed = parse_crl(der, Some(w.authority.certificate())).expect("a CRL the CA signed");
                assert!(
                    parsed.entries.iter().any(|(s, _, _)| s.to_string() == revoked),
                    "{case}: listed in the CRL"
                );
                assert_ne!(w.secret_serial(), revoked, "{case}: the revoked certificate left service");
            }
        }
    });
}

#[test]
fn a_serial_this_ca_never_issued_is_reported_and_not_listed() {
    runtime().block_on(async {
        let w = world();
        w.certificate_pass().await.expect("issue");
        put_revocation(
            &w,
            "2099-01-01T00:00:00Z",
            json!({"issuerRef": {"name": "ca"}, "serialNumbers": ["0badc0de"]}),
        );
        w.revocation_pass().await.expect("pass");
        let rev: CertificateRevocation = w.api.get(REV_PATH).expect("rev");
        let ready = rev
            .status
            .as_ref()
            .and_then(|s| conditions::find(&s.conditions, conditions::READY).cloned())
            .expect("Ready");
        assert_eq!(ready.status, "False");
        assert_eq!(ready.reason, "UnknownSerials");
        assert!(ready.message.contains("badc0de"), "{}", ready.message);
        assert!(
            w.ledger().iter().all(|e| e.revoked.is_none()),
            "nothing revoked"
        );
    });
}

#[test]
fn a_corrupt_ledger_shard_is_never_overwritten() {
    runtime().block_on(async {
        let w = world();
        w.certificate_pass().await.expect("issue");
        let cms = w.api.list("/api/v1", "configmaps", Some(NS));
        let shard = cms
            .iter()
            .find(|c| c["metadata"]["labels"].get(meta::LEDGER).is_some())
            .expect("a shard")
            .clone();
        let name = shard["metadata"]["name"]
            .as_str()
            .expect("name")
            .to_string();
        let path = format!("/api/v1/namespaces/{NS}/configmaps/{name}");
        let mut corrupt = shard.clone();
        corrupt["data"]["entries.json"] = json!("{not json");
        w.api.put(&path, corrupt);
        // Renew: the new serial may land in any shard; make the write go to
        // the corrupt one by recording the same serial again.
        let mut cert: serde_json::Value = w.api.get(CERT_PATH).expect("cert");
        cert["status"]["serialNumber"] = json!("");
        w.api.put(CERT_PATH, cert);
        let _ = w.certificate_pass().await;
        let after: ConfigMap = w.api.get(&path).expect("shard still there");
        assert_eq!(
            after
                .data
                .as_ref()
                .and_then(|d| d.get("entries.json"))
                .map(String::as_str),
            Some("{not json"),
            "the unreadable shard was left as it was"
        );
        let ready = conditions::find(&w.status().conditions, conditions::READY)
            .cloned()
            .expect("Ready");
        assert_eq!(ready.reason, "LedgerCorrupt", "{}", ready.message);
    });
}

const CRL_CM: &str = "/api/v1/namespaces/certop-system/configmaps/";

impl World {
    async fn ca_pass(&self) -> Result<(), crate::operator::Error> {
        self.sync();
        let ca: CertificateAuthority = self.api.get(CA_PATH).expect("CA");
        crate::operator::certificate_authority::reconcile(Arc::new(ca), self.ctx.clone())
            .await
            .map(|_| ())
    }

    fn crl_path(&self) -> String {
        format!(
            "{CRL_CM}{}",
            crate::operator::store::crl::config_map_name("ca", 0)
        )
    }

    fn crl_number(&self) -> Option<u64> {
        let cm: ConfigMap = self.api.get(&self.crl_path())?;
        let der = cm
            .binary_data?
            .get(crate::operator::store::crl::DER_KEY)?
            .0
            .clone();
        parse_crl(&der, Some(self.authority.certificate()))
            .ok()?
            .number
    }

    fn ca_condition(
        &self,
        type_: &str,
    ) -> Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
        let ca: CertificateAuthority = self.api.get(CA_PATH)?;
        conditions::find(&ca.status?.conditions, type_).cloned()
    }
}

fn with_finalizer(w: &World) {
    let mut ca: serde_json::Value = w.api.get(CA_PATH).expect("CA");
    ca["metadata"]["finalizers"] = json!([meta::FINALIZER]);
    w.api.put(CA_PATH, ca);
}

#[test]
fn a_tampered_or_deleted_crl_is_published_again_and_its_number_never_goes_down() {
    runtime().block_on(async {
        let w = world();
        with_finalizer(&w);
        w.ca_pass().await.expect("CA pass");
        let first = w.crl_number().expect("a CRL the CA signed");
        let mut cm: serde_json::Value = w.api.get(&w.crl_path()).expect("CRL ConfigMap");
        cm["binaryData"][crate::operator::store::crl::DER_KEY] = json!(b64(b"garbage"));
        w.api.put(&w.crl_path(), cm);
        w.ca_pass().await.expect("CA pass");
        let second = w.crl_number().expect("re-signed after tampering");
        assert!(second > first, "{second} > {first}");
        w.api.remove(&w.crl_path());
        w.ca_pass().await.expect("CA pass");
        let third = w.crl_number().expect("re-published after deletion");
        assert!(third > second, "{third} > {second}");
        let mut cm: serde_json::Value = w.api.get(&w.crl_path()).expect("CRL ConfigMap");
        cm["metadata"]["annotations"]["certop.dev/crl-number"] = json!(u64::MAX.to_string());
        cm["binaryData"][crate::operator::store::crl::DER_KEY] = json!(b64(b"garbage"));
        w.api.put(&w.crl_path(), cm);
        w.ca_pass().await.expect("a CA pass reports, not fails");
        let stored: ConfigMap = w.api.get(&w.crl_path()).expect("CRL ConfigMap");
        assert_eq!(
            stored
                .annotations()
                .get("certop.dev/crl-number")
                .map(String::as_str),
            Some(u64::MAX.to_string().as_str()),
            "the number did not wrap to 0"
        );
        let c = w.ca_condition("CRLStored").expect("condition");
        assert_eq!(c.reason, "CRLNumberExhausted", "{}", c.message);
    });
}

#[test]
fn a_ca_secret_with_another_key_pair_is_refused_loudly() {
    runtime().block_on(async {
        let w = world();
        with_finalizer(&w);
        w.ca_pass().await.expect("CA pass");
        assert_eq!(w.ca_condition("Ready").map(|c| c.status), Some("True".into()));
        let other = Authority::create(&CaRequest::new("intruder"), Utc::now()).expect("CA");
        w.api.put(
            &format!("/api/v1/namespaces/{NS}/secrets/ca-ca"),
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "ca-ca", "namespace": NS},
                   "data": {"tls.crt": b64(other.certificate_pem().as_bytes()), "tls.key": b64(other.key_pem().as_bytes())}}),
        );
        w.ca_pass().await.expect("CA pass");
        let ready = w.ca_condition("Ready").expect("Ready");
        assert_eq!((ready.status.as_str(), ready.reason.as_str()), ("False", "CAKeyChanged"), "{}", ready.message);
        // And a certificate is not signed by the intruder.
        w.sync();
        w.certificate_pass().await.expect("certificate pass");
        assert!(w.secret().is_none(), "nothing issued with a key the CA was not given");
        // With its status wiped and its Secret gone, no silent new CA either.
        w.api.remove(&format!("/api/v1/namespaces/{NS}/secrets/ca-ca"));
        let mut ca: serde_json::Value = w.api.get(CA_PATH).expect("CA");
        ca["status"] = json!({});
        w.api.put(CA_PATH, ca);
        w.ca_pass().await.expect("CA pass");
        let ready = w.ca_condition("Ready").expect("Ready");
        assert_eq!(ready.reason, "CASecretDeleted", "{}", ready.message);
        assert!(w.api.get::<Secret>(&format!("/api/v1/namespaces/{NS}/secrets/ca-ca")).is_none());
    });
}

#[test]
fn a_trust_bundle_never_takes_over_a_configmap_certop_did_not_create() {
    runtime().block_on(async {
        let w = world();
        with_finalizer(&w);
        let mut ca: serde_json::Value = w.api.get(CA_PATH).expect("CA");
        ca["spec"]["trustBundle"] =
            json!({"configMapName": "kube-root-ca.crt", "namespaceSelector": {}});
        w.api.put(CA_PATH, ca);
        w.api.put(
            "/api/v1/namespaces/app",
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "app"}}),
        );
        w.api.put(
            "/api/v1/namespaces/default",
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}}),
        );
        let foreign = json!({"apiVersion": "v1", "kind": "ConfigMap",
                             "metadata": {"name": "kube-root-ca.crt", "namespace": "app"},
                             "data": {"ca.crt": "the cluster's own"}});
        w.api.put(
            "/api/v1/namespaces/app/configmaps/kube-root-ca.crt",
            foreign,
        );
        w.ca_pass().await.expect("CA pass");
        let kept: ConfigMap = w
            .api
            .get("/api/v1/namespaces/app/configmaps/kube-root-ca.crt")
            .expect("kept");
        assert_eq!(
            kept.data
                .as_ref()
                .and_then(|d| d.get("ca.crt"))
                .map(String::as_str),
            Some("the cluster's own")
        );
        let made: ConfigMap = w
            .api
            .get("/api/v1/namespaces/default/configmaps/kube-root-ca.crt")
            .expect("created where free");
        assert!(
            made.data
                .as_ref()
                .and_then(|d| d.get("ca.crt"))
                .is_some_and(|c| c.contains("BEGIN CERTIFICATE"))
        );
        let c = w.ca_condition("TrustBundle").expect("condition");
        assert_eq!(c.reason, "ConfigMapConflict");
        assert!(c.message.contains("app"), "{}", c.message);
        // Deleting the CA removes what certop made, and nothing else.
        let mut ca: serde_json::Value = w.api.get(CA_PATH).expect("CA");
        ca["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        w.api.put(CA_PATH, ca);
        let _ = w.ca_pass().await;
        assert!(
            w.api
                .get::<ConfigMap>("/api/v1/namespaces/app/configmaps/kube-root-ca.crt")
                .is_some()
        );
        assert!(
            w.api
                .get::<ConfigMap>("/api/v1/namespaces/default/configmaps/kube-root-ca.crt")
                .is_none()
        );
    });
}

#[test]
fn a_moved_secret_name_removes_the_old_secret_once_the_new_one_exists() {
    runtime().block_on(async {
        let w = world();
        w.certificate_pass().await.expect("issue");
        let mut cert: serde_json::Value = w.api.get(CERT_PATH).expect("cert");
        cert["spec"]["secretName"] = json!("web-tls-2");
        cert["metadata"]["generation"] = json!(2);
        w.api.put(CERT_PATH, cert);
        w.settle_certificate().await;
        assert!(
            w.secret().is_none(),
            "the old Secret (with a valid key) is gone"
        );
        let moved: Secret = w
            .api
            .get("/api/v1/namespaces/app/secrets/web-tls-2")
            .expect("the new Secret");
        assert_eq!(
            moved
                .annotations()
                .get(meta::CERTIFICATE)
                .map(String::as_str),
            Some("web")
        );
        assert_eq!(w.status().secret.as_deref(), Some("app/web-tls-2"));
    });
}

#[test]
fn deletion_revokes_unless_the_secret_is_kept() {
    runtime().block_on(async {
        for (policy, revoked) in [("Delete", true), ("Retain", false)] {
            let w = world();
            w.certificate_pass().await.expect("issue");
            let serial = w.secret_serial();
            let mut cert: serde_json::Value = w.api.get(CERT_PATH).expect("cert");
            cert["spec"]["secretDeletionPolicy"] = json!(policy);
            cert["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
            w.api.put(CERT_PATH, cert);
            w.certificate_pass().await.expect("cleanup");
            let entry = w
                .ledger()
                .into_iter()
                .find(|e| e.serial == serial)
                .expect("entry");
            assert_eq!(entry.revoked.is_some(), revoked, "{policy}");
            assert_eq!(
                w.secret().is_some(),
                !revoked,
                "{policy}: the Secret goes or stays"
            );
        }
    });
}

#[test]
fn a_crl_never_loses_a_revoked_entry_when_its_ledger_shard_is_lost() {
    runtime().block_on(async {
        let w = world();
        with_finalizer(&w);
        w.certificate_pass().await.expect("issue");
        let serial = w.secret_serial();
        put_revocation(
            &w,
            "2099-01-01T00:00:00Z",
            json!({"issuerRef": {"name": "ca"}, "serialNumbers": [serial]}),
        );
        w.revocation_pass().await.expect("revoke");
        for cm in w.api.list("/api/v1", "configmaps", Some(NS)) {
            if cm["metadata"]["labels"].get(meta::LEDGER).is_some() {
                let name = cm["metadata"]["name"].as_str().expect("name").to_string();
                w.api.remove(&format!("{CRL_CM}{name}"));
            }
        }
        assert!(w.ledger().is_empty(), "every shard deleted");
        let before = w.crl_number().expect("CRL");
        crate::operator::store::crl::publish(
            &w.ctx,
            &w.api.get(CA_PATH).expect("CA"),
            &w.authority,
            0,
            Utc::now(),
        )
        .await
        .expect("publish");
        let cm: ConfigMap = w.api.get(&w.crl_path()).expect("CRL ConfigMap");
        let der = &cm.binary_data.expect("binary")[crate::operator::store::crl::DER_KEY].0;
        let parsed = parse_crl(der, Some(w.authority.certificate())).expect("CRL");
        assert!(parsed.number > Some(before));
        assert!(
            parsed
                .entries
                .iter()
                .any(|(s, _, _)| s.to_string() == serial),
            "the revoked serial is still listed"
        );
    });
}

#[test]
fn a_revocation_reaching_into_the_future_blocks_instead_of_issuing_without_end() {
    runtime().block_on(async {
        let w = world();
        put_revocation(&w, "2026-01-01T00:00:00Z", json!({"issuerRef": {"name": "ca"}, "dnsNames": ["web.example.com"], "issuedBefore": "2099-01-01T00:00:00Z"}));
        for _ in 0..5 {
            let _ = w.certificate_pass().await;
        }
        let serial = w.secret_serial();
        let writes = w.api.writes();
        for _ in 0..5 {
            w.certificate_pass().await.expect("pass");
        }
        assert_eq!(w.secret_serial(), serial, "no issuance storm");
        assert!(w.api.writes() <= writes + 1, "settled: {:?}", w.api.log());
        let ready = conditions::find(&w.status().conditions, conditions::READY).cloned().expect("Ready");
        assert_eq!(ready.reason, "IssuanceFailed", "{}", ready.message);
        assert!(ready.message.contains("issuedBefore"), "{}", ready.message);
        assert!(w.ledger().iter().all(|e| e.revoked.is_some()), "what it issued is revoked");
    });
}

#[test]
fn a_certificate_issued_after_a_revocation_is_not_covered_by_it_despite_the_backdate() {
    runtime().block_on(async {
        let w = world();
        let now = Utc::now();
        put_revocation(
            &w,
            (now - chrono::Duration::seconds(10)).to_rfc3339(),
            json!({"issuerRef": {"name": "ca"}, "dnsNames": ["web.example.com"]}),
        );
        w.certificate_pass().await.expect("issue");
        assert!(
            w.ledger().iter().all(|e| e.revoked.is_none()),
            "issued after the revocation: live"
        );
        assert_eq!(
            w.secret()
                .and_then(|s| s.annotations().get(meta::REVISION).cloned())
                .as_deref(),
            Some("1")
        );
    });
}

#[test]
fn a_ca_in_the_last_fifth_of_its_life_says_so_once() {
    runtime().block_on(async {
        let w = world();
        with_finalizer(&w);
        let old = Authority::create(
            &CaRequest {
                lifetime: chrono::Duration::days(100),
                ..CaRequest::new("old CA")
            },
            Utc::now() - chrono::Duration::days(90),
        )
        .expect("CA");
        w.api.put(
            &format!("/api/v1/namespaces/{NS}/secrets/ca-ca"),
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "ca-ca", "namespace": NS},
                   "data": {"tls.crt": b64(old.certificate_pem().as_bytes()), "tls.key": b64(old.key_pem().as_bytes())}}),
        );
        let mut ca: serde_json::Value = w.api.get(CA_PATH).expect("CA");
        ca["metadata"]["annotations"][meta::CA_FINGERPRINT] = json!(old.certificate().fingerprint);
        ca["spec"]["rotation"] = json!({"automatic": false});
        w.api.put(CA_PATH, ca);
        w.ca_pass().await.expect("CA pass");
        w.ca_pass().await.expect("CA pass");
        let expiring = w.ca_condition("Expiring").expect("Expiring");
        assert_eq!(expiring.status, "True");
        assert!(expiring.message.contains("in 9 days") || expiring.message.contains("in 10 days"), "{}", expiring.message);
        assert_eq!(
            w.api.event_reasons().iter().filter(|r| *r == "CANearExpiry").count(),
            1,
            "one warning Event, not one per pass"
        );
        assert_eq!(w.ca_condition("Ready").map(|c| c.status), Some("True".into()), "still signs");
    });
}

#[test]
fn every_write_of_a_new_cas_first_pass_fails_in_turn_and_one_key_comes_out() {
    runtime().block_on(async {
        // A CA with no key yet: certop creates the Secret, binds the CA to
        // it, publishes a CRL, writes the status.
        let fresh = || {
            let w = world();
            with_finalizer(&w);
            w.api
                .remove(&format!("/api/v1/namespaces/{NS}/secrets/ca-ca"));
            let mut ca: serde_json::Value = w.api.get(CA_PATH).expect("CA");
            ca["metadata"]["annotations"] = json!({});
            ca["status"] = json!({});
            w.api.put(CA_PATH, ca);
            w
        };
        let clean = fresh();
        let before = clean.api.writes();
        clean.ca_pass().await.expect("clean CA pass");
        let writes = clean.api.writes() - before;
        assert!(
            writes >= 4,
            "Secret, binding, CRL, status: {:?}",
            clean.api.log()
        );
        for fault in [Fault::Status(500), Fault::Status(409), Fault::Drop] {
            for n in 1..=writes {
                let w = fresh();
                w.api.fail_write(n, fault);
                let _ = w.ca_pass().await;
                for _ in 0..4 {
                    let _ = w.ca_pass().await;
                }
                let case = format!("{fault:?} at CA write {n}");
                let secrets: Vec<_> = w
                    .api
                    .list("/api/v1", "secrets", Some(NS))
                    .into_iter()
                    .filter(|s| s["metadata"]["name"] == "ca-ca")
                    .collect();
                assert_eq!(secrets.len(), 1, "{case}: one key Secret");
                let secret: Secret = serde_json::from_value(secrets[0].clone()).expect("Secret");
                let pem = &secret.data.expect("data")["tls.crt"].0;
                let fingerprint = parse_chain(pem, "tls.crt").expect("CA")[0]
                    .fingerprint
                    .clone();
                let ca: CertificateAuthority = w.api.get(CA_PATH).expect("CA");
                assert_eq!(
                    ca.annotations().get(meta::CA_FINGERPRINT),
                    Some(&fingerprint),
                    "{case}: bound to the one key"
                );
                let status = ca.status.expect("status");
                assert_eq!(status.fingerprint.as_ref(), Some(&fingerprint), "{case}");
                assert!(
                    conditions::is_true(&status.conditions, conditions::READY),
                    "{case}: Ready"
                );
                assert!(status.crl_number.is_some_and(|n| n >= 1), "{case}: a CRL");
            }
        }
    });
}

/// A world whose certificate was issued by the first key, whose key
/// Secret is certop's, and whose CA was asked to rotate with `overlap`.
async fn rotating_world(overlap: &str) -> World {
    let w = world();
    with_finalizer(&w);
    let key_path = format!("/api/v1/namespaces/{NS}/secrets/ca-ca");
    let mut key: serde_json::Value = w.api.get(&key_path).expect("key Secret");
    key["metadata"]["labels"] = json!({meta::MANAGED_BY: meta::MANAGED_BY_VALUE});
    key["metadata"]["annotations"] = json!({meta::CERTIFICATE_AUTHORITY: "ca"});
    w.api.put(&key_path, key);
    w.ca_pass().await.expect("CA pass");
    w.certificate_pass().await.expect("first issuance");
    let mut ca: serde_json::Value = w.api.get(CA_PATH).expect("CA");
    ca["spec"]["rotation"] = json!({"overlap": overlap});
    ca["metadata"]["annotations"][meta::ROTATE_REQUESTED_AT] = json!("r1");
    w.api.put(CA_PATH, ca);
    w
}

impl World {
    /// A CA pass with the clock at `now` (a rotation's waits pass in a moment).
    async fn ca_pass_at(&self, now: DateTime<Utc>) -> Result<(), crate::operator::Error> {
        self.sync();
        let ca: CertificateAuthority = self.api.get(CA_PATH).expect("CA");
        crate::operator::certificate_authority::apply_at(&ca, &self.ctx, now)
            .await
            .map(|_| ())
    }

    async fn certificate_pass_at(&self, now: DateTime<Utc>) -> Result<(), crate::operator::Error> {
        self.sync();
        let cert: ClusterCertificate = self.api.get(CERT_PATH).expect("certificate");
        certificate::apply_at(&cert, &self.ctx, now)
            .await
            .map(|_| ())
    }

    fn record(&self) -> crate::api::CaRotationRecord {
        self.ca_status()
            .rotation
            .and_then(|r| r.record)
            .expect("certop's rotation record")
    }

    /// Passes until the rotation is Retiring, the clock moving 10 minutes
    /// a pass (overlaps of a minute pass): the time it got there.
    async fn walk_to_retiring(&self, mut now: DateTime<Utc>) -> DateTime<Utc> {
        for _ in 0..12 {
            self.ca_pass_at(now).await.expect("CA pass");
            if self
                .ca_status()
                .rotation
                .is_some_and(|r| r.phase == "Retiring")
            {
                return now;
            }
            // The certificate's Secret takes the new CA into its ca.crt.
            self.certificate_pass_at(now)
                .await
                .expect("certificate pass");
            now += Duration::minutes(10);
        }
        panic!("never Retiring: {:?}", self.ca_status());
    }

    fn ca_annotation(&self, key: &str) -> Option<String> {
        let ca: CertificateAuthority = self.api.get(CA_PATH)?;
        ca.annotations().get(key).cloned()
    }

    fn ca_status(&self) -> crate::api::CertificateAuthorityStatus {
        let ca: CertificateAuthority = self.api.get(CA_PATH).expect("CA");
        ca.status.unwrap_or_default()
    }

    /// The certificate a CA key Secret holds.
    fn key_certificate(&self, secret: &str) -> Option<crate::pki::CertificateInfo> {
        let s: Secret = self
            .api
            .get(&format!("/api/v1/namespaces/{NS}/secrets/{secret}"))?;
        let pem = &s.data?.get("tls.crt")?.0.clone();
        parse_chain(pem, "tls.crt").ok()?.into_iter().next()
    }

    /// The fingerprints in the certificate Secret's ca.crt, in order.
    fn bundle(&self) -> Vec<String> {
        let s = self.secret().expect("Secret");
        let pem = s.data.expect("data")["ca.crt"].0.clone();
        parse_chain(&pem, "ca.crt")
            .expect("ca.crt parses")
            .into_iter()
            .map(|c| c.fingerprint)
            .collect()
    }

    fn leaf(&self) -> crate::pki::CertificateInfo {
        let s = self.secret().expect("Secret");
        parse_chain(&s.data.expect("data")[TLS_CERT_KEY].0, "tls.crt").expect("tls.crt")[0].clone()
    }

    /// CA and certificate passes until a round writes nothing, the clock
    /// moving 10 minutes a round from `now`: the time it settled.
    async fn settle_rotation(&self, mut now: DateTime<Utc>) -> DateTime<Utc> {
        for _ in 0..40 {
            let before = self.api.writes();
            let ca = self.ca_pass_at(now).await;
            let cert = self.certificate_pass_at(now).await;
            if ca.is_ok() && cert.is_ok() && self.api.writes() == before {
                return now;
            }
            now += Duration::minutes(10);
        }
        panic!("the rotation did not settle: {:?}", self.api.log());
    }
}

#[test]
fn a_requested_rotation_walks_every_phase_and_reissues_only_after_the_switch() {
    runtime().block_on(async {
        let w = rotating_world("1h").await;
        let mut ca: serde_json::Value = w.api.get(CA_PATH).expect("CA");
        ca["spec"]["rotation"]["crossSign"] = json!(true);
        w.api.put(CA_PATH, ca);
        let first = w.leaf();
        let old_fp = w.authority.certificate().fingerprint.clone();
        // Start, make the key, bind it: one write each.
        for _ in 0..4 {
            w.ca_pass().await.expect("CA pass");
        }
        let staged = w
            .key_certificate("ca-ca-r1")
            .expect("the staged key's Secret");
        assert_eq!(w.ca_annotation(meta::CA_ROTATION).as_deref(), Some("1"));
        assert_eq!(
            w.ca_annotation(meta::CA_NEXT_FINGERPRINT).as_deref(),
            Some(staged.fingerprint.as_str())
        );
        let rotation = w.ca_status().rotation.expect("rotation status");
        assert_eq!(rotation.phase, "Staged");
        assert_eq!(rotation.next_serial_number, Some(staged.serial.to_string()));
        assert_eq!(
            rotation.next_step_at, None,
            "no switch time before the certificate's ca.crt carries the new CA"
        );
        // Both CAs are trusted; the certificate is the same one.
        w.certificate_pass().await.expect("bundle update");
        w.ca_pass().await.expect("published everywhere");
        let switch_at = w
            .ca_status()
            .rotation
            .and_then(|r| r.next_step_at)
            .expect("when it switches");
        assert!(
            switch_at > Utc::now() + chrono::Duration::minutes(55),
            "{switch_at}"
        );
        assert_eq!(
            w.leaf().serial,
            first.serial,
            "no re-issue before the switch"
        );
        assert_eq!(w.bundle(), vec![old_fp.clone(), staged.fingerprint.clone()]);
        assert!(
            w.api
                .event_reasons()
                .contains(&"RotationStaged".to_string())
        );

        // The overlap ends: the new key signs.
        let later = switch_at;
        w.ca_pass_at(later - Duration::seconds(1))
            .await
            .expect("not yet");
        assert_eq!(
            w.ca_annotation(meta::CA_SIGNING_KEY),
            None,
            "an overlap is an overlap"
        );
        w.ca_pass_at(later).await.expect("switch");
        assert_eq!(w.ca_annotation(meta::CA_SIGNING_KEY).as_deref(), Some("1"));
        assert_eq!(
            w.ca_annotation(meta::CA_FINGERPRINT),
            Some(staged.fingerprint.clone())
        );
        assert_eq!(
            w.ca_annotation(meta::CA_PREVIOUS_FINGERPRINT),
            Some(old_fp.clone())
        );
        let record = w.record();
        assert_eq!(record.switched_at, Some(later));
        assert!(
            record
                .previous_certificate
                .as_deref()
                .is_some_and(|pem| pem == w.authority.certificate_pem()),
            "the retiring CA certificate is recorded at the switch"
        );
        w.ca_pass_at(later).await.expect("retiring");
        let rotation = w.ca_status().rotation.expect("rotation status");
        assert_eq!(
            (rotation.phase.as_str(), rotation.previous_certificates),
            ("Retiring", Some(1))
        );
        assert_eq!(w.ca_status().secret_name.as_deref(), Some("ca-ca-r1"));

        // The certificate is re-issued by the new key at its turn in the
        // spread, pointing at its CRL.
        w.certificate_pass_at(later + Duration::hours(1))
            .await
            .expect("re-issue");
        let leaf = w.leaf();
        assert!(leaf.is_issued_by(&staged), "re-issued by the new key");
        let chain = parse_chain(
            &w.secret().expect("Secret").data.expect("data")[TLS_CERT_KEY].0,
            "tls.crt",
        )
        .expect("chain");
        assert_eq!(chain.len(), 2);
        assert!(
            chain[1].is_issued_by(w.authority.certificate())
                && chain[1].subject() == staged.subject()
                && chain[1].fingerprint != staged.fingerprint,
            "the chain ends with the old CA's cross-signature of the new one"
        );
        assert_eq!(
            leaf.crl_distribution_points,
            vec!["http://certop.test/crl/ca/1.crl".to_string()]
        );
        assert_eq!(w.bundle(), vec![staged.fingerprint.clone(), old_fp.clone()]);
        assert!(
            w.ledger()
                .iter()
                .any(|e| e.serial == leaf.serial.to_string() && e.key == 1)
        );

        // Nothing of the old key is left: an overlap after the last
        // re-issue it is retired, its key and CRL go.
        let done = later + Duration::hours(2);
        w.ca_pass_at(done).await.expect("retire");
        assert_eq!(w.ca_annotation(meta::CA_PREVIOUS_FINGERPRINT), None);
        w.ca_pass_at(done).await.expect("clean up");
        assert_eq!(w.ca_status().rotation.expect("rotation").phase, "Stable");
        assert!(
            w.key_certificate("ca-ca").is_none(),
            "the retired key is deleted"
        );
        assert!(
            w.api.get::<ConfigMap>(&w.crl_path()).is_none(),
            "its CRL too"
        );
        assert!(
            w.api
                .get::<ConfigMap>(&format!(
                    "{CRL_CM}{}",
                    crate::operator::store::crl::copy_name("ca", 0)
                ))
                .is_none(),
            "and certop's copy of its CRL"
        );
        let crl1: ConfigMap = w
            .api
            .get(&format!(
                "{CRL_CM}{}",
                crate::operator::store::crl::config_map_name("ca", 1)
            ))
            .expect("the new key's CRL");
        let der = &crl1.binary_data.expect("binary")[crate::operator::store::crl::DER_KEY].0;
        parse_crl(der, Some(&staged)).expect("signed by the new key");
        w.certificate_pass_at(done)
            .await
            .expect("bundle without the old CA");
        assert_eq!(w.leaf().serial, leaf.serial);
        assert_eq!(w.bundle(), vec![staged.fingerprint.clone()]);
        let events = w.api.event_reasons();
        for reason in ["RotationStarted", "RotationSwitched", "RotationFinished"] {
            assert!(events.contains(&reason.to_string()), "{reason}: {events:?}");
        }
        assert!(
            !events.contains(&"RotationMarksRestored".to_string()),
            "certop's own mirror is never taken for a hand edit: {events:?}"
        );
        w.settle_rotation(done).await;
        assert!(
            w.key_certificate("ca-ca-r2").is_none(),
            "one rotation, one key"
        );
    });
}

#[test]
fn every_write_of_a_rotation_fails_in_turn_and_one_new_key_comes_out() {
    runtime().block_on(async {
        let clean = rotating_world("1m").await;
        let start = clean.api.writes();
        clean.settle_rotation(Utc::now()).await;
        let writes = clean.api.writes() - start;
        assert!(
            writes >= 6,
            "start, key, bind, switch, retire, re-issue: {:?}",
            clean.api.log()
        );
        for fault in [Fault::Status(500), Fault::Status(409), Fault::Drop] {
            for n in 1..=writes {
                let w = rotating_world("1m").await;
                let case = format!("{fault:?} at write {n}");
                w.api.fail_write(n, fault);
                w.settle_rotation(Utc::now()).await;
                let new = w
                    .key_certificate("ca-ca-r1")
                    .unwrap_or_else(|| panic!("{case}: the new key"));
                assert!(
                    w.key_certificate("ca-ca-r2").is_none(),
                    "{case}: no second new key"
                );
                assert_eq!(
                    w.ca_annotation(meta::CA_FINGERPRINT),
                    Some(new.fingerprint.clone()),
                    "{case}"
                );
                assert_eq!(
                    w.ca_annotation(meta::CA_SIGNING_KEY).as_deref(),
                    Some("1"),
                    "{case}"
                );
                assert_eq!(
                    w.ca_annotation(meta::CA_PREVIOUS_FINGERPRINT),
                    None,
                    "{case}: retired"
                );
                assert!(
                    w.leaf().is_issued_by(&new),
                    "{case}: re-issued by the new key"
                );
                assert_eq!(w.bundle(), vec![new.fingerprint.clone()], "{case}");
                assert!(
                    w.key_certificate("ca-ca").is_none(),
                    "{case}: old key deleted"
                );
            }
        }
    });
}

#[test]
fn a_revocation_while_a_key_retires_lands_in_the_crl_of_the_key_that_signed() {
    runtime().block_on(async {
        let w = rotating_world("1m").await;
        let old_serial = w.secret_serial();
        // Start, make the key, bind it, publish it, switch: the old
        // certificate is still in its Secret, now one of the retiring key.
        w.walk_to_retiring(Utc::now()).await;
        assert_eq!(w.ca_status().rotation.expect("rotation").phase, "Retiring");
        let new = w.key_certificate("ca-ca-r1").expect("new key");
        put_revocation(
            &w,
            "2099-01-01T00:00:00Z",
            json!({"issuerRef": {"name": "ca"}, "serialNumbers": [old_serial], "reason": "keyCompromise"}),
        );
        w.revocation_pass().await.expect("revoke");
        let crl_of = |index: u32, ca: &crate::pki::CertificateInfo| {
            let cm: ConfigMap = w
                .api
                .get(&format!("{CRL_CM}{}", crate::operator::store::crl::config_map_name("ca", index)))
                .expect("CRL ConfigMap");
            let der = cm.binary_data.expect("binary")[crate::operator::store::crl::DER_KEY].0.clone();
            parse_crl(&der, Some(ca))
                .expect("signed by its key")
                .entries
                .iter()
                .map(|(s, _, _)| s.to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(crl_of(0, w.authority.certificate()), vec![old_serial.clone()], "the old key's CRL");
        assert!(crl_of(1, &new).is_empty(), "the new key signed nothing revoked");
        // The revoked certificate is replaced by the new key at once.
        w.certificate_pass().await.expect("replace");
        assert!(w.leaf().is_issued_by(&new));
        assert_ne!(w.leaf().serial.to_string(), old_serial);
    });
}

#[test]
fn an_expired_ca_says_ca_expired() {
    runtime().block_on(async {
        let w = world();
        with_finalizer(&w);
        let expired = Authority::create(
            &CaRequest {
                lifetime: chrono::Duration::hours(1),
                ..CaRequest::new("test CA")
            },
            Utc::now() - chrono::Duration::hours(3),
        )
        .expect("CA");
        w.api.put(
            &format!("/api/v1/namespaces/{NS}/secrets/ca-ca"),
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "ca-ca", "namespace": NS},
                   "data": {"tls.crt": b64(expired.certificate_pem().as_bytes()), "tls.key": b64(expired.key_pem().as_bytes())}}),
        );
        let mut ca: serde_json::Value = w.api.get(CA_PATH).expect("CA");
        ca["metadata"]["annotations"][meta::CA_FINGERPRINT] = json!(expired.certificate().fingerprint);
        w.api.put(CA_PATH, ca);
        w.ca_pass().await.expect("CA pass");
        let ready = w.ca_condition("Ready").expect("Ready");
        assert_eq!((ready.status.as_str(), ready.reason.as_str()), ("False", "CAExpired"), "{}", ready.message);
    });
}

/// `n` ledger entries of CA `ca`, spread over the shards as certop would,
/// stored directly (recording them one by one would take minutes).
fn fill_ledger(w: &World, n: usize, revoked: bool) -> Vec<String> {
    let now = Utc::now();
    let mut shards: Vec<Vec<LedgerEntry>> = vec![Vec::new(); crate::core::ledger::SHARDS];
    let mut serials = Vec::with_capacity(n);
    for i in 0..n {
        let serial = crate::pki::SerialNumber::random().expect("rng").to_string();
        shards[crate::core::ledger::shard_of(&serial)].push(LedgerEntry {
            serial: serial.clone(),
            issued_at: (now - chrono::Duration::hours(1)).timestamp(),
            not_after: (now + chrono::Duration::days(30)).timestamp(),
            organizations: vec!["bulk".into()],
            dns_names: vec![format!("n{i}.bulk.example")],
            ip_addresses: Vec::new(),
            uris: vec![],
            certificate: None,
            revoked: revoked.then_some(crate::core::ledger::Revocation {
                at: now.timestamp(),
                reason: crate::pki::RevocationReason::KeyCompromise,
            }),
            key: 0,
            fingerprint: None,
        });
        serials.push(serial);
    }
    for (i, entries) in shards.iter().enumerate() {
        let cm = ledger_store::shard_config_map("ca", i, NS, entries);
        w.api.put(
            &format!("{CRL_CM}{}", cm.metadata.name.clone().expect("name")),
            serde_json::to_value(&cm).expect("json"),
        );
    }
    serials
}

#[test]
fn a_crl_of_100k_entries_is_stored_in_parts_that_any_replica_reassembles() {
    runtime().block_on(async {
        let w = world();
        let serials = fill_ledger(&w, 100_000, true);
        let ca: CertificateAuthority = w.api.get(CA_PATH).expect("CA");
        let started = std::time::Instant::now();
        let published =
            crate::operator::store::crl::publish(&w.ctx, &ca, &w.authority, 0, Utc::now())
                .await
                .expect("publish");
        eprintln!(
            "100k-entry CRL: {} bytes, signed and stored in {:?}",
            published.der.len(),
            started.elapsed()
        );
        assert_eq!(published.entries, 100_000);
        assert!(published.stored, "every replica can serve it");
        let main: ConfigMap = w.api.get(&w.crl_path()).expect("main ConfigMap");
        let count: usize = main.annotations()["certop.dev/crl-parts"]
            .parse()
            .expect("parts");
        assert!(count >= 2, "a CRL this size needs parts: {count}");
        // A replica that only has the ConfigMaps reassembles and verifies it.
        let part = |n: &str| w.api.get::<ConfigMap>(&format!("{CRL_CM}{n}"));
        let (path, served) = crate::operator::store::crl::from_config_maps(
            &main,
            part,
            Some(w.authority.certificate()),
        )
        .expect("reassembled");
        assert_eq!(path, "ca");
        assert_eq!(served.der, published.der);
        let parsed =
            parse_crl(&served.der, Some(w.authority.certificate())).expect("signed by the CA");
        assert_eq!(parsed.entries.len(), 100_000);
        assert!(served.pem.starts_with("-----BEGIN X509 CRL-----"));
        let listed: std::collections::BTreeSet<String> = parsed
            .entries
            .iter()
            .map(|(s, _, _)| s.to_string())
            .collect();
        assert!(serials.iter().all(|s| listed.contains(s)));
        // A part of another number (a write in progress) is not served.
        let mut stale: ConfigMap =
            part(&crate::operator::store::crl::part_name(&main.name_any(), 1)).expect("part 1");
        stale
            .annotations_mut()
            .insert("certop.dev/crl-number".into(), "0".into());
        let mixed = |n: &str| {
            if n.ends_with("-part-1") {
                Some(stale.clone())
            } else {
                part(n)
            }
        };
        assert!(crate::operator::store::crl::from_config_maps(&main, mixed, None).is_none());
        // And the CA's own pass accepts what is stored, without signing again.
        let writes = w.api.writes();
        let again = crate::operator::store::crl::verify_stored(&w.ctx, &ca, &w.authority, 0, None)
            .await
            .expect("verify");
        assert_eq!(again.map(|c| c.number), Some(published.number));
        assert_eq!(w.api.writes(), writes);
    });
}

#[test]
fn revoking_10k_certificates_costs_a_write_per_shard_not_per_certificate() {
    runtime().block_on(async {
        let w = world();
        fill_ledger(&w, 10_000, false);
        put_revocation(
            &w,
            "2099-01-01T00:00:00Z",
            json!({"issuerRef": {"name": "ca"}, "organizations": ["bulk"], "reason": "keyCompromise"}),
        );
        let before = w.api.writes();
        let started = std::time::Instant::now();
        w.revocation_pass().await.expect("revoke");
        let writes = w.api.writes() - before;
        eprintln!(
            "10k revocations: {writes} API writes in {:?}: {:?}",
            started.elapsed(),
            w.api.log().iter().rev().take(writes).collect::<std::collections::BTreeSet<_>>()
        );
        assert!(w.ledger().iter().all(|e| e.revoked.is_some()), "all marked");
        assert!(
            writes <= crate::core::ledger::SHARDS + 6,
            "{writes} writes for 10k revocations"
        );
        let rev: CertificateRevocation = w.api.get(REV_PATH).expect("rev");
        assert_eq!(rev.status.and_then(|s| s.revoked_certificates), Some(10_000));
    });
}

#[test]
fn a_ledger_shard_written_behind_certops_copy_loses_nothing() {
    runtime().block_on(async {
        let w = world();
        let now = Utc::now();
        let entry = |serial: &str| -> LedgerEntry {
            serde_json::from_value(
                json!({"s": serial, "b": now.timestamp(), "a": now.timestamp() + 3600}),
            )
            .expect("entry")
        };
        let record = |serial: &'static str| {
            let ctx = w.ctx.clone();
            let e = entry(serial);
            async move { ledger_store::record(&ctx, "ca", e, &[], now).await }
        };
        // Serials ending in 00: one shard.
        record("0100").await.expect("record");
        let (reads, writes) = (w.api.reads(), w.api.writes());
        record("0200").await.expect("record");
        assert_eq!(
            (w.api.reads() - reads, w.api.writes() - writes),
            (0, 1),
            "a shard certop wrote last is written again without a read"
        );
        // Someone else marks an entry revoked: certop's copy is stale.
        let shard = w
            .api
            .list("/api/v1", "configmaps", Some(NS))
            .into_iter()
            .find(|cm| cm["metadata"]["labels"].get(meta::LEDGER).is_some())
            .expect("the shard");
        let path = format!(
            "/api/v1/namespaces/{NS}/configmaps/{}",
            shard["metadata"]["name"].as_str().expect("name")
        );
        let mut entries: Vec<LedgerEntry> =
            serde_json::from_str(shard["data"]["entries.json"].as_str().expect("entries"))
                .expect("parses");
        entries[0].revoked = Some(crate::core::ledger::Revocation {
            at: now.timestamp(),
            reason: RevocationReason::KeyCompromise,
        });
        let mut changed = shard.clone();
        changed["data"]["entries.json"] = json!(serde_json::to_string(&entries).expect("json"));
        w.api.put(&path, changed);
        record("0300").await.expect("record");
        // A repeated record, from a copy the last write proved current, is
        // still answered by a read of the shard.
        let reads = w.api.reads();
        assert_eq!(
            record("0100").await.expect("record"),
            ledger_store::Recorded::Revoked
        );
        assert_eq!(w.api.reads() - reads, 1, "a no-op is confirmed by a read");
        let ledger = w.ledger();
        let serials: Vec<&str> = ledger.iter().map(|e| e.serial.as_str()).collect();
        assert_eq!(serials, ["0100", "0200", "0300"]);
        assert!(ledger[0].revoked.is_some(), "the other writer's mark kept");
        // The shard deleted behind the copy: created again.
        w.api.remove(&path);
        record("0400").await.expect("record");
        let serials: Vec<String> = w.ledger().into_iter().map(|e| e.serial).collect();
        assert_eq!(serials, ["0400"]);
    });
}

#[test]
fn a_crl_in_parts_whose_writes_fail_is_published_whole_by_the_next_pass() {
    runtime().block_on(async {
        for (n, fault) in [
            (1, Fault::Status(500)),
            (1, Fault::Drop),
            (2, Fault::Status(409)),
            (2, Fault::Drop),
        ] {
            let w = world();
            fill_ledger(&w, 10_000, true);
            let ca: CertificateAuthority = w.api.get(CA_PATH).expect("CA");
            w.api.fail_write(n, fault);
            let _ = crate::operator::store::crl::publish(&w.ctx, &ca, &w.authority, 0, Utc::now())
                .await;
            let case = format!("{fault:?} at write {n}");
            // The next pass verifies what is stored and publishes if it must.
            let stored =
                crate::operator::store::crl::verify_stored(&w.ctx, &ca, &w.authority, 0, None)
                    .await
                    .expect("verify");
            let crl = match stored {
                Some(c) => c,
                None => {
                    crate::operator::store::crl::publish(&w.ctx, &ca, &w.authority, 0, Utc::now())
                        .await
                        .expect("publish again")
                }
            };
            assert_eq!(crl.entries, 10_000, "{case}");
            let main: ConfigMap = w.api.get(&w.crl_path()).expect("main ConfigMap");
            assert!(
                main.annotations().contains_key("certop.dev/crl-parts"),
                "{case}: stored in parts"
            );
            let part = |name: &str| w.api.get::<ConfigMap>(&format!("{CRL_CM}{name}"));
            let (_, served) = crate::operator::store::crl::from_config_maps(
                &main,
                part,
                Some(w.authority.certificate()),
            )
            .unwrap_or_else(|| panic!("{case}: what is stored reassembles"));
            assert_eq!(served.number, crl.number, "{case}");
            assert_eq!(served.entries, 10_000, "{case}");
        }
    });
}

/// Sets fields of the ClusterCertificate's spec (a new generation).
fn edit_spec(w: &World, fields: serde_json::Value) {
    let mut cert: serde_json::Value = w.api.get(CERT_PATH).expect("cert");
    for (k, v) in fields.as_object().expect("fields").clone() {
        cert["spec"][k] = v;
    }
    let generation = cert["metadata"]["generation"].as_i64().unwrap_or(1);
    cert["metadata"]["generation"] = json!(generation + 1);
    w.api.put(CERT_PATH, cert);
}

#[test]
fn a_one_minute_certificate_is_issued_at_most_twice_a_minute_whatever_its_renewal_settings() {
    runtime().block_on(async {
        for renewal in [json!({}), json!({"renewBeforePercentage": 99})] {
            let w = world();
            let mut spec = json!({"duration": "1m"});
            spec.as_object_mut()
                .expect("object")
                .extend(renewal.as_object().expect("object").clone());
            edit_spec(&w, spec);
            let start = Utc::now();
            let mut passes = 0;
            // A minute of the clock, a look every second, each followed by
            // the passes its own writes' watch events start.
            for second in 0..60 {
                passes += w
                    .certificate_passes_at(start + Duration::seconds(second))
                    .await;
            }
            let issued = w.revision();
            println!("{renewal}: {issued} issuances in 60 s of clock, {passes} passes");
            assert!(
                (1..=2).contains(&issued),
                "{renewal}: {issued} issuances of a 1-minute certificate in a minute ({passes} passes)"
            );
        }
    });
}

/// Two organizations are refused before a key is made (rcgen keeps one
/// value per subject attribute): no attempt, one status write, whatever
/// passes the watch events start.
#[test]
fn two_organizations_are_refused_before_any_key_is_made() {
    runtime().block_on(async {
        let w = world();
        edit_spec(&w, json!({"organizations": ["team-a", "team-b"]}));
        let start = Utc::now();
        let mut passes = 0;
        for second in 0..20 {
            passes += w
                .certificate_passes_at(start + Duration::seconds(second))
                .await;
        }
        let status = w.status();
        let attempts = status.failed_issuance_attempts.unwrap_or(0);
        let writes = w.api.writes();
        println!("{attempts} attempts, {writes} writes, {passes} passes in 20 s of clock");
        assert_eq!(attempts, 0, "no signing attempted ({passes} passes)");
        assert!(w.secret().is_none(), "no key, no Secret");
        let ready = conditions::find(&status.conditions, conditions::READY).expect("Ready");
        assert_eq!(ready.reason, "InvalidSpec");
        assert!(
            ready.message.contains("one organization"),
            "{}",
            ready.message
        );
        assert!(writes <= 2, "{writes} writes: {:?}", w.api.log());
    });
}

/// A failed issuance is tried again when its condition says ("next in
/// 5s"), not by the pass the watch event of that status write starts, nor
/// by any other pass before then.
#[test]
fn a_failed_issuance_is_tried_again_only_when_its_condition_says() {
    runtime().block_on(async {
        let w = world();
        let start = Utc::now();
        let mut cert: serde_json::Value = w.api.get(CERT_PATH).expect("cert");
        cert["status"] = json!({
            "observedGeneration": 1,
            "failedIssuanceAttempts": 1,
            "lastFailureTime": start,
            "conditions": [{"type": "Ready", "status": "False", "reason": "IssuanceFailed",
                            "message": "issuance failed (the Secret does not exist): …; attempt 1, next in 5s",
                            "lastTransitionTime": start}]});
        w.api.put(CERT_PATH, cert);
        for second in 0..5 {
            w.certificate_passes_at(start + Duration::seconds(second))
                .await;
            assert!(w.secret().is_none(), "tried again after {second} s");
        }
        assert_eq!(w.api.writes(), 0, "waiting writes nothing: {:?}", w.api.log());
        w.certificate_passes_at(start + Duration::seconds(5)).await;
        assert_eq!(w.revision(), 1, "issued when the condition said");
        assert_eq!(w.status().failed_issuance_attempts, None);
    });
}

/// The API path of the ledger shard of CA `ca` that holds `serial`.
fn shard_path(serial: &str) -> String {
    format!(
        "{CRL_CM}certop-ledger-{}-{:02}",
        ledger_store::ca_key("ca"),
        crate::core::ledger::shard_of(serial)
    )
}

/// Makes a ConfigMap's `entries.json` unparsable, as a bad restore or a
/// hand edit would.
fn corrupt(w: &World, path: &str) {
    let mut cm: serde_json::Value = w.api.get(path).expect("shard");
    cm["data"]["entries.json"] = json!("{not json");
    w.api.put(path, cm);
}

impl World {
    /// The serials the stored CRL lists, once its signature is checked.
    fn crl_serials(&self) -> Vec<String> {
        let cm: ConfigMap = self.api.get(&self.crl_path()).expect("CRL ConfigMap");
        let der = &cm.binary_data.expect("binary")[crate::operator::store::crl::DER_KEY].0;
        parse_crl(der, Some(self.authority.certificate()))
            .expect("a CRL the CA signed")
            .entries
            .iter()
            .map(|(s, _, _)| s.to_string())
            .collect()
    }

    /// Issues the certificate and revokes it by serial (keyCompromise);
    /// returns the serial.
    async fn revoked_serial(&self) -> String {
        with_finalizer(self);
        self.certificate_pass().await.expect("issue");
        let serial = self.secret_serial();
        put_revocation(
            self,
            "2099-01-01T00:00:00Z",
            json!({"issuerRef": {"name": "ca"}, "serialNumbers": [serial], "reason": "keyCompromise"}),
        );
        self.revocation_pass().await.expect("revoke");
        assert!(self.crl_serials().contains(&serial), "listed at first");
        // The CRL ConfigMap's change starts a CA pass (its watch), which
        // records the CRL number in the CA's status.
        self.ca_pass().await.expect("CA pass");
        serial
    }
}

/// The issue's case: the shard holding a keyCompromise serial is corrupted,
/// then the stored CRL is replaced or deleted, after a failover (the new
/// leader holds no CRL in memory); the CRL certop signs next still lists
/// the serial, with a higher number. With certop's copy of the CRL gone
/// too, the revocation's own record keeps it.
#[test]
fn a_revoked_serial_stays_listed_when_its_shard_is_corrupt_and_the_crl_is_lost() {
    runtime().block_on(async {
        for lose in [
            "deleted",
            "replaced",
            "deleted with its copy",
            "deleted with its copy and the revocation, on the same leader",
        ] {
            let w = world();
            let serial = w.revoked_serial().await;
            let before = w.crl_number().expect("CRL");
            corrupt(&w, &shard_path(&serial));
            if lose == "replaced" {
                let mut cm: serde_json::Value = w.api.get(&w.crl_path()).expect("CRL");
                cm["binaryData"][crate::operator::store::crl::DER_KEY] = json!(b64(b"garbage"));
                w.api.put(&w.crl_path(), cm);
            } else {
                w.api.remove(&w.crl_path());
            }
            if lose.starts_with("deleted with its copy") {
                w.api.remove(&format!(
                    "{CRL_CM}{}",
                    crate::operator::store::crl::copy_name("ca", 0)
                ));
            }
            if lose.ends_with("on the same leader") {
                // Only the CRL this replica holds in memory is left.
                w.api.remove(REV_PATH);
            } else {
                w.ctx.crls.forget("ca");
            }
            w.ca_pass().await.expect("CA pass");
            assert!(
                w.crl_serials().contains(&serial),
                "{lose}: the serial left the CRL"
            );
            assert!(w.crl_number() > Some(before), "{lose}: the number went up");
        }
    });
}

/// With the revocation gone too, the copy of the last CRL certop verified
/// still carries the serial; with the copy also lost (or tampered with),
/// the CA says it cannot prove the CRL complete, in a condition and an
/// Event, and the number still never goes down.
#[test]
fn the_last_verified_crl_carries_an_entry_and_its_loss_is_reported() {
    runtime().block_on(async {
        let w = world();
        let serial = w.revoked_serial().await;
        corrupt(&w, &shard_path(&serial));
        w.api.remove(REV_PATH);
        w.api.remove(&w.crl_path());
        w.ctx.crls.forget("ca");
        w.ca_pass().await.expect("CA pass");
        assert!(
            w.crl_serials().contains(&serial),
            "the copy of the last verified CRL carried it"
        );
        assert!(w.ca_condition("CRLComplete").is_none(), "provably complete");
        let number = w.crl_number().expect("CRL");
        for cm in w.api.list("/api/v1", "configmaps", Some(NS)) {
            let name = cm["metadata"]["name"].as_str().expect("name").to_string();
            if name.starts_with("certop-crl-") {
                let mut tampered = cm.clone();
                if tampered["binaryData"]
                    .get(crate::operator::store::crl::DER_KEY)
                    .is_some()
                {
                    tampered["binaryData"][crate::operator::store::crl::DER_KEY] =
                        json!(b64(b"garbage"));
                }
                w.api.put(&format!("{CRL_CM}{name}"), tampered);
            }
        }
        w.ctx.crls.forget("ca");
        w.ca_pass().await.expect("CA pass");
        w.ca_pass().await.expect("CA pass");
        let c = w.ca_condition("CRLComplete").expect("CRLComplete");
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("False", "CRLIncomplete")
        );
        assert!(
            c.message.contains("certop-ledger-") && c.message.contains("Restore"),
            "{}",
            c.message
        );
        let marked: ConfigMap = w.api.get(&w.crl_path()).expect("CRL");
        assert!(
            marked
                .annotations()
                .contains_key("certop.dev/crl-incomplete"),
            "the CRL is marked"
        );
        assert_eq!(
            w.api
                .event_reasons()
                .iter()
                .filter(|r| *r == "CRLIncomplete")
                .count(),
            1,
            "one Event: {:?}",
            w.api.event_reasons()
        );
        assert!(w.crl_number() > Some(number), "the number never goes down");
        // The shard given up (deleted, as its condition offers): nothing
        // is left that certop could read, and it says so no more.
        w.api.remove(&shard_path(&serial));
        w.ca_pass().await.expect("CA pass");
        assert!(w.ca_condition("CRLComplete").is_none());
        let whole: ConfigMap = w.api.get(&w.crl_path()).expect("CRL");
        assert!(
            !whole
                .annotations()
                .contains_key("certop.dev/crl-incomplete"),
            "signed again without the mark"
        );
    });
}

/// certop's copy is written before the published CRL (a failed write of
/// the published one leaves the copy newer, never older), and a copy lost
/// is rebuilt from the published CRL by the next CA pass.
#[test]
fn the_copy_of_the_crl_is_never_older_than_the_published_one_and_comes_back() {
    runtime().block_on(async {
        let w = world();
        let serial = w.revoked_serial().await;
        let copy_path = format!(
            "{CRL_CM}{}",
            crate::operator::store::crl::copy_name("ca", 0)
        );
        let number_of = |path: &str| -> Option<u64> {
            let cm: ConfigMap = w.api.get(path)?;
            let der = cm
                .binary_data?
                .get(crate::operator::store::crl::DER_KEY)?
                .0
                .clone();
            parse_crl(&der, Some(w.authority.certificate()))
                .ok()?
                .number
        };
        let published = w.crl_number().expect("CRL");
        assert_eq!(
            number_of(&copy_path),
            Some(published),
            "the copy is current"
        );
        let ca: CertificateAuthority = w.api.get(CA_PATH).expect("CA");
        // The second write of a publish (the published ConfigMap) fails.
        w.api.fail_write(2, Fault::Status(500));
        crate::operator::store::crl::publish(&w.ctx, &ca, &w.authority, 0, Utc::now())
            .await
            .expect_err("the published ConfigMap's write failed");
        assert_eq!(
            w.crl_number(),
            Some(published),
            "the published one as it was"
        );
        assert!(number_of(&copy_path) > Some(published), "the copy is ahead");
        w.api.remove(&copy_path);
        w.ca_pass().await.expect("CA pass");
        let copy: ConfigMap = w.api.get(&copy_path).expect("the copy came back");
        let der = &copy.binary_data.expect("binary")[crate::operator::store::crl::DER_KEY].0;
        let parsed = parse_crl(der, Some(w.authority.certificate())).expect("signed");
        assert!(
            parsed
                .entries
                .iter()
                .any(|(s, _, _)| s.to_string() == serial)
        );
        assert_eq!(parsed.number, w.crl_number(), "a copy of the published one");
    });
}

/// One unreadable ledger shard: a rule still revokes and replaces what
/// every readable shard holds, and the revocation names the shard.
#[test]
fn an_unreadable_shard_does_not_block_a_rule_revocation_and_is_reported() {
    runtime().block_on(async {
        let w = world();
        with_finalizer(&w);
        w.certificate_pass().await.expect("issue");
        let serial = w.secret_serial();
        let other = (crate::core::ledger::shard_of(&serial) + 1) % crate::core::ledger::SHARDS;
        let mut shard = serde_json::to_value(ledger_store::shard_config_map("ca", other, NS, &[]))
            .expect("json");
        shard["data"]["entries.json"] = json!("{not json");
        let shard_name = shard["metadata"]["name"].as_str().expect("name").to_string();
        w.api.put(&format!("{CRL_CM}{shard_name}"), shard);
        // Created a second after the certificate was issued, so the rule
        // covers it and not its replacement.
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
        put_revocation(
            &w,
            Utc::now().to_rfc3339(),
            json!({"issuerRef": {"name": "ca"}, "dnsNames": ["web.example.com"], "reason": "keyCompromise"}),
        );
        w.sync();
        let pending: CertificateRevocation = w.api.get(REV_PATH).expect("rev");
        let action = certificate_revocation::reconcile(Arc::new(pending), w.ctx.clone())
            .await
            .expect("a pass past an unreadable shard is not an error");
        assert_eq!(
            action,
            kube::runtime::controller::Action::requeue(std::time::Duration::from_secs(30)),
            "tried again in 30 s"
        );
        let rev: CertificateRevocation = w.api.get(REV_PATH).expect("rev");
        let ready = rev
            .status
            .as_ref()
            .and_then(|s| conditions::find(&s.conditions, conditions::READY).cloned())
            .expect("a Ready condition");
        assert_eq!((ready.status.as_str(), ready.reason.as_str()), ("False", "LedgerCorrupt"));
        assert!(
            ready.message.contains(&shard_name) && ready.message.contains("restore"),
            "{}",
            ready.message
        );
        assert!(
            w.api.event_reasons().iter().any(|r| r == "LedgerCorrupt"),
            "{:?}",
            w.api.event_reasons()
        );
        assert!(w.crl_serials().contains(&serial), "listed in the CRL");
        w.settle_certificate().await;
        assert_ne!(w.secret_serial(), serial, "replaced");
        // The shard given up: the rule covers every shard, and is Ready.
        w.api.remove(&format!("{CRL_CM}{shard_name}"));
        w.revocation_pass().await.expect("pass");
        let rev: CertificateRevocation = w.api.get(REV_PATH).expect("rev");
        assert!(rev
            .status
            .as_ref()
            .is_some_and(|s| conditions::is_true(&s.conditions, conditions::READY)));
    });
}

/// A CA whose name is too long for its default Secret name is InvalidSpec,
/// and says so in an Event as for any other reason (the API server refuses
/// an Event whose name, built from the object's, passes 253 characters).
#[test]
fn a_ca_with_an_invalid_spec_says_so_in_an_event() {
    runtime().block_on(async {
        let w = world();
        let name = "c".repeat(251);
        let path = format!("/apis/certop.dev/v1/certificateauthorities/{name}");
        w.api.put(
            &path,
            json!({"apiVersion": "certop.dev/v1", "kind": "CertificateAuthority",
                   "metadata": {"name": name, "uid": "u-1", "finalizers": [meta::FINALIZER]},
                   "spec": {"subject": {"commonName": "long"}}}),
        );
        let ca: CertificateAuthority = w.api.get(&path).expect("CA");
        crate::operator::certificate_authority::reconcile(Arc::new(ca), w.ctx.clone())
            .await
            .expect("pass");
        let ca: CertificateAuthority = w.api.get(&path).expect("CA");
        let ready = conditions::find(&ca.status.expect("status").conditions, conditions::READY)
            .cloned()
            .expect("Ready");
        assert_eq!(ready.reason, "InvalidSpec", "{}", ready.message);
        assert_eq!(
            w.api.event_reasons(),
            vec!["InvalidSpec".to_string()],
            "one Event"
        );
    });
}

/// The user guide's figures: with the notAfter map beside it, a CRL of
/// about 5,700 entries is the largest stored whole, a larger one in parts;
/// the map itself is stored up to about 10,000 entries.
#[test]
fn a_crl_of_about_5700_entries_is_the_largest_stored_whole() {
    runtime().block_on(async {
        for (n, whole, map) in [
            (5_500, true, true),
            (5_900, false, true),
            (10_000, false, true),
            (12_000, false, false),
        ] {
            let w = world();
            fill_ledger(&w, n, true);
            let ca: CertificateAuthority = w.api.get(CA_PATH).expect("CA");
            crate::operator::store::crl::publish(&w.ctx, &ca, &w.authority, 0, Utc::now())
                .await
                .expect("publish");
            let main: ConfigMap = w.api.get(&w.crl_path()).expect("CRL");
            assert_eq!(
                !main.annotations().contains_key("certop.dev/crl-parts"),
                whole,
                "{n} entries"
            );
            let data = main.data.unwrap_or_default();
            assert_eq!(data.contains_key("not-after.json"), map, "{n}: the map");
        }
    });
}

#[test]
fn an_overlap_under_a_minute_stored_before_the_rule_is_raised_to_a_minute_and_the_ca_signs() {
    runtime().block_on(async {
        // Admission refuses it now; a CA stored before (an upgrade) keeps
        // signing, and its rotation waits the minimum overlap.
        let w = rotating_world("0s").await;
        let now = Utc::now();
        w.ca_pass_at(now).await.expect("CA pass");
        let ready = w.ca_condition("Ready").expect("Ready");
        assert_eq!(ready.status, "True", "{}", ready.message);
        for _ in 0..6 {
            w.ca_pass_at(now).await.expect("CA pass");
            // The certificate's Secret takes the new CA into its ca.crt.
            w.certificate_pass_at(now).await.expect("certificate pass");
        }
        let rotation = w.ca_status().rotation.expect("rotation");
        assert_eq!(rotation.phase, "Staged", "{rotation:?}");
        let switch = rotation.next_step_at.expect("the switch is scheduled");
        assert!(
            switch >= now + Duration::seconds(59),
            "the switch comes at least a minute after the staged CA was published: {switch} vs {now}"
        );
        w.ca_pass_at(now + Duration::seconds(30))
            .await
            .expect("CA pass");
        assert_eq!(
            w.ca_status().rotation.expect("rotation").phase,
            "Staged",
            "not switched inside the minute"
        );
    });
}

/// Puts a trust bundle of the CA into namespace `default`.
fn with_trust_bundle(w: &World) {
    w.api.put(
        "/api/v1/namespaces/default",
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default", "labels": {"bundle": "yes"}}}),
    );
    let mut ca: serde_json::Value = w.api.get(CA_PATH).expect("CA");
    ca["spec"]["trustBundle"] = json!({"namespaceSelector": {"matchLabels": {"bundle": "yes"}}});
    w.api.put(CA_PATH, ca);
}

/// The fingerprints the CA's trust-bundle ConfigMap in `default` carries.
fn published_bundle(w: &World) -> Vec<String> {
    let cm: Option<ConfigMap> = w.api.get("/api/v1/namespaces/default/configmaps/ca-ca");
    cm.and_then(|c| c.data?.get("ca.crt").cloned())
        .map(|pem| {
            parse_chain(pem.as_bytes(), "ca.crt")
                .expect("bundle parses")
                .into_iter()
                .map(|c| c.fingerprint)
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn the_switch_comes_an_overlap_after_the_new_ca_is_in_every_bundle_however_late_that_is() {
    runtime().block_on(async {
        let w = rotating_world("1h").await;
        with_trust_bundle(&w);
        let t0 = Utc::now();
        // Start, make the key, bind it: the key is made now, but nothing
        // has published it yet.
        for _ in 0..3 {
            w.ca_pass_at(t0).await.expect("CA pass");
        }
        let staged = w.key_certificate("ca-ca-r1").expect("staged key");
        assert_eq!(
            w.record().next_fingerprint,
            Some(staged.fingerprint.clone())
        );
        assert_eq!(w.record().next_trusted_since, None);
        // Two hours later (an operator that was down) the first pass that
        // would publish it fails to: nothing is recorded, nothing switches.
        let late = t0 + Duration::hours(2);
        w.api.fail_write(1, Fault::Status(500));
        assert!(w.ca_pass_at(late).await.is_err(), "the bundle write failed");
        assert_eq!(w.record().next_trusted_since, None);
        assert_eq!(w.ca_annotation(meta::CA_SIGNING_KEY), None);
        // The trust bundle is written, but the certificate's Secret does
        // not carry the new CA yet: still not published everywhere.
        w.ca_pass_at(late).await.expect("bundle written");
        assert_eq!(published_bundle(&w).len(), 2);
        assert_eq!(w.record().next_trusted_since, None);
        let c = w.ca_condition("Rotation").expect("Rotation condition");
        assert_eq!(c.reason, "BundlesPending", "{}", c.message);
        assert!(c.message.contains("app/web-tls"), "{}", c.message);
        w.certificate_pass_at(late).await.expect("ca.crt rewritten");
        assert_eq!(w.bundle().len(), 2);
        // Published: the overlap counts from here, not from the key's birth.
        let published = late + Duration::minutes(5);
        w.ca_pass_at(published).await.expect("publish");
        assert!(w.ca_condition("Rotation").is_none());
        assert_eq!(published_bundle(&w).len(), 2, "both CAs in the bundle");
        assert_eq!(w.record().next_trusted_since, Some(published));
        let switch_at = w.ca_status().rotation.and_then(|r| r.next_step_at);
        assert_eq!(switch_at, Some(published + Duration::hours(1)));
        w.ca_pass_at(published + Duration::minutes(59))
            .await
            .expect("still staged");
        assert_eq!(
            w.ca_annotation(meta::CA_SIGNING_KEY),
            None,
            "an overlap is an overlap"
        );
        assert_eq!(w.ca_status().rotation.expect("rotation").phase, "Staged");
        w.ca_pass_at(published + Duration::hours(1))
            .await
            .expect("switch");
        assert_eq!(w.ca_annotation(meta::CA_SIGNING_KEY).as_deref(), Some("1"));
    });
}

#[test]
fn a_deleted_retiring_key_keeps_its_ca_trusted_and_its_certificates_reissued_at_their_turns() {
    runtime().block_on(async {
        let w = rotating_world("1h").await;
        with_trust_bundle(&w);
        let old_fp = w.authority.certificate().fingerprint.clone();
        let first = w.leaf();
        let switched = w.walk_to_retiring(Utc::now()).await;
        let new = w.key_certificate("ca-ca-r1").expect("new key");
        // Someone deletes the retiring key's Secret.
        w.api
            .remove(&format!("/api/v1/namespaces/{NS}/secrets/ca-ca"));
        w.ca_pass_at(switched).await.expect("CA pass");
        let c = w.ca_condition("Rotation").expect("Rotation condition");
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("False", "RetiringKeyMissing"),
            "{}",
            c.message
        );
        assert!(c.message.contains("stays trusted"), "{}", c.message);
        assert!(
            w.api
                .event_reasons()
                .contains(&"RetiringKeyMissing".to_string())
        );
        assert_eq!(
            published_bundle(&w),
            vec![new.fingerprint.clone(), old_fp.clone()],
            "the old CA stays in the trust bundle from certop's record"
        );
        w.certificate_pass_at(switched)
            .await
            .expect("certificate pass");
        assert_eq!(
            w.leaf().serial,
            first.serial,
            "no burst: it waits for its turn"
        );
        assert_eq!(w.bundle(), vec![new.fingerprint.clone(), old_fp.clone()]);
        assert_eq!(w.ca_status().rotation.expect("rotation").phase, "Retiring");
        // Its turn comes within the spread; an overlap later the old CA goes.
        w.certificate_pass_at(switched + Duration::hours(1))
            .await
            .expect("re-issue");
        assert!(w.leaf().is_issued_by(&new));
        let done = switched + Duration::hours(2);
        w.ca_pass_at(done).await.expect("retire");
        w.ca_pass_at(done).await.expect("clean up");
        assert_eq!(w.ca_status().rotation.expect("rotation").phase, "Stable");
        assert_eq!(published_bundle(&w), vec![new.fingerprint.clone()]);
        assert!(w.ca_condition("Rotation").is_none());
    });
}

#[test]
fn hand_edits_of_the_rotation_annotations_are_undone_and_the_ca_keeps_signing() {
    runtime().block_on(async {
        let w = rotating_world("1h").await;
        let old_fp = w.authority.certificate().fingerprint.clone();
        let switched = w.walk_to_retiring(Utc::now()).await;
        let new = w.key_certificate("ca-ca-r1").expect("new key");
        let edit = |key: &str, value: Option<&str>| {
            let mut ca: serde_json::Value = w.api.get(CA_PATH).expect("CA");
            match value {
                Some(v) => ca["metadata"]["annotations"][key] = json!(v),
                None => {
                    ca["metadata"]["annotations"]
                        .as_object_mut()
                        .expect("annotations")
                        .remove(key);
                }
            }
            w.api.put(CA_PATH, ca);
        };
        for (what, key, value) in [
            (
                "the retiring key's annotation removed",
                meta::CA_PREVIOUS_FINGERPRINT,
                None,
            ),
            (
                "the rotation number made unreadable",
                meta::CA_ROTATION,
                Some("x"),
            ),
            (
                "the signing key number made unreadable",
                meta::CA_SIGNING_KEY,
                Some("one"),
            ),
        ] {
            edit(key, value);
            w.ca_pass_at(switched).await.expect("CA pass");
            assert_eq!(
                w.ca_condition("Ready").map(|c| c.status).as_deref(),
                Some("True"),
                "{what}: the CA signs"
            );
            assert_eq!(
                w.ca_status().rotation.expect("rotation").phase,
                "Retiring",
                "{what}"
            );
            assert_eq!(
                w.ca_annotation(meta::CA_PREVIOUS_FINGERPRINT),
                Some(old_fp.clone()),
                "{what}: the mirror is restored"
            );
            assert_eq!(
                w.ca_annotation(meta::CA_ROTATION).as_deref(),
                Some("1"),
                "{what}"
            );
            assert_eq!(
                w.ca_annotation(meta::CA_SIGNING_KEY).as_deref(),
                Some("1"),
                "{what}"
            );
            w.certificate_pass_at(switched)
                .await
                .expect("certificate pass");
            assert_eq!(
                w.bundle(),
                vec![new.fingerprint.clone(), old_fp.clone()],
                "{what}: the old CA is still trusted"
            );
        }
        assert!(
            w.api
                .event_reasons()
                .contains(&"RotationMarksRestored".to_string())
        );
    });
}

#[test]
fn a_ca_rotating_before_the_record_existed_goes_on_from_its_annotations() {
    runtime().block_on(async {
        let w = rotating_world("1h").await;
        let old_fp = w.authority.certificate().fingerprint.clone();
        let switched = w.walk_to_retiring(Utc::now()).await;
        // As an older certop left it: the annotations, no record.
        let mut ca: serde_json::Value = w.api.get(CA_PATH).expect("CA");
        ca["status"]["rotation"]
            .as_object_mut()
            .expect("rotation")
            .remove("record");
        w.api.put(CA_PATH, ca);
        w.ca_pass_at(switched).await.expect("upgrade pass");
        let record = w.record();
        assert_eq!(record.previous_fingerprint, Some(old_fp.clone()));
        assert_eq!(record.signing_key, 1);
        assert_eq!(
            record.previous_certificate.as_deref(),
            Some(w.authority.certificate_pem()),
            "the retiring certificate is recorded while its key is there"
        );
        assert_eq!(w.ca_status().rotation.expect("rotation").phase, "Retiring");
    });
}

/// Adds `entry` to the CA's ledger, keeping what its shard holds.
fn add_ledger_entry(w: &World, entry: LedgerEntry) {
    let shard = crate::core::ledger::shard_of(&entry.serial);
    let mut entries: Vec<LedgerEntry> = w
        .ledger()
        .into_iter()
        .filter(|e| crate::core::ledger::shard_of(&e.serial) == shard)
        .collect();
    entries.push(entry);
    let cm = ledger_store::shard_config_map("ca", shard, NS, &entries);
    w.api.put(
        &format!("{CRL_CM}{}", cm.metadata.name.clone().expect("name")),
        serde_json::to_value(&cm).expect("json"),
    );
}

#[test]
fn a_retirement_held_by_a_csr_certificate_names_it_and_ends_when_asked() {
    runtime().block_on(async {
        let w = rotating_world("1h").await;
        let old_serial = w.authority.certificate().serial.to_string();
        let switched = w.walk_to_retiring(Utc::now()).await;
        // A certificate the old key signed for a CSR: certop cannot
        // re-issue it, and it is valid for a month.
        let csr_serial = crate::pki::SerialNumber::random().expect("rng").to_string();
        add_ledger_entry(
            &w,
            LedgerEntry {
                serial: csr_serial.clone(),
                issued_at: (switched - Duration::days(1)).timestamp(),
                not_after: (switched + Duration::days(30)).timestamp(),
                organizations: Vec::new(),
                dns_names: Vec::new(),
                ip_addresses: Vec::new(),
                uris: vec![],
                certificate: None,
                revoked: None,
                key: 0,
                fingerprint: None,
            },
        );
        w.certificate_pass_at(switched + Duration::hours(1))
            .await
            .expect("the ClusterCertificate's turn");
        let late = switched + Duration::hours(3);
        w.ca_pass_at(late).await.expect("CA pass");
        let rotation = w.ca_status().rotation.expect("rotation");
        assert_eq!(
            (rotation.phase.as_str(), rotation.previous_certificates),
            ("Retiring", Some(1))
        );
        assert_eq!(
            rotation.previous_holders,
            vec![format!("{csr_serial} (CSR)")]
        );
        let c = w.ca_condition("Rotation").expect("Rotation condition");
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("False", "RetirementHeld")
        );
        for says in [
            csr_serial.as_str(),
            "(CSR)",
            meta::END_RETIREMENT,
            old_serial.as_str(),
            "CertificateRevocation",
        ] {
            assert!(c.message.contains(says), "{says}: {}", c.message);
        }
        // Another serial ends nothing; the retiring CA's serial ends it.
        for (value, phase) in [("0abc", "Retiring"), (old_serial.as_str(), "Stable")] {
            let mut ca: serde_json::Value = w.api.get(CA_PATH).expect("CA");
            ca["metadata"]["annotations"][meta::END_RETIREMENT] = json!(value);
            w.api.put(CA_PATH, ca);
            w.ca_pass_at(late).await.expect("CA pass");
            w.ca_pass_at(late).await.expect("CA pass");
            assert_eq!(
                w.ca_status().rotation.expect("rotation").phase,
                phase,
                "{value}"
            );
        }
        assert!(w.ca_condition("Rotation").is_none());
        assert!(
            w.key_certificate("ca-ca").is_none(),
            "the retired key is deleted"
        );
    });
}

#[test]
fn a_ca_whose_key_secret_name_is_at_the_limit_rotates() {
    runtime().block_on(async {
        let w = rotating_world("1m").await;
        let long = format!("{}-ca", "a".repeat(250));
        assert_eq!(long.len(), 253);
        let key: serde_json::Value = w
            .api
            .get(&format!("/api/v1/namespaces/{NS}/secrets/ca-ca"))
            .expect("key");
        let mut moved = key.clone();
        moved["metadata"]["name"] = json!(long);
        w.api
            .put(&format!("/api/v1/namespaces/{NS}/secrets/{long}"), moved);
        let mut ca: serde_json::Value = w.api.get(CA_PATH).expect("CA");
        ca["spec"]["keySource"] = json!({"secretName": long});
        w.api.put(CA_PATH, ca);
        w.settle_rotation(Utc::now()).await;
        let rotation = w.ca_status().rotation.expect("rotation");
        assert_eq!((rotation.phase.as_str(), rotation.number), ("Stable", 1));
        let secret = w.ca_status().secret_name.expect("signing Secret");
        assert!(secret.len() <= 253 && secret.ends_with("-r1"), "{secret}");
        assert_eq!(secret, crate::core::rotation::key_secret_name(&long, 1));
        assert!(w.key_certificate(&secret).is_some());
    });
}

#[test]
fn a_staged_key_lost_is_blocked_until_its_annotation_is_removed_then_a_new_one_is_staged() {
    runtime().block_on(async {
        let w = rotating_world("1h").await;
        let t0 = Utc::now();
        for _ in 0..4 {
            w.ca_pass_at(t0).await.expect("CA pass");
        }
        let lost = w.key_certificate("ca-ca-r1").expect("staged key");
        w.api
            .remove(&format!("/api/v1/namespaces/{NS}/secrets/ca-ca-r1"));
        w.ca_pass_at(t0).await.expect("CA pass");
        let c = w.ca_condition("Rotation").expect("Rotation condition");
        assert_eq!(c.reason, "RotationBlocked", "{}", c.message);
        assert!(
            c.message.contains(meta::CA_NEXT_FINGERPRINT),
            "{}",
            c.message
        );
        assert!(
            w.key_certificate("ca-ca-r1").is_none(),
            "no key made behind the user's back"
        );
        assert_eq!(
            w.ca_condition("Ready").map(|c| c.status).as_deref(),
            Some("True")
        );
        // The way out the message names: remove the annotation.
        let mut ca: serde_json::Value = w.api.get(CA_PATH).expect("CA");
        ca["metadata"]["annotations"]
            .as_object_mut()
            .expect("annotations")
            .remove(meta::CA_NEXT_FINGERPRINT);
        w.api.put(CA_PATH, ca);
        for _ in 0..4 {
            w.ca_pass_at(t0).await.expect("CA pass");
        }
        let staged = w.key_certificate("ca-ca-r1").expect("a new staged key");
        assert_ne!(staged.fingerprint, lost.fingerprint);
        assert_eq!(
            w.record().next_fingerprint,
            Some(staged.fingerprint.clone())
        );
        assert_eq!(
            w.ca_annotation(meta::CA_NEXT_FINGERPRINT),
            Some(staged.fingerprint.clone())
        );
        assert!(
            w.ca_condition("Rotation")
                .is_none_or(|c| c.reason == "BundlesPending"),
            "no longer blocked: it waits for the certificate's ca.crt"
        );
        assert_eq!(
            w.ca_status().rotation.expect("rotation").number,
            1,
            "the same rotation"
        );
    });
}

/// Attack (review of the crl-integrity merge): the notAfter map stored
/// beside a CRL is not signed, yet an entry only a verified CRL still
/// carries leaves the next CRL at the time the map gives it. With the
/// serial's shard corrupt and its revocation deleted (the issue's case),
/// dating the serial in the map of the published CRL and of certop's copy
/// takes a keyCompromise serial out of the next CRL, which says it is
/// complete. On the same leader the replica's memory follows the edited
/// ConfigMap (`follow_crls` offers a CRL of the same number), so no
/// failover is needed.
#[test]
fn an_edited_not_after_map_cannot_take_a_revoked_serial_out_of_the_crl() {
    runtime().block_on(async {
        for leader in ["on the same leader", "after a failover"] {
            let w = world();
            let serial = w.revoked_serial().await;
            corrupt(&w, &shard_path(&serial));
            w.api.remove(REV_PATH);
            let copy_path = format!(
                "{CRL_CM}{}",
                crate::operator::store::crl::copy_name("ca", 0)
            );
            for path in [w.crl_path(), copy_path] {
                let mut cm: serde_json::Value = w.api.get(&path).expect("a stored CRL");
                let mut map = serde_json::Map::new();
                map.insert(serial.clone(), json!(0));
                cm["data"]["not-after.json"] = json!(serde_json::Value::Object(map).to_string());
                w.api.put(&path, cm);
            }
            if leader == "on the same leader" {
                // What follow_crls does with the edited ConfigMap's event.
                let cm: ConfigMap = w.api.get(&w.crl_path()).expect("CRL");
                let (path, crl) =
                    crate::operator::store::crl::from_config_maps(&cm, |_| None, None)
                        .expect("served");
                w.ctx.crls.offer(&path, crl);
            } else {
                w.ctx.crls.forget("ca");
            }
            // The CRL's refresh.
            w.sync();
            let ca: CertificateAuthority = w.api.get(CA_PATH).expect("CA");
            crate::operator::store::crl::publish(&w.ctx, &ca, &w.authority, 0, Utc::now())
                .await
                .expect("publish");
            let incomplete = w
                .api
                .get::<ConfigMap>(&w.crl_path())
                .expect("CRL")
                .annotations()
                .contains_key("certop.dev/crl-incomplete");
            assert!(
                w.crl_serials().contains(&serial),
                "{leader}: the revoked serial left the CRL (marked incomplete: {incomplete})"
            );
        }
    });
}

/// Attack: an earlier CRL the CA signed (public: served over HTTP) put
/// back into the published ConfigMap and certop's copy verifies, and after
/// a restart (no CRL in memory) it is kept as current until its refresh:
/// the CRL served and stored no longer lists a serial revoked since, and
/// the CA's status.crlNumber goes down, although the ledger and the
/// revocation are intact. The CA's own status number is a floor the
/// stored CRL is not checked against.
#[test]
fn an_earlier_crl_put_back_is_not_served_after_a_restart() {
    runtime().block_on(async {
        let w = world();
        with_finalizer(&w);
        w.ca_pass().await.expect("CA pass");
        let earlier: serde_json::Value = w.api.get(&w.crl_path()).expect("the first CRL");
        let serial = w.revoked_serial().await;
        let number = w.crl_number().expect("CRL");
        assert!(
            w.crl_number_of_status() == Some(number),
            "the status has the number"
        );
        let copy_name = crate::operator::store::crl::copy_name("ca", 0);
        for (path, name) in [
            (
                w.crl_path(),
                crate::operator::store::crl::config_map_name("ca", 0),
            ),
            (format!("{CRL_CM}{copy_name}"), copy_name.clone()),
        ] {
            let mut cm = earlier.clone();
            cm["metadata"]["name"] = json!(name);
            w.api.put(&path, cm);
        }
        // A restart: the new leader holds no CRL in memory.
        w.ctx.crls.forget("ca");
        w.ca_pass().await.expect("CA pass");
        w.ca_pass().await.expect("CA pass");
        assert!(
            w.crl_number() >= Some(number),
            "the stored CRL went back from {number} to {:?}",
            w.crl_number()
        );
        assert!(
            w.crl_number_of_status() >= Some(number),
            "status.crlNumber went back from {number} to {:?}",
            w.crl_number_of_status()
        );
        assert!(w.crl_serials().contains(&serial), "the serial left the CRL");
    });
}

impl World {
    fn crl_number_of_status(&self) -> Option<u64> {
        let ca: CertificateAuthority = self.api.get(CA_PATH)?;
        ca.status?.crl_number.and_then(|n| u64::try_from(n).ok())
    }
}

/// Attack (review of rotation-edges): what holds a retirement is counted
/// from the ledger's readable shards only. A certificate the retiring key
/// signed for a CSR (certop cannot re-issue it) holds the retirement; once
/// its ledger shard is unreadable (a bad restore, a hand edit), certop
/// counts no holder and retires the old CA: it leaves every trust bundle
/// while that certificate is valid for a month (a kubelet's client
/// certificate stops verifying), with no word but LedgerCorrupt.
#[test]
fn an_unreadable_shard_does_not_end_a_retirement_its_certificates_hold() {
    runtime().block_on(async {
        let w = rotating_world("1h").await;
        let switched = w.walk_to_retiring(Utc::now()).await;
        let csr_serial = crate::pki::SerialNumber::random().expect("rng").to_string();
        add_ledger_entry(
            &w,
            LedgerEntry {
                serial: csr_serial.clone(),
                issued_at: (switched - Duration::days(1)).timestamp(),
                not_after: (switched + Duration::days(30)).timestamp(),
                organizations: Vec::new(),
                dns_names: Vec::new(),
                ip_addresses: Vec::new(),
                uris: vec![],
                certificate: None,
                revoked: None,
                key: 0,
                fingerprint: None,
            },
        );
        w.certificate_pass_at(switched + Duration::hours(1))
            .await
            .expect("the ClusterCertificate's turn");
        let late = switched + Duration::hours(3);
        w.ca_pass_at(late).await.expect("CA pass");
        assert_eq!(
            w.ca_status()
                .rotation
                .expect("rotation")
                .previous_certificates,
            Some(1),
            "held by the CSR's certificate"
        );
        corrupt(&w, &shard_path(&csr_serial));
        w.ca_pass_at(late).await.expect("CA pass");
        w.ca_pass_at(late).await.expect("CA pass");
        assert_eq!(
            w.ca_status().rotation.expect("rotation").phase,
            "Retiring",
            "the old CA was retired while a certificate it signed is valid for a month"
        );
    });
}

#[test]
fn a_revoked_serial_leaves_the_crl_only_when_every_source_says_it_expired() {
    runtime().block_on(async {
        for edit in ["the ledger shard", "the revocation's record"] {
            let w = world();
            let serial = w.revoked_serial().await;
            if edit == "the ledger shard" {
                let entries: Vec<LedgerEntry> = w
                    .ledger()
                    .into_iter()
                    .filter(|e| {
                        crate::core::ledger::shard_of(&e.serial)
                            == crate::core::ledger::shard_of(&serial)
                    })
                    .map(|mut e| {
                        if e.serial == serial {
                            e.not_after = 0;
                        }
                        e
                    })
                    .collect();
                let cm = ledger_store::shard_config_map(
                    "ca",
                    crate::core::ledger::shard_of(&serial),
                    NS,
                    &entries,
                );
                w.api.put(
                    &shard_path(&serial),
                    serde_json::to_value(&cm).expect("json"),
                );
            } else {
                corrupt(&w, &shard_path(&serial));
                let mut rev: serde_json::Value = w.api.get(REV_PATH).expect("revocation");
                for r in rev["status"]["revoked"].as_array_mut().expect("records") {
                    r["notAfter"] = json!("1970-01-01T00:00:00Z");
                }
                w.api.put(REV_PATH, rev);
            }
            w.sync();
            let ca: CertificateAuthority = w.api.get(CA_PATH).expect("CA");
            crate::operator::store::crl::publish(&w.ctx, &ca, &w.authority, 0, Utc::now())
                .await
                .expect("publish");
            assert!(
                w.crl_serials().contains(&serial),
                "{edit}: the revoked serial left the CRL"
            );
        }
    });
}

/// Makes the world's ledger look as a certop before digests left it, and
/// revoked since: the entry of `web` without `f` and revoked, beside the
/// entry of a certificate signed for a CSR, also without `f`. Returns the
/// digest of the certificate the Secret holds.
fn legacy_revoked_ledger(w: &World) -> String {
    let secret = w.secret().expect("the Secret exists");
    let pem = &secret.data.expect("data")[TLS_CERT_KEY].0;
    let held = parse_chain(pem, "tls.crt").expect("certificate").remove(0);
    let mut entries = w.ledger();
    for e in &mut entries {
        e.fingerprint = None;
        e.revoked = Some(crate::core::ledger::Revocation {
            at: Utc::now().timestamp(),
            reason: RevocationReason::KeyCompromise,
        });
    }
    let mut csr = entries[0].clone();
    csr.serial = "7f3a".into();
    csr.certificate = None;
    csr.revoked = None;
    entries.push(csr);
    put_ledger(w, entries);
    held.sha256_hex()
}

/// Replaces the ledger's shards with ones holding `entries`.
fn put_ledger(w: &World, entries: Vec<LedgerEntry>) {
    for shard in w
        .api
        .list("/api/v1", "configmaps", Some(NS))
        .into_iter()
        .filter(|cm| cm["metadata"]["labels"].get(meta::LEDGER).is_some())
    {
        w.api.remove(&format!(
            "{CRL_CM}{}",
            shard["metadata"]["name"].as_str().expect("name")
        ));
    }
    let mut shards: std::collections::BTreeMap<usize, Vec<LedgerEntry>> = Default::default();
    for e in entries {
        shards
            .entry(crate::core::ledger::shard_of(&e.serial))
            .or_default()
            .push(e);
    }
    for (shard, entries) in shards {
        let cm = ledger_store::shard_config_map("ca", shard, NS, &entries);
        w.api.put(
            &format!("{CRL_CM}{}", cm.metadata.name.clone().expect("name")),
            serde_json::to_value(&cm).expect("json"),
        );
    }
}

/// Whether the webhook's index, built from the ledger shards as they are
/// now, refuses the certificate with this digest.
fn refused_by_index(w: &World, digest: &str) -> bool {
    let mut credentials = crate::core::authz::RevokedCredentials::default();
    for shard in w
        .api
        .list("/api/v1", "configmaps", Some(NS))
        .into_iter()
        .filter_map(|v| serde_json::from_value::<ConfigMap>(v).ok())
        .filter(|cm| cm.labels().contains_key(meta::LEDGER))
    {
        let entries = ledger_store::entries_of(&shard).expect("ledger parses");
        credentials.replace_shard(&shard.name_any(), "ca", &entries);
    }
    let ids = vec![format!("{}{digest}", crate::core::authz::X509_PREFIX)];
    crate::core::authz::review(&ids, &credentials) != crate::core::authz::Verdict::NoOpinion
}

#[test]
fn a_digest_missing_from_the_ledger_is_filled_from_the_secret_whichever_write_fails() {
    runtime().block_on(async {
        let setup = || async {
            let w = world();
            w.settle_certificate().await;
            with_finalizer(&w);
            let digest = legacy_revoked_ledger(&w);
            (w, digest)
        };
        let (clean, digest) = setup().await;
        assert!(
            !refused_by_index(&clean, &digest),
            "without its digest, the revoked certificate is not refused"
        );
        let before = clean.api.writes();
        clean.ca_pass().await.expect("a clean CA pass");
        let writes = clean.api.writes() - before;
        assert!(
            refused_by_index(&clean, &digest),
            "the filled digest of a revoked entry is refused"
        );
        assert_eq!(
            clean.ca_status().certificates_without_digest,
            Some(1),
            "the CSR's entry, which no Secret holds, is counted"
        );
        let filled = clean.api.writes();
        clean.ca_pass().await.expect("a second pass");
        assert!(
            !clean.api.log()[filled..]
                .iter()
                .any(|w| w.contains("certop-ledger-")),
            "a filled ledger is not written again: {:?}",
            &clean.api.log()[filled..]
        );
        for fault in [Fault::Status(500), Fault::Status(409), Fault::Drop] {
            for n in 1..=writes {
                let case = format!("{fault:?} at write {n} of {:?}", &clean.api.log()[before..]);
                let (w, digest) = setup().await;
                w.api.fail_write(n, fault);
                let _ = w.ca_pass().await;
                for _ in 0..3 {
                    let _ = w.ca_pass().await;
                }
                assert!(refused_by_index(&w, &digest), "{case}");
                let entries = w.ledger();
                assert_eq!(entries.len(), 2, "{case}: no entry lost or added");
                let web = entries
                    .iter()
                    .find(|e| e.certificate.as_deref() == Some("web"))
                    .expect("web's entry");
                assert_eq!(web.fingerprint.as_deref(), Some(digest.as_str()), "{case}");
                assert!(web.revoked.is_some(), "{case}: still revoked");
                assert_eq!(w.ca_status().certificates_without_digest, Some(1), "{case}");
            }
        }
    });
}

#[test]
fn a_secret_holding_a_certificate_its_ca_did_not_sign_gives_no_digest() {
    runtime().block_on(async {
        let w = world();
        w.settle_certificate().await;
        with_finalizer(&w);
        legacy_revoked_ledger(&w);
        // Someone who may write the Secret puts there a certificate of
        // another CA, and the ledger entry and the status name its serial:
        // its digest must not become the revoked entry's.
        let forged = Authority::create(&CaRequest::new("forger"), Utc::now()).expect("CA");
        let forged = forged.certificate();
        let serial = forged.serial.to_string();
        let mut entries = w.ledger();
        for e in entries.iter_mut().filter(|e| e.certificate.is_some()) {
            e.serial = serial.clone();
        }
        put_ledger(&w, entries);
        let mut secret: serde_json::Value = w.api.get(SECRET_PATH).expect("Secret");
        secret["data"][TLS_CERT_KEY] = json!(b64(forged.to_pem().as_bytes()));
        w.api.put(SECRET_PATH, secret);
        let mut cert: serde_json::Value = w.api.get(CERT_PATH).expect("certificate");
        cert["status"]["serialNumber"] = json!(serial);
        w.api.put(CERT_PATH, cert);
        w.ca_pass().await.expect("a CA pass");
        assert!(
            !refused_by_index(&w, &forged.sha256_hex()),
            "the forged certificate's digest was recorded as revoked"
        );
        assert!(
            w.ledger().iter().all(|e| e.fingerprint.is_none()),
            "nothing filled"
        );
        assert_eq!(w.ca_status().certificates_without_digest, Some(2));
    });
}

#[test]
fn a_due_renewal_replaces_the_secret_unread_and_one_changed_or_gone_since_is_read_first() {
    runtime().block_on(async {
        let w = world();
        w.settle_certificate().await;
        let recorded = |w: &World| {
            w.status()
                .secret_version
                .map(|v| v.resource_version)
                .expect("the status records the Secret's version")
        };
        let version = |w: &World| {
            w.secret()
                .and_then(|s| s.resource_version())
                .expect("the Secret exists")
        };
        assert_eq!(recorded(&w), version(&w));
        let due = |w: &World| w.status().renewal_time.expect("renewal time") + Duration::seconds(1);
        let secret_gets = |w: &World, from: usize| {
            w.api.read_log()[from..]
                .iter()
                .filter(|p| *p == SECRET_PATH)
                .count()
        };
        let secret_patches = |w: &World, from: usize| {
            w.api.log()[from..]
                .iter()
                .filter(|l| *l == &format!("PATCH {SECRET_PATH}"))
                .count()
        };

        // Due, and the Secret is the version recorded: renewed unread.
        let first = w.secret_serial();
        let (reads, writes) = (w.api.read_log().len(), w.api.log().len());
        w.certificate_passes_at(due(&w)).await;
        assert_ne!(w.secret_serial(), first, "renewed");
        assert_eq!(
            secret_gets(&w, reads),
            0,
            "{:?}",
            &w.api.read_log()[reads..]
        );
        assert_eq!(
            secret_patches(&w, writes),
            1,
            "{:?}",
            &w.api.log()[writes..]
        );
        let status = w.status();
        assert_eq!(
            status.serial_number.as_deref(),
            Some(w.secret_serial().as_str())
        );
        assert_eq!(status.revision, Some(2));
        assert_eq!(recorded(&w), version(&w));
        let ready = conditions::find(&status.conditions, conditions::READY).expect("Ready");
        assert_eq!(ready.reason, "Renewed");
        assert_eq!(w.ledger().len(), 2, "each certificate recorded once");

        // Changed since by another writer, a change the watch has not
        // shown: the write at the recorded version is refused, the pass
        // reads the Secret and renews over what it read.
        let mut changed: serde_json::Value = w.api.get(SECRET_PATH).expect("Secret");
        changed["metadata"]["annotations"]["team.example/owner"] = json!("web");
        w.api.put(SECRET_PATH, changed);
        let second = w.secret_serial();
        let cert: ClusterCertificate = w.api.get(CERT_PATH).expect("certificate");
        let (reads, writes) = (w.api.read_log().len(), w.api.log().len());
        certificate::apply_at(&cert, &w.ctx, due(&w))
            .await
            .expect("renewed");
        assert_eq!(secret_gets(&w, reads), 1, "read after the refused write");
        assert_eq!(
            secret_patches(&w, writes),
            2,
            "{:?}",
            &w.api.log()[writes..]
        );
        assert_ne!(w.secret_serial(), second, "renewed");
        let kept: Secret = w.secret().expect("Secret");
        assert_eq!(
            kept.annotations()
                .get("team.example/owner")
                .map(String::as_str),
            Some("web"),
            "the other writer's annotation is kept"
        );
        assert_eq!(w.status().revision, Some(3));
        assert_eq!(recorded(&w), version(&w));

        // Gone since, unseen: the apply creates it again (as
        // kube-apiserver does), as the read would have had it.
        w.settle_certificate().await;
        w.api.remove(SECRET_PATH);
        let cert: ClusterCertificate = w.api.get(CERT_PATH).expect("certificate");
        let reads = w.api.read_log().len();
        certificate::apply_at(&cert, &w.ctx, due(&w))
            .await
            .expect("issued again");
        w.secret_serial();
        assert_eq!(
            secret_gets(&w, reads),
            0,
            "{:?}",
            &w.api.read_log()[reads..]
        );
        assert_eq!(w.status().revision, Some(4));
        assert_eq!(recorded(&w), version(&w));
        assert_eq!(w.ledger().len(), 4, "each certificate recorded once");
    });
}

#[test]
fn the_recorded_secret_version_follows_another_writer_but_is_not_written_for_itself() {
    runtime().block_on(async {
        let w = world();
        w.settle_certificate().await;
        let recorded = |w: &World| w.status().secret_version.map(|v| v.resource_version);
        let version = |w: &World| w.secret().and_then(|s| s.resource_version());

        // Another writer annotates the Secret: the pass its watch event
        // starts records the new version, once.
        let mut changed: serde_json::Value = w.api.get(SECRET_PATH).expect("Secret");
        changed["metadata"]["annotations"]["team.example/owner"] = json!("web");
        w.api.put(SECRET_PATH, changed);
        assert_ne!(recorded(&w), version(&w));
        w.settle_certificate().await;
        assert_eq!(recorded(&w), version(&w), "recorded");

        // A status written before certop recorded versions is not
        // rewritten only to record one (an upgrade writes nothing).
        let mut cert: serde_json::Value = w.api.get(CERT_PATH).expect("certificate");
        cert["status"]
            .as_object_mut()
            .expect("status")
            .remove("secretVersion");
        w.api.put(CERT_PATH, cert);
        let writes = w.api.writes();
        w.certificate_pass().await.expect("pass");
        assert_eq!(w.api.writes(), writes, "{:?}", &w.api.log()[writes..]);
        assert_eq!(recorded(&w), None);
    });
}

#[test]
fn every_write_of_an_unread_renewal_fails_in_turn_and_it_is_renewed_once() {
    runtime().block_on(async {
        let due = |w: &World| w.status().renewal_time.expect("renewal time") + Duration::seconds(1);
        let clean = world();
        clean.settle_certificate().await;
        let from = clean.api.writes();
        clean.certificate_passes_at(due(&clean)).await;
        let writes = clean.api.writes() - from;
        assert!(
            writes >= 3,
            "Secret, ledger, status: {:?}",
            &clean.api.log()[from..]
        );
        for fault in Fault::EVERY {
            for n in 1..=writes {
                let w = world();
                w.settle_certificate().await;
                let first = w.secret_serial();
                let at = due(&w);
                w.api.fail_write(w.api.writes() + n, fault);
                for _ in 0..4 {
                    w.certificate_passes_at(at).await;
                }
                let case = format!("{fault:?} at write {n} of {:?}", &clean.api.log()[from..]);
                let serial = w.secret_serial();
                let status = w.status();
                assert_ne!(serial, first, "renewed: {case}");
                assert_eq!(
                    status.serial_number.as_deref(),
                    Some(serial.as_str()),
                    "{case}"
                );
                assert_eq!(status.revision, Some(2), "renewed once: {case}");
                assert_eq!(
                    status.secret_version.map(|v| v.resource_version),
                    w.secret().and_then(|s| s.resource_version()),
                    "{case}"
                );
                let ledger: Vec<String> = w.ledger().into_iter().map(|e| e.serial).collect();
                let mut unique = ledger.clone();
                unique.sort();
                unique.dedup();
                assert_eq!(unique.len(), ledger.len(), "each recorded once: {case}");
                assert!(
                    ledger.contains(&serial),
                    "the Secret's certificate is recorded: {case}: {ledger:?}"
                );
            }
        }
    });
}
