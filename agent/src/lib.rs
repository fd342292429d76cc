//! faultline-agent: a fault-injecting proxy that runs beside a service.
//!
//! The agent proxies a service's traffic through named routes (`listen -> upstream`) and
//! injects faults into it: latency, bandwidth limits, slicing, slow closes, timeouts, resets,
//! data limits, a route going down, network partitions. It runs on its own, driven by its
//! Toxiproxy-compatible admin API, and (later) under the controller's leases.
//!
//! Where things live:
//! - [`config`]: flags, environment and config file, parsed once into typed settings.
//! - [`control`]: the agent's side of the control plane: the controller connection, wire <->
//!   domain conversions of faults, desired states, local guards and SLIs; reconnect backoff.
//! - [`fault`]: the fault model, one module per fault kind.
//! - [`guard`]: local guards: SLO guards the controller hands the agent, judged every 5 ms on
//!   a route's own counters; a breach clears the guarded faults at once, without the
//!   controller, and is reported on the stream.
//! - [`route`]: the route table (control side) and the snapshots connections read.
//! - [`tcp`]: the TCP data plane: accept, connect, the fast path and the faulted path.
//! - [`http`]: the HTTP/gRPC data plane: per-request matching and faults over hyper.
//! - [`capture`]: transparent capture: the listeners iptables redirects to (original
//!   destination, protocol detection, the captured route that takes a connection) and
//!   `init-iptables`, which writes those rules.
//! - [`admin`]: the admin HTTP API: Toxiproxy's `/proxies` surface, `/metrics`, `/ready`.
//! - [`metrics`]: per-route atomic counters (and, for a cohort fault, per treatment and control
//!   arm) and their Prometheus rendering.
//! - [`app`]: composes the above: [`app::run`] starts an agent and drains it on shutdown.
//!
//! Invariants: the data path takes no lock (it reads `Arc` snapshots from a `watch` channel);
//! a fault reaches every open connection of its route from the connection's next chunk; a fault
//! with an expiry is removed when it passes; the agent never captures its own upstream
//! connections (they carry `--mark`, and `init-iptables` exempts the mark or the agent's UID).

pub mod admin;
pub mod app;
pub mod capture;
pub mod config;
pub mod control;
pub mod fault;
pub mod guard;
pub mod http;
pub mod metrics;
pub mod route;
pub mod tcp;
