//! The certificate Secrets certop wrote last, as the API server returned
//! them, for the passes their own watch events start.
//!
//! Every status write of a certificate comes back through the watch and
//! starts a pass that derives again what the last one wrote (see
//! `controllers::certificate_controller`); that pass read the Secret with
//! a GET, about one request per certificate. It reads this copy instead
//! while the newest version the Secret watch has shown is exactly the
//! resourceVersion certop's write returned: the object is then what the
//! write returned, not what certop remembers wanting. Any other version
//! shown (another writer's, a delete, a watch that lists again) drops the
//! copy, and the watch event that showed it starts a pass of its own,
//! which reads the Secret.
//! Bounded in count and age, so memory stays a few MiB however
//! many certificates there are: a copy gone costs one GET, nothing else.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::core::PartialObjectMeta;
use kube::runtime::watcher;

/// At most this many copies are held (about 3 KiB each for a P-256
/// certificate, 6 MiB in all): the newest, which are the ones whose echo
/// is due. 512 were too few: at 10,000 from a backlog, 0.79 GETs per
/// certificate came back (docs/benchmarks.md).
const COPIES: usize = 2048;
/// At most this many Secrets' newest versions are held (a name and a
/// number, about 100 bytes each).
const SHOWN: usize = 4096;
/// A copy older than this is not used (its echo came long ago).
const MAX_AGE: Duration = Duration::from_secs(600);

/// `namespace/name` of a Secret.
type Key = String;

/// A map that keeps its `capacity` newest insertions.
struct Bounded<V> {
    capacity: usize,
    values: HashMap<Key, (V, u64)>,
    /// Insertions oldest first; an entry whose number is not the value's
    /// was replaced since.
    order: VecDeque<(Key, u64)>,
    next: u64,
}

impl<V> Bounded<V> {
    fn new(capacity: usize) -> Self {
        Bounded {
            capacity,
            values: HashMap::new(),
            order: VecDeque::new(),
            next: 0,
        }
    }

    fn insert(&mut self, key: Key, value: V) {
        let number = self.next;
        self.next += 1;
        self.order.push_back((key.clone(), number));
        self.values.insert(key, (value, number));
        while self.values.len() > self.capacity || self.order.len() > 2 * self.capacity {
            let Some((oldest, number)) = self.order.pop_front() else {
                break;
            };
            if self.values.get(&oldest).is_some_and(|(_, n)| *n == number) {
                self.values.remove(&oldest);
            }
        }
    }

    fn get(&self, key: &str) -> Option<&V> {
        self.values.get(key).map(|(v, _)| v)
    }

    fn remove(&mut self, key: &str) {
        self.values.remove(key);
    }

    fn clear(&mut self) {
        self.values.clear();
        self.order.clear();
    }
}

struct Inner {
    /// What certop's writes returned, and when.
    copies: Bounded<(Arc<Secret>, Instant)>,
    /// The resourceVersion the watch showed last of each Secret (the
    /// newest `SHOWN` shown): a write's own event may come before the
    /// write's answer.
    newest: Bounded<String>,
}

impl Default for Inner {
    fn default() -> Self {
        Inner {
            copies: Bounded::new(COPIES),
            newest: Bounded::new(SHOWN),
        }
    }
}

/// See the module documentation.
#[derive(Default)]
pub struct WrittenSecrets {
    inner: Mutex<Inner>,
}

fn key(namespace: &str, name: &str) -> Key {
    format!("{namespace}/{name}")
}

fn key_of<K: kube::Resource>(object: &K) -> Key {
    let meta = object.meta();
    key(
        meta.namespace.as_deref().unwrap_or_default(),
        meta.name.as_deref().unwrap_or_default(),
    )
}

impl WrittenSecrets {
    /// Keeps what a write returned (slimmed of managed fields).
    pub fn wrote(&self, secret: &Secret) {
        self.wrote_at(secret, Instant::now());
    }

    fn wrote_at(&self, secret: &Secret, now: Instant) {
        if secret.resource_version().is_none() {
            return;
        }
        let mut copy = secret.clone();
        crate::operator::runtime::shared_store::slim(&mut copy);
        if let Ok(mut inner) = self.inner.lock() {
            inner.copies.insert(key_of(secret), (Arc::new(copy), now));
        }
    }

    /// The Secret as certop wrote it, if the watch shows that write as its
    /// newest version.
    pub fn get(&self, namespace: &str, name: &str) -> Option<Secret> {
        self.get_at(namespace, name, Instant::now())
    }

