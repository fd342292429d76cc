//! Per-route counters, kept as atomics so the data path never takes a lock to count,
//! and rendered in the Prometheus text format by the admin API.
//!
//! - this file: connection-level counters of a route ([`RouteMetrics`]) and of a fault
//!   ([`FaultCounters`]), and [`Recorder`], through which the proxy counts a request's outcome
//!   into the route's request counters and, for a request in a cohort's treatment or control
//!   arm, into that arm's counters too.
//! - [`http`]: request-level counters of `http`/`grpc` routes ([`HttpMetrics`]) and their
//!   mergeable snapshot for the controller ([`SliSnapshot`]).
//! - [`histogram`]: the lock-free latency histogram behind them ([`LatencyHistogram`]).
//! - [`prometheus`]: the `/metrics` text ([`render`]).

pub mod histogram;
pub mod http;
pub mod prometheus;

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

pub use self::{
    histogram::{HistogramSnapshot, LatencyHistogram, bucket_bounds},
    http::{ByOrigin, HttpMetrics, SliSnapshot},
    prometheus::{RouteMetricsView, render},
};

use crate::fault::http::Arm;
use crate::fault::{Flow, KindTag};

/// Counters for one fault: how often it matched, acted, and let a match pass (its probability
/// said no). A fault that never matched anything is the silent failure these make visible.
#[derive(Debug, Default)]
pub struct FaultCounters {
    pub matched: AtomicU64,
    pub injected: AtomicU64,
    pub passed: AtomicU64,
}

impl FaultCounters {
    pub fn record(&self, injected: bool) {
        self.matched.fetch_add(1, Relaxed);
        if injected {
            self.injected.fetch_add(1, Relaxed);
        } else {
            self.passed.fetch_add(1, Relaxed);
        }
    }
}

/// Counters for one route. Shared (`Arc`) between the route's snapshot, its connections and
/// the admin API; every update is a single relaxed atomic add.
#[derive(Debug, Default)]
pub struct RouteMetrics {
    pub connections_total: AtomicU64,
    pub connections_active: AtomicU64,
    pub bytes_upstream: AtomicU64,
    pub bytes_downstream: AtomicU64,
    pub upstream_connect_errors: AtomicU64,
    /// Request-level counters; stay zero on `tcp` routes.
    pub http: HttpMetrics,
    /// The part of `http` counted for requests in the treatment arm of the route's cohort
    /// fault ([`Arm`]); stays zero on routes without one.
    pub treatment: HttpMetrics,
    /// The part of `http` counted for requests in the control arm.
    pub control: HttpMetrics,
    /// Header-triggered faults in progress now (capped per route by `max_header_faults`).
    pub header_faults_active: std::sync::atomic::AtomicU32,
    injected: [AtomicU64; KindTag::ALL.len()],
    /// Milliseconds since the agent started at which a connect error was last logged; used to
    /// log a storm of failures once a second rather than once per connection.
    last_error_log_ms: AtomicU64,
    suppressed_errors: AtomicU64,
}

impl RouteMetrics {
    pub fn add_bytes(&self, flow: Flow, n: usize) {
        let c = match flow {
            Flow::Upstream => &self.bytes_upstream,
            Flow::Downstream => &self.bytes_downstream,
        };
        c.fetch_add(n as u64, Relaxed);
    }

    pub fn injected(&self, kind: KindTag) {
        self.injected[kind as usize].fetch_add(1, Relaxed);
    }

    pub fn injected_count(&self, kind: KindTag) -> u64 {
        self.injected[kind as usize].load(Relaxed)
    }

    /// Count an upstream connect error; returns `Some(n)` when this one should be logged,
    /// with `n` the number of errors not logged since the last logged one.
    pub fn upstream_error(&self, now_ms: u64) -> Option<u64> {
        self.upstream_connect_errors.fetch_add(1, Relaxed);
        let last = self.last_error_log_ms.load(Relaxed);
        if (last == 0 || now_ms >= last + 1000)
            && self
                .last_error_log_ms
                .compare_exchange(last, now_ms.max(1), Relaxed, Relaxed)
                .is_ok()
        {
            return Some(self.suppressed_errors.swap(0, Relaxed));
        }
        self.suppressed_errors.fetch_add(1, Relaxed);
        None
    }

