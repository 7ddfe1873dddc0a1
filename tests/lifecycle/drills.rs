//! Disaster drills (docs/user-guide.md, "Disaster recovery"): etcd
//! restored from an older snapshot, the operator's namespace deleted, a CA
//! key Secret deleted. Each breaks the PKI the way the accident would,
//! recovers as the runbook says, and checks what must survive: no new CA
//! key, no certificate issued twice, CRL numbers above every one published,
//! every certificate issued still revocable by name.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use certop::api::{CertificateAuthority, ClusterCertificate};
use certop::pki::parse_crl;
use serde_json::Value;

use crate::ONE_AT_A_TIME;
use crate::objects::{apply, ca_yaml, cert, cert_yaml, wait_event};
use crate::support::{
    ControlPlane, KeptControlPlane, Operator, http_request, stderr, stdout, unique, wait_for,
};

const WAIT: Duration = Duration::from_secs(60);

fn ready(cp: &ControlPlane, name: &str) -> bool {
    cert(cp, name).status.is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True")
    })
}

fn ca_object(cp: &ControlPlane, ca: &str) -> Option<CertificateAuthority> {
    crate::objects::get(cp, &["certificateauthority", ca])
}

/// (status, reason, message) of the CA's Ready condition.
fn ca_ready(cp: &ControlPlane, ca: &str) -> Option<(String, String, String)> {
    ca_object(cp, ca)?
        .status?
        .conditions
        .into_iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| (c.status, c.reason, c.message))
}

fn status_crl_number(cp: &ControlPlane, ca: &str) -> u64 {
    ca_object(cp, ca)
        .and_then(|c| c.status)
        .and_then(|s| s.crl_number)
        .and_then(|n| u64::try_from(n).ok())
        .unwrap_or(0)
}

/// The CRL the operator serves for the CA, as a consumer fetches it:
/// its number and the serials it lists.
fn served_crl(op: &Operator, ca: &str) -> Option<(u64, Vec<String>)> {
    let (code, _, der) = http_request(&format!("{}/crl/{ca}.crl", op.base_url), &[])?;
    if code != 200 {
        return None;
    }
    let crl = parse_crl(&der, None).ok()?;
    Some((
        crl.number?,
        crl.entries.iter().map(|(s, _, _)| s.to_string()).collect(),
    ))
}

/// Every CRL number the operator signed for the CA, from its log (the
/// `published CRL` line of each), in order.
fn published_numbers(op: &Operator, ca: &str) -> Vec<u64> {
    let mut plain = String::new();
    let mut escape = false;
    for c in op.log_text().chars() {
        match (escape, c) {
            (false, '\u{1b}') => escape = true,
            (true, 'm') => escape = false,
            (true, _) => {}
            (false, c) => plain.push(c),
        }
    }
    plain
        .lines()
        .filter(|l| l.contains("published CRL") && l.contains(&format!("ca={ca} ")))
        .filter_map(|l| {
            let (_, rest) = l.split_once(" number=")?;
            rest.split_whitespace().next()?.parse().ok()
        })
        .collect()
}

fn serial(cp: &ControlPlane, name: &str) -> Option<String> {
    cert(cp, name).status.and_then(|s| s.serial_number)
}

fn revision(cp: &ControlPlane, name: &str) -> Option<i64> {
    cert(cp, name).status.and_then(|s| s.revision)
}

/// An object as `kubectl get -o json` shows it.
fn json_of(cp: &ControlPlane, args: &[&str]) -> Value {
    let mut full = vec!["get"];
    full.extend_from_slice(args);
    full.extend_from_slice(&["-o", "json"]);
    let out = cp.kubectl(&full);
    assert!(
        out.status.success(),
        "kubectl get {args:?}: {}",
        stderr(&out)
    );
    serde_json::from_slice(&out.stdout).expect("JSON")
}

/// An object as saved to be created again: what the API server assigns
/// (uid, resourceVersion, timestamps, managedFields) left out.
fn saved(mut object: Value) -> Value {
    if let Some(meta) = object["metadata"].as_object_mut() {
        for field in [
            "uid",
            "resourceVersion",
            "creationTimestamp",
            "managedFields",
            "generation",
        ] {
            meta.remove(field);
        }
    }
    object
}

fn create(cp: &ControlPlane, object: &Value) {
    let out = cp.kubectl_stdin(&["create", "-f", "-"], &object.to_string());
    assert!(out.status.success(), "kubectl create: {}", stderr(&out));
}

