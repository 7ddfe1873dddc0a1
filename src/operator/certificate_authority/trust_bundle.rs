//! A CA's trust bundles: a ConfigMap with its `ca.crt` in every managed
//! namespace its selector picks, created only where no ConfigMap of that
//! name exists, updated or deleted only when certop's label and annotation
//! say it made it. And the check that the Secrets of the CA's certificates
//! carry a staged CA certificate.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use kube::api::{DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};

use crate::api::{CertificateAuthority, meta};
use crate::operator::reason::Reason;
use crate::operator::runtime::context::FIELD_MANAGER;
use crate::operator::runtime::managed_namespaces::ManagedNamespaces;
use crate::operator::{Context, Error};

fn bundle_selector(ca_name: &str) -> String {
    format!(
        "{}={},{}",
        meta::MANAGED_BY,
        meta::MANAGED_BY_VALUE,
        trust_bundle_label(ca_name)
    )
}

fn trust_bundle_label(ca_name: &str) -> String {
    format!("certop.dev/trust-bundle-{}", short_hash(ca_name))
}

/// A label key part that fits Kubernetes' 63-character limit for any CA name.
fn short_hash(s: &str) -> String {
    crate::api::object_name::digest_hex(s, 8)
}

/// Whether a ConfigMap is one of this CA's trust bundles (certop created
/// it): its label and annotation say so. Anything else is never written
/// or deleted.
pub fn is_our_bundle(cm: &kube::core::ObjectMeta, ca_name: &str) -> bool {
    let labels = cm.labels.as_ref();
    let annotations = cm.annotations.as_ref();
    labels
        .and_then(|l| l.get(meta::MANAGED_BY))
        .map(String::as_str)
        == Some(meta::MANAGED_BY_VALUE)
        && labels
            .and_then(|l| l.get(&trust_bundle_label(ca_name)))
            .is_some()
        && annotations
            .and_then(|a| a.get(meta::CERTIFICATE_AUTHORITY))
            .map(String::as_str)
            == Some(ca_name)
}

/// Where a trust bundle could not go, for the CA's status.
#[derive(Debug, Default, PartialEq)]
pub struct BundleOutcome {
    /// A ConfigMap of that name is there and certop did not create it.
    pub conflicts: Vec<String>,
    /// The selector picks them but certop does not manage them.
    pub unmanaged: Vec<String>,
}

/// Puts `ca.crt` in a ConfigMap in every managed namespace the selector
/// picks, and removes it from namespaces it no longer picks. A ConfigMap of
/// that name that certop did not create is left alone; the namespaces where
/// that happened, and the selected ones certop does not manage, are
/// returned for the CA's status.
pub async fn sync(
    ca: &CertificateAuthority,
    ctx: &Context,
    cm_name: &str,
    ca_pem: &str,
) -> Result<BundleOutcome, Error> {
    let name = ca.name_any();
    let selected: BTreeSet<String> = match &ca.spec.trust_bundle {
        None => BTreeSet::new(),
        Some(tb) => {
            let selector = label_selector_string(&tb.namespace_selector);
            let namespaces: Api<Namespace> = Api::all(ctx.client.clone());
            namespaces
                .list_metadata(&ListParams::default().labels(&selector))
                .await?
                .items
                .iter()
                .map(|n| n.name_any())
                .collect()
        }
    };
    let (wanted, unmanaged): (BTreeSet<String>, BTreeSet<String>) = selected
        .into_iter()
        .partition(|ns| ctx.managed_namespaces.contains(ns));
    let ours = our_bundles(ctx, &name).await?;
    let mut have = BTreeSet::new();
    for cm in &ours {
        let ns = cm.namespace().unwrap_or_default();
        if wanted.contains(&ns) && cm.name_any() == cm_name {
            have.insert(ns);
            continue;
        }
        let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &ns);
        match api.delete(&cm.name_any(), &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    let mut conflicts = Vec::new();
    for ns in &wanted {
        let cm = bundle(&name, ns, cm_name, ca_pem);
        let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), ns);
        if have.contains(ns) {
            api.patch(
                cm_name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&cm),
            )
            .await?;
            continue;
        }
        // Not ours: create it, which fails if anybody's is there.
        match api.create(&PostParams::default(), &cm).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 409 => conflicts.push(ns.clone()),
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(BundleOutcome {
        conflicts,
        unmanaged: unmanaged.into_iter().collect(),
    })
}

