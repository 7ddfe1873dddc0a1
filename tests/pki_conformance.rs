//! The offline commands checked by verifiers certop did not write:
//! `openssl verify` for every issued chain, `openssl crl` for CRLs, and
//! pkilint's RFC 5280 linters for CAs, every profile's leaf and a CRL.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failed step should panic

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use certop::pki::{
    Authority, CrlRequest, RevocationReason, RevokedEntry, build_crl, parse_pem_certificate,
};
use chrono::{Duration, Utc};

fn certop(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_certop"))
        .args(args)
        .output()
        .expect("run certop")
}

fn ok(out: Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

/// pkilint's binaries: from PKILINT_BIN (set by `make test`) or `.venv/bin`.
fn pkilint(tool: &str) -> PathBuf {
    let dir = std::env::var_os("PKILINT_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin"));
    let bin = dir.join(tool);
    assert!(
        bin.exists(),
        "{} not found: run `make venv` (or `make test`), which installs pkilint",
        bin.display()
    );
    bin
}

/// Findings at ERROR or above, as (code, message), less the allowed ones.
fn lint_errors(
    tool: &str,
    extra: &[&str],
    file: &Path,
    allowed: &[(&str, &str)],
) -> Vec<(String, String)> {
    let out = run(Command::new(pkilint(tool))
        .arg("lint")
        .args(extra)
        .args(["-s", "ERROR", "-f", "JSON"])
        .arg(file));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{tool} printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let mut errors = Vec::new();
    for result in report["results"].as_array().into_iter().flatten() {
        for f in result["finding_descriptions"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let code = f["code"].as_str().unwrap_or_default().to_string();
            let message = f["message"].as_str().unwrap_or_default().to_string();
            if !allowed
                .iter()
                .any(|(c, m)| *c == code && message.contains(m))
            {
                errors.push((code, message));
            }
        }
    }
    errors
}

fn openssl_verify(ca: &Path, leaf: &Path, extra: &[&str]) -> Output {
    run(Command::new("openssl")
        .arg("verify")
        .args(extra)
        .arg("-CAfile")
        .arg(ca)
        .arg(leaf))
}

/// Writes the leaf (first certificate of tls.crt) alone, for tools that
/// read one certificate.
fn leaf_only(dir: &Path) -> PathBuf {
    let chain = std::fs::read(dir.join("tls.crt")).expect("tls.crt");
    let leaf = parse_pem_certificate(&chain, "tls.crt").expect("leaf");
    let path = dir.join("leaf.pem");
    std::fs::write(&path, leaf.to_pem()).expect("write leaf");
    path
}

const NODE: &str = "cp-1.nodes.example.internal";

/// Single-label names that Kubernetes components require in their
/// certificates (kubeadm puts the same ones in), which pkilint's preferred
/// name syntax check flags. Nothing else is allowed.
const KUBERNETES_SINGLE_LABEL_NAMES: [(&str, &str); 2] = [
    ("pkix.invalid_domain_name_syntax", "\"kubernetes\""),
    ("pkix.invalid_domain_name_syntax", "\"localhost\""),
];

fn manifest(profile: &str) -> String {
    let extra = match profile {
        "server" => "  commonName: web\n  dnsNames: [web.example.com]\n",
        "client" => "  commonName: robot\n  organizations: [robots]\n",
        _ => "",
    };
    format!(
        "apiVersion: certop.dev/v1\nkind: ClusterCertificate\nmetadata:\n  name: {profile}\nspec:\n  issuerRef: {{name: cluster}}\n  secretName: {profile}\n  secretNamespace: kube-system\n  profile: {profile}\n  nodeName: {NODE}\n  advertiseAddress: 192.0.2.10\n{extra}"
    )
}

const PROFILES: [&str; 15] = [
    "kube-apiserver",
    "kube-apiserver-kubelet-client",
    "kube-apiserver-etcd-client",
    "front-proxy-client",
    "etcd-server",
    "etcd-peer",
    "etcd-healthcheck-client",
    "admin",
    "super-admin",
    "controller-manager",
    "scheduler",
    "kubelet-client",
    "kubelet-serving",
    "server",
    "client",
];

