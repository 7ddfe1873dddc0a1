//! `certop pki systemd-units`: the systemd units that keep a node's files
//! current without anyone logging in. `certop-renew.service` runs `certop
//! pki renew` (and, given a CRL URL, `certop pki crl-sync` for etcd's
//! `--client-crl-file` / `--peer-crl-file`) at boot before the kubelet
//! starts the static pods; `certop-renew.timer` runs it again daily (every
//! five minutes when it also keeps a CRL, so a revocation reaches etcd in
//! minutes, not a day). A command of its own rather than a flag of `pki
//! init`: a node whose files kubeadm made needs the units too, and must not
//! be offered new CAs to get them.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use clap::Args;

use super::CliError;
use super::files::{OutputFile, write_all};

/// The units' names: fixed, docs and `systemctl` commands use them.
pub const SERVICE: &str = "certop-renew.service";
pub const TIMER: &str = "certop-renew.timer";

/// How often the timer fires when the service also keeps a CRL file.
const CRL_CALENDAR: &str = "*:0/5";

/// How long a run may take before systemd stops it: at boot the kubelet
/// waits for it, and the CRL's server may not answer before the control
/// plane is up.
const TIMEOUT_SECONDS: u32 = 120;

#[derive(Debug, Args)]
pub struct SystemdUnitsArgs {
    /// Where to write certop-renew.service and certop-renew.timer.
    #[arg(long, default_value = "/etc/systemd/system")]
    out: PathBuf,
    /// The pki directory `certop pki renew` keeps.
    #[arg(long, default_value = "/etc/kubernetes/pki")]
    dir: PathBuf,
    /// Where the kubeconfig files are. Default: the pki directory's parent.
    #[arg(long)]
    kubeconfig_dir: Option<PathBuf>,
    /// certop's CRL of the etcd CA (`http://HOST/crl/<ca>.crl`): the
    /// service also runs `certop pki crl-sync` with it, and the timer fires
    /// every five minutes.
    #[arg(long)]
    crl_url: Option<String>,
    /// The CA certificate that must have signed the CRL. Default: the pki
    /// directory's etcd/ca.crt.
    #[arg(long, requires = "crl_url")]
    crl_ca: Option<PathBuf>,
    /// The CRL file etcd reads. Default: the pki directory's etcd/crl.der.
    #[arg(long, requires = "crl_url")]
    crl_out: Option<PathBuf>,
    /// The certop binary the service runs. Default: this one.
    #[arg(long)]
    certop: Option<PathBuf>,
}

/// What the units run, every path absolute (systemd runs them from `/`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnitParams {
    pub certop: PathBuf,
    pub dir: PathBuf,
    pub kubeconfig_dir: PathBuf,
    pub crl: Option<CrlParams>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CrlParams {
    pub url: String,
    pub ca: PathBuf,
    pub out: PathBuf,
}

/// A word of an `ExecStart=` line as systemd reads it back: `%` and `$`
/// doubled (specifiers, variables), quoted when it holds a space or a
/// quote. A control character cannot be written at all.
fn exec_word(word: &str) -> Result<String, CliError> {
    if word.chars().any(char::is_control) {
        return Err(CliError::Invalid(format!(
            "{word:?}: a control character cannot be written into a systemd unit"
        )));
    }
    let escaped = word
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('%', "%%")
        .replace('$', "$$");
    let quote = word.is_empty()
        || word
            .chars()
            .any(|c| c.is_whitespace() || matches!(c, '"' | '\'' | '\\' | ';'));
    Ok(if quote {
        format!("\"{escaped}\"")
    } else {
        escaped
    })
}

fn exec_line(words: &[&str]) -> Result<String, CliError> {
    let words = words
        .iter()
        .map(|w| exec_word(w))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(format!("ExecStart={}", words.join(" ")))
}

fn path_str(path: &Path) -> Result<&str, CliError> {
    path.to_str().ok_or_else(|| {
        CliError::Invalid(format!(
            "{}: not UTF-8, cannot be written into a systemd unit",
            path.display()
        ))
    })
}

