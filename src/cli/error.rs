use std::path::PathBuf;

use crate::pki::PkiError;

/// Why a command failed; printed as one line.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    Manifest { path: PathBuf, reason: String },
    #[error(
        "{0} already exists; refusing to overwrite a key (remove it first, or choose another --out)"
    )]
    WouldOverwriteKey(PathBuf),
    #[error(transparent)]
    Pki(#[from] PkiError),
    #[error("cannot render YAML: {0}")]
    Yaml(String),
    #[error("{0}")]
    Invalid(String),
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
    #[error(transparent)]
    Operator(#[from] crate::operator::Error),
    #[error(transparent)]
    Seal(#[from] crate::backup::seal::SealError),
    #[error(transparent)]
    Backup(#[from] crate::backup::DocumentError),
    #[error("cannot write to standard output: {0}")]
    Stdout(std::io::Error),
}

impl CliError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> CliError {
        let path = path.into();
        move |source| CliError::Io { path, source }
    }
}
