//! One guard's evaluation, tick by tick: read the route's counters, slide the window, compute
//! the value, apply the no-data policy, and trip once the condition has held for `hold`.
//!
//! - The value: error rate = errors / requests (capped at 1; see [`super::reader`]); latency =
//!   the quantile of the window's merged histogram, in seconds; request rate = requests in the
//!   window / the window's length in seconds.
//! - No data: fewer than `min_requests` requests in the window, or none at all for an error
//!   rate or a latency (they have no value then). It is judged only once the guard has watched
//!   a whole window: a guard that just started has seen nothing yet, which is not an outage.
//!   Likewise a request rate is judged on a whole window, except that one already above an
//!   `Above` threshold is a breach at once (the window can only hold more requests).
//! - The condition (a breach, or no data when `trip_on_no_data`) must hold at every tick from
//!   the first one it held at (`breached_at`) until `hold` has passed; one tick without it
//!   starts over.

use std::sync::Arc;

use tokio::time::Instant;

use super::reader::Reader;
use super::spec::{GuardMetric, LocalGuard};
use super::window::Window;
use crate::metrics::RouteMetrics;

/// What the window says at one tick.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Verdict {
    /// Not judged yet (the window is not yet full).
    Pending,
    Healthy(f64),
    Breached(f64),
    NoData,
}

/// The guard should trip now.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Breach {
    /// The value that broke the objective; NaN for no data.
    pub value: f64,
    pub breached_at: Instant,
    pub tripped_at: Instant,
}

pub struct Evaluator {
    guard: LocalGuard,
    reader: Reader,
    window: Window,
    /// When the condition started to hold, while it holds.
    since: Option<Instant>,
}

impl Evaluator {
    /// Starts judging `guard` on the route counted by `metrics`, from `now` on.
    pub fn new(guard: LocalGuard, metrics: Arc<RouteMetrics>, now: Instant) -> Self {
        let latency = matches!(guard.metric, GuardMetric::LatencyQuantile(_));
        Evaluator {
            reader: Reader::starting_now(metrics, guard.metric),
            window: Window::new(guard.window, now, latency),
            guard,
            since: None,
        }
    }

    pub fn guard(&self) -> &LocalGuard {
        &self.guard
    }

    /// Takes the tick ending at `now`; returns the breach when the guard must trip.
    pub fn tick(&mut self, now: Instant) -> Option<Breach> {
        self.window.push(now, self.reader.delta());
        let value = match self.verdict(now) {
            Verdict::Breached(v) => v,
            Verdict::NoData if self.guard.trip_on_no_data => f64::NAN,
            _ => {
                self.since = None;
                return None;
            }
        };
        let since = *self.since.get_or_insert(now);
        (now.duration_since(since) >= self.guard.hold).then_some(Breach {
            value,
            breached_at: since,
            tripped_at: now,
        })
    }

    /// The window's verdict at `now`.
    pub fn verdict(&self, now: Instant) -> Verdict {
        let g = &self.guard;
        let w = &self.window;
        let full = w.is_full(now);
        let judge = |v: f64| {
            if g.comparison.breached(v, g.threshold) {
                Verdict::Breached(v)
            } else {
                Verdict::Healthy(v)
            }
        };
        let no_data = || {
            if full {
                Verdict::NoData
            } else {
                Verdict::Pending
            }
        };
        if w.requests() < g.min_requests {
            return no_data();
        }
        match g.metric {
            GuardMetric::RequestRate => match judge(w.requests() as f64 / w.span().as_secs_f64()) {
                v @ Verdict::Breached(_) if full || g.comparison == super::Comparison::Above => v,
                _ if !full => Verdict::Pending,
                v => v,
            },
            _ if w.requests() == 0 => no_data(),
            GuardMetric::ErrorRate { .. } => {
                judge((w.errors() as f64 / w.requests() as f64).min(1.0))
            }
            GuardMetric::LatencyQuantile(q) => match w.latency_quantile(q) {
                Some(d) => judge(d.as_secs_f64()),
                None => no_data(),
            },
        }
    }
}

#[cfg(test)]
mod tests;
