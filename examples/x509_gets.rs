//! Sends N GETs of one API path with the credentials of $KUBECONFIG (a
//! client certificate, for `make bench-apiserver-authz`), a fixed number
//! in flight, and prints the client's own latency percentiles. Any request
//! that fails stops it with an error: the benchmark measures requests the
//! API server allows.
//!
//!   x509_gets N CONCURRENCY PATH
use std::time::{Duration, Instant};

use futures::StreamExt;
use kube::Client;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: x509_gets N CONCURRENCY PATH";
    let n: usize = args.next().ok_or(usage)?.parse()?;
    let concurrency: usize = args.next().ok_or(usage)?.parse()?;
    let path = args.next().ok_or(usage)?;
    if n == 0 || concurrency == 0 {
        return Err(usage.into());
    }
    let client = Client::try_default().await?;
    let start = Instant::now();
    let mut latencies: Vec<Duration> = futures::stream::iter(0..n)
        .map(|_| {
            let (client, path) = (client.clone(), path.clone());
            async move {
                let request = http::Request::get(path.as_str()).body(Vec::new())?;
                let t = Instant::now();
                client.request_text(request).await?;
                Ok::<_, Box<dyn std::error::Error>>(t.elapsed())
            }
        })
        .buffer_unordered(concurrency)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;
    let elapsed = start.elapsed();
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    println!(
        "client: {n} GETs of {path}, {concurrency} in flight, in {:.1} s ({:.0}/s); p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        elapsed.as_secs_f64(),
        n as f64 / elapsed.as_secs_f64(),
        at(0.50).as_secs_f64() * 1e3,
        at(0.99).as_secs_f64() * 1e3,
        at(1.0).as_secs_f64() * 1e3,
    );
    Ok(())
}
