//! Where the ledger lives: per CA, up to `ledger::SHARDS` ConfigMaps in the
//! operator's namespace, each holding the JSON entries of the serials that
//! hash to it. Writes are read-modify-replace at the read resourceVersion,
//! retried on conflict, so concurrent writers never lose an entry.

mod group;
mod revoke;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{ListParams, ObjectMeta, PostParams};
use kube::{Api, ResourceExt};

use crate::api::{CertificateRevocation, meta};
use crate::core::ledger::{self, LedgerEntry, RevocationRule};
use crate::operator::reason::Reason;
use crate::operator::{Context, Error};
use crate::pki::RevocationReason;
use group::{GroupFailure, Patience, Turn};

pub use group::RecordGroups;
pub use revoke::{Revoked, RuleShards, mark, plan_revocation, read_rule_shards, revoke};

const ENTRIES_KEY: &str = "entries.json";
const CONFLICT_RETRIES: usize = 8;
/// A shard is refused more entries past this size: the API server refuses
/// objects over 1 MiB, and a full shard must still take revocation marks.
pub const SHARD_LIMIT_BYTES: usize = 900 * 1024;

/// A ledger shard certop will not write.
#[derive(Clone, Debug, thiserror::Error)]
pub enum LedgerError {
    #[error(
        "ledger shard {shard} cannot be parsed ({reason}); certop will not overwrite it: restore it from a backup, or delete it to give up its entries"
    )]
    Corrupt { shard: String, reason: String },
    #[error(
        "ledger shard {shard} holds {bytes} bytes, at the limit of {SHARD_LIMIT_BYTES}; certificates of this CA cannot be recorded until entries expire"
    )]
    Full { shard: String, bytes: usize },
}

impl LedgerError {
    /// The name of the shard ConfigMap at fault.
    pub fn shard(&self) -> String {
        match self {
            LedgerError::Corrupt { shard, .. } | LedgerError::Full { shard, .. } => shard.clone(),
        }
    }

    pub fn reason(&self) -> Reason {
        match self {
            LedgerError::Corrupt { .. } => Reason::LedgerCorrupt,
            LedgerError::Full { .. } => Reason::LedgerFull,
        }
    }
}

/// The rule a CertificateRevocation stands for. Pure.
pub fn rule_of(rev: &CertificateRevocation) -> RevocationRule {
    let issued_before = rev
        .spec
        .issued_before
        .or_else(|| {
            rev.metadata
                .creation_timestamp
                .as_ref()
                .and_then(|t| chrono::DateTime::from_timestamp(t.0.as_second(), 0))
        })
        .unwrap_or_else(Utc::now);
    RevocationRule {
        organizations: rev.spec.organizations.clone(),
        dns_names: rev.spec.dns_names.clone(),
        ip_addresses: rev
            .spec
            .ip_addresses
            .iter()
            .filter_map(|ip| ip.parse::<std::net::IpAddr>().ok())
            .collect(),
        uris: rev.spec.uris.clone(),
        issued_before,
        ..Default::default()
    }
    .with_serials(&rev.spec.serial_numbers)
}

/// The rules of every CertificateRevocation of a CA, from the shared store.
pub fn rules_of_ca(ctx: &Context, ca: &str) -> Vec<(RevocationRule, RevocationReason)> {
    ctx.revocations
        .state()
        .iter()
        .filter(|r| r.spec.issuer_ref.name == ca && r.metadata.deletion_timestamp.is_none())
        .map(|r| (rule_of(r), r.spec.reason.unwrap_or_default()))
        .collect()
}

/// A short, stable, label-safe identifier of a CA name.
pub fn ca_key(ca: &str) -> String {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, ca.as_bytes());
    d.as_ref()[..6].iter().map(|b| format!("{b:02x}")).collect()
}

fn shard_name(ca: &str, shard: usize) -> String {
    format!("certop-ledger-{}-{shard:02}", ca_key(ca))
}

