//! faultline-controller: the central control plane.
//!
//! It holds experiments in its SQLite store, chooses the agents they target, pushes each agent
//! its full desired fault set under a lease, runs ramps and schedules, ends experiments at their
//! duration, on abort, on the emergency stop or when an SLO guard trips, and measures how the
//! service recovers.
//!
//! Where things live:
//! - [`spec`]: experiment specs (YAML or JSON, Kubernetes-shaped) validated offline into an
//!   [`spec::Experiment`], and the server-side [`spec::Caps`] they are checked against.
//! - [`store`]: the SQLite store (experiments, their states and timelines, targets, agents
//!   seen), and [`store::StoreHandle`], its async handle for the controller's tasks.
//! - [`targets`]: which agents an experiment targets (seeded, stable choices; agents joining
//!   mid-run) and which running experiments conflict; pure, no network, no store.
//! - [`api`]: the gRPC services (`ExperimentService`, `AgentRegistry`) over the store, and the
//!   one place errors become gRPC status codes.
//! - [`auth`]: who may call: mTLS (agents and operators by certificate role), operators'
//!   bearer tokens, and the audit log every operator call is written to before it runs.
//! - [`hub`]: the task that owns the connected agents (`AgentService.Connect`) and the running
//!   experiments, pushes each agent its desired state under a lease, heartbeats, and runs the
//!   experiments' guards, phases and recovery watches.
//! - [`guard`]: guards at run time: the evaluator (condition, `for`, no data), the in-band
//!   sliding window, and the Prometheus and probe pollers with their shared HTTP(S) client.
//! - [`metrics`]: counters, gauges and the fan-out histogram, and the `/metrics` endpoint.
//! - [`config`]: the controller's settings, parsed once into typed values.
//! - [`schedule`]: schedules (`spec.schedule`): Start arms a template, the scheduler task
//!   creates and starts a run at each fire time (cron in a time zone, or once), on a
//!   [`schedule::Clock`] tests can move.
//! - [`server`]: start-up (store, recovery, bind) and [`server::serve`] until a shutdown
//!   future resolves, with gRPC health and reflection.
//! - [`webhook`]: the Kubernetes injection webhook (HTTPS, its own address): adds the agent to
//!   pods annotated `faultline.dev/inject: "true"`.

pub mod api;
pub mod auth;
pub mod config;
pub mod guard;
pub mod hub;
pub mod metrics;
pub mod schedule;
pub mod server;
pub mod spec;
pub mod store;
pub mod targets;
pub mod webhook;
