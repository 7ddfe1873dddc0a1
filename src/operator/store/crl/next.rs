//! What the next CRL of a key holds, and whether a revocation needs one:
//! decided from what certop observed (the ledger, the revocations'
//! records, the CRLs it verified, every number published), with the
//! clock passed in. Pure: reading and writing are `crl::publish`'s.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::PublishedCrl;
use crate::pki::{RevokedEntry, parse_crl};

/// What the next CRL of a key is made from.
pub struct Sources<'a> {
    /// The ledger's revoked entries of the certificates the key signed.
    pub ledger: Vec<RevokedEntry>,
    /// The entries CertificateRevocations recorded in their status.
    pub recorded: Vec<RevokedEntry>,
    /// Every CRL of the key certop verified: the published one, its copy,
    /// the one this replica holds.
    pub previous: &'a [PublishedCrl],
    /// Every number published for the key that certop saw: the published
    /// ConfigMap's, the copy's, the CA status's, this replica's.
    pub numbers: &'a [Option<u64>],
    /// The key's own notAfter: how long an entry of unknown notAfter stays.
    pub ca_not_after: DateTime<Utc>,
    /// The ledger shards of the CA that cannot be read.
    pub unreadable_shards: &'a [String],
    /// The names of the published ConfigMap and of certop's copy, for the
    /// message of an incomplete CRL.
    pub published: &'a str,
    pub copy: &'a str,
}

/// The next CRL of a key, to be signed.
#[derive(Debug, PartialEq)]
pub struct NextCrl {
    pub number: u64,
    pub this_update: DateTime<Utc>,
    pub next_update: DateTime<Utc>,
    pub entries: Vec<RevokedEntry>,
    /// Why certop cannot prove it complete, if it cannot.
    pub incomplete: Option<String>,
}

/// The CRL number cannot grow: certop never lets it go down.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("the CRL number is at its maximum ({highest})")]
pub struct NumberExhausted {
    pub highest: u64,
}

/// The highest CRL number certop signs: the CA's `status.crlNumber` and a
/// revocation's `crlPublished` are int64, and it is far inside RFC 5280's
/// 20 octets (§5.2.3).
pub const MAX_NUMBER: u64 = i64::MAX as u64;

/// The number of the next CRL of a key: one above the highest number
/// certop saw, and at least the issuing clock in microseconds since the
/// Unix epoch. The first term keeps it increasing whatever the clock says
/// (a leader whose clock is behind the last one's). The second keeps it
/// above every number published before, even when every stored record of
/// them is gone or older (etcd restored from a snapshot, the operator's
/// namespace restored from a backup): a number signed at time t is at most
/// t's microseconds (two CRLs of a key are never signed within one
/// microsecond: signing and storing each takes milliseconds), so any time
/// after t gives a higher one, unless the clock went back by more than the
/// snapshot's age. The clock term is about 1.8e15 today and reaches
/// int64's maximum in the year 294,247. Pure.
pub fn next_number(numbers: &[Option<u64>], now: DateTime<Utc>) -> Result<u64, NumberExhausted> {
    let highest = numbers.iter().flatten().max().copied().unwrap_or(0);
    let clock = u64::try_from(now.timestamp_micros()).unwrap_or(0);
    highest
        .checked_add(1)
        .map(|above| above.max(clock))
        .filter(|n| *n <= MAX_NUMBER)
        .ok_or(NumberExhausted { highest })
}

/// The next CRL: numbered by `next_number` (so it only increases, across
/// restarts, leader changes and a restore of older state), valid from
/// `now` (in whole seconds) for `validity`, listing `merge_entries` of
/// the sources.
pub fn next_crl(
    sources: Sources,
    validity: chrono::Duration,
    now: DateTime<Utc>,
) -> Result<NextCrl, NumberExhausted> {
    let number = next_number(sources.numbers, now)?;
    let this_update = crate::pki::whole_seconds(now);
    Ok(NextCrl {
        number,
        this_update,
        next_update: this_update + validity,
        incomplete: incompleteness(
            sources.unreadable_shards,
            sources.previous,
            sources.published,
            sources.copy,
        ),
        entries: merge_entries(
            sources.ledger,
            sources.recorded,
            sources.previous,
            sources.ca_not_after,
        ),
    })
}

