//! Digests for ledger entries written before certop recorded them (`f`):
//! without one, kube-apiserver's authorization webhook cannot refuse the
//! certificate once it is revoked. An entry of a ClusterCertificate whose
//! Secret still holds that certificate gets it from the Secret, once the
//! CA's signature on it is checked; the rest are counted in the CA's status
//! (`certificatesWithoutDigest`). Each pass looks up at most `PER_PASS`
//! Secrets, and a failed read or write leaves the entries for the next
//! pass, which finishes the job (a fill is idempotent).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use tracing::{info, warn};

use super::held::{Held, held_of, read_leaf};
use crate::core::ledger::{self, LedgerEntry};
use crate::operator::Context;
use crate::operator::store::ledger_store;
use crate::pki::CertificateInfo;

/// Secrets read per pass at most: a cluster upgraded with many certificates
/// is filled over a few passes, not in one burst of reads.
pub const PER_PASS: usize = 200;

/// An entry to fill, and the Secret that may hold its certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lookup {
    pub serial: String,
    pub namespace: String,
    pub secret: String,
}

/// The Secrets worth reading: one per unexpired entry without a digest
/// whose ClusterCertificate still exists and names that serial as the
/// certificate its Secret holds (a superseded certificate is in no Secret
/// any more; a CSR's never was), in a namespace certop manages. Pure.
pub fn lookups(
    entries: &[LedgerEntry],
    now: DateTime<Utc>,
    held: impl Fn(&str) -> Option<Held>,
) -> Vec<Lookup> {
    ledger::without_digest(entries, now)
        .filter_map(|e| {
            let h = held(e.certificate.as_deref()?)?;
            (h.serial.as_deref() == Some(e.serial.as_str())).then(|| Lookup {
                serial: e.serial.clone(),
                namespace: h.namespace,
                secret: h.secret,
            })
        })
        .collect()
}

/// What a pass filled, and whether entries it could fill are left (the
/// limit, or a failed read or write): the CA looks again soon.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Backfilled {
    pub filled: usize,
    pub more: bool,
}

/// Fills what it can of `entries` (the CA's ledger as loaded; the filled
/// digests are set in it too, so the status counts what is left). `cas`:
/// the CA certificates a Secret's certificate may be signed by.
pub async fn backfill(
    ctx: &Context,
    ca: &str,
    entries: &mut [LedgerEntry],
    cas: &[&CertificateInfo],
    now: DateTime<Utc>,
) -> Backfilled {
    let all = lookups(entries, now, |name: &str| held_of(ctx, ca, name));
    let mut result = Backfilled {
        filled: 0,
        more: all.len() > PER_PASS,
    };
    let mut by_shard: BTreeMap<usize, BTreeMap<String, String>> = BTreeMap::new();
    for lookup in all.into_iter().take(PER_PASS) {
        match read_digest(ctx, entries, &lookup, cas).await {
            Ok(Some(digest)) => {
                by_shard
                    .entry(ledger::shard_of(&lookup.serial))
                    .or_default()
                    .insert(lookup.serial, digest);
            }
            Ok(None) => {}
            Err(e) => {
                warn!(ca, serial = %lookup.serial, secret = %format!("{}/{}", lookup.namespace, lookup.secret), error = %e, "cannot read the Secret that holds a certificate recorded without its SHA-256; trying again next pass");
                result.more = true;
            }
        }
    }
    for (shard, digests) in by_shard {
        match ledger_store::fill_digests(ctx, ca, shard, &digests, now).await {
            Ok(filled) => {
                ledger::fill_digests(entries, &digests);
                result.filled += filled;
            }
            Err(e) => {
                warn!(ca, shard, error = %e, "cannot record SHA-256s in the ledger; trying again next pass");
                result.more = true;
            }
        }
    }
    if result.filled > 0 {
        info!(
            ca,
            filled = result.filled,
            "recorded the SHA-256 of certificates recorded without it"
        );
    }
    result
}

/// The digest the Secret of `lookup` gives its entry, if its certificate
/// is that one and the CA signed it; an error only for a failed read.
async fn read_digest(
    ctx: &Context,
    entries: &[LedgerEntry],
    lookup: &Lookup,
    cas: &[&CertificateInfo],
) -> Result<Option<String>, kube::Error> {
    let Some(leaf) = read_leaf(ctx, &lookup.namespace, &lookup.secret).await? else {
        return Ok(None);
    };
    let Some(entry) = entries.iter().find(|e| e.serial == lookup.serial) else {
        return Ok(None);
    };
    let signed = cas.iter().any(|ca| leaf.is_issued_by(ca));
    Ok(ledger::backfilled_digest(entry, &leaf, signed))
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn entry(serial: &str, certificate: Option<&str>, digest: Option<&str>) -> LedgerEntry {
        LedgerEntry {
            serial: serial.into(),
            issued_at: 0,
            not_after: 2_000_000_000,
            organizations: Vec::new(),
            dns_names: Vec::new(),
            ip_addresses: Vec::new(),
            uris: vec![],
            certificate: certificate.map(str::to_string),
            revoked: None,
            key: 0,
            fingerprint: digest.map(str::to_string),
        }
    }

    #[test]
    fn only_entries_without_a_digest_whose_secret_still_holds_them_are_looked_up() {
        let now = Utc
            .with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
            .single()
            .expect("t");
        let mut expired = entry("05", Some("web"), None);
        expired.not_after = now.timestamp() - 1;
        let entries = [
            entry("01", Some("web"), None),
            entry("02", Some("web"), Some("aa")),
            entry("03", Some("old"), None),
            entry("04", None, None),
            expired,
            entry("06", Some("gone"), None),
        ];
        let held = |name: &str| match name {
            "web" => Some(Held {
                namespace: "team".into(),
                secret: "web-tls".into(),
                serial: Some("01".into()),
                not_after: None,
            }),
            "old" => Some(Held {
                namespace: "team".into(),
                secret: "old-tls".into(),
                serial: Some("99".into()),
                not_after: None,
            }),
            _ => None,
        };
        assert_eq!(
            lookups(&entries, now, held),
            [Lookup {
                serial: "01".into(),
                namespace: "team".into(),
                secret: "web-tls".into(),
            }],
            "02 has a digest, 03 was superseded, 04 was a CSR's, 05 expired, 06's ClusterCertificate is gone"
        );
    }
}
