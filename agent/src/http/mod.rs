//! The HTTP data plane, for `http` routes (HTTP/1.1 and cleartext HTTP/2, told apart by the
//! connection preface) and `grpc` routes (HTTP/2).
//!
//! - [`server`]: one task per client connection: admission, then hyper serving it.
//! - [`proxy`]: one call per request: choose faults, apply them, forward to the upstream through
//!   a pooled client, stream the answer back.
//! - [`select`]: which of the route's faults a request gets (matching, sampling, cohorts,
//!   header-triggered faults).
//! - [`body`]: response bodies (untouched, injected, or faulted: throttle, mid-body reset,
//!   gRPC message faults).
//! - [`grpc`]: gRPC specifics (trailers-only answers, message framing).
//! - [`headers`]: hop-by-hop header handling.
//! - [`timer`]: hyper's HTTP/1 header-read timeout on one Tokio sleep per connection.
//! - [`upgrade`]: `Upgrade` (WebSocket) and `CONNECT` passed through untouched.

pub mod body;
pub mod grpc;
pub mod headers;
pub mod proxy;
pub mod select;
pub mod server;
pub mod timer;
pub mod upgrade;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::route::Protocol;

/// What the connections of one HTTP listener's worker share: the pooled HTTP/2 upstream client
/// (so an upstream connection is only ever used from the worker thread that opened it).
/// HTTP/1.1 clients each get their own upstream connection (see `proxy::ConnState`).
pub struct HttpRoute {
    pub protocol: Protocol,
    /// HTTP/2 (prior knowledge) upstream connections, multiplexed.
    pub h2: Client<HttpConnector, Incoming>,
    pub connect_timeout: Duration,
    pub epoch: std::time::Instant,
    /// `SO_MARK` for upstream sockets (`--mark`).
    pub mark: Option<u32>,
    /// Upstream HTTP/1.1 connections left idle by clients that went away, for the next client
    /// connection of this worker. Taken and returned once per client connection, never per
    /// request; only this worker's thread touches it, so the lock is never contended.
    idle_h1: Mutex<Vec<proxy::Upstream1>>,
}

/// Idle upstream HTTP/1.1 connections kept per worker and route.
const IDLE_H1_MAX: usize = 256;

impl HttpRoute {
    pub(crate) fn take_idle_h1(&self, addr: std::net::SocketAddr) -> Option<proxy::Upstream1> {
        let mut idle = self.idle_h1.lock().unwrap_or_else(|p| p.into_inner());
        while let Some(u) = idle.pop() {
            if u.reusable_for(addr) {
                return Some(u);
            }
        }
        None
    }

    pub(crate) fn put_idle_h1(&self, u: proxy::Upstream1) {
        let mut idle = self.idle_h1.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < IDLE_H1_MAX {
            idle.push(u);
        }
    }
}

impl HttpRoute {
    pub fn new(
        protocol: Protocol,
        connect_timeout: Duration,
        epoch: std::time::Instant,
        mark: Option<u32>,
    ) -> Arc<Self> {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_mark(mark);
        connector.set_connect_timeout(Some(connect_timeout));
        let h2 = Client::builder(TokioExecutor::new())
            .http2_only(true)
            .pool_idle_timeout(Duration::from_secs(90))
            .build(connector);
        Arc::new(HttpRoute {
            protocol,
            h2,
            connect_timeout,
            epoch,
            mark,
            idle_h1: Mutex::new(Vec::new()),
        })
    }
}
