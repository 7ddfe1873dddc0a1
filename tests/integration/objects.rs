//! Reading and writing certop's objects with kubectl, as a user would,
//! for the integration and lifecycle tests.

// Shared by two test binaries (integration, lifecycle) that each use a part.
#![allow(dead_code)]

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use certop::api::{CertificateAuthority, ClusterCertificate};
use certop::pki::{CertificateInfo, PrivateKey, key_matches_certificate, parse_chain};
use k8s_openapi::api::core::v1::Secret;
use serde::de::DeserializeOwned;

use crate::support::{ControlPlane, operator, stderr, stdout, unique, wait_for};

pub const WAIT: Duration = Duration::from_secs(40);

pub fn apply(cp: &ControlPlane, yaml: &str) {
    let out = cp.kubectl_stdin(&["apply", "-f", "-"], yaml);
    assert!(
        out.status.success(),
        "kubectl apply: {}\n{yaml}",
        stderr(&out)
    );
}

pub fn get<T: DeserializeOwned>(cp: &ControlPlane, args: &[&str]) -> Option<T> {
    let mut full = vec!["get"];
    full.extend_from_slice(args);
    full.extend_from_slice(&["-o", "json"]);
    let out = cp.kubectl(&full);
    if !out.status.success() {
        return None;
    }
    serde_json::from_slice(&out.stdout).ok()
}

pub fn cert(cp: &ControlPlane, name: &str) -> ClusterCertificate {
    get(cp, &["clustercertificate", name]).expect("ClusterCertificate exists")
}

pub fn secret(cp: &ControlPlane, ns: &str, name: &str) -> Option<Secret> {
    get(cp, &["secret", "-n", ns, name])
}

/// (status, reason, message) of a ClusterCertificate's condition.
pub fn condition(cp: &ControlPlane, name: &str, type_: &str) -> Option<(String, String, String)> {
    let c = cert(cp, name);
    c.status?
        .conditions
        .into_iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status, c.reason, c.message))
}

pub fn wait_ready(cp: &ControlPlane, name: &str) -> ClusterCertificate {
    let ok = wait_for(WAIT, || {
        condition(cp, name, "Ready").is_some_and(|(s, _, _)| s == "True")
    });
    assert!(
        ok,
        "{name} not Ready: {:?}\noperator log tail:\n{}",
        condition(cp, name, "Ready"),
        log_tail()
    );
    cert(cp, name)
}

pub fn wait_reason(cp: &ControlPlane, name: &str, reason: &str) -> (String, String, String) {
    let ok = wait_for(WAIT, || {
        condition(cp, name, "Ready").is_some_and(|(_, r, _)| r == reason)
    });
    assert!(
        ok,
        "{name}: Ready reason never became {reason}: {:?}",
        condition(cp, name, "Ready")
    );
    condition(cp, name, "Ready").expect("condition")
}

pub fn log_tail() -> String {
    let text = operator().log_text();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

pub fn ca_yaml(name: &str, extra: &str) -> String {
    format!(
        "apiVersion: certop.dev/v1\nkind: CertificateAuthority\nmetadata:\n  name: {name}\nspec:\n  subject:\n    commonName: {name} CA\n{extra}"
    )
}

pub fn cert_yaml(name: &str, ca: &str, ns: &str, extra: &str) -> String {
    format!(
        "apiVersion: certop.dev/v1\nkind: ClusterCertificate\nmetadata:\n  name: {name}\nspec:\n  issuerRef: {{name: {ca}}}\n  secretName: {name}\n  secretNamespace: {ns}\n{extra}"
    )
}

/// A CertificatePolicy that governs `ca` and allows `allowed` (the YAML
/// lines under `allowed:`), and the line a certificate names it with.
/// Components' identities are privileged: a test that signs them names
/// them in such a policy, as a cluster's administrator would.
pub fn policy_for(cp: &ControlPlane, ca: &str, allowed: &str) -> String {
    let name = format!("{ca}-policy");
    apply(
        cp,
        &format!(
            "apiVersion: certop.dev/v1\nkind: CertificatePolicy\nmetadata:\n  name: {name}\nspec:\n  authorities: [{ca}]\n  allowed:\n{allowed}"
        ),
    );
    format!("  policyRef: {{name: {name}}}\n")
}

/// A Ready CA of the shared operator, and a fresh namespace.
pub fn ca_and_namespace(cp: &ControlPlane, prefix: &str) -> (String, String) {
    operator();
    let ca = unique(&format!("{prefix}-ca"));
    let ns = unique(prefix);
    let out = cp.kubectl(&["create", "namespace", &ns]);
    assert!(out.status.success(), "{}", stderr(&out));
    apply(cp, &ca_yaml(&ca, ""));
    let ok = wait_for(WAIT, || {
        get::<CertificateAuthority>(cp, &["certificateauthority", &ca])
            .and_then(|c| c.status)
            .is_some_and(|s| {
                s.conditions
                    .iter()
                    .any(|c| c.type_ == "Ready" && c.status == "True")
            })
    });
    assert!(ok, "CA {ca} not Ready\n{}", log_tail());
    (ca, ns)
}

pub fn data(secret: &Secret, key: &str) -> Vec<u8> {
    secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|v| v.0.clone())
        .unwrap_or_default()
}

