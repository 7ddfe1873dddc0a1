//! What certop may be granted, as a table, and the check that reads a
//! rendered set of RBAC objects and returns every grant broader than the
//! table allows. A grant is one (API group, resource, verb, resource name,
//! where): a rule is taken apart into grants, and "where" is the cluster
//! for a ClusterRoleBinding, the binding's namespace for a RoleBinding.
//! Only bindings to certop's ServiceAccount grant anything.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

/// Where an allowance holds.
#[derive(Clone, Copy, Debug)]
pub enum Scope {
    /// Anywhere, cluster-wide included.
    Cluster,
    /// Only in the release's (the operator's) namespace.
    Operator,
    /// Only in this namespace.
    Namespace(&'static str),
    /// Only in the namespaces of `managedNamespaces`; cluster-wide only
    /// when that list is empty (the documented opt-in).
    Managed,
}

/// The feature an allowance needs to be switched on in the values.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Feature {
    Always,
    /// `kubeletSigner.ca` set.
    KubeletSigning,
    /// `kubeletSigner.approve` on.
    KubeletApproval,
}

pub struct Allowance {
    pub group: &'static str,
    pub resources: &'static [&'static str],
    pub verbs: &'static [&'static str],
    pub scope: Scope,
    /// Some: only these resource names (the rule must name them).
    pub names: Option<&'static [&'static str]>,
    pub when: Feature,
}

const KUBELET_SIGNERS: &[&str] = &[
    "kubernetes.io/kube-apiserver-client-kubelet",
    "kubernetes.io/kubelet-serving",
];

