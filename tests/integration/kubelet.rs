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
use std::time::{Duration, Instant};

use crate::common::kubelet_binary;
use crate::objects::{api_server_of, apply, create_ca_secret};
use crate::support::{ControlPlane, Operator, free_port, stdout, wait_for};

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

/// Makes `ca` the CertificateAuthority that signs kubelets' client
/// certificates, as kubeadm's `ca.crt` does: the CA made offline in
/// `ca_dir` (the one kube-apiserver's `--client-ca-file` trusts), adopted
/// from the Secret `<ca>-ca`. The operator signs with it given
/// [`kubelet_signer_args`].
pub fn adopt_kubelet_ca(cp: &ControlPlane, ca: &str, ca_dir: &Path) {
    let secret = format!("{ca}-ca");
    create_ca_secret(cp, &secret, ca_dir);
    apply(
        cp,
        &format!(
            "apiVersion: certop.dev/v1\nkind: CertificateAuthority\nmetadata:\n  name: {ca}\nspec:\n  subject: {{commonName: {ca} CA}}\n  keySource: {{secretName: {secret}, adopt: true}}\n"
        ),
    );
}

/// The operator's flags that make it approve kubelets' client CSRs and
/// sign them with `ca` ([`adopt_kubelet_ca`]).
pub fn kubelet_signer_args(ca: &str) -> [String; 2] {
    [
        format!("--kubelet-signer-ca={ca}"),
        "--approve-kubelet-csrs=true".to_string(),
    ]
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
    /// Its `--root-dir`: pods' volumes are below `pods/<uid>/volumes/`.
    pub root_dir: PathBuf,
    /// Its command line, to start it again ([`Kubelet::restart`]).
    args: Vec<String>,
    kubelet: Option<Child>,
    cri: Child,
}

impl Kubelet {
    /// Starts a kubelet named `node` that joins `cp` with the bootstrap
    /// token of [`allow_kubelet_bootstrap`], trusts `client_ca` for callers
    /// of its API (kube-apiserver's `--kubelet-client-certificate`) and asks
    /// kube-apiserver (SubjectAccessReview) whether they may, caching the
    /// answers as `cache` says. `feature_gates` (`Name=true`) go into its
    /// KubeletConfiguration.
    pub fn start(
        cp: &ControlPlane,
        dir: &Path,
        node: &str,
        client_ca: &Path,
        cache: &DecisionCache,
        feature_gates: &[&str],
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
            args: Vec::new(),
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
        let gates: String = feature_gates
            .iter()
            .map(|g| format!("  {}\n", g.replacen('=', ": ", 1)))
            .collect();
        let gates = if gates.is_empty() {
            String::new()
        } else {
            format!("featureGates:\n{gates}")
        };
        std::fs::write(
            &config,
            format!(
                "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\naddress: {node_ip}\nport: {port}\nreadOnlyPort: 0\nhealthzPort: 0\nfailCgroupV1: false\nfailSwapOn: false\ncgroupsPerQOS: false\nenforceNodeAllocatable: []\nrotateCertificates: true\nnodeLeaseDurationSeconds: 8\npodLogsDir: {logs}\nauthentication:\n  anonymous: {{enabled: false}}\n  webhook: {{enabled: false}}\n  x509: {{clientCAFile: {client_ca}}}\nauthorization:\n  mode: Webhook\n  webhook: {{cacheAuthorizedTTL: {authorized}, cacheUnauthorizedTTL: {unauthorized}}}\n{gates}",
                port = free_port(),
                logs = dir.join("pod-logs").display(),
                client_ca = client_ca.display(),
                authorized = cache.authorized_ttl,
                unauthorized = cache.unauthorized_ttl,
            ),
        )
        .expect("write");
        kubelet.args = vec![
            format!("--config={}", config.display()),
            format!("--bootstrap-kubeconfig={}", bootstrap.display()),
            format!("--kubeconfig={}", kubelet.kubeconfig.display()),
            format!("--cert-dir={}", cert_dir.display()),
            format!("--root-dir={}", root_dir.display()),
            format!("--container-runtime-endpoint={socket}"),
            format!("--hostname-override={node}"),
            format!("--node-ip={node_ip}"),
            "--v=2".to_string(),
        ];
        kubelet.spawn();
        kubelet
    }

    /// Starts the kubelet process (its log appended to).
    fn spawn(&mut self) {
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("kubelet log");
        let started = Command::new(kubelet_binary())
            .args(&self.args)
            .stdout(log_file.try_clone().expect("log"))
            .stderr(log_file)
            .spawn()
            .expect("start the kubelet");
        self.kubelet = Some(started);
    }

    /// Kills the kubelet (SIGKILL, as a crash would) and starts it again
    /// with the same configuration and directories; its fake CRI, and
    /// what runs there, stay.
    pub fn restart(&mut self) {
        if let Some(mut child) = self.kubelet.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.spawn();
    }

    /// Waits until it has its own client certificate (signed through TLS
    /// bootstrap) and has registered Node `node`: how long that took.
    /// Fails the test with its log and the log of `op`, the operator that
    /// approves and signs its CSR, when that takes over two minutes.
    pub fn wait_joined(&self, cp: &ControlPlane, node: &str, op: &Operator) -> Duration {
        let started = Instant::now();
        let joined = wait_for(Duration::from_secs(120), || {
            self.client_certificate().exists() && node_registered(cp, node)
        });
        assert!(
            joined,
            "the kubelet did not join; its log:\n{}\nthe operator's log:\n{}",
            self.log_tail(),
            op.log_text()
        );
        started.elapsed()
    }

    /// The directory where the kubelet sets up volume `volume` of plugin
    /// `plugin` (e.g. `kubernetes.io~projected`) for the pod of UID `pod_uid`.
    pub fn pod_volume_dir(&self, pod_uid: &str, plugin: &str, volume: &str) -> PathBuf {
        self.root_dir
            .join("pods")
            .join(pod_uid)
            .join("volumes")
            .join(plugin)
            .join(volume)
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
