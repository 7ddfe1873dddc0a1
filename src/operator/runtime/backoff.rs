//! The home of retrying: one error policy for every controller (per-object
//! exponential backoff, so one object failing again and again neither
//! hammers the API server nor delays the others; a success resets it), and
//! the schedule of a failed issuance, which a certificate's status records
//! and every pass honours.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::operator::Error;

/// A doubling delay: `first`, twice that, … capped at `max`.
pub struct Schedule {
    first: Duration,
    max: Duration,
}

impl Schedule {
    /// The delay after `failures` failures (1-based).
    pub fn delay(&self, failures: u32) -> Duration {
        let shift = failures.clamp(1, 20) - 1;
        self.first.saturating_mul(1u32 << shift).min(self.max)
    }

    /// How long is left to wait after `failures` failures, the last at
    /// `last`; None when the next try is due.
    pub fn remaining(
        &self,
        failures: u32,
        last: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Option<Duration> {
        let due = last + chrono::Duration::from_std(self.delay(failures)).ok()?;
        (due - now).to_std().ok().filter(|d| !d.is_zero())
    }
}

/// Reconcile errors: 1 s, 2 s, 4 s, … 5 min, kept in memory per object.
pub const ERRORS: Schedule = Schedule {
    first: Duration::from_secs(1),
    max: Duration::from_secs(300),
};

/// A failed issuance: 5 s, 10 s, 20 s, … 5 min, counted in the
/// certificate's status (`failedIssuanceAttempts`, `lastFailureTime`), so
/// that whatever starts a pass (the watch event of that very status write,
/// a restart, another replica) it waits as the condition says.
pub const ISSUANCE: Schedule = Schedule {
    first: Duration::from_secs(5),
    max: Duration::from_secs(300),
};

#[derive(Default)]
pub struct Backoff {
    failures: Mutex<HashMap<String, u32>>,
}

impl Backoff {
    /// The delay before the next try of `key`. A conflict (another writer
    /// was first) is retried at once: the next pass reads what they wrote.
    pub fn next(&self, key: &str, error: &Error) -> Duration {
        if error.is_status(409) {
            return Duration::from_millis(200);
        }
        let n = match self.failures.lock() {
            Ok(mut f) => {
                let n = f.entry(key.to_string()).or_default();
                *n = n.saturating_add(1);
                *n
            }
            Err(_) => 1,
        };
        delay(n)
    }

    pub fn reset(&self, key: &str) {
        if let Ok(mut f) = self.failures.lock() {
            f.remove(key);
        }
    }
}

/// The error policy of every controller: count, log, and retry after this
/// object's next backoff delay.
pub fn retry(
    controller: &str,
    name: &str,
    error: &Error,
    ctx: &crate::operator::Context,
) -> kube::runtime::controller::Action {
    kube::runtime::controller::Action::requeue(retry_delay(controller, name, error, ctx))
}

/// As `retry`, for a controller that keeps its own queue: the delay.
pub fn retry_delay(
    controller: &str,
    name: &str,
    error: &Error,
    ctx: &crate::operator::Context,
) -> std::time::Duration {
    ctx.metrics.reconcile_error(controller);
    let delay = ctx.backoff.next(&format!("{controller}/{name}"), error);
    tracing::warn!(controller, object = name, %error, retry_in = ?delay, "reconcile failed");
    delay
}

/// 1 s, 2 s, 4 s, … capped at 5 min.
pub fn delay(failures: u32) -> Duration {
    ERRORS.delay(failures)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backs_off_per_object_and_resets() {
        let b = Backoff::default();
        let e = Error::LostLeadership;
        let a: Vec<u64> = (0..10).map(|_| b.next("a", &e).as_secs()).collect();
        assert_eq!(a, vec![1, 2, 4, 8, 16, 32, 64, 128, 256, 300]);
        assert_eq!(b.next("b", &e).as_secs(), 1, "another object starts afresh");
        b.reset("a");
        assert_eq!(b.next("a", &e).as_secs(), 1);
        assert_eq!(delay(u32::MAX), ERRORS.max);
    }

    #[test]
    fn an_issuance_waits_out_its_delay_from_the_last_failure() {
        let last = Utc::now();
        let after = |s: i64| last + chrono::Duration::seconds(s);
        let secs: Vec<u64> = (1..=8).map(|n| ISSUANCE.delay(n).as_secs()).collect();
        assert_eq!(secs, vec![5, 10, 20, 40, 80, 160, 300, 300]);
        assert_eq!(
            ISSUANCE.remaining(1, last, after(0)),
            Some(Duration::from_secs(5))
        );
        assert_eq!(
            ISSUANCE.remaining(3, last, after(19)),
            Some(Duration::from_secs(1))
        );
        assert_eq!(ISSUANCE.remaining(1, last, after(5)), None);
        assert_eq!(ISSUANCE.remaining(1, last, after(600)), None);
        assert_eq!(ISSUANCE.remaining(u32::MAX, last, after(300)), None);
    }
}
