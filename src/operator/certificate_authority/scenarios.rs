//! The CA controller against the in-memory API server: each write a pass
//! makes (the key Secret, the binding, a rotation step, the trust bundles'
//! create, patch and delete, the CRL, the status) fails in turn, with 500,
//! 409 or a dropped connection, and the passes that follow finish the job
//! with one key, every bundle right and a CRL the CA signed.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, Utc};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::ResourceExt;
use serde_json::json;

use crate::api::{CertificateAuthority, CertificateAuthorityStatus, meta};
use crate::operator::runtime::managed_namespaces::ManagedNamespaces;
use crate::operator::signing_request::CsrPolicy;
use crate::operator::testing::fake_api::{FakeApi, Fault};
use crate::operator::testing::{self, NS, Writers, runtime};
use crate::operator::{Context, Error, conditions, store::crl};
use crate::pki::{CertificateInfo, parse_chain, parse_crl};

const CA_PATH: &str = "/apis/certop.dev/v1/certificateauthorities/ca";
const BUNDLE: &str = "ca-bundle";
const FAULTS: [Fault; 3] = [Fault::Status(500), Fault::Status(409), Fault::Drop];

struct World {
    api: FakeApi,
    ctx: Arc<Context>,
    writers: Mutex<Writers>,
}

fn bundle_path(namespace: &str) -> String {
    format!("/api/v1/namespaces/{namespace}/configmaps/{BUNDLE}")
}

fn key_path(secret: &str) -> String {
    format!("/api/v1/namespaces/{NS}/secrets/{secret}")
}

/// A Ready CA `ca` (its key certop's) whose trust bundle goes to the
/// namespaces labelled `trust=yes` (team-a, team-b; team-c is not), with
/// `spec` merged over that.
fn world(spec: serde_json::Value) -> World {
    let api = FakeApi::new(&[NS, "team-a", "team-b", "team-c"]);
    let mut full = json!({"trustBundle": {"configMapName": BUNDLE,
                          "namespaceSelector": {"matchLabels": {"trust": "yes"}}}});
    if let (Some(f), Some(extra)) = (full.as_object_mut(), spec.as_object()) {
        f.extend(extra.clone());
    }
    testing::put_ready_ca(&api, "ca", full);
    let mut ca: serde_json::Value = api.get(CA_PATH).expect("CA");
    ca["metadata"]["finalizers"] = json!([meta::FINALIZER]);
    ca["metadata"]["generation"] = json!(1);
    api.put(CA_PATH, ca);
    let mut key: serde_json::Value = api.get(&key_path("ca-ca")).expect("key Secret");
    key["metadata"]["labels"] = json!({meta::MANAGED_BY: meta::MANAGED_BY_VALUE});
    key["metadata"]["annotations"] = json!({meta::CERTIFICATE_AUTHORITY: "ca"});
    api.put(&key_path("ca-ca"), key);
    for (namespace, labels) in [
        ("team-a", json!({"trust": "yes"})),
        ("team-b", json!({"trust": "yes"})),
        ("team-c", json!({})),
    ] {
        api.put(
            &format!("/api/v1/namespaces/{namespace}"),
            json!({"apiVersion": "v1", "kind": "Namespace",
                   "metadata": {"name": namespace, "labels": labels}}),
        );
    }
    let policy = CsrPolicy {
        max_lifetime: Duration::hours(24),
        kubelet_ca: None,
        approve_kubelets: false,
        kubelet_serving: Default::default(),
    };
    let (ctx, writers) = testing::context(&api, policy, ManagedNamespaces::All);
    World {
        api,
        ctx,
        writers: Mutex::new(writers),
    }
}

/// `world` with a CA that has no key yet: certop makes it.
fn fresh_world() -> World {
    let w = world(json!({}));
    w.api.remove(&key_path("ca-ca"));
    let mut ca: serde_json::Value = w.api.get(CA_PATH).expect("CA");
    ca["metadata"]["annotations"] = json!({});
    ca["status"] = json!({});
    w.api.put(CA_PATH, ca);
    w
}

