//! What a replica's authorization webhook reports in a
//! CertificateRevocation's `status.apiServer`: that kube-apiserver asks it
//! (the last SubjectAccessReview it answered) and which requests made with
//! the revocation's certificates it refused. Every replica answers reviews
//! and keeps what it saw in memory; a writer folds that into the status at
//! most once per revocation per tick, merged into what the status already
//! says (other replicas' reports), so the write cost is bounded by the
//! number of revocations, never by the number of reviews. Pure.

use chrono::{DateTime, Duration, Utc};

use crate::api::ApiServerEnforcement;

/// How stale `lastReviewTime` may get before a replica refreshes it: the
/// one write a revocation gets while nothing is refused.
pub const REVIEW_REFRESH: Duration = Duration::minutes(10);

/// Requests made with a revocation's certificates that one replica refused
/// and has not reported yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Denials {
    pub first: DateTime<Utc>,
    pub last: DateTime<Utc>,
    pub count: i64,
}

impl Denials {
    pub fn one(at: DateTime<Utc>) -> Self {
        Denials {
            first: at,
            last: at,
            count: 1,
        }
    }

    /// Both together: the earliest first, the latest last, the sum.
    pub fn merged(self, other: Denials) -> Self {
        Denials {
            first: self.first.min(other.first),
            last: self.last.max(other.last),
            count: self.count.saturating_add(other.count),
        }
    }
}

/// What one replica knows of a revocation when its writer looks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Seen {
    /// This replica's index refuses at least one of its certificates.
    pub enforced: bool,
    /// The last review this replica answered.
    pub last_review: Option<DateTime<Utc>>,
    /// Refusals not yet in the status.
    pub pending: Option<Denials>,
}

/// The `status.apiServer` to write, or None when the status already says
/// all this replica would: `current` (what the status says, every
/// replica's reports so far) with the pending refusals added, and the last
/// review when the status's is older than `REVIEW_REFRESH` (or refusals
/// are written anyway). Times only move forward, so two replicas' writes
/// never take back what the other reported.
pub fn report(
    current: Option<&ApiServerEnforcement>,
    seen: &Seen,
    now: DateTime<Utc>,
) -> Option<ApiServerEnforcement> {
    let current = current.cloned().unwrap_or_default();
    let mut next = current.clone();
    if let Some(d) = seen.pending {
        next.first_denied_time = Some(next.first_denied_time.map_or(d.first, |t| t.min(d.first)));
        next.last_denied_time = Some(next.last_denied_time.map_or(d.last, |t| t.max(d.last)));
        next.denied_requests = Some(next.denied_requests.unwrap_or(0).saturating_add(d.count));
    }
    let review = seen
        .last_review
        .filter(|_| seen.enforced || seen.pending.is_some())
        .filter(|t| *t <= now);
    if let Some(t) = review {
        let stale = current
            .last_review_time
            .is_none_or(|c| t - c >= REVIEW_REFRESH);
        let newer = current.last_review_time.is_none_or(|c| t > c);
        if newer && (stale || seen.pending.is_some()) {
            next.last_review_time = Some(t);
        }
    }
    (next != current).then_some(next)
}

