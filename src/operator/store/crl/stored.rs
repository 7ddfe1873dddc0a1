//! How a CRL is stored in ConfigMaps, and read back: DER and PEM (and the
//! notAfter map) in one object when they fit, the DER in parts when not,
//! only the number when even that is too large. Pure: the objects are
//! built and parsed here, written and read by `crl`.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::ResourceExt;
use kube::api::ObjectMeta;

use super::{Error, PublishedCrl, crl_path};
use crate::api::meta;
use crate::operator::store::ledger_store::ca_key;
use crate::pki::{CertificateInfo, parse_crl};

pub const DER_KEY: &str = "crl.der";
pub const PEM_KEY: &str = "crl.pem";
pub(super) const NUMBER_ANNOTATION: &str = "certop.dev/crl-number";
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
pub(super) const MAX_PARTS: usize = 64;
pub(super) const PARTS_ANNOTATION: &str = "certop.dev/crl-parts";
const SHA256_ANNOTATION: &str = "certop.dev/crl-sha256";
const PART_ANNOTATION: &str = "certop.dev/crl-part";
const PART_KEY: &str = "part";
const KEY_INDEX_ANNOTATION: &str = meta::CA_KEY_INDEX;

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

/// Reads a CRL ConfigMap as replicas serve it: only a DER that parses as a
/// CRL, whose number is the one annotated and whose PEM is the same CRL, is
/// served; given the CA, its signature is checked too. Anything else (a
/// tampered object) is refused, and the cache keeps what it had. Returns
/// the CRL's path (`crl_path`) with it. A CRL stored in parts is
/// reassembled first: `part` finds a part ConfigMap by name.
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

/// Set on a CRL too large to store: its size; the leader serves it from memory.
pub(super) const TOO_LARGE_ANNOTATION: &str = "certop.dev/crl-too-large";

pub(super) fn crl_labels(ca: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            meta::MANAGED_BY.to_string(),
            meta::MANAGED_BY_VALUE.to_string(),
        ),
        (meta::CRL.to_string(), ca_key(ca)),
    ])
}

pub(super) fn copy_labels(ca: &str) -> BTreeMap<String, String> {
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
pub(super) enum Storage {
    /// DER, PEM and the notAfter map in one object.
    Whole,
    /// The DER in parts (and the map, if any, in the main object).
    Parts,
    /// Too large even for parts: only the number is stored, the leader
    /// serves it from memory.
    NumberOnly,
}

impl Storage {
    pub(super) fn of(crl: &PublishedCrl, map: Option<&String>) -> Storage {
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
pub(super) fn not_after_map(crl: &PublishedCrl) -> Result<Option<String>, Error> {
    let map = serde_json::to_string(&crl.not_after)?;
    Ok((map.len() <= MAX_NOT_AFTER_BYTES).then_some(map))
}

/// The number a CRL object is annotated with.
pub(super) fn number_of(cm: &ConfigMap) -> Option<u64> {
    cm.annotations()
        .get(NUMBER_ANNOTATION)
        .and_then(|n| n.parse().ok())
}

/// Whether a CRL object holds only the number of a CRL too large to store.
pub(super) fn too_large(cm: &ConfigMap) -> bool {
    cm.annotations().contains_key(TOO_LARGE_ANNOTATION)
}

/// The names of the parts a CRL object says it is stored in.
pub(super) fn part_names(cm: &ConfigMap) -> Vec<String> {
    let count: usize = cm
        .annotations()
        .get(PARTS_ANNOTATION)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (0..count.min(MAX_PARTS))
        .map(|i| part_name(&cm.name_any(), i))
        .collect()
}

/// The objects that store `crl` as `name` (the published ConfigMap or the
/// copy) with `labels`: the parts to write first (none when the CRL fits
/// one object or is too large even for parts), and the main object, at
/// the resourceVersion of `existing` so that it is replaced only as read.
pub(super) fn objects_of(
    name: &str,
    namespace: &str,
    labels: BTreeMap<String, String>,
    ca: &str,
    index: u32,
    crl: &PublishedCrl,
    existing: Option<&ConfigMap>,
) -> Result<(Vec<ConfigMap>, ConfigMap), Error> {
    let mut annotations = BTreeMap::from([
        (meta::CERTIFICATE_AUTHORITY.to_string(), ca.to_string()),
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
    let mut parts = Vec::new();
    if in_parts {
        let (p, marks) = parts_of(name, namespace, ca, crl.number, &labels, &crl.der);
        parts = p;
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
    let main = ConfigMap {
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
    Ok((parts, main))
}
