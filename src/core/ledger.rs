//! The ledger of what a CA issued: serial, names and notAfter of every live
//! certificate, and whether and why it was revoked. Rule revocations match
//! against it (including certificates a renewal already superseded), and
//! the CRL is built from its revoked entries. Pure: storage is the
//! operator's business (sharded ConfigMaps), matching and pruning are here.

use std::collections::BTreeSet;
use std::net::IpAddr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::pki::{CertificateInfo, RevocationReason, RevokedEntry, SerialNumber, from_unix};

/// Shards per CA. At about 270 bytes an entry (200, and 72 for the
/// certificate's SHA-256), 100k live certificates make about 420 KiB a
/// shard, under the API's 1 MiB object limit.
pub const SHARDS: usize = 64;

/// One issued certificate. Short field names: the ledger is stored as JSON
/// and must stay small.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerEntry {
    /// Serial, lower-case hex.
    #[serde(rename = "s")]
    pub serial: String,
    /// When it was issued, Unix seconds (notBefore + the backdate):
    /// rules apply to certificates issued before a time.
    #[serde(rename = "b")]
    pub issued_at: i64,
    /// notAfter, Unix seconds: the entry is dropped once it passes.
    #[serde(rename = "a")]
    pub not_after: i64,
    #[serde(rename = "o", default, skip_serializing_if = "Vec::is_empty")]
    pub organizations: Vec<String>,
    #[serde(rename = "d", default, skip_serializing_if = "Vec::is_empty")]
    pub dns_names: Vec<String>,
    #[serde(rename = "i", default, skip_serializing_if = "Vec::is_empty")]
    pub ip_addresses: Vec<String>,
    /// URI SANs: a pod certificate's SPIFFE ID, so a revocation by
    /// namespace or ServiceAccount finds it. Absent in entries written
    /// before certop recorded them.
    #[serde(rename = "u", default, skip_serializing_if = "Vec::is_empty")]
    pub uris: Vec<String>,
    /// The ClusterCertificate it was issued for, if any.
    #[serde(rename = "c", default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<String>,
    #[serde(rename = "r", default, skip_serializing_if = "Option::is_none")]
    pub revoked: Option<Revocation>,
    /// The index of the CA key that signed it (0, the CA's first key, is
    /// not written): each key has its own CRL.
    #[serde(rename = "k", default, skip_serializing_if = "is_first_key")]
    pub key: u32,
    /// SHA-256 of the certificate's DER, lower-case hex: the credential id
    /// kube-apiserver and kubelets report for it, so a revoked certificate
    /// can be refused (`core::authz`). Absent in entries written before
    /// certop recorded it.
    #[serde(rename = "f", default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
}

fn is_first_key(key: &u32) -> bool {
    *key == 0
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    /// Unix seconds.
    #[serde(rename = "t")]
    pub at: i64,
    #[serde(rename = "r")]
    pub reason: RevocationReason,
}

impl LedgerEntry {
    pub fn of(cert: &CertificateInfo, certificate: Option<&str>, key: u32) -> Self {
        LedgerEntry {
            serial: cert.serial.to_string(),
            issued_at: crate::pki::issued_at(cert).timestamp(),
            not_after: cert.not_after.timestamp(),
            organizations: cert.organizations.clone(),
            dns_names: cert.dns_names.clone(),
            ip_addresses: cert.ip_addresses.iter().map(IpAddr::to_string).collect(),
            uris: cert.uris.clone(),
            certificate: certificate.map(str::to_string),
            revoked: None,
            key,
            fingerprint: Some(cert.sha256_hex()),
        }
    }

    pub fn is_expired(&self, now: DateTime<Utc>) -> bool {
        self.not_after < now.timestamp()
    }
}

/// Which shard holds a serial: spread evenly by its last byte (serials are random).
pub fn shard_of(serial: &str) -> usize {
    let tail = serial.get(serial.len().saturating_sub(2)..).unwrap_or("0");
    usize::from_str_radix(tail, 16).unwrap_or(0) % SHARDS
}

/// What a revocation matches. Every list is an alternative: a certificate
/// matches when any one of them does, and it was issued before `issued_before`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RevocationRule {
    pub serials: BTreeSet<String>,
    /// Certificates the revocation names by content, checked as the CA's:
    /// recorded in the ledger if certop did not issue them (`adopt`), and
    /// matched whenever they were issued (they name one certificate each).
    pub certificates: Vec<LedgerEntry>,
    pub organizations: Vec<String>,
    /// Exact names, or with a leading `.` a suffix.
    pub dns_names: Vec<String>,
    pub ip_addresses: Vec<IpAddr>,
    /// Exact URIs, or with a trailing `/` a prefix (`uri_matches`).
    pub uris: Vec<String>,
    pub issued_before: DateTime<Utc>,
}

