//! `certop pki init | check-expiration | renew` on a control-plane node's
//! files, checked with openssl and by reading the files back.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failed step should panic

mod common;

use common::{certop, ok};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use certop::pki::{Authority, LeafTemplate, PrivateKey, issue, parse_pem_certificate};
use chrono::{Duration, Utc};

/// Every file under `dir`, with its bytes (the backup directory excluded).
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read dir").flatten() {
            let p = e.path();
            if p.file_name().is_some_and(|n| n == ".certop-backup") {
                continue;
            }
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(p.clone(), std::fs::read(&p).expect("read"));
            }
        }
    }
    out
}

fn init(root: &Path) -> PathBuf {
    let pki = root.join("pki");
    ok(certop(&[
        "pki",
        "init",
        "--dir",
        pki.to_str().expect("utf-8"),
        "--node-name",
        "cp-1",
        "--advertise-address",
        "192.0.2.10",
        "--san",
        "api.example.com",
    ]));
    pki
}

fn verify(ca: &Path, cert: &Path) {
    let v = Command::new("openssl")
        .arg("verify")
        .arg("-CAfile")
        .arg(ca)
        .arg(cert)
        .output()
        .expect("openssl");
    assert!(
        v.status.success(),
        "{}: {}",
        cert.display(),
        String::from_utf8_lossy(&v.stderr)
    );
}

#[test]
fn init_writes_kubeadms_layout_that_openssl_verifies_and_keeps_it_on_a_second_run() {
    let tmp = tempfile::tempdir().expect("tmp");
    let pki = init(tmp.path());
    let pairs = [
        ("apiserver", "ca"),
        ("apiserver-kubelet-client", "ca"),
        ("apiserver-etcd-client", "etcd/ca"),
        ("front-proxy-client", "front-proxy-ca"),
        ("etcd/server", "etcd/ca"),
        ("etcd/peer", "etcd/ca"),
        ("etcd/healthcheck-client", "etcd/ca"),
    ];
    for (leaf, ca) in pairs {
        verify(
            &pki.join(format!("{ca}.crt")),
            &pki.join(format!("{leaf}.crt")),
        );
        let mode = std::fs::metadata(pki.join(format!("{leaf}.key")))
            .expect("key")
            .permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o600,
            "{leaf}.key"
        );
    }
    for f in [
        "sa.key",
        "sa.pub",
        "ca.key",
        "etcd/ca.key",
        "front-proxy-ca.key",
    ] {
        assert!(pki.join(f).exists(), "{f}");
    }
    let api = parse_pem_certificate(
        &std::fs::read(pki.join("apiserver.crt")).expect("read"),
        "apiserver",
    )
    .expect("parse");
    assert!(
        api.dns_names.contains(&"api.example.com".to_string())
            && api
                .dns_names
                .contains(&"kubernetes.default.svc".to_string())
    );
    assert_eq!(
        api.not_after - api.not_before,
        Duration::hours(8760) + certop::pki::BACKDATE,
        "kubeadm's one year"
    );
    for (conf, user) in [
        ("admin.conf", "kubernetes-admin"),
        ("super-admin.conf", "kubernetes-super-admin"),
        ("controller-manager.conf", "system:kube-controller-manager"),
        ("scheduler.conf", "system:kube-scheduler"),
    ] {
        let path = tmp.path().join(conf);
        let view = Command::new("kubectl")
            .args([
                "config",
                "view",
                "--raw",
                "--minify",
                "-o",
                "jsonpath={.users[0].name} {.clusters[0].cluster.server}",
            ])
            .env("KUBECONFIG", &path)
            .output()
            .expect("kubectl");
        assert_eq!(
            String::from_utf8_lossy(&view.stdout),
            format!("{user} https://192.0.2.10:6443"),
            "{conf}"
        );
    }
    let before = snapshot(tmp.path());
    let again = ok(certop(&[
        "pki",
        "init",
        "--dir",
        pki.to_str().expect("utf-8"),
        "--node-name",
        "cp-1",
        "--advertise-address",
        "192.0.2.10",
    ]));
    assert!(
        again.contains("using the existing ca CA") && again.contains("apiserver: exists, kept"),
        "{again}"
    );
    assert_eq!(
        snapshot(tmp.path()),
        before,
        "a second init changes nothing"
    );
}