/// What became of a report whose write got no answer (the connection
/// dropped): the status as it is now tells whether it was applied. If it
/// says exactly what was sent, its refusals are in; else they are pending
/// again, added to those seen since.
pub fn settle(
    in_doubt: (Denials, &ApiServerEnforcement),
    current: Option<&ApiServerEnforcement>,
    pending: Option<Denials>,
) -> Option<Denials> {
    let (sent, written) = in_doubt;
    if current == Some(written) {
        return pending;
    }
    Some(pending.map_or(sent, |p| p.merged(sent)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + s, 0).expect("time")
    }

    fn status(review: Option<i64>, denied: Option<(i64, i64, i64)>) -> ApiServerEnforcement {
        ApiServerEnforcement {
            last_review_time: review.map(at),
            first_denied_time: denied.map(|d| at(d.0)),
            last_denied_time: denied.map(|d| at(d.1)),
            denied_requests: denied.map(|d| d.2),
        }
    }

    fn denials(first: i64, last: i64, count: i64) -> Option<Denials> {
        Some(Denials {
            first: at(first),
            last: at(last),
            count,
        })
    }

    #[test]
    fn a_replica_writes_only_what_the_status_does_not_say_yet() {
        let now = at(10_000);
        let fresh = REVIEW_REFRESH.num_seconds();
        // (case, current status, what the replica saw, expected write)
        let rows: Vec<(
            &str,
            Option<ApiServerEnforcement>,
            Seen,
            Option<ApiServerEnforcement>,
        )> = vec![
            ("nothing seen: nothing written", None, Seen::default(), None),
            (
                "the first review of an enforced revocation",
                None,
                Seen {
                    enforced: true,
                    last_review: Some(at(9_990)),
                    pending: None,
                },
                Some(status(Some(9_990), None)),
            ),
            (
                "reviews seen, but this index refuses none of its certificates",
                None,
                Seen {
                    enforced: false,
                    last_review: Some(at(9_990)),
                    pending: None,
                },
                None,
            ),
            (
                "a review within the refresh interval: no write",
                Some(status(Some(10_000 - fresh + 1), None)),
                Seen {
                    enforced: true,
                    last_review: Some(at(10_000)),
                    pending: None,
                },
                None,
            ),
            (
                "a review a whole interval later refreshes it",
                Some(status(Some(10_000 - fresh), None)),
                Seen {
                    enforced: true,
                    last_review: Some(at(10_000)),
                    pending: None,
                },
                Some(status(Some(10_000), None)),
            ),
            (
                "the first refusals",
                Some(status(Some(9_000), None)),
                Seen {
                    enforced: true,
                    last_review: Some(at(9_995)),
                    pending: denials(9_950, 9_990, 3),
                },
                Some(status(Some(9_995), Some((9_950, 9_990, 3)))),
            ),
            (
                "refusals merged into another replica's: earliest first, latest last, sum",
                Some(status(Some(9_999), Some((9_900, 9_999, 5)))),
                Seen {
                    enforced: true,
                    last_review: Some(at(9_995)),
                    pending: denials(9_950, 9_990, 2),
                },
                Some(status(Some(9_999), Some((9_900, 9_999, 7)))),
            ),
            (
                "a replica whose clock lags never moves a time back",
                Some(status(Some(9_999), Some((9_900, 9_999, 5)))),
                Seen {
                    enforced: true,
                    last_review: Some(at(8_000)),
                    pending: None,
                },
                None,
            ),
            (
                "a review time from the future is not written",
                None,
                Seen {
                    enforced: true,
                    last_review: Some(at(10_001)),
                    pending: None,
                },
                None,
            ),
            (
                "refusals of a revocation the index no longer holds (deleted meanwhile) are still told",
                None,
                Seen {
                    enforced: false,
                    last_review: Some(at(9_991)),
                    pending: denials(9_990, 9_990, 1),
                },
                Some(status(Some(9_991), Some((9_990, 9_990, 1)))),
            ),
        ];
        for (case, current, seen, expected) in rows {
            assert_eq!(report(current.as_ref(), &seen, now), expected, "{case}");
        }
    }

    #[test]
    fn a_write_without_an_answer_is_settled_by_the_status() {
        let sent = Denials::one(at(5));
        let written = status(Some(5), Some((5, 5, 1)));
        let later = denials(7, 8, 2);
        // (case, status now, refusals seen since, pending after)
        let rows = [
            (
                "applied: only the later ones are pending",
                Some(written.clone()),
                later,
                later,
            ),
            ("applied, nothing since", Some(written.clone()), None, None),
            (
                "not applied: the sent ones are pending again",
                Some(status(Some(4), None)),
                later,
                denials(5, 8, 3),
            ),
            ("not applied, no status yet", None, None, Some(sent)),
        ];
        for (case, current, pending, expected) in rows {
            assert_eq!(
                settle((sent, &written), current.as_ref(), pending),
                expected,
                "{case}"
            );
        }
    }
}
