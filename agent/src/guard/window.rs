//! A sliding window over a guard's per-tick deltas: a ring of ticks and running totals, so a
//! tick costs one push, a few pops and no re-summing.
//!
//! A tick stamped `at` holds what happened in the tick before `at`; the window at `now` holds
//! the ticks stamped after `now - span`. Latency buckets are kept only for latency guards.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

use crate::metrics::histogram::{BUCKETS, HistogramSnapshot};

/// What one tick saw on the route.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Delta {
    pub requests: u64,
    pub errors: u64,
    /// New latencies, as `(bucket, count)` of the log-linear histogram; empty unless asked for.
    pub latency: Vec<(u32, u64)>,
}

struct Tick {
    at: Instant,
    delta: Delta,
}

pub struct Window {
    span: Duration,
    started: Instant,
    ticks: VecDeque<Tick>,
    requests: u64,
    errors: u64,
    /// Summed latency buckets of the ticks in the window (latency guards only).
    latency: Option<Box<[u64; BUCKETS]>>,
}

impl Window {
    /// An empty window of `span`, observing from `started`.
    pub fn new(span: Duration, started: Instant, with_latency: bool) -> Self {
        Window {
            span,
            started,
            ticks: VecDeque::new(),
            requests: 0,
            errors: 0,
            latency: with_latency.then(|| Box::new([0; BUCKETS])),
        }
    }

    /// Adds the tick that ended at `at` and drops the ticks that fell out of the window.
    pub fn push(&mut self, at: Instant, delta: Delta) {
        self.requests += delta.requests;
        self.errors += delta.errors;
        if let Some(sum) = &mut self.latency {
            for &(i, n) in &delta.latency {
                sum[i as usize] += n;
            }
        }
        self.ticks.push_back(Tick { at, delta });
        while let Some(first) = self.ticks.front()
            && first.at + self.span <= at
        {
            let old = self.ticks.pop_front().expect("a front tick").delta;
            self.requests -= old.requests;
            self.errors -= old.errors;
            if let Some(sum) = &mut self.latency {
                for (i, n) in old.latency {
                    sum[i as usize] -= n;
                }
            }
        }
    }

    /// Whether the window has been observed for a whole span (before that, "too few requests"
    /// may just mean "not watched long enough yet").
    pub fn is_full(&self, now: Instant) -> bool {
        now.duration_since(self.started) >= self.span
    }

    pub fn span(&self) -> Duration {
        self.span
    }

    pub fn requests(&self) -> u64 {
        self.requests
    }

    pub fn errors(&self) -> u64 {
        self.errors
    }

    /// The `q` quantile of the latencies in the window (the upper bound of its bucket, as
    /// [`HistogramSnapshot::quantile`] reports it), or `None` when there are none.
    pub fn latency_quantile(&self, q: f64) -> Option<Duration> {
        let sum = self.latency.as_ref()?;
        let buckets: Vec<(u32, u64)> = (0..BUCKETS as u32)
            .filter_map(|i| {
                let n = sum[i as usize];
                (n > 0).then_some((i, n))
            })
            .collect();
        HistogramSnapshot {
            count: buckets.iter().map(|&(_, n)| n).sum(),
            buckets,
            sum_micros: 0,
        }
        .quantile(q)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::histogram::bucket_index;

    const TICK: Duration = Duration::from_millis(5);

    fn delta(requests: u64, errors: u64) -> Delta {
        Delta {
            requests,
            errors,
            latency: Vec::new(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn ticks_leave_the_window_after_its_span() {
        let t0 = Instant::now();
        let mut w = Window::new(Duration::from_millis(20), t0, false);
        assert!(!w.is_full(t0));
        w.push(t0 + TICK, delta(10, 1));
        w.push(t0 + 2 * TICK, delta(5, 5));
        assert_eq!((w.requests(), w.errors()), (15, 6));
        w.push(t0 + 4 * TICK, delta(0, 0));
        assert_eq!(w.requests(), 15, "the first tick is 15 ms old: still in");
        w.push(t0 + 5 * TICK, delta(1, 0));
        assert_eq!(
            (w.requests(), w.errors()),
            (6, 5),
            "a whole span old: the first tick left"
        );
        assert!(w.is_full(t0 + 4 * TICK));
        w.push(t0 + 20 * TICK, delta(0, 0));
        assert_eq!((w.requests(), w.errors()), (0, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn latency_quantiles_cover_only_the_window() {
        let t0 = Instant::now();
        let ms = |n: u64| bucket_index(n * 1000);
        let mut w = Window::new(Duration::from_millis(10), t0, true);
        w.push(
            t0 + TICK,
            Delta {
                requests: 10,
                errors: 0,
                latency: vec![(ms(500), 10)],
            },
        );
        w.push(
            t0 + 2 * TICK,
            Delta {
                requests: 10,
                errors: 0,
                latency: vec![(ms(1), 10)],
            },
        );
        let p90 = w.latency_quantile(0.9).unwrap();
        assert!(p90 >= Duration::from_millis(500), "{p90:?}");
        let p10 = w.latency_quantile(0.1).unwrap();
        assert!(p10 <= Duration::from_micros(1100), "{p10:?}");
        // The slow tick leaves: only the 1 ms latencies are left.
        w.push(t0 + 3 * TICK, delta(0, 0));
        let p90 = w.latency_quantile(0.9).unwrap();
        assert!(p90 <= Duration::from_micros(1100), "{p90:?}");
        w.push(t0 + 10 * TICK, delta(0, 0));
        assert_eq!(w.latency_quantile(0.9), None);
        assert_eq!(
            Window::new(TICK, t0, false).latency_quantile(0.5),
            None,
            "no buckets kept"
        );
    }
}