/// Every permission certop may hold, and where, and when: the table
/// docs/architecture.md ("Permissions") explains.
pub const ALLOWANCES: &[Allowance] = &[
    Allowance {
        group: "certop.dev",
        resources: &["certificateauthorities", "clustercertificates"],
        verbs: &["get", "list", "watch", "patch"],
        scope: Scope::Cluster,
        names: None,
        when: Feature::Always,
    },
    // Dry-run creates: the probe that the admission guard is enforced.
    Allowance {
        group: "certop.dev",
        resources: &["clustercertificates"],
        verbs: &["create"],
        scope: Scope::Cluster,
        names: None,
        when: Feature::Always,
    },
    Allowance {
        group: "certop.dev",
        resources: &["certificaterevocations", "certificatepolicies"],
        verbs: &["get", "list", "watch"],
        scope: Scope::Cluster,
        names: None,
        when: Feature::Always,
    },
    Allowance {
        group: "certop.dev",
        resources: &[
            "certificateauthorities/status",
            "clustercertificates/status",
            "certificaterevocations/status",
        ],
        verbs: &["patch"],
        scope: Scope::Cluster,
        names: None,
        when: Feature::Always,
    },
    Allowance {
        group: "",
        resources: &["namespaces"],
        verbs: &["get", "list", "watch"],
        scope: Scope::Cluster,
        names: None,
        when: Feature::Always,
    },
    Allowance {
        group: "certificates.k8s.io",
        resources: &["certificatesigningrequests"],
        verbs: &["get", "list", "watch"],
        scope: Scope::Cluster,
        names: None,
        when: Feature::Always,
    },
    Allowance {
        group: "certificates.k8s.io",
        resources: &["certificatesigningrequests/status"],
        verbs: &["patch"],
        scope: Scope::Cluster,
        names: None,
        when: Feature::Always,
    },
    Allowance {
        group: "certificates.k8s.io",
        resources: &["podcertificaterequests"],
        verbs: &["get", "list", "watch"],
        scope: Scope::Cluster,
        names: None,
        when: Feature::Always,
    },
    Allowance {
        group: "certificates.k8s.io",
        resources: &["podcertificaterequests/status"],
        verbs: &["patch"],
        scope: Scope::Cluster,
        names: None,
        when: Feature::Always,
    },
    Allowance {
        group: "certificates.k8s.io",
        resources: &["clustertrustbundles"],
        verbs: &["get", "create", "update", "delete"],
        scope: Scope::Cluster,
        names: None,
        when: Feature::Always,
    },
    Allowance {
        group: "certificates.k8s.io",
        resources: &["signers"],
        verbs: &["sign", "attest"],
        scope: Scope::Cluster,
        names: Some(&["certop.dev/*"]),
        when: Feature::Always,
    },
    Allowance {
        group: "authorization.k8s.io",
        resources: &["subjectaccessreviews"],
        verbs: &["create"],
        scope: Scope::Cluster,
        names: None,
        when: Feature::Always,
    },
    Allowance {
        group: "admissionregistration.k8s.io",
        resources: &[
            "validatingadmissionpolicies",
            "validatingadmissionpolicybindings",
        ],
        verbs: &["get"],
        scope: Scope::Cluster,
        names: Some(&["certop-policy-use"]),
        when: Feature::Always,
    },
    // The operator's namespace: the Lease, CA keys, ledger and CRLs.
    Allowance {
        group: "coordination.k8s.io",
        resources: &["leases"],
        verbs: &["get", "create", "update", "patch"],
        scope: Scope::Operator,
        names: None,
        when: Feature::Always,
    },
    Allowance {
        group: "",
        resources: &["secrets"],
        verbs: &["get", "list", "watch", "create", "delete"],
        scope: Scope::Operator,
        names: None,
        when: Feature::Always,
    },
    Allowance {
        group: "",
        resources: &["configmaps"],
        verbs: &[
            "get", "list", "watch", "create", "update", "patch", "delete",
        ],
        scope: Scope::Operator,
        names: None,
        when: Feature::Always,
    },
    Allowance {
        group: "events.k8s.io",
        resources: &["events"],
        verbs: &["create", "patch"],
        scope: Scope::Namespace("default"),
        names: None,
        when: Feature::Always,
    },
    // The namespaces certop writes certificates and trust bundles into.
    Allowance {
        group: "",
        resources: &["secrets"],
        // Server-side apply of a new Secret is authorized as create.
        verbs: &["get", "list", "watch", "create", "patch", "delete"],
        scope: Scope::Managed,
        names: None,
        when: Feature::Always,
    },
    Allowance {
        group: "",
        resources: &["configmaps"],
        verbs: &["list", "create", "patch", "delete"],
        scope: Scope::Managed,
        names: None,
        when: Feature::Always,
    },
    Allowance {
        group: "events.k8s.io",
        resources: &["events"],
        verbs: &["create"],
        scope: Scope::Managed,
        names: None,
        when: Feature::Always,
    },
    // Kubelet CSRs, only when the values switch them on.
    Allowance {
        group: "certificates.k8s.io",
        resources: &["signers"],
        verbs: &["sign"],
        scope: Scope::Cluster,
        names: Some(KUBELET_SIGNERS),
        when: Feature::KubeletSigning,
    },
    Allowance {
        group: "certificates.k8s.io",
        resources: &["signers"],
        verbs: &["approve"],
        scope: Scope::Cluster,
        names: Some(KUBELET_SIGNERS),
        when: Feature::KubeletApproval,
    },
    Allowance {
        group: "certificates.k8s.io",
        resources: &["certificatesigningrequests/approval"],
        verbs: &["patch"],
        scope: Scope::Cluster,
        names: None,
        when: Feature::KubeletApproval,
    },
    Allowance {
        group: "",
        resources: &["nodes"],
        verbs: &["list"],
        scope: Scope::Cluster,
        names: None,
        when: Feature::KubeletApproval,
    },
];

/// What the values of a rendering switch on.
#[derive(Clone, Copy)]
pub struct Values<'a> {
    pub release_namespace: &'a str,
    /// Empty: every namespace.
    pub managed_namespaces: &'a [&'a str],
    pub kubelet_signing: bool,
    pub kubelet_approval: bool,
}

