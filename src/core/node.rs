//! certop on a control-plane node's files, in kubeadm's layout under
//! /etc/kubernetes/pki: create the CAs and every control-plane certificate
//! and kubeconfig (`pki init`), show their expiry (`pki check-expiration`),
//! and renew what is due (`pki renew`), safely at every boot, before any API
//! server is up. Decisions are pure functions of what the files say and the
//! clock; the file I/O is in `cli`.

use std::collections::BTreeSet;
use std::net::IpAddr;

use chrono::{DateTime, Utc};

use crate::api::{ClusterCertificateSpec, IssuerRef, KeyAlgorithm, PrivateKeySettings, Profile};
use crate::pki::{CertificateInfo, LeafTemplate, PkiError};

/// The three CAs of a kubeadm cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum CaSlot {
    Cluster,
    Etcd,
    FrontProxy,
}

impl CaSlot {
    pub const ALL: [CaSlot; 3] = [CaSlot::Cluster, CaSlot::Etcd, CaSlot::FrontProxy];

    /// Path of the CA's files, relative to the pki directory, without extension.
    pub fn path(self) -> &'static str {
        match self {
            CaSlot::Cluster => "ca",
            CaSlot::Etcd => "etcd/ca",
            CaSlot::FrontProxy => "front-proxy-ca",
        }
    }

    /// The name kubeadm's check-expiration prints.
    pub fn name(self) -> &'static str {
        match self {
            CaSlot::Cluster => "ca",
            CaSlot::Etcd => "etcd-ca",
            CaSlot::FrontProxy => "front-proxy-ca",
        }
    }

    pub fn common_name(self) -> &'static str {
        match self {
            CaSlot::Cluster => "kubernetes",
            CaSlot::Etcd => "etcd-ca",
            CaSlot::FrontProxy => "front-proxy-ca",
        }
    }
}

/// Where a certificate lives: a `.crt`/`.key` pair in the pki directory, or
/// embedded in a kubeconfig file beside it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    Pair(&'static str),
    Kubeconfig(&'static str),
}

/// One control-plane certificate of kubeadm's layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeCertificate {
    /// The name kubeadm's check-expiration prints (and `pki renew` takes).
    pub name: &'static str,
    pub placement: Placement,
    pub ca: CaSlot,
    pub profile: Profile,
}

/// kubeadm's set, in its check-expiration order.
pub const CERTIFICATES: [NodeCertificate; 11] = [
    NodeCertificate {
        name: "admin.conf",
        placement: Placement::Kubeconfig("admin.conf"),
        ca: CaSlot::Cluster,
        profile: Profile::Admin,
    },
    NodeCertificate {
        name: "apiserver",
        placement: Placement::Pair("apiserver"),
        ca: CaSlot::Cluster,
        profile: Profile::KubeApiserver,
    },
    NodeCertificate {
        name: "apiserver-etcd-client",
        placement: Placement::Pair("apiserver-etcd-client"),
        ca: CaSlot::Etcd,
        profile: Profile::KubeApiserverEtcdClient,
    },
    NodeCertificate {
        name: "apiserver-kubelet-client",
        placement: Placement::Pair("apiserver-kubelet-client"),
        ca: CaSlot::Cluster,
        profile: Profile::KubeApiserverKubeletClient,
    },
    NodeCertificate {
        name: "controller-manager.conf",
        placement: Placement::Kubeconfig("controller-manager.conf"),
        ca: CaSlot::Cluster,
        profile: Profile::ControllerManager,
    },
    NodeCertificate {
        name: "etcd-healthcheck-client",
        placement: Placement::Pair("etcd/healthcheck-client"),
        ca: CaSlot::Etcd,
        profile: Profile::EtcdHealthcheckClient,
    },
    NodeCertificate {
        name: "etcd-peer",
        placement: Placement::Pair("etcd/peer"),
        ca: CaSlot::Etcd,
        profile: Profile::EtcdPeer,
    },
    NodeCertificate {
        name: "etcd-server",
        placement: Placement::Pair("etcd/server"),
        ca: CaSlot::Etcd,
        profile: Profile::EtcdServer,
    },
    NodeCertificate {
        name: "front-proxy-client",
        placement: Placement::Pair("front-proxy-client"),
        ca: CaSlot::FrontProxy,
        profile: Profile::FrontProxyClient,
    },
    NodeCertificate {
        name: "scheduler.conf",
        placement: Placement::Kubeconfig("scheduler.conf"),
        ca: CaSlot::Cluster,
        profile: Profile::Scheduler,
    },
    NodeCertificate {
        name: "super-admin.conf",
        placement: Placement::Kubeconfig("super-admin.conf"),
        ca: CaSlot::Cluster,
        profile: Profile::SuperAdmin,
    },
];

