//! The controller's gRPC API: wire messages in, domain calls on the store, wire messages out.
//!
//! - [`experiments`]: `faultline.v1.ExperimentService` (Validate, Create, Get, List, Start
//!   through the hub, Abort, Delete, Watch).
//! - [`watch`]: Watch's stream and [`Changes`](watch::Changes), the commit notification.
//! - [`registry`]: `faultline.v1.AgentRegistry`, the agents the store has seen.
//! - `status`: every error mapped to a gRPC status, in one place.
//! - `canonical`: the canonical JSON of a validated spec.
//! - `convert`: store records to wire messages (timestamps, states, events).
//! - `result`: an experiment's result (trip, detection, recovery, injection) from its timeline.

mod canonical;
mod convert;
pub mod experiments;
pub mod registry;
mod result;
mod status;
pub mod watch;

pub use self::experiments::ExperimentApi;
pub use self::registry::RegistryApi;
