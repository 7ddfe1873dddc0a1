//! The operator against the real control plane, driven with kubectl as a
//! user would: CAs, issuance, repair, renewal, conflicts, bad input,
//! deletion, Events, metrics. Every test uses its own names.

use std::process::Command;
use std::time::Duration;

use certop::api::CertificateAuthority;
use certop::pki::parse_chain;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};

use crate::objects::*;
use crate::support::{
    ControlPlane, control_plane, http_get, operator, repo_root, stderr, stdout, unique, wait_for,
};

#[test]
fn a_certificate_authority_gets_a_key_with_zero_touch() {
    let cp = control_plane();
    let (ca, _) = ca_and_namespace(cp, "zt");
    let obj: CertificateAuthority = get(cp, &["certificateauthority", &ca]).expect("CA");
    let status = obj.status.expect("status");
    let s = secret(cp, "certop-system", &format!("{ca}-ca"))
        .expect("the CA Secret is in the operator namespace");
    assert_eq!(s.type_.as_deref(), Some("kubernetes.io/tls"));
    let cert = leaf_of(&s);
    assert!(cert.is_ca);
    assert_eq!(
        status.serial_number.as_deref(),
        Some(cert.serial.to_string().as_str())
    );
    assert_eq!(
        status.fingerprint.as_deref(),
        Some(cert.fingerprint.as_str())
    );
    assert_eq!(status.not_after, Some(cert.not_after));
    let table = stdout(&cp.kubectl(&["get", "certificateauthority", &ca]));
    assert!(
        table.contains("True")
            && table.contains(&cert.not_after.format("%Y-%m-%dT%H:%M:%SZ").to_string()),
        "{table}"
    );
    wait_event(cp, &ca, "Created");
}

