//! The certificate Secrets certop wrote last, as the API server returned
//! them, for the passes their own watch events start.
//!
//! Every status write of a certificate comes back through the watch and
//! starts a pass that derives again what the last one wrote (see
//! `controllers::certificate_controller`); that pass read the Secret with
//! a GET, about one request per certificate. It reads this copy instead
//! once the Secret watch, after the write returned, has shown exactly the
//! resourceVersion certop wrote, and nothing since: the object is then
//! what the write returned, not what certop remembers wanting. Any other
//! version seen (another writer, a delete, a watch that lists again) drops
//! the copy, and the watch event that showed it starts a pass of its own,
//! which reads the Secret. A version the watch showed before the write
//! returned is not taken as seen: a later one may have followed it.
//! Bounded in count and age, so memory stays a few MiB however
//! many certificates there are: a copy gone costs one GET, nothing else.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::core::PartialObjectMeta;
use kube::runtime::watcher;

/// At most this many copies are held (about 2.5 KiB each for a P-256
/// certificate): the newest, which are the ones whose echo is due.
const CAPACITY: usize = 2048;
/// A copy older than this is not used (its echo came long ago).
const MAX_AGE: Duration = Duration::from_secs(600);

/// `namespace/name` of a Secret.
type Key = String;

struct Copy {
    secret: Arc<Secret>,
    written_at: Instant,
    /// Tells this copy from a later one of the same Secret in `order`.
    sequence: u64,
    /// Whether the watch has shown this version since it was written.
    seen: bool,
}

#[derive(Default)]
struct Inner {
    copies: HashMap<Key, Copy>,
    /// Copies oldest first, for eviction.
    order: VecDeque<(Key, u64)>,
    next_sequence: u64,
}

/// See the module documentation.
#[derive(Default)]
pub struct WrittenSecrets {
    inner: Mutex<Inner>,
}

fn key(namespace: &str, name: &str) -> Key {
    format!("{namespace}/{name}")
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
        let key = key(&secret.namespace().unwrap_or_default(), &secret.name_any());
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        let sequence = inner.next_sequence;
        inner.next_sequence += 1;
        inner.order.push_back((key.clone(), sequence));
        inner.copies.insert(
            key,
            Copy {
                secret: Arc::new(copy),
                written_at: now,
                sequence,
                seen: false,
            },
        );
        while inner.copies.len() > CAPACITY || inner.order.len() > 2 * CAPACITY {
            let Some((oldest, sequence)) = inner.order.pop_front() else {
                break;
            };
            if inner
                .copies
                .get(&oldest)
                .is_some_and(|c| c.sequence == sequence)
            {
                inner.copies.remove(&oldest);
            }
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
        let copy = inner.copies.get(&key)?;
        (copy.seen && now.saturating_duration_since(copy.written_at) <= MAX_AGE)
            .then(|| Secret::clone(&copy.secret))
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
                let key = key(&s.namespace().unwrap_or_default(), &s.name_any());
                let Some(copy) = inner.copies.get_mut(&key) else {
                    return;
                };
                if copy.secret.resource_version() == s.resource_version() {
                    copy.seen = true;
                } else {
                    inner.copies.remove(&key);
                }
            }
            watcher::Event::Delete(s) => {
                inner
                    .copies
                    .remove(&key(&s.namespace().unwrap_or_default(), &s.name_any()));
            }
            watcher::Event::Init => {
                inner.copies.clear();
                inner.order.clear();
            }
            watcher::Event::InitDone => {}
        }
    }

    /// How many copies are held (for tests and the memory's accounting).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.inner.lock().map(|i| i.copies.len()).unwrap_or(0)
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
    fn a_version_seen_before_the_write_returned_is_not_taken_as_seen() {
        // The watch showed certop's write and then another writer's before
        // the write's answer was kept: the copy is older than what is seen.
        let w = WrittenSecrets::default();
        w.observe(&seen("a", "5"));
        w.observe(&seen("a", "6"));
        w.wrote(&secret("a", "5"));
        assert!(w.get("ns", "a").is_none());
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
        for i in 0..CAPACITY + 10 {
            w.wrote_at(&secret(&format!("s{i}"), "1"), start);
            w.observe(&seen(&format!("s{i}"), "1"));
        }
        assert_eq!(w.len(), CAPACITY);
        assert!(w.get_at("ns", "s0", start).is_none(), "the oldest went");
        let newest = format!("s{}", CAPACITY + 9);
        assert!(w.get_at("ns", &newest, start).is_some());
        assert!(
            w.get_at("ns", &newest, start + MAX_AGE + Duration::from_secs(1))
                .is_none()
        );
        // Rewriting one Secret over and over holds one copy.
        for v in 0..10 * CAPACITY {
            w.wrote_at(&secret("same", &v.to_string()), start);
        }
        assert!(w.len() <= CAPACITY);
    }
}
