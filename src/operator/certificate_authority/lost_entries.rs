//! Ledger entries lost to older state. When etcd is restored from a
//! snapshot, or certop's namespace from a backup, the ledger can be older
//! than the Secrets: certificates issued since are in no entry, so a
//! revocation by name would not find them and no CRL would list them. A
//! ClusterCertificate of the CA whose status names an unexpired serial
//! the ledger lacks has its Secret read, and the certificate there is
//! recorded again (`ledger_store::record`, the CA's revocations applied as
//! it goes in), only when it has that serial and one of the CA's keys
//! signed it. Each pass reads at most `PER_PASS` Secrets; a failed read or
//! write leaves the rest to the next pass (recording is idempotent).
//! Certificates signed for CSRs have no Secret and cannot be found again.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use tracing::{info, warn};

use super::digest_backfill::PER_PASS;
use super::held::{Held, held_of, read_leaf};
use crate::core::ledger::LedgerEntry;
use crate::operator::store::ledger_store;
use crate::operator::{Context, Error};
use crate::pki::CertificateInfo;

/// A ClusterCertificate whose certificate the ledger lacks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lost {
    pub certificate: String,
    pub serial: String,
    pub namespace: String,
    pub secret: String,
}

/// The ClusterCertificates (name, what its status says it holds) whose
/// serial is in no ledger entry and not known to have expired. Pure.
pub fn lost(
    entries: &[LedgerEntry],
    certificates: impl IntoIterator<Item = (String, Held)>,
    now: DateTime<Utc>,
) -> Vec<Lost> {
    let recorded: BTreeSet<&str> = entries.iter().map(|e| e.serial.as_str()).collect();
    certificates
        .into_iter()
        .filter(|(_, h)| h.not_after.is_none_or(|t| t > now))
        .filter_map(|(certificate, h)| {
            let serial = h.serial?;
            (!recorded.contains(serial.as_str())).then_some(Lost {
                certificate,
                serial,
                namespace: h.namespace,
                secret: h.secret,
            })
        })
        .collect()
}

/// The ledger entry of the certificate a Secret holds, when it is the one
/// the status names and key `index` of `keys` signed it. Pure.
pub fn entry_of(
    lost: &Lost,
    leaf: &CertificateInfo,
    keys: &[(u32, &CertificateInfo)],
    now: DateTime<Utc>,
) -> Option<LedgerEntry> {
    if leaf.serial.to_string() != lost.serial || leaf.not_after <= now {
        return None;
    }
    let (index, _) = keys.iter().find(|(_, ca)| leaf.is_issued_by(ca))?;
    Some(LedgerEntry::of(leaf, Some(&lost.certificate), *index))
}

/// What a pass recorded again, and whether certificates are left to look
/// at (the limit, or a failed read or write): the CA looks again soon.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Recovered {
    pub recorded: usize,
    pub more: bool,
}

/// What the ClusterCertificates of CA `ca` say they hold, by name: taken
/// before the ledger is loaded. A status names a serial only once its
/// entry is written, so every serial in this snapshot is in a ledger read
/// after it, unless older state was restored; the other order would take
/// each certificate recorded between the two reads for a lost one.
pub fn statuses(ctx: &Context, ca: &str) -> Vec<(String, Held)> {
    let mut names: Vec<String> = ctx
        .certificates
        .names_of_issuer(ca)
        .iter()
        .map(|n| n.to_string())
        .collect();
    names.sort();
    names
        .into_iter()
        .filter_map(|name| held_of(ctx, ca, &name).map(|h| (name, h)))
        .collect()
}

