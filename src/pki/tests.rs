//! Unit tests of the PKI core: every profile, issuance, CA creation and
//! adoption, CRLs, and the error paths. Results are checked by parsing the
//! DER back with x509-parser, not by trusting what was asked for.

use std::collections::BTreeSet;
use std::net::IpAddr;

use chrono::{DateTime, Duration, TimeZone, Utc};
use x509_parser::prelude::*;

use super::*;
use crate::api::{
    ClusterCertificateSpec, IssuerRef, KeyAlgorithm, KeyUsage, PrivateKeySettings, Profile,
};

const KUBEADM_CA_CRT: &[u8] = include_bytes!("../../tests/fixtures/kubeadm-ca/ca.crt");
const KUBEADM_CA_KEY: &[u8] = include_bytes!("../../tests/fixtures/kubeadm-ca/ca.key");

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 23, 12, 0, 0)
        .single()
        .expect("valid date")
}

fn ca() -> Authority {
    Authority::create(&CaRequest::new("test CA"), now()).expect("create CA")
}

fn spec(profile: Option<Profile>) -> ClusterCertificateSpec {
    ClusterCertificateSpec {
        issuer_ref: IssuerRef {
            name: "cluster".into(),
        },
        secret_name: "s".into(),
        secret_namespace: "default".into(),
        profile,
        node_name: Some("cp-1".into()),
        ..Default::default()
    }
}

fn issue_spec(spec: &ClusterCertificateSpec, ca: &Authority) -> IssuedCertificate {
    let template = LeafTemplate::from_spec(spec).expect("valid spec");
    let key = PrivateKey::generate(template.key_algorithm).expect("key");
    issue(&template, &key, ca, now()).expect("issue")
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip")
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

struct Expected {
    profile: Profile,
    cn: &'static str,
    o: &'static [&'static str],
    eku: &'static [KeyUsage],
    dns: &'static [&'static str],
    ips: &'static [&'static str],
}

#[test]
fn every_profile_issues_what_the_component_expects() {
    use KeyUsage::{ClientAuth, ServerAuth};
    let ca = ca();
    let table = [
        Expected {
            profile: Profile::KubeApiserver,
            cn: "kube-apiserver",
            o: &[],
            eku: &[ServerAuth],
            dns: &[
                "cp-1",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
            ],
            ips: &["10.96.0.1", "192.0.2.10"],
        },
        Expected {
            profile: Profile::KubeApiserverKubeletClient,
            cn: "kube-apiserver-kubelet-client",
            o: &[],
            eku: &[ClientAuth],
            dns: &[],
            ips: &[],
        },
        Expected {
            profile: Profile::KubeApiserverEtcdClient,
            cn: "kube-apiserver-etcd-client",
            o: &[],
            eku: &[ClientAuth],
            dns: &[],
            ips: &[],
        },
        Expected {
            profile: Profile::FrontProxyClient,
            cn: "front-proxy-client",
            o: &[],
            eku: &[ClientAuth],
            dns: &[],
            ips: &[],
        },
        Expected {
            profile: Profile::EtcdServer,
            cn: "cp-1",
            o: &[],
            eku: &[ServerAuth, ClientAuth],
            dns: &["cp-1", "localhost"],
            ips: &["192.0.2.10", "127.0.0.1", "::1"],
        },
        Expected {
            profile: Profile::EtcdPeer,
            cn: "cp-1",
            o: &[],
            eku: &[ServerAuth, ClientAuth],
            dns: &["cp-1", "localhost"],
            ips: &["192.0.2.10", "127.0.0.1", "::1"],
        },
        Expected {
            profile: Profile::EtcdHealthcheckClient,
            cn: "kube-etcd-healthcheck-client",
            o: &[],
            eku: &[ClientAuth],
            dns: &[],
            ips: &[],
        },
        Expected {
            profile: Profile::Admin,
            cn: "kubernetes-admin",
            o: &["kubeadm:cluster-admins"],
            eku: &[ClientAuth],
            dns: &[],
            ips: &[],
        },
        Expected {
            profile: Profile::SuperAdmin,
            cn: "kubernetes-super-admin",
            o: &["system:masters"],
            eku: &[ClientAuth],
            dns: &[],
            ips: &[],
        },
        Expected {
            profile: Profile::ControllerManager,
            cn: "system:kube-controller-manager",
            o: &[],
            eku: &[ClientAuth],
            dns: &[],
            ips: &[],
        },
        Expected {
            profile: Profile::Scheduler,
            cn: "system:kube-scheduler",
            o: &[],
            eku: &[ClientAuth],
            dns: &[],
            ips: &[],
        },
        Expected {
            profile: Profile::KubeletClient,
            cn: "system:node:cp-1",
            o: &["system:nodes"],
            eku: &[ClientAuth],
            dns: &[],
            ips: &[],
        },
        Expected {
            profile: Profile::KubeletServing,
            cn: "system:node:cp-1",
            o: &["system:nodes"],
            eku: &[ServerAuth],
            dns: &["cp-1"],
            ips: &["192.0.2.10"],
        },
    ];
    for row in table {
        let mut s = spec(Some(row.profile));
        if !row.ips.is_empty() {
            s.advertise_address = Some("192.0.2.10".into());
        }
        let issued = issue_spec(&s, &ca);
        let c = &issued.certificate;
        let name = profile_name(row.profile);
        assert_eq!(c.common_name.as_deref(), Some(row.cn), "{name}: CN");
        assert_eq!(c.organizations, strings(row.o), "{name}: O");
        let mut usages: BTreeSet<KeyUsage> = row.eku.iter().copied().collect();
        usages.insert(KeyUsage::DigitalSignature);
        assert_eq!(c.usages, usages, "{name}: usages");
        assert_eq!(c.dns_names, strings(row.dns), "{name}: DNS SANs");
        let ips: Vec<IpAddr> = row.ips.iter().map(|s| ip(s)).collect();
        assert_eq!(c.ip_addresses, ips, "{name}: IP SANs");
        assert!(!c.is_ca, "{name}: must not be a CA");
        assert!(c.is_issued_by(ca.certificate()), "{name}: signature");
    }
}

