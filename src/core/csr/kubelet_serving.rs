//! Which names a kubelet serving certificate may hold without a person's
//! approval: only names a node cannot invent. A Node's `status.addresses`
//! are written by the node itself, so they prove nothing about the node
//! that wrote them; they are read only to keep other nodes' names and
//! addresses from it. Pure: the controller lists the Nodes.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;
use regex::Regex;

/// The node's name in a [`DnsPattern`].
const NODE_PLACEHOLDER: &str = "{node}";

/// A `--kubelet-serving-dns-pattern` that is not a regular expression.
#[derive(Debug, thiserror::Error)]
#[error(
    "{pattern:?} is not a regular expression (Rust regex syntax; {{node}} for the node's name): {source}"
)]
pub struct PatternError {
    pattern: String,
    source: regex::Error,
}

/// What `--kubelet-serving-dns-pattern` holds: a regular expression a DNS
/// name must match whole, where `{node}` stands for the requesting node's
/// name, matched literally (`{node}\.nodes\.example\.com`).
#[derive(Clone, Debug)]
pub struct DnsPattern {
    source: String,
}

impl DnsPattern {
    /// Checks that the pattern compiles with any node name put in.
    pub fn parse(source: &str) -> Result<DnsPattern, PatternError> {
        let pattern = DnsPattern {
            source: source.to_string(),
        };
        // The error names the pattern as written, `{node}` as a plain name.
        Regex::new(&source.replace(NODE_PLACEHOLDER, "node"))
            .and_then(|_| pattern.for_node("node-1.example"))
            .map_err(|source_error| PatternError {
                pattern: source.to_string(),
                source: source_error,
            })?;
        Ok(pattern)
    }

    /// Whether the pattern gives each node names of its own (`{node}`).
    fn per_node(&self) -> bool {
        self.source.contains(NODE_PLACEHOLDER)
    }

    /// The pattern for one node, anchored at both ends: it matches a name
    /// whole or not at all.
    fn for_node(&self, node: &str) -> Result<Regex, regex::Error> {
        let body = self.source.replace(NODE_PLACEHOLDER, &regex::escape(node));
        Regex::new(&format!(r"\A(?:{body})\z"))
    }
}

impl fmt::Display for DnsPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

/// The operator's rule for kubelet serving names (from `certop run`'s flags).
#[derive(Clone, Debug, Default)]
pub struct ServingNameRules {
    /// DNS names besides the node's own name; None: only its name.
    pub dns_pattern: Option<DnsPattern>,
    /// Every IP must be inside one; none: no IP is approved.
    pub ip_prefixes: Vec<IpNet>,
    /// The cluster's Service CIDRs: no IP inside one is ever a node's.
    pub service_cidrs: Vec<IpNet>,
    /// Names never approved automatically, even as a node's own name:
    /// whoever joins a node chooses its name, so the API server's external
    /// name (its controlPlaneEndpoint) belongs here.
    pub reserved_names: Vec<String>,
}

/// The names and addresses of every Node but the requester's: refused to
/// the requester, whoever wrote them.
#[derive(Clone, Debug, Default)]
pub struct OtherNodes {
    requester: String,
    names: BTreeSet<String>,
    dns: BTreeMap<String, String>,
    ips: BTreeMap<IpAddr, String>,
}

impl OtherNodes {
    pub fn new(requester: &str) -> OtherNodes {
        OtherNodes {
            requester: requester.to_string(),
            ..OtherNodes::default()
        }
    }

    /// Adds a Node with its `status.addresses` as (type, address); the
    /// requester's own Node is skipped.
    pub fn add<'a>(&mut self, node: &str, addresses: impl IntoIterator<Item = (&'a str, &'a str)>) {
        if node == self.requester {
            return;
        }
        self.names.insert(node.to_ascii_lowercase());
        for (type_, address) in addresses {
            match type_ {
                "Hostname" | "InternalDNS" | "ExternalDNS" => {
                    self.dns
                        .entry(address.to_ascii_lowercase())
                        .or_insert_with(|| node.to_string());
                }
                "InternalIP" | "ExternalIP" => {
                    if let Ok(ip) = address.parse::<IpAddr>() {
                        self.ips
                            .entry(ip.to_canonical())
                            .or_insert_with(|| node.to_string());
                    }
                }
                _ => {}
            }
        }
    }
}