pub fn leaf_of(secret: &Secret) -> CertificateInfo {
    parse_chain(&data(secret, "tls.crt"), "tls.crt").expect("chain")[0].clone()
}

/// The Secret's key matches its certificate, and openssl verifies the chain
/// against the Secret's ca.crt.
pub fn assert_consistent(secret: &Secret) {
    let key = PrivateKey::from_pem(
        std::str::from_utf8(&data(secret, "tls.key")).expect("utf-8"),
        "tls.key",
    )
    .expect("key");
    assert!(
        key_matches_certificate(&key, &leaf_of(secret)),
        "key and certificate of {:?} differ",
        secret.metadata.name
    );
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::write(dir.path().join("ca.crt"), data(secret, "ca.crt")).expect("write");
    std::fs::write(dir.path().join("tls.crt"), data(secret, "tls.crt")).expect("write");
    let v = Command::new("openssl")
        .args(["verify", "-CAfile"])
        .arg(dir.path().join("ca.crt"))
        .arg(dir.path().join("tls.crt"))
        .output()
        .expect("openssl");
    assert!(
        v.status.success(),
        "openssl verify: {}",
        String::from_utf8_lossy(&v.stderr)
    );
}

pub fn events(cp: &ControlPlane, name: &str) -> String {
    let out = cp.kubectl(&[
        "get",
        "events",
        "-n",
        "default",
        "--field-selector",
        &format!("involvedObject.name={name}"),
        "-o",
        "custom-columns=REASON:.reason,MESSAGE:.message",
    ]);
    stdout(&out)
}

pub fn wait_event(cp: &ControlPlane, name: &str, reason: &str) -> String {
    let mut seen = String::new();
    let ok = wait_for(WAIT, || {
        seen = events(cp, name);
        seen.lines().any(|l| l.starts_with(reason))
    });
    assert!(ok, "{name}: no {reason} event; events:\n{seen}");
    seen
}

/// A Secret in the operator's namespace holding the `ca.crt`/`ca.key` of
/// `dir`, as a person adopting an existing CA creates it.
pub fn create_ca_secret(cp: &ControlPlane, name: &str, dir: &std::path::Path) {
    let out = cp.kubectl(&[
        "create",
        "secret",
        "generic",
        "-n",
        "certop-system",
        name,
        &format!("--from-file=ca.crt={}", dir.join("ca.crt").display()),
        &format!("--from-file=ca.key={}", dir.join("ca.key").display()),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
}

/// A kubeconfig that reaches `cp`'s API server as the client certificate
/// of Secret `ns/name`.
pub fn client_kubeconfig(
    cp: &ControlPlane,
    ns: &str,
    name: &str,
    dir: &Path,
) -> std::path::PathBuf {
    let s = secret(cp, ns, name).expect("secret");
    let (crt, key) = (
        dir.join(format!("{name}.crt")),
        dir.join(format!("{name}.key")),
    );
    std::fs::write(&crt, data(&s, "tls.crt")).expect("write");
    std::fs::write(&key, data(&s, "tls.key")).expect("write");
    kubeconfig_of_files(cp, name, &crt, &key, dir)
}

/// A kubeconfig `dir/<name>.kubeconfig` that reaches `cp`'s API server as
/// the client certificate and key in these files.
pub fn kubeconfig_of_files(
    cp: &ControlPlane,
    name: &str,
    crt: &Path,
    key: &Path,
    dir: &Path,
) -> std::path::PathBuf {
    let (server, ca) = api_server_of(cp);
    let config = dir.join(format!("{name}.kubeconfig"));
    std::fs::write(
        &config,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {server}\n    certificate-authority-data: {ca}\nusers:\n- name: u\n  user:\n    client-certificate: {}\n    client-key: {}\ncontexts:\n- name: c\n  context: {{cluster: c, user: u}}\ncurrent-context: c\n",
            crt.display(),
            key.display()
        ),
    )
    .expect("write");
    config
}

/// Whether the user of kubeconfig `config` may list namespaces.
pub fn allowed(config: &Path) -> bool {
    kubectl_with(config, &["get", "namespaces", "-o", "name"])
        .status
        .success()
}

/// The refusal's text when the request is refused, None when it is allowed.
pub fn refusal(config: &Path) -> Option<String> {
    let out = kubectl_with(config, &["get", "namespaces", "-o", "name"]);
    (!out.status.success()).then(|| stderr(&out))
}

/// The URL of `cp`'s API server and its serving CA (base64 PEM), as a
/// kubeconfig of it holds them.
pub fn api_server_of(cp: &ControlPlane) -> (String, String) {
    let field = |path: &str| {
        stdout(&cp.kubectl(&[
            "config",
            "view",
            "--raw",
            "--minify",
            "-o",
            &format!("jsonpath={{.clusters[0].cluster.{path}}}"),
        ]))
    };
    (field("server"), field("certificate-authority-data"))
}

pub fn kubectl_with(config: &Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(config)
        .args(args)
        .output()
        .expect("kubectl")
}
