//! Who gets which identity, as tables: every profile under each kind of
//! rules, every identity field just outside a policy, the hostile requests
//! that were once signed, and the paths (policyRef, CSR requester).

use std::collections::BTreeSet;
use std::sync::Arc;

use super::*;
use crate::api::{
    AllowedIdentity, CertificatePolicySpec, ClusterCertificateSpec, GoDuration, IssuerRef,
    KeyAlgorithm, KeyUsage, Profile,
};

const ALL_PROFILES: [Profile; 15] = [
    Profile::KubeApiserver,
    Profile::KubeApiserverKubeletClient,
    Profile::KubeApiserverEtcdClient,
    Profile::FrontProxyClient,
    Profile::EtcdServer,
    Profile::EtcdPeer,
    Profile::EtcdHealthcheckClient,
    Profile::Admin,
    Profile::SuperAdmin,
    Profile::ControllerManager,
    Profile::Scheduler,
    Profile::KubeletClient,
    Profile::KubeletServing,
    Profile::Server,
    Profile::Client,
];

fn spec(edit: impl FnOnce(&mut ClusterCertificateSpec)) -> ClusterCertificateSpec {
    let mut spec = ClusterCertificateSpec {
        issuer_ref: IssuerRef { name: "ca".into() },
        secret_name: "s".into(),
        secret_namespace: "ns".into(),
        ..Default::default()
    };
    edit(&mut spec);
    spec
}

fn template(spec: &ClusterCertificateSpec) -> LeafTemplate {
    LeafTemplate::from_spec(spec).expect("template")
}

/// A spec for a profile, with the names a serving profile takes.
fn profile_spec(profile: Profile) -> ClusterCertificateSpec {
    spec(|s| {
        s.profile = Some(profile);
        s.node_name = Some("cp-1".into());
        if matches!(profile, Profile::Server | Profile::Client) {
            s.common_name = Some("robot".into());
            s.dns_names = vec!["robot.example".into()];
        }
    })
}

fn policy(name: &str, authorities: &[&str], allowed: AllowedIdentity) -> Arc<CertificatePolicy> {
    let mut p = CertificatePolicy::new(
        name,
        CertificatePolicySpec {
            authorities: authorities.iter().map(|a| a.to_string()).collect(),
            allowed,
        },
    );
    p.metadata.name = Some(name.into());
    Arc::new(p)
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// The API server's Service address of the default Service CIDR.
fn api_server_ips() -> Vec<std::net::IpAddr> {
    vec!["10.96.0.1".parse().expect("ip")]
}

fn evaluate(rules: &Rules, spec: &ClusterCertificateSpec) -> Result<(), Refusal> {
    rules.evaluate(&Request {
        profile: spec.profile,
        template: &template(spec),
        api_server_ips: &api_server_ips(),
    })
}

/// How a CA with this `spec.policy`, which no CertificatePolicy governs,
/// decides a ClusterCertificate.
fn under_ca_policy(p: IssuancePolicy) -> impl Fn(&ClusterCertificateSpec) -> Result<(), Refusal> {
    move |spec| {
        let ips = api_server_ips();
        let t = template(spec);
        match authorize_certificate(
            authority("ca", Some(&p), &ips),
            &[],
            None,
            GUARD_IN_FORCE,
            spec.profile,
            &t,
        ) {
            Ok(()) => Ok(()),
            Err(Denial::Refused(r)) => Err(r),
            Err(other) => panic!("not a field refusal: {other}"),
        }
    }
}

/// How these rules decide a ClusterCertificate.
fn under(rules: Rules) -> impl Fn(&ClusterCertificateSpec) -> Result<(), Refusal> {
    move |spec| evaluate(&rules, spec)
}

/// A CA nothing special is said of.
fn authority<'a>(
    name: &'a str,
    policy: Option<&'a IssuancePolicy>,
    ips: &'a [std::net::IpAddr],
) -> Authority<'a> {
    Authority {
        name,
        policy,
        require_policy: false,
        api_server_ips: ips,
    }
}

