//! Local guards: SLO guards the agent evaluates on its own traffic, so that it stops hurting
//! its service even when the controller cannot be heard ("the tool must never become the
//! outage").
//!
//! The controller sends each guard inside the desired state (`DesiredState.local_guards`). The
//! agent judges it on one route's request counters and, when the condition has held for the
//! guard's `hold`, removes the faults the guard names from the route table at once, then tells
//! the controller with a `LocalGuardTrip`.
//!
//! - [`spec`]: the domain guard ([`LocalGuard`]) and trip ([`Trip`]); the wire conversions are
//!   in `control::convert::guards`.
//! - [`reader`]: the route's counters each tick, as requests, errors and latency buckets.
//! - [`window`]: the sliding window of per-tick deltas, with running totals.
//! - [`eval`]: one guard: value, no-data policy, hold.
//! - [`runner`]: the task that ticks every guard of a session and trips them ([`Guards`]).
//!
//! The route table remembers which guards tripped and keeps their faults out of later desired
//! states that still name the guard (`route::trips`); the lease bounds it all as it bounds
//! every controller-issued fault.

pub mod eval;
pub mod reader;
pub mod runner;
pub mod spec;
pub mod window;

use std::time::Duration;

pub use self::runner::Guards;
pub use self::spec::{Comparison, FaultRef, GrpcCodes, GuardKey, GuardMetric, LocalGuard, Trip};

/// How often guards are evaluated. The goal is a breach's faults off within 10 ms: a breach is
/// seen at most one tick after the response that caused it is counted, and clearing takes
/// microseconds, so 5 ms leaves half the budget spare. A tick costs each guard about 50 relaxed
/// atomic loads (an error or request rate), plus 448 for a latency guard's histogram, a few
/// microseconds at most on the control runtime, never on the data-plane workers; and the task
/// sleeps while no guard runs. Finer ticks would buy little: Tokio's timer has 1 ms resolution.
pub const TICK: Duration = Duration::from_millis(5);