/// A status saved with its object, put back through the status subresource.
fn put_status(cp: &ControlPlane, resource: &str, name: &str, status: &Value) {
    let patch = serde_json::json!({ "status": status }).to_string();
    let out = cp.kubectl(&[
        "patch",
        resource,
        name,
        "--subresource=status",
        "--type=merge",
        "-p",
        &patch,
    ]);
    assert!(
        out.status.success(),
        "kubectl patch status: {}",
        stderr(&out)
    );
}

fn copy_dir(from: &Path, to: &Path) {
    let _ = std::fs::remove_dir_all(to);
    let out = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .output()
        .expect("cp");
    assert!(out.status.success(), "cp -a: {}", stderr(&out));
}

/// etcd restored from a snapshot taken before a certificate was issued, a
/// certificate revoked and CRLs published (consumers hold the newest).
/// The workloads kept what was issued since (their Secret, its
/// ClusterCertificate with a status naming it, as GitOps or the
/// application's own backup brings them back), so only certop's ledger
/// and CRLs are older than what exists. After the restore: the next CRL
/// number is above every number published, and the certificate issued
/// since is found from its Secret and recorded again in the ledger, so a
/// revocation by name lists it in the CRL.
#[test]
fn an_older_etcd_snapshot_never_takes_the_crl_number_back_and_loses_no_certificate() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let kept = KeptControlPlane::new();
    let cp = kept.start();
    cp.install_rbac();
    let ns = unique("drill-snapshot");
    assert!(cp.kubectl(&["create", "namespace", &ns]).status.success());
    let ca = unique("drill-snapshot-ca");
    let domain = format!("{ns}.example");
    let named = |name: &str| format!("  commonName: {name}\n  dnsNames: [{name}.{domain}]\n");
    let op = cp.start_operator("drill-snapshot-0", &[]);
    apply(&cp, &ca_yaml(&ca, ""));
    let early = unique("early");
    apply(&cp, &cert_yaml(&early, &ca, &ns, &named("early")));
    assert!(
        wait_for(WAIT, || ready(&cp, &early)
            && status_crl_number(&cp, &ca) >= 1),
        "{}",
        op.log_text()
    );
    op.stop();
    cp.kill();
    let data = kept.dir.join("data");
    let snapshot = kept.dir.join("snapshot");
    copy_dir(&data, &snapshot);
    let at_snapshot = {
        let cp = kept.start();
        let n = status_crl_number(&cp, &ca);
        cp.kill();
        n
    };

    // After the snapshot: a certificate issued, one revoked, a CRL that
    // consumers fetch.
    let cp = kept.start();
    let op = cp.start_operator("drill-snapshot-1", &[]);
    let late = unique("late");
    apply(&cp, &cert_yaml(&late, &ca, &ns, &named("late")));
    assert!(wait_for(WAIT, || ready(&cp, &late)), "{}", op.log_text());
    let early_serial = serial(&cp, &early).expect("serial");
    let revoked = cp.kubectl_certop(&["revoke", &early]);
    assert!(revoked.status.success(), "{}", stderr(&revoked));
    let mut held = None;
    assert!(
        wait_for(WAIT, || {
            held = served_crl(&op, &ca).filter(|(_, s)| s.contains(&early_serial));
            held.is_some()
        }),
        "the revocation reached no CRL\n{}",
        op.log_text()
    );
    let (held_number, _) = held.expect("CRL");
    let highest = held_number.max(status_crl_number(&cp, &ca));
    assert!(
        highest > at_snapshot,
        "CRLs were published after the snapshot"
    );
    let late_certificate = json_of(&cp, &["clustercertificate", &late]);
    let late_secret = json_of(&cp, &["secret", "-n", &ns, &late]);
    let late_serial = serial(&cp, &late).expect("serial");
    op.stop();
    cp.kill();

    // The restore.
    std::fs::remove_dir_all(&data).expect("remove etcd's data");
    copy_dir(&snapshot, &data);
    let cp = kept.start();
    assert_eq!(
        status_crl_number(&cp, &ca),
        at_snapshot,
        "etcd holds the state of the snapshot"
    );
    assert!(
        crate::objects::get::<ClusterCertificate>(&cp, &["clustercertificate", &late]).is_none()
    );
    create(&cp, &saved(late_secret));
    create(&cp, &saved(late_certificate.clone()));
    put_status(
        &cp,
        "clustercertificate",
        &late,
        &late_certificate["status"],
    );
    assert_eq!(serial(&cp, &late), Some(late_serial.clone()));

    let op = cp.start_operator("drill-snapshot-2", &[]);
    // The revocation comes after the CA's first pass has looked at the
    // ledger (it counts early and late as issued once late is recorded
    // again); what the CRL then lists is the test.
    let issued = || {
        ca_object(&cp, &ca)
            .and_then(|c| c.status)
            .and_then(|s| s.issued_certificates)
    };
    wait_for(WAIT, || issued() >= Some(2));
    eprintln!(
        "issued certificates the CA counts after the restore: {:?}",
        issued()
    );
    let rev = unique("drill-snapshot-rev");
    apply(
        &cp,
        &format!(
            "apiVersion: certop.dev/v1\nkind: CertificateRevocation\nmetadata:\n  name: {rev}\nspec:\n  issuerRef: {{name: {ca}}}\n  reason: keyCompromise\n  dnsNames: [late.{domain}]\n"
        ),
    );
    let mut after = None;
    assert!(
        wait_for(WAIT, || {
            after = served_crl(&op, &ca).filter(|(_, s)| s.contains(&late_serial));
            after.is_some()
        }),
        "the revocation by name does not list {late_serial} (issued after the snapshot): {:?}\n{}",
        served_crl(&op, &ca),
        op.log_text()
    );
    let (number, _) = after.expect("CRL");
    let signed = published_numbers(&op, &ca);
    assert!(
        !signed.is_empty() && signed.iter().all(|n| *n > highest),
        "CRL numbers {signed:?} signed after the restore are not all above {highest}, published before it"
    );
    assert!(number > highest);
    assert!(
        wait_for(WAIT, || status_crl_number(&cp, &ca) >= number),
        "the CA's status names the new CRL"
    );
    assert_eq!(
        revision(&cp, &early),
        Some(1),
        "the snapshot's certificate is not issued again"
    );
    eprintln!(
        "CRL numbers: {at_snapshot} at the snapshot, {highest} published after it, {number} after the restore"
    );
    op.stop();
}

