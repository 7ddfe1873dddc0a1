use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use chrono::Utc;
use clap::{Args, Subcommand};

use super::files::{OutputFile, read, write_all};
use super::{CliError, cli_duration, format_time_left};
use crate::api::{ClusterCertificate, GoDuration, KeyAlgorithm};
use crate::core::plan::{CA_CERT_KEY, TLS_CERT_KEY, TLS_PRIVATE_KEY_KEY};
use crate::pki::{
    Authority, CaRequest, CertificateInfo, LeafTemplate, PrivateKey, issue, parse_chain,
};

#[derive(Debug, Subcommand)]
pub enum PkiCommand {
    /// Certificate authorities on disk.
    #[command(subcommand)]
    Ca(CaCommand),
    /// Issue a certificate from a ClusterCertificate manifest, signed by a CA on disk.
    Issue(IssueArgs),
    /// Print what a PEM certificate (or each of a bundle) says.
    Inspect {
        /// A PEM file with one or more certificates.
        file: PathBuf,
    },
    /// Create a control-plane node's CAs, certificates and kubeconfigs in
    /// kubeadm's layout, keeping what is already there.
    Init(super::node::InitArgs),
    /// kubeadm-style expiry tables of a node's certificates and CAs.
    CheckExpiration(super::node::CheckExpirationArgs),
    /// Renew a node's certificates that are due, keeping their names; safe at every boot.
    Renew(super::node::RenewArgs),
    /// Rotate the node's CAs one step per run: stage a new CA beside the
    /// old one, then switch to it and re-issue everything, then drop the old one.
    RotateCa(super::node_rotation::RotateCaArgs),
    /// Keep a CRL file current for etcd (--client-crl-file, --peer-crl-file):
    /// fetch certop's CRL, check the CA signed it, never go back to a lower
    /// CRL number, replace the file whole.
    CrlSync(super::crl_sync::CrlSyncArgs),
    /// Write certop-renew.service and certop-renew.timer: `pki renew` (and
    /// `pki crl-sync`, given --crl-url) at boot before the kubelet, and
    /// regularly after.
    SystemdUnits(super::systemd_units::SystemdUnitsArgs),
}

#[derive(Debug, Subcommand)]
pub enum CaCommand {
    /// Create a self-signed CA: writes OUT/ca.crt and OUT/ca.key (0600).
    Create(CaCreateArgs),
}

#[derive(Debug, Args)]
pub struct CaCreateArgs {
    /// The CA's common name.
    #[arg(long)]
    name: String,
    /// Directory for ca.crt and ca.key.
    #[arg(long)]
    out: PathBuf,
    /// ECDSA-P256, ECDSA-P384, Ed25519, RSA-2048, RSA-3072 or RSA-4096.
    #[arg(long, default_value = "ECDSA-P256")]
    algorithm: KeyAlgorithm,
    /// Lifetime: a number and a unit (s, m, h, d), e.g. 87600h or 3650d; at least 1h.
    #[arg(long, default_value = "87600h")]
    duration: GoDuration,
    /// Organization (O) of the subject (one).
    #[arg(long = "organization")]
    organizations: Vec<String>,
}

#[derive(Debug, Args)]
pub struct IssueArgs {
    /// Directory holding the CA's ca.crt and ca.key.
    #[arg(long)]
    ca: PathBuf,
    /// A ClusterCertificate manifest (YAML).
    #[arg(short = 'f', long = "filename")]
    manifest: PathBuf,
    /// Directory for tls.crt (leaf then CA), tls.key (0600) and ca.crt.
    #[arg(long)]
    out: PathBuf,
    /// Replace tls.crt, tls.key and ca.crt if they exist (never done otherwise).
    #[arg(long)]
    force: bool,
}

