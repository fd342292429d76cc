//! The demo's sample "API" service: HTTP/1.1 on loopback, answering `200 ok` in a few
//! milliseconds while it keeps up. Like a real API tier it has a capacity: when more requests
//! arrive in a second than it can take, it is overloaded and sheds load (503 for most
//! requests, the rest slow) until a whole cool-down passes without overload. Callers that
//! retry into an overloaded service keep it there; it recovers once they back off.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// How the service holds up.
#[derive(Clone, Copy, Debug)]
pub struct Capacity {
    /// Requests a second it serves; more is overload.
    pub per_second: u32,
    /// How long it sheds load after the last overloaded second.
    pub cool_down: Duration,
}

/// The running service.
pub struct Service {
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for Service {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Arrivals in the current second, and until when the service sheds load.
struct Load {
    second: Instant,
    arrivals: u32,
    shedding_until: Option<Instant>,
    shed: u64,
}

impl Service {
    pub async fn start(capacity: Capacity) -> std::io::Result<Service> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let load = Arc::new(Mutex::new(Load {
            second: Instant::now(),
            arrivals: 0,
            shedding_until: None,
            shed: 0,
        }));
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let load = load.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |_req: Request<Incoming>| {
                        let verdict = admit(&load, capacity);
                        async move { Ok::<_, Infallible>(answer(verdict).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Ok(Service { addr, task })
    }
}

/// What one request gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verdict {
    Served,
    Slow,
    Shed,
}

fn admit(load: &Mutex<Load>, capacity: Capacity) -> Verdict {
    let now = Instant::now();
    let mut l = load.lock().expect("the load lock is never poisoned");
    if now.duration_since(l.second) >= Duration::from_secs(1) {
        l.second = now;
        l.arrivals = 0;
    }
    l.arrivals += 1;
    if l.arrivals > capacity.per_second {
        l.shedding_until = Some(now + capacity.cool_down);
    }
    match l.shedding_until {
        Some(until) if until > now => {
            l.shed += 1;
            // Most requests are refused at once; every fourth waits and gets through slowly.
            if l.shed.is_multiple_of(4) {
                Verdict::Slow
            } else {
                Verdict::Shed
            }
        }
        _ => Verdict::Served,
    }
}

async fn answer(verdict: Verdict) -> Response<Full<Bytes>> {
    let (status, body, delay) = match verdict {
        Verdict::Served => (StatusCode::OK, "ok", Duration::from_millis(2)),
        Verdict::Slow => (StatusCode::OK, "ok (slow)", Duration::from_millis(300)),
        Verdict::Shed => (
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            Duration::ZERO,
        ),
    };
    tokio::time::sleep(delay).await;
    Response::builder()
        .status(status)
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .expect("a static response is valid")
}
