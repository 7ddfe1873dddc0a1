//! Revocation the API server enforces: kube-apiserver started with the
//! AuthorizationConfiguration that `certop authz-config` writes asks
//! certop's webhook first about every request made with a client
//! certificate, and a certificate certop revoked is refused (403) within
//! seconds, while an unrevoked one of the same CA keeps working and a
//! token is never sent to the webhook. Tried as a user would: the
//! kubeconfig of a leaked certificate, `kubectl certop revoke`, the same
//! kubeconfig again; then the revocation's status shows the CRL number and
//! the refusal, and a revoked `system:masters` certificate is shown to
//! keep working, as its status warns.

use std::time::{Duration, Instant};

use crate::objects::{
    allowed, apply, cert_yaml, client_kubeconfig, create_ca_secret, kubeconfig_of_files,
    kubectl_with, refusal, wait_ready,
};
use crate::support::{
    ControlPlane, configure_certop_webhook, crl_serials, free_port, http_get, http_request,
    issue_offline, offline_ca, start_control_plane_trusting, stderr, stdout, wait_for,
};

#[test]
fn a_revoked_client_certificate_is_refused_by_kube_apiserver_within_seconds() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The API server trusts the CA for client certificates: it is made
    // offline and adopted, so the control plane can start with it.
    let ca_dir = offline_ca(dir.path(), "authz test CA");
    let (cp, authz_file) = start_control_plane_trusting(&ca_dir, dir.path(), &[]);
    cp.install_rbac();
    create_ca_secret(&cp, "authz-ca", &ca_dir);
    apply(
        &cp,
        "apiVersion: certop.dev/v1\nkind: CertificateAuthority\nmetadata:\n  name: authz\nspec:\n  subject: {commonName: authz}\n  keySource: {secretName: authz-ca, adopt: true}\n  policy:\n    allowedProfiles: [client]\n    allowedOrganizations: [authz-admins]\n",
    );
    let port = free_port();
    let webhook_flags = [
        format!("--authz-addr=127.0.0.1:{port}"),
        "--authz-ca=authz".to_string(),
    ];
    let flags: Vec<&str> = webhook_flags.iter().map(String::as_str).collect();
    let op = cp.start_operator("authz", &flags);

    let bound = cp.kubectl(&[
        "create",
        "clusterrolebinding",
        "authz-admins",
        "--clusterrole=cluster-admin",
        "--group=authz-admins",
    ]);
    assert!(bound.status.success(), "{}", stderr(&bound));
    let client = |name: &str| {
        cert_yaml(
            name,
            "authz",
            "default",
            &format!("  profile: client\n  commonName: {name}\n  organizations: [authz-admins]\n"),
        )
    };
    apply(&cp, &client("leaked"));
    apply(&cp, &client("kept"));
    wait_ready(&cp, "leaked");
    wait_ready(&cp, "kept");
    let leaked = client_kubeconfig(&cp, "default", "leaked", dir.path());
    let kept = client_kubeconfig(&cp, "default", "kept", dir.path());
    assert!(allowed(&leaked) && allowed(&kept), "RBAC allows both");

    // What a user pastes: certop's webhook first, then Node and RBAC. The
    // API server reloads the file.
    configure_certop_webhook(&cp, &authz_file, "authz", port, "NoOpinion");
    let consulted = wait_for(Duration::from_secs(90), || {
        allowed(&leaked) && cp.webhook_evaluations() > 0
    });
    assert!(
        consulted,
        "kube-apiserver never asked certop's webhook; the operator's log:\n{}",
        op.log_text()
    );
    assert!(
        allowed(&leaked) && allowed(&kept),
        "no opinion: RBAC still decides"
    );

    // A token (the admin's) is never sent to the webhook.
    let before = cp.webhook_evaluations();
    for _ in 0..5 {
        assert!(cp.kubectl(&["get", "namespaces"]).status.success());
    }
    assert_eq!(
        cp.webhook_evaluations(),
        before,
        "token requests reached the webhook"
    );

    let started = Instant::now();
    let revoked = cp.kubectl_certop(&["revoke", "leaked", "--reason", "keyCompromise"]);
    assert!(revoked.status.success(), "{}", stderr(&revoked));
    let leaked_revocation = created_revocation(&revoked);
    let mut text = String::new();
    let refused = wait_for(Duration::from_secs(30), || {
        refusal(&leaked).is_some_and(|t| {
            text = t;
            true
        })
    });
    let took = started.elapsed();
    assert!(
        refused,
        "the revoked certificate still works; log:\n{}",
        op.log_text()
    );
    eprintln!("a revocation was enforced by kube-apiserver {took:?} after kubectl certop revoke");
    assert!(
        text.contains("Forbidden") || text.contains("forbidden"),
        "a 403, not another failure: {text}"
    );
    assert!(
        text.contains("certop") && text.contains("revoked") && text.contains("keyCompromise"),
        "the refusal says who and why: {text}"
    );
    let metrics = http_get(&op.metrics_url).unwrap_or_default();
    assert!(
        metrics.contains("certop_authz_reviews_total{verdict=\"denied\"}")
            && metrics.contains("certop_authz_index_ready 1"),
        "the webhook's metrics count the refusal: {metrics}"
    );
    assert!(
        allowed(&kept),
        "an unrevoked certificate of the same CA keeps working"
    );

    // The revocation says where it took effect: the CRL number that lists
    // it, and that kube-apiserver asked certop and was refused the
    // certificate (each replica reports every 10 s).
    let mut status = serde_json::Value::Null;
    let refused_at = Instant::now();
    let reported = wait_for(Duration::from_secs(60), || {
        status = revocation_status(&cp, &leaked_revocation);
        status["apiServer"]["deniedRequests"].as_i64() >= Some(1)
    });
    eprintln!(
        "the revocation's status showed the refusal {:?} after the refused request",
        refused_at.elapsed()
    );
    assert!(
        reported,
        "the revocation's status never showed the refusal: {status}; log:\n{}",
        op.log_text()
    );
    assert!(
        status["crlPublished"][0]["crlNumber"].as_u64() >= Some(1),
        "the CRL number that lists it: {status}"
    );
    for field in ["lastReviewTime", "firstDeniedTime", "lastDeniedTime"] {
        assert!(status["apiServer"][field].is_string(), "{field}: {status}");
    }
    assert_eq!(
        condition(&status, "ApiServerEnforceable"),
        ("True".to_string(), "Enforceable".to_string()),
        "{status}"
    );
    let described = cp.kubectl(&["describe", "certificaterevocation", &leaked_revocation]);
    let described = stdout(&described);
    for shown in [
        "Crl Published",
        "Crl Number",
        "API Server",
        "Denied Requests",
    ] {
        assert!(
            described.contains(shown),
            "kubectl describe shows {shown}: {described}"
        );
    }
    let view = cp.kubectl_certop(&["status", &format!("revocation/{leaked_revocation}")]);
    assert!(view.status.success(), "{}", stderr(&view));
    let view = stdout(&view);
    eprintln!("kubectl certop status revocation/{leaked_revocation}:\n{view}");
    assert!(
        view.contains("first listed by CRL number")
            && view.contains("certop's webhook answered kube-apiserver")
            && view.contains("requests made with a revoked certificate"),
        "{view}"
    );

    // What cannot be revoked: a certificate in system:masters (issued
    // offline from the CA's files, as kubeadm's super-admin.conf is) keeps
    // working once revoked, since kube-apiserver lets that group through
    // before it asks any authorizer; the command, the status and the view
    // say so.
    let master_dir = issue_offline(
        &ca_dir,
        dir.path(),
        "master",
        &cert_yaml(
            "master",
            "authz",
            "default",
            "  profile: client\n  commonName: master\n  organizations: [system:masters]\n",
        ),
    );
    let master = kubeconfig_of_files(
        &cp,
        "master",
        &master_dir.join("tls.crt"),
        &master_dir.join("tls.key"),
        dir.path(),
    );
    assert!(allowed(&master), "{:?}", refusal(&master));
    let revoked = cp.kubectl_certop(&[
        "revoke",
        "--cert",
        master.to_str().expect("utf-8"),
        "--ca",
        "authz",
        "--reason",
        "keyCompromise",
    ]);
    assert!(revoked.status.success(), "{}", stderr(&revoked));
    assert!(
        stderr(&revoked).contains("warning: this certificate is in group system:masters")
            && stderr(&revoked).contains("kubectl certop rotate-ca authz"),
        "the command warns at once: {}",
        stderr(&revoked)
    );
    let master_revocation = created_revocation(&revoked);
    let mut status = serde_json::Value::Null;
    let warned = wait_for(Duration::from_secs(60), || {
        status = revocation_status(&cp, &master_revocation);
        condition(&status, "ApiServerEnforceable").1 == "SystemMasters"
    });
    assert!(warned, "the status never said so: {status}");
    let view = stdout(&cp.kubectl_certop(&["status", &format!("revocation/{master_revocation}")]));
    assert!(
        view.contains("WARNING:       NOT ENFORCEABLE at kube-apiserver")
            && view.contains("rotate the CA (kubectl certop rotate-ca authz)"),
        "{view}"
    );
    // Past the time the webhook took to refuse `leaked` (and its tick),
    // the revoked system:masters certificate still works.
    std::thread::sleep(took.max(Duration::from_secs(2)) * 2);
    assert!(
        wait_for(Duration::from_secs(10), || refusal(&leaked).is_some()),
        "the webhook is answering"
    );
    let whoami = kubectl_with(&master, &["auth", "whoami", "-o", "json"]);
    assert!(
        whoami.status.success(),
        "a revoked system:masters certificate is refused after all: {}",
        stderr(&whoami)
    );
    let user: serde_json::Value = serde_json::from_str(&stdout(&whoami)).expect("json");
    assert_eq!(user["status"]["userInfo"]["username"], "master");
    assert!(
        user["status"]["userInfo"]["groups"]
            .as_array()
            .is_some_and(|g| g.iter().any(|g| g == "system:masters")),
        "{user}"
    );
    assert!(allowed(&master), "and it can still list namespaces");
    let whoami = kubectl_with(
        &kept,
        &[
            "auth",
            "whoami",
            "-o",
            "jsonpath={.status.userInfo.username}",
        ],
    );
    assert_eq!(stdout(&whoami), "kept");

    // Passive revocation: the revoked certificate cannot get its successor
    // (a kubelet renews its client certificate by a CSR made with it).
    let csr_file = dir.path().join("renewal-csr.yaml");
    std::fs::write(
        &csr_file,
        "apiVersion: certificates.k8s.io/v1\nkind: CertificateSigningRequest\nmetadata:\n  name: leaked-renewal\nspec:\n  signerName: kubernetes.io/kube-apiserver-client\n  usages: [client auth]\n  request: AAAA\n",
    )
    .expect("write");
    let csr = kubectl_with(
        &leaked,
        &[
            "create",
            "--validate=false",
            "-f",
            csr_file.to_str().expect("utf-8"),
        ],
    );
    assert!(
        !csr.status.success() && stderr(&csr).contains("certop: the client certificate"),
        "a revoked certificate created a CSR: {}{}",
        stdout(&csr),
        stderr(&csr)
    );

    // A certificate certop never saw (issued offline from the same CA, as
    // kubeadm would): revoked from its kubeconfig, by serial and SHA-256.
    let offline_dir = issue_offline(&ca_dir, dir.path(), "offline", &client("offline"));
    let offline = kubeconfig_of_files(
        &cp,
        "offline",
        &offline_dir.join("tls.crt"),
        &offline_dir.join("tls.key"),
        dir.path(),
    );
    assert!(allowed(&offline), "{:?}", refusal(&offline));
    let revoked = cp.kubectl_certop(&[
        "revoke",
        "--cert",
        offline.to_str().expect("utf-8"),
        "--ca",
        "authz",
        "--reason",
        "keyCompromise",
    ]);
    assert!(revoked.status.success(), "{}", stderr(&revoked));
    assert!(
        wait_for(Duration::from_secs(30), || refusal(&offline).is_some()),
        "a revoked offline certificate still works"
    );
    assert!(allowed(&kept));
    // certop checked it against the CA and recorded it in the CA's ledger:
    // the CRL lists it, and deleting the revocation does not un-revoke it.
    let offline_serial = certop::pki::parse_pem_certificate(
        &std::fs::read(offline_dir.join("tls.crt")).expect("read"),
        "offline",
    )
    .expect("certificate")
    .serial
    .to_string();
    let revocation = stdout(&revoked)
        .split_whitespace()
        .next()
        .and_then(|w| w.strip_prefix("certificaterevocation/"))
        .expect("the revocation's name")
        .trim_end_matches(':')
        .to_string();
    let crl_url = format!("{}/crl/authz.crl", op.base_url);
    assert!(
        wait_for(Duration::from_secs(30), || {
            http_request(&crl_url, &[])
                .is_some_and(|(_, _, der)| crl_serials(dir.path(), &der).contains(&offline_serial))
        }),
        "the CRL does not list the offline certificate's serial {offline_serial}"
    );
    let deleted = cp.kubectl(&["delete", "certificaterevocation", &revocation]);
    assert!(deleted.status.success(), "{}", stderr(&deleted));
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        refusal(&offline).is_some(),
        "deleting the revocation un-revoked the offline certificate"
    );

    // failurePolicy NoOpinion (the default): with certop down, revocation
    // is not enforced and RBAC decides alone; back up, it is again.
    op.stop();
    assert!(
        wait_for(Duration::from_secs(30), || allowed(&leaked)),
        "NoOpinion: certop down lets RBAC decide"
    );
    let op = cp.start_operator("authz-again", &flags);
    assert!(
        wait_for(Duration::from_secs(60), || refusal(&leaked).is_some()),
        "certop back: the revoked certificate is refused again; log:\n{}",
        op.log_text()
    );
    assert!(allowed(&kept));

    // A certificate recorded before certop recorded digests (a cluster
    // upgraded to this version): its ledger entry has none. Revoked by
    // its ClusterCertificate's name, it is refused all the same.
    apply(&cp, &client("legacy"));
    wait_ready(&cp, "legacy");
    let legacy = client_kubeconfig(&cp, "default", "legacy", dir.path());
    forget_recorded_digest(&cp, "legacy");
    assert!(allowed(&legacy), "{:?}", refusal(&legacy));
    let revoked = cp.kubectl_certop(&["revoke", "legacy", "--reason", "keyCompromise"]);
    assert!(revoked.status.success(), "{}", stderr(&revoked));
    assert!(
        wait_for(Duration::from_secs(30), || refusal(&legacy).is_some()),
        "a revoked certificate whose ledger entry has no digest still works; log:\n{}",
        op.log_text()
    );
    assert!(allowed(&kept));

    // failurePolicy Deny: with certop down, every request made with a
    // client certificate is refused, revoked or not; tokens still work.
    configure_certop_webhook(&cp, &authz_file, "authz", port, "Deny");
    op.stop();
    assert!(
        wait_for(Duration::from_secs(90), || refusal(&kept).is_some()),
        "Deny: certop down refuses client certificates"
    );
    assert!(
        cp.kubectl(&["get", "namespaces"]).status.success(),
        "tokens never reach the webhook, so Deny does not touch them"
    );
}

