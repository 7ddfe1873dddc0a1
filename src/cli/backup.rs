//! `kubectl certop backup` and `kubectl certop restore`: the cluster reads
//! and writes around `crate::backup`, which decides what is taken, how the
//! file is sealed and in which order restore writes.

use std::path::{Path, PathBuf};

use chrono::Utc;
use clap::Args;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{ApiResource, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Resource};
use serde_json::Value;

use super::cluster::Cluster;
use super::{CliError, files};
use crate::api::{
    CertificateAuthority, CertificatePolicy, CertificateRevocation, ClusterCertificate, meta,
};
use crate::backup::restore_plan::{
    Outcome, Preconditions, Restorable, adopted_keys_needed, compare, namespaces_needed, refusals,
    restorables,
};
use crate::backup::seal::{Opening, Sealing, identities, open, passphrase, seal};
use crate::backup::select::{Listed, describe, select, summary};
use crate::backup::{Backup, Role};

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("key").required(true).args(["passphrase_file", "recipient"])))]
pub struct BackupArgs {
    /// The file to write: an age-encrypted certop backup. An existing file
    /// is never overwritten.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Encrypt to the passphrase on the first line of this file (age's
    /// scrypt).
    #[arg(long, value_name = "F", conflicts_with = "recipient")]
    pub passphrase_file: Option<PathBuf>,
    /// Encrypt to this age X25519 recipient (`age1...`, from `age-keygen`);
    /// repeat it to let any of several keys restore.
    #[arg(long, value_name = "KEY")]
    pub recipient: Vec<String>,
    /// certop's namespace: where its CA keys, ledger and CRLs live.
    #[arg(long, env = "CERTOP_NAMESPACE", default_value = "certop-system")]
    pub namespace: String,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("key").required(true).args(["passphrase_file", "identity"])))]
pub struct RestoreArgs {
    /// A file `kubectl certop backup` wrote.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// The file holding the backup's passphrase on its first line.
    #[arg(long, value_name = "F", conflicts_with = "identity")]
    pub passphrase_file: Option<PathBuf>,
    /// An age identity file (`age-keygen`'s output) whose key the backup
    /// was encrypted to.
    #[arg(long, value_name = "KEY-FILE")]
    pub identity: Option<PathBuf>,
    /// certop's namespace in this cluster: the CA keys, ledger and CRLs go
    /// there, whatever the namespace they were taken from.
    #[arg(long, env = "CERTOP_NAMESPACE", default_value = "certop-system")]
    pub namespace: String,
    /// Keep the objects this cluster already has with other content
    /// (restore only what is missing) instead of refusing.
    #[arg(long)]
    pub keep_existing: bool,
}

fn read_text(path: &Path) -> Result<String, CliError> {
    let bytes = files::read(path)?;
    String::from_utf8(bytes)
        .map_err(|_| CliError::Invalid(format!("{}: not UTF-8 text", path.display())))
}

/// The resource a role's objects are read and written through, at the
/// API version the object (or certop's type) names.
fn api_resource(role: Role, api_version: &str) -> ApiResource {
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    ApiResource {
        group: group.to_string(),
        version: version.to_string(),
        api_version: api_version.to_string(),
        kind: role.kind().to_string(),
        plural: role.plural().to_string(),
    }
}

/// Every object of a list, with the apiVersion and kind a list's items lack.
async fn list(
    cluster: &Cluster,
    api: Api<DynamicObject>,
    resource: &ApiResource,
    params: &ListParams,
    what: String,
) -> Result<Vec<Value>, CliError> {
    let items = api.list(params).await.map_err(cluster.error(what))?.items;
    items
        .into_iter()
        .map(|o| {
            let mut v = serde_json::to_value(o)
                .map_err(|e| CliError::Invalid(format!("cannot encode {}: {e}", resource.kind)))?;
            v["apiVersion"] = Value::from(resource.api_version.clone());
            v["kind"] = Value::from(resource.kind.clone());
            Ok(v)
        })
        .collect()
}

async fn list_custom<K: Resource<DynamicType = ()>>(
    cluster: &Cluster,
    role: Role,
) -> Result<Vec<Value>, CliError> {
    let ar = api_resource(role, &K::api_version(&()));
    let api = Api::all_with(cluster.client.clone(), &ar);
    let what = format!("{} (are certop's CRDs installed?)", describe(role));
    list(cluster, api, &ar, &ListParams::default(), what).await
}

