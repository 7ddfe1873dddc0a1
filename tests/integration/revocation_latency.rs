//! How fast a revocation takes effect at kube-apiserver, over many in a
//! row: a benchmark, not a test (ignored by `cargo test`; `make
//! bench-revocation` runs it and prints p50, p90, p99 and the slowest).
//! Each round issues a client certificate offline (`certop pki issue`),
//! checks that it works, runs `kubectl certop revoke --cert`, and polls the
//! API server with curl until it answers 403; the time counted starts
//! before the revoke command, as a user's would.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::objects::{api_server_of, apply, cert_yaml, create_ca_secret};
use crate::support::{
    configure_certop_webhook, free_port, issue_offline, offline_ca, start_control_plane_trusting,
    stderr, wait_for,
};

/// The HTTP status of a GET of the namespaces with a client certificate.
fn status_with(server: &str, ca: &Path, dir: &Path) -> String {
    let out = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--cacert"])
        .arg(ca)
        .arg("--cert")
        .arg(dir.join("tls.crt"))
        .arg("--key")
        .arg(dir.join("tls.key"))
        .arg(format!("{server}/api/v1/namespaces?limit=1"))
        .output()
        .expect("curl");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

#[test]
#[ignore = "a benchmark: make bench-revocation"]
fn revocations_take_effect_at_kube_apiserver_within_seconds_p99() {
    let rounds: usize = std::env::var("CERTOP_REVOCATIONS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(50);
    let dir = tempfile::tempdir().expect("tempdir");
    let ca_dir = offline_ca(dir.path(), "latency CA");
    let (cp, authz_file) = start_control_plane_trusting(&ca_dir, dir.path(), &[]);
    cp.install_rbac();
    create_ca_secret(&cp, "latency-ca", &ca_dir);
    apply(
        &cp,
        "apiVersion: certop.dev/v1\nkind: CertificateAuthority\nmetadata:\n  name: latency\nspec:\n  subject: {commonName: latency}\n  keySource: {secretName: latency-ca, adopt: true}\n",
    );
    let port = free_port();
    let flags = [
        format!("--authz-addr=127.0.0.1:{port}"),
        "--authz-ca=latency".to_string(),
    ];
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let _op = cp.start_operator("latency", &flags);
    let bound = cp.kubectl(&[
        "create",
        "clusterrolebinding",
        "latency-admins",
        "--clusterrole=cluster-admin",
        "--group=latency-admins",
    ]);
    assert!(bound.status.success(), "{}", stderr(&bound));
    configure_certop_webhook(&cp, &authz_file, "latency", port, "NoOpinion");
    let (server, ca_b64) = api_server_of(&cp);
    use base64::Engine;
    let server_ca = dir.path().join("server-ca.crt");
    std::fs::write(
        &server_ca,
        base64::engine::general_purpose::STANDARD
            .decode(ca_b64.trim())
            .expect("base64"),
    )
    .expect("write");

    let issue = |name: &str| {
        let spec =
            format!("  profile: client\n  commonName: {name}\n  organizations: [latency-admins]\n");
        issue_offline(
            &ca_dir,
            dir.path(),
            name,
            &cert_yaml(name, "latency", "default", &spec),
        )
    };
    let warm = issue("warm");
    assert!(
        wait_for(Duration::from_secs(90), || {
            status_with(&server, &server_ca, &warm) == "200" && cp.webhook_evaluations() > 0
        }),
        "kube-apiserver never asked certop's webhook"
    );

    let mut took = Vec::with_capacity(rounds);
    for round in 0..rounds {
        let cert = issue(&format!("client-{round}"));
        assert_eq!(
            status_with(&server, &server_ca, &cert),
            "200",
            "round {round}"
        );
        let started = Instant::now();
        let revoked = cp.kubectl_certop(&[
            "revoke",
            "--cert",
            cert.join("tls.crt").to_str().expect("utf-8"),
            "--ca",
            "latency",
            "--reason",
            "keyCompromise",
        ]);
        assert!(revoked.status.success(), "{}", stderr(&revoked));
        assert!(
            wait_for(Duration::from_secs(30), || status_with(
                &server, &server_ca, &cert
            ) == "403"),
            "round {round}: the revoked certificate still works"
        );
        took.push(started.elapsed());
    }
    took.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    eprintln!(
        "revocation to 403 at kube-apiserver over {rounds} revocations: p50 {:.0} ms, p90 {:.0} ms, p99 {:.0} ms, slowest {:.0} ms, fastest {:.0} ms",
        ms(percentile(&took, 0.50)),
        ms(percentile(&took, 0.90)),
        ms(percentile(&took, 0.99)),
        ms(took[took.len() - 1]),
        ms(took[0]),
    );
}
