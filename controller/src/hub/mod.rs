//! The hub: the one task that owns the connected agents and the running experiments, and
//! pushes every agent its full desired state.
//!
//! Agents' `AgentService.Connect` streams ([`service`]) and the experiment API talk to the
//! hub through a bounded channel ([`Hub`]); the hub owns the state, so nothing here is a
//! shared lock. For each agent it keeps a generation (bumped whenever the agent's desired
//! state changes, never reset while the controller runs) and a bounded sender to the agent's
//! stream. It sends the desired state on hello and on every change, a `ControllerHeartbeat`
//! every heartbeat interval (which renews the agents' leases), and ends running experiments
//! when their duration is over.
//!
//! Modules: `service` (the gRPC `AgentService` stream, hello to domain types), `registry`
//! (`AgentRegistry.List` with the hub's live view), `state` (the task and its state),
//! `fanout` (timing a desired-state change until every targeted agent acknowledged it).

mod fanout;
mod registry;
mod service;
mod state;

pub use self::registry::LiveRegistry;
pub use self::service::AgentApi;
pub use self::state::{Hub, HubTask, StartError};
