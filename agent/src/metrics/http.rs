//! Request-level counters of an `http` or `grpc` route, the service level indicators of a run:
//! responses by status class, gRPC calls by status code, upstream failures, resets (each split
//! into real and injected by a fault) and a latency histogram.
//!
//! [`HttpMetrics`] is what the data plane counts into; [`SliSnapshot`] is the plain, mergeable
//! copy the controller receives in heartbeats and sums over agents to get error rates and
//! latency quantiles.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::histogram::{HistogramSnapshot, LatencyHistogram};

/// Label values of the status classes, in the order of [`SliSnapshot::requests`].
pub const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// Number of gRPC status codes (0 = OK to 16 = UNAUTHENTICATED).
pub const GRPC_CODES: usize = 17;

/// gRPC `UNKNOWN`, where codes outside 0..=16 are counted.
const GRPC_UNKNOWN: usize = 2;

/// Request counters of one route. Every update is a relaxed atomic add: the counters are
/// independent and publish no other memory, so no ordering between them is needed; a snapshot
/// taken while requests complete may be a few requests apart between counters.
#[derive(Debug, Default)]
pub struct HttpMetrics {
    /// `[status class][injected as usize]`.
    requests: [[AtomicU64; 2]; 5],
    /// `[gRPC code][injected as usize]`.
    grpc: [[AtomicU64; 2]; GRPC_CODES],
    upstream_errors: AtomicU64,
    /// `[injected as usize]`.
    resets: [AtomicU64; 2],
    latency: LatencyHistogram,
}

impl HttpMetrics {
    /// Counts a response by status class (statuses outside 100..=599 count in the nearest
    /// class) and whether a fault produced it, and records its latency: request arrival to
    /// response head.
    pub fn record_response(&self, status: u16, injected: bool, latency: Duration) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.requests[class][usize::from(injected)].fetch_add(1, Relaxed);
        self.latency.record(latency);
    }

    /// Counts the gRPC status of a call (0..=16; any other code counts as 2, UNKNOWN). The
    /// HTTP status of the same response is counted by [`record_response`](Self::record_response).
    pub fn record_grpc(&self, code: u8, injected: bool) {
        let code = match usize::from(code) {
            c if c < GRPC_CODES => c,
            _ => GRPC_UNKNOWN,
        };
        self.grpc[code][usize::from(injected)].fetch_add(1, Relaxed);
    }

    /// Counts a request the upstream could not be reached for or failed (a real failure:
    /// injected ones are counted by the fault's own counters and by `record_response`).
    pub fn record_upstream_error(&self) {
        self.upstream_errors.fetch_add(1, Relaxed);
    }

    /// Counts a stream or connection reset, by a fault or for real.
    pub fn record_reset(&self, injected: bool) {
        self.resets[usize::from(injected)].fetch_add(1, Relaxed);
    }

    pub fn latency(&self) -> &LatencyHistogram {
        &self.latency
    }

    /// The totals a local guard reads every few milliseconds: 47 relaxed loads, no allocation
    /// (unlike [`snapshot`](Self::snapshot), which also walks the latency histogram).
    pub fn outcomes(&self) -> Outcomes {
        let both = |c: &[AtomicU64; 2]| c[0].load(Relaxed) + c[1].load(Relaxed);
        Outcomes {
            responses: self.requests.iter().map(both).sum(),
            server_errors: both(&self.requests[4]),
            grpc: std::array::from_fn(|i| both(&self.grpc[i])),
            resets: both(&self.resets),
        }
    }

    pub fn snapshot(&self) -> SliSnapshot {
        SliSnapshot {
            requests: load_split(&self.requests),
            grpc: load_split(&self.grpc),
            upstream_errors: self.upstream_errors.load(Relaxed),
            resets: ByOrigin {
                real: self.resets[0].load(Relaxed),
                injected: self.resets[1].load(Relaxed),
            },
            latency: self.latency.snapshot(),
        }
    }
}

/// Totals since the agent started, real and injected together: what a local guard judges.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Outcomes {
    /// Responses of every status class.
    pub responses: u64,
    /// Of those, 5xx.
    pub server_errors: u64,
    /// gRPC calls by status code.
    pub grpc: [u64; GRPC_CODES],
    /// Streams or connections reset.
    pub resets: u64,
}

/// Loads `[index][injected as usize]` counters into one array per origin.
fn load_split<const N: usize>(counters: &[[AtomicU64; 2]; N]) -> ByOrigin<[u64; N]> {
    ByOrigin {
        real: std::array::from_fn(|i| counters[i][0].load(Relaxed)),
        injected: std::array::from_fn(|i| counters[i][1].load(Relaxed)),
    }
}

/// A count split by where the outcome came from: the real service and network, or a fault.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ByOrigin<T> {
    pub real: T,
    pub injected: T,
}

/// The request-level indicators of one route (or, merged, of many routes or agents) since the
/// agent started. Counters only grow, so a rate is the difference of two snapshots.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SliSnapshot {
    /// Responses by status class: `[1xx, 2xx, 3xx, 4xx, 5xx]` ([`STATUS_CLASSES`]).
    pub requests: ByOrigin<[u64; 5]>,
    /// gRPC calls by status code, indexed by code (0 = OK, 14 = UNAVAILABLE, ...).
    pub grpc: ByOrigin<[u64; GRPC_CODES]>,
    /// Requests the upstream could not be reached for or failed (always real).
    pub upstream_errors: u64,
    /// Streams or connections reset.
    pub resets: ByOrigin<u64>,
    /// Request latency, arrival to response head, of every counted response.
    pub latency: HistogramSnapshot,
}

