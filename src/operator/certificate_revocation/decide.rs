//! What a CertificateRevocation pass does, decided from what is observed:
//! the revocation, its CA's keys (and the CRL this replica holds of each),
//! the ledger shards its rule reaches, and the ClusterCertificates. Pure,
//! with the clock passed in: one `Decision` names every write of the pass,
//! and the status follows from it (`status`).

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use kube::ResourceExt;

use crate::api::{CertificateRevocation, ClusterCertificate, RevocationRecord, meta};
use crate::core::ledger::{LedgerEntry, RevocationRule};
use crate::operator::conditions::{self, READY};
use crate::operator::reason::{Blocked, Reason};
use crate::operator::store::crl::{self, PublishedCrl};
use crate::operator::store::ledger_store::{self, Revoked, RuleShards};
use crate::pki::RevocationReason;

/// How often a revocation that cannot finish is looked at again.
pub const WAITING_RETRY: Duration = Duration::from_secs(30);

/// The revocation's CA, as observed.
#[derive(Debug)]
pub enum Issuer {
    /// No CertificateAuthority of that name.
    Missing,
    /// It cannot sign now; the message says why.
    NotReady(String),
    /// Its keys with certificates to answer for, the signing key first.
    Ready(Vec<Key>),
}

/// One key of the CA.
#[derive(Debug)]
pub struct Key {
    pub index: u32,
    /// The key that signs now; else a rotation's retiring key.
    pub signing: bool,
    /// Whether its certificate may sign CRLs (cRLSign).
    pub signs_crls: bool,
    /// The CRL of this key this replica holds.
    pub crl: Option<PublishedCrl>,
}

/// What the pass knows when it decides.
pub struct Observed<'a> {
    pub revocation: &'a CertificateRevocation,
    /// What the revocation matches (`ledger_store::rule_of`).
    pub rule: &'a RevocationRule,
    pub issuer: &'a Issuer,
    /// The ledger shards the rule reaches (none read unless the CA is Ready).
    pub ledger: &'a RuleShards,
    /// A ClusterCertificate by name, as the store holds it.
    pub certificates: &'a dyn Fn(&str) -> Option<Arc<ClusterCertificate>>,
}

/// What a pass does.
#[derive(Debug)]
pub enum Decision {
    /// Ready at its generation: nothing until it changes.
    Finished,
    /// It cannot be applied now (no CA, or one that cannot sign): the
    /// Ready condition says why.
    Blocked(Blocked),
    /// Apply it: the writes, in order.
    Revoke(Revocation),
}

/// The writes of a revocation, in the order the pass makes them. Every
/// prefix is safe: the next pass decides again from what exists, so what
/// a failed write left undone is done then.
#[derive(Debug)]
pub struct Revocation {
    pub reason: RevocationReason,
    /// The rule's `issuedBefore`, for the status's message.
    pub issued_before: DateTime<Utc>,
    /// 1. The ledger: the entries the rule marks, in the shards it names.
    pub ledger: Revoked,
    /// 2. The CRL of each key that signs CRLs: re-signed, or kept.
    pub crls: Vec<CrlStep>,
    /// 3. The ClusterCertificates whose current certificate is covered.
    pub replacements: Vec<Replacement>,
    // 4. The status, from these and the CRLs (`status::revoked`).
}

/// What happens to the CRL of one key.
#[derive(Clone, Debug, PartialEq)]
pub struct CrlStep {
    pub index: u32,
    pub signing: bool,
    /// Sign it again (`crl::must_resign`); else keep `held`.
    pub resign: bool,
    /// The CRL this replica holds.
    pub held: Option<CrlSummary>,
}

/// What the status says of a CRL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CrlSummary {
    pub number: u64,
    pub entries: usize,
}

impl From<&PublishedCrl> for CrlSummary {
    fn from(crl: &PublishedCrl) -> Self {
        CrlSummary {
            number: crl.number,
            entries: crl.entries,
        }
    }
}

/// A ClusterCertificate to have replaced with a new key: the record its
/// controller acts on (annotation `certop.dev/revocation`).
#[derive(Debug)]
pub struct Replacement {
    pub certificate: Arc<ClusterCertificate>,
    pub record: RevocationRecord,
}

/// Whether the revocation is Ready at its generation: nothing to read.
pub fn finished(rev: &CertificateRevocation) -> bool {
    rev.status.as_ref().is_some_and(|s| {
        conditions::is_true(&s.conditions, READY)
            && s.observed_generation == rev.metadata.generation
    })
}