/// Whether a key's CRL must be signed again for a revocation: the CRL at
/// hand (`current`, none when this replica holds none) does not list every
/// certificate of the key the revocation covers, or the revocation marked
/// one of them just now (its time and reason are new).
pub fn must_resign<'a>(
    current: Option<&PublishedCrl>,
    mut covered: impl Iterator<Item = &'a str>,
    newly_marked: bool,
) -> bool {
    newly_marked || !current.is_some_and(|crl| covered.all(|serial| crl.serials.contains(serial)))
}

/// The entries the next CRL of a key lists: every revoked entry of the
/// ledger, every one a CertificateRevocation recorded, and every one a CRL
/// certop verified (`previous`) listed, once each; the first source's time
/// and reason win, and the latest notAfter any source gives. An entry
/// only a previous CRL knows stays until the CA's own notAfter
/// (`ca_not_after`): the notAfter map stored beside a CRL is not signed,
/// so it may raise a date, never lower one; an entry may leave a CRL only
/// after its certificate expired (RFC 5280 §3.3), so one whose notAfter is
/// not known from a signed or recorded source stays rather than goes. Entries past their
/// notAfter are left to `build_crl`, which omits them. Pure.
pub fn merge_entries(
    ledger: Vec<RevokedEntry>,
    recorded: Vec<RevokedEntry>,
    previous: &[PublishedCrl],
    ca_not_after: DateTime<Utc>,
) -> Vec<RevokedEntry> {
    // The latest notAfter any source gives an entry wins: one source
    // edited (a ledger shard, a revocation's record) cannot date an entry
    // out of the CRL while another still carries it.
    let mut merged: BTreeMap<String, RevokedEntry> = BTreeMap::new();
    for e in ledger.into_iter().chain(recorded) {
        merged
            .entry(e.serial.to_string())
            .and_modify(|m| m.not_after = m.not_after.max(e.not_after))
            .or_insert(e);
    }
    for crl in previous {
        let Ok(parsed) = parse_crl(&crl.der, None) else {
            continue;
        };
        for (serial, revoked_at, reason) in parsed.entries {
            let key = serial.to_string();
            let stored = previous
                .iter()
                .filter_map(|p| p.not_after.get(&key))
                .max()
                .map(|t| crate::pki::from_unix(*t));
            match merged.get_mut(&key) {
                Some(m) => {
                    if let Some(t) = stored {
                        m.not_after = m.not_after.max(t);
                    }
                }
                // Known only to earlier CRLs: the map beside them is not
                // signed, so it may keep an entry longer, never date it
                // out; the entry stays until the CA's own notAfter.
                None => {
                    merged.insert(
                        key,
                        RevokedEntry {
                            serial,
                            revoked_at,
                            reason,
                            not_after: stored.map_or(ca_not_after, |t| t.max(ca_not_after)),
                        },
                    );
                }
            }
        }
    }
    merged.into_values().collect()
}

