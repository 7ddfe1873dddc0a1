//! Revocation on a node set up by certop's own commands: kube-apiserver
//! runs on the files of `certop pki init`, with the AuthorizationConfiguration
//! that `pki init --authz-server` wrote into the node layout, so a revoked
//! admin.conf is refused by certop's webhook; and the commands of the
//! `certop-renew.service` that `certop pki systemd-units` wrote, run as
//! systemd would run them, renew the node's expired files and bring the
//! CA's CRL (the one etcd reads with --client-crl-file) to the node.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use certop::pki::{Authority, PrivateKey, issue, parse_crl, parse_pem_certificate};
use chrono::Utc;

use crate::objects::{
    allowed, apply, cert_yaml, create_ca_secret, data, get, kubectl_with, refusal, secret,
    wait_ready,
};
use crate::support::{free_port, start_control_plane_with, stderr, stdout, wait_for};

fn certop(args: &[&str], kubeconfig: Option<&Path>) -> String {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_certop"));
    if let Some(k) = kubeconfig {
        cmd.env("KUBECONFIG", k);
    }
    let out = cmd.args(args).output().expect("run certop");
    assert!(out.status.success(), "certop {args:?}: {}", stderr(&out));
    stdout(&out)
}

fn utf8(p: &Path) -> &str {
    p.to_str().expect("utf-8")
}

/// The commands of a unit's `ExecStart=` lines, split as systemd splits
/// these (words without quotes: the test's paths have no spaces).
fn exec_starts(unit: &str) -> Vec<Vec<String>> {
    unit.lines()
        .filter_map(|l| l.strip_prefix("ExecStart="))
        .map(|l| {
            assert!(
                !l.contains(['"', '\'', '%', '$']),
                "a line this test cannot split: {l}"
            );
            l.split_whitespace().map(str::to_string).collect()
        })
        .collect()
}

/// Runs each `ExecStart=` of the unit in order, as a oneshot service
/// does: the first failure ends the run. Returns what each printed.
fn run_service(unit: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(unit).expect("read the unit");
    let mut printed = Vec::new();
    for words in exec_starts(&text) {
        let out = Command::new(&words[0])
            .args(&words[1..])
            .current_dir("/")
            .env_clear()
            .output()
            .expect("run an ExecStart command");
        assert!(
            out.status.success(),
            "{words:?} failed: {}{}",
            stdout(&out),
            stderr(&out)
        );
        printed.push(stdout(&out));
    }
    printed
}

