//! How long a watch waits before trying again after an error. kube's
//! default (client-go's: 0.8 s doubling to 30 s, reset only by a success)
//! sits on a controller's merged trigger stream, so one watch's error
//! pauses all of that controller's watches: after an API-server restart
//! the outage's connection errors, then each watch's "resource version too
//! old" in turn, each paused the controller again, and certop caught up a
//! minute after the API server was back. Here every watch backs off on its
//! own errors, capped at 5 s, and the merged stream does not wait at all; a
//! watch that keeps failing still costs the API server only one request
//! every 5 s.

use std::time::Duration;

use kube::runtime::utils::Backoff;

const FIRST: Duration = Duration::from_millis(500);
const MAX: Duration = Duration::from_secs(5);

/// Exponential from 0.5 s to 5 s; any event that arrives resets it.
#[derive(Clone, Copy, Debug, Default)]
pub struct WatchBackoff {
    failures: u32,
}

impl Iterator for WatchBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let delay = FIRST.saturating_mul(1 << self.failures.min(16)).min(MAX);
        self.failures = self.failures.saturating_add(1);
        Some(delay)
    }
}

impl Backoff for WatchBackoff {
    fn reset(&mut self) {
        self.failures = 0;
    }
}

/// For a controller's merged trigger stream: no pause of its own, since
/// every watch merged into it backs off alone ([`WatchBackoff`]).
#[derive(Clone, Copy, Debug, Default)]
pub struct EachWatchBacksOff;

impl Iterator for EachWatchBacksOff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        Some(Duration::ZERO)
    }
}

impl Backoff for EachWatchBacksOff {
    fn reset(&mut self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_from_half_a_second_to_five_and_starts_over_on_reset() {
        let mut b = WatchBackoff::default();
        let ms: Vec<u128> = (&mut b).take(7).map(|d| d.as_millis()).collect();
        assert_eq!(ms, [500, 1000, 2000, 4000, 5000, 5000, 5000]);
        for _ in 0..100 {
            assert_eq!(b.next(), Some(MAX));
        }
        b.reset();
        assert_eq!(b.next(), Some(FIRST));
    }
}
