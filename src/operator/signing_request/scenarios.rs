//! The CSR controller against the in-memory API server: what it approves,
//! denies, leaves and signs, for whom (SubjectAccessReviews answered from
//! grants), and that a pass whose write fails is finished by the next one
//! with a certificate that is in the CA's ledger.

use std::sync::Arc;

use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::ResourceExt;
use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, SanType};
use serde_json::json;

use super::CsrPolicy;
use crate::api::{CertificateAuthority, meta};
use crate::core::csr::{KUBELET_CLIENT_SIGNER, KUBELET_SERVING_SIGNER};
use crate::operator::runtime::managed_namespaces::ManagedNamespaces;
use crate::operator::testing::fake_api::{FakeApi, Fault};
use crate::operator::testing::{self, NS, Writers, runtime};
use crate::operator::{Context, store::ledger_store};
use crate::pki::{Authority, parse_chain};

const CSR_PREFIX: &str = "/apis/certificates.k8s.io/v1";

struct World {
    api: FakeApi,
    ctx: Arc<Context>,
    authority: Authority,
    writers: std::sync::Mutex<Writers>,
}

/// A Ready CA `ca` that also signs (and approves) kubelet CSRs.
fn world(ca_spec: serde_json::Value) -> World {
    let api = FakeApi::new(&[NS]);
    let authority = testing::put_ready_ca(&api, "ca", ca_spec);
    let policy = CsrPolicy {
        max_lifetime: chrono::Duration::hours(24),
        kubelet_ca: Some("ca".into()),
        approve_kubelets: true,
        kubelet_serving: Default::default(),
    };
    let (ctx, writers) = testing::context(&api, policy, ManagedNamespaces::All);
    let w = World {
        api,
        ctx,
        authority,
        writers: std::sync::Mutex::new(writers),
    };
    w.sync();
    w
}

/// A PEM request for `cn` (organization `org`) with DNS names.
fn request(cn: &str, org: Option<&str>, dns: &[&str]) -> String {
    let key = KeyPair::generate().expect("key");
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    if let Some(o) = org {
        dn.push(DnType::OrganizationName, o);
    }
    dn.push(DnType::CommonName, cn);
    params.distinguished_name = dn;
    for d in dns {
        params
            .subject_alt_names
            .push(SanType::DnsName((*d).try_into().expect("ia5")));
    }
    params
        .serialize_request(&key)
        .expect("csr")
        .pem()
        .expect("pem")
}

fn b64(text: &str) -> String {
    testing::b64(text.as_bytes())
}

impl World {
    fn sync(&self) {
        let mut w = self.writers.lock().expect("writers");
        let cas: Vec<CertificateAuthority> =
            testing::all(&self.api, "/apis/certop.dev/v1", "certificateauthorities");
        testing::init(&mut w.cas, cas);
        let policies = testing::all(&self.api, "/apis/certop.dev/v1", "certificatepolicies");
        testing::init(&mut w.policies, policies);
    }

    /// Puts the CSR `name` from `requester` (user, groups), for `signer`.
    fn put_csr(
        &self,
        name: &str,
        signer: &str,
        (user, groups): (&str, &[&str]),
        usages: &[&str],
        pem: &str,
        approved: bool,
    ) {
        let conditions = if approved {
            json!([{"type": "Approved", "status": "True", "reason": "ByHand", "message": "ok"}])
        } else {
            json!([])
        };
        self.api.put(
            &format!("{CSR_PREFIX}/certificatesigningrequests/{name}"),
            json!({"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
                   "metadata": {"name": name},
                   "spec": {"signerName": signer, "username": user, "groups": groups,
                            "usages": usages, "request": b64(pem)},
                   "status": {"conditions": conditions}}),
        );
    }

    fn csr(&self, name: &str) -> CertificateSigningRequest {
        self.api
            .get(&format!("{CSR_PREFIX}/certificatesigningrequests/{name}"))
            .expect("the CSR exists")
    }

    async fn pass(&self, name: &str) -> Result<(), crate::operator::Error> {
        self.sync();
        super::reconcile(Arc::new(self.csr(name)), self.ctx.clone())
            .await
            .map(|_| ())
    }

