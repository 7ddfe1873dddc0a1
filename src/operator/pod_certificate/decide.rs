//! What to do with one PodCertificateRequest, decided from what is
//! observed of it. Pure: where the decision needs what only the API server
//! has (which CertificatePolicies the pod's ServiceAccount may use, the
//! CA's key), it asks a `Question`; the pass answers and decides again.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use k8s_openapi::api::certificates::v1beta1::PodCertificateRequest;

use crate::api::{CertificateAuthority, CertificatePolicy, KeyAlgorithm};
use crate::core::csr::SIGNER_PREFIX;
use crate::core::pod_certificate::{self, KeyError, MIN_LIFETIME, PodIdentity};
use crate::operator::reason::Reason;
use crate::pki::{LeafTemplate, POD_BACKDATE};

/// How long a request waits for its CA to become Ready before it is
/// Failed (`CANotReady`): a CA being set up is ready in seconds, and a
/// kubelet waiting on a CA that stays broken is told why, then asks again.
pub const CA_WAIT_LIMIT: chrono::Duration = chrono::Duration::minutes(5);

/// What the pass knows when it decides.
pub struct Observed<'a> {
    pub request: &'a PodCertificateRequest,
    /// The CA of the request's signer, as the store holds it.
    pub ca: Option<&'a CertificateAuthority>,
    /// The request's public key and its type.
    pub key: &'a Result<(Vec<u8>, KeyAlgorithm), KeyError>,
    /// Every CertificatePolicy, as the store holds them.
    pub policies: &'a [Arc<CertificatePolicy>],
    pub api_server_ips: &'a [IpAddr],
    pub answers: &'a Answers,
    pub now: DateTime<Utc>,
}

/// What the API server answered to the questions asked so far.
#[derive(Default)]
pub struct Answers {
    /// The governing policies the pod's ServiceAccount may `use`.
    pub usable_policies: Option<BTreeSet<String>>,
    /// Whether the CA's key signs now, and what of it the leaf needs.
    pub signing: Option<Option<SigningKey>>,
}

/// What of the CA's signing key the decision reads.
#[derive(Clone, Debug, PartialEq)]
pub struct SigningKey {
    pub not_after: DateTime<Utc>,
    pub crl_url: Option<String>,
}

/// What the decision needs to know next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Question {
    /// Which of the CA's governing policies may the pod's ServiceAccount use?
    UsablePolicies { ca: String },
    /// Can the CA sign now?
    SigningKey { ca: String },
}

/// The one thing to do with a request.
#[derive(Debug, PartialEq)]
pub enum Decision {
    /// Not certop's (another signer, or a CA that did not opt in), or
    /// finished: nothing, ever.
    Nothing,
    Ask(Question),
    /// The request will never be signed as it is: `Denied`.
    Deny {
        reason: Reason,
        message: String,
    },
    /// certop cannot sign it: `Failed`.
    Fail {
        reason: Reason,
        message: String,
    },
    /// The CA is not Ready yet: look again soon.
    WaitForCa,
    /// Sign `template` for the public key `spki` (DER) with the CA's key.
    Issue {
        ca: String,
        template: Box<LeafTemplate>,
        spki: Vec<u8>,
    },
}

/// The CA named by a signer `certop.dev/<ca>`, if it is one of certop's.
pub fn signer_ca(signer: &str) -> Option<&str> {
    signer.strip_prefix(SIGNER_PREFIX)
}

/// Whether the request has its answer: a chain or a terminal condition.
fn finished(request: &PodCertificateRequest) -> bool {
    request.status.as_ref().is_some_and(|s| {
        s.certificate_chain.is_some()
            || s.conditions.iter().flatten().any(|c| {
                c.status == "True" && matches!(c.type_.as_str(), "Issued" | "Denied" | "Failed")
            })
    })
}

/// The pod's identity, as kube-apiserver verified it.
pub fn identity(request: &PodCertificateRequest) -> PodIdentity<'_> {
    PodIdentity {
        namespace: request.metadata.namespace.as_deref().unwrap_or_default(),
        service_account: &request.spec.service_account_name,
        pod_name: &request.spec.pod_name,
        pod_uid: &request.spec.pod_uid,
        node_name: &request.spec.node_name,
    }
}

