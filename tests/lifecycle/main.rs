//! The operator process's life: restarts, two replicas with a leader,
//! failover, a crash in the middle of issuing, a CA rotation under live
//! traffic, kube-apiserver and etcd restarted under it, and Secrets
//! encrypted through the KMS plugin. Its own control plane (a separate test
//! binary; the control-plane restart and KMS tests start one more each),
//! and one scenario at a time, since each stops and starts operators.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failed step should panic

#[path = "../common/mod.rs"]
mod common;
mod control_plane_restart;
mod drills;
mod kms;
#[path = "../integration/objects.rs"]
mod objects;
mod rotation;
#[path = "../integration/support.rs"]
mod support;

use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use objects::{apply, assert_consistent, ca_yaml, cert, cert_yaml, get, secret};
use support::{ControlPlane, control_plane, stdout, unique, wait_for};

pub(crate) static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

pub(crate) fn setup(prefix: &str) -> (&'static ControlPlane, String, String) {
    let cp = control_plane();
    cp.install_rbac();
    let ns = unique(prefix);
    assert!(cp.kubectl(&["create", "namespace", &ns]).status.success());
    (cp, unique(&format!("{prefix}-ca")), ns)
}

pub(crate) fn ready(cp: &ControlPlane, name: &str) -> bool {
    cert(cp, name).status.is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True")
    })
}

fn holder(cp: &ControlPlane, lease: &str) -> String {
    stdout(&cp.kubectl(&[
        "get",
        "lease",
        "-n",
        "certop-system",
        lease,
        "-o",
        "jsonpath={.spec.holderIdentity}",
    ]))
}

#[test]
fn a_restarted_operator_issues_nothing_new_for_valid_certificates() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let (cp, ca, ns) = setup("restart");
    let lease = unique("lease");
    let op = cp.start_operator("restart-1", &[&format!("--lease-name={lease}")]);
    apply(cp, &ca_yaml(&ca, ""));
    let names: Vec<String> = (0..5).map(|i| unique(&format!("keep{i}"))).collect();
    for n in &names {
        apply(cp, &cert_yaml(n, &ca, &ns, "  commonName: keep\n"));
    }
    assert!(
        wait_for(Duration::from_secs(60), || names
            .iter()
            .all(|n| ready(cp, n))),
        "{}",
        op.log_text()
    );
    let before: Vec<_> = names
        .iter()
        .map(|n| secret(cp, &ns, n).and_then(|s| s.metadata.resource_version))
        .collect();
    op.stop();

    let op = cp.start_operator("restart-2", &[&format!("--lease-name={lease}")]);
    // A new certificate Ready means the restarted operator has worked its queue.
    let probe = unique("probe");
    apply(cp, &cert_yaml(&probe, &ca, &ns, "  commonName: probe\n"));
    assert!(
        wait_for(Duration::from_secs(60), || ready(cp, &probe)),
        "{}",
        op.log_text()
    );
    std::thread::sleep(Duration::from_secs(2));
    let after: Vec<_> = names
        .iter()
        .map(|n| secret(cp, &ns, n).and_then(|s| s.metadata.resource_version))
        .collect();
    assert_eq!(before, after, "no Secret was rewritten after the restart");
    for n in &names {
        assert_eq!(cert(cp, n).status.and_then(|s| s.revision), Some(1), "{n}");
    }
    // The CRL number only ever grows, across the restart too.
    let before = crl_number(cp, &ca);
    let out = Command::new(env!("CARGO_BIN_EXE_certop"))
        .env("KUBECONFIG", &cp.kubeconfig)
        .args(["revoke", &names[0]])
        .output()
        .expect("certop revoke");
    assert!(out.status.success(), "{}", support::stderr(&out));
    assert!(
        wait_for(Duration::from_secs(30), || crl_number(cp, &ca) > before),
        "no new CRL after the restart"
    );
    op.stop();
}

fn crl_number(cp: &ControlPlane, ca: &str) -> i64 {
    get::<certop::api::CertificateAuthority>(cp, &["certificateauthority", ca])
        .and_then(|c| c.status)
        .and_then(|s| s.crl_number)
        .unwrap_or(0)
}

