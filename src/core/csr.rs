//! Kubernetes CertificateSigningRequests (`certificates.k8s.io/v1`): what a
//! CSR asks for, whether a kubelet's CSR may be approved, and the template
//! certop signs. Pure: the controller does the I/O.

use std::collections::BTreeSet;
use std::net::IpAddr;

use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::FromDer;

use crate::api::{KeyAlgorithm, KeyUsage};
use crate::pki::LeafTemplate;

pub mod kubelet_serving;

use kubelet_serving::{Finding, OtherNodes, ServingNameRules};

/// Signer names certop serves for kubelets.
pub const KUBELET_CLIENT_SIGNER: &str = "kubernetes.io/kube-apiserver-client-kubelet";
pub const KUBELET_SERVING_SIGNER: &str = "kubernetes.io/kubelet-serving";
/// certop's own signers: `certop.dev/<CertificateAuthority name>`.
pub const SIGNER_PREFIX: &str = "certop.dev/";

/// What a CSR asks for, read from its PEM and signature-checked.
#[derive(Clone, Debug, PartialEq)]
pub struct CsrContent {
    pub der: Vec<u8>,
    pub common_name: Option<String>,
    pub organizations: Vec<String>,
    pub dns_names: Vec<String>,
    pub ip_addresses: Vec<IpAddr>,
    pub uris: Vec<String>,
    pub other_names: usize,
    pub key_algorithm: KeyAlgorithm,
}

/// Why `spec.request` is not a certificate request certop can read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("spec.request is not a PEM CERTIFICATE REQUEST: {0}")]
    NotPem(String),
    #[error("spec.request holds a {0:?}, not a CERTIFICATE REQUEST")]
    NotARequest(String),
    #[error("cannot parse the CSR: {0}")]
    Unparsable(String),
    #[error("the CSR's signature does not verify with its own key")]
    BadSignature,
    #[error(
        "the CSR's key is of an algorithm certop does not sign (use ECDSA P-256/P-384, Ed25519 or RSA 2048-4096)"
    )]
    UnsupportedKey,
}

/// Parses a PEM CSR and checks its self-signature (proof of the key).
pub fn parse(pem: &[u8]) -> Result<CsrContent, RequestError> {
    let block = ::pem::parse(pem).map_err(|e| RequestError::NotPem(e.to_string()))?;
    if block.tag() != "CERTIFICATE REQUEST" {
        return Err(RequestError::NotARequest(block.tag().to_string()));
    }
    let der = block.contents().to_vec();
    let (_, csr) = X509CertificationRequest::from_der(&der)
        .map_err(|e| RequestError::Unparsable(e.to_string()))?;
    let info = &csr.certification_request_info;
    // A CSR's key is one of those certop generates (P-521 is signed only
    // for pods, where Kubernetes admits it). Checked before the signature,
    // which cannot be verified for a key of another type: the requester is
    // told to change the key, not that its signature is bad.
    let key_algorithm = crate::pki::key_algorithm_of_spki(&info.subject_pki)
        .filter(|a| KeyAlgorithm::ALL.contains(a))
        .ok_or(RequestError::UnsupportedKey)?;
    csr.verify_signature()
        .map_err(|_| RequestError::BadSignature)?;
    let mut content = CsrContent {
        common_name: info
            .subject
            .iter_common_name()
            .next()
            .and_then(|c| c.as_str().ok())
            .map(str::to_string),
        organizations: info
            .subject
            .iter_organization()
            .filter_map(|o| o.as_str().ok().map(str::to_string))
            .collect(),
        dns_names: Vec::new(),
        ip_addresses: Vec::new(),
        uris: Vec::new(),
        other_names: 0,
        key_algorithm,
        der: der.clone(),
    };
    for ext in csr.requested_extensions().into_iter().flatten() {
        if let ParsedExtension::SubjectAlternativeName(san) = ext {
            for name in &san.general_names {
                match name {
                    GeneralName::DNSName(n) => content.dns_names.push(n.to_string()),
                    GeneralName::URI(u) => content.uris.push(u.to_string()),
                    GeneralName::IPAddress(b) => match b.len() {
                        4 => content
                            .ip_addresses
                            .push(IpAddr::from(<[u8; 4]>::try_from(*b).unwrap_or_default())),
                        16 => content
                            .ip_addresses
                            .push(IpAddr::from(<[u8; 16]>::try_from(*b).unwrap_or_default())),
                        _ => content.other_names += 1,
                    },
                    _ => content.other_names += 1,
                }
            }
        }
    }
    Ok(content)
}

