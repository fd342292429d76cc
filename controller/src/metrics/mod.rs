//! The controller's metrics: atomic counters and gauges the API and the hub update, rendered
//! as Prometheus text at scrape time ([`http`] serves them).
//!
//! - `faultline_controller_agents_connected`: agents with an open `Connect` stream (the hub).
//! - `faultline_controller_experiments{state}`: read from the store at each scrape.
//! - `faultline_controller_aborts_total{reason}`: `manual` (Abort), `controller restarted`
//!   (recovery at start-up), `guard` (SLO guards, not built yet: always 0).
//! - `faultline_controller_desired_state_fanout_seconds`: from the hub sending an experiment's
//!   change (start, end, abort) to the last targeted agent's acknowledgement of it.

pub mod http;

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::store::StateKind;

/// Upper bounds (seconds) of the fan-out histogram's buckets.
const FANOUT_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// Why an experiment was aborted, as a metric label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AbortReason {
    Manual,
    ControllerRestarted,
    Guard,
}

impl AbortReason {
    const ALL: [AbortReason; 3] = [
        AbortReason::Manual,
        AbortReason::ControllerRestarted,
        AbortReason::Guard,
    ];

    fn label(self) -> &'static str {
        match self {
            AbortReason::Manual => "manual",
            AbortReason::ControllerRestarted => "controller restarted",
            AbortReason::Guard => "guard",
        }
    }
}

/// The controller's counters. Shared as `Arc<Metrics>`; every update is a relaxed atomic.
#[derive(Debug, Default)]
pub struct Metrics {
    agents_connected: AtomicU64,
    aborts: [AtomicU64; 3],
    fanout: Histogram,
}

impl Metrics {
    pub fn set_agents_connected(&self, n: usize) {
        self.agents_connected.store(n as u64, Ordering::Relaxed);
    }

    pub fn aborted(&self, reason: AbortReason, n: u64) {
        let i = AbortReason::ALL
            .iter()
            .position(|r| *r == reason)
            .unwrap_or(0);
        self.aborts[i].fetch_add(n, Ordering::Relaxed);
    }

    pub fn fanout(&self, took: Duration) {
        self.fanout.observe(took);
    }

    /// The Prometheus text exposition, with the experiments counted by state.
    pub fn render(&self, experiments: &[(StateKind, u64)]) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP faultline_controller_agents_connected Agents with an open Connect stream.\n\
             # TYPE faultline_controller_agents_connected gauge\n\
             faultline_controller_agents_connected {}",
            self.agents_connected.load(Ordering::Relaxed)
        );
        out.push_str(
            "# HELP faultline_controller_experiments Experiments in the store by state.\n\
             # TYPE faultline_controller_experiments gauge\n",
        );
        for (state, n) in experiments {
            let _ = writeln!(
                out,
                "faultline_controller_experiments{{state=\"{}\"}} {n}",
                state.as_str()
            );
        }
        out.push_str(
            "# HELP faultline_controller_aborts_total Experiments aborted since start, by reason.\n\
             # TYPE faultline_controller_aborts_total counter\n",
        );
        for (reason, n) in AbortReason::ALL.iter().zip(&self.aborts) {
            let _ = writeln!(
                out,
                "faultline_controller_aborts_total{{reason=\"{}\"}} {}",
                reason.label(),
                n.load(Ordering::Relaxed)
            );
        }
        self.fanout.render(
            &mut out,
            "faultline_controller_desired_state_fanout_seconds",
            "From sending an experiment's change to the last targeted agent's acknowledgement.",
        );
        out
    }
}

/// A fixed-bucket histogram of durations in atomics.
#[derive(Debug, Default)]
struct Histogram {
    /// Non-cumulative counts per bucket; the last is `+Inf`.
    buckets: [AtomicU64; FANOUT_BUCKETS.len() + 1],
    sum_nanos: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    fn observe(&self, took: Duration) {
        let secs = took.as_secs_f64();
        let i = FANOUT_BUCKETS
            .iter()
            .position(|le| secs <= *le)
            .unwrap_or(FANOUT_BUCKETS.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (le, n) in FANOUT_BUCKETS.iter().zip(&self.buckets) {
            cumulative += n.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {cumulative}");
        }
        cumulative += self.buckets[FANOUT_BUCKETS.len()].load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
        let sum = self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        let _ = writeln!(out, "{name}_sum {sum}");
        let _ = writeln!(out, "{name}_count {}", self.count.load(Ordering::Relaxed));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let m = Metrics::default();
        m.fanout(Duration::from_millis(3));
        m.fanout(Duration::from_secs(10));
        m.aborted(AbortReason::Manual, 2);
        let text = m.render(&[(StateKind::Pending, 1)]);
        assert!(
            text.contains("fanout_seconds_bucket{le=\"0.0025\"} 0\n"),
            "{text}"
        );
        assert!(
            text.contains("fanout_seconds_bucket{le=\"0.005\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("fanout_seconds_bucket{le=\"+Inf\"} 2\n"),
            "{text}"
        );
        assert!(text.contains("fanout_seconds_count 2\n"), "{text}");
        assert!(
            text.contains("aborts_total{reason=\"manual\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("experiments{state=\"pending\"} 1\n"),
            "{text}"
        );
    }
}
