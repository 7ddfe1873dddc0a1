//! Who gets which identity, tried as a hostile user would: the refused
//! certificates would have been real privileges (checked with the issued
//! certificates as clients of an API server that trusts the CA, `kubectl
//! auth whoami` and `auth can-i`), and a policy is used only by whom RBAC
//! allows (the ValidatingAdmissionPolicy refuses the others at admission).

use std::time::Duration;

use crate::objects::{
    apply, cert_yaml, client_kubeconfig, condition, create_ca_secret, kubectl_with, secret,
    wait_ready,
};
use crate::support::{
    ControlPlane, control_plane, operator, start_control_plane, stderr, stdout, unique, wait_for,
};

const WAIT: Duration = Duration::from_secs(60);

fn certop(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_certop"))
        .args(args)
        .output()
        .expect("run certop")
}

/// Waits until the certificate's Ready condition has `reason`, and returns
/// its message.
fn wait_refused(cp: &ControlPlane, name: &str) -> String {
    let mut message = String::new();
    let ok = wait_for(WAIT, || match condition(cp, name, "Ready") {
        Some((_, reason, m)) if reason == "PolicyViolation" => {
            message = m;
            true
        }
        _ => false,
    });
    assert!(ok, "{name} not refused: {:?}", condition(cp, name, "Ready"));
    message
}

