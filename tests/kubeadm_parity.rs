//! "Exactly kubeadm", checked against kubeadm v1.36.3 itself (built from the
//! same Go modules as the test control plane, tests/kubeadm/): for the same
//! node, `kubeadm init phase certs all` + `kubeconfig all` and `certop pki
//! init` are compared file by file and field by field; every difference left
//! is listed here by name with its reason (and in
//! docs/control-plane-certificates.md). Then each tool checks and renews the
//! other's tree.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failed step should panic

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use certop::pki::{CertificateInfo, parse_pem_certificate};
use common::{certop, kubeadm_binary, ok};

const NODE: &str = "cp-1";
const ADDRESS: &str = "192.0.2.10";
const ENDPOINT: &str = "api.example.com:6443";
const SERVICE_CIDR: &str = "10.96.0.0/12,fd00:10:96::/112";

fn kubeadm(args: &[&str]) -> Output {
    Command::new(kubeadm_binary())
        .args(args)
        .output()
        .expect("run kubeadm")
}

/// kubeadm's configuration for the node, inside a root (`--rootfs`).
fn write_config(root: &Path) {
    std::fs::write(
        root.join("kubeadm.yaml"),
        format!(
            "apiVersion: kubeadm.k8s.io/v1beta4\nkind: InitConfiguration\nlocalAPIEndpoint:\n  advertiseAddress: {ADDRESS}\n  bindPort: 6443\nnodeRegistration:\n  name: {NODE}\n---\napiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\nkubernetesVersion: v1.36.3\ncontrolPlaneEndpoint: {ENDPOINT}\napiServer:\n  certSANs: [extra.example.com, 198.51.100.7]\nnetworking:\n  serviceSubnet: {SERVICE_CIDR}\n  dnsDomain: cluster.local\n"
        ),
    )
    .expect("write kubeadm.yaml");
}

/// A root with /etc/kubernetes as kubeadm lays it out, made by kubeadm.
fn kubeadm_tree(root: &Path) {
    std::fs::create_dir_all(root.join("etc/kubernetes")).expect("dir");
    write_config(root);
    ok(kubeadm(&[
        "init",
        "phase",
        "certs",
        "all",
        "--rootfs",
        path(root),
        "--config",
        "/kubeadm.yaml",
    ]));
    ok(kubeadm(&[
        "init",
        "phase",
        "kubeconfig",
        "all",
        "--rootfs",
        path(root),
        "--config",
        "/kubeadm.yaml",
    ]));
}

