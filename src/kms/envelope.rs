//! The plugin's ciphertext: what the API server stores (wrapped in its own
//! envelope) and hands back to Decrypt. AES-256-GCM (aws-lc-rs) under a
//! key-encryption key, with the KEK's id inside, authenticated, so Decrypt
//! picks the right KEK and a ciphertext moved to another id fails:
//!
//! ```text
//! 0x01 | id length (1 byte) | id | nonce (12 bytes) | AES-256-GCM(plaintext) + tag (16 bytes)
//!      └──────────── additional authenticated data ─┘
//! ```
//!
//! Pure: no files, no clock. Anything that is not exactly this fails with
//! an error that says which part, never a panic or wrong plaintext.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};

/// The only format so far.
const FORMAT: u8 = 1;
/// Bytes of a KEK.
pub const KEK_LEN: usize = 32;
const TAG_LEN: usize = 16;
/// The longest key id (the API server allows up to 1 kB; ours are short).
pub const MAX_ID_LEN: usize = 64;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EnvelopeError {
    #[error("the ciphertext is empty or too short to hold a key id, nonce and tag ({0} bytes)")]
    Truncated(usize),
    #[error("the ciphertext is of format {0}; this plugin reads format 1")]
    UnknownFormat(u8),
    #[error("the ciphertext names no valid key id")]
    BadKeyId,
    #[error(
        "the ciphertext does not authenticate under key {0}: it was altered, or is not this plugin's"
    )]
    Tampered(String),
    #[error("the plaintext is empty")]
    EmptyPlaintext,
    #[error("the system random number generator failed")]
    Random,
}

/// Whether `id` can be a KEK id: 1 to 64 of `a-z 0-9 -`.
pub fn valid_key_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

fn cipher(id: &str, kek: &[u8; KEK_LEN]) -> Result<LessSafeKey, EnvelopeError> {
    UnboundKey::new(&AES_256_GCM, kek)
        .map(LessSafeKey::new)
        .map_err(|_| EnvelopeError::Tampered(id.to_string()))
}

/// Seals `plaintext` under the KEK `id`.
pub fn seal(id: &str, kek: &[u8; KEK_LEN], plaintext: &[u8]) -> Result<Vec<u8>, EnvelopeError> {
    if plaintext.is_empty() {
        return Err(EnvelopeError::EmptyPlaintext);
    }
    if !valid_key_id(id) {
        return Err(EnvelopeError::BadKeyId);
    }
    let mut nonce = [0u8; NONCE_LEN];
    SystemRandom::new()
        .fill(&mut nonce)
        .map_err(|_| EnvelopeError::Random)?;
    let mut out = Vec::with_capacity(2 + id.len() + NONCE_LEN + plaintext.len() + TAG_LEN);
    out.push(FORMAT);
    out.push(id.len() as u8);
    out.extend_from_slice(id.as_bytes());
    let header_len = out.len();
    out.extend_from_slice(&nonce);
    let mut sealed = plaintext.to_vec();
    cipher(id, kek)?
        .seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(&out[..header_len]),
            &mut sealed,
        )
        .map_err(|_| EnvelopeError::Tampered(id.to_string()))?;
    out.extend_from_slice(&sealed);
    Ok(out)
}

/// The KEK id a ciphertext names, read without decrypting it.
pub fn key_id_of(ciphertext: &[u8]) -> Result<&str, EnvelopeError> {
    let (&format, rest) = ciphertext
        .split_first()
        .ok_or(EnvelopeError::Truncated(0))?;
    if format != FORMAT {
        return Err(EnvelopeError::UnknownFormat(format));
    }
    let (&len, rest) = rest
        .split_first()
        .ok_or(EnvelopeError::Truncated(ciphertext.len()))?;
    let id = rest
        .get(..usize::from(len))
        .ok_or(EnvelopeError::Truncated(ciphertext.len()))?;
    let id = std::str::from_utf8(id).map_err(|_| EnvelopeError::BadKeyId)?;
    if !valid_key_id(id) {
        return Err(EnvelopeError::BadKeyId);
    }
    Ok(id)
}

