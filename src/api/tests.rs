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
