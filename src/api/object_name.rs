//! Names of the objects certop makes, kept within Kubernetes' limits for
//! any name they derive from: the one home of the hashed-name mechanism.

/// The longest a Kubernetes object name (a DNS subdomain) may be.
pub const MAX_NAME: usize = 253;

/// The first `bytes` bytes of the SHA-256 of `s`, in lower-case hex: a
/// short, stable stand-in for a name too long to repeat.
pub fn digest_hex(s: &str, bytes: usize) -> String {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, s.as_bytes());
    d.as_ref()
        .iter()
        .take(bytes)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `<base><suffix>` when that fits `MAX_NAME`; otherwise `base` cut short,
/// then a digest of the whole `base` (so two long bases that share their
/// start still differ), then `suffix`. `base` is a DNS subdomain and the
/// result is one too (the cut never ends in `-` or `.`).
pub fn with_suffix(base: &str, suffix: &str) -> String {
    let whole = format!("{base}{suffix}");
    if whole.len() <= MAX_NAME {
        return whole;
    }
    let digest = digest_hex(base, 6);
    let room = MAX_NAME.saturating_sub(suffix.len() + digest.len() + 1);
    let cut = base
        .get(..room.min(base.len()))
        .unwrap_or_default()
        .trim_end_matches(['-', '.']);
    format!("{cut}-{digest}{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_suffix_fits_any_base() {
        assert_eq!(with_suffix("web-ca", "-r3"), "web-ca-r3");
        let long = format!("{}-ca", "a".repeat(248));
        let name = with_suffix(&long, "-r1");
        assert!(name.len() <= MAX_NAME, "{}", name.len());
        assert!(name.ends_with("-r1"));
        assert_ne!(name, with_suffix(&format!("{}-cb", "a".repeat(248)), "-r1"));
        assert_ne!(name, with_suffix(&long, "-r2"));
        // The cut lands after a dot or dash: never `.-` in a name.
        let dotted = format!("{}.{}", "a".repeat(235), "b".repeat(17));
        let name = with_suffix(&dotted, "-r10");
        assert!(!name.contains(".-") && !name.contains("--"), "{name}");
        assert!(name.len() <= MAX_NAME);
    }
}
