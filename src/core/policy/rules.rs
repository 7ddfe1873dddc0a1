//! One bound on every identity field, whatever it came from: a
//! CertificatePolicy, a CA's own `spec.policy`, or the default. Every
//! request path evaluates the same `Rules` the same way. Pure.

use std::collections::BTreeSet;
use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;

use super::{pattern, privileged};
use crate::api::{
    AllowedIdentity, CertificatePolicy, DurationError, IssuancePolicy, KeyAlgorithm, KeyUsage,
    Profile,
};
use crate::pki::{LeafTemplate, profile_name, usage_name};

/// Where a set of rules came from, as a refusal names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// A CertificatePolicy, by name.
    Policy(String),
    /// The `spec.policy` of a CertificateAuthority, by CA name.
    CaPolicy(String),
    /// No policy governs the CA: only privileged identities are refused.
    Default,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Policy(name) => write!(f, "CertificatePolicy {name}"),
            Source::CaPolicy(ca) => write!(f, "the spec.policy of CertificateAuthority {ca}"),
            Source::Default => {
                f.write_str("the default policy (no CertificatePolicy governs the CA)")
            }
        }
    }
}

/// An identity field of a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    Profile,
    CommonName,
    Organization,
    DnsName,
    IpAddress,
    Uri,
    Usage,
    KeyAlgorithm,
    Duration,
}

impl Field {
    /// The field's name as a policy's `allowed` writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Field::Profile => "profiles",
            Field::CommonName => "commonNames",
            Field::Organization => "organizations",
            Field::DnsName => "dnsNames",
            Field::IpAddress => "ipAddresses",
            Field::Uri => "uris",
            Field::Usage => "usages",
            Field::KeyAlgorithm => "keyAlgorithms",
            Field::Duration => "maxDuration",
        }
    }
}

/// Why a set of rules does not allow a request: which field and value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub source: Source,
    pub field: Field,
    pub value: String,
    pub why: String,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} does not allow {} {:?}: {}",
            self.source,
            self.field.as_str(),
            self.value,
            self.why
        )
    }
}

/// The allowed values of a name field.
#[derive(Clone, Debug, PartialEq)]
enum Names {
    /// Any value that is not privileged.
    Any,
    /// Values a pattern matches; privileged ones only by an exact entry.
    Only(Vec<String>),
}

/// Which profiles a request may use.
#[derive(Clone, Debug, PartialEq)]
enum Profiles {
    /// Any profile, or none.
    Any,
    /// One of these; an empty list: no profile (a CSR has none).
    Only(Vec<Profile>),
}

/// The extended key usages. A certificate with none is valid for every
/// purpose (RFC 5280 4.2.1.12, and Go's x509 as kube-apiserver uses it).
const EXTENDED_USAGES: [KeyUsage; 6] = [
    KeyUsage::ServerAuth,
    KeyUsage::ClientAuth,
    KeyUsage::CodeSigning,
    KeyUsage::EmailProtection,
    KeyUsage::OcspSigning,
    KeyUsage::TimeStamping,
];

/// What a request asks for: the certificate it would get, and the profile
/// a ClusterCertificate named (a CSR has none); with the addresses of the
/// API server's own Service, privileged in this cluster.
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    pub profile: Option<Profile>,
    pub template: &'a LeafTemplate,
    pub api_server_ips: &'a [IpAddr],
}

/// Bounds on every identity field of a request.
#[derive(Clone, Debug, PartialEq)]
pub struct Rules {
    pub source: Source,
    common_names: Names,
    organizations: Names,
    dns_names: Names,
    /// None: any address (the default and a CA's `spec.policy`).
    ip_addresses: Option<Vec<IpNet>>,
    uris: Names,
    usages: Option<BTreeSet<KeyUsage>>,
    key_algorithms: Option<Vec<KeyAlgorithm>>,
    profiles: Profiles,
    max_duration: Option<chrono::Duration>,
    /// Whether privileged identities need an exact entry here. A CA's
    /// `spec.policy` only bounds the fields it lists: it never grants one.
    guards_privileged: bool,
}

/// Why a policy's rules cannot be used; each names the policy and the
/// field to fix (the CRD's rules refuse most of these at admission; an
/// object stored before a rule existed can still hold one).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InvalidPolicy {
    #[error("CertificatePolicy {policy}: allowed.ipAddresses: {source}")]
    IpAddress {
        policy: String,
        source: pattern::NotACidr,
    },
    #[error("CertificatePolicy {policy}: allowed.maxDuration: {source}")]
    MaxDuration {
        policy: String,
        source: DurationError,
    },
    #[error("the CA's spec.policy.maxDuration: {0}")]
    CaMaxDuration(DurationError),
}

impl Rules {
    /// What a CA signs when no policy governs it: anything but privileged
    /// identities.
    pub fn default_open() -> Rules {
        Rules {
            source: Source::Default,
            common_names: Names::Any,
            organizations: Names::Any,
            dns_names: Names::Any,
            ip_addresses: None,
            uris: Names::Any,
            usages: None,
            key_algorithms: None,
            profiles: Profiles::Any,
            max_duration: None,
            guards_privileged: true,
        }
    }