/// A shard ConfigMap as certop writes it, for tests that fill a ledger
/// without recording entries one by one.
#[cfg(test)]
pub fn shard_config_map(
    ca: &str,
    shard: usize,
    namespace: &str,
    entries: &[LedgerEntry],
) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(shard_name(ca, shard)),
            namespace: Some(namespace.to_string()),
            labels: Some(BTreeMap::from([
                (meta::MANAGED_BY.into(), meta::MANAGED_BY_VALUE.into()),
                (meta::LEDGER.into(), ca_key(ca)),
            ])),
            annotations: Some(BTreeMap::from([(
                meta::CERTIFICATE_AUTHORITY.into(),
                ca.to_string(),
            )])),
            ..Default::default()
        },
        data: Some(BTreeMap::from([(
            ENTRIES_KEY.into(),
            serde_json::to_string(entries).unwrap_or_default(),
        )])),
        ..Default::default()
    }
}

/// Every shard of `ca` as if just written: the next records for it are
/// deferred (when deferral is on), as under a backlog.
#[cfg(test)]
pub fn as_if_busy(ctx: &Context, ca: &str) {
    let names: Vec<String> = (0..ledger::SHARDS).map(|i| shard_name(ca, i)).collect();
    ctx.ledger_groups
        .written_now(names.iter().map(String::as_str));
}

fn selector(ca: &str) -> String {
    format!("{}={}", meta::LEDGER, ca_key(ca))
}

/// A shard's entries; an error, never an empty list, for what cannot be parsed.
pub fn entries_of(cm: &ConfigMap) -> Result<Vec<LedgerEntry>, LedgerError> {
    match cm.data.as_ref().and_then(|d| d.get(ENTRIES_KEY)) {
        None => Err(LedgerError::Corrupt {
            shard: cm.name_any(),
            reason: format!("no {ENTRIES_KEY}"),
        }),
        Some(json) => serde_json::from_str(json).map_err(|e| LedgerError::Corrupt {
            shard: cm.name_any(),
            reason: e.to_string(),
        }),
    }
}

/// Each shard as certop last wrote or read it: the base of the next write
/// to it, which the API server accepts only at that resourceVersion. A
/// write from a current copy costs no read; a stale one (another writer,
/// a failover, a person's edit) is refused and the shard read again. A
/// result is never taken from a copy alone: only from one a write at its
/// resourceVersion proved current, or from a read.
#[derive(Default)]
pub struct ShardCache {
    last: std::sync::Mutex<std::collections::HashMap<String, ConfigMap>>,
}

impl ShardCache {
    /// Takes the copy out, so that concurrent writers of a shard do not
    /// both start from it (the second reads the shard instead).
    fn take(&self, name: &str) -> Option<ConfigMap> {
        self.last.lock().ok().and_then(|mut last| last.remove(name))
    }

    fn put(&self, cm: ConfigMap) {
        if let Ok(mut last) = self.last.lock() {
            last.insert(cm.name_any(), cm);
        }
    }
}