impl RevocationRule {
    pub fn matches(&self, e: &LedgerEntry) -> bool {
        if self.certificates.iter().any(|c| c.serial == e.serial) {
            return true;
        }
        // A serial names one certificate, so no time bounds it: the
        // default `issued_before` is the revocation's creation, in whole
        // seconds, and a certificate signed earlier in that second would
        // escape a revocation of its own serial.
        let serial = SerialNumber::from_hex(&e.serial)
            .map(|s| s.to_string())
            .unwrap_or_default();
        if self.serials.contains(&serial) {
            return true;
        }
        if e.issued_at >= self.issued_before.timestamp() {
            return false;
        }
        e.organizations
            .iter()
            .any(|o| self.organizations.contains(o))
            || e.dns_names.iter().any(|name| {
                self.dns_names
                    .iter()
                    .any(|pattern| dns_matches(pattern, name))
            })
            || e.ip_addresses
                .iter()
                .filter_map(|ip| ip.parse::<IpAddr>().ok())
                .any(|ip| self.ip_addresses.contains(&ip))
            || e.uris
                .iter()
                .any(|uri| self.uris.iter().any(|pattern| uri_matches(pattern, uri)))
    }

    /// Whether the rule matches certificates by what they name (not only
    /// by serial): then every shard of the CA may hold one, and is read.
    pub fn matches_by_content(&self) -> bool {
        !(self.organizations.is_empty()
            && self.dns_names.is_empty()
            && self.ip_addresses.is_empty()
            && self.uris.is_empty())
    }

    /// Normalizes serials as the ledger writes them (lower-case hex, no padding).
    pub fn with_serials<'a>(mut self, serials: impl IntoIterator<Item = &'a String>) -> Self {
        self.serials = serials
            .into_iter()
            .filter_map(|s| SerialNumber::from_hex(s))
            .map(|s| s.to_string())
            .collect();
        self
    }
}

/// `.example.com` matches every name under example.com (not example.com
/// itself); anything else matches itself, case-insensitively.
fn dns_matches(pattern: &str, name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    let pattern = pattern.to_ascii_lowercase();
    match pattern.strip_prefix('.') {
        Some(_) => name.ends_with(&pattern),
        None => name == pattern,
    }
}

/// A pattern ending in `/` matches every URI under it, so
/// `spiffe://td/ns/shop/` is a namespace's pods (and not `ns/shopping`);
/// anything else matches itself exactly (a SPIFFE ID's path is
/// case-sensitive), so `spiffe://td/ns/shop/sa/web` is one ServiceAccount.
/// Scheme and host are compared in any case (`case_normalized`).
fn uri_matches(pattern: &str, uri: &str) -> bool {
    let (pattern, uri) = (case_normalized(pattern), case_normalized(uri));
    if pattern.ends_with('/') {
        uri.starts_with(pattern.as_ref())
    } else {
        uri == pattern
    }
}

/// What is wrong with a `uris` pattern in SPIFFE form that no pod's ID
/// (`spiffe://<td>/ns/<ns>/sa/<sa>`) can match, so that a revocation
/// meant for a namespace or a ServiceAccount does not pass for done with
/// nothing revoked: a namespace without the final `/` (matched exactly),
/// or a ServiceAccount with one (a prefix nothing extends). Pure.
pub fn spiffe_pattern_mistake(pattern: &str) -> Option<String> {
    let normalized = case_normalized(pattern);
    let (_, path) = normalized.strip_prefix("spiffe://")?.split_once('/')?;
    let segments: Vec<&str> = path.split('/').collect();
    match segments.as_slice() {
        ["ns", ns] | ["ns", ns, "sa"] if !ns.is_empty() => Some(format!(
            "uris {pattern} matches only that exact URI, which no pod's SPIFFE ID is: write {pattern}/ to revoke the pods of namespace {ns}"
        )),
        ["ns", _, "sa", sa, ""] if !sa.is_empty() => Some(format!(
            "uris {pattern} ends in /, a prefix no pod's SPIFFE ID extends: write it without the final / to revoke the pods of ServiceAccount {sa}"
        )),
        _ => None,
    }
}

