//! One reflector store per kind, filled by one watch, that every reader
//! shares: the metrics (on every replica), the reconcilers, and the
//! controllers' triggers, which follow it instead of keeping stores of
//! their own. Each object is held once, however many controllers use it:
//! at 10,000 ClusterCertificates a second copy was a large part of the
//! operator's memory.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures::channel::mpsc::{UnboundedSender, unbounded};
use futures::{Stream, StreamExt};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, ResourceExt};
use tracing::warn;

use crate::operator::runtime::watch_backoff::WatchBackoff;

/// What a cached kind must be.
pub trait Cached:
    kube::Resource<DynamicType = ()>
    + Clone
    + std::fmt::Debug
    + serde::de::DeserializeOwned
    + Send
    + Sync
    + 'static
{
}

impl<K> Cached for K where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static
{
}

/// A watch that backs off on its own errors (see `watch_backoff`), so
/// that one watch's error never holds up the others of its controller.
pub fn watch<K: Cached>(
    api: Api<K>,
    config: watcher::Config,
) -> impl Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send {
    watcher(api, config).backoff(WatchBackoff::default())
}

/// What certop never reads of a cached object: its managedFields and
/// kubectl's last-applied copy of it. Dropped before an object enters any
/// store, they are a large part of a small object.
pub fn slim<K: kube::Resource>(object: &mut K) {
    let meta = object.meta_mut();
    meta.managed_fields = None;
    if let Some(a) = meta.annotations.as_mut() {
        a.remove("kubectl.kubernetes.io/last-applied-configuration");
    }
}

#[derive(Debug)]
struct Follower<T> {
    tx: UnboundedSender<T>,
    /// Also the last state of each deleted object.
    deletes: bool,
}

/// The streams that follow a store: each gets what the store held when it
/// joined, then every change. One home for the shared stores and the
/// certificate store.
/// What a follower receives: the snapshot, then the changes.
pub type Following<T> = futures::stream::Chain<
    futures::stream::Iter<std::vec::IntoIter<T>>,
    futures::channel::mpsc::UnboundedReceiver<T>,
>;

#[derive(Debug)]
pub struct Followers<T> {
    list: Mutex<Vec<Follower<T>>>,
}

impl<T> Default for Followers<T> {
    fn default() -> Self {
        Followers {
            list: Mutex::default(),
        }
    }
}

impl<T: Clone + Send + 'static> Followers<T> {
    /// A new follower: `snapshot` (what the store holds) is taken after it
    /// joined, so nothing falls between the two.
    pub fn join(&self, deletes: bool, snapshot: impl FnOnce() -> Vec<T>) -> Following<T> {
        let (tx, rx) = unbounded();
        if let Ok(mut list) = self.list.lock() {
            list.push(Follower { tx, deletes });
        }
        futures::stream::iter(snapshot()).chain(rx)
    }

    /// Tells every follower of `changed` (of a delete, only those that
    /// asked for deletes); a follower that went away is dropped.
    pub fn send(&self, changed: &[T], deleted: bool) {
        if changed.is_empty() {
            return;
        }
        if let Ok(mut list) = self.list.lock() {
            list.retain(|f| {
                (deleted && !f.deletes)
                    || changed
                        .iter()
                        .all(|o| f.tx.unbounded_send(o.clone()).is_ok())
            });
        }
    }
}

/// A store of every object of a kind (slimmed), kept by a task of its own.
pub struct SharedStore<K: Cached> {
    store: Store<K>,
    followers: Arc<Followers<Arc<K>>>,
    task: tokio::task::JoinHandle<()>,
}

impl<K: Cached> SharedStore<K> {
    /// Starts the watch that fills the store.
    pub fn spawn(api: Api<K>) -> Self {
        let (store, writer) = reflector::store::<K>();
        let followers: Arc<Followers<Arc<K>>> = Arc::default();
        let stream = watch(api, watcher::Config::default())
            .modify(slim::<K>)
            .reflect(writer);
        let task = tokio::spawn(drive(stream, store.clone(), followers.clone()));
        SharedStore {
            store,
            followers,
            task,
        }
    }

