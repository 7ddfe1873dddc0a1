//! One real control plane (kube-apiserver + etcd, see tests/control-plane/)
//! shared by every integration test in this binary. Tests isolate
//! themselves with unique object names and namespaces, never by restarting.

// Shared by two test binaries (integration, lifecycle) that each use a part.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use kube::config::{KubeConfigOptions, Kubeconfig};

pub struct ControlPlane {
    pub kubeconfig: PathBuf,
    pub operator_kubeconfig: PathBuf,
    /// etcd's client URL (plain HTTP, for reading what it stores).
    pub etcd: String,
    /// Held open: the control plane exits when this test process does.
    _stdin: Mutex<ChildStdin>,
    _child: Mutex<Child>,
}

static CONTROL_PLANE: OnceLock<ControlPlane> = OnceLock::new();
static OPERATOR: OnceLock<Operator> = OnceLock::new();

/// The CertificateAuthority the shared operator signs kubelet CSRs with.
pub const KUBELET_CA: &str = "kubelet-signer";

/// A running `certop run`, as its ServiceAccount (the RBAC the chart renders).
pub struct Operator {
    pub metrics_url: String,
    /// `http://127.0.0.1:<port>`: metrics, health and CRLs.
    pub base_url: String,
    pub log: PathBuf,
    pid_file: PathBuf,
    /// Closing it (the test process exiting) stops the operator.
    _stdin: Mutex<ChildStdin>,
    _child: Mutex<Child>,
}

/// The shared operator, started on first use against the shared control
/// plane with exactly the permissions of tests/fixtures/rbac-all-features.yaml.
pub fn operator() -> &'static Operator {
    OPERATOR.get_or_init(|| {
        let cp = control_plane();
        cp.install_rbac();
        cp.start_operator(
            "shared",
            &[
                &format!("--kubelet-signer-ca={KUBELET_CA}"),
                "--approve-kubelet-csrs=true",
                // Test Nodes are named <node>, at <node>.nodes.example and
                // an address in 10.1.0.0/16 (tests/integration/csr.rs).
                r"--kubelet-serving-dns-pattern={node}\.nodes\.example",
                "--kubelet-serving-ip-prefixes=10.1.0.0/16",
            ],
        )
    })
}

pub fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The shared control plane, started on first use with the CRDs installed.
/// A failure to start fails the test with the control plane's log.
pub fn control_plane() -> &'static ControlPlane {
    CONTROL_PLANE.get_or_init(|| start_control_plane(&[]))
}

pub use crate::common::control_plane_binary;

/// A control plane of its own (most tests share `control_plane()`), with
/// extra kube-apiserver flags; it stops when the returned value is dropped.
pub fn start_control_plane(apiserver_args: &[String]) -> ControlPlane {
    let dir = tempfile::Builder::new()
        .prefix("certop-test-")
        .tempdir()
        .expect("tempdir")
        .keep();
    start_control_plane_in(&dir, &[], apiserver_args, &repo_root().join("crds"))
}

/// A control plane of its own with the CRDs of `crds` (a file or a
/// directory) instead of this tree's: an earlier release's, for the
/// upgrade tests.
pub fn start_control_plane_with_crds(crds: &Path) -> ControlPlane {
    let dir = tempfile::Builder::new()
        .prefix("certop-test-")
        .tempdir()
        .expect("tempdir")
        .keep();
    start_control_plane_in(&dir, &[], &[], crds)
}

/// A control plane of its own with extra flags for the harness (e.g.
/// `--pki-dir`, `--port`) and for kube-apiserver.
pub fn start_control_plane_with(args: &[String], apiserver_args: &[String]) -> ControlPlane {
    let dir = tempfile::Builder::new()
        .prefix("certop-test-")
        .tempdir()
        .expect("tempdir")
        .keep();
    start_control_plane_in(&dir, args, apiserver_args, &repo_root().join("crds"))
}

