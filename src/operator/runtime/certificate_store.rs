//! The ClusterCertificates every reader shares, each held packed: its
//! JSON compressed against a dictionary of a typical certificate (about
//! 400 bytes of 1,170), beside a `Summary` of what is read of every certificate at
//! once (a CA pass's statuses, the metrics, a CA's triggers), unpacked.
//! A pass unpacks the one certificate it looks at.
//!
//! Why not kube-runtime's reflector store: it holds each object whole
//! (1,024 bytes inline, about 650 of strings, and a map key with its own
//! copies of the name, uid and resourceVersion), about 1.9 KB a
//! certificate, and every certificate is held all the time. At 10,000 that
//! was most of the operator's memory beyond its code.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use chrono::{DateTime, Utc};
use futures::{Stream, StreamExt};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, ResourceExt};
use tracing::warn;

use crate::api::ClusterCertificate;
use crate::operator::runtime::shared_store::{Followers, slim, watch};

/// What the packing is primed with: a certificate as certop leaves it,
/// Ready. The field names, the conditions' texts and the shapes of the
/// values are then back-references, not bytes of each certificate.
const DICTIONARY: &[u8] = br#"{"apiVersion":"certop.dev/v1","kind":"ClusterCertificate","metadata":{"creationTimestamp":"2026-01-01T00:00:00Z","finalizers":["certop.dev/cleanup"],"generation":1,"name":"certificate","resourceVersion":"1000000","uid":"00000000-0000-0000-0000-000000000000"},"spec":{"issuerRef":{"name":"ca"},"secretName":"certificate-tls","secretNamespace":"default","dnsNames":["certificate.default.svc"]},"status":{"conditions":[{"lastTransitionTime":"2026-01-01T00:00:00Z","message":"no issuance needed","observedGeneration":1,"reason":"UpToDate","status":"False","type":"Issuing"},{"lastTransitionTime":"2026-01-01T00:00:00Z","message":"certificate serial 00000000000000000000000000000000 is valid until 2026-01-01T00:00:00+00:00","observedGeneration":1,"reason":"Issued","status":"True","type":"Ready"}],"observedGeneration":1,"secret":"default/certificate-tls","notBefore":"2026-01-01T00:00:00Z","notAfter":"2026-01-01T00:00:00Z","renewalTime":"2026-01-01T00:00:00Z","serialNumber":"00000000000000000000000000000000","fingerprint":"00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00","revision":1,"secretVersion":{"resourceVersion":"1000000"}}}"#;

/// The Ready condition's status, as the metrics export it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Readiness {
    True,
    False,
    Unknown,
}

impl Readiness {
    pub fn as_str(self) -> &'static str {
        match self {
            Readiness::True => "True",
            Readiness::False => "False",
            Readiness::Unknown => "Unknown",
        }
    }
}

/// What is read of every certificate at once, kept unpacked. The issuer
/// and namespace are shared with every other certificate that names them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Summary {
    pub issuer: Arc<str>,
    pub secret_namespace: Arc<str>,
    pub secret_name: Box<str>,
    pub serial: Option<Box<str>>,
    pub not_after: Option<DateTime<Utc>>,
    pub renewal_time: Option<DateTime<Utc>>,
    pub ready: Readiness,
}

#[derive(Debug)]
struct Packed {
    summary: Summary,
    object: Box<[u8]>,
}

#[derive(Debug, Default)]
struct State {
    entries: HashMap<Arc<str>, Packed>,
    /// A re-list's objects, until it is done (then they replace `entries`).
    relisting: Option<HashMap<Arc<str>, Packed>>,
    /// The issuers' and namespaces' names, one allocation each.
    words: HashSet<Arc<str>>,
}

impl State {
    fn word(&mut self, word: &str) -> Arc<str> {
        if let Some(w) = self.words.get(word) {
            return w.clone();
        }
        let w: Arc<str> = Arc::from(word);
        self.words.insert(w.clone());
        w
    }

