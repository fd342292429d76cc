//! One task per open listener: accept, hand each connection to its own task.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use super::DataPlane;
use super::conn::{self, ConnSettings};
use crate::http::{self, HttpRoute};
use crate::route::RouteFeed;

pub async fn run(
    listener: TcpListener,
    feed: RouteFeed,
    stop: CancellationToken,
    plane: DataPlane,
) {
    let settings = ConnSettings {
        connect_timeout: plane.connect_timeout,
        epoch: plane.epoch,
        mark: plane.mark,
    };
    let (route, protocol) = {
        let snap = feed.current.load();
        (snap.name.clone(), snap.protocol)
    };
    // HTTP routes share pooled upstream clients among the listener's connections.
    let http_route = protocol
        .is_http()
        .then(|| HttpRoute::new(protocol, plane.connect_timeout, plane.epoch, plane.mark));
    each(&listener, &stop, &route, |sock, peer| match &http_route {
        None => {
            plane
                .tracker
                .spawn(conn::handle(sock, peer, feed.rx.clone(), settings, None));
        }
        Some(h) => {
            plane.tracker.spawn(http::server::serve(
                sock,
                peer,
                feed.clone(),
                h.clone(),
                plane.drain.clone(),
                None,
            ));
        }
    })
    .await;
}

/// Accepts on `listener` until `stop`, handing each connection to `handle`. Accept errors
/// (EMFILE/ENFILE/ENOBUFS and friends) are logged once a second, naming `what`, and back off
/// briefly instead of spinning on a listener that cannot accept.
pub async fn each(
    listener: &TcpListener,
    stop: &CancellationToken,
    what: &(dyn std::fmt::Display + Sync),
    mut handle: impl FnMut(TcpStream, SocketAddr),
) {
    let mut last_error_log: Option<std::time::Instant> = None;
    loop {
        let accepted = tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            r = listener.accept() => r,
        };
        match accepted {
            Ok((sock, peer)) => handle(sock, peer),
            Err(e) => {
                if last_error_log.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                    tracing::warn!(listener = %what, error = %e, "accept failed");
                    last_error_log = Some(std::time::Instant::now());
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    tracing::debug!(listener = %what, "listener closed");
}