/// Where a control plane with kept data lives: its etcd data and
/// credentials in `dir/data`, its port fixed, so that a restart
/// ([`ControlPlane::kill`], then this again) keeps every object and every
/// kubeconfig written before it valid.
pub struct KeptControlPlane {
    pub dir: PathBuf,
    pub port: u16,
}

impl KeptControlPlane {
    pub fn new() -> KeptControlPlane {
        let dir = tempfile::Builder::new()
            .prefix("certop-test-kept-")
            .tempdir()
            .expect("tempdir")
            .keep();
        KeptControlPlane {
            dir,
            port: free_port(),
        }
    }

    pub fn start(&self) -> ControlPlane {
        self.start_with(&[])
    }

    /// Starts it with extra kube-apiserver flags (give the same ones at
    /// every restart).
    /// A restarted kube-apiserver, like a new one, refuses ClusterCertificate
    /// creates through the finalizer policy until it has loaded the CRDs'
    /// schema: with the policy in its data, this waits for that.
    pub fn start_with(&self, apiserver_args: &[String]) -> ControlPlane {
        let cp = start_control_plane_in(
            &self.dir,
            &[
                format!("--data-dir={}", self.dir.join("data").display()),
                format!("--port={}", self.port),
            ],
            apiserver_args,
            &repo_root().join("crds"),
        );
        let policy = cp.kubectl(&[
            "get",
            "mutatingadmissionpolicy",
            "certop-certificate-finalizer",
        ]);
        if policy.status.success() {
            cp.wait_for_certificate_admission();
        }
        cp
    }
}

