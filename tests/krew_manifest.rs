//! The krew manifest of the kubectl plugin (scripts/krew-manifest.sh, run by
//! `make dist`): krew's required fields, the archive's real sha256, and a
//! refusal of archives without the plugin binary.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failed step should panic

use std::process::Command;

fn script(args: &[&str]) -> std::process::Output {
    Command::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/scripts/krew-manifest.sh"
    ))
    .args(args)
    .output()
    .expect("run scripts/krew-manifest.sh")
}

fn archive(dir: &std::path::Path, file: &str) -> std::path::PathBuf {
    std::fs::write(dir.join(file), b"#!/bin/sh\n").expect("write");
    let path = dir.join(format!("{file}.tar.gz"));
    let ok = Command::new("tar")
        .arg("-C")
        .arg(dir)
        .arg("-czf")
        .arg(&path)
        .arg(file)
        .status()
        .expect("tar")
        .success();
    assert!(ok);
    path
}

#[test]
fn the_krew_manifest_names_the_archive_by_its_hash() {
    let tmp = tempfile::tempdir().expect("tmp");
    let good = archive(tmp.path(), "kubectl-certop");
    let url = "https://example.com/kubectl-certop_linux_amd64.tar.gz";
    let out = script(&["v0.1.0", url, good.to_str().expect("utf-8")]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let manifest: serde_json::Value =
        serde_saphyr::from_str(&String::from_utf8_lossy(&out.stdout)).expect("YAML");
    assert_eq!(
        manifest["apiVersion"],
        "krew.googlecontainertools.github.com/v1alpha2"
    );
    assert_eq!(manifest["kind"], "Plugin");
    assert_eq!(manifest["metadata"]["name"], "certop");
    assert_eq!(manifest["spec"]["version"], "v0.1.0");
    assert!(
        manifest["spec"]["shortDescription"]
            .as_str()
            .is_some_and(|d| !d.is_empty())
    );
    let platform = &manifest["spec"]["platforms"][0];
    assert_eq!(platform["uri"], url);
    assert_eq!(platform["bin"], "kubectl-certop");
    assert_eq!(platform["selector"]["matchLabels"]["os"], "linux");
    let digest = aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        &std::fs::read(&good).expect("archive"),
    );
    let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(platform["sha256"], hex.as_str(), "the archive's own hash");

    let wrong = archive(tmp.path(), "something-else");
    let refused = script(&["v0.1.0", url, wrong.to_str().expect("utf-8")]);
    assert!(
        !refused.status.success(),
        "an archive without the plugin is refused"
    );
    let bad_version = script(&["0.1", url, good.to_str().expect("utf-8")]);
    assert!(
        !bad_version.status.success(),
        "krew wants v-prefixed semver"
    );
}
