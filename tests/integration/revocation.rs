//! Revocation end to end, checked by consumers certop did not write:
//! openssl's CRL verification and -crl_check, and pkilint's CRL linter.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use certop::api::{CertificateAuthority, CertificateRevocation, ClusterCertificate};
use k8s_openapi::api::core::v1::ConfigMap;

use crate::objects::*;
use crate::support::{
    ControlPlane, control_plane, crl_serials, http_request, operator, stderr, stdout, unique,
    wait_for,
};

fn certop(cp: &ControlPlane, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_certop"))
        .env("KUBECONFIG", &cp.kubeconfig)
        .args(args)
        .output()
        .expect("certop")
}

fn serial_of(cp: &ControlPlane, name: &str) -> Option<String> {
    cert(cp, name).status.and_then(|s| s.serial_number)
}

/// The CA's CRL as the operator serves it over HTTP (DER).
fn fetch_crl(ca: &str) -> Vec<u8> {
    let (status, head, body) =
        http_request(&format!("{}/crl/{ca}.crl", operator().base_url), &[]).expect("GET CRL");
    assert_eq!(status, 200, "{head}");
    assert!(
        head.to_lowercase()
            .contains("content-type: application/pkix-crl"),
        "{head}"
    );
    body
}

fn wait_new_serial(cp: &ControlPlane, name: &str, old: &str) -> String {
    let ok = wait_for(WAIT, || serial_of(cp, name).is_some_and(|s| s != old));
    assert!(ok, "{name} was not replaced\n{}", log_tail());
    wait_ready(cp, name);
    serial_of(cp, name).expect("serial")
}

