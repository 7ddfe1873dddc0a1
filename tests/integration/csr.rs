//! The CSR API (`certificates.k8s.io/v1`) with the real API server: CSRs are
//! created by nodes (impersonated), approved or denied, and signed by
//! certop; the results are checked with openssl.

use std::process::Command;
use std::time::Duration;

use base64::Engine;
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, SanType};

use crate::objects::*;
use crate::support::{
    ControlPlane, KUBELET_CA, control_plane, operator, stderr, stdout, unique, wait_for,
};

pub fn csr_pem(cn: &str, orgs: &[&str], dns: &[&str], ips: &[&str]) -> String {
    let mut sans: Vec<SanType> = dns
        .iter()
        .map(|d| SanType::DnsName((*d).try_into().expect("ia5")))
        .collect();
    sans.extend(
        ips.iter()
            .map(|ip| SanType::IpAddress(ip.parse().expect("ip"))),
    );
    csr_pem_with(cn, orgs, sans)
}

fn csr_pem_with(cn: &str, orgs: &[&str], sans: Vec<SanType>) -> String {
    let key = KeyPair::generate().expect("key");
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    for o in orgs {
        dn.push(DnType::OrganizationName, *o);
    }
    dn.push(DnType::CommonName, cn);
    params.distinguished_name = dn;
    params.subject_alt_names = sans;
    params
        .serialize_request(&key)
        .expect("csr")
        .pem()
        .expect("pem")
}

pub fn csr_yaml(
    name: &str,
    signer: &str,
    pem: &str,
    usages: &[&str],
    expiration: Option<i32>,
) -> String {
    let request = base64::engine::general_purpose::STANDARD.encode(pem);
    let usages = usages
        .iter()
        .map(|u| format!("\"{u}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let exp = expiration
        .map(|e| format!("  expirationSeconds: {e}\n"))
        .unwrap_or_default();
    format!(
        "apiVersion: certificates.k8s.io/v1\nkind: CertificateSigningRequest\nmetadata:\n  name: {name}\nspec:\n  signerName: {signer}\n  request: {request}\n  usages: [{usages}]\n{exp}"
    )
}

fn create_as(cp: &ControlPlane, user: Option<&str>, yaml: &str) {
    let group = if user.is_some_and(|u| u.starts_with("system:bootstrap:")) {
        "--as-group=system:bootstrappers"
    } else {
        "--as-group=system:nodes"
    };
    let mut args = vec!["create", "-f", "-"];
    let as_user;
    if let Some(u) = user {
        as_user = format!("--as={u}");
        args.extend([as_user.as_str(), group, "--as-group=system:authenticated"]);
    }
    let out = cp.kubectl_stdin(&args, yaml);
    assert!(out.status.success(), "{}", stderr(&out));
}

fn csr(cp: &ControlPlane, name: &str) -> CertificateSigningRequest {
    get(cp, &["csr", name]).expect("CSR")
}

pub fn condition_of(c: &CertificateSigningRequest, type_: &str) -> Option<(String, String)> {
    c.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| {
            (
                c.reason.clone().unwrap_or_default(),
                c.message.clone().unwrap_or_default(),
            )
        })
}

fn wait_signed(cp: &ControlPlane, name: &str) -> Vec<u8> {
    let ok = wait_for(WAIT, || {
        csr(cp, name).status.and_then(|s| s.certificate).is_some()
    });
    assert!(
        ok,
        "{name} not signed: {:?}\n{}",
        csr(cp, name).status,
        log_tail()
    );
    csr(cp, name)
        .status
        .and_then(|s| s.certificate)
        .expect("certificate")
        .0
}

fn ca_pem(cp: &ControlPlane, ca: &str) -> Vec<u8> {
    data(
        &secret(cp, "certop-system", &format!("{ca}-ca")).expect("CA secret"),
        "tls.crt",
    )
}

fn openssl_verifies(ca: &[u8], cert: &[u8]) -> bool {
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::write(dir.path().join("ca.crt"), ca).expect("write");
    std::fs::write(dir.path().join("leaf.crt"), cert).expect("write");
    Command::new("openssl")
        .arg("verify")
        .arg("-CAfile")
        .arg(dir.path().join("ca.crt"))
        .arg(dir.path().join("leaf.crt"))
        .output()
        .expect("openssl")
        .status
        .success()
}

#[test]
fn an_approved_csr_for_a_certop_signer_is_signed_for_the_time_asked() {
    let cp = control_plane();
    let (ca, _) = ca_and_namespace(cp, "csr");
    let name = unique("robot");
    create_as(
        cp,
        None,
        &csr_yaml(
            &name,
            &format!("certop.dev/{ca}"),
            &csr_pem("robot", &["bots"], &["robot.example"], &[]),
            &["digital signature", "client auth"],
            Some(3600),
        ),
    );
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        csr(cp, &name).status.and_then(|s| s.certificate).is_none(),
        "nothing is signed before approval"
    );
    assert!(
        cp.kubectl(&["certificate", "approve", &name])
            .status
            .success()
    );
    let pem = wait_signed(cp, &name);
    assert!(
        openssl_verifies(&ca_pem(cp, &ca), &pem),
        "openssl verifies it against the CA"
    );
    let leaf = certop::pki::parse_pem_certificate(&pem, "csr").expect("parse");
    let span = leaf.not_after - leaf.not_before;
    assert!(
        span >= chrono::Duration::hours(1)
            && span <= chrono::Duration::hours(1) + certop::pki::BACKDATE,
        "expirationSeconds honoured from issuance, notBefore backdated: {span}"
    );
    assert_eq!(leaf.common_name.as_deref(), Some("robot"));
    assert_eq!(leaf.dns_names, vec!["robot.example".to_string()]);
    assert!(
        leaf.usages.contains(&certop::api::KeyUsage::ClientAuth)
            && !leaf.usages.contains(&certop::api::KeyUsage::ServerAuth)
    );

    let bad = unique("codesign");
    create_as(
        cp,
        None,
        &csr_yaml(
            &bad,
            &format!("certop.dev/{ca}"),
            &csr_pem("x", &[], &[], &[]),
            &["digital signature", "code signing"],
            None,
        ),
    );
    assert!(
        cp.kubectl(&["certificate", "approve", &bad])
            .status
            .success()
    );
    assert!(
        wait_for(WAIT, || condition_of(&csr(cp, &bad), "Failed").is_some()),
        "{}",
        log_tail()
    );
    let (reason, message) = condition_of(&csr(cp, &bad), "Failed").expect("failed");
    assert_eq!(reason, "UnsupportedRequest");
    assert!(message.contains("code signing"), "{message}");
    assert!(csr(cp, &bad).status.and_then(|s| s.certificate).is_none());
}