#[test]
fn cas_of_every_algorithm_pass_the_rfc5280_linter() {
    let tmp = tempfile::tempdir().expect("tmp");
    for alg in [
        "ECDSA-P256",
        "ECDSA-P384",
        "Ed25519",
        "RSA-2048",
        "RSA-3072",
        "RSA-4096",
    ] {
        let dir = tmp.path().join(alg);
        let d = dir.to_str().expect("utf-8 path");
        ok(
            certop(&[
                "pki",
                "ca",
                "create",
                "--name",
                &format!("{alg} CA"),
                "--out",
                d,
                "--algorithm",
                alg,
            ]),
            "ca create",
        );
        let errors = lint_errors("lint_pkix_cert", &[], &dir.join("ca.crt"), &[]);
        assert!(errors.is_empty(), "{alg} CA: {errors:?}");
        let v = openssl_verify(&dir.join("ca.crt"), &dir.join("ca.crt"), &[]);
        assert!(
            v.status.success(),
            "{alg}: openssl rejects the self-signed CA: {}",
            String::from_utf8_lossy(&v.stderr)
        );
    }
}

#[test]
fn every_profile_verifies_with_openssl_and_passes_the_rfc5280_linter() {
    let tmp = tempfile::tempdir().expect("tmp");
    let ca = tmp.path().join("ca");
    ok(
        certop(&[
            "pki",
            "ca",
            "create",
            "--name",
            "cluster CA",
            "--out",
            ca.to_str().expect("utf-8"),
        ]),
        "ca create",
    );
    for profile in PROFILES {
        let manifest_path = tmp.path().join(format!("{profile}.yaml"));
        std::fs::write(&manifest_path, manifest(profile)).expect("write manifest");
        let out = tmp.path().join(profile);
        ok(
            certop(&[
                "pki",
                "issue",
                "--ca",
                ca.to_str().expect("utf-8"),
                "-f",
                manifest_path.to_str().expect("utf-8"),
                "--out",
                out.to_str().expect("utf-8"),
            ]),
            profile,
        );
        let leaf = leaf_only(&out);
        let v = openssl_verify(&ca.join("ca.crt"), &out.join("tls.crt"), &[]);
        assert!(
            v.status.success(),
            "{profile}: openssl verify: {}",
            String::from_utf8_lossy(&v.stderr)
        );
        let purpose = if [
            "kube-apiserver",
            "etcd-server",
            "etcd-peer",
            "kubelet-serving",
            "server",
        ]
        .contains(&profile)
        {
            "sslserver"
        } else {
            "sslclient"
        };
        let v = openssl_verify(&ca.join("ca.crt"), &leaf, &["-purpose", purpose]);
        assert!(
            v.status.success(),
            "{profile}: openssl -purpose {purpose}: {}",
            String::from_utf8_lossy(&v.stderr)
        );
        let errors = lint_errors("lint_pkix_cert", &[], &leaf, &KUBERNETES_SINGLE_LABEL_NAMES);
        assert!(errors.is_empty(), "{profile}: {errors:?}");
        let mode = std::fs::metadata(out.join("tls.key"))
            .expect("key")
            .permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o600,
            "{profile}: tls.key mode"
        );
    }
}