#[test]
fn a_revoked_certificate_is_in_a_crl_openssl_enforces_and_is_replaced_with_a_new_key() {
    let cp = control_plane();
    let (ca, ns) = ca_and_namespace(cp, "rev");
    let name = unique("rev");
    apply(
        cp,
        &cert_yaml(
            &name,
            &ca,
            &ns,
            "  profile: server\n  commonName: rev\n  dnsNames: [rev.example.com]\n",
        ),
    );
    wait_ready(cp, &name);
    let old_secret = secret(cp, &ns, &name).expect("secret");
    let old_leaf = leaf_of(&old_secret);
    assert_eq!(
        old_leaf.crl_distribution_points,
        vec![format!("http://certop.certop-system.svc/crl/{ca}.crl")],
        "issued certificates point at the CA's CRL"
    );

    let out = certop(cp, &["revoke", &name, "--reason", "keyCompromise"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let new_serial = wait_new_serial(cp, &name, &old_leaf.serial.to_string());
    let new_secret = secret(cp, &ns, &name).expect("secret");
    assert_ne!(
        data(&new_secret, "tls.key"),
        data(&old_secret, "tls.key"),
        "a new key"
    );
    assert_consistent(&new_secret);
    let c: ClusterCertificate = cert(cp, &name);
    let record = c
        .status
        .as_ref()
        .and_then(|s| s.last_revocation.clone())
        .expect("the status shows the revocation");
    assert_eq!(record.serial_number, old_leaf.serial.to_string());
    assert_eq!(
        condition(cp, &name, "Ready").map(|c| c.1),
        Some("Reissued".into())
    );
    wait_event(cp, &name, "Revoked");
    wait_event(cp, &name, "Reissued");

    let dir = tempfile::tempdir().expect("tmp");
    let ca_pem = data(
        &secret(cp, "certop-system", &format!("{ca}-ca")).expect("CA secret"),
        "tls.crt",
    );
    std::fs::write(dir.path().join("ca.crt"), &ca_pem).expect("write");
    let crl_der = fetch_crl(&ca);
    let serials = crl_serials(dir.path(), &crl_der);
    assert!(
        serials.contains(&old_leaf.serial.to_string()),
        "{serials:?}"
    );
    assert!(
        !serials.contains(&new_serial),
        "the replacement is not revoked"
    );

    let (status, head, pem) =
        http_request(&format!("{}/crl/{ca}.pem", operator().base_url), &[]).expect("pem");
    assert_eq!(status, 200, "{head}");
    std::fs::write(dir.path().join("crl.pem"), &pem).expect("write");
    std::fs::write(dir.path().join("crl.der"), &crl_der).expect("write");
    let etag = head
        .lines()
        .find_map(|l| {
            l.strip_prefix("etag: ")
                .or_else(|| l.strip_prefix("ETag: "))
        })
        .expect("an ETag")
        .to_string();
    assert!(head.to_lowercase().contains("last-modified:"), "{head}");
    let (not_modified, _, _) = http_request(
        &format!("{}/crl/{ca}.crl", operator().base_url),
        &[("If-None-Match", &etag)],
    )
    .expect("304");
    assert_eq!(not_modified, 304);

    let verified = Command::new("openssl")
        .args(["crl", "-verify", "-noout", "-inform", "DER", "-in"])
        .arg(dir.path().join("crl.der"))
        .arg("-CAfile")
        .arg(dir.path().join("ca.crt"))
        .output()
        .expect("openssl");
    assert!(
        String::from_utf8_lossy(&verified.stderr).contains("verify OK"),
        "{}",
        String::from_utf8_lossy(&verified.stderr)
    );

    let lint = Command::new(crate::support::pkilint("lint_crl"))
        .args(["lint", "-t", "CRL", "-p", "PKIX", "-s", "ERROR"])
        .arg(dir.path().join("crl.der"))
        .output()
        .expect("lint_crl");
    assert!(
        stdout(&lint).trim().is_empty(),
        "lint_crl found errors:\n{}",
        stdout(&lint)
    );

    for (which, secret_obj, expect_ok) in [
        ("revoked", &old_secret, false),
        ("replacement", &new_secret, true),
    ] {
        let leaf = dir.path().join(format!("{which}.pem"));
        std::fs::write(&leaf, leaf_of(secret_obj).to_pem()).expect("write");
        let v = Command::new("openssl")
            .args(["verify", "-crl_check", "-CAfile"])
            .arg(dir.path().join("ca.crt"))
            .arg("-CRLfile")
            .arg(dir.path().join("crl.pem"))
            .arg(&leaf)
            .output()
            .expect("openssl");
        let said = format!("{}{}", stdout(&v), stderr(&v));
        assert_eq!(v.status.success(), expect_ok, "{which}: {said}");
        if !expect_ok {
            assert!(said.contains("certificate revoked"), "{said}");
        }
    }

    let stored: ConfigMap = get(
        cp,
        &[
            "configmap",
            "-n",
            "certop-system",
            &format!("certop-crl-{}", ca_key(&ca)),
        ],
    )
    .expect("CRL ConfigMap");
    let stored_der = stored
        .binary_data
        .and_then(|b| b.get("crl.der").map(|v| v.0.clone()));
    assert!(stored_der.is_some(), "the CRL is stored in the cluster");
    // The CA's status follows its CRL (a debounced pass of the CA controller).
    let ca_status = || {
        get::<CertificateAuthority>(cp, &["certificateauthority", &ca])
            .and_then(|c| c.status)
            .expect("status")
    };
    assert!(
        wait_for(WAIT, || {
            let s = ca_status();
            s.crl_number.unwrap_or(0) >= 2 && s.revoked_certificates >= Some(1)
        }),
        "{:?}",
        ca_status()
    );
    let ca_status = ca_status();
    assert!(ca_status.crl_next_update > ca_status.crl_this_update);
    let metrics = crate::support::http_get(&operator().metrics_url).expect("metrics");
    assert!(
        metrics.contains(&format!("certop_crl_number{{name=\"{ca}\"}}")),
        "CRL metrics"
    );
    assert!(
        metrics.contains("certop_revocations_total{reason=\"keyCompromise\"}"),
        "revocation metrics"
    );
}

#[test]
fn a_dns_suffix_rule_revokes_old_and_current_matches_and_nothing_else() {
    let cp = control_plane();
    let (ca, ns) = ca_and_namespace(cp, "rule");
    let suffix = format!(".{}.test", unique("corp"));
    let names: Vec<String> = ["a", "b", "c"]
        .iter()
        .map(|p| unique(&format!("rule-{p}")))
        .collect();
    let dns = [
        format!("a{suffix}"),
        format!("b{suffix}"),
        "c.elsewhere.test".to_string(),
    ];
    for (n, d) in names.iter().zip(&dns) {
        apply(
            cp,
            &cert_yaml(
                n,
                &ca,
                &ns,
                &format!("  commonName: x\n  dnsNames: [{d}]\n"),
            ),
        );
        wait_ready(cp, n);
    }
    // a gets renewed: its first certificate is superseded but still valid.
    let a1 = serial_of(cp, &names[0]).expect("serial");
    std::thread::sleep(Duration::from_millis(1100));
    assert!(certop(cp, &["renew", &names[0]]).status.success());
    let a2 = wait_new_serial(cp, &names[0], &a1);
    let b1 = serial_of(cp, &names[1]).expect("serial");
    let c1 = serial_of(cp, &names[2]).expect("serial");
    std::thread::sleep(Duration::from_millis(1100));

    let rev = unique("suffix-rule");
    apply(
        cp,
        &format!(
            "apiVersion: certop.dev/v1\nkind: CertificateRevocation\nmetadata:\n  name: {rev}\nspec:\n  issuerRef: {{name: {ca}}}\n  reason: affiliationChanged\n  dnsNames: [\"{suffix}\"]\n"
        ),
    );
    let a3 = wait_new_serial(cp, &names[0], &a2);
    let b2 = wait_new_serial(cp, &names[1], &b1);
    let ok = wait_for(WAIT, || {
        get::<CertificateRevocation>(cp, &["certificaterevocation", &rev])
            .and_then(|r| r.status)
            .is_some_and(|s| s.revoked_certificates == Some(3))
    });
    assert!(ok, "the rule revokes exactly a1, a2 and b1\n{}", log_tail());
    let dir = tempfile::tempdir().expect("tmp");
    let listed = crl_serials(dir.path(), &fetch_crl(&ca));
    for s in [&a1, &a2, &b1] {
        assert!(listed.contains(s), "{s} must be revoked: {listed:?}");
    }
    for s in [&a3, &b2, &c1] {
        assert!(!listed.contains(s), "{s} must not be revoked: {listed:?}");
    }
    assert_eq!(
        serial_of(cp, &names[2]),
        Some(c1),
        "a certificate the rule does not match is left alone"
    );
    let table = stdout(&cp.kubectl(&["get", "certificaterevocation", &rev]));
    assert!(
        table.contains("affiliationChanged") && table.contains('3'),
        "{table}"
    );
}

#[test]
fn deleting_a_certificate_revokes_it_unless_told_not_to() {
    let cp = control_plane();
    let (ca, ns) = ca_and_namespace(cp, "delrev");
    let revoked = unique("bye");
    let kept = unique("keep");
    apply(cp, &cert_yaml(&revoked, &ca, &ns, "  commonName: bye\n"));
    apply(
        cp,
        &cert_yaml(
            &kept,
            &ca,
            &ns,
            "  commonName: keep\n  revokeOnDelete: false\n",
        ),
    );
    let s1 = wait_ready(cp, &revoked)
        .status
        .and_then(|s| s.serial_number)
        .expect("serial");
    let s2 = wait_ready(cp, &kept)
        .status
        .and_then(|s| s.serial_number)
        .expect("serial");
    for n in [&revoked, &kept] {
        assert!(
            cp.kubectl(&[
                "delete",
                "clustercertificate",
                n,
                "--wait=true",
                "--timeout=30s"
            ])
            .status
            .success()
        );
    }
    let dir = tempfile::tempdir().expect("tmp");
    let mut listed = BTreeSet::new();
    assert!(
        wait_for(WAIT, || {
            listed = crl_serials(dir.path(), &fetch_crl(&ca));
            listed.contains(&s1)
        }),
        "{s1} missing from {listed:?}"
    );
    assert!(
        !listed.contains(&s2),
        "revokeOnDelete: false keeps it off the CRL"
    );
    std::fs::write(dir.path().join("c.crl"), fetch_crl(&ca)).expect("write");
    let text = Command::new("openssl")
        .args(["crl", "-inform", "DER", "-noout", "-text", "-in"])
        .arg(dir.path().join("c.crl"))
        .output()
        .expect("openssl");
    assert!(
        stdout(&text).contains("Cessation Of Operation"),
        "{}",
        stdout(&text)
    );
}

#[test]
fn bad_revocations_are_refused_or_marked() {
    let cp = control_plane();
    operator();
    let yaml = |name: &str, body: &str| {
        format!(
            "apiVersion: certop.dev/v1\nkind: CertificateRevocation\nmetadata:\n  name: {name}\nspec:\n  issuerRef: {{name: some-ca}}\n{body}"
        )
    };
    let refused = [
        (
            "",
            "match something: set serialNumbers, organizations, dnsNames, ipAddresses, certificateSHA256s, certificates or uris",
        ),
        (
            "  reason: stolen\n  serialNumbers: [ab]\n",
            "Unsupported value: \"stolen\"",
        ),
        ("  serialNumbers: [not-hex]\n", "spec.serialNumbers[0]"),
        (
            "  ipAddresses: [999.1.1.1]\n",
            "each of ipAddresses must be an IPv4 or IPv6 address",
        ),
    ];
    for (body, expected) in refused {
        let out = cp.kubectl_stdin(&["apply", "-f", "-"], &yaml(&unique("badrev"), body));
        assert!(!out.status.success(), "{body:?} was accepted");
        assert!(
            stderr(&out).contains(expected),
            "{:?} should contain {expected:?}",
            stderr(&out)
        );
    }
    let name = unique("orphan");
    apply(cp, &yaml(&name, "  serialNumbers: [abcd]\n"));
    let ok = wait_for(WAIT, || {
        get::<CertificateRevocation>(cp, &["certificaterevocation", &name])
            .and_then(|r| r.status)
            .and_then(|s| s.conditions.into_iter().find(|c| c.type_ == "Ready"))
            .is_some_and(|c| {
                c.status == "False" && c.reason == "IssuerNotFound" && c.message.contains("some-ca")
            })
    });
    assert!(ok, "{}", log_tail());
    let changed = cp.kubectl(&[
        "patch",
        "certificaterevocation",
        &name,
        "--type=merge",
        "-p",
        r#"{"spec":{"serialNumbers":["ef"]}}"#,
    ]);
    assert!(
        !changed.status.success() && stderr(&changed).contains("cannot be changed"),
        "{}",
        stderr(&changed)
    );
}

/// The CA key certop uses to name its ledger and CRL ConfigMaps.
fn ca_key(ca: &str) -> String {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, ca.as_bytes());
    d.as_ref()[..6].iter().map(|b| format!("{b:02x}")).collect()
}

/// A TLS etcd (from tests/control-plane) started with certop's serving
/// certificate, its CA as the client CA and its CRL as --client-crl-file.
struct TlsEtcd {
    url: String,
    _child: std::process::Child,
}

fn start_tls_etcd(dir: &Path) -> TlsEtcd {
    use std::io::BufRead;
    let mut child = Command::new(crate::support::control_plane_binary())
        .arg("etcd")
        .arg("--cert-file")
        .arg(dir.join("server.crt"))
        .arg("--key-file")
        .arg(dir.join("server.key"))
        .arg("--client-ca-file")
        .arg(dir.join("ca.crt"))
        .arg("--client-crl-file")
        .arg(dir.join("crl.der"))
        .arg("--exit-with-stdin")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(dir.join("etcd.log")).expect("log"))
        .spawn()
        .expect("start etcd");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("read");
    let url = line
        .trim()
        .strip_prefix("etcd ready: url=")
        .unwrap_or_else(|| panic!("etcd said {line:?}"))
        .to_string();
    TlsEtcd { url, _child: child }
}

