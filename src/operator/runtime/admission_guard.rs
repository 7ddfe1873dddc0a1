//! The admission guard that makes `spec.policyRef` trustworthy: a
//! ValidatingAdmissionPolicy by which the API server lets a user create or
//! change a ClusterCertificate that names a CertificatePolicy only if RBAC
//! grants that user `use` on it. The API server knows the user at
//! admission; certop never does. So certop honours `policyRef` only while
//! it sees the guard in force, as shipped, and says so otherwise.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use k8s_openapi::api::admissionregistration::v1::{
    MatchResources, NamedRuleWithOperations, ValidatingAdmissionPolicy,
    ValidatingAdmissionPolicyBinding,
};
use kube::api::PostParams;
use kube::{Api, Client};
use tracing::{info, warn};

use crate::api::{ClusterCertificate, ClusterCertificateSpec, IssuerRef, PolicyRef};

/// The name of the ValidatingAdmissionPolicy and of its binding.
pub const NAME: &str = "certop-policy-use";

/// The CEL rule: a spec that names a policy is admitted only for a user
/// who may `use` it, unless an update leaves the spec as it was (so the
/// finalizer and label edits of others pass).
pub const USE_EXPRESSION: &str = "!has(object.spec.policyRef) || (request.operation == 'UPDATE' && oldObject.spec == object.spec) || authorizer.group('certop.dev').resource('certificatepolicies').name(object.spec.policyRef.name).check('use').allowed()";

/// How often the guard is looked at again.
const RECHECK: Duration = Duration::from_secs(15);

fn words(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn lists(v: &Option<Vec<String>>, want: &str) -> bool {
    v.as_ref()
        .is_some_and(|v| v.iter().any(|x| x == want || x == "*"))
}

/// Whether a rule sends every create and update of a ClusterCertificate,
/// in every version of the API (v1 and the deprecated v1alpha1), through the
/// policy.
fn covers(rule: &NamedRuleWithOperations) -> bool {
    lists(&rule.api_groups, "certop.dev")
        && rule
            .api_versions
            .as_ref()
            .is_some_and(|v| v.iter().any(|x| x == "*"))
        && rule
            .scope
            .as_deref()
            .is_none_or(|s| s == "*" || s == "Cluster")
        && lists(&rule.resources, "clustercertificates")
        && lists(&rule.operations, "CREATE")
        && lists(&rule.operations, "UPDATE")
        && rule.resource_names.as_ref().is_none_or(Vec::is_empty)
}

/// Whether match resources leave no ClusterCertificate out (a request in
/// another version is matched through its equivalent).
fn leaves_nothing_out(m: &MatchResources) -> bool {
    if m.match_policy.as_deref().is_some_and(|p| p != "Equivalent") {
        return false;
    }
    let no_selector = m.object_selector.as_ref().is_none_or(|s| {
        s.match_labels.as_ref().is_none_or(|l| l.is_empty())
            && s.match_expressions.as_ref().is_none_or(Vec::is_empty)
    });
    no_selector && m.exclude_resource_rules.as_ref().is_none_or(Vec::is_empty)
}

/// How the policy or binding the API server holds differs from the shipped
/// guard so that it may let a ClusterCertificate through: re-apply
/// manifests/policy-admission.yaml to restore it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Weakening {
    #[error("the policy has no spec")]
    NoSpec,
    #[error("the policy's failurePolicy is not Fail")]
    FailurePolicy,
    #[error("the policy has matchConditions, which may skip requests")]
    MatchConditions,
    #[error("the policy has no matchConstraints")]
    NoMatchConstraints,
    #[error(
        "the policy's matchConstraints do not cover every CREATE and UPDATE of clustercertificates.certop.dev"
    )]
    MatchConstraints,
    #[error("the policy's validations do not hold certop's rule")]
    Validations,
    #[error("the binding names policy {0:?}, not {NAME}")]
    BindingPolicyName(String),
    #[error("the binding's validationActions do not include Deny")]
    NoDeny,
    #[error("the binding has a paramRef")]
    ParamRef,
    #[error("the binding's matchResources leave ClusterCertificates out")]
    BindingLeavesOut,
}