#[test]
fn a_deleted_ca_secret_is_a_loud_not_ready_never_a_silent_new_ca() {
    let cp = control_plane();
    let (ca, _) = ca_and_namespace(cp, "gone");
    let out = cp.kubectl(&[
        "delete",
        "secret",
        "-n",
        "certop-system",
        &format!("{ca}-ca"),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let ok = wait_for(WAIT, || {
        get::<CertificateAuthority>(cp, &["certificateauthority", &ca])
            .and_then(|c| c.status)
            .and_then(|s| s.conditions.into_iter().find(|c| c.type_ == "Ready"))
            .is_some_and(|c| c.status == "False" && c.reason == "CASecretDeleted")
    });
    assert!(ok, "the CA must say its Secret is gone\n{}", log_tail());
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        secret(cp, "certop-system", &format!("{ca}-ca")).is_none(),
        "no new key may appear"
    );
    wait_event(cp, &ca, "CASecretDeleted");
}

#[test]
fn a_kubeadm_ca_is_adopted_and_signs() {
    let cp = control_plane();
    operator();
    let ca = unique("kubeadm");
    let ns = unique("adopt");
    assert!(cp.kubectl(&["create", "namespace", &ns]).status.success());
    let fixture = repo_root().join("tests/fixtures/kubeadm-ca");
    create_ca_secret(cp, &format!("{ca}-pki"), &fixture);
    apply(
        cp,
        &ca_yaml(
            &ca,
            &format!("  keySource:\n    secretName: {ca}-pki\n    adopt: true\n"),
        ),
    );
    let name = unique("adopted");
    let policy = policy_for(
        cp,
        &ca,
        "    profiles: [kube-apiserver]\n    commonNames: [kube-apiserver]\n    dnsNames: [cp-1, kubernetes, kubernetes.default, kubernetes.default.svc, kubernetes.default.svc.cluster.local]\n    ipAddresses: [10.96.0.1/32]\n",
    );
    apply(
        cp,
        &cert_yaml(
            &name,
            &ca,
            &ns,
            &format!("  profile: kube-apiserver\n  nodeName: cp-1\n{policy}"),
        ),
    );
    wait_ready(cp, &name);
    let s = secret(cp, &ns, &name).expect("secret");
    assert_consistent(&s);
    let fixture_ca = parse_chain(
        &std::fs::read(fixture.join("ca.crt")).expect("fixture"),
        "ca.crt",
    )
    .expect("parse");
    assert!(
        leaf_of(&s).is_issued_by(&fixture_ca[0]),
        "signed by the adopted kubeadm CA"
    );
    let obj: CertificateAuthority = get(cp, &["certificateauthority", &ca]).expect("CA");
    assert_eq!(
        obj.status.and_then(|s| s.serial_number),
        Some(fixture_ca[0].serial.to_string())
    );
}

#[test]
fn an_adopted_ca_whose_secret_is_missing_is_not_ready_with_what_to_do() {
    let cp = control_plane();
    operator();
    let ca = unique("noadopt");
    apply(cp, &ca_yaml(&ca, "  keySource:\n    adopt: true\n"));
    let ok = wait_for(WAIT, || {
        get::<CertificateAuthority>(cp, &["certificateauthority", &ca])
            .and_then(|c| c.status)
            .and_then(|s| s.conditions.into_iter().find(|c| c.type_ == "Ready"))
            .is_some_and(|c| c.reason == "CASecretNotFound" && c.message.contains("create it"))
    });
    assert!(ok, "{}", log_tail());
    assert!(
        secret(cp, "certop-system", &format!("{ca}-ca")).is_none(),
        "an adopted CA never gets a generated key"
    );
}

#[test]
fn the_trust_bundle_follows_the_namespace_selector_and_goes_with_the_ca() {
    let cp = control_plane();
    operator();
    let ca = unique("bundle");
    let label = unique("trust");
    let picked = unique("picked");
    let other = unique("other");
    for ns in [&picked, &other] {
        assert!(cp.kubectl(&["create", "namespace", ns]).status.success());
    }
    assert!(
        cp.kubectl(&[
            "label",
            "namespace",
            &picked,
            &format!("certop-test={label}")
        ])
        .status
        .success()
    );
    apply(
        cp,
        &ca_yaml(
            &ca,
            &format!(
                "  trustBundle:\n    namespaceSelector:\n      matchLabels:\n        certop-test: {label}\n"
            ),
        ),
    );
    let bundle = format!("{ca}-ca");
    let ok = wait_for(WAIT, || {
        get::<ConfigMap>(cp, &["configmap", "-n", &picked, &bundle]).is_some()
    });
    assert!(ok, "no trust bundle in {picked}\n{}", log_tail());
    let cm: ConfigMap = get(cp, &["configmap", "-n", &picked, &bundle]).expect("cm");
    let ca_secret = secret(cp, "certop-system", &bundle).expect("CA secret");
    assert_eq!(
        cm.data
            .and_then(|d| d.get("ca.crt").cloned())
            .map(String::into_bytes),
        Some(data(&ca_secret, "tls.crt")),
        "the bundle is the CA certificate"
    );
    assert!(
        get::<ConfigMap>(cp, &["configmap", "-n", &other, &bundle]).is_none(),
        "not in unselected namespaces"
    );

    assert!(
        cp.kubectl(&[
            "label",
            "namespace",
            &other,
            &format!("certop-test={label}")
        ])
        .status
        .success()
    );
    assert!(
        wait_for(WAIT, || get::<ConfigMap>(
            cp,
            &["configmap", "-n", &other, &bundle]
        )
        .is_some()),
        "a newly selected namespace gets it"
    );
    assert!(
        cp.kubectl(&["label", "namespace", &picked, "certop-test-"])
            .status
            .success()
    );
    assert!(
        wait_for(WAIT, || get::<ConfigMap>(
            cp,
            &["configmap", "-n", &picked, &bundle]
        )
        .is_none()),
        "an unselected namespace loses it"
    );

    assert!(
        cp.kubectl(&[
            "delete",
            "certificateauthority",
            &ca,
            "--wait=true",
            "--timeout=30s"
        ])
        .status
        .success()
    );
    assert!(
        get::<ConfigMap>(cp, &["configmap", "-n", &other, &bundle]).is_none(),
        "bundles go with the CA"
    );
}

#[test]
fn a_certificate_is_issued_into_a_tls_secret_with_status_events_and_metrics() {
    let cp = control_plane();
    let (ca, ns) = ca_and_namespace(cp, "issue");
    let name = unique("web");
    apply(
        cp,
        &cert_yaml(
            &name,
            &ca,
            &ns,
            "  profile: server\n  commonName: web\n  dnsNames: [web.example.com]\n  duration: 720h\n  secretTemplate:\n    labels: {team: web}\n    annotations: {note: hello}\n",
        ),
    );
    let c = wait_ready(cp, &name);
    let status = c.status.expect("status");
    let s = secret(cp, &ns, &name).expect("secret");
    assert_eq!(s.type_.as_deref(), Some("kubernetes.io/tls"));
    assert_consistent(&s);
    let leaf = leaf_of(&s);
    assert_eq!(leaf.dns_names, vec!["web.example.com".to_string()]);
    let labels = s.metadata.labels.clone().unwrap_or_default();
    let annotations = s.metadata.annotations.clone().unwrap_or_default();
    assert_eq!(
        labels
            .get("app.kubernetes.io/managed-by")
            .map(String::as_str),
        Some("certop")
    );
    assert_eq!(labels.get("team").map(String::as_str), Some("web"));
    assert_eq!(annotations.get("note").map(String::as_str), Some("hello"));
    assert_eq!(annotations.get("certop.dev/certificate"), Some(&name));
    assert_eq!(
        annotations.get("certop.dev/serial"),
        Some(&leaf.serial.to_string())
    );
    assert_eq!(
        annotations.get("certop.dev/revision").map(String::as_str),
        Some("1")
    );
    assert_eq!(status.serial_number, Some(leaf.serial.to_string()));
    assert_eq!(status.fingerprint, Some(leaf.fingerprint.clone()));
    assert_eq!(status.not_after, Some(leaf.not_after));
    assert_eq!(status.revision, Some(1));
    assert_eq!(status.observed_generation, c.metadata.generation);
    assert_eq!(status.secret, Some(format!("{ns}/{name}")));
    let renewal = status.renewal_time.expect("renewal time");
    let lifetime = leaf.not_after - leaf.not_before;
    assert!(
        renewal <= leaf.not_after - lifetime / 3
            && renewal >= leaf.not_after - lifetime / 3 - lifetime / 30,
        "{renewal}"
    );
    assert_eq!(
        condition(cp, &name, "Issuing").map(|c| c.0),
        Some("False".into())
    );
    // The finalizer came with the create (manifests/certificate-finalizer-
    // admission.yaml): certop wrote the object itself nowhere but its status.
    let shown = cp.kubectl(&[
        "get",
        "clustercertificate",
        &name,
        "--show-managed-fields",
        "-o",
        "json",
    ]);
    let shown: serde_json::Value = serde_json::from_slice(&shown.stdout).expect("json");
    assert_eq!(
        shown["metadata"]["finalizers"],
        serde_json::json!(["certop.dev/cleanup"])
    );
    let writers: Vec<&str> = shown["metadata"]["managedFields"]
        .as_array()
        .expect("managedFields")
        .iter()
        .filter(|f| f.get("subresource").is_none_or(|s| s == ""))
        .filter_map(|f| f["manager"].as_str())
        .collect();
    assert!(
        writers.iter().all(|m| m.starts_with("kubectl")),
        "only kubectl wrote the object outside its status: {writers:?}"
    );

    let described = stdout(&cp.kubectl(&["describe", "clustercertificate", &name]));
    assert!(
        described.contains("Issued") && described.contains("Not After"),
        "describe shows the story:\n{described}"
    );
    let table = stdout(&cp.kubectl(&["get", "clustercertificate", &name]));
    assert!(table.contains(&name) && table.contains("True"), "{table}");

    // Collected from the stores at scrape time, in cert-manager's shape.
    let labels = format!(
        "name=\"{name}\",namespace=\"{ns}\",issuer_name=\"{ca}\",issuer_kind=\"CertificateAuthority\",issuer_group=\"certop.dev\""
    );
    let metrics = http_get(&operator().metrics_url).expect("metrics");
    // Whole lines: a name with an extra prefix must not pass.
    let metrics = format!("\n{metrics}");
    assert!(
        metrics.contains(&format!(
            "\ncertop_certificate_expiration_timestamp_seconds{{{labels}}} {}",
            leaf.not_after.timestamp()
        )),
        "expiry metric missing:\n{metrics}"
    );
    assert!(metrics.contains(&format!(
        "\ncertop_certificate_ready_status{{{labels},condition=\"True\"}} 1"
    )));
    assert!(metrics.contains(&format!(
        "\ncertop_certificate_ready_status{{{labels},condition=\"False\"}} 0"
    )));
    assert!(metrics.contains(&format!(
        "\ncertop_ca_expiration_timestamp_seconds{{name=\"{ca}\"}}"
    )));
    assert!(metrics.contains(&format!(
        "\ncertop_ca_condition{{name=\"{ca}\",type=\"Ready\",status=\"True\",reason=\"Ready\"}} 1"
    )));
    assert!(metrics.contains("certop_issuances_total{reason=\"SecretMissing\"}"));
    assert!(metrics.contains("certop_reconcile_duration_seconds_bucket"));
}

#[test]
fn a_secret_deleted_corrupted_or_out_of_spec_is_put_right_and_says_why() {
    let cp = control_plane();
    let (ca, ns) = ca_and_namespace(cp, "repair");
    let name = unique("repair");
    apply(
        cp,
        &cert_yaml(
            &name,
            &ca,
            &ns,
            "  commonName: repair\n  dnsNames: [a.example.com]\n",
        ),
    );
    wait_ready(cp, &name);
    let serial = |cp: &ControlPlane| secret(cp, &ns, &name).map(|s| leaf_of(&s).serial.to_string());
    let first = serial(cp).expect("serial");

    assert!(
        cp.kubectl(&["delete", "secret", "-n", &ns, &name])
            .status
            .success()
    );
    assert!(
        wait_for(WAIT, || serial(cp).is_some_and(|s| s != first)),
        "a deleted Secret comes back"
    );
    wait_event(cp, &name, "Issued");
    // One Event per issuance, on the certificate; the Secret's own
    // annotations (what `kubectl describe secret` shows) say what it holds.
    let described = stdout(&cp.kubectl(&["describe", "secret", "-n", &ns, &name]));
    let now_serial = serial(cp).expect("serial");
    for line in [
        format!("certop.dev/serial: {now_serial}"),
        "certop.dev/issue-reason: SecretMissing".to_string(),
        format!("certop.dev/certificate: {name}"),
    ] {
        assert!(described.contains(&line), "{line} in:\n{described}");
    }
    let secret_events =
        stdout(&cp.kubectl(&["events", "-n", &ns, "--for", &format!("secret/{name}")]));
    assert!(
        !secret_events.contains("Issued"),
        "no copy on the Secret: {secret_events}"
    );

    let second = serial(cp).expect("serial");
    let patch = r#"{"data":{"tls.crt":"Z2FyYmFnZQ=="}}"#;
    assert!(
        cp.kubectl(&[
            "patch",
            "secret",
            "-n",
            &ns,
            &name,
            "--type=merge",
            "-p",
            patch
        ])
        .status
        .success()
    );
    assert!(
        wait_for(WAIT, || secret(cp, &ns, &name)
            .and_then(|s| parse_chain(&data(&s, "tls.crt"), "x").ok())
            .is_some_and(|c| c[0].serial.to_string() != second)),
        "a corrupted Secret is repaired"
    );
    let seen = wait_event(cp, &name, "Reissuing");
    assert!(
        seen.contains("cannot be used"),
        "the reason is told: {seen}"
    );
    assert_consistent(&secret(cp, &ns, &name).expect("secret"));

    let third = serial(cp).expect("serial");
    apply(
        cp,
        &cert_yaml(
            &name,
            &ca,
            &ns,
            "  commonName: repair\n  dnsNames: [a.example.com, b.example.com]\n",
        ),
    );
    assert!(
        wait_for(WAIT, || serial(cp).is_some_and(|s| s != third)),
        "a spec change re-issues"
    );
    let s = secret(cp, &ns, &name).expect("secret");
    assert_eq!(leaf_of(&s).dns_names.len(), 2);
    let seen = wait_event(cp, &name, "Reissuing");
    assert!(seen.contains("spec field dnsNames"), "{seen}");
    let c = wait_ready(cp, &name);
    assert_eq!(c.status.and_then(|s| s.revision), Some(4));
}

#[test]
fn renewal_happens_in_the_background_at_the_renewal_time() {
    let cp = control_plane();
    let (ca, ns) = ca_and_namespace(cp, "renew");
    let name = unique("short");
    apply(
        cp,
        &cert_yaml(
            &name,
            &ca,
            &ns,
            "  commonName: short\n  duration: 1m\n  renewBefore: 45s\n",
        ),
    );
    let c = wait_ready(cp, &name);
    let status = c.status.expect("status");
    let renewal = status.renewal_time.expect("renewal");
    let first = status.serial_number.expect("serial");
    let renewed = wait_for(Duration::from_secs(60), || {
        cert(cp, &name)
            .status
            .and_then(|s| s.serial_number)
            .is_some_and(|s| s != first)
    });
    assert!(renewed, "not renewed by {renewal}\n{}", log_tail());
    let after = wait_ready(cp, &name).status.expect("status");
    assert_eq!(after.revision, Some(2));
    assert_eq!(
        condition(cp, &name, "Ready").map(|c| c.1),
        Some("Renewed".into())
    );
    assert!(
        chrono::Utc::now() >= renewal - chrono::Duration::seconds(1),
        "renewed no earlier than planned"
    );
    wait_event(cp, &name, "Renewed");
    assert_consistent(&secret(cp, &ns, &name).expect("secret"));
}

/// The status records the Secret's version, as the API server gave it,
/// so that a renewal can replace the Secret without reading it; a Secret
/// another writer changed since is renewed all the same, and keeps what
/// that writer set.
#[test]
fn a_renewal_records_the_secret_version_and_keeps_another_writers_change() {
    let cp = control_plane();
    let (ca, ns) = ca_and_namespace(cp, "version");
    let name = unique("versioned");
    apply(
        cp,
        &cert_yaml(
            &name,
            &ca,
            &ns,
            "  commonName: versioned\n  duration: 1m\n  renewBefore: 45s\n",
        ),
    );
    let recorded = |status: &certop::api::ClusterCertificateStatus| {
        status
            .secret_version
            .as_ref()
            .map(|v| v.resource_version.clone())
    };
    let version = || secret(cp, &ns, &name).and_then(|s| s.metadata.resource_version);
    let status = wait_ready(cp, &name).status.expect("status");
    assert_eq!(recorded(&status), version(), "issued");
    let renewed_after = |serial: String| {
        let renewed = wait_for(Duration::from_secs(60), || {
            cert(cp, &name).status.is_some_and(|s| {
                s.serial_number.as_ref().is_some_and(|n| *n != serial) && recorded(&s) == version()
            })
        });
        assert!(renewed, "not renewed\n{}", log_tail());
        wait_ready(cp, &name).status.expect("status")
    };
    let status = renewed_after(status.serial_number.expect("serial"));
    assert_eq!(status.revision, Some(2));
    assert_eq!(
        condition(cp, &name, "Ready").map(|c| c.1),
        Some("Renewed".into())
    );
    let annotated = cp.kubectl(&[
        "annotate",
        "secret",
        "-n",
        &ns,
        &name,
        "team.example/owner=web",
    ]);
    assert!(annotated.status.success(), "{}", stderr(&annotated));
    let status = renewed_after(status.serial_number.expect("serial"));
    assert_eq!(status.revision, Some(3));
    let kept = secret(cp, &ns, &name).expect("secret");
    assert_eq!(
        kept.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get("team.example/owner"))
            .map(String::as_str),
        Some("web"),
        "the other writer's annotation is kept"
    );
    assert_consistent(&kept);
}

