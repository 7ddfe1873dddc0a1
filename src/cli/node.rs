//! `certop pki init | check-expiration | renew`: the node's files in
//! kubeadm's layout. Everything is computed and checked in memory first;
//! files are written only when all of it succeeded, each atomically.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use clap::{Args, ValueEnum};

use super::authz_config::{self, FailurePolicy};
use super::files::{OutputFile, read, write_all};
use super::{CliError, cli_duration, format_time_left};
use crate::api::{GoDuration, KeyAlgorithm};
use crate::core::node::{self, CaSlot, NodeCertificate, NodeParams, Placement};
use crate::pki::{Authority, CaRequest, CertificateInfo, PrivateKey, issue, parse_pem_certificate};

#[derive(Debug, Args)]
pub struct InitArgs {
    /// The pki directory (kubeadm: /etc/kubernetes/pki).
    #[arg(long)]
    dir: PathBuf,
    /// Where the kubeconfig files go. Default: the pki directory's parent.
    #[arg(long)]
    kubeconfig_dir: Option<PathBuf>,
    #[arg(long)]
    node_name: String,
    #[arg(long)]
    advertise_address: IpAddr,
    /// Default 10.96.0.0/12; two for dual-stack (`10.96.0.0/12,fd00:10:96::/112`).
    #[arg(long)]
    service_cidr: Option<String>,
    /// A shared endpoint for the API servers (`host[:port]`): admin.conf
    /// and super-admin.conf point at it, the API server certificate names
    /// its host (kubelet.conf, like the components', points at this node).
    #[arg(long)]
    control_plane_endpoint: Option<String>,
    /// Algorithm of new keys (kubeadm's default: RSA-2048).
    #[arg(long, default_value = "ECDSA-P256")]
    key_algorithm: KeyAlgorithm,
    /// Default cluster.local.
    #[arg(long)]
    dns_domain: Option<String>,
    /// Extra DNS name or IP for the API server certificate; repeatable.
    #[arg(long = "san")]
    sans: Vec<String>,
    /// Lifetime of the leaf certificates: a number and a unit (s, m, h, d), e.g. 8760h or 365d.
    #[arg(long, default_value = "8760h")]
    duration: GoDuration,
    /// certop's authorization webhook as kube-apiserver dials it
    /// (https://HOST:PORT, the address of `certop run --authz-addr`): also
    /// write authorization-config.yaml and the webhook kubeconfig it names
    /// into the kubeconfig directory, for kube-apiserver's
    /// --authorization-config (rewritten at every run, from these flags).
    #[arg(long)]
    authz_server: Option<String>,
    /// The CA certificate(s), PEM, that sign the webhook's serving
    /// certificate (the CA of `certop run --authz-ca`). Default: this
    /// node's cluster CA (ca.crt), as when certop adopts it.
    #[arg(long, requires = "authz_server")]
    authz_ca_file: Option<PathBuf>,
    /// What kube-apiserver does when the webhook cannot answer: NoOpinion
    /// (revocation not enforced, RBAC decides) or Deny (client
    /// certificates refused).
    #[arg(long, value_enum, default_value_t = FailurePolicy::NoOpinion)]
    authz_failure_policy: FailurePolicy,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    #[default]
    Table,
    Json,
}

#[derive(Debug, Args)]
pub struct CheckExpirationArgs {
    #[arg(long)]
    dir: PathBuf,
    #[arg(long)]
    kubeconfig_dir: Option<PathBuf>,
    #[arg(short = 'o', long = "output", value_enum, default_value_t = OutputFormat::Table)]
    output: OutputFormat,
}

#[derive(Debug, Args)]
pub struct RenewArgs {
    #[arg(long)]
    dir: PathBuf,
    #[arg(long)]
    kubeconfig_dir: Option<PathBuf>,
    /// Renew what expires within this time: a number and a unit (s, m, h, d), e.g. 720h or 30d.
    /// Default: past two thirds of its lifetime.
    #[arg(long)]
    within: Option<GoDuration>,
    /// Renew the named certificates even if they are not due.
    #[arg(long)]
    force: bool,
    /// Keep each certificate's private key (by default a renewal makes a
    /// new one, as kubeadm does).
    #[arg(long)]
    keep_key: bool,
    /// Certificates to consider (kubeadm's names), or `all` (the default).
    names: Vec<String>,
}

