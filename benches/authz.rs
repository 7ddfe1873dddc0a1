//! The authorization webhook under load: 100 concurrent clients posting
//! SubjectAccessReviews (as kube-apiserver does, HTTP/1.1 keep-alive) to
//! certop's handler holding 100,000 revoked digests, beside the same axum
//! server answering a constant. Both are plain HTTP on loopback so the
//! ratio is the handler's cost (TLS costs both the same). Prints p50/p99
//! latency, throughput and the ratio; `make bench-authz` runs it, the
//! figures go in docs/benchmarks.md.
//!
//! Without `--bench` (`cargo test --all-targets`, i.e. `make test`) it is a
//! smoke run: a small index, a few requests, and the check that a revoked
//! digest is denied and an unrevoked one gets no opinion.

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

/// How much work a run does.
#[derive(Clone, Copy)]
struct Size {
    revoked: usize,
    clients: usize,
    requests_per_client: usize,
}

/// `cargo bench`: the figures in docs/benchmarks.md.
const BENCHMARK: Size = Size {
    revoked: 100_000,
    clients: 100,
    requests_per_client: 400,
};

/// `cargo test`: enough to exercise every step in a debug build.
const SMOKE: Size = Size {
    revoked: 1_000,
    clients: 4,
    requests_per_client: 10,
};

fn digest(i: usize) -> String {
    format!("{i:064x}")
}

fn index(revoked: usize) -> Arc<RevokedIndex> {
    let mut credentials = RevokedCredentials::default();
    let per_shard = revoked / 64;
    for shard in 0..64 {
        let entries: Vec<LedgerEntry> = (shard * per_shard..(shard + 1) * per_shard)
            .map(|i| LedgerEntry {
                serial: format!("{i:x}"),
                issued_at: 0,
                not_after: 4_000_000_000,
                organizations: vec![],
                dns_names: vec![],
                ip_addresses: vec![],
                uris: vec![],
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

async fn load(size: Size, url: String, bodies: Arc<Vec<Bytes>>) -> Run {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let started = Instant::now();
    let per_client = size.requests_per_client;
    let tasks: Vec<_> = (0..size.clients)
        .map(|c| {
            let (client, url, bodies) = (client.clone(), url.clone(), bodies.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(per_client);
                for r in 0..per_client {
                    let body = bodies[(c * per_client + r) % bodies.len()].clone();
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
    let mut all = Vec::with_capacity(size.clients * per_client);
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

/// The status certop's handler at `url` answers for a review of `credential`.
async fn status_of(url: &str, credential: &str) -> serde_json::Value {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let request = http::Request::post(url)
        .header("content-type", "application/json")
        .body(Full::new(review(credential)))
        .expect("request");
    let response = client.request(request).await.expect("response");
    assert!(response.status().is_success(), "{}", response.status());
    let body = response.into_body().collect().await.expect("body");
    let sar: serde_json::Value =
        serde_json::from_slice(&body.to_bytes()).expect("a SubjectAccessReview");
    sar["status"].clone()
}

/// What the load must be made of: a revoked digest is denied with a
/// reason, an unrevoked one gets no opinion (neither allowed nor denied).
async fn check_verdicts(url: &str, revoked: &str, unrevoked: &str) {
    let denied = status_of(url, revoked).await;
    assert_eq!(
        denied["denied"], true,
        "a revoked digest is denied: {denied}"
    );
    assert_eq!(denied["allowed"], false, "never allowed: {denied}");
    assert!(
        denied["reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("certop:") && r.contains("revoked")),
        "the refusal says why: {denied}"
    );
    let no_opinion = status_of(url, unrevoked).await;
    assert_eq!(no_opinion["allowed"], false, "never allowed: {no_opinion}");
    assert_ne!(
        no_opinion["denied"], true,
        "an unrevoked digest is not denied: {no_opinion}"
    );
}

fn main() {
    let benchmark = std::env::args().any(|a| a == "--bench");
    let size = if benchmark { BENCHMARK } else { SMOKE };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let built = Instant::now();
        let index = index(size.revoked);
        let indexed = index.len();
        println!(
            "index of {indexed} revoked digests built in {:?}",
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
        let unrevoked = |i: usize| format!("{:064x}", usize::MAX - i);
        check_verdicts(&certop, &digest(indexed - 1), &unrevoked(0)).await;
        // Nine in ten reviews are of certificates nobody revoked.
        let bodies: Arc<Vec<Bytes>> = Arc::new(
            (0..1000)
                .map(|i| {
                    if i % 10 == 0 {
                        review(&digest((i * 97) % indexed))
                    } else {
                        review(&unrevoked(i))
                    }
                })
                .collect(),
        );
        if !benchmark {
            load(size, baseline, bodies.clone()).await;
            load(size, certop, bodies).await;
            println!("smoke run: verdicts checked; `cargo bench --bench authz` measures");
            return;
        }
        // Warm both, then measure each twice, alternating.
        load(size, baseline.clone(), bodies.clone()).await;
        load(size, certop.clone(), bodies.clone()).await;
        let mut ratios = Vec::new();
        for round in 1..=2 {
            let raw = load(size, baseline.clone(), bodies.clone()).await;
            let ours = load(size, certop.clone(), bodies.clone()).await;
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
            "{} concurrent clients, {} reviews each run: certop's throughput is {:.2} of a constant handler's",
            size.clients,
            size.clients * size.requests_per_client,
            ratios.iter().sum::<f64>() / ratios.len() as f64
        );
    });
}