/// The shortest certificate with the longest renewal window the API
/// server admits is issued at most twice a minute: its age counts from the
/// issuance, not from the backdated notBefore (which re-issued it on every
/// pass), and no renewal comes before 30 s.
#[test]
fn a_one_minute_certificate_renewed_at_99_percent_is_issued_at_most_twice_a_minute() {
    let cp = control_plane();
    let (ca, ns) = ca_and_namespace(cp, "floor");
    let name = unique("minute");
    apply(
        cp,
        &cert_yaml(
            &name,
            &ca,
            &ns,
            "  commonName: minute\n  duration: 1m\n  renewBeforePercentage: 99\n",
        ),
    );
    wait_ready(cp, &name);
    let revision = || {
        stdout(&cp.kubectl(&[
            "get",
            "clustercertificate",
            &name,
            "-o",
            "jsonpath={.status.revision}",
        ]))
        .trim()
        .parse::<i64>()
        .unwrap_or(0)
    };
    let first = revision();
    std::thread::sleep(Duration::from_secs(60));
    let issued = revision() - first;
    println!("revisions issued in 60 s after the first: {issued}");
    assert!(
        issued <= 2,
        "{issued} issuances of a 1-minute certificate in a minute\n{}",
        log_tail()
    );
}

#[test]
fn a_renewal_request_reissues_once() {
    let cp = control_plane();
    let (ca, ns) = ca_and_namespace(cp, "ask");
    let name = unique("ask");
    apply(cp, &cert_yaml(&name, &ca, &ns, "  commonName: ask\n"));
    let first = wait_ready(cp, &name)
        .status
        .and_then(|s| s.serial_number)
        .expect("serial");
    std::thread::sleep(Duration::from_millis(1100));
    let out = Command::new(env!("CARGO_BIN_EXE_certop"))
        .env("KUBECONFIG", &cp.kubeconfig)
        .args(["renew", &name])
        .output()
        .expect("certop renew");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(wait_for(WAIT, || cert(cp, &name)
        .status
        .and_then(|s| s.serial_number)
        .is_some_and(|s| s != first)));
    let second = wait_ready(cp, &name)
        .status
        .and_then(|s| s.serial_number)
        .expect("serial");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        cert(cp, &name).status.and_then(|s| s.serial_number),
        Some(second),
        "one request, one re-issue"
    );
}

