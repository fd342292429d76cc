//! The demo's client: steady traffic through the agent, as a fleet of callers would send it.
//! A failed request is retried after a fixed backoff ([`BACKOFF`], doubled each time, no
//! jitter: the naive client every outage report mentions), up to [`RETRIES`] times. Failures
//! that happen together are retried together: once the dependency is back, the retries of its
//! bad seconds arrive on top of the steady traffic, a storm that can overload the service
//! behind it. A circuit breaker opens when most requests of the last second failed and lets
//! nothing through for a while, which is how the storm ends.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::Request;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Retries of a failed request.
pub const RETRIES: u32 = 2;
/// Wait before the first retry; doubled for the next.
pub const BACKOFF: Duration = Duration::from_secs(2);
/// How long the breaker stays open.
const OPEN_FOR: Duration = Duration::from_secs(2);
/// Each request's deadline.
const TIMEOUT: Duration = Duration::from_secs(2);

/// Counters the demo prints.
#[derive(Debug, Default)]
pub struct Counts {
    pub ok: AtomicU64,
    pub failed: AtomicU64,
    pub retried: AtomicU64,
    pub short_circuited: AtomicU64,
}

/// The running client.
pub struct Traffic {
    pub counts: Arc<Counts>,
    task: JoinHandle<()>,
}

impl Drop for Traffic {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Traffic {
    /// `per_second` new requests a second to `http://through/`.
    pub fn start(through: SocketAddr, per_second: u32) -> Traffic {
        let counts = Arc::new(Counts::default());
        let client: Client<HttpConnector, Empty<Bytes>> =
            Client::builder(TokioExecutor::new()).build_http();
        let breaker = Arc::new(Breaker::default());
        let c = counts.clone();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1) / per_second.max(1));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                tick.tick().await;
                let (client, counts, breaker) = (client.clone(), c.clone(), breaker.clone());
                tokio::spawn(async move { call(&client, through, &counts, &breaker).await });
            }
        });
        Traffic { counts, task }
    }
}

async fn call(
    client: &Client<HttpConnector, Empty<Bytes>>,
    through: SocketAddr,
    counts: &Counts,
    breaker: &Breaker,
) {
    for attempt in 0..=RETRIES {
        if breaker.is_open() {
            counts.short_circuited.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if attempt > 0 {
            tokio::time::sleep(BACKOFF * 2u32.pow(attempt - 1)).await;
            if breaker.is_open() {
                counts.short_circuited.fetch_add(1, Ordering::Relaxed);
                return;
            }
            counts.retried.fetch_add(1, Ordering::Relaxed);
        }
        let req = Request::get(format!("http://{through}/api"))
            .body(Empty::new())
            .expect("a valid request");
        let ok = match tokio::time::timeout(TIMEOUT, client.request(req)).await {
            Ok(Ok(resp)) => {
                let ok = resp.status().is_success();
                let _ = resp.into_body().collect().await;
                ok
            }
            _ => false,
        };
        breaker.record(ok);
        if ok {
            counts.ok.fetch_add(1, Ordering::Relaxed);
            return;
        }
        counts.failed.fetch_add(1, Ordering::Relaxed);
    }
}

/// Outcomes of the current second, and until when the breaker is open.
#[derive(Default)]
struct Breaker {
    state: std::sync::Mutex<BreakerState>,
}

#[derive(Default)]
struct BreakerState {
    second: Option<Instant>,
    ok: u32,
    failed: u32,
    open_until: Option<Instant>,
}

impl Breaker {
    fn is_open(&self) -> bool {
        let s = self.state.lock().expect("never poisoned");
        s.open_until.is_some_and(|t| t > Instant::now())
    }

    fn record(&self, ok: bool) {
        let now = Instant::now();
        let mut s = self.state.lock().expect("never poisoned");
        if s.second
            .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1))
        {
            s.second = Some(now);
            s.ok = 0;
            s.failed = 0;
        }
        if ok {
            s.ok += 1;
        } else {
            s.failed += 1;
        }
        // Most of a second's requests failed (and enough of them to judge): open.
        if s.failed >= 20 && s.failed > s.ok {
            s.open_until = Some(now + OPEN_FOR);
            s.ok = 0;
            s.failed = 0;
        }
    }
}