/// Whether etcd answers `/version` to a client with this certificate.
fn etcd_accepts(etcd: &TlsEtcd, dir: &Path, client: &str) -> bool {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "5", "--cacert"])
        .arg(dir.join("ca.crt"))
        .arg("--cert")
        .arg(dir.join(format!("{client}.crt")))
        .arg("--key")
        .arg(dir.join(format!("{client}.key")))
        .arg(format!("{}/version", etcd.url))
        .output()
        .expect("curl");
    out.status.success() && stdout(&out).contains("etcdserver")
}

fn write_pair(cp: &ControlPlane, ns: &str, name: &str, dir: &Path, as_name: &str) {
    let s = secret(cp, ns, name).expect("secret");
    std::fs::write(dir.join(format!("{as_name}.crt")), data(&s, "tls.crt")).expect("write");
    std::fs::write(dir.join(format!("{as_name}.key")), data(&s, "tls.key")).expect("write");
}

/// Brings the CRL file up to date as a node does: `certop pki crl-sync`
/// from the URL certop serves, checked against the CA, replaced whole.
/// Returns what it printed.
fn refresh_crl_file(ca: &str, dir: &Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_certop"))
        .args(["pki", "crl-sync", "--url"])
        .arg(format!("{}/crl/{ca}.crl", operator().base_url))
        .arg("--ca")
        .arg(dir.join("ca.crt"))
        .arg("--out")
        .arg(dir.join("crl.der"))
        .output()
        .expect("certop pki crl-sync");
    assert!(out.status.success(), "crl-sync: {}", stderr(&out));
    stdout(&out)
}

