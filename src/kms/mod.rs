//! `certop kms`: a Kubernetes KMS v2 plugin, so the API server stores
//! Secrets (every private key certop issues, CA keys included) encrypted
//! in etcd. The API server encrypts each object with a data key of its
//! own and asks the plugin to encrypt that key (Encrypt) under a
//! key-encryption key (KEK) that never leaves the node; `rotate` makes a
//! new KEK current, `rewrite` stores again every object of the resources
//! the plugin encrypts and retires an old KEK once nothing in etcd needs it.

pub mod encryption_config;
pub mod envelope;
pub mod key_dir;
pub mod rewrite;
pub mod server;

/// The Kubernetes KMS v2 gRPC API (proto/k8s.io/kms/apis/v2/api.proto).
#[allow(clippy::all, missing_docs)]
pub mod proto {
    tonic::include_proto!("v2");
}

use std::path::PathBuf;

/// What went wrong in the plugin; each names the file or key at fault.
#[derive(Debug, thiserror::Error)]
pub enum KmsError {
    #[error("key directory {path}: {source}")]
    KeyDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{path} is not a key-encryption key: it holds {len} bytes, a KEK holds 32; restore it from a backup"
    )]
    BadKek { path: PathBuf, len: usize },
    #[error(
        "key directory {0} has no current KEK (no file `current`); start `certop kms serve` once to create one, or restore the directory from a backup"
    )]
    NoCurrentKey(PathBuf),
    #[error("KEK {id} is not in {dir}; restore it from a backup")]
    MissingKek { id: String, dir: PathBuf },
    #[error("KEK {0} is current; rotate first, then rewrite, then retire it")]
    RetireCurrent(String),
    #[error("the system random number generator failed")]
    Random,
    #[error("socket {path}: {source}")]
    Socket {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("gRPC: {0}")]
    Grpc(String),
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("etcd at {endpoint}: {reason}")]
    Etcd { endpoint: String, reason: String },
    #[error(
        "{count} objects in etcd still need KEK {id} (for example {example}); add their resource to --resources (or the EncryptionConfiguration) and rewrite again before it is retired"
    )]
    StillNeeded {
        id: String,
        count: usize,
        example: String,
    },
    #[error(
        "no object in etcd is stored under the current KEK {0} yet, so kube-apiserver may still encrypt with an older one; none is retired (is the plugin in the EncryptionConfiguration, and did kube-apiserver check its status since the rotation?)"
    )]
    CurrentUnused(String),
    #[error(
        "key directory {path} is writable by group or others (mode {mode:o}); `chmod 0700 {path}` and check no one else changed its keys"
    )]
    KeyDirWritable { path: PathBuf, mode: u32 },
    #[error(
        "{0} exists and is not a socket; refusing to replace it (give --socket a path of its own)"
    )]
    NotASocket(PathBuf),
    #[error("EncryptionConfiguration {path}: {reason}")]
    EncryptionConfig { path: PathBuf, reason: String },
    #[error(
        "{0}: a wildcard resource is not supported; list the resources it covers with --resources (for example `--resources secrets,configmaps`)"
    )]
    WildcardResource(String),
    #[error(
        "{0:?} is not a resource name; give the plural name and group as the EncryptionConfiguration does (secrets, deployments.apps)"
    )]
    BadResource(String),
}