#[test]
fn the_operator_fails_at_start_with_one_clear_line() {
    let cp = control_plane();
    operator();
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_certop"))
            .env("KUBECONFIG", &cp.operator_kubeconfig)
            .arg("run")
            .args(args)
            .stdin(std::process::Stdio::null())
            .output()
            .expect("certop run")
    };
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let busy = run(&[&format!("--http-addr={addr}"), "--leader-elect=false"]);
    assert!(!busy.status.success(), "a port in use must fail the start");
    assert!(
        stderr(&busy).contains(&format!("cannot start the HTTP server on {addr}")),
        "{}",
        stderr(&busy)
    );
    let missing = run(&["--http-addr=127.0.0.1:0", "--namespace=no-such-namespace"]);
    assert!(!missing.status.success());
    let last = stderr(&missing)
        .trim_end()
        .lines()
        .last()
        .unwrap_or_default()
        .to_string();
    assert!(
        last.contains("namespace no-such-namespace does not exist")
            && !last.contains("ErrorResponse"),
        "one line in words, not a Rust struct: {last}"
    );
    let lease = run(&["--http-addr=127.0.0.1:0", "--lease-duration=0"]);
    assert_eq!(
        lease.status.code(),
        Some(2),
        "a flag out of range is a usage error"
    );
    drop(taken);
}

