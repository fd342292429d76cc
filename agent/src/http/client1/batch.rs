//! Batching of upstream writes on a busy worker.
//!
//! A worker's tick runs every task its last poll of the sockets woke. If each task wrote its
//! request upstream as soon as it had read it, the upstream would be woken by the first write
//! and would then take the rest one or two at a time, paying a wake-up and an `epoll_wait` for
//! each small batch. When other exchanges are in flight on the worker, a task first yields
//! (`yield_now` runs it again after the worker's next poll of its sockets), so the requests read
//! in one tick go out together at its end and the upstream takes them in one batch. Measured
//! (BENCHMARKS.md): about 3 % more keep-alive requests per second, with the agent's own CPU per
//! request 2 % lower. A lone exchange, as in serial traffic, never waits: there is nothing to
//! batch it with, and the yield would add a poll of the sockets to its latency.

use std::cell::Cell;

thread_local! {
    /// Exchanges in flight on this worker thread: from the request about to be written to the
    /// answer's head read (or the exchange given up).
    static IN_FLIGHT: Cell<usize> = const { Cell::new(0) };
}

/// One exchange counted in flight on this thread until dropped.
pub(super) struct InFlight(());

impl InFlight {
    /// Counts one more exchange in flight; also says how many others were in flight.
    pub(super) fn enter() -> (InFlight, usize) {
        let others = IN_FLIGHT.with(|n| {
            let others = n.get();
            n.set(others + 1);
            others
        });
        (InFlight(()), others)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        // Saturating: a future moved to another thread between enter and drop must not wrap
        // that thread's count (the workers' runtimes never move one; other callers might).
        IN_FLIGHT.with(|n| n.set(n.get().saturating_sub(1)));
    }
}

/// Waits for the end of the worker's tick when other exchanges are in flight on it, so that
/// this request's write joins theirs.
pub(super) async fn join_the_batch(others_in_flight: usize) {
    if others_in_flight > 0 {
        tokio::task::yield_now().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_the_others_in_flight_on_this_thread() {
        let (a, others) = InFlight::enter();
        assert_eq!(others, 0);
        let (b, others) = InFlight::enter();
        assert_eq!(others, 1);
        drop(a);
        let (_c, others) = InFlight::enter();
        assert_eq!(others, 1);
        drop(b);
        std::thread::spawn(|| assert_eq!(InFlight::enter().1, 0))
            .join()
            .unwrap();
    }
}
