//! Publishing CRLs: signed by the leader, stored in a ConfigMap in the
//! operator's namespace (DER in binaryData, PEM in data), and served over
//! HTTP by every replica from what the ConfigMap holds.
//!
//! What the next CRL lists, and whether a revocation needs one, is decided
//! in `next` (pure); how a CRL is laid out in ConfigMaps is `stored`
//! (pure). This file is the edge: it reads the stored CRLs and the ledger,
//! signs, and writes the copy, then the published ConfigMap.

mod next;
pub(crate) mod served;
mod stored;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use tracing::info;

pub use next::{NextCrl, NumberExhausted, Sources, must_resign, next_crl};
pub use served::{CrlCache, PublishedCrl, crl_path};
#[cfg(test)]
pub use stored::{DER_KEY, PEM_KEY, part_name, parts_of};
pub use stored::{from_config_maps, is_part, main_of_part};

use crate::api::CertificateAuthority;
use crate::core::ledger;
use crate::operator::runtime::context::FIELD_MANAGER;
use crate::operator::store::authority_cache::KeyRing;
use crate::operator::store::ledger_store::{self, ca_key};
use crate::operator::{Context, Error};
use crate::pki::{Authority, CrlRequest, RevokedEntry, build_crl, parse_crl};
use stored::{Storage, copy_labels, crl_labels, not_after_map};

/// The ConfigMap holding the CRL of key `index` of a CA.
pub fn config_map_name(ca: &str, index: u32) -> String {
    match index {
        0 => format!("certop-crl-{}", ca_key(ca)),
        n => format!("certop-crl-{}-{n}", ca_key(ca)),
    }
}

/// The ConfigMap holding certop's copy of the last CRL of key `index` of
/// a CA that it verified: not served, not watched, only read back when the
/// next CRL is signed, so that deleting or replacing the published
/// ConfigMap cannot take an entry out of the CRL.
pub fn copy_name(ca: &str, index: u32) -> String {
    match index {
        0 => format!("certop-crl-copy-{}", ca_key(ca)),
        n => format!("certop-crl-copy-{}-{n}", ca_key(ca)),
    }
}

/// (validity, how long before nextUpdate to re-sign), from the CA's spec;
/// the defaults when the spec cannot be used (its condition says why).
pub fn schedule(ca: &CertificateAuthority) -> (chrono::Duration, chrono::Duration) {
    match ca.settings() {
        Ok(s) => (s.crl_validity, s.crl_refresh_before),
        Err(_) => {
            let validity = chrono::Duration::hours(crate::api::DEFAULT_CRL_VALIDITY_HOURS);
            (validity, validity / 3)
        }
    }
}

/// Reads a stored CRL object (the published ConfigMap or certop's copy),
/// with its parts, and verifies it: only a CRL this key signed comes back.
async fn read_verified(
    api: &Api<ConfigMap>,
    cm: &ConfigMap,
    authority: &Authority,
) -> Result<Option<PublishedCrl>, Error> {
    let mut parts = BTreeMap::new();
    for name in stored::part_names(cm) {
        if let Some(p) = api.get_opt(&name).await? {
            parts.insert(name, p);
        }
    }
    Ok(
        from_config_maps(cm, |n| parts.get(n).cloned(), Some(authority.certificate()))
            .map(|(_, crl)| crl),
    )
}

/// Whether the CRL ConfigMap holds a CRL this CA signed that is at least
/// as new as what this replica last published and `floor` (the number the
/// CA's status recorded); None when it must be published again (missing,
/// tampered, or older).
pub async fn verify_stored(
    ctx: &Context,
    ca: &CertificateAuthority,
    authority: &Authority,
    index: u32,
    floor: Option<u64>,
) -> Result<Option<PublishedCrl>, Error> {
    let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
    let path = crl_path(&ca.name_any(), index);
    let Some(cm) = api.get_opt(&config_map_name(&ca.name_any(), index)).await? else {
        return Ok(None);
    };
    if stored::too_large(&cm) {
        return Ok(ctx.crls.get(&path));
    }
    let stored = read_verified(&api, &cm, authority).await?;
    let cached = ctx.crls.get(&path).map(|c| c.number).max(floor);
    Ok(stored.filter(|s| cached.is_none_or(|n| s.number >= n)))
}