/// A trust bundle as certop makes it (its label and annotation), holding `pem`.
fn put_our_bundle(w: &World, namespace: &str, pem: &str) {
    let label = format!(
        "certop.dev/trust-bundle-{}",
        crate::api::object_name::digest_hex("ca", 8)
    );
    w.api.put(
        &bundle_path(namespace),
        json!({"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": BUNDLE, "namespace": namespace,
                            "labels": {meta::MANAGED_BY: meta::MANAGED_BY_VALUE, label: "true"},
                            "annotations": {meta::CERTIFICATE_AUTHORITY: "ca"}},
               "data": {"ca.crt": pem}}),
    );
}

impl World {
    /// The stores see what the API server holds (a watch caught up).
    fn sync(&self) {
        let mut w = self.writers.lock().expect("writers");
        testing::sync_cas(&self.api, &mut w);
    }

    fn ca(&self) -> CertificateAuthority {
        self.api.get(CA_PATH).expect("the CA exists")
    }

    fn status(&self) -> CertificateAuthorityStatus {
        self.ca().status.unwrap_or_default()
    }

    async fn pass(&self) -> Result<(), Error> {
        self.sync();
        super::reconcile(Arc::new(self.ca()), self.ctx.clone())
            .await
            .map(|_| ())
    }

    async fn pass_at(&self, now: DateTime<Utc>) -> Result<(), Error> {
        self.sync();
        super::apply_at(&self.ca(), &self.ctx, now)
            .await
            .map(|_| ())
    }

    /// Whether the writes logged from `from` on change nothing: a pass
    /// applies every trust bundle it keeps (server-side apply, a no-op
    /// when nothing changed), and writes nothing else once all is done.
    fn steady_since(&self, from: usize) -> bool {
        self.api.log()[from..]
            .iter()
            .all(|w| w.starts_with("PATCH ") && w.ends_with(&format!("/configmaps/{BUNDLE}")))
    }

    /// Passes until one succeeds and changes nothing; how many it took.
    async fn settle(&self, case: &str) -> usize {
        for n in 1..=8 {
            let before = self.api.log().len();
            if self.pass().await.is_ok() && self.steady_since(before) {
                return n;
            }
        }
        panic!("{case}: the CA did not settle: {:?}", self.api.log());
    }

    /// Passes with the clock moving 10 minutes a pass from `now` until one
    /// succeeds and changes nothing.
    async fn settle_from(&self, mut now: DateTime<Utc>, case: &str) {
        for _ in 0..30 {
            let before = self.api.log().len();
            if self.pass_at(now).await.is_ok() && self.steady_since(before) {
                return;
            }
            now += Duration::minutes(10);
        }
        panic!("{case}: the rotation did not settle: {:?}", self.api.log());
    }

    /// The `ca.crt` of each trust bundle, by namespace.
    fn bundles(&self) -> BTreeMap<String, String> {
        ["team-a", "team-b", "team-c"]
            .into_iter()
            .filter_map(|ns| {
                let cm: ConfigMap = self.api.get(&bundle_path(ns))?;
                Some((ns.to_string(), cm.data?.get("ca.crt")?.clone()))
            })
            .collect()
    }

    /// The certificate a CA key Secret holds.
    fn key(&self, secret: &str) -> Option<CertificateInfo> {
        let s: Secret = self.api.get(&key_path(secret))?;
        let pem = s.data?.get("tls.crt")?.0.clone();
        parse_chain(&pem, "tls.crt").ok()?.into_iter().next()
    }

    /// The names of the CA's key Secrets.
    fn key_secrets(&self) -> Vec<String> {
        self.api
            .list("/api/v1", "secrets", Some(NS))
            .into_iter()
            .filter_map(|v| v["metadata"]["name"].as_str().map(str::to_string))
            .filter(|n| n.starts_with("ca-ca"))
            .collect()
    }

    /// The CRL number of key `index`'s CRL, checked to be signed by `ca`.
    fn crl_number(&self, index: u32, ca: &CertificateInfo) -> Option<u64> {
        let path = format!(
            "/api/v1/namespaces/{NS}/configmaps/{}",
            crl::config_map_name("ca", index)
        );
        let cm: ConfigMap = self.api.get(&path)?;
        let der = cm.binary_data?.get(crl::DER_KEY)?.0.clone();
        parse_crl(&der, Some(ca)).ok()?.number
    }

