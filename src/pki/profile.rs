use std::collections::BTreeSet;
use std::net::IpAddr;

use crate::api::{ClusterCertificateSpec, KeyAlgorithm, KeyUsage, Profile};

use super::{CertificateInfo, PkiError};

/// Default lifetime of a leaf certificate (90 days), as in cert-manager.
pub const DEFAULT_LEAF_LIFETIME_HOURS: i64 = 2160;
/// The Service CIDR kubeadm uses when none is given.
pub const DEFAULT_SERVICE_CIDR: &str = "10.96.0.0/12";
pub const DEFAULT_DNS_DOMAIN: &str = "cluster.local";
/// X.520's upper bound for a common name.
const MAX_COMMON_NAME: usize = 64;

/// Everything a leaf certificate must say, resolved from a spec and its
/// profile. Issuance signs exactly this; the planner compares a certificate
/// against it to decide whether the certificate still matches its spec.
#[derive(Clone, Debug, PartialEq)]
pub struct LeafTemplate {
    pub common_name: Option<String>,
    pub organizations: Vec<String>,
    pub dns_names: Vec<String>,
    pub ip_addresses: Vec<IpAddr>,
    pub uris: Vec<String>,
    pub usages: BTreeSet<KeyUsage>,
    pub key_algorithm: KeyAlgorithm,
    pub lifetime: chrono::Duration,
    /// The CRL distribution point of the issuing CA, if it publishes one.
    pub crl_distribution_point: Option<String>,
}

/// A field of the spec that the certificate no longer matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpecField {
    CommonName,
    Organizations,
    DnsNames,
    IpAddresses,
    Uris,
    Usages,
    KeyAlgorithm,
    Duration,
    CrlDistributionPoint,
}

impl SpecField {
    pub fn as_str(self) -> &'static str {
        match self {
            SpecField::CommonName => "commonName",
            SpecField::Organizations => "organizations",
            SpecField::DnsNames => "dnsNames",
            SpecField::IpAddresses => "ipAddresses",
            SpecField::Uris => "uris",
            SpecField::Usages => "usages",
            SpecField::KeyAlgorithm => "privateKey.algorithm",
            SpecField::Duration => "duration",
            SpecField::CrlDistributionPoint => "the CA's CRL distribution point",
        }
    }
}

impl LeafTemplate {
    /// The first spec field the certificate does not match, if any. Lists are
    /// compared as sets: order carries no meaning in a certificate's names.
    pub fn first_mismatch(
        &self,
        cert: &CertificateInfo,
        ca: &CertificateInfo,
    ) -> Option<SpecField> {
        let t = self;
        fn set<T: Ord + Clone>(v: &[T]) -> BTreeSet<T> {
            v.iter().cloned().collect()
        }
        // notAfter - notBefore is the lifetime plus the backdate (up to
        // BACKDATE, less when notBefore met the CA's), or exactly the
        // lifetime for certificates issued before certop backdated.
        let span = cert.not_after - cert.not_before;
        let lifetime_matches = span >= t.lifetime && span <= t.lifetime + super::BACKDATE;
        let clamped = cert.not_after == ca.not_after && span < t.lifetime + super::BACKDATE;
        let checks = [
            (cert.common_name != t.common_name, SpecField::CommonName),
            (
                set(&cert.organizations) != set(&t.organizations),
                SpecField::Organizations,
            ),
            (
                set(&cert.dns_names) != set(&t.dns_names),
                SpecField::DnsNames,
            ),
            (
                set(&cert.ip_addresses) != set(&t.ip_addresses),
                SpecField::IpAddresses,
            ),
            (set(&cert.uris) != set(&t.uris), SpecField::Uris),
            (cert.usages != t.usages, SpecField::Usages),
            (
                cert.key_algorithm != Some(t.key_algorithm),
                SpecField::KeyAlgorithm,
            ),
            (!lifetime_matches && !clamped, SpecField::Duration),
            (
                cert.crl_distribution_points.first() != t.crl_distribution_point.as_ref(),
                SpecField::CrlDistributionPoint,
            ),
        ];
        checks
            .into_iter()
            .find(|(differs, _)| *differs)
            .map(|(_, field)| field)
    }
}

/// What a profile fixes: subject, extended usages, and which names it takes.
struct ProfileRules {
    common_name: Option<String>,
    organizations: Option<Vec<String>>,
    extended_usages: &'static [KeyUsage],
    /// Whether the certificate serves (takes DNS/IP SANs from the spec).
    takes_names: bool,
}