/// The same node's tree, made by certop.
fn certop_tree(root: &Path) {
    std::fs::create_dir_all(root.join("etc/kubernetes")).expect("dir");
    write_config(root);
    ok(certop(&[
        "pki",
        "init",
        "--dir",
        path(&root.join("etc/kubernetes/pki")),
        "--node-name",
        NODE,
        "--advertise-address",
        ADDRESS,
        "--service-cidr",
        SERVICE_CIDR,
        "--control-plane-endpoint",
        ENDPOINT,
        "--san",
        "extra.example.com",
        "--san",
        "198.51.100.7",
        "--key-algorithm",
        "RSA-2048",
    ]));
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// Every file under `dir`, relative, with its mode.
fn files(dir: &Path) -> BTreeMap<String, u32> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<String, u32>) {
        for entry in std::fs::read_dir(dir).expect("read dir").flatten() {
            let p = entry.path();
            if p.is_dir() {
                walk(base, &p, out);
            } else {
                let mode = entry.metadata().expect("meta").permissions().mode() & 0o777;
                let rel = p
                    .strip_prefix(base)
                    .expect("rel")
                    .to_string_lossy()
                    .into_owned();
                out.insert(rel, mode);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

fn kubeconfig(path: &Path) -> serde_json::Value {
    serde_saphyr::from_str(&std::fs::read_to_string(path).expect("kubeconfig")).expect("yaml")
}

/// The client certificate a kubeconfig embeds.
fn kubeconfig_certificate(doc: &serde_json::Value) -> CertificateInfo {
    use base64::Engine;
    let data = doc["users"][0]["user"]["client-certificate-data"]
        .as_str()
        .expect("client-certificate-data");
    let pem = base64::engine::general_purpose::STANDARD
        .decode(data)
        .expect("base64");
    parse_pem_certificate(&pem, "kubeconfig").expect("certificate")
}

/// The fields that must match, as one comparable value.
fn fields(c: &CertificateInfo) -> BTreeMap<&'static str, String> {
    let set = |v: Vec<String>| v.into_iter().collect::<BTreeSet<_>>();
    BTreeMap::from([
        ("common name", format!("{:?}", c.common_name)),
        (
            "organizations",
            format!("{:?}", set(c.organizations.clone())),
        ),
        ("DNS names", format!("{:?}", set(c.dns_names.clone()))),
        (
            "IP addresses",
            format!(
                "{:?}",
                set(c.ip_addresses.iter().map(|i| i.to_string()).collect())
            ),
        ),
        ("usages", format!("{:?}", c.usages)),
        ("CA", format!("{}", c.is_ca)),
        ("key algorithm", format!("{:?}", c.key_algorithm)),
        // Lifetime plus the 5-minute backdate both tools set on notBefore,
        // in minutes (kubeadm's two times may come from instants a second apart).
        (
            "notAfter - notBefore (minutes)",
            format!("{}", ((c.not_after - c.not_before).num_seconds() + 30) / 60),
        ),
        ("issuer", c.issuer()),
    ])
}

/// Differences kept on purpose, by certificate and field, with the reason.
fn allowed(file: &str, field: &str) -> Option<&'static str> {
    let is_ca = ["pki/ca.crt", "pki/etcd/ca.crt", "pki/front-proxy-ca.crt"].contains(&file);
    match field {
        // kubeadm puts the CA's CN in a DNS SAN; a CA needs none (RFC 5280).
        "DNS names" if is_ca => Some("a CA certificate needs no subjectAltName"),
        // kubeadm's CAs have digitalSignature+keyEncipherment+keyCertSign;
        // certop's have keyCertSign+cRLSign (they sign CRLs) and digitalSignature.
        "usages" if is_ca => Some("certop's CAs sign CRLs (cRLSign) and encipher nothing"),
        _ => None,
    }
}

#[test]
fn certop_pki_init_writes_what_kubeadm_writes_field_by_field() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (a, b) = (tmp.path().join("kubeadm"), tmp.path().join("certop"));
    kubeadm_tree(&a);
    certop_tree(&b);
    let (ka, kb) = (a.join("etc/kubernetes"), b.join("etc/kubernetes"));

    // The same files, with the same modes.
    assert_eq!(files(&ka), files(&kb), "file set and modes");

    // Every certificate, field by field.
    let mut compared = 0;
    let mut differences = Vec::new();
    for (file, _) in files(&ka) {
        let (ca, cb) = if file.ends_with(".crt") {
            let read = |root: &Path| {
                parse_pem_certificate(&std::fs::read(root.join(&file)).expect("crt"), &file)
                    .expect("parse")
            };
            (read(&ka), read(&kb))
        } else if file.ends_with(".conf") {
            let (da, db) = (kubeconfig(&ka.join(&file)), kubeconfig(&kb.join(&file)));
            // Everything but the key material and certificates is identical.
            let strip = |mut d: serde_json::Value| {
                for user in d["users"].as_array_mut().expect("users") {
                    let u = user["user"].as_object_mut().expect("user");
                    u.remove("client-certificate-data");
                    u.remove("client-key-data");
                }
                for c in d["clusters"].as_array_mut().expect("clusters") {
                    c["cluster"]
                        .as_object_mut()
                        .expect("cluster")
                        .remove("certificate-authority-data");
                }
                d
            };
            assert_eq!(
                strip(da.clone()),
                strip(db.clone()),
                "{file}: servers, users, contexts"
            );
            (kubeconfig_certificate(&da), kubeconfig_certificate(&db))
        } else {
            continue;
        };
        compared += 1;
        let (fa, fb) = (fields(&ca), fields(&cb));
        for (field, va) in &fa {
            let vb = &fb[field];
            if va != vb {
                match allowed(&file, field) {
                    Some(_) => differences.push(format!("{file} {field}")),
                    None => panic!("{file}: {field} differs: kubeadm {va}, certop {vb}"),
                }
            }
        }
    }
    assert_eq!(
        compared,
        10 + 5,
        "every certificate (3 CAs, 7 leaves) and kubeconfig (5) compared"
    );
    // The differences left are exactly those listed, and only on the CAs.
    let expected: BTreeSet<String> = ["pki/ca.crt", "pki/etcd/ca.crt", "pki/front-proxy-ca.crt"]
        .iter()
        .flat_map(|f| [format!("{f} DNS names"), format!("{f} usages")])
        .collect();
    assert_eq!(differences.into_iter().collect::<BTreeSet<_>>(), expected);

    // kubeadm reads certop's tree as its own.
    let table = ok(kubeadm(&[
        "certs",
        "check-expiration",
        "--rootfs",
        path(&b),
        "--config",
        "/kubeadm.yaml",
    ]));
    for name in [
        "admin.conf",
        "apiserver",
        "apiserver-etcd-client",
        "apiserver-kubelet-client",
        "controller-manager.conf",
        "etcd-healthcheck-client",
        "etcd-peer",
        "etcd-server",
        "front-proxy-client",
        "scheduler.conf",
        "super-admin.conf",
    ] {
        let row = table
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("kubeadm does not list {name}:\n{table}"));
        assert!(
            row.contains("364d") && row.trim_end().ends_with("no"),
            "{row}"
        );
    }
}

