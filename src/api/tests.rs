//! The CEL rules, evaluated client-side with kube's CEL engine (the same
//! rules the API server enforces; the integration tests check that too), and
//! the CRDs in `crds/` being the ones the code generates.

use kube::core::ObjectMeta;
use kube::core::cel::validate_cel;

use super::*;

fn valid() -> ClusterCertificate {
    let mut c = ClusterCertificate::new(
        "web",
        ClusterCertificateSpec {
            issuer_ref: IssuerRef {
                name: "cluster".into(),
            },
            secret_name: "web-tls".into(),
            secret_namespace: "default".into(),
            common_name: Some("web".into()),
            ..Default::default()
        },
    );
    c.metadata = ObjectMeta {
        name: Some("web".into()),
        ..Default::default()
    };
    c
}

#[test]
fn cel_rules_accept_a_valid_spec_and_refuse_each_invalid_one_with_its_message() {
    assert!(
        validate_cel(&valid()).is_ok(),
        "{:?}",
        validate_cel(&valid())
    );
    let d = |s: &str| Some(s.parse::<crate::api::GoDuration>().expect("duration"));
    let cases: Vec<(&str, SpecEdit, &str)> = vec![
        (
            "both renewal settings",
            Box::new(move |s| {
                s.renew_before = d("1h");
                s.renew_before_percentage = Some(10)
            }),
            "at most one of renewBefore",
        ),
        (
            "renewBefore too long",
            Box::new(move |s| {
                s.duration = d("1h");
                s.renew_before = d("2h")
            }),
            "renewBefore must be shorter",
        ),
        (
            "renewBefore vs default",
            Box::new(move |s| s.renew_before = d("2200h")),
            "renewBefore must be shorter",
        ),
        (
            "duration too short",
            Box::new(move |s| s.duration = d("30s")),
            "at least 1m",
        ),
        (
            "no names",
            Box::new(|s| s.common_name = None),
            "set a profile",
        ),
        (
            "node profile without node",
            Box::new(|s| s.profile = Some(Profile::EtcdServer)),
            "set nodeName",
        ),
        (
            "bad IP",
            Box::new(|s| s.ip_addresses = vec!["300.1.1.1".into()]),
            "ipAddresses",
        ),
        (
            "bad advertise address",
            Box::new(|s| s.advertise_address = Some("host".into())),
            "advertiseAddress",
        ),
        (
            "bad CIDR",
            Box::new(|s| s.service_cidr = Some("10.0.0.0".into())),
            "serviceCIDR",
        ),
    ];
    for (name, mutate, expected) in cases {
        let mut c = valid();
        mutate(&mut c.spec);
        let err = validate_cel(&c).expect_err(name);
        assert!(
            format!("{err:?}").contains(expected),
            "{name}: {err:?} should mention {expected:?}"
        );
    }
}

/// A change to a valid spec, for table tests of refusals.
type SpecEdit = Box<dyn Fn(&mut ClusterCertificateSpec)>;

/// The message of a refusal, whatever type says it.
fn refusal<T>(result: Result<T, impl std::fmt::Display>) -> String {
    match result {
        Ok(_) => panic!("accepted"),
        Err(e) => e.to_string(),
    }
}

/// A spec certop's own checks refuse says which field to fix, and how.
#[test]
fn a_ca_spec_certop_refuses_names_the_field_and_the_fix() {
    let long = "c".repeat(251);
    let cases: Vec<(serde_json::Value, String)> = vec![
        (
            serde_json::json!({"duration": "30m"}),
            "spec.duration 30m is shorter than 1h: a CA must outlive what it signs".into(),
        ),
        (
            serde_json::json!({"crl": {"validity": "10s"}}),
            "spec.crl.validity must be between 1m and 8760h, not 10s".into(),
        ),
        (
            serde_json::json!({"crl": {"validity": "1h", "refreshBefore": "2h"}}),
            "spec.crl.refreshBefore must be shorter than spec.crl.validity".into(),
        ),
        (
            serde_json::json!({"rotation": {"overlap": "9000h"}}),
            "spec.rotation.overlap must be at most 8760h, not 9000h".into(),
        ),
        (
            serde_json::json!({"rotation": {"renewBefore": "soon"}}),
            format!(
                "spec.rotation.renewBefore: {}",
                refusal(
                    serde_json::from_value::<GoDuration>(serde_json::json!("soon"))
                        .expect("text")
                        .to_chrono()
                )
            ),
        ),
        (
            serde_json::json!({"name": long}),
            format!(
                "the CA name is too long for its Secret name \"{long}-ca\" (at most 253 characters): set spec.keySource.secretName"
            ),
        ),
        (
            serde_json::json!({"name": long, "keySource": {"secretName": "key"}, "trustBundle": {"namespaceSelector": {}}}),
            format!(
                "the CA name is too long for its trust-bundle ConfigMap name \"{long}-ca\" (at most 253 characters): set spec.trustBundle.configMapName"
            ),
        ),
    ];
    for (patch, want) in cases {
        let mut spec = serde_json::json!({"subject": {"commonName": "test CA"}});
        let mut name = "web".to_string();
        for (k, v) in patch.as_object().expect("object") {
            match k.as_str() {
                "name" => name = v.as_str().expect("name").to_string(),
                _ => spec[k] = v.clone(),
            }
        }
        let ca: CertificateAuthority = serde_json::from_value(serde_json::json!({
            "apiVersion": "certop.dev/v1",
            "kind": "CertificateAuthority",
            "metadata": {"name": name},
            "spec": spec,
        }))
        .expect("a CA");
        assert_eq!(refusal(ca.settings()), want, "{patch}");
    }
}

