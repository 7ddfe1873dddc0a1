//! Waits until N objects of a kind are Ready at a revision, seen through
//! one watch, and prints `DONE SECONDS REQUESTS`: how many were, the time
//! since START, and the LIST requests it made (1, unpaginated, unless the
//! watch had to list again). `scripts/bench-compare.sh` times each phase
//! with it, for certop and for cert-manager alike.
//!
//! It replaces a LIST poll every few seconds: at 10,000 ClusterCertificates
//! one poll (`kubectl get -o jsonpath`) cost kubectl 3.2 CPU-seconds and
//! kube-apiserver 0.6, so the harness took about a third of the two cores
//! the operator under test and its API server share. A watch costs the API
//! server one more send of events it already encodes for the operator.
//!
//!   wait_ready GROUP/VERSION KIND PLURAL N REVISION START CAP
//!
//! An object counts once its `status.revision` is at least REVISION and
//! its `Ready` condition is `True` (both kinds have them). START is the
//! phase's start in seconds since the epoch (`date +%s.%N`); after CAP
//! seconds from START it prints the count so far.
use std::collections::HashSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use kube::api::{Api, DynamicObject};
use kube::core::GroupVersionKind;
use kube::discovery::ApiResource;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use serde_json::Value;

type Error = Box<dyn std::error::Error + Send + Sync>;

const USAGE: &str = "usage: wait_ready GROUP/VERSION KIND PLURAL N REVISION START CAP";

fn counts(object: &DynamicObject, revision: i64) -> bool {
    let Some(status) = object.data.get("status") else {
        return false;
    };
    let at_revision = status
        .get("revision")
        .and_then(Value::as_i64)
        .is_some_and(|r| r >= revision);
    let ready = status
        .get("conditions")
        .and_then(Value::as_array)
        .is_some_and(|conditions| {
            conditions.iter().any(|c| {
                c.get("type").and_then(Value::as_str) == Some("Ready")
                    && c.get("status").and_then(Value::as_str) == Some("True")
            })
        });
    at_revision && ready
}

fn key(object: &DynamicObject) -> String {
    format!(
        "{}/{}",
        object.namespace().unwrap_or_default(),
        object.name_any()
    )
}

fn since(start: f64) -> f64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(start);
    now - start
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [group_version, kind, plural, n, revision, start, cap] = args.as_slice() else {
        return Err(USAGE.into());
    };
    let (group, version) = group_version.split_once('/').ok_or(USAGE)?;
    let n: usize = n.parse()?;
    let revision: i64 = revision.parse()?;
    let start: f64 = start.parse()?;
    let cap: f64 = cap.parse()?;

    let resource =
        ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural);
    let api: Api<DynamicObject> = Api::all_with(Client::try_default().await?, &resource);
    // One unpaginated LIST, then the watch.
    let config = watcher::Config {
        page_size: None,
        ..Default::default()
    };
    let mut events = std::pin::pin!(watcher(api, config).default_backoff());

    let mut done: HashSet<String> = HashSet::new();
    let mut relisted: Option<HashSet<String>> = None;
    let mut lists = 0;
    let waiting = async {
        while let Some(event) = events.next().await {
            match event {
                Ok(watcher::Event::Apply(o)) if counts(&o, revision) => {
                    done.insert(key(&o));
                }
                Ok(watcher::Event::Apply(o)) | Ok(watcher::Event::Delete(o)) => {
                    done.remove(&key(&o));
                }
                Ok(watcher::Event::Init) => {
                    lists += 1;
                    relisted = Some(HashSet::new());
                }
                Ok(watcher::Event::InitApply(o)) => {
                    if let Some(listed) = relisted.as_mut().filter(|_| counts(&o, revision)) {
                        listed.insert(key(&o));
                    }
                }
                Ok(watcher::Event::InitDone) => {
                    if let Some(listed) = relisted.take() {
                        done = listed;
                    }
                }
                Err(e) => eprintln!("wait_ready: {e}"),
            }
            if done.len() >= n {
                return;
            }
        }
    };
    let remaining = Duration::from_secs_f64((cap - since(start)).max(0.0));
    let _ = tokio::time::timeout(remaining, waiting).await;
    println!("{} {:.1} {lists}", done.len(), since(start));
    Ok(())
}
