use std::fs;
use std::path::{Path, PathBuf};

use super::CliError;

/// A file to write: its path, its content and whether it is secret (0600).
pub struct OutputFile {
    pub path: PathBuf,
    pub content: Vec<u8>,
    pub secret: bool,
}

/// Writes each file atomically (temporary file, fsync, rename) so that a
/// reader never sees half a certificate, and keys are never world-readable
/// even for an instant.
pub fn write_all(files: &[OutputFile]) -> Result<(), CliError> {
    for f in files {
        write_atomically(&f.path, &f.content, f.secret)?;
    }
    Ok(())
}

pub fn write_atomically(path: &Path, content: &[u8], secret: bool) -> Result<(), CliError> {
    crate::atomic_file::write(path, content, secret).map_err(|e| CliError::Io {
        path: e.path,
        source: e.source,
    })
}

pub fn read(path: &Path) -> Result<Vec<u8>, CliError> {
    fs::read(path).map_err(CliError::io(path))
}
