//! Composes an agent: the route table, its listeners, the expiry task, the admin API and, when
//! configured, the controller connection, with one drain signal for all of them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::{AgentConfig, CaptureConfig};
use crate::route::{CaptureDirection, RouteError, RouteTable, expiry};
use crate::tcp::DataPlane;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("--threads: cannot start {threads} data-plane threads: {source}")]
    Workers {
        threads: usize,
        #[source]
        source: std::io::Error,
    },
    #[error("--admin: cannot listen on {addr}: {source}")]
    Admin {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("--health: cannot listen on {addr}: {source}")]
    Health {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("{flag}: cannot listen on {addr}: {source}")]
    Capture {
        flag: &'static str,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("route {route:?}: {source}")]
    Route {
        route: String,
        #[source]
        source: RouteError,
    },
}

/// A running agent.
pub struct Agent {
    pub table: Arc<RouteTable>,
    /// The admin API's bound address (useful when configured with port 0).
    pub admin_addr: SocketAddr,
    /// The probe listener's bound address (`--health`), when configured.
    pub health_addr: Option<SocketAddr>,
    /// The capture listeners' bound addresses (outbound, inbound), when configured.
    pub capture_addrs: (Option<SocketAddr>, Option<SocketAddr>),
    drain: CancellationToken,
    plane: DataPlane,
    tasks: Vec<JoinHandle<()>>,
}

impl Agent {
    /// Binds the admin API and every configured route, and starts serving.
    /// Must be called inside a Tokio runtime.
    pub async fn start(config: &AgentConfig) -> Result<Agent, StartError> {
        Self::start_with_capture(config, &CaptureConfig::default()).await
    }

    /// [`Agent::start`], plus the capture listeners and upstream socket mark of `capture`.
    pub async fn start_with_capture(
        config: &AgentConfig,
        capture: &CaptureConfig,
    ) -> Result<Agent, StartError> {
        let drain = CancellationToken::new();
        let threads = config
            .threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        let mut plane = DataPlane::new(
            drain.clone(),
            config.connect_timeout,
            threads,
            config.pin_workers,
        )
        .map_err(|source| StartError::Workers { threads, source })?;
        plane.mark = capture.mark;
        let table = RouteTable::new(plane.clone());
        let admin = tokio::net::TcpListener::bind(config.admin)
            .await
            .map_err(|source| StartError::Admin {
                addr: config.admin,
                source,
            })?;
        let admin_addr = admin.local_addr().map_err(|source| StartError::Admin {
            addr: config.admin,
            source,
        })?;
        let health = match config.health {
            Some(addr) => {
                let listener = tokio::net::TcpListener::bind(addr)
                    .await
                    .map_err(|source| StartError::Health { addr, source })?;
                let bound = listener
                    .local_addr()
                    .map_err(|source| StartError::Health { addr, source })?;
                Some((listener, bound))
            }
            None => None,
        };
        let health_addr = health.as_ref().map(|(_, bound)| *bound);
        for spec in &config.routes {
            table
                .create(spec.clone())
                .map_err(|source| StartError::Route {
                    route: spec.name.clone(),
                    source,
                })?;
        }
        for (route, fault) in &config.faults {
            table
                .add_fault(route, fault.clone())
                .await
                .map_err(|source| StartError::Route {
                    route: route.clone(),
                    source,
                })?;
        }
        let mut capture_addrs = (None, None);
        for (flag, addr, direction, slot) in [
            (
                "--capture-outbound",
                capture.outbound,
                CaptureDirection::Outbound,
                &mut capture_addrs.0,
            ),
            (
                "--capture-inbound",
                capture.inbound,
                CaptureDirection::Inbound,
                &mut capture_addrs.1,
            ),
        ] {
            let Some(addr) = addr else { continue };
            let listeners = table
                .plane()
                .bind(&addr.to_string())
                .map_err(|source| StartError::Capture { flag, addr, source })?;
            *slot = Some(listeners.local_addr());
            tracing::info!(%direction, listen = %listeners.local_addr(), "capture listener open");
            // Closed by the drain token, like every route's listener.
            let _accepting = crate::capture::listener::serve(
                &table,
                listeners,
                direction,
                capture.detect_timeout,
            );
        }
        let mut tasks = vec![
            tokio::spawn(expiry::run(table.clone(), drain.clone())),
            tokio::spawn(crate::admin::serve(
                admin,
                table.clone(),
                crate::admin::Access::Admin(config.admin_token.clone()),
                drain.clone(),
            )),
        ];
        if let Some((listener, _)) = health {
            tasks.push(tokio::spawn(crate::admin::serve(
                listener,
                table.clone(),
                crate::admin::Access::Probes,
                drain.clone(),
            )));
        }
        if let Some(controller) = &config.controller {
            tasks.push(tokio::spawn(crate::control::client::run(
                table.clone(),
                controller.clone(),
                drain.clone(),
            )));
        }
        tracing::info!(admin = %admin_addr, health = health_addr.map(tracing::field::display), routes = config.routes.len(), controller = config.controller.as_ref().map(|c| tracing::field::display(&c.url)), "agent started");
        Ok(Agent {
            table,
            admin_addr,
            health_addr,
            capture_addrs,
            drain,
            plane,
            tasks,
        })
    }

    /// Stops accepting, lets open connections finish for up to `grace`, then returns the number
    /// of connections that were still open (and are dropped).
    pub async fn shutdown(self, grace: Duration) -> usize {
        self.drain.cancel();
        self.plane.tracker.close();
        let open = self.plane.tracker.len();
        if open > 0 {
            tracing::info!(open, ?grace, "draining connections");
        }
        let _ = tokio::time::timeout(grace, self.plane.tracker.wait()).await;
        for t in &self.tasks {
            t.abort();
        }
        self.plane.tracker.len()
        // Dropping `self` stops the worker threads.
    }
}

impl Drop for Agent {
    /// An agent dropped without `shutdown` (in tests, or on a start-up error) stops at once:
    /// listeners close, the control tasks end, and the worker threads leave their runtimes,
    /// dropping whatever connections are left.
    fn drop(&mut self) {
        self.drain.cancel();
        for t in &self.tasks {
            t.abort();
        }
        self.plane.stop_workers();
    }
}