    /// What every converged CA shows: Ready with its one key, bound, in
    /// exactly the selected namespaces' bundles, with a CRL it signed
    /// that its status names.
    fn assert_serving(&self, secret: &str, case: &str) -> CertificateInfo {
        let key = self
            .key(secret)
            .unwrap_or_else(|| panic!("{case}: the key Secret {secret}"));
        let ca = self.ca();
        assert_eq!(
            ca.annotations().get(meta::CA_FINGERPRINT),
            Some(&key.fingerprint),
            "{case}: bound to its key"
        );
        let status = self.status();
        assert_eq!(
            status.fingerprint.as_ref(),
            Some(&key.fingerprint),
            "{case}"
        );
        assert!(
            conditions::is_true(&status.conditions, conditions::READY),
            "{case}: Ready"
        );
        assert!(
            conditions::find(&status.conditions, "TrustBundle").is_none(),
            "{case}: every bundle published"
        );
        let bundles = self.bundles();
        assert_eq!(
            bundles.keys().map(String::as_str).collect::<Vec<_>>(),
            vec!["team-a", "team-b"],
            "{case}: the selected namespaces, and only them"
        );
        for (ns, pem) in &bundles {
            let trusted = parse_chain(pem.as_bytes(), "ca.crt").expect("ca.crt parses");
            assert_eq!(
                trusted.iter().map(|c| &c.fingerprint).collect::<Vec<_>>(),
                vec![&key.fingerprint],
                "{case}: the bundle in {ns} trusts the CA"
            );
        }
        let index = secret
            .strip_prefix("ca-ca-r")
            .map_or(0, |i| i.parse().expect("index"));
        let number = self.crl_number(index, &key);
        assert!(number.is_some(), "{case}: a CRL the key signed");
        assert_eq!(
            status.crl_number,
            number.and_then(|n| i64::try_from(n).ok()),
            "{case}: the status names it"
        );
        key
    }
}

#[test]
fn every_write_of_a_serving_pass_fails_in_turn_and_the_next_pass_finishes_it() {
    runtime().block_on(async {
        // A bundle to update (team-a), one to create (team-b), one to
        // delete (team-c, no longer selected), a CRL to publish, a status.
        let setup = || {
            let w = world(json!({}));
            put_our_bundle(&w, "team-a", "an old CA");
            put_our_bundle(&w, "team-c", "an old CA");
            w
        };
        let clean = setup();
        let before = clean.api.writes();
        clean.pass().await.expect("a clean pass");
        let writes = clean.api.writes() - before;
        assert!(
            writes >= 5,
            "delete, patch, create, CRL, status: {:?}",
            clean.api.log()
        );
        clean.assert_serving("ca-ca", "clean");
        assert_eq!(
            clean.settle("clean").await,
            1,
            "a clean pass leaves nothing to do"
        );
        for fault in FAULTS {
            for n in 1..=writes {
                let case = format!("{fault:?} at write {n}");
                let w = setup();
                w.api.fail_write(n, fault);
                let _ = w.pass().await;
                w.settle(&case).await;
                w.assert_serving("ca-ca", &case);
                assert_eq!(w.key_secrets(), vec!["ca-ca".to_string()], "{case}");
            }
        }
    });
}

#[test]
fn every_write_of_a_new_cas_pass_fails_in_turn_and_one_key_is_served() {
    runtime().block_on(async {
        let clean = fresh_world();
        let before = clean.api.writes();
        // The binding moves the CA's resourceVersion: the status written
        // at the one read conflicts, and the next pass writes it.
        clean.settle("clean").await;
        let writes = clean.api.writes() - before;
        assert!(
            writes >= 6,
            "key, binding, two bundles, CRL, status: {:?}",
            clean.api.log()
        );
        clean.assert_serving("ca-ca", "clean");
        for fault in FAULTS {
            for n in 1..=writes {
                let case = format!("{fault:?} at write {n}");
                let w = fresh_world();
                w.api.fail_write(n, fault);
                let _ = w.pass().await;
                w.settle(&case).await;
                w.assert_serving("ca-ca", &case);
                assert_eq!(
                    w.key_secrets(),
                    vec!["ca-ca".to_string()],
                    "{case}: one key"
                );
                let created = w
                    .api
                    .event_reasons()
                    .iter()
                    .filter(|r| *r == "Created")
                    .count();
                assert!(created >= 1, "{case}: said");
            }
        }
    });
}

