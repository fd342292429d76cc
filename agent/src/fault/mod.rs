//! The fault model: what a fault is, independent of who asked for it or how it travels.
//!
//! A [`Fault`] is a validated domain value. The admin API (Toxiproxy-compatible JSON) and, later,
//! the controller's protobuf messages convert *into* it with `TryFrom`, once, at their boundary;
//! the data path only ever sees these types. Each kind lives in its own module with its
//! parameters and the small amount of logic that applies it.

pub mod bandwidth;
pub mod down;
pub mod http;
pub mod latency;
pub mod limit_data;
pub mod partition;
pub mod reset_peer;
pub mod slicer;
pub mod slow_close;
pub mod timeout;

use std::time::Duration;

use tokio::time::Instant;

pub use self::{
    bandwidth::Bandwidth, down::Down, latency::Latency, limit_data::LimitData,
    partition::Partition, reset_peer::ResetPeer, slicer::Slicer, slow_close::SlowClose,
    timeout::Timeout,
};

/// Which way through the proxy a fault acts on.
///
/// `Upstream` is client -> server (Toxiproxy's "upstream" stream), `Downstream` is
/// server -> client, `Both` is either.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    Upstream,
    Downstream,
    Both,
}

impl Direction {
    /// Whether a fault declared for `self` acts on data flowing in `flow`.
    pub fn covers(self, flow: Flow) -> bool {
        matches!(
            (self, flow),
            (Direction::Both, _)
                | (Direction::Upstream, Flow::Upstream)
                | (Direction::Downstream, Flow::Downstream)
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Upstream => "upstream",
            Direction::Downstream => "downstream",
            Direction::Both => "both",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "upstream" => Some(Direction::Upstream),
            "downstream" => Some(Direction::Downstream),
            "both" => Some(Direction::Both),
            _ => None,
        }
    }
}

/// One of the two concrete flows of a proxied connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Flow {
    /// client -> upstream
    Upstream,
    /// upstream -> client
    Downstream,
}

impl Flow {
    pub fn as_str(self) -> &'static str {
        match self {
            Flow::Upstream => "upstream",
            Flow::Downstream => "downstream",
        }
    }
}

/// Who issued a fault. Admin-API faults live until removed (or until their expiry);
/// controller-issued faults also end with the controller's lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    Admin,
    Controller { experiment: String },
}

/// What a fault does, with its validated parameters.
#[derive(Clone, Debug, PartialEq)]
pub enum FaultKind {
    Latency(Latency),
    Bandwidth(Bandwidth),
    Slicer(Slicer),
    SlowClose(SlowClose),
    Timeout(Timeout),
    ResetPeer(ResetPeer),
    LimitData(LimitData),
    Down(Down),
    Partition(Partition),
    HttpAbort(http::Abort),
    HttpDelay(http::Delay),
    HttpThrottle(http::Throttle),
    HttpReset(http::HttpReset),
    GrpcAbort(http::GrpcAbort),
    GrpcStream(http::GrpcStream),
}

/// The kinds, as a fieldless enum, for counters and names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KindTag {
    Latency = 0,
    Bandwidth,
    Slicer,
    SlowClose,
    Timeout,
    ResetPeer,
    LimitData,
    Down,
    Partition,
    HttpAbort,
    HttpDelay,
    HttpThrottle,
    HttpReset,
    GrpcAbort,
    GrpcStream,
}

impl KindTag {
    pub const ALL: [KindTag; 15] = [
        KindTag::Latency,
        KindTag::Bandwidth,
        KindTag::Slicer,
        KindTag::SlowClose,
        KindTag::Timeout,
        KindTag::ResetPeer,
        KindTag::LimitData,
        KindTag::Down,
        KindTag::Partition,
        KindTag::HttpAbort,
        KindTag::HttpDelay,
        KindTag::HttpThrottle,
        KindTag::HttpReset,
        KindTag::GrpcAbort,
        KindTag::GrpcStream,
    ];

    /// Faults that act on requests (HTTP and gRPC routes) rather than on bytes.
    pub fn is_request_level(self) -> bool {
        matches!(
            self,
            KindTag::HttpAbort
                | KindTag::HttpDelay
                | KindTag::HttpThrottle
                | KindTag::HttpReset
                | KindTag::GrpcAbort
                | KindTag::GrpcStream
        )
    }