/// A CA key Secret deleted with a backup at hand: certop makes no new key
/// (that would break every chain), says why on the CA's Ready condition
/// and in an Event, and resumes with the same key, nothing re-issued,
/// once the Secret is restored.
#[test]
fn a_deleted_ca_key_is_never_replaced_and_the_ca_resumes_once_it_is_restored() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let (cp, ca, ns) = crate::setup("drill-key");
    let lease = unique("lease");
    let op = cp.start_operator("drill-key", &[&format!("--lease-name={lease}")]);
    apply(cp, &ca_yaml(&ca, ""));
    let names: Vec<String> = (0..2).map(|i| unique(&format!("drill-key{i}"))).collect();
    for n in &names {
        apply(cp, &cert_yaml(n, &ca, &ns, "  commonName: kept\n"));
    }
    assert!(
        wait_for(WAIT, || names.iter().all(|n| ready(cp, n))),
        "{}",
        op.log_text()
    );
    let fingerprint = ca_object(cp, &ca)
        .and_then(|c| c.status)
        .and_then(|s| s.fingerprint)
        .expect("fingerprint");
    let serials: Vec<Option<String>> = names.iter().map(|n| serial(cp, n)).collect();
    let key_secret = ca_object(cp, &ca)
        .and_then(|c| c.status)
        .and_then(|s| s.secret_name)
        .expect("the key's Secret");
    let taken = backup(cp);

    let deleted = cp.kubectl(&["delete", "secret", "-n", "certop-system", &key_secret]);
    assert!(deleted.status.success(), "{}", stderr(&deleted));
    // Any change to the CA makes a pass at once.
    let touched = cp.kubectl(&[
        "annotate",
        "certificateauthority",
        &ca,
        "drill/touched=1",
        "--overwrite",
    ]);
    assert!(touched.status.success(), "{}", stderr(&touched));
    assert!(
        wait_for(WAIT, || ca_ready(cp, &ca)
            .is_some_and(|(s, r, _)| s == "False" && r == "CASecretDeleted")),
        "the CA does not say its key is gone: {:?}\n{}",
        ca_ready(cp, &ca),
        op.log_text()
    );
    let (_, _, message) = ca_ready(cp, &ca).expect("condition");
    assert!(
        message.contains(&key_secret) && message.contains("from a backup"),
        "{message}"
    );
    wait_event(cp, &ca, "CASecretDeleted");
    std::thread::sleep(Duration::from_secs(5));
    let key_now = cp.kubectl(&["get", "secret", "-n", "certop-system", &key_secret]);
    assert!(
        !key_now.status.success(),
        "certop made a new CA key: {}",
        stdout(&key_now)
    );
    assert_eq!(
        ca_object(cp, &ca)
            .and_then(|c| c.status)
            .and_then(|s| s.fingerprint),
        Some(fingerprint.clone()),
        "the CA still names its key"
    );

    let said = taken.restore(cp);
    assert!(
        said.contains(&key_secret),
        "restore names the key Secret: {said}"
    );
    assert!(
        wait_for(WAIT, || ca_ready(cp, &ca)
            .is_some_and(|(s, _, _)| s == "True")),
        "the CA did not resume: {:?}\n{}",
        ca_ready(cp, &ca),
        op.log_text()
    );
    assert_eq!(
        ca_object(cp, &ca)
            .and_then(|c| c.status)
            .and_then(|s| s.fingerprint),
        Some(fingerprint),
        "the same key"
    );
    let fresh = unique("drill-key-fresh");
    apply(cp, &cert_yaml(&fresh, &ca, &ns, "  commonName: fresh\n"));
    assert!(wait_for(WAIT, || ready(cp, &fresh)), "{}", op.log_text());
    crate::objects::assert_consistent(&crate::objects::secret(cp, &ns, &fresh).expect("Secret"));
    for (n, s) in names.iter().zip(&serials) {
        assert!(wait_for(WAIT, || ready(cp, n)), "{n}: {}", op.log_text());
        assert_eq!(&serial(cp, n), s, "{n} was not issued again");
        assert_eq!(revision(cp, n), Some(1), "{n}");
    }
    op.stop();
}