#[test]
fn every_write_of_a_rotation_fails_in_turn_and_the_new_key_ends_up_alone() {
    runtime().block_on(async {
        let setup = || async {
            let w = world(json!({"rotation": {"overlap": "1m"}}));
            w.settle("before the rotation").await;
            let mut ca: serde_json::Value = w.api.get(CA_PATH).expect("CA");
            ca["metadata"]["annotations"][meta::ROTATE_REQUESTED_AT] = json!("r1");
            w.api.put(CA_PATH, ca);
            w
        };
        let clean = setup().await;
        let old = clean.key("ca-ca").expect("the first key");
        let before = clean.api.writes();
        clean.settle_from(Utc::now(), "clean").await;
        let writes = clean.api.writes() - before;
        assert!(
            writes >= 8,
            "start, key, bind, bundles, switch, retire, cleanup: {:?}",
            clean.api.log()
        );
        let new = clean.assert_serving("ca-ca-r1", "clean");
        assert_ne!(new.fingerprint, old.fingerprint);
        let events = clean.api.event_reasons();
        for reason in [
            "RotationStarted",
            "RotationStaged",
            "RotationSwitched",
            "RotationFinished",
        ] {
            assert!(events.contains(&reason.to_string()), "{reason}: {events:?}");
        }
        for fault in FAULTS {
            for n in 1..=writes {
                let case = format!("{fault:?} at write {n}");
                let w = setup().await;
                w.api.fail_write(n, fault);
                w.settle_from(Utc::now(), &case).await;
                w.assert_serving("ca-ca-r1", &case);
                assert_eq!(
                    w.key_secrets(),
                    vec!["ca-ca-r1".to_string()],
                    "{case}: one new key, the old one deleted"
                );
                let status = w.status();
                let rotation = status.rotation.expect("rotation status");
                assert_eq!(
                    (rotation.phase.as_str(), rotation.number),
                    ("Stable", 1),
                    "{case}"
                );
                assert_eq!(
                    w.ca()
                        .annotations()
                        .get(meta::CA_SIGNING_KEY)
                        .map(String::as_str),
                    Some("1"),
                    "{case}: the mirror follows the record"
                );
                assert_eq!(
                    w.crl_number(0, &old),
                    None,
                    "{case}: the old key's CRL is gone"
                );
            }
        }
    });
}

#[test]
fn a_ca_that_cannot_sign_says_why_once_whichever_status_write_fails() {
    runtime().block_on(async {
        for fault in FAULTS {
            let case = format!("{fault:?}");
            let w = world(json!({}));
            w.api.put(
                &key_path("ca-ca"),
                json!({"apiVersion": "v1", "kind": "Secret",
                       "metadata": {"name": "ca-ca", "namespace": NS},
                       "data": {"other": testing::b64(b"x")}}),
            );
            w.api.fail_write(1, fault);
            let _ = w.pass().await;
            w.settle(&case).await;
            let ready = conditions::find(&w.status().conditions, conditions::READY)
                .cloned()
                .expect("Ready");
            assert_eq!(
                (ready.status.as_str(), ready.reason.as_str()),
                ("False", "InvalidCASecret"),
                "{case}: {}",
                ready.message
            );
            assert!(ready.message.contains("ca-ca"), "{case}: names the Secret");
            let said = |w: &World| {
                w.api
                    .event_reasons()
                    .iter()
                    .filter(|r| *r == "InvalidCASecret")
                    .count()
            };
            let events = said(&w);
            assert!(events >= 1, "{case}: a warning Event");
            w.pass().await.expect("pass");
            assert_eq!(said(&w), events, "{case}: not one per pass");
            assert!(w.bundles().is_empty(), "{case}: nothing published");
        }
    });
}

