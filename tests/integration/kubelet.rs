//! A real kubelet (v1.36.3, built by tests/kubelet/) on this machine, joined
//! to a test control plane as a kubeadm node joins: TLS bootstrap with a
//! bootstrap token, then its own client certificate. Its containers are
//! served by the upstream in-memory fake CRI, so it registers its Node,
//! renews its lease and serves its API without a container runtime.
//!
//! The kubelet must run as root and bind-mounts its root directory onto
//! itself: dropping [`Kubelet`] kills it and the fake CRI and unmounts what
//! it mounted, also when the test fails.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::common::kubelet_binary;
use crate::objects::{api_server_of, apply};
use crate::support::{ControlPlane, free_port, stdout};

/// The bootstrap token a joining kubelet authenticates with
/// (`<id>.<secret>`, as `kubeadm token create` prints it).
const BOOTSTRAP_TOKEN: (&str, &str) = ("kubele", "0123456789abcdef");

/// Lets kubelets join `cp` as kubeadm sets a cluster up for it: a bootstrap
/// token in kube-system, kubeadm's bindings that let bootstrappers create
/// CSRs and have them approved (`nodeclient`), and nodes renew their own
/// client certificate (`selfnodeclient`). kube-apiserver needs
/// `--enable-bootstrap-token-auth=true`.
pub fn allow_kubelet_bootstrap(cp: &ControlPlane) {
    let (id, secret) = BOOTSTRAP_TOKEN;
    apply(
        cp,
        &format!(
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: bootstrap-token-{id}\n  namespace: kube-system\ntype: bootstrap.kubernetes.io/token\nstringData:\n  token-id: {id}\n  token-secret: {secret}\n  usage-bootstrap-authentication: \"true\"\n"
        ),
    );
    for (name, role, group) in [
        (
            "kubeadm:kubelet-bootstrap",
            "system:node-bootstrapper",
            "system:bootstrappers",
        ),
        (
            "kubeadm:node-autoapprove-bootstrap",
            "system:certificates.k8s.io:certificatesigningrequests:nodeclient",
            "system:bootstrappers",
        ),
        (
            "kubeadm:node-autoapprove-certificate-rotation",
            "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient",
            "system:nodes",
        ),
    ] {
        apply(
            cp,
            &format!(
                "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata:\n  name: \"{name}\"\nroleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: \"{role}\"}}\nsubjects:\n- {{apiGroup: rbac.authorization.k8s.io, kind: Group, name: \"{group}\"}}\n"
            ),
        );
    }
}

/// The first non-loopback IPv4 address of this machine: a kubelet with a
/// loopback `--node-ip` reports no Node addresses, so kube-apiserver could
/// not reach it.
pub fn node_ip() -> String {
    let out = Command::new("hostname")
        .arg("-I")
        .output()
        .expect("hostname -I");
    stdout(&out)
        .split_whitespace()
        .find(|a| {
            a.parse::<std::net::Ipv4Addr>()
                .is_ok_and(|ip| !ip.is_loopback())
        })
        .expect("a non-loopback IPv4 address (hostname -I)")
        .to_string()
}

/// How a kubelet authorizes the requests made to its own API (the
/// `authorization.webhook` cache of its KubeletConfiguration).
pub struct DecisionCache {
    /// `cacheAuthorizedTTL`; the kubelet's default is 5m.
    pub authorized_ttl: &'static str,
    /// `cacheUnauthorizedTTL`; the kubelet's default is 30s.
    pub unauthorized_ttl: &'static str,
}

/// A running kubelet and its fake CRI; dropped, both stop and its mounts go.
pub struct Kubelet {
    /// Where it keeps its client certificate (`--cert-dir`).
    pub cert_dir: PathBuf,
    /// The kubeconfig it writes after bootstrap (its own client certificate).
    pub kubeconfig: PathBuf,
    pub log: PathBuf,
    root_dir: PathBuf,
    kubelet: Option<Child>,
    cri: Child,
}