/// A backup as `kubectl certop backup` writes it, with its passphrase.
struct Backup {
    file: String,
    passphrase: String,
    _dir: tempfile::TempDir,
}

fn backup(cp: &ControlPlane) -> Backup {
    let dir = tempfile::tempdir().expect("tmp");
    let passphrase = dir.path().join("passphrase");
    std::fs::write(&passphrase, "drill passphrase, kept apart\n").expect("write");
    let file = dir.path().join("pki.age");
    let b = Backup {
        file: file.display().to_string(),
        passphrase: passphrase.display().to_string(),
        _dir: dir,
    };
    let out = cp.kubectl_certop(&[
        "backup",
        "--out",
        &b.file,
        "--passphrase-file",
        &b.passphrase,
    ]);
    assert!(
        out.status.success(),
        "kubectl certop backup: {}",
        stderr(&out)
    );
    b
}

impl Backup {
    /// `kubectl certop restore --keep-existing`: what the cluster still
    /// holds stays as it is, what it lost comes back.
    fn restore(&self, cp: &ControlPlane) -> String {
        let out = cp.kubectl_certop(&[
            "restore",
            &self.file,
            "--passphrase-file",
            &self.passphrase,
            "--keep-existing",
        ]);
        assert!(
            out.status.success(),
            "kubectl certop restore: {}\n{}",
            stderr(&out),
            stdout(&out)
        );
        stdout(&out)
    }
}