    /// What a request in `arm` counts its outcome through.
    pub fn recorder(&self, arm: Arm) -> Recorder<'_> {
        Recorder {
            route: &self.http,
            arm: match arm {
                Arm::Treatment => Some(&self.treatment),
                Arm::Control => Some(&self.control),
                Arm::Neither => None,
            },
        }
    }

    /// Marks a connection active until the guard is dropped.
    pub fn connection(self: &std::sync::Arc<Self>) -> ActiveGuard {
        self.connections_total.fetch_add(1, Relaxed);
        self.connections_active.fetch_add(1, Relaxed);
        ActiveGuard(self.clone())
    }
}

pub struct ActiveGuard(std::sync::Arc<RouteMetrics>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.connections_active.fetch_sub(1, Relaxed);
    }
}

/// Counts one request's outcome into its route's request counters and, for a request in a
/// cohort arm, into the arm's as well: the same relaxed adds, twice, nothing allocated.
#[derive(Clone, Copy, Debug)]
pub struct Recorder<'a> {
    route: &'a HttpMetrics,
    arm: Option<&'a HttpMetrics>,
}

impl Recorder<'_> {
    fn each(&self, f: impl Fn(&HttpMetrics)) {
        f(self.route);
        if let Some(arm) = self.arm {
            f(arm);
        }
    }

    /// See [`HttpMetrics::record_response`].
    pub fn response(&self, status: u16, injected: bool, latency: Duration) {
        self.each(|m| m.record_response(status, injected, latency));
    }

    /// See [`HttpMetrics::record_grpc`].
    pub fn grpc(&self, code: u8, injected: bool) {
        self.each(|m| m.record_grpc(code, injected));
    }

    /// See [`HttpMetrics::record_upstream_error`].
    pub fn upstream_error(&self) {
        self.each(HttpMetrics::record_upstream_error);
    }

    /// See [`HttpMetrics::record_reset`].
    pub fn reset(&self, injected: bool) {
        self.each(|m| m.record_reset(injected));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_errors_are_logged_at_most_once_a_second() {
        let m = RouteMetrics::default();
        assert_eq!(m.upstream_error(5), Some(0));
        assert_eq!(m.upstream_error(10), None);
        assert_eq!(m.upstream_error(900), None);
        assert_eq!(m.upstream_error(1100), Some(2));
        assert_eq!(m.upstream_connect_errors.load(Relaxed), 4);
    }

    #[test]
    fn an_arm_counts_its_requests_besides_the_route() {
        let m = RouteMetrics::default();
        let ms = Duration::from_millis(1);
        m.recorder(Arm::Treatment).response(503, true, ms);
        m.recorder(Arm::Treatment).reset(true);
        m.recorder(Arm::Control).response(200, false, ms);
        m.recorder(Arm::Control).grpc(0, false);
        m.recorder(Arm::Control).upstream_error();
        m.recorder(Arm::Neither).response(200, false, ms);
        let (route, t, c) = (
            m.http.snapshot(),
            m.treatment.snapshot(),
            m.control.snapshot(),
        );
        assert_eq!(route.requests.real, [0, 2, 0, 0, 0]);
        assert_eq!(route.requests.injected, [0, 0, 0, 0, 1]);
        assert_eq!((route.resets.injected, route.grpc.real[0]), (1, 1));
        assert_eq!(route.upstream_errors, 1);
        assert_eq!(t.requests.injected, [0, 0, 0, 0, 1]);
        assert_eq!(
            (t.responses(), t.resets.injected, t.latency.count),
            (1, 1, 1)
        );
        assert_eq!(c.requests.real, [0, 1, 0, 0, 0]);
        assert_eq!(
            (c.responses(), c.grpc.real[0], c.upstream_errors),
            (1, 1, 1)
        );
    }
}
