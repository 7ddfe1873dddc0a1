//! Which resources `kms rewrite` must store again: those kube-apiserver's
//! EncryptionConfiguration lists with this plugin among their providers
//! (any of them may hold objects under one of its KEKs), or a list given on
//! the command line. Pure: text in, resource names out.

use std::collections::BTreeSet;

use serde::Deserialize;

use super::KmsError;

/// One API resource as an EncryptionConfiguration names it: `secrets`
/// (the core group), `deployments.apps`, `widgets.example.com`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Resource {
    /// The API group; empty for the core group.
    pub group: String,
    /// The plural resource name, as in the URL.
    pub plural: String,
}

impl std::fmt::Display for Resource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.group.is_empty() {
            f.write_str(&self.plural)
        } else {
            write!(f, "{}.{}", self.plural, self.group)
        }
    }
}

impl Resource {
    /// Parses `plural[.group]`. Wildcards (`*.*`, `*.`, `*.apps`) are
    /// refused: which resources they cover depends on what the API server
    /// serves, and a rewrite must name each one it stores again.
    pub fn parse(name: &str) -> Result<Resource, KmsError> {
        let name = name.trim();
        if name.contains('*') {
            return Err(KmsError::WildcardResource(name.to_string()));
        }
        let (plural, group) = name.split_once('.').unwrap_or((name, ""));
        let valid = |s: &str| {
            s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        };
        if plural.is_empty()
            || plural.contains('.')
            || !valid(plural)
            || !valid(group)
            || group.starts_with('.')
            || group.ends_with('.')
            || (name.ends_with('.') && group.is_empty())
        {
            return Err(KmsError::BadResource(name.to_string()));
        }
        Ok(Resource {
            group: group.to_string(),
            plural: plural.to_string(),
        })
    }

    /// Parses a comma-separated list (`secrets,configmaps`).
    pub fn parse_list(list: &str) -> Result<BTreeSet<Resource>, KmsError> {
        let resources = list
            .split(',')
            .filter(|s| !s.trim().is_empty())
            .map(Resource::parse)
            .collect::<Result<BTreeSet<_>, _>>()?;
        if resources.is_empty() {
            return Err(KmsError::BadResource(list.to_string()));
        }
        Ok(resources)
    }
}

/// The part of `apiserver.config.k8s.io/v1` EncryptionConfiguration read
/// here; other fields (other providers' settings) are ignored.
#[derive(Deserialize)]
struct EncryptionConfiguration {
    #[serde(default)]
    kind: String,
    #[serde(default)]
    resources: Vec<ResourceConfiguration>,
}

#[derive(Deserialize)]
struct ResourceConfiguration {
    #[serde(default)]
    resources: Vec<String>,
    #[serde(default)]
    providers: Vec<Provider>,
}

#[derive(Deserialize)]
struct Provider {
    kms: Option<KmsProvider>,
}

#[derive(Deserialize)]
struct KmsProvider {
    #[serde(default)]
    name: String,
}

/// The resources `config` (the file's text, YAML or JSON) encrypts or
/// decrypts with the KMS provider named `kms_name`. `path` is for errors.
pub fn resources_of(
    config: &str,
    kms_name: &str,
    path: &std::path::Path,
) -> Result<BTreeSet<Resource>, KmsError> {
    let bad = |reason: String| KmsError::EncryptionConfig {
        path: path.to_path_buf(),
        reason,
    };
    let parsed: EncryptionConfiguration =
        serde_saphyr::from_str(config).map_err(|e| bad(e.to_string()))?;
    if parsed.kind != "EncryptionConfiguration" {
        return Err(bad(format!(
            "kind is {:?}, not EncryptionConfiguration",
            parsed.kind
        )));
    }
    let mut out = BTreeSet::new();
    for entry in &parsed.resources {
        let ours = entry
            .providers
            .iter()
            .any(|p| p.kms.as_ref().is_some_and(|k| k.name == kms_name));
        if !ours {
            continue;
        }
        for name in &entry.resources {
            out.insert(Resource::parse(name)?);
        }
    }
    if out.is_empty() {
        return Err(bad(format!(
            "no resources entry has the kms provider {kms_name:?} (is --kms-name the provider's `name`?)"
        )));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn names(set: &BTreeSet<Resource>) -> Vec<String> {
        set.iter().map(ToString::to_string).collect()
    }

    const CONFIG: &str = "apiVersion: apiserver.config.k8s.io/v1
kind: EncryptionConfiguration
resources:
  - resources: [secrets, configmaps]
    providers:
      - kms:
          apiVersion: v2
          name: certop
          endpoint: unix:///run/kms.sock
          timeout: 3s
      - identity: {}
  - resources: [widgets.example.com]
    providers:
      - identity: {}
      - kms:
          apiVersion: v2
          name: certop
          endpoint: unix:///run/kms.sock
  - resources: [events]
    providers:
      - aescbc:
          keys: [{name: key1, secret: c2VjcmV0IGlzIHNlY3VyZQ==}]
  - resources: [leases.coordination.k8s.io]
    providers:
      - kms: {apiVersion: v2, name: other, endpoint: unix:///run/other.sock}
";

    #[test]
    fn every_resource_with_this_plugin_among_its_providers_is_named() {
        let got = resources_of(CONFIG, "certop", Path::new("e.yaml")).expect("parse");
        assert_eq!(
            names(&got),
            ["configmaps", "secrets", "widgets.example.com"]
        );
        let other = resources_of(CONFIG, "other", Path::new("e.yaml")).expect("parse");
        assert_eq!(names(&other), ["leases.coordination.k8s.io"]);
    }

    #[test]
    fn a_config_that_does_not_name_the_plugin_or_is_not_one_is_refused() {
        let cases = [
            (
                CONFIG,
                "nope",
                "no resources entry has the kms provider \"nope\"",
            ),
            ("kind: Pod\n", "certop", "not EncryptionConfiguration"),
            ("resources: [", "certop", "e.yaml"),
            (
                "kind: EncryptionConfiguration\nresources:\n  - resources: ['*.*']\n    providers: [{kms: {name: certop}}]\n",
                "certop",
                "wildcard",
            ),
        ];
        for (text, name, said) in cases {
            let err = resources_of(text, name, Path::new("e.yaml"))
                .expect_err(text)
                .to_string();
            assert!(err.contains(said), "{text:?}: {err}");
        }
    }

    #[test]
    fn resource_names_parse_and_wildcards_are_refused() {
        let ok = [
            ("secrets", "", "secrets"),
            ("deployments.apps", "apps", "deployments"),
            ("widgets.example.com", "example.com", "widgets"),
        ];
        for (name, group, plural) in ok {
            assert_eq!(
                Resource::parse(name).expect(name),
                Resource {
                    group: group.into(),
                    plural: plural.into()
                }
            );
        }
        for wildcard in ["*.*", "*.", "*.apps"] {
            assert!(
                matches!(
                    Resource::parse(wildcard),
                    Err(KmsError::WildcardResource(_))
                ),
                "{wildcard}"
            );
        }
        for bad in ["", "Secrets", "secrets.", ".apps", "a..b", "a b"] {
            assert!(
                matches!(Resource::parse(bad), Err(KmsError::BadResource(_))),
                "{bad}"
            );
        }
        assert_eq!(
            names(&Resource::parse_list("secrets, configmaps,secrets").expect("list")),
            ["configmaps", "secrets"]
        );
        assert!(Resource::parse_list(" , ").is_err());
    }
}
