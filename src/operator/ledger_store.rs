//! Where the ledger lives: per CA, up to `ledger::SHARDS` ConfigMaps in the
//! operator's namespace, each holding the JSON entries of the serials that
//! hash to it. Writes are read-modify-replace at the read resourceVersion,
//! retried on conflict, so concurrent writers never lose an entry.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{ListParams, ObjectMeta, PostParams};
use kube::{Api, ResourceExt};

use super::{Context, Error};
use crate::api::meta;
use crate::ledger::{self, LedgerEntry, RevocationRule};
use crate::pki::RevocationReason;

const ENTRIES_KEY: &str = "entries.json";
const CONFLICT_RETRIES: usize = 8;

/// A short, stable, label-safe identifier of a CA name.
pub fn ca_key(ca: &str) -> String {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, ca.as_bytes());
    d.as_ref()[..6].iter().map(|b| format!("{b:02x}")).collect()
}

fn shard_name(ca: &str, shard: usize) -> String {
    format!("certop-ledger-{}-{shard:02}", ca_key(ca))
}

fn selector(ca: &str) -> String {
    format!("{}={}", meta::LEDGER, ca_key(ca))
}

fn entries_of(cm: &ConfigMap) -> Vec<LedgerEntry> {
    cm.data
        .as_ref()
        .and_then(|d| d.get(ENTRIES_KEY))
        .and_then(|j| serde_json::from_str(j).ok())
        .unwrap_or_default()
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
    let mut attempt = 0;
    loop {
        attempt += 1;
        let existing = api.get_opt(&name).await?;
        let mut entries = existing.as_ref().map(entries_of).unwrap_or_default();
        ledger::prune(&mut entries, now);
        let result = change(&mut entries);
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
            data: Some(BTreeMap::from([(
                ENTRIES_KEY.into(),
                serde_json::to_string(&entries)?,
            )])),
            ..Default::default()
        };
        let written = match &existing {
            None => api.create(&PostParams::default(), &cm).await,
            Some(_) => api.replace(&name, &PostParams::default(), &cm).await,
        };
        match written {
            Ok(_) => return Ok(result),
            Err(kube::Error::Api(s)) if (s.code == 409) && attempt < CONFLICT_RETRIES => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Records an issued certificate. Called before the certificate is handed
/// out, so the ledger never misses a certificate that exists.
pub async fn record(
    ctx: &Context,
    ca: &str,
    entry: LedgerEntry,
    now: DateTime<Utc>,
) -> Result<(), Error> {
    let shard = ledger::shard_of(&entry.serial);
    modify_shard(ctx, ca, shard, now, |entries| {
        entries.retain(|e| e.serial != entry.serial);
        entries.push(entry.clone());
    })
    .await
}

/// Every live entry of a CA.
pub async fn load(ctx: &Context, ca: &str) -> Result<Vec<LedgerEntry>, Error> {
    let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
    let list = api
        .list(&ListParams::default().labels(&selector(ca)))
        .await?;
    Ok(list.items.iter().flat_map(entries_of).collect())
}

/// Revokes what the rule matches, shard by shard; returns the newly revoked.
/// A serial the ledger does not know (a certificate issued elsewhere by the
/// same CA) is revoked too, and listed until `unknown_until` (the CA's
/// notAfter), since its own notAfter is unknown.
pub async fn revoke(
    ctx: &Context,
    ca: &str,
    rule: &RevocationRule,
    reason: RevocationReason,
    now: DateTime<Utc>,
    unknown_until: DateTime<Utc>,
) -> Result<Vec<LedgerEntry>, Error> {
    let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
    let shards: Vec<usize> = if rule.organizations.is_empty()
        && rule.dns_names.is_empty()
        && rule.ip_addresses.is_empty()
    {
        rule.serials.iter().map(|s| ledger::shard_of(s)).collect()
    } else {
        api.list_metadata(&ListParams::default().labels(&selector(ca)))
            .await?
            .items
            .iter()
            .filter_map(|m| m.name_any().rsplit('-').next().and_then(|n| n.parse().ok()))
            .collect()
    };
    let mut revoked = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for shard in shards {
        if seen.insert(shard) {
            let change = |entries: &mut Vec<LedgerEntry>| {
                let mut newly = ledger::revoke(entries, rule, reason, now);
                for serial in rule.serials.iter().filter(|s| ledger::shard_of(s) == shard) {
                    if !entries.iter().any(|e| &e.serial == serial) {
                        let entry = LedgerEntry {
                            serial: serial.clone(),
                            issued_at: 0,
                            not_after: unknown_until.timestamp(),
                            organizations: Vec::new(),
                            dns_names: Vec::new(),
                            ip_addresses: Vec::new(),
                            certificate: None,
                            revoked: Some(ledger::Revocation {
                                at: now.timestamp(),
                                reason,
                            }),
                        };
                        entries.push(entry.clone());
                        newly.push(entry);
                    }
                }
                newly
            };
            revoked.extend(modify_shard(ctx, ca, shard, now, change).await?);
        }
    }
    Ok(revoked)
}
