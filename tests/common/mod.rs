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
    if let Some(bin) = std::env::var_os("CERTOP_CONTROL_PLANE") {
        return PathBuf::from(bin);
    }
    let out =
        Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/control-plane/build.sh"))
            .stderr(Stdio::inherit())
            .output()
            .expect("run tests/control-plane/build.sh");
    assert!(
        out.status.success(),
        "building the control plane failed (see above)"
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}