pub fn run(cmd: PkiCommand) -> Result<(), CliError> {
    match cmd {
        PkiCommand::Ca(CaCommand::Create(args)) => create_ca(&args),
        PkiCommand::Issue(args) => issue_from_manifest(&args),
        PkiCommand::Init(args) => super::node::init(&args),
        PkiCommand::CheckExpiration(args) => super::node::check_expiration(&args),
        PkiCommand::Renew(args) => super::node::renew(&args),
        PkiCommand::RotateCa(args) => super::node_rotation::rotate_ca(&args),
        PkiCommand::CrlSync(args) => super::plugin::block_on(super::crl_sync::crl_sync(args)),
        PkiCommand::SystemdUnits(args) => super::systemd_units::systemd_units(&args),
        PkiCommand::Inspect { file } => {
            let text = inspect(&file)?;
            print!("{text}");
            Ok(())
        }
    }
}

fn create_ca(args: &CaCreateArgs) -> Result<(), CliError> {
    let key_path = args.out.join("ca.key");
    if key_path.exists() {
        return Err(CliError::WouldOverwriteKey(key_path));
    }
    let request = CaRequest {
        common_name: args.name.clone(),
        organizations: args.organizations.clone(),
        algorithm: args.algorithm,
        lifetime: cli_duration(&args.duration)?,
    };
    let ca = Authority::create(&request, Utc::now())?;
    write_all(&[
        OutputFile {
            path: args.out.join("ca.crt"),
            content: ca.certificate_pem().as_bytes().to_vec(),
            secret: false,
        },
        OutputFile {
            path: key_path,
            content: ca.key_pem().into_bytes(),
            secret: true,
        },
    ])?;
    println!(
        "created CA {:?} (serial {}, expires {}) in {}",
        args.name,
        ca.certificate().serial,
        ca.certificate().not_after.to_rfc3339(),
        args.out.display()
    );
    Ok(())
}

/// Loads a CA from DIR/ca.crt and DIR/ca.key.
pub(crate) fn load_ca(dir: &Path) -> Result<Authority, CliError> {
    let cert = read(&dir.join("ca.crt"))?;
    let key = read(&dir.join("ca.key"))?;
    Ok(Authority::load(&cert, &key, Utc::now())?)
}

fn issue_from_manifest(args: &IssueArgs) -> Result<(), CliError> {
    let manifest = read_manifest(&args.manifest)?;
    // A key, or another CA's ca.crt given as --out, is never overwritten by surprise.
    if !args.force {
        for file in [TLS_CERT_KEY, TLS_PRIVATE_KEY_KEY, CA_CERT_KEY] {
            let path = args.out.join(file);
            if path.exists() {
                return Err(CliError::Invalid(format!(
                    "{} already exists; refusing to overwrite it (choose another --out, or pass --force)",
                    path.display()
                )));
            }
        }
    }
    let template = LeafTemplate::from_spec(&manifest.spec)?;
    let ca = load_ca(&args.ca)?;
    let key = PrivateKey::generate(template.key_algorithm)?;
    let issued = issue(&template, &key, &ca, Utc::now())?;
    write_all(&[
        OutputFile {
            path: args.out.join(TLS_CERT_KEY),
            content: issued.chain_pem.into_bytes(),
            secret: false,
        },
        OutputFile {
            path: args.out.join(TLS_PRIVATE_KEY_KEY),
            content: key.to_pem().into_bytes(),
            secret: true,
        },
        OutputFile {
            path: args.out.join(CA_CERT_KEY),
            content: ca.certificate_pem().as_bytes().to_vec(),
            secret: false,
        },
    ])?;
    let name = manifest.metadata.name.unwrap_or_default();
    println!(
        "issued {name} (serial {}, expires {}{}) in {}",
        issued.certificate.serial,
        issued.certificate.not_after.to_rfc3339(),
        if issued.clamped_to_ca {
            ", cut short to the CA's notAfter"
        } else {
            ""
        },
        args.out.display()
    );
    Ok(())
}

