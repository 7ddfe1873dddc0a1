//! The CRLs this replica serves: each as it was verified or signed, kept
//! in memory by its path (`crl_path`).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::RwLock;

use chrono::{DateTime, Utc};

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