/// The identity every profile carries, listed exactly: what a policy for
/// kubeadm's set names.
fn kubeadm_identities() -> AllowedIdentity {
    AllowedIdentity {
        common_names: strings(&[
            "kube-apiserver",
            "kube-apiserver-kubelet-client",
            "kube-apiserver-etcd-client",
            "front-proxy-client",
            "cp-1",
            "kube-etcd-healthcheck-client",
            "kubernetes-admin",
            "kubernetes-super-admin",
            "system:kube-controller-manager",
            "system:kube-scheduler",
            "system:node:cp-1",
            "robot",
        ]),
        organizations: strings(&["kubeadm:cluster-admins", "system:masters", "system:nodes"]),
        dns_names: strings(&[
            "cp-1",
            "localhost",
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local",
            "robot.example",
        ]),
        ip_addresses: strings(&["10.96.0.1/32", "127.0.0.1/32", "::1/128"]),
        profiles: ALL_PROFILES.to_vec(),
        ..Default::default()
    }
}

/// The admission guard in force (its faults are the operator's type; a
/// test that needs one names it as text).
const GUARD_IN_FORCE: Result<(), &str> = Ok(());

#[test]
fn every_profile_under_each_kind_of_rules() {
    let default = Rules::default_open();
    let kubeadm =
        Rules::of_policy(&policy("kubeadm", &["ca"], kubeadm_identities())).expect("rules");
    let profiles_only = Rules::of_policy(&policy(
        "profiles-only",
        &["ca"],
        AllowedIdentity {
            profiles: ALL_PROFILES.to_vec(),
            ..Default::default()
        },
    ))
    .expect("rules");
    let ca_listing_all = under_ca_policy(IssuancePolicy {
        allowed_profiles: ALL_PROFILES.to_vec(),
        ..Default::default()
    });
    // A CA's own spec.policy that bounds only the lifetime does not stand
    // in the way of what a CertificatePolicy names.
    let ceiling_only = IssuancePolicy {
        max_duration: Some("8760h".parse().expect("d")),
        ..Default::default()
    };
    let all = vec![policy("kubeadm", &["ca"], kubeadm_identities())];
    let ips = api_server_ips();
    for profile in ALL_PROFILES {
        let s = profile_spec(profile);
        let name = crate::pki::profile_name(profile);
        assert_eq!(
            authorize_certificate(
                authority("ca", Some(&ceiling_only), &ips),
                &all,
                Some("kubeadm"),
                GUARD_IN_FORCE,
                s.profile,
                &template(&s)
            ),
            Ok(()),
            "kubeadm policy under a CA's maxDuration, {name}"
        );
        // Without a policy only identities Kubernetes does not treat as its
        // own are signed: etcd's (its CN is the node's name) and the
        // server/client profiles with ordinary names.
        let ordinary = matches!(
            profile,
            Profile::EtcdServer | Profile::EtcdPeer | Profile::Server | Profile::Client
        );
        assert_eq!(
            evaluate(&default, &s).is_ok(),
            ordinary,
            "default, {name}: {:?}",
            evaluate(&default, &s)
        );
        // A policy that names kubeadm's identities exactly signs each one.
        assert_eq!(evaluate(&kubeadm, &s), Ok(()), "kubeadm policy, {name}");
        // Listing a profile in a CertificatePolicy brings none of its names.
        assert!(
            evaluate(&profiles_only, &s).is_err(),
            "profiles only, {name}"
        );
        // A CA's spec.policy only restricts: listing a profile there brings
        // nothing either (it once let anyone who may create a
        // ClusterCertificate have any node's or component's identity).
        assert_eq!(
            ca_listing_all(&s).is_ok(),
            ordinary,
            "CA policy listing {name}: {:?}",
            ca_listing_all(&s)
        );
    }
}