pub(super) fn kubeconfig_dir(dir: &Path, explicit: &Option<PathBuf>) -> PathBuf {
    explicit.clone().unwrap_or_else(|| {
        dir.parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."))
    })
}

fn pair_paths(dir: &Path, rel: &str) -> (PathBuf, PathBuf) {
    (
        dir.join(format!("{rel}.crt")),
        dir.join(format!("{rel}.key")),
    )
}

/// Loads a CA from its pair; None when neither file exists.
pub(super) fn load_ca(
    dir: &Path,
    slot: CaSlot,
    now: DateTime<Utc>,
) -> Result<Option<Authority>, CliError> {
    let (crt, key) = pair_paths(dir, slot.path());
    match (crt.exists(), key.exists()) {
        (false, false) => Ok(None),
        (true, true) => Ok(Some(Authority::load(&read(&crt)?, &read(&key)?, now)?)),
        (true, false) => Err(CliError::Invalid(format!(
            "{} exists without {}: the {} CA is externally managed; certop cannot sign with it",
            crt.display(),
            key.display(),
            slot.name()
        ))),
        (false, true) => Err(CliError::Invalid(format!(
            "{} exists without {}",
            key.display(),
            crt.display()
        ))),
    }
}

fn text(bytes: Vec<u8>, path: &Path) -> Result<String, CliError> {
    String::from_utf8(bytes)
        .map_err(|_| CliError::Invalid(format!("{}: not UTF-8 text", path.display())))
}

pub(super) fn read_kubeconfig(path: &Path) -> Result<serde_json::Value, CliError> {
    serde_saphyr::from_str(&text(read(path)?, path)?).map_err(|e| {
        CliError::Invalid(format!(
            "{}: not a kubeconfig: {}",
            path.display(),
            e.to_string().lines().next().unwrap_or_default()
        ))
    })
}

/// YAML as kubeadm writes it: plain scalars, so base64 data stays on one
/// line (`grep client-certificate-data admin.conf | awk '{print $2}' | base64 -d` works).
pub(super) fn kubeconfig_yaml(k: &serde_json::Value) -> Result<Vec<u8>, CliError> {
    let mut options = serde_saphyr::SerializerOptions::default();
    options.prefer_block_scalars = false;
    serde_saphyr::to_string_with_options(k, options)
        .map(String::into_bytes)
        .map_err(|e| CliError::Yaml(e.to_string()))
}

/// A kubeconfig's client certificate and key (PEM), and the files they
/// were read from when the kubeconfig names files rather than embedding.
type ClientPair = (Vec<u8>, Vec<u8>, Option<(PathBuf, PathBuf)>);

fn kubeconfig_pair(path: &Path) -> Result<ClientPair, CliError> {
    let doc = read_kubeconfig(path)?;
    match node::client_credentials(&doc) {
        Some(node::ClientCredentials::Embedded { cert, key }) => Ok((cert, key, None)),
        Some(node::ClientCredentials::Files { cert, key }) => {
            let base = path.parent().unwrap_or(Path::new("."));
            let (cert, key) = (base.join(cert), base.join(key));
            Ok((read(&cert)?, read(&key)?, Some((cert, key))))
        }
        None => Err(CliError::Invalid(format!(
            "{}: no client certificate",
            path.display()
        ))),
    }
}

/// The certificate (and key PEM) of one layout entry, if present.
pub(super) fn read_certificate(
    dir: &Path,
    kc_dir: &Path,
    c: &NodeCertificate,
) -> Result<Option<(CertificateInfo, String)>, CliError> {
    match c.placement {
        Placement::Pair(rel) => {
            let (crt, key) = pair_paths(dir, rel);
            if !crt.exists() {
                return Ok(None);
            }
            let info = parse_pem_certificate(&read(&crt)?, &crt.display().to_string())?;
            let key = if key.exists() {
                text(read(&key)?, &key)?
            } else {
                String::new()
            };
            Ok(Some((info, key)))
        }
        Placement::Kubeconfig(file) => {
            let path = kc_dir.join(file);
            if !path.exists() {
                return Ok(None);
            }
            let (cert, key, _) = kubeconfig_pair(&path)?;
            let info = parse_pem_certificate(&cert, &path.display().to_string())?;
            Ok(Some((info, text(key, &path)?)))
        }
    }
}