/// Opens a ciphertext with the KEK its id names (`kek_of` finds it).
pub fn open(ciphertext: &[u8], kek: &[u8; KEK_LEN]) -> Result<Vec<u8>, EnvelopeError> {
    let id = key_id_of(ciphertext)?;
    let header_len = 2 + id.len();
    if ciphertext.len() < header_len + NONCE_LEN + TAG_LEN + 1 {
        return Err(EnvelopeError::Truncated(ciphertext.len()));
    }
    let (header, rest) = ciphertext.split_at(header_len);
    let (nonce, sealed) = rest.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce)
        .map_err(|_| EnvelopeError::Truncated(ciphertext.len()))?;
    let mut buffer = sealed.to_vec();
    let plaintext = cipher(id, kek)?
        .open_in_place(nonce, Aad::from(header), &mut buffer)
        .map_err(|_| EnvelopeError::Tampered(id.to_string()))?;
    Ok(plaintext.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const KEK: [u8; KEK_LEN] = [7; KEK_LEN];

    #[test]
    fn a_sealed_secret_opens_with_its_key_and_no_other() {
        let c = seal("kek-1", &KEK, b"dek seed").expect("seal");
        assert_eq!(key_id_of(&c), Ok("kek-1"));
        assert_eq!(open(&c, &KEK).expect("open"), b"dek seed");
        assert_eq!(
            open(&c, &[8; KEK_LEN]),
            Err(EnvelopeError::Tampered("kek-1".into()))
        );
        assert_ne!(
            seal("kek-1", &KEK, b"dek seed").expect("seal"),
            c,
            "a fresh nonce each time"
        );
    }

    #[test]
    fn every_kind_of_bad_ciphertext_is_an_error_that_says_which() {
        let c = seal("kek-1", &KEK, b"dek seed").expect("seal");
        assert_eq!(open(&[], &KEK), Err(EnvelopeError::Truncated(0)));
        assert_eq!(open(&c[..1], &KEK), Err(EnvelopeError::Truncated(1)));
        assert_eq!(open(&c[..20], &KEK), Err(EnvelopeError::Truncated(20)));
        let mut other_format = c.clone();
        other_format[0] = 2;
        assert_eq!(
            open(&other_format, &KEK),
            Err(EnvelopeError::UnknownFormat(2))
        );
        // The id is authenticated: moving a ciphertext to another id fails.
        let mut moved = c.clone();
        moved[2 + 4] = b'2';
        assert_eq!(
            open(&moved, &KEK),
            Err(EnvelopeError::Tampered("kek-2".into()))
        );
        let mut flipped = c.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert_eq!(
            open(&flipped, &KEK),
            Err(EnvelopeError::Tampered("kek-1".into()))
        );
        let mut bad_id = c.clone();
        bad_id[2] = b'K';
        assert_eq!(open(&bad_id, &KEK), Err(EnvelopeError::BadKeyId));
        assert_eq!(seal("kek-1", &KEK, b""), Err(EnvelopeError::EmptyPlaintext));
        assert_eq!(seal("KEK", &KEK, b"x"), Err(EnvelopeError::BadKeyId));
    }

    proptest! {
        /// Any bytes: an error or, only for an authentic ciphertext, the plaintext.
        #[test]
        fn arbitrary_bytes_never_panic_nor_open(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            prop_assert!(open(&bytes, &KEK).is_err());
        }

        /// Any single-bit change of an authentic ciphertext is refused.
        #[test]
        fn any_flipped_bit_is_refused(plaintext in proptest::collection::vec(any::<u8>(), 1..64), bit in any::<usize>()) {
            let c = seal("kek-a", &KEK, &plaintext).expect("seal");
            prop_assert_eq!(open(&c, &KEK).expect("open"), plaintext);
            let mut changed = c.clone();
            let i = bit % (c.len() * 8);
            changed[i / 8] ^= 1 << (i % 8);
            prop_assert!(open(&changed, &KEK).is_err());
        }
    }
}
