//! `kubectl certop backup` on one control plane, `kubectl certop restore`
//! into a second, empty one where certop runs: the same CA key, no
//! certificate issued again, the revocation still in a CRL whose number
//! only grew. The file opens with the real `age` command; a wrong
//! passphrase or identity writes nothing.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use certop::api::{CertificateAuthority, ClusterCertificate};
use k8s_openapi::api::core::v1::Secret;

use crate::objects::{apply, ca_yaml, cert_yaml, condition, data, get, secret};
use crate::support::{
    ControlPlane, Operator, crl_serials, http_request, start_control_plane, stderr, stdout,
    wait_for,
};

const CA: &str = "bk-ca";
const NS: &str = "bk-apps";
const WAIT: Duration = Duration::from_secs(60);

fn ready(cp: &ControlPlane, op: &Operator, name: &str) -> ClusterCertificate {
    let ok = wait_for(WAIT, || {
        condition(cp, name, "Ready").is_some_and(|(s, _, _)| s == "True")
    });
    assert!(
        ok,
        "{name} not Ready: {:?}\n{}",
        condition(cp, name, "Ready"),
        op.log_text()
    );
    get(cp, &["clustercertificate", name]).expect("certificate")
}

fn ca(cp: &ControlPlane) -> Option<CertificateAuthority> {
    get(cp, &["certificateauthority", CA])
}

fn ca_ready(cp: &ControlPlane, op: &Operator) -> CertificateAuthority {
    let ok = wait_for(WAIT, || {
        ca(cp).and_then(|c| c.status).is_some_and(|s| {
            s.conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
        })
    });
    assert!(ok, "CA not Ready\n{}", op.log_text());
    ca(cp).expect("CA")
}

fn crl_number(ca: &CertificateAuthority) -> u64 {
    let n = ca.status.as_ref().and_then(|s| s.crl_number).unwrap_or(0);
    u64::try_from(n).unwrap_or(0)
}

fn serial(c: &ClusterCertificate) -> String {
    c.status
        .as_ref()
        .and_then(|s| s.serial_number.clone())
        .expect("serial")
}

/// The CRL the operator serves: its number (by openssl) and serials.
fn served_crl(op: &Operator, dir: &Path) -> (u64, std::collections::BTreeSet<String>) {
    let (status, head, der) =
        http_request(&format!("{}/crl/{CA}.crl", op.base_url), &[]).expect("GET CRL");
    assert_eq!(status, 200, "{head}");
    let path = dir.join("number.crl");
    std::fs::write(&path, &der).expect("write");
    let text = Command::new("openssl")
        .args(["crl", "-inform", "DER", "-noout", "-crlnumber", "-in"])
        .arg(&path)
        .output()
        .expect("openssl");
    let number = stdout(&text)
        .trim()
        .strip_prefix("crlNumber=")
        .and_then(|h| u64::from_str_radix(h.trim_start_matches("0x"), 16).ok())
        .unwrap_or_else(|| panic!("no CRL number: {}", stdout(&text)));
    (number, crl_serials(dir, &der))
}

/// What must survive: the CA key and every certificate Secret, by content.
fn pki_state(cp: &ControlPlane) -> BTreeMap<String, Vec<u8>> {
    let mut state = BTreeMap::new();
    let key: Secret = secret(cp, "certop-system", &format!("{CA}-ca")).expect("CA key");
    state.insert("ca tls.key".into(), data(&key, "tls.key"));
    state.insert("ca tls.crt".into(), data(&key, "tls.crt"));
    for name in ["bk-web", "bk-api"] {
        let s = secret(cp, NS, name).expect("certificate Secret");
        state.insert(format!("{name} tls.crt"), data(&s, "tls.crt"));
        state.insert(format!("{name} tls.key"), data(&s, "tls.key"));
    }
    state
}

fn certop_objects(cp: &ControlPlane) -> String {
    let out = cp.kubectl(&[
        "get",
        "certificateauthorities,clustercertificates,certificaterevocations,certificatepolicies",
        "-o",
        "name",
    ]);
    let secrets = cp.kubectl(&[
        "get",
        "secrets,configmaps",
        "-A",
        "-l",
        "app.kubernetes.io/managed-by=certop",
        "-o",
        "name",
    ]);
    format!("{}{}", stdout(&out), stdout(&secrets))
}

fn write(dir: &Path, name: &str, content: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, content).expect("write");
    path.to_str().expect("utf-8").to_string()
}

fn age_keygen(dir: &Path, name: &str) -> (String, String) {
    let path = dir.join(name);
    let out = Command::new("age-keygen")
        .arg("-o")
        .arg(&path)
        .output()
        .expect("age-keygen (Debian package age)");
    assert!(out.status.success(), "{}", stderr(&out));
    let text = std::fs::read_to_string(&path).expect("identity");
    let public = text
        .lines()
        .find_map(|l| l.strip_prefix("# public key: "))
        .expect("public key")
        .to_string();
    (path.to_str().expect("utf-8").to_string(), public)
}