#[test]
fn each_identity_field_just_outside_a_policy_is_refused_by_name() {
    let p = policy(
        "team-a",
        &["ca"],
        AllowedIdentity {
            common_names: strings(&["team-a-*"]),
            organizations: strings(&["team-a"]),
            dns_names: strings(&["*.team-a.example"]),
            ip_addresses: strings(&["10.1.0.0/16"]),
            uris: strings(&["spiffe://cluster.local/ns/team-a/*"]),
            usages: Some(vec![
                KeyUsage::DigitalSignature,
                KeyUsage::KeyEncipherment,
                KeyUsage::ClientAuth,
                KeyUsage::ServerAuth,
            ]),
            key_algorithms: Some(vec![KeyAlgorithm::EcdsaP256]),
            profiles: Vec::new(),
            max_duration: Some("24h".parse::<GoDuration>().expect("duration")),
        },
    );
    let rules = Rules::of_policy(&p).expect("rules");
    let inside = |s: &mut ClusterCertificateSpec| {
        s.common_name = Some("team-a-bot".into());
        s.organizations = strings(&["team-a"]);
        s.dns_names = strings(&["bot.team-a.example"]);
        s.ip_addresses = strings(&["10.1.2.3"]);
        s.uris = strings(&["spiffe://cluster.local/ns/team-a/sa/bot"]);
        s.usages = vec![KeyUsage::DigitalSignature, KeyUsage::ClientAuth];
        s.duration = Some("24h".parse().expect("d"));
    };
    assert_eq!(evaluate(&rules, &spec(inside)), Ok(()));
    type Edit = Box<dyn Fn(&mut ClusterCertificateSpec)>;
    let cases: Vec<(Field, &str, Edit)> = vec![
        (
            Field::CommonName,
            "team-b-bot",
            Box::new(|s| s.common_name = Some("team-b-bot".into())),
        ),
        (
            Field::CommonName,
            "system:kube-controller-manager",
            Box::new(|s| s.common_name = Some("system:kube-controller-manager".into())),
        ),
        (
            Field::Organization,
            "team-b",
            Box::new(|s| s.organizations = strings(&["team-b"])),
        ),
        (
            Field::Organization,
            "system:masters",
            Box::new(|s| s.organizations = strings(&["system:masters"])),
        ),
        (
            Field::DnsName,
            "bank.example",
            Box::new(|s| s.dns_names.push("bank.example".into())),
        ),
        (
            Field::IpAddress,
            "8.8.8.8",
            Box::new(|s| s.ip_addresses.push("8.8.8.8".into())),
        ),
        (
            Field::Uri,
            "spiffe://cluster.local/ns/kube-system/sa/x",
            Box::new(|s| {
                s.uris
                    .push("spiffe://cluster.local/ns/kube-system/sa/x".into())
            }),
        ),
        (
            Field::Usage,
            "code signing",
            Box::new(|s| s.usages = vec![KeyUsage::DigitalSignature, KeyUsage::CodeSigning]),
        ),
        // No extended usage is every purpose, client auth included.
        (
            Field::Usage,
            "no extended key usage",
            Box::new(|s| s.usages = vec![KeyUsage::DigitalSignature]),
        ),
        (
            Field::IpAddress,
            "10.96.0.1",
            Box::new(|s| s.ip_addresses.push("10.96.0.1".into())),
        ),
        (
            Field::KeyAlgorithm,
            "RSA-2048",
            Box::new(|s| {
                s.usages.push(KeyUsage::KeyEncipherment);
                s.private_key = Some(crate::api::PrivateKeySettings {
                    algorithm: Some(KeyAlgorithm::Rsa2048),
                    ..Default::default()
                })
            }),
        ),
        (
            Field::Duration,
            "90000s",
            Box::new(|s| s.duration = Some("25h".parse().expect("d"))),
        ),
        (
            Field::Profile,
            "server",
            Box::new(|s| {
                s.usages.clear();
                s.profile = Some(Profile::Server)
            }),
        ),
    ];
    for (field, value, edit) in cases {
        let s = spec(|s| {
            inside(s);
            edit(s);
        });
        let got = evaluate(&rules, &s);
        assert!(
            got.as_ref().is_err_and(|r| r.field == field
                && r.value == value
                && r.source == Source::Policy("team-a".into())),
            "{field:?} {value}: {got:?}"
        );
    }
    // The message says which policy, field and value.
    let message = evaluate(
        &rules,
        &spec(|s| {
            inside(s);
            s.organizations = strings(&["system:masters"]);
        }),
    )
    .expect_err("refused")
    .to_string();
    assert!(
        message.contains("CertificatePolicy team-a")
            && message.contains("organizations \"system:masters\""),
        "{message}"
    );
}