#[test]
fn an_issuer_that_appears_later_resumes_issuance() {
    let cp = control_plane();
    operator();
    let ns = unique("late");
    assert!(cp.kubectl(&["create", "namespace", &ns]).status.success());
    let ca = unique("late-ca");
    let name = unique("late");
    apply(cp, &cert_yaml(&name, &ca, &ns, "  commonName: late\n"));
    let (_, _, message) = wait_reason(cp, &name, "IssuerNotFound");
    assert!(message.contains(&ca), "{message}");
    wait_event(cp, &name, "IssuerNotFound");
    apply(cp, &ca_yaml(&ca, ""));
    wait_ready(cp, &name);
}

#[test]
fn the_second_certificate_for_a_secret_is_refused_and_the_first_keeps_it() {
    let cp = control_plane();
    let (ca, ns) = ca_and_namespace(cp, "dup");
    let first = unique("first");
    apply(cp, &cert_yaml(&first, &ca, &ns, "  commonName: first\n"));
    wait_ready(cp, &first);
    let before = secret(cp, &ns, &first).map(|s| leaf_of(&s).serial);
    let second = unique("second");
    apply(
        cp,
        &cert_yaml(&second, &ca, &ns, "  commonName: second\n").replace(
            &format!("secretName: {second}"),
            &format!("secretName: {first}"),
        ),
    );
    let (_, _, message) = wait_reason(cp, &second, "SecretConflict");
    assert!(
        message.contains(&format!("belongs to ClusterCertificate {first}")),
        "{message}"
    );
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        secret(cp, &ns, &first).map(|s| leaf_of(&s).serial),
        before,
        "the first keeps its Secret"
    );
}