/// A secretTemplate the API server would refuse is named, key and rule.
#[test]
fn a_secret_template_certop_refuses_names_the_key_and_the_rule() {
    let template = |labels: &[(&str, &str)], annotations: &[(&str, &str)]| SecretTemplate {
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        annotations: annotations
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    };
    let big = "v".repeat(256 * 1024);
    let cases = [
        (
            template(&[("Bad_Prefix/x", "v")], &[]),
            "spec.secretTemplate.labels key \"Bad_Prefix/x\": the prefix before '/' must be a lower-case DNS subdomain",
        ),
        (
            template(&[("app", "-v")], &[]),
            "spec.secretTemplate.labels[\"app\"] value \"-v\" must be at most 63 characters of letters, digits, '-', '_' and '.', starting and ending with a letter or digit",
        ),
        (
            template(&[], &[("", "v")]),
            "spec.secretTemplate.annotations key \"\": the name must be 1 to 63 characters of letters, digits, '-', '_' and '.', starting and ending with a letter or digit",
        ),
        (
            template(&[], &[("big", big.as_str())]),
            "spec.secretTemplate.annotations exceed 256 KiB in total",
        ),
    ];
    for (t, want) in cases {
        assert_eq!(refusal(t.validate()), want);
    }
}

/// Each CRD serves `v1` (stored) and `v1alpha1` (deprecated, with a warning
/// naming `v1`) with the identical schema: with conversion `None` the API
/// server converts between them by rewriting `apiVersion` alone, which is
/// right only while the two versions have the same fields.
#[test]
fn every_crd_stores_v1_and_serves_v1alpha1_deprecated_with_the_same_schema() {
    let crds = crds();
    assert_eq!(crds.len(), 4);
    for crd in crds {
        let kind = &crd.spec.names.kind;
        let names: Vec<_> = crd.spec.versions.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(names, [VERSION, DEPRECATED_VERSION], "{kind}");
        assert!(crd.spec.conversion.is_none(), "{kind}: conversion None");
        let (v1, v1alpha1) = (&crd.spec.versions[0], &crd.spec.versions[1]);
        assert!(
            v1.served && v1.storage && v1.deprecated != Some(true),
            "{kind} v1"
        );
        assert!(v1alpha1.served && !v1alpha1.storage, "{kind} v1alpha1");
        assert_eq!(v1alpha1.deprecated, Some(true), "{kind} v1alpha1");
        let warning = v1alpha1.deprecation_warning.as_deref().unwrap_or_default();
        assert_eq!(
            warning,
            format!(
                "certop.dev/v1alpha1 {kind} is deprecated; use certop.dev/v1 (the same fields)"
            )
        );
        assert!(v1.schema.is_some(), "{kind}: a schema");
        assert_eq!(v1.schema, v1alpha1.schema, "{kind}: the same schema");
        assert_eq!(v1.subresources, v1alpha1.subresources, "{kind}");
        assert_eq!(
            v1.additional_printer_columns, v1alpha1.additional_printer_columns,
            "{kind}"
        );
        assert_eq!(v1.selectable_fields, v1alpha1.selectable_fields, "{kind}");
    }
}