#[test]
fn a_crl_passes_openssl_and_the_linter_and_openssl_rejects_what_it_revokes() {
    let tmp = tempfile::tempdir().expect("tmp");
    let ca_dir = tmp.path().join("ca");
    ok(
        certop(&[
            "pki",
            "ca",
            "create",
            "--name",
            "crl CA",
            "--out",
            ca_dir.to_str().expect("utf-8"),
        ]),
        "ca create",
    );
    let manifest_path = tmp.path().join("server.yaml");
    std::fs::write(&manifest_path, manifest("server")).expect("manifest");
    let mut leaves = Vec::new();
    for name in ["revoked", "kept"] {
        let out = tmp.path().join(name);
        ok(
            certop(&[
                "pki",
                "issue",
                "--ca",
                ca_dir.to_str().expect("utf-8"),
                "-f",
                manifest_path.to_str().expect("utf-8"),
                "--out",
                out.to_str().expect("utf-8"),
            ]),
            name,
        );
        leaves.push(leaf_only(&out));
    }
    let ca = Authority::load(
        &std::fs::read(ca_dir.join("ca.crt")).expect("ca.crt"),
        &std::fs::read(ca_dir.join("ca.key")).expect("ca.key"),
        Utc::now(),
    )
    .expect("load CA");
    let revoked =
        parse_pem_certificate(&std::fs::read(&leaves[0]).expect("leaf"), "leaf").expect("parse");
    let now = Utc::now();
    let entries = [RevokedEntry {
        serial: revoked.serial.clone(),
        revoked_at: now,
        reason: RevocationReason::KeyCompromise,
        not_after: revoked.not_after,
    }];
    let crl = build_crl(
        &ca,
        &CrlRequest {
            number: 7,
            this_update: now,
            next_update: now + Duration::hours(24),
            entries: &entries,
        },
    )
    .expect("CRL");
    let der_path = tmp.path().join("crl.der");
    let pem_path = tmp.path().join("crl.pem");
    std::fs::write(&der_path, &crl.der).expect("write");
    std::fs::write(&pem_path, &crl.pem).expect("write");

    let check = run(Command::new("openssl")
        .args(["crl", "-verify", "-inform", "DER", "-noout", "-text", "-in"])
        .arg(&der_path)
        .arg("-CAfile")
        .arg(ca_dir.join("ca.crt")));
    let text = String::from_utf8_lossy(&check.stdout);
    assert!(
        check.status.success(),
        "openssl crl: {}",
        String::from_utf8_lossy(&check.stderr)
    );
    assert!(
        String::from_utf8_lossy(&check.stderr).contains("verify OK"),
        "openssl crl -CAfile must verify the signature"
    );
    assert!(
        text.contains("X509v3 CRL Number") && text.contains("Key Compromise"),
        "{text}"
    );
    assert!(
        text.to_lowercase().contains(&revoked.serial.to_string()),
        "serial listed: {text}"
    );

    let errors = lint_errors("lint_crl", &["-t", "CRL", "-p", "PKIX"], &der_path, &[]);
    assert!(errors.is_empty(), "lint_crl: {errors:?}");

    let crl_check = |leaf: &Path| {
        openssl_verify(
            &ca_dir.join("ca.crt"),
            leaf,
            &["-crl_check", "-CRLfile", pem_path.to_str().expect("utf-8")],
        )
    };
    let rejected = crl_check(&leaves[0]);
    assert!(
        !rejected.status.success(),
        "a revoked certificate must fail -crl_check"
    );
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&rejected.stdout),
        String::from_utf8_lossy(&rejected.stderr)
    );
    assert!(said.contains("certificate revoked"), "{said}");
    let accepted = crl_check(&leaves[1]);
    assert!(
        accepted.status.success(),
        "{}",
        String::from_utf8_lossy(&accepted.stderr)
    );
}

