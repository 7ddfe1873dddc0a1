//! certop.dev/v1 beside the deprecated v1alpha1 on the real API server:
//! the deprecation warning kubectl prints, what etcd stores, and
//! `kubectl certop migrate-storage` after an upgrade from v0.1.0's CRDs
//! (docs/user-guide.md, "API versions and deprecation policy").

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

use crate::objects::{WAIT, apply, get};
use crate::support::{
    ControlPlane, control_plane, repo_root, start_control_plane, stderr, stdout, unique, wait_for,
};

const KINDS: [(&str, &str); 4] = [
    ("CertificateAuthority", "certificateauthorities"),
    ("ClusterCertificate", "clustercertificates"),
    ("CertificateRevocation", "certificaterevocations"),
    ("CertificatePolicy", "certificatepolicies"),
];

/// The `apiVersion` etcd holds for a (cluster-scoped) certop object, read
/// with scripts/etcd-raw.sh, not through the API server (which would
/// convert it).
fn stored_api_version(cp: &ControlPlane, plural: &str, name: &str) -> String {
    let out = Command::new(repo_root().join("scripts/etcd-raw.sh"))
        .arg(format!("/registry/certop.dev/{plural}/{name}"))
        .env("ETCD", &cp.etcd)
        .output()
        .expect("run scripts/etcd-raw.sh");
    assert!(out.status.success(), "etcd-raw.sh: {}", stderr(&out));
    let stored: Value = serde_json::from_slice(&out.stdout).expect("etcd holds JSON");
    stored["apiVersion"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn stored_versions(cp: &ControlPlane, plural: &str) -> Value {
    let crd: Value = get(cp, &["crd", &format!("{plural}.certop.dev")]).expect("CRD");
    crd["status"]["storedVersions"].clone()
}

/// The one test that still writes v1alpha1: the API server accepts it with
/// its deprecation warning, which reaches kubectl's user, and the object
/// reads back, and is stored, as v1. Each of the four kinds warns.
#[test]
fn a_v1alpha1_write_is_warned_and_reads_back_and_is_stored_as_v1() {
    let cp = control_plane();
    let name = unique("alpha");
    let manifest = |version: &str| {
        format!(
            "apiVersion: certop.dev/{version}\nkind: ClusterCertificate\nmetadata:\n  name: {name}\nspec:\n  issuerRef: {{name: no-such-ca}}\n  secretName: {name}\n  secretNamespace: default\n  commonName: {name}\n"
        )
    };
    let out = cp.kubectl_stdin(&["apply", "-f", "-"], &manifest("v1alpha1"));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(
            "Warning: certop.dev/v1alpha1 ClusterCertificate is deprecated; use certop.dev/v1 (the same fields)"
        ),
        "kubectl printed: {}",
        stderr(&out)
    );
    let read: Value = get(cp, &["clustercertificate", &name]).expect("read back");
    assert_eq!(read["apiVersion"], "certop.dev/v1");
    assert_eq!(
        stored_api_version(cp, "clustercertificates", &name),
        "certop.dev/v1"
    );

    let out = cp.kubectl_stdin(&["apply", "-f", "-"], &manifest("v1"));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        !stderr(&out).contains("deprecated"),
        "v1 is not deprecated: {}",
        stderr(&out)
    );
    let out = cp.kubectl(&["delete", "clustercertificate", &name, "--wait=false"]);
    assert!(out.status.success(), "{}", stderr(&out));

    // Every other kind warns the same (a server-side dry run: nothing is
    // stored for the operator to act on).
    for (kind, spec) in [
        ("CertificateAuthority", "subject: {commonName: alpha}"),
        (
            "CertificateRevocation",
            "issuerRef: {name: no-such-ca}\n  reason: keyCompromise\n  serialNumbers: [\"01\"]",
        ),
        (
            "CertificatePolicy",
            "authorities: [no-such-ca]\n  allowed: {commonNames: [alpha]}",
        ),
    ] {
        let manifest = format!(
            "apiVersion: certop.dev/v1alpha1\nkind: {kind}\nmetadata:\n  name: {name}\nspec:\n  {spec}\n"
        );
        let out = cp.kubectl_stdin(&["apply", "--dry-run=server", "-f", "-"], &manifest);
        assert!(out.status.success(), "{kind}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(&format!(
                "Warning: certop.dev/v1alpha1 {kind} is deprecated; use certop.dev/v1 (the same fields)"
            )),
            "{kind}: kubectl printed: {}",
            stderr(&out)
        );
    }
}