/// `kubectl explain` prints a field's description from the CRD schema: a
/// field without one is explained by its name alone. Every kind, and every
/// property of every kind at any depth, carries one.
#[test]
fn every_schema_property_has_a_description_for_kubectl_explain() {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
        JSONSchemaProps, JSONSchemaPropsOrArray, JSONSchemaPropsOrBool,
    };
    fn walk(path: &str, schema: &JSONSchemaProps, missing: &mut Vec<String>) {
        for (name, property) in schema.properties.iter().flatten() {
            let at = format!("{path}.{name}");
            if property
                .description
                .as_deref()
                .is_none_or(|d| d.trim().is_empty())
            {
                missing.push(at.clone());
            }
            walk(&at, property, missing);
        }
        match &schema.items {
            Some(JSONSchemaPropsOrArray::Schema(items)) => {
                walk(&format!("{path}[]"), items, missing)
            }
            Some(JSONSchemaPropsOrArray::Schemas(items)) => {
                for items in items {
                    walk(&format!("{path}[]"), items, missing);
                }
            }
            None => {}
        }
        if let Some(JSONSchemaPropsOrBool::Schema(values)) = &schema.additional_properties {
            walk(&format!("{path}{{}}"), values, missing);
        }
        for alternative in [&schema.all_of, &schema.any_of, &schema.one_of]
            .into_iter()
            .flatten()
            .flatten()
        {
            walk(path, alternative, missing);
        }
    }
    let mut missing = Vec::new();
    for crd in crds() {
        for version in &crd.spec.versions {
            let schema = version
                .schema
                .as_ref()
                .and_then(|s| s.open_api_v3_schema.as_ref())
                .expect("a schema");
            let root = format!("{}/{}", crd.spec.names.kind, version.name);
            // `kubectl explain KIND` prints this first; kube-derive's
            // placeholder ("Auto-generated derived type ...") tells nothing.
            if schema
                .description
                .as_deref()
                .is_none_or(|d| d.trim().is_empty() || d.contains("Auto-generated"))
            {
                missing.push(format!("{root} (the kind: #[kube(doc = ...)])"));
            }
            for name in ["spec", "status"] {
                if let Some(part) = schema.properties.as_ref().and_then(|p| p.get(name)) {
                    let at = format!("{root}.{name}");
                    if part
                        .description
                        .as_deref()
                        .is_none_or(|d| d.trim().is_empty())
                    {
                        missing.push(at.clone());
                    }
                    walk(&at, part, &mut missing);
                }
            }
        }
    }
    assert!(
        missing.is_empty(),
        "fields kubectl explain shows without a description (add a doc comment):\n{}",
        missing.join("\n")
    );
}

/// "The same schema" holds against the release that served `v1alpha1`
/// alone (commit 48e64a4, tests/fixtures/crds-48e64a4.yaml): both versions
/// now served validate, default and prune every field of that release
/// exactly as it did, descriptions aside. The only change allowed is a new
/// optional property (`spec.podCertificates`): everything that release
/// accepted is accepted unchanged. A field changed here needs a conversion,
/// not conversion `None`.
#[test]
fn both_versions_keep_the_schema_of_the_release_that_served_v1alpha1_alone() {
    fn without_descriptions(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(o) => {
                o.remove("description");
                o.values_mut().for_each(without_descriptions);
            }
            serde_json::Value::Array(a) => a.iter_mut().for_each(without_descriptions),
            _ => {}
        }
    }
    let released: Vec<serde_json::Value> = include_str!("../../tests/fixtures/crds-48e64a4.yaml")
        .split("\n---\n")
        .filter_map(|doc| serde_saphyr::from_str::<serde_json::Value>(doc).ok())
        .filter(|doc| doc.get("kind").is_some())
        .collect();
    assert_eq!(released.len(), 4);
    for crd in crds() {
        let name = crd.metadata.name.clone().unwrap_or_default();
        let old = released
            .iter()
            .find(|c| c["metadata"]["name"] == name.as_str())
            .unwrap_or_else(|| panic!("{name} in the release"));
        let mut old_schema = old["spec"]["versions"][0]["schema"].clone();
        without_descriptions(&mut old_schema);
        for version in &crd.spec.versions {
            let mut schema = serde_json::to_value(&version.schema).expect("schema");
            without_descriptions(&mut schema);
            let mut changed = Vec::new();
            released_schema_kept(&name, &old_schema, &schema, false, &mut changed);
            assert!(
                changed.is_empty(),
                "{name} {}: the schema changed at {changed:?}",
                version.name
            );
            assert_eq!(
                serde_json::to_value(&version.additional_printer_columns).expect("columns"),
                old["spec"]["versions"][0]["additionalPrinterColumns"],
                "{name} {}",
                version.name
            );
        }
    }
}

