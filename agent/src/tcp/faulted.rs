//! The faulted path: each flow is a reader and a writer joined in the connection's task, with a
//! bounded queue of timestamped chunks between them.
//!
//! The reader applies what depends on arrival: dropping (timeout), holding (partition
//! blackhole), counting toward limit_data, and the timers that end the connection. The writer
//! applies what depends on delivery: latency (each chunk leaves `latency` after it *arrived*, so
//! reading continues while earlier chunks wait and a delay does not divide throughput),
//! slicing, bandwidth and slow_close. Both re-read the snapshot whenever it changes, including
//! in the middle of a wait, so adding or removing a fault takes effect from the next chunk; on
//! removal, chunks already queued are released at once, in order.

use bytes::Bytes;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{ReadHalf, WriteHalf};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::plan::{self, ConnCtx, Cut, FlowPlan};
use crate::fault::Flow;
use crate::fault::bandwidth::TokenBucket;
use crate::route::RouteSnapshot;

/// Chunks read at once on the faulted path.
const CHUNK: usize = 32 * 1024;
/// Chunks queued per flow: at most 16 MiB in flight, enough for a 100 ms latency on a stream of
/// 160 MB/s before backpressure reaches the sender.
const QUEUE: usize = 512;

type Snapshots = watch::Receiver<Arc<RouteSnapshot>>;

/// How a flow's faulted run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlowEnd {
    /// The source closed; the close was passed on.
    Eof,
    /// No fault touches the connection any more: hand back to the fast path.
    Replan,
    Cut(Cut),
}

enum Msg {
    Chunk { arrival: Instant, data: Bytes },
    End(FlowEnd),
}

/// Runs both flows on the faulted path until both are finished or both can go fast again, or
/// a fault cuts the connection. `done[i]` says which flows already reached EOF, and is updated.
pub async fn run(
    client: &mut TcpStream,
    upstream: &mut TcpStream,
    rx: &Snapshots,
    ctx: &ConnCtx,
    done: &mut [bool; 2],
    counted: &mut [Vec<u64>; 2],
) -> FlowEnd {
    let (mut cr, mut cw) = client.split();
    let (mut ur, mut uw) = upstream.split();
    let [seen_up, seen_down] = counted;
    let up = flow(&mut cr, &mut uw, Flow::Upstream, rx.clone(), ctx, seen_up);
    let down = flow(
        &mut ur,
        &mut cw,
        Flow::Downstream,
        rx.clone(),
        ctx,
        seen_down,
    );
    tokio::pin!(up, down);
    let mut ends: [Option<FlowEnd>; 2] = [
        done[0].then_some(FlowEnd::Eof),
        done[1].then_some(FlowEnd::Eof),
    ];
    while ends[0].is_none() || ends[1].is_none() {
        tokio::select! {
            e = &mut up, if ends[0].is_none() => {
                if let FlowEnd::Cut(c) = e { return FlowEnd::Cut(c) }
                ends[0] = Some(e);
            }
            e = &mut down, if ends[1].is_none() => {
                if let FlowEnd::Cut(c) = e { return FlowEnd::Cut(c) }
                ends[1] = Some(e);
            }
        }
    }
    done[0] = ends[0] == Some(FlowEnd::Eof);
    done[1] = ends[1] == Some(FlowEnd::Eof);
    if done[0] && done[1] {
        FlowEnd::Eof
    } else {
        FlowEnd::Replan
    }
}

async fn flow(
    src: &mut ReadHalf<'_>,
    dst: &mut WriteHalf<'_>,
    flow: Flow,
    rx: Snapshots,
    ctx: &ConnCtx,
    seen: &mut Vec<u64>,
) -> FlowEnd {
    let (tx, queue) = mpsc::channel(QUEUE);
    let reader = read_side(src, tx, flow, rx.clone(), ctx, seen);
    let writer = write_side(dst, queue, flow, rx, ctx);
    tokio::pin!(reader, writer);
    let mut reader_done = false;
    loop {
        tokio::select! {
            r = &mut reader, if !reader_done => {
                match r {
                    Some(end) => return end,
                    None => reader_done = true,
                }
            }
            w = &mut writer => return w,
        }
    }
}