/// Why `spec.policyRef` is not honoured: the guard is not in force, or
/// certop could not see that it is.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GuardFault {
    #[error("not looked at yet")]
    NotLookedAt,
    #[error("unknown: the guard's last state could not be read")]
    StateUnreadable,
    #[error("cannot read {kind} {NAME}: {message}")]
    Unreadable { kind: &'static str, message: String },
    #[error("{kind} {NAME} does not exist")]
    Missing { kind: &'static str },
    #[error("{0}")]
    Weakened(#[from] Weakening),
    #[error(
        "the API server admitted (dry run) a ClusterCertificate naming CertificatePolicy {PROBE_POLICY}, which certop may not use: nothing enforces the guard (is kube-apiserver's ValidatingAdmissionPolicy admission plugin disabled?)"
    )]
    NotEnforced,
    #[error(
        "a dry-run ClusterCertificate naming a policy certop may not use was not refused by the guard: {0}"
    )]
    ProbeNotRefused(String),
}

/// Ok if the policy and binding, as the API server holds them, enforce the
/// shipped rule on every ClusterCertificate; else what is wrong. Pure.
pub fn verify(
    policy: &ValidatingAdmissionPolicy,
    binding: &ValidatingAdmissionPolicyBinding,
) -> Result<(), Weakening> {
    let spec = policy.spec.as_ref().ok_or(Weakening::NoSpec)?;
    if spec.failure_policy.as_deref().is_some_and(|f| f != "Fail") {
        return Err(Weakening::FailurePolicy);
    }
    if spec
        .match_conditions
        .as_ref()
        .is_some_and(|c| !c.is_empty())
    {
        return Err(Weakening::MatchConditions);
    }
    let constraints = spec
        .match_constraints
        .as_ref()
        .ok_or(Weakening::NoMatchConstraints)?;
    if !leaves_nothing_out(constraints) || !constraints.resource_rules.iter().flatten().any(covers)
    {
        return Err(Weakening::MatchConstraints);
    }
    let expected = words(USE_EXPRESSION);
    if !spec
        .validations
        .iter()
        .flatten()
        .any(|v| words(&v.expression) == expected)
    {
        return Err(Weakening::Validations);
    }
    let b = &binding.spec;
    if b.policy_name != NAME {
        return Err(Weakening::BindingPolicyName(b.policy_name.clone()));
    }
    if !b.validation_actions.iter().any(|a| a == "Deny") {
        return Err(Weakening::NoDeny);
    }
    if b.param_ref.is_some() {
        return Err(Weakening::ParamRef);
    }
    if let Some(m) = &b.match_resources {
        let narrows = m.resource_rules.as_ref().is_some_and(|r| !r.is_empty())
            && !m.resource_rules.iter().flatten().any(covers);
        if narrows || !leaves_nothing_out(m) {
            return Err(Weakening::BindingLeavesOut);
        }
    }
    Ok(())
}

/// The guard as last seen: Ok, or why `policyRef` is not honoured.
#[derive(Clone)]
pub struct GuardState(Arc<RwLock<Result<(), GuardFault>>>);

impl Default for GuardState {
    fn default() -> Self {
        GuardState(Arc::new(RwLock::new(Err(GuardFault::NotLookedAt))))
    }
}

impl GuardState {
    pub fn get(&self) -> Result<(), GuardFault> {
        self.0
            .read()
            .map_or(Err(GuardFault::StateUnreadable), |s| s.clone())
    }

    fn set(&self, state: Result<(), GuardFault>) -> bool {
        match self.0.write() {
            Ok(mut s) => {
                let changed = *s != state;
                *s = state;
                changed
            }
            Err(_) => false,
        }
    }
}