/// The URI with its scheme and authority in lower case, the rest as it is:
/// they are case-insensitive (RFC 3986 6.2.2.1), and Go's x509 parser
/// lowercases the scheme, so go-spiffe takes
/// `SPIFFE://cluster.local/ns/shop/sa/cart` for that ServiceAccount's ID;
/// compared as written, a namespace's rule would miss it.
fn case_normalized(uri: &str) -> std::borrow::Cow<'_, str> {
    let Some((scheme, rest)) = uri.split_once(':') else {
        return uri.into();
    };
    let authority = rest
        .strip_prefix("//")
        .map_or(0, |a| 2 + a.find(['/', '?', '#']).unwrap_or(a.len()));
    match uri.split_at_checked(scheme.len() + 1 + authority) {
        Some((head, tail)) if head.bytes().any(|b| b.is_ascii_uppercase()) => {
            format!("{}{tail}", head.to_ascii_lowercase()).into()
        }
        _ => uri.into(),
    }
}

/// Marks the live, not yet revoked entries that the rule matches; returns
/// them. Expired entries are left for pruning, not revoked.
pub fn revoke(
    entries: &mut [LedgerEntry],
    rule: &RevocationRule,
    reason: RevocationReason,
    now: DateTime<Utc>,
) -> Vec<LedgerEntry> {
    let mut revoked = Vec::new();
    for e in entries.iter_mut() {
        if e.revoked.is_none() && !e.is_expired(now) && rule.matches(e) {
            e.revoked = Some(Revocation {
                at: now.timestamp(),
                reason,
            });
            revoked.push(e.clone());
        }
    }
    revoked
}

/// Records in one shard's entries the rule's certificates that belong to
/// that shard and that it does not hold (issued offline by the CA, so that
/// its CRL lists them and kube-apiserver refuses them once revoked), and
/// fills the digest of an entry written before certop recorded digests.
/// Expired certificates are not recorded: there is nothing left to refuse.
/// Returns whether the entries changed.
pub fn adopt(
    entries: &mut Vec<LedgerEntry>,
    shard: usize,
    rule: &RevocationRule,
    now: DateTime<Utc>,
) -> bool {
    let mut changed = false;
    for c in rule
        .certificates
        .iter()
        .filter(|c| shard_of(&c.serial) == shard && !c.is_expired(now))
    {
        match entries.iter_mut().find(|e| e.serial == c.serial) {
            Some(held) if held.fingerprint.is_none() => {
                held.fingerprint.clone_from(&c.fingerprint);
                changed = true;
            }
            Some(_) => {}
            None => {
                entries.push(LedgerEntry {
                    revoked: None,
                    ..c.clone()
                });
                changed = true;
            }
        }
    }
    changed
}

/// Drops entries of certificates that expired: the ledger stays bounded by
/// what is alive, and so does the CRL.
pub fn prune(entries: &mut Vec<LedgerEntry>, now: DateTime<Utc>) -> usize {
    let before = entries.len();
    entries.retain(|e| !e.is_expired(now));
    before - entries.len()
}

/// How many certificates key `key` of a CA still answers for: unexpired,
/// unrevoked, and not superseded by a later certificate of the same
/// ClusterCertificate (a re-issue replaces its Secret's certificate).
/// Certificates signed for CSRs count until they expire. While this is
/// above zero a retiring key stays trusted.
pub fn live_of_key(entries: &[LedgerEntry], key: u32, now: DateTime<Utc>) -> usize {
    live_entries_of_key(entries, key, now).len()
}

/// The certificates `live_of_key` counts: those that keep a retiring key
/// trusted, so its CA can say which they are.
pub fn live_entries_of_key(
    entries: &[LedgerEntry],
    key: u32,
    now: DateTime<Utc>,
) -> Vec<&LedgerEntry> {
    // Newest by issuance, then by key (a re-issue in the same second as
    // its predecessor is told apart by the newer key that signed it).
    let mut newest: std::collections::HashMap<&str, (i64, u32)> = std::collections::HashMap::new();
    for e in entries {
        if let Some(c) = &e.certificate {
            let t = newest.entry(c.as_str()).or_insert((e.issued_at, e.key));
            *t = (*t).max((e.issued_at, e.key));
        }
    }
    entries
        .iter()
        .filter(|e| e.key == key && e.revoked.is_none() && !e.is_expired(now))
        .filter(|e| match &e.certificate {
            Some(c) => newest
                .get(c.as_str())
                .is_none_or(|t| *t <= (e.issued_at, e.key)),
            None => true,
        })
        .collect()
}

