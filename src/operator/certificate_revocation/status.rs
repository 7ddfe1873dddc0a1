//! The revocation's status, derived in one place from the decision (and,
//! for a revocation applied, from the CRLs its pass left). Pure.

use chrono::{DateTime, Utc};

use kube::ResourceExt;

use super::decide::{CrlStep, CrlSummary, Revocation, WAITING_RETRY};
use crate::api::{
    CertificateRevocation, CertificateRevocationStatus, CrlPublished, MAX_RECORDED_SERIALS,
    RevokedSerial, meta,
};
use crate::core::authz::{PRIVILEGED_GROUP, bypasses_authorization};
use crate::core::ledger::LedgerEntry;
use crate::operator::conditions::{self, READY};
use crate::operator::reason::{Blocked, Reason};

/// The status a pass writes, and the Ready condition's reason and message
/// (also the Event's).
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    pub status: CertificateRevocationStatus,
    pub ready: bool,
    pub reason: Reason,
    pub message: String,
}

/// A revocation that cannot be applied now: what it recorded stays.
pub fn blocked(rev: &CertificateRevocation, blocked: Blocked, now: DateTime<Utc>) -> Outcome {
    let mut status = rev.status.clone().unwrap_or_default();
    status.observed_generation = rev.metadata.generation;
    with_ready(rev, status, false, blocked.reason, blocked.message, now)
}

/// A revocation applied: what it covers and recorded, and Ready unless a
/// ledger shard could not be read or a named serial is unknown. `crls`:
/// the CRL of each of `revocation.crls` after the pass, in their order.
pub fn revoked(
    rev: &CertificateRevocation,
    revocation: &Revocation,
    crls: &[Option<CrlSummary>],
    now: DateTime<Utc>,
) -> Outcome {
    let ca = &rev.spec.issuer_ref.name;
    let found = &revocation.ledger;
    let previous = rev.status.clone().unwrap_or_default();
    let mut status = previous.clone();
    status.observed_generation = rev.metadata.generation;
    status.revoked = records(&previous.revoked, &found.matched, now);
    status.revoked_certificates = Some(found.matched.len() as i64);
    if !found.newly.is_empty() || status.last_revocation_time.is_none() && !found.matched.is_empty()
    {
        status.last_revocation_time = Some(now);
    }
    let message = format!(
        "revoked {} certificates issued by {ca} before {}{}",
        found.matched.len(),
        revocation.issued_before.to_rfc3339(),
        crl_note(revocation, crls)
    );
    let message = match without_digest_note(&found.matched, &rev.spec) {
        Some(note) => format!("{message}; {note}"),
        None => message,
    };
    let mistakes: Vec<String> = rev
        .spec
        .uris
        .iter()
        .filter_map(|u| crate::core::ledger::spiffe_pattern_mistake(u))
        .collect();
    let message = if mistakes.is_empty() {
        message
    } else {
        format!("{message}; {}", mistakes.join("; "))
    };
    let message = if found.unknown.is_empty() {
        message
    } else {
        format!(
            "{message}; serials {} were not issued by {ca} (not in its ledger) and are not listed in its CRL: fix spec.serialNumbers or spec.issuerRef",
            found.unknown.join(", ")
        )
    };
    status.crl_published = crl_published(
        &previous.crl_published,
        &revocation.crls,
        crls,
        &found.matched,
    );
    let enforceable = enforceability(rev, &found.matched);
    conditions::set(
        &mut status.conditions,
        API_SERVER_ENFORCEABLE,
        enforceable.reason == Reason::Enforceable,
        enforceable.reason.as_str(),
        &enforceable.message,
        rev.metadata.generation,
        now,
    );
    if !found.unreadable.is_empty() {
        let shards: Vec<String> = found.unreadable.iter().map(|e| e.to_string()).collect();
        let message = format!(
            "{message}; {}. What those shards record is neither revoked nor replaced until they can be read (or are deleted); certop applies the rule again every {}s",
            shards.join("; "),
            WAITING_RETRY.as_secs()
        );
        return with_ready(rev, status, false, Reason::LedgerCorrupt, message, now);
    }
    if !found.unknown.is_empty() {
        return with_ready(rev, status, false, Reason::UnknownSerials, message, now);
    }
    with_ready(rev, status, true, Reason::Revoked, message, now)
}

