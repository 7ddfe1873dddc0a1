//! The webhook's reports against the in-memory API server: each write
//! fails in turn (500, 409, 422, a dropped connection) and the next tick
//! finishes the job with the exact count; two replicas never overwrite
//! each other's refusals; the report costs one write per revocation per
//! tick whatever the number of refusals, none when there is nothing new.

use chrono::{DateTime, Duration, Utc};
use serde_json::json;

use super::RevokedIndex;
use super::report::{Observations, Reporter};
use crate::api::{ApiServerEnforcement, CertificateRevocation};
use crate::core::authz::RevokedCredentials;
use crate::core::enforcement::REVIEW_REFRESH;
use crate::operator::testing::fake_api::{FakeApi, Fault};
use crate::operator::testing::runtime;

const REV_PATH: &str = "/apis/certop.dev/v1/certificaterevocations/rev";
/// The SHA-256 of the certificate `rev` revokes.
const DIGEST: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

/// A Ready revocation of one certificate, by digest, as the controller
/// left it.
fn api() -> FakeApi {
    let api = FakeApi::new(&[]);
    api.put(
        REV_PATH,
        json!({"apiVersion": "certop.dev/v1", "kind": "CertificateRevocation",
               "metadata": {"name": "rev", "generation": 1, "creationTimestamp": "2026-01-01T00:00:00Z"},
               "spec": {"issuerRef": {"name": "ca"}, "serialNumbers": ["0a"], "certificateSHA256s": [DIGEST]},
               "status": {"conditions": [{"type": "Ready", "status": "True", "reason": "Revoked", "message": "ok", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}}),
    );
    api
}

/// One replica: its index (kept in step with the API server by `sync`,
/// as its watch would), what its webhook saw, and its writer.
struct Replica {
    index: RevokedIndex,
    observations: Observations,
    reporter: Reporter,
}

impl Replica {
    fn new(api: &FakeApi) -> Self {
        let r = Replica {
            index: RevokedIndex::listed(RevokedCredentials::default()),
            observations: Observations::default(),
            reporter: Reporter::default(),
        };
        r.sync(api);
        r
    }

    fn sync(&self, api: &FakeApi) {
        let rev: CertificateRevocation = api.get(REV_PATH).expect("revocation");
        self.index
            .credentials
            .write()
            .expect("lock")
            .replace_revocation(&rev);
    }

    /// `n` requests with the revoked certificate, refused at `at`.
    fn refuse(&self, n: usize, at: DateTime<Utc>) {
        for _ in 0..n {
            self.observations.reviewed(at);
            self.observations.denied(DIGEST.to_string(), at);
        }
    }

    async fn tick(&mut self, api: &FakeApi, now: DateTime<Utc>) {
        self.reporter
            .tick(&api.client(), &self.index, &self.observations, now)
            .await;
    }
}

fn reported(api: &FakeApi) -> Option<ApiServerEnforcement> {
    let rev: CertificateRevocation = api.get(REV_PATH).expect("revocation");
    rev.status.and_then(|s| s.api_server)
}

#[test]
fn refusals_cost_one_write_per_tick_and_nothing_new_costs_none() {
    runtime().block_on(async {
        let api = api();
        let mut replica = Replica::new(&api);
        let t0 = Utc::now() - Duration::seconds(30);
        replica.refuse(1_000, t0);
        replica.refuse(1, t0 + Duration::seconds(1));
        let before = api.writes();
        replica.tick(&api, t0 + Duration::seconds(2)).await;
        assert_eq!(api.writes() - before, 1, "{:?}", api.log());
        let got = reported(&api).expect("reported");
        assert_eq!(got.denied_requests, Some(1_001));
        assert_eq!(got.first_denied_time, Some(t0.trunc_subsecs_to_second()));
        assert_eq!(
            got.last_review_time,
            Some((t0 + Duration::seconds(1)).trunc_subsecs_to_second())
        );
        let rev: CertificateRevocation = api.get(REV_PATH).expect("revocation");
        assert_eq!(
            rev.status.expect("status").conditions.len(),
            1,
            "the controller's fields stay"
        );

        // Nothing new: no write. Reviews only: one write per REVIEW_REFRESH.
        replica.sync(&api);
        let before = api.writes();
        replica.tick(&api, t0 + Duration::seconds(12)).await;
        assert_eq!(api.writes(), before, "nothing new, nothing written");
        replica.observations.reviewed(t0 + Duration::seconds(60));
        replica.tick(&api, t0 + Duration::seconds(70)).await;
        assert_eq!(api.writes(), before, "a review within the refresh interval");
        let later = t0 + REVIEW_REFRESH + Duration::seconds(5);
        replica.observations.reviewed(later);
        replica.tick(&api, later).await;
        assert_eq!(api.writes(), before + 1, "refreshed once");
        assert_eq!(
            reported(&api).expect("reported").last_review_time,
            Some(later.trunc_subsecs_to_second())
        );
        assert_eq!(
            reported(&api).expect("reported").denied_requests,
            Some(1_001)
        );
    });
}

#[test]
fn a_failed_report_is_finished_by_the_next_tick_with_the_exact_count() {
    runtime().block_on(async {
        for fault in [
            Fault::Status(500),
            Fault::Status(409),
            Fault::Status(422),
            Fault::Drop,
        ] {
            let case = format!("{fault:?}");
            let api = api();
            let mut replica = Replica::new(&api);
            let t0 = Utc::now() - Duration::seconds(60);
            replica.refuse(2, t0);
            api.fail_write(api.writes() + 1, fault);
            replica.tick(&api, t0 + Duration::seconds(1)).await;
            assert_eq!(reported(&api), None, "{case}: the write failed");
            // More refusals meanwhile; the watch catches up; next tick.
            replica.refuse(1, t0 + Duration::seconds(5));
            replica.sync(&api);
            replica.tick(&api, t0 + Duration::seconds(11)).await;
            let got = reported(&api).expect(&case);
            assert_eq!(got.denied_requests, Some(3), "{case}: every refusal once");
            assert_eq!(
                got.first_denied_time,
                Some(t0.trunc_subsecs_to_second()),
                "{case}"
            );
            assert_eq!(
                got.last_denied_time,
                Some((t0 + Duration::seconds(5)).trunc_subsecs_to_second()),
                "{case}"
            );
            replica.sync(&api);
            let before = api.writes();
            replica.tick(&api, t0 + Duration::seconds(21)).await;
            assert_eq!(api.writes(), before, "{case}: done");
        }
    });
}

#[test]
fn two_replicas_never_overwrite_each_other_s_refusals() {
    runtime().block_on(async {
        let api = api();
        let mut a = Replica::new(&api);
        let mut b = Replica::new(&api);
        let t0 = Utc::now() - Duration::seconds(60);
        a.refuse(2, t0 + Duration::seconds(3));
        b.refuse(5, t0);
        a.tick(&api, t0 + Duration::seconds(10)).await;
        // B's watch has not seen A's write: its write names the old
        // resourceVersion and is refused (409); its refusals wait.
        b.tick(&api, t0 + Duration::seconds(10)).await;
        assert_eq!(reported(&api).expect("A's").denied_requests, Some(2));
        b.sync(&api);
        b.tick(&api, t0 + Duration::seconds(20)).await;
        let got = reported(&api).expect("both");
        assert_eq!(got.denied_requests, Some(7));
        assert_eq!(got.first_denied_time, Some(t0.trunc_subsecs_to_second()));
        assert_eq!(
            got.last_denied_time,
            Some((t0 + Duration::seconds(3)).trunc_subsecs_to_second())
        );
        a.sync(&api);
        let before = api.writes();
        a.tick(&api, t0 + Duration::seconds(30)).await;
        b.tick(&api, t0 + Duration::seconds(30)).await;
        assert_eq!(api.writes(), before, "both settled");
    });
}

trait TruncSeconds {
    fn trunc_subsecs_to_second(self) -> Self;
}

impl TruncSeconds for DateTime<Utc> {
    /// Review times are kept to the second.
    fn trunc_subsecs_to_second(self) -> Self {
        DateTime::from_timestamp(self.timestamp(), 0).expect("time")
    }
}