/// The trust bundle of CA `ca_name` in `namespace`, as certop writes it:
/// its label and annotation say certop made it.
fn bundle(ca_name: &str, namespace: &str, cm_name: &str, ca_pem: &str) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(cm_name.to_string()),
            namespace: Some(namespace.to_string()),
            labels: Some(BTreeMap::from([
                (meta::MANAGED_BY.into(), meta::MANAGED_BY_VALUE.into()),
                (trust_bundle_label(ca_name), "true".into()),
            ])),
            annotations: Some(BTreeMap::from([(
                meta::CERTIFICATE_AUTHORITY.into(),
                ca_name.to_string(),
            )])),
            ..Default::default()
        },
        data: Some(BTreeMap::from([("ca.crt".into(), ca_pem.to_string())])),
        ..Default::default()
    }
}

/// The trust-bundle ConfigMaps of a CA that certop created, in the
/// namespaces it manages (the only ones it may list in).
async fn our_bundles(
    ctx: &Context,
    ca_name: &str,
) -> Result<Vec<kube::core::PartialObjectMeta<ConfigMap>>, Error> {
    let mut ours = Vec::new();
    for api in ctx.managed_namespaces.apis::<ConfigMap>(&ctx.client) {
        ours.extend(
            api.list_metadata(&ListParams::default().labels(&bundle_selector(ca_name)))
                .await?
                .items
                .into_iter()
                .filter(|cm| is_our_bundle(&cm.metadata, ca_name)),
        );
    }
    Ok(ours)
}

/// The Secrets certop keeps for this CA's ClusterCertificates (in the
/// namespaces it manages; a Secret whose ClusterCertificate is gone is no
/// longer kept) whose `ca.crt` does not carry `ca_pem` yet, as
/// `namespace/name`.
pub async fn secrets_without(
    ctx: &Context,
    ca_name: &str,
    ca_pem: &str,
) -> Result<Vec<String>, Error> {
    let selector = format!("{}={}", meta::MANAGED_BY, meta::MANAGED_BY_VALUE);
    let mut missing = Vec::new();
    for api in ctx.managed_namespaces.apis::<Secret>(&ctx.client) {
        for secret in api
            .list(&ListParams::default().labels(&selector))
            .await?
            .items
        {
            let annotations = secret.annotations();
            let kept = annotations.get(meta::ISSUER).map(String::as_str) == Some(ca_name)
                && annotations
                    .get(meta::CERTIFICATE)
                    .is_some_and(|c| ctx.certificates.contains(c));
            let carries = secret
                .data
                .as_ref()
                .and_then(|d| d.get("ca.crt"))
                .is_some_and(|b| String::from_utf8_lossy(&b.0).contains(ca_pem.trim()));
            if kept && !carries {
                missing.push(format!(
                    "{}/{}",
                    secret.namespace().unwrap_or_default(),
                    secret.name_any()
                ));
            }
        }
    }
    Ok(missing)
}

/// A LabelSelector as the string form list calls take.
fn label_selector_string(
    selector: &k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector,
) -> String {
    let mut parts: Vec<String> = selector
        .match_labels
        .iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    for expr in selector.match_expressions.iter().flatten() {
        let values = expr.values.clone().unwrap_or_default().join(",");
        parts.push(match expr.operator.as_str() {
            "In" => format!("{} in ({values})", expr.key),
            "NotIn" => format!("{} notin ({values})", expr.key),
            "Exists" => expr.key.clone(),
            _ => format!("!{}", expr.key),
        });
    }
    parts.join(",")
}

