//! The sliding window of an in-band guard: the SLIs agents reported in the last `window`,
//! summed, and the guard's metric computed from the sum.
//!
//! Heartbeats are added into time slots (one slot per slot width, typically the heartbeat
//! interval), so a window holds a few dozen slots however many agents report; a running total
//! is kept, so reading the window costs one metric computation, not a sum over agents. A slot
//! leaves the window once all of it is older than `window`.

use std::collections::VecDeque;
use std::time::Duration;

use faultline_agent::control::heartbeat::sli_delta;
use faultline_agent::metrics::http::{STATUS_CLASSES, SliSnapshot};
use tokio::time::Instant;

use super::Reading;
use crate::spec::{GrpcCodes, Metric};

/// Summed SLIs over a sliding span of time.
#[derive(Clone, Debug)]
pub struct SliWindow {
    span: Duration,
    slot: Duration,
    slots: VecDeque<(Instant, SliSnapshot)>,
    total: SliSnapshot,
}

impl SliWindow {
    /// A window over `span`, summing reports into slots of `slot` (at least 1 ms).
    pub fn new(span: Duration, slot: Duration) -> Self {
        SliWindow {
            span,
            slot: slot.max(Duration::from_millis(1)),
            slots: VecDeque::new(),
            total: SliSnapshot::default(),
        }
    }

    /// Adds a report received at `at`.
    pub fn add(&mut self, at: Instant, sli: &SliSnapshot) {
        self.expire(at);
        match self.slots.back_mut() {
            Some((start, sum)) if at < *start + self.slot && at >= *start => sum.merge(sli),
            _ => self.slots.push_back((at, sli.clone())),
        }
        self.total.merge(sli);
    }

    /// Drops the slots wholly older than the span before `now`.
    pub fn expire(&mut self, now: Instant) {
        while let Some((start, _)) = self.slots.front() {
            if *start + self.slot + self.span > now {
                break;
            }
            let (_, old) = self.slots.pop_front().expect("front exists");
            self.total = sli_delta(&self.total, &old);
        }
        if self.slots.is_empty() {
            self.total = SliSnapshot::default();
        }
    }

    /// Forgets everything (a new phase begins).
    pub fn clear(&mut self) {
        self.slots.clear();
        self.total = SliSnapshot::default();
    }

    /// The sum of what is in the window.
    pub fn total(&self) -> &SliSnapshot {
        &self.total
    }

    /// The span the window covers.
    pub fn span(&self) -> Duration {
        self.span
    }
}

/// Requests in `sli`: responses (every status class, real and injected) and resets.
pub fn requests(sli: &SliSnapshot) -> u64 {
    sli.responses()
        .saturating_add(sli.resets.real)
        .saturating_add(sli.resets.injected)
}

/// Errors in `sli`: 5xx responses (the agent answers upstream errors with 502, so they are
/// among them), gRPC calls ending with a code in `codes` (those answer HTTP 200), and resets;
/// real and injected alike, since callers feel both. Never more than [`requests`].
pub fn errors(sli: &SliSnapshot, codes: GrpcCodes) -> u64 {
    let five = STATUS_CLASSES.len() - 1;
    let grpc: u64 = (0..sli.grpc.real.len())
        .filter(|&c| codes.contains(c))
        .map(|c| sli.grpc.real[c] + sli.grpc.injected[c])
        .sum();
    let e = sli.requests.real[five]
        + sli.requests.injected[five]
        + grpc
        + sli.resets.real
        + sli.resets.injected;
    e.min(requests(sli))
}

/// The metric's value over `sli`, which covers `span`; no data below `min_requests`, except
/// for the request rate, for which no traffic is a value (0), not a lack of data.
pub fn reading(metric: &Metric, sli: &SliSnapshot, span: Duration, min_requests: u64) -> Reading {
    let n = requests(sli);
    if n < min_requests.max(1) && !matches!(metric, Metric::RequestRate) {
        return Reading::NoData {
            why: format!("{n} requests in the window, fewer than minRequests {min_requests}"),
        };
    }
    match metric {
        Metric::ErrorRate { grpc_codes } => {
            Reading::Value(errors(sli, *grpc_codes) as f64 / n as f64)
        }
        Metric::Latency { quantile } => match sli.latency.quantile(*quantile) {
            Some(d) => Reading::Value(d.as_secs_f64()),
            None => Reading::NoData {
                why: "no latency recorded in the window".into(),
            },
        },
        Metric::RequestRate => Reading::Value(n as f64 / span.as_secs_f64().max(1e-3)),
    }
}

