//! `certop pki rotate-ca`: the operator's CA rotation for a node's files in
//! kubeadm's layout, one step per run, each step derived from the files:
//!
//! 1. stage: a new CA key is made (`<ca>-next.crt`/`.key`) and `<ca>.crt`
//!    (and the kubeconfigs' CA data) carry both CAs, the old one first,
//!    still signing;
//! 2. switch: the new CA signs (`<ca>.crt` = new + old, `<ca>.key` = new),
//!    every certificate and kubeconfig of that CA is re-issued by it, and
//!    the old certificate is kept as `<ca>-previous.crt`;
//! 3. finish: the old CA leaves `<ca>.crt` and the kubeconfigs.
//!
//! Between steps the components are restarted (the command says which),
//! on every node, so that each trusts both CAs before either signs. A run
//! that stops part-way is finished by the next run: the staged key is
//! never made twice, and every write is atomic with a backup.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use clap::Args;

use super::CliError;
use super::files::{OutputFile, read, write_all};
use super::node::{
    backup_dir, kubeconfig_dir, kubeconfig_yaml, load_ca, read_certificate, read_kubeconfig,
    reissue,
};
use crate::core::node::{self, CaSlot};
use crate::pki::{Authority, CaRequest, CertificateInfo, parse_chain};

#[derive(Debug, Args)]
pub struct RotateCaArgs {
    #[arg(long)]
    dir: PathBuf,
    #[arg(long)]
    kubeconfig_dir: Option<PathBuf>,
    /// The CAs to rotate: ca, etcd-ca, front-proxy-ca; repeatable. Default all three.
    #[arg(long = "ca")]
    cas: Vec<String>,
}

/// Where one CA's rotation stands, from its files.
#[derive(Debug, PartialEq)]
enum Phase {
    /// One CA: the next run stages a new one.
    Stable,
    /// A staged key whose certificate `<ca>.crt` does not carry yet: the
    /// staging is finished (with that key) by the next run.
    Staging,
    /// Both trusted, the old one signs: the next run switches.
    Staged,
    /// The new one signs, the old one is still trusted: the next run finishes.
    Switched,
}

fn next_paths(dir: &Path, slot: CaSlot) -> (PathBuf, PathBuf) {
    (
        dir.join(format!("{}-next.crt", slot.path())),
        dir.join(format!("{}-next.key", slot.path())),
    )
}

fn previous_path(dir: &Path, slot: CaSlot) -> PathBuf {
    dir.join(format!("{}-previous.crt", slot.path()))
}

fn bundle_path(dir: &Path, slot: CaSlot) -> PathBuf {
    dir.join(format!("{}.crt", slot.path()))
}

fn bundle(dir: &Path, slot: CaSlot) -> Result<Vec<CertificateInfo>, CliError> {
    let path = bundle_path(dir, slot);
    Ok(parse_chain(&read(&path)?, &path.display().to_string())?)
}

fn phase(dir: &Path, slot: CaSlot) -> Result<Phase, CliError> {
    let (next_crt, next_key) = next_paths(dir, slot);
    if next_key.exists() {
        let next = crate::pki::parse_pem_certificate(&read(&next_crt)?, "the staged CA")?;
        let trusted = bundle(dir, slot)?
            .iter()
            .any(|c| c.fingerprint == next.fingerprint);
        return Ok(if trusted {
            Phase::Staged
        } else {
            Phase::Staging
        });
    }
    Ok(if previous_path(dir, slot).exists() {
        Phase::Switched
    } else {
        Phase::Stable
    })
}

fn pem_of(certs: &[&CertificateInfo]) -> String {
    certs.iter().map(|c| c.to_pem()).collect()
}

fn slots(names: &[String]) -> Result<Vec<CaSlot>, CliError> {
    if names.is_empty() {
        return Ok(CaSlot::ALL.to_vec());
    }
    names
        .iter()
        .map(|n| {
            CaSlot::ALL
                .into_iter()
                .find(|s| s.name() == n)
                .ok_or_else(|| {
                    CliError::Invalid(format!(
                        "--ca {n}: not a CA of the layout; use ca, etcd-ca or front-proxy-ca"
                    ))
                })
        })
        .collect()
}

/// The kubeconfigs that trust the cluster CA, with their new CA data, and
/// backups; kubeconfigs that name a CA file (or are missing) are left.
fn kubeconfig_ca_updates(
    dir: &Path,
    kc_dir: &Path,
    pem: &str,
    backup: &Path,
) -> Result<Vec<OutputFile>, CliError> {
    let mut files = Vec::new();
    for c in node::CERTIFICATES
        .iter()
        .chain(std::iter::once(&node::KUBELET_CONF))
    {
        let node::Placement::Kubeconfig(file) = c.placement else {
            continue;
        };
        let path = kc_dir.join(file);
        if !path.exists() {
            continue;
        }
        let mut doc = read_kubeconfig(&path)?;
        if node::replace_ca_data(&mut doc, pem) {
            files.extend(with_backup(
                dir,
                kc_dir,
                backup,
                OutputFile {
                    path,
                    content: kubeconfig_yaml(&doc)?,
                    secret: true,
                },
            )?);
        }
    }
    Ok(files)
}