fn rules(profile: Profile, node: Option<&str>) -> Result<ProfileRules, PkiError> {
    use KeyUsage::{ClientAuth, ServerAuth};
    let need_node = || {
        node.map(str::to_string).ok_or_else(|| {
            PkiError::InvalidSpec(format!(
                "profile {} names the node: set nodeName",
                profile_name(profile)
            ))
        })
    };
    let fixed = |cn: &str, o: &[&str], eku: &'static [KeyUsage]| ProfileRules {
        common_name: Some(cn.to_string()),
        organizations: Some(o.iter().map(|s| s.to_string()).collect()),
        extended_usages: eku,
        takes_names: false,
    };
    Ok(match profile {
        Profile::KubeApiserver => ProfileRules {
            takes_names: true,
            ..fixed("kube-apiserver", &[], &[ServerAuth])
        },
        // CN only, as kubeadm 1.36: the API server reaches kubelets through
        // the system:kubelet-api-admin binding of its CN, never cluster-admin.
        Profile::KubeApiserverKubeletClient => {
            fixed("kube-apiserver-kubelet-client", &[], &[ClientAuth])
        }
        Profile::KubeApiserverEtcdClient => fixed("kube-apiserver-etcd-client", &[], &[ClientAuth]),
        Profile::FrontProxyClient => fixed("front-proxy-client", &[], &[ClientAuth]),
        Profile::EtcdServer | Profile::EtcdPeer => ProfileRules {
            takes_names: true,
            ..fixed(&need_node()?, &[], &[ServerAuth, ClientAuth])
        },
        Profile::EtcdHealthcheckClient => fixed("kube-etcd-healthcheck-client", &[], &[ClientAuth]),
        Profile::Admin => fixed(
            "kubernetes-admin",
            &["kubeadm:cluster-admins"],
            &[ClientAuth],
        ),
        Profile::SuperAdmin => fixed("kubernetes-super-admin", &["system:masters"], &[ClientAuth]),
        Profile::ControllerManager => fixed("system:kube-controller-manager", &[], &[ClientAuth]),
        Profile::Scheduler => fixed("system:kube-scheduler", &[], &[ClientAuth]),
        Profile::KubeletClient => fixed(
            &format!("system:node:{}", need_node()?),
            &["system:nodes"],
            &[ClientAuth],
        ),
        Profile::KubeletServing => ProfileRules {
            takes_names: true,
            ..fixed(
                &format!("system:node:{}", need_node()?),
                &["system:nodes"],
                &[ServerAuth],
            )
        },
        Profile::Server => ProfileRules {
            common_name: None,
            organizations: None,
            extended_usages: &[ServerAuth],
            takes_names: true,
        },
        Profile::Client => ProfileRules {
            common_name: None,
            organizations: None,
            extended_usages: &[ClientAuth],
            takes_names: true,
        },
    })
}

/// Whether a profile fixes the subject (common name and organizations)
/// itself, so that a spec cannot choose them; `server` and `client` take
/// theirs from the spec.
pub fn profile_fixes_subject(profile: Profile) -> bool {
    rules(profile, Some("node")).is_ok_and(|r| r.common_name.is_some())
}

/// The profile's name as written in a manifest.
pub fn profile_name(profile: Profile) -> String {
    serde_json::to_value(profile)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| format!("{profile:?}"))
}

impl LeafTemplate {
    /// Resolves a spec into the certificate it asks for. Rejects, with a
    /// message that says what to change, anything the API server's CEL
    /// rules cannot see: names a profile forbids, malformed names, a common
    /// name too long for X.509.
    pub fn from_spec(spec: &ClusterCertificateSpec) -> Result<Self, PkiError> {
        let key_algorithm = spec
            .private_key
            .as_ref()
            .and_then(|k| k.algorithm)
            .unwrap_or_default();
        let lifetime = lifetime_of(spec)?;
        check_renewal(spec, lifetime)?;
        let ip_addresses = check_spec_names(spec)?;
        check_usages(spec, key_algorithm)?;
        let mut template = LeafTemplate {
            common_name: spec.common_name.clone(),
            organizations: spec.organizations.clone(),
            dns_names: spec.dns_names.clone(),
            ip_addresses,
            uris: spec.uris.clone(),
            usages: BTreeSet::new(),
            key_algorithm,
            lifetime,
            crl_distribution_point: None,
        };
        let base_usages = base_key_usages(key_algorithm);
        match spec.profile {
            None => {
                template.usages = if spec.usages.is_empty() {
                    base_usages
                } else {
                    spec.usages.iter().copied().collect()
                };
            }
            Some(profile) => {
                apply_profile(&mut template, profile, spec)?;
                template.usages.extend(base_usages);
            }
        }
        check_subject_present(&template)?;
        Ok(template)
    }
}

