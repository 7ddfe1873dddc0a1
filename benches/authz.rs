//! The authorization webhook under load: 100 concurrent clients posting
//! SubjectAccessReviews (as kube-apiserver does, HTTP/1.1 keep-alive) to
//! certop's handler holding 100,000 revoked digests, beside the same axum
//! server answering a constant. Both are plain HTTP on loopback so the
//! ratio is the handler's cost (TLS costs both the same). Prints p50/p99
//! latency, throughput and the ratio; `make bench-authz` runs it, the
//! figures go in docs/benchmarks.md.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark: a failed step should panic

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::post;
use bytes::Bytes;
use certop::core::authz::{RevokedCredentials, X509_PREFIX};
use certop::core::ledger::{LedgerEntry, Revocation};
use certop::operator::authz::{RevokedIndex, router};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

const REVOKED: usize = 100_000;
const CLIENTS: usize = 100;
const REQUESTS_PER_CLIENT: usize = 400;

fn digest(i: usize) -> String {
    format!("{i:064x}")
}

fn index() -> Arc<RevokedIndex> {
    let mut credentials = RevokedCredentials::default();
    let per_shard = REVOKED / 64;
    for shard in 0..64 {
        let entries: Vec<LedgerEntry> = (shard * per_shard..(shard + 1) * per_shard)
            .map(|i| LedgerEntry {
                serial: format!("{i:x}"),
                issued_at: 0,
                not_after: 4_000_000_000,
                organizations: vec![],
                dns_names: vec![],
                ip_addresses: vec![],
                certificate: None,
                revoked: Some(Revocation {
                    at: 1_800_000_000,
                    reason: Default::default(),
                }),
                key: 0,
                fingerprint: Some(digest(i)),
            })
            .collect();
        credentials.replace_shard(&format!("shard-{shard}"), "bench", &entries);
    }
    assert_eq!(credentials.len(), per_shard * 64);
    Arc::new(RevokedIndex::listed(credentials))
}

/// A SubjectAccessReview as kube-apiserver sends it for a request made
/// with a client certificate.
fn review(credential: &str) -> Bytes {
    Bytes::from(
        serde_json::json!({
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SubjectAccessReview",
            "spec": {
                "user": "system:node:worker-1",
                "groups": ["system:nodes", "system:authenticated"],
                "extra": { "authentication.kubernetes.io/credential-id": [format!("{X509_PREFIX}{credential}")] },
                "resourceAttributes": { "verb": "get", "resource": "pods", "namespace": "kube-system", "version": "v1" }
            }
        })
        .to_string(),
    )
}

struct Run {
    p50: Duration,
    p99: Duration,
    per_second: f64,
}

async fn load(url: String, bodies: Arc<Vec<Bytes>>) -> Run {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let started = Instant::now();
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let (client, url, bodies) = (client.clone(), url.clone(), bodies.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(REQUESTS_PER_CLIENT);
                for r in 0..REQUESTS_PER_CLIENT {
                    let body = bodies[(c * REQUESTS_PER_CLIENT + r) % bodies.len()].clone();
                    let request = http::Request::post(&url)
                        .header("content-type", "application/json")
                        .body(Full::new(body))
                        .expect("request");
                    let t = Instant::now();
                    let response = client.request(request).await.expect("response");
                    assert!(response.status().is_success());
                    let _ = response.into_body().collect().await.expect("body");
                    latencies.push(t.elapsed());
                }
                latencies
            })
        })
        .collect();
    let mut all = Vec::with_capacity(CLIENTS * REQUESTS_PER_CLIENT);
    for t in tasks {
        all.extend(t.await.expect("client"));
    }
    let elapsed = started.elapsed();
    all.sort();
    Run {
        p50: all[all.len() / 2],
        p99: all[all.len() * 99 / 100],
        per_second: all.len() as f64 / elapsed.as_secs_f64(),
    }
}

async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/authorize")
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let built = Instant::now();
        let index = index();
        println!(
            "index of {} revoked digests built in {:?}",
            index.len(),
            built.elapsed()
        );
        let constant = serde_json::json!({
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SubjectAccessReview",
            "spec": {},
            "status": { "allowed": false }
        })
        .to_string();
        let baseline = serve(Router::new().route(
            "/authorize",
            post(move || {
                let constant = constant.clone();
                async move { ([("content-type", "application/json")], constant) }
            }),
        ))
        .await;
        let certop = serve(router(index, Default::default(), Default::default())).await;
        // Nine in ten reviews are of certificates nobody revoked.
        let bodies: Arc<Vec<Bytes>> = Arc::new(
            (0..1000)
                .map(|i| {
                    if i % 10 == 0 {
                        review(&digest(i * 97))
                    } else {
                        review(&format!("{:064x}", usize::MAX - i))
                    }
                })
                .collect(),
        );
        // Warm both, then measure each twice, alternating.
        load(baseline.clone(), bodies.clone()).await;
        load(certop.clone(), bodies.clone()).await;
        let mut ratios = Vec::new();
        for round in 1..=2 {
            let raw = load(baseline.clone(), bodies.clone()).await;
            let ours = load(certop.clone(), bodies.clone()).await;
            println!(
                "round {round}: constant handler {:.0} reviews/s (p50 {:?}, p99 {:?}); certop {:.0} reviews/s (p50 {:?}, p99 {:?}); ratio {:.2}",
                raw.per_second,
                raw.p50,
                raw.p99,
                ours.per_second,
                ours.p50,
                ours.p99,
                ours.per_second / raw.per_second
            );
            ratios.push(ours.per_second / raw.per_second);
        }
        println!(
            "{CLIENTS} concurrent clients, {} reviews each run: certop's throughput is {:.2} of a constant handler's",
            CLIENTS * REQUESTS_PER_CLIENT,
            ratios.iter().sum::<f64>() / ratios.len() as f64
        );
    });
}
