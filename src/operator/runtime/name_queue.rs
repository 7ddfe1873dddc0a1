//! The certificate controller's queue: a work queue of names.
//!
//! Every certificate waits for its renewal, so a queue of certificates
//! holds all of them all the time. This one holds a waiting certificate
//! by its name alone (one allocation, shared by its turn and its wake),
//! and gives out at most `window` names whose pass has not finished.
//! A name is never given out twice at once: one pushed again, or whose
//! wake comes, while its pass runs goes back to wait when that pass
//! finishes (a work queue's dirty set), so two passes of one certificate
//! never overlap. kube-runtime's scheduler, which this replaced, held
//! each waiting object as two object references, a map entry and a delay
//! queue's slot, in a map and slab that never shrink.
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

/// How many names may be out (their pass not finished) when the
/// controller does not say (`set_window`: `--concurrency`). No more than
/// run at once: a name given out waits ahead of every name still here,
/// so a wide window puts a backlog ahead of the echoes of the passes
/// just made.
pub const WINDOW: usize = 16;

/// At most this many pending names are looked at under the lock at once:
/// a mass delete can leave many names whose objects are gone.
const MOST_LOOKED_AT: usize = 4096;

/// The names of a controller's objects: those to look at now (each once,
/// the newest first), those out (their pass running), those to look at
/// again once their pass finishes, and each one's next wake. Pure: every
/// method is told the time.
#[derive(Debug)]
pub struct Queue {
    window: usize,
    pending: VecDeque<Arc<str>>,
    pending_names: HashSet<Arc<str>>,
    out: HashSet<Arc<str>>,
    again: HashSet<Arc<str>>,
    wakes: BTreeSet<(Instant, Arc<str>)>,
    wake_of: HashMap<Arc<str>, Instant>,
}

impl Queue {
    pub fn new(window: usize) -> Self {
        Queue {
            window: window.max(1),
            pending: VecDeque::new(),
            pending_names: HashSet::new(),
            out: HashSet::new(),
            again: HashSet::new(),
            wakes: BTreeSet::new(),
            wake_of: HashMap::new(),
        }
    }

    /// Queues `name` for a look now; false if it waits already (or its
    /// pass runs and it is to be looked at again after). A name given as
    /// an `Arc` (the certificate store's own) is held without a copy.
    pub fn push(&mut self, name: impl AsRef<str> + Into<Arc<str>>) -> bool {
        let key = name.as_ref();
        if self.pending_names.contains(key) || self.again.contains(key) {
            return false;
        }
        let held = self.shared(key);
        let name = held.unwrap_or_else(|| name.into());
        if self.out.contains(&name) {
            self.again.insert(name);
            return false;
        }
        self.pending_names.insert(name.clone());
        self.pending.push_back(name);
        true
    }

    /// Sets `name`'s next look at `at`, replacing any earlier wake.
    pub fn wake_at(&mut self, name: &str, at: Instant) {
        self.cancel_wake(name);
        let name = self.shared(name).unwrap_or_else(|| Arc::from(name));
        self.wakes.insert((at, name.clone()));
        self.wake_of.insert(name, at);
    }

    pub fn cancel_wake(&mut self, name: &str) {
        if let Some((name, at)) = self.wake_of.remove_entry(name) {
            self.wakes.remove(&(at, name));
        }
    }

    /// `name`'s pass ended: its place is free, and a name pushed while it
    /// ran waits again. False if it was not out.
    pub fn finished(&mut self, name: &str) -> bool {
        let Some(name) = self.out.take(name) else {
            return false;
        };
        if self.again.remove(&name) {
            self.pending_names.insert(name.clone());
            self.pending.push_back(name);
        }
        true
    }

    pub fn set_window(&mut self, window: usize) {
        self.window = window.max(1);
    }

    /// Moves the wakes due at `now` to the pending names, then gives out
    /// the newest pending names while the window has room. A name whose
    /// object is gone (`exists`) is dropped, not given out.
    pub fn release(&mut self, now: Instant, exists: impl Fn(&str) -> bool) -> Vec<Arc<str>> {
        while let Some((at, _)) = self.wakes.first() {
            if *at > now {
                break;
            }
            if let Some((_, name)) = self.wakes.pop_first() {
                self.wake_of.remove(&name);
                self.push(name);
            }
        }
        let mut out = Vec::new();
        let mut looked_at = 0;
        while self.out.len() < self.window && looked_at < MOST_LOOKED_AT {
            let Some(name) = self.pending.pop_back() else {
                break;
            };
            looked_at += 1;
            self.pending_names.remove(&name);
            if exists(&name) {
                self.out.insert(name.clone());
                out.push(name);
            }
        }
        if self.pending.is_empty() && self.pending.capacity() > 4 * self.window {
            self.pending.shrink_to_fit();
            self.pending_names.shrink_to_fit();
        }
        out
    }

    pub fn can_release(&self) -> bool {
        !self.pending.is_empty() && self.out.len() < self.window
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
    fn shared(&self, name: &str) -> Option<Arc<str>> {
        self.pending_names
            .get(name)
            .or_else(|| self.wake_of.get_key_value(name).map(|(k, _)| k))
            .or_else(|| self.out.get(name))
            .cloned()
    }
}

/// A `Queue` shared by a controller's triggers, its passes and its runner.
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

