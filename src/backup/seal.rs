//! The backup file's encryption: the age format (age-encryption.org/v1),
//! through the `age` crate, to X25519 recipients (`age1...`) or to a
//! passphrase (scrypt). The file opens with the `age` command line too, so
//! a backup never depends on certop to be read. age's primitives serve
//! this file only: TLS and X.509 stay on aws-lc-rs.

use std::io::{BufReader, Read, Write};
use std::str::FromStr;

use age::secrecy::SecretString;

/// Who can open a backup being written.
pub enum Sealing {
    Passphrase(SecretString),
    Recipients(Vec<age::x25519::Recipient>),
}

/// What opens a backup being read.
pub enum Opening {
    Passphrase(SecretString),
    /// The identities of an age identity file (`age-keygen`'s output).
    Identities(Vec<Box<dyn age::Identity + Send + Sync>>),
}

/// Why a backup could not be sealed or opened. No variant carries key
/// material or plaintext.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("{0:?} is not an age X25519 recipient (age1...): {1}")]
    Recipient(String, String),
    #[error("the passphrase file is empty: write the passphrase on its first line")]
    EmptyPassphrase,
    #[error("the identity file holds no age identity: {0}")]
    Identity(String),
    #[error("cannot encrypt the backup: {0}")]
    Encrypt(String),
    #[error("wrong passphrase: it does not open this backup (nothing was written to the cluster)")]
    WrongPassphrase,
    #[error(
        "this backup is encrypted to a passphrase, not to a recipient: restore it with --passphrase-file"
    )]
    NeedsPassphrase,
    #[error(
        "this backup is encrypted to age recipients, not to a passphrase: restore it with --identity KEY-FILE"
    )]
    NeedsIdentity,
    #[error(
        "no identity in the identity file opens this backup: it was encrypted to other recipients (nothing was written to the cluster)"
    )]
    NoMatchingIdentity,
    #[error("the file is not a readable age file: {0}")]
    NotAgeFile(String),
    #[error("the backup cannot be decrypted: {0} (nothing was written to the cluster)")]
    Decrypt(String),
}

