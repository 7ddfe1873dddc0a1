//! The chart's alerting rules: promtool checks them and runs their unit
//! tests (tests/alerts/certop-alerts.test.yaml: each alert fires on trouble
//! and stays quiet beside it). That every certop metric the rules and the
//! dashboard name is one certop exports is checked where the metrics are
//! made (`operator::runtime::metrics`'s tests).
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failed step should panic

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn promtool() -> PathBuf {
    if let Some(bin) = std::env::var_os("CERTOP_PROMTOOL") {
        return PathBuf::from(bin);
    }
    let out = Command::new(repo().join("tests/promtool/build.sh"))
        .stderr(Stdio::inherit())
        .output()
        .expect("run tests/promtool/build.sh");
    assert!(out.status.success(), "building promtool failed (see above)");
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

fn run_promtool(args: &[&str]) -> String {
    let out = Command::new(promtool())
        .args(args)
        .current_dir(repo())
        .output()
        .expect("run promtool");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?}:\n{text}");
    text
}

#[test]
fn the_rules_are_valid_and_each_alert_fires_on_trouble_only() {
    let checked = run_promtool(&["check", "rules", "charts/certop/files/certop-alerts.yaml"]);
    assert!(checked.contains("SUCCESS: 12 rules found"), "{checked}");
    let tested = run_promtool(&["test", "rules", "tests/alerts/certop-alerts.test.yaml"]);
    assert!(tested.contains("SUCCESS"), "{tested}");
}
