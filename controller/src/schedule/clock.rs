//! The scheduler's clock: wall time, because a cron expression names wall-clock instants.
//!
//! [`SystemClock`] sleeps in steps of at most [`MAX_SLEEP`] and the scheduler reads the time
//! again after every wake-up, so a wall clock that jumps (NTP, a suspended VM) delays a fire
//! by one step at most. [`ManualClock`] is moved by hand, for tests.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;

/// The longest the system clock sleeps before the scheduler looks at the time again.
pub const MAX_SLEEP: Duration = Duration::from_secs(30);

/// A boxed, sendable future: what [`Clock::sleep_until`] returns.
pub type Sleep<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// Where the scheduler reads the time and waits for it.
pub trait Clock: fmt::Debug + Send + Sync + 'static {
    fn now(&self) -> SystemTime;

    /// Resolves at `at` or earlier (a spurious wake-up is allowed: callers read [`Clock::now`]
    /// again).
    fn sleep_until(&self, at: SystemTime) -> Sleep<'_>;
}

/// The operating system's wall clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }

    fn sleep_until(&self, at: SystemTime) -> Sleep<'_> {
        let wait = at
            .duration_since(SystemTime::now())
            .unwrap_or_default()
            .min(MAX_SLEEP);
        Box::pin(tokio::time::sleep(wait))
    }
}

/// A clock that only moves when told to ([`ManualClock::advance`], [`ManualClock::set`]);
/// sleepers wake as soon as it reaches their instant. For tests.
#[derive(Debug)]
pub struct ManualClock {
    // A watch channel: readers see the latest time without a lock held across an await, and
    // every sleeper is woken by each change.
    now: watch::Sender<SystemTime>,
}

impl ManualClock {
    pub fn new(start: SystemTime) -> Self {
        Self {
            now: watch::Sender::new(start),
        }
    }

    pub fn set(&self, to: SystemTime) {
        self.now.send_replace(to);
    }

    pub fn advance(&self, by: Duration) {
        self.now.send_modify(|t| *t += by);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        *self.now.borrow()
    }

    fn sleep_until(&self, at: SystemTime) -> Sleep<'_> {
        let mut rx = self.now.subscribe();
        Box::pin(async move {
            // The sender lives as long as `self`, which outlives this future.
            let _ = rx.wait_for(|now| *now >= at).await;
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_manual_sleeper_wakes_when_the_clock_reaches_its_instant() {
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let clock = ManualClock::new(start);
        let mut sleep = clock.sleep_until(start + Duration::from_secs(60));
        assert!(futures_poll(&mut sleep).is_pending());
        clock.advance(Duration::from_secs(59));
        assert!(futures_poll(&mut sleep).is_pending());
        clock.advance(Duration::from_secs(1));
        assert!(futures_poll(&mut sleep).is_ready());
        assert_eq!(clock.now(), start + Duration::from_secs(60));
    }

    fn futures_poll(f: &mut Sleep<'_>) -> std::task::Poll<()> {
        let waker = std::task::Waker::noop();
        f.as_mut().poll(&mut std::task::Context::from_waker(waker))
    }
}