#[test]
fn init_uses_an_existing_kubeadm_ca() {
    let tmp = tempfile::tempdir().expect("tmp");
    let pki = tmp.path().join("pki");
    std::fs::create_dir_all(&pki).expect("dir");
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/kubeadm-ca");
    std::fs::copy(fixture.join("ca.crt"), pki.join("ca.crt")).expect("copy");
    std::fs::copy(fixture.join("ca.key"), pki.join("ca.key")).expect("copy");
    init(tmp.path());
    assert_eq!(
        std::fs::read(pki.join("ca.crt")).expect("read"),
        std::fs::read(fixture.join("ca.crt")).expect("read")
    );
    verify(&fixture.join("ca.crt"), &pki.join("apiserver.crt"));
}

#[test]
fn renew_replaces_what_is_due_keeping_names_with_new_keys_and_backs_up() {
    let tmp = tempfile::tempdir().expect("tmp");
    let pki = init(tmp.path());
    // Make the API server certificate expired, as after a long power-off.
    let ca = Authority::load(
        &std::fs::read(pki.join("ca.crt")).expect("ca"),
        &std::fs::read(pki.join("ca.key")).expect("key"),
        Utc::now(),
    )
    .expect("ca");
    let current = parse_pem_certificate(
        &std::fs::read(pki.join("apiserver.crt")).expect("read"),
        "apiserver",
    )
    .expect("parse");
    let key_pem = std::fs::read_to_string(pki.join("apiserver.key")).expect("key");
    let key = PrivateKey::from_pem(&key_pem, "apiserver.key").expect("key");
    let mut template: LeafTemplate = certop::core::node::template_from(&current).expect("template");
    template.lifetime = Duration::days(30);
    let expired = issue(&template, &key, &ca, Utc::now() - Duration::days(60)).expect("issue");
    std::fs::write(pki.join("apiserver.crt"), expired.certificate.to_pem()).expect("write");

    let json = ok(certop(&[
        "pki",
        "check-expiration",
        "--dir",
        pki.to_str().expect("utf-8"),
        "-o",
        "json",
    ]));
    let v: serde_json::Value = serde_json::from_str(&json).expect("json");
    let api = v["certificates"]
        .as_array()
        .expect("rows")
        .iter()
        .find(|r| r["name"] == "apiserver")
        .expect("row")
        .clone();
    assert!(
        api["residualSeconds"].as_i64().expect("seconds") < 0,
        "{api}"
    );
    let table = ok(certop(&[
        "pki",
        "check-expiration",
        "--dir",
        pki.to_str().expect("utf-8"),
    ]));
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("apiserver ") && l.contains("<invalid>")),
        "{table}"
    );

    let out = ok(certop(&[
        "pki",
        "renew",
        "--dir",
        pki.to_str().expect("utf-8"),
    ]));
    assert!(
        out.contains("apiserver: renewed") && !out.contains("etcd-server"),
        "only what is due: {out}"
    );
    let renewed = parse_pem_certificate(
        &std::fs::read(pki.join("apiserver.crt")).expect("read"),
        "apiserver",
    )
    .expect("parse");
    assert!(renewed.not_after > Utc::now() + Duration::days(29));
    assert_eq!(renewed.dns_names, current.dns_names);
    assert_eq!(renewed.ip_addresses, current.ip_addresses);
    assert_eq!(renewed.common_name, current.common_name);
    let new_key_pem = std::fs::read_to_string(pki.join("apiserver.key")).expect("key");
    assert_ne!(
        new_key_pem, key_pem,
        "a renewal makes a new key, as kubeadm does"
    );
    let new_key = PrivateKey::from_pem(&new_key_pem, "apiserver.key").expect("key");
    assert!(certop::pki::key_matches_certificate(&new_key, &renewed));
    verify(&pki.join("ca.crt"), &pki.join("apiserver.crt"));
    let backups: Vec<_> = std::fs::read_dir(pki.join(".certop-backup"))
        .expect("backup")
        .flatten()
        .collect();
    assert_eq!(backups.len(), 1);
    assert_eq!(
        std::fs::read(backups[0].path().join("apiserver.crt")).expect("backup"),
        expired.certificate.to_pem().into_bytes()
    );
    assert_eq!(
        std::fs::read_to_string(backups[0].path().join("apiserver.key")).expect("backup"),
        key_pem,
        "the old key is backed up too"
    );
    let kept = ok(certop(&[
        "pki",
        "renew",
        "--dir",
        pki.to_str().expect("utf-8"),
        "--force",
        "--keep-key",
        "apiserver",
    ]));
    assert!(kept.contains("apiserver: renewed"), "{kept}");
    assert_eq!(
        std::fs::read_to_string(pki.join("apiserver.key")).expect("key"),
        new_key_pem,
        "--keep-key keeps it"
    );

    assert!(
        ok(certop(&[
            "pki",
            "renew",
            "--dir",
            pki.to_str().expect("utf-8")
        ]))
        .contains("nothing is due"),
        "idempotent at every boot"
    );
    let forced = ok(certop(&[
        "pki",
        "renew",
        "--dir",
        pki.to_str().expect("utf-8"),
        "--force",
        "admin.conf",
    ]));
    assert!(forced.contains("admin.conf: renewed"), "{forced}");
    let within = ok(certop(&[
        "pki",
        "renew",
        "--dir",
        pki.to_str().expect("utf-8"),
        "--within",
        "375d",
        "all",
    ]));
    assert_eq!(
        within.lines().filter(|l| l.contains(": renewed")).count(),
        11,
        "{within}"
    );
}