#[test]
fn bad_input_exits_non_zero_with_one_clear_line_and_writes_nothing() {
    let tmp = tempfile::tempdir().expect("tmp");
    let ca = tmp.path().join("ca");
    let ca_s = ca.to_str().expect("utf-8");
    ok(
        certop(&["pki", "ca", "create", "--name", "ca", "--out", ca_s]),
        "ca create",
    );
    let key_before = std::fs::read(ca.join("ca.key")).expect("key");

    let huge = certop(&[
        "pki",
        "ca",
        "create",
        "--name",
        "huge",
        "--duration",
        "9999999999999999h",
        "--out",
        tmp.path().join("huge-ca").to_str().expect("utf-8"),
    ]);
    assert_eq!(
        huge.status.code(),
        Some(2),
        "a usage error, not a panic: {huge:?}"
    );
    assert!(String::from_utf8_lossy(&huge.stderr).contains("longer than the longest duration"));
    let refused = certop(&["pki", "ca", "create", "--name", "again", "--out", ca_s]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("refusing to overwrite"));
    assert_eq!(
        std::fs::read(ca.join("ca.key")).expect("key"),
        key_before,
        "the CA key is untouched"
    );

    let leaf_ca = tmp.path().join("leaf-as-ca");
    std::fs::create_dir_all(&leaf_ca).expect("dir");
    let good = tmp.path().join("good.yaml");
    std::fs::write(&good, manifest("admin")).expect("manifest");
    ok(
        certop(&[
            "pki",
            "issue",
            "--ca",
            ca_s,
            "-f",
            good.to_str().expect("utf-8"),
            "--out",
            tmp.path().join("admin").to_str().expect("utf-8"),
        ]),
        "issue",
    );
    std::fs::copy(tmp.path().join("admin/tls.crt"), leaf_ca.join("ca.crt")).expect("copy");
    std::fs::copy(tmp.path().join("admin/tls.key"), leaf_ca.join("ca.key")).expect("copy");

    let bad_spec = tmp.path().join("bad.yaml");
    std::fs::write(
        &bad_spec,
        manifest("admin").replace("profile: admin", "profile: admin\n  commonName: root"),
    )
    .expect("write");
    let cel_bad = tmp.path().join("cel.yaml");
    std::fs::write(
        &cel_bad,
        manifest("server").replace(
            "  commonName: web\n",
            "  renewBefore: 1h\n  renewBeforePercentage: 5\n",
        ),
    )
    .expect("write");

    let write_case = |name: &str, text: String| {
        let path = tmp.path().join(format!("{name}.yaml"));
        std::fs::write(&path, text).expect("write");
        path
    };
    let misspelled = write_case(
        "misspelled",
        manifest("server").replace(
            "dnsNames: [web.example.com]",
            "dnsName: [web.example.com]\n  duraton: 1h",
        ),
    );
    let ip_as_dns = write_case(
        "ip-as-dns",
        manifest("server").replace("dnsNames: [web.example.com]", "dnsNames: [\"10.0.0.1\"]"),
    );
    let nul = write_case(
        "nul",
        manifest("server").replace("commonName: web", "commonName: \"web\\0.evil\""),
    );
    let huge = write_case(
        "huge-duration",
        manifest("server").replace(
            "commonName: web",
            "commonName: web\n  duration: 9999999999999999h",
        ),
    );
    let cases = [
        (
            "misspelled fields",
            ca_s.to_string(),
            misspelled,
            "unknown field(s) spec.dnsName, spec.duraton",
        ),
        (
            "IP address as a DNS name",
            ca_s.to_string(),
            ip_as_dns,
            "ipAddresses",
        ),
        (
            "NUL byte in a name",
            ca_s.to_string(),
            nul,
            "control character",
        ),
        (
            "duration that overflows",
            ca_s.to_string(),
            huge,
            "duration",
        ),
        (
            "missing manifest",
            ca_s.to_string(),
            tmp.path().join("nope.yaml"),
            "nope.yaml",
        ),
        (
            "not YAML",
            ca_s.to_string(),
            ca.join("ca.crt"),
            "not a ClusterCertificate",
        ),
        (
            "profile forbids the name",
            ca_s.to_string(),
            bad_spec.clone(),
            "remove commonName",
        ),
        (
            "CEL rule",
            ca_s.to_string(),
            cel_bad.clone(),
            "at most one of renewBefore",
        ),
        (
            "CA that is not a CA",
            leaf_ca.to_str().expect("utf-8").to_string(),
            good.clone(),
            "is not a CA",
        ),
        (
            "missing CA",
            tmp.path().join("none").to_str().expect("utf-8").to_string(),
            good.clone(),
            "ca.crt",
        ),
        (
            "a version certop does not serve",
            ca_s.to_string(),
            write_case(
                "v2",
                manifest("server").replace("certop.dev/v1", "certop.dev/v2"),
            ),
            "apiVersion \"certop.dev/v2\" is not one certop serves: use certop.dev/v1",
        ),
        (
            "another kind",
            ca_s.to_string(),
            write_case(
                "certificate",
                manifest("server").replace("kind: ClusterCertificate", "kind: Certificate"),
            ),
            "not a ClusterCertificate: kind \"Certificate\"",
        ),
        (
            "a v1alpha1 manifest refused: the error alone, no warning",
            ca_s.to_string(),
            write_case(
                "v1alpha1-bad",
                manifest("server")
                    .replace("certop.dev/v1", "certop.dev/v1alpha1")
                    .replace(
                        "  commonName: web\n",
                        "  renewBefore: 1h\n  renewBeforePercentage: 5\n",
                    ),
            ),
            "at most one of renewBefore",
        ),
    ];
    for (name, ca_dir, manifest, expected) in cases {
        let out = tmp.path().join(format!("out-{}", name.replace(' ', "-")));
        let res = certop(&[
            "pki",
            "issue",
            "--ca",
            &ca_dir,
            "-f",
            manifest.to_str().expect("utf-8"),
            "--out",
            out.to_str().expect("utf-8"),
        ]);
        let stderr = String::from_utf8_lossy(&res.stderr);
        assert!(!res.status.success(), "{name}: must fail");
        assert_eq!(
            stderr.trim_end().lines().count(),
            1,
            "{name}: one line, got {stderr:?}"
        );
        assert!(
            stderr.contains(expected),
            "{name}: {stderr:?} should mention {expected:?}"
        );
        assert!(!out.exists(), "{name}: nothing may be written");
    }

    // An existing key (or another CA's ca.crt given as --out) is kept.
    let admin = tmp.path().join("admin");
    let key_before = std::fs::read(admin.join("tls.key")).expect("key");
    let again = certop(&[
        "pki",
        "issue",
        "--ca",
        ca_s,
        "-f",
        good.to_str().expect("utf-8"),
        "--out",
        admin.to_str().expect("utf-8"),
    ]);
    assert!(
        !again.status.success(),
        "a second issue into the same directory is refused"
    );
    assert!(String::from_utf8_lossy(&again.stderr).contains("--force"));
    assert_eq!(
        std::fs::read(admin.join("tls.key")).expect("key"),
        key_before
    );
    let into_ca = certop(&[
        "pki",
        "issue",
        "--ca",
        ca_s,
        "-f",
        good.to_str().expect("utf-8"),
        "--out",
        ca_s,
    ]);
    assert!(
        !into_ca.status.success(),
        "the CA's own directory is refused"
    );
    let forced = certop(&[
        "pki",
        "issue",
        "--ca",
        ca_s,
        "-f",
        good.to_str().expect("utf-8"),
        "--out",
        admin.to_str().expect("utf-8"),
        "--force",
    ]);
    assert!(forced.status.success(), "--force replaces");
    assert_ne!(
        std::fs::read(admin.join("tls.key")).expect("key"),
        key_before
    );

    let inspect = certop(&["pki", "inspect", bad_spec.to_str().expect("utf-8")]);
    assert!(!inspect.status.success());
    assert!(String::from_utf8_lossy(&inspect.stderr).contains("no PEM certificate"));
}

