//! The admin HTTP API.
//!
//! - [`router`]: dispatches requests to handlers (Toxiproxy's `/proxies` surface, `/populate`,
//!   `/reset`, `/version`, and faultline's `/metrics` and `/ready`).
//! - [`native`]: faultline's own endpoints under `/faultline/v1` (routes with a protocol,
//!   HTTP rules with their counters, route SLIs).
//! - [`toxiproxy`]: Toxiproxy's JSON shapes and their conversion into domain types.
//! - [`rules`]: HTTP and gRPC faults in JSON (attributes, `match`, cohorts, native rules).
//! - [`capture`]: captured routes' `capture` and `match` fields (shared with the config file).
//! - [`error`]: the error body every handler returns on failure.
//! - [`auth`]: the optional bearer token (`--admin-token-file`), checked before dispatch.
//!
//! The same server also runs as the probe listener (`--health`, [`Access::Probes`]): only
//! `GET /ready`, `/version` and `/metrics`, no token, nothing that changes the agent. In a pod
//! it listens on the pod's address for the kubelet and Prometheus while the admin API stays
//! on loopback.
//!
//! Requests from browsers (a `Mozilla/` user agent) are refused, as Toxiproxy does, so a web
//! page cannot drive the agent through the user's loopback.

pub mod auth;
pub mod capture;
pub mod error;
pub mod native;
pub mod router;
pub mod rules;
pub mod toxiproxy;

use std::sync::Arc;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use self::auth::AdminToken;
use crate::route::RouteTable;

/// What a listener of the admin server lets its clients do.
#[derive(Clone, Debug)]
pub enum Access {
    /// The whole admin API; with a token, requests need it (see [`auth`]).
    Admin(Option<AdminToken>),
    /// Read-only probes and scrapes: `GET /ready`, `/version`, `/metrics`; 404 otherwise.
    Probes,
}

impl Access {
    /// The answer to a request this access refuses, if it does.
    fn refuses(&self, req: &http::Request<hyper::body::Incoming>) -> Option<router::Resp> {
        match self {
            Access::Admin(None) => None,
            Access::Admin(Some(token)) => {
                let admitted = auth::exempt(req.method(), req.uri().path())
                    || token.admits(
                        req.headers()
                            .get(http::header::AUTHORIZATION)
                            .map(|v| v.as_bytes()),
                    );
                (!admitted).then(router::unauthorized)
            }
            Access::Probes => {
                let probe = req.method() == http::Method::GET
                    && matches!(req.uri().path(), "/ready" | "/version" | "/metrics");
                (!probe).then(router::probes_only)
            }
        }
    }
}

/// Serves the admin API (or, with [`Access::Probes`], its probes) on `listener` until
/// `shutdown` is cancelled.
pub async fn serve(
    listener: TcpListener,
    table: Arc<RouteTable>,
    access: Access,
    shutdown: CancellationToken,
) {
    let ready = shutdown.clone();
    loop {
        let (stream, _) = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = listener.accept() => match r {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "admin accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    continue;
                }
            },
        };
        let table = table.clone();
        let ready = ready.clone();
        let access = access.clone();
        let conn_shutdown = shutdown.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                let table = table.clone();
                let draining = ready.is_cancelled();
                let refused = access.refuses(&req);
                async move {
                    if let Some(answer) = refused {
                        return Ok::<_, std::convert::Infallible>(answer);
                    }
                    Ok(router::handle(req, &table, draining).await)
                }
            });
            let conn = http1::Builder::new().serve_connection(TokioIo::new(stream), svc);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = conn_shutdown.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
    }
}