/// When the newest certificate that `key` signed for a certificate that
/// `previous` had signed before was issued: the last re-issue of a
/// rotation, if any.
pub fn last_reissue(entries: &[LedgerEntry], previous: u32, key: u32) -> Option<DateTime<Utc>> {
    let had_previous: std::collections::HashSet<&str> = entries
        .iter()
        .filter(|e| e.key == previous)
        .filter_map(|e| e.certificate.as_deref())
        .collect();
    entries
        .iter()
        .filter(|e| e.key == key)
        .filter(|e| {
            e.certificate
                .as_deref()
                .is_some_and(|c| had_previous.contains(c))
        })
        .map(|e| e.issued_at)
        .max()
        .and_then(|t| DateTime::<Utc>::from_timestamp(t, 0))
}

/// The SHA-256 an entry recorded before certop recorded digests gets from
/// the certificate a Secret holds: only an entry without one, only from
/// the certificate with its serial, and only from one the CA signed
/// (`signed_by_ca`; a Secret's content alone proves nothing, and a wrong
/// digest would make the webhook refuse another certificate while this
/// one works). Pure.
pub fn backfilled_digest(
    entry: &LedgerEntry,
    held: &CertificateInfo,
    signed_by_ca: bool,
) -> Option<String> {
    (entry.fingerprint.is_none() && signed_by_ca && held.serial.to_string() == entry.serial)
        .then(|| held.sha256_hex())
}

/// Gives each entry without a digest the one `digests` holds for its
/// serial; returns how many it gave. Pure.
pub fn fill_digests(
    entries: &mut [LedgerEntry],
    digests: &std::collections::BTreeMap<String, String>,
) -> usize {
    let mut filled = 0;
    for e in entries.iter_mut().filter(|e| e.fingerprint.is_none()) {
        if let Some(digest) = digests.get(&e.serial) {
            e.fingerprint = Some(digest.clone());
            filled += 1;
        }
    }
    filled
}

/// Unexpired entries without a digest: certificates kube-apiserver's
/// webhook cannot refuse once revoked (unless a revocation names their
/// digest). Pure.
pub fn without_digest(
    entries: &[LedgerEntry],
    now: DateTime<Utc>,
) -> impl Iterator<Item = &LedgerEntry> {
    entries
        .iter()
        .filter(move |e| e.fingerprint.is_none() && !e.is_expired(now))
}

/// The CRL entries of a ledger.
pub fn revoked_entries<'a>(
    entries: impl IntoIterator<Item = &'a LedgerEntry>,
) -> Vec<RevokedEntry> {
    entries
        .into_iter()
        .filter_map(|e| {
            let r = e.revoked.as_ref()?;
            Some(RevokedEntry {
                serial: SerialNumber::from_hex(&e.serial)?,
                revoked_at: from_unix(r.at),
                reason: r.reason,
                not_after: from_unix(e.not_after),
            })
        })
        .collect()
}