/// `kubectl explain` reads the descriptions from the API server's OpenAPI
/// of the CRDs, in both versions: each kind's own, and its fields' down to
/// nested ones.
#[test]
fn kubectl_explain_describes_every_kind_in_both_versions() {
    let cp = control_plane();
    let cases = [
        // Words of the kind's own description alone (not its spec's).
        ("certificateauthorities", "Cluster-scoped."),
        ("clustercertificates", "Cluster-scoped."),
        ("certificaterevocations", "Cluster-scoped."),
        ("certificatepolicies", "Cluster-scoped."),
        (
            "clustercertificates.spec.issuerRef.name",
            "The CertificateAuthority's name.",
        ),
        (
            "certificateauthorities.spec.subject.commonName",
            "The subject's common name.",
        ),
        (
            "certificaterevocations.status.revoked.revokedAt",
            "The revocation date the CRL gives it.",
        ),
        (
            "certificatepolicies.spec.authorities",
            "CertificateAuthorities",
        ),
    ];
    for version in ["v1", "v1alpha1"] {
        for (field, description) in cases {
            let ready = wait_for(WAIT, || {
                let out = cp.kubectl(&[
                    "explain",
                    field,
                    &format!("--api-version=certop.dev/{version}"),
                ]);
                out.status.success() && stdout(&out).contains(description)
            });
            let out = cp.kubectl(&[
                "explain",
                field,
                &format!("--api-version=certop.dev/{version}"),
            ]);
            assert!(
                ready,
                "kubectl explain {field} ({version}) should say {description:?}: {}{}",
                stdout(&out),
                stderr(&out)
            );
        }
    }
}

/// The ClusterRole the user guide says `migrate-storage` needs, as it
/// prints it.
fn documented_cluster_role() -> String {
    let guide = std::fs::read_to_string(repo_root().join("docs/user-guide.md")).expect("guide");
    guide
        .split("```yaml\n")
        .skip(1)
        .filter_map(|block| block.split("```").next())
        .find(|block| block.contains("name: certop-migrate-storage"))
        .expect("the user guide shows the ClusterRole certop-migrate-storage")
        .to_string()
}