/// `<ca>.crt` holding `pem`, and for the cluster CA the kubeconfigs'
/// CA data too, with backups.
fn trust(
    dir: &Path,
    kc_dir: &Path,
    slot: CaSlot,
    pem: &str,
    backup: &Path,
) -> Result<Vec<OutputFile>, CliError> {
    let mut files = with_backup(
        dir,
        kc_dir,
        backup,
        OutputFile {
            path: bundle_path(dir, slot),
            content: pem.as_bytes().to_vec(),
            secret: false,
        },
    )?;
    if slot == CaSlot::Cluster {
        files.extend(kubeconfig_ca_updates(dir, kc_dir, pem, backup)?);
    }
    Ok(files)
}

/// A file to write, preceded by a backup of what it replaces.
fn with_backup(
    dir: &Path,
    kc_dir: &Path,
    backup: &Path,
    file: OutputFile,
) -> Result<Vec<OutputFile>, CliError> {
    let mut out = Vec::new();
    if file.path.exists() {
        let rel = file
            .path
            .strip_prefix(dir)
            .or_else(|_| file.path.strip_prefix(kc_dir))
            .unwrap_or(&file.path);
        let rel = rel.strip_prefix("/").unwrap_or(rel);
        out.push(OutputFile {
            path: backup.join(rel),
            content: read(&file.path)?,
            secret: true,
        });
    }
    out.push(file);
    Ok(out)
}

fn remove(path: &Path) -> Result<(), CliError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(CliError::io(path)(e)),
    }
}

pub fn rotate_ca(args: &RotateCaArgs) -> Result<(), CliError> {
    let now = Utc::now();
    let dir = &args.dir;
    let kc_dir = kubeconfig_dir(dir, &args.kubeconfig_dir);
    let backup = backup_dir(dir, now);
    let mut report = String::new();
    for slot in slots(&args.cas)? {
        let done = match phase(dir, slot)? {
            Phase::Stable => stage(dir, &kc_dir, slot, &backup, now, false)?,
            Phase::Staging => stage(dir, &kc_dir, slot, &backup, now, true)?,
            Phase::Staged => switch(dir, &kc_dir, slot, &backup, now)?,
            Phase::Switched => finish(dir, &kc_dir, slot, &backup)?,
        };
        let _ = writeln!(report, "{}: {done}", slot.name());
    }
    print!("{report}");
    println!(
        "previous files kept in {}\nnext: copy the changed files to every control-plane node, restart etcd, kube-apiserver, kube-controller-manager, kube-scheduler and the kubelet on each (in that order), then run `certop pki rotate-ca` again",
        backup.display()
    );
    Ok(())
}

/// Step 1: a new key (made once; a staging that stopped part-way keeps
/// the key it made), trusted beside the old one.
fn stage(
    dir: &Path,
    kc_dir: &Path,
    slot: CaSlot,
    backup: &Path,
    now: DateTime<Utc>,
    resume: bool,
) -> Result<String, CliError> {
    let old = load_ca(dir, slot, now)?.ok_or_else(|| {
        CliError::Invalid(format!(
            "the {} CA is missing from {}",
            slot.name(),
            dir.display()
        ))
    })?;
    let (next_crt, next_key) = next_paths(dir, slot);
    let next = if resume {
        Authority::load(&read(&next_crt)?, &read(&next_key)?, now)?
    } else {
        let current = old.certificate();
        let lifetime = crate::pki::issued_lifetime(current.not_before, current.not_after)
            .max(crate::api::MIN_CA_LIFETIME);
        let request = CaRequest {
            common_name: current
                .common_name
                .clone()
                .unwrap_or_else(|| slot.common_name().to_string()),
            organizations: current.organizations.clone(),
            algorithm: old.algorithm(),
            lifetime,
        };
        let next = Authority::create(&request, now)?;
        // The key first: a run that stops after this resumes with it.
        write_all(&[
            OutputFile {
                path: next_key.clone(),
                content: next.key_pem().into_bytes(),
                secret: true,
            },
            OutputFile {
                path: next_crt.clone(),
                content: next.certificate_pem().as_bytes().to_vec(),
                secret: false,
            },
        ])?;
        next
    };
    let pem = pem_of(&[old.certificate(), next.certificate()]);
    write_all(&trust(dir, kc_dir, slot, &pem, backup)?)?;
    Ok(format!(
        "staged new CA serial {} beside serial {} (both trusted, the old one signs)",
        next.certificate().serial,
        old.certificate().serial
    ))
}

