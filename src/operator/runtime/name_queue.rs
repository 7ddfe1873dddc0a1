//! The certificate controller's queue, in front of kube-runtime's.
//!
//! Every certificate waits for its renewal, so a queue of certificates
//! holds all of them all the time. kube-runtime's scheduler holds each
//! waiting object as two object references, a map entry and a delay
//! queue's slot (about 600 bytes measured at 100,000), and its map and
//! slab never shrink: a restart, or a CA change, that queues every
//! certificate at once leaves them at their largest. This queue holds a
//! waiting certificate by its name alone, and hands kube-runtime at most
//! `window` names whose pass has not finished (and, beyond them, a name
//! pushed again while its pass runs), so kube-runtime's queue stays the
//! size of the work in flight.
//!
//! The newest name leaves first, as kube-runtime's delay queue let its
//! due entries go (a stack): a pass's own echoes (its status and Secret
//! writes coming back through the watches) are then looked at while the
//! copy of the Secret it wrote is held (`written_secrets`, bounded), not
//! after a backlog of 100,000 has passed and the copy is gone, which cost
//! a Secret GET per certificate when this queue was first in, first out.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::{Stream, StreamExt};
use tokio::sync::Notify;
use tokio::time::Instant;

/// How many names kube-runtime may hold whose pass has not finished, at
/// the least; the controller widens it to twice `--concurrency`. Enough
/// that its runners never wait for this queue, and no more: names in
/// kube-runtime's queue run before any still here, so a wide window
/// puts a backlog ahead of the echoes of the passes just made.
pub const WINDOW: usize = 32;

/// How often a full window looks for names whose object went away.
const PRUNE_EVERY: Duration = Duration::from_secs(1);

/// At most this many pending names are looked at under the lock at once:
/// a mass delete can leave many names whose objects are gone.
const MOST_LOOKED_AT: usize = 4096;

/// The names of a controller's objects: those to look at now (each once,
/// the newest first), those handed to kube-runtime, and each one's next
/// wake. Pure: every method is told the time.
#[derive(Debug)]
pub struct Queue {
    window: usize,
    pending: VecDeque<Arc<str>>,
    pending_names: HashSet<Arc<str>>,
    released: HashSet<Arc<str>>,
    wakes: BTreeSet<(Instant, Arc<str>)>,
    wake_of: HashMap<Arc<str>, Instant>,
    pruned_at: Option<Instant>,
}

impl Queue {
    pub fn new(window: usize) -> Self {
        Queue {
            window: window.max(1),
            pending: VecDeque::new(),
            pending_names: HashSet::new(),
            released: HashSet::new(),
            wakes: BTreeSet::new(),
            wake_of: HashMap::new(),
            pruned_at: None,
        }
    }

    /// The object is to be looked at now. False: it already waits to be.
    pub fn push(&mut self, name: &str) -> bool {
        if self.pending_names.contains(name) {
            return false;
        }
        let name = self.shared(name);
        self.pending_names.insert(name.clone());
        self.pending.push_back(name);
        true
    }

    /// The object is to be looked at `at`, in place of any earlier wake.
    pub fn wake_at(&mut self, name: &str, at: Instant) {
        self.cancel_wake(name);
        let name = self.shared(name);
        self.wakes.insert((at, name.clone()));
        self.wake_of.insert(name, at);
    }

    pub fn cancel_wake(&mut self, name: &str) {
        if let Some((name, at)) = self.wake_of.remove_entry(name) {
            self.wakes.remove(&(at, name));
        }
    }

    /// A pass of the object finished, or kube-runtime found it gone: its
    /// place in the window is free.
    pub fn finished(&mut self, name: &str) -> bool {
        self.released.remove(name)
    }

    pub fn set_window(&mut self, window: usize) {
        self.window = window.max(1);
    }

