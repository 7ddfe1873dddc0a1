//! What the API server itself enforces for certop's CRDs: admission
//! validation (OpenAPI and CEL), the status subresource, printer columns,
//! and RBAC being real.

use certop::api::{ClusterCertificate, ClusterCertificateStatus};
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};

use crate::support::{control_plane, stderr, stdout, unique};

fn manifest(name: &str, extra: &str) -> String {
    format!(
        "apiVersion: certop.dev/v1\nkind: ClusterCertificate\nmetadata:\n  name: {name}\nspec:\n  issuerRef: {{name: cluster}}\n  secretName: {name}\n  secretNamespace: default\n{extra}"
    )
}

#[test]
fn the_control_plane_is_real_and_ready() {
    let cp = control_plane();
    let ready = cp.kubectl(&["get", "--raw", "/readyz"]);
    assert_eq!(stdout(&ready), "ok", "{}", stderr(&ready));
    let version = cp.kubectl(&["version", "-o", "json"]);
    assert!(
        stdout(&version).contains("\"gitVersion\": \"v1.36.3\""),
        "{}",
        stdout(&version)
    );
}

#[test]
fn admission_refuses_invalid_specs_with_a_message_that_says_what_to_fix() {
    let cp = control_plane();
    let cases = [
        (
            "both renewal settings",
            "  commonName: x\n  renewBefore: 1h\n  renewBeforePercentage: 10\n",
            "set at most one of renewBefore and renewBeforePercentage",
        ),
        (
            "renewBefore too long",
            "  commonName: x\n  duration: 1h\n  renewBefore: 2h\n",
            "renewBefore must be shorter than duration",
        ),
        (
            "percentage out of range",
            "  commonName: x\n  renewBeforePercentage: 100\n",
            "renewBeforePercentage",
        ),
        (
            "duration syntax",
            "  commonName: x\n  duration: 90d\n",
            "spec.duration in body should match",
        ),
        (
            "bad DNS name",
            "  dnsNames: [Bad_Name]\n",
            "spec.dnsNames[0]",
        ),
        (
            "bad IP",
            "  ipAddresses: [10.0.0.300]\n",
            "each of ipAddresses must be an IPv4 or IPv6 address",
        ),
        (
            "unknown profile",
            "  profile: kubelet\n",
            "Unsupported value: \"kubelet\"",
        ),
        (
            "unknown key algorithm",
            "  commonName: x\n  privateKey: {algorithm: DSA}\n",
            "Unsupported value: \"DSA\"",
        ),
        (
            "node profile without node",
            "  profile: etcd-peer\n",
            "this profile names the node: set nodeName",
        ),
        (
            "nothing to certify",
            "  organizations: [acme]\n",
            "set a profile, or at least one of commonName",
        ),
        (
            "duration that overflows",
            "  commonName: x\n  duration: 9999999999999999h\n",
            "spec.duration",
        ),
        (
            "duration over a century",
            "  commonName: x\n  duration: 876001h\n",
            "duration must be at most 876000h",
        ),
        (
            "IP address as a DNS name",
            "  dnsNames: [\"10.0.0.1\"]\n",
            "an IP address belongs in ipAddresses, not dnsNames",
        ),
        (
            "secretTemplate label the API would refuse",
            "  commonName: x\n  secretTemplate: {labels: {\"bad key!\": v}}\n",
            "secretTemplate.labels: each key must be",
        ),
        (
            "two organizations (certop signs one)",
            "  commonName: x\n  organizations: [team-a, team-b]\n",
            "spec.organizations: Too many",
        ),
        (
            "bad secret namespace",
            "  commonName: x\n  secretNamespace: Not_A_Namespace\n",
            "secretNamespace",
        ),
    ];
    for (name, extra, expected) in cases {
        let obj = unique("invalid");
        let mut text = manifest(&obj, extra);
        if extra.contains("secretNamespace") {
            text = text.replace("  secretNamespace: default\n", "");
        }
        let out = cp.kubectl_stdin(&["apply", "-f", "-"], &text);
        assert!(!out.status.success(), "{name}: the API server accepted it");
        assert!(
            stderr(&out).contains(expected),
            "{name}: {:?} should contain {expected:?}",
            stderr(&out)
        );
    }
    let accepted = cp.kubectl_stdin(
        &["apply", "-f", "-"],
        &manifest(&unique("valid"), "  commonName: web\n  renewBefore: 240h\n"),
    );
    assert!(
        accepted.status.success(),
        "a valid spec is refused: {}",
        stderr(&accepted)
    );
}

fn ca_manifest(name: &str, extra: &str) -> String {
    format!(
        "apiVersion: certop.dev/v1\nkind: CertificateAuthority\nmetadata:\n  name: {name}\nspec:\n  subject: {{commonName: {name}}}\n{extra}"
    )
}

