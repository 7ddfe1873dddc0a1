//! The identities no request gets by default: what the API server, its
//! authorizers and kubeadm's bindings treat as the cluster's own. A value
//! here is signed only when a policy names it exactly, never through a
//! pattern or an unbounded field.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

/// User names of the control-plane components as kubeadm creates them
/// (their `system:` ones are covered by the prefix).
const COMPONENT_USERS: &[&str] = &[
    "kube-apiserver",
    "kube-apiserver-kubelet-client",
    "kube-apiserver-etcd-client",
    "kube-etcd-healthcheck-client",
    "front-proxy-client",
    "kubernetes-admin",
    "kubernetes-super-admin",
];

/// The names of the API server's own Service.
const API_SERVER_NAMES: &[&str] = &["kubernetes", "kubernetes.default", "kubernetes.default.svc"];

/// Why a common name (a Kubernetes user name) is privileged, if it is.
pub fn common_name(cn: &str) -> Option<&'static str> {
    if cn.starts_with("system:") {
        Some("system: user names belong to Kubernetes itself (nodes, components, service accounts)")
    } else if COMPONENT_USERS.contains(&cn) {
        Some("it is a control-plane component's user name")
    } else {
        None
    }
}

/// Why an organization (a Kubernetes group) is privileged, if it is.
pub fn organization(o: &str) -> Option<&'static str> {
    if o == crate::core::authz::PRIVILEGED_GROUP {
        Some("it bypasses all authorization")
    } else if o.starts_with("system:") {
        Some("system: groups belong to Kubernetes itself (system:nodes, system:bootstrappers, ...)")
    } else if o.starts_with("kubeadm:") {
        Some("kubeadm: groups are bound to cluster roles (kubeadm:cluster-admins is cluster-admin)")
    } else {
        None
    }
}

/// Why a DNS name is privileged, if it is: the API server's Service names,
/// or a wildcard that covers one.
pub fn dns_name(name: &str) -> Option<&'static str> {
    let name = name.to_ascii_lowercase();
    let covered = name
        .strip_prefix("*.")
        .map_or(name.clone(), |rest| format!("kubernetes.{rest}"));
    let api_server = API_SERVER_NAMES.contains(&covered.as_str())
        || covered.starts_with("kubernetes.default.svc.");
    api_server.then_some("it is (or covers) a name of the API server's Service")
}

/// Whether `ip` is the API server's Service address: one of `api_server`
/// (IPv4-mapped IPv6 addresses compared as the IPv4 address they carry).
pub fn api_server_ip(ip: &IpAddr, api_server: &[IpAddr]) -> bool {
    api_server
        .iter()
        .any(|a| a.to_canonical() == ip.to_canonical())
}

/// The API server's Service address in each Service CIDR: its first
/// address, as kube-apiserver allocates it.
pub fn api_server_ips(service_cidrs: &[IpNet]) -> Vec<IpAddr> {
    service_cidrs
        .iter()
        .map(|net| match net.network() {
            IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from(u32::from(a).wrapping_add(1))),
            IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from(u128::from(a).wrapping_add(1))),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn privileged_identities_are_recognised_and_ordinary_ones_are_not() {
        for cn in [
            "system:kube-controller-manager",
            "system:node:n1",
            "system:serviceaccount:kube-system:default",
            "kubernetes-admin",
            "kube-apiserver-kubelet-client",
        ] {
            assert!(common_name(cn).is_some(), "{cn}");
        }
        for cn in ["robot", "systemd", "kube-apiserver-2", "admin"] {
            assert!(common_name(cn).is_none(), "{cn}");
        }
        for o in ["system:masters", "system:nodes", "kubeadm:cluster-admins"] {
            assert!(organization(o).is_some(), "{o}");
        }
        for o in ["dev-team", "systems", "kubeadm"] {
            assert!(organization(o).is_none(), "{o}");
        }
        for d in [
            "kubernetes",
            "Kubernetes.Default.Svc",
            "kubernetes.default.svc.cluster.local",
            "*.default.svc.cluster.local",
            "*.default.svc",
            "*.default",
        ] {
            assert!(dns_name(d).is_some(), "{d}");
        }
        let ips = api_server_ips(&[
            "10.96.0.0/12".parse().expect("net"),
            "fd00:10:96::/112".parse().expect("net"),
        ]);
        let want: Vec<IpAddr> = vec![
            "10.96.0.1".parse().expect("ip"),
            "fd00:10:96::1".parse().expect("ip"),
        ];
        assert_eq!(ips, want);
        assert!(api_server_ip(
            &"::ffff:10.96.0.1".parse().expect("ip"),
            &ips
        ));
        assert!(!api_server_ip(&"10.96.0.2".parse().expect("ip"), &ips));
        for d in [
            "web.default.svc",
            "kubernetes.io",
            "*.svc.cluster.local",
            "kubernetes-dashboard",
        ] {
            assert!(dns_name(d).is_none(), "{d}");
        }
    }
}