    /// A CertificatePolicy's rules: an omitted name field allows nothing.
    pub fn of_policy(policy: &CertificatePolicy) -> Result<Rules, InvalidPolicy> {
        let name = policy.metadata.name.clone().unwrap_or_default();
        let a: &AllowedIdentity = &policy.spec.allowed;
        let ip_addresses = a
            .ip_addresses
            .iter()
            .map(|e| {
                pattern::parse_network(e).map_err(|source| InvalidPolicy::IpAddress {
                    policy: name.clone(),
                    source,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let max_duration = a
            .max_duration
            .as_ref()
            .map(|d| d.to_chrono())
            .transpose()
            .map_err(|source| InvalidPolicy::MaxDuration {
                policy: name.clone(),
                source,
            })?;
        Ok(Rules {
            source: Source::Policy(name.clone()),
            common_names: Names::Only(a.common_names.clone()),
            organizations: Names::Only(a.organizations.clone()),
            dns_names: Names::Only(a.dns_names.clone()),
            ip_addresses: Some(ip_addresses),
            uris: Names::Only(a.uris.clone()),
            usages: a.usages.as_ref().map(|u| u.iter().copied().collect()),
            key_algorithms: a.key_algorithms.clone(),
            profiles: Profiles::Only(a.profiles.clone()),
            max_duration,
            guards_privileged: true,
        })
    }

    /// A CA's own `spec.policy`: a ceiling that only restricts the fields
    /// it lists (an empty list leaves its field open). It grants no
    /// privileged identity, by entry or by profile: those need a
    /// CertificatePolicy.
    pub fn of_ca_policy(ca: &str, p: &IssuancePolicy) -> Result<Rules, InvalidPolicy> {
        let open_or = |list: &[String]| {
            if list.is_empty() {
                Names::Any
            } else {
                Names::Only(list.to_vec())
            }
        };
        // `.example.com` meant every name under example.com; `*` any name.
        let dns: Vec<String> = p
            .allowed_dns_names
            .iter()
            .map(|d| match d.strip_prefix('.') {
                Some(suffix) => format!("*.{suffix}"),
                None => d.clone(),
            })
            .collect();
        let max_duration = p
            .max_duration
            .as_ref()
            .map(|d| d.to_chrono())
            .transpose()
            .map_err(InvalidPolicy::CaMaxDuration)?;
        Ok(Rules {
            source: Source::CaPolicy(ca.to_string()),
            common_names: Names::Any,
            organizations: open_or(&p.allowed_organizations),
            dns_names: if dns.iter().any(|d| d == "*") {
                Names::Any
            } else {
                open_or(&dns)
            },
            ip_addresses: None,
            uris: Names::Any,
            usages: None,
            key_algorithms: None,
            profiles: if p.allowed_profiles.is_empty() {
                Profiles::Any
            } else {
                Profiles::Only(p.allowed_profiles.clone())
            },
            max_duration,
            guards_privileged: false,
        })
    }

    /// The longest lifetime these rules sign, if they bound it.
    pub fn max_duration(&self) -> Option<chrono::Duration> {
        self.max_duration
    }

    /// Ok if every field of the request is allowed; else the first field
    /// and value that is not, and why.
    pub fn evaluate(&self, request: &Request) -> Result<(), Refusal> {
        let t = request.template;
        self.check_profile(request.profile)?;
        if let Some(cn) = &t.common_name {
            self.check_name(
                Field::CommonName,
                &self.common_names,
                cn,
                false,
                privileged::common_name(cn),
            )?;
        }
        for o in &t.organizations {
            self.check_name(
                Field::Organization,
                &self.organizations,
                o,
                false,
                privileged::organization(o),
            )?;
        }
        for d in &t.dns_names {
            self.check_name(
                Field::DnsName,
                &self.dns_names,
                d,
                true,
                privileged::dns_name(d),
            )?;
        }
        self.check_ip_addresses(&t.ip_addresses, request.api_server_ips)?;
        for u in &t.uris {
            self.check_name(Field::Uri, &self.uris, u, false, None)?;
        }
        self.check_usages(&t.usages)?;
        self.check_key_algorithm(t.key_algorithm)?;
        self.check_duration(t.lifetime)
    }

    fn refuse(&self, field: Field, value: String, why: String) -> Result<(), Refusal> {
        Err(Refusal {
            source: self.source.clone(),
            field,
            value,
            why,
        })
    }

    /// A profiles list requires one of its profiles; an empty one, none.
    fn check_profile(&self, profile: Option<Profile>) -> Result<(), Refusal> {
        match (&self.profiles, profile) {
            (Profiles::Only(list), Some(p)) if !list.contains(&p) => self.refuse(
                Field::Profile,
                profile_name(p),
                format!("allowed profiles: {}", names_of(list)),
            ),
            (Profiles::Only(list), None) if !list.is_empty() => self.refuse(
                Field::Profile,
                String::new(),
                format!(
                    "a profile is required (one of {}); a request without one (or a CSR) is refused",
                    names_of(list)
                ),
            ),
            _ => Ok(()),
        }
    }

    /// One name against its list: a privileged one only by an exact entry
    /// (where these rules guard privileged identities), any other by an
    /// entry or pattern that matches it.
    fn check_name(
        &self,
        field: Field,
        names: &Names,
        value: &str,
        fold: bool,
        why_privileged: Option<&str>,
    ) -> Result<(), Refusal> {
        let exact = |list: &[String]| {
            list.iter().any(|e| {
                pattern::is_exact(e)
                    && if fold {
                        e.eq_ignore_ascii_case(value)
                    } else {
                        e == value
                    }
            })
        };
        if let Some(why) = why_privileged.filter(|_| self.guards_privileged) {
            if matches!(names, Names::Only(list) if exact(list)) {
                return Ok(());
            }
            return self.refuse(
                field,
                value.to_string(),
                format!(
                    "{why}; only a policy that lists it exactly (not through a pattern) allows it"
                ),
            );
        }
        match names {
            Names::Any => Ok(()),
            Names::Only(list) if list.iter().any(|e| pattern::matches(e, value, fold)) => Ok(()),
            Names::Only(list) if list.is_empty() => self.refuse(
                field,
                value.to_string(),
                format!(
                    "allowed.{} lists nothing, so no value is allowed",
                    field.as_str()
                ),
            ),
            Names::Only(list) => self.refuse(
                field,
                value.to_string(),
                format!("allowed: {}", list.join(", ")),
            ),
        }
    }

    /// The API server's Service address only by an exact entry; every
    /// address inside an allowed network.
    fn check_ip_addresses(
        &self,
        addresses: &[IpAddr],
        api_server_ips: &[IpAddr],
    ) -> Result<(), Refusal> {
        for ip in addresses {
            let named = self.ip_addresses.as_ref().is_some_and(|networks| {
                networks
                    .iter()
                    .any(|n| n.prefix_len() == n.max_prefix_len() && pattern::contains(n, ip))
            });
            if self.guards_privileged && privileged::api_server_ip(ip, api_server_ips) && !named {
                return self.refuse(
                    Field::IpAddress,
                    ip.to_string(),
                    "it is the API server's Service address; only a policy that lists it exactly (a /32 or /128) allows it".into(),
                );
            }
        }
        let Some(networks) = &self.ip_addresses else {
            return Ok(());
        };
        match addresses
            .iter()
            .find(|ip| !networks.iter().any(|n| pattern::contains(n, ip)))
        {
            None => Ok(()),
            Some(ip) => {
                let allowed: Vec<String> = networks.iter().map(|n| n.to_string()).collect();
                self.refuse(
                    Field::IpAddress,
                    ip.to_string(),
                    if allowed.is_empty() {
                        "allowed.ipAddresses lists nothing, so no address is allowed".into()
                    } else {
                        format!("allowed networks: {}", allowed.join(", "))
                    },
                )
            }
        }
    }

    /// Every usage listed; and no certificate without extended usages (valid
    /// for every purpose) unless every extended usage is allowed.
    fn check_usages(&self, requested: &BTreeSet<KeyUsage>) -> Result<(), Refusal> {
        let Some(usages) = &self.usages else {
            return Ok(());
        };
        let allowed = || {
            let names: Vec<String> = usages.iter().map(|u| usage_name(*u)).collect();
            format!("allowed usages: {}", names.join(", "))
        };
        if let Some(u) = requested.iter().find(|u| !usages.contains(u)) {
            return self.refuse(Field::Usage, usage_name(*u), allowed());
        }
        let no_extended = !requested.iter().any(|u| EXTENDED_USAGES.contains(u));
        if no_extended && EXTENDED_USAGES.iter().any(|u| !usages.contains(u)) {
            return self.refuse(
                Field::Usage,
                "no extended key usage".into(),
                format!(
                    "a certificate without extended key usages is valid for every purpose, client auth included; ask for the ones you need ({})",
                    allowed()
                ),
            );
        }
        Ok(())
    }

    fn check_key_algorithm(&self, algorithm: KeyAlgorithm) -> Result<(), Refusal> {
        match &self.key_algorithms {
            Some(algorithms) if !algorithms.contains(&algorithm) => {
                let allowed: Vec<&str> = algorithms.iter().map(|a| a.as_str()).collect();
                self.refuse(
                    Field::KeyAlgorithm,
                    algorithm.to_string(),
                    format!("allowed key algorithms: {}", allowed.join(", ")),
                )
            }
            _ => Ok(()),
        }
    }

    fn check_duration(&self, lifetime: chrono::Duration) -> Result<(), Refusal> {
        match self.max_duration {
            Some(max) if lifetime > max => self.refuse(
                Field::Duration,
                format!("{}s", lifetime.num_seconds()),
                format!(
                    "at most {}s is signed; shorten spec.duration",
                    max.num_seconds()
                ),
            ),
            _ => Ok(()),
        }
    }
}

fn names_of(profiles: &[Profile]) -> String {
    let names: Vec<String> = profiles.iter().map(|p| profile_name(*p)).collect();
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}