/// kubelet.conf: written by `pki init` as kubeadm does, then the kubelet's
/// to rotate (kubeadm's check-expiration and renew leave it out too).
pub const KUBELET_CONF: NodeCertificate = NodeCertificate {
    name: "kubelet.conf",
    placement: Placement::Kubeconfig("kubelet.conf"),
    ca: CaSlot::Cluster,
    profile: Profile::KubeletClient,
};

/// Whether a kubeconfig points at the control-plane endpoint (admin,
/// super-admin) or at this node's own API server (kubelet,
/// controller-manager, scheduler), as kubeadm 1.36's `init` writes them
/// (checked against kubeadm itself in tests/kubeadm_parity.rs).
pub fn uses_control_plane_endpoint(cert: &NodeCertificate) -> bool {
    matches!(cert.profile, Profile::Admin | Profile::SuperAdmin)
}

pub fn certificate(name: &str) -> Option<&'static NodeCertificate> {
    CERTIFICATES.iter().find(|c| c.name == name)
}

/// What `pki init` is told about the node.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeParams {
    pub node_name: String,
    pub advertise_address: IpAddr,
    pub service_cidr: Option<String>,
    pub dns_domain: Option<String>,
    /// Extra SANs of the API server certificate: DNS names or IPs.
    pub extra_sans: Vec<String>,
    /// Lifetime of the leaf certificates; kubeadm uses one year.
    pub lifetime: chrono::Duration,
    /// Key algorithm of new keys (kubeadm's default is RSA-2048).
    pub key_algorithm: KeyAlgorithm,
    /// A shared endpoint (`host[:port]`) for the API servers: admin,
    /// super-admin and kubelet kubeconfigs point at it and the API server
    /// certificate names its host.
    pub control_plane_endpoint: Option<String>,
}

/// The host of `host[:port]` (IPv6 in brackets).
pub fn endpoint_host(endpoint: &str) -> &str {
    if let Some(rest) = endpoint.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match endpoint.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') && port.parse::<u16>().is_ok() => host,
        _ => endpoint,
    }
}

/// `https://host:port` of an endpoint, port 6443 when it has none.
pub fn endpoint_url(endpoint: &str) -> String {
    let host = endpoint_host(endpoint);
    let port = endpoint
        .strip_prefix(&format!("[{host}]"))
        .or_else(|| endpoint.strip_prefix(host))
        .and_then(|rest| rest.strip_prefix(':'))
        .and_then(|p| p.parse::<u16>().ok())
        .unwrap_or(API_SERVER_PORT);
    match host.parse::<IpAddr>() {
        Ok(IpAddr::V6(v6)) => format!("https://[{v6}]:{port}"),
        _ => format!("https://{host}:{port}"),
    }
}

/// kubeadm's leaf lifetime.
pub const DEFAULT_LIFETIME_HOURS: i64 = 8760;
/// The port the API server listens on, for the kubeconfig files.
pub const API_SERVER_PORT: u16 = 6443;