/// Returns `Some(end)` to end the flow at once, or `None` after queueing an end marker for the
/// writer to act on in order.
async fn read_side(
    src: &mut ReadHalf<'_>,
    tx: mpsc::Sender<Msg>,
    flow: Flow,
    mut rx: Snapshots,
    ctx: &ConnCtx,
    seen: &mut Vec<u64>,
) -> Option<FlowEnd> {
    let mut buf = vec![0u8; CHUNK];
    let mut passed: u64 = 0;
    let mut limit_key = 0u64;
    let mut plan = FlowPlan::default();
    let mut stale = true;
    loop {
        if stale {
            let snap = rx.borrow_and_update().clone();
            if plan::all_passthrough(&snap, ctx) {
                let _ = tx.send(Msg::End(FlowEnd::Replan)).await;
                return None;
            }
            plan = plan::build(&snap, flow, ctx);
            plan.count(seen, &snap.metrics);
            stale = false;
        }
        if let Some(cut) = plan.cut {
            return Some(FlowEnd::Cut(cut));
        }
        if let Some((key, limit)) = plan.limit {
            if key != limit_key {
                limit_key = key;
                passed = 0;
            }
            if passed >= limit {
                let _ = tx.send(Msg::End(FlowEnd::Cut(Cut::Close))).await;
                return None;
            }
        }
        let deadline = plan.deadline();
        // A timer already run out acts now, not at the timer wheel's next tick.
        if let Some((at, cut)) = deadline
            && at <= Instant::now()
        {
            return Some(FlowEnd::Cut(cut));
        }
        let forwarding = !plan.hold && !plan.drop_data;
        let permit = if forwarding {
            tokio::select! {
                biased;
                c = rx.changed() => {
                    if c.is_err() { return Some(FlowEnd::Cut(Cut::Close)) }
                    stale = true;
                    continue;
                }
                _ = sleep_until_opt(deadline.map(|d| d.0)) => return deadline.map(|d| FlowEnd::Cut(d.1)),
                p = tx.reserve() => match p {
                    Ok(p) => Some(p),
                    Err(_) => return None,
                },
            }
        } else {
            None
        };
        tokio::select! {
            biased;
            c = rx.changed() => {
                if c.is_err() { return Some(FlowEnd::Cut(Cut::Close)) }
                stale = true;
            }
            _ = sleep_until_opt(deadline.map(|d| d.0)) => return deadline.map(|d| FlowEnd::Cut(d.1)),
            r = src.read(&mut buf), if !plan.hold => match r {
                Ok(0) => {
                    match permit {
                        Some(p) => p.send(Msg::End(FlowEnd::Eof)),
                        None => { let _ = tx.send(Msg::End(FlowEnd::Eof)).await; }
                    }
                    return None;
                }
                Ok(n) => {
                    let Some(permit) = permit else { continue }; // dropped by a timeout fault
                    let mut n = n;
                    let mut last = false;
                    if let Some((_, limit)) = plan.limit {
                        let left = limit - passed;
                        if n as u64 >= left {
                            n = left as usize;
                            last = true;
                        }
                        passed += n as u64;
                    }
                    if n > 0 {
                        permit.send(Msg::Chunk { arrival: Instant::now(), data: Bytes::copy_from_slice(&buf[..n]) });
                    }
                    if last {
                        let _ = tx.send(Msg::End(FlowEnd::Cut(Cut::Close))).await;
                        return None;
                    }
                }
                Err(e) => return Some(FlowEnd::Cut(cut_for(&e))),
            },
        }
    }
}