    /// Passes until one succeeds and writes nothing; how many it took.
    async fn settle(&self, name: &str) -> usize {
        for n in 1..=6 {
            let before = self.api.writes();
            if self.pass(name).await.is_ok() && self.api.writes() == before {
                return n;
            }
        }
        panic!("the CSR did not settle: {:?}", self.api.log());
    }

    /// The True condition types of the CSR, with their reasons.
    fn conditions(&self, name: &str) -> Vec<(String, String)> {
        self.csr(name)
            .status
            .and_then(|s| s.conditions)
            .unwrap_or_default()
            .into_iter()
            .filter(|c| c.status == "True")
            .map(|c| (c.type_, c.reason.unwrap_or_default()))
            .collect()
    }

    /// The serial of the certificate handed out, after checking it chains
    /// to the CA.
    fn issued_serial(&self, name: &str) -> Option<String> {
        let pem = self.csr(name).status?.certificate?;
        let chain = parse_chain(&pem.0, "status.certificate").expect("a certificate");
        assert!(chain[0].is_issued_by(self.authority.certificate()));
        Some(chain[0].serial.to_string())
    }

    fn ledger_serials(&self) -> Vec<String> {
        self.api
            .list("/api/v1", "configmaps", Some(NS))
            .into_iter()
            .filter_map(|v| serde_json::from_value::<ConfigMap>(v).ok())
            .filter(|cm| cm.labels().contains_key(meta::LEDGER))
            .flat_map(|cm| ledger_store::entries_of(&cm).expect("ledger parses"))
            .map(|e| e.serial)
            .collect()
    }
}

const CLIENT_USAGES: &[&str] = &["digital signature", "client auth"];
const SERVING_USAGES: &[&str] = &["digital signature", "server auth"];

#[test]
fn a_csr_for_a_signer_certop_does_not_serve_is_never_touched() {
    runtime().block_on(async {
        let w = world(json!({}));
        let pem = request("app", None, &[]);
        w.put_csr(
            "other",
            "example.com/signer",
            ("alice", &[]),
            CLIENT_USAGES,
            &pem,
            true,
        );
        let (reads, writes) = (w.api.reads(), w.api.writes());
        w.pass("other").await.expect("pass");
        assert_eq!((w.api.reads(), w.api.writes()), (reads, writes));
        assert_eq!(w.csr("other").status.and_then(|s| s.certificate), None);
    });
}

#[test]
fn a_kubelet_client_csr_is_approved_only_when_the_requester_may_ask_for_it() {
    runtime().block_on(async {
        let w = world(json!({}));
        let pem = request("system:node:n1", Some("system:nodes"), &[]);
        let node = (
            "system:node:n1",
            &["system:nodes", "system:authenticated"][..],
        );
        w.put_csr(
            "n1",
            KUBELET_CLIENT_SIGNER,
            node,
            CLIENT_USAGES,
            &pem,
            false,
        );
        let writes = w.api.writes();
        w.pass("n1").await.expect("pass");
        assert_eq!(
            w.api.writes(),
            writes,
            "no SubjectAccessReview allows it: left, no write"
        );
        assert!(w.conditions("n1").is_empty());

        w.api.grant(
            "system:nodes",
            "create certificatesigningrequests/selfnodeclient",
        );
        w.pass("n1").await.expect("pass");
        assert_eq!(
            w.conditions("n1"),
            vec![("Approved".to_string(), "CertopKubeletApprove".to_string())]
        );
        w.settle("n1").await;
        let serial = w.issued_serial("n1").expect("signed once approved");
        assert_eq!(w.ledger_serials(), vec![serial]);
    });
}

#[test]
fn a_node_asking_for_another_nodes_identity_is_denied_and_never_signed() {
    runtime().block_on(async {
        let w = world(json!({}));
        w.api.grant(
            "system:nodes",
            "create certificatesigningrequests/selfnodeclient",
        );
        let pem = request("system:node:n2", Some("system:nodes"), &[]);
        w.put_csr(
            "n1",
            KUBELET_CLIENT_SIGNER,
            ("system:node:n1", &["system:nodes"]),
            CLIENT_USAGES,
            &pem,
            false,
        );
        w.settle("n1").await;
        assert_eq!(
            w.conditions("n1"),
            vec![("Denied".to_string(), "CertopKubeletDeny".to_string())]
        );
        assert_eq!(w.issued_serial("n1"), None);
        assert!(w.ledger_serials().is_empty());
    });
}