/// The template of one control-plane certificate for this node.
pub fn template(cert: &NodeCertificate, p: &NodeParams) -> Result<LeafTemplate, PkiError> {
    let (mut dns, mut ips) = (Vec::new(), Vec::new());
    if cert.profile == Profile::KubeApiserver {
        let endpoint = p.control_plane_endpoint.as_deref().map(endpoint_host);
        for san in p.extra_sans.iter().map(String::as_str).chain(endpoint) {
            match san.parse::<IpAddr>() {
                Ok(_) => ips.push(san.to_string()),
                Err(_) => dns.push(san.to_string()),
            }
        }
    }
    let takes_node = matches!(
        cert.profile,
        Profile::KubeApiserver | Profile::EtcdServer | Profile::EtcdPeer
    );
    let spec = ClusterCertificateSpec {
        issuer_ref: IssuerRef {
            name: cert.ca.name().into(),
        },
        secret_name: "node".into(),
        secret_namespace: "node".into(),
        profile: Some(cert.profile),
        node_name: Some(p.node_name.clone()),
        advertise_address: takes_node.then(|| p.advertise_address.to_string()),
        service_cidr: p.service_cidr.clone(),
        dns_domain: p.dns_domain.clone(),
        dns_names: dns,
        ip_addresses: ips,
        private_key: Some(PrivateKeySettings {
            algorithm: Some(p.key_algorithm),
            rotation_policy: None,
        }),
        ..Default::default()
    };
    let mut t = LeafTemplate::from_spec(&spec)?;
    t.lifetime = p.lifetime;
    Ok(t)
}

/// The template that re-issues a certificate as it is: same subject, names,
/// usages, key algorithm and lifetime. Renewal never changes what a
/// certificate says, only when it expires.
pub fn template_from(current: &CertificateInfo) -> Result<LeafTemplate, PkiError> {
    let key_algorithm = current.key_algorithm.ok_or_else(|| {
        PkiError::InvalidSpec(format!(
            "the key of {} is of an algorithm certop does not issue",
            current.subject()
        ))
    })?;
    Ok(LeafTemplate {
        common_name: current.common_name.clone(),
        organizations: current.organizations.clone(),
        dns_names: current.dns_names.clone(),
        ip_addresses: current.ip_addresses.clone(),
        uris: current.uris.clone(),
        usages: current.usages.clone(),
        key_algorithm,
        lifetime: crate::pki::issued_lifetime(current.not_before, current.not_after),
        crl_distribution_point: current.crl_distribution_points.first().cloned(),
    })
}

/// Whether a certificate is due: expired, or within `within` of its
/// notAfter, or by default past two thirds of its lifetime.
pub fn is_due(
    cert: &CertificateInfo,
    within: Option<chrono::Duration>,
    now: DateTime<Utc>,
) -> bool {
    let window = within.unwrap_or((cert.not_after - cert.not_before) / 3);
    now >= cert.not_after - window
}

/// Which certificates `pki renew` should renew: those named (or `all`),
/// that are due (or all named ones with `force`).
pub fn select<'a>(
    names: &[String],
    found: &'a [(NodeCertificate, CertificateInfo)],
    within: Option<chrono::Duration>,
    force: bool,
    now: DateTime<Utc>,
) -> Result<Vec<&'a (NodeCertificate, CertificateInfo)>, PkiError> {
    let wanted: BTreeSet<&str> = names.iter().map(String::as_str).collect();
    for name in &wanted {
        if *name != "all" && certificate(name).is_none() {
            let known: Vec<&str> = CERTIFICATES.iter().map(|c| c.name).collect();
            return Err(PkiError::InvalidSpec(format!(
                "unknown certificate {name:?}; expected all or one of {}",
                known.join(", ")
            )));
        }
    }
    let all = wanted.is_empty() || wanted.contains("all");
    Ok(found
        .iter()
        .filter(|(c, _)| all || wanted.contains(c.name))
        .filter(|(_, info)| force || is_due(info, within, now))
        .collect())
}