/// The condition that says whether kube-apiserver can be made to refuse
/// what the revocation revoked.
pub const API_SERVER_ENFORCEABLE: &str = "ApiServerEnforceable";

/// The `ApiServerEnforceable` condition's reason and message.
#[derive(Clone, Debug, PartialEq)]
pub struct Enforceability {
    pub reason: Reason,
    pub message: String,
}

/// Whether certop's authorization webhook can refuse every certificate
/// the revocation revoked: not one whose subject is in `system:masters`
/// (kube-apiserver lets that group through before any authorizer; the
/// ledger entry records the subject, and `kubectl certop revoke --cert`
/// the file's in an annotation), nor one certop recorded no SHA-256 for.
/// Pure.
pub fn enforceability(rev: &CertificateRevocation, matched: &[LedgerEntry]) -> Enforceability {
    let ca = &rev.spec.issuer_ref.name;
    let from_file = rev
        .annotations()
        .get(meta::SUBJECT_ORGANIZATIONS)
        .and_then(|o| serde_json::from_str::<Vec<String>>(o).ok())
        .is_some_and(|o| bypasses_authorization(&o));
    let mut privileged: Vec<String> = matched
        .iter()
        .filter(|e| bypasses_authorization(&e.organizations))
        .map(|e| e.serial.clone())
        .collect();
    if from_file {
        privileged.extend(
            rev.spec
                .serial_numbers
                .iter()
                .map(|s| s.to_ascii_lowercase()),
        );
        privileged.sort();
        privileged.dedup();
    }
    if !privileged.is_empty() {
        return Enforceability {
            reason: Reason::SystemMasters,
            message: format!(
                "serials {} carry O={PRIVILEGED_GROUP}: kube-apiserver lets that group through before it asks any authorizer, so certop's webhook cannot refuse them and they keep working until they expire. To end them now, rotate the CA (kubectl certop rotate-ca {ca}) and remove the old CA certificate from kube-apiserver's --client-ca-file once the rotation ends",
                privileged.join(", ")
            ),
        };
    }
    if let Some(note) = without_digest_note(matched, &rev.spec) {
        return Enforceability {
            reason: Reason::DigestUnknown,
            message: note,
        };
    }
    Enforceability {
        reason: Reason::Enforceable,
        message: "certop's authorization webhook refuses the certificates this revocation revoked wherever kube-apiserver asks it (certop authz-config); status.apiServer shows the API server's reviews and refusals".into(),
    }
}

/// For each CA key that signed some of the revoked certificates, the
/// first CRL that lists them all: what `previous` recorded while it still
/// covers as many, else the CRL this pass left. `crls`: the CRL of each
/// of `steps` after the pass, in their order. Pure.
pub fn crl_published(
    previous: &[CrlPublished],
    steps: &[CrlStep],
    crls: &[Option<CrlSummary>],
    matched: &[LedgerEntry],
) -> Vec<CrlPublished> {
    let mut out: Vec<CrlPublished> = steps
        .iter()
        .zip(crls)
        .filter_map(|(step, crl)| {
            let crl = crl.as_ref()?;
            let certificates = matched.iter().filter(|e| e.key == step.index).count();
            let certificates = u32::try_from(certificates).unwrap_or(u32::MAX);
            if certificates == 0 {
                return None;
            }
            let kept = previous
                .iter()
                .find(|p| p.key == step.index && p.certificates >= certificates);
            Some(kept.cloned().unwrap_or(CrlPublished {
                key: step.index,
                crl_number: i64::try_from(crl.number).unwrap_or(i64::MAX),
                certificates,
            }))
        })
        .collect();
    out.sort_by_key(|p| p.key);
    out
}

/// What the message says of the CRLs: each key's number and size, or that
/// the CA signs none.
fn crl_note(revocation: &Revocation, crls: &[Option<CrlSummary>]) -> String {
    let notes: Vec<String> = revocation
        .crls
        .iter()
        .zip(crls)
        .filter_map(|(step, crl)| {
            let c = crl.as_ref()?;
            Some(if step.signing {
                format!("CRL number {} lists {} certificates", c.number, c.entries)
            } else {
                format!(
                    "the retiring key's CRL number {} lists {} certificates",
                    c.number, c.entries
                )
            })
        })
        .collect();
    if notes.is_empty() {
        "; the CA may not sign CRLs (no cRLSign), so the replacements are the only remedy"
            .to_string()
    } else {
        format!("; {}", notes.join(", "))
    }
}

