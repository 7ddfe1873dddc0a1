//! What a CertificateAuthority may sign. Whoever may create a
//! ClusterCertificate (or a CSR for `certop.dev/<ca>`) should not thereby get
//! any identity signed: a CA's `policy` lists the profiles, organizations,
//! DNS names and lifetime it signs, and the rest is refused with a reason.
//! Without a policy a CA signs anything but the cluster's superuser group:
//! `system:masters` (and the `super-admin` profile, which carries it) must be
//! allowed by name. Pure.

use crate::api::{IssuancePolicy, Profile};
use crate::pki::{LeafTemplate, profile_name};

/// The organization that bypasses all authorization in Kubernetes.
pub const SUPERUSER_GROUP: &str = "system:masters";

/// Who asks: a ClusterCertificate (with its profile, if any), or a CSR
/// (which has no profile: its subject and names are checked).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request {
    Certificate(Option<Profile>),
    SigningRequest,
}

/// Why the CA may not sign `template`, or Ok.
pub fn check(
    policy: Option<&IssuancePolicy>,
    template: &LeafTemplate,
    request: Request,
) -> Result<(), String> {
    let default = IssuancePolicy::default();
    let p = policy.unwrap_or(&default);
    let profile = match request {
        Request::Certificate(profile) => profile,
        Request::SigningRequest => None,
    };
    if request == Request::Certificate(None) && !p.allowed_profiles.is_empty() {
        let names: Vec<String> = p
            .allowed_profiles
            .iter()
            .map(|p| profile_name(*p))
            .collect();
        return Err(format!(
            "the CA's policy allows only the profiles {}: set spec.profile",
            names.join(", ")
        ));
    }
    if let Some(profile) = profile {
        let listed = p.allowed_profiles.contains(&profile);
        let open = p.allowed_profiles.is_empty() && profile != Profile::SuperAdmin;
        if !listed && !open {
            return Err(format!(
                "the CA's policy does not allow profile {}{}",
                profile_name(profile),
                if profile == Profile::SuperAdmin {
                    " (it carries system:masters; list it in spec.policy.allowedProfiles to allow it)"
                } else {
                    ""
                }
            ));
        }
    }
    for org in &template.organizations {
        let listed = p.allowed_organizations.iter().any(|o| o == org);
        let open = p.allowed_organizations.is_empty() && org != SUPERUSER_GROUP;
        // A profile the policy allows brings its own organization.
        let by_profile = profile.is_some_and(|pr| p.allowed_profiles.contains(&pr));
        if !listed && !open && !by_profile {
            return Err(format!(
                "the CA's policy does not allow organization {org:?}{}",
                if org == SUPERUSER_GROUP {
                    " (it bypasses all authorization; list it in spec.policy.allowedOrganizations to allow it)"
                } else {
                    ""
                }
            ));
        }
    }
    if !p.allowed_dns_names.is_empty() {
        for name in &template.dns_names {
            if !p
                .allowed_dns_names
                .iter()
                .any(|pattern| dns_allowed(pattern, name))
            {
                return Err(format!(
                    "the CA's policy does not allow DNS name {name:?} (allowed: {})",
                    p.allowed_dns_names.join(", ")
                ));
            }
        }
    }
    if let Some(max) = &p.max_duration {
        let max = max
            .to_chrono()
            .map_err(|e| format!("the CA's spec.policy.maxDuration: {e}"))?;
        if template.lifetime > max {
            return Err(format!(
                "the CA's policy allows at most {} of lifetime; the certificate asks for {}h",
                p.max_duration.as_ref().map_or("", |d| d.as_str()),
                template.lifetime.num_hours()
            ));
        }
    }
    Ok(())
}

