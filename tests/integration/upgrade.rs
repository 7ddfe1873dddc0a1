//! Upgrades from the previous release (`PREVIOUS_RELEASE`, v0.1.0, built by
//! tests/previous-release/build.sh) to this tree, each on a control plane of
//! its own, since it starts with the previous release's CRDs: the old
//! build's `certop run` over live CAs, certificates, revocations and a
//! rotation, then this build's over the same objects; and the old chart's
//! `helm install`, then this chart's `helm upgrade`. Objects are read by
//! kind, never by apiVersion, so the tests hold whichever version the CRDs
//! store.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use certop::api::{CertificateAuthority, ClusterCertificate};
use serde_json::Value;

use crate::common::{PREVIOUS_RELEASE, previous_release_binary};
use crate::objects::{apply, ca_yaml, cert_yaml, get, leaf_of, secret};
use crate::support::{
    ControlPlane, Operator, http_request, rbac_files, repo_root, start_control_plane_with_crds,
    stderr, stdout, wait_for,
};

const WAIT: Duration = Duration::from_secs(60);

/// A file of the previous release's tree (`git show`).
fn previous_file(path: &str) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(repo_root())
        .args(["show", &format!("{PREVIOUS_RELEASE}:{path}")])
        .output()
        .expect("run git");
    assert!(
        out.status.success(),
        "git show {PREVIOUS_RELEASE}:{path} (the upgrade tests need the repository's history): {}",
        stderr(&out)
    );
    stdout(&out)
}

/// A directory of the previous release's tree, extracted under `dir`.
fn previous_tree(path: &str, dir: &Path) -> PathBuf {
    let archive = Command::new("git")
        .arg("-C")
        .arg(repo_root())
        .args(["archive", PREVIOUS_RELEASE, path])
        .output()
        .expect("run git archive");
    assert!(archive.status.success(), "{}", stderr(&archive));
    let mut tar = Command::new("tar")
        .arg("-x")
        .arg("-C")
        .arg(dir)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("run tar");
    std::io::Write::write_all(&mut tar.stdin.take().expect("stdin"), &archive.stdout)
        .expect("write archive");
    assert!(tar.wait().expect("tar").success());
    dir.join(path)
}

