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

use crate::api::{CertificateAuthority, meta};
use crate::core::ledger;
use crate::operator::runtime::context::FIELD_MANAGER;
use crate::operator::store::authority_cache::KeyRing;
use crate::operator::store::ledger_store::{self, ca_key};
use crate::operator::{Context, Error};
use crate::pki::{Authority, CertificateInfo, CrlRequest, RevokedEntry, build_crl, parse_crl};

pub const DER_KEY: &str = "crl.der";
pub const PEM_KEY: &str = "crl.pem";
const NUMBER_ANNOTATION: &str = "certop.dev/crl-number";
const THIS_UPDATE_ANNOTATION: &str = "certop.dev/crl-this-update";
const NEXT_UPDATE_ANNOTATION: &str = "certop.dev/crl-next-update";
const ENTRIES_ANNOTATION: &str = "certop.dev/crl-entries";
/// Set on a CRL (and its copy) certop could not prove complete: the message.
const INCOMPLETE_ANNOTATION: &str = "certop.dev/crl-incomplete";
/// Beside the DER: `{serial: notAfter}` of every entry, JSON.
const NOT_AFTER_KEY: &str = "not-after.json";
/// The notAfter map is stored up to this size (about 10,000 entries).
const MAX_NOT_AFTER_BYTES: usize = 512 * 1024;
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
    /// The notAfter (Unix seconds) of each listed certificate, as certop
    /// stored it beside the CRL: an entry carried into the next CRL leaves
    /// it when that time has passed. Empty when not stored (a CRL too large
    /// for it); carried entries then stay until the CA's own notAfter.
    pub not_after: BTreeMap<String, i64>,
    /// Why certop could not prove this CRL lists every revoked certificate
    /// of its key, if it could not (see `incompleteness`).
    pub incomplete: Option<String>,
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
    let serials: BTreeSet<String> = parsed
        .entries
        .iter()
        .map(|(s, _, _)| s.to_string())
        .collect();
    // Only for what the CRL lists: the map is not signed, so it can date
    // an entry of the CRL, never add one.
    let not_after = cm
        .data
        .as_ref()
        .and_then(|d| d.get(NOT_AFTER_KEY))
        .and_then(|json| serde_json::from_str::<BTreeMap<String, i64>>(json).ok())
        .unwrap_or_default()
        .into_iter()
        .filter(|(serial, _)| serials.contains(serial))
        .collect();
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
            serials,
            not_after,
            incomplete: a.get(INCOMPLETE_ANNOTATION).cloned(),
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

/// Reads a stored CRL object (the published ConfigMap or certop's copy),
/// with its parts, and verifies it: only a CRL this key signed comes back.
async fn read_verified(
    api: &Api<ConfigMap>,
    cm: &ConfigMap,
    authority: &Authority,
) -> Result<Option<PublishedCrl>, Error> {
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
    if cm.annotations().contains_key(TOO_LARGE_ANNOTATION) {
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
    let labels = copy_labels(&ca.name_any());
    // A conflict is another writer's newer copy: the next pass looks again.
    write_objects(
        &api,
        &ctx.namespace,
        &name,
        labels,
        ca,
        index,
        crl,
        existing.as_ref(),
    )
    .await?;
    Ok(())
}

const TOO_LARGE_ANNOTATION: &str = "certop.dev/crl-too-large";

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

fn crl_labels(ca: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            meta::MANAGED_BY.to_string(),
            meta::MANAGED_BY_VALUE.to_string(),
        ),
        (meta::CRL.to_string(), ca_key(ca)),
    ])
}

fn copy_labels(ca: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            meta::MANAGED_BY.to_string(),
            meta::MANAGED_BY_VALUE.to_string(),
        ),
        (meta::CRL_COPY.to_string(), ca_key(ca)),
    ])
}

/// How a CRL is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Storage {
    /// DER, PEM and the notAfter map in one object.
    Whole,
    /// The DER in parts (and the map, if any, in the main object).
    Parts,
    /// Too large even for parts: only the number is stored, the leader
    /// serves it from memory.
    NumberOnly,
}

impl Storage {
    fn of(crl: &PublishedCrl, map: Option<&String>) -> Storage {
        let map_len = map.map_or(0, String::len);
        if crl.der.len() + crl.pem.len() + map_len < MAX_STORED_BYTES {
            Storage::Whole
        } else if crl.der.len().div_ceil(PART_BYTES) <= MAX_PARTS {
            Storage::Parts
        } else {
            Storage::NumberOnly
        }
    }
}

/// The notAfter map stored beside a CRL's DER, when it is small enough.
fn not_after_map(crl: &PublishedCrl) -> Result<Option<String>, Error> {
    let map = serde_json::to_string(&crl.not_after)?;
    Ok((map.len() <= MAX_NOT_AFTER_BYTES).then_some(map))
}

