//! The cluster's own components accept what certop issues: a real
//! kube-apiserver and etcd run on the files of `certop pki init` (serving,
//! client-CA, etcd client/server/peer, kubelet-client, front-proxy), and
//! kubectl, curl and the API server authenticate with them.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failed step should panic

mod common;

use common::{certop, control_plane_binary, ok};

use std::io::BufRead;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

struct ControlPlane {
    server: String,
    etcd: String,
    _child: Child,
}

impl ControlPlane {
    /// Stops etcd and kube-apiserver (their stdin closes) and waits.
    fn stop(mut self) {
        drop(self._child.stdin.take());
        let _ = self._child.wait();
    }
}

fn start(pki: &Path, work: &Path) -> ControlPlane {
    start_with_data(pki, work, None)
}

/// Starts on the files of `pki`; with `data`, etcd keeps its data there
/// across restarts.
fn start_with_data(pki: &Path, work: &Path, data: Option<&Path>) -> ControlPlane {
    let mut command = Command::new(control_plane_binary());
    if let Some(d) = data {
        command.arg("--data-dir").arg(d);
    }
    let mut child = command
        .arg("--kubeconfig")
        .arg(work.join("setup.kubeconfig"))
        .arg("--pki-dir")
        .arg(pki)
        .arg("--log-file")
        .arg(work.join("control-plane.log"))
        .arg("--exit-with-stdin")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the control plane");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("read");
    let field = |k: &str| {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(k))
            .map(str::to_string)
    };
    let (Some(server), Some(etcd)) = (field("server="), field("etcd=")) else {
        let log = std::fs::read_to_string(work.join("control-plane.log")).unwrap_or_default();
        panic!(
            "the control plane did not start on certop's files: {line:?}\n{}",
            &log[log.len().saturating_sub(3000)..]
        );
    };
    ControlPlane {
        server,
        etcd,
        _child: child,
    }
}

fn whoami(cp: &ControlPlane, kubeconfig: &Path) -> Output {
    Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args([
            "--server",
            &cp.server,
            "auth",
            "whoami",
            "-o",
            "jsonpath={.status.userInfo.username} {.status.userInfo.groups}",
        ])
        .output()
        .expect("kubectl")
}

fn curl(args: &[&str]) -> Output {
    Command::new("curl")
        .args(["-sS", "--max-time", "10"])
        .args(args)
        .output()
        .expect("curl")
}

