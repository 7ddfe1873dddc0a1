//! `certop kms serve | rotate | rewrite`: the KMS v2 plugin and its key
//! rotation, from the command line.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Subcommand};

use super::{CliError, cli_duration};
use crate::api::GoDuration;
use crate::kms::KmsError;
use crate::kms::encryption_config::{self, Resource};
use crate::kms::key_dir::KeyDir;
use crate::kms::rewrite::{self, EtcdAccess};
use crate::kms::server::{self, Plugin};

#[derive(Debug, Subcommand)]
pub enum KmsCommand {
    /// Serve the Kubernetes KMS v2 API on a unix socket (for kube-apiserver's EncryptionConfiguration).
    Serve(ServeArgs),
    /// Make a new key-encryption key current; old ones stay for decryption.
    Rotate(KeyDirArgs),
    /// Store every object the plugin encrypts again under the current KEK, prove from all of etcd which KEKs are still needed, retire the rest.
    Rewrite(RewriteArgs),
}

#[derive(Debug, Args)]
pub struct KeyDirArgs {
    /// Directory of the key-encryption keys (0700; back it up).
    #[arg(long)]
    key_dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The unix socket kube-apiserver connects to (`endpoint: unix:///PATH`).
    #[arg(long)]
    socket: PathBuf,
    #[command(flatten)]
    keys: KeyDirArgs,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["encryption_config", "resources"])))]
pub struct RewriteArgs {
    #[command(flatten)]
    keys: KeyDirArgs,
    /// kube-apiserver's EncryptionConfiguration: every resource whose providers include the kms provider --kms-name is rewritten (wildcards are refused: list them with --resources).
    #[arg(long, value_name = "FILE")]
    encryption_config: Option<PathBuf>,
    /// The kms provider's `name` in the EncryptionConfiguration.
    #[arg(long, default_value = "certop")]
    kms_name: String,
    /// The resources to rewrite, instead of --encryption-config: plural names as the EncryptionConfiguration gives them (secrets,configmaps,widgets.example.com).
    #[arg(long, value_name = "LIST")]
    resources: Option<String>,
    /// etcd's client URL; with it, what etcd stores proves which KEKs are still needed, and the others are retired.
    #[arg(long)]
    etcd_endpoint: Option<String>,
    /// CA, client certificate and key for etcd (on a kubeadm node: /etc/kubernetes/pki/etcd/ca.crt, apiserver-etcd-client.crt/.key).
    #[arg(long)]
    etcd_cacert: Option<PathBuf>,
    #[arg(long)]
    etcd_cert: Option<PathBuf>,
    #[arg(long)]
    etcd_key: Option<PathBuf>,
    /// How long to wait for the API server to use the current KEK (it polls the plugin's status about once a minute).
    #[arg(long, default_value = "5m")]
    patience: GoDuration,
}

pub fn run(command: KmsCommand) -> Result<(), CliError> {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(CliError::Runtime)?;
    runtime.block_on(async {
        match command {
            KmsCommand::Serve(args) => serve(args).await,
            KmsCommand::Rotate(args) => {
                let dir = KeyDir::open(&args.key_dir).map_err(kms)?;
                let id = dir.rotate(chrono::Utc::now()).map_err(kms)?;
                println!(
                    "KEK {id} is current in {}; a running plugin uses it from its next status check (kube-apiserver polls about once a minute). Then run `certop kms rewrite`",
                    args.key_dir.display()
                );
                Ok(())
            }
            KmsCommand::Rewrite(args) => rewrite(args).await,
        }
    })
}

fn kms(e: KmsError) -> CliError {
    CliError::Invalid(e.to_string())
}

async fn serve(args: ServeArgs) -> Result<(), CliError> {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .try_init();
    let dir = KeyDir::open(&args.keys.key_dir).map_err(kms)?;
    let plugin = Arc::new(Plugin::new(dir).map_err(kms)?);
    let reloader = plugin.clone();
    // SIGHUP reloads the key directory at once (a rotation, a restore).
    let mut hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .map_err(|e| CliError::Invalid(format!("cannot watch SIGHUP: {e}")))?;
    tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            if let Err(e) = reloader.reload() {
                tracing::warn!(error = %e, "reload on SIGHUP");
            }
        }
    });
    let shutdown = async {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(t) => t,
                Err(_) => return std::future::pending().await,
            };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    };
    server::serve(&args.socket, plugin, shutdown)
        .await
        .map_err(kms)
}

/// The resources to rewrite, from the EncryptionConfiguration or the list.
fn resources(args: &RewriteArgs) -> Result<BTreeSet<Resource>, KmsError> {
    match (&args.encryption_config, &args.resources) {
        (_, Some(list)) => Resource::parse_list(list),
        (Some(path), None) => {
            let text = std::fs::read_to_string(path).map_err(|e| KmsError::EncryptionConfig {
                path: path.clone(),
                reason: e.to_string(),
            })?;
            encryption_config::resources_of(&text, &args.kms_name, path)
        }
        (None, None) => Err(KmsError::BadResource(String::new())),
    }
}

async fn rewrite(args: RewriteArgs) -> Result<(), CliError> {
    let dir = KeyDir::open(&args.keys.key_dir).map_err(kms)?;
    let current = dir.load().map_err(kms)?.current;
    let resources = resources(&args).map_err(kms)?;
    let client = kube::Client::try_default()
        .await
        .map_err(|e| CliError::Invalid(format!("cannot reach the Kubernetes API: {e}")))?;
    let names: Vec<String> = resources.iter().map(ToString::to_string).collect();
    eprintln!(
        "rewriting {} (current KEK {current}, {} at a time)",
        names.join(", "),
        rewrite::CONCURRENCY
    );
    let pass = rewrite::rewrite_all(&client, &resources, |r, n| {
        if n > 0 && n % 500 == 0 {
            eprintln!("  {r}: {n} rewritten");
        }
    })
    .await;
    for (resource, n) in &pass.count {
        println!("rewrote {n} {resource}");
    }
    let mut failures: BTreeMap<String, String> = pass
        .failures
        .into_iter()
        .map(|f| (f.object, f.reason))
        .collect();
    let proven = match args.etcd_endpoint {
        None => {
            println!(
                "no --etcd-endpoint: which KEKs stored objects need is not proven, so none is retired"
            );
            Ok(())
        }
        Some(endpoint) => {
            let etcd = EtcdAccess {
                endpoint,
                ca: args.etcd_cacert,
                cert: args.etcd_cert,
                key: args.etcd_key,
            };
            let patience = cli_duration(&args.patience)?
                .to_std()
                .unwrap_or(Duration::from_secs(300));
            rewrite::prove_and_retire(&client, &dir, &etcd, &resources, patience)
                .await
                .map(|proof| {
                    for (id, n) in &proof.by_key {
                        println!("etcd: {n} objects stored under KEK {id}");
                    }
                    if proof.retired.is_empty() {
                        println!("no KEK to retire");
                    }
                    for id in &proof.retired {
                        println!("retired KEK {id}: nothing in etcd needs it");
                    }
                    failures.extend(proof.failures.into_iter().map(|f| (f.object, f.reason)));
                })
        }
    };
    for (object, reason) in &failures {
        eprintln!("not rewritten: {object}: {reason}");
    }
    proven.map_err(kms)?;
    if !failures.is_empty() {
        return Err(CliError::Invalid(format!(
            "{} objects were not rewritten (listed above); fix them and run `certop kms rewrite` again",
            failures.len()
        )));
    }
    Ok(())
}
