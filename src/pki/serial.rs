use std::fmt;

use aws_lc_rs::{digest, rand::SecureRandom};

use super::PkiError;

/// A certificate serial number: 16 random bytes, positive and without a
/// leading zero, so its DER encoding is always exactly 16 octets (RFC 5280
/// allows up to 20; CA/Browser rules want at least 64 random bits).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SerialNumber(Vec<u8>);

impl SerialNumber {
    pub fn random() -> Result<Self, PkiError> {
        let mut bytes = [0u8; 16];
        aws_lc_rs::rand::SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| PkiError::RandomUnavailable)?;
        bytes[0] = (bytes[0] & 0x7f) | 0x40;
        Ok(SerialNumber(bytes.to_vec()))
    }

    /// A serial derived from `seed` (SHA-256, cut to 16 bytes, shaped as
    /// `random`'s): the same seed always gives the same serial. For a
    /// request that must never get two certificates (a PodCertificateRequest
    /// by its UID and the signing key); the seed is the API server's random
    /// UID, so the serial is as unpredictable as a random one to requesters.
    pub fn derived(seed: &[u8]) -> Self {
        let d = digest::digest(&digest::SHA256, seed);
        let mut bytes = d.as_ref()[..16].to_vec();
        bytes[0] = (bytes[0] & 0x7f) | 0x40;
        SerialNumber(bytes)
    }

    /// From the big-endian bytes of a parsed certificate, without sign padding.
    pub fn from_bytes(bytes: &[u8]) -> Self {
        let trimmed = match bytes.iter().position(|b| *b != 0) {
            Some(i) => &bytes[i..],
            None => &bytes[bytes.len().saturating_sub(1)..],
        };
        SerialNumber(trimmed.to_vec())
    }

    /// Parses lower- or upper-case hex, with or without colons.
    pub fn from_hex(s: &str) -> Option<Self> {
        let digits: String = s.chars().filter(|c| *c != ':').collect();
        if digits.is_empty() || digits.len() > 40 {
            return None;
        }
        let padded = if digits.len() % 2 == 1 {
            format!("0{digits}")
        } else {
            digits
        };
        let bytes = (0..padded.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&padded[i..i + 2], 16).ok())
            .collect::<Option<Vec<u8>>>()?;
        Some(SerialNumber::from_bytes(&bytes))
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    pub(crate) fn to_rcgen(&self) -> rcgen::SerialNumber {
        rcgen::SerialNumber::from_slice(&self.0)
    }
}

/// Lower-case hex without separators, as `openssl x509 -serial` prints it.
impl fmt::Display for SerialNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in &self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for SerialNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SerialNumber({self})")
    }
}

/// SHA-256 fingerprint of a DER certificate, upper-case colon-separated hex
/// as `openssl x509 -fingerprint -sha256` prints it.
pub fn fingerprint(der: &[u8]) -> String {
    let d = digest::digest(&digest::SHA256, der);
    d.as_ref()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_serials_are_positive_sixteen_bytes_and_distinct() {
        let a = SerialNumber::random().expect("rng");
        let b = SerialNumber::random().expect("rng");
        assert_eq!(a.as_bytes().len(), 16);
        assert!(a.as_bytes()[0] & 0x80 == 0 && a.as_bytes()[0] != 0);
        assert_ne!(a, b);
    }

    #[test]
    fn hex_round_trips_and_ignores_padding_and_colons() {
        let s = SerialNumber::from_hex("00:0A:bc").expect("valid hex");
        assert_eq!(s.to_string(), "0abc");
        assert_eq!(SerialNumber::from_hex(&s.to_string()), Some(s));
        assert_eq!(SerialNumber::from_hex("xyz"), None);
        assert_eq!(SerialNumber::from_hex(""), None);
    }
}