#[test]
fn server_and_client_profiles_take_their_subject_from_the_spec() {
    let ca = ca();
    let mut s = spec(Some(Profile::Server));
    s.common_name = Some("web".into());
    s.organizations = strings(&["acme"]);
    s.dns_names = strings(&["web.example.com", "*.web.example.com"]);
    s.ip_addresses = strings(&["2001:db8::1"]);
    s.uris = strings(&["spiffe://cluster.local/ns/default/sa/web"]);
    let c = issue_spec(&s, &ca).certificate;
    assert_eq!(c.common_name.as_deref(), Some("web"));
    assert_eq!(c.organizations, strings(&["acme"]));
    assert_eq!(
        c.dns_names,
        strings(&["web.example.com", "*.web.example.com"])
    );
    assert_eq!(c.ip_addresses, vec![ip("2001:db8::1")]);
    assert_eq!(
        c.uris,
        strings(&["spiffe://cluster.local/ns/default/sa/web"])
    );
    assert_eq!(
        c.usages,
        BTreeSet::from([KeyUsage::DigitalSignature, KeyUsage::ServerAuth])
    );

    s.profile = Some(Profile::Client);
    let c = issue_spec(&s, &ca).certificate;
    assert_eq!(
        c.usages,
        BTreeSet::from([KeyUsage::DigitalSignature, KeyUsage::ClientAuth])
    );
}

#[test]
fn kube_apiserver_profile_follows_service_cidr_and_dns_domain() {
    let mut s = spec(Some(Profile::KubeApiserver));
    s.service_cidr = Some("10.0.0.0/24".into());
    s.dns_domain = Some("corp.internal".into());
    s.dns_names = strings(&["kubernetes", "api.corp.example"]);
    let t = LeafTemplate::from_spec(&s).expect("valid");
    assert_eq!(t.ip_addresses, vec![ip("10.0.0.1")]);
    assert!(
        t.dns_names
            .contains(&"kubernetes.default.svc.corp.internal".to_string())
    );
    assert_eq!(
        t.dns_names.iter().filter(|n| *n == "kubernetes").count(),
        1,
        "extras are de-duplicated"
    );
    assert_eq!(
        t.dns_names.last().map(String::as_str),
        Some("api.corp.example")
    );

    s.service_cidr = Some("fd00:10:96::/112".into());
    let t = LeafTemplate::from_spec(&s).expect("valid");
    assert_eq!(t.ip_addresses, vec![ip("fd00:10:96::1")]);
}

