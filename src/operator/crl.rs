//! Publishing CRLs: signed by the leader, stored in a ConfigMap in the
//! operator's namespace (DER in binaryData, PEM in data), and served over
//! HTTP by every replica from what the ConfigMap holds.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::RwLock;

use chrono::{DateTime, Utc};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use tracing::info;

use super::authority_cache::KeyRing;
use super::context::FIELD_MANAGER;
use super::ledger_store::{self, ca_key};
use super::{Context, Error};
use crate::api::{CertificateAuthority, meta};
use crate::ledger;
use crate::pki::{Authority, CertificateInfo, CrlRequest, RevokedEntry, build_crl, parse_crl};

pub const DER_KEY: &str = "crl.der";
pub const PEM_KEY: &str = "crl.pem";
const NUMBER_ANNOTATION: &str = "certop.dev/crl-number";
const THIS_UPDATE_ANNOTATION: &str = "certop.dev/crl-this-update";
const NEXT_UPDATE_ANNOTATION: &str = "certop.dev/crl-next-update";
const ENTRIES_ANNOTATION: &str = "certop.dev/crl-entries";
/// The API server refuses objects over 1 MiB; leave room for metadata.
const MAX_STORED_BYTES: usize = 900 * 1024;
/// A CRL larger than one object is stored DER-only in parts of this size,
/// `<name>-part-<i>`, after which the main object names the count and the
/// SHA-256 of the whole; every replica reassembles it.
const PART_BYTES: usize = 900 * 1024;
/// Beyond this many parts (≈ 57 MB, over a million entries) the leader
/// alone serves the CRL, from memory.
const MAX_PARTS: usize = 64;
const PARTS_ANNOTATION: &str = "certop.dev/crl-parts";
const SHA256_ANNOTATION: &str = "certop.dev/crl-sha256";
const PART_ANNOTATION: &str = "certop.dev/crl-part";
const PART_KEY: &str = "part";

/// A CRL as replicas serve it.
#[derive(Clone, Debug, PartialEq)]
pub struct PublishedCrl {
    pub der: Vec<u8>,
    pub pem: String,
    pub number: u64,
    pub this_update: DateTime<Utc>,
    pub next_update: DateTime<Utc>,
    pub entries: usize,
    /// False when the CRL outgrew one object and only the leader serves it.
    pub stored: bool,
    /// The serials it lists, lower-case hex as the ledger writes them.
    pub serials: BTreeSet<String>,
}

/// The CRLs this replica serves, by CA name.
#[derive(Default)]
pub struct CrlCache {
    crls: RwLock<HashMap<String, PublishedCrl>>,
}

impl CrlCache {
    pub fn get(&self, ca: &str) -> Option<PublishedCrl> {
        self.crls.read().ok()?.get(ca).cloned()
    }

    /// Keeps the newer of what is cached and `crl` (by CRL number).
    pub fn offer(&self, ca: &str, crl: PublishedCrl) {
        if let Ok(mut crls) = self.crls.write() {
            let newer = crls.get(ca).is_none_or(|c| c.number <= crl.number);
            if newer {
                crls.insert(ca.to_string(), crl);
            }
        }
    }

    pub fn forget(&self, ca: &str) {
        if let Ok(mut crls) = self.crls.write() {
            crls.remove(ca);
        }
    }
}

/// The ConfigMap holding the CRL of key `index` of a CA.
pub fn config_map_name(ca: &str, index: u32) -> String {
    match index {
        0 => format!("certop-crl-{}", ca_key(ca)),
        n => format!("certop-crl-{}-{n}", ca_key(ca)),
    }
}

/// Where the CRL of key `index` of a CA is served, under `/crl/` and
/// before `.crl`: the CA's name for its first key (so certificates issued
/// before any rotation keep their distribution point), `<ca>/<index>`
/// for a key a rotation made. It is also this CRL's name in the cache.
pub fn crl_path(ca: &str, index: u32) -> String {
    match index {
        0 => ca.to_string(),
        n => format!("{ca}/{n}"),
    }
}

const KEY_INDEX_ANNOTATION: &str = meta::CA_KEY_INDEX;