pub fn init(args: &InitArgs) -> Result<(), CliError> {
    let now = Utc::now();
    let kc_dir = kubeconfig_dir(&args.dir, &args.kubeconfig_dir);
    if let Some(server) = &args.authz_server {
        authz_config::check_server("--authz-server", server)?;
    }
    let params = NodeParams {
        node_name: args.node_name.clone(),
        advertise_address: args.advertise_address,
        service_cidr: args.service_cidr.clone(),
        dns_domain: args.dns_domain.clone(),
        extra_sans: args.sans.clone(),
        lifetime: cli_duration(&args.duration)?,
        key_algorithm: args.key_algorithm,
        control_plane_endpoint: args.control_plane_endpoint.clone(),
    };
    let mut files = Vec::new();
    let mut report = String::new();
    let cas = ensure_cas(args, now, &mut files, &mut report)?;
    ensure_service_account_key(args, &mut files, &mut report)?;
    let local = node::endpoint_url(&args.advertise_address.to_string());
    let shared = args
        .control_plane_endpoint
        .as_deref()
        .map_or_else(|| local.clone(), node::endpoint_url);
    for c in node::CERTIFICATES.iter().chain([&node::KUBELET_CONF]) {
        let ca = &cas[&c.ca];
        if let Some((existing, _)) = read_certificate(&args.dir, &kc_dir, c)? {
            // A leaf kept must chain to the CA in the directory (a partial
            // restore can leave one of another CA): refuse, touching nothing.
            if !existing.is_issued_by(ca.certificate()) {
                return Err(CliError::Invalid(format!(
                    "{}: exists but was not signed by the {} CA in {}; certop will not keep it nor silently replace it: move it away (a new one is then issued) or restore the matching CA",
                    c.name,
                    c.ca.name(),
                    args.dir.display()
                )));
            }
            let _ = writeln!(report, "{}: exists, kept", c.name);
            continue;
        }
        let server = if node::uses_control_plane_endpoint(c) {
            &shared
        } else {
            &local
        };
        let template = node::template(c, &params)?;
        let key = PrivateKey::generate(template.key_algorithm)?;
        let issued = issue(&template, &key, ca, now)?;
        let leaf_pem = issued.certificate.to_pem();
        match c.placement {
            Placement::Pair(rel) => {
                let (crt, key_path) = pair_paths(&args.dir, rel);
                files.push(public_file(crt, leaf_pem.into_bytes()));
                files.push(secret_file(key_path, key.to_pem().into_bytes()));
            }
            Placement::Kubeconfig(file) => {
                let user = template
                    .common_name
                    .clone()
                    .unwrap_or_else(|| c.name.to_string());
                let k = node::new_kubeconfig(
                    server,
                    &user,
                    ca.certificate_pem(),
                    &leaf_pem,
                    &key.to_pem(),
                );
                files.push(secret_file(kc_dir.join(file), kubeconfig_yaml(&k)?));
            }
        }
        let _ = writeln!(
            report,
            "{}: issued, expires {}",
            c.name,
            issued.certificate.not_after.to_rfc3339()
        );
    }
    if let Some(server) = &args.authz_server {
        let bundle = authz_ca_bundle(args.authz_ca_file.as_deref(), &cas[&CaSlot::Cluster])?;
        let written = authz_config::files(&kc_dir, server, &bundle, args.authz_failure_policy)?;
        let _ = writeln!(
            report,
            "{}: written, for kube-apiserver --authorization-config={} (its webhook kubeconfig {})",
            authz_config::CONFIG_FILE,
            written[1].path.display(),
            written[0].path.display()
        );
        files.extend(written);
    }
    write_all(&files)?;
    print!("{report}");
    Ok(())
}

/// The PEM bundle the webhook kubeconfig trusts: the certificates of
/// `--authz-ca-file`, which must hold some, or the node's cluster CA. Only
/// the certificates are kept: a file that also holds the CA's key (`cat
/// ca.crt ca.key`) must not put it into a world-readable kubeconfig.
fn authz_ca_bundle(file: Option<&Path>, cluster_ca: &Authority) -> Result<String, CliError> {
    let Some(path) = file else {
        return Ok(cluster_ca.certificate_pem().to_string());
    };
    let certificates = crate::pki::parse_chain(&read(path)?, &path.display().to_string())?;
    Ok(certificates.iter().map(CertificateInfo::to_pem).collect())
}

