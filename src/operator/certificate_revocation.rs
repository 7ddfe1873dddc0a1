//! The CertificateRevocation controller: revokes what a revocation matches
//! in the CA's ledger, re-signs the CA's CRL, and has each affected
//! ClusterCertificate replaced with a new key.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, ResourceExt};
use tracing::info;

use crate::api::{
    CertificateRevocation, CertificateRevocationStatus, ClusterCertificate, MAX_RECORDED_SERIALS,
    RevocationRecord, RevokedSerial, meta,
};
use crate::core::ledger::LedgerEntry;
use crate::operator::conditions::{self, READY};
use crate::operator::reason::Reason;
use crate::operator::store::ledger_store::rule_of;
use crate::operator::{Context, Error, store::authority_cache, store::crl, store::ledger_store};

const WAITING_RETRY: Duration = Duration::from_secs(30);

pub async fn reconcile(
    rev: Arc<CertificateRevocation>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let started = std::time::Instant::now();
    let result = apply(&rev, &ctx).await;
    ctx.metrics
        .reconciled("certificaterevocation", started.elapsed().as_secs_f64());
    if result.is_ok() {
        ctx.backoff
            .reset(&format!("certificaterevocation/{}", rev.name_any()));
    }
    result
}

pub fn error_policy(rev: Arc<CertificateRevocation>, error: &Error, ctx: Arc<Context>) -> Action {
    crate::operator::runtime::backoff::retry("certificaterevocation", &rev.name_any(), error, &ctx)
}