/// `.example.com` allows every name under example.com; `*` any name;
/// anything else itself. A wildcard name is allowed by a suffix it sits under.
fn dns_allowed(pattern: &str, name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    let pattern = pattern.to_ascii_lowercase();
    if pattern == "*" {
        return true;
    }
    match pattern.strip_prefix('.') {
        Some(_) => name.ends_with(&pattern),
        None => name == pattern,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{ClusterCertificateSpec, GoDuration, IssuerRef};

    fn template(edit: impl FnOnce(&mut ClusterCertificateSpec)) -> (LeafTemplate, Request) {
        let mut spec = ClusterCertificateSpec {
            issuer_ref: IssuerRef { name: "ca".into() },
            secret_name: "s".into(),
            secret_namespace: "ns".into(),
            common_name: Some("robot".into()),
            ..Default::default()
        };
        edit(&mut spec);
        (
            LeafTemplate::from_spec(&spec).expect("template"),
            Request::Certificate(spec.profile),
        )
    }

    #[test]
    fn policy_table() {
        let kubeadm_set = IssuancePolicy {
            allowed_profiles: vec![Profile::KubeApiserver, Profile::Admin, Profile::SuperAdmin],
            allowed_dns_names: vec![
                ".cluster.local".into(),
                "kubernetes".into(),
                "kubernetes.default".into(),
                "kubernetes.default.svc".into(),
                "cp-1".into(),
            ],
            max_duration: Some("8760h".parse::<GoDuration>().expect("duration")),
            ..Default::default()
        };
        let web = IssuancePolicy {
            allowed_dns_names: vec![".example.com".into()],
            ..Default::default()
        };
        let masters =
            |s: &mut ClusterCertificateSpec| s.organizations = vec![SUPERUSER_GROUP.into()];
        type Edit = Box<dyn Fn(&mut ClusterCertificateSpec)>;
        let cases: Vec<(&str, Option<&IssuancePolicy>, Edit, Option<&str>)> = vec![
            (
                "no policy: a plain certificate",
                None,
                Box::new(|_| {}),
                None,
            ),
            (
                "no policy: system:masters refused",
                None,
                Box::new(masters),
                Some("system:masters"),
            ),
            (
                "no policy: super-admin refused",
                None,
                Box::new(|s| {
                    s.common_name = None;
                    s.profile = Some(Profile::SuperAdmin)
                }),
                Some("super-admin"),
            ),
            (
                "listed super-admin brings its organization",
                Some(&kubeadm_set),
                Box::new(|s| {
                    s.common_name = None;
                    s.profile = Some(Profile::SuperAdmin)
                }),
                None,
            ),
            (
                "profile not listed",
                Some(&kubeadm_set),
                Box::new(|s| {
                    s.common_name = None;
                    s.profile = Some(Profile::Scheduler)
                }),
                Some("profile scheduler"),
            ),
            (
                "apiserver names within the list",
                Some(&kubeadm_set),
                Box::new(|s| {
                    s.common_name = None;
                    s.profile = Some(Profile::KubeApiserver);
                    s.node_name = Some("cp-1".into());
                }),
                None,
            ),
            (
                "too long",
                Some(&kubeadm_set),
                Box::new(|s| {
                    s.common_name = None;
                    s.profile = Some(Profile::Admin);
                    s.duration = Some("9000h".parse().expect("d"));
                }),
                Some("at most 8760h"),
            ),
            (
                "suffix allows a subdomain",
                Some(&web),
                Box::new(|s| s.dns_names = vec!["a.example.com".into()]),
                None,
            ),
            (
                "suffix allows a wildcard under it",
                Some(&web),
                Box::new(|s| s.dns_names = vec!["*.example.com".into()]),
                None,
            ),
            (
                "suffix is not the bare domain",
                Some(&web),
                Box::new(|s| s.dns_names = vec!["example.com".into()]),
                Some("\"example.com\""),
            ),
            (
                "another domain",
                Some(&web),
                Box::new(|s| s.dns_names = vec!["bank.example".into()]),
                Some("bank.example"),
            ),
        ];
        for (name, policy, edit, refused) in cases {
            let (t, request) = template(edit);
            match (check(policy, &t, request), refused) {
                (Ok(()), None) => {}
                (Err(m), Some(words)) => assert!(m.contains(words), "{name}: {m}"),
                (got, want) => panic!("{name}: got {got:?}, wanted refusal {want:?}"),
            }
        }
        // A CSR has no profile; its names and groups are what is checked.
        let (t, _) = template(|_| {});
        assert!(check(Some(&kubeadm_set), &t, Request::SigningRequest).is_ok());
        let (t, _) = template(masters);
        assert!(check(None, &t, Request::SigningRequest).is_err());
    }
}