/// A CSR usage string (`spec.usages`) as certop's KeyUsage.
pub fn usage(name: &str) -> Option<KeyUsage> {
    serde_json::from_value(serde_json::Value::String(name.to_string())).ok()
}

/// Whether to approve a kubelet's CSR, with the reason a person can act on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Review {
    Approve(String),
    Deny(String),
    /// Not recognisably a node's request: left for others (never denied).
    Leave(String),
    /// A node's request certop cannot prove is right (a name the node may
    /// have invented): left pending for a person, who is told why.
    Pending(String),
    /// A node client request the requester may be allowed to make: approve
    /// it if a SubjectAccessReview allows `create` on any of these
    /// `certificatesigningrequests` subresources (tried in order), as
    /// kube-controller-manager's csrapproving controller does; else leave it.
    AccessCheck(Vec<&'static str>),
}

/// Which rule of a kubelet signer (or of a node's request) a CSR breaks.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SignerRuleError {
    #[error("a kubelet {0} certificate must be for CN system:node:<name>, O system:nodes")]
    NotANodeSubject(&'static str),
    #[error("usages must include {0:?}")]
    MissingUsage(String),
    #[error("usage {0:?} is not allowed for this signer")]
    UsageNotAllowed(String),
    #[error(
        "a kubelet client certificate takes no subject alternative names (DNS, IP, email or URI)"
    )]
    ClientWithNames,
    #[error("a kubelet serving certificate takes only DNS names and IPs (no URI or email)")]
    ServingWithOtherNames,
    #[error("a kubelet serving certificate needs at least one DNS name or IP")]
    ServingWithoutNames,
    #[error("requested by {0:?}, not by a node (system:node:<name>)")]
    NotANode(String),
    #[error("requester {0} is not in group system:nodes")]
    NotInNodesGroup(String),
    #[error("the CSR's CN is {common_name:?}; it must be the requester, {requester:?}")]
    NotTheRequester {
        common_name: String,
        requester: String,
    },
    #[error("the CSR's O is {0:?}; it must be exactly [\"system:nodes\"]")]
    NotNodesOrganization(Vec<String>),
}

/// What Kubernetes' own signer checks for the kubelet signer names, applied
/// whoever approved the CSR: a node's subject, the signer's usages, and the
/// names that signer may put in a certificate. Pure.
pub fn signer_rules(
    signer: &str,
    csr: &CsrContent,
    usages: &[String],
) -> Result<(), SignerRuleError> {
    let (required, name) = match signer {
        KUBELET_CLIENT_SIGNER => (KeyUsage::ClientAuth, "client"),
        KUBELET_SERVING_SIGNER => (KeyUsage::ServerAuth, "serving"),
        _ => return Ok(()),
    };
    if !csr
        .common_name
        .as_deref()
        .is_some_and(|cn| cn.starts_with("system:node:") && cn.len() > "system:node:".len())
        || csr.organizations != ["system:nodes"]
    {
        return Err(SignerRuleError::NotANodeSubject(name));
    }
    check_usages(
        usages,
        required,
        &[
            KeyUsage::DigitalSignature,
            KeyUsage::KeyEncipherment,
            required,
        ],
    )?;
    match signer {
        KUBELET_CLIENT_SIGNER => {
            if !csr.dns_names.is_empty()
                || !csr.ip_addresses.is_empty()
                || !csr.uris.is_empty()
                || csr.other_names > 0
            {
                return Err(SignerRuleError::ClientWithNames);
            }
        }
        _ => {
            if !csr.uris.is_empty() || csr.other_names > 0 {
                return Err(SignerRuleError::ServingWithOtherNames);
            }
            if csr.dns_names.is_empty() && csr.ip_addresses.is_empty() {
                return Err(SignerRuleError::ServingWithoutNames);
            }
        }
    }
    Ok(())
}

