//! charts/certop: `helm lint` passes, `helm template` renders what the
//! kustomize manifests say (RBAC rules, bindings, the operator's container,
//! the Service, the CRDs), and the real API server accepts the rendering
//! (`kubectl apply --dry-run=server`). helm v3 is built from the Go module
//! proxy (tests/helm/), cached like the control plane.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::support::{control_plane, repo_root, stderr, stdout};

fn helm_binary() -> PathBuf {
    if let Some(bin) = std::env::var_os("CERTOP_HELM") {
        return PathBuf::from(bin);
    }
    let out = Command::new(repo_root().join("tests/helm/build.sh"))
        .stderr(Stdio::inherit())
        .output()
        .expect("run tests/helm/build.sh");
    assert!(out.status.success(), "building helm failed (see above)");
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

fn helm(args: &[&str]) -> std::process::Output {
    Command::new(helm_binary())
        .args(args)
        .current_dir(repo_root())
        .env(
            "HELM_CACHE_HOME",
            std::env::temp_dir().join("certop-helm-cache"),
        )
        .env(
            "HELM_CONFIG_HOME",
            std::env::temp_dir().join("certop-helm-config"),
        )
        .env(
            "HELM_DATA_HOME",
            std::env::temp_dir().join("certop-helm-data"),
        )
        .output()
        .expect("run helm")
}

/// Objects of a multi-document YAML stream, by (kind, name).
fn objects(yaml: &str) -> BTreeMap<(String, String), Value> {
    yaml.split("\n---")
        .filter_map(|doc| serde_saphyr::from_str::<Value>(doc).ok())
        .filter(|v| v.get("kind").is_some())
        .map(|v| {
            let key = (
                v["kind"].as_str().unwrap_or_default().to_string(),
                v["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            );
            (key, v)
        })
        .collect()
}

#[test]
fn the_helm_chart_lints_renders_the_kustomize_manifests_and_the_api_server_accepts_it() {
    let cp = control_plane();
    let chart = "charts/certop";
    let lint = helm(&["lint", chart]);
    assert!(lint.status.success(), "{}{}", stdout(&lint), stderr(&lint));

    let rendered = helm(&[
        "template",
        "certop",
        chart,
        "--namespace",
        "certop-system",
        "--include-crds",
        "--set",
        "networkPolicy.enabled=true",
    ]);
    assert!(rendered.status.success(), "{}", stderr(&rendered));
    let rendered = stdout(&rendered);
    let kustomized = cp.kubectl(&[
        "kustomize",
        &repo_root().join("manifests").to_string_lossy(),
    ]);
    assert!(kustomized.status.success(), "{}", stderr(&kustomized));
    let (chart_objects, kustomize_objects) = (objects(&rendered), objects(&stdout(&kustomized)));

    for ((kind, name), k) in &kustomize_objects {
        if kind == "Namespace" {
            continue; // helm install --create-namespace, or the cluster's own
        }
        let c = chart_objects
            .get(&(kind.clone(), name.clone()))
            .unwrap_or_else(|| panic!("the chart has no {kind} {name}"));
        let same = |path: &str| {
            assert_eq!(
                c.pointer(path),
                k.pointer(path),
                "{kind} {name} {path} differs between the chart and manifests/"
            )
        };
        match kind.as_str() {
            "ClusterRole" | "Role" => same("/rules"),
            "ClusterRoleBinding" | "RoleBinding" => {
                same("/roleRef");
                same("/subjects");
            }
            "Deployment" => {
                same("/spec/replicas");
                same("/spec/template/spec/serviceAccountName");
                same("/spec/template/spec/securityContext");
                for field in [
                    "name",
                    "image",
                    "args",
                    "env",
                    "ports",
                    "livenessProbe",
                    "readinessProbe",
                    "resources",
                    "securityContext",
                ] {
                    same(&format!("/spec/template/spec/containers/0/{field}"));
                }
            }
            "Service" => same("/spec"),
            _ => {}
        }
        assert_eq!(
            c["metadata"]["namespace"], k["metadata"]["namespace"],
            "{kind} {name} namespace"
        );
    }
    // The chart's CRDs are certop's.
    assert_eq!(
        std::fs::read_to_string(repo_root().join("charts/certop/crds/certop-crds.yaml"))
            .expect("chart CRDs"),
        std::fs::read_to_string(repo_root().join("crds/certop-crds.yaml")).expect("CRDs"),
        "charts/certop/crds/ is a copy of crds/ (cp crds/certop-crds.yaml charts/certop/crds/)"
    );
    for extra in ["PodDisruptionBudget", "NetworkPolicy"] {
        assert!(
            chart_objects.keys().any(|(k, _)| k == extra),
            "the chart renders a {extra}"
        );
    }
    let deployment = &chart_objects[&("Deployment".to_string(), "certop".to_string())];
    assert!(
        deployment
            .pointer("/spec/template/spec/affinity/podAntiAffinity")
            .is_some(),
        "the replicas are spread over nodes"
    );

    // The real API server accepts every object the chart renders (in the
    // namespace `helm install --create-namespace` would make).
    let ns = cp.kubectl(&[
        "apply",
        "-f",
        &repo_root()
            .join("manifests/namespace.yaml")
            .to_string_lossy(),
    ]);
    assert!(ns.status.success(), "{}", stderr(&ns));
    let applied = cp.kubectl_stdin(&["apply", "--dry-run=server", "-f", "-"], &rendered);
    assert!(applied.status.success(), "{}", stderr(&applied));
    let monitor = helm(&[
        "template",
        "certop",
        chart,
        "--set",
        "serviceMonitor.enabled=true",
    ]);
    assert!(stdout(&monitor).contains("kind: ServiceMonitor"));
}