/// Reads a ClusterCertificate manifest and checks it against the same CEL
/// rules the API server enforces, so offline use refuses what a cluster would.
pub(crate) fn read_manifest(path: &Path) -> Result<ClusterCertificate, CliError> {
    let text = String::from_utf8(read(path)?).map_err(|_| CliError::Manifest {
        path: path.into(),
        reason: "not UTF-8 text".into(),
    })?;
    let not_a_certificate = |e: String| CliError::Manifest {
        path: path.into(),
        reason: format!("not a ClusterCertificate: {}", first_line(&e)),
    };
    // Decoded strictly, as the API server does: a misspelled field
    // (`dnsName`, `duraton`) is an error, not a default.
    let raw: serde_json::Value =
        serde_saphyr::from_str(&text).map_err(|e| not_a_certificate(e.to_string()))?;
    let warning = manifest_type(&raw).map_err(|reason| CliError::Manifest {
        path: path.into(),
        reason,
    })?;
    let unknown = unknown_fields(&raw);
    if !unknown.is_empty() {
        return Err(CliError::Manifest {
            path: path.into(),
            reason: format!(
                "unknown field(s) {}: check their spelling against `kubectl explain clustercertificate.spec`",
                unknown.join(", ")
            ),
        });
    }
    let manifest: ClusterCertificate =
        serde_json::from_value(raw).map_err(|e| not_a_certificate(e.to_string()))?;
    if manifest.metadata.name.is_none() {
        return Err(CliError::Manifest {
            path: path.into(),
            reason: "metadata.name is missing".into(),
        });
    }
    kube::core::cel::validate_cel(&manifest).map_err(|e| CliError::Manifest {
        path: path.into(),
        reason: one_line(&e.to_string()),
    })?;
    // Said once the manifest is known good, so a refusal stays one line.
    if let Some(warning) = warning {
        eprintln!("Warning: {warning}");
    }
    Ok(manifest)
}

/// A manifest's `apiVersion` and `kind` as the API server takes them: a
/// ClusterCertificate of `certop.dev/v1`, or of the deprecated `v1alpha1`
/// with the API server's warning (returned); anything else refused.
fn manifest_type(manifest: &serde_json::Value) -> Result<Option<String>, String> {
    use kube::Resource;
    let text = |key: &str| manifest[key].as_str().unwrap_or_default().to_string();
    let (api_version, kind) = (text("apiVersion"), text("kind"));
    let want = ClusterCertificate::kind(&());
    if kind != want {
        return Err(format!("not a {want}: kind {kind:?}"));
    }
    match api_version
        .strip_prefix(crate::api::GROUP)
        .and_then(|v| v.strip_prefix('/'))
    {
        Some(crate::api::VERSION) => Ok(None),
        Some(crate::api::DEPRECATED_VERSION) => Ok(Some(crate::api::deprecation_warning(&want))),
        _ => Err(format!(
            "apiVersion {api_version:?} is not one certop serves: use {}/{}",
            crate::api::GROUP,
            crate::api::VERSION
        )),
    }
}

/// The fields of a manifest that the ClusterCertificate schema does not
/// have, as dotted paths; `metadata` is the API server's and not checked.
fn unknown_fields(manifest: &serde_json::Value) -> Vec<String> {
    use kube::CustomResourceExt;
    let crd = serde_json::to_value(ClusterCertificate::crd()).unwrap_or_default();
    let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
    let mut unknown = Vec::new();
    walk(manifest, schema, "", &mut unknown);
    unknown
}

fn walk(
    value: &serde_json::Value,
    schema: &serde_json::Value,
    at: &str,
    unknown: &mut Vec<String>,
) {
    match value {
        serde_json::Value::Object(fields) => {
            let properties = schema["properties"].as_object();
            let additional = &schema["additionalProperties"];
            for (key, v) in fields {
                let path = if at.is_empty() {
                    key.clone()
                } else {
                    format!("{at}.{key}")
                };
                if path == "metadata" || at.is_empty() && (key == "apiVersion" || key == "kind") {
                    continue;
                }
                match properties.and_then(|p| p.get(key)) {
                    Some(s) => walk(v, s, &path, unknown),
                    None if additional.is_object() => walk(v, additional, &path, unknown),
                    None if properties.is_some() || at.is_empty() => unknown.push(path),
                    None => {}
                }
            }
        }
        serde_json::Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                walk(v, &schema["items"], &format!("{at}[{i}]"), unknown);
            }
        }
        _ => {}
    }
}

/// Errors are printed on one line; a parser that draws a snippet under its
/// first line is cut there.
fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or_default()
}