impl SliSnapshot {
    /// Adds `other` into `self`.
    pub fn merge(&mut self, other: &SliSnapshot) {
        add_all(&mut self.requests.real, &other.requests.real);
        add_all(&mut self.requests.injected, &other.requests.injected);
        add_all(&mut self.grpc.real, &other.grpc.real);
        add_all(&mut self.grpc.injected, &other.grpc.injected);
        self.upstream_errors = self.upstream_errors.saturating_add(other.upstream_errors);
        self.resets.real = self.resets.real.saturating_add(other.resets.real);
        self.resets.injected = self.resets.injected.saturating_add(other.resets.injected);
        self.latency.merge(&other.latency);
    }

    /// Responses counted, real and injected.
    pub fn responses(&self) -> u64 {
        self.requests
            .real
            .iter()
            .chain(&self.requests.injected)
            .sum()
    }

    /// gRPC calls counted, real and injected.
    pub fn grpc_calls(&self) -> u64 {
        self.grpc.real.iter().chain(&self.grpc.injected).sum()
    }

    /// True when nothing at all was counted: the route saw no HTTP or gRPC traffic.
    pub fn is_empty(&self) -> bool {
        self.responses() == 0
            && self.grpc_calls() == 0
            && self.upstream_errors == 0
            && self.resets.real == 0
            && self.resets.injected == 0
    }
}

fn add_all(into: &mut [u64], from: &[u64]) {
    for (a, b) in into.iter_mut().zip(from) {
        *a = a.saturating_add(*b);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn responses_count_by_class_and_origin() {
        let m = HttpMetrics::default();
        m.record_response(200, false, MS);
        m.record_response(204, false, MS);
        m.record_response(503, true, MS);
        m.record_response(404, false, MS);
        m.record_response(101, false, MS);
        m.record_response(999, false, MS); // out of range: nearest class
        let s = m.snapshot();
        assert_eq!(s.requests.real, [1, 2, 0, 1, 1]);
        assert_eq!(s.requests.injected, [0, 0, 0, 0, 1]);
        assert_eq!(s.latency.count, 6);
        assert_eq!(s.responses(), 6);
    }

    #[test]
    fn outcomes_add_both_origins() {
        let m = HttpMetrics::default();
        m.record_response(200, false, MS);
        m.record_response(503, true, MS);
        m.record_response(502, false, MS);
        m.record_grpc(14, true);
        m.record_grpc(14, false);
        m.record_reset(true);
        let o = m.outcomes();
        assert_eq!((o.responses, o.server_errors, o.resets), (3, 2, 1));
        assert_eq!(o.grpc[14], 2);
        assert_eq!(o.grpc.iter().sum::<u64>(), 2);
    }

    #[test]
    fn grpc_codes_out_of_range_count_as_unknown() {
        let m = HttpMetrics::default();
        m.record_grpc(0, false);
        m.record_grpc(14, true);
        m.record_grpc(16, false);
        m.record_grpc(17, false);
        m.record_grpc(255, true);
        let s = m.snapshot();
        assert_eq!((s.grpc.real[0], s.grpc.real[16], s.grpc.real[2]), (1, 1, 1));
        assert_eq!((s.grpc.injected[14], s.grpc.injected[2]), (1, 1));
        assert_eq!(s.grpc_calls(), 5);
        assert_eq!(s.responses(), 0, "gRPC codes are not HTTP responses");
    }

    #[test]
    fn merged_snapshots_add_every_counter() {
        let (a, b) = (HttpMetrics::default(), HttpMetrics::default());
        a.record_response(500, false, 2 * MS);
        a.record_upstream_error();
        a.record_reset(true);
        b.record_response(500, false, 3 * MS);
        b.record_grpc(14, true);
        b.record_reset(false);
        b.record_reset(true);
        let mut s = a.snapshot();
        s.merge(&b.snapshot());
        assert_eq!(s.requests.real, [0, 0, 0, 0, 2]);
        assert_eq!(s.grpc.injected[14], 1);
        assert_eq!(s.upstream_errors, 1);
        assert_eq!(
            s.resets,
            ByOrigin {
                real: 1,
                injected: 2
            }
        );
        assert_eq!((s.latency.count, s.latency.sum_micros), (2, 5000));
        assert!(!s.is_empty());
        assert!(SliSnapshot::default().is_empty());
    }

    #[test]
    fn snapshot_round_trips_through_json_and_tolerates_missing_fields() {
        let m = HttpMetrics::default();
        m.record_response(200, false, MS);
        m.record_grpc(4, true);
        let s = m.snapshot();
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<SliSnapshot>(&json).unwrap(), s);
        let old: SliSnapshot = serde_json::from_str(r#"{"upstream_errors":3}"#).unwrap();
        assert_eq!(old.upstream_errors, 3);
        assert!(old.latency.buckets.is_empty());
    }
}
