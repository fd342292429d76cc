//! `spec.guards` and `spec.recovery`: the SLO guards that stop an experiment when the service
//! it hurts bends past its objective, and how long to watch the service recover afterwards.
//!
//! ```yaml
//! guards:
//!   - name: checkout-errors         # a DNS label, unique among the guards
//!     agents:                       # in-band: SLIs from the agents' heartbeats
//!       route: api                  # one of spec.targets.routes (unless selector is given)
//!       # selector: {matchLabels: {app: web}}  # other agents than the targets (not with local)
//!       metric: errorRate           # errorRate | latency | requestRate
//!       # quantile: 0.99            # latency only, required there (0 < q < 1)
//!       # grpcCodes: [2, 13, 14]    # errorRate: gRPC codes counted as errors (default: non-OK)
//!       minRequests: 20             # below this in the window: no data (default 1)
//!       noData: ignore              # ignore (default) | trip
//!       local: true                 # the agent also judges its own traffic and clears itself
//!       # versus: control           # errorRate/latency: treatment cohort minus control cohort
//!     above: 0.05                   # or below: (a number)
//!     window: 10s                   # agents only; at least the controller's heartbeat
//!     for: 2s                       # how long the condition must hold (default 0s)
//!   - name: p99
//!     prometheus:
//!       url: http://127.0.0.1:9090
//!       query: histogram_quantile(0.99, sum(rate(x_bucket[30s])) by (le))
//!       interval: 1s                # default 1s, >= 1s
//!       timeout: 500ms              # default min(interval, 5s); at most interval
//!       tripAfterErrors: 3          # consecutive query errors that trip (default 3); 0 = ignore
//!     above: 0.25
//!   - name: health
//!     probe:                        # no above/below: trips after `failures` failed probes
//!       url: http://127.0.0.1:8080/healthz
//!       method: GET                 # default GET
//!       headers: {x-probe: faultline}
//!       expectStatus: 200-299       # a status or a range (default 200-399)
//!       bodyContains: ok            # or bodyRegex:
//!       timeout: 1s                 # default 1s; at most interval
//!       interval: 1s                # default 1s, >= 1s
//!       failures: 3                 # consecutive failures before the guard trips (default 3)
//! recovery:
//!   stable: 5s                      # default 5s
//!   timeout: 2m                     # default 5m; longer than stable
//! requireTraffic: true              # a rule that matched nothing fails the experiment
//! ```
//!
//! The types are here; `parse` reads them from a spec. The check that needs the controller's
//! runtime settings (an agents window at least one heartbeat long) is in `caps`.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use super::selector::Selector;

mod parse;
#[cfg(test)]
mod tests;

pub(crate) use self::parse::{parse, parse_recovery};

/// Default `spec.recovery.stable`.
pub const DEFAULT_STABLE: Duration = Duration::from_secs(5);
/// Default `spec.recovery.timeout`.
pub const DEFAULT_RECOVERY_TIMEOUT: Duration = Duration::from_secs(300);
/// Shortest interval of a Prometheus or probe guard.
pub const MIN_INTERVAL: Duration = Duration::from_secs(1);
/// Default `interval` of a Prometheus or probe guard.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);
/// A Prometheus guard's default `timeout` is its interval, at most this.
pub const DEFAULT_PROMETHEUS_TIMEOUT: Duration = Duration::from_secs(5);
/// Default `tripAfterErrors` of a Prometheus guard.
pub const DEFAULT_TRIP_AFTER_ERRORS: u32 = 3;
/// Default `timeout` of a probe guard.
pub const DEFAULT_PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// Default `failures` of a probe guard.
pub const DEFAULT_FAILURES: u32 = 3;
/// Default `expectStatus` of a probe guard: any success or redirect.
pub const DEFAULT_EXPECT_STATUS: (u16, u16) = (200, 399);
/// Default `minRequests` of an agents guard: a window without a request has no value.
pub const DEFAULT_MIN_REQUESTS: u64 = 1;

/// One validated guard.
#[derive(Clone, Debug, PartialEq)]
pub struct Guard {
    /// Unique among the experiment's guards; a DNS label like experiment names.
    pub name: String,
    pub source: Source,
    pub condition: Condition,
    /// The span of traffic (agents) or samples a value is computed over. Agents guards: at
    /// least the controller's heartbeat interval. Prometheus and probe guards: unused (their
    /// query or request is the window), 0.
    pub window: Duration,
    /// How long the condition must hold before the guard trips; 0 trips on the first breach.
    pub hold: Duration,
}

/// Where a guard's value comes from.
#[derive(Clone, Debug, PartialEq)]
pub enum Source {
    Agents(AgentsSource),
    Prometheus(PrometheusSource),
    Probe(ProbeSource),
}

