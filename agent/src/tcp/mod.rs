//! The TCP data plane: accept, connect upstream, move bytes, inject faults.
//!
//! - [`accept`]: one task per open listener; admits or refuses each new connection.
//! - [`connect`]: upstream connections, marked with `--mark` (`SO_MARK`).
//! - [`conn`]: one task per connection; connects upstream and runs the relay loop, switching
//!   between the fast path and the faulted path as the route's snapshot changes.
//! - [`plan`]: turns a snapshot into what one flow of one connection must do (compiled once per
//!   snapshot change, never per chunk).
//! - [`fast`]: the fast path: a cancel-safe copy loop with adaptive buffers, used while no
//!   fault touches the connection.
//! - [`workers`]: the worker threads (one current-thread runtime each, `SO_REUSEPORT`, pinned
//!   one per CPU when there is one per allowed CPU).
//! - [`balance`]: open connections per worker for each listener group; a worker that holds
//!   more than the least loaded one hands new connections over.
//! - [`faulted`]: the faulted path: a reader and a writer per flow with a bounded queue between
//!   them, where latency, bandwidth, slicing, timeouts, limits and resets are applied.

pub mod accept;
pub mod balance;
pub mod conn;
pub mod connect;
pub mod fast;
pub mod faulted;
pub mod plan;
pub mod workers;

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use self::workers::{Pinning, Workers};
use crate::route::RouteFeed;

/// What every listener and connection shares: the worker threads, the drain signal, the task
/// tracker used to wait for connections on shutdown, and data-plane settings.
#[derive(Clone, Debug)]
pub struct DataPlane {
    /// Cancelled once on shutdown: listeners stop accepting; open connections drain.
    pub drain: CancellationToken,
    /// Tracks connection tasks, so shutdown can wait for them (up to a grace period).
    pub tracker: TaskTracker,
    pub connect_timeout: Duration,
    /// Reference point for rate-limited logs.
    pub epoch: std::time::Instant,
    /// `SO_MARK` for every upstream socket (`--mark`); set before the first route is served.
    pub mark: Option<u32>,
    workers: Arc<Workers>,
}

impl DataPlane {
    /// Starts the data plane's `threads` worker threads, pinned as `pinning` says.
    pub fn new(
        drain: CancellationToken,
        connect_timeout: Duration,
        threads: usize,
        pinning: Pinning,
    ) -> io::Result<Self> {
        Ok(DataPlane {
            drain,
            tracker: TaskTracker::new(),
            connect_timeout,
            epoch: std::time::Instant::now(),
            mark: None,
            workers: Workers::start(threads, pinning)?,
        })
    }

    /// Binds one listening socket per worker on `addr` (`SO_REUSEADDR`, so a route can listen
    /// again on its port after a `down` fault while old connections linger in TIME_WAIT; and
    /// `SO_REUSEPORT` between the workers' sockets). Port 0 picks one free port for all.
    pub fn bind(&self, addr: &str) -> io::Result<Listeners> {
        let mut addr: SocketAddr = addr
            .to_socket_addrs()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{addr:?}: {e}")))?
            .next()
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{addr:?} has no address"),
                )
            })?;
        let n = self.workers.handles().len();
        let mut sockets = Vec::with_capacity(n);
        for _ in 0..n {
            let socket = socket2::Socket::new(
                socket2::Domain::for_address(addr),
                socket2::Type::STREAM,
                Some(socket2::Protocol::TCP),
            )?;
            socket.set_reuse_address(true)?;
            if n > 1 {
                socket.set_reuse_port(true)?;
            }
            socket.set_nonblocking(true)?;
            socket.bind(&addr.into())?;
            socket.listen(1024)?;
            let std: std::net::TcpListener = socket.into();
            addr = std.local_addr()?;
            sockets.push(std);
        }
        Ok(Listeners { addr, sockets })
    }

    /// Stops the worker threads; their runtimes drop every task left on them.
    pub fn stop_workers(&self) {
        self.workers.stop();
    }

    /// Starts accepting on `listeners` (one accept task per worker) for the route `feed` carries.
    pub fn serve(&self, listeners: Listeners, feed: RouteFeed) -> Accepting {
        self.spawn_accept(listeners, move |l, stop, plane| {
            accept::run(l, feed.clone(), stop, plane)
        })
    }

    /// Runs `accept(incoming, stop, plane)` on every worker, one listening socket each, sharing
    /// one [`Balance`](balance::Balance) between them.
    pub fn spawn_accept<F, Fut>(&self, listeners: Listeners, accept: F) -> Accepting
    where
        F: Fn(accept::Incoming, CancellationToken, DataPlane) -> Fut + Clone + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let stop = self.drain.child_token();
        let (balance, inboxes) = balance::Balance::new(listeners.sockets.len());
        let tasks = listeners
            .sockets
            .into_iter()
            .zip(inboxes)
            .zip(self.workers.handles())
            .enumerate()
            .map(|(worker, ((socket, inbox), handle))| {
                let (stop, plane, accept) = (stop.clone(), self.clone(), accept.clone());
                let balance = balance.clone();
                handle.spawn(async move {
                    // Registered with the worker's reactor, inside the worker.
                    match tokio::net::TcpListener::from_std(socket) {
                        Ok(listener) => {
                            let incoming = accept::Incoming {
                                listener,
                                inbox,
                                balance,
                                worker,
                            };
                            accept(incoming, stop, plane).await
                        }
                        Err(e) => tracing::error!(error = %e, "cannot register a listener"),
                    }
                })
            })
            .collect();
        Accepting {
            stop,
            tasks,
            balance,
        }
    }
}

/// A route's listening sockets, bound but not yet accepting.
#[derive(Debug)]
pub struct Listeners {
    addr: SocketAddr,
    sockets: Vec<std::net::TcpListener>,
}

impl Listeners {
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

/// An open route's accept tasks.
#[derive(Debug)]
pub struct Accepting {
    stop: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    balance: Arc<balance::Balance>,
}

impl Accepting {
    /// Open connections per worker, and how many were handed from one worker to another.
    pub fn workers(&self) -> balance::WorkerLoad {
        balance::WorkerLoad {
            open: self.balance.loads(),
            handed_over: self.balance.moved(),
        }
    }

    /// Asks the tasks to stop; the listening sockets are closed when the returned handles
    /// complete.
    pub fn close(self) -> Vec<tokio::task::JoinHandle<()>> {
        self.stop.cancel();
        self.tasks
    }
}
