//! What to do with one CertificateSigningRequest, decided from what is
//! observed of it. Pure: where a decision needs an answer only the API
//! server has (another Node's names, a SubjectAccessReview, the CA's key),
//! it asks a `Question`; the pass answers it and decides again, so every
//! branch is a row in a table test and the pass asks only what the
//! decision needs.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;

use k8s_openapi::api::certificates::v1::CertificateSigningRequest;

use super::CsrPolicy;
use crate::api::{CertificateAuthority, CertificatePolicy};
use crate::core::csr::kubelet_serving::OtherNodes;
use crate::core::csr::{
    self, CsrContent, KUBELET_CLIENT_SIGNER, KUBELET_SERVING_SIGNER, RequestError, Review,
    SIGNER_PREFIX,
};
use crate::operator::reason::Reason;
use crate::pki::LeafTemplate;

/// What the pass knows when it decides.
pub struct Observed<'a> {
    pub csr: &'a CertificateSigningRequest,
    /// `spec.request`, parsed and signature-checked.
    pub content: &'a Result<CsrContent, RequestError>,
    pub policy: &'a CsrPolicy,
    /// The CA that signs for the CSR's signer, as the store holds it.
    pub ca: Option<&'a CertificateAuthority>,
    /// Every CertificatePolicy, as the store holds them.
    pub policies: &'a [Arc<CertificatePolicy>],
    pub api_server_ips: &'a [IpAddr],
    pub answers: &'a Answers,
}

/// What the API server answered to the questions asked so far.
#[derive(Default)]
pub struct Answers {
    pub other_nodes: Option<OtherNodes>,
    /// The first of the asked subresources the requester may create.
    pub allowed_subresource: Option<Option<&'static str>>,
    /// The governing policies the requester may `use`.
    pub usable_policies: Option<BTreeSet<String>>,
    /// Whether the CA can sign now (its key loads and is the bound one).
    pub signing_key_ready: Option<bool>,
}

/// What the decision needs to know next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Question {
    /// The names and addresses of every Node but this one.
    OtherNodes { node: String },
    /// May the requester create any of these CSR subresources?
    AccessCheck(Vec<&'static str>),
    /// Which of the CA's governing policies may the requester use?
    UsablePolicies { ca: String },
    /// Can the CA sign now?
    SigningKey { ca: String },
}

/// The one thing to do with a CSR.
#[derive(Debug, PartialEq)]
pub enum Decision {
    /// Not certop's signer, not yet approved, or finished: nothing until it changes.
    Nothing,
    /// Answer this, then decide again.
    Ask(Question),
    /// Approve (or deny) through the approval subresource.
    Approve(String),
    Deny(String),
    /// Not recognisably a node's: left for another approver, with no write.
    Leave(String),
    /// Left for a person, who is told why in an Event.
    LeaveForPerson(String),
    /// Mark it Failed for good.
    Fail {
        reason: Reason,
        message: String,
    },
    /// The CA cannot sign yet (it may be getting ready): look again soon.
    WaitForCa,
    /// Sign this template with the CA's signing key.
    Sign {
        ca: String,
        template: LeafTemplate,
    },
}

fn has_condition(csr: &CertificateSigningRequest, type_: &str) -> bool {
    csr.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == type_ && c.status == "True"))
}

/// The CA that signs for this signer name, if certop serves it.
pub fn signer_ca<'a>(signer: &'a str, policy: &'a CsrPolicy) -> Option<&'a str> {
    match signer.strip_prefix(SIGNER_PREFIX) {
        Some(ca) => Some(ca),
        None if signer == KUBELET_CLIENT_SIGNER || signer == KUBELET_SERVING_SIGNER => {
            policy.kubelet_ca.as_deref()
        }
        None => None,
    }
}

pub fn decide(o: &Observed) -> Decision {
    let csr = o.csr;
    let signer = csr.spec.signer_name.as_str();
    let Some(ca_name) = signer_ca(signer, o.policy) else {
        return Decision::Nothing;
    };
    let finished = csr.status.as_ref().is_some_and(|s| s.certificate.is_some())
        || has_condition(csr, "Denied")
        || has_condition(csr, "Failed");
    if finished {
        return Decision::Nothing;
    }
    if has_condition(csr, "Approved") {
        signing(o, ca_name)
    } else {
        approval(o)
    }
}

