//! `certop kms`: a Kubernetes KMS v2 plugin, so the API server stores
//! Secrets (every private key certop issues, CA keys included) encrypted
//! in etcd. The API server encrypts each object with a data key of its
//! own and asks the plugin to encrypt that key (Encrypt) under a
//! key-encryption key (KEK) that never leaves the node; `rotate` makes a
//! new KEK current, `rewrite` re-encrypts every Secret under it and retires
//! the old KEK once no stored object needs it.

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
        "{count} stored Secrets still need KEK {id} (for example {example}); rewrite them before it is retired"
    )]
    StillNeeded {
        id: String,
        count: usize,
        example: String,
    },
}
