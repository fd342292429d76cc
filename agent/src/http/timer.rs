//! The timer hyper's HTTP/1 server uses for its header-read timeout: one Tokio sleep per client
//! connection, shared by every request on it.
//!
//! hyper arms a fresh sleep each time it starts reading a request head and drops it once the
//! head is read. With hyper-util's `TokioTimer` each of those sleeps is a new entry in Tokio's
//! timer wheel: registered (a lock, and often a wake-up of the runtime's event loop through its
//! eventfd, because the new entry may be due before the loop's next planned wake) and removed
//! again (another lock), for every request on a keep-alive connection. [`ConnTimer`] hands hyper
//! sleeps that all drive the connection's one Tokio sleep: moving that sleep's deadline later,
//! which is what every new request head does, is a single atomic update in Tokio, so a request
//! costs no timer-wheel work. The wheel sees the connection again only when the shared sleep
//! comes due, at most once per timeout.
//!
//! hyper polls at most one header-read sleep of a connection at a time (HTTP/1 reads one head
//! after another), so the sleeps never fight over the shared deadline.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Instant;

use hyper::rt::{Sleep, Timer};

type Shared = Arc<Mutex<Pin<Box<tokio::time::Sleep>>>>;

/// A per-connection [`hyper::rt::Timer`] whose sleeps share one Tokio sleep.
#[derive(Clone)]
pub struct ConnTimer {
    shared: Shared,
}

impl Default for ConnTimer {
    /// Must be called inside a Tokio runtime with time enabled (as every agent worker is).
    fn default() -> Self {
        // Unpolled, a Tokio sleep is not in the wheel yet: the first request registers it.
        let idle = tokio::time::sleep(std::time::Duration::from_secs(365 * 24 * 3600));
        ConnTimer {
            shared: Arc::new(Mutex::new(Box::pin(idle))),
        }
    }
}

impl Timer for ConnTimer {
    fn sleep(&self, duration: std::time::Duration) -> Pin<Box<dyn Sleep>> {
        self.sleep_until(self.now() + duration)
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn Sleep>> {
        Box::pin(SharedSleep {
            deadline: tokio::time::Instant::from_std(deadline),
            shared: self.shared.clone(),
        })
    }

    fn now(&self) -> Instant {
        // Tokio's clock, so paused time in tests drives the timeout too.
        tokio::time::Instant::now().into_std()
    }
}

/// One of hyper's sleeps: due at `deadline`, waiting on the connection's shared Tokio sleep.
struct SharedSleep {
    deadline: tokio::time::Instant,
    shared: Shared,
}

impl Future for SharedSleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut sleep = self.shared.lock().unwrap_or_else(PoisonError::into_inner);
        if sleep.deadline() != self.deadline {
            sleep.as_mut().reset(self.deadline);
        }
        sleep.as_mut().poll(cx)
    }
}

impl Sleep for SharedSleep {}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_sleep_comes_due_at_its_deadline_even_after_the_shared_one_moved() {
        let timer = ConnTimer::default();
        let first = timer.sleep(Duration::from_secs(30));
        drop(first);
        tokio::time::advance(Duration::from_secs(10)).await;
        let start = tokio::time::Instant::now();
        timer.sleep(Duration::from_secs(30)).await;
        assert_eq!(start.elapsed(), Duration::from_secs(30));
        // The shared sleep has fired; the next one re-arms it.
        let start = tokio::time::Instant::now();
        timer.sleep(Duration::from_secs(5)).await;
        assert_eq!(start.elapsed(), Duration::from_secs(5));
    }
}