fn invalid<T>(message: String) -> Result<T, PkiError> {
    Err(PkiError::InvalidSpec(message))
}

/// `spec.duration` (a year by default), at least a minute.
fn lifetime_of(spec: &ClusterCertificateSpec) -> Result<chrono::Duration, PkiError> {
    let lifetime = match &spec.duration {
        Some(d) => d
            .to_chrono()
            .map_err(|e| PkiError::InvalidSpec(format!("duration: {e}")))?,
        None => chrono::Duration::hours(DEFAULT_LEAF_LIFETIME_HOURS),
    };
    if lifetime < chrono::Duration::minutes(1) {
        return invalid("duration must be at least 1m".into());
    }
    Ok(lifetime)
}

/// One of renewBefore (shorter than the lifetime) and
/// renewBeforePercentage (1 to 99).
fn check_renewal(
    spec: &ClusterCertificateSpec,
    lifetime: chrono::Duration,
) -> Result<(), PkiError> {
    let renew_before = spec
        .renew_before
        .as_ref()
        .map(|d| d.to_chrono())
        .transpose()
        .map_err(|e| PkiError::InvalidSpec(format!("renewBefore: {e}")))?;
    if let Some(rb) = renew_before
        && rb >= lifetime
    {
        return invalid("renewBefore must be shorter than duration".into());
    }
    if spec.renew_before.is_some() && spec.renew_before_percentage.is_some() {
        return invalid("set at most one of renewBefore and renewBeforePercentage".into());
    }
    if let Some(p) = spec.renew_before_percentage
        && !(1..=99).contains(&p)
    {
        return invalid(format!(
            "renewBeforePercentage must be between 1 and 99, not {p}"
        ));
    }
    Ok(())
}

/// Every name of the spec well-formed; its IP addresses, parsed.
fn check_spec_names(spec: &ClusterCertificateSpec) -> Result<Vec<IpAddr>, PkiError> {
    if let Some(node) = &spec.node_name {
        check_dns_name(node, "nodeName")?;
    }
    if let Some(cn) = &spec.common_name {
        check_printable(cn, "commonName")?;
    }
    for o in &spec.organizations {
        check_printable(o, "organizations")?;
    }
    check_one_organization(&spec.organizations)?;
    for name in &spec.dns_names {
        check_dns_name(name, "dnsNames")?;
    }
    let ip_addresses = spec
        .ip_addresses
        .iter()
        .map(|ip| parse_ip(ip, "ipAddresses"))
        .collect::<Result<Vec<_>, _>>()?;
    for uri in &spec.uris {
        check_uri(uri)?;
    }
    Ok(ip_addresses)
}

/// Encipherment usages only for an RSA key.
fn check_usages(
    spec: &ClusterCertificateSpec,
    key_algorithm: KeyAlgorithm,
) -> Result<(), PkiError> {
    match spec.usages.iter().find(|u| {
        !key_algorithm.is_rsa()
            && matches!(u, KeyUsage::KeyEncipherment | KeyUsage::DataEncipherment)
    }) {
        Some(usage) => invalid(format!(
            "usage {:?} needs an RSA key; {key_algorithm} keys cannot encipher (remove it or choose an RSA algorithm)",
            usage_name(*usage)
        )),
        None => Ok(()),
    }
}

/// What a profile fixes (subject, extended usages, names): a spec that
/// sets it otherwise is refused, not overridden silently.
fn apply_profile(
    template: &mut LeafTemplate,
    profile: Profile,
    spec: &ClusterCertificateSpec,
) -> Result<(), PkiError> {
    let name = profile_name(profile);
    let r = rules(profile, spec.node_name.as_deref())?;
    if !spec.usages.is_empty() {
        return invalid(format!(
            "profile {name} sets the usages itself: remove usages"
        ));
    }
    if let Some(cn) = &r.common_name {
        if spec.common_name.as_ref().is_some_and(|c| c != cn) {
            return invalid(format!(
                "profile {name} sets commonName to {cn:?}: remove commonName"
            ));
        }
        template.common_name = Some(cn.clone());
    }
    if let Some(orgs) = &r.organizations {
        if !spec.organizations.is_empty() && &spec.organizations != orgs {
            return invalid(format!(
                "profile {name} sets organizations to {orgs:?}: remove organizations"
            ));
        }
        template.organizations = orgs.clone();
    }
    if !r.takes_names
        && (!spec.dns_names.is_empty() || !spec.ip_addresses.is_empty() || !spec.uris.is_empty())
    {
        return invalid(format!(
            "profile {name} is a client certificate and takes no dnsNames, ipAddresses or uris: remove them"
        ));
    }
    template.usages = r.extended_usages.iter().copied().collect();
    add_profile_names(template, profile, spec)
}