/// Why certop cannot prove the CRL it signs now lists every revoked
/// certificate of the key, if it cannot: a ledger shard of the CA is
/// unreadable (what it records is unknown) and no CRL certop verified,
/// itself complete, is at hand to carry the entries the shard held. None
/// when every shard is readable (the ledger is whole) or such a CRL is
/// there. Pure.
pub fn incompleteness(
    unreadable_shards: &[String],
    previous: &[PublishedCrl],
    published: &str,
    copy: &str,
) -> Option<String> {
    if unreadable_shards.is_empty() || previous.iter().any(|p| p.incomplete.is_none()) {
        return None;
    }
    let shards = unreadable_shards.join(", ");
    Some(format!(
        "ledger shards {shards} cannot be parsed and no CRL certop verified is left to carry the revoked certificates they record (ConfigMaps {published} and {copy} are missing or fail verification), so the CRL may lack some: it lists what the readable shards, the CertificateRevocations and any earlier CRL record. Restore the shards (or {copy}) from a backup; to give their entries up, delete the shards and create CertificateRevocations again for what must stay revoked"
    ))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use chrono::Duration;

    use super::*;
    use crate::pki::{Authority, CaRequest, CrlRequest, RevocationReason, SerialNumber, build_crl};

    fn entry(serial: &str, revoked_at: DateTime<Utc>, not_after: DateTime<Utc>) -> RevokedEntry {
        RevokedEntry {
            serial: SerialNumber::from_hex(serial).expect("hex"),
            revoked_at,
            reason: RevocationReason::KeyCompromise,
            not_after,
        }
    }

    /// A CRL `ca` signed listing `entries`, as verified and cached.
    fn verified(
        ca: &Authority,
        entries: &[RevokedEntry],
        not_after: &[(&str, DateTime<Utc>)],
        now: DateTime<Utc>,
    ) -> PublishedCrl {
        let signed = build_crl(
            ca,
            &CrlRequest {
                number: 7,
                this_update: now,
                next_update: now + Duration::hours(1),
                entries,
            },
        )
        .expect("CRL");
        PublishedCrl {
            der: signed.der,
            pem: signed.pem,
            number: 7,
            this_update: now,
            next_update: now + Duration::hours(1),
            entries: signed.entry_count,
            stored: true,
            serials: entries.iter().map(|e| e.serial.to_string()).collect(),
            not_after: not_after
                .iter()
                .map(|(s, t)| (s.to_string(), t.timestamp()))
                .collect(),
            incomplete: None,
        }
    }

    #[test]
    fn a_crl_lists_every_source_once_and_an_entry_leaves_only_after_its_not_after() {
        let now = crate::pki::whole_seconds(Utc::now());
        let ca =
            Authority::create(&CaRequest::new("merge CA"), now - Duration::days(1)).expect("CA");
        let ca_end = ca.certificate().not_after;
        let later = now + Duration::days(10);
        let earlier = now - Duration::hours(2);
        // Listed by the last verified CRL: a (also in the ledger), c (its
        // certificate expired an hour ago, says the unsigned map beside the
        // CRL: not believed), d (notAfter not stored), e (stored as
        // expiring in 10 days: still not below the CA's end).
        let previous = verified(
            &ca,
            &[
                entry("0a", earlier, later),
                entry("0c", earlier, later),
                entry("0d", earlier, later),
                entry("0e", earlier, later),
                entry("0f", earlier, later),
            ],
            &[("0c", now - Duration::hours(1)), ("0e", later)],
            earlier,
        );
        // f's certificate expired an hour ago, as the ledger records.
        let merged = merge_entries(
            vec![
                entry("0a", now, later),
                entry("0f", earlier, now - Duration::hours(1)),
            ],
            vec![entry("0b", now, later), entry("0a", earlier, later)],
            &[previous],
            ca_end,
        );
        let by_serial: BTreeMap<String, &RevokedEntry> =
            merged.iter().map(|e| (e.serial.to_string(), e)).collect();
        assert_eq!(
            by_serial.keys().map(String::as_str).collect::<Vec<_>>(),
            ["0a", "0b", "0c", "0d", "0e", "0f"],
            "every source, once each"
        );
        assert_eq!(by_serial["0a"].revoked_at, now, "the ledger's record wins");
        assert_eq!(
            by_serial["0c"].not_after, ca_end,
            "an unsigned map never dates an entry out"
        );
        assert_eq!(
            by_serial["0d"].not_after, ca_end,
            "unknown: kept to the CA's end"
        );
        assert_eq!(by_serial["0e"].not_after, ca_end);
        let signed = build_crl(
            &ca,
            &CrlRequest {
                number: 8,
                this_update: now,
                next_update: now + Duration::hours(1),
                entries: &merged,
            },
        )
        .expect("CRL");
        let listed: BTreeSet<String> = parse_crl(&signed.der, Some(ca.certificate()))
            .expect("signed")
            .entries
            .iter()
            .map(|(s, _, _)| s.to_string())
            .collect();
        assert_eq!(
            listed.into_iter().collect::<Vec<_>>(),
            ["0a", "0b", "0c", "0d", "0e"],
            "only the certificate the ledger says expired left; nothing on the unsigned map's word"
        );
    }

    #[test]
    fn a_crl_is_provably_complete_with_a_whole_ledger_or_a_complete_verified_crl() {
        let now = crate::pki::whole_seconds(Utc::now());
        let ca = Authority::create(&CaRequest::new("complete CA"), now).expect("CA");
        let complete = verified(&ca, &[], &[], now);
        let incomplete = PublishedCrl {
            incomplete: Some("earlier".into()),
            ..complete.clone()
        };
        let lost = ["certop-ledger-abc-07".to_string()];
        let cases: [(&[String], Vec<PublishedCrl>, bool); 5] = [
            (&[], vec![], true),
            (&[], vec![incomplete.clone()], true),
            (&lost, vec![complete.clone()], true),
            (&lost, vec![], false),
            (&lost, vec![incomplete], false),
        ];
        for (unreadable, previous, whole) in cases {
            let why = incompleteness(
                unreadable,
                &previous,
                "certop-crl-abc",
                "certop-crl-copy-abc",
            );
            assert_eq!(why.is_none(), whole, "{unreadable:?} {:?}", why);
            if let Some(why) = why {
                for says in ["certop-ledger-abc-07", "certop-crl-copy-abc", "Restore"] {
                    assert!(why.contains(says), "{why} names {says}");
                }
            }
        }
    }

    #[test]
    fn the_next_number_is_above_every_number_seen_and_the_clock_and_fits_int64() {
        let now = chrono::TimeZone::timestamp_opt(&Utc, 1_800_000_000, 0)
            .single()
            .expect("time");
        let micros = |t: DateTime<Utc>| u64::try_from(t.timestamp_micros()).expect("after 1970");
        let clock = micros(now);
        // A CRL published an hour before now, then state restored from a
        // snapshot a day old: what is stored says less than was published.
        let published = micros(now - Duration::hours(1));
        let restored = micros(now - Duration::days(1));
        type Row = (
            &'static str,
            Vec<Option<u64>>,
            DateTime<Utc>,
            Result<u64, NumberExhausted>,
        );
        let rows: [Row; 8] = [
            ("none seen", vec![None, None], now, Ok(clock)),
            (
                "small numbers of an earlier certop",
                vec![Some(3), None, Some(9), Some(4)],
                now,
                Ok(clock),
            ),
            (
                "a leader whose clock is behind the number seen",
                vec![Some(clock + 5)],
                now,
                Ok(clock + 6),
            ),
            (
                "two CRLs in one microsecond",
                vec![Some(clock)],
                now,
                Ok(clock + 1),
            ),
            (
                "restored from an older snapshot",
                vec![Some(restored)],
                now,
                Ok(clock),
            ),
            (
                "a clock before 1970",
                vec![Some(9)],
                now - Duration::days(365 * 60),
                Ok(10),
            ),
            (
                "at int64's maximum",
                vec![Some(MAX_NUMBER)],
                now,
                Err(NumberExhausted {
                    highest: MAX_NUMBER,
                }),
            ),
            (
                "beyond int64",
                vec![Some(u64::MAX)],
                now,
                Err(NumberExhausted { highest: u64::MAX }),
            ),
        ];
        for (case, numbers, at, expected) in rows {
            assert_eq!(next_number(&numbers, at), expected, "{case}");
        }
        assert!(
            next_number(&[Some(restored)], now).expect("a number") > published,
            "above what was published after the snapshot"
        );
        let ca = Authority::create(&CaRequest::new("number CA"), now).expect("CA");
        let next = next_crl(
            Sources {
                ledger: Vec::new(),
                recorded: Vec::new(),
                previous: &[],
                numbers: &[Some(3)],
                ca_not_after: ca.certificate().not_after,
                unreadable_shards: &[],
                published: "certop-crl-abc",
                copy: "certop-crl-copy-abc",
            },
            Duration::hours(2),
            now,
        )
        .expect("a number");
        assert_eq!(next.number, clock);
        assert_eq!(next.this_update, now);
        assert_eq!(next.next_update, now + Duration::hours(2));
        assert_eq!(next.incomplete, None);
        let signed = build_crl(
            &ca,
            &CrlRequest {
                number: MAX_NUMBER,
                this_update: now,
                next_update: now + Duration::hours(1),
                entries: &[],
            },
        )
        .expect("CRL");
        assert_eq!(
            parse_crl(&signed.der, Some(ca.certificate()))
                .expect("parsed")
                .number,
            Some(MAX_NUMBER),
            "the highest number round-trips through the CRL"
        );
    }

    #[test]
    fn a_crl_is_resigned_when_it_misses_a_covered_serial_or_one_was_just_marked() {
        let now = crate::pki::whole_seconds(Utc::now());
        let ca = Authority::create(&CaRequest::new("resign CA"), now).expect("CA");
        let held = verified(&ca, &[entry("0a", now, now + Duration::days(1))], &[], now);
        let rows: [(Option<&PublishedCrl>, &[&str], bool, bool); 6] = [
            (None, &[], false, true),
            (Some(&held), &[], false, false),
            (Some(&held), &["0a"], false, false),
            (Some(&held), &["0a", "0b"], false, true),
            (Some(&held), &["0a"], true, true),
            (None, &["0a"], false, true),
        ];
        for (current, covered, newly, resign) in rows {
            assert_eq!(
                must_resign(current, covered.iter().copied(), newly),
                resign,
                "{covered:?} newly {newly}"
            );
        }
    }
}