#[test]
fn admission_bounds_every_ca_duration_and_keeps_fixed_fields_fixed() {
    let cp = control_plane();
    let cases = [
        (
            "CA duration that overflows",
            "  duration: 9999999999999999h\n",
            "spec.duration",
        ),
        (
            "CA duration zero",
            "  duration: 0s\n",
            "duration must be between 1h and 876000h",
        ),
        (
            "CRL validity zero",
            "  crl: {validity: 0s}\n",
            "crl.validity must be between 1m and 8760h",
        ),
        (
            "CRL validity huge",
            "  crl: {validity: 9999999999999999h}\n",
            "spec.crl.validity",
        ),
        (
            "rotation overlap zero",
            "  rotation: {overlap: 0s}\n",
            "rotation.overlap must be between 1m and 8760h",
        ),
        (
            "rotation overlap under a minute",
            "  rotation: {overlap: 59s}\n",
            "rotation.overlap must be between 1m and 8760h",
        ),
        (
            "refresh longer than the default validity",
            "  crl: {refreshBefore: 25h}\n",
            "crl.refreshBefore must be shorter than crl.validity",
        ),
    ];
    for (name, extra, expected) in cases {
        let out = cp.kubectl_stdin(
            &["apply", "--dry-run=server", "-f", "-"],
            &ca_manifest(&unique("ca"), extra),
        );
        assert!(!out.status.success(), "{name}: the API server accepted it");
        assert!(
            stderr(&out).contains(expected),
            "{name}: {:?} should contain {expected:?}",
            stderr(&out)
        );
    }
    let name = unique("fixed-ca");
    let created = cp.kubectl_stdin(
        &["apply", "-f", "-"],
        &ca_manifest(&name, "  keyAlgorithm: ECDSA-P256\n"),
    );
    assert!(created.status.success(), "{}", stderr(&created));
    for (field, edit) in [
        ("keyAlgorithm", "  keyAlgorithm: ECDSA-P384\n"),
        (
            "duration",
            "  keyAlgorithm: ECDSA-P256\n  duration: 1000h\n",
        ),
    ] {
        let out = cp.kubectl_stdin(&["apply", "-f", "-"], &ca_manifest(&name, edit));
        assert!(
            !out.status.success(),
            "{field}: an edit of a fixed field was accepted"
        );
        assert!(
            stderr(&out).contains("are fixed once its key exists"),
            "{field}: {}",
            stderr(&out)
        );
    }
    let crl_edit = cp.kubectl_stdin(
        &["apply", "-f", "-"],
        &ca_manifest(
            &name,
            "  keyAlgorithm: ECDSA-P256\n  crl: {validity: 48h}\n",
        ),
    );
    assert!(
        crl_edit.status.success(),
        "CRL settings may change: {}",
        stderr(&crl_edit)
    );
    let deleted = cp.kubectl(&["delete", "certificateauthority", &name, "--wait=false"]);
    assert!(deleted.status.success(), "{}", stderr(&deleted));
}

#[tokio::test]
async fn status_round_trips_through_the_status_subresource_and_shows_in_kubectl_get() {
    let cp = control_plane();
    let client = cp.admin_client().await;
    let api: Api<ClusterCertificate> = Api::all(client);
    let name = unique("status");
    let created = cp.kubectl_stdin(
        &["apply", "-f", "-"],
        &manifest(&name, "  commonName: web\n"),
    );
    assert!(created.status.success(), "{}", stderr(&created));

    let not_after = chrono::DateTime::parse_from_rfc3339("2027-02-21T12:00:00Z")
        .expect("time")
        .to_utc();
    let status = ClusterCertificateStatus {
        secret: Some(format!("default/{name}")),
        not_after: Some(not_after),
        renewal_time: Some(not_after - chrono::Duration::days(30)),
        serial_number: Some("4a1b".into()),
        revision: Some(1),
        ..Default::default()
    };
    let patch = serde_json::json!({
        "apiVersion": "certop.dev/v1",
        "kind": "ClusterCertificate",
        "status": status,
    });
    api.patch_status(
        &name,
        &PatchParams::apply("certop-test").force(),
        &Patch::Apply(&patch),
    )
    .await
    .expect("patch status");
    let read = api.get(&name).await.expect("get");
    assert_eq!(read.status.as_ref(), Some(&status), "status round-trips");

    // Writes to the main resource cannot change status: it is a subresource.
    let mut edited = read.clone();
    edited.spec.common_name = Some("web2".into());
    edited.status = Some(ClusterCertificateStatus::default());
    let replaced = api
        .replace(&name, &PostParams::default(), &edited)
        .await
        .expect("replace");
    assert_eq!(
        replaced.status.as_ref(),
        Some(&status),
        "status survives a spec update"
    );
    assert_eq!(replaced.spec.common_name.as_deref(), Some("web2"));

    let table = cp.kubectl(&["get", "clustercertificate", &name]);
    let text = stdout(&table);
    let header = text.lines().next().unwrap_or_default();
    for column in [
        "NAME", "READY", "SECRET", "ISSUER", "EXPIRES", "RENEWAL", "AGE",
    ] {
        assert!(header.contains(column), "column {column} missing: {text}");
    }
    let row = text.lines().nth(1).unwrap_or_default();
    assert!(
        row.matches(name.as_str()).count() == 2 && row.contains("cluster"),
        "the Secret column shows spec.secretName: {text}"
    );
    let wide = stdout(&cp.kubectl(&["get", "clustercertificate", &name, "-o", "wide"]));
    assert!(
        wide.lines().next().unwrap_or_default().contains("STATUS"),
        "-o wide shows the Ready message: {wide}"
    );
    let wide = cp.kubectl(&[
        "get",
        "clustercertificate",
        &name,
        "-o",
        "jsonpath={.status.notAfter}",
    ]);
    assert_eq!(stdout(&wide), "2027-02-21T12:00:00Z");
}

#[test]
fn rbac_is_enforced_for_the_operator_identity() {
    let cp = control_plane();
    let denied = std::process::Command::new("kubectl")
        .env("KUBECONFIG", &cp.operator_kubeconfig)
        .args(["auth", "can-i", "create", "secrets", "-n", "kube-system"])
        .output()
        .expect("kubectl");
    assert_eq!(
        stdout(&denied).trim(),
        "no",
        "without a binding the operator identity has no rights"
    );
    let admin = cp.kubectl(&["auth", "can-i", "create", "secrets", "-n", "kube-system"]);
    assert_eq!(stdout(&admin).trim(), "yes");
}
