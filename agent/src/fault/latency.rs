//! latency: every chunk is delivered `latency ± jitter` after it arrived.
//!
//! The delay is relative to each chunk's arrival, not added between chunks, so a 100 ms latency
//! makes a bulk stream 100 ms late without dividing its throughput: chunks queue while earlier
//! ones wait (see `tcp::pump`). Jitter never reorders bytes: a chunk is never released before the
//! one ahead of it.

use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Latency {
    pub latency: Duration,
    /// Uniform jitter: the delay is drawn from `latency - jitter ..= latency + jitter`, floored at 0.
    pub jitter: Duration,
}

impl Latency {
    /// The delay for one chunk, given a uniform random `draw`.
    pub fn sample(&self, draw: u64) -> Duration {
        if self.jitter.is_zero() {
            return self.latency;
        }
        let span = self.jitter.as_micros() as u64 * 2 + 1;
        let offset = Duration::from_micros(draw % span);
        (self.latency + offset).saturating_sub(self.jitter)
    }

    /// Combine two latency faults on the same flow: delays add up.
    pub fn plus(self, other: Latency) -> Latency {
        Latency {
            latency: self.latency + other.latency,
            jitter: self.jitter + other.jitter,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_bounds_and_covers_both_sides() {
        let l = Latency {
            latency: Duration::from_millis(100),
            jitter: Duration::from_millis(20),
        };
        let (mut lo, mut hi) = (Duration::MAX, Duration::ZERO);
        for i in 0..10_000u64 {
            let d = l.sample(i.wrapping_mul(0x9E37_79B9_7F4A_7C15));
            lo = lo.min(d);
            hi = hi.max(d);
        }
        assert!(
            lo >= Duration::from_millis(80) && lo < Duration::from_millis(85),
            "{lo:?}"
        );
        assert!(
            hi <= Duration::from_millis(120) && hi > Duration::from_millis(115),
            "{hi:?}"
        );
    }

    #[test]
    fn jitter_larger_than_latency_floors_at_zero() {
        let l = Latency {
            latency: Duration::from_millis(1),
            jitter: Duration::from_millis(10),
        };
        assert_eq!(l.sample(0), Duration::ZERO);
    }
}