#[test]
fn rsa_leaves_get_key_encipherment_and_ec_leaves_do_not() {
    let ca = ca();
    let mut s = spec(Some(Profile::Server));
    s.dns_names = strings(&["a.example.com"]);
    s.private_key = Some(PrivateKeySettings {
        algorithm: Some(KeyAlgorithm::Rsa2048),
        rotation_policy: None,
    });
    let c = issue_spec(&s, &ca).certificate;
    assert!(c.usages.contains(&KeyUsage::KeyEncipherment));
    assert_eq!(c.key_algorithm, Some(KeyAlgorithm::Rsa2048));

    s.private_key = None;
    let c = issue_spec(&s, &ca).certificate;
    assert!(!c.usages.contains(&KeyUsage::KeyEncipherment));
}

#[test]
fn invalid_specs_are_refused_with_a_message_that_says_what_to_fix() {
    let cases: Vec<(&str, SpecEdit, &str)> = vec![
        (
            "fixed CN overridden",
            Box::new(|s| {
                s.profile = Some(Profile::Admin);
                s.common_name = Some("root".into())
            }),
            "remove commonName",
        ),
        (
            "fixed O overridden",
            Box::new(|s| {
                s.profile = Some(Profile::Admin);
                s.organizations = strings(&["system:masters"])
            }),
            "remove organizations",
        ),
        (
            "usages with a profile",
            Box::new(|s| {
                s.profile = Some(Profile::Admin);
                s.usages = vec![KeyUsage::ServerAuth]
            }),
            "remove usages",
        ),
        (
            "SANs on a client profile",
            Box::new(|s| {
                s.profile = Some(Profile::Scheduler);
                s.dns_names = strings(&["x.example.com"])
            }),
            "takes no dnsNames",
        ),
        (
            "node profile without node",
            Box::new(|s| {
                s.profile = Some(Profile::EtcdPeer);
                s.node_name = None
            }),
            "set nodeName",
        ),
        (
            "upper-case DNS name",
            Box::new(|s| s.dns_names = strings(&["Web.example.com"])),
            "lower-case DNS name",
        ),
        (
            "bad IP",
            Box::new(|s| s.ip_addresses = strings(&["10.0.0.300"])),
            "not an IPv4 or IPv6",
        ),
        (
            "relative URI",
            Box::new(|s| s.uris = strings(&["/just/a/path"])),
            "absolute URI",
        ),
        (
            "EC key enciphering",
            Box::new(|s| {
                s.common_name = Some("x".into());
                s.usages = vec![KeyUsage::KeyEncipherment]
            }),
            "needs an RSA key",
        ),
        (
            "CN too long",
            Box::new(|s| {
                s.profile = Some(Profile::KubeletClient);
                s.node_name = Some("n".repeat(60))
            }),
            "X.509 allows 64",
        ),
        ("no names at all", Box::new(|_| {}), "at least one of"),
        (
            "bad service CIDR",
            Box::new(|s| {
                s.profile = Some(Profile::KubeApiserver);
                s.service_cidr = Some("10.0.0.0".into())
            }),
            "serviceCIDR",
        ),
        (
            "renewBefore >= duration",
            Box::new(|s| {
                s.common_name = Some("x".into());
                s.duration = Some("1h".parse().expect("d"));
                s.renew_before = Some("2h".parse().expect("d"))
            }),
            "renewBefore must be shorter",
        ),
        (
            "both renewal settings",
            Box::new(|s| {
                s.common_name = Some("x".into());
                s.renew_before = Some("1h".parse().expect("d"));
                s.renew_before_percentage = Some(10)
            }),
            "at most one",
        ),
        (
            "percentage out of range",
            Box::new(|s| {
                s.common_name = Some("x".into());
                s.renew_before_percentage = Some(100)
            }),
            "between 1 and 99",
        ),
        (
            "duration too short",
            Box::new(|s| {
                s.common_name = Some("x".into());
                s.duration = Some("30s".parse().expect("d"))
            }),
            "at least 1m",
        ),
        (
            "advertise address not an IP",
            Box::new(|s| {
                s.profile = Some(Profile::EtcdServer);
                s.advertise_address = Some("node-1".into())
            }),
            "advertiseAddress",
        ),
        (
            "bad DNS domain",
            Box::new(|s| {
                s.profile = Some(Profile::KubeApiserver);
                s.dns_domain = Some("Cluster_Local".into())
            }),
            "dnsDomain",
        ),
        (
            "bad node name",
            Box::new(|s| {
                s.profile = Some(Profile::KubeletServing);
                s.node_name = Some("Node_1".into())
            }),
            "nodeName",
        ),
        (
            "EC key data encipherment",
            Box::new(|s| {
                s.common_name = Some("x".into());
                s.usages = vec![KeyUsage::DataEncipherment]
            }),
            "needs an RSA key",
        ),
        (
            "kubelet-client organizations overridden",
            Box::new(|s| {
                s.profile = Some(Profile::KubeletClient);
                s.organizations = strings(&["system:masters"])
            }),
            "remove organizations",
        ),
        (
            "IP SAN on a client profile",
            Box::new(|s| {
                s.profile = Some(Profile::Admin);
                s.ip_addresses = strings(&["10.0.0.1"])
            }),
            "takes no dnsNames, ipAddresses or uris",
        ),
        (
            "URI SAN on a client profile",
            Box::new(|s| {
                s.profile = Some(Profile::FrontProxyClient);
                s.uris = strings(&["spiffe://x/y"])
            }),
            "takes no dnsNames, ipAddresses or uris",
        ),
        (
            "kubelet-serving without node",
            Box::new(|s| {
                s.profile = Some(Profile::KubeletServing);
                s.node_name = None
            }),
            "set nodeName",
        ),
        (
            "super-admin CN overridden",
            Box::new(|s| {
                s.profile = Some(Profile::SuperAdmin);
                s.common_name = Some("kubernetes-admin".into())
            }),
            "remove commonName",
        ),
    ];
    assert!(cases.len() >= 20, "a table of at least 20 refusals");
    for (name, mutate, expected) in cases {
        let mut s = spec(None);
        s.node_name = Some("cp-1".into());
        mutate(&mut s);
        let err = LeafTemplate::from_spec(&s).expect_err(name).to_string();
        assert!(
            err.contains(expected),
            "{name}: {err:?} should mention {expected:?}"
        );
    }
}

