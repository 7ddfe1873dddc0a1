//! The namespaces certop writes into: certificate Secrets and trust-bundle
//! ConfigMaps. `certop run --managed-namespaces` names them, and the chart
//! renders a RoleBinding in each from the same list (`managedNamespaces`):
//! outside them certop holds no permission on Secrets or ConfigMaps, so it
//! neither watches there nor tries to write, and says so in the status
//! instead of failing on a 403 at every retry. Unset, every namespace is
//! managed: the cluster-wide opt-in (docs/architecture.md, "Permissions").

use std::collections::BTreeSet;

use kube::{Api, Client};

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum ManagedNamespaces {
    /// Every namespace (no `--managed-namespaces`).
    #[default]
    All,
    /// Only these.
    Only(BTreeSet<String>),
}

impl ManagedNamespaces {
    /// From the flag's list: empty names are ignored, no name at all means
    /// every namespace.
    pub fn from_list<S: AsRef<str>>(names: &[S]) -> Self {
        let names: BTreeSet<String> = names
            .iter()
            .map(|n| n.as_ref().trim())
            .filter(|n| !n.is_empty())
            .map(String::from)
            .collect();
        if names.is_empty() {
            ManagedNamespaces::All
        } else {
            ManagedNamespaces::Only(names)
        }
    }

    pub fn contains(&self, namespace: &str) -> bool {
        match self {
            ManagedNamespaces::All => true,
            ManagedNamespaces::Only(names) => names.contains(namespace),
        }
    }

    /// The APIs to list or watch a namespaced kind through: one for the
    /// whole cluster, or one per managed namespace (a cluster-wide list
    /// would be refused).
    pub fn apis<K>(&self, client: &Client) -> Vec<Api<K>>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        match self {
            ManagedNamespaces::All => vec![Api::all(client.clone())],
            ManagedNamespaces::Only(names) => names
                .iter()
                .map(|n| Api::namespaced(client.clone(), n))
                .collect(),
        }
    }

    /// The list as the flag and the chart value spell it, for messages.
    pub fn describe(&self) -> String {
        match self {
            ManagedNamespaces::All => "every namespace".into(),
            ManagedNamespaces::Only(names) => names.iter().cloned().collect::<Vec<_>>().join(","),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_bounds_what_is_managed_and_no_list_means_every_namespace() {
        let cases: &[(&[&str], &str, bool)] = &[
            (&[], "anything", true),
            (&[""], "anything", true),
            (&["default", "kube-system"], "default", true),
            (&["default", "kube-system"], "kube-system", true),
            (&["default", "kube-system"], "team-a", false),
            (&[" team-a "], "team-a", true),
            (&["team-a"], "team-a2", false),
            (&["team-a"], "", false),
        ];
        for (list, namespace, managed) in cases {
            assert_eq!(
                ManagedNamespaces::from_list(list).contains(namespace),
                *managed,
                "{list:?} contains {namespace:?}"
            );
        }
        assert_eq!(
            ManagedNamespaces::from_list(&["kube-system", "default"]).describe(),
            "default,kube-system"
        );
    }
}