/// A CSR nobody approved yet: certop approves kubelet CSRs when asked to.
fn approval(o: &Observed) -> Decision {
    let csr = o.csr;
    let signer = csr.spec.signer_name.as_str();
    let kubelet = signer == KUBELET_CLIENT_SIGNER || signer == KUBELET_SERVING_SIGNER;
    if !kubelet || !o.policy.approve_kubelets {
        return Decision::Nothing;
    }
    let username = csr.spec.username.as_deref().unwrap_or_default();
    let groups = csr.spec.groups.clone().unwrap_or_default();
    let usages = csr.spec.usages.clone().unwrap_or_default();
    let review = match o.content {
        Err(e) => Review::Deny(e.to_string()),
        Ok(c) if signer == KUBELET_CLIENT_SIGNER => {
            csr::review_kubelet_client(c, username, &groups, &usages)
        }
        Ok(c) => {
            let no_others = OtherNodes::default();
            let others = match (
                username.strip_prefix("system:node:"),
                &o.answers.other_nodes,
            ) {
                (None, _) => &no_others,
                (Some(_), Some(others)) => others,
                (Some(node), None) => {
                    return Decision::Ask(Question::OtherNodes {
                        node: node.to_string(),
                    });
                }
            };
            csr::review_kubelet_serving(
                c,
                username,
                &groups,
                &usages,
                &o.policy.kubelet_serving,
                others,
            )
        }
    };
    match review {
        Review::Approve(m) => Decision::Approve(m),
        Review::Deny(m) => Decision::Deny(m),
        Review::Leave(m) => Decision::Leave(m),
        Review::Pending(m) => Decision::LeaveForPerson(format!(
            "{m}. If every name is this node's, approve it by hand: kubectl certificate approve {}",
            csr.metadata.name.as_deref().unwrap_or_default()
        )),
        Review::AccessCheck(subresources) => match o.answers.allowed_subresource {
            None => Decision::Ask(Question::AccessCheck(subresources)),
            Some(Some(sub)) => Decision::Approve(format!(
                "{username} may create certificatesigningrequests/{sub} (SubjectAccessReview)"
            )),
            Some(None) => Decision::Leave(format!(
                "{username} may create none of certificatesigningrequests/{}; left for another approver",
                subresources.join(", ")
            )),
        },
    }
}

/// An approved CSR: sign it, or say for good why not.
fn signing(o: &Observed, ca_name: &str) -> Decision {
    let csr = o.csr;
    let signer = csr.spec.signer_name.as_str();
    let fail = |reason, message: String| Decision::Fail { reason, message };
    let content = match o.content {
        Ok(c) => c,
        Err(e) => return fail(Reason::BadRequest, e.to_string()),
    };
    let usages = csr.spec.usages.clone().unwrap_or_default();
    if let Err(e) = csr::signer_rules(signer, content, &usages) {
        return fail(Reason::SignerRules, e.to_string());
    }
    let Some(ca) = o.ca else {
        return fail(
            Reason::SignerUnknown,
            format!("CertificateAuthority {ca_name} does not exist"),
        );
    };
    // As the certificate controller: only a CA its controller made Ready
    // signs (one refused for a key another CA holds never does).
    if !crate::operator::certificate_authority::is_ready(ca) {
        return Decision::WaitForCa;
    }
    let lifetime = csr::lifetime(csr.spec.expiration_seconds, o.policy.max_lifetime);
    let template = match csr::template(content, &usages, lifetime) {
        Ok(t) => t,
        Err(e) => return fail(Reason::UnsupportedRequest, e.to_string()),
    };
    // certop's own signers obey the same policies as ClusterCertificates,
    // for the CSR's requester; the kubelet signers have their own rules (a
    // node's identity, names checked against its Node).
    let template = if signer.starts_with(SIGNER_PREFIX) {
        let Some(usable) = &o.answers.usable_policies else {
            return Decision::Ask(Question::UsablePolicies {
                ca: ca_name.to_string(),
            });
        };
        match crate::core::policy::authorize_signing_request(
            crate::core::policy::Authority {
                name: ca_name,
                policy: ca.spec.policy.as_ref(),
                require_policy: ca.spec.require_policy.unwrap_or(false),
                api_server_ips: o.api_server_ips,
            },
            o.policies,
            usable,
            csr.spec.username.as_deref().unwrap_or_default(),
            &template,
        ) {
            Ok(t) => t,
            Err(e) => return fail(Reason::PolicyViolation, e.to_string()),
        }
    } else {
        template
    };
    match o.answers.signing_key_ready {
        None => Decision::Ask(Question::SigningKey {
            ca: ca_name.to_string(),
        }),
        Some(false) => Decision::WaitForCa,
        Some(true) => Decision::Sign {
            ca: ca_name.to_string(),
            template,
        },
    }
}