/// A manifest written for v0.1.0 (`certop.dev/v1alpha1`) is still issued
/// offline, with the warning the API server gives it.
#[test]
fn a_v1alpha1_manifest_is_issued_with_the_api_servers_deprecation_warning() {
    let tmp = tempfile::tempdir().expect("tmp");
    let ca = tmp.path().join("ca");
    ok(
        certop(&[
            "pki",
            "ca",
            "create",
            "--name",
            "ca",
            "--out",
            ca.to_str().expect("utf-8"),
        ]),
        "ca create",
    );
    let old = tmp.path().join("old.yaml");
    std::fs::write(
        &old,
        manifest("server").replace("certop.dev/v1", "certop.dev/v1alpha1"),
    )
    .expect("manifest");
    let out = certop(&[
        "pki",
        "issue",
        "--ca",
        ca.to_str().expect("utf-8"),
        "-f",
        old.to_str().expect("utf-8"),
        "--out",
        tmp.path().join("old").to_str().expect("utf-8"),
    ]);
    ok(out.clone(), "issue from a v1alpha1 manifest");
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim_end(),
        "Warning: certop.dev/v1alpha1 ClusterCertificate is deprecated; use certop.dev/v1 (the same fields)"
    );
    assert!(tmp.path().join("old/tls.crt").exists());
}