pub fn decide(o: &Observed) -> Decision {
    let request = o.request;
    let Some(ca_name) = signer_ca(&request.spec.signer_name) else {
        return Decision::Nothing;
    };
    // A CA that did not opt in (or does not exist) leaves the request to
    // whoever else may sign for that name.
    let Some(ca) = o.ca.filter(|ca| ca.spec.pod_certificates.is_some()) else {
        return Decision::Nothing;
    };
    if finished(request) {
        return Decision::Nothing;
    }
    let settings = match ca.settings().map(|s| s.pod_certificates) {
        Ok(Some(settings)) if crate::operator::certificate_authority::is_ready(ca) => settings,
        _ => return wait_for_ca(o, ca_name, "is not Ready"),
    };
    let deny = |reason, message: String| Decision::Deny { reason, message };
    let (spki, key_algorithm) = match o.key {
        Ok(key) => key.clone(),
        Err(e @ KeyError::Unsupported(_)) => {
            return deny(Reason::UnsupportedKeyType, e.to_string());
        }
        Err(e) => {
            return Decision::Fail {
                reason: Reason::BadRequest,
                message: e.to_string(),
            };
        }
    };
    let identity = identity(request);
    let dns_names = match pod_certificate::annotated_dns_names(
        request.spec.unverified_user_annotations.as_ref(),
        &settings,
        ca_name,
    ) {
        Ok(names) => names,
        Err(e) => return deny(Reason::InvalidUnverifiedUserAnnotations, e.to_string()),
    };
    let lifetime = pod_certificate::lifetime(request.spec.max_expiration_seconds, &settings);
    let template = pod_certificate::template(
        &identity,
        &settings,
        dns_names,
        key_algorithm,
        lifetime,
        None,
    );
    let Some(usable) = &o.answers.usable_policies else {
        return Decision::Ask(Question::UsablePolicies {
            ca: ca_name.to_string(),
        });
    };
    // The same evaluation as a CSR's, for the pod's ServiceAccount.
    let mut template = match crate::core::policy::authorize_signing_request(
        crate::core::policy::Authority {
            name: ca_name,
            policy: ca.spec.policy.as_ref(),
            require_policy: ca.spec.require_policy.unwrap_or(false),
            api_server_ips: o.api_server_ips,
        },
        o.policies,
        usable,
        &identity.service_account_user(),
        &template,
    ) {
        Ok(t) => t,
        Err(e) => return deny(Reason::PolicyViolation, e.to_string()),
    };
    // The policies capped the whole span; a span under the API's shortest
    // is refused, not lengthened by the backdate.
    if template.lifetime < MIN_LIFETIME {
        return deny(
            Reason::PolicyViolation,
            format!(
                "the CA's policies allow at most {}s, shorter than the 1h kube-apiserver requires of a pod certificate: raise the policy's maxDuration",
                template.lifetime.num_seconds()
            ),
        );
    }
    template.lifetime = pod_certificate::signing_lifetime(template.lifetime);
    let signing = match &o.answers.signing {
        None => {
            return Decision::Ask(Question::SigningKey {
                ca: ca_name.to_string(),
            });
        }
        Some(None) => return wait_for_ca(o, ca_name, "cannot sign (its key does not load)"),
        Some(Some(signing)) => signing,
    };
    if signing.not_after - o.now < MIN_LIFETIME + POD_BACKDATE {
        return Decision::Fail {
            reason: Reason::CANotReady,
            message: format!(
                "CertificateAuthority {ca_name} expires at {}, too soon for a pod certificate of at least 1h: rotate it (kubectl certop rotate-ca {ca_name})",
                signing.not_after.to_rfc3339()
            ),
        };
    }
    template.crl_distribution_point = signing.crl_url.clone();
    Decision::Issue {
        ca: ca_name.to_string(),
        template: Box::new(template),
        spki,
    }
}