pub fn decide(o: &Observed, now: DateTime<Utc>) -> Decision {
    if finished(o.revocation) {
        return Decision::Finished;
    }
    let ca = &o.revocation.spec.issuer_ref.name;
    let keys = match o.issuer {
        Issuer::Missing => {
            return Decision::Blocked(Blocked::new(
                Reason::IssuerNotFound,
                format!("CertificateAuthority {ca} does not exist; fix spec.issuerRef.name"),
                Some(WAITING_RETRY),
            ));
        }
        Issuer::NotReady(message) => {
            return Decision::Blocked(Blocked::new(
                Reason::IssuerNotReady,
                message.clone(),
                Some(WAITING_RETRY),
            ));
        }
        Issuer::Ready(keys) => keys,
    };
    let reason = o.revocation.spec.reason.unwrap_or_default();
    let ledger = ledger_store::plan_revocation(o.ledger, o.rule, reason, now);
    // Each key's CRL lists what that key signed: a key's CRL is re-signed
    // when it does not list every covered certificate of that key.
    let crls = keys
        .iter()
        .filter(|k| k.signs_crls)
        .map(|k| CrlStep {
            index: k.index,
            signing: k.signing,
            resign: crl::must_resign(
                k.crl.as_ref(),
                ledger
                    .matched
                    .iter()
                    .filter(|e| e.key == k.index)
                    .map(|e| e.serial.as_str()),
                ledger.newly.iter().any(|e| e.key == k.index),
            ),
            held: k.crl.as_ref().map(CrlSummary::from),
        })
        .collect();
    let replacements = ledger
        .matched
        .iter()
        .filter_map(|e| replacement(e, o.certificates, &o.revocation.name_any()))
        .collect();
    Decision::Revoke(Revocation {
        reason,
        issued_before: o.rule.issued_before,
        ledger,
        crls,
        replacements,
    })
}