    /// `cert`'s entry, its object packed beforehand (outside the lock).
    fn entry(&mut self, cert: &ClusterCertificate, object: Box<[u8]>) -> Packed {
        let status = cert.status.as_ref();
        let ready = status
            .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
            .map_or(Readiness::Unknown, |c| match c.status.as_str() {
                "True" => Readiness::True,
                "False" => Readiness::False,
                _ => Readiness::Unknown,
            });
        let summary = Summary {
            issuer: self.word(&cert.spec.issuer_ref.name),
            secret_namespace: self.word(&cert.spec.secret_namespace),
            secret_name: cert.spec.secret_name.as_str().into(),
            serial: status.and_then(|s| s.serial_number.as_deref().map(Box::from)),
            not_after: status.and_then(|s| s.not_after),
            renewal_time: status.and_then(|s| s.renewal_time),
            ready,
        };
        Packed { summary, object }
    }

    /// Takes the place of `name`'s entry: `None` when it could not be
    /// packed, so that no older version stands for it. The name kept is
    /// the first one's (the certificate queue holds that same allocation).
    fn put(
        map: &mut HashMap<Arc<str>, Packed>,
        name: &str,
        packed: Option<Packed>,
    ) -> Option<Arc<str>> {
        match packed {
            Some(p) => match map.get_key_value(name) {
                Some((held, _)) => {
                    let held = held.clone();
                    map.insert(held.clone(), p);
                    Some(held)
                }
                None => {
                    let name: Arc<str> = Arc::from(name);
                    map.insert(name.clone(), p);
                    Some(name)
                }
            },
            None => {
                map.remove(name);
                None
            }
        }
    }
}

/// `cert`'s JSON compressed, or `None` (logged) if it has no name or its
/// JSON failed.
fn pack(cert: &ClusterCertificate) -> Option<Box<[u8]>> {
    let name = cert.metadata.name.as_deref()?;
    match serde_json::to_vec(cert) {
        Ok(json) => Some(
            lz4_flex::block::compress_prepend_size_with_dict(&json, DICTIONARY).into_boxed_slice(),
        ),
        Err(e) => {
            warn!(certificate = name, error = %e, "not stored: its JSON failed");
            None
        }
    }
}

fn unpack(name: &str, packed: &Packed) -> Option<ClusterCertificate> {
    let json =
        match lz4_flex::block::decompress_size_prepended_with_dict(&packed.object, DICTIONARY) {
            Ok(json) => json,
            Err(e) => {
                warn!(certificate = name, error = %e, "stored certificate unreadable");
                return None;
            }
        };
    match serde_json::from_slice(&json) {
        Ok(cert) => Some(cert),
        Err(e) => {
            warn!(certificate = name, error = %e, "stored certificate unreadable");
            None
        }
    }
}

#[derive(Debug)]
struct Shared {
    state: RwLock<State>,
    followers: Followers<Arc<str>>,
    listed: tokio::sync::watch::Sender<bool>,
}

/// Every ClusterCertificate (slimmed: see `shared_store::slim`), packed.
/// Cloned handles share one store.
#[derive(Clone, Debug)]
pub struct CertificateStore {
    shared: Arc<Shared>,
}

impl Default for CertificateStore {
    fn default() -> Self {
        CertificateStore {
            shared: Arc::new(Shared {
                state: RwLock::default(),
                followers: Followers::default(),
                listed: tokio::sync::watch::Sender::new(false),
            }),
        }
    }
}

impl CertificateStore {
    /// A store filled by a watch of `api`, in a task of its own for the
    /// life of the process (every replica follows the certificates).
    pub fn spawn(api: Api<ClusterCertificate>) -> Self {
        let store = CertificateStore::default();
        let filled = store.clone();
        let stream = watch(api, watcher::Config::default()).modify(slim::<ClusterCertificate>);
        tokio::spawn(async move {
            futures::pin_mut!(stream);
            while let Some(event) = stream.next().await {
                match event {
                    Ok(event) => filled.apply_watcher_event(&event),
                    Err(e) => warn!(error = %e, kind = "ClusterCertificate", "watch"),
                }
            }
        });
        store
    }

