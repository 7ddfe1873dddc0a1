//! Helpers shared by the test binaries that run the `certop` binary and the
//! control-plane program.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// Runs the certop binary built for these tests.
pub fn certop(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_certop"))
        .args(args)
        .output()
        .expect("run certop")
}

/// The standard output of a command that must succeed.
pub fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The control-plane program: from CERTOP_CONTROL_PLANE (set by `make
/// test`), else built (or found in the cache) by tests/control-plane/build.sh.
pub fn control_plane_binary() -> PathBuf {
    harness_binary("CERTOP_CONTROL_PLANE", "control-plane")
}

/// kubeadm v1.36.3: from CERTOP_KUBEADM (set by `make test`), else built
/// (or found in the cache) by tests/kubeadm/build.sh.
pub fn kubeadm_binary() -> PathBuf {
    harness_binary("CERTOP_KUBEADM", "kubeadm")
}

/// The kubelet v1.36.3 with its `fake-cri` subcommand: from CERTOP_KUBELET
/// (set by `make test`), else built (or found in the cache) by
/// tests/kubelet/build.sh.
pub fn kubelet_binary() -> PathBuf {
    harness_binary("CERTOP_KUBELET", "kubelet")
}

/// The commit of the previous release (v0.1.0), by hash: a clone without
/// tags has it too. tests/previous-release/build.sh builds it.
pub const PREVIOUS_RELEASE: &str = include_str!("../previous-release/commit").trim_ascii();

/// certop as the previous release built it ([`PREVIOUS_RELEASE`]):
/// from CERTOP_PREVIOUS_RELEASE (set by `make test`), else built (or found
/// in the cache) by tests/previous-release/build.sh.
pub fn previous_release_binary() -> PathBuf {
    harness_binary("CERTOP_PREVIOUS_RELEASE", "previous-release")
}

/// A program tests/<dir>/build.sh builds (a Go harness, the previous
/// release): the path in `env_var` when set, else what the script prints
/// (it builds once and caches the binary).
fn harness_binary(env_var: &str, dir: &str) -> PathBuf {
    if let Some(bin) = std::env::var_os(env_var) {
        return PathBuf::from(bin);
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join(dir)
        .join("build.sh");
    let out = Command::new(&script)
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", script.display()));
    assert!(
        out.status.success(),
        "building tests/{dir} failed (see above)"
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}