/// Writes everything certop needs to resume into an encrypted file.
pub async fn backup(args: BackupArgs) -> Result<(), CliError> {
    // The key first: a bad one fails before the cluster is read.
    let sealing = match &args.passphrase_file {
        Some(p) => Sealing::Passphrase(passphrase(&read_text(p)?)?),
        None => Sealing::recipients(&args.recipient)?,
    };
    if args.out.exists() {
        return Err(CliError::Invalid(format!(
            "{} already exists; refusing to overwrite a backup (remove it first, or choose another --out)",
            args.out.display()
        )));
    }
    let cluster = Cluster::connect().await?;
    let ns = args.namespace.as_str();
    let managed =
        ListParams::default().labels(&format!("{}={}", meta::MANAGED_BY, meta::MANAGED_BY_VALUE));
    let secrets = api_resource(Role::CaKeySecret, "v1");
    let config_maps = api_resource(Role::LedgerConfigMap, "v1");
    let namespaced = |ar: &ApiResource| Api::namespaced_with(cluster.client.clone(), ns, ar);
    let listed = Listed {
        namespace: ns.to_string(),
        certificate_authorities: list_custom::<CertificateAuthority>(
            &cluster,
            Role::CertificateAuthority,
        )
        .await?,
        cluster_certificates: list_custom::<ClusterCertificate>(&cluster, Role::ClusterCertificate)
            .await?,
        certificate_revocations: list_custom::<CertificateRevocation>(
            &cluster,
            Role::CertificateRevocation,
        )
        .await?,
        certificate_policies: list_custom::<CertificatePolicy>(&cluster, Role::CertificatePolicy)
            .await?,
        operator_secrets: list(
            &cluster,
            namespaced(&secrets),
            &secrets,
            &managed,
            format!("Secrets in namespace {ns}"),
        )
        .await?,
        operator_config_maps: list(
            &cluster,
            namespaced(&config_maps),
            &config_maps,
            &managed,
            format!("ConfigMaps in namespace {ns}"),
        )
        .await?,
        labelled_secrets: list(
            &cluster,
            Api::all_with(cluster.client.clone(), &secrets),
            &secrets,
            &managed,
            "Secrets of every namespace".to_string(),
        )
        .await?,
    };
    let selection = select(listed, Utc::now(), env!("CARGO_PKG_VERSION"));
    let document = selection.backup.to_json()?;
    let sealed = seal(&document, &sealing)?;
    files::write_atomically(&args.out, &sealed, true)?;
    for note in &selection.notes {
        eprintln!("note: {note}");
    }
    println!(
        "wrote {}: {}",
        args.out.display(),
        summary(&selection.backup)
    );
    Ok(())
}

/// Decrypts and reads a backup; nothing touches the cluster before this
/// succeeds.
fn read_backup(args: &RestoreArgs) -> Result<Backup, CliError> {
    let opening = match (&args.passphrase_file, &args.identity) {
        (Some(p), _) => Opening::Passphrase(passphrase(&read_text(p)?)?),
        (None, Some(i)) => identities(&files::read(i)?)?,
        (None, None) => {
            return Err(CliError::Invalid(
                "give --passphrase-file or --identity".into(),
            ));
        }
    };
    let sealed = files::read(&args.file)?;
    let document = open(&sealed, &opening)?;
    Ok(Backup::from_json(&document)?)
}

fn api_for(cluster: &Cluster, r: &Restorable) -> Api<DynamicObject> {
    let ar = api_resource(r.role, r.api_version());
    match r.namespace() {
        Some(ns) => Api::namespaced_with(cluster.client.clone(), ns, &ar),
        None => Api::all_with(cluster.client.clone(), &ar),
    }
}

