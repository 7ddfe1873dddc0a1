//! The PodCertificateRequest controller against the in-memory API server:
//! what it issues, denies and never touches, and that a pass whose write
//! fails (or a restart after it) ends with one certificate, recorded once.

use std::sync::Arc;

use k8s_openapi::api::certificates::v1beta1::PodCertificateRequest;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::ResourceExt;
use rcgen::{CertificateParams, KeyPair};
use serde_json::json;

use crate::api::meta;
use crate::core::ledger::LedgerEntry;
use crate::operator::runtime::managed_namespaces::ManagedNamespaces;
use crate::operator::signing_request::CsrPolicy;
use crate::operator::testing::fake_api::{FakeApi, Fault};
use crate::operator::testing::{self, NS, Writers, runtime};
use crate::operator::{Context, store::ledger_store};
use crate::pki::{Authority, CertificateInfo, parse_chain};

const PREFIX: &str = "/apis/certificates.k8s.io/v1beta1";
const POD_NS: &str = "shop";

struct World {
    api: FakeApi,
    ctx: Arc<Context>,
    authority: Authority,
    writers: Writers,
}

/// A Ready CA `ca` with `spec` merged in.
fn world(ca_spec: serde_json::Value) -> World {
    let api = FakeApi::new(&[NS, POD_NS]);
    let authority = testing::put_ready_ca(&api, "ca", ca_spec);
    let (ctx, writers) = fresh_context(&api);
    let mut w = World {
        api,
        ctx,
        authority,
        writers,
    };
    w.sync();
    w
}

fn fresh_context(api: &FakeApi) -> (Arc<Context>, Writers) {
    let policy = CsrPolicy {
        max_lifetime: chrono::Duration::hours(24),
        kubelet_ca: None,
        approve_kubelets: false,
        kubelet_serving: Default::default(),
    };
    testing::context(api, policy, ManagedNamespaces::All)
}

/// A kubelet's stub request for a fresh key of `alg`: DER, empty subject.
fn stub(alg: &'static rcgen::SignatureAlgorithm) -> Vec<u8> {
    stub_of(&KeyPair::generate_for(alg).expect("key"))
}

/// A kubelet's stub request for `key`.
fn stub_of(key: &KeyPair) -> Vec<u8> {
    CertificateParams::default()
        .serialize_request(key)
        .expect("csr")
        .der()
        .to_vec()
}

impl World {
    fn sync(&mut self) {
        // The CAs and their key Secrets' metadata, as their watches see them.
        testing::sync_cas(&self.api, &mut self.writers);
        let policies = testing::all(&self.api, "/apis/certop.dev/v1", "certificatepolicies");
        testing::init(&mut self.writers.policies, policies);
    }

    /// certop restarted: a new Context, its caches empty.
    fn restart(&mut self) {
        let (ctx, writers) = fresh_context(&self.api);
        self.ctx = ctx;
        self.writers = writers;
        self.sync();
    }

