//! The `certop` command line. Each subcommand is a thin shell over the
//! library: parse arguments, call the core, print or write the result.

mod authz_config;
mod backup;
mod cluster;
mod crd;
mod crl_sync;
mod error;
pub(crate) mod files;
mod kms;
mod migrate_storage;
mod node;
mod node_rotation;
mod pki;
mod plugin;
mod revoke;
mod run;
mod systemd_units;
mod time_left;

use clap::{Parser, Subcommand};

pub use crd::render_crds;
pub use error::CliError;
pub use time_left::format_time_left;

/// certop runs a Kubernetes cluster's internal PKI with zero touch.
#[derive(Debug, Parser)]
#[command(name = "certop", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the operator.
    Run(run::RunArgs),
    /// Print every CustomResourceDefinition certop defines, as YAML.
    Crd,
    /// Write kube-apiserver's AuthorizationConfiguration and webhook kubeconfig
    /// that make it refuse revoked client certificates (certop's webhook first).
    AuthzConfig(authz_config::AuthzConfigArgs),
    /// Work with certificates and keys on disk, no cluster needed.
    #[command(subcommand)]
    Pki(pki::PkiCommand),
    /// The KMS v2 plugin that encrypts Secrets at rest, and its key rotation.
    #[command(subcommand)]
    Kms(kms::KmsCommand),
    /// Show a ClusterCertificate (or `ca/NAME`, a CertificateAuthority): conditions, validity, renewal, recent Events.
    Status(plugin::StatusArgs),
    /// Show what a Secret's certificate says (`inspect secret NAMESPACE/NAME`).
    Inspect(plugin::InspectArgs),
    /// Re-issue ClusterCertificates now.
    Renew(plugin::RenewArgs),
    /// Rotate a CertificateAuthority's key now (staged: trusted first, then signing, then the old one retired).
    RotateCa(plugin::RotateCaArgs),
    /// Revoke a ClusterCertificate's current certificate (or any serial of a CA).
    Revoke(revoke::RevokeArgs),
    /// Rewrite every certop object so etcd stores it as certop.dev/v1, then drop v1alpha1 from the CRDs' storedVersions (after upgrading the CRDs).
    MigrateStorage(migrate_storage::MigrateStorageArgs),
    /// kubeadm-style expiry tables of every ClusterCertificate and CertificateAuthority.
    CheckExpiration(plugin::CheckExpirationArgs),
    /// Write everything certop needs to resume (its resources, CA keys, ledger, CRLs, issued Secrets) to an age-encrypted file.
    Backup(backup::BackupArgs),
    /// Put a backup back into a cluster where certop's CRDs and namespace exist; never overwrites.
    Restore(backup::RestoreArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completion { shell: clap_complete::Shell },
}

/// Runs a parsed command line; the binary maps the error to an exit code.
pub fn run(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Command::Run(args) => run_operator(args),
        Command::Crd => crd::print_crds(&mut std::io::stdout().lock()),
        Command::AuthzConfig(args) => plugin::block_on(authz_config::authz_config(args)),
        Command::Pki(cmd) => pki::run(cmd),
        Command::Kms(cmd) => kms::run(cmd),
        Command::Status(args) => plugin::block_on(plugin::status(args)),
        Command::Renew(args) => plugin::block_on(plugin::renew(args)),
        Command::RotateCa(args) => plugin::block_on(plugin::rotate_ca(args)),
        Command::Revoke(args) => plugin::block_on(revoke::revoke(args)),
        Command::MigrateStorage(args) => plugin::block_on(migrate_storage::migrate_storage(args)),
        Command::CheckExpiration(args) => plugin::block_on(plugin::check_expiration(args)),
        Command::Inspect(args) => plugin::block_on(plugin::inspect(args)),
        Command::Backup(args) => plugin::block_on(backup::backup(args)),
        Command::Restore(args) => plugin::block_on(backup::restore(args)),
        Command::Completion { shell } => {
            use clap::CommandFactory;
            // As a kubectl plugin the binary is kubectl-certop.
            let name = std::env::args_os()
                .next()
                .and_then(|a| {
                    std::path::Path::new(&a)
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                })
                .unwrap_or_else(|| "certop".into());
            clap_complete::generate(shell, &mut Cli::command(), name, &mut std::io::stdout());
            Ok(())
        }
    }
}

fn run_operator(args: run::RunArgs) -> Result<(), CliError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .max_blocking_threads(blocking_threads())
        .enable_all()
        .build()
        .map_err(CliError::Runtime)?;
    runtime
        .block_on(crate::operator::run(args.config()))
        .map_err(CliError::Operator)
}

/// Threads for blocking work: key generation and signing, which are
/// CPU-bound, so more threads than twice the cores run none of it sooner.
/// Tokio's default (512) let the 16 concurrent passes keep 16 threads, each
/// with its stack and its allocator's caches (docs/benchmarks.md).
fn blocking_threads() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get()) * 2
}

/// A duration flag as a value (clap already refused what cannot be used).
pub(crate) fn cli_duration(d: &crate::api::GoDuration) -> Result<chrono::Duration, CliError> {
    d.to_chrono_with_days()
        .map_err(|e| CliError::Invalid(e.to_string()))
}