/// Why a name is not approved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Finding {
    /// Another node's identity: the request is denied.
    Foreign(String),
    /// Not provably the node's: the request is left for a person.
    Unproven(String),
}

/// Names never a node's, besides every `<service>.<namespace>.svc[.<domain>]`:
/// the API server's short Service names (SANs of kubeadm's API server
/// certificate) and localhost.
const RESERVED_NAMES: [&str; 3] = ["kubernetes", "kubernetes.default", "localhost"];

impl ServingNameRules {
    /// A DNS name asked for by `node`: its own name or a name of the
    /// pattern, never a wildcard, a Service's in-cluster name or another
    /// Node's name or address.
    pub fn check_dns(&self, node: &str, name: &str, others: &OtherNodes) -> Result<(), Finding> {
        let lower = name.to_ascii_lowercase();
        if name.contains('*') {
            return Err(Finding::Unproven(format!(
                "DNS name {name:?} is a wildcard, never approved automatically"
            )));
        }
        if self
            .reserved_names
            .iter()
            .any(|r| r.eq_ignore_ascii_case(name))
        {
            return Err(Finding::Unproven(format!(
                "DNS name {name:?} is reserved (--kubelet-serving-reserved-names), never approved automatically, even as a node's name"
            )));
        }
        if lower != node && others.names.contains(&lower) {
            return Err(Finding::Foreign(format!(
                "DNS name {name:?} is Node {lower}'s name; a node may only ask for its own"
            )));
        }
        if lower.split('.').any(|label| label == "svc") || RESERVED_NAMES.contains(&&*lower) {
            return Err(Finding::Unproven(format!(
                "DNS name {name:?} is a Service's in-cluster name (or localhost), never a node's"
            )));
        }
        if crate::pki::check_dns_name(name, "DNS name").is_err() {
            return Err(Finding::Unproven(format!(
                "DNS name {name:?} is not a lower-case DNS name"
            )));
        }
        // A name the pattern gives another node is that node's, even when a
        // new node took it as its own name.
        if let Some(pattern) = self.dns_pattern.as_ref().filter(|p| p.per_node())
            && let Some(owner) = others
                .names
                .iter()
                .find(|other| pattern.for_node(other).is_ok_and(|re| re.is_match(&lower)))
        {
            return Err(Finding::Foreign(format!(
                "DNS name {name:?} is Node {owner}'s name under --kubelet-serving-dns-pattern; a node may only ask for its own"
            )));
        }
        // The node's name is its own whatever other nodes write in their
        // status; any other name another Node reports is not.
        if name == node {
            return Ok(());
        }
        if let Some(owner) = others.dns.get(&lower) {
            return Err(Finding::Unproven(format!(
                "DNS name {name:?} is Node {owner}'s address (its status.addresses)"
            )));
        }
        match &self.dns_pattern {
            None => Err(Finding::Unproven(format!(
                "DNS name {name:?} is not the node's name, and no --kubelet-serving-dns-pattern is configured"
            ))),
            Some(pattern) => match pattern.for_node(node) {
                Ok(re) if re.is_match(name) => Ok(()),
                _ => Err(Finding::Unproven(format!(
                    "DNS name {name:?} is neither the node's name nor a match of --kubelet-serving-dns-pattern {pattern}"
                ))),
            },
        }
    }

    /// An IP: inside a configured prefix, outside the Service CIDRs, and
    /// no other Node's address. An IPv4-mapped IPv6 address is judged as
    /// the IPv4 address it stands for (clients treat them as one).
    pub fn check_ip(&self, ip: IpAddr, others: &OtherNodes) -> Result<(), Finding> {
        let ip = ip.to_canonical();
        if let Some(range) = self.service_cidrs.iter().find(|r| r.contains(&ip)) {
            return Err(Finding::Unproven(format!(
                "IP {ip} is inside the Service CIDR {range} (--service-cidr), a Service's address, never a node's"
            )));
        }
        if let Some(owner) = others.ips.get(&ip) {
            return Err(Finding::Unproven(format!(
                "IP {ip} is Node {owner}'s address (its status.addresses)"
            )));
        }
        if self.ip_prefixes.iter().any(|p| p.contains(&ip)) {
            return Ok(());
        }
        let configured = if self.ip_prefixes.is_empty() {
            "none is configured".to_string()
        } else {
            self.ip_prefixes
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(",")
        };
        Err(Finding::Unproven(format!(
            "IP {ip} is outside --kubelet-serving-ip-prefixes ({configured})"
        )))
    }
}
