//! Revocation enforced for kubelets, with a real kubelet
//! (tests/integration/kubelet.rs) joined by TLS bootstrap to a control
//! plane whose kube-apiserver asks certop's webhook first:
//!
//! - the kubelet's client certificate, signed through certop's kubelet
//!   approver and signer, revoked with `kubectl certop revoke --cert`:
//!   kube-apiserver refuses the node's requests (its lease renewals too)
//!   and a CSR made with that certificate, so it cannot renew itself;
//! - kube-apiserver's own client certificate for kubelets
//!   (`apiserver-kubelet-client`) revoked: the kubelet, which asks
//!   kube-apiserver (SubjectAccessReview) about every request to its API,
//!   refuses `nodes/proxy` calls (`kubectl logs`, `exec`, ...) once its
//!   decision cache lets the new answer through.

use std::path::Path;
use std::time::{Duration, Instant};

use k8s_openapi::api::certificates::v1::CertificateSigningRequest;

use crate::csr::{condition_of, csr_pem, csr_yaml};
use crate::kubelet::{
    DecisionCache, Kubelet, adopt_kubelet_ca, allow_kubelet_bootstrap, kubelet_signer_args,
};
use crate::objects::{cert_yaml, get, kubeconfig_of_files, kubectl_with};
use crate::support::{
    ControlPlane, configure_certop_webhook, free_port, http_get, issue_offline, offline_ca,
    start_control_plane_trusting, stderr, stdout, unique, wait_for,
};

/// The CertificateAuthority of the cluster's node identities.
const CA: &str = "nodes";

/// Polls `check` every 200 ms for up to `timeout`; the time it took to
/// hold, or None.
fn time_until(timeout: Duration, check: impl FnMut() -> bool) -> Option<Duration> {
    let started = Instant::now();
    wait_for(timeout, check).then(|| started.elapsed())
}