fn start_control_plane_in(
    dir: &Path,
    args: &[String],
    apiserver_args: &[String],
    crds: &Path,
) -> ControlPlane {
    let kubeconfig = dir.join("kubeconfig");
    let log = dir.join("control-plane.log");
    let mut child = Command::new(control_plane_binary())
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .arg("--log-file")
        .arg(&log)
        .arg("--exit-with-stdin")
        .args(args)
        .args(
            apiserver_args
                .iter()
                .map(|a| format!("--apiserver-arg={a}")),
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the control plane");
    let stdin = child.stdin.take().expect("stdin");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let ready = rx
        .recv_timeout(Duration::from_secs(180))
        .unwrap_or_default();
    if !ready.starts_with("control plane ready") {
        let _ = child.kill();
        let mut stderr = String::new();
        if let Some(mut e) = child.stderr.take() {
            let _ = e.read_to_string(&mut stderr);
        }
        let log_text = std::fs::read_to_string(&log).unwrap_or_default();
        let tail: Vec<&str> = log_text
            .lines()
            .rev()
            .take(40)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        panic!(
            "the control plane did not start (said {ready:?}); stderr: {stderr}\nlog tail:\n{}",
            tail.join("\n")
        );
    }
    let etcd = ready
        .split_whitespace()
        .find_map(|w| w.strip_prefix("etcd="))
        .unwrap_or_default()
        .to_string();
    let cp = ControlPlane {
        etcd,
        operator_kubeconfig: dir.join("operator.kubeconfig"),
        kubeconfig,
        _stdin: Mutex::new(stdin),
        _child: Mutex::new(child),
    };
    let applied = cp.kubectl(&[
        "apply",
        "--server-side",
        "-f",
        crds.to_str().expect("utf-8"),
    ]);
    assert!(
        applied.status.success(),
        "applying {}: {}",
        crds.display(),
        stderr(&applied)
    );
    let established = cp.kubectl(&[
        "wait",
        "--for=condition=established",
        "--timeout=60s",
        "crd/clustercertificates.certop.dev",
        "crd/certificateauthorities.certop.dev",
    ]);
    assert!(
        established.status.success(),
        "CRDs not established: {}",
        stderr(&established)
    );
    cp
}

impl ControlPlane {
    /// Kills kube-apiserver and etcd at once (SIGKILL: no graceful
    /// shutdown, etcd recovers from its write-ahead log at the next start).
    pub fn kill(self) {
        if let Ok(mut child) = self._child.into_inner() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The RBAC the shared operators run as: the chart's with every
    /// feature on (every namespace, kubelet signing and approval), rendered
    /// by `make manifests`, since the tests create namespaces as they go.
    pub fn install_rbac(&self) {
        self.install_rbac_from("tests/fixtures/rbac-all-features.yaml");
    }

    /// The operator's namespace, the RBAC of `file` (from the repository)
    /// and the admission policies: the files of [`rbac_files`] and
    /// [`ADMISSION_SINCE_PREVIOUS`].
    pub fn install_rbac_from(&self, file: &str) {
        for f in rbac_files(file).into_iter().chain(ADMISSION_SINCE_PREVIOUS) {
            let out = self.kubectl(&["apply", "-f", repo_root().join(f).to_str().expect("utf-8")]);
            assert!(out.status.success(), "{f}: {}", stderr(&out));
        }
        self.wait_for_certificate_admission();
    }

    /// Until kube-apiserver has loaded the schema of certop's kinds for the
    /// finalizer policy (a MutatingAdmissionPolicy), it refuses their
    /// creates with ServiceUnavailable, for a few seconds after the CRDs
    /// are installed or changed: waits until a create (a server-side dry
    /// run) of each version is admitted with the finalizer set, so the
    /// policy is in force too (one just created is not yet, and admits
    /// while the schema is still loading).
    pub fn wait_for_certificate_admission(&self) {
        for version in ["v1", "v1alpha1"] {
            let yaml = format!(
                "apiVersion: certop.dev/{version}\nkind: ClusterCertificate\nmetadata: {{name: admission-probe}}\nspec:\n  issuerRef: {{name: probe}}\n  secretName: probe\n  secretNamespace: default\n  commonName: probe\n"
            );
            let mut last = String::new();
            let admitted = wait_for(Duration::from_secs(60), || {
                let out = self.kubectl_stdin(
                    &[
                        "create",
                        "--dry-run=server",
                        "-o",
                        "jsonpath={.metadata.finalizers}",
                        "-f",
                        "-",
                    ],
                    &yaml,
                );
                last = format!("{}{}", stdout(&out), stderr(&out));
                out.status.success() && stdout(&out).contains("certop.dev/cleanup")
            });
            assert!(
                admitted,
                "certop.dev/{version} ClusterCertificates are not admitted: {last}"
            );
        }
    }

    /// Starts this build's `certop run` (or `CERTOP_BIN`'s, see
    /// [`certop_bin`]) as the operator's ServiceAccount.
    /// The process stops when the returned handle's stdin closes (a shell
    /// waits on it).
    pub fn start_operator(&self, name: &str, extra: &[&str]) -> Operator {
        self.start_operator_binary(&certop_bin(), name, extra)
    }

    /// Starts `binary run` as [`ControlPlane::start_operator`] does: another
    /// build of certop (the previous release, for the upgrade tests).
    pub fn start_operator_binary(&self, binary: &Path, name: &str, extra: &[&str]) -> Operator {
        let port = free_port();
        let dir = self.kubeconfig.parent().expect("dir").to_path_buf();
        let log = dir.join(format!("operator-{name}-{port}.log"));
        let pid_file = dir.join(format!("operator-{name}-{port}.pid"));
        let mut args = vec![
            "run".to_string(),
            format!("--http-addr=127.0.0.1:{port}"),
            format!("--identity={name}"),
        ];
        if !extra.iter().any(|a| a.starts_with("--lease-duration")) {
            args.push("--lease-duration=6".to_string());
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        let script = format!(
            "\"$0\" \"$@\" >>'{}' 2>&1 & pid=$!; echo $pid >'{}'; read -r _; kill $pid 2>/dev/null; wait $pid",
            log.display(),
            pid_file.display()
        );
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(script)
            .arg(binary)
            .args(&args)
            .env("KUBECONFIG", &self.operator_kubeconfig)
            .env("RUST_LOG", "info,certop=debug")
            .stdin(Stdio::piped())
            .spawn()
            .expect("start certop run");
        let stdin = child.stdin.take().expect("stdin");
        let op = Operator {
            metrics_url: format!("http://127.0.0.1:{port}/metrics"),
            base_url: format!("http://127.0.0.1:{port}"),
            log,
            pid_file,
            _stdin: Mutex::new(stdin),
            _child: Mutex::new(child),
        };
        let ready_url = format!("http://127.0.0.1:{port}/readyz");
        let ready = wait_for(Duration::from_secs(30), || {
            http_get(&ready_url).is_some_and(|b| b == "ok")
        });
        assert!(
            ready,
            "the operator did not become ready; its log:\n{}",
            op.log_text()
        );
        op
    }

    /// How many reviews kube-apiserver has sent certop's webhook, by its own
    /// metrics (`apiserver_authorization_webhook_evaluations_total`).
    pub fn webhook_evaluations(&self) -> u64 {
        let out = self.kubectl(&["get", "--raw", "/metrics"]);
        stdout(&out)
            .lines()
            .filter(|l| {
                l.starts_with("apiserver_authorization_webhook_evaluations_total{")
                    && l.contains("name=\"certop.dev\"")
            })
            .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
            .map(|v| v as u64)
            .sum()
    }

    /// Runs the real kubectl as the cluster admin.
    pub fn kubectl(&self, args: &[&str]) -> Output {
        Command::new("kubectl")
            .env("KUBECONFIG", &self.kubeconfig)
            .args(args)
            .output()
            .expect("run kubectl")
    }

    /// Runs `kubectl certop ...`: the real kubectl finding the plugin
    /// (this build's binary as `kubectl-certop`) on PATH.
    pub fn kubectl_certop(&self, args: &[&str]) -> Output {
        let bin = self.kubeconfig.parent().expect("dir").join("plugin-bin");
        let link = bin.join("kubectl-certop");
        if !link.exists() {
            std::fs::create_dir_all(&bin).expect("plugin dir");
            let _ = std::os::unix::fs::symlink(certop_bin(), &link);
        }
        let path = format!(
            "{}:{}",
            bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut full = vec!["certop"];
        full.extend_from_slice(args);
        Command::new("kubectl")
            .env("KUBECONFIG", &self.kubeconfig)
            .env("PATH", path)
            .args(&full)
            .output()
            .expect("run kubectl certop")
    }

    /// Runs kubectl with a manifest on standard input.
    pub fn kubectl_stdin(&self, args: &[&str], input: &str) -> Output {
        use std::io::Write;
        let mut child = Command::new("kubectl")
            .env("KUBECONFIG", &self.kubeconfig)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run kubectl");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("write manifest");
        child.wait_with_output().expect("kubectl output")
    }

    /// A client with the admin's rights, for tests to set up and observe.
    pub async fn admin_client(&self) -> kube::Client {
        client_for(&self.kubeconfig).await
    }
}

impl Operator {
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Stops the operator as SIGTERM would and waits for it to exit.
    pub fn stop(self) {
        drop(self._stdin);
        if let Ok(mut child) = self._child.into_inner() {
            let _ = child.wait();
        }
    }

    /// Whether the operator process is still alive.
    /// A process that exited but that the wrapper shell has not reaped yet
    /// (a zombie) is not running.
    pub fn is_running(&self) -> bool {
        let pid = std::fs::read_to_string(&self.pid_file).unwrap_or_default();
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", pid.trim())).unwrap_or_default();
        let state = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next());
        matches!(state, Some(s) if s != "Z" && s != "X")
    }

    /// Kills the operator at once (SIGKILL), as a crash or a node loss would.
    pub fn kill(self) {
        let pid = std::fs::read_to_string(&self.pid_file).unwrap_or_default();
        let killed = Command::new("kill")
            .args(["-9", pid.trim()])
            .status()
            .expect("kill");
        assert!(killed.success(), "cannot kill the operator (pid {pid:?})");
        self.stop();
    }
}

/// The files, relative to the repository, that give the operator its
/// namespace, the RBAC of `rbac` and the admission guard certop's policies
/// need (manifests/policy-admission.yaml), in the order they apply in:
/// those the previous release had too.
pub fn rbac_files(rbac: &str) -> [&str; 3] {
    [
        "manifests/namespace.yaml",
        rbac,
        "manifests/policy-admission.yaml",
    ]
}

/// The admission policies new since the previous release: the one that
/// lets only a pod's node ask a certop signer for the pod's certificate,
/// and the one that sets certop's finalizer on a new ClusterCertificate.
pub const ADMISSION_SINCE_PREVIOUS: [&str; 2] = [
    "manifests/pod-certificate-admission.yaml",
    "manifests/certificate-finalizer-admission.yaml",
];

/// What a control plane started with `--authorization-config` runs with
/// before certop's webhook is configured: the Node and RBAC authorizers,
/// as a kubeadm cluster does.
pub const NODE_AND_RBAC: &str = "apiVersion: apiserver.config.k8s.io/v1\nkind: AuthorizationConfiguration\nauthorizers:\n- type: Node\n  name: node\n- type: RBAC\n  name: rbac\n";

/// The certop binary the tests run: this build's, or `CERTOP_BIN` when
/// set. Worktrees that share one target directory overwrite each other's
/// target/debug/certop; a copy of one's own build keeps a run to it.
pub fn certop_bin() -> PathBuf {
    std::env::var_os("CERTOP_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_certop")))
}

/// Runs this build's certop, as the user of `kubeconfig` when given.
pub fn certop(args: &[&str], kubeconfig: Option<&Path>) -> Output {
    let mut cmd = Command::new(certop_bin());
    if let Some(k) = kubeconfig {
        cmd.env("KUBECONFIG", k);
    }
    cmd.args(args).output().expect("run certop")
}

/// A CA made offline (`certop pki ca create`) in `dir/ca`, as kubeadm's
/// `ca.crt` and `ca.key`: what kube-apiserver trusts for client
/// certificates, adopted by certop afterwards.
pub fn offline_ca(dir: &Path, name: &str) -> PathBuf {
    let ca_dir = dir.join("ca");
    let out = certop(
        &[
            "pki",
            "ca",
            "create",
            "--name",
            name,
            "--out",
            ca_dir.to_str().expect("utf-8"),
        ],
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    ca_dir
}

/// Issues the ClusterCertificate `yaml` offline from `ca_dir` (`certop pki
/// issue`), as a certificate certop never saw: the directory of its
/// `tls.crt` and `tls.key`, `dir/<name>`.
pub fn issue_offline(ca_dir: &Path, dir: &Path, name: &str, yaml: &str) -> PathBuf {
    let manifest = dir.join(format!("{name}.yaml"));
    std::fs::write(&manifest, yaml).expect("write");
    let out_dir = dir.join(name);
    let out = certop(
        &[
            "pki",
            "issue",
            "--ca",
            ca_dir.to_str().expect("utf-8"),
            "-f",
            manifest.to_str().expect("utf-8"),
            "--out",
            out_dir.to_str().expect("utf-8"),
        ],
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    out_dir
}

/// A control plane whose kube-apiserver trusts `ca_dir` for client
/// certificates and reads its authorizers from a file that starts as Node
/// and RBAC (`configure_certop_webhook` puts certop's first): the control
/// plane and that file.
pub fn start_control_plane_trusting(
    ca_dir: &Path,
    dir: &Path,
    apiserver_args: &[String],
) -> (ControlPlane, PathBuf) {
    let authz_file = dir.join("authorization-config.yaml");
    std::fs::write(&authz_file, NODE_AND_RBAC).expect("write");
    let mut args = vec![
        format!("--client-ca-file={}", ca_dir.join("ca.crt").display()),
        format!("--authorization-config={}", authz_file.display()),
    ];
    args.extend_from_slice(apiserver_args);
    (start_control_plane(&args), authz_file)
}

/// Puts certop's webhook in front of `cp`'s Node and RBAC authorizers as a
/// user would: writes what `certop authz-config --ca CA --server
/// https://127.0.0.1:PORT --failure-policy POLICY` generates over
/// `authz_file`, the `--authorization-config` kube-apiserver reloads.
pub fn configure_certop_webhook(
    cp: &ControlPlane,
    authz_file: &Path,
    ca: &str,
    port: u16,
    failure_policy: &str,
) {
    let out_dir = authz_file.with_file_name(format!("certop-authz-{failure_policy}"));
    let out = certop(
        &[
            "authz-config",
            "--ca",
            ca,
            "--server",
            &format!("https://127.0.0.1:{port}"),
            "--out",
            out_dir.to_str().expect("utf-8"),
            "--failure-policy",
            failure_policy,
        ],
        Some(&cp.kubeconfig),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let config = std::fs::read_to_string(out_dir.join("authorization-config.yaml")).expect("read");
    std::fs::write(authz_file, config).expect("write");
}

/// pkilint's binaries: from PKILINT_BIN (set by `make test`) or `.venv/bin`.
pub fn pkilint(tool: &str) -> PathBuf {
    let dir = std::env::var_os("PKILINT_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".venv/bin"));
    let bin = dir.join(tool);
    assert!(
        bin.exists(),
        "{} not found: run `make venv` (or `make test`), which installs pkilint",
        bin.display()
    );
    bin
}

/// A loopback port nothing listens on, for a server a test starts.
///
/// A port from `bind(0)` is free only until it is closed again: the kernel
/// hands the same one to the next `bind(0)` (another test's) or to an
/// outgoing connection, and the server then fails with "Address already in
/// use" (CI saw it). So the ports come from below the kernel's ephemeral
/// range (32768 and up), which neither of those uses, each at most once per
/// test process, starting at an offset of the process id so two test
/// binaries rarely meet; the control plane's Go ports stay in 10000–19999.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const FIRST: u32 = 20_000;
    const COUNT: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let offset = std::process::id().wrapping_mul(7919) % COUNT;
    for _ in 0..COUNT {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = (FIRST + (offset + n) % COUNT) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port in {FIRST}..{}", FIRST + COUNT)
}

/// An HTTP/1.1 GET on loopback with extra headers: (status, headers, body).
pub fn http_request(url: &str, headers: &[(&str, &str)]) -> Option<(u16, String, Vec<u8>)> {
    use std::io::Write;
    let rest = url.strip_prefix("http://")?;
    let (host, path) = rest.split_once('/').map(|(h, p)| (h, format!("/{p}")))?;
    let mut stream = std::net::TcpStream::connect(host).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let extra: String = headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}\r\n"))
        .collect();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\n{extra}Connection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).ok()?;
    let split = response.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&response[..split]).into_owned();
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, head, response[split + 4..].to_vec()))
}