#[test]
fn hostile_requests_that_were_once_signed_are_refused() {
    let dev_team = under_ca_policy(IssuancePolicy {
        allowed_profiles: vec![Profile::Client],
        allowed_organizations: strings(&["dev-team"]),
        ..Default::default()
    });
    let shipped_cluster_ca = under_ca_policy(IssuancePolicy {
        allowed_profiles: vec![Profile::KubeApiserver, Profile::Admin, Profile::Server],
        allowed_dns_names: strings(&[
            "cp-1",
            "kubernetes",
            "kubernetes.default",
            ".svc",
            ".cluster.local",
        ]),
        ..Default::default()
    });
    let default = under(Rules::default_open());
    let patterns = under(
        Rules::of_policy(&policy(
            "patterns",
            &["ca"],
            AllowedIdentity {
                common_names: strings(&["*"]),
                organizations: strings(&["system:*", "*"]),
                dns_names: strings(&["*"]),
                profiles: vec![Profile::Client],
                ..Default::default()
            },
        ))
        .expect("rules"),
    );
    let node_profiles = under_ca_policy(IssuancePolicy {
        allowed_profiles: vec![Profile::KubeletClient, Profile::EtcdServer],
        ..Default::default()
    });
    let broad = under(
        Rules::of_policy(&policy(
            "broad",
            &["ca"],
            AllowedIdentity {
                common_names: strings(&["*"]),
                ip_addresses: strings(&["10.0.0.0/8"]),
                profiles: vec![Profile::Server],
                ..Default::default()
            },
        ))
        .expect("rules"),
    );
    let listing_privileged = under_ca_policy(IssuancePolicy {
        allowed_organizations: strings(&["system:masters"]),
        allowed_dns_names: strings(&["kubernetes.default"]),
        ..Default::default()
    });
    let client = |cn: &str, orgs: &[&str]| {
        spec(|s| {
            s.profile = Some(Profile::Client);
            s.common_name = Some(cn.into());
            s.organizations = strings(orgs);
        })
    };
    let server_names = |names: &[&str]| {
        spec(|s| {
            s.profile = Some(Profile::Server);
            s.dns_names = strings(names);
        })
    };
    type Decides<'a> = &'a dyn Fn(&ClusterCertificateSpec) -> Result<(), Refusal>;
    let cases: Vec<(&str, Decides, ClusterCertificateSpec, &str)> = vec![
        (
            "system:masters listed exactly in a CA's own spec.policy",
            &listing_privileged,
            client("eve", &["system:masters"]),
            "system:masters",
        ),
        (
            "the API server's name listed exactly in a CA's own spec.policy",
            &listing_privileged,
            server_names(&["kubernetes.default"]),
            "kubernetes.default",
        ),
        (
            "client profile + system:masters under a dev-team policy",
            &dev_team,
            client("eve", &["system:masters"]),
            "system:masters",
        ),
        (
            "server profile + system:masters under the shipped cluster CA",
            &shipped_cluster_ca,
            spec(|s| {
                s.profile = Some(Profile::Server);
                s.common_name = Some("eve".into());
                s.organizations = strings(&["system:masters"]);
                s.dns_names = strings(&["eve.svc"]);
            }),
            "system:masters",
        ),
        (
            "kubeadm:cluster-admins with no policy",
            &default,
            client("eve", &["kubeadm:cluster-admins"]),
            "kubeadm:cluster-admins",
        ),
        (
            "a component's user name under a dev-team policy",
            &dev_team,
            client("system:kube-controller-manager", &["dev-team"]),
            "system:kube-controller-manager",
        ),
        (
            "kubernetes-admin with no policy",
            &default,
            client("kubernetes-admin", &[]),
            "kubernetes-admin",
        ),
        (
            "the API server's Service name through .svc",
            &shipped_cluster_ca,
            server_names(&["kubernetes.default.svc"]),
            "kubernetes.default.svc",
        ),
        (
            "a wildcard over the API server's names",
            &shipped_cluster_ca,
            server_names(&["*.default.svc.cluster.local"]),
            "*.default.svc.cluster.local",
        ),
        (
            "system:masters through a pattern",
            &patterns,
            client("eve", &["system:masters"]),
            "system:masters",
        ),
        (
            "system: user through a pattern",
            &patterns,
            client("system:node:n1", &[]),
            "system:node:n1",
        ),
        (
            "the super-admin profile with no policy",
            &default,
            spec(|s| s.profile = Some(Profile::SuperAdmin)),
            "kubernetes-super-admin",
        ),
        (
            "any node's identity through a CA policy that lists kubelet-client",
            &node_profiles,
            spec(|s| {
                s.profile = Some(Profile::KubeletClient);
                s.node_name = Some("victim".into());
            }),
            "system:node:victim",
        ),
        (
            "a component's user name as an etcd node name (etcd-server signs client auth)",
            &node_profiles,
            spec(|s| {
                s.profile = Some(Profile::EtcdServer);
                s.node_name = Some("kube-apiserver-kubelet-client".into());
            }),
            "kube-apiserver-kubelet-client",
        ),
        (
            "the API server's Service IP with no policy",
            &default,
            spec(|s| {
                s.profile = Some(Profile::Server);
                s.common_name = Some("eve".into());
                s.ip_addresses = strings(&["10.96.0.1"]);
            }),
            "10.96.0.1",
        ),
        (
            "the API server's Service IP as an IPv4-mapped IPv6 address",
            &default,
            spec(|s| {
                s.common_name = Some("eve".into());
                s.ip_addresses = strings(&["::ffff:10.96.0.1"]);
            }),
            "::ffff:10.96.0.1",
        ),
        (
            "the API server's Service IP through a broad CIDR",
            &broad,
            spec(|s| {
                s.profile = Some(Profile::Server);
                s.common_name = Some("eve".into());
                s.ip_addresses = strings(&["10.96.0.1"]);
            }),
            "10.96.0.1",
        ),
        (
            "a request without a profile under a policy for server certificates",
            &broad,
            spec(|s| {
                s.common_name = Some("eve".into());
                s.usages = vec![KeyUsage::DigitalSignature, KeyUsage::ClientAuth];
            }),
            "",
        ),
    ];
    for (name, decides, s, value) in cases {
        let got = decides(&s);
        assert!(
            got.as_ref().is_err_and(|r| r.value == value),
            "{name}: {got:?}"
        );
    }
}

