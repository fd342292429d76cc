//! bandwidth: cap a flow at a number of bytes per second with a token bucket.
//!
//! The bucket holds at most a tenth of a second of tokens (and at least one small write), so a
//! limited flow is smooth rather than bursty, and an idle flow cannot save up a large burst.

use std::time::Duration;

use tokio::time::Instant;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bandwidth {
    /// Bytes per second; never zero (validated at the boundary).
    pub bytes_per_sec: u64,
}

/// Token bucket state for one flow of one connection.
#[derive(Debug)]
pub struct TokenBucket {
    rate: u64,
    capacity: u64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    pub fn new(rate: u64, now: Instant) -> Self {
        let capacity = (rate / 10).max(1024);
        TokenBucket {
            rate,
            capacity,
            tokens: capacity as f64,
            last: now,
        }
    }

    pub fn rate(&self) -> u64 {
        self.rate
    }

    /// Largest write the bucket allows at once (callers split bigger chunks).
    pub fn max_write(&self) -> usize {
        self.capacity as usize
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate as f64).min(self.capacity as f64);
        self.last = now;
    }

    /// Take `n` bytes' worth of tokens (`n <= max_write()`); returns how long to wait first.
    pub fn take(&mut self, n: usize, now: Instant) -> Duration {
        self.refill(now);
        self.tokens -= n as f64;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.rate as f64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn bucket_holds_the_rate_over_time() {
        let start = Instant::now();
        let mut b = TokenBucket::new(100_000, start);
        let mut now = start;
        let mut sent = 0usize;
        // Send 500 kB in 1 kB writes, advancing the clock as the bucket asks.
        while sent < 500_000 {
            now += b.take(1000, now);
            sent += 1000;
        }
        let took = now - start;
        // The initial bucket (10 kB) is free; the rest takes 4.9 s at 100 kB/s.
        assert!(
            took >= Duration::from_millis(4850) && took <= Duration::from_millis(4950),
            "{took:?}"
        );
    }
}