/// certop-renew.service. Pure.
pub fn service(p: &UnitParams) -> Result<String, CliError> {
    let certop = path_str(&p.certop)?;
    let renew = exec_line(&[
        certop,
        "pki",
        "renew",
        "--dir",
        path_str(&p.dir)?,
        "--kubeconfig-dir",
        path_str(&p.kubeconfig_dir)?,
    ])?;
    let mut unit = String::new();
    let _ = writeln!(unit, "# Written by `certop pki systemd-units`.");
    let _ = writeln!(unit, "[Unit]");
    match &p.crl {
        Some(_) => {
            let _ = writeln!(
                unit,
                "Description=Renew this node's certificates and refresh etcd's CRL file (certop)"
            );
            let _ = writeln!(unit, "Wants=network-online.target");
            let _ = writeln!(unit, "After=local-fs.target network-online.target");
        }
        None => {
            let _ = writeln!(unit, "Description=Renew this node's certificates (certop)");
            let _ = writeln!(unit, "After=local-fs.target");
        }
    }
    // The kubelet starts the static pods on renewed files.
    let _ = writeln!(unit, "Before=kubelet.service");
    let _ = writeln!(unit);
    let _ = writeln!(unit, "[Service]");
    // Not RemainAfterExit: an active oneshot would make the timer's runs no-ops.
    let _ = writeln!(unit, "Type=oneshot");
    let _ = writeln!(unit, "TimeoutStartSec={TIMEOUT_SECONDS}");
    let _ = writeln!(unit, "{renew}");
    if let Some(crl) = &p.crl {
        let sync = exec_line(&[
            certop,
            "pki",
            "crl-sync",
            "--url",
            &crl.url,
            "--ca",
            path_str(&crl.ca)?,
            "--out",
            path_str(&crl.out)?,
        ])?;
        let _ = writeln!(unit, "{sync}");
    }
    let _ = writeln!(unit);
    let _ = writeln!(unit, "[Install]");
    let _ = writeln!(unit, "WantedBy=multi-user.target");
    Ok(unit)
}

/// certop-renew.timer. Pure.
pub fn timer(p: &UnitParams) -> String {
    let mut unit = String::new();
    let _ = writeln!(unit, "# Written by `certop pki systemd-units`.");
    let _ = writeln!(unit, "[Unit]");
    let _ = writeln!(unit, "Description=Run {SERVICE} regularly");
    let _ = writeln!(unit);
    let _ = writeln!(unit, "[Timer]");
    let _ = writeln!(unit, "OnCalendar=daily");
    if p.crl.is_some() {
        let _ = writeln!(unit, "OnCalendar={CRL_CALENDAR}");
    }
    // A run missed while the node was off happens when it is back.
    let _ = writeln!(unit, "Persistent=true");
    let _ = writeln!(unit, "Unit={SERVICE}");
    let _ = writeln!(unit);
    let _ = writeln!(unit, "[Install]");
    let _ = writeln!(unit, "WantedBy=timers.target");
    unit
}

fn absolute(path: &Path) -> Result<PathBuf, CliError> {
    std::path::absolute(path).map_err(CliError::io(path))
}

fn params(args: &SystemdUnitsArgs) -> Result<UnitParams, CliError> {
    let certop = match &args.certop {
        Some(p) => absolute(p)?,
        None => std::env::current_exe().map_err(CliError::io("the running certop binary"))?,
    };
    let dir = absolute(&args.dir)?;
    let kubeconfig_dir = absolute(&super::node::kubeconfig_dir(&dir, &args.kubeconfig_dir))?;
    let crl = match &args.crl_url {
        Some(url) => {
            if !url.starts_with("http://") {
                return Err(CliError::Invalid(format!(
                    "--crl-url {url}: only http:// is supported (crl-sync checks the CRL's signature instead)"
                )));
            }
            Some(CrlParams {
                url: url.clone(),
                ca: absolute(
                    &args
                        .crl_ca
                        .clone()
                        .unwrap_or_else(|| dir.join("etcd/ca.crt")),
                )?,
                out: absolute(
                    &args
                        .crl_out
                        .clone()
                        .unwrap_or_else(|| dir.join("etcd/crl.der")),
                )?,
            })
        }
        None => None,
    };
    Ok(UnitParams {
        certop,
        dir,
        kubeconfig_dir,
        crl,
    })
}