/// When the CRL must be re-signed: now if it is missing or something changed,
/// else `refresh_before` ahead of its nextUpdate.
pub fn crl_refresh_time(
    next_update: Option<DateTime<Utc>>,
    changed: bool,
    refresh_before: chrono::Duration,
    now: DateTime<Utc>,
) -> DateTime<Utc> {
    match next_update {
        Some(next) if !changed => next - refresh_before,
        _ => now,
    }
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, TimeZone};

    use super::*;

    fn t(h: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
            .single()
            .expect("date")
            + Duration::hours(h)
    }

    fn entry(
        serial: &str,
        issued_h: i64,
        dns: &[&str],
        orgs: &[&str],
        ips: &[&str],
    ) -> LedgerEntry {
        LedgerEntry {
            serial: serial.into(),
            issued_at: t(issued_h).timestamp(),
            not_after: t(issued_h + 100).timestamp(),
            organizations: orgs.iter().map(|s| s.to_string()).collect(),
            dns_names: dns.iter().map(|s| s.to_string()).collect(),
            ip_addresses: ips.iter().map(|s| s.to_string()).collect(),
            uris: vec![],
            certificate: None,
            revoked: None,
            key: 0,
            fingerprint: None,
        }
    }

    #[test]
    fn rules_match_a_pods_spiffe_id_by_namespace_prefix_or_exact_service_account() {
        let pod = |serial: &str, uri: &str| LedgerEntry {
            uris: vec![uri.to_string()],
            ..entry(serial, 0, &[], &[], &[])
        };
        let td = "spiffe://cluster.local";
        let namespace = RevocationRule {
            uris: vec![format!("{td}/ns/shop/")],
            issued_before: t(10),
            ..Default::default()
        };
        let service_account = RevocationRule {
            uris: vec![format!("{td}/ns/shop/sa/cart")],
            issued_before: t(10),
            ..Default::default()
        };
        let cases = [
            (
                "a pod of the namespace",
                format!("{td}/ns/shop/sa/cart"),
                true,
                true,
            ),
            (
                "another ServiceAccount of it",
                format!("{td}/ns/shop/sa/web"),
                true,
                false,
            ),
            (
                "a namespace sharing the prefix",
                format!("{td}/ns/shopping/sa/cart"),
                false,
                false,
            ),
            (
                "a ServiceAccount sharing the prefix",
                format!("{td}/ns/shop/sa/cart2"),
                true,
                false,
            ),
            (
                "the same path in another trust domain",
                "spiffe://other/ns/shop/sa/cart".to_string(),
                false,
                false,
            ),
            (
                "a SPIFFE ID's path is case-sensitive",
                format!("{td}/ns/shop/sa/Cart"),
                true,
                false,
            ),
        ];
        for (case, uri, by_namespace, by_service_account) in cases {
            let e = pod("ab", &uri);
            assert_eq!(namespace.matches(&e), by_namespace, "{case}: by namespace");
            assert_eq!(
                service_account.matches(&e),
                by_service_account,
                "{case}: by ServiceAccount"
            );
        }
        // A URI rule reaches every shard, not only those of serials.
        assert!(namespace.matches_by_content() && service_account.matches_by_content());
        let by_serial = RevocationRule::default().with_serials([&"ab".to_string()]);
        assert!(!by_serial.matches_by_content());
        // An entry without URIs (a ClusterCertificate's, or one recorded
        // before certop recorded URIs) matches no URI rule.
        assert!(!namespace.matches(&entry("ac", 0, &["shop.svc"], &[], &[])));
        // Issued after the rule: not matched.
        assert!(!namespace.matches(&LedgerEntry {
            issued_at: t(20).timestamp(),
            ..pod("ad", &format!("{td}/ns/shop/sa/cart"))
        }));
    }

    /// A URI's scheme and host are case-insensitive (RFC 3986 6.2.2.1): Go's
    /// x509 parser lowercases the scheme, so go-spiffe reads
    /// `SPIFFE://cluster.local/ns/shop/sa/cart` (a ClusterCertificate's or
    /// a CSR's URI) as that ServiceAccount, and a rule written
    /// `SPIFFE://Cluster.Local/ns/shop/` means namespace shop. The path
    /// stays case-sensitive (a SPIFFE ID's is).
    #[test]
    fn a_uri_rule_ignores_the_case_of_scheme_and_host_not_of_the_path() {
        let rule = |pattern: &str| RevocationRule {
            uris: vec![pattern.to_string()],
            issued_before: t(10),
            ..Default::default()
        };
        let pod = |uri: &str| LedgerEntry {
            uris: vec![uri.to_string()],
            ..entry("ab", 0, &[], &[], &[])
        };
        let cases = [
            // (case, pattern, certificate's URI, matched)
            (
                "an upper-case scheme in the certificate, by namespace",
                "spiffe://cluster.local/ns/shop/",
                "SPIFFE://cluster.local/ns/shop/sa/cart",
                true,
            ),
            (
                "an upper-case scheme in the certificate, exactly",
                "spiffe://cluster.local/ns/shop/sa/cart",
                "Spiffe://cluster.local/ns/shop/sa/cart",
                true,
            ),
            (
                "an upper-case host in the certificate",
                "spiffe://cluster.local/ns/shop/",
                "spiffe://Cluster.LOCAL/ns/shop/sa/cart",
                true,
            ),
            (
                "a rule written in upper case",
                "SPIFFE://Cluster.Local/ns/shop/",
                "spiffe://cluster.local/ns/shop/sa/cart",
                true,
            ),
            (
                "a rule that is a scheme only",
                "SPIFFE:/",
                "spiffe://cluster.local/ns/shop/sa/cart",
                true,
            ),
            (
                "the path is case-sensitive",
                "spiffe://cluster.local/ns/shop/",
                "spiffe://cluster.local/ns/Shop/sa/cart",
                false,
            ),
            (
                "the path is case-sensitive, exactly",
                "spiffe://cluster.local/ns/shop/sa/cart",
                "spiffe://cluster.local/ns/shop/sa/Cart",
                false,
            ),
            (
                "a host that only shares a prefix",
                "spiffe://cluster.local/",
                "spiffe://cluster.localx/ns/shop/sa/cart",
                false,
            ),
            (
                "no authority: the rest is path",
                "urn:Example:a",
                "URN:example:a",
                false,
            ),
            (
                "no authority, the scheme's case ignored",
                "urn:example:a",
                "URN:example:a",
                true,
            ),
        ];
        for (case, pattern, uri, matched) in cases {
            assert_eq!(rule(pattern).matches(&pod(uri)), matched, "{case}");
        }
    }

    #[test]
    fn a_spiffe_pattern_no_pod_can_match_is_named_with_its_fix() {
        let cases = [
            (
                "spiffe://cluster.local/ns/shop",
                Some("write spiffe://cluster.local/ns/shop/ to revoke the pods of namespace shop"),
            ),
            (
                "SPIFFE://cluster.local/ns/shop/sa",
                Some(
                    "write SPIFFE://cluster.local/ns/shop/sa/ to revoke the pods of namespace shop",
                ),
            ),
            (
                "spiffe://cluster.local/ns/shop/sa/cart/",
                Some("without the final / to revoke the pods of ServiceAccount cart"),
            ),
            ("spiffe://cluster.local/ns/shop/", None),
            ("spiffe://cluster.local/ns/shop/sa/", None),
            ("spiffe://cluster.local/ns/shop/sa/cart", None),
            ("spiffe://cluster.local/", None),
            ("spiffe://cluster.local/team/shop", None),
            ("https://example.com/ns/shop", None),
        ];
        for (pattern, want) in cases {
            let got = spiffe_pattern_mistake(pattern);
            match want {
                Some(fix) => assert!(
                    got.as_deref().is_some_and(|m| m.contains(fix)),
                    "{pattern}: {got:?}"
                ),
                None => assert_eq!(got, None, "{pattern}"),
            }
        }
    }

    #[test]
    fn an_entry_keeps_its_uris_and_one_written_before_them_still_reads() {
        let mut e = entry("ab", 0, &[], &[], &[]);
        e.uris = vec!["spiffe://cluster.local/ns/shop/sa/cart".into()];
        let json = serde_json::to_string(&e).expect("json");
        assert!(
            json.contains(r#""u":["spiffe://cluster.local/ns/shop/sa/cart"]"#),
            "{json}"
        );
        assert_eq!(serde_json::from_str::<LedgerEntry>(&json).expect("back"), e);
        let old: LedgerEntry =
            serde_json::from_str(r#"{"s":"ab","b":0,"a":1,"d":["x.example"]}"#).expect("old entry");
        assert!(old.uris.is_empty());
        assert!(
            !serde_json::to_string(&old)
                .expect("json")
                .contains(r#""u""#)
        );
    }

    #[test]
    fn rules_match_by_serial_org_dns_suffix_and_ip_issued_before_a_time() {
        let rule = RevocationRule {
            organizations: vec!["system:masters".into()],
            dns_names: vec![".corp.example".into(), "exact.example".into()],
            ip_addresses: vec!["10.0.0.7".parse().expect("ip")],
            issued_before: t(10),
            ..Default::default()
        }
        .with_serials([&"00:AB".to_string()]);
        let cases = [
            (entry("ab", 0, &[], &[], &[]), true, "serial, normalized"),
            (
                entry("ac", 0, &[], &["system:masters"], &[]),
                true,
                "organization",
            ),
            (
                entry("ad", 0, &["api.corp.example"], &[], &[]),
                true,
                "DNS suffix",
            ),
            (
                entry("ae", 0, &["a.b.corp.example"], &[], &[]),
                true,
                "deep DNS suffix",
            ),
            (
                entry("af", 0, &["corp.example"], &[], &[]),
                false,
                "a suffix does not match the bare domain",
            ),
            (
                entry("b0", 0, &["notcorp.example"], &[], &[]),
                false,
                "a suffix is label-aligned",
            ),
            (
                entry("b1", 0, &["EXACT.example"], &[], &[]),
                true,
                "exact name, any case",
            ),
            (
                entry("b2", 0, &["sub.exact.example"], &[], &[]),
                false,
                "exact is exact",
            ),
            (entry("b3", 0, &[], &[], &["10.0.0.7"]), true, "IP"),
            (entry("b4", 0, &[], &[], &["10.0.0.8"]), false, "other IP"),
            (
                entry("b5", 20, &["api.corp.example"], &[], &[]),
                false,
                "issued after the rule",
            ),
            (
                entry("b6", 0, &["other.example"], &["team"], &[]),
                false,
                "nothing matches",
            ),
            (
                entry("ab", 10, &[], &[], &[]),
                true,
                "its serial, signed in the second the rule was made",
            ),
        ];
        for (e, expected, name) in cases {
            assert_eq!(rule.matches(&e), expected, "{name}");
        }
    }

    #[test]
    fn revoke_marks_live_matches_once_and_skips_expired_ones() {
        let mut entries = vec![
            entry("01", 0, &["a.corp.example"], &[], &[]),
            entry("02", 1, &["b.corp.example"], &[], &[]),
            entry("03", -200, &["old.corp.example"], &[], &[]),
            entry("04", 2, &["c.other.example"], &[], &[]),
        ];
        let rule = RevocationRule {
            dns_names: vec![".corp.example".into()],
            issued_before: t(5),
            ..Default::default()
        };
        let first = revoke(&mut entries, &rule, RevocationReason::KeyCompromise, t(6));
        assert_eq!(
            first.iter().map(|e| e.serial.as_str()).collect::<Vec<_>>(),
            vec!["01", "02"]
        );
        assert!(
            revoke(&mut entries, &rule, RevocationReason::KeyCompromise, t(7)).is_empty(),
            "idempotent"
        );
        let crl = revoked_entries(&entries);
        assert_eq!(crl.len(), 2);
        assert_eq!(crl[0].reason, RevocationReason::KeyCompromise);
        assert_eq!(crl[0].revoked_at, t(6));
        assert_eq!(prune(&mut entries, t(6)), 1, "the expired entry goes");
        assert_eq!(entries.len(), 3);
    }

    #[test]
    fn shards_spread_serials_and_stay_in_range() {
        let mut used = BTreeSet::new();
        for _ in 0..2000 {
            let s = SerialNumber::random().expect("rng").to_string();
            let shard = shard_of(&s);
            assert!(shard < SHARDS);
            used.insert(shard);
        }
        assert_eq!(used.len(), SHARDS);
        assert_eq!(shard_of(""), 0);
    }

    #[test]
    fn a_key_answers_for_what_it_signed_until_replaced_revoked_or_expired() {
        let now = t(10);
        let mut old = entry("01", 1, &[], &[], &[]);
        old.certificate = Some("web".into());
        let mut replaced = old.clone();
        replaced.serial = "02".into();
        replaced.key = 1;
        let kubelet = entry("03", 1, &[], &[], &[]);
        let mut revoked = entry("04", 1, &[], &[], &[]);
        revoked.revoked = Some(Revocation {
            at: t(2).timestamp(),
            reason: RevocationReason::KeyCompromise,
        });
        let mut expired = entry("05", 1, &[], &[], &[]);
        expired.not_after = t(3).timestamp();
        let all = vec![old.clone(), kubelet.clone(), revoked, expired];
        assert_eq!(live_of_key(&all, 0, now), 2, "web's and the kubelet's");
        let mut all = all;
        all.push(replaced);
        assert_eq!(live_of_key(&all, 0, now), 1, "web was re-issued by key 1");
        assert_eq!(live_of_key(&all, 1, now), 1);
        assert_eq!(live_of_key(&all, 0, t(200)), 0, "all expired");
        // The last re-issue is the newest key-1 certificate of a name key 0
        // had signed; a certificate new under key 1 is not a re-issue.
        let mut fresh = entry("06", 9, &[], &[], &[]);
        fresh.certificate = Some("new".into());
        fresh.key = 1;
        all.push(fresh);
        assert_eq!(last_reissue(&all, 0, 1), Some(t(1)));
        assert_eq!(last_reissue(&all, 1, 2), None);
    }

    #[test]
    fn an_entry_stays_small() {
        let e = LedgerEntry {
            serial: "4a".repeat(16),
            issued_at: 1_800_000_000,
            not_after: 1_900_000_000,
            organizations: vec!["system:nodes".into()],
            dns_names: vec!["node-123.cluster.example.com".into()],
            ip_addresses: vec!["10.1.2.3".into()],
            uris: vec![],
            certificate: Some("kubelet-serving-node-123".into()),
            revoked: Some(Revocation {
                at: 1_850_000_000,
                reason: RevocationReason::KeyCompromise,
            }),
            key: 7,
            fingerprint: None,
        };
        let json = serde_json::to_string(&e).expect("json");
        assert!(json.len() < 250, "{} bytes: {json}", json.len());
        assert!(
            json.len() * 100_000 / SHARDS < 900 * 1024,
            "100k entries must fit the shards"
        );
    }

    #[test]
    fn a_digest_is_filled_only_into_an_entry_without_one_from_its_own_certificate() {
        let ca =
            crate::pki::Authority::create(&crate::pki::CaRequest::new("ca"), t(0)).expect("CA");
        let held = ca.certificate();
        let mut own = entry("00", 0, &[], &[], &[]);
        own.serial = held.serial.to_string();
        let mut recorded = own.clone();
        recorded.fingerprint = Some("aa".repeat(32));
        let other = entry("0bad", 0, &[], &[], &[]);
        let cases = [
            (
                &own,
                true,
                Some(held.sha256_hex()),
                "its serial, signed by the CA",
            ),
            (&own, false, None, "not signed by the CA: proves nothing"),
            (&recorded, true, None, "a recorded digest is never replaced"),
            (&other, true, None, "another serial"),
        ];
        for (e, signed, expected, case) in cases {
            assert_eq!(backfilled_digest(e, held, signed), expected, "{case}");
        }
        let mut entries = vec![own.clone(), recorded.clone(), other];
        let digests = std::collections::BTreeMap::from([(own.serial.clone(), "11".repeat(32))]);
        assert_eq!(fill_digests(&mut entries, &digests), 1);
        assert_eq!(entries[0].fingerprint, Some("11".repeat(32)));
        assert_eq!(entries[1], recorded, "a recorded digest stays");
        assert_eq!(
            without_digest(&entries, t(0)).count(),
            1,
            "the other serial is left, and counted"
        );
        assert_eq!(
            without_digest(&entries, t(200)).count(),
            0,
            "expired ones are not"
        );
    }

    #[test]
    fn the_crl_is_resigned_on_change_or_ahead_of_next_update() {
        let refresh = Duration::hours(8);
        assert_eq!(crl_refresh_time(None, false, refresh, t(0)), t(0));
        assert_eq!(crl_refresh_time(Some(t(24)), true, refresh, t(0)), t(0));
        assert_eq!(crl_refresh_time(Some(t(24)), false, refresh, t(0)), t(16));
    }

    #[test]
    fn a_named_certificate_is_recorded_once_in_its_shard_and_revoked_whenever_issued() {
        let named = |serial: &str, issued_h: i64| LedgerEntry {
            fingerprint: Some(format!("{serial}-digest")),
            ..entry(serial, issued_h, &[], &[], &[])
        };
        let rule = RevocationRule {
            certificates: vec![
                named("0100", 50),   // shard 0, absent: recorded
                named("0200", 0),    // shard 0, held without a digest: filled
                named("0300", 0),    // shard 0, held with a digest: kept
                named("0400", -200), // shard 0, expired: nothing to refuse
                named("0401", 0),    // shard 1: another shard's
            ],
            issued_before: t(10),
            ..Default::default()
        };
        let held_digest = LedgerEntry {
            fingerprint: Some("kept".into()),
            ..entry("0300", 0, &[], &[], &[])
        };
        let mut entries = vec![entry("0200", 0, &[], &[], &[]), held_digest];
        assert!(adopt(&mut entries, 0, &rule, t(20)));
        assert_eq!(
            entries
                .iter()
                .map(|e| (e.serial.as_str(), e.fingerprint.as_deref()))
                .collect::<Vec<_>>(),
            [
                ("0200", Some("0200-digest")),
                ("0300", Some("kept")),
                ("0100", Some("0100-digest")),
            ]
        );
        assert!(!adopt(&mut entries, 0, &rule, t(20)), "once");
        // Issued after `issued_before` (a certificate without certop's
        // backdate), and still revoked: it names one certificate.
        let revoked = revoke(&mut entries, &rule, RevocationReason::KeyCompromise, t(20));
        assert_eq!(
            revoked
                .iter()
                .map(|e| e.serial.as_str())
                .collect::<Vec<_>>(),
            ["0200", "0300", "0100"]
        );
    }
}