/// The node a requester is, if it is one: `system:node:<name>` in `system:nodes`.
fn node_of<'a>(username: &'a str, groups: &[String]) -> Result<&'a str, SignerRuleError> {
    let node = username
        .strip_prefix("system:node:")
        .ok_or_else(|| SignerRuleError::NotANode(username.to_string()))?;
    if !groups.iter().any(|g| g == "system:nodes") {
        return Err(SignerRuleError::NotInNodesGroup(username.to_string()));
    }
    Ok(node)
}

fn check_subject(csr: &CsrContent, username: &str) -> Result<(), SignerRuleError> {
    if csr.common_name.as_deref() != Some(username) {
        return Err(SignerRuleError::NotTheRequester {
            common_name: csr.common_name.clone().unwrap_or_default(),
            requester: username.to_string(),
        });
    }
    if csr.organizations != ["system:nodes"] {
        return Err(SignerRuleError::NotNodesOrganization(
            csr.organizations.clone(),
        ));
    }
    Ok(())
}

fn check_usages(
    requested: &[String],
    required: KeyUsage,
    allowed: &[KeyUsage],
) -> Result<(), SignerRuleError> {
    let set: BTreeSet<Option<KeyUsage>> = requested.iter().map(|u| usage(u)).collect();
    if !set.contains(&Some(required)) {
        return Err(SignerRuleError::MissingUsage(crate::pki::usage_name(
            required,
        )));
    }
    if let Some(bad) = requested
        .iter()
        .find(|u| usage(u).is_none_or(|k| !allowed.contains(&k)))
    {
        return Err(SignerRuleError::UsageNotAllowed(bad.clone()));
    }
    Ok(())
}

/// A kubelet client CSR, reviewed as kube-controller-manager's csrapproving
/// controller does: a node asking for another node's identity is denied; a
/// request the signer would refuse is left alone; any other is approved if
/// the requester may create the `selfnodeclient` (its own identity) or
/// `nodeclient` subresource (a bootstrap token's join), else left pending.
pub fn review_kubelet_client(
    csr: &CsrContent,
    username: &str,
    groups: &[String],
    usages: &[String],
) -> Review {
    // What the signer would refuse is not a node client request at all.
    if let Err(why) = signer_rules(KUBELET_CLIENT_SIGNER, csr, usages) {
        return Review::Leave(why.to_string());
    }
    let cn = csr.common_name.as_deref().unwrap_or_default();
    let is_node =
        username.starts_with("system:node:") && groups.iter().any(|g| g == "system:nodes");
    if is_node && cn != username {
        return Review::Deny(format!(
            "node {username} asked for the identity {cn}; a node may only ask for its own"
        ));
    }
    if cn == username {
        Review::AccessCheck(vec!["selfnodeclient", "nodeclient"])
    } else {
        Review::AccessCheck(vec!["nodeclient"])
    }
}