fn public_file(path: PathBuf, content: Vec<u8>) -> OutputFile {
    OutputFile {
        path,
        content,
        secret: false,
    }
}

fn secret_file(path: PathBuf, content: Vec<u8>) -> OutputFile {
    OutputFile {
        path,
        content,
        secret: true,
    }
}

/// Each of the node's CAs: the one in the directory, or a new one (its
/// files added to `files`).
fn ensure_cas(
    args: &InitArgs,
    now: DateTime<Utc>,
    files: &mut Vec<OutputFile>,
    report: &mut String,
) -> Result<BTreeMap<CaSlot, Authority>, CliError> {
    let mut cas = BTreeMap::new();
    for slot in CaSlot::ALL {
        let ca = match load_ca(&args.dir, slot, now)? {
            Some(ca) => {
                let _ = writeln!(report, "using the existing {} CA", slot.name());
                ca
            }
            None => {
                let ca = Authority::create(
                    &CaRequest {
                        algorithm: args.key_algorithm,
                        ..CaRequest::new(slot.common_name())
                    },
                    now,
                )?;
                let (crt, key) = pair_paths(&args.dir, slot.path());
                files.push(public_file(crt, ca.certificate_pem().as_bytes().to_vec()));
                files.push(secret_file(key, ca.key_pem().into_bytes()));
                let _ = writeln!(report, "created the {} CA", slot.name());
                ca
            }
        };
        cas.insert(slot, ca);
    }
    Ok(cas)
}

/// The service-account signing key pair (RSA, as kube-apiserver needs
/// unless the node's algorithm is another RSA size), unless it exists.
fn ensure_service_account_key(
    args: &InitArgs,
    files: &mut Vec<OutputFile>,
    report: &mut String,
) -> Result<(), CliError> {
    let (sa_key, sa_pub) = (args.dir.join("sa.key"), args.dir.join("sa.pub"));
    if sa_key.exists() {
        return Ok(());
    }
    let key = PrivateKey::generate(if args.key_algorithm.is_rsa() {
        args.key_algorithm
    } else {
        KeyAlgorithm::Rsa2048
    })?;
    // 0600 like kubeadm's, though it is public.
    files.push(secret_file(sa_pub, key.public_key_pem().into_bytes()));
    files.push(secret_file(sa_key, key.to_pem().into_bytes()));
    let _ = writeln!(report, "created the service-account key pair");
    Ok(())
}

#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct Row {
    name: String,
    expires: Option<DateTime<Utc>>,
    residual_seconds: Option<i64>,
    certificate_authority: Option<String>,
    externally_managed: bool,
    missing: bool,
}

pub fn check_expiration(args: &CheckExpirationArgs) -> Result<(), CliError> {
    let now = Utc::now();
    let kc_dir = kubeconfig_dir(&args.dir, &args.kubeconfig_dir);
    let ca_external = |slot: CaSlot| !pair_paths(&args.dir, slot.path()).1.exists();
    let mut certs = Vec::new();
    for c in &node::CERTIFICATES {
        let found = read_certificate(&args.dir, &kc_dir, c)?;
        certs.push(Row {
            name: c.name.into(),
            expires: found.as_ref().map(|(i, _)| i.not_after),
            residual_seconds: found
                .as_ref()
                .map(|(i, _)| (i.not_after - now).num_seconds()),
            certificate_authority: Some(c.ca.name().into()),
            externally_managed: ca_external(c.ca),
            missing: found.is_none(),
        });
    }
    let mut cas = Vec::new();
    for slot in CaSlot::ALL {
        let crt = pair_paths(&args.dir, slot.path()).0;
        let info = if crt.exists() {
            Some(parse_pem_certificate(
                &read(&crt)?,
                &crt.display().to_string(),
            )?)
        } else {
            None
        };
        cas.push(Row {
            name: slot.name().into(),
            expires: info.as_ref().map(|i| i.not_after),
            residual_seconds: info.as_ref().map(|i| (i.not_after - now).num_seconds()),
            certificate_authority: None,
            externally_managed: ca_external(slot),
            missing: info.is_none(),
        });
    }
    match args.output {
        OutputFormat::Json => {
            let v = serde_json::json!({"certificates": certs, "certificateAuthorities": cas});
            println!(
                "{}",
                serde_json::to_string_pretty(&v).map_err(|e| CliError::Yaml(e.to_string()))?
            );
        }
        OutputFormat::Table => print!("{}", expiration_tables(&certs, &cas)),
    }
    Ok(())
}