/// Makes certop's copy hold `crl` (a CRL of key `index` it verified) when
/// the copy is missing, older, or fails verification: a copy lost or
/// tampered with is rebuilt from the published CRL while that is intact.
pub async fn keep_copy(
    ctx: &Context,
    ca: &CertificateAuthority,
    authority: &Authority,
    index: u32,
    crl: &PublishedCrl,
) -> Result<(), Error> {
    let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
    let name = copy_name(&ca.name_any(), index);
    let existing = api.get_opt(&name).await?;
    let current = match &existing {
        Some(cm) => read_verified(&api, cm, authority).await?,
        None => None,
    };
    if current.is_some_and(|c| c.number >= crl.number) || !crl.stored {
        return Ok(());
    }
    // A conflict is another writer's newer copy: the next pass looks again.
    write_objects(
        ctx,
        &name,
        copy_labels(&ca.name_any()),
        &ca.name_any(),
        index,
        crl,
        existing.as_ref(),
    )
    .await?;
    Ok(())
}

/// The entries CertificateRevocations of CA `ca` recorded for key
/// `index` in their status: the CRL's second source beside the ledger.
fn recorded_entries(ctx: &Context, ca: &str, index: u32) -> Vec<RevokedEntry> {
    ctx.revocations
        .state()
        .iter()
        .filter(|r| r.spec.issuer_ref.name == ca)
        .flat_map(|r| r.status.iter().flat_map(|s| s.revoked.clone()))
        .filter(|r| r.key == index)
        .filter_map(|r| {
            Some(RevokedEntry {
                serial: crate::pki::SerialNumber::from_hex(&r.serial_number)?,
                revoked_at: r.revoked_at,
                reason: r.reason,
                not_after: r.not_after,
            })
        })
        .collect()
}