    fn get_at(&self, namespace: &str, name: &str, now: Instant) -> Option<Secret> {
        let key = key(namespace, name);
        let inner = self.inner.lock().ok()?;
        let (copy, written_at) = inner.copies.get(&key)?;
        let newest = inner.newest.get(&key)?;
        (copy.resource_version().as_deref() == Some(newest.as_str())
            && now.saturating_duration_since(*written_at) <= MAX_AGE)
            .then(|| Secret::clone(copy))
    }

    /// Drops the copy of a Secret whose passes are done with it, once the
    /// watch has shown it: a copy of a write the watch has not shown yet
    /// (a pass that wrote the Secret but not the status) still has the pass
    /// of that event to serve. The Secret's newest version stays known; a
    /// pass that would have read the copy reads the Secret instead.
    pub fn forget(&self, namespace: &str, name: &str) {
        let key = key(namespace, name);
        if let Ok(mut inner) = self.inner.lock() {
            let shown = match (inner.copies.get(&key), inner.newest.get(&key)) {
                (Some((copy, _)), Some(newest)) => {
                    copy.resource_version().as_deref() == Some(newest.as_str())
                }
                _ => false,
            };
            if shown {
                inner.copies.remove(&key);
            }
        }
    }

    /// Whether the Secret is known to exist, or to have existed lately:
    /// certop holds a copy of its write, or the watch showed it (the newest
    /// `SHOWN` shown). A Secret not known may exist all the same.
    pub fn known(&self, namespace: &str, name: &str) -> bool {
        let key = key(namespace, name);
        self.inner
            .lock()
            .is_ok_and(|i| i.copies.get(&key).is_some() || i.newest.get(&key).is_some())
    }

    /// The newest resourceVersion of the Secret the watch showed, if it
    /// is among the newest `SHOWN` shown and was not deleted since.
    pub fn shown(&self, namespace: &str, name: &str) -> Option<String> {
        let key = key(namespace, name);
        self.inner.lock().ok()?.newest.get(&key).cloned()
    }

    /// What the Secret watch showed: the newest version of a Secret, its
    /// deletion, or a list started again (after which only what it lists
    /// is known).
    pub fn observe(&self, event: &watcher::Event<PartialObjectMeta<Secret>>) {
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        match event {
            watcher::Event::Apply(s) | watcher::Event::InitApply(s) => {
                let key = key_of(s);
                let version = s.resource_version().unwrap_or_default();
                // A copy of another version is never current again.
                if inner
                    .copies
                    .get(&key)
                    .is_some_and(|(c, _)| c.resource_version().as_deref() != Some(&version))
                {
                    inner.copies.remove(&key);
                }
                inner.newest.insert(key, version);
            }
            watcher::Event::Delete(s) => {
                let key = key_of(s);
                inner.copies.remove(&key);
                inner.newest.remove(&key);
            }
            watcher::Event::Init => {
                inner.copies.clear();
                inner.newest.clear();
            }
            watcher::Event::InitDone => {}
        }
    }

    /// How many copies are held (for tests and the memory's accounting).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.inner
            .lock()
            .map(|i| i.copies.values.len())
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(name: &str, version: &str) -> Secret {
        let mut s = Secret::default();
        s.metadata.namespace = Some("ns".into());
        s.metadata.name = Some(name.into());
        s.metadata.resource_version = Some(version.into());
        s
    }

    fn seen(name: &str, version: &str) -> watcher::Event<PartialObjectMeta<Secret>> {
        let mut m = PartialObjectMeta::<Secret>::default();
        m.metadata.namespace = Some("ns".into());
        m.metadata.name = Some(name.into());
        m.metadata.resource_version = Some(version.into());
        watcher::Event::Apply(m)
    }

    #[test]
    fn a_forgotten_copy_is_not_used_and_the_secret_stays_known() {
        let w = WrittenSecrets::default();
        w.wrote(&secret("a", "5"));
        w.observe(&seen("a", "5"));
        w.forget("ns", "a");
        assert!(w.get("ns", "a").is_none());
        assert!(w.known("ns", "a"), "its newest version is still known");
        assert_eq!(w.len(), 0);
    }

    #[test]
    fn a_copy_the_watch_has_not_shown_yet_is_kept_for_that_events_pass() {
        let w = WrittenSecrets::default();
        w.wrote(&secret("a", "5"));
        w.observe(&seen("a", "5"));
        // The pass rewrote the Secret (a new trust bundle) and nothing else.
        w.wrote(&secret("a", "6"));
        w.forget("ns", "a");
        w.observe(&seen("a", "6"));
        assert_eq!(
            w.get("ns", "a").and_then(|s| s.metadata.resource_version),
            Some("6".into()),
            "the pass of the write's own event uses the copy"
        );
    }