/// A common name X.509 can hold, and something to name at all.
fn check_subject_present(template: &LeafTemplate) -> Result<(), PkiError> {
    if let Some(cn) = &template.common_name
        && cn.len() > MAX_COMMON_NAME
    {
        return invalid(format!(
            "commonName {cn:?} is {} characters; X.509 allows {MAX_COMMON_NAME} (use a shorter name)",
            cn.len()
        ));
    }
    if template.common_name.is_none()
        && template.dns_names.is_empty()
        && template.ip_addresses.is_empty()
        && template.uris.is_empty()
    {
        return invalid(
            "set a profile, or at least one of commonName, dnsNames, ipAddresses, uris".into(),
        );
    }
    Ok(())
}

impl LeafTemplate {
    /// The checks a ClusterCertificate's names pass, for a template made
    /// from elsewhere (a CSR): printable subject, lower-case DNS names,
    /// absolute URIs; `source` names where they came from.
    pub fn check_names(&self, source: &str) -> Result<(), PkiError> {
        if let Some(cn) = &self.common_name {
            check_printable(cn, &format!("{source} common name"))?;
            if cn.len() > MAX_COMMON_NAME {
                return Err(PkiError::InvalidSpec(format!(
                    "{source} common name is {} characters; X.509 allows {MAX_COMMON_NAME}",
                    cn.len()
                )));
            }
        }
        for o in &self.organizations {
            check_printable(o, &format!("{source} organization"))?;
        }
        for name in &self.dns_names {
            check_dns_name(name, &format!("{source} DNS names"))?;
        }
        for uri in &self.uris {
            check_uri(uri)?;
        }
        Ok(())
    }
}

/// The keyUsage bits every leaf gets: digitalSignature, plus keyEncipherment
/// for RSA (RFC 5480 forbids it for EC keys).
fn base_key_usages(algorithm: KeyAlgorithm) -> BTreeSet<KeyUsage> {
    let mut usages = BTreeSet::from([KeyUsage::DigitalSignature]);
    if algorithm.is_rsa() {
        usages.insert(KeyUsage::KeyEncipherment);
    }
    usages
}

/// Adds the well-known names of server profiles before the spec's extras,
/// without duplicates, in the order kubeadm writes them.
fn add_profile_names(
    t: &mut LeafTemplate,
    profile: Profile,
    spec: &ClusterCertificateSpec,
) -> Result<(), PkiError> {
    let node = spec.node_name.clone();
    let advertise = spec
        .advertise_address
        .as_deref()
        .map(|ip| parse_ip(ip, "advertiseAddress"))
        .transpose()?;
    let (dns, ips): (Vec<String>, Vec<IpAddr>) = match profile {
        Profile::KubeApiserver => {
            let domain = spec.dns_domain.as_deref().unwrap_or(DEFAULT_DNS_DOMAIN);
            check_dns_name(domain, "dnsDomain")?;
            let cidr = spec.service_cidr.as_deref().unwrap_or(DEFAULT_SERVICE_CIDR);
            let mut dns: Vec<String> = node.into_iter().collect();
            dns.extend(
                ["kubernetes", "kubernetes.default", "kubernetes.default.svc"]
                    .iter()
                    .map(|s| s.to_string()),
            );
            dns.push(format!("kubernetes.default.svc.{domain}"));
            // Dual-stack: up to two CIDRs; as kubeadm, the first one's first
            // address is the kubernetes Service's, the second is checked.
            let cidrs: Vec<&str> = cidr.split(',').map(str::trim).collect();
            if cidrs.len() > 2 {
                return Err(PkiError::InvalidSpec(format!(
                    "serviceCIDR {cidr:?} lists more than two CIDRs (at most one IPv4 and one IPv6)"
                )));
            }
            for c in &cidrs[1..] {
                first_service_ip(c)?;
            }
            let mut ips = vec![first_service_ip(cidrs[0])?];
            ips.extend(advertise);
            (dns, ips)
        }
        Profile::EtcdServer | Profile::EtcdPeer => {
            let mut dns: Vec<String> = node.into_iter().collect();
            dns.push("localhost".into());
            let mut ips: Vec<IpAddr> = advertise.into_iter().collect();
            ips.push(IpAddr::from([127, 0, 0, 1]));
            ips.push(IpAddr::from(std::net::Ipv6Addr::LOCALHOST));
            (dns, ips)
        }
        Profile::KubeletServing => (node.into_iter().collect(), advertise.into_iter().collect()),
        _ => (Vec::new(), Vec::new()),
    };
    let extra_dns = std::mem::take(&mut t.dns_names);
    let extra_ips = std::mem::take(&mut t.ip_addresses);
    for name in dns.into_iter().chain(extra_dns) {
        if !t.dns_names.contains(&name) {
            t.dns_names.push(name);
        }
    }
    for ip in ips.into_iter().chain(extra_ips) {
        if !t.ip_addresses.contains(&ip) {
            t.ip_addresses.push(ip);
        }
    }
    Ok(())
}