#[test]
fn a_real_apiserver_and_etcd_run_on_certops_certificates_and_authenticate_with_them() {
    let tmp = tempfile::tempdir().expect("tmp");
    let root = tmp.path();
    let pki = root.join("pki");
    ok(certop(&[
        "pki",
        "init",
        "--dir",
        pki.to_str().expect("utf-8"),
        "--node-name",
        "localhost",
        "--advertise-address",
        "127.0.0.1",
    ]));
    let cp = start(&pki, root);

    // kubectl with certop's kubeconfig client certificates: the expected users and groups.
    for (conf, expected) in [
        (
            "admin.conf",
            "kubernetes-admin [\"kubeadm:cluster-admins\",\"system:authenticated\"]",
        ),
        (
            "super-admin.conf",
            "kubernetes-super-admin [\"system:masters\",\"system:authenticated\"]",
        ),
        (
            "controller-manager.conf",
            "system:kube-controller-manager [\"system:authenticated\"]",
        ),
        (
            "scheduler.conf",
            "system:kube-scheduler [\"system:authenticated\"]",
        ),
    ] {
        let out = whoami(&cp, &root.join(conf));
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            expected,
            "{conf}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // The API server reaches etcd over TLS with certop's apiserver-etcd-client certificate.
    let ready = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(root.join("super-admin.conf"))
        .args(["--server", &cp.server, "get", "--raw", "/readyz/etcd"])
        .output()
        .expect("kubectl");
    assert_eq!(String::from_utf8_lossy(&ready.stdout), "ok");

    // A client certificate from another CA is refused.
    let other = root.join("other");
    ok(certop(&[
        "pki",
        "ca",
        "create",
        "--name",
        "kubernetes",
        "--out",
        other.join("ca").to_str().expect("utf-8"),
    ]));
    let manifest = root.join("admin.yaml");
    std::fs::write(&manifest, "apiVersion: certop.dev/v1\nkind: ClusterCertificate\nmetadata: {name: admin}\nspec:\n  issuerRef: {name: other}\n  secretName: admin\n  secretNamespace: default\n  profile: super-admin\n").expect("write");
    ok(certop(&[
        "pki",
        "issue",
        "--ca",
        other.join("ca").to_str().expect("utf-8"),
        "-f",
        manifest.to_str().expect("utf-8"),
        "--out",
        other.join("admin").to_str().expect("utf-8"),
    ]));
    let stranger = root.join("stranger.conf");
    let set = |args: &[&str]| {
        let o = Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&stranger)
            .args(args)
            .output()
            .expect("kubectl");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };
    set(&[
        "config",
        "set-cluster",
        "k",
        "--server",
        &cp.server,
        "--certificate-authority",
        pki.join("ca.crt").to_str().expect("utf-8"),
    ]);
    set(&[
        "config",
        "set-credentials",
        "u",
        "--client-certificate",
        other.join("admin/tls.crt").to_str().expect("utf-8"),
        "--client-key",
        other.join("admin/tls.key").to_str().expect("utf-8"),
    ]);
    set(&[
        "config",
        "set-context",
        "c",
        "--cluster",
        "k",
        "--user",
        "u",
    ]);
    set(&["config", "use-context", "c"]);
    let refused = whoami(&cp, &stranger);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("Unauthorized"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );

    // The front-proxy client certificate is trusted for request headers: the
    // API server takes the user named in X-Remote-User from it, and from no other.
    let review = r#"{"apiVersion":"authentication.k8s.io/v1","kind":"SelfSubjectReview"}"#;
    let url = format!(
        "{}/apis/authentication.k8s.io/v1/selfsubjectreviews",
        cp.server
    );
    let as_proxy = |cert: &str| {
        curl(&[
            "--cacert",
            pki.join("ca.crt").to_str().expect("utf-8"),
            "--cert",
            pki.join(format!("{cert}.crt")).to_str().expect("utf-8"),
            "--key",
            pki.join(format!("{cert}.key")).to_str().expect("utf-8"),
            "-H",
            "X-Remote-User: alice",
            "-H",
            "X-Remote-Group: devs",
            "-H",
            "Content-Type: application/json",
            "-X",
            "POST",
            "-d",
            review,
            &url,
        ])
    };
    let proxied = String::from_utf8_lossy(&as_proxy("front-proxy-client").stdout).into_owned();
    assert!(
        proxied.contains("\"username\": \"alice\"") || proxied.contains("\"username\":\"alice\""),
        "{proxied}"
    );
    let not_proxy =
        String::from_utf8_lossy(&as_proxy("apiserver-kubelet-client").stdout).into_owned();
    assert!(
        !not_proxy.contains("alice"),
        "a certificate that is not the front proxy's must not set the user: {not_proxy}"
    );

    // etcd requires client certificates from the etcd CA.
    let etcd_health = |cert: &str| {
        curl(&[
            "--cacert",
            pki.join("etcd/ca.crt").to_str().expect("utf-8"),
            "--cert",
            pki.join(format!("{cert}.crt")).to_str().expect("utf-8"),
            "--key",
            pki.join(format!("{cert}.key")).to_str().expect("utf-8"),
            &format!("{}/health", cp.etcd),
        ])
    };
    for cert in ["etcd/healthcheck-client", "apiserver-etcd-client"] {
        let out = etcd_health(cert);
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("\"health\":\"true\""),
            "{cert}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let refused = etcd_health("apiserver-kubelet-client");
    assert!(
        !refused.status.success(),
        "a cluster-CA certificate must not reach etcd"
    );
}

fn kubectl(kubeconfig: &Path, cp: &ControlPlane, args: &[&str]) -> Output {
    Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(["--server", &cp.server])
        .args(args)
        .output()
        .expect("kubectl")
}

fn bundle_len(path: &Path) -> usize {
    certop::pki::parse_chain(&std::fs::read(path).expect("read"), "bundle")
        .expect("parses")
        .len()
}

#[test]
fn a_node_ca_rotation_keeps_a_real_apiserver_and_etcd_working_at_every_step() {
    let tmp = tempfile::tempdir().expect("tmp");
    let root = tmp.path();
    let pki = root.join("pki");
    let data = root.join("data");
    ok(certop(&[
        "pki",
        "init",
        "--dir",
        pki.to_str().expect("utf-8"),
        "--node-name",
        "localhost",
        "--advertise-address",
        "127.0.0.1",
    ]));
    let admin = root.join("admin.conf");
    let root_admin = root.join("super-admin.conf");
    let cp = start_with_data(&pki, root, Some(&data));
    let made = kubectl(
        &root_admin,
        &cp,
        &["create", "configmap", "survivor", "--from-literal=k=v"],
    );
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    // A client that keeps its old certificate through the whole rotation.
    let old_admin = root.join("old-admin.conf");
    std::fs::copy(&admin, &old_admin).expect("copy");
    cp.stop();
    let first_ca =
        certop::pki::parse_pem_certificate(&std::fs::read(pki.join("ca.crt")).expect("ca"), "ca")
            .expect("ca");

    let trusted = |cp: &ControlPlane, who: &Path| {
        kubectl(
            who,
            cp,
            &[
                "--certificate-authority",
                pki.join("ca.crt").to_str().expect("utf-8"),
                "auth",
                "whoami",
                "-o",
                "jsonpath={.status.userInfo.username}",
            ],
        )
    };
    for (step, bundles, old_client_accepted) in [
        ("stage", 2, true),
        ("switch", 2, true),
        ("finish", 1, false),
    ] {
        let out = ok(certop(&[
            "pki",
            "rotate-ca",
            "--dir",
            pki.to_str().expect("utf-8"),
        ]));
        for ca in ["ca.crt", "etcd/ca.crt", "front-proxy-ca.crt"] {
            assert_eq!(bundle_len(&pki.join(ca)), bundles, "{step}: {ca}\n{out}");
        }
        // Restarted on the rotated files: etcd, kube-apiserver and the
        // kubeconfigs certop rewrote all work, and the data is still there.
        let cp = start_with_data(&pki, root, Some(&data));
        let who = kubectl(
            &admin,
            &cp,
            &[
                "auth",
                "whoami",
                "-o",
                "jsonpath={.status.userInfo.username}",
            ],
        );
        assert_eq!(
            String::from_utf8_lossy(&who.stdout),
            "kubernetes-admin",
            "{step}: admin.conf: {}",
            String::from_utf8_lossy(&who.stderr)
        );
        let etcd = kubectl(&root_admin, &cp, &["get", "--raw", "/readyz/etcd"]);
        assert_eq!(String::from_utf8_lossy(&etcd.stdout), "ok", "{step}: etcd");
        let kept = kubectl(
            &root_admin,
            &cp,
            &["get", "configmap", "survivor", "-o", "jsonpath={.data.k}"],
        );
        assert_eq!(
            String::from_utf8_lossy(&kept.stdout),
            "v",
            "{step}: data kept"
        );
        let server = certop::pki::parse_pem_certificate(
            &std::fs::read(pki.join("apiserver.crt")).expect("crt"),
            "apiserver",
        )
        .expect("apiserver.crt");
        assert_eq!(
            server.is_issued_by(&first_ca),
            step == "stage",
            "{step}: the serving certificate is re-issued at the switch, not before"
        );
        // The old CA's client certificate is honoured until the old CA leaves.
        let old = trusted(&cp, &old_admin);
        assert_eq!(
            old.status.success(),
            old_client_accepted,
            "{step}: old client certificate: {}{}",
            String::from_utf8_lossy(&old.stdout),
            String::from_utf8_lossy(&old.stderr)
        );
        cp.stop();
    }
    assert!(!pki.join("ca-next.key").exists() && !pki.join("ca-previous.crt").exists());
    // The kubeconfigs trust only the new CA, and openssl agrees with the chain.
    let verify = Command::new("openssl")
        .args(["verify", "-CAfile"])
        .arg(pki.join("etcd/ca.crt"))
        .arg(pki.join("etcd/server.crt"))
        .output()
        .expect("openssl");
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stderr)
    );
}