/// Writes `crl` as the object `name` (the published ConfigMap or the
/// copy) with `labels`: DER and PEM in one object when they fit, else the
/// DER in parts (written first, each with its number; the main object,
/// replaced last at the version read, makes them the CRL), else only the
/// number, so it never goes back. The notAfter map goes beside the DER when
/// it fits. Returns false on a conflict (another writer came first).
#[allow(clippy::too_many_arguments)]
async fn write_objects(
    api: &Api<ConfigMap>,
    namespace: &str,
    name: &str,
    labels: BTreeMap<String, String>,
    ca: &CertificateAuthority,
    index: u32,
    crl: &PublishedCrl,
    existing: Option<&ConfigMap>,
) -> Result<bool, Error> {
    let ca_name = ca.name_any();
    let mut annotations = BTreeMap::from([
        (meta::CERTIFICATE_AUTHORITY.to_string(), ca_name.clone()),
        (KEY_INDEX_ANNOTATION.to_string(), index.to_string()),
        (NUMBER_ANNOTATION.to_string(), crl.number.to_string()),
        (
            THIS_UPDATE_ANNOTATION.to_string(),
            crl.this_update.to_rfc3339(),
        ),
        (
            NEXT_UPDATE_ANNOTATION.to_string(),
            crl.next_update.to_rfc3339(),
        ),
        (ENTRIES_ANNOTATION.to_string(), crl.entries.to_string()),
    ]);
    if let Some(why) = &crl.incomplete {
        annotations.insert(INCOMPLETE_ANNOTATION.to_string(), why.clone());
    }
    let map = not_after_map(crl)?;
    let storage = Storage::of(crl, map.as_ref());
    let fits = storage == Storage::Whole;
    let in_parts = storage == Storage::Parts;
    if in_parts {
        let (parts, marks) = parts_of(name, namespace, &ca_name, crl.number, &labels, &crl.der);
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
        annotations.insert(TOO_LARGE_ANNOTATION.into(), crl.der.len().to_string());
    }
    let mut data = BTreeMap::new();
    if fits {
        data.insert(PEM_KEY.to_string(), crl.pem.clone());
    }
    if let Some(map) = map.filter(|_| fits || in_parts) {
        data.insert(NOT_AFTER_KEY.to_string(), map);
    }
    let cm = ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(namespace.to_string()),
            labels: Some(labels),
            annotations: Some(annotations),
            resource_version: existing.and_then(|c| c.resource_version()),
            ..Default::default()
        },
        binary_data: fits.then(|| BTreeMap::from([(DER_KEY.into(), ByteString(crl.der.clone()))])),
        data: (!data.is_empty()).then_some(data),
        ..Default::default()
    };
    let written = match existing {
        None => api.create(&PostParams::default(), &cm).await,
        Some(_) => api.replace(name, &PostParams::default(), &cm).await,
    };
    match written {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Signs a new CRL of key `index` and publishes it. The CRL number is one
/// more than the highest ever published for this key (what the ConfigMap,
/// certop's copy, this replica and the CA's status say), so it only ever
/// increases, across restarts and leader changes; each object is replaced
/// at the version read, so two writers cannot publish the same number.
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
    let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
    let cm_name = config_map_name(&name, index);
    let copy = copy_name(&name, index);
    let (validity, _) = schedule(ca);
    let ledger = ledger_store::load(ctx, &name).await?;
    let unreadable: Vec<String> = ledger
        .unreadable
        .iter()
        .map(ledger_store::LedgerError::shard)
        .collect();
    loop {
        let existing = api.get_opt(&cm_name).await?;
        let existing_copy = api.get_opt(&copy).await?;
        let mut previous = Vec::new();
        for cm in existing.iter().chain(existing_copy.iter()) {
            previous.extend(read_verified(&api, cm, authority).await?);
        }
        previous.extend(
            ctx.crls
                .get(&path)
                .filter(|c| parse_crl(&c.der, Some(authority.certificate())).is_ok()),
        );
        let revoked = merge_entries(
            ledger::revoked_entries(ledger.entries.iter().filter(|e| e.key == index)),
            recorded_entries(ctx, &name, index),
            &previous,
            authority.certificate().not_after,
        );
        let number_of = |cm: &Option<ConfigMap>| {
            cm.as_ref().and_then(|c| {
                c.annotations()
                    .get(NUMBER_ANNOTATION)
                    .and_then(|n| n.parse::<u64>().ok())
            })
        };
        let status_number = ca
            .status
            .as_ref()
            .and_then(|s| s.crl_number)
            .and_then(|n| u64::try_from(n).ok());
        let cached_number = ctx.crls.get(&path).map(|c| c.number);
        let highest = number_of(&existing)
            .max(number_of(&existing_copy))
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
        let listed: Vec<&RevokedEntry> = revoked
            .iter()
            .filter(|e| e.not_after >= this_update)
            .collect();
        let mut published = PublishedCrl {
            der: signed.der.clone(),
            pem: signed.pem.clone(),
            number,
            this_update,
            next_update,
            entries: signed.entry_count,
            stored: true,
            serials: listed.iter().map(|e| e.serial.to_string()).collect(),
            not_after: listed
                .iter()
                .map(|e| (e.serial.to_string(), e.not_after.timestamp()))
                .collect(),
            incomplete: incompleteness(&unreadable, &previous, &cm_name, &copy),
        };
        // The copy first: it is never older than what is published.
        if !write_objects(
            &api,
            &ctx.namespace,
            &copy,
            copy_labels(&name),
            ca,
            index,
            &published,
            existing_copy.as_ref(),
        )
        .await?
        {
            continue;
        }
        if !write_objects(
            &api,
            &ctx.namespace,
            &cm_name,
            crl_labels(&name),
            ca,
            index,
            &published,
            existing.as_ref(),
        )
        .await?
        {
            continue;
        }
        published.stored =
            Storage::of(&published, not_after_map(&published)?.as_ref()) != Storage::NumberOnly;
        info!(ca = %name, key = index, number, entries = published.entries, "published CRL");
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

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use super::*;
    use crate::pki::{CaRequest, RevocationReason, SerialNumber};

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
}