#[test]
fn a_node_set_up_by_certop_refuses_a_revoked_admin_conf_and_its_service_brings_the_crl() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path();
    let pki = root.join("pki");
    let (api_port, webhook_port) = (free_port(), free_port());
    let printed = certop(
        &[
            "pki",
            "init",
            "--dir",
            utf8(&pki),
            "--node-name",
            "cp-1",
            "--advertise-address",
            "127.0.0.1",
            "--control-plane-endpoint",
            &format!("127.0.0.1:{api_port}"),
            "--authz-server",
            &format!("https://127.0.0.1:{webhook_port}"),
        ],
        None,
    );
    // The node layout: beside admin.conf, in the pki directory's parent.
    let authz_config = root.join("authorization-config.yaml");
    assert!(
        printed.contains("authorization-config.yaml: written"),
        "{printed}"
    );
    assert!(root.join("certop-authz-webhook.kubeconfig").exists());
    let admin_conf = root.join("admin.conf");

    // kube-apiserver on the node's files, reading the configuration pki
    // init wrote; certop's webhook is first in it, but not serving yet:
    // NoOpinion, so RBAC decides.
    let cp = start_control_plane_with(
        &[
            format!("--pki-dir={}", pki.display()),
            format!("--port={api_port}"),
        ],
        &[format!("--authorization-config={}", authz_config.display())],
    );
    cp.install_rbac();
    let bound = cp.kubectl(&[
        "create",
        "clusterrolebinding",
        "kubeadm-cluster-admins",
        "--clusterrole=cluster-admin",
        "--group=kubeadm:cluster-admins",
    ]);
    assert!(bound.status.success(), "{}", stderr(&bound));
    assert!(allowed(&admin_conf), "{:?}", refusal(&admin_conf));

    // certop adopts the node's cluster CA, and serves its webhook with a
    // certificate of it: the bundle pki init put in the webhook kubeconfig.
    create_ca_secret(&cp, "node-ca", &pki);
    apply(
        &cp,
        "apiVersion: certop.dev/v1\nkind: CertificateAuthority\nmetadata:\n  name: node\nspec:\n  subject: {commonName: kubernetes}\n  keySource: {secretName: node-ca, adopt: true}\n  policy:\n    allowedProfiles: [client]\n    allowedOrganizations: [etcd-clients]\n",
    );
    let op = cp.start_operator(
        "node",
        &[
            &format!("--authz-addr=127.0.0.1:{webhook_port}"),
            "--authz-ca=node",
        ],
    );
    assert!(
        wait_for(Duration::from_secs(90), || allowed(&admin_conf)
            && cp.webhook_evaluations() > 0),
        "kube-apiserver never asked certop's webhook through pki init's configuration; log:\n{}",
        op.log_text()
    );

    let revoked = cp.kubectl_certop(&[
        "revoke",
        "--cert",
        utf8(&admin_conf),
        "--ca",
        "node",
        "--reason",
        "keyCompromise",
    ]);
    assert!(revoked.status.success(), "{}", stderr(&revoked));
    let mut text = String::new();
    assert!(
        wait_for(Duration::from_secs(30), || refusal(&admin_conf)
            .is_some_and(|t| {
                text = t;
                true
            })),
        "the revoked admin.conf still works; log:\n{}",
        op.log_text()
    );
    assert!(
        text.contains("orbidden") && text.contains("revoked"),
        "refused by certop's webhook: {text}"
    );
    let super_admin = kubectl_with(&root.join("super-admin.conf"), &["get", "namespaces"]);
    assert!(
        super_admin.status.success(),
        "another certificate of the node keeps working: {}",
        stderr(&super_admin)
    );

    // An etcd client certificate of the same CA, revoked: the CRL lists it.
    let ca_ready = || {
        let ca: Option<serde_json::Value> = get(&cp, &["certificateauthority", "node"]);
        ca.is_some_and(|ca| {
            ca["status"]["conditions"].as_array().is_some_and(|c| {
                c.iter()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            })
        })
    };
    assert!(
        wait_for(Duration::from_secs(60), ca_ready),
        "CertificateAuthority node not Ready: {}\n{}",
        stdout(&cp.kubectl(&["get", "certificateauthority", "node", "-o", "yaml"])),
        op.log_text()
    );
    apply(
        &cp,
        &cert_yaml(
            "etcd-backup",
            "node",
            "default",
            "  profile: client\n  commonName: etcd-backup\n  organizations: [etcd-clients]\n",
        ),
    );
    wait_ready(&cp, "etcd-backup");
    let leaf = parse_pem_certificate(
        &data(
            &secret(&cp, "default", "etcd-backup").expect("secret"),
            "tls.crt",
        ),
        "etcd-backup",
    )
    .expect("leaf");
    let revoked = cp.kubectl_certop(&["revoke", "etcd-backup", "--reason", "keyCompromise"]);
    assert!(revoked.status.success(), "{}", stderr(&revoked));

    // The units, as a node gets them, and checked as systemd would.
    let units = root.join("systemd");
    let crl_file = pki.join("etcd-client.crl");
    certop(
        &[
            "pki",
            "systemd-units",
            "--out",
            utf8(&units),
            "--dir",
            utf8(&pki),
            "--crl-url",
            &format!("{}/crl/node.crl", op.base_url),
            "--crl-ca",
            utf8(&pki.join("ca.crt")),
            "--crl-out",
            utf8(&crl_file),
        ],
        None,
    );
    let service = units.join("certop-renew.service");
    let verified = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&service)
        .arg(units.join("certop-renew.timer"))
        .output()
        .expect("systemd-analyze (Debian: apt-get install systemd)");
    assert!(
        verified.status.success() && stderr(&verified).is_empty(),
        "systemd-analyze verify: {}",
        stderr(&verified)
    );

    // Run as systemd runs them, until the CRL the webhook's CA publishes
    // lists the revoked serial (it is re-signed within seconds).
    let ca = parse_pem_certificate(
        &std::fs::read(pki.join("ca.crt")).expect("ca.crt"),
        "ca.crt",
    )
    .expect("CA");
    // front-proxy-client expired, as after a long power-off: the
    // service's renewal replaces it.
    let front_proxy_ca = Authority::load(
        &std::fs::read(pki.join("front-proxy-ca.crt")).expect("CA"),
        &std::fs::read(pki.join("front-proxy-ca.key")).expect("CA key"),
        Utc::now(),
    )
    .expect("front-proxy CA");
    let client = parse_pem_certificate(
        &std::fs::read(pki.join("front-proxy-client.crt")).expect("read"),
        "front-proxy-client",
    )
    .expect("parse");
    let key = PrivateKey::from_pem(
        &std::fs::read_to_string(pki.join("front-proxy-client.key")).expect("key"),
        "front-proxy-client.key",
    )
    .expect("key");
    let mut template = certop::core::node::template_from(&client).expect("template");
    template.lifetime = chrono::Duration::days(30);
    let expired = issue(
        &template,
        &key,
        &front_proxy_ca,
        Utc::now() - chrono::Duration::days(60),
    )
    .expect("issue");
    std::fs::write(
        pki.join("front-proxy-client.crt"),
        expired.certificate.to_pem(),
    )
    .expect("write");
    let apiserver_before = std::fs::read(pki.join("apiserver.crt")).expect("apiserver.crt");
    let listed = |file: &PathBuf| {
        std::fs::read(file).ok().is_some_and(|der| {
            parse_crl(&der, Some(&ca)).is_ok_and(|crl| {
                crl.entries
                    .iter()
                    .any(|(serial, _, _)| *serial == leaf.serial)
            })
        })
    };
    let mut runs = Vec::new();
    let mut first = None;
    assert!(
        wait_for(Duration::from_secs(60), || {
            runs = run_service(&service);
            first.get_or_insert_with(|| runs.clone());
            listed(&crl_file)
        }),
        "the service's crl-sync never wrote a CRL listing the revoked serial; it printed {runs:?}; log:\n{}",
        op.log_text()
    );
    let first = first.expect("a run");
    assert!(
        first[0].contains("front-proxy-client: renewed"),
        "the first command renews what is due in this node's files: {first:?}"
    );
    let renewed = parse_pem_certificate(
        &std::fs::read(pki.join("front-proxy-client.crt")).expect("read"),
        "front-proxy-client",
    )
    .expect("parse");
    assert!(renewed.not_after > Utc::now() && renewed.is_issued_by(front_proxy_ca.certificate()));
    let again = run_service(&service);
    assert!(
        again[0].contains("nothing is due for renewal") && again[1].contains("is current"),
        "the next run changes nothing: {again:?}"
    );
    assert_eq!(
        std::fs::read(pki.join("apiserver.crt")).expect("apiserver.crt"),
        apiserver_before,
        "what was not due is kept"
    );
}