/// Whether `new` keeps all of `old`: equal, except that a `properties` map
/// may hold properties `old` did not have (new optional fields; a new
/// required one changes `required`, which must stay equal), and a CEL rule
/// may be widened to `<old rule> || <more>` (it accepts all the old one
/// did: "match something" once a new selector exists), its message with
/// it. Paths that differ are pushed to `changed`.
fn released_schema_kept(
    at: &str,
    old: &serde_json::Value,
    new: &serde_json::Value,
    properties: bool,
    changed: &mut Vec<String>,
) {
    match (old, new) {
        (serde_json::Value::Object(o), serde_json::Value::Object(n))
            if o.contains_key("rule") && !properties =>
        {
            let rule = |v: &serde_json::Map<String, serde_json::Value>| {
                v.get("rule")
                    .and_then(|r| r.as_str())
                    .unwrap_or_default()
                    .to_string()
            };
            let (old_rule, new_rule) = (rule(o), rule(n));
            let widened = new_rule
                .strip_prefix(&old_rule)
                .is_some_and(|more| more.starts_with(" || "));
            let rest = |v: &serde_json::Map<String, serde_json::Value>| {
                let mut v = v.clone();
                v.remove("rule");
                v.remove("message");
                serde_json::Value::Object(v)
            };
            if !(old == new || widened && rest(o) == rest(n)) {
                changed.push(at.to_string());
            }
        }
        (serde_json::Value::Object(o), serde_json::Value::Object(n)) => {
            for (key, old_value) in o {
                let path = format!("{at}.{key}");
                match n.get(key) {
                    Some(new_value) => released_schema_kept(
                        &path,
                        old_value,
                        new_value,
                        !properties && key == "properties",
                        changed,
                    ),
                    None => changed.push(path),
                }
            }
            if !properties {
                changed.extend(
                    n.keys()
                        .filter(|key| !o.contains_key(*key))
                        .map(|key| format!("{at}.{key} (added)")),
                );
            }
        }
        (serde_json::Value::Array(o), serde_json::Value::Array(n)) if o.len() == n.len() => {
            for (i, (old_item, new_item)) in o.iter().zip(n).enumerate() {
                released_schema_kept(&format!("{at}.{i}"), old_item, new_item, false, changed);
            }
        }
        _ if old == new => {}
        _ => changed.push(at.to_string()),
    }
}

#[test]
fn a_released_schema_is_kept_by_a_new_optional_property_only() {
    let old = serde_json::json!({"type": "object", "required": ["a"],
        "properties": {"a": {"type": "string", "maxLength": 5}}});
    let kept = |new: serde_json::Value| {
        let mut changed = Vec::new();
        released_schema_kept("s", &old, &new, false, &mut changed);
        changed
    };
    assert!(kept(old.clone()).is_empty());
    assert!(
        kept(serde_json::json!({"type": "object", "required": ["a"],
        "properties": {"a": {"type": "string", "maxLength": 5},
                       "b": {"type": "object", "x-kubernetes-validations": []}}}))
        .is_empty()
    );
    assert_eq!(
        kept(serde_json::json!({"type": "object", "required": ["a", "b"],
            "properties": {"a": {"type": "string", "maxLength": 5}, "b": {"type": "string"}}})),
        ["s.required"]
    );
    assert_eq!(
        kept(serde_json::json!({"type": "object", "required": ["a"],
            "properties": {"a": {"type": "string", "maxLength": 4}}})),
        ["s.properties.a.maxLength"]
    );
    assert_eq!(
        kept(
            serde_json::json!({"type": "object", "required": ["a"], "x-kubernetes-validations": [],
            "properties": {"a": {"type": "string", "maxLength": 5}}})
        ),
        ["s.x-kubernetes-validations (added)"]
    );
    assert_eq!(
        kept(serde_json::json!({"type": "object", "required": ["a"], "properties": {}})),
        ["s.properties.a"]
    );
    let old = serde_json::json!({"type": "object", "x-kubernetes-validations": [
        {"rule": "has(self.a)", "message": "set a"}]});
    let kept = |new: serde_json::Value| {
        let mut changed = Vec::new();
        released_schema_kept("s", &old, &new, false, &mut changed);
        changed
    };
    assert!(
        kept(
            serde_json::json!({"type": "object", "x-kubernetes-validations": [
            {"rule": "has(self.a) || has(self.b)", "message": "set a or b"}]})
        )
        .is_empty(),
        "a rule widened by a disjunction accepts all it did"
    );
    for narrowed in ["has(self.a) && has(self.b)", "has(self.b) || has(self.a)"] {
        assert_eq!(
            kept(
                serde_json::json!({"type": "object", "x-kubernetes-validations": [
                {"rule": narrowed, "message": "set a"}]})
            ),
            ["s.x-kubernetes-validations.0"],
            "{narrowed}"
        );
    }
    assert_eq!(
        kept(
            serde_json::json!({"type": "object", "x-kubernetes-validations": [
            {"rule": "has(self.a) || has(self.b)", "message": "m", "reason": "FieldValueForbidden"}]})
        ),
        ["s.x-kubernetes-validations.0"],
        "only the rule and its message may change"
    );
}

/// ECDSA P-521 is a pod's own key only: no CRD field (a CA's, a
/// ClusterCertificate's or a policy's keyAlgorithm) admits it, so certop
/// is never asked to generate one.
#[test]
fn no_crd_admits_a_p521_key_algorithm() {
    let text = serde_json::to_string(&crds()).expect("json");
    assert!(
        text.contains("ECDSA-P384"),
        "the enum is where it is looked for"
    );
    assert!(!text.contains("P521"), "a CRD admits ECDSA-P521");
}