/// Step 2: the staged key signs, every certificate of this CA is re-issued
/// by it, the old CA stays trusted.
fn switch(
    dir: &Path,
    kc_dir: &Path,
    slot: CaSlot,
    backup: &Path,
    now: DateTime<Utc>,
) -> Result<String, CliError> {
    let (next_crt, next_key) = next_paths(dir, slot);
    let next = Authority::load(&read(&next_crt)?, &read(&next_key)?, now)?;
    let trusted = bundle(dir, slot)?;
    let old = trusted
        .iter()
        .find(|c| c.fingerprint != next.certificate().fingerprint)
        .cloned()
        .ok_or_else(|| {
            CliError::Invalid(format!(
                "{} holds no CA besides the staged one; restore it from a backup",
                bundle_path(dir, slot).display()
            ))
        })?;
    let pem = pem_of(&[next.certificate(), &old]);
    write_trust(dir, kc_dir, slot, backup, &next, &old, &pem)?;
    let (found, keys) = certificates_of(dir, kc_dir, slot)?;
    let mut cas = BTreeMap::from([(slot, next)]);
    let (files, reissued) = reissue(
        dir,
        kc_dir,
        found.iter().collect(),
        &keys,
        false,
        &mut cas,
        backup,
        now,
    )?;
    write_all(&files)?;
    if slot == CaSlot::Cluster {
        write_all(&kubeconfig_ca_updates(dir, kc_dir, &pem, backup)?)?;
    }
    // Last: without the staged files the next run finishes.
    remove(&next_crt)?;
    remove(&next_key)?;
    let serial = cas
        .get(&slot)
        .map(|a| a.certificate().serial.to_string())
        .unwrap_or_default();
    Ok(format!(
        "CA serial {serial} signs now; re-issued {} certificates:\n{}",
        found.len(),
        reissued.trim_end()
    ))
}

/// Writes the switch's trust: the old CA kept as the previous one, the
/// bundle with the new CA first, and the new key as the signing key (each
/// file backed up first).
fn write_trust(
    dir: &Path,
    kc_dir: &Path,
    slot: CaSlot,
    backup: &Path,
    next: &Authority,
    old: &CertificateInfo,
    pem: &str,
) -> Result<(), CliError> {
    let key_path = dir.join(format!("{}.key", slot.path()));
    let mut files = Vec::new();
    for file in [
        OutputFile {
            path: previous_path(dir, slot),
            content: old.to_pem().into_bytes(),
            secret: false,
        },
        OutputFile {
            path: bundle_path(dir, slot),
            content: pem.as_bytes().to_vec(),
            secret: false,
        },
        OutputFile {
            path: key_path,
            content: next.key_pem().into_bytes(),
            secret: true,
        },
    ] {
        files.extend(with_backup(dir, kc_dir, backup, file)?);
    }
    write_all(&files)
}

/// Node certificates found on disk, each with what it holds.
type Found = Vec<(node::NodeCertificate, CertificateInfo)>;

/// The key PEM of each found certificate, by name.
type Keys = BTreeMap<&'static str, String>;

/// Every certificate of the CA in `slot` that is on disk, with its key;
/// kubelet.conf too, or a kubelet that has not rotated its own
/// certificate yet would be locked out when the old CA leaves.
fn certificates_of(dir: &Path, kc_dir: &Path, slot: CaSlot) -> Result<(Found, Keys), CliError> {
    let mut found = Vec::new();
    let mut keys = BTreeMap::new();
    for c in node::CERTIFICATES
        .iter()
        .chain(std::iter::once(&node::KUBELET_CONF))
        .filter(|c| c.ca == slot)
    {
        if let Some((info, key)) = read_certificate(dir, kc_dir, c)? {
            keys.insert(c.name, key);
            found.push((*c, info));
        }
    }
    Ok((found, keys))
}

/// Step 3: only the new CA is trusted.
fn finish(dir: &Path, kc_dir: &Path, slot: CaSlot, backup: &Path) -> Result<String, CliError> {
    let trusted = bundle(dir, slot)?;
    let signing = trusted.first().ok_or_else(|| {
        CliError::Invalid(format!(
            "{} holds no certificate",
            bundle_path(dir, slot).display()
        ))
    })?;
    let pem = pem_of(&[signing]);
    write_all(&trust(dir, kc_dir, slot, &pem, backup)?)?;
    remove(&previous_path(dir, slot))?;
    Ok(format!(
        "only CA serial {} is trusted now; the rotation is finished",
        signing.serial
    ))
}
