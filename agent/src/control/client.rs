//! The agent's connection to the controller: one task that dials, holds the `Connect` stream
//! and redials with backoff for as long as the agent runs.
//!
//! A session: connect, send `Hello` (id, labels, routes, version), then
//! - `DesiredState`: convert (a bad message is answered with an `Ack` naming the field and
//!   changes nothing), apply it whole with [`RouteTable::apply_desired`], hand its local guards
//!   to the session's [`Guards`] task, answer with an `Ack`;
//! - `ControllerHeartbeat`: renew the lease for the term last granted;
//! - every heartbeat interval (the last desired state's, default 1 s): an `AgentHeartbeat` with
//!   the per-route SLI changes since the previous beat and the controller faults' counters;
//! - `Goodbye`, the end of the stream, an error, or silence for a whole lease: clear every controller-issued fault, wait
//!   (exponential backoff with full jitter, seeded by the agent id) and start a new session.
//!   The controller re-sends the whole desired state on the new stream.
//! - a local guard trips (in the [`Guards`] task): its faults are cleared in the route table and
//!   a `LocalGuardTrip` goes out on the stream at once.
//!
//! The lease in the route table bounds controller faults whatever happens here: if this task
//! stalls, the expiry task still clears them at the lease's deadline.
//!
//! Logs: one line per change of state (connected; disconnected, with the reason); while the
//! controller cannot be reached, the failed attempts are logged at most once a minute.

use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use faultline_proto::v1;
use faultline_proto::v1::agent_service_client::AgentServiceClient;
use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;

use super::backoff::Backoff;
use super::convert::heartbeat_interval;
use super::heartbeat::{SliTracker, heartbeat};
use crate::config::ControllerConfig;
use crate::fault::Origin;
use crate::guard::Guards;
use crate::route::{DesiredState, Protocol, RouteTable};

/// Heartbeat interval until a desired state names one.
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(1);
const BACKOFF_BASE: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// How long a dial may take before it counts as a failed attempt.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// HTTP/2 pings find a dead connection (a controller host gone, a partition) before any
/// desired state has named a lease; after one, the lease itself bounds the silence.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(5);
/// Failed attempts are summarised at most this often.
const FAILURE_LOG_EVERY: Duration = Duration::from_secs(60);
/// Messages queued towards the controller; a full queue holds the session up (backpressure)
/// rather than growing without bound.
const OUTBOUND_QUEUE: usize = 16;
const REASON: &str = "controller stream ended";

