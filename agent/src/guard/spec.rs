//! A local guard as the agent holds it: converted and validated once at the boundary
//! (`control::convert::guards`), so evaluation never checks a wire field.

use std::time::{Duration, SystemTime};

use crate::metrics::http::GRPC_CODES;

/// A guard's identity: its experiment and its name, unique within the experiment. A later
/// desired state names "the same guard" when it carries this key.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GuardKey {
    pub experiment: String,
    pub name: String,
}

/// A controller-issued fault, by route and name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FaultRef {
    pub route: String,
    pub name: String,
}

/// What a guard computes over its window.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum GuardMetric {
    /// Errors / requests (see [`super::reader`] for what counts as either).
    ErrorRate { grpc_codes: GrpcCodes },
    /// A latency quantile `q` (0 < q < 1), in seconds.
    LatencyQuantile(f64),
    /// Requests per second over the window.
    RequestRate,
}

/// A set of gRPC status codes (0..=16), as bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GrpcCodes(u32);

impl GrpcCodes {
    /// Every code but OK: what an empty `grpc_codes` means.
    pub const ALL_BUT_OK: GrpcCodes = GrpcCodes(((1 << GRPC_CODES) - 1) & !1);

    /// The set of `codes`; `None` if one is not a gRPC status code (its position is returned
    /// by [`GrpcCodes::first_invalid`]).
    pub fn from_codes(codes: &[u32]) -> Option<GrpcCodes> {
        codes.iter().try_fold(GrpcCodes(0), |set, &c| {
            (c < GRPC_CODES as u32).then_some(GrpcCodes(set.0 | 1 << c))
        })
    }

    pub fn contains(self, code: usize) -> bool {
        code < GRPC_CODES && self.0 & (1 << code) != 0
    }

    /// The codes in the set, ascending.
    pub fn codes(self) -> impl Iterator<Item = u32> {
        (0..GRPC_CODES as u32).filter(move |&c| self.0 & (1 << c) != 0)
    }
}

/// Which side of the threshold breaks the objective.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Comparison {
    Above,
    Below,
}

impl Comparison {
    /// Whether `value` breaks the objective (strictly past the threshold).
    pub fn breached(self, value: f64, threshold: f64) -> bool {
        match self {
            Comparison::Above => value > threshold,
            Comparison::Below => value < threshold,
        }
    }
}

/// A guard the agent evaluates on its own traffic of one route.
#[derive(Clone, Debug, PartialEq)]
pub struct LocalGuard {
    pub name: String,
    pub experiment: String,
    /// The route whose traffic is judged: an `http` or `grpc` route of this agent.
    pub route: String,
    pub metric: GuardMetric,
    pub comparison: Comparison,
    /// Finite: a ratio (error rate), seconds (latency) or requests per second.
    pub threshold: f64,
    /// Longer than zero.
    pub window: Duration,
    /// How long the condition must hold before the guard trips; zero: at the first tick.
    pub hold: Duration,
    /// Fewer requests than this in the window is "no data".
    pub min_requests: u64,
    pub trip_on_no_data: bool,
    /// The controller-issued faults cleared on a trip; each in the same desired state.
    pub faults: Vec<FaultRef>,
}

impl LocalGuard {
    pub fn key(&self) -> GuardKey {
        GuardKey {
            experiment: self.experiment.clone(),
            name: self.name.clone(),
        }
    }
}

/// A guard tripped and the agent cleared its faults: what the controller is told.
#[derive(Clone, Debug, PartialEq)]
pub struct Trip {
    pub guard: GuardKey,
    /// The value that broke the objective; NaN when the guard tripped on no data.
    pub value: f64,
    pub threshold: f64,
    /// When the condition first held.
    pub breached_at: SystemTime,
    /// When it had held for `hold`.
    pub tripped_at: SystemTime,
    /// When the faults were off in the route table.
    pub cleared_at: SystemTime,
    pub cleared_faults: usize,
    /// The generation the agent runs (unchanged by the trip).
    pub generation: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_code_sets() {
        let all = GrpcCodes::ALL_BUT_OK;
        assert!(!all.contains(0));
        assert!(all.contains(1) && all.contains(16));
        assert!(!all.contains(17));
        assert_eq!(all.codes().count(), 16);
        let some = GrpcCodes::from_codes(&[14, 4, 14]).unwrap();
        assert_eq!(some.codes().collect::<Vec<_>>(), [4, 14]);
        assert_eq!(GrpcCodes::from_codes(&[3, 17]), None);
    }

    #[test]
    fn comparisons_are_strict() {
        assert!(Comparison::Above.breached(0.06, 0.05));
        assert!(!Comparison::Above.breached(0.05, 0.05));
        assert!(Comparison::Below.breached(9.0, 10.0));
        assert!(!Comparison::Below.breached(10.0, 10.0));
    }
}