/// The first usable address of a CIDR: the kubernetes Service's cluster IP.
fn first_service_ip(cidr: &str) -> Result<IpAddr, PkiError> {
    let bad = || {
        PkiError::InvalidSpec(format!(
            "serviceCIDR {cidr:?} is not a CIDR such as 10.96.0.0/12"
        ))
    };
    let (addr, bits) = cidr.split_once('/').ok_or_else(bad)?;
    let addr: IpAddr = addr.parse().map_err(|_| bad())?;
    let bits: u32 = bits.parse().map_err(|_| bad())?;
    match addr {
        IpAddr::V4(v4) if bits < 32 => {
            let mask = if bits == 0 {
                0
            } else {
                u32::MAX << (32 - bits)
            };
            Ok(IpAddr::from(std::net::Ipv4Addr::from(
                (u32::from(v4) & mask) + 1,
            )))
        }
        IpAddr::V6(v6) if bits < 128 => {
            let mask = if bits == 0 {
                0
            } else {
                u128::MAX << (128 - bits)
            };
            Ok(IpAddr::from(std::net::Ipv6Addr::from(
                (u128::from(v6) & mask) + 1,
            )))
        }
        _ => Err(bad()),
    }
}

fn parse_ip(s: &str, field: &str) -> Result<IpAddr, PkiError> {
    s.parse().map_err(|_| {
        PkiError::InvalidSpec(format!("{field}: {s:?} is not an IPv4 or IPv6 address"))
    })
}

/// At most one organization (duplicates aside). rcgen 0.14 keeps one value
/// per attribute type in a subject, so a second O would replace the first:
/// the certificate would not say what was asked, and would be thrown away
/// after signing, again and again. Refused before anything is signed.
pub(super) fn check_one_organization(organizations: &[String]) -> Result<(), PkiError> {
    let distinct: BTreeSet<&String> = organizations.iter().collect();
    if distinct.len() > 1 {
        return Err(PkiError::InvalidSpec(format!(
            "organizations: certop signs one organization per certificate, not {} ({:?}); keep one",
            distinct.len(),
            distinct
        )));
    }
    Ok(())
}

/// A lower-case DNS name (RFC 1123 labels), optionally a leading `*.` wildcard.
/// Subject fields carry text, never control characters: a NUL byte in a
/// name is how certificate checks have been fooled.
fn check_printable(value: &str, field: &str) -> Result<(), PkiError> {
    if value.chars().any(char::is_control) {
        return Err(PkiError::InvalidSpec(format!(
            "{field}: {value:?} contains a control character (such as NUL); remove it"
        )));
    }
    Ok(())
}

/// A lower-case DNS name (`*.` first allowed), not an IP; `field` names
/// where it came from in the error.
pub fn check_dns_name(name: &str, field: &str) -> Result<(), PkiError> {
    if name.parse::<std::net::IpAddr>().is_ok() {
        return Err(PkiError::InvalidSpec(format!(
            "{field}: {name:?} is an IP address; put it in ipAddresses"
        )));
    }
    let bare = name.strip_prefix("*.").unwrap_or(name);
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if name.len() > 253 || !bare.split('.').all(label_ok) {
        return Err(PkiError::InvalidSpec(format!(
            "{field}: {name:?} is not a lower-case DNS name such as api.example.com"
        )));
    }
    Ok(())
}

fn check_uri(uri: &str) -> Result<(), PkiError> {
    let scheme_ok = uri.split_once(':').is_some_and(|(scheme, rest)| {
        !scheme.is_empty()
            && scheme.starts_with(|c: char| c.is_ascii_alphabetic())
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
            && !rest.is_empty()
    });
    if !scheme_ok || !uri.is_ascii() || uri.contains(char::is_whitespace) {
        return Err(PkiError::InvalidSpec(format!(
            "uris: {uri:?} is not an absolute URI such as spiffe://cluster.local/ns/default/sa/web"
        )));
    }
    Ok(())
}

pub fn usage_name(usage: KeyUsage) -> String {
    serde_json::to_value(usage)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| format!("{usage:?}"))
}