fn expiration_tables(certs: &[Row], cas: &[Row]) -> String {
    let when = |r: &Row| {
        r.expires.map_or("!MISSING!".into(), |t| {
            t.format("%b %d, %Y %H:%M UTC").to_string()
        })
    };
    let left = |r: &Row| {
        r.residual_seconds.map_or(String::new(), |s| {
            format_time_left(chrono::Duration::seconds(s))
        })
    };
    let yes_no = |b: bool| if b { "yes" } else { "no" };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<26}{:<27}{:<16}{:<25}EXTERNALLY MANAGED",
        "CERTIFICATE", "EXPIRES", "RESIDUAL TIME", "CERTIFICATE AUTHORITY"
    );
    for r in certs {
        let ca = r.certificate_authority.clone().unwrap_or_default();
        let _ = writeln!(
            out,
            "{:<26}{:<27}{:<16}{:<25}{}",
            r.name,
            when(r),
            left(r),
            ca,
            yes_no(r.externally_managed)
        );
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "{:<26}{:<27}{:<16}EXTERNALLY MANAGED",
        "CERTIFICATE AUTHORITY", "EXPIRES", "RESIDUAL TIME"
    );
    for r in cas {
        let _ = writeln!(
            out,
            "{:<26}{:<27}{:<16}{}",
            r.name,
            when(r),
            left(r),
            yes_no(r.externally_managed)
        );
    }
    out
}

pub fn renew(args: &RenewArgs) -> Result<(), CliError> {
    let now = Utc::now();
    let kc_dir = kubeconfig_dir(&args.dir, &args.kubeconfig_dir);
    // Read and parse everything first: a file certop cannot parse stops the
    // run before anything is touched.
    let mut found = Vec::new();
    let mut keys = BTreeMap::new();
    for c in &node::CERTIFICATES {
        if let Some((info, key)) = read_certificate(&args.dir, &kc_dir, c)? {
            keys.insert(c.name, key);
            found.push((*c, info));
        }
    }
    let due = node::select(
        &args.names,
        &found,
        args.within.as_ref().map(cli_duration).transpose()?,
        args.force,
        now,
    )?;
    if due.is_empty() {
        println!("nothing is due for renewal");
        return Ok(());
    }
    let backup = backup_dir(&args.dir, now);
    let mut cas = BTreeMap::new();
    let (files, report) = reissue(
        &args.dir,
        &kc_dir,
        due,
        &keys,
        args.keep_key,
        &mut cas,
        &backup,
        now,
    )?;
    write_all(&files)?;
    print!("{report}");
    println!("previous files kept in {}", backup.display());
    Ok(())
}

/// Where a run keeps the files it replaces.
pub(super) fn backup_dir(dir: &Path, now: DateTime<Utc>) -> PathBuf {
    dir.join(".certop-backup")
        .join(now.format("%Y%m%dT%H%M%S%.3fZ").to_string())
}