/// What restore must know before it writes: the namespaces and adopted
/// keys that must exist, and which resources the cluster serves.
async fn preconditions(
    cluster: &Cluster,
    backup: &Backup,
    all: &[Restorable],
    namespace: &str,
) -> Result<Preconditions, CliError> {
    let mut pre = Preconditions::default();
    let namespaces: Api<Namespace> = Api::all(cluster.client.clone());
    for ns in namespaces_needed(all) {
        let found = namespaces
            .get_opt(&ns)
            .await
            .map_err(cluster.error(format!("namespace {ns}")))?;
        if found.is_none() {
            pre.missing_namespaces.push(ns);
        }
    }
    let secrets: Api<Secret> = Api::namespaced(cluster.client.clone(), namespace);
    for (ca, secret) in adopted_keys_needed(backup) {
        let found = secrets
            .get_opt(&secret)
            .await
            .map_err(cluster.error(format!("Secret {namespace}/{secret}")))?;
        if found.is_none() {
            pre.missing_adopted_keys.push((ca, secret));
        }
    }
    // A resource the cluster does not serve reads as "absent" one object
    // at a time: ask once per kind and version, and say which CRD.
    let mut asked = std::collections::BTreeSet::new();
    for r in all.iter().filter(|r| r.role.is_custom_resource()) {
        if asked.insert((r.role, r.api_version().to_string())) {
            let ar = api_resource(r.role, r.api_version());
            Api::<DynamicObject>::all_with(cluster.client.clone(), &ar)
                .list(&ListParams::default().limit(1))
                .await
                .map_err(cluster.error(format!(
                    "{} of {} (install certop's CRDs first)",
                    describe(r.role),
                    r.api_version()
                )))?;
        }
    }
    Ok(pre)
}

/// Writes a backup's objects into the cluster: what is missing is
/// created (a custom resource's status then written through its
/// subresource), what is there and the same is left, and anything that
/// differs stops the restore before it writes anything.
pub async fn restore(args: RestoreArgs) -> Result<(), CliError> {
    let backup = read_backup(&args)?;
    let cluster = Cluster::connect().await?;
    let all = restorables(&backup, &args.namespace);
    let pre = preconditions(&cluster, &backup, &all, &args.namespace).await?;
    let mut planned = Vec::with_capacity(all.len());
    for r in all {
        let existing = api_for(&cluster, &r)
            .get_opt(r.name())
            .await
            .map_err(cluster.error(r.describe()))?;
        let existing = existing
            .map(serde_json::to_value)
            .transpose()
            .map_err(|e| CliError::Invalid(format!("cannot read {}: {e}", r.describe())))?;
        let outcome = compare(&r, existing.as_ref());
        planned.push((r, outcome));
    }
    let refused = refusals(&planned, &pre, &args.namespace, args.keep_existing);
    if !refused.is_empty() {
        return Err(CliError::Invalid(format!(
            "restore refused, nothing was written:\n  {}",
            refused.join("\n  ")
        )));
    }
    let (mut created, mut unchanged, mut kept) = (0, 0, 0);
    for (r, outcome) in &planned {
        match outcome {
            Outcome::Unchanged => unchanged += 1,
            Outcome::Differs => {
                kept += 1;
                println!(
                    "kept the cluster's {} (it differs from the backup's)",
                    r.describe()
                );
            }
            Outcome::Create => {
                create(&cluster, r).await.map_err(|e| {
                    CliError::Invalid(format!(
                        "{e}; restore stopped after creating {created} objects: run it again once fixed (what it wrote is then left as is)"
                    ))
                })?;
                created += 1;
                println!("created {}", r.describe());
            }
        }
    }
    println!(
        "restored from a backup of {} (certop {}): {created} created, {unchanged} already there, {kept} kept as the cluster has them",
        backup.created_at.to_rfc3339(),
        backup.certop_version
    );
    Ok(())
}

async fn create(cluster: &Cluster, r: &Restorable) -> Result<(), CliError> {
    let api = api_for(cluster, r);
    let object: DynamicObject = serde_json::from_value(r.without_status())
        .map_err(|e| CliError::Invalid(format!("{} in the backup: {e}", r.describe())))?;
    api.create(&PostParams::default(), &object)
        .await
        .map_err(cluster.error(r.describe()))?;
    if let Some(status) = r.status().filter(|_| r.role.has_status()) {
        let patch = serde_json::json!({ "status": status });
        api.patch_status(r.name(), &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(cluster.error(format!("the status of {}", r.describe())))?;
    }
    Ok(())
}