/// Reads a CRL ConfigMap as replicas serve it: only a DER that parses as a
/// CRL, whose number is the one annotated and whose PEM is the same CRL, is
/// served; given the CA, its signature is checked too. Anything else (a
/// tampered object) is refused, and the cache keeps what it had. Returns
/// the CRL's path (`crl_path`) with it.
/// A CRL's DER as part ConfigMaps (for the main object `main`), and the
/// annotations the main object then carries: the count and the SHA-256.
pub fn parts_of(
    main: &str,
    namespace: &str,
    ca: &str,
    number: u64,
    labels: &BTreeMap<String, String>,
    der: &[u8],
) -> (Vec<ConfigMap>, BTreeMap<String, String>) {
    let parts: Vec<ConfigMap> = der
        .chunks(PART_BYTES)
        .enumerate()
        .map(|(i, chunk)| ConfigMap {
            metadata: ObjectMeta {
                name: Some(part_name(main, i)),
                namespace: Some(namespace.to_string()),
                labels: Some(labels.clone()),
                annotations: Some(BTreeMap::from([
                    (meta::CERTIFICATE_AUTHORITY.to_string(), ca.to_string()),
                    (PART_ANNOTATION.to_string(), i.to_string()),
                    (NUMBER_ANNOTATION.to_string(), number.to_string()),
                ])),
                ..Default::default()
            },
            binary_data: Some(BTreeMap::from([(
                PART_KEY.to_string(),
                ByteString(chunk.to_vec()),
            )])),
            ..Default::default()
        })
        .collect();
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der);
    let marks = BTreeMap::from([
        (PARTS_ANNOTATION.to_string(), parts.len().to_string()),
        (
            SHA256_ANNOTATION.to_string(),
            digest.as_ref().iter().map(|b| format!("{b:02x}")).collect(),
        ),
    ]);
    (parts, marks)
}

/// The name of part `i` of a CRL stored in parts.
pub fn part_name(main: &str, i: usize) -> String {
    format!("{main}-part-{i}")
}

/// Whether a CRL ConfigMap is a part of another (not a CRL of its own).
pub fn is_part(cm: &ConfigMap) -> bool {
    cm.annotations().contains_key(PART_ANNOTATION)
}

/// The main ConfigMap a part belongs to.
pub fn main_of_part(cm: &ConfigMap) -> Option<String> {
    let name = cm.name_any();
    let (main, _) = name.rsplit_once("-part-")?;
    Some(main.to_string())
}

/// The DER of a CRL stored in parts: every part present, of the main
/// object's number, in order, and the whole with the SHA-256 it names.
fn assemble(main: &ConfigMap, part: impl Fn(&str) -> Option<ConfigMap>) -> Option<Vec<u8>> {
    let a = main.annotations();
    let count: usize = a.get(PARTS_ANNOTATION)?.parse().ok()?;
    if count == 0 || count > MAX_PARTS {
        return None;
    }
    let number = a.get(NUMBER_ANNOTATION)?;
    let mut der = Vec::new();
    for i in 0..count {
        let p = part(&part_name(&main.name_any(), i))?;
        if p.annotations().get(NUMBER_ANNOTATION) != Some(number) {
            return None;
        }
        der.extend_from_slice(&p.binary_data.as_ref()?.get(PART_KEY)?.0);
    }
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &der);
    let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    (a.get(SHA256_ANNOTATION) == Some(&hex)).then_some(der)
}

/// `from_config_map` for a CRL that may be stored in parts: `part` finds
/// a part ConfigMap by name.
pub fn from_config_maps(
    cm: &ConfigMap,
    part: impl Fn(&str) -> Option<ConfigMap>,
    ca: Option<&CertificateInfo>,
) -> Option<(String, PublishedCrl)> {
    if cm.annotations().contains_key(PARTS_ANNOTATION) {
        let der = assemble(cm, part)?;
        let pem = crate::pki::pem_encode("X509 CRL", &der);
        return parsed_crl(cm, der, pem, ca);
    }
    let der = cm.binary_data.as_ref()?.get(DER_KEY)?.0.clone();
    let pem = cm
        .data
        .as_ref()
        .and_then(|d| d.get(PEM_KEY))
        .cloned()
        .unwrap_or_default();
    parsed_crl(cm, der, pem, ca)
}

