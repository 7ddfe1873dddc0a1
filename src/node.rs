//! certop on a control-plane node's files, in kubeadm's layout under
//! /etc/kubernetes/pki: create the CAs and every control-plane certificate
//! and kubeconfig (`pki init`), show their expiry (`pki check-expiration`),
//! and renew what is due (`pki renew`), safely at every boot, before any API
//! server is up. Decisions are pure functions of what the files say and the
//! clock; the file I/O is in `cli`.

use std::collections::BTreeSet;
use std::net::IpAddr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::api::{ClusterCertificateSpec, IssuerRef, Profile};
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
}

/// kubeadm's leaf lifetime.
pub const DEFAULT_LIFETIME_HOURS: i64 = 8760;
/// The port the API server listens on, for the kubeconfig files.
pub const API_SERVER_PORT: u16 = 6443;

/// The template of one control-plane certificate for this node.
pub fn template(cert: &NodeCertificate, p: &NodeParams) -> Result<LeafTemplate, PkiError> {
    let (mut dns, mut ips) = (Vec::new(), Vec::new());
    if cert.profile == Profile::KubeApiserver {
        for san in &p.extra_sans {
            match san.parse::<IpAddr>() {
                Ok(_) => ips.push(san.clone()),
                Err(_) => dns.push(san.clone()),
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

/// A kubeconfig with one cluster and one client certificate, as kubeadm writes them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Kubeconfig {
    #[serde(rename = "apiVersion")]
    pub api_version: String,
    pub kind: String,
    pub clusters: Vec<NamedCluster>,
    pub contexts: Vec<NamedContext>,
    #[serde(rename = "current-context")]
    pub current_context: String,
    pub users: Vec<NamedUser>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NamedCluster {
    pub name: String,
    pub cluster: ClusterEntry,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClusterEntry {
    #[serde(rename = "certificate-authority-data")]
    pub certificate_authority_data: String,
    pub server: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NamedContext {
    pub name: String,
    pub context: ContextEntry,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ContextEntry {
    pub cluster: String,
    pub user: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NamedUser {
    pub name: String,
    pub user: UserEntry,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UserEntry {
    #[serde(rename = "client-certificate-data")]
    pub client_certificate_data: String,
    #[serde(rename = "client-key-data")]
    pub client_key_data: String,
}

impl Kubeconfig {
    /// A kubeconfig for `user` with its certificate and key (PEM), trusting `ca_pem`.
    pub fn new(server: &str, user: &str, ca_pem: &str, cert_pem: &str, key_pem: &str) -> Self {
        use base64::Engine;
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let context = format!("{user}@kubernetes");
        Kubeconfig {
            api_version: "v1".into(),
            kind: "Config".into(),
            clusters: vec![NamedCluster {
                name: "kubernetes".into(),
                cluster: ClusterEntry {
                    certificate_authority_data: b64(ca_pem),
                    server: server.into(),
                },
            }],
            contexts: vec![NamedContext {
                name: context.clone(),
                context: ContextEntry {
                    cluster: "kubernetes".into(),
                    user: user.into(),
                },
            }],
            current_context: context,
            users: vec![NamedUser {
                name: user.into(),
                user: UserEntry {
                    client_certificate_data: b64(cert_pem),
                    client_key_data: b64(key_pem),
                },
            }],
        }
    }

    /// The client certificate and key (PEM) of its first user.
    pub fn client_pair(&self) -> Option<(Vec<u8>, Vec<u8>)> {
        use base64::Engine;
        let user = &self.users.first()?.user;
        let d = |s: &str| base64::engine::general_purpose::STANDARD.decode(s).ok();
        Some((d(&user.client_certificate_data)?, d(&user.client_key_data)?))
    }

    /// Replaces the client certificate and key of its first user.
    pub fn with_client_pair(mut self, cert_pem: &str, key_pem: &str) -> Self {
        use base64::Engine;
        if let Some(u) = self.users.first_mut() {
            u.user.client_certificate_data =
                base64::engine::general_purpose::STANDARD.encode(cert_pem);
            u.user.client_key_data = base64::engine::general_purpose::STANDARD.encode(key_pem);
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use super::*;
    use crate::pki::{Authority, CaRequest, PrivateKey, issue};

    fn params() -> NodeParams {
        NodeParams {
            node_name: "cp-1".into(),
            advertise_address: "192.0.2.10".parse().expect("ip"),
            service_cidr: None,
            dns_domain: None,
            extra_sans: vec!["api.example.com".into(), "198.51.100.7".into()],
            lifetime: Duration::hours(DEFAULT_LIFETIME_HOURS),
        }
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
    fn kubeconfigs_round_trip_their_client_pair() {
        let k = Kubeconfig::new(
            "https://192.0.2.10:6443",
            "kubernetes-admin",
            "CA",
            "CERT",
            "KEY",
        );
        let yaml = serde_saphyr::to_string(&k).expect("yaml");
        let back: Kubeconfig = serde_saphyr::from_str(&yaml).expect("parse");
        assert_eq!(
            back.client_pair(),
            Some((b"CERT".to_vec(), b"KEY".to_vec()))
        );
        let renewed = back.with_client_pair("NEW", "KEY2");
        assert_eq!(
            renewed.client_pair(),
            Some((b"NEW".to_vec(), b"KEY2".to_vec()))
        );
    }
}