const CTB_PATH: &str = "/apis/certificates.k8s.io/v1beta1/clustertrustbundles/certop.dev:ca:trust";

impl World {
    /// The fingerprints the CA's ClusterTrustBundle trusts, and its signer.
    fn cluster_trust_bundle(&self) -> Option<(Vec<String>, Option<String>)> {
        let b: k8s_openapi::api::certificates::v1beta1::ClusterTrustBundle =
            self.api.get(CTB_PATH)?;
        let trusted = parse_chain(b.spec.trust_bundle.as_bytes(), "trustBundle").expect("parses");
        Some((
            trusted.into_iter().map(|c| c.fingerprint).collect(),
            b.spec.signer_name,
        ))
    }
}

#[test]
fn a_ca_for_pods_keeps_its_cluster_trust_bundle_trusting_what_its_bundles_trust_through_a_rotation()
{
    runtime().block_on(async {
        let w = world(json!({"podCertificates": {}, "rotation": {"overlap": "1m"}}));
        w.settle("before the rotation").await;
        let old = w.key("ca-ca").expect("the first key");
        assert_eq!(
            w.cluster_trust_bundle(),
            Some((vec![old.fingerprint.clone()], Some("certop.dev/ca".into())))
        );
        let mut ca: serde_json::Value = w.api.get(CA_PATH).expect("CA");
        ca["metadata"]["annotations"][meta::ROTATE_REQUESTED_AT] = json!("r1");
        w.api.put(CA_PATH, ca);
        let mut now = Utc::now();
        let mut most = 0;
        for _ in 0..30 {
            let _ = w.pass_at(now).await;
            let bundle: Vec<String> = parse_chain(w.bundles()["team-a"].as_bytes(), "ca.crt")
                .expect("ca.crt")
                .into_iter()
                .map(|c| c.fingerprint)
                .collect();
            let (ctb, _) = w
                .cluster_trust_bundle()
                .expect("the ClusterTrustBundle stays");
            assert_eq!(
                ctb, bundle,
                "the ClusterTrustBundle trusts what ca.crt trusts"
            );
            most = most.max(ctb.len());
            now += Duration::minutes(10);
        }
        assert_eq!(most, 2, "both CAs trusted through the overlap");
        let new = w.assert_serving("ca-ca-r1", "after the rotation");
        assert_eq!(
            w.cluster_trust_bundle().map(|b| b.0),
            Some(vec![new.fingerprint])
        );
        // Opting out takes the bundle away.
        let mut ca: serde_json::Value = w.api.get(CA_PATH).expect("CA");
        ca["spec"]
            .as_object_mut()
            .expect("spec")
            .remove("podCertificates");
        w.api.put(CA_PATH, ca);
        w.pass().await.expect("pass");
        assert_eq!(w.cluster_trust_bundle(), None);
    });
}

#[test]
fn a_cluster_trust_bundle_certop_did_not_create_is_never_touched() {
    runtime().block_on(async {
        let w = world(json!({"podCertificates": {}}));
        let foreign = json!({"apiVersion": "certificates.k8s.io/v1beta1", "kind": "ClusterTrustBundle",
            "metadata": {"name": "certop.dev:ca:trust"},
            "spec": {"signerName": "certop.dev/ca", "trustBundle": "someone else's"}});
        w.api.put(CTB_PATH, foreign.clone());
        w.settle("with a foreign bundle").await;
        let kept: serde_json::Value = w.api.get(CTB_PATH).expect("kept");
        assert_eq!(kept["spec"], foreign["spec"]);
        let status = w.status();
        let c = conditions::find(&status.conditions, "PodCertificates").expect("condition");
        assert_eq!((c.status.as_str(), c.reason.as_str()), ("False", "ClusterTrustBundleConflict"));
        assert!(!w.api.log().iter().any(|l| l.contains("clustertrustbundles")));
    });
}
