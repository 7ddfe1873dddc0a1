//! Creates Kubernetes objects read as JSON, one per line on standard input,
//! with a fixed number of requests in flight, and prints how long it took.
//! `make bench-compare` uses it twice: to create the benchmark's
//! certificates quickly (the operator under test is stopped meanwhile), and
//! as the raw API-server baseline: N TLS Secrets written by a Rust client
//! with certop's reconcile concurrency, one request each, no certificate work.
//!
//!   bulk_create [CONCURRENCY] < objects.jsonl
use std::collections::HashMap;
use std::io::BufRead;
use std::time::Instant;

use futures::TryStreamExt;
use kube::api::{Api, DynamicObject, PostParams};
use kube::core::GroupVersionKind;
use kube::discovery::{ApiCapabilities, ApiResource, Scope};
use kube::{Client, Discovery};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let concurrency: usize = std::env::args()
        .nth(1)
        .map(|c| c.parse())
        .transpose()?
        .unwrap_or(16);
    let objects: Vec<DynamicObject> = std::io::stdin()
        .lock()
        .lines()
        .filter(|l| l.as_ref().map_or(true, |l| !l.trim().is_empty()))
        .map(|l| Ok::<_, Box<dyn std::error::Error>>(serde_json::from_str(&l?)?))
        .collect::<Result<_, _>>()?;
    let client = Client::try_default().await?;
    let discovery = Discovery::new(client.clone()).run().await?;
    let mut resources: HashMap<GroupVersionKind, (ApiResource, ApiCapabilities)> = HashMap::new();
    // Each object's Api, resolved before the clock starts.
    let mut apis: Vec<(Api<DynamicObject>, &DynamicObject)> = Vec::with_capacity(objects.len());
    for object in &objects {
        let types = object
            .types
            .as_ref()
            .ok_or("an object without apiVersion and kind")?;
        let gvk = GroupVersionKind::try_from(types)?;
        let (resource, capabilities) = match resources.entry(gvk) {
            std::collections::hash_map::Entry::Occupied(entry) => entry.into_mut(),
            std::collections::hash_map::Entry::Vacant(entry) => {
                let found = discovery
                    .resolve_gvk(entry.key())
                    .ok_or_else(|| format!("the API server does not serve {:?}", entry.key()))?;
                entry.insert(found)
            }
        };
        let client = client.clone();
        let api = match (&capabilities.scope, &object.metadata.namespace) {
            (Scope::Namespaced, Some(ns)) => Api::namespaced_with(client, ns, resource),
            _ => Api::all_with(client, resource),
        };
        apis.push((api, object));
    }
    let start = Instant::now();
    futures::stream::iter(apis.into_iter().map(Ok))
        .try_for_each_concurrent(concurrency, |(api, object)| async move {
            api.create(&PostParams::default(), object)
                .await
                .map(|_| ())
                .map_err(|e| format!("{}: {e}", object.metadata.name.as_deref().unwrap_or("?")))
        })
        .await?;
    let elapsed = start.elapsed().as_secs_f64();
    println!(
        "created {} objects in {elapsed:.2} s ({:.0}/s, {concurrency} in flight)",
        objects.len(),
        objects.len() as f64 / elapsed
    );
    Ok(())
}
