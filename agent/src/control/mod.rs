//! The agent's side of the control plane.
//!
//! - [`backoff`]: reconnect delays (exponential, full jitter).
//! - [`client`]: the controller connection: hello, desired states applied and acknowledged
//!   (their local guards handed to [`crate::guard`]), heartbeats, and clearing
//!   controller-issued faults and redialling when the stream ends.
//! - [`heartbeat`]: the heartbeat's contents (per-route SLI changes, fault counters).
//! - [`convert`]: the wire types (`faultline_proto::v1`) to and from the domain types: fault
//!   specs, desired states with their lease and local guards, guard trips, SLI snapshots.
//!   Errors name the field path.
//!
//! The lease that bounds controller-issued faults lives in the route table, so it holds
//! whatever this module does.

pub mod backoff;
pub mod client;
pub mod convert;
pub mod heartbeat;