    /// The names kube-runtime may take now: the wakes due by `now` join
    /// the pending names, then as many as the window allows leave, each
    /// of an object that `exists` (one gone needs no pass, and kube-runtime
    /// would run none). A full window first lets go of the names whose
    /// object went away after they left (kube-runtime runs no pass for
    /// them, so none finishes).
    pub fn release(&mut self, now: Instant, exists: impl Fn(&str) -> bool) -> Vec<Arc<str>> {
        while let Some((at, _)) = self.wakes.first() {
            if *at > now {
                break;
            }
            if let Some((_, name)) = self.wakes.pop_first() {
                self.wake_of.remove(&name);
                if !self.pending_names.contains(&name) {
                    self.pending_names.insert(name.clone());
                    self.pending.push_back(name);
                }
            }
        }
        let full = self.released.len() >= self.window && !self.pending.is_empty();
        if full
            && self
                .pruned_at
                .is_none_or(|at| now.saturating_duration_since(at) >= PRUNE_EVERY)
        {
            self.released.retain(|name| exists(name));
            self.pruned_at = Some(now);
        }
        let mut out = Vec::new();
        let mut looked_at = 0;
        while self.released.len() < self.window && looked_at < MOST_LOOKED_AT {
            let Some(name) = self.pending.pop_back() else {
                break;
            };
            looked_at += 1;
            self.pending_names.remove(&name);
            if exists(&name) {
                self.released.insert(name.clone());
                out.push(name);
            }
        }
        // A restart or a re-list pushes every name at once: the room they
        // took is given back once they are all out.
        if self.pending.is_empty() && self.pending.capacity() > 4 * self.window {
            self.pending.shrink_to_fit();
            self.pending_names.shrink_to_fit();
        }
        out
    }

    /// Whether a name could leave now (the window has room for one pending).
    pub fn can_release(&self) -> bool {
        !self.pending.is_empty() && self.released.len() < self.window
    }

    /// When the next wake is due.
    pub fn next_wake(&self) -> Option<Instant> {
        self.wakes.first().map(|(at, _)| *at)
    }

    /// How many names wait: to be looked at now, and for a wake.
    pub fn lengths(&self) -> (usize, usize) {
        (self.pending.len(), self.wake_of.len())
    }

    /// One allocation of a name for all of the queue's sets.
    fn shared(&self, name: &str) -> Arc<str> {
        self.pending_names
            .get(name)
            .or_else(|| self.wake_of.get_key_value(name).map(|(k, _)| k))
            .or_else(|| self.released.get(name))
            .cloned()
            .unwrap_or_else(|| Arc::from(name))
    }
}

/// A `Queue` shared by a controller's triggers, its passes and the stream
/// that feeds kube-runtime.
#[derive(Debug)]
pub struct NameQueue {
    queue: Mutex<Queue>,
    changed: Notify,
}

impl Default for NameQueue {
    fn default() -> Self {
        NameQueue {
            queue: Mutex::new(Queue::new(WINDOW)),
            changed: Notify::new(),
        }
    }
}

impl NameQueue {
    fn queue(&self) -> MutexGuard<'_, Queue> {
        // No method panics while holding it; a poisoned lock still holds
        // a whole queue.
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn push(&self, name: &str) {
        if self.queue().push(name) {
            self.changed.notify_one();
        }
    }

    /// The object is to be looked at after `wait`, in place of any earlier wake.
    pub fn wake_after(&self, name: &str, wait: Duration) {
        let at = Instant::now() + wait;
        let sooner = {
            let mut queue = self.queue();
            let sooner = queue.next_wake().is_none_or(|next| at < next);
            queue.wake_at(name, at);
            sooner
        };
        if sooner {
            self.changed.notify_one();
        }
    }

    pub fn cancel_wake(&self, name: &str) {
        self.queue().cancel_wake(name);
    }

    /// A window of at least `window` names (see `WINDOW`).
    pub fn widen(&self, window: usize) {
        let mut queue = self.queue();
        let widest = queue.window.max(window);
        queue.set_window(widest);
    }

    pub fn finished(&self, name: &str) {
        let freed = {
            let mut queue = self.queue();
            queue.finished(name) && queue.lengths().0 > 0
        };
        if freed {
            self.changed.notify_one();
        }
    }

    #[cfg(test)]
    pub fn lengths(&self) -> (usize, usize) {
        self.queue().lengths()
    }

