//! The capture listeners: iptables `REDIRECT`s connections here (`--capture-outbound`,
//! `--capture-inbound`); each is proxied to its original destination through the first
//! captured route that matches it, or passed through untouched when none does.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::detect::{self, Detected};
use super::original_dst::original_dst;
use crate::http::{self, HttpRoute};
use crate::route::{CaptureDirection, CapturedRoutes, Protocol, RouteTable};
use crate::tcp::accept::Incoming;
use crate::tcp::conn::{self, ConnSettings};
use crate::tcp::{Accepting, DataPlane, Listeners};

/// What every connection of one capture listener needs.
struct Capture {
    direction: CaptureDirection,
    routes: Arc<arc_swap::ArcSwap<CapturedRoutes>>,
    passthrough: tokio::sync::watch::Receiver<Arc<crate::route::RouteSnapshot>>,
    detect_timeout: Duration,
    settings: ConnSettings,
    drain: CancellationToken,
    /// This worker's HTTP clients (shared by every captured route: their pools key
    /// connections by destination).
    http: Arc<HttpRoute>,
    grpc: Arc<HttpRoute>,
}

/// Starts accepting redirected connections of `direction` on `listeners`.
pub fn serve(
    table: &RouteTable,
    listeners: Listeners,
    direction: CaptureDirection,
    detect_timeout: Duration,
) -> Accepting {
    let routes = table.captured();
    let passthrough = table.passthrough.feed(direction);
    let plane = table.plane().clone();
    plane.spawn_accept(listeners, move |listener, stop, plane| {
        let capture = Capture {
            direction,
            routes: routes.clone(),
            passthrough: passthrough.clone(),
            detect_timeout,
            settings: ConnSettings {
                connect_timeout: plane.connect_timeout,
                epoch: plane.epoch,
                mark: plane.mark,
            },
            drain: plane.drain.clone(),
            http: HttpRoute::new(
                Protocol::Http,
                plane.connect_timeout,
                plane.epoch,
                plane.mark,
            ),
            grpc: HttpRoute::new(
                Protocol::Grpc,
                plane.connect_timeout,
                plane.epoch,
                plane.mark,
            ),
        };
        accept(listener, Arc::new(capture), stop, plane)
    })
}

async fn accept(
    incoming: Incoming,
    capture: Arc<Capture>,
    stop: CancellationToken,
    plane: DataPlane,
) {
    let what = format!("capture:{}", capture.direction);
    crate::tcp::accept::each(incoming, &stop, &what, |sock, peer, seat| {
        plane
            .tracker
            .spawn(seat.hold(handle(sock, peer, capture.clone())));
    })
    .await;
}

/// One redirected connection: where it was going, which route takes it, what it speaks.
async fn handle(sock: TcpStream, peer: SocketAddr, capture: Arc<Capture>) {
    let direction = capture.direction;
    let local = sock.local_addr().ok().map(canonical);
    let original = match original_dst(&sock) {
        Ok(a) if Some(canonical(a)) != local => a,
        // Connected to the capture port itself, not redirected: proxying it would loop.
        Ok(_) | Err(_) => {
            tracing::debug!(%direction, %peer, "connection was not redirected; closing it");
            return;
        }
    };
    // One lock-free load per connection.
    let routes = capture.routes.load();
    let Some(route) = routes.find(direction, original) else {
        tracing::trace!(%direction, %peer, %original, "no captured route; passing through");
        let rx = capture.passthrough.clone();
        return conn::handle(sock, peer, rx, capture.settings, Some(original)).await;
    };
    let feed = route.feed.clone();
    drop(routes);
    let declared = feed.current.load().protocol;
    let protocol = match declared {
        Protocol::Auto => match detect::detect(&sock, capture.detect_timeout).await {
            Detected::Http1 | Detected::Http2 => Protocol::Http,
            Detected::Tcp => Protocol::Tcp,
        },
        p => p,
    };
    match protocol {
        Protocol::Http | Protocol::Grpc => {
            let client = if protocol == Protocol::Grpc {
                &capture.grpc
            } else {
                &capture.http
            };
            http::server::serve(
                sock,
                peer,
                feed,
                client.clone(),
                capture.drain.clone(),
                Some(original),
            )
            .await;
        }
        Protocol::Tcp | Protocol::Auto => {
            conn::handle(sock, peer, feed.rx, capture.settings, Some(original)).await;
        }
    }
}

/// A dual-stack listener sees IPv4 peers as mapped IPv6 addresses; compare them as IPv4.
fn canonical(a: SocketAddr) -> SocketAddr {
    SocketAddr::new(a.ip().to_canonical(), a.port())
}