/// A stored CRL as served, once its DER and PEM are at hand.
fn parsed_crl(
    cm: &ConfigMap,
    der: Vec<u8>,
    pem: String,
    ca: Option<&CertificateInfo>,
) -> Option<(String, PublishedCrl)> {
    let a = cm.annotations();
    let index: u32 = match a.get(KEY_INDEX_ANNOTATION) {
        Some(i) => i.parse().ok()?,
        None => 0,
    };
    let name = crl_path(a.get(meta::CERTIFICATE_AUTHORITY)?, index);
    let number: u64 = a.get(NUMBER_ANNOTATION)?.parse().ok()?;
    let parsed = parse_crl(&der, ca).ok()?;
    let pem_der = pem::parse(pem.as_bytes()).ok().map(|p| p.into_contents());
    if parsed.number != Some(number) || pem_der.as_deref() != Some(der.as_slice()) {
        return None;
    }
    Some((
        name,
        PublishedCrl {
            der,
            pem,
            number,
            this_update: parsed.this_update,
            next_update: parsed.next_update?,
            entries: parsed.entries.len(),
            stored: true,
            serials: parsed
                .entries
                .iter()
                .map(|(s, _, _)| s.to_string())
                .collect(),
        },
    ))
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

/// Whether the CRL ConfigMap holds a CRL this CA signed that is at least
/// as new as `expected` (what this replica last published); None when it
/// must be published again (missing, tampered, or older).
pub async fn verify_stored(
    ctx: &Context,
    ca: &CertificateAuthority,
    authority: &Authority,
    index: u32,
) -> Result<Option<PublishedCrl>, Error> {
    let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
    let path = crl_path(&ca.name_any(), index);
    let Some(cm) = api.get_opt(&config_map_name(&ca.name_any(), index)).await? else {
        return Ok(None);
    };
    if cm.annotations().contains_key(TOO_LARGE_ANNOTATION) {
        return Ok(ctx.crls.get(&path));
    }
    let mut parts = BTreeMap::new();
    let count: usize = cm
        .annotations()
        .get(PARTS_ANNOTATION)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    for i in 0..count.min(MAX_PARTS) {
        let name = part_name(&cm.name_any(), i);
        if let Some(p) = api.get_opt(&name).await? {
            parts.insert(name, p);
        }
    }
    let stored = from_config_maps(
        &cm,
        |n| parts.get(n).cloned(),
        Some(authority.certificate()),
    )
    .map(|(_, crl)| crl);
    let cached = ctx.crls.get(&path).map(|c| c.number);
    Ok(stored.filter(|s| cached.is_none_or(|n| s.number >= n)))
}

const TOO_LARGE_ANNOTATION: &str = "certop.dev/crl-too-large";

/// Signs a new CRL of key `index` from the ledger (the entries that key
/// signed) and publishes it. The CRL number is one
/// more than the highest ever published for this CA (what the ConfigMap and
/// the CA's status say), so it only ever increases, across restarts and
/// leader changes; the ConfigMap is replaced at the version read, so two
/// writers cannot publish the same number.
///
/// A CRL never loses an entry: what the previous CRL listed (read back from
/// the ConfigMap, if this CA signed it) stays listed even when the ledger
/// shard that held it became unreadable or was deleted; such an entry
/// stays until the CA itself expires, since its certificate's notAfter is
/// no longer known. One signer at a time per CA (a lock), so numbers are
/// never raced for.
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
    let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
    let cm_name = config_map_name(&name, index);
    let (validity, _) = schedule(ca);
    let ledger = ledger_store::load(ctx, &name).await?;
    let mut revoked = ledger::revoked_entries(ledger.entries.iter().filter(|e| e.key == index));
    loop {
        let existing = api.get_opt(&cm_name).await?;
        let previous = existing
            .as_ref()
            .and_then(|cm| cm.binary_data.as_ref()?.get(DER_KEY).cloned())
            .and_then(|der| parse_crl(&der.0, Some(authority.certificate())).ok());
        if let Some(previous) = previous {
            let listed: BTreeSet<String> = revoked.iter().map(|e| e.serial.to_string()).collect();
            for (serial, revoked_at, reason) in previous.entries {
                if !listed.contains(&serial.to_string()) {
                    revoked.push(RevokedEntry {
                        serial,
                        revoked_at,
                        reason,
                        not_after: authority.certificate().not_after,
                    });
                }
            }
        }
        let stored_number = existing.as_ref().and_then(|c| {
            c.annotations()
                .get(NUMBER_ANNOTATION)
                .and_then(|n| n.parse::<u64>().ok())
        });
        let status_number = ca
            .status
            .as_ref()
            .and_then(|s| s.crl_number)
            .and_then(|n| u64::try_from(n).ok());
        let cached_number = ctx.crls.get(&path).map(|c| c.number);
        let highest = stored_number
            .max(status_number)
            .max(cached_number)
            .unwrap_or(0);
        let Some(number) = highest.checked_add(1) else {
            return Err(Error::CrlNumberExhausted(format!(
                "the CRL number of CertificateAuthority {name} is at its maximum ({highest}); certop will not let it go down, so the last CRL is served until it expires"
            )));
        };
        let this_update = crate::pki::whole_seconds(now);
        let next_update = this_update + validity;
        let signed = build_crl(
            authority,
            &CrlRequest {
                number,
                this_update,
                next_update,
                entries: &revoked,
            },
        )
        .map_err(|source| Error::Pki {
            what: format!("signing the CRL of CertificateAuthority {name}"),
            source,
        })?;
        let fits = signed.der.len() + signed.pem.len() < MAX_STORED_BYTES;
        let part_count = signed.der.len().div_ceil(PART_BYTES);
        let in_parts = !fits && part_count <= MAX_PARTS;
        let published = PublishedCrl {
            der: signed.der.clone(),
            pem: signed.pem.clone(),
            number,
            this_update,
            next_update,
            entries: signed.entry_count,
            stored: fits || in_parts,
            serials: revoked
                .iter()
                .filter(|e| e.not_after >= this_update)
                .map(|e| e.serial.to_string())
                .collect(),
        };
        let mut annotations = BTreeMap::from([
            (meta::CERTIFICATE_AUTHORITY.to_string(), name.clone()),
            (KEY_INDEX_ANNOTATION.to_string(), index.to_string()),
            (NUMBER_ANNOTATION.to_string(), number.to_string()),
            (THIS_UPDATE_ANNOTATION.to_string(), this_update.to_rfc3339()),
            (NEXT_UPDATE_ANNOTATION.to_string(), next_update.to_rfc3339()),
            (
                ENTRIES_ANNOTATION.to_string(),
                signed.entry_count.to_string(),
            ),
        ]);
        let labels = BTreeMap::from([
            (
                meta::MANAGED_BY.to_string(),
                meta::MANAGED_BY_VALUE.to_string(),
            ),
            (meta::CRL.to_string(), ca_key(&name)),
        ]);
        if in_parts {
            // The parts first, each with the number it belongs to; the
            // main object, written last at the version read, makes them
            // the CRL. A reader that sees parts of another number waits.
            let (parts, marks) = parts_of(
                &cm_name,
                &ctx.namespace,
                &name,
                number,
                &labels,
                &signed.der,
            );
            for part in &parts {
                api.patch(
                    &part.name_any(),
                    &PatchParams::apply(FIELD_MANAGER).force(),
                    &Patch::Apply(part),
                )
                .await?;
            }
            annotations.extend(marks);
        } else if !fits {
            annotations.insert(TOO_LARGE_ANNOTATION.into(), signed.der.len().to_string());
        }
        let cm = ConfigMap {
            metadata: ObjectMeta {
                name: Some(cm_name.clone()),
                namespace: Some(ctx.namespace.clone()),
                labels: Some(labels),
                annotations: Some(annotations),
                resource_version: existing.as_ref().and_then(|c| c.resource_version()),
                ..Default::default()
            },
            // Too large for one object: stored in parts, or (too large even
            // for those) only the number, so it never goes back, with the
            // leader serving the CRL from memory.
            binary_data: fits.then(|| BTreeMap::from([(DER_KEY.into(), ByteString(signed.der))])),
            data: fits.then(|| BTreeMap::from([(PEM_KEY.into(), signed.pem)])),
            ..Default::default()
        };
        let written = match &existing {
            None => api.create(&PostParams::default(), &cm).await,
            Some(_) => api.replace(&cm_name, &PostParams::default(), &cm).await,
        };
        match written {
            Ok(_) => {
                info!(ca = %name, key = index, number, entries = published.entries, "published CRL");
                ctx.crls.offer(&path, published.clone());
                ctx.metrics.crl(&path, &published);
                return Ok(published);
            }
            Err(kube::Error::Api(s)) if s.code == 409 => continue,
            Err(e) => return Err(e.into()),
        }
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