#[test]
fn a_serving_name_of_another_node_is_denied_and_an_unprovable_one_waits_for_a_person() {
    runtime().block_on(async {
        let w = world(json!({}));
        w.api.put(
            "/api/v1/nodes/n2",
            json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n2"},
                   "status": {"addresses": [{"type": "Hostname", "address": "n2"}]}}),
        );
        let node = ("system:node:n1", &["system:nodes"][..]);
        let theirs = request("system:node:n1", Some("system:nodes"), &["n1", "n2"]);
        w.put_csr(
            "theirs",
            KUBELET_SERVING_SIGNER,
            node,
            SERVING_USAGES,
            &theirs,
            false,
        );
        w.settle("theirs").await;
        assert_eq!(
            w.conditions("theirs"),
            vec![("Denied".to_string(), "CertopKubeletDeny".to_string())]
        );

        let unproven = request(
            "system:node:n1",
            Some("system:nodes"),
            &["n1", "web.example.com"],
        );
        w.put_csr(
            "unproven",
            KUBELET_SERVING_SIGNER,
            node,
            SERVING_USAGES,
            &unproven,
            false,
        );
        let writes = w.api.writes();
        w.settle("unproven").await;
        assert_eq!(w.api.writes(), writes, "left pending: no write");
        assert!(w.conditions("unproven").is_empty());
        assert!(
            w.api
                .event_reasons()
                .contains(&"PendingApproval".to_string())
        );

        let own = request("system:node:n1", Some("system:nodes"), &["n1"]);
        w.put_csr(
            "own",
            KUBELET_SERVING_SIGNER,
            node,
            SERVING_USAGES,
            &own,
            false,
        );
        w.settle("own").await;
        assert!(
            w.issued_serial("own").is_some(),
            "its own name: approved and signed"
        );
    });
}

#[test]
fn an_approved_csr_certop_cannot_sign_fails_once_with_the_reason_that_says_why() {
    runtime().block_on(async {
        let cases: [(&str, serde_json::Value, &str, String, &str); 4] = [
            (
                "no such CA",
                json!({}),
                "certop.dev/missing",
                request("app", None, &[]),
                "SignerUnknown",
            ),
            (
                "not a request",
                json!({}),
                "certop.dev/ca",
                "not a CSR".into(),
                "BadRequest",
            ),
            (
                "a privileged group",
                json!({}),
                "certop.dev/ca",
                request("eve", Some("system:masters"), &[]),
                "PolicyViolation",
            ),
            (
                "no policy names a governed CA",
                json!({"requirePolicy": true}),
                "certop.dev/ca",
                request("app", None, &[]),
                "PolicyViolation",
            ),
        ];
        for (case, ca_spec, signer, pem, reason) in cases {
            let w = world(ca_spec);
            w.put_csr("c", signer, ("alice", &[]), CLIENT_USAGES, &pem, true);
            w.settle("c").await;
            let conditions = w.conditions("c");
            assert!(
                conditions.contains(&("Failed".to_string(), reason.to_string())),
                "{case}: {conditions:?}"
            );
            assert_eq!(w.issued_serial("c"), None, "{case}");
            assert!(w.ledger_serials().is_empty(), "{case}: nothing recorded");
            let writes = w.api.writes();
            w.pass("c").await.expect("pass");
            assert_eq!(w.api.writes(), writes, "{case}: failed once, for good");
        }
    });
}

#[test]
fn every_write_of_signing_fails_in_turn_and_the_csr_ends_signed_and_recorded() {
    runtime().block_on(async {
        for fault in [Fault::Status(500), Fault::Status(409), Fault::Drop] {
            for n in 1..=2 {
                let case = format!("write {n} fails with {fault:?}");
                let w = world(json!({}));
                let pem = request("app", None, &["app.example.com"]);
                w.put_csr(
                    "c",
                    "certop.dev/ca",
                    ("alice", &[]),
                    CLIENT_USAGES,
                    &pem,
                    true,
                );
                w.api.fail_write(n, fault);
                // A conflict on the ledger is retried within the pass.
                let _ = w.pass("c").await;
                w.settle("c").await;
                let serial = w.issued_serial("c").expect("signed in the end");
                let ledger = w.ledger_serials();
                assert!(
                    ledger.contains(&serial),
                    "{case}: the certificate handed out is recorded"
                );
                assert!(
                    ledger.len() <= 2,
                    "{case}: at most one unused entry per failed hand-out: {ledger:?}"
                );
            }
        }
    });
}