#[test]
fn deleting_a_certificate_deletes_its_secret_unless_the_policy_retains_it() {
    let cp = control_plane();
    let (ca, ns) = ca_and_namespace(cp, "del");
    let gone = unique("gone");
    let kept = unique("kept");
    apply(cp, &cert_yaml(&gone, &ca, &ns, "  commonName: gone\n"));
    apply(
        cp,
        &cert_yaml(
            &kept,
            &ca,
            &ns,
            "  commonName: kept\n  secretDeletionPolicy: Retain\n",
        ),
    );
    wait_ready(cp, &gone);
    wait_ready(cp, &kept);
    for name in [&gone, &kept] {
        let out = cp.kubectl(&[
            "delete",
            "clustercertificate",
            name,
            "--wait=true",
            "--timeout=30s",
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    assert!(
        secret(cp, &ns, &gone).is_none(),
        "Delete policy removes the Secret"
    );
    assert!(secret(cp, &ns, &kept).is_some(), "Retain policy keeps it");
}

/// Bad input the CEL rules cannot see: each gets Ready=False with a reason
/// and a message that says what to fix, and an Event; the operator keeps
/// serving everything else.
#[test]
fn bad_input_gets_a_reason_a_message_and_an_event() {
    let cp = control_plane();
    let (ca, ns) = ca_and_namespace(cp, "bad");
    let foreign = unique("foreign");
    let out = cp.kubectl(&[
        "create",
        "secret",
        "generic",
        "-n",
        &ns,
        &foreign,
        "--from-literal=keep=me",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let not_ready_ca = unique("notready");
    apply(
        cp,
        &ca_yaml(&not_ready_ca, "  keySource:\n    adopt: true\n"),
    );
    let short_ca = unique("short-ca");
    apply(cp, &ca_yaml(&short_ca, "  duration: 2h\n"));

    // (spec lines, expected Ready reason, words the message must contain)
    let cases: Vec<(String, &str, &str)> = vec![
        (
            "  commonName: a\n  issuerRef: {name: missing-ca}\n".into(),
            "IssuerNotFound",
            "does not exist",
        ),
        (
            format!("  commonName: a\n  issuerRef: {{name: {not_ready_ca}}}\n"),
            "IssuerNotReady",
            "is not Ready",
        ),
        (
            "  commonName: a\n  secretNamespace: no-such-namespace\n".into(),
            "NamespaceNotFound",
            "does not exist",
        ),
        (
            "  profile: admin\n  commonName: root\n".into(),
            "InvalidSpec",
            "remove commonName",
        ),
        (
            "  profile: admin\n  organizations: [system:masters]\n".into(),
            "InvalidSpec",
            "remove organizations",
        ),
        (
            "  commonName: root\n  organizations: [system:masters]\n".into(),
            "PolicyViolation",
            "does not allow organizations \"system:masters\"",
        ),
        (
            "  profile: super-admin\n".into(),
            "PolicyViolation",
            "does not allow commonNames \"kubernetes-super-admin\"",
        ),
        (
            "  profile: scheduler\n  dnsNames: [x.example.com]\n".into(),
            "InvalidSpec",
            "takes no dnsNames",
        ),
        (
            "  profile: admin\n  usages: [server auth]\n".into(),
            "InvalidSpec",
            "remove usages",
        ),
        (
            "  commonName: a\n  usages: [key encipherment]\n".into(),
            "InvalidSpec",
            "needs an RSA key",
        ),
        (
            format!(
                "  profile: kubelet-client\n  nodeName: {}\n",
                "n".repeat(60)
            ),
            "InvalidSpec",
            "X.509 allows 64",
        ),
        (
            format!("  commonName: a\n  secretName: {foreign}\n"),
            "SecretConflict",
            "not managed by certop",
        ),
    ];
    let mut names = Vec::new();
    for (i, (lines, _, _)) in cases.iter().enumerate() {
        let name = unique(&format!("bad{i}"));
        let mut yaml = cert_yaml(&name, &ca, &ns, lines);
        for field in ["issuerRef", "secretNamespace", "secretName"] {
            if lines.contains(&format!("  {field}:")) {
                let original = yaml
                    .lines()
                    .find(|l| l.starts_with(&format!("  {field}:")))
                    .expect("line")
                    .to_string();
                yaml = yaml.replacen(&format!("{original}\n"), "", 1);
            }
        }
        apply(cp, &yaml);
        names.push(name);
    }
    for ((_, reason, words), name) in cases.iter().zip(&names) {
        let (status, _, message) = wait_reason(cp, name, reason);
        assert_eq!(status, "False", "{name}");
        assert!(
            message.contains(words),
            "{reason}: {message:?} should contain {words:?}"
        );
        wait_event(cp, name, reason);
    }
    let untouched: Secret = get(cp, &["secret", "-n", &ns, &foreign]).expect("foreign secret");
    assert_eq!(
        data(&untouched, "keep"),
        b"me".to_vec(),
        "a Secret certop does not own is never overwritten"
    );

    // A duration longer than the CA has left is cut to the CA, and said so.
    let clamped = unique("clamped");
    apply(
        cp,
        &cert_yaml(
            &clamped,
            &short_ca,
            &ns,
            "  commonName: a\n  duration: 10h\n",
        ),
    );
    let c = wait_ready(cp, &clamped);
    let ca_obj: CertificateAuthority = get(cp, &["certificateauthority", &short_ca]).expect("ca");
    assert_eq!(
        c.status.and_then(|s| s.not_after),
        ca_obj.status.and_then(|s| s.not_after)
    );
    wait_event(cp, &clamped, "DurationClamped");

    // The operator kept serving everything else meanwhile.
    let fine = unique("fine");
    apply(cp, &cert_yaml(&fine, &ca, &ns, "  commonName: fine\n"));
    wait_ready(cp, &fine);
}

#[test]
fn the_kubectl_plugin_shows_status_and_kubeadm_style_expiration() {
    let cp = control_plane();
    let (ca, ns) = ca_and_namespace(cp, "plugin");
    let name = unique("plugin");
    let policy = policy_for(
        cp,
        &ca,
        "    profiles: [admin]\n    commonNames: [kubernetes-admin]\n    organizations: [kubeadm:cluster-admins]\n",
    );
    apply(
        cp,
        &cert_yaml(&name, &ca, &ns, &format!("  profile: admin\n{policy}")),
    );
    let c = wait_ready(cp, &name);
    let serial = c.status.and_then(|s| s.serial_number).expect("serial");
    // kubectl finds plugins named kubectl-<name> on PATH.
    let bin = tempfile::tempdir().expect("tmp");
    std::os::unix::fs::symlink(
        env!("CARGO_BIN_EXE_certop"),
        bin.path().join("kubectl-certop"),
    )
    .expect("symlink");
    let path = format!(
        "{}:{}",
        bin.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let kubectl = |args: &[&str]| {
        Command::new("kubectl")
            .env("KUBECONFIG", &cp.kubeconfig)
            .env("PATH", &path)
            .args(args)
            .output()
            .expect("kubectl")
    };

    let status = kubectl(&["certop", "status", &name]);
    let text = stdout(&status);
    assert!(status.status.success(), "{}", stderr(&status));
    for expected in [
        "Ready:         True (Issued)",
        &serial,
        "CN=kubernetes-admin",
        "Issued",
        &format!("Secret:        {ns}/{name}"),
    ] {
        assert!(
            text.contains(expected),
            "status lacks {expected:?}:\n{text}"
        );
    }

    let table = kubectl(&["certop", "check-expiration"]);
    let text = stdout(&table);
    assert!(table.status.success(), "{}", stderr(&table));
    assert!(
        text.starts_with("CERTIFICATE")
            && text.contains("RESIDUAL TIME")
            && text.contains("CERTIFICATE AUTHORITY"),
        "{text}"
    );
    let row = text
        .lines()
        .find(|l| l.starts_with(&name))
        .expect("a row for the certificate");
    assert!(
        row.contains(&ca) && row.contains("89d") && row.trim_end().ends_with("True"),
        "{row}"
    );
    assert!(
        text.lines().any(|l| l.starts_with(&ca) && l.contains("9y")),
        "the CA table lists {ca}:\n{text}"
    );

    let missing = kubectl(&["certop", "status", "no-such-certificate"]);
    assert!(!missing.status.success());
    assert_eq!(
        stderr(&missing).trim(),
        "error: ClusterCertificate no-such-certificate not found",
        "an error in words, not a library struct"
    );

    // The CA's counts follow its ledger.
    let ca_status = || kubectl(&["certop", "status", &format!("ca/{ca}")]);
    assert!(
        wait_for(WAIT, || stdout(&ca_status())
            .contains("Certificates:  1 live")),
        "{}",
        stdout(&ca_status())
    );
    let text = stdout(&ca_status());
    for expected in ["Ready:         True (Ready)", "CRL:           number"] {
        assert!(
            text.contains(expected),
            "CA status lacks {expected:?}:\n{text}"
        );
    }

    let inspect = kubectl(&["certop", "inspect", "secret", &format!("{ns}/{name}")]);
    let text = stdout(&inspect);
    assert!(inspect.status.success(), "{}", stderr(&inspect));
    for expected in [
        "Certificate 1 of 2:",
        "CN=kubernetes-admin",
        "Usages:       digital signature, client auth",
        "Private key:    matches the certificate",
    ] {
        assert!(
            text.contains(expected),
            "inspect lacks {expected:?}:\n{text}"
        );
    }

    let labelled = kubectl(&["label", "clustercertificate", &name, &format!("team={ns}")]);
    assert!(labelled.status.success(), "{}", stderr(&labelled));
    let renew = kubectl(&["certop", "renew", "-l", &format!("team={ns}")]);
    assert!(renew.status.success(), "{}", stderr(&renew));
    assert_eq!(
        stdout(&renew).trim(),
        format!("renewal of {name} requested")
    );
    assert!(wait_for(WAIT, || cert(cp, &name)
        .status
        .and_then(|s| s.serial_number)
        .is_some_and(|s| s != serial)));

    let completion = kubectl(&["certop", "completion", "bash"]);
    assert!(completion.status.success() && stdout(&completion).contains("kubectl-certop"));
}

#[test]
fn the_operator_adopts_a_pki_init_ca_so_node_files_and_crds_share_it() {
    let cp = control_plane();
    operator();
    let tmp = tempfile::tempdir().expect("tmp");
    let pki = tmp.path().join("pki");
    let init = Command::new(env!("CARGO_BIN_EXE_certop"))
        .args([
            "pki",
            "init",
            "--dir",
            pki.to_str().expect("utf-8"),
            "--node-name",
            "cp-1",
            "--advertise-address",
            "192.0.2.10",
        ])
        .output()
        .expect("certop pki init");
    assert!(init.status.success(), "{}", stderr(&init));
    let ca = unique("node-ca");
    create_ca_secret(cp, &format!("{ca}-pki"), &pki);
    apply(
        cp,
        &ca_yaml(
            &ca,
            &format!("  keySource:\n    secretName: {ca}-pki\n    adopt: true\n"),
        ),
    );
    let ns = unique("adopt-init");
    assert!(cp.kubectl(&["create", "namespace", &ns]).status.success());
    let name = unique("from-init-ca");
    let policy = policy_for(
        cp,
        &ca,
        "    profiles: [kube-apiserver-kubelet-client]\n    commonNames: [kube-apiserver-kubelet-client]\n",
    );
    apply(
        cp,
        &cert_yaml(
            &name,
            &ca,
            &ns,
            &format!("  profile: kube-apiserver-kubelet-client\n{policy}"),
        ),
    );
    wait_ready(cp, &name);
    let s = secret(cp, &ns, &name).expect("secret");
    let node_ca = parse_chain(
        &std::fs::read(pki.join("ca.crt")).expect("ca.crt"),
        "ca.crt",
    )
    .expect("parse");
    assert!(
        leaf_of(&s).is_issued_by(&node_ca[0]),
        "the operator signs with the node's CA"
    );
    assert_eq!(
        data(&s, "ca.crt"),
        std::fs::read(pki.join("ca.crt")).expect("ca.crt"),
        "one trust anchor for files and CRDs"
    );
}

#[test]
fn an_adopted_ca_becomes_ready_when_its_secret_appears_and_issuance_resumes() {
    let cp = control_plane();
    operator();
    let ca = unique("late-secret");
    let ns = unique("late-secret");
    assert!(cp.kubectl(&["create", "namespace", &ns]).status.success());
    apply(
        cp,
        &ca_yaml(
            &ca,
            &format!("  keySource:\n    secretName: {ca}-pki\n    adopt: true\n"),
        ),
    );
    let name = unique("waits");
    apply(cp, &cert_yaml(&name, &ca, &ns, "  commonName: waits\n"));
    wait_reason(cp, &name, "IssuerNotReady");
    // A key of its own: the kubeadm fixture's is another test's CA's, and
    // two CAs never share a key.
    let dir = tempfile::tempdir().expect("tempdir");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_certop"))
        .args(["pki", "ca", "create", "--name", "late CA", "--out"])
        .arg(dir.path())
        .output()
        .expect("certop");
    assert!(out.status.success(), "{}", stderr(&out));
    create_ca_secret(cp, &format!("{ca}-pki"), dir.path());
    // Not the hourly resync: the Secret's creation wakes the CA, and the CA its certificates.
    wait_ready(cp, &name);
}

#[test]
fn a_second_ca_on_another_cas_key_is_refused_and_the_first_keeps_signing() {
    let cp = control_plane();
    let (first, ns) = ca_and_namespace(cp, "keyowner");
    let key_secret = get::<CertificateAuthority>(cp, &["certificateauthority", &first])
        .and_then(|c| c.status)
        .and_then(|s| s.secret_name)
        .expect("the first CA's key Secret");
    // A second CA pointed at the first one's key would sign outside every
    // policy that governs the first (policies are per CA).
    let alias = unique("alias");
    apply(
        cp,
        &ca_yaml(
            &alias,
            &format!("  keySource:\n    secretName: {key_secret}\n"),
        ),
    );
    let ok = wait_for(WAIT, || {
        get::<CertificateAuthority>(cp, &["certificateauthority", &alias])
            .and_then(|c| c.status)
            .and_then(|s| s.conditions.into_iter().find(|c| c.type_ == "Ready"))
            .is_some_and(|c| c.reason == "CAKeyInUse" && c.message.contains(&first))
    });
    assert!(ok, "{}", log_tail());
    let name = unique("owner-signs");
    apply(
        cp,
        &cert_yaml(&name, &first, &ns, "  commonName: owner-signs\n"),
    );
    wait_ready(cp, &name);
}

/// A CA whose name is too long for its default Secret name is InvalidSpec,
/// and says so in an Event too: the API server refuses an Event whose name
/// (built from the object's) passes 253 characters, so certop cuts it.
#[test]
fn a_ca_too_long_for_its_secret_name_says_so_in_an_event() {
    let cp = control_plane();
    operator();
    let prefix = unique("long");
    let name = format!("{prefix}-{}", "x".repeat(250 - prefix.len()));
    assert_eq!(name.len(), 251);
    apply(
        cp,
        &format!(
            "apiVersion: certop.dev/v1\nkind: CertificateAuthority\nmetadata:\n  name: {name}\nspec:\n  subject:\n    commonName: long CA\n"
        ),
    );
    let ok = wait_for(WAIT, || {
        get::<CertificateAuthority>(cp, &["certificateauthority", &name])
            .and_then(|c| c.status)
            .and_then(|s| s.conditions.into_iter().find(|c| c.type_ == "Ready"))
            .is_some_and(|c| {
                c.reason == "InvalidSpec" && c.message.contains("keySource.secretName")
            })
    });
    assert!(ok, "not InvalidSpec\n{}", log_tail());
    let seen = wait_event(cp, &name, "InvalidSpec");
    assert!(seen.contains("keySource.secretName"), "{seen}");
}