fn with_ready(
    rev: &CertificateRevocation,
    mut status: CertificateRevocationStatus,
    ready: bool,
    reason: Reason,
    message: String,
    now: DateTime<Utc>,
) -> Outcome {
    conditions::set(
        &mut status.conditions,
        READY,
        ready,
        reason.as_str(),
        &message,
        rev.metadata.generation,
        now,
    );
    Outcome {
        status,
        ready,
        reason,
        message,
    }
}

/// What the status says of revoked certificates kube-apiserver still
/// accepts: ledger entries written before certop recorded digests give
/// its authorization webhook nothing to refuse, unless the revocation
/// names the digests itself. Pure.
pub fn without_digest_note(
    matched: &[LedgerEntry],
    spec: &crate::api::CertificateRevocationSpec,
) -> Option<String> {
    if !spec.certificate_sha256s.is_empty() {
        return None;
    }
    let serials: Vec<&str> = matched
        .iter()
        .filter(|e| e.fingerprint.is_none())
        .map(|e| e.serial.as_str())
        .collect();
    const LISTED: usize = 10;
    (!serials.is_empty()).then(|| {
        let more = if serials.len() > LISTED { ", …" } else { "" };
        format!(
            "kube-apiserver still accepts {} of them (serials {}{more}): certop recorded no SHA-256 for them (issued before it did), so its authorization webhook cannot refuse them; revoke each from its file with kubectl certop revoke --cert FILE",
            serials.len(),
            serials[..serials.len().min(LISTED)].join(", ")
        )
    })
}