/// Attack (review of the CSR rewrite; the old controller did the same):
/// the CSR controller signs with any CA whose key loads, Ready or not.
/// A second CertificateAuthority `b` naming CA `ca`'s key Secret is
/// refused by the CA controller (CAKeyInUse: "two CAs never share a key,
/// policies are per CA") and so never bound; yet an approved CSR for
/// `certop.dev/b` is signed with `ca`'s key under `b`'s rules (none),
/// around `ca`'s requirePolicy. The certificate controller waits for a
/// Ready CA; the CSR controller must too.
#[test]
fn a_csr_is_never_signed_by_a_ca_its_controller_refuses() {
    runtime().block_on(async {
        let w = world(json!({"requirePolicy": true}));
        w.api.put(
            "/apis/certop.dev/v1/certificateauthorities/b",
            json!({"apiVersion": "certop.dev/v1", "kind": "CertificateAuthority",
                   "metadata": {"name": "b"},
                   "spec": {"subject": {"commonName": "b"}, "keySource": {"secretName": "ca-ca"}},
                   "status": {"conditions": [{"type": "Ready", "status": "False", "reason": "CAKeyInUse",
                       "message": "Secret certop-system/ca-ca holds the key of CertificateAuthority ca",
                       "lastTransitionTime": "2026-01-01T00:00:00Z"}]}}),
        );
        let pem = request("app", None, &["app.example.com"]);
        // Under `ca` itself: refused, nothing governs it.
        w.put_csr("direct", "certop.dev/ca", ("alice", &[]), CLIENT_USAGES, &pem, true);
        w.settle("direct").await;
        assert_eq!(w.issued_serial("direct"), None, "ca signs only under a policy");
        w.put_csr("around", "certop.dev/b", ("alice", &[]), CLIENT_USAGES, &pem, true);
        for _ in 0..3 {
            let _ = w.pass("around").await;
        }
        let signed = w.csr("around").status.and_then(|s| s.certificate);
        assert!(
            signed.is_none(),
            "signed with ca's key through the CA b that its controller refuses"
        );
    });
}

/// Attack (review of revocation by workload identity): a CSR whose
/// certificate a revocation covers the moment it is recorded (one whose
/// issuedBefore is still to come, here by organization) was handed out
/// anyway, revoked, while a ClusterCertificate or a pod in that case gets
/// none. A relying party that reads no CRL would take it. It fails with
/// reason Revoked, and what was signed stays revoked in the ledger.
#[test]
fn a_csr_a_revocation_covers_for_good_is_not_handed_out() {
    runtime().block_on(async {
        let w = world(json!({}));
        let rev: crate::api::CertificateRevocation = serde_json::from_value(json!({
            "apiVersion": "certop.dev/v1", "kind": "CertificateRevocation",
            "metadata": {"name": "team", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"issuerRef": {"name": "ca"}, "organizations": ["team"],
                     "issuedBefore": "2100-01-01T00:00:00Z"}}))
        .expect("revocation");
        testing::init(
            &mut w.writers.lock().expect("writers").revocations,
            vec![rev],
        );
        let pem = request("app", Some("team"), &[]);
        w.put_csr(
            "c",
            "certop.dev/ca",
            ("alice", &[]),
            CLIENT_USAGES,
            &pem,
            true,
        );
        w.settle("c").await;
        assert_eq!(
            w.issued_serial("c"),
            None,
            "a revoked certificate handed out"
        );
        let conditions = w.conditions("c");
        assert!(
            conditions.contains(&("Failed".to_string(), "Revoked".to_string())),
            "{conditions:?}"
        );
        assert_eq!(w.ledger_serials().len(), 1, "what was signed is recorded");
    });
}