#[test]
fn issued_certificates_carry_aki_random_serial_and_crl_distribution_point() {
    let ca = ca();
    let mut t = LeafTemplate::from_spec(&spec(Some(Profile::Admin))).expect("valid");
    t.crl_distribution_point = Some("http://certop.certop-system.svc/crl/cluster.crl".into());
    let key = PrivateKey::generate(t.key_algorithm).expect("key");
    let a = issue(&t, &key, &ca, now()).expect("issue");
    let b = issue(&t, &key, &ca, now()).expect("issue");
    assert_ne!(
        a.certificate.serial, b.certificate.serial,
        "serials are random even for the same key"
    );
    assert_eq!(a.certificate.serial.as_bytes().len(), 16);
    assert_eq!(
        a.certificate.authority_key_id,
        ca.certificate().subject_key_id
    );
    assert!(a.certificate.authority_key_id.is_some());
    assert_eq!(
        a.certificate.crl_distribution_points,
        vec![t.crl_distribution_point.clone().expect("set")]
    );
    assert!(key_matches_certificate(&key, &a.certificate));
    assert_eq!(
        a.certificate.not_before,
        now() - crate::pki::BACKDATE,
        "backdated 5 minutes, as kubeadm and the Kubernetes signer do"
    );
    assert_eq!(a.certificate.not_after, now() + Duration::days(90));
    let chain = parse_chain(a.chain_pem.as_bytes(), "chain").expect("chain parses");
    assert_eq!(chain.len(), 2);
    assert_eq!(chain[1].der, ca.certificate().der);
}

#[test]
fn not_after_never_passes_the_ca() {
    let short = CaRequest {
        lifetime: Duration::days(30),
        ..CaRequest::new("short CA")
    };
    let ca = Authority::create(&short, now()).expect("CA");
    let issued = issue_spec(&spec(Some(Profile::Admin)), &ca);
    assert!(issued.clamped_to_ca);
    assert_eq!(issued.certificate.not_after, ca.certificate().not_after);
}