async fn write_side(
    dst: &mut WriteHalf<'_>,
    mut queue: mpsc::Receiver<Msg>,
    flow: Flow,
    mut rx: Snapshots,
    ctx: &ConnCtx,
) -> FlowEnd {
    let snap = rx.borrow_and_update().clone();
    let metrics = snap.metrics.clone();
    let mut plan = plan::build(&snap, flow, ctx);
    let mut rng = fastrand::Rng::with_seed(ctx.seed ^ flow as u64);
    let mut last_release = Instant::now();
    let mut bucket: Option<TokenBucket> = None;
    loop {
        let Some(msg) = queue.recv().await else {
            return FlowEnd::Cut(Cut::Close);
        };
        let (arrival, data) = match msg {
            Msg::Chunk { arrival, data } => (arrival, data),
            Msg::End(FlowEnd::Eof) => {
                if let Some(d) = plan.slow_close {
                    let until = Instant::now() + d;
                    // Keep waiting across unrelated changes; stop early if slow_close is removed.
                    loop {
                        match wait(&mut rx, until, &mut plan, flow, ctx).await {
                            Wake::Changed if plan.slow_close.is_some() => continue,
                            Wake::Gone => return FlowEnd::Cut(Cut::Close),
                            _ => break,
                        }
                    }
                }
                let _ = dst.shutdown().await;
                return FlowEnd::Eof;
            }
            Msg::End(end) => return end,
        };
        // Latency: release the chunk `latency` after it arrived, never before the previous one.
        let mut draw = rng.u64(..);
        loop {
            let release = match plan.latency {
                Some(l) => (arrival + l.sample(draw)).max(last_release),
                None => Instant::now(),
            };
            if release <= Instant::now() {
                last_release = release;
                break;
            }
            match wait(&mut rx, release, &mut plan, flow, ctx).await {
                Wake::Elapsed => {
                    last_release = release;
                    break;
                }
                Wake::Changed => draw = rng.u64(..),
                Wake::Gone => return FlowEnd::Cut(Cut::Close),
            }
        }
        // Slicing and bandwidth, slice by slice.
        let mut rest = &data[..];
        while !rest.is_empty() {
            let mut n = match plan.slicer {
                Some(s) => s.next_len(rng.u64(..), rest.len()),
                None => rest.len(),
            };
            if let Some(rate) = plan.bandwidth {
                let b = match &mut bucket {
                    Some(b) if b.rate() == rate => b,
                    _ => bucket.insert(TokenBucket::new(rate, Instant::now())),
                };
                n = n.min(b.max_write());
                let pause = b.take(n, Instant::now());
                if !pause.is_zero()
                    && wait(&mut rx, Instant::now() + pause, &mut plan, flow, ctx).await
                        == Wake::Gone
                {
                    return FlowEnd::Cut(Cut::Close);
                }
            }
            if let Err(e) = dst.write_all(&rest[..n]).await {
                return FlowEnd::Cut(cut_for(&e));
            }
            metrics.add_bytes(flow, n);
            rest = &rest[n..];
            if let (Some(s), false) = (plan.slicer, rest.is_empty())
                && !s.delay.is_zero()
                && wait(&mut rx, Instant::now() + s.delay, &mut plan, flow, ctx).await == Wake::Gone
            {
                return FlowEnd::Cut(Cut::Close);
            }
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Wake {
    Elapsed,
    /// The snapshot changed and `plan` was rebuilt: re-evaluate what was being waited for.
    Changed,
    /// The route is gone.
    Gone,
}

/// Sleeps until `until`, re-planning if the snapshot changes meanwhile.
async fn wait(
    rx: &mut Snapshots,
    until: Instant,
    plan: &mut FlowPlan,
    flow: Flow,
    ctx: &ConnCtx,
) -> Wake {
    tokio::select! {
        _ = tokio::time::sleep_until(until) => Wake::Elapsed,
        c = rx.changed() => match c {
            Ok(()) => {
                *plan = plan::build(&rx.borrow_and_update(), flow, ctx);
                Wake::Changed
            }
            Err(_) => Wake::Gone,
        },
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// A peer's reset is passed on as a reset; any other I/O error closes.
pub fn cut_for(e: &std::io::Error) -> Cut {
    match e.kind() {
        std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::ConnectionAborted => Cut::Reset,
        _ => Cut::Close,
    }
}
