//! Group commit of ledger records: the records of many passes that fall
//! in the same shard go in one write of it. Each shard has at most one
//! writer at a time; records that arrive while it writes wait in the
//! shard's queue, and when it is done the first of them becomes the next
//! writer and takes the whole queue into its one write. A backlog of
//! thousands of certificates thus costs a shard write per group, not one
//! per certificate.
//!
//! Left to itself a group is what arrived during the previous write, a
//! record or two when the API server answers in milliseconds: too few to
//! matter. So the writer of a pass that said it may wait
//! (`Patience::Gather`) writes no sooner than `GATHER` after the shard's
//! last write ended, and more records join meanwhile; under load each
//! shard is then written about once per `GATHER`, and a record for a shard
//! not written that long is written at once.
//!
//! Crash safety is the single record's: a pass gets its answer only after
//! the write holding its entry succeeded, and hands nothing out before
//! that; a failed group write fails every pass of the group, and each is
//! decided again by its next pass (a pod certificate's serial is derived
//! from its request, so that pass records the same serial).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use chrono::{DateTime, Utc};
use tokio::sync::mpsc;

use super::{LedgerError, Recorded};
use crate::core::ledger::{LedgerEntry, RevocationRule};
use crate::pki::RevocationReason;

/// How long the writer of a busy shard gathers records before it writes.
/// Under a backlog each of a CA's 64 shards is written about once per
/// `GATHER` plus a write, so the ledger costs about 64 / (rate × 1.6 s)
/// writes per record: 0.12 at 330 a second (1 s gave 0.16–0.18). A pass
/// waits for its record at most this much longer than the write itself.
pub const GATHER: std::time::Duration = std::time::Duration::from_millis(1500);

/// Whether a pass may wait for more records to join its write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Patience {
    /// Written as soon as the shard is free.
    Prompt,
    /// On a busy shard, its writer gathers for `GATHER` first.
    Gather,
}

/// One record waiting for its shard's write.
pub(super) struct Waiting {
    pub entry: LedgerEntry,
    pub rules: Vec<(RevocationRule, RevocationReason)>,
    pub now: DateTime<Utc>,
    patience: Patience,
    turns: mpsc::UnboundedSender<Turn>,
}

impl Waiting {
    /// Tells the waiting pass; a pass that is gone (cancelled) is not told.
    pub fn tell(&self, turn: Turn) {
        let _ = self.turns.send(turn);
    }
}

/// What a waiting record is told.
#[derive(Debug)]
pub(super) enum Turn {
    /// The shard has no writer: it is the next, for the whole queue, to
    /// write no sooner than `not_before` (gathering until then).
    Write { not_before: Option<Instant> },
    /// Its group was written: what recording found.
    Done(Recorded),
    /// Its group's write failed: nothing of it was recorded.
    Failed(GroupFailure),
}

/// Why a group's write failed, as each of its passes is told.
#[derive(Clone, Debug)]
pub(super) enum GroupFailure {
    /// A shard certop will not write (corrupt, full): its own error.
    Ledger(LedgerError),
    /// What the API server or the connection answered, as text.
    Write(String),
}

/// The records waiting, per shard ConfigMap name, and whether the shard
/// has a writer (it has one exactly while its entry exists); and the
/// deferred records (`ledger_store::record_deferred`) by shard and serial.
pub struct RecordGroups {
    shards: Mutex<Shards>,
    deferred: Mutex<HashMap<String, Deferral>>,
    /// Whether a record for a busy shard is deferred (off in the
    /// scenarios, which run their passes one after the other and expect
    /// each to finish what it starts).
    defer: std::sync::atomic::AtomicBool,
}

impl Default for RecordGroups {
    fn default() -> Self {
        RecordGroups {
            shards: Mutex::default(),
            deferred: Mutex::default(),
            defer: std::sync::atomic::AtomicBool::new(true),
        }
    }
}

/// A deferred record: being written, or what its write found (kept until
/// its pass asks, at most `FINISHED_KEPT`).
pub(super) enum Deferral {
    Pending,
    Finished(Result<Recorded, GroupFailure>, Instant),
}

/// How long what a deferred write found waits for its pass to ask.
const FINISHED_KEPT: std::time::Duration = std::time::Duration::from_secs(600);

#[derive(Default)]
struct Shards {
    queues: HashMap<String, Vec<Waiting>>,
    /// When each shard's last write ended (one entry per shard written).
    written: HashMap<String, Instant>,
}

impl Shards {
    /// When a writer for `waiting` may write `shard`.
    fn not_before(&self, shard: &str, waiting: &Waiting) -> Option<Instant> {
        match waiting.patience {
            Patience::Prompt => None,
            Patience::Gather => self.written.get(shard).map(|t| *t + GATHER),
        }
    }
}