    /// Faults that act on a whole connection at admission, whatever the route's protocol.
    pub fn is_connection_level(self) -> bool {
        matches!(
            self,
            KindTag::Down | KindTag::Partition | KindTag::ResetPeer
        )
    }

    /// The name used on every API (Toxiproxy's toxic type names, plus faultline's own).
    pub fn name(self) -> &'static str {
        match self {
            KindTag::Latency => "latency",
            KindTag::Bandwidth => "bandwidth",
            KindTag::Slicer => "slicer",
            KindTag::SlowClose => "slow_close",
            KindTag::Timeout => "timeout",
            KindTag::ResetPeer => "reset_peer",
            KindTag::LimitData => "limit_data",
            KindTag::Down => "down",
            KindTag::Partition => "partition",
            KindTag::HttpAbort => "http_abort",
            KindTag::HttpDelay => "http_delay",
            KindTag::HttpThrottle => "http_throttle",
            KindTag::HttpReset => "http_reset",
            KindTag::GrpcAbort => "grpc_abort",
            KindTag::GrpcStream => "grpc_stream",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == s)
    }
}

impl FaultKind {
    pub fn tag(&self) -> KindTag {
        match self {
            FaultKind::Latency(_) => KindTag::Latency,
            FaultKind::Bandwidth(_) => KindTag::Bandwidth,
            FaultKind::Slicer(_) => KindTag::Slicer,
            FaultKind::SlowClose(_) => KindTag::SlowClose,
            FaultKind::Timeout(_) => KindTag::Timeout,
            FaultKind::ResetPeer(_) => KindTag::ResetPeer,
            FaultKind::LimitData(_) => KindTag::LimitData,
            FaultKind::Down(_) => KindTag::Down,
            FaultKind::Partition(_) => KindTag::Partition,
            FaultKind::HttpAbort(_) => KindTag::HttpAbort,
            FaultKind::HttpDelay(_) => KindTag::HttpDelay,
            FaultKind::HttpThrottle(_) => KindTag::HttpThrottle,
            FaultKind::HttpReset(_) => KindTag::HttpReset,
            FaultKind::GrpcAbort(_) => KindTag::GrpcAbort,
            FaultKind::GrpcStream(_) => KindTag::GrpcStream,
        }
    }
}

/// A probability in `0.0..=1.0`, checked on construction.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Probability(f64);

impl Probability {
    pub const ALWAYS: Probability = Probability(1.0);

    pub fn new(p: f64) -> Option<Self> {
        (p.is_finite() && (0.0..=1.0).contains(&p)).then_some(Probability(p))
    }

    pub fn get(self) -> f64 {
        self.0
    }

    /// Decide from a uniformly distributed `u64` (a hash or a random draw).
    pub fn admits(self, draw: u64) -> bool {
        self.0 >= 1.0 || to_unit(draw) < self.0
    }
}

/// Maps a uniformly distributed `u64` onto `[0, 1)` with 53 bits of precision.
pub(crate) fn to_unit(draw: u64) -> f64 {
    (draw >> 11) as f64 / (1u64 << 53) as f64
}

/// A fault as configured: what, where, how often, for how long, from whom.
#[derive(Clone, Debug, PartialEq)]
pub struct Fault {
    /// Unique within its route.
    pub name: String,
    pub kind: FaultKind,
    pub direction: Direction,
    /// Chance that a given connection is affected (decided once per connection), or for
    /// request-level faults a given request (decided per request, or per cohort key).
    pub toxicity: Probability,
    /// Request-level faults: which requests are eligible (`None`: all).
    pub matcher: Option<std::sync::Arc<http::RequestMatch>>,
    /// Request-level faults: decide by a sticky key instead of per request.
    pub cohort: Option<http::Cohort>,
    /// After this instant the fault removes itself.
    pub expires_at: Option<Instant>,
    pub origin: Origin,
}

impl Fault {
    pub fn is_expired(&self, now: Instant) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }
}

/// Parses durations in the forms the APIs accept: `250ms`, `5s`, `1m30s`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim()).map_err(|e| format!("{s:?} is not a duration ({e})"))
}
