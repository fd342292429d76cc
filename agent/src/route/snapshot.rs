//! The per-route snapshot: everything a connection needs to decide what to do with its next
//! chunk, frozen at one instant. A new snapshot replaces the old one atomically for every
//! connection of the route (they all hold the same `watch` receiver), so a fault's arrival and
//! removal are seen by open connections from their next chunk, never halfway.

use std::sync::Arc;

use tokio::time::Instant;

use super::{HttpOptions, Protocol, Upstream};
use crate::fault::Fault;
use crate::metrics::{FaultCounters, RouteMetrics};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RouteState {
    /// Accepting and forwarding.
    Serving,
    /// Disabled through the API (`enabled: false`): listener closed, connections cut.
    Disabled,
    /// Deleted: connections cut; no further snapshot will come.
    Removed,
}

/// A fault as it is active on a route.
#[derive(Clone, Debug)]
pub struct ActiveFault {
    /// Stable for the fault's life on the route (kept across attribute updates); seeds the
    /// per-connection toxicity decision, so a connection's fate does not change on update.
    pub key: u64,
    /// When the fault became active; per-connection timers start at the later of this and the
    /// connection's start.
    pub since: Instant,
    pub fault: Fault,
    /// Requests (or connections) this fault matched, acted on, and let pass.
    pub counters: Arc<FaultCounters>,
}

#[derive(Debug)]
pub struct RouteSnapshot {
    pub name: Arc<str>,
    pub upstream: Upstream,
    pub protocol: Protocol,
    pub http: HttpOptions,
    pub state: RouteState,
    pub faults: Box<[ActiveFault]>,
    pub metrics: Arc<RouteMetrics>,
}

impl RouteSnapshot {
    /// True when no fault is configured: connections can take the fast path.
    pub fn is_clean(&self) -> bool {
        self.state == RouteState::Serving && self.faults.is_empty()
    }
}
