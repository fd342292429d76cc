//! SLO guards at run time: where their values come from and when they trip.
//!
//! A guard's value comes from one of three sources:
//! - `agents`: the SLIs agents send in heartbeats, summed over a sliding window (`window.rs`,
//!   `agents.rs`), evaluated by the hub as each heartbeat arrives;
//! - `prometheus`: an instant PromQL query polled at an interval (`prometheus.rs`);
//! - `probe`: an HTTP(S) request polled at an interval (`probe.rs`).
//!
//! Pollers run as tasks and send [`Sample`]s to the hub; the hub feeds every reading, whatever
//! its source, to the guard's [`Tracker`](eval::Tracker), which applies the condition, `for`
//! and the no-data policy and says when the guard changes state or trips.

pub mod eval;
pub mod http;
pub mod probe;
pub mod prometheus;
pub mod window;

/// One route's SLIs from one agent heartbeat, as domain values.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RouteReport {
    pub route: String,
    /// Every request of the route.
    pub all: faultline_agent::metrics::http::SliSnapshot,
    /// The requests a cohort fault's draw selected, when the route has one.
    pub treatment: Option<faultline_agent::metrics::http::SliSnapshot>,
    /// The equal share of keys the draw left out on purpose (never faulted).
    pub control: Option<faultline_agent::metrics::http::SliSnapshot>,
}

/// One reading of a guard's source.
#[derive(Clone, Debug, PartialEq)]
pub enum Reading {
    /// A value to compare with the guard's condition.
    Value(f64),
    /// The source cannot say (too few requests, a query error below the limit); `why` says
    /// so in events.
    NoData { why: String },
    /// The source itself says the objective is broken whatever the threshold (a query that
    /// kept failing past `tripAfterErrors`); `value` is shown (the consecutive errors).
    Broken { value: f64, why: String },
}

/// A reading a poller sends the hub.
#[derive(Clone, Debug)]
pub struct Sample {
    /// The experiment the guard belongs to.
    pub experiment: String,
    /// The guard's name.
    pub guard: String,
    pub reading: Reading,
    /// What the source saw, for events and reasons (`status 503 from http://...`); optional.
    pub note: Option<String>,
    pub at: tokio::time::Instant,
}
