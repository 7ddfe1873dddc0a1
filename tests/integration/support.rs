//! One real control plane (kube-apiserver + etcd, see tests/control-plane/)
//! shared by every integration test in this binary. Tests isolate
//! themselves with unique object names and namespaces, never by restarting.

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
    /// Held open: the control plane exits when this test process does.
    _stdin: Mutex<ChildStdin>,
    _child: Mutex<Child>,
}

static CONTROL_PLANE: OnceLock<ControlPlane> = OnceLock::new();

pub fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The shared control plane, started on first use with the CRDs installed.
/// A failure to start fails the test with the control plane's log.
pub fn control_plane() -> &'static ControlPlane {
    CONTROL_PLANE.get_or_init(start)
}

fn control_plane_binary() -> PathBuf {
    if let Some(bin) = std::env::var_os("CERTOP_CONTROL_PLANE") {
        return PathBuf::from(bin);
    }
    let out = Command::new(repo_root().join("tests/control-plane/build.sh"))
        .stderr(Stdio::inherit())
        .output()
        .expect("run tests/control-plane/build.sh");
    assert!(
        out.status.success(),
        "building the control plane failed (see above)"
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

fn start() -> ControlPlane {
    let dir = tempfile::Builder::new()
        .prefix("certop-test-")
        .tempdir()
        .expect("tempdir")
        .keep();
    let kubeconfig = dir.join("kubeconfig");
    let log = dir.join("control-plane.log");
    let mut child = Command::new(control_plane_binary())
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .arg("--log-file")
        .arg(&log)
        .arg("--exit-with-stdin")
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
    let cp = ControlPlane {
        operator_kubeconfig: dir.join("operator.kubeconfig"),
        kubeconfig,
        _stdin: Mutex::new(stdin),
        _child: Mutex::new(child),
    };
    let applied = cp.kubectl(&[
        "apply",
        "--server-side",
        "-f",
        repo_root().join("crds").to_str().expect("utf-8"),
    ]);
    assert!(
        applied.status.success(),
        "applying crds/: {}",
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
    /// Runs the real kubectl as the cluster admin.
    pub fn kubectl(&self, args: &[&str]) -> Output {
        Command::new("kubectl")
            .env("KUBECONFIG", &self.kubeconfig)
            .args(args)
            .output()
            .expect("run kubectl")
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
    format!("{prefix}-{:x}{n}", nanos & 0xfffff)
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}