#[test]
fn a_certificate_is_signed_only_under_the_policy_it_names_while_the_guard_holds() {
    let team = policy(
        "team-a",
        &["ca"],
        AllowedIdentity {
            common_names: strings(&["bot"]),
            ..Default::default()
        },
    );
    let other = policy(
        "other-ca",
        &["elsewhere"],
        AllowedIdentity {
            common_names: strings(&["bot"]),
            ..Default::default()
        },
    );
    let all = vec![team, other];
    let s = spec(|s| s.common_name = Some("bot".into()));
    let t = template(&s);
    let ips = api_server_ips();
    let ca = authority("ca", None, &ips);
    let authorize =
        |ca: Authority,
         all: &[Arc<CertificatePolicy>],
         r: Option<&str>,
         guard: Result<(), &str>| { authorize_certificate(ca, all, r, guard, None, &t) };
    assert_eq!(authorize(ca, &all, Some("team-a"), Ok(())), Ok(()));
    assert!(matches!(
        authorize(ca, &all, None, Ok(())),
        Err(Denial::PolicyRequired { .. })
    ));
    assert!(matches!(
        authorize(ca, &all, Some("nope"), Ok(())),
        Err(Denial::PolicyNotFound(_))
    ));
    assert!(matches!(
        authorize(ca, &all, Some("other-ca"), Ok(())),
        Err(Denial::PolicyNotForAuthority { .. })
    ));
    assert!(matches!(
        authorize(ca, &all, Some("team-a"), Err("gone")),
        Err(Denial::GuardNotInForce(_))
    ));
    // A CA no policy governs signs ordinary names without one.
    let free = authority("free", None, &ips);
    assert_eq!(authorize(free, &all, None, Err("gone")), Ok(()));
    // ...unless it requires a policy: then nothing without one, even when
    // its last policy is deleted.
    let required = Authority {
        require_policy: true,
        ..free
    };
    assert!(matches!(
        authorize(required, &all, None, Ok(())),
        Err(Denial::NoGoverningPolicy(_))
    ));
    assert!(matches!(
        authorize_signing_request(required, &all, &BTreeSet::new(), "alice", &t),
        Err(Denial::NoGoverningPolicy(_))
    ));
    // A CA's own spec.policy bounds even a request under a policy.
    let strict = IssuancePolicy {
        max_duration: Some("1h".parse().expect("d")),
        ..Default::default()
    };
    let ceiling = authority("ca", Some(&strict), &ips);
    assert!(
        matches!(authorize(ceiling, &all, Some("team-a"), Ok(())), Err(Denial::Refused(r)) if r.field == Field::Duration)
    );
}

