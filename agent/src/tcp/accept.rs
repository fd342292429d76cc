//! One task per open listener: accept, hand each connection to its own task.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::DataPlane;
use super::conn::{self, ConnSettings};
use crate::route::RouteSnapshot;

pub async fn run(
    listener: TcpListener,
    rx: watch::Receiver<Arc<RouteSnapshot>>,
    stop: CancellationToken,
    plane: DataPlane,
) {
    let settings = ConnSettings {
        connect_timeout: plane.connect_timeout,
        epoch: plane.epoch,
    };
    let route = rx.borrow().name.clone();
    let mut last_error_log: Option<std::time::Instant> = None;
    loop {
        let accepted = tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            r = listener.accept() => r,
        };
        match accepted {
            Ok((sock, peer)) => {
                plane
                    .tracker
                    .spawn(conn::handle(sock, peer, rx.clone(), settings));
            }
            Err(e) => {
                // EMFILE/ENFILE/ENOBUFS and friends: log once a second and back off briefly
                // instead of spinning on a listener that cannot accept.
                if last_error_log.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                    tracing::warn!(%route, error = %e, "accept failed");
                    last_error_log = Some(std::time::Instant::now());
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    tracing::debug!(%route, "listener closed");
}
