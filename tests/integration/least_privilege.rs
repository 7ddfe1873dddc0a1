//! The operator as the ServiceAccount of the shipped manifests (the chart
//! with its default values), on a control plane of its own: it issues
//! into a managed namespace, publishes a trust bundle there, deletes its
//! own Secret, and refuses a namespace it does not manage with a reason
//! instead of failing on a 403 at every retry.

use certop::api::{CertificateAuthority, ClusterCertificate};
use k8s_openapi::api::core::v1::ConfigMap;
use serde_json::Value;

use crate::objects::{WAIT, apply, ca_yaml, cert_yaml, get, secret};
use crate::support::{ControlPlane, Operator, repo_root, start_control_plane, stderr, wait_for};

/// The `--managed-namespaces` flag manifests/deployment.yaml runs with.
fn shipped_managed_namespaces() -> String {
    let text = std::fs::read_to_string(repo_root().join("manifests/deployment.yaml"))
        .expect("manifests/deployment.yaml");
    let deployment: Value = text
        .split("\n---")
        .filter_map(|d| serde_saphyr::from_str::<Value>(d).ok())
        .find(|v| v["kind"] == "Deployment")
        .expect("a Deployment");
    deployment["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .expect("args")
        .iter()
        .filter_map(Value::as_str)
        .find(|a| a.starts_with("--managed-namespaces="))
        .expect("the manifests bound the managed namespaces")
        .to_string()
}

fn ready_reason(cp: &ControlPlane, name: &str) -> Option<(String, String, String)> {
    get::<ClusterCertificate>(cp, &["clustercertificate", name])?
        .status?
        .conditions
        .into_iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| (c.status, c.reason, c.message))
}

fn ca_condition(cp: &ControlPlane, ca: &str, type_: &str) -> Option<(String, String, String)> {
    get::<CertificateAuthority>(cp, &["certificateauthority", ca])?
        .status?
        .conditions
        .into_iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status, c.reason, c.message))
}

fn tail(op: &Operator) -> String {
    let text = op.log_text();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

#[test]
fn the_shipped_least_privilege_rbac_issues_and_publishes_in_managed_namespaces_only() {
    let cp = start_control_plane(&[]);
    cp.install_rbac_from("manifests/rbac.yaml");
    let flag = shipped_managed_namespaces();
    assert_eq!(flag, "--managed-namespaces=default,kube-system");
    let op = cp.start_operator("least-privilege", &[&flag]);
    let (managed, unmanaged) = ("default", "team-a");
    assert!(
        cp.kubectl(&["create", "namespace", unmanaged])
            .status
            .success()
    );
    for ns in [managed, unmanaged] {
        let out = cp.kubectl(&["label", "namespace", ns, "certop-test=bundle"]);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    apply(
        &cp,
        &ca_yaml(
            "lp",
            "  trustBundle:\n    namespaceSelector:\n      matchLabels:\n        certop-test: bundle\n",
        ),
    );
    apply(
        &cp,
        &cert_yaml("lp-web", "lp", managed, "  dnsNames: [web.example.com]\n"),
    );
    apply(
        &cp,
        &cert_yaml(
            "lp-team",
            "lp",
            unmanaged,
            "  dnsNames: [team.example.com]\n",
        ),
    );

    // A managed namespace: the Secret is written, the trust bundle published.
    let ok = wait_for(WAIT, || {
        ready_reason(&cp, "lp-web").is_some_and(|(s, _, _)| s == "True")
    });
    assert!(ok, "{:?}\n{}", ready_reason(&cp, "lp-web"), tail(&op));
    assert!(
        secret(&cp, managed, "lp-web").is_some(),
        "the Secret is in {managed}"
    );
    let bundle = wait_for(WAIT, || {
        get::<ConfigMap>(&cp, &["configmap", "-n", managed, "lp-ca"]).is_some()
    });
    assert!(bundle, "no trust bundle in {managed}\n{}", tail(&op));

    // Another namespace: refused by name, nothing written there.
    let refused = wait_for(WAIT, || {
        ready_reason(&cp, "lp-team").is_some_and(|(_, r, _)| r == "NamespaceNotManaged")
    });
    assert!(refused, "{:?}\n{}", ready_reason(&cp, "lp-team"), tail(&op));
    let (_, _, message) = ready_reason(&cp, "lp-team").expect("Ready");
    assert!(message.contains("managedNamespaces"), "{message}");
    assert!(secret(&cp, unmanaged, "lp-team").is_none());
    let reported = wait_for(WAIT, || {
        ca_condition(&cp, "lp", "TrustBundle")
            .is_some_and(|(_, r, m)| r == "NamespaceNotManaged" && m.contains(unmanaged))
    });
    assert!(reported, "{:?}", ca_condition(&cp, "lp", "TrustBundle"));
    assert!(get::<ConfigMap>(&cp, &["configmap", "-n", unmanaged, "lp-ca"]).is_none());
    assert!(
        !op.log_text().contains("forbidden"),
        "no request was refused:\n{}",
        tail(&op)
    );

    // Its own Secret goes with the certificate, and its bundle with the CA.
    let out = cp.kubectl(&["delete", "clustercertificate", "lp-web", "--wait=true"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        wait_for(WAIT, || secret(&cp, managed, "lp-web").is_none()),
        "the Secret was not deleted\n{}",
        tail(&op)
    );
    let out = cp.kubectl(&["delete", "certificateauthority", "lp", "--wait=true"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        wait_for(WAIT, || get::<ConfigMap>(
            &cp,
            &["configmap", "-n", managed, "lp-ca"]
        )
        .is_none()),
        "the trust bundle was not removed\n{}",
        tail(&op)
    );
}