async fn look(client: &Client) -> Result<(), GuardFault> {
    const POLICY: &str = "ValidatingAdmissionPolicy";
    const BINDING: &str = "ValidatingAdmissionPolicyBinding";
    let policies: Api<ValidatingAdmissionPolicy> = Api::all(client.clone());
    let bindings: Api<ValidatingAdmissionPolicyBinding> = Api::all(client.clone());
    let unreadable = |kind: &'static str| {
        move |e: kube::Error| GuardFault::Unreadable {
            kind,
            message: e.to_string(),
        }
    };
    let missing = |kind: &'static str| GuardFault::Missing { kind };
    let policy = policies
        .get_opt(NAME)
        .await
        .map_err(unreadable(POLICY))?
        .ok_or(missing(POLICY))?;
    let binding = bindings
        .get_opt(NAME)
        .await
        .map_err(unreadable(BINDING))?
        .ok_or(missing(BINDING))?;
    verify(&policy, &binding)?;
    probe(client).await
}

/// A policy nobody is meant to be granted: the probe names it.
const PROBE_POLICY: &str = "certop-guard-probe-no-such-policy";

/// The objects can be in place while nothing enforces them (the API
/// server's ValidatingAdmissionPolicy plugin disabled, the policy not yet
/// compiled): ask the API server, with a dry-run create (nothing is
/// stored) of a ClusterCertificate naming a policy certop may not use,
/// and require the guard's refusal.
async fn probe(client: &Client) -> Result<(), GuardFault> {
    let probe = ClusterCertificate::new(
        "certop-guard-probe",
        ClusterCertificateSpec {
            issuer_ref: IssuerRef {
                name: "certop-guard-probe".into(),
            },
            policy_ref: Some(PolicyRef {
                name: PROBE_POLICY.into(),
            }),
            secret_name: "certop-guard-probe".into(),
            secret_namespace: "default".into(),
            common_name: Some("certop-guard-probe".into()),
            ..Default::default()
        },
    );
    let params = PostParams {
        dry_run: true,
        field_manager: Some(crate::operator::runtime::context::FIELD_MANAGER.into()),
    };
    let refusal = format!("may not use CertificatePolicy {PROBE_POLICY}");
    match Api::<ClusterCertificate>::all(client.clone())
        .create(&params, &probe)
        .await
    {
        Err(kube::Error::Api(s)) if s.message.contains(&refusal) => Ok(()),
        Ok(_) => Err(GuardFault::NotEnforced),
        Err(e) => Err(GuardFault::ProbeNotRefused(e.to_string())),
    }
}

/// Looks at the guard once and records what it saw, saying so when that
/// changed. The operator does it before its controllers start: a
/// certificate that names a policy, decided while the guard was not yet
/// looked at, would say `Ready=False PolicyViolation` until the next look,
/// at every start (an upgrade, a restart, a new leader).
pub async fn observe(client: &Client, state: &GuardState) {
    let seen = look(client).await;
    if state.set(seen.clone()) {
        match seen {
            Ok(()) => info!(
                guard = NAME,
                "admission guard in force: spec.policyRef is honoured"
            ),
            Err(why) => {
                warn!(guard = NAME, %why, "admission guard not in force: spec.policyRef is not honoured")
            }
        }
    }
}

