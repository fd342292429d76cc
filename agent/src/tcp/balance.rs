//! Connection balance across the worker threads.
//!
//! Each worker accepts on its own `SO_REUSEPORT` socket, and the kernel picks the socket by a
//! hash of the client's address and port: 64 long-lived connections typically land 36 / 28,
//! and the busier worker's clients then wait longer and get fewer requests through (measured:
//! per-connection req/s from 987 to 1,460 in one run, keep-alive p99 twice haproxy's, whose
//! threads share one accept queue). So every listener group keeps a count of open
//! connections per worker, and a worker that accepts a connection while it holds more than
//! the least loaded one (plus a little slack) hands the socket over to that one, the way
//! Envoy's `exact_balance` and haproxy's per-thread accept queues do.
//!
//! Only long-lived connections are balanced. Short ones (connection-per-request traffic) even
//! out by themselves over time, and their counts flicker by as much as a real imbalance, so
//! handing them over would cost a deregistration, a channel send and a wake of the other worker
//! on a good share of them for nothing (measured: -2.4 % connection-per-request rate). A group
//! where some worker saw [`SHORT_BURST`] connections close within [`SHORT`] of their accept, in
//! one [`WINDOW`], keeps every connection where the kernel put it for the next [`SHORT`]. One
//! short connection alone (a health check, a probe) does not: the 64 long-lived connections a
//! client opens right after its health check are balanced.
//!
//! The usual case costs a clock read and an increment of the worker's own count per
//! connection, plus a read of the other workers' counts while no burst of short-lived
//! connections closed lately.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

/// One listener group's open connections per worker, and the way to hand one over.
#[derive(Debug)]
pub struct Balance {
    load: Box<[Slot]>,
    inboxes: Box<[mpsc::UnboundedSender<Handoff>]>,
    moved: AtomicU64,
    epoch: Instant,
    /// When (ms after `epoch`, plus one; 0 = never) a worker last counted a burst of
    /// short-lived closes ([`SHORT_BURST`] in one [`WINDOW`]).
    last_short: AtomicU64,
}

/// A connection that closes sooner than this after its accept is short-lived, and a group that
/// saw a burst of them this recently is left to the kernel's spreading.
pub const SHORT: Duration = Duration::from_secs(1);

/// The window in which a worker counts its short-lived closes.
pub const WINDOW: Duration = Duration::from_millis(100);

/// Short-lived closes on one worker within one [`WINDOW`] that make connection-per-request
/// traffic (at least 40 connections a second on that worker).
pub const SHORT_BURST: u32 = 4;

/// A worker's count of open connections, and its own tally of short-lived closes, on a cache
/// line of their own: each worker writes only its own slot.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Slot {
    open: AtomicUsize,
    /// The current [`WINDOW`]'s number (ms after `epoch` / window) in the high 32 bits, and
    /// the short-lived closes counted in it in the low 32. Read by its own worker only.
    short: AtomicU64,
}

/// What `/metrics` shows of a listener group's balance.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WorkerLoad {
    /// Open connections per worker.
    pub open: Vec<usize>,
    /// Connections handed from one worker to another so far.
    pub handed_over: u64,
}

/// A connection counted on a worker while this lives (the connection's task holds it).
#[derive(Debug)]
pub struct Seat {
    balance: Arc<Balance>,
    worker: usize,
    since: Instant,
}

/// An accepted connection on its way to another worker.
#[derive(Debug)]
pub struct Handoff {
    pub sock: std::net::TcpStream,
    pub peer: SocketAddr,
    pub seat: Seat,
}

impl Balance {
    /// A balance over `n` workers, and each worker's inbox of handed-over connections.
    pub fn new(n: usize) -> (Arc<Balance>, Vec<mpsc::UnboundedReceiver<Handoff>>) {
        let n = n.max(1);
        let (senders, receivers): (Vec<_>, Vec<_>) =
            (0..n).map(|_| mpsc::unbounded_channel()).unzip();
        let balance = Balance {
            load: (0..n).map(|_| Slot::default()).collect(),
            inboxes: senders.into_boxed_slice(),
            moved: AtomicU64::new(0),
            epoch: Instant::now(),
            last_short: AtomicU64::new(0),
        };
        (Arc::new(balance), receivers)
    }

    /// The worker that should run a connection `me` just accepted: `me` unless it holds more
    /// than the least loaded worker plus [`slack`] and no burst of short-lived connections
    /// closed lately.
    pub fn place(&self, me: usize) -> usize {
        // Checked first: under connection-per-request traffic no worker reads another's count,
        // so each count's cache line stays with its own core.
        if self.short_lately() {
            return me;
        }
        let mine = self.load[me].open.load(Ordering::Relaxed);
        let (mut to, mut least) = (me, mine);
        for (i, slot) in self.load.iter().enumerate() {
            let n = slot.open.load(Ordering::Relaxed);
            if n < least {
                (to, least) = (i, n);
            }
        }
        if mine > least + slack(least) { to } else { me }
    }

    fn short_lately(&self) -> bool {
        match self.last_short.load(Ordering::Relaxed) {
            0 => false,
            t => self.millis() < t - 1 + SHORT.as_millis() as u64,
        }
    }