#[test]
fn ca_of_every_algorithm_is_a_proper_ca() {
    for alg in KeyAlgorithm::ALL {
        let req = CaRequest {
            algorithm: alg,
            organizations: strings(&["certop"]),
            ..CaRequest::new("alg CA")
        };
        let ca = Authority::create(&req, now()).expect("create");
        let der = ca.certificate().der.clone();
        let (_, x509) = X509Certificate::from_der(&der).expect("parse");
        let bc = x509.basic_constraints().expect("bc").expect("present");
        assert!(
            bc.critical && bc.value.ca,
            "{alg}: basicConstraints CA critical"
        );
        let ku = x509.key_usage().expect("ku").expect("present");
        assert!(
            ku.value.key_cert_sign() && ku.value.crl_sign() && ku.value.digital_signature(),
            "{alg}: keyUsage"
        );
        assert!(ca.certificate().subject_key_id.is_some(), "{alg}: SKI");
        assert_eq!(
            ca.certificate().not_after - ca.certificate().not_before,
            Duration::hours(87_600) + crate::pki::BACKDATE,
            "{alg}: ten years from issuance, notBefore backdated as kubeadm does"
        );
        assert_eq!(ca.certificate().key_algorithm, Some(alg));
        assert!(
            x509.verify_signature(None).is_ok(),
            "{alg}: self-signature verifies"
        );
        let reloaded = Authority::load(
            ca.certificate_pem().as_bytes(),
            ca.key_pem().as_bytes(),
            now(),
        )
        .expect("reload");
        assert_eq!(reloaded.certificate().der, der);
    }
}

#[test]
fn a_kubeadm_ca_with_a_pkcs1_rsa_key_is_adopted_and_signs() {
    // The fixture was made on the day this test was written; load it as of now.
    let ca = Authority::load(KUBEADM_CA_CRT, KUBEADM_CA_KEY, Utc::now()).expect("adopt kubeadm CA");
    assert_eq!(ca.algorithm(), KeyAlgorithm::Rsa2048);
    assert_eq!(ca.certificate().common_name.as_deref(), Some("kubernetes"));
    let template = LeafTemplate::from_spec(&spec(Some(Profile::KubeApiserver))).expect("valid");
    let key = PrivateKey::generate(template.key_algorithm).expect("key");
    let issued = issue(&template, &key, &ca, Utc::now()).expect("issue");
    assert!(issued.certificate.is_issued_by(ca.certificate()));
    assert_eq!(
        issued.certificate.authority_key_id,
        ca.certificate().subject_key_id
    );
    // kubeadm's CA has no cRLSign: a CRL is refused with a reason, not signed wrongly.
    let err = build_crl(
        &ca,
        &CrlRequest {
            number: 1,
            this_update: Utc::now(),
            next_update: Utc::now() + Duration::days(1),
            entries: &[],
        },
    )
    .expect_err("no cRLSign");
    assert!(err.to_string().contains("cRLSign"), "{err}");
}

#[test]
fn loading_a_ca_refuses_what_cannot_sign() {
    let ca = ca();
    let leaf = issue_spec(&spec(Some(Profile::Admin)), &ca);
    let leaf_key_pem = PrivateKey::generate(KeyAlgorithm::EcdsaP256)
        .expect("key")
        .to_pem();
    let other = Authority::create(&CaRequest::new("other"), now()).expect("other CA");
    // (case, CA certificate PEM, CA key PEM, clock, expected error)
    type LoadCase = (&'static str, Vec<u8>, Vec<u8>, DateTime<Utc>, &'static str);
    let cases: Vec<LoadCase> = vec![
        (
            "leaf as CA",
            leaf.certificate.to_pem().into_bytes(),
            leaf_key_pem.clone().into_bytes(),
            now(),
            "is not a CA",
        ),
        (
            "key of another CA",
            ca.certificate_pem().as_bytes().to_vec(),
            other.key_pem().into_bytes(),
            now(),
            "does not match",
        ),
        (
            "expired",
            ca.certificate_pem().as_bytes().to_vec(),
            ca.key_pem().into_bytes(),
            now() + Duration::days(3651),
            "expired",
        ),
        (
            "not yet valid",
            ca.certificate_pem().as_bytes().to_vec(),
            ca.key_pem().into_bytes(),
            now() - Duration::days(1),
            "not valid before",
        ),
        (
            "garbage certificate",
            b"hello".to_vec(),
            ca.key_pem().into_bytes(),
            now(),
            "no PEM certificate",
        ),
        (
            "garbage key",
            ca.certificate_pem().as_bytes().to_vec(),
            b"hello".to_vec(),
            now(),
            "cannot parse the private key",
        ),
    ];
    for (name, cert, key, at, expected) in cases {
        let err = Authority::load(&cert, &key, at)
            .expect_err(name)
            .to_string();
        assert!(
            err.contains(expected),
            "{name}: {err:?} should mention {expected:?}"
        );
        assert!(
            !err.contains("PRIVATE KEY"),
            "{name}: error must not contain key material"
        );
    }
}