impl RecordGroups {
    /// Turns the deferral of records for busy shards on or off.
    pub fn set_deferral(&self, on: bool) {
        self.defer.store(on, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether a record for `shard` is better deferred than waited for:
    /// the shard has a writer, or was written less than `GATHER` ago, so
    /// its record gathers with others (a backlog).
    pub(super) fn busy(&self, shard: &str) -> bool {
        if !self.defer.load(std::sync::atomic::Ordering::Relaxed) {
            return false;
        }
        let shards = self.lock();
        shards.queues.contains_key(shard)
            || shards
                .written
                .get(shard)
                .is_some_and(|t| t.elapsed() < GATHER)
    }

    /// As if every shard of `names` had just been written (a backlog).
    #[cfg(test)]
    pub fn written_now<'a>(&self, names: impl IntoIterator<Item = &'a str>) {
        let mut shards = self.lock();
        for name in names {
            shards.written.insert(name.to_string(), Instant::now());
        }
    }

    /// What became of the deferred record `key`: still pending, finished
    /// (taken: asked once), or unknown (never deferred, or forgotten).
    pub(super) fn deferral(&self, key: &str) -> Option<Deferral> {
        let mut deferred = self
            .deferred
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match deferred.get(key) {
            Some(Deferral::Pending) => Some(Deferral::Pending),
            Some(Deferral::Finished(..)) => deferred.remove(key),
            None => None,
        }
    }

    /// Marks `key` deferred; false if it already was.
    pub(super) fn defer(&self, key: &str) -> bool {
        let mut deferred = self
            .deferred
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        deferred.retain(|_, d| match d {
            Deferral::Pending => true,
            Deferral::Finished(_, at) => at.elapsed() < FINISHED_KEPT,
        });
        if deferred.contains_key(key) {
            return false;
        }
        deferred.insert(key.to_string(), Deferral::Pending);
        true
    }

    /// What the deferred write of `key` found.
    pub(super) fn finish(&self, key: String, found: Result<Recorded, GroupFailure>) {
        self.deferred
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(key, Deferral::Finished(found, Instant::now()));
    }

    /// Queues a record for `shard`: the receiver of its turns. It is told
    /// `Write` at once when the shard has no writer.
    pub(super) fn join(
        &self,
        shard: &str,
        entry: LedgerEntry,
        rules: Vec<(RevocationRule, RevocationReason)>,
        patience: Patience,
        now: DateTime<Utc>,
    ) -> mpsc::UnboundedReceiver<Turn> {
        let (turns, receiver) = mpsc::unbounded_channel();
        let waiting = Waiting {
            entry,
            rules,
            now,
            patience,
            turns,
        };
        let mut shards = self.lock();
        match shards.queues.get_mut(shard) {
            Some(queue) => queue.push(waiting),
            None => {
                waiting.tell(Turn::Write {
                    not_before: shards.not_before(shard, &waiting),
                });
                shards.queues.insert(shard.to_string(), vec![waiting]);
            }
        }
        receiver
    }

    /// The writer's hold of `shard`: it hands the shard to the next writer
    /// when dropped, so a writer that fails or is cancelled (also while it
    /// gathers) never leaves a queue waiting.
    pub(super) fn writer<'a>(&'a self, shard: &str) -> Handover<'a> {
        Handover {
            groups: self,
            shard: shard.to_string(),
        }
    }

    /// Every record queued for `shard`, the writer's own among them.
    fn take(&self, shard: &str) -> Vec<Waiting> {
        self.lock()
            .queues
            .get_mut(shard)
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// The queues; no code panics while holding them, and a poisoned lock
    /// still holds consistent queues (each change is one insert or take).
    fn lock(&self) -> std::sync::MutexGuard<'_, Shards> {
        self.shards
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Makes the first waiting record whose pass is still there the
    /// shard's writer, or leaves the shard without one.
    fn hand_over(&self, shard: &str) {
        let mut shards = self.lock();
        shards.written.insert(shard.to_string(), Instant::now());
        let Some(queue) = shards.queues.get_mut(shard) else {
            return;
        };
        // A pass cancelled while it waited has dropped its receiver: its
        // record leaves the queue with it.
        queue.retain(|w| !w.turns.is_closed());
        let next = queue.first().map(|w| (w.patience, w.turns.clone()));
        match next {
            Some((patience, turns)) => {
                let not_before = match patience {
                    Patience::Prompt => None,
                    Patience::Gather => Some(Instant::now() + GATHER),
                };
                let _ = turns.send(Turn::Write { not_before });
            }
            None => {
                shards.queues.remove(shard);
            }
        }
    }
}

/// Hands the shard on when the writer is done (or dropped).
pub(super) struct Handover<'a> {
    groups: &'a RecordGroups,
    shard: String,
}

impl Handover<'_> {
    /// Takes the group to write: every record queued now.
    pub fn take(&self) -> Vec<Waiting> {
        self.groups.take(&self.shard)
    }
}

impl Drop for Handover<'_> {
    fn drop(&mut self) {
        self.groups.hand_over(&self.shard);
    }
}
