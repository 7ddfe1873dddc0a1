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

/// Each alert of the rules file, and what its annotations and labels say.
fn alerts() -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(repo().join("charts/certop/files/certop-alerts.yaml"))
        .expect("rules file");
    let rules: serde_json::Value = serde_saphyr::from_str(&text).expect("rules file is YAML");
    rules["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .flat_map(|g| g["rules"].as_array().expect("rules").clone())
        .filter(|r| r.get("alert").is_some())
        .collect()
}

/// Every alert has what docs/alerts.md promises of it: a row in its table
/// with its severity, a runbook section its `runbook_url` points at, and a
/// promtool test in which it fires (not only one in which it stays quiet);
/// and every runbook section is an alert's. Needs no promtool.
#[test]
fn every_alert_has_a_table_row_a_runbook_section_and_a_test_in_which_it_fires() {
    let docs = std::fs::read_to_string(repo().join("docs/alerts.md")).expect("docs/alerts.md");
    let tests: serde_json::Value = serde_saphyr::from_str(
        &std::fs::read_to_string(repo().join("tests/alerts/certop-alerts.test.yaml"))
            .expect("promtool tests"),
    )
    .expect("promtool tests are YAML");
    let firing: Vec<&str> = tests["tests"]
        .as_array()
        .expect("tests")
        .iter()
        .flat_map(|t| t["alert_rule_test"].as_array().into_iter().flatten())
        .filter(|c| c["exp_alerts"].as_array().is_some_and(|a| !a.is_empty()))
        .filter_map(|c| c["alertname"].as_str())
        .collect();
    let alerts = alerts();
    let names: Vec<&str> = alerts
        .iter()
        .map(|a| a["alert"].as_str().expect("alert name"))
        .collect();
    let mut missing = Vec::new();
    for alert in &alerts {
        let name = alert["alert"].as_str().expect("alert name");
        let severity = alert["labels"]["severity"].as_str().unwrap_or_default();
        if !docs.contains(&format!("\n| {name} | {severity} | ")) {
            missing.push(format!("{name}: a table row with severity {severity:?}"));
        }
        if !docs.contains(&format!("\n## {name}\n")) {
            missing.push(format!("{name}: a runbook section `## {name}`"));
        }
        let runbook = format!("https://certop.dev/docs/alerts.md#{}", name.to_lowercase());
        if alert["annotations"]["runbook_url"] != runbook.as_str() {
            missing.push(format!("{name}: runbook_url {runbook}"));
        }
        if !firing.contains(&name) {
            missing.push(format!("{name}: a promtool test in which it fires"));
        }
    }
    for section in docs.lines().filter_map(|l| l.strip_prefix("## ")) {
        if !names.contains(&section) {
            missing.push(format!("runbook section {section:?} names no alert"));
        }
    }
    assert!(missing.is_empty(), "{missing:#?}");
    assert!(names.len() >= 12, "{names:?}");
}
