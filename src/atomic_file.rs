//! Files replaced whole: a temporary file in the same directory, written,
//! fsynced, given its mode, then renamed over the target. A reader never
//! sees half a certificate, and a key is never world-readable even for an
//! instant. Used by the offline commands and the KMS plugin's key directory.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

/// A file that could not be written, and where.
#[derive(Debug, thiserror::Error)]
#[error("{}: {source}", path.display())]
pub struct WriteError {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

fn at(path: &Path) -> impl FnOnce(std::io::Error) -> WriteError + '_ {
    move |source| WriteError {
        path: path.to_path_buf(),
        source,
    }
}

/// Replaces `path` with `content`; mode 0600 if `secret`, else 0644.
pub fn write(path: &Path, content: &[u8], secret: bool) -> Result<(), WriteError> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(at(dir))?;
    let (tmp, mut file) = tempfile_in(dir, path)?;
    let written = file
        .write_all(content)
        .and_then(|()| file.sync_all())
        .and_then(|()| set_mode(&tmp, if secret { 0o600 } else { 0o644 }))
        .and_then(|()| fs::rename(&tmp, path));
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(at(path)(e));
    }
    Ok(())
}

fn tempfile_in(dir: &Path, target: &Path) -> Result<(PathBuf, fs::File), WriteError> {
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
            Err(e) => return Err(at(&tmp)(e)),
        }
    }
    Err(at(dir)(std::io::Error::other(
        "cannot create a temporary file",
    )))
}

fn set_mode(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_secret_is_written_0600_and_replaces_the_old_file_whole() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("sub/key.pem");
        super::write(&path, b"old", false).expect("write");
        super::write(&path, b"new", true).expect("replace");
        assert_eq!(std::fs::read(&path).expect("read"), b"new");
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let left: Vec<_> = std::fs::read_dir(path.parent().expect("dir"))
            .expect("list")
            .collect();
        assert_eq!(left.len(), 1, "no temporary file left behind");
    }
}