impl Sealing {
    pub fn recipients(keys: &[String]) -> Result<Sealing, SealError> {
        keys.iter()
            .map(|k| {
                age::x25519::Recipient::from_str(k.trim())
                    .map_err(|e| SealError::Recipient(k.clone(), e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Sealing::Recipients)
    }
}

/// A passphrase from the contents of a passphrase file: its first line,
/// without the line ending, so `echo secret > file` works as expected.
pub fn passphrase(file_contents: &str) -> Result<SecretString, SealError> {
    let line = file_contents.lines().next().unwrap_or_default();
    if line.is_empty() {
        return Err(SealError::EmptyPassphrase);
    }
    Ok(SecretString::from(line.to_string()))
}

/// The identities of an age identity file's contents.
pub fn identities(file_contents: &[u8]) -> Result<Opening, SealError> {
    let file = age::IdentityFile::from_buffer(BufReader::new(file_contents))
        .map_err(|e| SealError::Identity(e.to_string()))?;
    let identities = file
        .into_identities()
        .map_err(|e| SealError::Identity(e.to_string()))?;
    if identities.is_empty() {
        return Err(SealError::Identity("no AGE-SECRET-KEY-1 line".into()));
    }
    Ok(Opening::Identities(identities))
}

/// Encrypts `plaintext` into an age file.
pub fn seal(plaintext: &[u8], sealing: &Sealing) -> Result<Vec<u8>, SealError> {
    let encrypt = |e: &dyn std::fmt::Display| SealError::Encrypt(e.to_string());
    let encryptor = match sealing {
        Sealing::Passphrase(p) => age::Encryptor::with_user_passphrase(p.clone()),
        Sealing::Recipients(rs) => {
            age::Encryptor::with_recipients(rs.iter().map(|r| r as &dyn age::Recipient))
                .map_err(|e| encrypt(&e))?
        }
    };
    let mut out = Vec::with_capacity(plaintext.len() + 512);
    let mut writer = encryptor.wrap_output(&mut out).map_err(|e| encrypt(&e))?;
    writer.write_all(plaintext).map_err(|e| encrypt(&e))?;
    writer.finish().map_err(|e| encrypt(&e))?;
    Ok(out)
}

/// Decrypts an age file; the error says which key to use when the one
/// given is of the wrong kind, and says plainly when it is the wrong one.
pub fn open(ciphertext: &[u8], opening: &Opening) -> Result<Vec<u8>, SealError> {
    let decryptor = age::Decryptor::new_buffered(ciphertext)
        .map_err(|e| SealError::NotAgeFile(e.to_string()))?;
    let reader = match opening {
        Opening::Passphrase(p) => {
            if !decryptor.is_scrypt() {
                return Err(SealError::NeedsIdentity);
            }
            let identity = age::scrypt::Identity::new(p.clone());
            decryptor
                .decrypt(std::iter::once(&identity as &dyn age::Identity))
                .map_err(|e| match e {
                    age::DecryptError::DecryptionFailed
                    | age::DecryptError::KeyDecryptionFailed
                    | age::DecryptError::NoMatchingKeys => SealError::WrongPassphrase,
                    other => SealError::Decrypt(other.to_string()),
                })?
        }
        Opening::Identities(ids) => {
            if decryptor.is_scrypt() {
                return Err(SealError::NeedsPassphrase);
            }
            decryptor
                .decrypt(ids.iter().map(|i| i.as_ref() as &dyn age::Identity))
                .map_err(|e| match e {
                    age::DecryptError::NoMatchingKeys => SealError::NoMatchingIdentity,
                    other => SealError::Decrypt(other.to_string()),
                })?
        }
    };
    let mut plaintext = Vec::new();
    let mut reader = reader;
    reader
        .read_to_end(&mut plaintext)
        .map_err(|e| SealError::Decrypt(e.to_string()))?;
    Ok(plaintext)
}

#[cfg(test)]
mod tests {
    use age::secrecy::ExposeSecret;

    use super::*;

    fn identity_file(id: &age::x25519::Identity) -> Vec<u8> {
        format!(
            "# created: test\n# public key: {}\n{}\n",
            id.to_public(),
            id.to_string().expose_secret()
        )
        .into_bytes()
    }

    #[test]
    fn a_backup_opens_with_its_key_and_with_no_other() {
        let plaintext = br#"{"format":"certop.dev/backup"}"#;
        let mine = age::x25519::Identity::generate();
        let other = age::x25519::Identity::generate();
        let to_me = seal(
            plaintext,
            &Sealing::recipients(&[mine.to_public().to_string()]).expect("recipient"),
        )
        .expect("seal");
        assert!(
            !to_me.windows(plaintext.len()).any(|w| w == plaintext),
            "the plaintext shows in the file"
        );
        let opened = open(&to_me, &identities(&identity_file(&mine)).expect("id"))
            .expect("opens with its identity");
        assert_eq!(opened, plaintext);

        let refused = |file: &[u8], opening: &Opening| match open(file, opening) {
            Ok(_) => panic!("opened with the wrong key"),
            Err(e) => e,
        };
        let wrong_identity = refused(&to_me, &identities(&identity_file(&other)).expect("id"));
        assert!(
            matches!(wrong_identity, SealError::NoMatchingIdentity),
            "{wrong_identity}"
        );
        let passphrase_for_recipients = refused(
            &to_me,
            &Opening::Passphrase(passphrase("secret\n").expect("pass")),
        );
        assert!(matches!(
            passphrase_for_recipients,
            SealError::NeedsIdentity
        ));

        let to_passphrase = seal(
            plaintext,
            &Sealing::Passphrase(passphrase("correct horse\n").expect("pass")),
        )
        .expect("seal");
        let opened = open(
            &to_passphrase,
            &Opening::Passphrase(passphrase("correct horse").expect("pass")),
        )
        .expect("opens with its passphrase");
        assert_eq!(opened, plaintext);
        let wrong = refused(
            &to_passphrase,
            &Opening::Passphrase(passphrase("correct horse!").expect("pass")),
        );
        assert!(matches!(wrong, SealError::WrongPassphrase), "{wrong}");
        let identity_for_passphrase = refused(
            &to_passphrase,
            &identities(&identity_file(&mine)).expect("id"),
        );
        assert!(matches!(
            identity_for_passphrase,
            SealError::NeedsPassphrase
        ));
        let mut tampered = to_passphrase.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert!(
            open(
                &tampered,
                &Opening::Passphrase(passphrase("correct horse").expect("pass"))
            )
            .is_err()
        );
    }

    /// `--recipient` repeated: any one of the keys restores the backup
    /// (the user guide's promise), and a key not among them does not.
    #[test]
    fn a_backup_to_several_recipients_opens_with_any_of_their_keys() {
        let plaintext = br#"{"format":"certop.dev/backup"}"#;
        let keys = [
            age::x25519::Identity::generate(),
            age::x25519::Identity::generate(),
        ];
        let sealed = seal(
            plaintext,
            &Sealing::recipients(&keys.each_ref().map(|k| k.to_public().to_string()))
                .expect("recipients"),
        )
        .expect("seal");
        for key in &keys {
            let opened = open(&sealed, &identities(&identity_file(key)).expect("id"))
                .expect("opens with either key");
            assert_eq!(opened, plaintext);
        }
        let stranger = identities(&identity_file(&age::x25519::Identity::generate())).expect("id");
        assert!(matches!(
            open(&sealed, &stranger),
            Err(SealError::NoMatchingIdentity)
        ));
    }

    #[test]
    fn bad_keys_are_named_and_never_echo_a_secret() {
        assert!(matches!(passphrase(""), Err(SealError::EmptyPassphrase)));
        assert!(matches!(
            passphrase("\nsecond"),
            Err(SealError::EmptyPassphrase)
        ));
        let e = Sealing::recipients(&["age1nope".into()])
            .err()
            .expect("refused");
        assert!(e.to_string().contains("age1nope"), "{e}");
        let secret = age::x25519::Identity::generate();
        let mangled = format!("{}x\n", secret.to_string().expose_secret());
        let e = identities(mangled.as_bytes()).err().expect("refused");
        assert!(
            !e.to_string()
                .contains(&secret.to_string().expose_secret()[10..]),
            "{e}"
        );
    }
}