/// Why a session ended.
#[derive(Debug, thiserror::Error)]
enum SessionEnd {
    #[error("cannot connect: {}", chain(.0))]
    Connect(#[source] tonic::transport::Error),
    #[error("the controller refused the stream: {0}")]
    Refused(#[source] tonic::Status),
    #[error("stream error: {0}")]
    Stream(#[source] tonic::Status),
    #[error("the controller closed the stream")]
    Closed,
    #[error("the controller said goodbye: {0}")]
    Goodbye(String),
    #[error("no word from the controller for the lease ({0:?})")]
    Silent(Duration),
    #[error("the outbound stream closed")]
    SendFailed,
}

impl SessionEnd {
    /// Whether the session got as far as an open stream.
    fn was_connected(&self) -> bool {
        !matches!(self, SessionEnd::Connect(_) | SessionEnd::Refused(_))
    }
}

/// Runs the controller connection until `drain` is cancelled. Controller-issued faults are
/// cleared whenever a session ends, including at shutdown.
pub async fn run(table: Arc<RouteTable>, config: ControllerConfig, drain: CancellationToken) {
    let mut backoff = Backoff::new(BACKOFF_BASE, BACKOFF_MAX, seed(&config.agent_id));
    let mut failures: u64 = 0;
    let mut last_failure_log: Option<Instant> = None;
    loop {
        let mut connected = false;
        let end = tokio::select! {
            _ = drain.cancelled() => None,
            end = session(&table, &config, &mut connected) => Some(end),
        };
        if connected || end.as_ref().is_some_and(SessionEnd::was_connected) {
            backoff.reset();
            failures = 0;
            last_failure_log = None;
        }
        table.clear_controller_faults(REASON).await;
        let Some(end) = end else {
            tracing::info!(controller = %config.url, "controller connection closed: agent shutting down");
            return;
        };
        if end.was_connected() {
            tracing::warn!(controller = %config.url, reason = %end, "disconnected from the controller");
        } else {
            failures += 1;
            let due = last_failure_log.is_none_or(|t| t.elapsed() >= FAILURE_LOG_EVERY);
            if due {
                tracing::warn!(controller = %config.url, attempts = failures, error = %end, "cannot reach the controller; retrying with backoff");
                last_failure_log = Some(Instant::now());
            }
        }
        let delay = backoff.next_delay();
        tokio::select! {
            _ = drain.cancelled() => {
                tracing::info!(controller = %config.url, "controller connection closed: agent shutting down");
                return;
            }
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

/// An error and its sources, `: `-separated (tonic's transport errors say little on their own).
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        source = cause.source();
    }
    s
}

/// The backoff seed: a hash of the agent id, so agents spread their retries apart while one
/// agent's delays are reproducible.
fn seed(agent_id: &str) -> u64 {
    // `DefaultHasher::new()` has fixed keys: the same id gives the same seed in every process.
    let mut h = std::hash::DefaultHasher::new();
    agent_id.hash(&mut h);
    h.finish()
}

/// One stream, from dial to its end. Sets `connected` once the controller accepted the stream.
async fn session(
    table: &Arc<RouteTable>,
    config: &ControllerConfig,
    connected: &mut bool,
) -> SessionEnd {
    let mut endpoint = tonic::transport::Endpoint::from(config.url.clone());
    if let Some(tls) = &config.tls {
        endpoint = match endpoint.tls_config(tls.client_config()) {
            Ok(e) => e,
            Err(e) => return SessionEnd::Connect(e),
        };
    }
    let endpoint = endpoint
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
        .keep_alive_timeout(KEEPALIVE_TIMEOUT)
        .keep_alive_while_idle(true);
    let dialed = match table.plane().mark {
        // The controller connection is the agent's own too: marked like every upstream socket,
        // so transparent capture exempts it.
        Some(mark) => {
            let mut connector = hyper_util::client::legacy::connect::HttpConnector::new();
            connector.set_nodelay(true);
            connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
            connector.set_mark(Some(mark));
            // https:// too: the endpoint's TLS wraps this connector.
            connector.enforce_http(false);
            endpoint.connect_with_connector(connector).await
        }
        None => endpoint.connect().await,
    };
    let channel = match dialed {
        Ok(c) => c,
        Err(e) => return SessionEnd::Connect(e),
    };
    let mut client = AgentServiceClient::new(channel);
    let (tx, rx) = mpsc::channel(OUTBOUND_QUEUE);
    // Queued before the call, so it is the stream's first message.
    if tx.send(hello(table, config)).await.is_err() {
        return SessionEnd::SendFailed;
    }
    let mut inbound = match client.connect(ReceiverStream::new(rx)).await {
        Ok(r) => r.into_inner(),
        Err(status) => return SessionEnd::Refused(status),
    };
    *connected = true;
    tracing::info!(controller = %config.url, agent_id = %config.agent_id, "connected to the controller");

    let mut state = Session {
        table,
        guards: Guards::start(table.clone(), tx.clone()),
        term: None,
        interval: DEFAULT_HEARTBEAT,
        slis: SliTracker::starting_now(table),
        last_beat: Instant::now(),
        last_heard: Instant::now(),
    };
    let mut ticker = state.ticker();
    loop {
        tokio::select! {
            msg = inbound.message() => {
                let msg = match msg {
                    Ok(Some(m)) => m,
                    Ok(None) => return SessionEnd::Closed,
                    Err(status) => return SessionEnd::Stream(status),
                };
                state.last_heard = Instant::now();
                let before = state.interval;
                match msg.body {
                    Some(v1::controller_message::Body::DesiredState(d)) => {
                        let ack = state.desired(d).await;
                        if tx.send(ack).await.is_err() {
                            return SessionEnd::SendFailed;
                        }
                    }
                    Some(v1::controller_message::Body::Heartbeat(_)) => state.renew(),
                    Some(v1::controller_message::Body::Goodbye(g)) => {
                        return SessionEnd::Goodbye(g.reason);
                    }
                    None => tracing::debug!("ignoring an empty controller message"),
                }
                if state.interval != before {
                    ticker = state.ticker();
                }
            }
            _ = ticker.tick() => {
                let now = Instant::now();
                // The expiry task has cleared the faults by now; a new stream brings the
                // controller's state back, this one evidently does not.
                if let Some(term) = state.term
                    && now - state.last_heard > term
                {
                    return SessionEnd::Silent(term);
                }
                let beat = heartbeat(table, &mut state.slis, now - state.last_beat);
                state.last_beat = now;
                if tx.send(beat).await.is_err() {
                    return SessionEnd::SendFailed;
                }
            }
        }
    }
}

fn hello(table: &RouteTable, config: &ControllerConfig) -> v1::AgentMessage {
    let routes = table
        .list()
        .into_iter()
        .map(|r| v1::Route {
            name: r.name,
            listen: r.listen.to_string(),
            upstream: r.upstream.to_string(),
            protocol: match r.protocol {
                Protocol::Tcp => v1::Protocol::Tcp,
                Protocol::Http => v1::Protocol::Http,
                Protocol::Grpc => v1::Protocol::Grpc,
                Protocol::Auto => v1::Protocol::Auto,
            } as i32,
        })
        .collect();
    v1::AgentMessage {
        body: Some(v1::agent_message::Body::Hello(v1::Hello {
            agent_id: config.agent_id.clone(),
            labels: config.labels.clone().into_iter().collect(),
            routes,
            version: env!("CARGO_PKG_VERSION").to_owned(),
        })),
    }
}

// === impl Session ===

/// What one stream remembers.
struct Session<'a> {
    table: &'a RouteTable,
    /// The local guards' task; it ends with the session.
    guards: Guards,
    /// The lease term of the last applied desired state; heartbeats renew it.
    term: Option<Duration>,
    interval: Duration,
    slis: SliTracker,
    last_beat: Instant,
    /// When the controller last sent anything.
    last_heard: Instant,
}

impl Session<'_> {
    fn ticker(&self) -> tokio::time::Interval {
        let mut t = tokio::time::interval_at(Instant::now() + self.interval, self.interval);
        t.set_missed_tick_behavior(MissedTickBehavior::Delay);
        t
    }

    /// Applies a desired state, or refuses it whole; returns the `Ack`.
    async fn desired(&mut self, msg: v1::DesiredState) -> v1::AgentMessage {
        let generation = msg.generation;
        let converted = heartbeat_interval(&msg)
            .and_then(|hb| DesiredState::try_from(msg).map(|d| (hb, d)))
            .map_err(|e| e.to_string());
        let result = match converted {
            Ok((hb, desired)) => {
                let term = desired.lease;
                let guards = desired.guards.clone();
                self.table
                    .apply_desired(desired)
                    .await
                    .map(|applied| {
                        self.term = Some(term);
                        self.interval = hb.unwrap_or(DEFAULT_HEARTBEAT);
                        self.guards.update(guards);
                        applied.faults
                    })
                    .map_err(|e| e.to_string())
            }
            Err(e) => Err(e),
        };
        let (applied_faults, error) = match result {
            Ok(n) => (n, None),
            Err(error) => {
                tracing::warn!(generation, %error, "controller desired state refused; nothing changed");
                // Still word from the controller: it renews the lease already held.
                self.renew();
                (self.controller_faults(), Some(error))
            }
        };
        v1::AgentMessage {
            body: Some(v1::agent_message::Body::Ack(v1::Ack {
                generation,
                applied_faults: u32::try_from(applied_faults).unwrap_or(u32::MAX),
                error,
            })),
        }
    }

    /// Renews the lease for the term last granted; a lease that ran out stays ended.
    fn renew(&mut self) {
        if let Some(term) = self.term
            && self.table.renew_lease(term).is_none()
        {
            self.term = None;
        }
    }

    fn controller_faults(&self) -> usize {
        self.table
            .list()
            .iter()
            .flat_map(|r| &r.faults)
            .filter(|f| matches!(f.fault.origin, Origin::Controller { .. }))
            .count()
    }
}
