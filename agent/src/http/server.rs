//! One task per client connection of an HTTP or gRPC route.

use std::net::SocketAddr;
use std::sync::Arc;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::HttpRoute;
use super::proxy::{self, ConnState};
use crate::fault::Flow;
use crate::route::{Protocol, RouteFeed};
use crate::tcp::conn::{admit, finish};
use crate::tcp::plan::{self, ConnCtx};

pub async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    feed: RouteFeed,
    route: Arc<HttpRoute>,
    drain: CancellationToken,
    original: Option<SocketAddr>,
) {
    let snap = feed.current.load_full();
    let _active = snap.metrics.connection();
    let _ = stream.set_nodelay(true);
    let mut rx = feed.rx.clone();
    rx.borrow_and_update();
    let ctx = ConnCtx {
        seed: fastrand::u64(..),
        started: Instant::now(),
        client: peer,
        upstream: original,
    };
    let mut counted = [Vec::new(), Vec::new()];
    if let Err(cut) = admit(&mut rx, &ctx, &mut counted, &stream).await {
        return finish(stream, None, cut);
    }

    let state = Arc::new(ConnState::new(
        feed.current.clone(),
        route.clone(),
        original,
    ));
    let svc = service_fn(move |req| proxy::handle(state.clone(), req));
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).keep_alive(true);
    builder.http2().timer(TokioTimer::new());
    if route.protocol == Protocol::Grpc {
        builder = builder.http2_only();
    }
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), svc);
    tokio::pin!(conn);
    let mut draining = false;
    loop {
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(route = %snap.name, %peer, error = %e, "http connection ended with an error");
                }
                return;
            }
            _ = drain.cancelled(), if !draining => {
                draining = true;
                conn.as_mut().graceful_shutdown();
            }
            c = rx.changed() => {
                // The route was removed, disabled, or a down/partition fault now cuts this client.
                if c.is_err() {
                    return;
                }
                let snap = rx.borrow_and_update().clone();
                let p = plan::build(&snap, Flow::Upstream, &ctx);
                p.count(&mut counted[0], &snap.metrics);
                if p.cut.is_some() {
                    return;
                }
            }
        }
    }
}