fn kubelet_setup(cp: &ControlPlane) -> (String, String, String) {
    operator();
    // Once for every test: tests run in parallel, and two `kubectl apply`
    // creating the same object race (AlreadyExists).
    static SHARED: std::sync::Once = std::sync::Once::new();
    SHARED.call_once(|| {
        apply(cp, &ca_yaml(KUBELET_CA, ""));
        // Nodes may create CSRs (kubeadm binds this for its nodes).
        apply(
            cp,
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: test-node-csr\nrules:\n- apiGroups: [certificates.k8s.io]\n  resources: [certificatesigningrequests]\n  verbs: [create, get, list, watch]\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata:\n  name: test-node-csr\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: test-node-csr}\nsubjects:\n- {apiGroup: rbac.authorization.k8s.io, kind: Group, name: system:nodes}\n- {apiGroup: rbac.authorization.k8s.io, kind: Group, name: system:bootstrappers}\n",
        );
        // kubeadm's kubeadm:node-autoapprove-certificate-rotation: nodes may
        // have their own client certificates renewed.
        apply(
            cp,
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata:\n  name: test-node-autoapprove-certificate-rotation\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: system:certificates.k8s.io:certificatesigningrequests:selfnodeclient}\nsubjects:\n- {apiGroup: rbac.authorization.k8s.io, kind: Group, name: system:nodes}\n",
        );
    });
    let node = unique("node");
    let ip = node_ip();
    add_node(
        cp,
        &node,
        &[
            ("Hostname", &format!("{node}.nodes.example")),
            ("InternalIP", &ip),
        ],
    );
    (node.clone(), format!("system:node:{node}"), ip)
}

/// An address of its own for each test Node, inside the node IP prefix the
/// shared operator is given (10.1.0.0/16): a Node's address is refused to
/// every other node.
fn node_ip() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(1);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("10.1.{}.{}", n / 250, n % 250 + 1)
}