pub fn systemd_units(args: &SystemdUnitsArgs) -> Result<(), CliError> {
    let p = params(args)?;
    let (service_path, timer_path) = (args.out.join(SERVICE), args.out.join(TIMER));
    write_all(&[
        OutputFile {
            path: service_path.clone(),
            content: service(&p)?.into_bytes(),
            secret: false,
        },
        OutputFile {
            path: timer_path.clone(),
            content: timer(&p).into_bytes(),
            secret: false,
        },
    ])?;
    println!(
        "wrote {} and {}\nenable them: systemctl daemon-reload && systemctl enable {SERVICE} && systemctl enable --now {TIMER}",
        service_path.display(),
        timer_path.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(crl: bool) -> UnitParams {
        UnitParams {
            certop: "/usr/local/bin/certop".into(),
            dir: "/etc/kubernetes/pki".into(),
            kubeconfig_dir: "/etc/kubernetes".into(),
            crl: crl.then(|| CrlParams {
                url: "http://10.0.0.5:8080/crl/etcd.crl".into(),
                ca: "/etc/kubernetes/pki/etcd/ca.crt".into(),
                out: "/etc/kubernetes/pki/etcd/crl.der".into(),
            }),
        }
    }

    fn exec_lines(unit: &str) -> Vec<&str> {
        unit.lines()
            .filter_map(|l| l.strip_prefix("ExecStart="))
            .collect()
    }

    #[test]
    fn the_service_renews_before_the_kubelet_and_syncs_the_crl_only_when_asked() {
        let plain = service(&params(false)).expect("unit");
        assert_eq!(
            exec_lines(&plain),
            [
                "/usr/local/bin/certop pki renew --dir /etc/kubernetes/pki --kubeconfig-dir /etc/kubernetes"
            ]
        );
        assert!(plain.contains("Before=kubelet.service"));
        assert!(plain.contains("Type=oneshot"));
        assert!(
            !plain.contains("RemainAfterExit"),
            "an active oneshot makes the timer's runs no-ops"
        );
        assert!(!plain.contains("network-online"));
        let with_crl = service(&params(true)).expect("unit");
        assert_eq!(
            exec_lines(&with_crl)[1],
            "/usr/local/bin/certop pki crl-sync --url http://10.0.0.5:8080/crl/etcd.crl --ca /etc/kubernetes/pki/etcd/ca.crt --out /etc/kubernetes/pki/etcd/crl.der"
        );
        assert!(with_crl.contains("After=local-fs.target network-online.target"));
    }

    #[test]
    fn the_timer_runs_daily_and_every_five_minutes_with_a_crl() {
        let plain = timer(&params(false));
        assert!(plain.contains("OnCalendar=daily\nPersistent=true"));
        assert!(plain.contains("Unit=certop-renew.service"));
        let with_crl = timer(&params(true));
        assert!(with_crl.contains("OnCalendar=daily\nOnCalendar=*:0/5\n"));
    }

    #[test]
    fn the_units_the_docs_show_are_the_ones_written() {
        let doc = include_str!("../../docs/control-plane-certificates.md");
        let p = params(true);
        assert!(doc.contains(&service(&p).expect("unit")), "the service");
        assert!(doc.contains(&timer(&p)), "the timer");
    }

    #[test]
    fn words_are_escaped_as_systemd_reads_them() {
        let cases = [
            ("/usr/bin/certop", "/usr/bin/certop"),
            ("/srv/my pki", "\"/srv/my pki\""),
            ("/srv/100%", "/srv/100%%"),
            ("/srv/$HOME", "/srv/$$HOME"),
            ("a\"b", "\"a\\\"b\""),
            ("", "\"\""),
        ];
        for (word, written) in cases {
            assert_eq!(exec_word(word).expect("word"), written, "{word}");
        }
        assert!(
            exec_word("a\nExecStart=/bin/sh").is_err(),
            "no line injected"
        );
    }
}