/// What the namespace controller does when a namespace is deleted: every
/// object in it deleted, then the namespace finalized. The test control
/// plane runs no kube-controller-manager, so the drill does it.
fn delete_namespace(cp: &ControlPlane, ns: &str) {
    let out = cp.kubectl(&["delete", "namespace", ns, "--wait=false"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let kinds = stdout(&cp.kubectl(&[
        "api-resources",
        "--verbs=list,delete",
        "--namespaced",
        "-o",
        "name",
    ]));
    let kinds: Vec<&str> = kinds.lines().filter(|k| !k.starts_with("events")).collect();
    let out = cp.kubectl(&[
        "delete",
        &kinds.join(","),
        "--all",
        "-n",
        ns,
        "--wait=false",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let mut namespace = json_of(cp, &["namespace", ns]);
    namespace["spec"]["finalizers"] = Value::Array(Vec::new());
    let out = cp.kubectl_stdin(
        &[
            "replace",
            "--raw",
            &format!("/api/v1/namespaces/{ns}/finalize"),
            "-f",
            "-",
        ],
        &namespace.to_string(),
    );
    assert!(out.status.success(), "finalize: {}", stderr(&out));
    assert!(
        wait_for(WAIT, || !cp
            .kubectl(&["get", "namespace", ns])
            .status
            .success()),
        "namespace {ns} is still there"
    );
}

/// certop's namespace deleted by mistake: the operator, the CA keys, the
/// ledger and the CRLs are gone; the cluster-scoped CertificateAuthorities
/// and ClusterCertificates and the certificates' Secrets stay. Reinstalled
/// without its keys, certop makes no new CA key and issues nothing: the CA
/// says its key is gone. `kubectl certop restore` of the last backup
/// brings the keys, ledger and CRLs back: the same CA key, no certificate
/// issued again, the revocation made before the backup still listed, and
/// a new revocation in a CRL numbered above every CRL published before.
#[test]
fn the_operators_namespace_deleted_is_recovered_from_a_backup_with_nothing_issued_again() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let cp = crate::support::start_control_plane(&[]);
    cp.install_rbac();
    let ns = unique("drill-namespace");
    assert!(cp.kubectl(&["create", "namespace", &ns]).status.success());
    let ca = unique("drill-namespace-ca");
    let op = cp.start_operator("drill-namespace-0", &[]);
    apply(&cp, &ca_yaml(&ca, ""));
    let names: Vec<String> = (0..2).map(|i| unique(&format!("drill-ns{i}"))).collect();
    for n in &names {
        apply(&cp, &cert_yaml(n, &ca, &ns, "  commonName: kept\n"));
    }
    assert!(
        wait_for(WAIT, || names.iter().all(|n| ready(&cp, n))),
        "{}",
        op.log_text()
    );
    let first_serial = serial(&cp, &names[0]).expect("serial");
    let revoked = cp.kubectl_certop(&["revoke", &names[0]]);
    assert!(revoked.status.success(), "{}", stderr(&revoked));
    assert!(
        wait_for(WAIT, || served_crl(&op, &ca)
            .is_some_and(|(_, s)| s.contains(&first_serial))
            && revision(&cp, &names[0]) == Some(2)
            && ready(&cp, &names[0])),
        "{}",
        op.log_text()
    );
    let fingerprint = ca_object(&cp, &ca)
        .and_then(|c| c.status)
        .and_then(|s| s.fingerprint)
        .expect("fingerprint");
    let kept: Vec<(Option<String>, Option<i64>)> = names
        .iter()
        .map(|n| (serial(&cp, n), revision(&cp, n)))
        .collect();
    let taken = backup(&cp);
    let (held, _) = served_crl(&op, &ca).expect("CRL");
    let highest = held.max(status_crl_number(&cp, &ca));

    // The accident: the operator goes with its namespace.
    op.stop();
    delete_namespace(&cp, "certop-system");

    // Reinstalled without a restore: no new key, nothing issued.
    cp.install_rbac();
    let op = cp.start_operator("drill-namespace-1", &[]);
    assert!(
        wait_for(WAIT, || ca_ready(&cp, &ca)
            .is_some_and(|(s, r, _)| s == "False" && r == "CASecretDeleted")),
        "{:?}\n{}",
        ca_ready(&cp, &ca),
        op.log_text()
    );
    let key_secret = format!("{ca}-ca");
    assert!(
        !cp.kubectl(&["get", "secret", "-n", "certop-system", &key_secret])
            .status
            .success(),
        "certop made a new CA key"
    );
    for (n, k) in names.iter().zip(&kept) {
        assert_eq!(&(serial(&cp, n), revision(&cp, n)), k, "{n} untouched");
    }

    // The recovery.
    let said = taken.restore(&cp);
    eprintln!("kubectl certop restore said:\n{said}");
    assert!(
        wait_for(WAIT, || ca_ready(&cp, &ca)
            .is_some_and(|(s, _, _)| s == "True")),
        "{:?}\n{}",
        ca_ready(&cp, &ca),
        op.log_text()
    );
    assert_eq!(
        ca_object(&cp, &ca)
            .and_then(|c| c.status)
            .and_then(|s| s.fingerprint),
        Some(fingerprint),
        "the same CA key"
    );
    for n in &names {
        assert!(wait_for(WAIT, || ready(&cp, n)), "{n}\n{}", op.log_text());
    }
    for (n, k) in names.iter().zip(&kept) {
        assert_eq!(
            &(serial(&cp, n), revision(&cp, n)),
            k,
            "{n} not issued again"
        );
    }
    let second_serial = serial(&cp, &names[1]).expect("serial");
    let revoked = cp.kubectl_certop(&["revoke", &names[1]]);
    assert!(revoked.status.success(), "{}", stderr(&revoked));
    let mut after = None;
    assert!(
        wait_for(WAIT, || {
            after = served_crl(&op, &ca)
                .filter(|(_, s)| s.contains(&second_serial) && s.contains(&first_serial));
            after.is_some()
        }),
        "the CRL after the restore lists both revocations: {:?}\n{}",
        served_crl(&op, &ca),
        op.log_text()
    );
    let (number, _) = after.expect("CRL");
    assert!(
        published_numbers(&op, &ca).iter().all(|n| *n > highest) && number > highest,
        "CRL numbers after the restore {:?} not above {highest}",
        published_numbers(&op, &ca)
    );
    op.stop();
    cp.kill();
}
