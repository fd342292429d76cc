//! The TCP data plane: accept, connect upstream, move bytes, inject faults.
//!
//! - [`accept`]: one task per open listener; admits or refuses each new connection.
//! - [`conn`]: one task per connection; connects upstream and runs the relay loop, switching
//!   between the fast path and the faulted path as the route's snapshot changes.
//! - [`plan`]: turns a snapshot into what one flow of one connection must do (compiled once per
//!   snapshot change, never per chunk).
//! - [`fast`]: the fast path: a cancel-safe copy loop with adaptive buffers, used while no
//!   fault touches the connection.
//! - [`faulted`]: the faulted path: a reader and a writer per flow with a bounded queue between
//!   them, where latency, bandwidth, slicing, timeouts, limits and resets are applied.

pub mod accept;
pub mod conn;
pub mod fast;
pub mod faulted;
pub mod plan;

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::route::RouteFeed;

/// What every listener and connection shares: the drain signal, the task tracker used to wait
/// for connections on shutdown, and data-plane settings.
#[derive(Clone, Debug)]
pub struct DataPlane {
    /// Cancelled once on shutdown: listeners stop accepting; open connections drain.
    pub drain: CancellationToken,
    /// Tracks connection tasks, so shutdown can wait for them (up to a grace period).
    pub tracker: TaskTracker,
    pub connect_timeout: Duration,
    /// Reference point for rate-limited logs.
    pub epoch: std::time::Instant,
}

impl DataPlane {
    pub fn new(drain: CancellationToken, connect_timeout: Duration) -> Self {
        DataPlane {
            drain,
            tracker: TaskTracker::new(),
            connect_timeout,
            epoch: std::time::Instant::now(),
        }
    }

    /// Starts accepting on `listener` for the route whose snapshots `rx` carries.
    pub fn serve(&self, listener: tokio::net::TcpListener, feed: RouteFeed) -> Accepting {
        let stop = self.drain.child_token();
        let task = tokio::spawn(accept::run(listener, feed, stop.clone(), self.clone()));
        Accepting { stop, task }
    }
}

/// An open listener's accept task.
#[derive(Debug)]
pub struct Accepting {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Accepting {
    /// Asks the task to stop; the listening socket is closed when the returned handle completes.
    pub fn close(self) -> tokio::task::JoinHandle<()> {
        self.stop.cancel();
        self.task
    }
}

/// Binds a listening socket (`SO_REUSEADDR`, so a route can re-listen on its port after a
/// `down` fault while old connections linger in TIME_WAIT).
pub fn bind(addr: &str) -> io::Result<tokio::net::TcpListener> {
    let addr: SocketAddr = addr
        .to_socket_addrs()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{addr:?}: {e}")))?
        .next()
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{addr:?} has no address"),
            )
        })?;
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    tokio::net::TcpListener::from_std(socket.into())
}