/// A Node with these `status.addresses` (type, address), written as a node
/// writes its own status.
fn add_node(cp: &ControlPlane, node: &str, addresses: &[(&str, &str)]) {
    apply(
        cp,
        &format!("apiVersion: v1\nkind: Node\nmetadata:\n  name: {node}\n"),
    );
    set_addresses(cp, node, addresses);
}

fn set_addresses(cp: &ControlPlane, node: &str, addresses: &[(&str, &str)]) {
    let list: Vec<serde_json::Value> = addresses
        .iter()
        .map(|(t, a)| serde_json::json!({"type": t, "address": a}))
        .collect();
    let patch = serde_json::json!({"status": {"addresses": list}}).to_string();
    let out = cp.kubectl(&[
        "patch",
        "node",
        node,
        "--subresource=status",
        "--type=merge",
        "-p",
        &patch,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn kubelet_client_csrs_are_approved_for_the_node_itself_and_denied_otherwise() {
    let cp = control_plane();
    let (_, user, _) = kubelet_setup(cp);
    let good = unique("kubelet-client");
    create_as(
        cp,
        Some(&user),
        &csr_yaml(
            &good,
            "kubernetes.io/kube-apiserver-client-kubelet",
            &csr_pem(&user, &["system:nodes"], &[], &[]),
            &["digital signature", "client auth"],
            None,
        ),
    );
    let pem = wait_signed(cp, &good);
    assert!(
        condition_of(&csr(cp, &good), "Approved").is_some_and(|(r, _)| r == "CertopKubeletApprove")
    );
    assert!(openssl_verifies(&ca_pem(cp, KUBELET_CA), &pem));

    let other = unique("kubelet-other");
    create_as(
        cp,
        Some(&user),
        &csr_yaml(
            &other,
            "kubernetes.io/kube-apiserver-client-kubelet",
            &csr_pem("system:node:somebody-else", &["system:nodes"], &[], &[]),
            &["digital signature", "client auth"],
            None,
        ),
    );
    assert!(
        wait_for(WAIT, || condition_of(&csr(cp, &other), "Denied").is_some()),
        "{}",
        log_tail()
    );
    let (_, message) = condition_of(&csr(cp, &other), "Denied").expect("denied");
    assert!(message.contains("may only ask for its own"), "{message}");
    assert!(csr(cp, &other).status.and_then(|s| s.certificate).is_none());
}

/// A joining node's TLS-bootstrap CSR, made with a bootstrap token: approved
/// when RBAC lets the token create certificatesigningrequests/nodeclient (as
/// kubeadm binds for its tokens), left pending when not, never denied.
#[test]
fn a_bootstrap_token_csr_is_approved_when_rbac_allows_it_and_left_pending_otherwise() {
    let cp = control_plane();
    kubelet_setup(cp);
    let allowed_token = format!("system:bootstrap:{}", &unique("a")[..8].replace('-', "x"));
    apply(
        cp,
        &format!(
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata:\n  name: test-autoapprove-{}\nroleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: system:certificates.k8s.io:certificatesigningrequests:nodeclient}}\nsubjects:\n- {{apiGroup: rbac.authorization.k8s.io, kind: User, name: \"{allowed_token}\"}}\n",
            allowed_token.replace(':', "-")
        ),
    );
    let joining = format!("system:node:{}", unique("joining"));
    let approved = unique("bootstrap-ok");
    create_as(
        cp,
        Some(&allowed_token),
        &csr_yaml(
            &approved,
            "kubernetes.io/kube-apiserver-client-kubelet",
            &csr_pem(&joining, &["system:nodes"], &[], &[]),
            &["digital signature", "client auth"],
            None,
        ),
    );
    let pem = wait_signed(cp, &approved);
    let (_, message) = condition_of(&csr(cp, &approved), "Approved").expect("approved");
    assert!(message.contains("nodeclient"), "{message}");
    assert!(openssl_verifies(&ca_pem(cp, KUBELET_CA), &pem));

    let other_token = "system:bootstrap:zzzzzz";
    let pending = unique("bootstrap-pending");
    create_as(
        cp,
        Some(other_token),
        &csr_yaml(
            &pending,
            "kubernetes.io/kube-apiserver-client-kubelet",
            &csr_pem(&joining, &["system:nodes"], &[], &[]),
            &["digital signature", "client auth"],
            None,
        ),
    );
    std::thread::sleep(Duration::from_secs(3));
    let c = csr(cp, &pending);
    assert!(condition_of(&c, "Denied").is_none(), "never denied: {c:?}");
    assert!(
        condition_of(&c, "Approved").is_none(),
        "not approved without RBAC"
    );
    assert!(c.status.and_then(|s| s.certificate).is_none());
}

/// Approved by someone else, a kubelet-serving CSR with a URI SAN is
/// refused by certop's signer as by Kubernetes' own: Failed, with the reason.
#[test]
fn the_kubelet_serving_signer_fails_what_the_kubernetes_signer_refuses() {
    let cp = control_plane();
    let (node, user, _) = kubelet_setup(cp);
    let name = unique("serving-uri");
    let request = csr_pem_with(
        &user,
        &["system:nodes"],
        vec![
            SanType::DnsName(format!("{node}.nodes.example").try_into().expect("ia5")),
            SanType::URI("spiffe://cluster/node".try_into().expect("ia5")),
        ],
    );
    create_as(
        cp,
        None,
        &csr_yaml(
            &name,
            "kubernetes.io/kubelet-serving",
            &request,
            &["digital signature", "server auth"],
            None,
        ),
    );
    assert!(
        cp.kubectl(&["certificate", "approve", &name])
            .status
            .success()
    );
    assert!(
        wait_for(WAIT, || condition_of(&csr(cp, &name), "Failed").is_some()),
        "{}",
        log_tail()
    );
    let (_, message) = condition_of(&csr(cp, &name), "Failed").expect("failed");
    assert!(message.contains("no URI"), "{message}");
    assert!(csr(cp, &name).status.and_then(|s| s.certificate).is_none());
}

/// A CSR certop leaves for a person: neither approved nor denied, nothing
/// signed, and an Event on it that says why; returns the Events' text.
fn wait_left_pending(cp: &ControlPlane, name: &str) -> String {
    let mut seen = String::new();
    let decided = |c: &CertificateSigningRequest| {
        condition_of(c, "Approved").is_some() || condition_of(c, "Denied").is_some()
    };
    assert!(
        wait_for(WAIT, || {
            seen = events(cp, name);
            decided(&csr(cp, name)) || seen.lines().any(|l| l.starts_with("PendingApproval"))
        }),
        "{name}: no PendingApproval event\n{}",
        log_tail()
    );
    let c = csr(cp, name);
    assert!(
        !decided(&c),
        "{name} must be left for a person: {:?}",
        c.status
    );
    assert!(c.status.and_then(|s| s.certificate).is_none());
    seen
}

fn serving_csr(cp: &ControlPlane, user: &str, dns: &[&str], ips: &[&str]) -> String {
    let name = unique("kubelet-serving");
    create_as(
        cp,
        Some(user),
        &csr_yaml(
            &name,
            "kubernetes.io/kubelet-serving",
            &csr_pem(user, &["system:nodes"], dns, ips),
            &["digital signature", "server auth"],
            None,
        ),
    );
    name
}

/// The node's own name, a name of the configured pattern and an IP inside
/// the configured prefixes are approved; an IP outside is left for a person,
/// and signed once a person approves it.
#[test]
fn kubelet_serving_csrs_are_approved_only_for_the_nodes_own_names() {
    let cp = control_plane();
    let (node, user, ip) = kubelet_setup(cp);
    let host = format!("{node}.nodes.example");
    let good = serving_csr(cp, &user, &[&node, &host], &[&ip]);
    let pem = wait_signed(cp, &good);
    assert!(openssl_verifies(&ca_pem(cp, KUBELET_CA), &pem));
    let leaf = certop::pki::parse_pem_certificate(&pem, "serving").expect("parse");
    assert_eq!(leaf.dns_names, vec![node.clone(), host.clone()]);

    let outside = serving_csr(cp, &user, &[&host], &[&ip, "10.200.0.9"]);
    let events = wait_left_pending(cp, &outside);
    assert!(
        events.contains("10.200.0.9")
            && events.contains("--kubelet-serving-ip-prefixes")
            && events.contains(&format!("kubectl certificate approve {outside}")),
        "{events}"
    );
    assert!(
        cp.kubectl(&["certificate", "approve", &outside])
            .status
            .success()
    );
    let pem = wait_signed(cp, &outside);
    assert!(openssl_verifies(&ca_pem(cp, KUBELET_CA), &pem));

    let unserved = unique("not-ours");
    create_as(
        cp,
        None,
        &csr_yaml(
            &unserved,
            "example.com/other",
            &csr_pem("x", &[], &[], &[]),
            &["digital signature"],
            None,
        ),
    );
    std::thread::sleep(Duration::from_secs(2));
    let c = csr(cp, &unserved);
    assert!(
        c.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_none_or(|c| c.is_empty()),
        "a signer certop does not serve is left alone"
    );
}

/// A node writes its own `status.addresses`: names it lists there are no
/// proof. The API server's Service name and IP, a wildcard and another
/// Node's address are left for a person; another Node's name is denied; the
/// node's own name and address are still approved and signed.
#[test]
fn kubelet_serving_names_a_node_writes_in_its_status_are_not_approved() {
    let cp = control_plane();
    let (node, user, ip) = kubelet_setup(cp);
    let other = unique("node");
    let other_ip = node_ip();
    add_node(
        cp,
        &other,
        &[("Hostname", &other), ("InternalIP", &other_ip)],
    );
    set_addresses(
        cp,
        &node,
        &[
            ("Hostname", &node),
            ("InternalIP", &ip),
            ("Hostname", "kubernetes.default.svc"),
            ("InternalDNS", "*.default.svc.cluster.local"),
            ("InternalDNS", &other),
            ("InternalIP", "10.96.0.1"),
            ("InternalIP", &other_ip),
        ],
    );

    let claimed = serving_csr(
        cp,
        &user,
        &["kubernetes.default.svc", "*.default.svc.cluster.local"],
        &["10.96.0.1", &other_ip],
    );
    let events = wait_left_pending(cp, &claimed);
    for name in [
        "kubernetes.default.svc",
        "*.default.svc.cluster.local",
        "10.96.0.1",
        &other_ip,
        &other,
    ] {
        assert!(events.contains(name), "{name} not explained: {events}");
    }

    // Left, it is not reviewed again: no loop re-reading the Nodes.
    std::thread::sleep(Duration::from_secs(3));
    let reviews = operator()
        .log_text()
        .lines()
        .filter(|l| l.contains(&claimed) && l.contains("left for a person"))
        .count();
    assert_eq!(reviews, 1, "{}", log_tail());
    let described = stdout(&cp.kubectl(&["describe", "csr", &claimed]));
    assert!(
        described.contains("PendingApproval"),
        "kubectl describe shows why: {described}"
    );

    let impostor = serving_csr(cp, &user, &[&other], &[]);
    assert!(
        wait_for(WAIT, || condition_of(&csr(cp, &impostor), "Denied")
            .is_some()),
        "{}",
        log_tail()
    );
    let (_, message) = condition_of(&csr(cp, &impostor), "Denied").expect("denied");
    assert!(message.contains(&other), "{message}");
    assert!(condition_of(&csr(cp, &impostor), "Approved").is_none());

    let own = serving_csr(cp, &user, &[&node], &[&ip]);
    let pem = wait_signed(cp, &own);
    assert!(openssl_verifies(&ca_pem(cp, KUBELET_CA), &pem));
}

/// A CSR for `certop.dev/<ca>` asking for what the CA's policy does not
/// allow is Failed with the reason, even once approved.
#[test]
fn a_csr_outside_the_cas_policy_fails() {
    let cp = control_plane();
    operator();
    let ca = unique("policy-ca");
    apply(
        cp,
        &ca_yaml(
            &ca,
            "  policy:\n    allowedOrganizations: [bots]\n    allowedDNSNames: [.bots.example]\n",
        ),
    );
    let name = unique("outside");
    create_as(
        cp,
        None,
        &csr_yaml(
            &name,
            &format!("certop.dev/{ca}"),
            &csr_pem("robot", &["admins"], &["robot.bots.example"], &[]),
            &["digital signature", "client auth"],
            None,
        ),
    );
    assert!(
        cp.kubectl(&["certificate", "approve", &name])
            .status
            .success()
    );
    assert!(
        wait_for(WAIT, || condition_of(&csr(cp, &name), "Failed").is_some()),
        "{}",
        log_tail()
    );
    let (reason, message) = condition_of(&csr(cp, &name), "Failed").expect("failed");
    assert_eq!(reason, "PolicyViolation");
    assert!(message.contains("\"admins\""), "{message}");
    assert!(csr(cp, &name).status.and_then(|s| s.certificate).is_none());
}