#[test]
fn a_csr_is_signed_under_a_policy_its_requester_may_use_with_its_lifetime_capped() {
    let csr_template = |cn: &str, orgs: &[&str], hours: i64| LeafTemplate {
        common_name: Some(cn.into()),
        organizations: strings(orgs),
        dns_names: Vec::new(),
        ip_addresses: Vec::new(),
        uris: Vec::new(),
        usages: [KeyUsage::DigitalSignature, KeyUsage::ClientAuth]
            .into_iter()
            .collect(),
        key_algorithm: KeyAlgorithm::EcdsaP256,
        lifetime: chrono::Duration::hours(hours),
        crl_distribution_point: None,
    };
    let team = policy(
        "team-a",
        &["etcd"],
        AllowedIdentity {
            common_names: strings(&["bot"]),
            max_duration: Some("2h".parse().expect("d")),
            ..Default::default()
        },
    );
    let all = vec![team];
    let ips = api_server_ips();
    let etcd = authority("etcd", None, &ips);
    let usable: BTreeSet<String> = ["team-a".to_string()].into();
    let none = BTreeSet::new();
    let signed =
        authorize_signing_request(etcd, &all, &usable, "alice", &csr_template("bot", &[], 24))
            .expect("signed");
    assert_eq!(
        signed.lifetime,
        chrono::Duration::hours(2),
        "capped, not failed"
    );
    let refused =
        authorize_signing_request(etcd, &all, &none, "mallory", &csr_template("bot", &[], 1));
    assert!(
        matches!(&refused, Err(Denial::NoUsablePolicy { tried, .. }) if tried.contains("mallory may not use it")),
        "{refused:?}"
    );
    assert!(
        authorize_signing_request(etcd, &all, &usable, "alice", &csr_template("root", &[], 1))
            .is_err()
    );
    // A CA's spec.policy that lists profiles signs no CSR (a CSR has none):
    // the etcd CA once signed CN=root this way.
    let etcd_policy = IssuancePolicy {
        allowed_profiles: vec![Profile::EtcdServer],
        max_duration: Some("1h".parse().expect("d")),
        ..Default::default()
    };
    let legacy = authority("legacy", Some(&etcd_policy), &ips);
    let got =
        authorize_signing_request(legacy, &[], &none, "alice", &csr_template("root", &[], 24));
    assert!(
        matches!(&got, Err(Denial::Refused(r)) if r.field == Field::Profile),
        "{got:?}"
    );
    // Without profiles, its maxDuration caps a CSR instead of failing it.
    let capped = IssuancePolicy {
        max_duration: Some("1h".parse().expect("d")),
        ..Default::default()
    };
    let t = authorize_signing_request(
        authority("legacy", Some(&capped), &ips),
        &[],
        &none,
        "alice",
        &csr_template("robot", &[], 24),
    )
    .expect("signed");
    assert_eq!(t.lifetime, chrono::Duration::hours(1));
    // No policy at all: privileged identities are refused on this path too.
    let free = authority("free", None, &ips);
    assert!(
        authorize_signing_request(
            free,
            &[],
            &none,
            "alice",
            &csr_template("eve", &["system:masters"], 1)
        )
        .is_err()
    );
    assert!(
        authorize_signing_request(
            free,
            &[],
            &none,
            "alice",
            &csr_template("robot", &["robots"], 1)
        )
        .is_ok()
    );
}

/// A policy certop cannot use says which policy and field to fix.
#[test]
fn a_policy_certop_cannot_use_names_the_policy_and_the_field() {
    fn refusal(r: Result<Rules, impl std::fmt::Display>) -> String {
        match r {
            Ok(_) => panic!("accepted"),
            Err(e) => e.to_string(),
        }
    }
    let p = policy(
        "team-a",
        &["ca"],
        AllowedIdentity {
            ip_addresses: strings(&["10.0.0.1"]),
            ..Default::default()
        },
    );
    assert_eq!(
        refusal(Rules::of_policy(&p)),
        "CertificatePolicy team-a: allowed.ipAddresses: \"10.0.0.1\" is not a CIDR such as 10.0.0.0/8, 10.1.2.3/32 or fd00::/64"
    );
    let too_long: crate::api::GoDuration =
        serde_json::from_value(serde_json::json!("900000h")).expect("text");
    let p = policy(
        "team-b",
        &["ca"],
        AllowedIdentity {
            max_duration: Some(too_long.clone()),
            ..Default::default()
        },
    );
    let why = match too_long.to_chrono() {
        Ok(_) => panic!("too long"),
        Err(e) => e.to_string(),
    };
    assert_eq!(
        refusal(Rules::of_policy(&p)),
        format!("CertificatePolicy team-b: allowed.maxDuration: {why}")
    );
    let ceiling = IssuancePolicy {
        max_duration: Some(too_long),
        ..Default::default()
    };
    assert_eq!(
        refusal(Rules::of_ca_policy("ca", &ceiling)),
        format!("the CA's spec.policy.maxDuration: {why}")
    );
}