    fn millis(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Counts a connection on `worker` until the returned seat is dropped.
    pub fn seat(self: &Arc<Self>, worker: usize) -> Seat {
        self.load[worker].open.fetch_add(1, Ordering::Relaxed);
        Seat {
            balance: self.clone(),
            worker,
            since: Instant::now(),
        }
    }

    /// Hands `sock` to `worker`'s inbox, counted there. Gives it back, counted on `me`, if
    /// that worker stopped accepting (its listener group is closing).
    pub fn hand_over(
        self: &Arc<Self>,
        me: usize,
        worker: usize,
        sock: std::net::TcpStream,
        peer: SocketAddr,
    ) -> Result<(), Handoff> {
        let seat = self.seat(worker);
        match self.inboxes[worker].send(Handoff { sock, peer, seat }) {
            Ok(()) => {
                self.moved.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(back) => {
                let Handoff { sock, peer, seat } = back.0;
                drop(seat);
                Err(Handoff {
                    sock,
                    peer,
                    seat: self.seat(me),
                })
            }
        }
    }

    /// Connections handed from one worker to another so far.
    pub fn moved(&self) -> u64 {
        self.moved.load(Ordering::Relaxed)
    }

    /// Open connections per worker.
    pub fn loads(&self) -> Vec<usize> {
        self.load
            .iter()
            .map(|s| s.open.load(Ordering::Relaxed))
            .collect()
    }
}

/// How far above the least loaded worker a worker may go before it hands connections over:
/// one connection, plus 1/16 of the load once there are many (so short connection-per-request
/// traffic, whose counts flicker, does not pay for hand-offs that even nothing out).
fn slack(least: usize) -> usize {
    1 + least / 16
}

impl Seat {
    /// Runs `fut` with this seat held: the connection counts while `fut` runs.
    pub async fn hold<F: std::future::Future>(self, fut: F) -> F::Output {
        let _seat = self;
        fut.await
    }
}

impl Drop for Seat {
    fn drop(&mut self) {
        let b = &self.balance;
        let slot = &b.load[self.worker];
        slot.open.fetch_sub(1, Ordering::Relaxed);
        let now = Instant::now();
        if now.duration_since(self.since) >= SHORT {
            return;
        }
        // Tallied in the worker's own slot; the shared mark is written only on a burst, at
        // most once per window by each worker: every core reads it on every accept.
        let ms = now.duration_since(b.epoch).as_millis() as u64;
        let window = ms / WINDOW.as_millis() as u64;
        let tally = slot.short.load(Ordering::Relaxed);
        let count = if tally >> 32 == window {
            (tally as u32).saturating_add(1)
        } else {
            1
        };
        slot.short
            .store(window << 32 | u64::from(count), Ordering::Relaxed);
        if count == SHORT_BURST {
            b.last_short.store(ms + 1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_worker_keeps_connections_until_it_holds_more_than_the_least_plus_slack() {
        let (b, _rx) = Balance::new(2);
        let _a = b.seat(0);
        assert_eq!(b.place(0), 0, "1 against 0 is within the slack");
        let _c = b.seat(0);
        assert_eq!(b.place(0), 1, "2 against 0 goes to the other");
        assert_eq!(b.place(1), 1);
    }

    #[test]
    fn the_slack_grows_with_the_load() {
        let (b, _rx) = Balance::new(2);
        let seats: Vec<_> = (0..32).map(|_| b.seat(1)).collect();
        let more: Vec<_> = (0..34).map(|_| b.seat(0)).collect();
        assert_eq!(b.place(0), 0, "34 against 32: within 1 + 32/16");
        let one = b.seat(0);
        assert_eq!(b.place(0), 0, "35 against 32: still within");
        let two = b.seat(0);
        assert_eq!(b.place(0), 1, "36 against 32");
        drop((seats, more, one, two));
        assert_eq!(b.loads(), vec![0, 0]);
    }

    #[test]
    fn a_dropped_seat_uncounts_its_connection() {
        let (b, _rx) = Balance::new(3);
        let s = b.seat(2);
        assert_eq!(b.loads(), vec![0, 0, 1]);
        assert_eq!(s.worker, 2);
        drop(s);
        assert_eq!(b.loads(), vec![0, 0, 0]);
    }

    #[test]
    fn a_burst_of_short_lived_connections_turns_hand_offs_off_for_a_while() {
        let (mut b, _rx) = Balance::new(2);
        // Closed at once: short-lived. Twice the burst less one, so that one window holds a
        // whole burst even if a window boundary falls between the closes.
        for _ in 0..2 * SHORT_BURST - 1 {
            drop(b.seat(0));
        }
        let long: Vec<_> = (0..3).map(|_| b.seat(0)).collect();
        assert_eq!(
            b.place(0),
            0,
            "short-lived traffic stays where the kernel put it"
        );
        drop(long);
        // Two seconds later, long-lived balancing resumes.
        let b_mut = Arc::get_mut(&mut b).expect("no seat left");
        b_mut.epoch = b_mut.epoch.checked_sub(2 * SHORT).expect("uptime over 2 s");
        let long: Vec<_> = (0..3).map(|_| b.seat(0)).collect();
        assert_eq!(b.place(0), 1);
        drop(long);
    }

    #[test]
    fn one_short_lived_connection_like_a_health_check_leaves_balancing_on() {
        let (b, _rx) = Balance::new(2);
        for _ in 1..SHORT_BURST {
            drop(b.seat(0));
        }
        let long: Vec<_> = (0..3).map(|_| b.seat(0)).collect();
        assert_eq!(b.place(0), 1, "fewer than a burst: still balanced");
        drop(long);
    }

    #[test]
    fn one_worker_never_hands_over() {
        let (b, _rx) = Balance::new(1);
        let _s: Vec<_> = (0..10).map(|_| b.seat(0)).collect();
        assert_eq!(b.place(0), 0);
    }
}