/// A kubeconfig with one cluster and one client certificate, as kubeadm
/// writes it: keys in kubeadm's (alphabetical) order, base64 data on one line.
pub fn new_kubeconfig(
    server: &str,
    user: &str,
    ca_pem: &str,
    cert_pem: &str,
    key_pem: &str,
) -> serde_json::Value {
    let context = format!("{user}@kubernetes");
    serde_json::json!({
        "apiVersion": "v1",
        "clusters": [{"cluster": {"certificate-authority-data": b64(ca_pem.as_bytes()), "server": server}, "name": "kubernetes"}],
        "contexts": [{"context": {"cluster": "kubernetes", "user": user}, "name": context}],
        "current-context": context,
        "kind": "Config",
        "users": [{"name": user, "user": {"client-certificate-data": b64(cert_pem.as_bytes()), "client-key-data": b64(key_pem.as_bytes())}}],
    })
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Where a kubeconfig keeps the client credentials of its current
/// context's user (or its only user).
#[derive(Clone, Debug, PartialEq)]
pub enum ClientCredentials {
    /// PEM certificate and key embedded as base64 data.
    Embedded { cert: Vec<u8>, key: Vec<u8> },
    /// Paths as written in the file (relative ones are from the kubeconfig's directory).
    Files { cert: String, key: String },
}

/// The index in `list` ("users" or "clusters") of the entry the current
/// context names in its `field` ("user" or "cluster"), else the first.
fn current_entry(doc: &serde_json::Value, list: &str, field: &str) -> Option<usize> {
    let entries = doc.get(list)?.as_array()?;
    let wanted = doc
        .get("current-context")
        .and_then(|c| c.as_str())
        .and_then(|current| {
            doc.get("contexts")?
                .as_array()?
                .iter()
                .find(|c| c.get("name").and_then(|n| n.as_str()) == Some(current))?
                .pointer(&format!("/context/{field}"))?
                .as_str()
        });
    match wanted {
        Some(name) => entries
            .iter()
            .position(|u| u.get("name").and_then(|n| n.as_str()) == Some(name)),
        None => (!entries.is_empty()).then_some(0),
    }
}

/// The user entry the credentials belong to: the current context's user,
/// else the first user.
fn current_user(doc: &serde_json::Value) -> Option<usize> {
    current_entry(doc, "users", "user")
}

pub fn client_credentials(doc: &serde_json::Value) -> Option<ClientCredentials> {
    use base64::Engine;
    let user = doc.get("users")?.get(current_user(doc)?)?.get("user")?;
    let text = |k: &str| user.get(k).and_then(|v| v.as_str());
    let decode = |s: &str| base64::engine::general_purpose::STANDARD.decode(s).ok();
    match (text("client-certificate-data"), text("client-key-data")) {
        (Some(c), Some(k)) => Some(ClientCredentials::Embedded {
            cert: decode(c)?,
            key: decode(k)?,
        }),
        _ => Some(ClientCredentials::Files {
            cert: text("client-certificate")?.to_string(),
            key: text("client-key")?.to_string(),
        }),
    }
}

/// Replaces the embedded CA data (`certificate-authority-data`) of the
/// current context's cluster (or the only cluster) with `bundle_pem`, and
/// nothing else. False when that cluster names a file or has no CA data.
pub fn replace_ca_data(doc: &mut serde_json::Value, bundle_pem: &str) -> bool {
    let Some(i) = current_entry(doc, "clusters", "cluster") else {
        return false;
    };
    let Some(cluster) = doc
        .pointer_mut(&format!("/clusters/{i}/cluster"))
        .and_then(|c| c.as_object_mut())
    else {
        return false;
    };
    if !cluster.contains_key("certificate-authority-data") {
        return false;
    }
    cluster.insert(
        "certificate-authority-data".into(),
        b64(bundle_pem.as_bytes()).into(),
    );
    true
}

/// Replaces the embedded client certificate and key of the current user,
/// and nothing else (other users, contexts, namespaces, preferences and
/// extensions stay as they were). False when they are not embedded.
pub fn replace_embedded(doc: &mut serde_json::Value, cert_pem: &str, key_pem: &str) -> bool {
    let Some(i) = current_user(doc) else {
        return false;
    };
    let Some(user) = doc
        .pointer_mut(&format!("/users/{i}/user"))
        .and_then(|u| u.as_object_mut())
    else {
        return false;
    };
    if !user.contains_key("client-certificate-data") {
        return false;
    }
    user.insert(
        "client-certificate-data".into(),
        b64(cert_pem.as_bytes()).into(),
    );
    user.insert("client-key-data".into(), b64(key_pem.as_bytes()).into());
    true
}

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use super::*;
    use crate::pki::{Authority, CaRequest, PrivateKey, issue};

    #[test]
    fn only_the_current_clusters_ca_data_is_replaced() {
        let mut doc = serde_json::json!({
            "current-context": "b",
            "contexts": [{"name": "a", "context": {"cluster": "one"}}, {"name": "b", "context": {"cluster": "two"}}],
            "clusters": [
                {"name": "one", "cluster": {"certificate-authority-data": "T0xE"}},
                {"name": "two", "cluster": {"certificate-authority-data": "T0xE", "server": "https://x"}},
                {"name": "three", "cluster": {"certificate-authority": "/etc/ca.crt"}}
            ]
        });
        assert!(replace_ca_data(&mut doc, "NEW"));
        assert_eq!(
            doc.pointer("/clusters/0/cluster/certificate-authority-data"),
            Some(&"T0xE".into())
        );
        assert_eq!(
            doc.pointer("/clusters/1/cluster/certificate-authority-data"),
            Some(&b64(b"NEW").into())
        );
        assert_eq!(
            doc.pointer("/clusters/1/cluster/server"),
            Some(&"https://x".into())
        );
        doc["current-context"] = "c".into();
        doc["contexts"] = serde_json::json!([{"name": "c", "context": {"cluster": "three"}}]);
        assert!(!replace_ca_data(&mut doc, "NEW"), "a CA file is left alone");
    }

    fn params() -> NodeParams {
        NodeParams {
            node_name: "cp-1".into(),
            advertise_address: "192.0.2.10".parse().expect("ip"),
            service_cidr: None,
            dns_domain: None,
            extra_sans: vec!["api.example.com".into(), "198.51.100.7".into()],
            lifetime: Duration::hours(DEFAULT_LIFETIME_HOURS),
            key_algorithm: KeyAlgorithm::EcdsaP256,
            control_plane_endpoint: None,
        }
    }

    #[test]
    fn control_plane_endpoints_are_read_as_kubeadm_reads_them() {
        for (endpoint, host, url) in [
            (
                "api.example.com",
                "api.example.com",
                "https://api.example.com:6443",
            ),
            (
                "api.example.com:8443",
                "api.example.com",
                "https://api.example.com:8443",
            ),
            ("192.0.2.1", "192.0.2.1", "https://192.0.2.1:6443"),
            (
                "[2001:db8::1]:443",
                "2001:db8::1",
                "https://[2001:db8::1]:443",
            ),
            ("2001:db8::1", "2001:db8::1", "https://[2001:db8::1]:6443"),
        ] {
            assert_eq!(endpoint_host(endpoint), host, "{endpoint}");
            assert_eq!(endpoint_url(endpoint), url, "{endpoint}");
        }
        let mut p = params();
        p.control_plane_endpoint = Some("lb.example.com:8443".into());
        p.key_algorithm = KeyAlgorithm::Rsa2048;
        let api = template(&CERTIFICATES[1], &p).expect("apiserver");
        assert!(
            api.dns_names.contains(&"lb.example.com".to_string()),
            "{:?}",
            api.dns_names
        );
        assert_eq!(api.key_algorithm, KeyAlgorithm::Rsa2048);
        assert!(
            api.usages.contains(&crate::api::KeyUsage::KeyEncipherment),
            "RSA keys encipher, as kubeadm's"
        );
    }

    #[test]
    fn every_certificate_of_the_layout_has_a_template_with_kubeadms_names() {
        let p = params();
        for c in &CERTIFICATES {
            let t = template(c, &p).unwrap_or_else(|e| panic!("{}: {e}", c.name));
            assert_eq!(t.lifetime, Duration::hours(8760), "{}", c.name);
        }
        let api = template(certificate("apiserver").expect("apiserver"), &p).expect("template");
        assert!(api.dns_names.contains(&"api.example.com".to_string()));
        assert!(
            api.ip_addresses
                .contains(&"198.51.100.7".parse().expect("ip"))
        );
        assert!(
            api.ip_addresses
                .contains(&"192.0.2.10".parse().expect("ip"))
        );
        let peer = template(certificate("etcd-peer").expect("peer"), &p).expect("template");
        assert!(
            !peer.dns_names.contains(&"api.example.com".to_string()),
            "extra SANs are the API server's only"
        );
    }

    #[test]
    fn renewal_keeps_what_the_certificate_says_and_selects_what_is_due() {
        let now = Utc::now();
        let ca = Authority::create(&CaRequest::new("kubernetes"), now - Duration::days(400))
            .expect("ca");
        let t =
            template(certificate("apiserver").expect("apiserver"), &params()).expect("template");
        let key = PrivateKey::generate(t.key_algorithm).expect("key");
        let old = issue(&t, &key, &ca, now - Duration::days(300))
            .expect("issue")
            .certificate;
        let again = template_from(&old).expect("template");
        assert_eq!(
            again.first_mismatch(&old, ca.certificate()),
            None,
            "a renewal says the same"
        );
        let fresh = issue(&t, &key, &ca, now).expect("issue").certificate;
        let found = vec![
            (CERTIFICATES[1], old.clone()),
            (CERTIFICATES[2], fresh.clone()),
        ];
        let due = select(&["all".into()], &found, None, false, now).expect("select");
        assert_eq!(
            due.len(),
            1,
            "only the 300-day-old certificate is past 2/3 of its year"
        );
        assert_eq!(
            select(&[], &found, Some(Duration::days(400)), false, now)
                .expect("select")
                .len(),
            2
        );
        assert_eq!(
            select(&["apiserver-etcd-client".into()], &found, None, true, now)
                .expect("select")
                .len(),
            1
        );
        assert!(select(&["kubelet".into()], &found, None, false, now).is_err());
        assert!(
            is_due(&old, None, old.not_after + Duration::seconds(1)),
            "expired is due"
        );
    }

    #[test]
    fn kubeconfigs_change_only_the_current_users_credentials() {
        let mut doc = new_kubeconfig(
            "https://192.0.2.10:6443",
            "kubernetes-admin",
            "CA",
            "CERT",
            "KEY",
        );
        assert_eq!(
            client_credentials(&doc),
            Some(ClientCredentials::Embedded {
                cert: b"CERT".to_vec(),
                key: b"KEY".to_vec()
            })
        );
        // What an administrator added stays: another user, a namespace, preferences.
        doc["users"].as_array_mut().expect("users").insert(
            0,
            serde_json::json!({"name": "other", "user": {"token": "t"}}),
        );
        doc["contexts"][0]["context"]["namespace"] = "kube-system".into();
        doc["preferences"] = serde_json::json!({"colors": true});
        let before = doc.clone();
        assert!(replace_embedded(&mut doc, "NEW", "KEY2"));
        assert_eq!(
            client_credentials(&doc),
            Some(ClientCredentials::Embedded {
                cert: b"NEW".to_vec(),
                key: b"KEY2".to_vec()
            })
        );
        let mut expected = before;
        expected["users"][1]["user"]["client-certificate-data"] = b64(b"NEW").into();
        expected["users"][1]["user"]["client-key-data"] = b64(b"KEY2").into();
        assert_eq!(doc, expected, "nothing else changed");

        let files = serde_json::json!({"current-context": "c", "contexts": [{"name": "c", "context": {"user": "u"}}],
            "users": [{"name": "u", "user": {"client-certificate": "pki/u.crt", "client-key": "/abs/u.key"}}]});
        assert_eq!(
            client_credentials(&files),
            Some(ClientCredentials::Files {
                cert: "pki/u.crt".into(),
                key: "/abs/u.key".into()
            })
        );
        assert!(!replace_embedded(&mut files.clone(), "a", "b"));
    }
}