/// Writes `crl` as the object `name` (the published ConfigMap or the
/// copy) with `labels`, as `stored::objects_of` lays it out: the parts
/// first, each with its number; the main object, replaced last at the
/// version read, makes them the CRL. Returns false on a conflict (another
/// writer came first).
async fn write_objects(
    ctx: &Context,
    name: &str,
    labels: BTreeMap<String, String>,
    ca: &str,
    index: u32,
    crl: &PublishedCrl,
    existing: Option<&ConfigMap>,
) -> Result<bool, Error> {
    let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
    let (parts, main) = stored::objects_of(name, &ctx.namespace, labels, ca, index, crl, existing)?;
    for part in &parts {
        api.patch(
            &part.name_any(),
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(part),
        )
        .await?;
    }
    let written = match existing {
        None => api.create(&PostParams::default(), &main).await,
        Some(_) => api.replace(name, &PostParams::default(), &main).await,
    };
    match written {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// The stored CRL objects of a key, and every CRL of the key certop can
/// verify: theirs, and the one this replica holds.
struct Stored {
    published: Option<ConfigMap>,
    copy: Option<ConfigMap>,
    verified: Vec<PublishedCrl>,
}

async fn read_stored(
    ctx: &Context,
    ca: &str,
    index: u32,
    authority: &Authority,
) -> Result<Stored, Error> {
    let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
    let published = api.get_opt(&config_map_name(ca, index)).await?;
    let copy = api.get_opt(&copy_name(ca, index)).await?;
    let mut verified = Vec::new();
    for cm in published.iter().chain(copy.iter()) {
        verified.extend(read_verified(&api, cm, authority).await?);
    }
    verified.extend(
        ctx.crls
            .get(&crl_path(ca, index))
            .filter(|c| parse_crl(&c.der, Some(authority.certificate())).is_ok()),
    );
    Ok(Stored {
        published,
        copy,
        verified,
    })
}

/// Signs `next` with the key: the CRL as it is served.
fn sign(authority: &Authority, ca: &str, next: NextCrl) -> Result<PublishedCrl, Error> {
    let signed = build_crl(
        authority,
        &CrlRequest {
            number: next.number,
            this_update: next.this_update,
            next_update: next.next_update,
            entries: &next.entries,
        },
    )
    .map_err(|source| Error::Pki {
        what: format!("signing the CRL of CertificateAuthority {ca}"),
        source,
    })?;
    let listed: Vec<&RevokedEntry> = next
        .entries
        .iter()
        .filter(|e| e.not_after >= next.this_update)
        .collect();
    Ok(PublishedCrl {
        der: signed.der,
        pem: signed.pem,
        number: next.number,
        this_update: next.this_update,
        next_update: next.next_update,
        entries: signed.entry_count,
        stored: true,
        serials: listed.iter().map(|e| e.serial.to_string()).collect(),
        not_after: listed
            .iter()
            .map(|e| (e.serial.to_string(), e.not_after.timestamp()))
            .collect(),
        incomplete: next.incomplete,
    })
}

/// Signs a new CRL of key `index` and publishes it. The CRL number is one
/// more than the highest published for this key that certop sees (what
/// the ConfigMap, certop's copy, this replica and the CA's status say),
/// and at least the clock in microseconds (`next::next_number`), so it
/// only ever increases, across restarts, leader changes and a restore of
/// older state; each object is replaced at the version read, so two
/// writers cannot publish the same number.
///
/// A CRL never loses an entry before its certificate expires: it lists
/// the union of the ledger's revoked entries (of the certificates that key
/// signed), those every CertificateRevocation of the CA recorded in its
/// status, and those of every CRL of the key certop verified (the
/// published ConfigMap, certop's copy, the one this replica holds). The
/// copy is written first, then the published ConfigMap, so the copy is
/// never older than what was published. When a ledger shard is unreadable
/// and no complete verified CRL is left, the CRL says so
/// (`incompleteness`). One signer at a time per CA (a lock), so numbers
/// are never raced for.
pub async fn publish(
    ctx: &Context,
    ca: &CertificateAuthority,
    authority: &Authority,
    index: u32,
    now: DateTime<Utc>,
) -> Result<PublishedCrl, Error> {
    let name = ca.name_any();
    let path = crl_path(&name, index);
    let lock = ctx.crl_lock(&path);
    let _guard = lock.lock().await;
    let cm_name = config_map_name(&name, index);
    let copy = copy_name(&name, index);
    let (validity, _) = schedule(ca);
    let ledger = ledger_store::load(ctx, &name).await?;
    let unreadable: Vec<String> = ledger
        .unreadable
        .iter()
        .map(ledger_store::LedgerError::shard)
        .collect();
    let status_number = ca
        .status
        .as_ref()
        .and_then(|s| s.crl_number)
        .and_then(|n| u64::try_from(n).ok());
    loop {
        let stored = read_stored(ctx, &name, index, authority).await?;
        let next = next_crl(
            Sources {
                ledger: ledger::revoked_entries(ledger.entries.iter().filter(|e| e.key == index)),
                recorded: recorded_entries(ctx, &name, index),
                previous: &stored.verified,
                numbers: &[
                    stored.published.as_ref().and_then(stored::number_of),
                    stored.copy.as_ref().and_then(stored::number_of),
                    status_number,
                    ctx.crls.get(&path).map(|c| c.number),
                ],
                ca_not_after: authority.certificate().not_after,
                unreadable_shards: &unreadable,
                published: &cm_name,
                copy: &copy,
            },
            validity,
            now,
        )
        .map_err(|NumberExhausted { highest }| {
            Error::CrlNumberExhausted(format!(
                "the CRL number of CertificateAuthority {name} is at its maximum ({highest}); certop will not let it go down, so the last CRL is served until it expires"
            ))
        })?;
        let mut published = sign(authority, &name, next)?;
        // The copy first: it is never older than what is published.
        let objects = [
            (&copy, copy_labels(&name), stored.copy.as_ref()),
            (&cm_name, crl_labels(&name), stored.published.as_ref()),
        ];
        let mut raced = false;
        for (object, labels, existing) in objects {
            if !write_objects(ctx, object, labels, &name, index, &published, existing).await? {
                raced = true;
                break;
            }
        }
        if raced {
            continue;
        }
        published.stored =
            Storage::of(&published, not_after_map(&published)?.as_ref()) != Storage::NumberOnly;
        info!(ca = %name, key = index, number = published.number, entries = published.entries, "published CRL");
        ctx.crls.offer(&path, published.clone());
        ctx.metrics.crl(&path, &published);
        return Ok(published);
    }
}

/// Publishes the CRL of every key of a CA that still has certificates to
/// answer for (the signing key and a retiring one); returns the signing
/// key's.
pub async fn publish_all(
    ctx: &Context,
    ca: &CertificateAuthority,
    ring: &KeyRing,
    now: DateTime<Utc>,
) -> Result<Option<PublishedCrl>, Error> {
    if let Some((index, previous)) = &ring.previous
        && previous.certificate().can_sign_crls
    {
        publish(ctx, ca, previous, *index, now).await?;
    }
    if ring.signing.certificate().can_sign_crls {
        return Ok(Some(
            publish(ctx, ca, &ring.signing, ring.signing_index, now).await?,
        ));
    }
    Ok(None)
}