/// Looks at the guard every 15 s after [`observe`]'s first look, until the
/// task is dropped.
pub async fn follow(client: Client, state: GuardState) {
    loop {
        tokio::time::sleep(RECHECK).await;
        observe(&client, &state).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The guard as shipped (manifests/policy-admission.yaml is rendered from
    /// this chart template).
    const SHIPPED: &str = include_str!("../../../charts/certop/templates/policy-admission.yaml");

    /// Why the shipped guard does not parse.
    #[derive(Debug, thiserror::Error)]
    enum ShippedError {
        #[error("no {0} in the shipped guard")]
        Missing(&'static str),
        #[error(transparent)]
        Json(#[from] serde_json::Error),
    }

    /// The shipped guard, parsed: the policy and its binding.
    fn shipped()
    -> Result<(ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding), ShippedError> {
        let mut policy = None;
        let mut binding = None;
        for doc in SHIPPED.split("\n---") {
            let value: serde_json::Value = match serde_saphyr::from_str(doc) {
                Ok(v) => v,
                Err(_) => continue,
            };
            match value.get("kind").and_then(|k| k.as_str()) {
                Some("ValidatingAdmissionPolicy") => policy = Some(serde_json::from_value(value)?),
                Some("ValidatingAdmissionPolicyBinding") => {
                    binding = Some(serde_json::from_value(value)?)
                }
                _ => {}
            }
        }
        Ok((
            policy.ok_or(ShippedError::Missing("ValidatingAdmissionPolicy"))?,
            binding.ok_or(ShippedError::Missing("ValidatingAdmissionPolicyBinding"))?,
        ))
    }

    #[test]
    fn the_shipped_guard_verifies_and_each_weakening_is_named() {
        fn rule(p: &mut ValidatingAdmissionPolicy) -> &mut NamedRuleWithOperations {
            &mut p
                .spec
                .as_mut()
                .expect("s")
                .match_constraints
                .as_mut()
                .expect("m")
                .resource_rules
                .as_mut()
                .expect("r")[0]
        }
        let (policy, binding) = shipped().expect("shipped guard parses");
        assert_eq!(verify(&policy, &binding), Ok(()));
        type Edit =
            Box<dyn Fn(&mut ValidatingAdmissionPolicy, &mut ValidatingAdmissionPolicyBinding)>;
        let cases: Vec<(&str, Edit)> = vec![
            (
                "Fail",
                Box::new(|p, _| p.spec.as_mut().expect("s").failure_policy = Some("Ignore".into())),
            ),
            (
                "validations",
                Box::new(|p, _| {
                    p.spec.as_mut().expect("s").validations.as_mut().expect("v")[0].expression =
                        "true".into()
                }),
            ),
            (
                "matchConstraints",
                Box::new(|p, _| {
                    let rules = p
                        .spec
                        .as_mut()
                        .expect("s")
                        .match_constraints
                        .as_mut()
                        .expect("m")
                        .resource_rules
                        .as_mut()
                        .expect("r");
                    rules[0].operations = Some(vec!["CREATE".into()]);
                }),
            ),
            (
                "matchConditions",
                Box::new(|p, _| {
                    p.spec.as_mut().expect("s").match_conditions = Some(vec![Default::default()]);
                }),
            ),
            (
                "Deny",
                Box::new(|_, b| b.spec.validation_actions = vec!["Audit".into()]),
            ),
            (
                "matchConstraints",
                Box::new(|p, _| rule(p).scope = Some("Namespaced".into())),
            ),
            (
                "matchConstraints",
                Box::new(|p, _| rule(p).api_versions = Some(vec!["v1".into()])),
            ),
            (
                "matchConstraints",
                Box::new(|p, _| {
                    p.spec
                        .as_mut()
                        .expect("s")
                        .match_constraints
                        .as_mut()
                        .expect("m")
                        .match_policy = Some("Exact".into())
                }),
            ),
            (
                "names policy",
                Box::new(|_, b| b.spec.policy_name = "other".into()),
            ),
            (
                "leave ClusterCertificates out",
                Box::new(|_, b| {
                    b.spec.match_resources = Some(MatchResources {
                        object_selector: Some(
                            k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector {
                                match_labels: Some([("x".to_string(), "y".to_string())].into()),
                                ..Default::default()
                            },
                        ),
                        ..Default::default()
                    });
                }),
            ),
        ];
        for (words, edit) in cases {
            let (mut p, mut b) = (policy.clone(), binding.clone());
            edit(&mut p, &mut b);
            let got = verify(&p, &b);
            assert!(
                got.as_ref().is_err_and(|m| m.to_string().contains(words)),
                "{words}: {got:?}"
            );
        }
    }
}
