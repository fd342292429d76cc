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
//! The hub also runs the experiments' SLO guards: in-band guards read the SLIs agents send
//! in heartbeats as they arrive, polled guards (Prometheus, probes) send readings from their
//! tasks; a trip withdraws the faults at once, and after the faults end the guards keep
//! reading until the service is stable again (recovery).
//!
//! Modules: `service` (the gRPC `AgentService` stream, hello and heartbeats to domain types),
//! `registry` (`AgentRegistry.List` with the hub's live view), `state` (the task, its
//! commands and the agents' desired states), `lifecycle` (an experiment's pre-flight, start,
//! end, trip, withdrawal and recovery watch), `guards` (one experiment's guards), `history`
//! (recent SLIs per agent route, for pre-flight), `counts` (fault counters summed over agents
//! and phases), `fanout` (timing a desired-state change
//! until every targeted agent acknowledged it).

mod counts;
mod fanout;
mod guarding;
mod guards;
mod history;
mod lifecycle;
mod local;
mod recovery;
mod registry;
mod service;
mod state;

pub use self::registry::LiveRegistry;
pub use self::service::AgentApi;
pub use self::state::{Hub, HubTask, StartError};