/// A kubelet serving CSR. Only a node's own request is reviewed (anything
/// else is left alone). It is denied when it is not a valid kubelet serving
/// request or asks for another Node's name; approved when every name is one
/// the node cannot invent (see `kubelet_serving`); else left pending for a
/// person, with every name at fault. The node's own `status.addresses` are
/// not consulted: the node writes them.
pub fn review_kubelet_serving(
    csr: &CsrContent,
    username: &str,
    groups: &[String],
    usages: &[String],
    rules: &ServingNameRules,
    others: &OtherNodes,
) -> Review {
    let node = match node_of(username, groups) {
        Ok(node) => node,
        Err(why) => return Review::Leave(why.to_string()),
    };
    if let Err(why) = check_subject(csr, username)
        .and_then(|()| signer_rules(KUBELET_SERVING_SIGNER, csr, usages))
    {
        return Review::Deny(why.to_string());
    }
    let findings = csr
        .dns_names
        .iter()
        .map(|name| rules.check_dns(node, name, others))
        .chain(
            csr.ip_addresses
                .iter()
                .map(|ip| rules.check_ip(*ip, others)),
        )
        .filter_map(Result::err);
    let (mut foreign, mut unproven) = (Vec::new(), Vec::new());
    for finding in findings {
        match finding {
            Finding::Foreign(m) => foreign.push(m),
            Finding::Unproven(m) => unproven.push(m),
        }
    }
    if !foreign.is_empty() {
        return Review::Deny(foreign.join("; "));
    }
    if !unproven.is_empty() {
        return Review::Pending(format!(
            "not approved automatically for node {node}: {}",
            unproven.join("; ")
        ));
    }
    Review::Approve(format!(
        "every name is node {node}'s own name, a match of the configured DNS pattern, or an IP inside the configured prefixes that no other Node reports"
    ))
}

/// What certop signs for a CSR: its subject and names, the usages asked
/// for (digital signature and the extended usages only; keyEncipherment is
/// kept for RSA keys, dropped for others), for `lifetime`.
/// What certop does not sign in an approved CSR.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("unknown usage {0:?}")]
    UnknownUsage(String),
    #[error("usage {0:?} is not signed by certop")]
    UsageNotSigned(String),
    #[error(
        "the CSR has subject alternative names of a kind certop does not sign (only DNS, IP and URI)"
    )]
    OtherNames,
    #[error("the CSR names nothing (no CN and no SAN)")]
    NamesNothing,
    #[error("{0}")]
    Name(#[from] crate::pki::PkiError),
}

pub fn template(
    csr: &CsrContent,
    usages: &[String],
    lifetime: chrono::Duration,
) -> Result<LeafTemplate, TemplateError> {
    let mut set = BTreeSet::new();
    for u in usages {
        let k = usage(u).ok_or_else(|| TemplateError::UnknownUsage(u.clone()))?;
        match k {
            KeyUsage::KeyEncipherment if !csr.key_algorithm.is_rsa() => {}
            KeyUsage::DigitalSignature
            | KeyUsage::KeyEncipherment
            | KeyUsage::ServerAuth
            | KeyUsage::ClientAuth => {
                set.insert(k);
            }
            other => {
                return Err(TemplateError::UsageNotSigned(crate::pki::usage_name(other)));
            }
        }
    }
    set.insert(KeyUsage::DigitalSignature);
    if csr.other_names > 0 {
        return Err(TemplateError::OtherNames);
    }
    if csr.common_name.is_none()
        && csr.dns_names.is_empty()
        && csr.ip_addresses.is_empty()
        && csr.uris.is_empty()
    {
        return Err(TemplateError::NamesNothing);
    }
    let template = LeafTemplate {
        common_name: csr.common_name.clone(),
        organizations: csr.organizations.clone(),
        dns_names: csr.dns_names.clone(),
        ip_addresses: csr.ip_addresses.clone(),
        uris: csr.uris.clone(),
        usages: set,
        key_algorithm: csr.key_algorithm,
        lifetime,
        crl_distribution_point: None,
    };
    template.check_names("the CSR's")?;
    Ok(template)
}

/// The lifetime to sign: `spec.expirationSeconds` if set (at least the
/// 10 minutes Kubernetes allows), capped by the policy's maximum.
pub fn lifetime(expiration_seconds: Option<i32>, max: chrono::Duration) -> chrono::Duration {
    expiration_seconds
        .map(|s| chrono::Duration::seconds(i64::from(s.max(600))))
        .unwrap_or(max)
        .min(max)
}