    fn put_request(&self, name: &str, signer: &str, stub: &[u8], extra: serde_json::Value) {
        let mut spec = json!({"signerName": signer, "podName": "web-1", "podUID": format!("pod-{name}"),
            "serviceAccountName": "web", "serviceAccountUID": "sa-uid", "nodeName": "n1", "nodeUID": "n-uid",
            "stubPKCS10Request": testing::b64(stub)});
        if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
            s.extend(e.clone());
        }
        self.api.put(
            &format!("{PREFIX}/namespaces/{POD_NS}/podcertificaterequests/{name}"),
            json!({"apiVersion": "certificates.k8s.io/v1beta1", "kind": "PodCertificateRequest",
                   "metadata": {"name": name, "namespace": POD_NS, "uid": format!("uid-{name}"),
                                "creationTimestamp": chrono::Utc::now().to_rfc3339()},
                   "spec": spec}),
        );
    }

    fn request(&self, name: &str) -> PodCertificateRequest {
        self.api
            .get(&format!(
                "{PREFIX}/namespaces/{POD_NS}/podcertificaterequests/{name}"
            ))
            .expect("the request exists")
    }

    async fn pass(&self, name: &str) -> Result<(), crate::operator::Error> {
        super::reconcile(Arc::new(self.request(name)), self.ctx.clone())
            .await
            .map(|_| ())
    }

    /// Passes until one succeeds and writes nothing.
    async fn settle(&self, name: &str) {
        for _ in 1..=6 {
            let before = self.api.writes();
            if self.pass(name).await.is_ok() && self.api.writes() == before {
                return;
            }
        }
        panic!("the request did not settle: {:?}", self.api.log());
    }

    /// The True terminal condition of the request, with its reason and message.
    fn outcome(&self, name: &str) -> Option<(String, String, String)> {
        self.request(name)
            .status?
            .conditions?
            .into_iter()
            .find(|c| c.status == "True")
            .map(|c| (c.type_, c.reason, c.message))
    }

    /// The leaf handed out, after checking it chains to the CA.
    fn issued(&self, name: &str) -> Option<CertificateInfo> {
        let status = self.request(name).status?;
        let chain =
            parse_chain(status.certificate_chain?.as_bytes(), "certificateChain").expect("a chain");
        assert!(chain[0].is_issued_by(self.authority.certificate()));
        let time = |t: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time| {
            crate::operator::conditions::from_timestamp(t.0)
        };
        assert_eq!(status.not_before.map(time), Some(chain[0].not_before));
        assert_eq!(status.not_after.map(time), Some(chain[0].not_after));
        let refresh = status.begin_refresh_at.map(time).expect("beginRefreshAt");
        assert!(refresh > chain[0].not_before && refresh < chain[0].not_after);
        Some(chain[0].clone())
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
}

#[test]
fn a_request_is_issued_in_one_status_write_with_the_pods_identity_and_recorded() {
    runtime().block_on(async {
        for (case, alg) in [
            ("P-256", &rcgen::PKCS_ECDSA_P256_SHA256),
            ("P-384", &rcgen::PKCS_ECDSA_P384_SHA384),
            ("Ed25519", &rcgen::PKCS_ED25519),
            ("P-521", &rcgen::PKCS_ECDSA_P521_SHA512),
        ] {
            let w = world(json!({"podCertificates": {}}));
            w.put_request("r", "certop.dev/ca", &stub(alg), json!({}));
            let writes = w.api.writes();
            w.pass("r").await.expect("pass");
            let log = w.api.log();
            let status_writes: Vec<&String> = log[writes..]
                .iter()
                .filter(|l| l.contains("podcertificaterequests"))
                .collect();
            assert_eq!(status_writes.len(), 1, "{case}: {log:?}");
            assert_eq!(
                w.outcome("r").map(|o| (o.0, o.1)),
                Some(("Issued".into(), "Issued".into())),
                "{case}"
            );
            let leaf = w.issued("r").expect("issued");
            assert_eq!(
                leaf.uris,
                vec!["spiffe://cluster.local/ns/shop/sa/web".to_string()]
            );
            assert_eq!(
                (leaf.common_name.clone(), leaf.organizations.len()),
                (None, 0)
            );
            let ledger = w.ledger();
            assert_eq!(ledger.len(), 1, "{case}");
            assert_eq!(ledger[0].serial, leaf.serial.to_string());
            // Recorded as issued when it was signed, not minutes ahead: a
            // revocation made right after it ("issued before" its
            // creation) covers it.
            assert_eq!(
                ledger[0].issued_at,
                (leaf.not_before + crate::pki::POD_BACKDATE).timestamp(),
                "{case}"
            );
            assert!(
                ledger[0].issued_at <= chrono::Utc::now().timestamp(),
                "{case}"
            );
            assert_eq!(
                ledger[0].uris,
                vec!["spiffe://cluster.local/ns/shop/sa/web".to_string()],
                "{case}: the SPIFFE ID, for revocation by workload identity"
            );
            assert_eq!(
                ledger[0].fingerprint.as_deref(),
                Some(leaf.sha256_hex().as_str())
            );
            // Finished: nothing more, ever.
            let writes = w.api.writes();
            w.pass("r").await.expect("pass");
            assert_eq!(w.api.writes(), writes, "{case}");
        }
    });
}