/// Records again what the ledger of CA `ca` lost (`statuses`: taken
/// before the ledger was loaded; `entries`: the ledger as loaded; `keys`:
/// the CA's keys that sign, by index).
pub async fn recover(
    ctx: &Context,
    ca: &str,
    statuses: Vec<(String, Held)>,
    entries: &[LedgerEntry],
    keys: &[(u32, &CertificateInfo)],
    now: DateTime<Utc>,
) -> Recovered {
    let all = lost(entries, statuses, now);
    let mut result = Recovered {
        recorded: 0,
        more: all.len() > PER_PASS,
    };
    let rules = ledger_store::rules_of_ca(ctx, ca);
    for lost in all.into_iter().take(PER_PASS) {
        let leaf = match read_leaf(ctx, &lost.namespace, &lost.secret).await {
            Ok(Some(leaf)) => leaf,
            Ok(None) => continue,
            Err(e) => {
                warn!(ca, certificate = %lost.certificate, error = %e, "cannot read the Secret of a certificate the ledger lacks; trying again next pass");
                result.more = true;
                continue;
            }
        };
        let Some(entry) = entry_of(&lost, &leaf, keys, now) else {
            continue;
        };
        match ledger_store::record(ctx, ca, entry, &rules, now).await {
            Ok(_) => {
                info!(ca, certificate = %lost.certificate, serial = %lost.serial, "recorded again in the ledger a certificate its Secret holds and the ledger lacked (older state restored)");
                result.recorded += 1;
            }
            // A shard certop will not write: the CA's status says so.
            Err(Error::Ledger(e)) => {
                warn!(ca, certificate = %lost.certificate, error = %e, "cannot record again a certificate the ledger lacks");
            }
            Err(e) => {
                warn!(ca, certificate = %lost.certificate, error = %e, "cannot record again a certificate the ledger lacks; trying again next pass");
                result.more = true;
            }
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use super::*;
    use crate::pki::Authority;
    use crate::pki::fixtures::{authority, leaf};

    fn held(serial: Option<&str>, not_after: Option<DateTime<Utc>>) -> Held {
        Held {
            namespace: "team".into(),
            secret: "web-tls".into(),
            serial: serial.map(str::to_string),
            not_after,
        }
    }

    #[test]
    fn only_unexpired_certificates_whose_serial_no_entry_records_are_lost() {
        let now = Utc::now();
        let ca = authority("lost CA");
        let recorded = LedgerEntry::of(&leaf(&ca, "web"), Some("kept"), 0);
        let later = Some(now + Duration::days(1));
        let rows = [
            ("kept", held(Some(&recorded.serial), later), false),
            ("issued after the snapshot", held(Some("0abc"), later), true),
            (
                "expired",
                held(Some("0abd"), Some(now - Duration::seconds(1))),
                false,
            ),
            ("never issued", held(None, None), false),
            ("notAfter unknown", held(Some("0abe"), None), true),
        ];
        let found = lost(
            std::slice::from_ref(&recorded),
            rows.iter().map(|(n, h, _)| (n.to_string(), h.clone())),
            now,
        );
        let expected: Vec<&str> = rows.iter().filter(|r| r.2).map(|r| r.0).collect();
        assert_eq!(
            found
                .iter()
                .map(|l| l.certificate.as_str())
                .collect::<Vec<_>>(),
            expected
        );
    }

    #[test]
    fn an_entry_is_made_only_for_the_serial_named_and_a_certificate_a_key_of_the_ca_signed() {
        let now = Utc::now();
        let old = authority("lost CA");
        let new = authority("lost CA");
        let forger = authority("lost CA");
        let keys = [(0, old.certificate()), (1, new.certificate())];
        let leaf = |by: &Authority| leaf(by, "web");
        let by_new = leaf(&new);
        let lost_of = |c: &CertificateInfo| Lost {
            certificate: "web".into(),
            serial: c.serial.to_string(),
            namespace: "team".into(),
            secret: "web-tls".into(),
        };
        let entry = entry_of(&lost_of(&by_new), &by_new, &keys, now).expect("signed by key 1");
        assert_eq!(
            (entry.key, entry.certificate.as_deref(), entry.revoked),
            (1, Some("web"), None)
        );
        assert_eq!(entry.fingerprint, Some(by_new.sha256_hex()));
        let forged = leaf(&forger);
        assert_eq!(
            entry_of(&lost_of(&forged), &forged, &keys, now),
            None,
            "a certificate another key signed under the CA's name is not the CA's"
        );
        let by_old = leaf(&old);
        assert_eq!(
            entry_of(&lost_of(&by_old), &by_new, &keys, now),
            None,
            "the Secret holds another certificate than the status names"
        );
        assert_eq!(
            entry_of(&lost_of(&by_new), &by_new, &keys, by_new.not_after),
            None,
            "expired"
        );
    }
}
