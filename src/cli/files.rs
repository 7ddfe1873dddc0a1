use std::fs;
use std::io::Write;
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
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(CliError::io(dir))?;
    let mut tmp = tempfile_in(dir, path)?;
    let result = (|| {
        tmp.1.write_all(content)?;
        tmp.1.sync_all()
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp.0);
        return Err(CliError::Io {
            path: path.to_path_buf(),
            source: e,
        });
    }
    set_mode(&tmp.0, if secret { 0o600 } else { 0o644 })?;
    fs::rename(&tmp.0, path).map_err(|e| {
        let _ = fs::remove_file(&tmp.0);
        CliError::Io {
            path: path.to_path_buf(),
            source: e,
        }
    })
}

fn tempfile_in(dir: &Path, target: &Path) -> Result<(PathBuf, fs::File), CliError> {
    use std::os::unix::fs::OpenOptionsExt;
    let name = target
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("file");
    for attempt in 0..100u32 {
        let tmp = dir.join(format!(".{name}.tmp-{}-{attempt}", std::process::id()));
        match fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
        {
            Ok(f) => return Ok((tmp, f)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => {
                return Err(CliError::Io {
                    path: tmp,
                    source: e,
                });
            }
        }
    }
    Err(CliError::Io {
        path: dir.to_path_buf(),
        source: std::io::Error::other("cannot create a temporary file"),
    })
}

fn set_mode(path: &Path, mode: u32) -> Result<(), CliError> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(CliError::io(path))
}

pub fn read(path: &Path) -> Result<Vec<u8>, CliError> {
    fs::read(path).map_err(CliError::io(path))
}
