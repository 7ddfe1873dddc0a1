//! Who may get which identity. A CA signs a request only if the rules that
//! apply to it allow every identity field (common name, organizations, DNS
//! names, IPs, URIs, usages, key algorithm, lifetime, profile):
//!
//! - a CA that CertificatePolicies govern (their `spec.authorities` name
//!   it) signs only what one of them allows, and only for a requester who
//!   may `use` that policy: a ClusterCertificate names its policy in
//!   `spec.policyRef`, which the admission guard lets only such a user set;
//!   a CSR's requester (`spec.username`/`groups`) is asked about with a
//!   SubjectAccessReview for each governing policy;
//! - a CA's own `spec.policy`, if set, bounds every request as well;
//! - a CA nothing governs signs anything but privileged identities.
//!
//! ClusterCertificates and CSRs go through this one evaluation. Pure: the
//! controllers gather the policies, the guard's state and the access
//! reviews, and carry the answer out.

pub mod pattern;
pub mod privileged;
mod rules;
#[cfg(test)]
mod tests;

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;

pub use rules::{Field, InvalidPolicy, Refusal, Request, Rules, Source};

use crate::api::{CertificatePolicy, IssuancePolicy, Profile};
use crate::pki::LeafTemplate;

/// Why a request is not signed, in words that say what to change.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Denial {
    #[error("{0}")]
    Refused(Refusal),
    #[error("CertificatePolicy {0} does not exist; create it or fix spec.policyRef.name")]
    PolicyNotFound(String),
    #[error(
        "CertificatePolicy {policy} does not govern CertificateAuthority {ca} (its spec.authorities: {authorities}); name a policy that does"
    )]
    PolicyNotForAuthority {
        policy: String,
        ca: String,
        authorities: String,
    },
    #[error(
        "CertificateAuthority {ca} is governed by CertificatePolicies ({policies}): set spec.policyRef.name to one of them that you may use"
    )]
    PolicyRequired { ca: String, policies: String },
    #[error(
        "CertificateAuthority {0} signs only under a CertificatePolicy (spec.requirePolicy) and none names it: create one whose spec.authorities lists {0}"
    )]
    NoGoverningPolicy(String),
    #[error(
        "spec.policyRef is not honoured while the admission guard is not in force ({0}); apply manifests/policy-admission.yaml (ValidatingAdmissionPolicy certop-policy-use and its binding)"
    )]
    GuardNotInForce(String),
    #[error("{0}")]
    InvalidPolicy(#[from] InvalidPolicy),
    #[error("no CertificatePolicy that {requester} may use allows this request ({tried})")]
    NoUsablePolicy { requester: String, tried: String },
}

/// What a CA says about its own signing (its name, `spec.policy`, whether
/// it signs only under a CertificatePolicy), and what is privileged in the
/// cluster it signs for (the API server's Service addresses).
#[derive(Clone, Copy, Debug)]
pub struct Authority<'a> {
    pub name: &'a str,
    pub policy: Option<&'a IssuancePolicy>,
    pub require_policy: bool,
    pub api_server_ips: &'a [IpAddr],
}

impl Authority<'_> {
    fn request<'t>(&'t self, profile: Option<Profile>, template: &'t LeafTemplate) -> Request<'t> {
        Request {
            profile,
            template,
            api_server_ips: self.api_server_ips,
        }
    }
}

/// The CertificatePolicies that govern a CA, by name.
pub fn governing(policies: &[Arc<CertificatePolicy>], ca: &str) -> Vec<Arc<CertificatePolicy>> {
    let mut found: Vec<Arc<CertificatePolicy>> = policies
        .iter()
        .filter(|p| p.spec.authorities.iter().any(|a| a == ca))
        .cloned()
        .collect();
    found.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    found
}

fn names(policies: &[Arc<CertificatePolicy>]) -> String {
    let names: Vec<&str> = policies
        .iter()
        .filter_map(|p| p.metadata.name.as_deref())
        .collect();
    names.join(", ")
}

