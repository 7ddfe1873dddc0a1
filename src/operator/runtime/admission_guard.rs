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
/// in every version of the API (v1alpha1 today, v1 later), through the
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

/// Ok if the policy and binding, as the API server holds them, enforce the
/// shipped rule on every ClusterCertificate; else what is wrong. Pure.
pub fn verify(
    policy: &ValidatingAdmissionPolicy,
    binding: &ValidatingAdmissionPolicyBinding,
) -> Result<(), String> {
    let spec = policy.spec.as_ref().ok_or("the policy has no spec")?;
    if spec.failure_policy.as_deref().is_some_and(|f| f != "Fail") {
        return Err("the policy's failurePolicy is not Fail".into());
    }
    if spec
        .match_conditions
        .as_ref()
        .is_some_and(|c| !c.is_empty())
    {
        return Err("the policy has matchConditions, which may skip requests".into());
    }
    let constraints = spec
        .match_constraints
        .as_ref()
        .ok_or("the policy has no matchConstraints")?;
    if !leaves_nothing_out(constraints) || !constraints.resource_rules.iter().flatten().any(covers)
    {
        return Err(
            "the policy's matchConstraints do not cover every CREATE and UPDATE of clustercertificates.certop.dev"
                .into(),
        );
    }
    let expected = words(USE_EXPRESSION);
    if !spec
        .validations
        .iter()
        .flatten()
        .any(|v| words(&v.expression) == expected)
    {
        return Err("the policy's validations do not hold certop's rule".into());
    }
    let b = &binding.spec;
    if b.policy_name != NAME {
        return Err(format!(
            "the binding names policy {:?}, not {NAME}",
            b.policy_name
        ));
    }
    if !b.validation_actions.iter().any(|a| a == "Deny") {
        return Err("the binding's validationActions do not include Deny".into());
    }
    if b.param_ref.is_some() {
        return Err("the binding has a paramRef".into());
    }
    if let Some(m) = &b.match_resources {
        let narrows = m.resource_rules.as_ref().is_some_and(|r| !r.is_empty())
            && !m.resource_rules.iter().flatten().any(covers);
        if narrows || !leaves_nothing_out(m) {
            return Err("the binding's matchResources leave ClusterCertificates out".into());
        }
    }
    Ok(())
}

/// The guard as last seen: Ok, or why `policyRef` is not honoured.
#[derive(Clone)]
pub struct GuardState(Arc<RwLock<Result<(), String>>>);

impl Default for GuardState {
    fn default() -> Self {
        GuardState(Arc::new(RwLock::new(Err("not looked at yet".into()))))
    }
}

impl GuardState {
    pub fn get(&self) -> Result<(), String> {
        self.0
            .read()
            .map_or_else(|_| Err("unknown".into()), |s| s.clone())
    }

    fn set(&self, state: Result<(), String>) -> bool {
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

async fn look(client: &Client) -> Result<(), String> {
    let policies: Api<ValidatingAdmissionPolicy> = Api::all(client.clone());
    let bindings: Api<ValidatingAdmissionPolicyBinding> = Api::all(client.clone());
    let read = |what: &str, e: kube::Error| format!("cannot read {what} {NAME}: {e}");
    let policy = policies
        .get_opt(NAME)
        .await
        .map_err(|e| read("ValidatingAdmissionPolicy", e))?
        .ok_or(format!("ValidatingAdmissionPolicy {NAME} does not exist"))?;
    let binding = bindings
        .get_opt(NAME)
        .await
        .map_err(|e| read("ValidatingAdmissionPolicyBinding", e))?
        .ok_or(format!(
            "ValidatingAdmissionPolicyBinding {NAME} does not exist"
        ))?;
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
async fn probe(client: &Client) -> Result<(), String> {
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
        Ok(_) => Err(format!(
            "the API server admitted (dry run) a ClusterCertificate naming CertificatePolicy {PROBE_POLICY}, which certop may not use: nothing enforces the guard (is kube-apiserver's ValidatingAdmissionPolicy admission plugin disabled?)"
        )),
        Err(e) => Err(format!(
            "a dry-run ClusterCertificate naming a policy certop may not use was not refused by the guard: {e}"
        )),
    }
}

/// Looks at the guard now and every 15 s, until the task is dropped.
pub async fn follow(client: Client, state: GuardState) {
    loop {
        let seen = look(&client).await;
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
        tokio::time::sleep(RECHECK).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The guard as shipped (manifests/policy-admission.yaml is rendered from
    /// this chart template).
    const SHIPPED: &str = include_str!("../../../charts/certop/templates/policy-admission.yaml");

    /// The shipped guard, parsed: the policy and its binding.
    fn shipped() -> Result<(ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding), String> {
        let mut policy = None;
        let mut binding = None;
        for doc in SHIPPED.split("\n---") {
            let value: serde_json::Value = match serde_saphyr::from_str(doc) {
                Ok(v) => v,
                Err(_) => continue,
            };
            match value.get("kind").and_then(|k| k.as_str()) {
                Some("ValidatingAdmissionPolicy") => {
                    policy = Some(serde_json::from_value(value).map_err(|e| e.to_string())?)
                }
                Some("ValidatingAdmissionPolicyBinding") => {
                    binding = Some(serde_json::from_value(value).map_err(|e| e.to_string())?)
                }
                _ => {}
            }
        }
        Ok((
            policy.ok_or("no ValidatingAdmissionPolicy in the shipped guard")?,
            binding.ok_or("no ValidatingAdmissionPolicyBinding in the shipped guard")?,
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
                Box::new(|p, _| rule(p).api_versions = Some(vec!["v1alpha1".into()])),
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
                got.as_ref().is_err_and(|m| m.contains(words)),
                "{words}: {got:?}"
            );
        }
    }
}