/// What a revocation's status records of the certificates it revoked:
/// what it recorded before (a ledger shard lost since cannot take them
/// away) and every revoked entry it covers now, once each, until each
/// expires, at most `MAX_RECORDED_SERIALS` (the first ones stay, so the
/// record does not churn).
pub fn records(
    previous: &[RevokedSerial],
    matched: &[LedgerEntry],
    now: DateTime<Utc>,
) -> Vec<RevokedSerial> {
    let mut fresh: Vec<RevokedSerial> = matched
        .iter()
        .filter_map(|e| {
            let r = e.revoked.as_ref()?;
            Some(RevokedSerial {
                serial_number: e.serial.clone(),
                reason: r.reason,
                revoked_at: crate::pki::from_unix(r.at),
                not_after: crate::pki::from_unix(e.not_after),
                key: e.key,
            })
        })
        .collect();
    fresh.sort_by(|a, b| a.serial_number.cmp(&b.serial_number));
    let mut seen = std::collections::BTreeSet::new();
    previous
        .iter()
        .cloned()
        .chain(fresh)
        .filter(|r| r.not_after >= now)
        .filter(|r| seen.insert(r.serial_number.clone()))
        .take(MAX_RECORDED_SERIALS)
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::api::{CertificateRevocationSpec, IssuerRef};
    use crate::operator::store::ledger_store::{LedgerError, Revoked};
    use crate::pki::RevocationReason;

    #[test]
    fn the_status_names_revoked_certificates_kube_apiserver_still_accepts() {
        let entry = |serial: &str, digest: Option<&str>| LedgerEntry {
            serial: serial.into(),
            issued_at: 0,
            not_after: 4_000_000_000,
            organizations: Vec::new(),
            dns_names: Vec::new(),
            ip_addresses: Vec::new(),
            uris: vec![],
            certificate: None,
            revoked: Some(crate::core::ledger::Revocation {
                at: 0,
                reason: RevocationReason::KeyCompromise,
            }),
            key: 0,
            fingerprint: digest.map(str::to_string),
        };
        let mut spec = CertificateRevocationSpec {
            issuer_ref: IssuerRef { name: "ca".into() },
            organizations: vec!["nodes".into()],
            ..Default::default()
        };
        let matched = [entry("0a", Some("aa")), entry("0b", None)];
        let note = without_digest_note(&matched, &spec).expect("a note");
        assert!(note.contains("1 of them (serials 0b)"), "{note}");
        assert_eq!(without_digest_note(&matched[..1], &spec), None);
        let many: Vec<LedgerEntry> = (0..12).map(|i| entry(&format!("{i:02x}"), None)).collect();
        let note = without_digest_note(&many, &spec).expect("a note");
        assert!(
            note.contains("12 of them") && note.contains("09, …"),
            "{note}"
        );
        // `kubectl certop revoke NAME` or `--cert` names the digest itself.
        spec.certificate_sha256s = vec!["bb".repeat(32)];
        assert_eq!(without_digest_note(&matched, &spec), None);
    }

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-05-01T00:00:00Z")
            .expect("time")
            .to_utc()
    }

    fn rev() -> CertificateRevocation {
        serde_json::from_value(json!({
            "apiVersion": "certop.dev/v1", "kind": "CertificateRevocation",
            "metadata": {"name": "rev", "generation": 3},
            "spec": {"issuerRef": {"name": "ca"}, "serialNumbers": ["0a", "0b"]},
        }))
        .expect("revocation")
    }

    fn revoked_entry() -> LedgerEntry {
        LedgerEntry {
            serial: "0a".into(),
            issued_at: (now() - chrono::Duration::hours(2)).timestamp(),
            not_after: (now() + chrono::Duration::days(1)).timestamp(),
            organizations: Vec::new(),
            dns_names: Vec::new(),
            ip_addresses: Vec::new(),
            uris: vec![],
            certificate: None,
            revoked: Some(crate::core::ledger::Revocation {
                at: now().timestamp(),
                reason: RevocationReason::KeyCompromise,
            }),
            key: 0,
            fingerprint: Some("aa".repeat(32)),
        }
    }

    fn applied(ledger: Revoked, crls: Vec<CrlStep>) -> Revocation {
        Revocation {
            reason: RevocationReason::KeyCompromise,
            issued_before: now(),
            ledger,
            crls,
            replacements: Vec::new(),
        }
    }

    #[test]
    fn the_status_says_ready_only_when_nothing_is_left_and_names_each_crl() {
        let e = revoked_entry();
        let whole = Revoked {
            newly: vec![e.clone()],
            matched: vec![e.clone()],
            ..Default::default()
        };
        let steps = vec![
            CrlStep {
                index: 1,
                signing: true,
                resign: false,
                held: None,
            },
            CrlStep {
                index: 0,
                signing: false,
                resign: true,
                held: None,
            },
        ];
        let crls = [
            Some(CrlSummary {
                number: 4,
                entries: 0,
            }),
            Some(CrlSummary {
                number: 9,
                entries: 1,
            }),
        ];
        let out = revoked(&rev(), &applied(whole, steps), &crls, now());
        assert!(out.ready);
        assert_eq!(out.reason, Reason::Revoked);
        assert!(
            out.message.ends_with(
                "CRL number 4 lists 0 certificates, the retiring key's CRL number 9 lists 1 certificates"
            ),
            "{}",
            out.message
        );
        assert_eq!(out.status.observed_generation, Some(3));
        assert_eq!(out.status.last_revocation_time, Some(now()));
        assert_eq!(out.status.revoked.len(), 1);

        // A namespace written without its final `/` revokes nothing: the
        // message says so and how to write it.
        let mut by_namespace = rev();
        by_namespace.spec.uris = vec!["spiffe://cluster.local/ns/shop".into()];
        let none = applied(Revoked::default(), Vec::new());
        let out = revoked(&by_namespace, &none, &[], now());
        assert!(
            out.message.contains("revoked 0 certificates")
                && out.message.contains(
                    "write spiffe://cluster.local/ns/shop/ to revoke the pods of namespace shop"
                ),
            "{}",
            out.message
        );

        let unknown = Revoked {
            matched: vec![e.clone()],
            unknown: vec!["0b".into()],
            ..Default::default()
        };
        let out = revoked(&rev(), &applied(unknown, Vec::new()), &[], now());
        assert_eq!((out.ready, out.reason), (false, Reason::UnknownSerials));
        assert!(out.message.contains("no cRLSign"), "{}", out.message);
        assert!(out.message.contains("serials 0b were not issued by ca"));

        let corrupt = Revoked {
            matched: vec![e],
            unknown: vec!["0b".into()],
            unreadable: vec![LedgerError::Corrupt {
                shard: "certop-ledger-x-07".into(),
                reason: "bad".into(),
            }],
            ..Default::default()
        };
        let out = revoked(&rev(), &applied(corrupt, Vec::new()), &[], now());
        assert_eq!((out.ready, out.reason), (false, Reason::LedgerCorrupt));
        assert!(out.message.contains("certop-ledger-x-07"));
        assert!(out.message.contains("every 30s"));
    }

    #[test]
    fn the_status_says_when_kube_apiserver_cannot_refuse_a_revoked_certificate() {
        let entry = |serial: &str, orgs: &[&str], digest: bool| LedgerEntry {
            organizations: orgs.iter().map(|o| o.to_string()).collect(),
            serial: serial.into(),
            fingerprint: digest.then(|| "aa".repeat(32)),
            ..revoked_entry()
        };
        let masters = crate::core::authz::PRIVILEGED_GROUP;
        let by_file = |orgs: &str| {
            let mut r = rev();
            r.spec.certificate_sha256s = vec!["bb".repeat(32)];
            r.spec.serial_numbers = vec!["0C".into()];
            r.annotations_mut()
                .insert(meta::SUBJECT_ORGANIZATIONS.into(), orgs.into());
            r
        };
        // (case, revocation, matched entries, reason, what the message names)
        let rows: Vec<(&str, CertificateRevocation, Vec<LedgerEntry>, Reason, &str)> = vec![
            (
                "ordinary groups, digests recorded",
                rev(),
                vec![entry("0a", &["admins"], true)],
                Reason::Enforceable,
                "refuses",
            ),
            (
                "a system:masters entry among others",
                rev(),
                vec![
                    entry("0a", &["admins"], true),
                    entry("0b", &["x", masters], true),
                ],
                Reason::SystemMasters,
                "serials 0b carry O=system:masters",
            ),
            (
                "system:masters wins over a missing digest",
                rev(),
                vec![entry("0a", &[], false), entry("0b", &[masters], true)],
                Reason::SystemMasters,
                "kubectl certop rotate-ca ca",
            ),
            (
                "a group named like it is not it",
                rev(),
                vec![entry("0a", &["system:masters-ish"], true)],
                Reason::Enforceable,
                "refuses",
            ),
            (
                "no digest recorded",
                rev(),
                vec![entry("0a", &["admins"], false)],
                Reason::DigestUnknown,
                "serials 0a",
            ),
            (
                "revoke --cert of a system:masters file (no ledger entry)",
                by_file(r#"["system:masters"]"#),
                vec![],
                Reason::SystemMasters,
                "serials 0c carry",
            ),
            (
                "revoke --cert of an ordinary file",
                by_file(r#"["admins"]"#),
                vec![],
                Reason::Enforceable,
                "refuses",
            ),
            (
                "an annotation that is not a list says nothing",
                by_file("system:masters"),
                vec![],
                Reason::Enforceable,
                "refuses",
            ),
        ];
        for (case, r, matched, reason, names) in rows {
            let got = enforceability(&r, &matched);
            assert_eq!(got.reason, reason, "{case}: {}", got.message);
            assert!(got.message.contains(names), "{case}: {}", got.message);
        }
        // The condition lands in the status a pass writes.
        let e = entry("0b", &[masters], true);
        let found = Revoked {
            newly: vec![e.clone()],
            matched: vec![e],
            ..Default::default()
        };
        let out = revoked(&rev(), &applied(found, Vec::new()), &[], now());
        let c = conditions::find(&out.status.conditions, API_SERVER_ENFORCEABLE).expect("set");
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("False", "SystemMasters")
        );
        assert!(
            out.ready,
            "Ready all the same: the revocation did what it asks"
        );
    }

    #[test]
    fn the_status_records_the_first_crl_that_lists_the_revoked_certificates_per_key() {
        let on_key = |serial: &str, key: u32| LedgerEntry {
            serial: serial.into(),
            key,
            ..revoked_entry()
        };
        let step = |index: u32| CrlStep {
            index,
            signing: index == 1,
            resign: true,
            held: None,
        };
        let crl = |number: u64| Some(CrlSummary { number, entries: 9 });
        let published = |key: u32, crl_number: i64, certificates: u32| CrlPublished {
            key,
            crl_number,
            certificates,
        };
        // (case, previous, steps, CRLs after the pass, matched, expected)
        type Row = (
            &'static str,
            Vec<CrlPublished>,
            Vec<CrlStep>,
            Vec<Option<CrlSummary>>,
            Vec<LedgerEntry>,
            Vec<CrlPublished>,
        );
        let rows: Vec<Row> = vec![
            (
                "first pass: the CRL it signed",
                vec![],
                vec![step(0)],
                vec![crl(7)],
                vec![on_key("0a", 0), on_key("0b", 0)],
                vec![published(0, 7, 2)],
            ),
            (
                "a later pass keeps the first number",
                vec![published(0, 7, 2)],
                vec![step(0)],
                vec![crl(9)],
                vec![on_key("0a", 0), on_key("0b", 0)],
                vec![published(0, 7, 2)],
            ),
            (
                "more certificates found (a shard readable again): the CRL that lists them all",
                vec![published(0, 7, 1)],
                vec![step(0)],
                vec![crl(9)],
                vec![on_key("0a", 0), on_key("0b", 0)],
                vec![published(0, 9, 2)],
            ),
            (
                "two keys during a rotation, each its own CRL; a key with none of them is left out",
                vec![],
                vec![step(1), step(0), step(2)],
                vec![crl(3), crl(12), crl(1)],
                vec![on_key("0a", 0), on_key("0b", 1)],
                vec![published(0, 12, 1), published(1, 3, 1)],
            ),
            (
                "a CA that signs no CRL",
                vec![],
                vec![],
                vec![],
                vec![on_key("0a", 0)],
                vec![],
            ),
            (
                "a key whose CRL is not there",
                vec![],
                vec![step(0)],
                vec![None],
                vec![on_key("0a", 0)],
                vec![],
            ),
        ];
        for (case, previous, steps, crls, matched, expected) in rows {
            assert_eq!(
                crl_published(&previous, &steps, &crls, &matched),
                expected,
                "{case}"
            );
        }
    }

    #[test]
    fn a_blocked_revocation_keeps_what_it_recorded() {
        let mut r = rev();
        r.status = Some(CertificateRevocationStatus {
            revoked_certificates: Some(2),
            ..Default::default()
        });
        let out = blocked(
            &r,
            Blocked::new(Reason::IssuerNotFound, "no CA", Some(WAITING_RETRY)),
            now(),
        );
        assert!(!out.ready);
        assert_eq!(out.status.revoked_certificates, Some(2));
        let ready = conditions::find(&out.status.conditions, READY).expect("Ready");
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("False", "IssuerNotFound")
        );
    }

    #[test]
    fn a_revocation_keeps_what_it_recorded_until_it_expires() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-05-01T00:00:00Z")
            .expect("time")
            .to_utc();
        let entry = |serial: &str, not_after_h: i64| LedgerEntry {
            serial: serial.into(),
            issued_at: (now - chrono::Duration::hours(1)).timestamp(),
            not_after: (now + chrono::Duration::hours(not_after_h)).timestamp(),
            organizations: Vec::new(),
            dns_names: Vec::new(),
            ip_addresses: Vec::new(),
            uris: vec![],
            certificate: None,
            revoked: Some(crate::core::ledger::Revocation {
                at: now.timestamp(),
                reason: RevocationReason::KeyCompromise,
            }),
            key: 1,
            fingerprint: None,
        };
        let first = records(&[], &[entry("0b", 5), entry("0a", 5)], now);
        assert_eq!(
            first
                .iter()
                .map(|r| r.serial_number.as_str())
                .collect::<Vec<_>>(),
            ["0a", "0b"]
        );
        assert_eq!(first[0].key, 1);
        assert_eq!(first[0].reason, RevocationReason::KeyCompromise);
        // Its shard lost: "0a" is no longer matched, and is still recorded.
        let again = records(&first, &[entry("0b", 5), entry("0c", 5)], now);
        assert_eq!(
            again
                .iter()
                .map(|r| r.serial_number.as_str())
                .collect::<Vec<_>>(),
            ["0a", "0b", "0c"]
        );
        let later = now + chrono::Duration::hours(6);
        assert!(records(&again, &[], later).is_empty(), "all expired");
        let many: Vec<LedgerEntry> = (0..MAX_RECORDED_SERIALS + 5)
            .map(|i| entry(&format!("{i:x}"), 5))
            .collect();
        assert_eq!(records(&[], &many, now).len(), MAX_RECORDED_SERIALS);
    }
}