    #[cfg(test)]
    pub fn wake_of(&self, name: &str) -> Option<Instant> {
        self.queue().wake_of.get(name).copied()
    }

    /// The names for kube-runtime, as the window and the wakes let them
    /// go. Its one consumer is the controller: `notify_one` keeps a wake
    /// that comes while no one waits for the next look.
    pub fn released(
        self: Arc<Self>,
        exists: impl Fn(&str) -> bool + Send + Sync + 'static,
    ) -> impl Stream<Item = Arc<str>> + Send {
        let exists = Arc::new(exists);
        futures::stream::unfold(self, move |queue| {
            let exists = exists.clone();
            async move {
                loop {
                    let (names, more, next) = {
                        let mut q = queue.queue();
                        let names = q.release(Instant::now(), |n| exists(n));
                        (names, q.can_release(), q.next_wake())
                    };
                    if !names.is_empty() {
                        return Some((names, queue));
                    }
                    if more {
                        // Only names of objects gone were looked at: the
                        // lock is let go before the next ones.
                        tokio::task::yield_now().await;
                        continue;
                    }
                    match next {
                        Some(at) => {
                            tokio::select! {
                                _ = queue.changed.notified() => {}
                                _ = tokio::time::sleep_until(at) => {}
                            }
                        }
                        None => queue.changed.notified().await,
                    }
                }
            }
        })
        .flat_map(futures::stream::iter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(_: &str) -> bool {
        true
    }

    fn names(v: Vec<Arc<str>>) -> Vec<String> {
        v.into_iter().map(|n| n.to_string()).collect()
    }

    #[test]
    fn names_leave_once_each_the_newest_first() {
        let now = Instant::now();
        let mut q = Queue::new(10);
        assert!(q.push("a"));
        assert!(q.push("b"));
        assert!(!q.push("a"), "a waits already");
        assert_eq!(names(q.release(now, all)), ["b", "a"]);
        assert!(names(q.release(now, all)).is_empty());
        // Pushed again while its pass runs: it goes again (a change came
        // after the pass began).
        assert!(q.push("a"));
        assert_eq!(names(q.release(now, all)), ["a"]);
    }

    #[test]
    fn no_more_than_the_window_is_out_until_a_pass_finishes() {
        let now = Instant::now();
        let mut q = Queue::new(2);
        for n in ["a", "b", "c", "d"] {
            q.push(n);
        }
        assert_eq!(names(q.release(now, all)), ["d", "c"]);
        assert!(names(q.release(now, all)).is_empty(), "the window is full");
        assert!(q.finished("d"));
        assert!(!q.finished("d"), "finished once");
        assert!(!q.finished("x"), "never released");
        assert_eq!(names(q.release(now, all)), ["b"]);
        assert_eq!(q.lengths(), (1, 0));
    }

    #[test]
    fn a_full_window_lets_go_of_names_whose_object_went_away_after_they_left() {
        let now = Instant::now();
        let mut q = Queue::new(1);
        q.push("b");
        q.push("gone-before-its-pass");
        assert_eq!(names(q.release(now, all)), ["gone-before-its-pass"]);
        assert!(
            names(q.release(now, all)).is_empty(),
            "its object still exists"
        );
        let gone = |n: &str| n != "gone-before-its-pass";
        assert!(
            names(q.release(now, gone)).is_empty(),
            "looked for once a second"
        );
        assert_eq!(names(q.release(now + PRUNE_EVERY, gone)), ["b"]);
    }

    #[test]
    fn a_mass_of_names_of_objects_gone_is_looked_at_a_part_at_a_time() {
        let now = Instant::now();
        let mut q = Queue::new(10);
        q.push("here");
        for i in 0..(MOST_LOOKED_AT + 10) {
            q.push(&format!("gone-{i}"));
        }
        let none = |n: &str| n == "here";
        assert!(names(q.release(now, none)).is_empty());
        assert!(q.can_release(), "more to look at");
        assert_eq!(names(q.release(now, none)), ["here"]);
        assert!(!q.can_release());
        assert!(q.pending.capacity() <= 4 * 10, "the room given back");
    }

    #[test]
    fn a_window_is_widened_never_narrowed() {
        let queue = NameQueue::default();
        queue.widen(WINDOW / 2);
        assert_eq!(queue.queue().window, WINDOW);
        queue.widen(2048);
        assert_eq!(queue.queue().window, 2048);
    }

    #[test]
    fn an_object_gone_is_not_released_and_takes_no_place() {
        let now = Instant::now();
        let mut q = Queue::new(1);
        q.push("here");
        q.push("gone");
        assert_eq!(names(q.release(now, |n| n != "gone")), ["here"]);
        assert_eq!(q.lengths(), (0, 0));
    }

    #[test]
    fn wakes_release_at_their_time_the_latest_replacing_the_earlier() {
        let t = Instant::now();
        let s = Duration::from_secs;
        let mut q = Queue::new(10);
        q.wake_at("a", t + s(10));
        q.wake_at("b", t + s(5));
        assert_eq!(q.next_wake(), Some(t + s(5)));
        assert!(names(q.release(t, all)).is_empty());
        assert_eq!(names(q.release(t + s(5), all)), ["b"]);
        q.wake_at("a", t + s(20));
        assert_eq!(q.lengths(), (0, 1), "one wake per name");
        assert!(names(q.release(t + s(10), all)).is_empty(), "replaced");
        assert_eq!(names(q.release(t + s(20), all)), ["a"]);
        q.wake_at("c", t + s(30));
        q.cancel_wake("c");
        assert_eq!(q.next_wake(), None);
        assert!(names(q.release(t + s(40), all)).is_empty());
    }

    #[test]
    fn a_wake_due_for_a_name_already_pending_is_not_a_second_entry() {
        let t = Instant::now();
        let mut q = Queue::new(10);
        q.push("a");
        q.wake_at("a", t);
        assert_eq!(names(q.release(t, all)), ["a"]);
        assert_eq!(q.lengths(), (0, 0));
    }

    #[test]
    fn a_name_is_allocated_once_for_its_wake_and_its_turn() {
        let t = Instant::now();
        let mut q = Queue::new(10);
        q.wake_at("a", t + Duration::from_secs(1));
        q.push("a");
        let pending = q.pending.back().cloned().expect("pending");
        let waking = q.wake_of.keys().next().cloned().expect("wake");
        assert!(Arc::ptr_eq(&pending, &waking));
    }

    #[tokio::test(start_paused = true)]
    async fn the_stream_gives_a_pushed_name_at_once_and_a_wake_at_its_time() {
        let queue = Arc::new(NameQueue::default());
        let mut released = Box::pin(queue.clone().released(|_| true));
        let start = Instant::now();
        queue.wake_after("later", Duration::from_secs(30));
        queue.push("now");
        assert_eq!(released.next().await.as_deref(), Some("now"));
        assert_eq!(start.elapsed(), Duration::ZERO);
        assert_eq!(released.next().await.as_deref(), Some("later"));
        assert_eq!(start.elapsed(), Duration::from_secs(30));
        // A sooner wake set while the stream sleeps towards a later one.
        queue.wake_after("last", Duration::from_secs(100));
        let q = queue.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            q.wake_after("sooner", Duration::from_secs(10));
        });
        assert_eq!(released.next().await.as_deref(), Some("sooner"));
        assert_eq!(start.elapsed(), Duration::from_secs(41));
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_window_opens_when_a_pass_finishes() {
        let queue = Arc::new(NameQueue {
            queue: Mutex::new(Queue::new(1)),
            changed: Notify::new(),
        });
        let mut released = Box::pin(queue.clone().released(|_| true));
        queue.push("b");
        queue.push("a");
        assert_eq!(released.next().await.as_deref(), Some("a"));
        let q = queue.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(3)).await;
            q.finished("a");
        });
        let start = Instant::now();
        assert_eq!(released.next().await.as_deref(), Some("b"));
        assert_eq!(start.elapsed(), Duration::from_secs(3));
    }
}