#[test]
fn renew_refuses_files_it_cannot_parse_and_touches_nothing() {
    let tmp = tempfile::tempdir().expect("tmp");
    let pki = init(tmp.path());
    let unknown = certop(&[
        "pki",
        "renew",
        "--dir",
        pki.to_str().expect("utf-8"),
        "kubelet",
    ]);
    assert!(
        !unknown.status.success()
            && String::from_utf8_lossy(&unknown.stderr).contains("unknown certificate")
    );
    std::fs::write(pki.join("etcd/server.crt"), "not a certificate").expect("write");
    let before = snapshot(tmp.path());
    let out = certop(&[
        "pki",
        "renew",
        "--dir",
        pki.to_str().expect("utf-8"),
        "--within",
        "9000h",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("etcd/server.crt") && err.contains("no PEM certificate"),
        "{err}"
    );
    assert_eq!(snapshot(tmp.path()), before, "nothing was written");
}

#[test]
fn renewing_a_kubeconfig_changes_only_its_client_credentials() {
    let tmp = tempfile::tempdir().expect("tmp");
    let pki = init(tmp.path());
    let admin = tmp.path().join("admin.conf");
    let text = std::fs::read_to_string(&admin).expect("admin.conf");
    // kubeadm writes base64 data on one line: the grep | awk | base64 -d idiom works.
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("client-certificate-data: "))
        .expect("one-line client-certificate-data");
    assert!(line.trim_start().len() > 200, "{line}");
    // An administrator adds a namespace, another context and preferences.
    let edited = text
        .replace(
            "kind: Config\n",
            "kind: Config\npreferences:\n  colors: true\n",
        )
        .replace(
            "    user: kubernetes-admin\n",
            "    namespace: kube-system\n    user: kubernetes-admin\n",
        );
    assert_ne!(edited, text, "the edit applied");
    std::fs::write(&admin, &edited).expect("write");
    ok(certop(&[
        "pki",
        "renew",
        "--dir",
        pki.to_str().expect("utf-8"),
        "--force",
        "admin.conf",
    ]));
    let renewed = std::fs::read_to_string(&admin).expect("admin.conf");
    assert!(
        renewed.contains("namespace: kube-system") && renewed.contains("colors: true"),
        "{renewed}"
    );
    let strip = |t: &str| {
        t.lines()
            .filter(|l| !l.contains("client-certificate-data") && !l.contains("client-key-data"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(
        strip(&renewed),
        strip(&edited),
        "only the client credentials changed"
    );
    let whoami = std::process::Command::new("kubectl")
        .args(["config", "view", "--raw", "--kubeconfig"])
        .arg(&admin)
        .args(["-o", "jsonpath={.contexts[0].context.namespace}"])
        .output()
        .expect("kubectl");
    assert_eq!(
        String::from_utf8_lossy(&whoami.stdout),
        "kube-system",
        "kubectl reads it"
    );

    // A kubeconfig that names files keeps naming them; the files are renewed.
    let files_dir = tmp.path().join("files");
    std::fs::create_dir_all(&files_dir).expect("dir");
    let sched = tmp.path().join("scheduler.conf");
    // What kubectl reads from the kubeconfig, decoded.
    let field = |name: &str| {
        use base64::Engine;
        let out = std::process::Command::new("kubectl")
            .args(["config", "view", "--raw", "--kubeconfig"])
            .arg(&sched)
            .args(["-o", &format!("jsonpath={{.users[0].user.{name}}}")])
            .output()
            .expect("kubectl");
        base64::engine::general_purpose::STANDARD
            .decode(String::from_utf8_lossy(&out.stdout).trim())
            .expect("base64")
    };
    let (cert, key) = (field("client-certificate-data"), field("client-key-data"));
    std::fs::write(files_dir.join("sched.crt"), &cert).expect("write");
    std::fs::write(files_dir.join("sched.key"), &key).expect("write");
    let sched_text = std::fs::read_to_string(&sched).expect("scheduler.conf");
    let by_files: String = sched_text
        .lines()
        .map(|l| {
            if l.contains("client-certificate-data") {
                "    client-certificate: files/sched.crt".to_string()
            } else if l.contains("client-key-data") {
                "    client-key: files/sched.key".to_string()
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&sched, &by_files).expect("write");
    ok(certop(&[
        "pki",
        "renew",
        "--dir",
        pki.to_str().expect("utf-8"),
        "--force",
        "scheduler.conf",
    ]));
    assert_eq!(
        std::fs::read_to_string(&sched).expect("read"),
        by_files,
        "the kubeconfig is untouched"
    );
    assert_ne!(
        std::fs::read(files_dir.join("sched.crt")).expect("crt"),
        cert,
        "its certificate file is renewed"
    );
    verify(&pki.join("ca.crt"), &files_dir.join("sched.crt"));
}

/// After a partial restore, a leaf signed by another CA is not "kept": init
/// names it and writes nothing.
#[test]
fn init_refuses_a_certificate_another_ca_signed() {
    let tmp = tempfile::tempdir().expect("tmp");
    let pki = init(tmp.path());
    let other = tempfile::tempdir().expect("other");
    let other_pki = init(other.path());
    for f in ["apiserver.crt", "apiserver.key"] {
        std::fs::copy(other_pki.join(f), pki.join(f)).expect("copy");
    }
    let before = snapshot(tmp.path());
    let out = certop(&[
        "pki",
        "init",
        "--dir",
        pki.to_str().expect("utf-8"),
        "--node-name",
        "cp-1",
        "--advertise-address",
        "192.0.2.10",
    ]);
    assert!(!out.status.success(), "a foreign leaf must stop the run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("apiserver: exists but was not signed by the ca CA"),
        "{err}"
    );
    assert_eq!(snapshot(tmp.path()), before, "nothing was written");
}

#[test]
fn a_ca_rotation_stopped_part_way_resumes_with_the_key_it_made() {
    let tmp = tempfile::tempdir().expect("tmp");
    let pki = init(tmp.path());
    let dir = pki.to_str().expect("utf-8");
    let old_bundle = std::fs::read(pki.join("ca.crt")).expect("ca.crt");
    ok(certop(&["pki", "rotate-ca", "--dir", dir, "--ca", "ca"]));
    let staged = std::fs::read(pki.join("ca-next.crt")).expect("staged certificate");
    let staged_key = std::fs::read(pki.join("ca-next.key")).expect("staged key");
    // As if the run had died after making the key, before ca.crt.
    std::fs::write(pki.join("ca.crt"), &old_bundle).expect("write");
    let out = ok(certop(&["pki", "rotate-ca", "--dir", dir, "--ca", "ca"]));
    assert!(out.contains("staged"), "{out}");
    assert_eq!(
        std::fs::read(pki.join("ca-next.key")).expect("key"),
        staged_key,
        "no second key"
    );
    let bundle = std::fs::read_to_string(pki.join("ca.crt")).expect("ca.crt");
    assert!(
        bundle.contains(std::str::from_utf8(&staged).expect("pem").trim()),
        "the same staged CA is trusted"
    );
    assert!(
        !pki.join("etcd/ca-next.key").exists(),
        "--ca ca rotates only the cluster CA"
    );
    // The switch: every leaf of the cluster CA is re-issued by the staged key.
    let switched = ok(certop(&["pki", "rotate-ca", "--dir", dir, "--ca", "ca"]));
    assert!(switched.contains("apiserver: renewed"), "{switched}");
    let signing = parse_pem_certificate(&staged, "staged").expect("parse");
    for leaf in ["apiserver.crt", "apiserver-kubelet-client.crt"] {
        let cert = parse_pem_certificate(&std::fs::read(pki.join(leaf)).expect("leaf"), leaf)
            .expect("parse");
        assert!(cert.is_issued_by(&signing), "{leaf}");
        verify(&pki.join("ca.crt"), &pki.join(leaf));
    }
    assert_eq!(
        std::fs::read(pki.join("ca.key")).expect("key"),
        staged_key,
        "the staged key signs"
    );
    let check = ok(certop(&["pki", "check-expiration", "--dir", dir]));
    assert!(check.contains("apiserver"), "{check}");
    ok(certop(&["pki", "rotate-ca", "--dir", dir, "--ca", "ca"]));
    assert_eq!(
        parse_pem_certificate(&std::fs::read(pki.join("ca.crt")).expect("ca"), "ca")
            .expect("ca")
            .fingerprint,
        signing.fingerprint
    );
    let refused = certop(&["pki", "rotate-ca", "--dir", dir, "--ca", "kubernetes"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("use ca, etcd-ca or front-proxy-ca"));
}

/// `certop pki init` with the node's arguments and `extra`.
fn init_with(root: &Path, extra: &[&str]) -> std::process::Output {
    let pki = root.join("pki");
    let mut args = vec![
        "pki",
        "init",
        "--dir",
        pki.to_str().expect("utf-8"),
        "--node-name",
        "cp-1",
        "--advertise-address",
        "192.0.2.10",
    ];
    args.extend_from_slice(extra);
    certop(&args)
}

#[test]
fn init_writes_the_authorization_config_beside_the_kubeconfigs_or_nothing() {
    // Refused before anything is written: kube-apiserver dials only https.
    let tmp = tempfile::tempdir().expect("tmp");
    let out = init_with(tmp.path(), &["--authz-server", "http://10.0.0.5:8443"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("--authz-server http://10.0.0.5:8443 must be an https:// URL"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(snapshot(tmp.path()).is_empty(), "nothing written");
    let garbage = tmp.path().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate").expect("write");
    let out = init_with(
        tmp.path(),
        &[
            "--authz-server",
            "https://10.0.0.5:8443",
            "--authz-ca-file",
            garbage.to_str().expect("utf-8"),
        ],
    );
    assert!(!out.status.success(), "a bundle without a certificate");
    assert!(!tmp.path().join("pki").exists(), "nothing written");

    // The default bundle: the node's cluster CA. Another: the file named.
    for other in [false, true] {
        let tmp = tempfile::tempdir().expect("tmp");
        let bundle = tmp.path().join("webhook-ca.crt");
        let mut extra = vec![
            "--authz-server",
            "https://10.0.0.5:8443",
            "--authz-failure-policy",
            "Deny",
        ];
        if other {
            let ca = Authority::create(&certop::pki::CaRequest::new("webhook CA"), Utc::now())
                .expect("CA");
            std::fs::write(&bundle, ca.certificate_pem()).expect("write");
            extra.extend(["--authz-ca-file", bundle.to_str().expect("utf-8")]);
        }
        ok(init_with(tmp.path(), &extra));
        let config: serde_json::Value = serde_saphyr::from_str(
            &std::fs::read_to_string(tmp.path().join("authorization-config.yaml")).expect("read"),
        )
        .expect("yaml");
        let webhook = &config["authorizers"][0]["webhook"];
        assert_eq!(webhook["failurePolicy"], "Deny");
        let kubeconfig = tmp.path().join("certop-authz-webhook.kubeconfig");
        assert_eq!(
            webhook["connectionInfo"]["kubeConfigFile"],
            kubeconfig.to_str().expect("utf-8"),
            "an absolute path"
        );
        let kc: serde_json::Value =
            serde_saphyr::from_str(&std::fs::read_to_string(&kubeconfig).expect("read"))
                .expect("yaml");
        let cluster = &kc["clusters"][0]["cluster"];
        assert_eq!(cluster["server"], "https://10.0.0.5:8443");
        use base64::Engine;
        let trusted = base64::engine::general_purpose::STANDARD
            .decode(
                cluster["certificate-authority-data"]
                    .as_str()
                    .expect("data"),
            )
            .expect("base64");
        let expected = std::fs::read(if other {
            bundle.clone()
        } else {
            tmp.path().join("pki/ca.crt")
        })
        .expect("read");
        assert_eq!(trusted, expected, "other bundle: {other}");
    }
}

#[test]
fn the_systemd_units_pass_systemd_analyze_verify() {
    let tmp = tempfile::tempdir().expect("tmp");
    let pki = tmp.path().join("pki");
    for crl in [false, true] {
        let units = tmp.path().join(format!("units-{crl}"));
        let mut args = vec![
            "pki",
            "systemd-units",
            "--dir",
            pki.to_str().expect("utf-8"),
            "--out",
            units.to_str().expect("utf-8"),
        ];
        if crl {
            args.extend(["--crl-url", "http://10.0.0.5:8080/crl/etcd.crl"]);
        }
        ok(certop(&args));
        let service = std::fs::read_to_string(units.join("certop-renew.service")).expect("read");
        assert_eq!(service.contains("crl-sync"), crl);
        let verified = Command::new("systemd-analyze")
            .args(["verify", "--man=no"])
            .arg(units.join("certop-renew.service"))
            .arg(units.join("certop-renew.timer"))
            .output()
            .expect("systemd-analyze (Debian: apt-get install systemd)");
        let said = String::from_utf8_lossy(&verified.stderr);
        assert!(
            verified.status.success() && said.is_empty(),
            "systemd-analyze verify: {said}"
        );
    }
}