#[test]
fn a_request_for_a_ca_that_did_not_opt_in_is_never_touched() {
    runtime().block_on(async {
        let w = world(json!({}));
        w.put_request(
            "r",
            "certop.dev/ca",
            &stub(&rcgen::PKCS_ECDSA_P256_SHA256),
            json!({}),
        );
        w.put_request(
            "s",
            "example.com/other",
            &stub(&rcgen::PKCS_ECDSA_P256_SHA256),
            json!({}),
        );
        let (reads, writes) = (w.api.reads(), w.api.writes());
        w.pass("r").await.expect("pass");
        w.pass("s").await.expect("pass");
        assert_eq!((w.api.reads(), w.api.writes()), (reads, writes));
        assert_eq!(w.outcome("r"), None);
        assert!(w.ledger().is_empty());
    });
}

#[test]
fn refused_requests_say_why_and_leave_no_ledger_entry() {
    runtime().block_on(async {
        let cases = [
            (
                "RSA 2048, which Kubernetes does not admit either",
                json!({"podCertificates": {}}),
                stub_of(
                    &KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)
                        .expect("key"),
                ),
                json!({}),
                ("Denied", "UnsupportedKeyType", "use ECDSAP256"),
            ),
            (
                "an annotation the CA does not allow",
                json!({"podCertificates": {}}),
                stub(&rcgen::PKCS_ECDSA_P256_SHA256),
                json!({"unverifiedUserAnnotations": {"certop.dev/dns-names": "web.shop.svc"}}),
                ("Denied", "InvalidUnverifiedUserAnnotations", "allowedUnverifiedAnnotations"),
            ),
            (
                "a policy refusal",
                json!({"podCertificates": {"allowedUnverifiedAnnotations": ["certop.dev/dns-names"]},
                       "policy": {"allowedDNSNames": [".svc"]}}),
                stub(&rcgen::PKCS_ECDSA_P256_SHA256),
                json!({"unverifiedUserAnnotations": {"certop.dev/dns-names": "bank.example.com"}}),
                ("Denied", "PolicyViolation", "bank.example.com"),
            ),
        ];
        for (case, ca, stub, extra, (type_, reason, says)) in cases {
            let w = world(ca);
            w.put_request("r", "certop.dev/ca", &stub, extra);
            w.settle("r").await;
            let (t, r, message) = w.outcome("r").expect("an outcome");
            assert_eq!((t.as_str(), r.as_str()), (type_, reason), "{case}: {message}");
            assert!(message.contains(says), "{case}: {message}");
            assert!(w.ledger().is_empty(), "{case}");
            assert_eq!(w.request("r").status.and_then(|s| s.certificate_chain), None);
        }
    });
}

#[test]
fn every_write_of_issuance_fails_in_turn_and_the_request_ends_with_one_certificate_recorded_once() {
    runtime().block_on(async {
        for fault in [Fault::Status(500), Fault::Status(409), Fault::Drop] {
            for n in 1..=2 {
                for restart in [false, true] {
                    let case = format!("write {n} fails with {fault:?}, restart {restart}");
                    let mut w = world(json!({"podCertificates": {}}));
                    w.put_request(
                        "r",
                        "certop.dev/ca",
                        &stub(&rcgen::PKCS_ECDSA_P256_SHA256),
                        json!({}),
                    );
                    w.api.fail_write(n, fault);
                    let _ = w.pass("r").await;
                    if restart {
                        w.restart();
                    }
                    w.settle("r").await;
                    let leaf = w.issued("r").expect("issued in the end");
                    let ledger = w.ledger();
                    assert_eq!(ledger.len(), 1, "{case}: one entry, never two: {ledger:?}");
                    assert_eq!(ledger[0].serial, leaf.serial.to_string(), "{case}");
                    assert_eq!(
                        ledger[0].fingerprint.as_deref(),
                        Some(leaf.sha256_hex().as_str()),
                        "{case}: the entry is the certificate handed out"
                    );
                }
            }
        }
    });
}