/// A list of errors, one per line, joined into one line.
fn one_line(s: &str) -> String {
    s.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

fn inspect(file: &Path) -> Result<String, CliError> {
    let chain = parse_chain(&read(file)?, &file.display().to_string())?;
    let now = Utc::now();
    let mut out = String::new();
    for (i, cert) in chain.iter().enumerate() {
        if chain.len() > 1 {
            let _ = writeln!(out, "Certificate {} of {}", i + 1, chain.len());
        }
        describe(&mut out, cert, now);
    }
    Ok(out)
}

fn describe(out: &mut String, c: &CertificateInfo, now: chrono::DateTime<Utc>) {
    let list = |items: Vec<String>| {
        if items.is_empty() {
            "-".to_string()
        } else {
            items.join(", ")
        }
    };
    let left = if now >= c.not_after {
        format!("expired {} ago", format_time_left(now - c.not_after))
    } else {
        format!("{} left", format_time_left(c.not_after - now))
    };
    let rows = [
        ("Subject", c.subject()),
        ("Issuer", c.issuer()),
        ("Serial", c.serial.to_string()),
        ("SHA-256", c.fingerprint.clone()),
        ("Not before", c.not_before.to_rfc3339()),
        (
            "Not after",
            format!("{} ({left})", c.not_after.to_rfc3339()),
        ),
        (
            "Key",
            c.key_algorithm
                .map_or("unsupported".to_string(), |a| a.to_string()),
        ),
        (
            "CA",
            if c.is_ca {
                // What a CA's keyUsage lets it sign.
                let mut may = Vec::new();
                if c.can_sign_certificates {
                    may.push("certificates (keyCertSign)");
                }
                if c.can_sign_crls {
                    may.push("CRLs (cRLSign)");
                }
                if may.is_empty() {
                    "yes, but its keyUsage lets it sign nothing".to_string()
                } else {
                    format!("yes, signs {}", may.join(" and "))
                }
            } else {
                "no".to_string()
            },
        ),
        (
            "Usages",
            list(
                c.usages
                    .iter()
                    .map(|u| crate::pki::usage_name(*u))
                    .collect(),
            ),
        ),
        ("DNS names", list(c.dns_names.clone())),
        (
            "IP addresses",
            list(c.ip_addresses.iter().map(|ip| ip.to_string()).collect()),
        ),
        ("URIs", list(c.uris.clone())),
        ("CRL", list(c.crl_distribution_points.clone())),
    ];
    for (label, value) in rows {
        let _ = writeln!(out, "  {:<13} {value}", format!("{label}:"));
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    /// What `pki issue` takes, by apiVersion and kind: what the API server
    /// serves, the deprecated version with its warning.
    #[test]
    fn a_manifest_is_a_v1_cluster_certificate_or_a_v1alpha1_one_with_a_warning() {
        let cases = [
            ("certop.dev/v1", "ClusterCertificate", Ok(None)),
            (
                "certop.dev/v1alpha1",
                "ClusterCertificate",
                Ok(Some(
                    "certop.dev/v1alpha1 ClusterCertificate is deprecated; use certop.dev/v1 (the same fields)"
                        .to_string(),
                )),
            ),
            (
                "certop.dev/v2",
                "ClusterCertificate",
                Err("apiVersion \"certop.dev/v2\" is not one certop serves: use certop.dev/v1".to_string()),
            ),
            (
                "cert-manager.io/v1",
                "ClusterCertificate",
                Err("apiVersion \"cert-manager.io/v1\" is not one certop serves: use certop.dev/v1".to_string()),
            ),
            (
                "",
                "ClusterCertificate",
                Err("apiVersion \"\" is not one certop serves: use certop.dev/v1".to_string()),
            ),
            (
                "certop.dev/v1",
                "Certificate",
                Err("not a ClusterCertificate: kind \"Certificate\"".to_string()),
            ),
        ];
        for (api_version, kind, want) in cases {
            let manifest = json!({"apiVersion": api_version, "kind": kind});
            assert_eq!(
                super::manifest_type(&manifest),
                want,
                "{api_version} {kind}"
            );
        }
    }
}