#[test]
fn etcd_refuses_a_client_certop_revoked_and_accepts_its_replacement() {
    let cp = control_plane();
    let (ca, ns) = ca_and_namespace(cp, "etcdrev");
    let (other_ca, _) = ca_and_namespace(cp, "etcdother");
    // etcd's clients are components' identities: a policy names them.
    let etcd_identities = "    profiles: [etcd-server, kube-apiserver-etcd-client, etcd-healthcheck-client]\n    commonNames: [etcd-0, kube-apiserver-etcd-client, kube-etcd-healthcheck-client]\n    dnsNames: [etcd-0, localhost]\n    ipAddresses: [127.0.0.1/32, \"::1/128\"]\n";
    let policy = policy_for(cp, &ca, etcd_identities);
    let other_policy = policy_for(cp, &other_ca, etcd_identities);
    let server = unique("etcd-server");
    let client = unique("apiserver-etcd-client");
    let health = unique("healthcheck");
    let stranger = unique("stranger");
    apply(
        cp,
        &cert_yaml(
            &server,
            &ca,
            &ns,
            &format!("  profile: etcd-server\n  nodeName: etcd-0\n{policy}"),
        ),
    );
    apply(
        cp,
        &cert_yaml(
            &client,
            &ca,
            &ns,
            &format!("  profile: kube-apiserver-etcd-client\n{policy}"),
        ),
    );
    apply(
        cp,
        &cert_yaml(
            &health,
            &ca,
            &ns,
            &format!("  profile: etcd-healthcheck-client\n{policy}"),
        ),
    );
    apply(
        cp,
        &cert_yaml(
            &stranger,
            &other_ca,
            &ns,
            &format!("  profile: kube-apiserver-etcd-client\n{other_policy}"),
        ),
    );
    for n in [&server, &client, &health, &stranger] {
        wait_ready(cp, n);
    }
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    write_pair(cp, &ns, &server, d, "server");
    write_pair(cp, &ns, &client, d, "client");
    write_pair(cp, &ns, &health, d, "health");
    write_pair(cp, &ns, &stranger, d, "stranger");
    std::fs::write(
        d.join("ca.crt"),
        data(&secret(cp, &ns, &server).expect("secret"), "ca.crt"),
    )
    .expect("write");
    assert!(refresh_crl_file(&ca, d).contains("written"));
    assert!(
        refresh_crl_file(&ca, d).contains("is current"),
        "a second sync with nothing new leaves the file"
    );
    let etcd = start_tls_etcd(d);

    assert!(
        etcd_accepts(&etcd, d, "client"),
        "etcd accepts certop's apiserver-etcd-client certificate"
    );
    assert!(
        etcd_accepts(&etcd, d, "health"),
        "and its healthcheck-client certificate"
    );
    assert!(
        !etcd_accepts(&etcd, d, "stranger"),
        "a certificate from another CA is refused"
    );

    std::fs::rename(d.join("client.crt"), d.join("old-client.crt")).expect("rename");
    std::fs::rename(d.join("client.key"), d.join("old-client.key")).expect("rename");
    let old = serial_of(cp, &client).expect("serial");
    let out = certop(cp, &["revoke", &client, "--reason", "keyCompromise"]);
    assert!(out.status.success(), "{}", stderr(&out));
    wait_new_serial(cp, &client, &old);
    assert!(
        wait_for(WAIT, || crl_serials(d, &fetch_crl(&ca)).contains(&old)),
        "the CRL lists {old}"
    );
    assert!(refresh_crl_file(&ca, d).contains("written"));
    write_pair(cp, &ns, &client, d, "client");

    assert!(
        !etcd_accepts(&etcd, d, "old-client"),
        "etcd refuses the revoked client certificate"
    );
    assert!(
        etcd_accepts(&etcd, d, "client"),
        "and accepts its replacement"
    );
    assert!(
        etcd_accepts(&etcd, d, "health"),
        "and still the certificates nobody revoked"
    );
}