/// New certificates (and, unless `keep_key`, keys) for `due`, signed by
/// the CAs in `dir` (loaded into `cas` as needed): the files to write,
/// each preceded by a backup of what it replaces, and a report.
#[allow(clippy::too_many_arguments)]
pub(super) fn reissue(
    dir: &Path,
    kc_dir: &Path,
    due: Vec<&(NodeCertificate, CertificateInfo)>,
    keys: &BTreeMap<&str, String>,
    keep_key: bool,
    cas: &mut BTreeMap<CaSlot, Authority>,
    backup: &Path,
    now: DateTime<Utc>,
) -> Result<(Vec<OutputFile>, String), CliError> {
    let mut files = Vec::new();
    let mut report = String::new();
    for (c, current) in due {
        let ca = ca_for(cas, dir, c.ca, now)?;
        let key_pem = &keys[c.name];
        let key = PrivateKey::from_pem(key_pem, c.name)?;
        if !crate::pki::key_matches_certificate(&key, current) {
            return Err(CliError::Invalid(format!(
                "{}: the key does not match the certificate; not touching it",
                c.name
            )));
        }
        let template = node::template_from(current)?;
        let key = if keep_key {
            key
        } else {
            PrivateKey::generate(template.key_algorithm)?
        };
        let issued = issue(&template, &key, ca, now)?;
        let leaf_pem = issued.certificate.to_pem();
        let changes = changed_files(c, dir, kc_dir, leaf_pem, key.to_pem())?;
        for (path, content, secret) in changes {
            files.push(OutputFile {
                path: backup.join(relative(&path, dir, kc_dir)),
                content: read(&path)?,
                secret: true,
            });
            files.push(OutputFile {
                path,
                content,
                secret,
            });
        }
        let _ = writeln!(
            report,
            "{}: renewed, expires {} (was {})",
            c.name,
            issued.certificate.not_after.to_rfc3339(),
            current.not_after.to_rfc3339()
        );
    }
    Ok((files, report))
}

/// The CA of `slot`, loaded from `dir` the first time it is needed.
fn ca_for<'a>(
    cas: &'a mut BTreeMap<CaSlot, Authority>,
    dir: &Path,
    slot: CaSlot,
    now: DateTime<Utc>,
) -> Result<&'a mut Authority, CliError> {
    Ok(match cas.entry(slot) {
        std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
        std::collections::btree_map::Entry::Vacant(e) => {
            e.insert(load_ca(dir, slot, now)?.ok_or_else(|| {
                CliError::Invalid(format!(
                    "the {} CA is missing from {}",
                    slot.name(),
                    dir.display()
                ))
            })?)
        }
    })
}

/// (file, new content, secret) for each file a renewal of `c` changes.
fn changed_files(
    c: &NodeCertificate,
    dir: &Path,
    kc_dir: &Path,
    leaf_pem: String,
    key_pem: String,
) -> Result<Vec<(PathBuf, Vec<u8>, bool)>, CliError> {
    let pair = |crt: PathBuf, key_path: PathBuf| {
        vec![
            (crt, leaf_pem.clone().into_bytes(), false),
            (key_path, key_pem.clone().into_bytes(), true),
        ]
    };
    Ok(match c.placement {
        Placement::Pair(rel) => {
            let (crt, key_path) = pair_paths(dir, rel);
            pair(crt, key_path)
        }
        Placement::Kubeconfig(file) => {
            let path = kc_dir.join(file);
            match kubeconfig_pair(&path)?.2 {
                // Only the client certificate and key change; a
                // kubeconfig that names files keeps naming them.
                Some((crt, key_path)) => pair(crt, key_path),
                None => {
                    let mut doc = read_kubeconfig(&path)?;
                    node::replace_embedded(&mut doc, &leaf_pem, &key_pem);
                    vec![(path, kubeconfig_yaml(&doc)?, true)]
                }
            }
        }
    })
}

/// A changed file's path under the backup directory: relative to the
/// PKI or kubeconfig directory it is in.
fn relative(path: &Path, dir: &Path, kc_dir: &Path) -> PathBuf {
    let rel = path
        .strip_prefix(dir)
        .or_else(|_| path.strip_prefix(kc_dir))
        .unwrap_or(path)
        .to_path_buf();
    rel.strip_prefix("/").unwrap_or(&rel).to_path_buf()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_webhook_bundle_holds_only_the_certificates_of_the_file_given() {
        let tmp = tempfile::tempdir().expect("tmp");
        let ca = crate::pki::fixtures::authority("webhook CA");
        let key = PrivateKey::generate(KeyAlgorithm::EcdsaP256).expect("key");
        // A CA certificate and its key in one file, as `cat ca.crt ca.key` makes.
        let file = tmp.path().join("webhook-ca.pem");
        std::fs::write(&file, format!("{}{}", ca.certificate_pem(), key.to_pem())).expect("write");
        let bundle = authz_ca_bundle(Some(&file), &ca).expect("bundle");
        assert!(
            !bundle.contains("PRIVATE KEY"),
            "a private key copied into a world-readable kubeconfig"
        );
        assert_eq!(bundle, ca.certificate().to_pem());
    }
}
