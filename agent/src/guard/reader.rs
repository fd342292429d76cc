//! Reads a route's request counters each tick and turns them into the tick's [`Delta`].
//!
//! What counts, from the per-route counters of [`HttpMetrics`](crate::metrics::HttpMetrics)
//! (real and injected alike: the guard judges what the service's clients see):
//!
//! - **requests** = responses (every status class) + resets. An injected reset before the
//!   response head has no response, so it is counted here once; a reset that cuts a response
//!   already counted makes that request count twice (rare, and it can only lower the rate).
//! - **errors** = 5xx responses + gRPC calls ending with a code in the guard's set + resets.
//!   The agent answers an upstream failure itself, `502` (HTTP) or `UNAVAILABLE` (gRPC), and
//!   counts that answer, so upstream errors are already in the first two terms and are not added
//!   again. A gRPC call's HTTP status is a `200`, so it is never both a 5xx and a gRPC error.
//!
//! Counters only grow within one route, so a delta is the difference of two readings.

use std::sync::Arc;

use super::spec::{GrpcCodes, GuardMetric};
use super::window::Delta;
use crate::metrics::RouteMetrics;
use crate::metrics::histogram::BUCKETS;
use crate::metrics::http::Outcomes;

pub struct Reader {
    metrics: Arc<RouteMetrics>,
    codes: GrpcCodes,
    last: Outcomes,
    /// The last reading of the latency buckets (latency guards only).
    buckets: Option<Box<[[u64; BUCKETS]; 2]>>,
}

impl Reader {
    /// A reader whose first delta covers what happens from now on.
    pub fn starting_now(metrics: Arc<RouteMetrics>, metric: GuardMetric) -> Self {
        let codes = match metric {
            GuardMetric::ErrorRate { grpc_codes } => grpc_codes,
            _ => GrpcCodes::ALL_BUT_OK,
        };
        let mut buckets =
            matches!(metric, GuardMetric::LatencyQuantile(_)).then(|| Box::new([[0; BUCKETS]; 2]));
        if let Some(b) = &mut buckets {
            metrics.http.latency().load_buckets(&mut b[0]);
        }
        Reader {
            last: metrics.http.outcomes(),
            metrics,
            codes,
            buckets,
        }
    }

    /// What happened since the previous call.
    pub fn delta(&mut self) -> Delta {
        let now = self.metrics.http.outcomes();
        let d = |now: u64, before: u64| now.saturating_sub(before);
        let resets = d(now.resets, self.last.resets);
        let grpc_errors: u64 = (0..now.grpc.len())
            .filter(|&c| self.codes.contains(c))
            .map(|c| d(now.grpc[c], self.last.grpc[c]))
            .sum();
        let requests = d(now.responses, self.last.responses) + resets;
        let errors = d(now.server_errors, self.last.server_errors) + grpc_errors + resets;
        self.last = now;
        let latency = match &mut self.buckets {
            None => Vec::new(),
            Some(b) => {
                let [before, now] = &mut **b;
                self.metrics.http.latency().load_buckets(now);
                let new: Vec<(u32, u64)> = (0..BUCKETS)
                    .filter(|&i| now[i] > before[i])
                    .map(|i| (i as u32, now[i] - before[i]))
                    .collect();
                std::mem::swap(before, now);
                new
            }
        };
        Delta {
            requests,
            errors,
            latency,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// An error rate over `codes`; none: every code but OK, as on the wire.
    fn error_rate(codes: &[u32]) -> GuardMetric {
        GuardMetric::ErrorRate {
            grpc_codes: match codes {
                [] => GrpcCodes::ALL_BUT_OK,
                some => GrpcCodes::from_codes(some).unwrap(),
            },
        }
    }

    #[test]
    fn errors_are_5xx_grpc_codes_in_the_set_and_resets() {
        let m = Arc::new(RouteMetrics::default());
        m.http.record_response(200, false, MS); // before the reader: not counted
        let mut r = Reader::starting_now(m.clone(), error_rate(&[14]));
        m.http.record_response(200, false, MS);
        m.http.record_response(503, true, MS);
        m.http.record_response(502, false, MS); // an upstream failure, answered 502
        m.http.record_upstream_error();
        m.http.record_response(200, false, MS); // a gRPC call ending UNAVAILABLE
        m.http.record_grpc(14, false);
        m.http.record_response(200, false, MS); // a gRPC call ending NOT_FOUND: not in the set
        m.http.record_grpc(5, false);
        m.http.record_reset(true); // an injected reset, no response
        let d = r.delta();
        assert_eq!((d.requests, d.errors), (6, 4));
        assert!(d.latency.is_empty(), "an error-rate guard reads no buckets");
        assert_eq!(r.delta(), Delta::default(), "nothing new");
    }

    #[test]
    fn an_empty_code_set_is_every_code_but_ok() {
        let m = Arc::new(RouteMetrics::default());
        let mut r = Reader::starting_now(m.clone(), error_rate(&[]));
        for code in [0, 5, 14] {
            m.http.record_response(200, false, MS);
            m.http.record_grpc(code, false);
        }
        let d = r.delta();
        assert_eq!((d.requests, d.errors), (3, 2));
    }

    #[test]
    fn latency_deltas_hold_only_new_values() {
        let m = Arc::new(RouteMetrics::default());
        m.http.record_response(200, false, 100 * MS);
        let mut r = Reader::starting_now(m.clone(), GuardMetric::LatencyQuantile(0.99));
        m.http.record_response(200, false, 3 * MS);
        m.http.record_response(200, false, 3 * MS);
        let d = r.delta();
        assert_eq!(d.requests, 2);
        assert_eq!(d.latency.len(), 1);
        assert_eq!(d.latency[0].1, 2);
        m.http.record_response(200, false, 100 * MS);
        let d = r.delta();
        assert_eq!(d.latency.iter().map(|&(_, n)| n).sum::<u64>(), 1);
    }
}