    fn read(&self) -> RwLockReadGuard<'_, State> {
        // No method panics while holding it; a poisoned lock still holds
        // a whole store.
        self.shared.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.shared.state.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Applies one event of a watch, as kube-runtime's reflector would: a
    /// re-list's objects replace the store's all at once when it is done.
    /// The followers hear of each certificate applied (all of them after
    /// a re-list), not of one deleted.
    pub fn apply_watcher_event(&self, event: &watcher::Event<ClusterCertificate>) {
        // Packed before the lock is taken: readers (a pass's `get`, the
        // queue's `contains`) wait only for the map's change.
        let packed = match event {
            watcher::Event::InitApply(cert) | watcher::Event::Apply(cert) => {
                Some((cert, pack(cert)))
            }
            _ => None,
        };
        let mut replaced = None;
        let changed: Vec<Arc<str>> = {
            let mut state = self.write();
            match (event, packed) {
                (watcher::Event::Init, _) => {
                    state.relisting = Some(HashMap::new());
                    Vec::new()
                }
                (watcher::Event::InitApply(_), Some((cert, object))) => {
                    let entry = object.map(|o| state.entry(cert, o));
                    let relisting = state.relisting.get_or_insert_with(HashMap::new);
                    State::put(relisting, &cert.name_any(), entry);
                    Vec::new()
                }
                (watcher::Event::InitDone, _) => {
                    let listed = state.relisting.take().unwrap_or_default();
                    replaced = Some(std::mem::replace(&mut state.entries, listed));
                    state.entries.keys().cloned().collect()
                }
                (watcher::Event::Apply(_), Some((cert, object))) => {
                    let entry = object.map(|o| state.entry(cert, o));
                    State::put(&mut state.entries, &cert.name_any(), entry)
                        .into_iter()
                        .collect()
                }
                (watcher::Event::Delete(cert), _) => {
                    state.entries.remove(cert.name_any().as_str());
                    let (len, capacity) = (state.entries.len(), state.entries.capacity());
                    if len < capacity / 4 {
                        state.entries.shrink_to(2 * len);
                    }
                    Vec::new()
                }
                _ => Vec::new(),
            }
        };
        if let Some(replaced) = replaced {
            // The old list is let go outside the lock, then the names no
            // certificate names any longer.
            drop(replaced);
            self.write().words.retain(|w| Arc::strong_count(w) > 1);
            self.shared.listed.send_replace(true);
        }
        self.shared.followers.send(&changed, false);
    }

    /// Resolves once the first list is in.
    pub async fn wait_until_listed(&self) {
        let mut listed = self.shared.listed.subscribe();
        let _ = listed.wait_for(|l| *l).await;
    }

    /// Certificate `name`, unpacked: a copy of its own for the caller.
    pub fn get(&self, name: &str) -> Option<Arc<ClusterCertificate>> {
        let state = self.read();
        let packed = state.entries.get(name)?;
        unpack(name, packed).map(Arc::new)
    }

    pub fn contains(&self, name: &str) -> bool {
        self.read().entries.contains_key(name)
    }

    pub fn summary(&self, name: &str) -> Option<Summary> {
        self.read().entries.get(name).map(|p| p.summary.clone())
    }

    /// Every certificate's name and summary, in no order.
    pub fn summaries(&self) -> Vec<(Arc<str>, Summary)> {
        self.read()
            .entries
            .iter()
            .map(|(n, p)| (n.clone(), p.summary.clone()))
            .collect()
    }