#[test]
fn a_cross_signed_rotation_chain_verifies_against_the_old_root_and_the_new_one() {
    use certop::pki::{CaRequest, LeafTemplate, PrivateKey, issue};
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path();
    let now = Utc::now();
    let request = CaRequest::new("rotating CA");
    let old = Authority::create(&request, now - Duration::days(300)).expect("old CA");
    let new = Authority::create(&request, now).expect("new CA");
    let cross = old.cross_sign(&new, &request, now).expect("cross-sign");
    // The new key's Secret holds its certificate and the cross-certificate.
    let stored = format!("{}{cross}", new.certificate_pem());
    let signer = Authority::load(stored.as_bytes(), new.key_pem().as_bytes(), now).expect("load");
    assert_eq!(
        signer.chain_pem(),
        cross,
        "issued chains end with the cross-certificate"
    );
    let spec: certop::api::ClusterCertificateSpec = serde_json::from_value(serde_json::json!({
        "issuerRef": {"name": "ca"}, "secretName": "web", "secretNamespace": "default",
        "dnsNames": ["web.example.com"]
    }))
    .expect("spec");
    let template = LeafTemplate::from_spec(&spec).expect("template");
    let key = PrivateKey::generate(template.key_algorithm).expect("key");
    let issued = issue(&template, &key, &signer, now).expect("issue");
    let write = |name: &str, text: &str| {
        let p = dir.join(name);
        std::fs::write(&p, text).expect("write");
        p
    };
    let leaf = write("leaf.pem", &issued.certificate.to_pem());
    let chain = write("chain.pem", &issued.chain_pem);
    let old_root = write("old.pem", old.certificate_pem());
    let new_root = write("new.pem", new.certificate_pem());
    let cross_file = write("cross.pem", &cross);
    let untrusted = ["-untrusted", chain.to_str().expect("utf-8")];
    // A client that trusts only the old CA, and one that trusts only the new.
    ok(
        openssl_verify(&old_root, &leaf, &untrusted),
        "verify against the old root",
    );
    ok(
        openssl_verify(&new_root, &leaf, &untrusted),
        "verify against the new root",
    );
    // Without the cross-certificate the old root alone is not enough.
    let refused = openssl_verify(&old_root, &leaf, &[]);
    assert!(
        !refused.status.success(),
        "the chain needs the cross-certificate"
    );
    // The cross-certificate is a well-formed CA certificate.
    let errors = lint_errors("lint_pkix_cert", &[], &cross_file, &[]);
    assert!(errors.is_empty(), "{errors:?}");
}

/// Every list field of a certificate says, read by openssl, what the
/// manifest asked: the organization, every DNS name, IP address and URI.
/// A second organization is refused before anything is signed (certop
/// cannot sign a subject with two), with a message that says so, and no
/// file written; so is a CA of two organizations or of no lifetime.
#[test]
fn every_list_field_round_trips_through_openssl_and_two_organizations_are_refused() {
    let tmp = tempfile::tempdir().expect("tmp");
    let ca = tmp.path().join("ca");
    let ca_arg = ca.to_str().expect("utf-8");
    ok(
        certop(&[
            "pki",
            "ca",
            "create",
            "--name",
            "cluster CA",
            "--out",
            ca_arg,
        ]),
        "ca create",
    );
    let issue = |name: &str, lists: &str| {
        let manifest = tmp.path().join(format!("{name}.yaml"));
        std::fs::write(
            &manifest,
            format!(
                "apiVersion: certop.dev/v1\nkind: ClusterCertificate\nmetadata:\n  name: {name}\nspec:\n  issuerRef: {{name: cluster}}\n  secretName: {name}\n  secretNamespace: default\n  commonName: {name}\n{lists}"
            ),
        )
        .expect("write manifest");
        let out = tmp.path().join(name);
        let output = certop(&[
            "pki",
            "issue",
            "--ca",
            ca_arg,
            "-f",
            manifest.to_str().expect("utf-8"),
            "--out",
            out.to_str().expect("utf-8"),
        ]);
        (output, out)
    };
    let (output, out) = issue(
        "lists",
        "  organizations: [team-a]\n  dnsNames: [a.example.com, b.example.com, '*.c.example.com']\n  ipAddresses: [192.0.2.1, 198.51.100.2, '2001:db8::1']\n  uris: ['spiffe://cluster.local/ns/a/sa/x', 'https://example.com/y']\n",
    );
    ok(output, "issue with lists");
    let leaf = leaf_only(&out);
    let text = ok(
        run(Command::new("openssl")
            .args([
                "x509",
                "-noout",
                "-subject",
                "-ext",
                "subjectAltName",
                "-in",
            ])
            .arg(&leaf)),
        "openssl x509",
    );
    for expected in [
        "O = team-a",
        "CN = lists",
        "DNS:a.example.com",
        "DNS:b.example.com",
        "DNS:*.c.example.com",
        "IP Address:192.0.2.1",
        "IP Address:198.51.100.2",
        "IP Address:2001:DB8:0:0:0:0:0:1",
        "URI:spiffe://cluster.local/ns/a/sa/x",
        "URI:https://example.com/y",
    ] {
        assert!(
            text.contains(expected),
            "{expected:?} missing from:\n{text}"
        );
    }

    let (output, out) = issue("two-orgs", "  organizations: [team-a, team-b]\n");
    assert!(!output.status.success(), "two organizations were signed");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("one organization"), "{stderr}");
    assert!(!out.exists(), "nothing written for a refused certificate");

    for (what, args) in [
        (
            "two organizations",
            &["--organization", "a", "--organization", "b"][..],
        ),
        ("no lifetime", &["--duration", "0s"][..]),
    ] {
        let dir = tmp.path().join(what.replace(' ', "-"));
        let output = certop(
            &[
                &[
                    "pki",
                    "ca",
                    "create",
                    "--name",
                    "x",
                    "--out",
                    dir.to_str().expect("utf-8"),
                ][..],
                args,
            ]
            .concat(),
        );
        assert!(!output.status.success(), "a CA of {what} was created");
        assert!(!dir.join("ca.key").exists(), "{what}: no key written");
    }
}

