//! The agent's side of the control plane.
//!
//! - [`backoff`]: reconnect delays (exponential, full jitter).
//!
//! The controller connection itself (hello, desired state, acknowledgements, heartbeats with
//! SLIs, and clearing controller-issued faults when the stream breaks) arrives with the
//! control-plane issue; the lease that bounds controller-issued faults lives in the route
//! table, so it holds whatever this module does.

pub mod backoff;
