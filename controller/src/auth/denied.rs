//! How many denied calls reach the audit log: a token bucket, so a flood of unauthenticated
//! calls (a scanner, a misconfigured job retrying in a loop) cannot fill the store's disk or
//! the log. Within the budget each denied call gets its row, as before; beyond it the calls
//! are only counted, and the next row written after the flood first records how many were
//! left out and since when.

use std::time::{Instant, SystemTime};

/// Rows a burst of denied calls may write at once.
pub const BURST: u32 = 20;
/// Rows per second once the burst is spent.
pub const PER_SECOND: u32 = 5;

/// The budget's state; the gate holds it behind a mutex (a control-plane path).
#[derive(Debug)]
pub struct DeniedBudget {
    tokens: f64,
    refilled: Instant,
    /// Denied calls not written since the last row, and when the first of them came.
    suppressed: u64,
    since: Option<SystemTime>,
}

/// What to do with one denied call.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Write its row; before it, when `Some`, a row saying that many calls since that time
    /// were left out.
    Record(Option<(u64, SystemTime)>),
    /// Count it only.
    Suppress,
}

impl DeniedBudget {
    pub fn new(now: Instant) -> DeniedBudget {
        DeniedBudget {
            tokens: f64::from(BURST),
            refilled: now,
            suppressed: 0,
            since: None,
        }
    }

    /// The verdict for a denied call at `now` (`wall` is its wall-clock time).
    pub fn take(&mut self, now: Instant, wall: SystemTime) -> Verdict {
        let elapsed = now.saturating_duration_since(self.refilled);
        self.refilled = now;
        self.tokens =
            (self.tokens + elapsed.as_secs_f64() * f64::from(PER_SECOND)).min(f64::from(BURST));
        if self.tokens < 1.0 {
            self.suppressed += 1;
            self.since.get_or_insert(wall);
            return Verdict::Suppress;
        }
        self.tokens -= 1.0;
        let left_out = self.since.take().map(|since| (self.suppressed, since));
        self.suppressed = 0;
        Verdict::Record(left_out)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// How long until a spent budget allows another row.
    const REFILL: Duration = Duration::from_millis(1000 / PER_SECOND as u64);

    #[test]
    fn a_flood_writes_the_burst_then_a_summary_with_the_next_row() {
        let t0 = Instant::now();
        let wall = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let mut b = DeniedBudget::new(t0);
        for _ in 0..BURST {
            assert_eq!(b.take(t0, wall), Verdict::Record(None));
        }
        for i in 0..100u64 {
            assert_eq!(
                b.take(t0, wall + Duration::from_millis(i)),
                Verdict::Suppress
            );
        }
        // One refill later: a row again, preceded by the count of what was left out.
        assert_eq!(
            b.take(t0 + REFILL, wall + Duration::from_secs(1)),
            Verdict::Record(Some((100, wall)))
        );
        assert_eq!(b.take(t0 + REFILL, wall), Verdict::Suppress);
        // Quiet for a while: the whole burst is back, and no summary is owed but the one call.
        let later = t0 + Duration::from_secs(60);
        assert_eq!(b.take(later, wall), Verdict::Record(Some((1, wall))));
        for _ in 1..BURST {
            assert_eq!(b.take(later, wall), Verdict::Record(None));
        }
        assert_eq!(b.take(later, wall), Verdict::Suppress);
    }
}