/// The CSRs kube-apiserver recorded as made by `user`.
fn csrs_by(cp: &ControlPlane, user: &str) -> Vec<CertificateSigningRequest> {
    let out = cp.kubectl(&["get", "csr", "-o", "json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let list: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("CSR list");
    list["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|c| serde_json::from_value::<CertificateSigningRequest>(c.clone()).expect("CSR"))
        .filter(|c| c.spec.username.as_deref() == Some(user))
        .collect()
}

/// A CSR for the node's client certificate, as the kubelet makes when it
/// renews, created with `kubeconfig`'s credentials.
fn create_renewal_csr(kubeconfig: &Path, node: &str, name: &str) -> std::process::Output {
    let file = kubeconfig.with_file_name(format!("{name}.yaml"));
    std::fs::write(
        &file,
        csr_yaml(
            name,
            "kubernetes.io/kube-apiserver-client-kubelet",
            &csr_pem(&format!("system:node:{node}"), &["system:nodes"], &[], &[]),
            &["digital signature", "client auth"],
            None,
        ),
    )
    .expect("write");
    // Without client-side validation: it downloads the OpenAPI schema,
    // which a revoked certificate may not, and would hide the answer to
    // the create itself.
    kubectl_with(
        kubeconfig,
        &[
            "create",
            "--validate=false",
            "-f",
            file.to_str().expect("utf-8"),
        ],
    )
}

#[test]
fn revoked_kubelet_certificates_are_refused_by_kube_apiserver_and_by_the_kubelet() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The cluster CA, made offline and adopted (kubeadm's ca.crt): it signs
    // the kubelets' client certificates (certop's kubelet signer),
    // kube-apiserver's client certificate for kubelets and certop's
    // webhook serving certificate.
    let ca_dir = offline_ca(dir.path(), "nodes CA");
    // apiserver-kubelet-client issued offline, as `certop pki init` does.
    let client_dir = issue_offline(
        &ca_dir,
        dir.path(),
        "apiserver-kubelet-client",
        &cert_yaml(
            "apiserver-kubelet-client",
            CA,
            "default",
            "  profile: kube-apiserver-kubelet-client\n",
        ),
    );
    let (client_crt, client_key) = (client_dir.join("tls.crt"), client_dir.join("tls.key"));
    let (cp, authz_file) = start_control_plane_trusting(
        &ca_dir,
        dir.path(),
        &[
            "--enable-bootstrap-token-auth=true".to_string(),
            format!("--kubelet-client-certificate={}", client_crt.display()),
            format!("--kubelet-client-key={}", client_key.display()),
            "--kubelet-preferred-address-types=InternalIP".to_string(),
        ],
    );
    cp.install_rbac();
    adopt_kubelet_ca(&cp, CA, &ca_dir);
    allow_kubelet_bootstrap(&cp);
    // kubeadm's binding: kube-apiserver calls kubelets as this user.
    let bound = cp.kubectl(&[
        "create",
        "clusterrolebinding",
        "kubeadm:apiserver-kubelet-client",
        "--clusterrole=system:kubelet-api-admin",
        "--user=kube-apiserver-kubelet-client",
    ]);
    assert!(bound.status.success(), "{}", stderr(&bound));
    let port = free_port();
    let [signer_ca, approve] = kubelet_signer_args(CA);
    let op = cp.start_operator(
        "kubelets",
        &[
            &signer_ca,
            &approve,
            &format!("--authz-addr=127.0.0.1:{port}"),
            &format!("--authz-ca={CA}"),
        ],
    );
    configure_certop_webhook(&cp, &authz_file, CA, port, "NoOpinion");
    let apiserver_client = kubeconfig_of_files(
        &cp,
        "apiserver-kubelet-client",
        &client_crt,
        &client_key,
        dir.path(),
    );
    let consulted = wait_for(Duration::from_secs(90), || {
        kubectl_with(&apiserver_client, &["get", "nodes"])
            .status
            .success()
            && cp.webhook_evaluations() > 0
    });
    assert!(
        consulted,
        "kube-apiserver never asked certop's webhook; the operator's log:\n{}",
        op.log_text()
    );

    // certop signs a kubelet's CSR once the CA is Ready (a CSR approved
    // before waits for the signer's next retry, 10 s later).
    let ready = cp.kubectl(&[
        "wait",
        "--for=condition=Ready",
        "--timeout=60s",
        &format!("certificateauthority/{CA}"),
    ]);
    assert!(ready.status.success(), "{}", stderr(&ready));

    // The kubelet joins: bootstrap token, then a client certificate that
    // certop's approver approves and its kubelet signer signs. Its
    // decisions about callers of its API are cached for a second (the
    // default caches an allowed caller for 5 minutes).
    let node = unique("node");
    let kubelet = Kubelet::start(
        &cp,
        &dir.path().join("kubelet"),
        &node,
        &ca_dir.join("ca.crt"),
        &DecisionCache {
            authorized_ttl: "1s",
            unauthorized_ttl: "1s",
        },
        &[],
    );
    let joined = kubelet.wait_joined(&cp, &node, &op);
    eprintln!("the kubelet bootstrapped and registered Node {node} in {joined:?}");
    let bootstrap_csrs = csrs_by(&cp, "system:bootstrap:kubele");
    assert_eq!(bootstrap_csrs.len(), 1, "{bootstrap_csrs:?}");
    let (reason, _) = condition_of(&bootstrap_csrs[0], "Approved").expect("approved");
    assert_eq!(
        reason, "CertopKubeletApprove",
        "certop's approver approved it"
    );
    let pem = std::fs::read(kubelet.client_certificate()).expect("read");
    let client = certop::pki::parse_pem_certificate(&pem, "kubelet-client-current.pem")
        .expect("the kubelet's client certificate");
    assert_eq!(
        client.common_name.as_deref(),
        Some(format!("system:node:{node}").as_str())
    );
    let issued = bootstrap_csrs[0]
        .status
        .as_ref()
        .and_then(|s| s.certificate.as_ref())
        .expect("signed");
    assert_eq!(
        certop::pki::parse_pem_certificate(&issued.0, "CSR")
            .expect("parse")
            .sha256_hex(),
        client.sha256_hex(),
        "the kubelet holds what certop signed"
    );

    // kube-apiserver reaches the kubelet's API with its
    // apiserver-kubelet-client certificate; the kubelet asks it whether
    // that user may (nodes/proxy).
    let healthz = format!("/api/v1/nodes/{node}/proxy/healthz");
    let proxied = || cp.kubectl(&["get", "--raw", &healthz]);
    let serving = wait_for(Duration::from_secs(60), || stdout(&proxied()) == "ok");
    assert!(
        serving,
        "kube-apiserver cannot reach the kubelet: {}\nthe kubelet's log:\n{}",
        stderr(&proxied()),
        kubelet.log_tail()
    );

    // apiserver-kubelet-client revoked: the kubelet refuses it, and so
    // does kube-apiserver.
    let revoked = cp.kubectl_certop(&[
        "revoke",
        "--cert",
        client_crt.to_str().expect("utf-8"),
        "--ca",
        CA,
        "--reason",
        "keyCompromise",
    ]);
    assert!(revoked.status.success(), "{}", stderr(&revoked));
    let mut refusal = String::new();
    let took = time_until(Duration::from_secs(30), || {
        let out = proxied();
        refusal = stderr(&out);
        !out.status.success()
    });
    let took = took.unwrap_or_else(|| {
        panic!(
            "the kubelet still serves a revoked apiserver-kubelet-client; its log:\n{}",
            kubelet.log_tail()
        )
    });
    eprintln!(
        "the kubelet refused the revoked apiserver-kubelet-client {took:?} after kubectl certop revoke"
    );
    assert!(
        refusal.contains("Forbidden") && refusal.contains("user=kube-apiserver-kubelet-client"),
        "the kubelet's 403, not another failure: {refusal}"
    );
    let direct = kubectl_with(&apiserver_client, &["get", "nodes"]);
    assert!(
        !direct.status.success() && stderr(&direct).contains("certop"),
        "kube-apiserver refuses it too: {}",
        stderr(&direct)
    );

    // The kubelet's own client certificate, in the kubeconfig it
    // wrote after bootstrap.
    let get_node = || kubectl_with(&kubelet.kubeconfig, &["get", "node", &node, "-o", "name"]);
    assert!(get_node().status.success(), "{}", stderr(&get_node()));
    let renew_time = || {
        stdout(&cp.kubectl(&[
            "get",
            "lease",
            "-n",
            "kube-node-lease",
            &node,
            "-o",
            "jsonpath={.spec.renewTime}",
        ]))
    };
    // Its heartbeat works: its lease is created, then renewed.
    let mut first = String::new();
    assert!(
        wait_for(Duration::from_secs(30), || {
            let now = renew_time();
            if first.is_empty() {
                first = now;
                return false;
            }
            !now.is_empty() && now != first
        }),
        "the kubelet does not renew its lease (renewTime {first:?}); its log:\n{}",
        kubelet.log_tail()
    );
    // Before revocation, it may ask for its successor, which certop
    // approves and signs (what the kubelet's rotation does).
    let before = unique("renewal-before");
    let out = create_renewal_csr(&kubelet.kubeconfig, &node, &before);
    assert!(out.status.success(), "{}", stderr(&out));
    let signed = wait_for(Duration::from_secs(40), || {
        get::<CertificateSigningRequest>(&cp, &["csr", &before])
            .and_then(|c| c.status?.certificate)
            .is_some()
    });
    assert!(
        signed,
        "a renewal by the unrevoked kubelet is signed; the operator's log:\n{}",
        op.log_text()
    );

    let revoked = cp.kubectl_certop(&[
        "revoke",
        "--cert",
        kubelet.client_certificate().to_str().expect("utf-8"),
        "--ca",
        CA,
        "--reason",
        "keyCompromise",
    ]);
    assert!(revoked.status.success(), "{}", stderr(&revoked));
    let started = Instant::now();
    let mut refusal = String::new();
    let refused = wait_for(Duration::from_secs(30), || {
        let out = get_node();
        refusal = stderr(&out);
        !out.status.success()
    });
    assert!(
        refused,
        "the revoked kubelet certificate still works; the operator's log:\n{}",
        op.log_text()
    );
    eprintln!(
        "kube-apiserver refused the revoked kubelet client certificate {:?} after kubectl certop revoke",
        started.elapsed()
    );
    assert!(
        refusal.contains("Forbidden")
            && refusal.contains("certop")
            && refusal.contains("revoked")
            && refusal.contains("keyCompromise"),
        "a 403 with certop's reason: {refusal}"
    );
    // The kubelet's own requests get the same answer: its heartbeat (the
    // lease it renews every 2 s) stops.
    let mut seen = String::new();
    let refused_kubelet = wait_for(Duration::from_secs(30), || {
        let log = kubelet.log_text();
        let line = log
            .lines()
            .find(|l| l.contains("leases.coordination.k8s.io") && l.contains("certop"));
        line.map(|l| seen = l.to_string()).is_some()
    });
    assert!(
        refused_kubelet,
        "the kubelet's own requests are not refused; its log:\n{}",
        kubelet.log_tail()
    );
    eprintln!(
        "the kubelet's own requests were refused {:?} after kubectl certop revoke: {seen}",
        started.elapsed()
    );
    // It cannot renew with the revoked certificate: kube-apiserver (certop's
    // webhook) refuses the CSR, so there is nothing for an approver to see.
    let after = unique("renewal-after");
    let out = create_renewal_csr(&kubelet.kubeconfig, &node, &after);
    assert!(
        !out.status.success() && stderr(&out).contains("certop: the client certificate"),
        "a revoked kubelet certificate created a CSR: {}{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(get::<CertificateSigningRequest>(&cp, &["csr", &after]).is_none());

    let metrics = http_get(&op.metrics_url).unwrap_or_default();
    assert!(
        metrics.contains("certop_authz_reviews_total{verdict=\"denied\"}"),
        "the webhook counts its refusals: {metrics}"
    );
}