    /// The names of the certificates CA `ca` issues.
    pub fn names_of_issuer(&self, ca: &str) -> Vec<Arc<str>> {
        self.read()
            .entries
            .iter()
            .filter(|(_, p)| &*p.summary.issuer == ca)
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// Every certificate's name now in the store, then each name as its
    /// certificate is applied; after a re-list, all of them again. A
    /// follower that goes away is dropped at the next change.
    pub fn follow_names(&self) -> impl Stream<Item = Arc<str>> + Send + use<> {
        self.shared
            .followers
            .join(false, || self.read().entries.keys().cloned().collect())
    }

    /// Replaces what the store holds, as a watch's list would.
    #[cfg(test)]
    pub fn replace(&self, certificates: Vec<ClusterCertificate>) {
        self.apply_watcher_event(&watcher::Event::Init);
        for cert in certificates {
            self.apply_watcher_event(&watcher::Event::InitApply(cert));
        }
        self.apply_watcher_event(&watcher::Event::InitDone);
    }

    /// The bytes a certificate's packed object takes (not its summary).
    #[cfg(test)]
    fn packed_len(&self, name: &str) -> Option<usize> {
        self.read().entries.get(name).map(|p| p.object.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn certificate(name: &str, issuer: &str, ready: &str) -> ClusterCertificate {
        serde_json::from_value(json!({
            "apiVersion": "certop.dev/v1", "kind": "ClusterCertificate",
            "metadata": {"name": name, "uid": "9f1c2d3e-4b5a-6789-abcd-ef0123456789", "resourceVersion": "3482911",
                         "generation": 1, "finalizers": ["certop.dev/cleanup"], "creationTimestamp": "2026-12-05T10:11:12Z"},
            "spec": {"issuerRef": {"name": issuer}, "secretName": format!("{name}-tls"), "secretNamespace": "scale",
                     "dnsNames": [format!("{name}.scale.svc")]},
            "status": {"conditions": [
                {"type": "Issuing", "status": "False", "reason": "UpToDate", "message": "no issuance needed",
                 "lastTransitionTime": "2026-12-07T21:45:07Z", "observedGeneration": 1},
                {"type": "Ready", "status": ready, "reason": "Issued",
                 "message": "certificate serial 4c627720bc9910a9419890398c73e389 is valid until 2027-03-07T21:45:07+00:00",
                 "lastTransitionTime": "2026-12-07T21:45:07Z", "observedGeneration": 1}],
                "observedGeneration": 1, "secret": format!("scale/{name}-tls"),
                "notBefore": "2026-12-07T21:40:07Z", "notAfter": "2027-03-07T21:45:07Z", "renewalTime": "2027-02-03T11:46:48Z",
                "serialNumber": "4c627720bc9910a9419890398c73e389",
                "fingerprint": "05:2C:C0:D9:0F:C5:04:74:20:95:A7:3A:6F:B1:0A:19:18:D7:C1:A9:99:61:27:AC:AC:4F:49:D8:4E:AD:0C:39",
                "revision": 1, "secretVersion": {"resourceVersion": "3482890"}}
        }))
        .expect("certificate")
    }

    #[test]
    fn a_certificate_comes_back_as_it_went_in() {
        let store = CertificateStore::default();
        let cert = certificate("web-04711", "ca", "True");
        store.replace(vec![cert.clone()]);
        let back = store.get("web-04711").expect("stored");
        assert_eq!(
            serde_json::to_value(back.as_ref()).expect("json"),
            serde_json::to_value(&cert).expect("json")
        );
        assert!(store.get("other").is_none());
    }

    #[test]
    fn a_ready_certificate_packs_to_under_two_fifths_of_its_json() {
        let store = CertificateStore::default();
        let cert = certificate("web-04711", "ca", "True");
        let json = serde_json::to_vec(&cert).expect("json");
        store.replace(vec![cert]);
        let packed = store.packed_len("web-04711").expect("stored");
        // Its uid, serial and fingerprint are random hex that no
        // dictionary shortens: about 200 of these bytes.
        assert!(
            packed * 5 < json.len() * 2,
            "{packed} bytes packed, {} of JSON",
            json.len()
        );
    }

    #[test]
    fn the_summary_says_what_the_status_says() {
        let store = CertificateStore::default();
        store.replace(vec![certificate("a", "ca", "False")]);
        let s = store.summary("a").expect("summary");
        assert_eq!(&*s.issuer, "ca");
        assert_eq!(&*s.secret_namespace, "scale");
        assert_eq!(&*s.secret_name, "a-tls");
        assert_eq!(
            s.serial.as_deref(),
            Some("4c627720bc9910a9419890398c73e389")
        );
        assert_eq!(
            s.not_after.map(|t| t.to_rfc3339()).as_deref(),
            Some("2027-03-07T21:45:07+00:00")
        );
        assert_eq!(
            s.renewal_time.map(|t| t.to_rfc3339()).as_deref(),
            Some("2027-02-03T11:46:48+00:00")
        );
        assert_eq!(s.ready, Readiness::False);
        let mut fresh = certificate("b", "ca", "True");
        fresh.status = None;
        store.apply_watcher_event(&watcher::Event::Apply(fresh));
        let s = store.summary("b").expect("summary");
        assert_eq!(
            (s.ready, s.serial, s.not_after),
            (Readiness::Unknown, None, None)
        );
    }

    #[test]
    fn a_name_is_one_allocation_however_often_its_certificate_changes() {
        let store = CertificateStore::default();
        store.replace(vec![certificate("a", "ca", "True")]);
        let first = store.names_of_issuer("ca").remove(0);
        store.apply_watcher_event(&watcher::Event::Apply(certificate("a", "ca", "False")));
        assert!(Arc::ptr_eq(&first, &store.names_of_issuer("ca")[0]));
    }

    #[test]
    fn an_applied_change_of_issuer_moves_the_certificate() {
        let store = CertificateStore::default();
        store.replace(vec![certificate("a", "old-ca", "True")]);
        store.apply_watcher_event(&watcher::Event::Apply(certificate("a", "new-ca", "True")));
        assert!(store.names_of_issuer("old-ca").is_empty());
        assert_eq!(store.names_of_issuer("new-ca").len(), 1);
        assert_eq!(
            store
                .get("a")
                .map(|c| c.spec.issuer_ref.name.clone())
                .as_deref(),
            Some("new-ca")
        );
    }

    #[test]
    fn a_mass_delete_gives_the_room_back() {
        let store = CertificateStore::default();
        let many: Vec<_> = (0..1000)
            .map(|i| certificate(&format!("c{i}"), "ca", "True"))
            .collect();
        store.replace(many.clone());
        for cert in many {
            store.apply_watcher_event(&watcher::Event::Delete(cert));
        }
        assert!(store.read().entries.capacity() < 100);
    }

    #[test]
    fn issuers_and_namespaces_are_held_once() {
        let store = CertificateStore::default();
        store.replace(vec![
            certificate("a", "ca", "True"),
            certificate("b", "ca", "True"),
        ]);
        let (a, b) = (
            store.summary("a").expect("a"),
            store.summary("b").expect("b"),
        );
        assert!(Arc::ptr_eq(&a.issuer, &b.issuer));
        assert!(Arc::ptr_eq(&a.secret_namespace, &b.secret_namespace));
    }

    #[test]
    fn a_relist_replaces_all_at_once_and_forgets_names_gone() {
        let store = CertificateStore::default();
        store.replace(vec![
            certificate("a", "old-ca", "True"),
            certificate("b", "ca", "True"),
        ]);
        store.apply_watcher_event(&watcher::Event::Init);
        store.apply_watcher_event(&watcher::Event::InitApply(certificate("b", "ca", "True")));
        assert!(
            store.contains("a"),
            "the old list stands until the new one is done"
        );
        store.apply_watcher_event(&watcher::Event::InitDone);
        assert!(!store.contains("a"));
        assert!(store.names_of_issuer("old-ca").is_empty());
        assert_eq!(store.read().words.len(), 2, "ca and scale");
    }

    #[test]
    fn names_of_an_issuer_are_its_certificates_only() {
        let store = CertificateStore::default();
        store.replace(vec![
            certificate("a", "ca", "True"),
            certificate("b", "other", "True"),
        ]);
        let names: Vec<String> = store
            .names_of_issuer("ca")
            .iter()
            .map(|n| n.to_string())
            .collect();
        assert_eq!(names, ["a"]);
    }

    #[tokio::test]
    async fn followers_hear_of_every_applied_name_and_not_of_deletes() {
        let store = CertificateStore::default();
        store.replace(vec![certificate("a", "ca", "True")]);
        let mut names = Box::pin(store.follow_names());
        assert_eq!(names.next().await.as_deref(), Some("a"), "what is there");
        store.apply_watcher_event(&watcher::Event::Delete(certificate("a", "ca", "True")));
        store.apply_watcher_event(&watcher::Event::Apply(certificate("b", "ca", "True")));
        assert_eq!(names.next().await.as_deref(), Some("b"));
        assert!(!store.contains("a"));
    }

    #[tokio::test]
    async fn listed_once_the_first_list_is_in() {
        let store = CertificateStore::default();
        let waiting = store.clone();
        let listed = tokio::spawn(async move { waiting.wait_until_listed().await });
        tokio::task::yield_now().await;
        assert!(!listed.is_finished());
        store.replace(Vec::new());
        listed.await.expect("listed");
    }
}
