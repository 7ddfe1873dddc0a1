//! One error policy for every controller: per-object exponential backoff,
//! so one object failing again and again neither hammers the API server
//! nor delays the others; a success resets it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use super::Error;

const FIRST: Duration = Duration::from_secs(1);
const MAX: Duration = Duration::from_secs(300);

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
    ctx: &super::Context,
) -> kube::runtime::controller::Action {
    ctx.metrics.reconcile_error(controller);
    let delay = ctx.backoff.next(&format!("{controller}/{name}"), error);
    tracing::warn!(controller, object = name, %error, retry_in = ?delay, "reconcile failed");
    kube::runtime::controller::Action::requeue(delay)
}

/// 1 s, 2 s, 4 s, … capped at 5 min.
pub fn delay(failures: u32) -> Duration {
    let shift = failures.clamp(1, 20) - 1;
    FIRST.saturating_mul(1u32 << shift).min(MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backs_off_per_object_and_resets() {
        let b = Backoff::default();
        let e = Error::Task("x".into());
        let a: Vec<u64> = (0..10).map(|_| b.next("a", &e).as_secs()).collect();
        assert_eq!(a, vec![1, 2, 4, 8, 16, 32, 64, 128, 256, 300]);
        assert_eq!(b.next("b", &e).as_secs(), 1, "another object starts afresh");
        b.reset("a");
        assert_eq!(b.next("a", &e).as_secs(), 1);
        assert_eq!(delay(u32::MAX), MAX);
    }
}
