//! Routes: named `listen -> upstream` pairs, their faults, and the snapshots the data path reads.
//!
//! - [`table`]: the route table, the control side. Every change (a route created, a fault added,
//!   an expiry) is applied here and published as a new snapshot.
//! - [`snapshot`]: the immutable per-route view that connections read through a `watch`
//!   channel. The data path never sees the table or its lock.
//! - [`upstream`]: where a route forwards to.
//! - [`lease`]: the controller's lease and desired state: controller-issued faults are applied
//!   as one whole set and end with the lease.
//! - [`trips`]: which local guards tripped and the faults they keep off (see `crate::guard`).
//! - [`expiry`]: the task that removes faults when their expiry passes and ends a lease that
//!   runs out.
//! - [`protocol`]: what a route speaks (tcp, http, grpc, auto) and its HTTP options.
//! - [`capture`]: captured routes: matched by a redirected connection's original destination
//!   instead of owning a listener; the list the capture listeners read.

pub mod capture;
pub mod expiry;
pub mod lease;
pub mod protocol;
pub mod snapshot;
pub mod table;
pub mod trips;
pub mod upstream;

pub use self::{
    capture::{CaptureDirection, CaptureMatch, CapturedRoute, CapturedRoutes},
    lease::{Applied, DesiredError, DesiredState, LeaseStatus},
    protocol::{HttpOptions, Protocol, parse_response_timeout},
    snapshot::{ActiveFault, RouteSnapshot, RouteState},
    table::{
        Cleared, FaultView, RouteError, RouteFeed, RouteSpec, RouteTable, RouteUpdate, RouteView,
    },
    upstream::Upstream,
};