    pub fn store(&self) -> Store<K> {
        self.store.clone()
    }

    /// Every object now in the store, then each object as it changes (the
    /// stored copy, never a second one); after a re-list, all of them again.
    /// A follower that goes away is dropped at the next change.
    pub fn follow(&self) -> impl Stream<Item = Arc<K>> + Send + use<K> {
        self.follower(false)
    }

    /// As `follow`, and each deleted object in its last state: for
    /// triggers that map an object to others, which must hear of its end.
    pub fn follow_with_deletes(&self) -> impl Stream<Item = Arc<K>> + Send + use<K> {
        self.follower(true)
    }

    fn follower(&self, deletes: bool) -> impl Stream<Item = Arc<K>> + Send + use<K> {
        let store = self.store.clone();
        self.followers.join(deletes, move || store.state())
    }

    pub fn abort(&self) {
        self.task.abort();
    }
}

async fn drive<K: Cached>(
    stream: impl Stream<Item = Result<watcher::Event<K>, watcher::Error>>,
    store: Store<K>,
    followers: Arc<Followers<Arc<K>>>,
) {
    futures::pin_mut!(stream);
    while let Some(event) = stream.next().await {
        // The writer has applied the event when it comes out of `reflect`;
        // a re-list's objects enter the store all at once, at InitDone.
        let (changed, deleted) = match event {
            Ok(watcher::Event::Apply(obj)) => (
                store.get(&ObjectRef::from_obj(&obj)).into_iter().collect(),
                false,
            ),
            Ok(watcher::Event::Delete(obj)) => (vec![Arc::new(obj)], true),
            Ok(watcher::Event::InitDone) => (store.state(), false),
            Ok(_) => (Vec::new(), false),
            Err(e) => {
                warn!(error = %e, kind = %K::kind(&()), "watch");
                (Vec::new(), false)
            }
        };
        followers.send(&changed, deleted);
    }
}

/// Keeps from a followed stream only the objects whose `identity` changed
/// since that object was last seen (the first sighting always passes), and
/// every object no longer in `store`: a delete, whose last state carries
/// the identity last seen, must still reach the trigger.
pub fn changes<K: Cached>(
    stream: impl Stream<Item = Arc<K>> + Send,
    store: Store<K>,
    identity: fn(&K) -> u64,
) -> impl Stream<Item = Arc<K>> + Send {
    let mut seen: HashMap<String, u64> = HashMap::new();
    stream.filter(move |o| {
        let name = o.name_any();
        let passes = if store.get(&ObjectRef::from_obj(o.as_ref())).is_none() {
            seen.remove(&name);
            true
        } else {
            let id = identity(o);
            seen.insert(name, id) != Some(id)
        };
        std::future::ready(passes)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;

    fn cm(name: &str, value: &str) -> Arc<ConfigMap> {
        let mut c = ConfigMap::default();
        c.metadata.name = Some(name.into());
        c.data = Some([("k".to_string(), value.to_string())].into());
        Arc::new(c)
    }

    fn value(c: &ConfigMap) -> u64 {
        c.data
            .as_ref()
            .and_then(|d| d.get("k"))
            .map_or(0, |v| v.len() as u64)
    }

    #[tokio::test]
    async fn only_changes_and_deletes_pass_and_each_object_is_tracked_apart() {
        let (store, mut writer) = reflector::store::<ConfigMap>();
        for c in [cm("a", "x"), cm("b", "x")] {
            writer.apply_watcher_event(&watcher::Event::Apply(c.as_ref().clone()));
        }
        let input = futures::stream::iter([
            cm("a", "x"),
            cm("b", "x"),
            cm("a", "y"),
            cm("a", "yy"),
            cm("b", "x"),
            // Not in the store: deleted since, in its last state.
            cm("c", "x"),
        ]);
        let out: Vec<String> = changes(input, store, value)
            .map(|c| format!("{}={}", c.name_any(), value(&c)))
            .collect()
            .await;
        assert_eq!(out, ["a=1", "b=1", "a=2", "c=1"]);
    }
}
