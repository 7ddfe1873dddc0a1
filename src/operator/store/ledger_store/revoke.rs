//! A revocation rule applied to a CA's ledger, in three steps: read the
//! shards it reaches, plan what it marks (pure), mark them.

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::ListParams;
use kube::{Api, ResourceExt};

use super::{LedgerError, entries_of, modify_shard, normalized, selector, shard_name};
use crate::core::ledger::{self, LedgerEntry, RevocationRule};
use crate::operator::{Context, Error};
use crate::pki::RevocationReason;

/// What a revocation rule does to a CA's ledger.
#[derive(Debug, Default)]
pub struct Revoked {
    /// Entries the rule marks now (not revoked before).
    pub newly: Vec<LedgerEntry>,
    /// Every live entry the rule covers, revoked now or before.
    pub matched: Vec<LedgerEntry>,
    /// Serials the rule names that this CA's ledger does not know (those
    /// of unreadable shards are not counted: they may be known there).
    pub unknown: Vec<String>,
    /// Shards that cannot be parsed: the rule was applied to every other
    /// one, and what these hold is neither revoked nor replaced until they
    /// are restored (or deleted).
    pub unreadable: Vec<LedgerError>,
    /// The shards the marks (and the pruning of expired entries that goes
    /// with every write) change: the ledger write.
    pub shards_to_write: Vec<usize>,
}

/// The shards of a CA's ledger a revocation rule can reach, as read.
#[derive(Debug, Default)]
pub struct RuleShards {
    /// Each readable shard's number and entries.
    pub readable: Vec<(usize, Vec<LedgerEntry>)>,
    /// Each shard that cannot be parsed: its number, and why.
    pub unreadable: Vec<(usize, LedgerError)>,
}

/// Reads the shards a rule can reach: those of the serials it names, or
/// every shard of the CA when it matches names or addresses, and those of
/// the certificates it holds (written or not). What is read
/// is the base of the write that marks (`mark`), so that write costs no
/// second read.
pub async fn read_rule_shards(
    ctx: &Context,
    ca: &str,
    rule: &RevocationRule,
) -> Result<RuleShards, Error> {
    let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
    let adopting: std::collections::BTreeSet<usize> = rule
        .certificates
        .iter()
        .map(|c| ledger::shard_of(&c.serial))
        .collect();
    let matched: std::collections::BTreeSet<usize> = if !rule.matches_by_content() {
        rule.serials.iter().map(|s| ledger::shard_of(s)).collect()
    } else {
        api.list_metadata(&ListParams::default().labels(&selector(ca)))
            .await?
            .items
            .iter()
            .filter_map(|m| m.name_any().rsplit('-').next().and_then(|n| n.parse().ok()))
            .collect()
    };
    // The certificates' shards whether or not they exist: a listing has
    // only those written, and a certificate left out of its shard would
    // never reach the CRL.
    let mut read = RuleShards::default();
    for shard in matched.union(&adopting).copied() {
        let Some(cm) = api.get_opt(&shard_name(ca, shard)).await? else {
            // A shard that does not exist yet holds nothing, but may receive
            // a certificate the rule records.
            if adopting.contains(&shard) {
                read.readable.push((shard, Vec::new()));
            }
            continue;
        };
        match entries_of(&cm) {
            Ok(entries) => {
                ctx.ledger_shards.put(cm);
                read.readable.push((shard, entries));
            }
            Err(e) => read.unreadable.push((shard, e)),
        }
    }
    Ok(read)
}

/// What the rule does to the shards read, as a write of them would do it
/// (expired entries pruned, the rule's certificates recorded, then the
/// matching ones marked). A serial the
/// ledger does not know is not listed (it is reported as unknown): a CRL
/// lists only what its CA issued. A shard that cannot be parsed is
/// reported, never written: one bad shard does not hold back what the
/// others hold. Pure.
pub fn plan_revocation(
    shards: &RuleShards,
    rule: &RevocationRule,
    reason: RevocationReason,
    now: DateTime<Utc>,
) -> Revoked {
    let mut out = Revoked {
        unreadable: shards.unreadable.iter().map(|(_, e)| e.clone()).collect(),
        ..Default::default()
    };
    let mut known = std::collections::BTreeSet::new();
    for (shard, read) in &shards.readable {
        let mut entries = read.clone();
        ledger::prune(&mut entries, now);
        ledger::adopt(&mut entries, *shard, rule, now);
        out.newly
            .extend(ledger::revoke(&mut entries, rule, reason, now));
        out.matched.extend(
            entries
                .iter()
                .filter(|e| e.revoked.is_some() && !e.is_expired(now) && rule.matches(e))
                .cloned(),
        );
        known.extend(entries.iter().map(|e| normalized(&e.serial)));
        if entries != *read {
            out.shards_to_write.push(*shard);
        }
    }
    let unreadable: std::collections::BTreeSet<usize> =
        shards.unreadable.iter().map(|(shard, _)| *shard).collect();
    out.unknown = rule
        .serials
        .iter()
        .filter(|s| !known.contains(*s) && !unreadable.contains(&ledger::shard_of(s)))
        .cloned()
        .collect();
    out
}

/// Marks what the rule matches in each of `shards` (read-modify-replace,
/// the rule applied again to what the shard holds at the write, so a
/// concurrent writer's entries are marked too). Idempotent.
pub async fn mark(
    ctx: &Context,
    ca: &str,
    shards: &[usize],
    rule: &RevocationRule,
    reason: RevocationReason,
    now: DateTime<Utc>,
) -> Result<(), Error> {
    for shard in shards {
        modify_shard(ctx, ca, *shard, now, |entries| {
            ledger::adopt(entries, *shard, rule, now);
            ledger::revoke(entries, rule, reason, now);
        })
        .await?;
    }
    Ok(())
}

/// Revokes what the rule matches, shard by shard: `read_rule_shards`,
/// `plan_revocation`, then `mark`. Idempotent: what the rule covers is
/// recomputed from the ledger on every call, so a pass that failed after
/// marking finds the same entries again.
pub async fn revoke(
    ctx: &Context,
    ca: &str,
    rule: &RevocationRule,
    reason: RevocationReason,
    now: DateTime<Utc>,
) -> Result<Revoked, Error> {
    let shards = read_rule_shards(ctx, ca, rule).await?;
    let revoked = plan_revocation(&shards, rule, reason, now);
    mark(ctx, ca, &revoked.shards_to_write, rule, reason, now).await?;
    Ok(revoked)
}
