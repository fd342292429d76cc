//! Reconnect backoff: exponential with full jitter (each delay uniform in `0..=cap`, where
//! `cap` doubles from `base` up to `max`), so a thousand agents that lost their controller at
//! the same instant do not reconnect in lockstep when it comes back.

use std::time::Duration;

#[derive(Clone, Debug)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    attempt: u32,
    rng: fastrand::Rng,
}

impl Backoff {
    pub fn new(base: Duration, max: Duration, seed: u64) -> Self {
        Backoff {
            base,
            max: max.max(base),
            attempt: 0,
            rng: fastrand::Rng::with_seed(seed),
        }
    }

    /// The delay before the next attempt.
    pub fn next_delay(&mut self) -> Duration {
        let cap = self
            .base
            .saturating_mul(1u32.checked_shl(self.attempt.min(31)).unwrap_or(u32::MAX))
            .min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        let micros = cap.as_micros().min(u128::from(u64::MAX)) as u64;
        Duration::from_micros(self.rng.u64(0..=micros))
    }

    /// A connection succeeded: start again from `base`.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_stay_under_a_doubling_cap_and_spread_out() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(10), 1);
        for attempt in 0..12u32 {
            let cap = Duration::from_millis(100 * 2u64.pow(attempt)).min(Duration::from_secs(10));
            let d = b.next_delay();
            assert!(d <= cap, "attempt {attempt}: {d:?} > {cap:?}");
        }
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
    }

    #[test]
    fn a_thousand_agents_do_not_reconnect_in_lockstep() {
        // The first retry of 1000 agents with different seeds spreads over the window.
        let mut buckets = [0u32; 10];
        for seed in 0..1000 {
            let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(30), seed);
            let d = b.next_delay();
            buckets[(d.as_millis() as usize / 100).min(9)] += 1;
        }
        assert!(
            buckets.iter().all(|&n| (50..=150).contains(&n)),
            "{buckets:?}"
        );
    }
}