/// Every pass recomputes what the revocation covers from the ledger and
/// finishes what is not done: marks entries, re-signs the CRL if it does not
/// list every covered serial, and marks each ClusterCertificate whose
/// certificate is covered. A pass that failed half-way is completed by the
/// next one; only a pass that did everything writes Ready.
async fn apply(rev: &CertificateRevocation, ctx: &Context) -> Result<Action, Error> {
    let name = rev.name_any();
    let now = Utc::now();
    let previous = rev.status.clone().unwrap_or_default();
    let done = conditions::is_true(&previous.conditions, READY)
        && previous.observed_generation == rev.metadata.generation;
    if done {
        return Ok(Action::await_change());
    }
    let ca_name = &rev.spec.issuer_ref.name;
    let Some(ca) = ctx.cas.get(&ObjectRef::new(ca_name)) else {
        return not_ready(
            rev,
            ctx,
            Reason::IssuerNotFound,
            format!("CertificateAuthority {ca_name} does not exist; fix spec.issuerRef.name"),
        )
        .await;
    };
    let ring = match authority_cache::keyring(ctx, &ca, now).await? {
        Ok(r) => r,
        Err(message) => return not_ready(rev, ctx, Reason::IssuerNotReady, message).await,
    };
    let reason = rev.spec.reason.unwrap_or_default();
    let rule = rule_of(rev);
    let found = ledger_store::revoke(ctx, ca_name, &rule, reason, now).await?;
    if !found.newly.is_empty() {
        info!(revocation = %name, ca = %ca_name, count = found.newly.len(), "revoked");
        ctx.metrics
            .revoked(reason.as_str(), found.newly.len() as u64);
    }

    // Each key's CRL lists what that key signed: a key's CRL is re-signed
    // when it does not list every covered certificate of that key.
    let mut crl_notes = Vec::new();
    let keys = std::iter::once((ring.signing_index, &ring.signing))
        .chain(ring.previous.iter().map(|(i, a)| (*i, a)));
    for (index, authority) in keys {
        if !authority.certificate().can_sign_crls {
            continue;
        }
        let path = crl::crl_path(ca_name, index);
        let of_key = |e: &&crate::core::ledger::LedgerEntry| e.key == index;
        let listed = ctx.crls.get(&path).is_some_and(|crl| {
            found
                .matched
                .iter()
                .filter(of_key)
                .all(|e| crl.serials.contains(&e.serial))
        });
        let crl = if listed && !found.newly.iter().any(|e| e.key == index) {
            ctx.crls.get(&path)
        } else {
            Some(crl::publish(ctx, &ca, authority, index, now).await?)
        };
        if let Some(c) = crl {
            crl_notes.push(if index == ring.signing_index {
                format!("CRL number {} lists {} certificates", c.number, c.entries)
            } else {
                format!(
                    "the retiring key's CRL number {} lists {} certificates",
                    c.number, c.entries
                )
            });
        }
    }
    let crl_note = if crl_notes.is_empty() {
        "; the CA may not sign CRLs (no cRLSign), so the replacements are the only remedy"
            .to_string()
    } else {
        format!("; {}", crl_notes.join(", "))
    };
    for entry in &found.matched {
        replace_if_current(ctx, entry, &name).await?;
    }

    let mut status = previous.clone();
    status.observed_generation = rev.metadata.generation;
    status.revoked = records(&previous.revoked, &found.matched, now);
    status.revoked_certificates = Some(found.matched.len() as i64);
    if !found.newly.is_empty() || status.last_revocation_time.is_none() && !found.matched.is_empty()
    {
        status.last_revocation_time = Some(now);
    }
    let message = format!(
        "revoked {} certificates issued by {ca_name} before {}{crl_note}",
        found.matched.len(),
        rule.issued_before.to_rfc3339()
    );
    let message = match without_digest_note(&found.matched, &rev.spec) {
        Some(note) => format!("{message}; {note}"),
        None => message,
    };
    let message = if found.unknown.is_empty() {
        message
    } else {
        format!(
            "{message}; serials {} were not issued by {ca_name} (not in its ledger) and are not listed in its CRL: fix spec.serialNumbers or spec.issuerRef",
            found.unknown.join(", ")
        )
    };
    if !found.unreadable.is_empty() {
        let shards: Vec<String> = found.unreadable.iter().map(|e| e.to_string()).collect();
        let message = format!(
            "{message}; {}. What those shards record is neither revoked nor replaced until they can be read (or are deleted); certop applies the rule again every {}s",
            shards.join("; "),
            WAITING_RETRY.as_secs()
        );
        return not_ready_with(rev, ctx, status, Reason::LedgerCorrupt, message).await;
    }
    if !found.unknown.is_empty() {
        return not_ready_with(rev, ctx, status, Reason::UnknownSerials, message).await;
    }
    conditions::set(
        &mut status.conditions,
        READY,
        true,
        "Revoked",
        &message,
        rev.metadata.generation,
        now,
    );
    ctx.apply_status::<CertificateRevocation>(&name, &status)
        .await?;
    ctx.event(rev, false, "Revoked", "Revoke", message).await;
    Ok(Action::await_change())
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
/// record does not churn). Pure.
pub fn records(
    previous: &[RevokedSerial],
    matched: &[LedgerEntry],
    now: chrono::DateTime<Utc>,
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

/// If a covered certificate is (or may be, the status lagging) a
/// ClusterCertificate's current one, records the revocation on it so its
/// controller replaces it with a new key; idempotent.
async fn replace_if_current(
    ctx: &Context,
    entry: &LedgerEntry,
    revocation: &str,
) -> Result<(), Error> {
    let Some(cert_name) = &entry.certificate else {
        return Ok(());
    };
    let Some(cert) = ctx.certificates.get(&ObjectRef::new(cert_name)) else {
        return Ok(());
    };
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
        return Ok(());
    }
    let Some(revoked) = &entry.revoked else {
        return Ok(());
    };
    let record = RevocationRecord {
        serial_number: entry.serial.clone(),
        reason: revoked.reason,
        revoked_at: crate::pki::from_unix(revoked.at),
        revocation: Some(revocation.to_string()),
    };
    let patch = serde_json::json!({
        "metadata": {"annotations": BTreeMap::from([(meta::REVOCATION, serde_json::to_string(&record)?)])}
    });
    let api: Api<ClusterCertificate> = Api::all(ctx.client.clone());
    api.patch(cert_name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    ctx.event(
        cert.as_ref(),
        true,
        "Revoked",
        "Revoke",
        format!(
            "serial {} was revoked ({}) by CertificateRevocation {revocation}; replacing it with a new key",
            entry.serial,
            revoked.reason.as_str()
        ),
    )
    .await;
    Ok(())
}

async fn not_ready(
    rev: &CertificateRevocation,
    ctx: &Context,
    reason: Reason,
    message: String,
) -> Result<Action, Error> {
    let mut status = rev.status.clone().unwrap_or_default();
    status.observed_generation = rev.metadata.generation;
    not_ready_with(rev, ctx, status, reason, message).await
}

async fn not_ready_with(
    rev: &CertificateRevocation,
    ctx: &Context,
    mut status: CertificateRevocationStatus,
    reason: Reason,
    message: String,
) -> Result<Action, Error> {
    let previous = rev.status.clone().unwrap_or_default();
    conditions::set(
        &mut status.conditions,
        READY,
        false,
        reason.as_str(),
        &message,
        rev.metadata.generation,
        Utc::now(),
    );
    if status != previous {
        ctx.apply_status::<CertificateRevocation>(&rev.name_any(), &status)
            .await?;
        ctx.event(rev, true, reason.as_str(), reason.as_str(), message)
            .await;
    }
    Ok(Action::requeue(WAITING_RETRY))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{CertificateRevocationSpec, IssuerRef};
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

    #[test]
    fn a_rule_defaults_to_what_existed_when_it_was_created() {
        let mut rev = CertificateRevocation::new(
            "r",
            CertificateRevocationSpec {
                issuer_ref: IssuerRef { name: "ca".into() },
                serial_numbers: vec!["00AB".into()],
                dns_names: vec![".corp.example".into()],
                ip_addresses: vec!["10.0.0.1".into(), "bogus".into()],
                ..Default::default()
            },
        );
        let created = chrono::DateTime::parse_from_rfc3339("2026-05-01T00:00:00Z")
            .expect("time")
            .to_utc();
        rev.metadata.creation_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                super::conditions::to_timestamp(created),
            ));
        let rule = rule_of(&rev);
        assert_eq!(rule.issued_before, created);
        assert!(rule.serials.contains("ab"));
        assert_eq!(rule.ip_addresses.len(), 1);
        let explicit = chrono::DateTime::parse_from_rfc3339("2026-04-01T00:00:00Z")
            .expect("time")
            .to_utc();
        rev.spec.issued_before = Some(explicit);
        assert_eq!(rule_of(&rev).issued_before, explicit);
    }
}
