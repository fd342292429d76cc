//! The agent's side of the control plane.
//!
//! - [`backoff`]: reconnect delays (exponential, full jitter).
//! - [`convert`]: the wire types (`faultline_proto::v1`) to and from the domain types: fault
//!   specs, desired states with their lease, SLI snapshots. Errors name the field path.
//!
//! The controller connection itself (hello, desired state, acknowledgements, heartbeats with
//! SLIs, and clearing controller-issued faults when the stream breaks) arrives with the
//! control-plane issue; the lease that bounds controller-issued faults lives in the route
//! table, so it holds whatever this module does.

pub mod backoff;
pub mod convert;