/// The CRL certop stores for a CA (DER, as the ConfigMap holds it) and its
/// number annotation, if the ConfigMap is there.
fn stored_crl(cp: &ControlPlane, ca: &str) -> Option<(Vec<u8>, u64)> {
    let cm: ConfigMap = get(
        cp,
        &[
            "configmap",
            "-n",
            "certop-system",
            &format!("certop-crl-{}", ca_key(ca)),
        ],
    )?;
    let number = cm
        .metadata
        .annotations
        .as_ref()?
        .get("certop.dev/crl-number")?
        .parse()
        .ok()?;
    Some((cm.binary_data?.get("crl.der")?.0.clone(), number))
}

/// The issue's case on a real control plane: the ledger shard of a
/// keyCompromise serial is corrupted with kubectl and the CRL ConfigMap
/// deleted; the CRL certop publishes again still lists the serial (as
/// openssl reads it), with a higher number.
#[test]
fn a_revoked_serial_outlives_a_corrupt_ledger_shard_and_a_deleted_crl() {
    let cp = control_plane();
    let (ca, ns) = ca_and_namespace(cp, "keep");
    let name = unique("keep");
    apply(
        cp,
        &cert_yaml(
            &name,
            &ca,
            &ns,
            "  commonName: keep\n  dnsNames: [keep.example.com]\n",
        ),
    );
    wait_ready(cp, &name);
    let old = serial_of(cp, &name).expect("serial");
    let out = certop(cp, &["revoke", &name, "--reason", "keyCompromise"]);
    assert!(out.status.success(), "{}", stderr(&out));
    wait_new_serial(cp, &name, &old);
    let dir = tempfile::tempdir().expect("tmp");
    let listed = |min: u64| {
        stored_crl(cp, &ca)
            .filter(|(_, n)| *n >= min)
            .map(|(der, n)| (crl_serials(dir.path(), &der), n))
    };
    assert!(
        wait_for(WAIT, || listed(0).is_some_and(|(s, _)| s.contains(&old))),
        "listed at first\n{}",
        log_tail()
    );
    let (_, before) = listed(0).expect("CRL");

    let shard = format!(
        "certop-ledger-{}-{:02}",
        ca_key(&ca),
        certop::core::ledger::shard_of(&old)
    );
    let patched = cp.kubectl(&[
        "-n",
        "certop-system",
        "patch",
        "configmap",
        &shard,
        "--type=merge",
        "-p",
        r#"{"data":{"entries.json":"{not json"}}"#,
    ]);
    assert!(patched.status.success(), "{}", stderr(&patched));
    let deleted = cp.kubectl(&[
        "-n",
        "certop-system",
        "delete",
        "configmap",
        &format!("certop-crl-{}", ca_key(&ca)),
    ]);
    assert!(deleted.status.success(), "{}", stderr(&deleted));
    assert!(
        wait_for(WAIT, || listed(before + 1).is_some()),
        "the CRL was not published again\n{}",
        log_tail()
    );
    let (serials, number) = listed(before + 1).expect("CRL");
    assert!(number > before);
    assert!(
        serials.contains(&old),
        "{old} left the CRL: {serials:?}\n{}",
        log_tail()
    );
}
