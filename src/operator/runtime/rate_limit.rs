//! A token bucket in front of the Kubernetes client, like client-go's QPS
//! and burst: up to `burst` requests at once, then `qps` a second. It
//! bounds what a renewal storm or a backlog asks of the API server, beside
//! `--concurrency`. (A watch is one request however long it streams.)

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::{Instant, Sleep};
use tower::{Layer, Service};

/// Requests per second and burst; `qps` 0 turns the limit off.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RateLimitLayer {
    pub qps: f64,
    pub burst: u32,
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimited<S>;

    fn layer(&self, inner: S) -> Self::Service {
        let burst = f64::from(self.burst.max(1));
        RateLimited {
            inner,
            qps: self.qps,
            burst,
            tokens: burst,
            last: Instant::now(),
            wait: None,
        }
    }
}

pub struct RateLimited<S> {
    inner: S,
    qps: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
    wait: Option<Pin<Box<Sleep>>>,
}

impl<S> RateLimited<S> {
    fn refill(&mut self) {
        let now = Instant::now();
        let earned = now.duration_since(self.last).as_secs_f64() * self.qps;
        self.tokens = (self.tokens + earned).min(self.burst);
        self.last = now;
    }
}

impl<S, R> Service<R> for RateLimited<S>
where
    S: Service<R>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if self.qps <= 0.0 {
            return self.inner.poll_ready(cx);
        }
        loop {
            if let Some(wait) = self.wait.as_mut() {
                if wait.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                self.wait = None;
            }
            self.refill();
            if self.tokens >= 1.0 {
                return self.inner.poll_ready(cx);
            }
            let missing = (1.0 - self.tokens) / self.qps;
            self.wait = Some(Box::pin(tokio::time::sleep(Duration::from_secs_f64(
                missing,
            ))));
        }
    }

    fn call(&mut self, request: R) -> Self::Future {
        if self.qps > 0.0 {
            self.tokens -= 1.0;
        }
        self.inner.call(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::ServiceExt;

    #[tokio::test(start_paused = true)]
    async fn a_burst_passes_at_once_then_qps_paces_the_rest() {
        let layer = RateLimitLayer {
            qps: 10.0,
            burst: 5,
        };
        let mut service = layer.layer(tower::service_fn(|_: ()| async { Ok::<_, ()>(()) }));
        let started = Instant::now();
        for _ in 0..5 {
            service
                .ready()
                .await
                .expect("ready")
                .call(())
                .await
                .expect("call");
        }
        assert!(
            started.elapsed() < Duration::from_millis(1),
            "the burst waits for nothing"
        );
        for _ in 0..20 {
            service
                .ready()
                .await
                .expect("ready")
                .call(())
                .await
                .expect("call");
        }
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(1_990) && took < Duration::from_millis(2_100),
            "20 requests past the burst at 10/s take 2 s, not {took:?}"
        );
        let off = RateLimitLayer { qps: 0.0, burst: 1 };
        let mut free = off.layer(tower::service_fn(|_: ()| async { Ok::<_, ()>(()) }));
        let started = Instant::now();
        for _ in 0..1000 {
            free.ready()
                .await
                .expect("ready")
                .call(())
                .await
                .expect("call");
        }
        assert!(
            started.elapsed() < Duration::from_millis(1),
            "qps 0 is no limit"
        );
    }
}
