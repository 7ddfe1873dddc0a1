//! How a replica's webhook tells each CertificateRevocation that it took
//! effect (`status.apiServer`): the handler only notes in memory when it
//! answered a review and which certificate it refused (no API call, no
//! lookup of revocations per review); a writer on every replica tells
//! each refusal to the revocations that revoked the certificate and folds
//! that into the
//! revocations' status every `REPORT_INTERVAL`, at most one write per
//! revocation per tick (`core::enforcement::report` decides it). The
//! write is a server-side apply of `status.apiServer` alone, with its own
//! field manager, so it never conflicts with the revocation controller's
//! status (which leaves that field out), and it names the resourceVersion
//! it merged into, so two replicas never overwrite each other's reports:
//! the loser gets a conflict and merges again at its next tick. A write
//! that fails keeps its refusals pending for the next tick.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use tracing::warn;

use super::RevokedIndex;
use crate::api::{ApiServerEnforcement, CertificateRevocation};
use crate::core::authz::Reported;
use crate::core::enforcement::{Denials, Seen, report, settle};
use crate::operator::Error;

/// How often a replica writes what its webhook saw.
pub const REPORT_INTERVAL: Duration = Duration::from_secs(10);

/// The field manager of `status.apiServer`.
pub const FIELD_MANAGER: &str = "certop-authz";

/// What this replica's webhook saw since its writer last looked: the
/// handler's only bookkeeping, kept cheap (no lookup of revocations, no
/// I/O).
#[derive(Default)]
pub struct Observations {
    /// The last review answered, in Unix seconds (0: none yet).
    last_review: AtomicI64,
    /// Refusals by the refused certificate's SHA-256.
    denied: Mutex<HashMap<String, Denials>>,
}

impl Observations {
    /// A review was answered: an atomic load, and a store once a second,
    /// whatever the load.
    pub fn reviewed(&self, now: DateTime<Utc>) {
        let second = now.timestamp();
        if second > self.last_review.load(Ordering::Relaxed) {
            self.last_review.fetch_max(second, Ordering::Relaxed);
        }
    }

    /// A request made with the certificate of this SHA-256 was refused.
    pub fn denied(&self, digest: String, now: DateTime<Utc>) {
        let Some(at) = DateTime::from_timestamp(now.timestamp(), 0) else {
            return;
        };
        if let Ok(mut denied) = self.denied.lock() {
            denied
                .entry(digest)
                .and_modify(|d| *d = d.merged(Denials::one(at)))
                .or_insert(Denials::one(at));
        }
    }

    fn last_review(&self) -> Option<DateTime<Utc>> {
        match self.last_review.load(Ordering::Relaxed) {
            0 => None,
            t => DateTime::from_timestamp(t, 0),
        }
    }

    fn take(&self) -> HashMap<String, Denials> {
        self.denied
            .lock()
            .map(|mut d| std::mem::take(&mut *d))
            .unwrap_or_default()
    }
}

/// A replica's writer, and what it carries from one tick to the next:
/// refusals not yet in a status, by revocation, and writes whose answer
/// was lost, to be settled against the status.
#[derive(Default)]
pub struct Reporter {
    pending: BTreeMap<String, Denials>,
    in_doubt: BTreeMap<String, (Denials, ApiServerEnforcement)>,
}

impl Reporter {
    /// One tick: the refusals noted since the last one told to the
    /// revocations that revoked each certificate, then every revocation
    /// this replica has something to say of, each written at most once.
    /// Failures are logged and left for the next tick.
    pub async fn tick(
        &mut self,
        client: &Client,
        index: &RevokedIndex,
        observations: &Observations,
        now: DateTime<Utc>,
    ) {
        let denied = observations.take();
        let last_review = observations.last_review();
        let (enforced, reported) = {
            let Ok(credentials) = index.credentials.read() else {
                return;
            };
            for (digest, d) in denied {
                for name in credentials.revocations_of(&digest) {
                    pend(&mut self.pending, name, d);
                }
            }
            let enforced = credentials.enforced_revocations();
            let names: BTreeSet<String> = enforced
                .iter()
                .chain(self.pending.keys())
                .chain(self.in_doubt.keys())
                .cloned()
                .collect();
            let reported: BTreeMap<String, Reported> = names
                .into_iter()
                .filter_map(|n| Some((n.clone(), credentials.reported(&n)?.clone())))
                .collect();
            (enforced, reported)
        };
        // Revocations deleted meanwhile: nothing to report to.
        self.pending.retain(|name, _| reported.contains_key(name));
        self.in_doubt.retain(|name, _| reported.contains_key(name));
        for (name, current) in reported {
            let mut denials = self.pending.remove(&name);
            if let Some((sent, written)) = self.in_doubt.remove(&name) {
                denials = settle((sent, &written), current.api_server.as_ref(), denials);
            }
            let seen = Seen {
                enforced: enforced.contains(&name),
                last_review,
                pending: denials,
            };
            let Some(next) = report(current.api_server.as_ref(), &seen, now) else {
                continue;
            };
            match write(client, &name, current.resource_version.as_deref(), &next).await {
                Ok(()) => {}
                Err(Error::Kube(kube::Error::Api(status))) => {
                    if let Some(d) = denials {
                        pend(&mut self.pending, name.clone(), d);
                    }
                    if status.code != 409 {
                        warn!(revocation = %name, error = %status, "authorization webhook: cannot report to the revocation's status; trying again");
                    }
                }
                Err(e) => {
                    if let Some(d) = denials {
                        self.in_doubt.insert(name.clone(), (d, next));
                    }
                    warn!(revocation = %name, error = %e, "authorization webhook: the revocation's status report got no answer; trying again");
                }
            }
        }
    }
}

/// Adds refusals to what is pending for a revocation.
fn pend(pending: &mut BTreeMap<String, Denials>, name: String, d: Denials) {
    pending
        .entry(name)
        .and_modify(|p| *p = p.merged(d))
        .or_insert(d);
}

/// Server-side applies `status.apiServer` of one revocation, over the
/// resourceVersion it was merged into.
async fn write(
    client: &Client,
    name: &str,
    resource_version: Option<&str>,
    api_server: &ApiServerEnforcement,
) -> Result<(), Error> {
    let api: Api<CertificateRevocation> = Api::all(client.clone());
    let mut metadata = serde_json::json!({ "name": name });
    if let Some(rv) = resource_version {
        metadata["resourceVersion"] = serde_json::json!(rv);
    }
    let patch = serde_json::json!({
        "apiVersion": "certop.dev/v1",
        "kind": "CertificateRevocation",
        "metadata": metadata,
        "status": { "apiServer": api_server },
    });
    api.patch_status(
        name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    Ok(())
}

/// Reports every `REPORT_INTERVAL` for as long as the process runs, once
/// the index has listed everything.
pub async fn run(
    client: Client,
    index: std::sync::Arc<RevokedIndex>,
    observations: std::sync::Arc<Observations>,
) {
    let mut reporter = Reporter::default();
    let mut ticks = tokio::time::interval(REPORT_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if index.is_ready() {
            reporter
                .tick(&client, &index, &observations, Utc::now())
                .await;
        }
    }
}