    pub fn push(&self, name: impl AsRef<str> + Into<Arc<str>>) {
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

    /// At most `window` names out at once: the runner's concurrency.
    pub fn set_window(&self, window: usize) {
        self.queue().set_window(window);
    }

    /// Every name given out must be finished, whether or not its pass ran.
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

    /// The names to look at, as the window and the wakes let them go. Its
    /// one consumer is the runner: `notify_one` keeps a wake that comes
    /// while no one waits for the next look.
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

    /// Runs `pass` for each name given out, at most `concurrency` at once,
    /// until `stopped` (the passes running then finish first). Every name
    /// given out is finished once its pass ends, so the window never
    /// loses a place.
    pub async fn run<P, F>(
        self: Arc<Self>,
        exists: impl Fn(&str) -> bool + Send + Sync + 'static,
        concurrency: usize,
        stopped: impl Future<Output = ()>,
        pass: P,
    ) where
        P: Fn(Arc<str>) -> F,
        F: Future<Output = ()>,
    {
        let concurrency = concurrency.max(1);
        self.set_window(concurrency);
        let queue = self.clone();
        self.released(exists)
            .take_until(stopped)
            .for_each_concurrent(concurrency, |name| {
                let queue = queue.clone();
                let pass = pass(name.clone());
                async move {
                    pass.await;
                    queue.finished(&name);
                }
            })
            .await;
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
        // Pushed again after its pass: it goes again.
        assert!(q.finished("a"));
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
    fn a_name_pushed_or_woken_while_its_pass_runs_waits_for_that_pass() {
        let now = Instant::now();
        let mut q = Queue::new(10);
        q.push("a");
        assert_eq!(names(q.release(now, all)), ["a"]);
        assert!(!q.push("a"), "out: looked at again after its pass");
        assert!(!q.push("a"), "once");
        q.wake_at("a", now);
        assert!(names(q.release(now, all)).is_empty(), "never out twice");
        assert_eq!(q.lengths(), (0, 0));
        assert!(q.finished("a"));
        assert_eq!(names(q.release(now, all)), ["a"], "its second look");
        assert!(q.finished("a"));
        assert!(names(q.release(now, all)).is_empty(), "only one more");
    }

    #[test]
    fn a_mass_of_names_of_objects_gone_is_looked_at_a_part_at_a_time() {
        let now = Instant::now();
        let mut q = Queue::new(10);
        q.push("here");
        for i in 0..(MOST_LOOKED_AT + 10) {
            q.push(format!("gone-{i}").as_str());
        }
        let none = |n: &str| n == "here";
        assert!(names(q.release(now, none)).is_empty());
        assert!(q.can_release(), "more to look at");
        assert_eq!(names(q.release(now, none)), ["here"]);
        assert!(!q.can_release());
        assert!(q.pending.capacity() <= 4 * 10, "the room given back");
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
        let stored: Arc<str> = Arc::from("b");
        q.push(stored.clone());
        let pending = q.pending.back().cloned().expect("pending");
        assert!(
            Arc::ptr_eq(&pending, &stored),
            "the caller's own, not a copy"
        );
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

    /// Each pass takes a second; a name pushed during its pass is looked
    /// at again after it, never beside it.
    #[tokio::test(start_paused = true)]
    async fn passes_run_at_most_concurrency_at_once_and_never_two_of_one_name() {
        let queue = Arc::new(NameQueue::default());
        let running: Arc<Mutex<Vec<String>>> = Arc::default();
        let most = Arc::new(Mutex::new(0usize));
        let passes: Arc<Mutex<Vec<String>>> = Arc::default();
        for n in ["a", "b", "c", "d", "e"] {
            queue.push(n);
        }
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let runner = {
            let (running, most, passes) = (running.clone(), most.clone(), passes.clone());
            let queue = queue.clone();
            tokio::spawn(queue.run(
                |_| true,
                2,
                async move {
                    let _ = stop_rx.await;
                },
                move |name| {
                    let (running, most, passes) = (running.clone(), most.clone(), passes.clone());
                    async move {
                        {
                            let mut r = running.lock().expect("running");
                            assert!(!r.contains(&name.to_string()), "{name} twice at once");
                            r.push(name.to_string());
                            let mut m = most.lock().expect("most");
                            *m = (*m).max(r.len());
                        }
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        running.lock().expect("running").retain(|n| **n != *name);
                        passes.lock().expect("passes").push(name.to_string());
                    }
                },
            ))
        };
        tokio::time::sleep(Duration::from_millis(500)).await;
        // "e" and "d" run now (the newest first): "e" is pushed again.
        queue.push("e");
        tokio::time::sleep(Duration::from_secs(10)).await;
        let _ = stop_tx.send(());
        runner.await.expect("runner");
        let mut done = passes.lock().expect("passes").clone();
        assert_eq!(done.iter().filter(|n| *n == "e").count(), 2, "{done:?}");
        done.sort();
        done.dedup();
        assert_eq!(done, ["a", "b", "c", "d", "e"]);
        assert_eq!(*most.lock().expect("most"), 2);
        assert!(queue.queue().out.is_empty(), "every place given back");
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
