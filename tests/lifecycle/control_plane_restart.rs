//! kube-apiserver and etcd killed under a running operator and started
//! again on their data (same port, same credentials): the operator
//! reconnects and catches up, and what was issued before stays as it was.

use std::time::{Duration, Instant};

use crate::ONE_AT_A_TIME;
use crate::objects::{apply, assert_consistent, ca_yaml, cert, cert_yaml, secret};
use crate::support::{ControlPlane, KeptControlPlane, Operator, stderr, unique, wait_for};

fn ready(cp: &ControlPlane, name: &str) -> bool {
    cert(cp, name).status.is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True")
    })
}

fn revision(cp: &ControlPlane, name: &str) -> i64 {
    cert(cp, name)
        .status
        .and_then(|s| s.revision)
        .unwrap_or_default()
}

/// What a Deployment does: an operator that exited (its Lease ran out
/// while the API server was down, so it stopped writing) is started again.
fn keep_running(cp: &ControlPlane, op: &mut Operator, restarts: &mut u32) {
    if !op.is_running() {
        *restarts += 1;
        let next = cp.start_operator(&format!("cp-restart-{restarts}"), &["--lease-duration=15"]);
        std::mem::replace(op, next).stop();
    }
}

#[test]
fn the_operator_catches_up_after_the_api_server_and_etcd_restart_with_their_data() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let kept = KeptControlPlane::new();
    let cp = kept.start();
    cp.install_rbac();
    let ns = unique("cp-restart");
    assert!(cp.kubectl(&["create", "namespace", &ns]).status.success());
    let ca = unique("cp-restart-ca");
    let mut op = cp.start_operator("cp-restart-0", &["--lease-duration=15"]);
    apply(&cp, &ca_yaml(&ca, ""));
    let names: Vec<String> = (0..3).map(|i| unique(&format!("kept{i}"))).collect();
    for name in &names {
        apply(&cp, &cert_yaml(name, &ca, &ns, "  commonName: kept\n"));
    }
    assert!(
        wait_for(Duration::from_secs(60), || names
            .iter()
            .all(|n| ready(&cp, n))),
        "{}",
        op.log_text()
    );
    let fingerprints: Vec<Option<String>> = names
        .iter()
        .map(|n| cert(&cp, n).status.and_then(|s| s.fingerprint))
        .collect();

    cp.kill();
    let down_at = Instant::now();
    std::thread::sleep(Duration::from_secs(2));
    let cp = kept.start();
    let outage = down_at.elapsed();
    assert!(names.iter().all(|n| ready(&cp, n)), "etcd kept the objects");

    // After the restart: a new certificate, and a renewal requested.
    let mut restarts = 0;
    let fresh = unique("after-restart");
    apply(&cp, &cert_yaml(&fresh, &ca, &ns, "  commonName: fresh\n"));
    let renew = cp.kubectl_certop(&["renew", &names[0]]);
    assert!(renew.status.success(), "{}", stderr(&renew));
    let caught_up = Instant::now();
    assert!(
        wait_for(Duration::from_secs(45), || {
            keep_running(&cp, &mut op, &mut restarts);
            ready(&cp, &fresh) && revision(&cp, &names[0]) == 2
        }),
        "the operator did not catch up after the control plane's restart:\n{}",
        op.log_text()
    );
    let catch_up = caught_up.elapsed();
    let fresh_secret = secret(&cp, &ns, &fresh).expect("the new certificate's Secret");
    assert_consistent(&fresh_secret);
    for (name, before) in names.iter().zip(&fingerprints).skip(1) {
        let now = cert(&cp, name).status.and_then(|s| s.fingerprint);
        assert_eq!(&now, before, "{name} was re-issued by the restart");
        assert_eq!(revision(&cp, name), 1, "{name}");
    }
    assert!(!op.log_text().contains("panicked"), "{}", op.log_text());
    eprintln!(
        "control plane down and back in {outage:?}; operator caught up {catch_up:?} later; \
         operator restarts (Lease run out): {restarts}"
    );
    op.stop();
    cp.kill();
}