#[test]
fn a_restored_pki_resumes_with_the_same_keys_and_certificates_and_a_higher_crl_number() {
    let dir = tempfile::tempdir().expect("tmp");
    let source = start_control_plane(&[]);
    source.install_rbac();
    let op = source.start_operator("backup-source", &[]);
    assert!(
        source
            .kubectl(&["create", "namespace", NS])
            .status
            .success()
    );
    apply(&source, &ca_yaml(CA, ""));
    ca_ready(&source, &op);
    let names = |n: &str| format!("  dnsNames: [{n}.backup.example]\n");
    apply(&source, &cert_yaml("bk-web", CA, NS, &names("web")));
    apply(&source, &cert_yaml("bk-api", CA, NS, &names("api")));
    // One of each kind: a policy (of another CA, so it governs nothing
    // here) and a revocation by name without issuedBefore: it covers what
    // was issued before it was created, not the replacement it causes.
    apply(
        &source,
        "apiVersion: certop.dev/v1\nkind: CertificatePolicy\nmetadata:\n  name: bk-policy\nspec:\n  authorities: [bk-other-ca]\n  allowed:\n    dnsNames: ['*.other.example']\n",
    );
    let revoked = serial(&ready(&source, &op, "bk-api"));
    ready(&source, &op, "bk-web");
    // A rule covers certificates issued before the second it was created in.
    std::thread::sleep(Duration::from_millis(1100));
    apply(
        &source,
        &format!(
            "apiVersion: certop.dev/v1\nkind: CertificateRevocation\nmetadata:\n  name: bk-api-name\nspec:\n  issuerRef: {{name: {CA}}}\n  dnsNames: [api.backup.example]\n  reason: keyCompromise\n"
        ),
    );
    let replaced = wait_for(WAIT, || {
        get::<ClusterCertificate>(&source, &["clustercertificate", "bk-api"])
            .and_then(|c| c.status?.serial_number)
            .is_some_and(|s| s != revoked)
    });
    assert!(replaced, "bk-api was not replaced\n{}", op.log_text());
    ready(&source, &op, "bk-api");
    let listed = wait_for(WAIT, || served_crl(&op, dir.path()).1.contains(&revoked));
    assert!(listed, "the revoked serial never reached the CRL");
    let before = pki_state(&source);
    let serials_before: Vec<String> = ["bk-web", "bk-api"]
        .iter()
        .map(|n| serial(&get(&source, &["clustercertificate", n]).expect("cert")))
        .collect();
    // The CA's status names a CRL one write after certop serves it: the
    // backup is taken once the status has caught up with what is served.
    let (number_before, _) = served_crl(&op, dir.path());
    let caught_up = wait_for(WAIT, || {
        ca(&source).is_some_and(|c| crl_number(&c) >= number_before)
    });
    assert!(
        caught_up,
        "the CA's status never named CRL {number_before}\n{}",
        op.log_text()
    );
    let ca_before = ca(&source).expect("CA");

    let passphrase = write(dir.path(), "passphrase", "correct horse battery\n");
    let file = dir.path().join("pki.age");
    let file = file.to_str().expect("utf-8");
    let out = source.kubectl_certop(&["backup", "--out", file, "--passphrase-file", &passphrase]);
    assert!(out.status.success(), "backup: {}", stderr(&out));
    assert!(
        stdout(&out).contains("1 CA key Secrets"),
        "{}",
        stdout(&out)
    );
    let again = source.kubectl_certop(&["backup", "--out", file, "--passphrase-file", &passphrase]);
    assert!(
        !again.status.success() && stderr(&again).contains("refusing to overwrite"),
        "{}",
        stderr(&again)
    );
    let (identity, recipient) = age_keygen(dir.path(), "key.txt");
    let to_key = dir.path().join("pki-key.age");
    let to_key = to_key.to_str().expect("utf-8");
    let out = source.kubectl_certop(&["backup", "--out", to_key, "--recipient", &recipient]);
    assert!(out.status.success(), "backup: {}", stderr(&out));
    op.stop();

    // Nothing readable on disk; the file is the owner's only.
    for f in [file, to_key] {
        let bytes = std::fs::read(f).expect("backup");
        assert!(bytes.starts_with(b"age-encryption.org/v1\n"), "an age file");
        assert!(!bytes.windows(11).any(|w| w == b"PRIVATE KEY"));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(f).expect("meta").permissions().mode();
        assert_eq!(mode & 0o077, 0, "{f} is readable by others: {mode:o}");
    }
    // The real age command opens it to the documented document.
    let decrypted = Command::new("age")
        .args(["-d", "-i", &identity, to_key])
        .output()
        .expect("age (Debian package age)");
    assert!(decrypted.status.success(), "age -d: {}", stderr(&decrypted));
    let doc: serde_json::Value = serde_json::from_slice(&decrypted.stdout).expect("JSON");
    assert_eq!(doc["format"], "certop.dev/backup");
    assert_eq!(doc["version"], 1);
    assert_eq!(doc["namespace"], "certop-system");
    for (field, count) in [
        ("caKeySecrets", 1),
        ("certificateAuthorities", 1),
        ("certificateSecrets", 2),
        ("clusterCertificates", 2),
        ("certificateRevocations", 1),
        ("certificatePolicies", 1),
    ] {
        assert_eq!(doc[field].as_array().map(Vec::len), Some(count), "{field}");
    }
    assert!(
        !doc["ledgerConfigMaps"]
            .as_array()
            .expect("ledger")
            .is_empty()
    );
    assert!(!doc["crlConfigMaps"].as_array().expect("crl").is_empty());
    assert!(doc["caKeySecrets"][0]["metadata"].get("uid").is_none());

    let target = start_control_plane(&[]);
    target.install_rbac();
    // Running while restore writes: it must never see a CA without its
    // key or a certificate without its Secret.
    let op = target.start_operator("backup-target", &[]);
    let empty = certop_objects(&target);
    let refused = |args: &[&str], says: &str| {
        let out = target.kubectl_certop(args);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(stderr(&out).contains(says), "{args:?}: {}", stderr(&out));
        assert_eq!(certop_objects(&target), empty, "{args:?} wrote something");
    };
    let wrong = write(dir.path(), "wrong", "correct horse battery!\n");
    refused(
        &["restore", file, "--passphrase-file", &wrong],
        "wrong passphrase",
    );
    let (other, _) = age_keygen(dir.path(), "other.txt");
    refused(
        &["restore", to_key, "--identity", &other],
        "no identity in the identity file opens this backup",
    );
    refused(
        &["restore", file, "--identity", &identity],
        "restore it with --passphrase-file",
    );
    refused(
        &["restore", file, "--passphrase-file", &passphrase],
        &format!("namespace {NS} does not exist"),
    );
    assert!(
        target
            .kubectl(&["create", "namespace", NS])
            .status
            .success()
    );
    let out = target.kubectl_certop(&["restore", file, "--passphrase-file", &passphrase]);
    assert!(out.status.success(), "restore: {}", stderr(&out));
    // The order it wrote in (the operator's race is too short to lose
    // reliably, so the order is read from what restore says it did).
    let said = stdout(&out);
    let at = |what: &str| {
        said.find(&format!("created {what}"))
            .unwrap_or_else(|| panic!("{what} not created:\n{said}"))
    };
    let ca_at = at(&format!("CertificateAuthority {CA}"));
    assert!(
        at(&format!("Secret certop-system/{CA}-ca")) < ca_at,
        "{said}"
    );
    assert!(
        at("ConfigMap certop-system/certop-ledger-") < ca_at,
        "{said}"
    );
    assert!(at("ConfigMap certop-system/certop-crl-") < ca_at, "{said}");
    for name in ["bk-web", "bk-api"] {
        assert!(
            at(&format!("Secret {NS}/{name}")) < at(&format!("ClusterCertificate {name}")),
            "{said}"
        );
        assert!(ca_at < at(&format!("ClusterCertificate {name}")), "{said}");
    }
    let again = target.kubectl_certop(&["restore", file, "--passphrase-file", &passphrase]);
    assert!(again.status.success(), "restore again: {}", stderr(&again));
    assert!(stdout(&again).contains(": 0 created"), "{}", stdout(&again));
    let restored_ca = ca(&target).expect("CA restored");
    assert_eq!(
        restored_ca
            .status
            .as_ref()
            .and_then(|s| s.fingerprint.clone()),
        ca_before
            .status
            .as_ref()
            .and_then(|s| s.fingerprint.clone()),
        "the CA's status is restored"
    );

    ca_ready(&target, &op);
    ready(&target, &op, "bk-web");
    ready(&target, &op, "bk-api");
    // Give a wrong decision time to show (a new key, a re-issue).
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(
        pki_state(&target),
        before,
        "the same CA key and certificates"
    );
    let serials_after: Vec<String> = ["bk-web", "bk-api"]
        .iter()
        .map(|n| serial(&get(&target, &["clustercertificate", n]).expect("cert")))
        .collect();
    assert_eq!(serials_after, serials_before, "nothing was issued again");
    let key_secrets = target.kubectl(&[
        "get",
        "secrets",
        "-n",
        "certop-system",
        "-l",
        "app.kubernetes.io/managed-by=certop",
        "-o",
        "name",
    ]);
    assert_eq!(
        stdout(&key_secrets).trim(),
        format!("secret/{CA}-ca"),
        "no second CA key"
    );
    let (served, listed) = served_crl(&op, dir.path());
    assert!(
        served >= number_before,
        "the CRL number went back: {served} < {number_before}"
    );
    assert!(listed.contains(&revoked), "{listed:?}");

    // A revocation after the restore: a CRL with a number never used
    // before, still listing the revocation made before the backup.
    let web = serials_before[0].clone();
    let out = target.kubectl_certop(&["revoke", "bk-web", "--reason", "superseded"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let republished = wait_for(WAIT, || {
        let (n, s) = served_crl(&op, dir.path());
        n > number_before && s.contains(&web)
    });
    assert!(
        republished,
        "no new CRL after the restore\n{}",
        op.log_text()
    );
    let (number_after, listed) = served_crl(&op, dir.path());
    assert!(listed.contains(&revoked), "{listed:?}");
    println!(
        "CRL number {number_before} before the backup, {number_after} after a revocation on the restored cluster"
    );
}