/// If a covered certificate is (or may be, the status lagging) a
/// ClusterCertificate's current one and not yet recorded on it, the
/// record that has its controller replace it with a new key.
fn replacement(
    entry: &LedgerEntry,
    certificates: &dyn Fn(&str) -> Option<Arc<ClusterCertificate>>,
    revocation: &str,
) -> Option<Replacement> {
    let cert = certificates(entry.certificate.as_deref()?)?;
    let revoked = entry.revoked.as_ref()?;
    let status = cert.status.as_ref();
    let current = status.and_then(|s| s.serial_number.as_deref()) == Some(entry.serial.as_str());
    // The status lags the Secret: an entry newer than the status's
    // certificate is the one the Secret holds now.
    let newer = status
        .and_then(|s| s.not_before)
        .is_none_or(|nb| entry.issued_at > nb.timestamp());
    let already = cert
        .annotations()
        .get(meta::REVOCATION)
        .and_then(|r| serde_json::from_str::<RevocationRecord>(r).ok())
        .is_some_and(|r| r.serial_number == entry.serial);
    if !(current || newer) || already {
        return None;
    }
    Some(Replacement {
        certificate: cert.clone(),
        record: RevocationRecord {
            serial_number: entry.serial.clone(),
            reason: revoked.reason,
            revoked_at: crate::pki::from_unix(revoked.at),
            revocation: Some(revocation.to_string()),
        },
    })
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use serde_json::json;

    use super::*;
    use crate::core::ledger::Revocation as Marked;
    use crate::operator::store::ledger_store::LedgerError;

    /// The fake clock: every row decides at this time (or a stated offset).
    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-05-01T00:00:00Z")
            .expect("time")
            .to_utc()
    }

    fn entry(serial: &str, key: u32, revoked: bool) -> LedgerEntry {
        LedgerEntry {
            serial: serial.into(),
            issued_at: (now() - chrono::Duration::hours(2)).timestamp(),
            not_after: (now() + chrono::Duration::days(1)).timestamp(),
            organizations: Vec::new(),
            dns_names: Vec::new(),
            ip_addresses: Vec::new(),
            uris: vec![],
            certificate: Some("web".into()),
            revoked: revoked.then(|| Marked {
                at: (now() - chrono::Duration::hours(1)).timestamp(),
                reason: RevocationReason::Superseded,
            }),
            key,
            fingerprint: None,
        }
    }

    fn revocation(serials: &[&str], ready_at: Option<i64>) -> CertificateRevocation {
        let status = ready_at.map(|generation| {
            json!({"observedGeneration": generation,
                   "conditions": [{"type": "Ready", "status": "True", "reason": "Revoked",
                                   "message": "", "lastTransitionTime": "2026-01-01T00:00:00Z"}]})
        });
        serde_json::from_value(json!({
            "apiVersion": "certop.dev/v1", "kind": "CertificateRevocation",
            "metadata": {"name": "rev", "generation": 2, "creationTimestamp": "2026-05-01T00:00:00Z"},
            "spec": {"issuerRef": {"name": "ca"}, "serialNumbers": serials, "reason": "keyCompromise"},
            "status": status,
        }))
        .expect("revocation")
    }

    fn certificate(serial: &str, recorded: Option<&str>) -> Arc<ClusterCertificate> {
        let annotations = recorded.map(|s| {
            json!({meta::REVOCATION: json!({"serialNumber": s, "reason": "keyCompromise",
                                            "revokedAt": "2026-04-30T23:00:00Z"}).to_string()})
        });
        Arc::new(
            serde_json::from_value(json!({
                "apiVersion": "certop.dev/v1", "kind": "ClusterCertificate",
                "metadata": {"name": "web", "annotations": annotations},
                "spec": {"issuerRef": {"name": "ca"}, "secretName": "web-tls", "secretNamespace": "app"},
                "status": {"serialNumber": serial, "notBefore": "2026-04-30T22:00:00Z"},
            }))
            .expect("certificate"),
        )
    }

    fn crl_listing(serials: &[&str]) -> PublishedCrl {
        PublishedCrl {
            der: Vec::new(),
            pem: String::new(),
            number: 7,
            this_update: now(),
            next_update: now() + chrono::Duration::hours(1),
            entries: serials.len(),
            stored: true,
            serials: serials.iter().map(|s| s.to_string()).collect(),
            not_after: BTreeMap::new(),
            incomplete: None,
        }
    }

    fn key(index: u32, signing: bool, crl: Option<PublishedCrl>) -> Key {
        Key {
            index,
            signing,
            signs_crls: true,
            crl,
        }
    }

    fn shards(entries: Vec<LedgerEntry>) -> RuleShards {
        let mut by_shard: BTreeMap<usize, Vec<LedgerEntry>> = BTreeMap::new();
        for e in entries {
            by_shard
                .entry(crate::core::ledger::shard_of(&e.serial))
                .or_default()
                .push(e);
        }
        RuleShards {
            readable: by_shard.into_iter().collect(),
            unreadable: Vec::new(),
        }
    }

    fn decide_at(
        rev: &CertificateRevocation,
        issuer: &Issuer,
        ledger: &RuleShards,
        cert: Option<Arc<ClusterCertificate>>,
        at: DateTime<Utc>,
    ) -> Decision {
        let rule = ledger_store::rule_of(rev);
        let certificates = |name: &str| cert.clone().filter(|c| c.name_any() == name);
        decide(
            &Observed {
                revocation: rev,
                rule: &rule,
                issuer,
                ledger,
                certificates: &certificates,
            },
            at,
        )
    }

    fn revoke(d: Decision) -> Revocation {
        match d {
            Decision::Revoke(r) => r,
            other => panic!("expected Revoke, got {other:?}"),
        }
    }

    #[test]
    fn nothing_is_decided_for_a_finished_revocation_or_without_a_ca_that_signs() {
        let ledger = shards(vec![entry("0a", 0, false)]);
        let ready = Issuer::Ready(vec![key(0, true, None)]);
        let rows: [(CertificateRevocation, Issuer, &str); 4] = [
            (revocation(&["0a"], Some(2)), Issuer::Missing, "Finished"),
            (revocation(&["0a"], None), Issuer::Missing, "IssuerNotFound"),
            (
                revocation(&["0a"], None),
                Issuer::NotReady("the key does not load".into()),
                "IssuerNotReady",
            ),
            // Ready at an older generation: applied again.
            (revocation(&["0a"], Some(1)), ready, "Revoke"),
        ];
        for (rev, issuer, want) in rows {
            let got = match decide_at(&rev, &issuer, &ledger, None, now()) {
                Decision::Finished => "Finished".to_string(),
                Decision::Blocked(b) => {
                    assert_eq!(b.retry, Some(WAITING_RETRY));
                    b.reason.as_str().to_string()
                }
                Decision::Revoke(_) => "Revoke".to_string(),
            };
            assert_eq!(got, want, "{issuer:?}");
        }
    }

    #[test]
    fn a_crl_is_resigned_only_when_it_misses_a_covered_serial_or_one_was_marked_now() {
        // (entries, the CRL held, what is marked now, re-signed)
        let rows: [(Vec<LedgerEntry>, Option<PublishedCrl>, usize, bool); 5] = [
            (vec![entry("0a", 0, false)], None, 1, true),
            // Marked now: its time and reason are new, whatever is listed.
            (
                vec![entry("0a", 0, false)],
                Some(crl_listing(&["0a"])),
                1,
                true,
            ),
            (
                vec![entry("0a", 0, true)],
                Some(crl_listing(&["0a"])),
                0,
                false,
            ),
            (vec![entry("0a", 0, true)], Some(crl_listing(&[])), 0, true),
            (vec![entry("0a", 0, true)], None, 0, true),
        ];
        for (entries, held, newly, resign) in rows {
            let issuer = Issuer::Ready(vec![key(0, true, held.clone())]);
            let r = revoke(decide_at(
                &revocation(&["0a"], None),
                &issuer,
                &shards(entries),
                None,
                now(),
            ));
            assert_eq!(r.ledger.newly.len(), newly);
            assert_eq!(
                r.ledger.shards_to_write.len(),
                newly,
                "a write only to mark"
            );
            assert_eq!(
                r.crls,
                [CrlStep {
                    index: 0,
                    signing: true,
                    resign,
                    held: held.as_ref().map(CrlSummary::from),
                }],
                "held {held:?}, marked {newly}"
            );
        }
    }

    #[test]
    fn only_the_crl_of_the_key_that_signed_a_covered_certificate_is_resigned() {
        let listed = crl_listing(&[]);
        let issuer = Issuer::Ready(vec![
            key(1, true, Some(listed.clone())),
            key(0, false, Some(listed)),
            Key {
                index: 2,
                signing: false,
                signs_crls: false,
                crl: None,
            },
        ]);
        let r = revoke(decide_at(
            &revocation(&["0a"], None),
            &issuer,
            &shards(vec![entry("0a", 0, false)]),
            None,
            now(),
        ));
        let resigned: Vec<(u32, bool)> = r.crls.iter().map(|c| (c.index, c.resign)).collect();
        assert_eq!(
            resigned,
            [(1, false), (0, true)],
            "key 0 signed it; key 2 signs no CRL"
        );
    }

    #[test]
    fn a_certificate_is_replaced_once_while_its_covered_certificate_is_current() {
        let issuer = Issuer::Ready(vec![key(0, true, None)]);
        let rev = revocation(&["0a"], None);
        // The status names its certificate, issued two hours ago.
        // (the status's serial, the serial recorded on it, the covered
        // entry issued this many hours ago, replaced)
        let rows = [
            (Some("0a"), None, 2, true),
            (Some("0a"), Some("0a"), 2, false),
            (Some("0a"), Some("09"), 2, true),
            // Issued after the status's certificate: the Secret holds it,
            // the status lagging.
            (Some("0b"), None, 1, true),
            (Some("0b"), None, 3, false),
            (None, None, 2, false),
        ];
        for (current, recorded, hours_ago, replaced) in rows {
            let mut covered = entry("0a", 0, true);
            covered.issued_at = (now() - chrono::Duration::hours(hours_ago)).timestamp();
            let cert = current.map(|s| certificate(s, recorded));
            let r = revoke(decide_at(
                &rev,
                &issuer,
                &shards(vec![covered]),
                cert,
                now(),
            ));
            assert_eq!(
                r.replacements.len(),
                usize::from(replaced),
                "{current:?} recorded {recorded:?}, issued {hours_ago}h ago"
            );
            if let Some(rep) = r.replacements.first() {
                assert_eq!(rep.record.serial_number, "0a");
                assert_eq!(rep.record.reason, RevocationReason::Superseded);
                assert_eq!(rep.record.revocation.as_deref(), Some("rev"));
            }
        }
    }

    #[test]
    fn the_clock_decides_what_is_covered_and_what_an_expired_entry_costs() {
        let issuer = Issuer::Ready(vec![key(0, true, Some(crl_listing(&[])))]);
        let ledger = shards(vec![entry("0a", 0, false)]);
        let rev = revocation(&["0a"], None);
        let today = revoke(decide_at(&rev, &issuer, &ledger, None, now()));
        assert_eq!(today.ledger.matched.len(), 1);
        assert_eq!(today.ledger.shards_to_write.len(), 1);
        assert!(today.crls[0].resign);
        // Two days on, the certificate has expired: nothing is covered,
        // the shard is written only to prune it, and no CRL is signed.
        let later = revoke(decide_at(
            &rev,
            &issuer,
            &ledger,
            None,
            now() + chrono::Duration::days(2),
        ));
        assert!(later.ledger.matched.is_empty() && later.ledger.newly.is_empty());
        assert_eq!(later.ledger.shards_to_write.len(), 1, "pruned");
        assert!(!later.crls[0].resign);
    }

    #[test]
    fn unknown_serials_are_those_no_readable_shard_knows_and_no_unreadable_one_may() {
        let issuer = Issuer::Ready(vec![key(0, true, None)]);
        let mut ledger = shards(vec![entry("0a", 0, false)]);
        let lost = crate::core::ledger::shard_of("0c");
        ledger.unreadable.push((
            lost,
            LedgerError::Corrupt {
                shard: format!("certop-ledger-x-{lost:02}"),
                reason: "bad".into(),
            },
        ));
        let r = revoke(decide_at(
            &revocation(&["0a", "0b", "0c"], None),
            &issuer,
            &ledger,
            None,
            now(),
        ));
        let unknown: BTreeSet<&str> = r.ledger.unknown.iter().map(String::as_str).collect();
        assert_eq!(unknown, BTreeSet::from(["0b"]));
        assert_eq!(r.ledger.unreadable.len(), 1);
    }
}