#[cfg(test)]
mod tests {
    use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, SanType};

    use super::*;

    fn csr(cn: &str, orgs: &[&str], dns: &[&str], ips: &[&str]) -> CsrContent {
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        for o in orgs {
            dn.push(DnType::OrganizationName, *o);
        }
        dn.push(DnType::CommonName, cn);
        params.distinguished_name = dn;
        for d in dns {
            params
                .subject_alt_names
                .push(SanType::DnsName((*d).try_into().expect("ia5")));
        }
        for ip in ips {
            params
                .subject_alt_names
                .push(SanType::IpAddress(ip.parse().expect("ip")));
        }
        let pem = params
            .serialize_request(&key)
            .expect("csr")
            .pem()
            .expect("pem");
        parse(pem.as_bytes()).expect("parse")
    }

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn parses_subject_and_names_and_refuses_what_is_not_a_csr() {
        let c = csr(
            "system:node:n1",
            &["system:nodes"],
            &["n1.example"],
            &["10.0.0.5"],
        );
        assert_eq!(c.common_name.as_deref(), Some("system:node:n1"));
        assert_eq!(c.organizations, s(&["system:nodes"]));
        assert_eq!(c.dns_names, s(&["n1.example"]));
        assert_eq!(
            c.ip_addresses,
            vec!["10.0.0.5".parse::<IpAddr>().expect("ip")]
        );
        assert_eq!(c.key_algorithm, KeyAlgorithm::EcdsaP256);
        assert!(parse(b"nonsense").is_err());
    }

    /// P-521 is signed for pods only (Kubernetes admits it in a
    /// PodCertificateRequest): a CSR's key is one certop generates, so a
    /// kubelet or any other requester gets no P-521 certificate.
    #[test]
    fn a_csr_with_a_p521_key_is_refused() {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P521_SHA512).expect("key");
        let pem = CertificateParams::new(vec!["n1.example".to_string()])
            .expect("params")
            .serialize_request(&key)
            .expect("csr")
            .pem()
            .expect("pem");
        assert_eq!(
            parse(pem.as_bytes()).map(|c| c.key_algorithm),
            Err(RequestError::UnsupportedKey)
        );
    }

    #[test]
    fn kubelet_reviews_check_identity_usages_and_every_name() {
        let nodes = s(&["system:nodes", "system:authenticated"]);
        let user = "system:node:n1";
        let client = csr(user, &["system:nodes"], &[], &[]);
        let cu = s(&["digital signature", "client auth"]);
        // (review, expected kind, words it must say)
        let bootstrappers = s(&["system:bootstrappers", "system:authenticated"]);
        let other_node = csr("system:node:n2", &["system:nodes"], &[], &[]);
        let cases: Vec<(Review, &str, &str)> = vec![
            (
                review_kubelet_client(&client, user, &nodes, &cu),
                "check",
                "selfnodeclient,nodeclient",
            ),
            (
                review_kubelet_client(&other_node, "system:bootstrap:abcdef", &bootstrappers, &cu),
                "check",
                "nodeclient",
            ),
            (
                review_kubelet_client(&client, "system:node:n2", &nodes, &cu),
                "deny",
                "may only ask for its own",
            ),
            (
                review_kubelet_client(&csr(user, &["system:masters"], &[], &[]), user, &nodes, &cu),
                "leave",
                "O system:nodes",
            ),
            (
                review_kubelet_client(&client, user, &nodes, &s(&["server auth"])),
                "leave",
                "must include \"client auth\"",
            ),
            (
                review_kubelet_client(
                    &csr(user, &["system:nodes"], &["x"], &[]),
                    user,
                    &nodes,
                    &cu,
                ),
                "leave",
                "no subject alternative",
            ),
        ];
        for (review, kind, why) in cases {
            let ok = match (&review, kind) {
                (Review::Deny(m), "deny") | (Review::Leave(m), "leave") => m.contains(why),
                (Review::AccessCheck(subs), "check") => subs.join(",") == why,
                _ => false,
            };
            assert!(ok, "{review:?} should {kind} with {why:?}");
        }
        // The signer refuses what Kubernetes' own signer refuses.
        let mut with_uri = csr(user, &["system:nodes"], &["n1.example"], &[]);
        with_uri.uris.push("spiffe://cluster/ns/x".into());
        let su = s(&["digital signature", "server auth"]);
        assert!(
            signer_rules(KUBELET_SERVING_SIGNER, &with_uri, &su)
                == Err(SignerRuleError::ServingWithOtherNames)
        );
        assert!(
            signer_rules(
                KUBELET_SERVING_SIGNER,
                &csr(user, &["system:nodes"], &[], &[]),
                &su
            )
            .is_err()
        );
        assert!(
            signer_rules(
                KUBELET_CLIENT_SIGNER,
                &csr(user, &["system:nodes"], &[], &["10.0.0.1"]),
                &cu
            )
            .is_err()
        );
        assert!(signer_rules(KUBELET_CLIENT_SIGNER, &client, &cu).is_ok());
        assert!(matches!(
            review_kubelet_serving(
                &with_uri,
                "alice",
                &nodes,
                &su,
                &ServingNameRules::default(),
                &OtherNodes::default()
            ),
            Review::Leave(_)
        ));
    }

    fn rules(pattern: Option<&str>, prefixes: &[&str]) -> ServingNameRules {
        ServingNameRules {
            dns_pattern: pattern.map(|p| kubelet_serving::DnsPattern::parse(p).expect("pattern")),
            ip_prefixes: prefixes.iter().map(|p| p.parse().expect("cidr")).collect(),
            service_cidrs: vec![
                "10.96.0.0/12".parse().expect("cidr"),
                "fd00:10:96::/112".parse().expect("cidr"),
            ],
            reserved_names: vec!["k8s-api.example.com".into()],
        }
    }

    /// What a kubelet serving review lets through: only names the node
    /// cannot invent. Node n2 (10.1.0.2, n2.nodes.example) exists; each Node
    /// lists whatever it likes in its own status, which is never consulted.
    #[test]
    fn kubelet_serving_names_are_approved_only_when_the_node_cannot_invent_them() {
        let groups = s(&["system:nodes", "system:authenticated"]);
        let usages = s(&["digital signature", "server auth"]);
        let configured = rules(
            Some(r"{node}\.nodes\.example"),
            &["10.1.0.0/16", "fd00:1::/64"],
        );
        let any_node = rules(Some(r"[a-z0-9-]+\.nodes\.example"), &["10.1.0.0/16"]);
        let literal_node = rules(Some(r"{node}\.example"), &[]);
        let none = ServingNameRules {
            service_cidrs: vec!["10.96.0.0/12".parse().expect("cidr")],
            ..ServingNameRules::default()
        };
        let others_of = |node: &str| {
            let mut others = OtherNodes::new(node);
            others.add(
                "n2",
                [
                    ("Hostname", "n2.nodes.example"),
                    ("InternalIP", "10.1.0.2"),
                    // n2 claims n1's name: n1's name stays n1's.
                    ("InternalDNS", "n1"),
                ],
            );
            // The requester's own status: it lists what it likes, to no effect.
            others.add(
                node,
                [
                    ("Hostname", "kubernetes.default.svc"),
                    ("InternalIP", "10.96.0.1"),
                ],
            );
            others
        };
        // (what, requesting node, rules, DNS names, IPs, expected, words)
        type Case<'a> = (
            &'a str,
            &'a str,
            &'a ServingNameRules,
            &'a [&'a str],
            &'a [&'a str],
            &'a str,
            &'a str,
        );
        let cases: Vec<Case> = vec![
            (
                "own name, though n2 lists it",
                "n1",
                &configured,
                &["n1"],
                &[],
                "approve",
                "n1",
            ),
            (
                "another node's name",
                "n1",
                &configured,
                &["n2"],
                &[],
                "deny",
                "Node n2's name",
            ),
            (
                "another node's name among good ones",
                "n1",
                &configured,
                &["n1", "kubernetes.default.svc", "n2"],
                &["10.1.0.1"],
                "deny",
                "Node n2's name",
            ),
            (
                "the API server's Service name",
                "n1",
                &configured,
                &["kubernetes.default.svc"],
                &[],
                "pending",
                "Service's in-cluster name",
            ),
            (
                "a Service name in the cluster domain",
                "n1",
                &configured,
                &["web.prod.svc.cluster.local"],
                &[],
                "pending",
                "Service's in-cluster name",
            ),
            (
                "the API server's short name",
                "n1",
                &configured,
                &["kubernetes"],
                &[],
                "pending",
                "Service's in-cluster name",
            ),
            (
                "a node named as the API server",
                "kubernetes.default.svc",
                &configured,
                &["kubernetes.default.svc"],
                &[],
                "pending",
                "Service's in-cluster name",
            ),
            (
                "a wildcard",
                "n1",
                &configured,
                &["*.default.svc.cluster.local"],
                &[],
                "pending",
                "wildcard",
            ),
            (
                "a wildcard of the pattern",
                "n1",
                &any_node,
                &["*.nodes.example"],
                &[],
                "pending",
                "wildcard",
            ),
            (
                "not a DNS name",
                "n1",
                &any_node,
                &["N1.nodes.example"],
                &[],
                "pending",
                "not a lower-case DNS name",
            ),
            (
                "the Service IP",
                "n1",
                &configured,
                &["n1"],
                &["10.96.0.1"],
                "pending",
                "10.96.0.1 is inside the Service CIDR 10.96.0.0/12",
            ),
            (
                "the Service IP, IPv4-mapped",
                "n1",
                &configured,
                &["n1"],
                &["::ffff:10.96.0.1"],
                "pending",
                "10.96.0.1 is inside the Service CIDR",
            ),
            (
                "an IPv6 Service IP",
                "n1",
                &configured,
                &["n1"],
                &["fd00:10:96::1"],
                "pending",
                "Service CIDR fd00:10:96::/112",
            ),
            (
                "another node's IP",
                "n1",
                &configured,
                &["n1"],
                &["10.1.0.2"],
                "pending",
                "IP 10.1.0.2 is Node n2's address",
            ),
            (
                "an IP outside the prefixes",
                "n1",
                &configured,
                &["n1"],
                &["192.0.2.1"],
                "pending",
                "192.0.2.1 is outside --kubelet-serving-ip-prefixes (10.1.0.0/16,fd00:1::/64)",
            ),
            (
                "an IP inside the prefixes",
                "n1",
                &configured,
                &["n1"],
                &["10.1.0.1", "fd00:1::5"],
                "approve",
                "n1",
            ),
            (
                "a pattern match",
                "n1",
                &configured,
                &["n1", "n1.nodes.example"],
                &["10.1.0.1"],
                "approve",
                "n1",
            ),
            (
                "the pattern for another node",
                "n1",
                &configured,
                &["n3.nodes.example"],
                &[],
                "pending",
                "--kubelet-serving-dns-pattern",
            ),
            (
                "a match of the pattern's end only",
                "n1",
                &configured,
                &["evil-n1.nodes.example"],
                &[],
                "pending",
                "neither the node's name nor a match",
            ),
            (
                "a match of the pattern's start only",
                "n1",
                &configured,
                &["n1.nodes.example.evil.com"],
                &[],
                "pending",
                "neither the node's name nor a match",
            ),
            (
                "the node's name is matched literally",
                "n1.zone",
                &literal_node,
                &["n1xzone.example"],
                &[],
                "pending",
                "neither the node's name nor a match",
            ),
            (
                "the node's name with dots, literally",
                "n1.zone",
                &literal_node,
                &["n1.zone.example"],
                &[],
                "approve",
                "n1.zone",
            ),
            (
                "a pattern without {node}: another node's address",
                "n1",
                &any_node,
                &["n2.nodes.example"],
                &[],
                "pending",
                "Node n2's address",
            ),
            (
                "a pattern without {node}: a free name",
                "n1",
                &any_node,
                &["n3.nodes.example"],
                &[],
                "approve",
                "n1",
            ),
            (
                "no configuration: the node's name",
                "n1",
                &none,
                &["n1"],
                &[],
                "approve",
                "n1",
            ),
            (
                "no configuration: any other name",
                "n1",
                &none,
                &["n1.nodes.example"],
                &[],
                "pending",
                "no --kubelet-serving-dns-pattern is configured",
            ),
            (
                "no configuration: any IP",
                "n1",
                &none,
                &["n1"],
                &["10.1.0.1"],
                "pending",
                "none is configured",
            ),
            (
                "a node named as the API server's external name",
                "k8s-api.example.com",
                &configured,
                &["k8s-api.example.com"],
                &[],
                "pending",
                "reserved",
            ),
            (
                "a new node named as another node's pattern name",
                "n2.nodes.example",
                &configured,
                &["n2.nodes.example"],
                &[],
                "deny",
                "Node n2's name under --kubelet-serving-dns-pattern",
            ),
        ];
        for (what, node, rules, dns, ips, expected, words) in cases {
            let user = format!("system:node:{node}");
            let request = csr(&user, &["system:nodes"], dns, ips);
            let review =
                review_kubelet_serving(&request, &user, &groups, &usages, rules, &others_of(node));
            let ok = match (&review, expected) {
                (Review::Approve(m), "approve")
                | (Review::Deny(m), "deny")
                | (Review::Pending(m), "pending") => m.contains(words),
                _ => false,
            };
            assert!(ok, "{what}: {review:?} should {expected} saying {words:?}");
        }
        // Who asks and for which subject is checked before any name.
        let n1 = csr("system:node:n1", &["system:nodes"], &["n1"], &[]);
        assert!(matches!(
            review_kubelet_serving(&n1, "system:node:n2", &groups, &usages, &configured, &others_of("n2")),
            Review::Deny(m) if m.contains("must be the requester")
        ));
        assert!(matches!(
            review_kubelet_serving(
                &n1,
                "alice",
                &s(&["devs"]),
                &usages,
                &configured,
                &others_of("n1")
            ),
            Review::Leave(_)
        ));
        assert!(matches!(
            review_kubelet_serving(&n1, "system:node:n1", &groups, &s(&["client auth"]), &configured, &others_of("n1")),
            Review::Deny(m) if m.contains("server auth")
        ));
        assert!(
            kubelet_serving::DnsPattern::parse("({node}").is_err_and(|e| e
                .to_string()
                .contains("\"({node}\" is not a regular expression"))
        );
    }

    #[test]
    fn templates_and_lifetimes_follow_the_request_within_policy() {
        let c = csr("robot", &["bots"], &["robot.example"], &[]);
        let t = template(
            &c,
            &s(&["digital signature", "key encipherment", "client auth"]),
            chrono::Duration::hours(1),
        )
        .expect("template");
        assert_eq!(
            t.usages,
            [KeyUsage::DigitalSignature, KeyUsage::ClientAuth]
                .into_iter()
                .collect(),
            "no keyEncipherment for EC keys"
        );
        assert!(template(&c, &s(&["code signing"]), chrono::Duration::hours(1)).is_err());
        // A CSR's names pass the checks a ClusterCertificate's do: no
        // partial wildcard (some clients match kube*.default.svc against
        // kubernetes.default.svc), no upper case, no trailing dot.
        for bad in ["kube*.default.svc", "Web.example", "web.example."] {
            let c = csr("robot", &[], &[bad], &[]);
            let got = template(
                &c,
                &s(&["digital signature", "server auth"]),
                chrono::Duration::hours(1),
            );
            assert!(
                got.as_ref()
                    .is_err_and(|m| m.to_string().contains("DNS name")),
                "{bad}: {got:?}"
            );
        }
        let max = chrono::Duration::hours(24);
        assert_eq!(lifetime(Some(3600), max), chrono::Duration::hours(1));
        assert_eq!(lifetime(Some(60), max), chrono::Duration::minutes(10));
        assert_eq!(lifetime(Some(i32::MAX), max), max);
        assert_eq!(lifetime(None, max), max);
    }
}