/// A duration flag says which units it takes, and a wrong one is told
/// all of them, days included.
#[test]
fn duration_flags_name_their_units_days_included() {
    for command in [
        &["pki", "ca", "create"][..],
        &["pki", "init"],
        &["pki", "renew"],
    ] {
        let help = ok(certop(&[command, &["--help"]].concat()), "--help");
        assert!(help.contains("(s, m, h, d)"), "{command:?}:\n{help}");
    }
    let out = certop(&[
        "pki",
        "ca",
        "create",
        "--name",
        "x",
        "--out",
        "/nonexistent",
        "--duration",
        "2w",
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("s, m, h, d)"), "{stderr}");
}

/// A CA whose subject repeats an attribute (two O, as many corporate CAs
/// have) is refused with what to do, not used to sign leaves that name
/// another issuer (rcgen writes one value per attribute type) and chain
/// nowhere.
#[test]
fn a_ca_whose_subject_repeats_an_attribute_is_refused_not_used() {
    let tmp = tempfile::tempdir().expect("tmp");
    let ca = tmp.path().join("ca");
    std::fs::create_dir_all(&ca).expect("dir");
    ok(
        run(Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
            ])
            .args(["-subj", "/O=Example/O=Platform/CN=corp CA", "-days", "30"])
            .args(["-addext", "basicConstraints=critical,CA:TRUE"])
            .args(["-addext", "keyUsage=critical,keyCertSign,cRLSign"])
            .arg("-keyout")
            .arg(ca.join("ca.key"))
            .arg("-out")
            .arg(ca.join("ca.crt"))),
        "openssl req",
    );
    let manifest = tmp.path().join("web.yaml");
    std::fs::write(
        &manifest,
        "apiVersion: certop.dev/v1\nkind: ClusterCertificate\nmetadata:\n  name: web\nspec:\n  issuerRef: {name: corp}\n  secretName: web\n  secretNamespace: default\n  dnsNames: [web.example.com]\n",
    )
    .expect("manifest");
    let out = tmp.path().join("web");
    let output = certop(&[
        "pki",
        "issue",
        "--ca",
        ca.to_str().expect("utf-8"),
        "-f",
        manifest.to_str().expect("utf-8"),
        "--out",
        out.to_str().expect("utf-8"),
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "signed as a CA it cannot name");
    assert!(
        stderr.contains("organizationName appears more than once"),
        "{stderr}"
    );
    assert!(!out.exists(), "nothing written");
}