#[test]
fn two_replicas_elect_one_leader_and_fail_over_within_the_lease() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let (cp, ca, ns) = setup("ha");
    let lease = unique("lease");
    let lease_flag = format!("--lease-name={lease}");
    let a = cp.start_operator("replica-a", &[&lease_flag]);
    let b = cp.start_operator("replica-b", &[&lease_flag]);
    assert!(
        wait_for(Duration::from_secs(30), || !holder(cp, &lease).is_empty()),
        "nobody took the lease"
    );
    let leader = holder(cp, &lease);
    apply(cp, &ca_yaml(&ca, ""));
    let first = unique("ha-first");
    apply(cp, &cert_yaml(&first, &ca, &ns, "  commonName: first\n"));
    assert!(wait_for(Duration::from_secs(60), || ready(cp, &first)));
    let (leader_op, standby) = if leader == "replica-a" {
        (a, b)
    } else {
        (b, a)
    };
    assert!(
        leader_op.log_text().contains("starting controllers"),
        "the lease holder reconciles"
    );
    assert!(
        !standby.log_text().contains("starting controllers"),
        "the standby does not"
    );
    assert!(
        !standby.log_text().contains("issued"),
        "only the leader issues"
    );
    // Metrics come from the stores: the standby exports them too.
    assert!(
        wait_for(Duration::from_secs(30), || {
            crate::support::http_get(&standby.metrics_url).is_some_and(|m| {
                m.lines().any(|l| {
                    l.starts_with("certop_certificate_expiration_timestamp_seconds{")
                        && l.contains(&format!("name=\"{first}\""))
                })
            })
        }),
        "the standby exports the certificate's expiry"
    );

    assert!(
        wait_for(Duration::from_secs(30), || crl_number(cp, &ca) >= 1),
        "the CA has a CRL"
    );
    let number_before_failover = crl_number(cp, &ca);
    let killed_at = Instant::now();
    leader_op.kill();
    assert!(
        wait_for(Duration::from_secs(30), || standby
            .log_text()
            .contains("became the leader")),
        "the standby never took over:\n{}",
        standby.log_text()
    );
    let failover = killed_at.elapsed();
    let second = unique("ha-second");
    apply(cp, &cert_yaml(&second, &ca, &ns, "  commonName: second\n"));
    assert!(
        wait_for(Duration::from_secs(60), || ready(cp, &second)),
        "{}",
        standby.log_text()
    );
    let revoked = Command::new(env!("CARGO_BIN_EXE_certop"))
        .env("KUBECONFIG", &cp.kubeconfig)
        .args(["revoke", &first])
        .output()
        .expect("certop revoke");
    assert!(revoked.status.success(), "{}", support::stderr(&revoked));
    assert!(
        wait_for(Duration::from_secs(30), || crl_number(cp, &ca)
            > number_before_failover),
        "the new leader's CRL number must exceed the old leader's ({number_before_failover})"
    );
    assert!(
        failover < Duration::from_secs(6 + 6),
        "failover took {failover:?}, lease is 6s"
    );
    eprintln!("failover after SIGKILL of the leader: {failover:?} (lease duration 6s)");
    assert_eq!(
        holder(cp, &lease),
        if leader == "replica-a" {
            "replica-b"
        } else {
            "replica-a"
        }
    );

    // Someone else takes the Lease: the leader stops reconciling and exits.
    let now = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.6fZ");
    let steal = format!(
        r#"{{"spec":{{"holderIdentity":"intruder","renewTime":"{now}","leaseDurationSeconds":60}}}}"#
    );
    let out = cp.kubectl(&[
        "patch",
        "lease",
        "-n",
        "certop-system",
        &lease,
        "--type=merge",
        "-p",
        &steal,
    ]);
    assert!(out.status.success(), "{}", support::stderr(&out));
    assert!(
        wait_for(Duration::from_secs(20), || standby
            .log_text()
            .contains("lost the leader lease")),
        "a leader that lost its Lease must stop:\n{}",
        standby.log_text()
    );
    assert!(
        wait_for(Duration::from_secs(10), || !standby.is_running()),
        "and exit, to restart as a standby"
    );
    let third = unique("ha-third");
    apply(cp, &cert_yaml(&third, &ca, &ns, "  commonName: third\n"));
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        !ready(cp, &third),
        "nobody may issue while the intruder holds the Lease"
    );
    standby.stop();
}

#[test]
fn a_crash_in_the_middle_of_issuing_leaves_each_certificate_issued_exactly_once() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let (cp, ca, ns) = setup("crash");
    let lease = unique("lease");
    let op = cp.start_operator("crash-1", &[&format!("--lease-name={lease}")]);
    apply(cp, &ca_yaml(&ca, "  keyAlgorithm: RSA-2048\n"));
    assert!(wait_for(Duration::from_secs(60), || {
        get::<certop::api::CertificateAuthority>(cp, &["certificateauthority", &ca])
            .and_then(|c| c.status)
            .is_some_and(|s| s.serial_number.is_some())
    }));
    // RSA-3072 keys take a few seconds for 40 certificates: time to crash mid-way.
    let names: Vec<String> = (0..40).map(|i| format!("{ns}-c{i}")).collect();
    let yaml: String = names
        .iter()
        .map(|n| {
            cert_yaml(
                n,
                &ca,
                &ns,
                "  commonName: crash\n  privateKey: {algorithm: RSA-3072}\n",
            )
        })
        .collect::<Vec<_>>()
        .join("---\n");
    apply(cp, &yaml);
    let count = || {
        let out = cp.kubectl(&["get", "secrets", "-n", &ns, "-o", "name"]);
        stdout(&out).lines().count()
    };
    assert!(
        wait_for(Duration::from_secs(60), || count() >= 3),
        "nothing was issued"
    );
    let issued_before_crash = count();
    op.kill();
    assert!(
        issued_before_crash < names.len(),
        "the crash must hit mid-way; all {} were done",
        names.len()
    );

    let op = cp.start_operator("crash-2", &[&format!("--lease-name={lease}")]);
    assert!(
        wait_for(Duration::from_secs(120), || names
            .iter()
            .all(|n| ready(cp, n))),
        "{}",
        op.log_text()
    );
    for n in &names {
        let s = secret(cp, &ns, n).expect("secret");
        assert_consistent(&s);
        assert_eq!(
            cert(cp, n).status.and_then(|s| s.revision),
            Some(1),
            "{n} was issued more than once"
        );
    }
    eprintln!(
        "crash after {issued_before_crash} of {} Secrets; all Ready once after restart",
        names.len()
    );
    op.stop();
}