#[test]
fn privileged_identities_are_refused_unless_a_policy_names_them_as_real_clients_show() {
    // An API server that trusts the CA for client certificates: the CA is
    // made offline and adopted, so the control plane can start with it.
    let dir = tempfile::tempdir().expect("tempdir");
    let ca_dir = dir.path().join("ca");
    let out = certop(&[
        "pki",
        "ca",
        "create",
        "--name",
        "hostile test CA",
        "--out",
        ca_dir.to_str().expect("utf-8"),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let cp = start_control_plane(&[format!(
        "--client-ca-file={}",
        ca_dir.join("ca.crt").display()
    )]);
    cp.install_rbac();
    create_ca_secret(&cp, "hostile-ca", &ca_dir);
    // The CA's own policy is the one that once let every organization
    // through a listed profile.
    apply(
        &cp,
        "apiVersion: certop.dev/v1\nkind: CertificateAuthority\nmetadata:\n  name: hostile\nspec:\n  subject: {commonName: hostile}\n  keySource: {secretName: hostile-ca, adopt: true}\n  policy:\n    allowedProfiles: [client]\n    allowedOrganizations: [dev-team]\n",
    );
    let _op = cp.start_operator("policy", &[]);
    let ns = "default";
    let client = |name: &str, cn: &str, orgs: &str| {
        cert_yaml(
            name,
            "hostile",
            ns,
            &format!("  profile: client\n  commonName: {cn}\n  organizations: [{orgs}]\n"),
        )
    };
    // What a dev-team member may have: signed, and it is only that.
    apply(&cp, &client("dev", "dev-bot", "dev-team"));
    wait_ready(&cp, "dev");
    let dev = client_kubeconfig(&cp, ns, "dev", dir.path());
    let whoami = kubectl_with(
        &dev,
        &[
            "auth",
            "whoami",
            "-o",
            "jsonpath={.status.userInfo.username} {.status.userInfo.groups}",
        ],
    );
    assert!(
        stdout(&whoami).contains("dev-bot") && stdout(&whoami).contains("dev-team"),
        "{}{}",
        stdout(&whoami),
        stderr(&whoami)
    );
    assert_eq!(
        stdout(&kubectl_with(&dev, &["auth", "can-i", "*", "*"])).trim(),
        "no"
    );
    // Each of these was signed before, and each would have been a real
    // privilege: cluster-admin, cluster-admin through kubeadm's binding,
    // the controller manager's rights over every Secret.
    for (name, cn, orgs, words) in [
        ("masters", "eve", "system:masters", "system:masters"),
        (
            "cluster-admins",
            "eve",
            "kubeadm:cluster-admins",
            "kubeadm:cluster-admins",
        ),
        (
            "controller-manager",
            "system:kube-controller-manager",
            "dev-team",
            "system:kube-controller-manager",
        ),
    ] {
        apply(&cp, &client(name, cn, orgs));
        let message = wait_refused(&cp, name);
        assert!(message.contains(words), "{name}: {message}");
        assert!(
            secret(&cp, ns, name).is_none(),
            "{name}: a Secret was written"
        );
    }
    // The same identity is signed when a policy names it exactly, and it is
    // then the privilege it says: the refusal above is what stood between.
    apply(
        &cp,
        "apiVersion: certop.dev/v1\nkind: CertificatePolicy\nmetadata:\n  name: break-glass\nspec:\n  authorities: [hostile]\n  allowed:\n    profiles: [client]\n    commonNames: [eve]\n    organizations: [system:masters]\n",
    );
    // The CA's own policy still bounds every request: lift it for this.
    let out = cp.kubectl(&[
        "patch",
        "certificateauthority",
        "hostile",
        "--type=json",
        "-p",
        r#"[{"op":"remove","path":"/spec/policy"}]"#,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = cp.kubectl(&[
        "patch",
        "clustercertificate",
        "masters",
        "--type=merge",
        "-p",
        r#"{"spec":{"policyRef":{"name":"break-glass"}}}"#,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    wait_ready(&cp, "masters");
    let masters = client_kubeconfig(&cp, ns, "masters", dir.path());
    assert_eq!(
        stdout(&kubectl_with(&masters, &["auth", "can-i", "*", "*"])).trim(),
        "yes"
    );
    // With the policy governing the CA, the certificates that do not name
    // it are refused, and the message says what to do: the policy's (and
    // the CA's) changes started their passes; nothing touched them.
    let ok = wait_for(WAIT, || {
        condition(&cp, "cluster-admins", "Ready")
            .is_some_and(|(_, _, m)| m.contains("set spec.policyRef.name"))
    });
    assert!(ok, "{:?}", condition(&cp, "cluster-admins", "Ready"));
}

/// Grants `user` create/update on ClusterCertificates, and `use` on the
/// named policies.
fn grant(cp: &ControlPlane, user: &str, policies: &[&str]) {
    let mut yaml = format!(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: {user}\nrules:\n- apiGroups: [certop.dev]\n  resources: [clustercertificates]\n  verbs: [get, list, create, update, patch]\n"
    );
    if !policies.is_empty() {
        yaml += &format!(
            "- apiGroups: [certop.dev]\n  resources: [certificatepolicies]\n  resourceNames: [{}]\n  verbs: [use]\n",
            policies.join(", ")
        );
    }
    yaml += &format!(
        "---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata:\n  name: {user}\nroleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: {user}}}\nsubjects:\n- {{apiGroup: rbac.authorization.k8s.io, kind: User, name: {user}}}\n"
    );
    apply(cp, &yaml);
}

#[test]
fn a_policy_is_used_only_by_whom_rbac_allows_at_admission_and_signs_only_what_it_names() {
    let cp = control_plane();
    operator();
    let ca = unique("pol-ca");
    let policy = unique("pol-team");
    let (alice, mallory) = (unique("alice"), unique("mallory"));
    apply(cp, &crate::objects::ca_yaml(&ca, ""));
    apply(
        cp,
        &format!(
            "apiVersion: certop.dev/v1\nkind: CertificatePolicy\nmetadata:\n  name: {policy}\nspec:\n  authorities: [{ca}]\n  allowed:\n    commonNames: [team-bot]\n    organizations: [team]\n    dnsNames: [\"*.team.example\"]\n"
        ),
    );
    grant(cp, &alice, &[&policy]);
    grant(cp, &mallory, &[]);
    let named = |name: &str, extra: &str| {
        cert_yaml(
            name,
            &ca,
            "default",
            &format!("  policyRef: {{name: {policy}}}\n  commonName: team-bot\n{extra}"),
        )
    };
    let create_as = |user: &str, yaml: &str| {
        cp.kubectl_stdin(&["create", "-f", "-", &format!("--as={user}")], yaml)
    };
    // RBAC lets mallory create ClusterCertificates, but not use the policy.
    let good = unique("pol-good");
    let out = create_as(&mallory, &named(&good, "  organizations: [team]\n"));
    assert!(
        !out.status.success(),
        "mallory named a policy she may not use"
    );
    assert!(
        stderr(&out).contains(&format!("may not use CertificatePolicy {policy}")),
        "{}",
        stderr(&out)
    );
    // Alice may, and gets what the policy names.
    let out = create_as(
        &alice,
        &named(
            &good,
            "  organizations: [team]\n  dnsNames: [a.team.example]\n",
        ),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    wait_ready(cp, &good);
    // Mallory cannot widen alice's certificate either: a spec change needs
    // `use` on the policy it names.
    let out = cp.kubectl(&[
        "patch",
        "clustercertificate",
        &good,
        "--type=merge",
        &format!("--as={mallory}"),
        "-p",
        r#"{"spec":{"dnsNames":["bank.example"]}}"#,
    ]);
    assert!(
        !out.status.success() && stderr(&out).contains("may not use"),
        "{}",
        stderr(&out)
    );
    // Labels are not the spec: they pass.
    let out = cp.kubectl(&[
        "label",
        "clustercertificate",
        &good,
        "team=a",
        &format!("--as={mallory}"),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    // Under the policy alice may use, what it does not name is refused, by
    // field and policy, with no Secret written.
    for (suffix, extra, words) in [
        (
            "masters",
            "  organizations: [system:masters]\n",
            "organizations \"system:masters\"",
        ),
        (
            "ip",
            "  ipAddresses: [8.8.8.8]\n",
            "ipAddresses \"8.8.8.8\"",
        ),
        (
            "uri",
            "  uris: [\"spiffe://cluster.local/ns/kube-system/sa/admin\"]\n",
            "uris",
        ),
        (
            "dns",
            "  dnsNames: [kubernetes.default.svc]\n",
            "kubernetes.default.svc",
        ),
    ] {
        let name = unique(&format!("pol-{suffix}"));
        let out = create_as(&alice, &named(&name, extra));
        assert!(out.status.success(), "{}", stderr(&out));
        let message = wait_refused(cp, &name);
        assert!(
            message.contains(words) && message.contains(&policy),
            "{suffix}: {message}"
        );
        assert!(secret(cp, "default", &name).is_none());
    }
    // Without policyRef, a CA a policy governs signs nothing.
    let bare = unique("pol-bare");
    apply(
        cp,
        &cert_yaml(&bare, &ca, "default", "  commonName: team-bot\n"),
    );
    assert!(wait_refused(cp, &bare).contains("set spec.policyRef.name"));
}

#[test]
fn a_guard_that_is_present_but_not_enforced_is_not_trusted() {
    // The policy and binding are in place, but the API server does not run
    // them: certop must find out by asking, not by reading them.
    let cp =
        start_control_plane(&["--disable-admission-plugins=ValidatingAdmissionPolicy".to_string()]);
    cp.install_rbac();
    let _op = cp.start_operator("unenforced", &[]);
    apply(&cp, &crate::objects::ca_yaml("loose", ""));
    apply(
        &cp,
        "apiVersion: certop.dev/v1\nkind: CertificatePolicy\nmetadata:\n  name: loose\nspec:\n  authorities: [loose]\n  allowed:\n    commonNames: [bot]\n",
    );
    apply(
        &cp,
        &cert_yaml(
            "unguarded",
            "loose",
            "default",
            "  policyRef: {name: loose}\n  commonName: bot\n",
        ),
    );
    // Refused at once ("not looked at yet"), then, once the guard was
    // probed, for what the probe found.
    wait_refused(&cp, "unguarded");
    let found = wait_for(WAIT, || {
        condition(&cp, "unguarded", "Ready")
            .is_some_and(|(_, _, m)| m.contains("nothing enforces the guard"))
    });
    assert!(found, "{:?}", condition(&cp, "unguarded", "Ready"));
    assert!(secret(&cp, "default", "unguarded").is_none());
}
