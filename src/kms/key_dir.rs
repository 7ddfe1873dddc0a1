//! Where the key-encryption keys live: a directory of `<id>.kek` files (32
//! random bytes each, mode 0600, written atomically) and `current`, the id
//! new ciphertexts use. Old KEKs stay for Decrypt until `retire` (which
//! `kms rewrite` calls only once no stored object needs them).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use chrono::{DateTime, Utc};

use super::KmsError;
use super::envelope::{KEK_LEN, valid_key_id};

const CURRENT: &str = "current";
const SUFFIX: &str = ".kek";

/// The KEKs as loaded: every one Decrypt may need, and the current one.
#[derive(Clone)]
pub struct Keys {
    pub current: String,
    keks: BTreeMap<String, [u8; KEK_LEN]>,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key bytes.
        f.debug_struct("Keys")
            .field("current", &self.current)
            .field("ids", &self.keks.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Keys {
    pub fn get(&self, id: &str) -> Option<&[u8; KEK_LEN]> {
        self.keks.get(id)
    }

    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.keks.keys().map(String::as_str)
    }

    /// The current KEK (present by construction: `load` checks it).
    pub fn current_kek(&self) -> Option<&[u8; KEK_LEN]> {
        self.keks.get(&self.current)
    }
}

/// A key directory that exists and can be read.
#[derive(Clone, Debug)]
pub struct KeyDir {
    path: PathBuf,
}

impl KeyDir {
    pub fn open(path: &Path) -> Result<Self, KmsError> {
        let meta = std::fs::metadata(path).map_err(|source| KmsError::KeyDir {
            path: path.to_path_buf(),
            source,
        })?;
        if !meta.is_dir() {
            return Err(KmsError::KeyDir {
                path: path.to_path_buf(),
                source: std::io::Error::other("not a directory"),
            });
        }
        // Whoever can write the directory can plant a KEK and make it
        // current (then read every Secret stored after) or delete one.
        let mode = std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o7777;
        if mode & 0o022 != 0 {
            return Err(KmsError::KeyDirWritable {
                path: path.to_path_buf(),
                mode,
            });
        }
        Ok(KeyDir {
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn kek_path(&self, id: &str) -> PathBuf {
        self.path.join(format!("{id}{SUFFIX}"))
    }

    /// Reads every KEK and the current id. A KEK file of the wrong size,
    /// or a current id without its file, is an error naming the file.
    pub fn load(&self) -> Result<Keys, KmsError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| KmsError::KeyDir { path, source }
        };
        let mut keks = BTreeMap::new();
        for entry in std::fs::read_dir(&self.path).map_err(io(&self.path))? {
            let entry = entry.map_err(io(&self.path))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(id) = name.strip_suffix(SUFFIX) else {
                continue;
            };
            if !valid_key_id(id) {
                continue;
            }
            let bytes = std::fs::read(entry.path()).map_err(io(&entry.path()))?;
            let kek: [u8; KEK_LEN] = bytes.try_into().map_err(|b: Vec<u8>| KmsError::BadKek {
                path: entry.path(),
                len: b.len(),
            })?;
            keks.insert(id.to_string(), kek);
        }
        let current_path = self.path.join(CURRENT);
        let current = std::fs::read_to_string(&current_path)
            .map_err(|source| {
                if source.kind() == std::io::ErrorKind::NotFound {
                    KmsError::NoCurrentKey(self.path.clone())
                } else {
                    KmsError::KeyDir {
                        path: current_path.clone(),
                        source,
                    }
                }
            })?
            .trim()
            .to_string();
        if !keks.contains_key(&current) {
            return Err(KmsError::MissingKek {
                id: current,
                dir: self.path.clone(),
            });
        }
        Ok(Keys { current, keks })
    }

    /// Whether the directory holds no KEK yet (a first start).
    pub fn is_empty(&self) -> Result<bool, KmsError> {
        Ok(!self.path.join(CURRENT).exists())
    }

    /// Makes a new KEK and makes it current; returns its id. The KEK file
    /// is written (and synced) before `current` names it.
    pub fn rotate(&self, now: DateTime<Utc>) -> Result<String, KmsError> {
        let mut kek = [0u8; KEK_LEN];
        let rng = SystemRandom::new();
        rng.fill(&mut kek).map_err(|_| KmsError::Random)?;
        // Two rotations in one second share the time and may draw the same
        // tag; writing over an existing KEK would lose every Secret it
        // encrypted, so a name already taken is drawn again.
        let id = loop {
            let mut tag = [0u8; 2];
            rng.fill(&mut tag).map_err(|_| KmsError::Random)?;
            let id = format!(
                "kek-{}-{:02x}{:02x}",
                now.format("%Y%m%d-%H%M%S"),
                tag[0],
                tag[1]
            );
            if !self.kek_path(&id).exists() {
                break id;
            }
        };
        write(&self.kek_path(&id), &kek)?;
        write(&self.path.join(CURRENT), format!("{id}\n").as_bytes())?;
        Ok(id)
    }

    /// Deletes a KEK. Never the current one.
    pub fn retire(&self, id: &str) -> Result<(), KmsError> {
        let keys = self.load()?;
        if keys.current == id {
            return Err(KmsError::RetireCurrent(id.to_string()));
        }
        if !valid_key_id(id) || keys.get(id).is_none() {
            return Err(KmsError::MissingKek {
                id: id.to_string(),
                dir: self.path.clone(),
            });
        }
        let path = self.kek_path(id);
        std::fs::remove_file(&path).map_err(|source| KmsError::KeyDir { path, source })
    }
}

fn write(path: &Path, content: &[u8]) -> Result<(), KmsError> {
    crate::atomic_file::write(path, content, true).map_err(|e| KmsError::KeyDir {
        path: e.path,
        source: e.source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_keeps_old_keys_and_retirement_never_takes_the_current_one() {
        let tmp = tempfile::tempdir().expect("tmp");
        let dir = KeyDir::open(tmp.path()).expect("dir");
        assert!(dir.is_empty().expect("empty"));
        assert!(matches!(dir.load(), Err(KmsError::NoCurrentKey(_))));
        let first = dir.rotate(Utc::now()).expect("first");
        let second = dir.rotate(Utc::now()).expect("second");
        let keys = dir.load().expect("load");
        assert_eq!(keys.current, second);
        assert!(keys.get(&first).is_some(), "the old KEK stays for Decrypt");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(tmp.path().join(format!("{first}.kek")))
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(matches!(
            dir.retire(&second),
            Err(KmsError::RetireCurrent(_))
        ));
        dir.retire(&first).expect("retire");
        assert!(dir.load().expect("load").get(&first).is_none());
        std::fs::write(tmp.path().join("kek-bad.kek"), b"short").expect("write");
        assert!(matches!(dir.load(), Err(KmsError::BadKek { len: 5, .. })));
        assert!(KeyDir::open(&tmp.path().join("missing")).is_err());
    }

    #[test]
    fn rotations_in_one_second_never_write_over_a_kek() {
        let tmp = tempfile::tempdir().expect("tmp");
        let dir = KeyDir::open(tmp.path()).expect("dir");
        let now = Utc::now();
        // 1000 names from 65536 tags in one second: a repeat is all but
        // certain (the birthday bound), and must not replace a KEK.
        let ids: std::collections::BTreeSet<String> = (0..1000)
            .map(|_| dir.rotate(now).expect("rotate"))
            .collect();
        assert_eq!(ids.len(), 1000, "every rotation made a KEK of its own");
        assert_eq!(dir.load().expect("load").keks.len(), 1000);
    }

    #[test]
    fn a_key_directory_others_can_write_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().expect("tmp");
        for (mode, accepted) in [
            (0o700, true),
            (0o750, true),
            (0o755, true),
            (0o770, false),
            (0o702, false),
            (0o777, false),
            (0o1777, false),
        ] {
            std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(mode))
                .expect("chmod");
            let opened = KeyDir::open(tmp.path());
            assert_eq!(opened.is_ok(), accepted, "mode {mode:o}");
            if let Err(e) = opened {
                assert!(
                    matches!(e, KmsError::KeyDirWritable { .. })
                        && e.to_string().contains("chmod 0700"),
                    "{e}"
                );
            }
        }
    }
}
