//! charts/certop: `helm lint` passes, manifests/ is the chart rendered with
//! its default values (`make manifests`), no RBAC rule of any rendering is
//! broader than the allowance table (rbac_allowance.rs), the values drive
//! the flags and the rules alike, and the real API server accepts the
//! rendering (`kubectl apply --dry-run=server`). helm v3 is built from the
//! Go module proxy (tests/helm/), cached like the control plane.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::rbac_allowance::{Values, too_broad};
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

pub(crate) fn helm(args: &[&str]) -> std::process::Output {
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
pub(crate) fn objects(yaml: &str) -> BTreeMap<(String, String), Value> {
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

/// Every object of a multi-document YAML stream, in order.
fn documents(yaml: &str) -> Vec<Value> {
    yaml.split("\n---")
        .filter_map(|doc| serde_saphyr::from_str::<Value>(doc).ok())
        .filter(|v| v.get("kind").is_some())
        .collect()
}

/// `helm template` of the chart in certop-system with these `--set`s.
pub(crate) fn render(sets: &[&str]) -> String {
    let mut args = vec![
        "template",
        "certop",
        "charts/certop",
        "--namespace",
        "certop-system",
    ];
    for set in sets {
        args.extend(["--set", set]);
    }
    let out = helm(&args);
    assert!(out.status.success(), "helm {args:?}: {}", stderr(&out));
    stdout(&out)
}

pub(crate) const ALL_FEATURES: &[&str] = &[
    "managedNamespaces=null",
    "kubeletSigner.ca=kubelet-signer",
    "kubeletSigner.approve=true",
    "authzWebhook.enabled=true",
    "authzWebhook.ca=cluster",
    "networkPolicy.enabled=true",
];

/// The operator container's args in a rendering.
fn args(rendered: &str) -> Vec<String> {
    let deployment = documents(rendered)
        .into_iter()
        .find(|o| o["kind"] == "Deployment")
        .expect("a Deployment");
    deployment["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .expect("args")
        .iter()
        .filter_map(|a| a.as_str().map(String::from))
        .collect()
}

#[test]
fn the_helm_chart_lints_and_the_api_server_accepts_its_rendering() {
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
    let chart_objects = objects(&rendered);
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
    // namespace `helm install --create-namespace` would make), with every
    // feature on too, and the dashboard's ConfigMap (the PrometheusRule's
    // kind is the Prometheus Operator's CRD, not served here: promtool
    // checks its rules, tests/alerts.rs).
    let ns = cp.kubectl(&[
        "apply",
        "-f",
        &repo_root()
            .join("manifests/namespace.yaml")
            .to_string_lossy(),
    ]);
    assert!(ns.status.success(), "{}", stderr(&ns));
    for rendering in [
        rendered,
        render(ALL_FEATURES),
        render(&["grafanaDashboard.enabled=true"]),
    ] {
        let applied = cp.kubectl_stdin(&["apply", "--dry-run=server", "-f", "-"], &rendering);
        assert!(applied.status.success(), "{}", stderr(&applied));
    }
    let monitor = helm(&[
        "template",
        "certop",
        chart,
        "--set",
        "serviceMonitor.enabled=true",
    ]);
    assert!(stdout(&monitor).contains("kind: ServiceMonitor"));
}

/// manifests/ is generated, not a second copy: rendering the chart again
/// (scripts/manifests.sh, `make manifests`) gives the committed files, and
/// kustomize builds them.
#[test]
fn the_kustomize_manifests_are_the_helm_chart_rendered_with_its_default_values() {
    let out = tempfile::tempdir().expect("tempdir");
    let generated = Command::new(repo_root().join("scripts/manifests.sh"))
        .arg(out.path())
        .env("CERTOP_HELM", helm_binary())
        .output()
        .expect("run scripts/manifests.sh");
    assert!(generated.status.success(), "{}", stderr(&generated));
    let mut files: Vec<PathBuf> = std::fs::read_dir(out.path().join("manifests"))
        .expect("rendered manifests")
        .map(|e| PathBuf::from("manifests").join(e.expect("entry").file_name()))
        .collect();
    files.push(PathBuf::from("tests/fixtures/rbac-all-features.yaml"));
    assert!(files.len() > 4, "{files:?}");
    for file in files {
        assert_eq!(
            std::fs::read_to_string(repo_root().join(&file)).unwrap_or_default(),
            std::fs::read_to_string(out.path().join(&file)).expect("rendered"),
            "{} is stale: run `make manifests` (it is rendered from charts/certop)",
            file.display()
        );
    }
    let kustomization = std::fs::read_to_string(repo_root().join("manifests/kustomization.yaml"))
        .expect("kustomization");
    for template in
        std::fs::read_dir(repo_root().join("charts/certop/templates")).expect("templates")
    {
        let name = template
            .expect("entry")
            .file_name()
            .to_string_lossy()
            .to_string();
        if name.ends_with(".yaml") {
            assert!(
                kustomization.contains(&format!("- {name}")),
                "manifests/kustomization.yaml lists {name}"
            );
        }
    }
    let cp = control_plane();
    let built = cp.kubectl(&[
        "kustomize",
        &repo_root().join("manifests").to_string_lossy(),
    ]);
    assert!(built.status.success(), "{}", stderr(&built));
    let kinds: Vec<String> = documents(&stdout(&built))
        .iter()
        .map(|o| o["kind"].as_str().unwrap_or_default().to_string())
        .collect();
    for kind in [
        "Namespace",
        "ServiceAccount",
        "ClusterRole",
        "Deployment",
        "Service",
    ] {
        assert!(
            kinds.iter().any(|k| k == kind),
            "kustomize builds a {kind}: {kinds:?}"
        );
    }
}

/// Every RBAC rule of every rendering, the kustomize manifests included,
/// within the allowance table: no wildcard, no Secret or ConfigMap outside
/// the namespaces certop manages and its own, no kubelet signer unless the
/// values switch it on.
#[test]
fn no_rendered_rbac_rule_of_the_helm_chart_is_broader_than_its_allowance() {
    let default_values = Values {
        release_namespace: "certop-system",
        managed_namespaces: &["default", "kube-system"],
        kubelet_signing: false,
        kubelet_approval: false,
    };
    let manifests = ["rbac.yaml"]
        .iter()
        .map(|f| std::fs::read_to_string(repo_root().join("manifests").join(f)).expect("manifests"))
        .collect::<String>();
    let renderings: Vec<(&str, String, Values)> = vec![
        ("default values", render(&[]), default_values),
        (
            "manifests/rbac.yaml",
            manifests,
            Values { ..default_values },
        ),
        (
            "kubelet signing without approval",
            render(&["kubeletSigner.ca=kubelet-signer"]),
            Values {
                kubelet_signing: true,
                ..default_values
            },
        ),
        (
            "one managed namespace",
            render(&["managedNamespaces={team-a}"]),
            Values {
                managed_namespaces: &["team-a"],
                ..default_values
            },
        ),
        (
            "every feature on",
            render(ALL_FEATURES),
            Values {
                managed_namespaces: &[],
                kubelet_signing: true,
                kubelet_approval: true,
                ..default_values
            },
        ),
    ];
    for (what, rendered, values) in &renderings {
        let problems = too_broad(&documents(rendered), values);
        assert!(
            problems.is_empty(),
            "{what}: RBAC broader than the allowance (tests/integration/rbac_allowance.rs):\n{}",
            problems.join("\n")
        );
    }
    // The check itself lets through only what the table says: the rules
    // certop held before (secrets and configmaps cluster-wide, approve on
    // the kubelet signers with approval off) are each refused.
    let broad = |rule: &str, binding: &str| {
        let yaml = format!(
            "kind: ClusterRole\nmetadata: {{name: wide}}\nrules:\n- {rule}\n---\n{binding}\nroleRef: {{kind: ClusterRole, name: wide}}\nsubjects: [{{kind: ServiceAccount, name: certop, namespace: certop-system}}]\n"
        );
        too_broad(&documents(&yaml), &default_values)
    };
    let cluster = "kind: ClusterRoleBinding\nmetadata: {name: wide}";
    let in_team = "kind: RoleBinding\nmetadata: {name: wide, namespace: team-a}";
    for (rule, binding) in [
        (
            "{apiGroups: [''], resources: [secrets], verbs: [get]}",
            cluster,
        ),
        (
            "{apiGroups: [''], resources: [secrets], verbs: [delete]}",
            cluster,
        ),
        (
            "{apiGroups: [''], resources: [secrets], verbs: [get]}",
            in_team,
        ),
        (
            "{apiGroups: [''], resources: [configmaps], verbs: [list]}",
            cluster,
        ),
        (
            "{apiGroups: [''], resources: [configmaps], verbs: [delete]}",
            in_team,
        ),
        ("{apiGroups: [''], resources: ['*'], verbs: [get]}", cluster),
        (
            "{apiGroups: ['*'], resources: [secrets], verbs: [get]}",
            cluster,
        ),
        (
            "{apiGroups: [certop.dev], resources: [clustercertificates], verbs: ['*']}",
            cluster,
        ),
        (
            "{apiGroups: [certificates.k8s.io], resources: [signers], resourceNames: [kubernetes.io/kubelet-serving], verbs: [approve]}",
            cluster,
        ),
        (
            "{apiGroups: [certificates.k8s.io], resources: [signers], resourceNames: [kubernetes.io/kubelet-serving], verbs: [sign]}",
            cluster,
        ),
        (
            "{apiGroups: [certificates.k8s.io], resources: [signers], verbs: [sign]}",
            cluster,
        ),
        (
            "{apiGroups: [''], resources: [nodes], verbs: [list]}",
            cluster,
        ),
    ] {
        assert!(
            !broad(rule, binding).is_empty(),
            "{rule} bound by {binding} passes the check"
        );
    }
    assert!(
        broad(
            "{apiGroups: [''], resources: [secrets], verbs: [get]}",
            "kind: RoleBinding\nmetadata: {name: wide, namespace: kube-system}"
        )
        .is_empty(),
        "a managed namespace's Secrets are allowed"
    );
}

/// The values drive the flags and the rules together, and a single replica
/// gets no PodDisruptionBudget (it would block every drain).
#[test]
fn the_helm_values_render_the_flags_with_the_rules_and_a_pdb_only_for_two_replicas() {
    let default = render(&[]);
    let flags = args(&default);
    assert!(
        flags.contains(&"--managed-namespaces=default,kube-system".to_string()),
        "{flags:?}"
    );
    assert!(!flags.iter().any(|f| f.contains("kubelet")), "{flags:?}");
    let all = render(ALL_FEATURES);
    let flags = args(&all);
    assert!(
        !flags.iter().any(|f| f.starts_with("--managed-namespaces")),
        "{flags:?}"
    );
    assert!(
        flags.contains(&"--kubelet-signer-ca=kubelet-signer".to_string()),
        "{flags:?}"
    );
    assert!(
        flags.contains(&"--approve-kubelet-csrs=true".to_string()),
        "{flags:?}"
    );
    for (rendering, kubelet_roles) in [(&default, 0), (&all, 2)] {
        let roles = documents(rendering)
            .iter()
            .filter(|o| {
                o["kind"] == "ClusterRole"
                    && o["metadata"]["name"]
                        .as_str()
                        .unwrap_or_default()
                        .contains("kubelet")
            })
            .count();
        assert_eq!(
            roles, kubelet_roles,
            "kubelet ClusterRoles follow kubeletSigner"
        );
    }
    // The authorization webhook: flags, the container port, the Service's
    // port 443 and a fixed ClusterIP kube-apiserver can dial, which the
    // serving certificate names.
    let webhook = render(&[
        "authzWebhook.enabled=true",
        "authzWebhook.ca=cluster",
        "authzWebhook.names={10.96.0.50}",
        "service.clusterIP=10.96.0.50",
    ]);
    let flags = args(&webhook);
    for flag in [
        "--authz-addr=0.0.0.0:8443",
        "--authz-ca=cluster",
        "--authz-names=certop.certop-system.svc,10.96.0.50",
    ] {
        assert!(flags.contains(&flag.to_string()), "{flag}: {flags:?}");
    }
    let parsed = std::process::Command::new(env!("CARGO_BIN_EXE_certop"))
        .args(&flags)
        .arg("--help")
        .output()
        .expect("certop");
    assert!(
        parsed.status.success(),
        "certop refuses the chart's flags: {}",
        stderr(&parsed)
    );
    let objects = objects(&webhook);
    let service = &objects[&("Service".to_string(), "certop".to_string())];
    assert_eq!(service["spec"]["clusterIP"], "10.96.0.50");
    assert!(
        service["spec"]["ports"]
            .as_array()
            .expect("ports")
            .iter()
            .any(|p| p["name"] == "authz" && p["port"] == 443 && p["targetPort"] == "authz"),
        "{service}"
    );
    assert!(!args(&default).iter().any(|f| f.starts_with("--authz")));
    let no_ca = helm(&[
        "template",
        "certop",
        "charts/certop",
        "--set",
        "authzWebhook.enabled=true",
    ]);
    assert!(
        !no_ca.status.success() && stderr(&no_ca).contains("authzWebhook.ca"),
        "a webhook without a CA renders: {}",
        stderr(&no_ca)
    );

    let approve_alone = helm(&[
        "template",
        "certop",
        "charts/certop",
        "--set",
        "kubeletSigner.approve=true",
    ]);
    assert!(
        !approve_alone.status.success(),
        "approval without a signing CA renders"
    );
    assert!(
        stderr(&approve_alone).contains("kubeletSigner.ca"),
        "{}",
        stderr(&approve_alone)
    );

    let pdbs = |sets: &[&str]| {
        documents(&render(sets))
            .iter()
            .filter(|o| o["kind"] == "PodDisruptionBudget")
            .count()
    };
    assert_eq!(pdbs(&[]), 1, "two replicas: a PDB keeps one up");
    assert_eq!(
        pdbs(&["replicas=1"]),
        0,
        "one replica: no PDB to block drains"
    );
    assert_eq!(pdbs(&["replicas=3"]), 1);
}

/// Each release's chart runs that release's operator: the image tag is the
/// chart's appVersion unless `image.tag` is set, never a floating tag a
/// node keeps cached through `helm upgrade` (which would leave the
/// previous operator running over the new CRDs).
#[test]
fn the_deployment_runs_the_image_of_the_charts_app_version() {
    let chart: Value = serde_saphyr::from_str(
        &std::fs::read_to_string(repo_root().join("charts/certop/Chart.yaml")).expect("Chart.yaml"),
    )
    .expect("Chart.yaml is YAML");
    let app_version = chart["appVersion"].as_str().expect("appVersion");
    let image = |sets: &[&str]| {
        objects(&render(sets))[&("Deployment".to_string(), "certop".to_string())]
            ["spec"]["template"]["spec"]["containers"][0]["image"]
            .clone()
    };
    assert_eq!(image(&[]), format!("certop:{app_version}").as_str());
    assert_eq!(
        image(&["image.repository=registry.example/certop", "image.tag=dev"]),
        "registry.example/certop:dev"
    );
}

/// The PrometheusRule is the unit-tested rules file (tests/alerts.rs), with
/// the runbook links pointing where the values say, and the dashboard
/// ConfigMap holds the dashboard as committed (the API server accepts it:
/// the test above). Neither renders unless asked.
#[test]
fn the_alerts_and_the_dashboard_render_as_the_files_they_are_tested_as() {
    let rendered = render(&[
        "prometheusRule.enabled=true",
        "prometheusRule.labels.release=kube-prometheus",
        "prometheusRule.runbookBaseURL=https://runbooks.example/certop",
        "grafanaDashboard.enabled=true",
    ]);
    let objects = objects(&rendered);
    let rule = &objects[&("PrometheusRule".to_string(), "certop".to_string())];
    assert_eq!(rule["metadata"]["labels"]["release"], "kube-prometheus");
    let file = std::fs::read_to_string(repo_root().join("charts/certop/files/certop-alerts.yaml"))
        .expect("rules file")
        .replace(
            "https://certop.dev/docs/alerts.md",
            "https://runbooks.example/certop",
        );
    let expected: Value = serde_saphyr::from_str(&file).expect("rules file is YAML");
    assert_eq!(rule["spec"]["groups"], expected["groups"]);
    assert!(
        rendered.contains("https://runbooks.example/certop#certopcaexpiring"),
        "runbook links follow the values"
    );
    let dashboard = &objects[&("ConfigMap".to_string(), "certop-dashboard".to_string())];
    assert_eq!(dashboard["metadata"]["labels"]["grafana_dashboard"], "1");
    let held: Value =
        serde_json::from_str(dashboard["data"]["certop.json"].as_str().expect("json"))
            .expect("JSON");
    let committed: Value = serde_json::from_str(
        &std::fs::read_to_string(repo_root().join("charts/certop/files/certop-dashboard.json"))
            .expect("dashboard"),
    )
    .expect("JSON");
    assert_eq!(held, committed);
    let off = render(&[]);
    assert!(!off.contains("PrometheusRule") && !off.contains("certop-dashboard"));
}