/// Request names whose serials (derived from the request's UID and the
/// CA's key) fall in one ledger shard, so their records are grouped.
fn names_in_one_shard(w: &World, count: usize) -> Vec<String> {
    let fingerprint = &w.authority.certificate().fingerprint;
    let shard_of = |name: &str| {
        let seed = format!("uid-{name}/{fingerprint}");
        crate::core::ledger::shard_of(
            &crate::pki::SerialNumber::derived(seed.as_bytes()).to_string(),
        )
    };
    let mut by_shard = std::collections::BTreeMap::<usize, Vec<String>>::new();
    for i in 0.. {
        let name = format!("r{i}");
        let names = by_shard.entry(shard_of(&name)).or_default();
        names.push(name);
        if names.len() == count {
            return names.clone();
        }
    }
    unreachable!("the loop returns")
}

#[test]
fn the_records_of_concurrent_passes_to_one_shard_go_in_one_write_and_a_failed_one_issues_none_of_them()
 {
    runtime().block_on(async {
        for fault in [Fault::Status(500), Fault::Drop] {
            let case = format!("{fault:?}");
            let w = world(json!({"podCertificates": {}}));
            let names = names_in_one_shard(&w, 5);
            for name in &names {
                w.put_request(
                    name,
                    "certop.dev/ca",
                    &stub(&rcgen::PKCS_ECDSA_P256_SHA256),
                    json!({}),
                );
            }
            let ledger_writes = |from: usize| {
                w.api.log()[from..]
                    .iter()
                    .filter(|l| l.contains("/configmaps"))
                    .count()
            };
            let passes = || futures::future::join_all(names.iter().map(|n| w.pass(n)));
            // The CA's key loaded, as after any first request: the passes
            // then reach the ledger together, not one by one behind the
            // one load of the key.
            let ca = w
                .ctx
                .cas
                .get(&kube::runtime::reflector::ObjectRef::new("ca"))
                .expect("the CA is in the store");
            crate::operator::store::authority_cache::keyring(&w.ctx, &ca, chrono::Utc::now())
                .await
                .expect("the key loads");

            // The group's one ledger write fails: every pass of the group
            // fails, and none hands out a certificate.
            w.api.fail_write(1, fault);
            let from = w.api.log().len();
            let results = passes().await;
            assert!(results.iter().all(Result::is_err), "{case}: {results:?}");
            assert_eq!(ledger_writes(from), 1, "{case}: {:?}", w.api.log());
            for name in &names {
                assert_eq!(w.outcome(name), None, "{case}: {name}");
                assert!(w.issued(name).is_none(), "{case}: {name}");
            }
            assert!(w.ledger().is_empty(), "{case}");

            // The next passes do it: one ledger write for the five, then
            // one status write each.
            let from = w.api.log().len();
            let results = passes().await;
            assert!(results.iter().all(Result::is_ok), "{case}: {results:?}");
            assert_eq!(ledger_writes(from), 1, "{case}: {:?}", w.api.log());
            let ledger = w.ledger();
            assert_eq!(ledger.len(), names.len(), "{case}: {ledger:?}");
            for name in &names {
                let leaf = w.issued(name).expect("issued");
                let entry = ledger
                    .iter()
                    .find(|e| e.serial == leaf.serial.to_string())
                    .expect("recorded");
                assert_eq!(
                    entry.fingerprint.as_deref(),
                    Some(leaf.sha256_hex().as_str()),
                    "{case}: {name}"
                );
            }
        }
    });
}