    #[test]
    fn a_copy_is_used_only_while_the_watch_shows_its_version_as_the_newest() {
        let w = WrittenSecrets::default();
        w.wrote(&secret("a", "5"));
        assert!(w.get("ns", "a").is_none(), "not yet seen by the watch");
        w.observe(&seen("a", "5"));
        assert_eq!(
            w.get("ns", "a").and_then(|s| s.metadata.resource_version),
            Some("5".into())
        );
        w.observe(&seen("a", "6"));
        assert!(w.get("ns", "a").is_none(), "another writer's version");
        w.observe(&seen("a", "5"));
        assert!(w.get("ns", "a").is_none(), "a dropped copy never returns");
        // An older version shown late drops the copy too: certop does not
        // order versions, it only compares them.
        w.wrote(&secret("b", "5"));
        w.observe(&seen("b", "4"));
        w.observe(&seen("b", "5"));
        assert!(w.get("ns", "b").is_none());
    }

    #[test]
    fn the_watch_may_show_a_write_before_its_answer_comes() {
        let w = WrittenSecrets::default();
        w.observe(&seen("a", "5"));
        w.wrote(&secret("a", "5"));
        assert!(w.get("ns", "a").is_some(), "its own version, shown first");
        // certop's write and then another writer's, both shown before the
        // write's answer was kept: the copy is older than the newest.
        w.observe(&seen("b", "5"));
        w.observe(&seen("b", "6"));
        w.wrote(&secret("b", "5"));
        assert!(w.get("ns", "b").is_none());
    }

    #[test]
    fn a_secret_written_or_shown_is_known_until_its_delete_is_shown() {
        let w = WrittenSecrets::default();
        assert!(!w.known("ns", "a"));
        w.wrote(&secret("a", "5"));
        assert!(w.known("ns", "a"), "written, not yet shown");
        w.observe(&watcher::Event::Init);
        assert!(!w.known("ns", "a"), "listed again, not yet listed");
        w.observe(&seen("a", "6"));
        assert!(w.known("ns", "a"), "shown, whoever wrote it");
        assert_eq!(w.shown("ns", "a").as_deref(), Some("6"));
        let watcher::Event::Apply(m) = seen("a", "6") else {
            unreachable!()
        };
        w.observe(&watcher::Event::Delete(m));
        assert!(!w.known("ns", "a"));
        assert_eq!(w.shown("ns", "a"), None);
    }

    #[test]
    fn a_delete_or_a_new_list_forgets() {
        let w = WrittenSecrets::default();
        w.wrote(&secret("a", "5"));
        w.observe(&seen("a", "5"));
        let watcher::Event::Apply(m) = seen("a", "5") else {
            unreachable!()
        };
        w.observe(&watcher::Event::Delete(m));
        assert!(w.get("ns", "a").is_none());
        w.wrote(&secret("b", "7"));
        w.observe(&seen("b", "7"));
        w.observe(&watcher::Event::Init);
        assert!(w.get("ns", "b").is_none(), "not listed again yet");
        // Listed again with its version: known again, but the copy is gone.
        let watcher::Event::Apply(m) = seen("b", "7") else {
            unreachable!()
        };
        w.observe(&watcher::Event::InitApply(m));
        assert!(w.get("ns", "b").is_none(), "the copy went with the list");
    }

    #[test]
    fn copies_are_bounded_in_count_and_age() {
        let w = WrittenSecrets::default();
        let start = Instant::now();
        for i in 0..COPIES + 10 {
            w.wrote_at(&secret(&format!("s{i}"), "1"), start);
            w.observe(&seen(&format!("s{i}"), "1"));
        }
        assert_eq!(w.len(), COPIES);
        assert!(w.get_at("ns", "s0", start).is_none(), "the oldest went");
        let newest = format!("s{}", COPIES + 9);
        assert!(w.get_at("ns", &newest, start).is_some());
        assert!(
            w.get_at("ns", &newest, start + MAX_AGE + Duration::from_secs(1))
                .is_none()
        );
        // Rewriting one Secret over and over holds one copy.
        for v in 0..10 * COPIES {
            w.wrote_at(&secret("same", &v.to_string()), start);
        }
        assert!(w.len() <= COPIES);
    }
}