/// `versus: control`: the metric over the treatment minus the metric over the control, each
/// cohort with its own `min_requests`; no data when either side has none.
pub fn versus_reading(
    metric: &Metric,
    treatment: &SliSnapshot,
    control: &SliSnapshot,
    span: Duration,
    min_requests: u64,
) -> Reading {
    match (
        reading(metric, treatment, span, min_requests),
        reading(metric, control, span, min_requests),
    ) {
        (Reading::Value(t), Reading::Value(c)) => Reading::Value(t - c),
        (t, c) => {
            let why = |side: &str, r: Reading| match r {
                Reading::NoData { why } | Reading::Broken { why, .. } => format!("{side}: {why}"),
                Reading::Value(_) => String::new(),
            };
            let parts: Vec<String> = [why("treatment", t), why("control", c)]
                .into_iter()
                .filter(|s| !s.is_empty())
                .collect();
            Reading::NoData {
                why: parts.join("; "),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn sli(ok: u64, injected_5xx: u64) -> SliSnapshot {
        let mut s = SliSnapshot::default();
        s.requests.real[1] = ok;
        s.requests.injected[4] = injected_5xx;
        s
    }

    #[test]
    fn slots_leave_the_window_when_wholly_old() {
        let t0 = Instant::now();
        let mut w = SliWindow::new(ms(1000), ms(100));
        w.add(t0, &sli(10, 0));
        w.add(t0 + ms(50), &sli(10, 0)); // same slot
        w.add(t0 + ms(500), &sli(0, 20));
        assert_eq!(requests(w.total()), 40);
        w.expire(t0 + ms(1099));
        assert_eq!(requests(w.total()), 40);
        w.expire(t0 + ms(1100));
        assert_eq!(requests(w.total()), 20);
        assert_eq!(errors(w.total(), GrpcCodes::NOT_OK), 20);
        w.expire(t0 + ms(1600));
        assert_eq!(requests(w.total()), 0);
        assert!(w.total().latency.buckets.is_empty());
    }

    #[test]
    fn error_rate_counts_5xx_grpc_codes_and_resets() {
        let mut s = sli(40, 60);
        s.grpc.real[0] = 10; // OK: not an error
        s.grpc.injected[14] = 5; // UNAVAILABLE
        s.requests.real[1] += 15; // the gRPC calls answered 200
        s.resets.injected = 5;
        let metric = Metric::ErrorRate {
            grpc_codes: GrpcCodes::NOT_OK,
        };
        let Reading::Value(v) = reading(&metric, &s, ms(1000), 1) else {
            panic!("a value")
        };
        assert!((v - 70.0 / 120.0).abs() < 1e-9, "{v}");
        let only_internal = Metric::ErrorRate {
            grpc_codes: GrpcCodes(1 << 13),
        };
        let Reading::Value(v) = reading(&only_internal, &s, ms(1000), 1) else {
            panic!("a value")
        };
        assert!((v - 65.0 / 120.0).abs() < 1e-9, "{v}");
    }

    #[test]
    fn too_few_requests_is_no_data_and_rates_are_per_second() {
        let metric = Metric::ErrorRate {
            grpc_codes: GrpcCodes::NOT_OK,
        };
        assert!(matches!(
            reading(&metric, &sli(3, 0), ms(1000), 20),
            Reading::NoData { .. }
        ));
        let Reading::Value(rate) = reading(&Metric::RequestRate, &sli(30, 0), ms(2000), 0) else {
            panic!("a value")
        };
        assert_eq!(rate, 15.0);
        let Reading::Value(zero) = reading(&Metric::RequestRate, &sli(0, 0), ms(2000), 0) else {
            panic!("a value")
        };
        assert_eq!(zero, 0.0);
    }

    #[test]
    fn versus_control_is_the_difference_and_needs_both_cohorts() {
        let metric = Metric::ErrorRate {
            grpc_codes: GrpcCodes::NOT_OK,
        };
        let Reading::Value(d) = versus_reading(&metric, &sli(40, 60), &sli(90, 10), ms(1000), 10)
        else {
            panic!("a value")
        };
        assert!((d - 0.5).abs() < 1e-9, "{d}");
        let r = versus_reading(&metric, &sli(40, 60), &sli(3, 0), ms(1000), 10);
        assert!(
            matches!(&r, Reading::NoData { why } if why.starts_with("control: 3 requests")),
            "{r:?}"
        );
    }
}