/// The version the CRDs of `crds` (a YAML stream) store certop's kinds in.
fn storage_version(crds: &str) -> String {
    crds.split("\n---")
        .filter_map(|doc| serde_saphyr::from_str::<Value>(doc).ok())
        .flat_map(|crd| {
            crd["spec"]["versions"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .find(|v| v["storage"] == true)
        .and_then(|v| v["name"].as_str().map(String::from))
        .expect("a storage version")
}

/// `yaml` with every `apiVersion: certop.dev/...` naming `version`. The
/// manifests come from the builders of objects.rs, in whatever version this
/// tree writes; the previous release's CRDs may not serve that one.
fn in_version(yaml: &str, version: &str) -> String {
    yaml.lines()
        .map(|line| match line.strip_prefix("apiVersion: certop.dev/") {
            Some(_) => format!("apiVersion: certop.dev/{version}\n"),
            None => format!("{line}\n"),
        })
        .collect()
}

/// A control plane with the previous release's CRDs, and its namespace,
/// RBAC and admission guard: a cluster running v0.1.0.
fn previous_cluster(dir: &Path) -> ControlPlane {
    let crds = dir.join("previous-crds.yaml");
    std::fs::write(&crds, previous_file("crds/certop-crds.yaml")).expect("write");
    let cp = start_control_plane_with_crds(&crds);
    for f in rbac_files("tests/fixtures/rbac-all-features.yaml") {
        let out = cp.kubectl_stdin(&["apply", "-f", "-"], &previous_file(f));
        assert!(out.status.success(), "{f}: {}", stderr(&out));
    }
    cp
}

/// The `items` of `kubectl get ARGS -o json`.
fn items(cp: &ControlPlane, args: &[&str]) -> Vec<Value> {
    let mut full = vec!["get"];
    full.extend_from_slice(args);
    full.extend_from_slice(&["-o", "json"]);
    let out = cp.kubectl(&full);
    assert!(out.status.success(), "kubectl {full:?}: {}", stderr(&out));
    let list: Value = serde_json::from_slice(&out.stdout).expect("a list");
    list["items"].as_array().cloned().unwrap_or_default()
}

fn name_of(object: &Value) -> String {
    object["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// certop's four kinds, by the names kubectl knows them by.
const KINDS: [&str; 4] = [
    "certificateauthorities.certop.dev",
    "clustercertificates.certop.dev",
    "certificaterevocations.certop.dev",
    "certificatepolicies.certop.dev",
];

/// What an upgrade must keep, as the API server has it.
#[derive(Debug, Clone, PartialEq)]
struct Kept {
    /// CA key Secret (certop-system) -> SHA-256 of its stored key: a new
    /// key is a new entry, and the key itself is never printed.
    ca_keys: BTreeMap<String, String>,
    /// CertificateAuthority -> (its certificate's fingerprint, the staged
    /// next one's, from `status.rotation.record`).
    ca_fingerprints: BTreeMap<String, (Option<String>, Option<String>)>,
    /// ClusterCertificate -> (the serial in its Secret, status.revision).
    serials: BTreeMap<String, (String, Option<i64>)>,
    /// "kind/name" -> each condition's (type, status, reason,
    /// lastTransitionTime).
    conditions: BTreeMap<String, Vec<[String; 4]>>,
    /// Every ledger entry of every CA, by serial, as stored.
    ledger: BTreeMap<String, Value>,
}

/// CA key Secret (certop-system) -> SHA-256 of its stored key.
fn ca_keys(cp: &ControlPlane) -> BTreeMap<String, String> {
    let sha256 = |v: &Value| {
        let d = aws_lc_rs::digest::digest(
            &aws_lc_rs::digest::SHA256,
            v.as_str().unwrap_or_default().as_bytes(),
        );
        d.as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    items(cp, &["secrets", "-n", "certop-system"])
        .iter()
        .filter_map(|s| {
            let key = s["data"]
                .get("tls.key")
                .or_else(|| s["data"].get("ca.key"))?;
            Some((name_of(s), sha256(key)))
        })
        .collect()
}

impl Kept {
    fn read(cp: &ControlPlane, ns: &str) -> Kept {
        let ca_keys = ca_keys(cp);
        let ca_fingerprints = items(cp, &["certificateauthorities.certop.dev"])
            .into_iter()
            .filter_map(|v| serde_json::from_value::<CertificateAuthority>(v).ok())
            .map(|ca| {
                let status = ca.status.unwrap_or_default();
                let next = status
                    .rotation
                    .and_then(|r| r.record)
                    .and_then(|r| r.next_fingerprint);
                (
                    ca.metadata.name.unwrap_or_default(),
                    (status.fingerprint, next),
                )
            })
            .collect();
        let serials = items(cp, &["clustercertificates.certop.dev"])
            .into_iter()
            .filter_map(|v| serde_json::from_value::<ClusterCertificate>(v).ok())
            .map(|c| {
                let name = c.metadata.name.clone().unwrap_or_default();
                let serial = secret(cp, ns, &c.spec.secret_name)
                    .map(|s| leaf_of(&s).serial.to_string())
                    .unwrap_or_default();
                (name, (serial, c.status.and_then(|s| s.revision)))
            })
            .collect();
        let mut conditions = BTreeMap::new();
        for kind in KINDS {
            for object in items(cp, &[kind]) {
                let text = |c: &Value, f: &str| c[f].as_str().unwrap_or_default().to_string();
                let list = object["status"]["conditions"]
                    .as_array()
                    .map(|cs| {
                        cs.iter()
                            .map(|c| {
                                [
                                    text(c, "type"),
                                    text(c, "status"),
                                    text(c, "reason"),
                                    text(c, "lastTransitionTime"),
                                ]
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                conditions.insert(format!("{kind}/{}", name_of(&object)), list);
            }
        }
        let ledger = items(cp, &["configmaps", "-n", "certop-system"])
            .iter()
            .filter(|c| name_of(c).starts_with("certop-ledger-"))
            .filter_map(|c| c["data"]["entries.json"].as_str().map(String::from))
            .flat_map(|json| {
                serde_json::from_str::<Vec<Value>>(&json).expect("a ledger shard certop can read")
            })
            .map(|e| (e["s"].as_str().unwrap_or_default().to_string(), e))
            .collect();
        Kept {
            ca_keys,
            ca_fingerprints,
            serials,
            conditions,
            ledger,
        }
    }
}

fn ca(cp: &ControlPlane, name: &str) -> CertificateAuthority {
    get(cp, &["certificateauthorities.certop.dev", name]).expect("the CA exists")
}

fn is_ready(conditions: Option<&Value>) -> bool {
    conditions.and_then(Value::as_array).is_some_and(|cs| {
        cs.iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    })
}

/// Whether the object `kind/name` says Ready=True.
fn ready(cp: &ControlPlane, kind: &str, name: &str) -> bool {
    get::<Value>(cp, &[kind, name]).is_some_and(|o| is_ready(o.pointer("/status/conditions")))
}

fn wait_ready(cp: &ControlPlane, op: &Operator, kind: &str, names: &[&str]) {
    assert!(
        wait_for(WAIT, || names.iter().all(|n| ready(cp, kind, n))),
        "not all Ready: {kind} {names:?}\n{}",
        op.log_text()
    );
}

fn phase(cp: &ControlPlane, name: &str) -> String {
    ca(cp, name)
        .status
        .and_then(|s| s.rotation)
        .map(|r| r.phase)
        .unwrap_or_default()
}

/// The CA's CRL as `op` serves it: (CRL number, the serials it lists).
fn served_crl(op: &Operator, ca: &str) -> (u64, BTreeSet<String>) {
    let (status, head, der) =
        http_request(&format!("{}/crl/{ca}.crl", op.base_url), &[]).expect("GET the CRL");
    assert_eq!(status, 200, "{head}");
    let crl = certop::pki::parse_crl(&der, None).expect("a CRL");
    (
        crl.number.expect("a CRL number"),
        crl.entries.iter().map(|(s, _, _)| s.to_string()).collect(),
    )
}

/// A CertificateRevocation of the certificate in Secret `ns/secret_name`, by
/// its serial (in any version: see [`in_version`]): the serial, and the
/// revocation.
fn revocation_of(cp: &ControlPlane, ns: &str, secret_name: &str, ca: &str) -> (String, String) {
    let serial = leaf_of(&secret(cp, ns, secret_name).expect("Secret"))
        .serial
        .to_string();
    let yaml = format!(
        "apiVersion: certop.dev/v1alpha1\nkind: CertificateRevocation\nmetadata:\n  name: revoke-{secret_name}\nspec:\n  issuerRef: {{name: {ca}}}\n  reason: keyCompromise\n  serialNumbers: [\"{serial}\"]\n"
    );
    (serial, yaml)
}

#[test]
fn an_upgrade_from_the_previous_release_and_back_reissues_nothing_and_makes_no_ca_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cp = previous_cluster(dir.path());
    let lease = "--lease-name=certop-upgrade";
    let previous = previous_release_binary();
    let op = cp.start_operator_binary(&previous, "previous", &[lease]);
    // Manifests in the version each release's CRDs store.
    let old_version = storage_version(&previous_file("crds/certop-crds.yaml"));
    let new_version = storage_version(
        &std::fs::read_to_string(repo_root().join("crds/certop-crds.yaml")).expect("crds/"),
    );
    let (old, new) = (
        |yaml: &str| apply(&cp, &in_version(yaml, &old_version)),
        |yaml: &str| apply(&cp, &in_version(yaml, &new_version)),
    );

    // The previous release at work: three CAs (one a CertificatePolicy
    // governs), certificates of each, a revocation, and a rotation staged.
    let (steady, rotating, governed, ns) = ("steady", "rotating", "governed", "upgrade");
    assert!(cp.kubectl(&["create", "namespace", ns]).status.success());
    old(&ca_yaml(steady, ""));
    old(&ca_yaml(rotating, "  rotation:\n    overlap: 1m\n"));
    old(&ca_yaml(governed, ""));
    old(&format!(
        "apiVersion: certop.dev/any\nkind: CertificatePolicy\nmetadata:\n  name: {governed}-policy\nspec:\n  authorities: [{governed}]\n  allowed:\n    commonNames: [team-bot]\n"
    ));
    let policy = format!("  policyRef: {{name: {governed}-policy}}\n");
    let kept = ["kept-0", "kept-1", "kept-2"];
    for name in kept {
        old(&cert_yaml(name, steady, ns, "  commonName: kept\n"));
    }
    old(&cert_yaml(
        "by-policy",
        governed,
        ns,
        &format!("{policy}  commonName: team-bot\n"),
    ));
    old(&cert_yaml(
        "rotated",
        rotating,
        ns,
        "  commonName: rotated\n",
    ));
    let certificates = ["kept-0", "kept-1", "kept-2", "by-policy", "rotated"];
    wait_ready(&cp, &op, "clustercertificates.certop.dev", &certificates);
    let (revoked_serial, revocation) = revocation_of(&cp, ns, "kept-0", steady);
    // The previous release bounds a revocation by serial with its creation
    // time in whole seconds (fixed since: a serial names one certificate),
    // so one created in the second kept-0 was signed would cover nothing.
    // The revocation is created a second later, as a user's would be.
    std::thread::sleep(Duration::from_millis(1100));
    old(&revocation);
    wait_ready(
        &cp,
        &op,
        "certificaterevocations.certop.dev",
        &["revoke-kept-0"],
    );
    // kept-0 is re-issued (its serial was revoked) and its old serial listed.
    assert!(
        wait_for(WAIT, || served_crl(&op, steady).1.contains(&revoked_serial)
            && get::<ClusterCertificate>(
                &cp,
                &["clustercertificates.certop.dev", "kept-0"]
            )
            .and_then(|c| c.status?.revision)
                == Some(2)
            && ready(&cp, "clustercertificates.certop.dev", "kept-0")),
        "the revocation never reached the CRL and kept-0\n{}",
        op.log_text()
    );
    let rotate = Command::new(&previous)
        .env("KUBECONFIG", &cp.kubeconfig)
        .args(["rotate-ca", rotating])
        .output()
        .expect("run certop rotate-ca");
    assert!(rotate.status.success(), "{}", stderr(&rotate));
    assert!(
        wait_for(WAIT, || phase(&cp, rotating) == "Staged"
            && ca(&cp, rotating)
                .status
                .and_then(|s| s.rotation?.record?.next_fingerprint)
                .is_some()),
        "the rotation never staged a key\n{}",
        op.log_text()
    );
    // Both keys of the rotating CA exist, and the other CAs'.
    let before = Kept::read(&cp, ns);
    assert_eq!(before.ca_keys.len(), 4, "{:?}", before.ca_keys.keys());
    let (crl_number_before, revoked_before) = served_crl(&op, steady);
    let staged = before.ca_fingerprints[rotating].1.clone();
    op.stop();

    // The upgrade: this tree's CRDs and RBAC, then this build's operator.
    let crds = cp.kubectl(&[
        "apply",
        "--server-side",
        "-f",
        repo_root().join("crds").to_str().expect("utf-8"),
    ]);
    assert!(crds.status.success(), "{}", stderr(&crds));
    cp.install_rbac();
    let op = cp.start_operator("current", &[lease]);
    // A certificate issued after the upgrade: the operator has worked its
    // queue over everything the previous release left.
    new(&cert_yaml("probe", steady, ns, "  commonName: probe\n"));
    wait_ready(&cp, &op, "clustercertificates.certop.dev", &["probe"]);
    std::thread::sleep(Duration::from_secs(3));
    let after = Kept::read(&cp, ns);

    let without = |kept: &Kept, names: &[&str]| {
        let mut kept = kept.clone();
        for n in names {
            kept.serials.remove(*n);
            kept.conditions
                .remove(&format!("clustercertificates.certop.dev/{n}"));
        }
        // The rotation moves on by itself (it may switch keys any moment
        // now): its CA and certificate are checked as it finishes.
        kept.conditions
            .remove(&format!("certificateauthorities.certop.dev/{rotating}"));
        kept.ca_fingerprints.remove(rotating);
        kept.serials.remove("rotated");
        kept.conditions
            .remove("clustercertificates.certop.dev/rotated");
        kept
    };
    let (b, a) = (without(&before, &[]), without(&after, &["probe"]));
    assert_eq!(b.ca_keys, a.ca_keys, "the upgrade made or changed a CA key");
    assert_eq!(b.ca_fingerprints, a.ca_fingerprints);
    assert_eq!(b.serials, a.serials, "the upgrade re-issued a certificate");
    assert_eq!(
        b.conditions, a.conditions,
        "the upgrade changed a condition"
    );
    for (serial, entry) in &before.ledger {
        assert_eq!(
            after.ledger.get(serial),
            Some(entry),
            "the ledger entry of {serial} changed"
        );
    }
    assert!(ready(&cp, "certificateauthorities.certop.dev", rotating));
    let (crl_number, revoked) = served_crl(&op, steady);
    assert!(
        crl_number >= crl_number_before,
        "{crl_number} after {crl_number_before}"
    );
    assert!(revoked.is_superset(&revoked_before), "{revoked:?}");

    // The next CRL's number is higher than any the previous release published.
    let (probe_serial, revocation) = revocation_of(&cp, ns, "probe", steady);
    new(&revocation);
    assert!(
        wait_for(WAIT, || {
            let (number, serials) = served_crl(&op, steady);
            number > crl_number_before
                && serials.contains(&probe_serial)
                && serials.contains(&revoked_serial)
        }),
        "no CRL after the upgrade numbered above {crl_number_before}\n{}",
        op.log_text()
    );

    // The rotation the previous release staged finishes with the key it
    // made: the certificate of that CA is re-issued once, for the
    // rotation, by the staged key; the retired key is deleted; no key is
    // made on the way.
    assert!(
        wait_for(Duration::from_secs(300), || {
            let ca = ca(&cp, rotating);
            ca.status.is_some_and(|s| {
                s.rotation
                    .is_some_and(|r| r.phase == "Stable" && r.number == 1)
                    && s.fingerprint == staged
            })
        }),
        "the staged rotation never finished with its key ({staged:?}): {:?}\n{}",
        ca(&cp, rotating).status,
        op.log_text()
    );
    assert!(
        wait_for(WAIT, || ca_keys(&cp).len() == 3),
        "the retired key is kept: {:?}",
        ca_keys(&cp).keys()
    );
    let done = Kept::read(&cp, ns);
    assert!(
        done.ca_keys
            .iter()
            .all(|(name, key)| before.ca_keys.get(name) == Some(key)),
        "a CA key was made: {:?} after {:?}",
        done.ca_keys.keys(),
        before.ca_keys.keys()
    );
    let rotated = &done.serials["rotated"];
    assert_eq!(rotated.1, Some(2), "re-issued once, for the rotation");
    let chain = secret(&cp, ns, "rotated").expect("Secret");
    let issuer = certop::pki::parse_chain(&crate::objects::data(&chain, "ca.crt"), "ca.crt")
        .expect("ca.crt");
    assert_eq!(
        issuer
            .iter()
            .map(|c| Some(c.fingerprint.clone()))
            .collect::<Vec<_>>(),
        vec![staged.clone()],
        "the rotated certificate's ca.crt is the staged CA alone"
    );
    for (name, serial) in &b.serials {
        assert_eq!(&done.serials[name], serial, "{name} was re-issued");
    }
    let (crl_number_upgraded, _) = served_crl(&op, steady);
    op.stop();

    // And back: the previous release's operator over this tree's CRDs
    // issues, re-issues nothing and makes no key; its CRL numbers continue
    // too while both store the same version. Across the switch to v1
    // storage it was seen to leave a new CertificateRevocation alone (no
    // CRL within a minute): the user guide supports no downgrade past that
    // switch, and the revocation is not checked then.
    let op = cp.start_operator_binary(&previous, "downgraded", &[lease]);
    new(&cert_yaml(
        "downgraded",
        steady,
        ns,
        "  commonName: probe\n",
    ));
    wait_ready(&cp, &op, "clustercertificates.certop.dev", &["downgraded"]);
    if old_version == new_version {
        new(&revocation_of(&cp, ns, "downgraded", steady).1);
        assert!(
            wait_for(WAIT, || served_crl(&op, steady).0 > crl_number_upgraded),
            "no CRL after the downgrade numbered above {crl_number_upgraded}\n{}",
            op.log_text()
        );
    }
    let downgraded = Kept::read(&cp, ns);
    assert_eq!(
        downgraded.ca_keys, done.ca_keys,
        "the downgrade made a CA key"
    );
    for (name, serial) in &done.serials {
        assert_eq!(&downgraded.serials[name], serial, "{name} was re-issued");
    }
    op.stop();
    refuse_previous_crds_over_versions_they_lack(&cp);
    eprintln!(
        "upgrade from {PREVIOUS_RELEASE} and back: {} certificates kept their serials, {} CA keys kept, CRL number {crl_number_before} -> {crl_number_upgraded} -> {}",
        b.serials.len(),
        before.ca_keys.len(),
        ca(&cp, steady)
            .status
            .and_then(|s| s.crl_number)
            .unwrap_or_default()
    );
}

/// The previous release's CRDs applied again over this tree's: the API
/// server refuses them when objects are stored in a version they lack
/// (`status.storedVersions`), and accepts them otherwise. What the user
/// guide says of a downgrade of the CRDs.
fn refuse_previous_crds_over_versions_they_lack(cp: &ControlPlane) {
    let previous = previous_file("crds/certop-crds.yaml");
    let mut lacking = Vec::new();
    for crd in previous.split("\n---") {
        let Ok(crd) = serde_saphyr::from_str::<Value>(crd) else {
            continue;
        };
        let name = name_of(&crd);
        if name.is_empty() {
            continue;
        }
        let versions: BTreeSet<&str> = crd["spec"]["versions"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v["name"].as_str())
            .collect();
        let live: Value = get(cp, &["crd", &name]).expect("the CRD");
        for stored in live["status"]["storedVersions"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let stored = stored.as_str().unwrap_or_default();
            if !versions.contains(stored) {
                lacking.push(format!("{name} {stored}"));
            }
        }
    }
    let out = cp.kubectl_stdin(&["apply", "--server-side", "-f", "-"], &previous);
    if lacking.is_empty() {
        assert!(out.status.success(), "{}", stderr(&out));
    } else {
        assert!(
            !out.status.success() && stderr(&out).contains("storedVersions"),
            "the previous CRDs lack {lacking:?}, yet: {}",
            stderr(&out)
        );
    }
    eprintln!("the previous release's CRDs applied again: stored versions they lack {lacking:?}");
}

/// What `helm upgrade` from the previous chart may change in an object
/// both renderings have: the chart's version labels, the image, and what
/// CHANGELOG.md's upgrade notes list since v0.1.0 (the ClusterRole's rules
/// for pod certificates: PodCertificateRequests, ClusterTrustBundles,
/// `attest` on certop's signers; rbac_allowance.rs bounds every rule; and
/// the managed-namespace ClusterRole, which no longer creates Events).
/// Every other change restarts or rewrites something a user did not ask
/// for; a release that needs one adds it here, with a line in the notes.
fn upgrade_may_change(path: &str) -> bool {
    path.ends_with("/labels/helm.sh~1chart")
        || path.ends_with("/labels/app.kubernetes.io~1version")
        || (path.contains("/containers/") && path.ends_with("/image"))
        || path == "ClusterRole/certop /rules"
        || path == "ClusterRole/certop-managed-namespace /rules"
}

/// Objects of the previous chart's rendering that this one no longer has:
/// `helm upgrade` deletes them. Empty: nothing was dropped since v0.1.0.
const DROPPED_SINCE_PREVIOUS: &[(&str, &str)] = &[];

/// The JSON pointers (RFC 6901) at which `a` and `b` differ, leaves only.
fn differences(a: &Value, b: &Value, at: &str, out: &mut Vec<String>) {
    let escape = |k: &str| k.replace('~', "~0").replace('/', "~1");
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                let here = format!("{at}/{}", escape(k));
                differences(
                    x.get(k).unwrap_or(&Value::Null),
                    y.get(k).unwrap_or(&Value::Null),
                    &here,
                    out,
                );
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (p, q)) in x.iter().zip(y).enumerate() {
                differences(p, q, &format!("{at}/{i}"), out);
            }
        }
        _ if a != b => out.push(at.to_string()),
        _ => {}
    }
}

/// What differs between two renderings.
struct Changes {
    /// Each changed field of an object both have, as "Kind/name /pointer".
    changed: Vec<String>,
    /// (kind, name) of the objects only the first has.
    dropped: Vec<(String, String)>,
    /// (kind, name) of the objects only the second has.
    added: Vec<(String, String)>,
}

fn changes(old: &str, new: &str) -> Changes {
    let (old, new) = (
        crate::helm_chart::objects(old),
        crate::helm_chart::objects(new),
    );
    let mut changed = Vec::new();
    for (key, object) in &old {
        if let Some(next) = new.get(key) {
            let mut paths = Vec::new();
            differences(object, next, "", &mut paths);
            changed.extend(
                paths
                    .into_iter()
                    .map(|p| format!("{}/{} {p}", key.0, key.1)),
            );
        }
    }
    Changes {
        changed,
        dropped: old
            .keys()
            .filter(|k| !new.contains_key(*k))
            .cloned()
            .collect(),
        added: new
            .keys()
            .filter(|k| !old.contains_key(*k))
            .cloned()
            .collect(),
    }
}

fn helm_manifest(cp: &ControlPlane) -> String {
    let kubeconfig = cp.kubeconfig.to_str().expect("utf-8");
    let out = crate::helm_chart::helm(&[
        "get",
        "manifest",
        "certop",
        "--namespace",
        "certop-system",
        "--kubeconfig",
        kubeconfig,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out)
}

#[test]
fn helm_upgrade_from_the_previous_chart_changes_only_what_the_upgrade_notes_list() {
    use crate::helm_chart::{ALL_FEATURES, helm, render};
    // The comparison sees a change of any other field.
    let changed = changes(&render(&[]), &render(&["logFormat=text"])).changed;
    assert!(
        changed.iter().any(|c| c.starts_with("Deployment/certop "))
            && !changed.iter().any(|c| upgrade_may_change(c)),
        "{changed:?}"
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let crds = dir.path().join("previous-crds.yaml");
    let previous_crds = previous_file("charts/certop/crds/certop-crds.yaml");
    std::fs::write(&crds, &previous_crds).expect("write");
    let cp = start_control_plane_with_crds(&crds);
    let kubeconfig = cp.kubeconfig.to_str().expect("utf-8").to_string();
    let chart = previous_tree("charts/certop", dir.path());
    let with_values = |mut args: Vec<String>| {
        for set in ALL_FEATURES {
            args.extend(["--set".to_string(), set.to_string()]);
        }
        args.extend(
            ["--namespace", "certop-system", "--kubeconfig", &kubeconfig].map(String::from),
        );
        args
    };
    let run = |args: Vec<String>| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = helm(&args);
        assert!(out.status.success(), "helm {args:?}: {}", stderr(&out));
        stdout(&out)
    };
    run(with_values(vec![
        "install".into(),
        "certop".into(),
        chart.to_string_lossy().into_owned(),
        "--create-namespace".into(),
    ]));
    let installed = helm_manifest(&cp);
    // An object stored under the previous CRDs, to outlive the upgrade.
    apply(
        &cp,
        &in_version(&ca_yaml("kept", ""), &storage_version(&previous_crds)),
    );
    let kept: Value = get(&cp, &["certificateauthorities.certop.dev", "kept"]).expect("CA");

    // The upgrade as docs/user-guide.md ("Upgrades") says: helm never
    // upgrades a chart's CRDs, so they are applied first; then `helm upgrade`
    // with the same values.
    let crds = cp.kubectl(&[
        "apply",
        "--server-side",
        "--force-conflicts",
        "-f",
        repo_root()
            .join("charts/certop/crds")
            .to_str()
            .expect("utf-8"),
    ]);
    assert!(crds.status.success(), "{}", stderr(&crds));
    run(with_values(vec![
        "upgrade".into(),
        "certop".into(),
        "charts/certop".into(),
    ]));
    let upgraded = helm_manifest(&cp);

    let Changes {
        changed,
        dropped,
        added,
    } = changes(&installed, &upgraded);
    eprintln!(
        "helm upgrade from {PREVIOUS_RELEASE}: changed {changed:?}; dropped {dropped:?}; added {added:?}"
    );
    let unexpected: Vec<&String> = changed.iter().filter(|c| !upgrade_may_change(c)).collect();
    assert!(
        unexpected.is_empty(),
        "helm upgrade changes what it need not: {unexpected:?}"
    );
    let named: Vec<(String, String)> = DROPPED_SINCE_PREVIOUS
        .iter()
        .map(|(k, n)| (k.to_string(), n.to_string()))
        .collect();
    assert_eq!(dropped, named, "objects the upgrade deletes");
    for (kind, name) in &dropped {
        let out = cp.kubectl(&["get", kind, name, "--namespace", "certop-system"]);
        assert!(!out.status.success(), "{kind}/{name} outlived the upgrade");
    }
    // Every object of this rendering is in the cluster as rendered.
    let live = cp.kubectl_stdin(&["diff", "-f", "-"], &upgraded);
    assert!(
        live.status.code() == Some(0),
        "the cluster differs from the rendering: {}{}",
        stdout(&live),
        stderr(&live)
    );
    let after: Value = get(&cp, &["certificateauthorities.certop.dev", "kept"]).expect("CA");
    assert_eq!(after["metadata"]["uid"], kept["metadata"]["uid"]);
    assert_eq!(after["spec"], kept["spec"]);
}