/// The in-band source: SLIs the agents send in their heartbeats.
#[derive(Clone, Debug, PartialEq)]
pub struct AgentsSource {
    /// The agent route whose SLIs count.
    pub route: String,
    /// Agents whose SLIs count; `None`: the experiment's targets.
    pub selector: Option<Selector>,
    pub metric: Metric,
    /// Fewer requests than this in the window is "no data".
    pub min_requests: u64,
    pub no_data: NoData,
    /// The agents also evaluate the guard on their own traffic and clear the experiment's
    /// faults themselves on a breach.
    pub local: bool,
    /// Judge the treatment cohort against the control: the value is the metric over the
    /// requests a cohort fault's draw selected minus the metric over the equal control share
    /// it left out (`versus: control`). `minRequests` applies to each cohort.
    pub versus: Option<Versus>,
}

/// What an in-band guard compares the treatment cohort with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Versus {
    /// The control cohort: requests whose key the draw leaves out on purpose.
    Control,
}

/// What an agents guard computes over its window.
#[derive(Clone, Debug, PartialEq)]
pub enum Metric {
    /// Errors / all requests, 0..1. Errors: 5xx responses, gRPC calls whose code is in
    /// `grpc_codes` (answered with HTTP 200, so not counted as 5xx), resets, upstream errors.
    ErrorRate { grpc_codes: GrpcCodes },
    /// A latency quantile, in seconds.
    Latency { quantile: f64 },
    /// Requests per second.
    RequestRate,
}

/// The gRPC status codes an error rate counts, as a bit set over codes 0..=16.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GrpcCodes(pub u32);

impl GrpcCodes {
    /// Every code but OK (0).
    pub const NOT_OK: GrpcCodes = GrpcCodes(0x1_fffe);

    pub fn contains(self, code: usize) -> bool {
        code < 32 && self.0 & (1 << code) != 0
    }

    pub fn codes(self) -> impl Iterator<Item = u32> {
        (0..17).filter(move |c| self.0 & (1 << c) != 0)
    }
}

/// What a guard without enough data does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoData {
    /// Neither breached nor ok: the guard waits (and does not hold up recovery).
    Ignore,
    /// Counts as a breach.
    Trip,
}

/// An instant PromQL query.
#[derive(Clone, Debug, PartialEq)]
pub struct PrometheusSource {
    /// The Prometheus base URL (`http://127.0.0.1:9090`); `/api/v1/query` is appended.
    pub url: String,
    pub query: String,
    pub interval: Duration,
    pub timeout: Duration,
    /// Consecutive query errors (or empty results) that trip the guard; `None`: errors are
    /// ignored (no data).
    pub trip_after_errors: Option<u32>,
}

/// An HTTP(S) probe.
#[derive(Clone, Debug, PartialEq)]
pub struct ProbeSource {
    pub method: String,
    pub url: String,
    pub headers: BTreeMap<String, String>,
    /// Inclusive range of statuses that pass.
    pub expect_status: (u16, u16),
    pub body: Option<BodyCheck>,
    pub timeout: Duration,
    pub interval: Duration,
    /// Consecutive failures before the guard trips (at least 1).
    pub failures: u32,
}

/// What a probe's response body must contain.
#[derive(Clone, Debug)]
pub enum BodyCheck {
    Contains(String),
    Regex(regex::Regex),
}

impl PartialEq for BodyCheck {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Contains(a), Self::Contains(b)) => a == b,
            (Self::Regex(a), Self::Regex(b)) => a.as_str() == b.as_str(),
            _ => false,
        }
    }
}

/// `above: T` or `below: T`: the objective is broken when the value is above (below) T.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Condition {
    Above(f64),
    Below(f64),
}

impl Condition {
    /// Whether `value` breaks the objective.
    pub fn breached(self, value: f64) -> bool {
        match self {
            Condition::Above(t) => value > t,
            Condition::Below(t) => value < t,
        }
    }

    pub fn threshold(self) -> f64 {
        match self {
            Condition::Above(t) | Condition::Below(t) => t,
        }
    }

    /// `>` or `<`, as reasons print it.
    pub fn symbol(self) -> &'static str {
        match self {
            Condition::Above(_) => ">",
            Condition::Below(_) => "<",
        }
    }
}

/// `spec.recovery`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Recovery {
    /// How long every guard must stay inside its objective for the system to count as
    /// recovered.
    pub stable: Duration,
    /// How long to wait for that after the faults end; then `not recovered`.
    pub timeout: Duration,
}

impl Default for Recovery {
    fn default() -> Self {
        Recovery {
            stable: DEFAULT_STABLE,
            timeout: DEFAULT_RECOVERY_TIMEOUT,
        }
    }
}

impl Source {
    /// `agents`, `prometheus` or `probe`.
    pub fn kind(&self) -> &'static str {
        match self {
            Source::Agents(_) => "agents",
            Source::Prometheus(_) => "prometheus",
            Source::Probe(_) => "probe",
        }
    }
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Metric::ErrorRate { .. } => f.write_str("error rate"),
            Metric::Latency { quantile } => write!(f, "latency p{}", quantile * 100.0),
            Metric::RequestRate => f.write_str("request rate"),
        }
    }
}