#[test]
fn crl_lists_live_revocations_with_number_dates_reasons_and_aki() {
    let ca = ca();
    let entry = |reason, days_left: i64| RevokedEntry {
        serial: SerialNumber::random().expect("rng"),
        revoked_at: now() - Duration::hours(1),
        reason,
        not_after: now() + Duration::days(days_left),
    };
    let entries = vec![
        entry(RevocationReason::KeyCompromise, 10),
        entry(RevocationReason::Superseded, 1),
        entry(RevocationReason::Unspecified, 5),
        entry(RevocationReason::CessationOfOperation, -1),
    ];
    let request = CrlRequest {
        number: 42,
        this_update: now(),
        next_update: now() + Duration::hours(24),
        entries: &entries,
    };
    let crl = build_crl(&ca, &request).expect("sign CRL");
    assert_eq!(
        crl.entry_count, 3,
        "the expired certificate's entry is left out"
    );
    let (_, parsed) = CertificateRevocationList::from_der(&crl.der).expect("parse CRL");
    assert_eq!(
        parsed.crl_number().map(|n| n.to_string()),
        Some("42".to_string())
    );
    assert_eq!(parsed.last_update().timestamp(), now().timestamp());
    assert_eq!(
        parsed.next_update().map(|t| t.timestamp()),
        Some((now() + Duration::hours(24)).timestamp())
    );
    let (_, ca_x509) = X509Certificate::from_der(&ca.certificate().der).expect("ca");
    assert!(
        parsed.verify_signature(ca_x509.public_key()).is_ok(),
        "signed by the CA"
    );
    let aki = parsed
        .extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::AuthorityKeyIdentifier(aki) => {
                aki.key_identifier.as_ref().map(|k| k.0.to_vec())
            }
            _ => None,
        });
    assert_eq!(aki, ca.certificate().subject_key_id);
    let listed: Vec<(Vec<u8>, Option<u8>)> = parsed
        .iter_revoked_certificates()
        .map(|r| {
            (
                SerialNumber::from_bytes(r.raw_serial()).as_bytes().to_vec(),
                r.reason_code().map(|(_, c)| c.0),
            )
        })
        .collect();
    assert_eq!(
        listed,
        vec![
            (entries[0].serial.as_bytes().to_vec(), Some(1)),
            (entries[1].serial.as_bytes().to_vec(), Some(4)),
            (entries[2].serial.as_bytes().to_vec(), None),
        ]
    );
    let bad = CrlRequest {
        next_update: now(),
        ..request
    };
    assert!(
        build_crl(&ca, &bad).is_err(),
        "nextUpdate must follow thisUpdate"
    );
}

/// A change to a valid spec, for table tests of refusals.
type SpecEdit = Box<dyn Fn(&mut ClusterCertificateSpec)>;

#[test]
fn the_issued_lifetime_survives_the_backdate_and_an_issuers_clock_slack() {
    let nb = now();
    let h = Duration::hours;
    let m = Duration::minutes;
    let s = Duration::seconds;
    let cases = [
        ("certop or kubeadm, exact", h(8760) + m(5), h(8760)),
        (
            "kubeadm's kubeconfig, 1 s over",
            h(8760) + m(5) + s(1),
            h(8760),
        ),
        (
            "kubeadm's kubeconfig, 2 s over",
            h(8760) + m(5) + s(2),
            h(8760),
        ),
        ("minutes, backdated", m(95), m(90)),
        ("minutes, backdated, 1 s over", m(95) + s(1), m(90)),
        ("whole hours: before certop backdated", h(24), h(24)),
        ("shorter than the backdate", m(3), m(3)),
        ("odd seconds, backdated", m(5) + s(100), s(100)),
        ("a few seconds, backdated", m(5) + s(8), s(8)),
    ];
    for (name, span, lifetime) in cases {
        assert_eq!(super::issued_lifetime(nb, nb + span), lifetime, "{name}");
    }
}