/// Deletes every trust bundle certop made for the CA (it is going).
pub async fn remove_all(ctx: &Context, ca_name: &str) -> Result<(), Error> {
    for cm in our_bundles(ctx, ca_name).await? {
        let api: Api<ConfigMap> =
            Api::namespaced(ctx.client.clone(), &cm.namespace().unwrap_or_default());
        match api.delete(&cm.name_any(), &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// The TrustBundle condition: a conflict (someone else's ConfigMap) first,
/// then selected namespaces certop may not write into.
pub fn trust_bundle_problem(
    bundle_name: &str,
    outcome: &BundleOutcome,
    managed: &ManagedNamespaces,
) -> Option<(Reason, String)> {
    if !outcome.conflicts.is_empty() {
        return Some((
            Reason::ConfigMapConflict,
            format!(
                "ConfigMap {bundle_name} exists in namespaces {} and certop did not create it; certop leaves it alone: delete it or set spec.trustBundle.configMapName",
                outcome.conflicts.join(", ")
            ),
        ));
    }
    (!outcome.unmanaged.is_empty()).then(|| {
        (
            Reason::NamespaceNotManaged,
            format!(
                "the namespaceSelector picks namespaces {} that certop does not manage ({}); the trust bundle is not published there: add them to the chart's managedNamespaces (certop run --managed-namespaces) or narrow spec.trustBundle.namespaceSelector",
                outcome.unmanaged.join(", "),
                managed.describe()
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_bundles_certop_made_are_ours() {
        let mut m = kube::core::ObjectMeta::default();
        assert!(!is_our_bundle(&m, "ca"), "kube-root-ca.crt and the like");
        m.labels = Some(BTreeMap::from([
            (meta::MANAGED_BY.into(), meta::MANAGED_BY_VALUE.into()),
            (trust_bundle_label("ca"), "true".into()),
        ]));
        assert!(!is_our_bundle(&m, "ca"), "no CA annotation");
        m.annotations = Some(BTreeMap::from([(
            meta::CERTIFICATE_AUTHORITY.into(),
            "ca".into(),
        )]));
        assert!(is_our_bundle(&m, "ca"));
        assert!(!is_our_bundle(&m, "other"));
        let made = bundle("ca", "team-a", "ca-bundle", "PEM");
        assert!(
            is_our_bundle(&made.metadata, "ca"),
            "what certop writes is ours"
        );
    }

    #[test]
    fn label_selectors_render_as_list_calls_expect() {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
            LabelSelector, LabelSelectorRequirement,
        };
        let s = LabelSelector {
            match_labels: Some(BTreeMap::from([("trust".into(), "yes".into())])),
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "env".into(),
                operator: "In".into(),
                values: Some(vec!["a".into(), "b".into()]),
            }]),
        };
        assert_eq!(label_selector_string(&s), "trust=yes,env in (a,b)");
        assert!(trust_bundle_label(&"x".repeat(253)).len() <= 63 + "certop.dev/".len());
    }

    #[test]
    fn a_trust_bundle_reports_someone_elses_config_map_first_then_unmanaged_namespaces() {
        let managed = ManagedNamespaces::from_list(&["default"]);
        let outcome = |conflicts: &[&str], unmanaged: &[&str]| BundleOutcome {
            conflicts: conflicts.iter().map(|s| s.to_string()).collect(),
            unmanaged: unmanaged.iter().map(|s| s.to_string()).collect(),
        };
        let cases: &[(BundleOutcome, Option<Reason>, &[&str])] = &[
            (outcome(&[], &[]), None, &[]),
            (
                outcome(&["default"], &["team-a"]),
                Some(Reason::ConfigMapConflict),
                &["default", "configMapName"],
            ),
            (
                outcome(&[], &["team-a", "team-b"]),
                Some(Reason::NamespaceNotManaged),
                &["team-a, team-b", "(default)", "managedNamespaces"],
            ),
        ];
        for (outcome, reason, says) in cases {
            let problem = trust_bundle_problem("ca-bundle", outcome, &managed);
            assert_eq!(problem.as_ref().map(|p| p.0), *reason, "{outcome:?}");
            for text in *says {
                let message = &problem.as_ref().expect("a problem").1;
                assert!(message.contains(text), "{message} says {text}");
            }
        }
    }
}