/// A plain HTTP GET on loopback; None on any failure.
pub fn http_get(url: &str) -> Option<String> {
    use std::io::Write;
    let rest = url.strip_prefix("http://")?;
    let (host, path) = rest.split_once('/').map(|(h, p)| (h, format!("/{p}")))?;
    let mut stream = std::net::TcpStream::connect(host).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then(|| body.to_string())
}

/// Polls `check` every 200 ms until it holds or `timeout` passes.
pub fn wait_for(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if check() {
            return true;
        }
        if std::time::Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

pub async fn client_for(kubeconfig: &Path) -> kube::Client {
    let kc = Kubeconfig::read_from(kubeconfig).expect("read kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .expect("kubeconfig");
    kube::Client::try_from(config).expect("client")
}

/// A name no other test uses: `prefix-<random>`.
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    // Five hex digits always: callers cut a fixed length from it.
    format!("{prefix}-{:05x}{n}", nanos & 0xfffff)
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Serials (lower-case hex) a DER CRL lists, as openssl reads them.
pub fn crl_serials(dir: &Path, der: &[u8]) -> BTreeSet<String> {
    let path = dir.join("serials.crl");
    std::fs::write(&path, der).expect("write");
    let out = Command::new("openssl")
        .args(["crl", "-inform", "DER", "-noout", "-text", "-in"])
        .arg(&path)
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Serial Number: "))
        .map(|s| s.trim_start_matches('0').to_lowercase())
        .collect()
}