/// Each tool renews the other's tree; what comes out verifies with openssl
/// against the tree's CA and keeps its names.
#[test]
fn kubeadm_renews_certops_tree_and_certop_renews_kubeadms() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (a, b) = (tmp.path().join("kubeadm"), tmp.path().join("certop"));
    kubeadm_tree(&a);
    certop_tree(&b);
    let apiserver = |root: &Path| {
        parse_pem_certificate(
            &std::fs::read(root.join("etc/kubernetes/pki/apiserver.crt")).expect("crt"),
            "apiserver",
        )
        .expect("parse")
    };
    let (before_a, before_b) = (apiserver(&a), apiserver(&b));

    ok(kubeadm(&[
        "certs",
        "renew",
        "all",
        "--rootfs",
        path(&b),
        "--config",
        "/kubeadm.yaml",
    ]));
    let out = ok(certop(&[
        "pki",
        "renew",
        "--dir",
        path(&a.join("etc/kubernetes/pki")),
        "--force",
        "all",
    ]));
    assert_eq!(
        out.lines().filter(|l| l.contains(": renewed")).count(),
        11,
        "{out}"
    );

    for (root, before) in [(&a, before_a), (&b, before_b)] {
        let after = apiserver(root);
        assert_ne!(after.serial, before.serial, "renewed");
        assert_eq!(fields(&after)["DNS names"], fields(&before)["DNS names"]);
        assert_eq!(
            fields(&after)["IP addresses"],
            fields(&before)["IP addresses"]
        );
        let pki = root.join("etc/kubernetes/pki");
        for (ca, leaf) in [
            ("ca.crt", "apiserver.crt"),
            ("ca.crt", "apiserver-kubelet-client.crt"),
            ("etcd/ca.crt", "etcd/server.crt"),
            ("front-proxy-ca.crt", "front-proxy-client.crt"),
        ] {
            let v = Command::new("openssl")
                .args(["verify", "-CAfile"])
                .arg(pki.join(ca))
                .arg(pki.join(leaf))
                .output()
                .expect("openssl");
            assert!(
                v.status.success(),
                "{leaf}: {}",
                String::from_utf8_lossy(&v.stdout)
            );
        }
    }
    // And kubeadm still reads what certop renewed in its tree.
    ok(kubeadm(&[
        "certs",
        "check-expiration",
        "--rootfs",
        path(&a),
        "--config",
        "/kubeadm.yaml",
    ]));
}

/// Renewing kubeadm's own tree keeps every certificate's lifetime, run
/// after run: kubeadm's kubeconfig certificates are a second or two over
/// lifetime + backdate (it reads the clock twice), and were taken for
/// certificates without a backdate, so each `pki renew` made them five
/// minutes longer.
#[test]
fn renewing_kubeadms_tree_again_and_again_keeps_every_lifetime() {
    let tmp = tempfile::tempdir().expect("tmp");
    let root = tmp.path().join("kubeadm");
    kubeadm_tree(&root);
    let etc = root.join("etc/kubernetes");
    let spans = || -> BTreeMap<String, i64> {
        let mut spans = BTreeMap::new();
        for conf in [
            "admin.conf",
            "super-admin.conf",
            "controller-manager.conf",
            "scheduler.conf",
        ] {
            let c = kubeconfig_certificate(&kubeconfig(&etc.join(conf)));
            spans.insert(conf.to_string(), (c.not_after - c.not_before).num_seconds());
        }
        for crt in [
            "apiserver.crt",
            "apiserver-kubelet-client.crt",
            "front-proxy-client.crt",
        ] {
            let c =
                parse_pem_certificate(&std::fs::read(etc.join("pki").join(crt)).expect("crt"), crt)
                    .expect("parse");
            spans.insert(crt.to_string(), (c.not_after - c.not_before).num_seconds());
        }
        spans
    };
    println!("kubeadm's spans (lifetime + backdate, s): {:?}", spans());
    // A year, plus the five-minute backdate on notBefore: exactly, as certop signs.
    let year_and_backdate = 8760 * 3600 + 300;
    for run in 1..=2 {
        ok(certop(&[
            "pki",
            "renew",
            "--dir",
            path(&etc.join("pki")),
            "--kubeconfig-dir",
            path(&etc),
            "--force",
            "all",
        ]));
        for (file, span) in spans() {
            assert_eq!(
                span, year_and_backdate,
                "{file} after renewal {run}: {span} s, not a year and the backdate"
            );
        }
    }
}