/// One permission: (group, resource, verb, resource name or "*", namespace
/// or None for cluster-wide).
pub type Grant = (String, String, String, String, Option<String>);

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// Every grant the objects give the ServiceAccount certop/<release ns>,
/// and the objects that cannot be judged (an aggregated ClusterRole).
pub fn grants(
    objects: &[Value],
    service_account_namespace: &str,
) -> (BTreeSet<Grant>, Vec<String>) {
    let mut cluster_roles: BTreeMap<String, &Value> = BTreeMap::new();
    let mut roles: BTreeMap<(String, String), &Value> = BTreeMap::new();
    let mut unjudged = Vec::new();
    for o in objects {
        let name = o["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        match o["kind"].as_str() {
            Some("ClusterRole") => {
                if o.get("aggregationRule").is_some() {
                    unjudged.push(format!("ClusterRole {name} aggregates other roles"));
                }
                cluster_roles.insert(name, &o["rules"]);
            }
            Some("Role") => {
                let ns = o["metadata"]["namespace"].as_str().unwrap_or_default();
                roles.insert((ns.to_string(), name), &o["rules"]);
            }
            _ => {}
        }
    }
    let mut out = BTreeSet::new();
    for o in objects {
        let namespace = match o["kind"].as_str() {
            Some("ClusterRoleBinding") => None,
            Some("RoleBinding") => o["metadata"]["namespace"].as_str().map(String::from),
            _ => continue,
        };
        let to_certop = o["subjects"].as_array().into_iter().flatten().any(|s| {
            s["kind"] == "ServiceAccount"
                && s["name"] == "certop"
                && s["namespace"] == service_account_namespace
        });
        if !to_certop {
            continue;
        }
        let role = o["roleRef"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let rules = match o["roleRef"]["kind"].as_str() {
            Some("ClusterRole") => cluster_roles.get(&role).copied(),
            _ => roles
                .get(&(namespace.clone().unwrap_or_default(), role.clone()))
                .copied(),
        };
        let Some(rules) = rules else {
            unjudged.push(format!(
                "a binding names role {role}, which is not rendered"
            ));
            continue;
        };
        for rule in rules.as_array().into_iter().flatten() {
            if rule.get("nonResourceURLs").is_some() {
                unjudged.push(format!("role {role} grants nonResourceURLs"));
            }
            let names = match strings(&rule["resourceNames"]) {
                n if n.is_empty() => vec!["*".to_string()],
                n => n,
            };
            for group in strings(&rule["apiGroups"]) {
                for resource in strings(&rule["resources"]) {
                    for verb in strings(&rule["verbs"]) {
                        for name in &names {
                            out.insert((
                                group.clone(),
                                resource.clone(),
                                verb.clone(),
                                name.clone(),
                                namespace.clone(),
                            ));
                        }
                    }
                }
            }
        }
    }
    (out, unjudged)
}

fn allows(a: &Allowance, grant: &Grant, values: &Values) -> bool {
    let (group, resource, verb, name, namespace) = grant;
    let switched_on = match a.when {
        Feature::Always => true,
        Feature::KubeletSigning => values.kubelet_signing,
        Feature::KubeletApproval => values.kubelet_approval,
    };
    let in_scope = match (a.scope, namespace.as_deref()) {
        (Scope::Cluster, _) => true,
        (Scope::Operator, Some(ns)) => ns == values.release_namespace,
        (Scope::Namespace(allowed), Some(ns)) => ns == allowed,
        (Scope::Managed, Some(ns)) => {
            values.managed_namespaces.is_empty() || values.managed_namespaces.contains(&ns)
        }
        (Scope::Managed, None) => values.managed_namespaces.is_empty(),
        (Scope::Operator | Scope::Namespace(_), None) => false,
    };
    let named = match a.names {
        None => true,
        Some(names) => names.contains(&name.as_str()),
    };
    switched_on
        && in_scope
        && named
        && a.group == group
        && a.resources.contains(&resource.as_str())
        && a.verbs.contains(&verb.as_str())
}

/// The grants no allowance covers, and what cannot be judged, described.
pub fn too_broad(objects: &[Value], values: &Values) -> Vec<String> {
    let (grants, mut problems) = grants(objects, values.release_namespace);
    for grant in &grants {
        if !ALLOWANCES.iter().any(|a| allows(a, grant, values)) {
            let (group, resource, verb, name, namespace) = grant;
            problems.push(format!(
                "{verb} {resource} (group {group:?}, name {name}) {}",
                namespace
                    .as_deref()
                    .map_or("cluster-wide".to_string(), |ns| format!("in {ns}"))
            ));
        }
    }
    problems
}