/// The CertificateRevocation `kubectl certop revoke` says it created.
fn created_revocation(out: &std::process::Output) -> String {
    stdout(out)
        .split_whitespace()
        .next()
        .and_then(|w| w.strip_prefix("certificaterevocation/"))
        .expect("kubectl certop revoke names what it created")
        .to_string()
}

/// A CertificateRevocation's status, as JSON.
fn revocation_status(cp: &ControlPlane, name: &str) -> serde_json::Value {
    let out = cp.kubectl(&["get", "certificaterevocation", name, "-o", "json"]);
    serde_json::from_str::<serde_json::Value>(&stdout(&out))
        .map(|v| v["status"].clone())
        .unwrap_or_default()
}

/// A condition's status and reason (empty when it is not there).
fn condition(status: &serde_json::Value, type_: &str) -> (String, String) {
    status["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == type_)
        .map(|c| {
            (
                c["status"].as_str().unwrap_or_default().to_string(),
                c["reason"].as_str().unwrap_or_default().to_string(),
            )
        })
        .unwrap_or_default()
}

/// Makes the ledger entry of ClusterCertificate `name` look as certop
/// wrote it before it recorded digests: without `f`.
fn forget_recorded_digest(cp: &ControlPlane, name: &str) {
    let out = cp.kubectl(&[
        "get",
        "configmaps",
        "-n",
        "certop-system",
        "-l",
        "certop.dev/ledger",
        "-o",
        "json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let list: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("json");
    let mut found = false;
    for mut shard in list["items"].as_array().expect("items").clone() {
        let text = shard["data"]["entries.json"].as_str().unwrap_or("[]");
        let mut entries: Vec<serde_json::Value> = serde_json::from_str(text).expect("entries");
        let mut changed = false;
        for entry in &mut entries {
            if entry["c"] == name {
                changed |= entry.as_object_mut().and_then(|e| e.remove("f")).is_some();
            }
        }
        if !changed {
            continue;
        }
        found = true;
        shard["data"]["entries.json"] =
            serde_json::Value::String(serde_json::to_string(&entries).expect("json"));
        let file = cp.kubeconfig.with_file_name(format!("shard-{name}.json"));
        std::fs::write(&file, shard.to_string()).expect("write");
        let replaced = cp.kubectl(&["replace", "-f", file.to_str().expect("utf-8")]);
        assert!(replaced.status.success(), "{}", stderr(&replaced));
    }
    assert!(found, "no ledger entry of {name} records a digest");
}