/// The CA's own `spec.policy`, evaluated first on every path: a ceiling on
/// the fields it lists, never a grant of a privileged identity (those come
/// from a CertificatePolicy, or are refused by the default rules).
fn ca_ceiling(ca: Authority, request: &Request) -> Result<(), Denial> {
    match ca.policy {
        Some(p) => Rules::of_ca_policy(ca.name, p)
            .map_err(Denial::InvalidPolicy)?
            .evaluate(request)
            .map_err(Denial::Refused),
        None => Ok(()),
    }
}

/// Whether a ClusterCertificate may be signed: `template` is what it asks
/// for (through `profile`, if any); `policy_ref` is the policy its spec
/// names; `guard` whether the admission guard that makes that name
/// trustworthy is in force (Err says what is wrong with it: the operator
/// looks at the guard, so its reasons are the operator's type).
pub fn authorize_certificate(
    ca: Authority,
    all_policies: &[Arc<CertificatePolicy>],
    policy_ref: Option<&str>,
    guard: Result<(), impl std::fmt::Display>,
    profile: Option<Profile>,
    template: &LeafTemplate,
) -> Result<(), Denial> {
    let request = &ca.request(profile, template);
    ca_ceiling(ca, request)?;
    let governing = governing(all_policies, ca.name);
    match policy_ref {
        Some(name) => {
            let policy = all_policies
                .iter()
                .find(|p| p.metadata.name.as_deref() == Some(name))
                .ok_or_else(|| Denial::PolicyNotFound(name.to_string()))?;
            if !policy.spec.authorities.iter().any(|a| a == ca.name) {
                return Err(Denial::PolicyNotForAuthority {
                    policy: name.to_string(),
                    ca: ca.name.to_string(),
                    authorities: policy.spec.authorities.join(", "),
                });
            }
            guard.map_err(|why| Denial::GuardNotInForce(why.to_string()))?;
            Rules::of_policy(policy)
                .map_err(Denial::InvalidPolicy)?
                .evaluate(request)
                .map_err(Denial::Refused)
        }
        None if !governing.is_empty() => Err(Denial::PolicyRequired {
            ca: ca.name.to_string(),
            policies: names(&governing),
        }),
        None if ca.require_policy => Err(Denial::NoGoverningPolicy(ca.name.to_string())),
        None => Rules::default_open()
            .evaluate(request)
            .map_err(Denial::Refused),
    }
}

/// The certificate a CSR may get: `template` with its lifetime capped by
/// the rules that allow it, or why none does. `usable` names the governing
/// policies the requester may `use` (SubjectAccessReviews).
pub fn authorize_signing_request(
    ca: Authority,
    all_policies: &[Arc<CertificatePolicy>],
    usable: &BTreeSet<String>,
    requester: &str,
    template: &LeafTemplate,
) -> Result<LeafTemplate, Denial> {
    let mut template = template.clone();
    let cap = |t: &mut LeafTemplate, max: Option<chrono::Duration>| {
        if let Some(max) = max {
            t.lifetime = t.lifetime.min(max);
        }
    };
    if let Some(p) = ca.policy {
        let rules = Rules::of_ca_policy(ca.name, p).map_err(Denial::InvalidPolicy)?;
        cap(&mut template, rules.max_duration());
    }
    ca_ceiling(ca, &ca.request(None, &template))?;
    let governing = governing(all_policies, ca.name);
    if governing.is_empty() {
        if ca.require_policy {
            return Err(Denial::NoGoverningPolicy(ca.name.to_string()));
        }
        Rules::default_open()
            .evaluate(&ca.request(None, &template))
            .map_err(Denial::Refused)?;
        return Ok(template);
    }
    let mut tried = Vec::new();
    for policy in &governing {
        let name = policy.metadata.name.clone().unwrap_or_default();
        if !usable.contains(&name) {
            tried.push(format!("{name}: {requester} may not use it"));
            continue;
        }
        let rules = match Rules::of_policy(policy) {
            Ok(r) => r,
            Err(e) => {
                tried.push(e.to_string());
                continue;
            }
        };
        let mut candidate = template.clone();
        cap(&mut candidate, rules.max_duration());
        match rules.evaluate(&ca.request(None, &candidate)) {
            Ok(()) => return Ok(candidate),
            Err(refusal) => tried.push(refusal.to_string()),
        }
    }
    Err(Denial::NoUsablePolicy {
        requester: requester.to_string(),
        tried: tried.join("; "),
    })
}
