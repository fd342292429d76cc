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
//! - [`client1`]: the HTTP/1.1 upstream exchange for requests without a body, run by the
//!   serving task, with its own per-worker connection pool.
//! - [`pool`]: upstream HTTP/1.1 connections for hyper's client (requests with a body), shared
//!   by a worker's client connections.
//! - [`timer`]: hyper's HTTP/1 header-read timeout on one Tokio sleep per connection.
//! - [`upgrade`]: `Upgrade` (WebSocket) and `CONNECT` passed through untouched.

pub mod body;
pub mod client1;
pub mod grpc;
pub mod headers;
pub mod pool;
pub mod proxy;
pub mod select;
pub mod server;
pub mod timer;
pub mod upgrade;

use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::route::Protocol;

/// What the connections of one HTTP listener's worker share: the pooled upstream connections
/// (so an upstream connection is only ever used from the worker thread that opened it).
pub struct HttpRoute {
    pub protocol: Protocol,
    /// HTTP/2 (prior knowledge) upstream connections, multiplexed.
    pub h2: Client<HttpConnector, Incoming>,
    pub connect_timeout: Duration,
    pub epoch: std::time::Instant,
    /// `SO_MARK` for upstream sockets (`--mark`).
    pub mark: Option<u32>,
    /// HTTP/1.1 upstream connections for requests with a body, one request at a time each.
    pub h1: pool::H1Pool,
    /// HTTP/1.1 upstream connections for requests without one (`client1`).
    pub h1_lean: client1::Pool,
}

impl HttpRoute {
    /// Must be called inside the worker's Tokio runtime: it spawns the HTTP/1.1 pool's sweep
    /// there ([`pool::sweep`]), which ends when the route is dropped.
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
        let route = Arc::new(HttpRoute {
            protocol,
            h2,
            connect_timeout,
            epoch,
            mark,
            h1: pool::H1Pool::default(),
            h1_lean: client1::Pool::default(),
        });
        // On the worker that serves the route (this is called there), like its connections.
        tokio::spawn(pool::sweep(Arc::downgrade(&route)));
        route
    }
}