/// A CA that cannot sign yet: wait, or after `CA_WAIT_LIMIT` fail with its reason.
fn wait_for_ca(o: &Observed, ca_name: &str, why: &str) -> Decision {
    let created = o.request.metadata.creation_timestamp.as_ref().map(|t| t.0);
    let waited = created.map_or(chrono::Duration::zero(), |t| {
        o.now - crate::operator::conditions::from_timestamp(t)
    });
    if waited < CA_WAIT_LIMIT {
        return Decision::WaitForCa;
    }
    let said =
        o.ca.and_then(|ca| ca.status.as_ref())
            .and_then(|s| {
                crate::operator::conditions::find(&s.conditions, crate::operator::conditions::READY)
            })
            .map(|c| format!(": {}", c.message))
            .unwrap_or_default();
    Decision::Fail {
        reason: Reason::CANotReady,
        message: format!(
            "CertificateAuthority {ca_name} {why} after {}s{said}; fix the CA, the kubelet asks again",
            waited.num_seconds()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::pod_certificate::public_key;
    use serde_json::json;

    fn ca(spec: serde_json::Value, ready: bool) -> CertificateAuthority {
        let mut full = json!({"subject": {"commonName": "ca"}});
        if let (Some(f), Some(e)) = (full.as_object_mut(), spec.as_object()) {
            f.extend(e.clone());
        }
        serde_json::from_value(json!({
            "apiVersion": "certop.dev/v1", "kind": "CertificateAuthority",
            "metadata": {"name": "ca"}, "spec": full,
            "status": {"conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"},
                "reason": if ready {"Ready"} else {"CASecretDeleted"}, "message": "the key Secret is gone",
                "lastTransitionTime": "2026-01-01T00:00:00Z"}]}
        }))
        .expect("ca")
    }

    fn request(signer: &str, extra: serde_json::Value) -> PodCertificateRequest {
        let mut spec = json!({"signerName": signer, "podName": "web-1", "podUID": "uid-1",
            "serviceAccountName": "web", "serviceAccountUID": "sa-uid", "nodeName": "n1", "nodeUID": "n-uid",
            "stubPKCS10Request": ""});
        if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
            s.extend(e.clone());
        }
        serde_json::from_value(json!({
            "apiVersion": "certificates.k8s.io/v1beta1", "kind": "PodCertificateRequest",
            "metadata": {"name": "r", "namespace": "shop", "creationTimestamp": "2026-06-01T00:00:00Z"},
            "spec": spec}))
        .expect("request")
    }

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-06-01T00:01:00Z")
            .expect("time")
            .to_utc()
    }

    fn p256() -> Result<(Vec<u8>, KeyAlgorithm), KeyError> {
        let key = rcgen::KeyPair::generate().expect("key");
        public_key(
            &[],
            Some(&rcgen::PublicKeyData::subject_public_key_info(&key)),
        )
    }

    fn signing() -> Option<Option<SigningKey>> {
        Some(Some(SigningKey {
            not_after: now() + chrono::Duration::days(365),
            crl_url: Some("http://certop.test/crl/ca.crl".into()),
        }))
    }

    fn answered(signing: Option<Option<SigningKey>>) -> Answers {
        Answers {
            usable_policies: Some(BTreeSet::new()),
            signing,
        }
    }

    /// The decision's kind and, for a refusal, its reason.
    fn kind(d: &Decision) -> String {
        match d {
            Decision::Nothing => "Nothing".into(),
            Decision::Ask(q) => format!("Ask {q:?}"),
            Decision::Deny { reason, .. } => format!("Deny {}", reason.as_str()),
            Decision::Fail { reason, .. } => format!("Fail {}", reason.as_str()),
            Decision::WaitForCa => "WaitForCa".into(),
            Decision::Issue { .. } => "Issue".into(),
        }
    }

    /// (case, signer, extra spec, CA, key, answers, now, decision).
    type Case<'a> = (
        &'a str,
        &'a str,
        serde_json::Value,
        Option<CertificateAuthority>,
        Result<(Vec<u8>, KeyAlgorithm), KeyError>,
        Answers,
        DateTime<Utc>,
        &'a str,
    );

    #[test]
    fn every_branch_of_a_request() {
        let opted = json!({"podCertificates": {}});
        let dns_allowed =
            json!({"podCertificates": {"allowedUnverifiedAnnotations": ["certop.dev/dns-names"]}});
        let p521 = public_key(
            &[],
            Some(&rcgen::PublicKeyData::subject_public_key_info(
                &rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P521_SHA512).expect("key"),
            )),
        );
        let rsa2048 = public_key(
            &[],
            Some(&rcgen::PublicKeyData::subject_public_key_info(
                &rcgen::KeyPair::generate_rsa_for(
                    &rcgen::PKCS_RSA_SHA256,
                    rcgen::RsaKeySize::_2048,
                )
                .expect("key"),
            )),
        );
        let later = now() + CA_WAIT_LIMIT;
        let issued = json!({});
        let cases: Vec<Case> = vec![
            (
                "another signer",
                "example.com/x",
                issued.clone(),
                Some(ca(opted.clone(), true)),
                p256(),
                answered(signing()),
                now(),
                "Nothing",
            ),
            (
                "a CA that did not opt in",
                "certop.dev/ca",
                issued.clone(),
                Some(ca(json!({}), true)),
                p256(),
                answered(signing()),
                now(),
                "Nothing",
            ),
            (
                "no such CA",
                "certop.dev/ca",
                issued.clone(),
                None,
                p256(),
                answered(signing()),
                now(),
                "Nothing",
            ),
            (
                "issued",
                "certop.dev/ca",
                issued.clone(),
                Some(ca(opted.clone(), true)),
                p256(),
                answered(signing()),
                now(),
                "Issue",
            ),
            (
                "policies not yet asked",
                "certop.dev/ca",
                issued.clone(),
                Some(ca(opted.clone(), true)),
                p256(),
                Answers::default(),
                now(),
                "Ask UsablePolicies { ca: \"ca\" }",
            ),
            (
                "key not yet asked",
                "certop.dev/ca",
                issued.clone(),
                Some(ca(opted.clone(), true)),
                p256(),
                answered(None),
                now(),
                "Ask SigningKey { ca: \"ca\" }",
            ),
            (
                "P-521",
                "certop.dev/ca",
                issued.clone(),
                Some(ca(opted.clone(), true)),
                p521,
                answered(signing()),
                now(),
                "Issue",
            ),
            (
                "RSA 2048",
                "certop.dev/ca",
                issued.clone(),
                Some(ca(opted.clone(), true)),
                rsa2048,
                answered(signing()),
                now(),
                "Deny UnsupportedKeyType",
            ),
            (
                "an annotation the CA does not allow",
                "certop.dev/ca",
                json!({"unverifiedUserAnnotations": {"certop.dev/dns-names": "web.shop.svc"}}),
                Some(ca(opted.clone(), true)),
                p256(),
                answered(signing()),
                now(),
                "Deny InvalidUnverifiedUserAnnotations",
            ),
            (
                "an annotation the CA allows",
                "certop.dev/ca",
                json!({"unverifiedUserAnnotations": {"certop.dev/dns-names": "web.shop.svc"}}),
                Some(ca(dns_allowed.clone(), true)),
                p256(),
                answered(signing()),
                now(),
                "Issue",
            ),
            (
                "a name the CA's policy refuses",
                "certop.dev/ca",
                json!({"unverifiedUserAnnotations": {"certop.dev/dns-names": "evil.example.com"}}),
                Some(ca(
                    json!({"podCertificates": {"allowedUnverifiedAnnotations": ["certop.dev/dns-names"]}, "policy": {"allowedDNSNames": [".svc"]}}),
                    true,
                )),
                p256(),
                answered(signing()),
                now(),
                "Deny PolicyViolation",
            ),
            (
                "requirePolicy and no policy",
                "certop.dev/ca",
                issued.clone(),
                Some(ca(
                    json!({"podCertificates": {}, "requirePolicy": true}),
                    true,
                )),
                p256(),
                answered(signing()),
                now(),
                "Deny PolicyViolation",
            ),
            (
                "a policy shorter than the API's shortest",
                "certop.dev/ca",
                issued.clone(),
                Some(ca(
                    json!({"podCertificates": {}, "policy": {"maxDuration": "30m"}}),
                    true,
                )),
                p256(),
                answered(signing()),
                now(),
                "Deny PolicyViolation",
            ),
            (
                "CA not Ready, just asked",
                "certop.dev/ca",
                issued.clone(),
                Some(ca(opted.clone(), false)),
                p256(),
                answered(signing()),
                now(),
                "WaitForCa",
            ),
            (
                "CA not Ready past the wait",
                "certop.dev/ca",
                issued.clone(),
                Some(ca(opted.clone(), false)),
                p256(),
                answered(signing()),
                later,
                "Fail CANotReady",
            ),
            (
                "key does not load",
                "certop.dev/ca",
                issued.clone(),
                Some(ca(opted.clone(), true)),
                p256(),
                answered(Some(None)),
                now(),
                "WaitForCa",
            ),
            (
                "CA expires within the hour",
                "certop.dev/ca",
                issued.clone(),
                Some(ca(opted.clone(), true)),
                p256(),
                answered(Some(Some(SigningKey {
                    not_after: now() + chrono::Duration::minutes(50),
                    crl_url: None,
                }))),
                now(),
                "Fail CANotReady",
            ),
            (
                "no key at all",
                "certop.dev/ca",
                issued.clone(),
                Some(ca(opted.clone(), true)),
                Err(KeyError::Missing),
                answered(signing()),
                now(),
                "Fail BadRequest",
            ),
        ];
        for (case, signer, extra, ca, key, answers, now, want) in cases {
            let request = request(signer, extra);
            let d = decide(&Observed {
                request: &request,
                ca: ca.as_ref(),
                key: &key,
                policies: &[],
                api_server_ips: &[],
                answers: &answers,
                now,
            });
            assert_eq!(kind(&d), want, "{case}: {d:?}");
        }
    }

    /// The certificate's whole span (notAfter - notBefore, the lifetime
    /// kube-apiserver and the docs speak of) is within every maxDuration
    /// of the CA's policies: the backdate counts, it is not added on top.
    #[test]
    fn the_span_handed_out_never_passes_the_policys_max_duration() {
        let m = chrono::Duration::minutes;
        for (policy_max, want) in [("90m", Some(m(90))), ("59m", None), ("60m", Some(m(60)))] {
            let r = request("certop.dev/ca", json!({}));
            let ca = ca(
                json!({"podCertificates": {}, "policy": {"maxDuration": policy_max}}),
                true,
            );
            let d = decide(&Observed {
                request: &r,
                ca: Some(&ca),
                key: &p256(),
                policies: &[],
                api_server_ips: &[],
                answers: &answered(signing()),
                now: now(),
            });
            match (d, want) {
                (Decision::Issue { template, .. }, Some(span)) => {
                    assert_eq!(template.lifetime + POD_BACKDATE, span, "{policy_max}")
                }
                (Decision::Deny { reason, .. }, None) => {
                    assert_eq!(reason, Reason::PolicyViolation, "{policy_max}")
                }
                (d, want) => panic!("{policy_max}: {d:?}, want a span of {want:?}"),
            }
        }
    }

    #[test]
    fn a_finished_request_is_never_decided_again() {
        for (type_, status) in [("Issued", "True"), ("Denied", "True"), ("Failed", "True")] {
            let mut r = request("certop.dev/ca", json!({}));
            r.status = Some(
                serde_json::from_value(json!({"conditions": [{"type": type_, "status": status,
                    "reason": "X", "message": "m", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}))
                .expect("status"),
            );
            let ca = ca(json!({"podCertificates": {}}), true);
            let d = decide(&Observed {
                request: &r,
                ca: Some(&ca),
                key: &p256(),
                policies: &[],
                api_server_ips: &[],
                answers: &answered(signing()),
                now: now(),
            });
            assert_eq!(d, Decision::Nothing, "{type_}");
        }
    }

    #[test]
    fn the_issued_template_is_the_pods_identity_with_the_crl_and_the_asked_lifetime() {
        let r = request("certop.dev/ca", json!({"maxExpirationSeconds": 7200}));
        let ca = ca(
            json!({"podCertificates": {"trustDomain": "prod.example"}}),
            true,
        );
        let d = decide(&Observed {
            request: &r,
            ca: Some(&ca),
            key: &p256(),
            policies: &[],
            api_server_ips: &[],
            answers: &answered(signing()),
            now: now(),
        });
        let Decision::Issue { template, .. } = d else {
            panic!("{d:?}")
        };
        assert_eq!(
            template.uris,
            vec!["spiffe://prod.example/ns/shop/sa/web".to_string()]
        );
        assert_eq!(template.lifetime + POD_BACKDATE, chrono::Duration::hours(2));
        assert_eq!(
            template.crl_distribution_point.as_deref(),
            Some("http://certop.test/crl/ca.crl")
        );
    }
}