/// A kubeconfig of `cp`'s admin that impersonates `user` (kubectl and
/// the plugin both honour `as`), so the user's RBAC is what applies.
fn kubeconfig_as(cp: &ControlPlane, user: &str, dir: &Path) -> PathBuf {
    let out = cp.kubectl(&["config", "view", "--raw", "--minify", "-o", "json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let mut config: Value = serde_json::from_slice(&out.stdout).expect("kubeconfig");
    config["users"][0]["user"]["as"] = Value::String(user.to_string());
    let path = dir.join(format!("{user}.kubeconfig"));
    std::fs::write(&path, config.to_string()).expect("write kubeconfig");
    path
}

/// `kubectl certop ARGS` with this kubeconfig (the plugin found on PATH).
fn kubectl_certop_with(config: &Path, dir: &Path, args: &[&str]) -> Output {
    let bin = dir.join("plugin-bin");
    let link = bin.join("kubectl-certop");
    if !link.exists() {
        std::fs::create_dir_all(&bin).expect("plugin dir");
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_certop"), &link).expect("link");
    }
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    Command::new("kubectl")
        .env("KUBECONFIG", config)
        .env("PATH", path)
        .arg("certop")
        .args(args)
        .output()
        .expect("run kubectl certop")
}

/// An upgrade from v0.1.0 (commit 48e64a4, whose CRDs serve and store
/// v1alpha1 only): objects of all four kinds created then, the new CRDs
/// applied, the operator of this release running. `migrate-storage`, run
/// as a user holding only the documented ClusterRole, leaves every object
/// stored as v1 with its spec (and generation) unchanged, and every CRD's
/// storedVersions `[v1]`; run again, it writes nothing.
#[test]
fn migrate_storage_moves_objects_stored_as_v1alpha1_to_v1_with_the_operator_running() {
    let cp = start_control_plane(&[]);
    let dir = tempfile::tempdir().expect("tempdir");
    let crd_names: Vec<String> = KINDS
        .iter()
        .map(|(_, plural)| format!("{plural}.certop.dev"))
        .collect();
    let mut delete = vec!["delete", "crd"];
    delete.extend(crd_names.iter().map(String::as_str));
    let out = cp.kubectl(&delete);
    assert!(out.status.success(), "{}", stderr(&out));
    let old_crds = repo_root().join("tests/fixtures/crds-48e64a4.yaml");
    let out = cp.kubectl(&["apply", "-f", old_crds.to_str().expect("utf-8")]);
    assert!(out.status.success(), "v0.1.0's CRDs: {}", stderr(&out));
    let mut established = vec!["wait", "--for=condition=established", "--timeout=60s"];
    let crd_refs: Vec<String> = crd_names.iter().map(|n| format!("crd/{n}")).collect();
    established.extend(crd_refs.iter().map(String::as_str));
    let out = cp.kubectl(&established);
    assert!(out.status.success(), "{}", stderr(&out));

    let ns = "migrated";
    let out = cp.kubectl(&["create", "namespace", ns]);
    assert!(out.status.success(), "{}", stderr(&out));
    apply(
        &cp,
        &format!(
            "apiVersion: certop.dev/v1alpha1\nkind: CertificateAuthority\nmetadata:\n  name: old-ca\nspec:\n  subject: {{commonName: old CA}}\n\
             ---\napiVersion: certop.dev/v1alpha1\nkind: CertificatePolicy\nmetadata:\n  name: old-policy\nspec:\n  authorities: [old-ca]\n  allowed:\n    commonNames: [old-web]\n\
             ---\napiVersion: certop.dev/v1alpha1\nkind: ClusterCertificate\nmetadata:\n  name: old-web\nspec:\n  issuerRef: {{name: old-ca}}\n  secretName: old-web\n  secretNamespace: {ns}\n  commonName: old-web\n  policyRef: {{name: old-policy}}\n\
             ---\napiVersion: certop.dev/v1alpha1\nkind: CertificateRevocation\nmetadata:\n  name: old-rev\nspec:\n  issuerRef: {{name: old-ca}}\n  reason: keyCompromise\n  serialNumbers: [\"0badc0de\"]\n"
        ),
    );
    let objects = [
        ("certificateauthorities", "old-ca"),
        ("clustercertificates", "old-web"),
        ("certificaterevocations", "old-rev"),
        ("certificatepolicies", "old-policy"),
    ];
    for (plural, name) in objects {
        assert_eq!(
            stored_api_version(&cp, plural, name),
            "certop.dev/v1alpha1",
            "{plural}/{name} under v0.1.0's CRDs"
        );
    }

    let new_crds = repo_root().join("crds/certop-crds.yaml");
    let out = cp.kubectl(&["apply", "-f", new_crds.to_str().expect("utf-8")]);
    assert!(
        out.status.success(),
        "this release's CRDs: {}",
        stderr(&out)
    );
    let out = cp.kubectl(&established);
    assert!(out.status.success(), "{}", stderr(&out));
    for (_, plural) in KINDS {
        assert_eq!(
            stored_versions(&cp, plural),
            serde_json::json!(["v1alpha1", "v1"]),
            "{plural}"
        );
    }
    // Applying CRDs rewrites no object: the policy, which nothing else
    // writes, is still stored as v1alpha1.
    assert_eq!(
        stored_api_version(&cp, "certificatepolicies", "old-policy"),
        "certop.dev/v1alpha1"
    );
    let generations = |cp: &ControlPlane| -> Vec<Value> {
        objects
            .iter()
            .map(|(plural, name)| {
                let resource = format!("{plural}.certop.dev");
                let o: Value = get(cp, &[resource.as_str(), name]).expect("object");
                o["metadata"]["generation"].clone()
            })
            .collect()
    };
    let before = generations(&cp);

    cp.install_rbac();
    let operator = cp.start_operator("migrated", &[]);

    let migrator = unique("migrator");
    let config = kubeconfig_as(&cp, &migrator, dir.path());
    let refused = kubectl_certop_with(&config, dir.path(), &["migrate-storage"]);
    assert!(
        !refused.status.success() && stderr(&refused).contains("not allowed (403)"),
        "without the ClusterRole: {}{}",
        stdout(&refused),
        stderr(&refused)
    );
    apply(&cp, &documented_cluster_role());
    let out = cp.kubectl(&[
        "create",
        "clusterrolebinding",
        &migrator,
        "--clusterrole=certop-migrate-storage",
        &format!("--user={migrator}"),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let granted = wait_for(WAIT, || {
        cp.kubectl(&[
            "auth",
            "can-i",
            "list",
            "certificatepolicies.certop.dev",
            &format!("--as={migrator}"),
        ])
        .status
        .success()
    });
    assert!(granted, "the ClusterRoleBinding never took effect");

    let out = kubectl_certop_with(&config, dir.path(), &["migrate-storage"]);
    assert!(
        out.status.success(),
        "migrate-storage: {}{}\noperator log:\n{}",
        stdout(&out),
        stderr(&out),
        operator.log_text()
    );
    // Each object is written back, even one the operator's status write
    // stored as v1 already (then the API server changes nothing).
    let lines: Vec<String> = KINDS
        .iter()
        .map(|(kind, _)| {
            format!(
                "{kind}: 1 object(s) rewritten as certop.dev/v1; storedVersions [v1alpha1, v1] -> [v1]"
            )
        })
        .collect();
    assert_eq!(stdout(&out).lines().collect::<Vec<_>>(), lines);
    for (_, plural) in KINDS {
        assert_eq!(
            stored_versions(&cp, plural),
            serde_json::json!(["v1"]),
            "{plural}"
        );
    }
    for (plural, name) in objects {
        assert_eq!(
            stored_api_version(&cp, plural, name),
            "certop.dev/v1",
            "{plural}/{name} after the migration"
        );
    }
    assert_eq!(generations(&cp), before, "no spec changed");

    let again = kubectl_certop_with(&config, dir.path(), &["migrate-storage"]);
    assert!(again.status.success(), "{}", stderr(&again));
    let lines: Vec<String> = KINDS
        .iter()
        .map(|(kind, _)| format!("{kind}: stored as certop.dev/v1 only"))
        .collect();
    assert_eq!(stdout(&again).lines().collect::<Vec<_>>(), lines);

    // The operator of this release serves the migrated objects: the
    // certificate created under v0.1.0 is issued under its policy.
    let ready = wait_for(WAIT, || {
        get::<Value>(&cp, &["clustercertificate", "old-web"]).is_some_and(|c| {
            c["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
    });
    assert!(
        ready,
        "old-web not Ready: {:?}\noperator log:\n{}",
        get::<Value>(&cp, &["clustercertificate", "old-web"]).map(|c| c["status"].clone()),
        operator.log_text()
    );
    operator.stop();
}