impl Kubelet {
    /// Starts a kubelet named `node` that joins `cp` with the bootstrap
    /// token of [`allow_kubelet_bootstrap`], trusts `client_ca` for callers
    /// of its API (kube-apiserver's `--kubelet-client-certificate`) and asks
    /// kube-apiserver (SubjectAccessReview) whether they may, caching the
    /// answers as `cache` says.
    pub fn start(
        cp: &ControlPlane,
        dir: &Path,
        node: &str,
        client_ca: &Path,
        cache: &DecisionCache,
    ) -> Kubelet {
        let uid = stdout(&Command::new("id").arg("-u").output().expect("id -u"));
        assert_eq!(
            uid.trim(),
            "0",
            "the kubelet must run as root (it mounts its root directory): run this test as root"
        );
        std::fs::create_dir_all(dir).expect("the kubelet's directory");
        let node_ip = node_ip();
        let root_dir = dir.join("root");
        let cert_dir = dir.join("pki");
        let log = dir.join("kubelet.log");
        let socket = format!("unix://{}", dir.join("cri.sock").display());
        let cri = start_fake_cri(&socket, &dir.join("fake-cri.log"));
        let mut kubelet = Kubelet {
            kubeconfig: dir.join("kubelet.kubeconfig"),
            cert_dir: cert_dir.clone(),
            log: log.clone(),
            root_dir: root_dir.clone(),
            // Set once it has started: holding the fake CRI here first
            // means a failure to start the kubelet still stops it.
            kubelet: None,
            cri,
        };
        let (server, ca) = api_server_of(cp);
        let (id, secret) = BOOTSTRAP_TOKEN;
        let bootstrap = dir.join("bootstrap.kubeconfig");
        std::fs::write(
            &bootstrap,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {server}\n    certificate-authority-data: {ca}\nusers:\n- name: bootstrap\n  user:\n    token: {id}.{secret}\ncontexts:\n- name: c\n  context: {{cluster: c, user: bootstrap}}\ncurrent-context: c\n"
            ),
        )
        .expect("write");
        // What runs on this machine (cgroup v1, no QoS cgroups, no swap
        // check); its API on the node address, every other port off; its
        // lease renewed every 2 s (a quarter of its duration), so a test
        // sees the API server's answer to it soon.
        let config = dir.join("kubelet-config.yaml");
        std::fs::write(
            &config,
            format!(
                "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\naddress: {node_ip}\nport: {port}\nreadOnlyPort: 0\nhealthzPort: 0\nfailCgroupV1: false\nfailSwapOn: false\ncgroupsPerQOS: false\nenforceNodeAllocatable: []\nrotateCertificates: true\nnodeLeaseDurationSeconds: 8\npodLogsDir: {logs}\nauthentication:\n  anonymous: {{enabled: false}}\n  webhook: {{enabled: false}}\n  x509: {{clientCAFile: {client_ca}}}\nauthorization:\n  mode: Webhook\n  webhook: {{cacheAuthorizedTTL: {authorized}, cacheUnauthorizedTTL: {unauthorized}}}\n",
                port = free_port(),
                logs = dir.join("pod-logs").display(),
                client_ca = client_ca.display(),
                authorized = cache.authorized_ttl,
                unauthorized = cache.unauthorized_ttl,
            ),
        )
        .expect("write");
        let log_file = std::fs::File::create(&log).expect("kubelet log");
        let started = Command::new(kubelet_binary())
            .arg(format!("--config={}", config.display()))
            .arg(format!("--bootstrap-kubeconfig={}", bootstrap.display()))
            .arg(format!("--kubeconfig={}", kubelet.kubeconfig.display()))
            .arg(format!("--cert-dir={}", cert_dir.display()))
            .arg(format!("--root-dir={}", root_dir.display()))
            .arg(format!("--container-runtime-endpoint={socket}"))
            .arg(format!("--hostname-override={node}"))
            .arg(format!("--node-ip={node_ip}"))
            .arg("--v=2")
            .stdout(log_file.try_clone().expect("log"))
            .stderr(log_file)
            .spawn()
            .expect("start the kubelet");
        kubelet.kubelet = Some(started);
        kubelet
    }

    /// The client certificate and key it holds now (one PEM file, as the
    /// kubelet keeps them).
    pub fn client_certificate(&self) -> PathBuf {
        self.cert_dir.join("kubelet-client-current.pem")
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last lines of its log, for a failure message.
    pub fn log_tail(&self) -> String {
        let text = self.log_text();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for Kubelet {
    fn drop(&mut self) {
        for child in self.kubelet.iter_mut().chain([&mut self.cri]) {
            let _ = child.kill();
            let _ = child.wait();
        }
        // Deepest first: the kubelet mounts its root directory onto itself
        // (and anything it mounted for pods lies below it).
        let mut mounts = mounts_under(&self.root_dir);
        mounts.sort_by_key(|m| std::cmp::Reverse(m.components().count()));
        for mount in mounts {
            let out = Command::new("umount").arg(&mount).output();
            if !out.as_ref().is_ok_and(|o| o.status.success()) {
                let _ = Command::new("umount").arg("-l").arg(&mount).output();
            }
        }
        let left = mounts_under(&self.root_dir);
        if !left.is_empty() {
            eprintln!("the kubelet's mounts are left: {left:?}");
        }
    }
}

/// Mount points at or below `dir` (/proc/self/mountinfo, field 5), once
/// for each time something is mounted there.
fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(PathBuf::from)
        .filter(|m| m.starts_with(dir))
        .collect()
}

/// Starts the fake CRI on `socket` and waits until it serves.
fn start_fake_cri(socket: &str, log: &Path) -> Child {
    let mut child = Command::new(kubelet_binary())
        .args(["fake-cri", "--endpoint", socket])
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log).expect("fake CRI log"))
        .spawn()
        .expect("start the fake CRI");
    let out = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(out).read_line(&mut line);
        let _ = tx.send(line);
    });
    let ready = rx.recv_timeout(Duration::from_secs(30)).unwrap_or_default();
    if ready.trim() != "ready" {
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "the fake CRI did not start: {}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
    }
    child
}

/// Whether `cp` has a Node `node` (the kubelet registered itself).
pub fn node_registered(cp: &ControlPlane, node: &str) -> bool {
    cp.kubectl(&["get", "node", node, "-o", "name"])
        .status
        .success()
}