/// Applies `change` to one shard and writes it back; returns what `change` returned.
async fn modify_shard<T>(
    ctx: &Context,
    ca: &str,
    shard: usize,
    now: DateTime<Utc>,
    mut change: impl FnMut(&mut Vec<LedgerEntry>) -> T,
) -> Result<T, Error> {
    let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
    let name = shard_name(ca, shard);
    let mut cached = ctx.ledger_shards.take(&name);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let from_cache = cached.is_some();
        let existing = match cached.take() {
            Some(cm) => Some(cm),
            None => api.get_opt(&name).await?,
        };
        let mut entries = match &existing {
            Some(cm) => entries_of(cm)?,
            None => Vec::new(),
        };
        let read = entries.clone();
        ledger::prune(&mut entries, now);
        let before = entries.len();
        let result = change(&mut entries);
        // Nothing to write: a repeated record or revocation costs a read
        // only, and that read is the shard's, not the copy's.
        if let Some(cm) = existing.as_ref().filter(|_| entries == read) {
            if from_cache {
                continue;
            }
            ctx.ledger_shards.put(cm.clone());
            return Ok(result);
        }
        let json = serde_json::to_string(&entries)?;
        if entries.len() > before && json.len() > SHARD_LIMIT_BYTES {
            return Err(LedgerError::Full {
                shard: name,
                bytes: json.len(),
            }
            .into());
        }
        let cm = ConfigMap {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(ctx.namespace.clone()),
                labels: Some(BTreeMap::from([
                    (meta::MANAGED_BY.into(), meta::MANAGED_BY_VALUE.into()),
                    (meta::LEDGER.into(), ca_key(ca)),
                ])),
                annotations: Some(BTreeMap::from([(
                    meta::CERTIFICATE_AUTHORITY.into(),
                    ca.to_string(),
                )])),
                resource_version: existing.as_ref().and_then(|c| c.resource_version()),
                ..Default::default()
            },
            data: Some(BTreeMap::from([(ENTRIES_KEY.into(), json)])),
            ..Default::default()
        };
        let written = match &existing {
            None => api.create(&PostParams::default(), &cm).await,
            Some(_) => api.replace(&name, &PostParams::default(), &cm).await,
        };
        match written {
            Ok(cm) => {
                ctx.ledger_shards.put(cm);
                return Ok(result);
            }
            // Stale: changed or deleted since the copy or the read.
            Err(kube::Error::Api(s))
                if (s.code == 409 || (s.code == 404 && from_cache))
                    && attempt < CONFLICT_RETRIES =>
            {
                continue;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Records a certificate a Secret holds (idempotent: an entry already
/// there keeps its revocation). A certificate signed again under a serial
/// already recorded (a PodCertificateRequest whose hand-out failed: its
/// serial is derived from the request) takes over the entry's digest and
/// dates, since it is the one handed out. The CA's revocation rules are
/// applied as it goes in, so a certificate recorded while a revocation was
/// being applied is not missed.
///
/// Records of concurrent passes to the same shard are written together
/// (`group`): this returns once the write that holds this entry succeeded,
/// and an error when it failed, in which case nothing of the group was
/// recorded.
pub async fn record(
    ctx: &Context,
    ca: &str,
    entry: LedgerEntry,
    rules: &[(RevocationRule, RevocationReason)],
    now: DateTime<Utc>,
) -> Result<Recorded, Error> {
    record_in_group(ctx, ca, entry, rules, Patience::Prompt, now).await
}

/// `record`, for a pass that may wait for more records to join its write
/// (the shard is written no sooner than `group::GATHER` after its last
/// write): the PodCertificateRequest passes, many at once, whose records
/// would otherwise cost a write each. The other
/// controllers run few passes at once, rarely meet on a shard, and are not
/// slowed by it.
pub async fn record_gathered(
    ctx: &Context,
    ca: &str,
    entry: LedgerEntry,
    rules: &[(RevocationRule, RevocationReason)],
    now: DateTime<Utc>,
) -> Result<Recorded, Error> {
    record_in_group(ctx, ca, entry, rules, Patience::Gather, now).await
}

/// What a deferred record came to so far.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Deferred {
    Recorded(Recorded),
    /// Being written with others: ask again after `DEFERRED_RETRY`.
    Pending,
}

/// How soon a pass whose record was deferred asks again: when the group it
/// joined has been written, under load.
pub const DEFERRED_RETRY: std::time::Duration =
    group::GATHER.saturating_add(std::time::Duration::from_millis(500));

/// `record`, for a pass that need not wait for its record: the
/// ClusterCertificate passes, whose next step (the status that names the
/// serial) may come in a later pass. A record for a shard that is idle is
/// written at once and waited for, as `record`. One for a busy shard (a
/// backlog: it has a writer, or was written less than `group::GATHER`
/// ago) is written by a task of its own with those of other passes, as the
/// pod certificates' are, and the pass ends with `Pending` instead of
/// holding one of the controller's few concurrent passes while it waits;
/// its next pass, or any pass of the same certificate, takes what the
/// write found. Nothing is handed out on it: until a pass takes `Recorded`
/// the status does not name the serial, which means "not yet recorded",
/// and an operator that stops meanwhile records it again (idempotent).
pub async fn record_deferred(
    ctx: &std::sync::Arc<Context>,
    ca: &str,
    entry: LedgerEntry,
    rules: &[(RevocationRule, RevocationReason)],
    now: DateTime<Utc>,
) -> Result<Deferred, Error> {
    let shard = ledger::shard_of(&entry.serial);
    let name = shard_name(ca, shard);
    let key = format!("{name}/{}", entry.serial);
    match ctx.ledger_groups.deferral(&key) {
        Some(group::Deferral::Pending) => return Ok(Deferred::Pending),
        Some(group::Deferral::Finished(found, _)) => {
            return match found {
                Ok(recorded) => Ok(Deferred::Recorded(recorded)),
                Err(GroupFailure::Ledger(e)) => Err(e.into()),
                Err(GroupFailure::Write(message)) => Err(Error::LedgerGroupWrite(message)),
            };
        }
        None => {}
    }
    if !ctx.ledger_groups.busy(&name) {
        return record_in_group(ctx, ca, entry, rules, Patience::Prompt, now)
            .await
            .map(Deferred::Recorded);
    }
    if ctx.ledger_groups.defer(&key) {
        let (ctx, ca, rules) = (ctx.clone(), ca.to_string(), rules.to_vec());
        tokio::spawn(async move {
            let found = record_in_group(&ctx, &ca, entry, &rules, Patience::Gather, now)
                .await
                .map_err(|e| match e {
                    Error::Ledger(ledger) => GroupFailure::Ledger(ledger),
                    other => GroupFailure::Write(other.to_string()),
                });
            ctx.ledger_groups.finish(key, found);
        });
    }
    Ok(Deferred::Pending)
}

async fn record_in_group(
    ctx: &Context,
    ca: &str,
    entry: LedgerEntry,
    rules: &[(RevocationRule, RevocationReason)],
    patience: Patience,
    now: DateTime<Utc>,
) -> Result<Recorded, Error> {
    let shard = ledger::shard_of(&entry.serial);
    let name = shard_name(ca, shard);
    let mut turns = ctx
        .ledger_groups
        .join(&name, entry, rules.to_vec(), patience, now);
    loop {
        match turns.recv().await {
            // The writer returns the write's own error; the rest of its
            // group are told it as text.
            Some(Turn::Write { not_before }) => {
                write_group(ctx, ca, shard, &name, not_before, now).await?;
            }
            Some(Turn::Done(recorded)) => return Ok(recorded),
            Some(Turn::Failed(GroupFailure::Ledger(e))) => return Err(e.into()),
            Some(Turn::Failed(GroupFailure::Write(message))) => {
                return Err(Error::LedgerGroupWrite(message));
            }
            None => {
                return Err(Error::LedgerGroupWrite(
                    "the pass writing the group stopped before it was written".into(),
                ));
            }
        }
    }
}

/// Writes every record queued for the shard in one write, then tells each
/// its pass.
async fn write_group(
    ctx: &Context,
    ca: &str,
    shard: usize,
    name: &str,
    not_before: Option<std::time::Instant>,
    now: DateTime<Utc>,
) -> Result<(), Error> {
    let writer = ctx.ledger_groups.writer(name);
    // The passes ready to record join the group before it is taken; for a
    // shard written less than `GATHER` ago, those until then too.
    match not_before {
        Some(t) if t > std::time::Instant::now() => {
            tokio::time::sleep_until(t.into()).await;
        }
        _ => tokio::task::yield_now().await,
    }
    let group = writer.take();
    // The rules as they are now, beside those each pass saw: a revocation
    // created while a record waited in its group covers it too. Whether a
    // rule covers a replacement as well is judged at this write, not at
    // the pass's clock: a replacement comes after it, and a revocation
    // created (its issuedBefore) since that pass began covers none.
    let current = rules_of_ca(ctx, ca);
    let written_at = Utc::now();
    let written = modify_shard(ctx, ca, shard, now, |entries| {
        group
            .iter()
            .map(|w| {
                let rules: Vec<_> = w.rules.iter().chain(&current).cloned().collect();
                record_into(entries, &w.entry, &rules, w.now.max(written_at))
            })
            .collect::<Vec<_>>()
    })
    .await;
    match written {
        Ok(found) => {
            for (waiting, recorded) in group.iter().zip(found) {
                waiting.tell(Turn::Done(recorded));
            }
            Ok(())
        }
        Err(e) => {
            let failure = match &e {
                Error::Ledger(ledger) => GroupFailure::Ledger(ledger.clone()),
                other => GroupFailure::Write(other.to_string()),
            };
            for waiting in &group {
                waiting.tell(Turn::Failed(failure.clone()));
            }
            Err(e)
        }
    }
}

/// Puts `entry` in a shard's `entries` as `record` says. Pure.
fn record_into(
    entries: &mut Vec<LedgerEntry>,
    entry: &LedgerEntry,
    rules: &[(RevocationRule, RevocationReason)],
    now: DateTime<Utc>,
) -> Recorded {
    if !entries.iter().any(|e| e.serial == entry.serial) {
        entries.push(entry.clone());
    }
    let Some(e) = entries.iter_mut().find(|e| e.serial == entry.serial) else {
        return Recorded::Live;
    };
    if e.fingerprint != entry.fingerprint && entry.fingerprint.is_some() {
        e.fingerprint = entry.fingerprint.clone();
        e.issued_at = entry.issued_at;
        e.not_after = entry.not_after;
    }
    let rule = rules.iter().find(|(rule, _)| rule.matches(e));
    if e.revoked.is_none()
        && let Some((_, reason)) = rule
    {
        e.revoked = Some(ledger::Revocation {
            at: now.timestamp(),
            reason: *reason,
        });
    }
    match (&e.revoked, rule) {
        (None, _) => Recorded::Live,
        // A rule that covers what is issued now covers any replacement too.
        (Some(_), Some((r, _))) if r.issued_before > now => Recorded::RevokedForGood,
        (Some(_), _) => Recorded::Revoked,
    }
}

/// Gives the entries of one shard without a digest the one `digests`
/// holds for their serial (read from the Secret that holds each
/// certificate); returns how many it gave. A repeated fill writes nothing.
pub async fn fill_digests(
    ctx: &Context,
    ca: &str,
    shard: usize,
    digests: &BTreeMap<String, String>,
    now: DateTime<Utc>,
) -> Result<usize, Error> {
    modify_shard(ctx, ca, shard, now, |entries| {
        ledger::fill_digests(entries, digests)
    })
    .await
}

/// What recording a certificate found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recorded {
    Live,
    /// Revoked: replace it.
    Revoked,
    /// Revoked by a rule whose issuedBefore lies in the future: a
    /// replacement would be revoked too, so none is issued.
    RevokedForGood,
}

/// A CA's ledger as read: every entry that can be read, the shards that
/// cannot, and the size of the largest shard (against `SHARD_LIMIT_BYTES`).
#[derive(Debug, Default)]
pub struct Loaded {
    pub entries: Vec<LedgerEntry>,
    pub unreadable: Vec<LedgerError>,
    pub largest_shard_bytes: usize,
}

/// Shards read per request by `load`: a page's text is dropped once its
/// entries are decoded, so the whole ledger's text is never held at once
/// (at 10,000 certificates about 2 MB of it).
const LOAD_PAGE: u32 = 16;

pub async fn load(ctx: &Context, ca: &str) -> Result<Loaded, Error> {
    let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
    let mut params = ListParams::default().labels(&selector(ca)).limit(LOAD_PAGE);
    let mut loaded = Loaded::default();
    loop {
        let page = api.list(&params).await?;
        for cm in &page.items {
            let bytes = cm
                .data
                .as_ref()
                .and_then(|d| d.get(ENTRIES_KEY))
                .map_or(0, String::len);
            loaded.largest_shard_bytes = loaded.largest_shard_bytes.max(bytes);
            match entries_of(cm) {
                Ok(e) => loaded.entries.extend(e),
                Err(e) => loaded.unreadable.push(e),
            }
        }
        match crate::list_pages::next(&params, &page.metadata) {
            Some(next) => params = next,
            None => return Ok(loaded),
        }
    }
}

fn normalized(serial: &str) -> String {
    crate::pki::SerialNumber::from_hex(serial)
        .map(|s| s.to_string())
        .unwrap_or_else(|| serial.to_string())
}
