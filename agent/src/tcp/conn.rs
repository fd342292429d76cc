//! One task per client connection: admit it, connect upstream, relay until done.
//!
//! The relay loop reads the route's snapshot. While no fault touches the connection it runs
//! the fast path ([`super::fast`]); when a snapshot arrives that changes that, the fast copy is
//! interrupted (losing nothing: its buffers live outside the future), whatever it had read is
//! delivered, and the faulted path ([`super::faulted`]) takes over until the faults are gone.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;

use super::fast::FastCopy;
use super::faulted::{self, FlowEnd, cut_for};
use super::plan::{self, ConnCtx, Cut};
use crate::fault::Flow;
use crate::metrics::RouteMetrics;
use crate::route::RouteSnapshot;

type Snapshots = watch::Receiver<Arc<RouteSnapshot>>;

/// Per-connection settings, copied into each connection task.
#[derive(Clone, Copy, Debug)]
pub struct ConnSettings {
    pub connect_timeout: Duration,
    pub epoch: std::time::Instant,
    /// `SO_MARK` for the upstream socket.
    pub mark: Option<u32>,
}

/// Serves one client connection; `original` is its original destination when it was
/// captured (the upstream of a route whose upstream is `original`).
pub async fn handle(
    mut client: TcpStream,
    peer: SocketAddr,
    mut rx: Snapshots,
    settings: ConnSettings,
    original: Option<SocketAddr>,
) {
    let snap = rx.borrow_and_update().clone();
    let metrics = snap.metrics.clone();
    let _active = metrics.connection();
    let _ = client.set_nodelay(true);
    let mut ctx = ConnCtx {
        seed: fastrand::u64(..),
        started: Instant::now(),
        client: peer,
        upstream: None,
    };
    let mut counted = [Vec::new(), Vec::new()];

    if let Err(cut) = admit(&mut rx, &ctx, &mut counted, &client).await {
        return finish(client, None, cut);
    }
    let upstream_addr = match snap.upstream.resolve(original).await {
        Ok(a) => a,
        Err(e) => return upstream_failed(&snap, &metrics, settings, &e),
    };
    ctx.upstream = Some(upstream_addr);
    // Again, now that partitions by upstream address can be told.
    if let Err(cut) = admit(&mut rx, &ctx, &mut counted, &client).await {
        return finish(client, None, cut);
    }
    let mut upstream =
        match super::connect::connect(upstream_addr, settings.mark, settings.connect_timeout).await
        {
            Ok(s) => s,
            Err(e) => return upstream_failed(&snap, &metrics, settings, &e),
        };

    let cut = relay(
        &mut client,
        &mut upstream,
        &mut rx,
        &ctx,
        &mut counted,
        &metrics,
    )
    .await;
    finish(client, Some(upstream), cut.unwrap_or(Cut::Close));
}

/// Decides whether a new connection may proceed. A connection refused by a fault is reset
/// (the closest a listening socket can come to ECONNREFUSED for one client); one blackholed
/// by a partition waits, unread, until the partition heals or the client goes away.
pub(crate) async fn admit(
    rx: &mut Snapshots,
    ctx: &ConnCtx,
    seen: &mut [Vec<u64>; 2],
    client: &TcpStream,
) -> Result<(), Cut> {
    let mut client_has_data = false;
    loop {
        if rx.borrow_and_update().is_clean() {
            return Ok(());
        }
        let (up, down) = {
            let snap = rx.borrow_and_update();
            let up = plan::build(&snap, Flow::Upstream, ctx);
            let down = plan::build(&snap, Flow::Downstream, ctx);
            up.count(&mut seen[0], &snap.metrics);
            down.count(&mut seen[1], &snap.metrics);
            (up, down)
        };
        if up.cut.is_some() || down.cut.is_some() {
            return Err(Cut::Reset);
        }
        // A timer that has already run out (reset_peer with timeout 0) acts before any byte moves.
        let now = Instant::now();
        for plan in [&up, &down] {
            if let Some((at, cut)) = plan.deadline()
                && at <= now
            {
                return Err(cut);
            }
        }
        if !up.hold {
            return Ok(());
        }
        let mut probe = [0u8; 1];
        tokio::select! {
            c = rx.changed() => if c.is_err() { return Err(Cut::Close) },
            r = client.peek(&mut probe), if !client_has_data => match r {
                Ok(0) | Err(_) => return Err(Cut::Close),
                Ok(_) => client_has_data = true,
            },
        }
    }
}

fn upstream_failed(
    snap: &RouteSnapshot,
    metrics: &RouteMetrics,
    settings: ConnSettings,
    e: &io::Error,
) {
    let now_ms = settings.epoch.elapsed().as_millis() as u64;
    if let Some(suppressed) = metrics.upstream_error(now_ms) {
        tracing::warn!(
            route = %snap.name,
            upstream = %snap.upstream,
            error = %e,
            suppressed,
            "upstream connect failed; closing the client connection"
        );
    }
    // Dropping the client socket closes it with a FIN.
}

/// Relays until both flows end (`None`) or a fault or error cuts the connection.
async fn relay(
    client: &mut TcpStream,
    upstream: &mut TcpStream,
    rx: &mut Snapshots,
    ctx: &ConnCtx,
    counted: &mut [Vec<u64>; 2],
    metrics: &RouteMetrics,
) -> Option<Cut> {
    let mut fast = [
        FastCopy::new(Flow::Upstream),
        FastCopy::new(Flow::Downstream),
    ];
    loop {
        let snap = rx.borrow_and_update().clone();
        if plan::all_passthrough(&snap, ctx) {
            let probe = rx.clone();
            let changed = rx.changed();
            tokio::pin!(changed);
            let copy = FastRelay {
                fast: &mut fast,
                client: &mut *client,
                upstream: &mut *upstream,
                metrics,
                probe,
                changed,
                registered: false,
            };
            match copy.await {
                Relayed::Done => return None,
                Relayed::Failed(e) => return Some(cut_for(&e)),
                Relayed::Changed => continue,
                Relayed::RouteGone => return Some(Cut::Close),
            }
        }
        // A fault now touches the connection: deliver what the fast path had read, then switch.
        if let Err(e) = fast[0].flush_pending(upstream, metrics).await {
            return Some(cut_for(&e));
        }
        if let Err(e) = fast[1].flush_pending(client, metrics).await {
            return Some(cut_for(&e));
        }
        let mut done = [fast[0].done, fast[1].done];
        match faulted::run(client, upstream, rx, ctx, &mut done, counted).await {
            FlowEnd::Eof => return None,
            FlowEnd::Cut(c) => return Some(c),
            FlowEnd::Replan => {
                for (f, d) in fast.iter_mut().zip(done) {
                    if d {
                        f.finish();
                    }
                }
            }
        }
    }
}

enum Relayed {
    Done,
    Failed(io::Error),
    Changed,
    RouteGone,
}

/// Both fast copies, interrupted by a new snapshot.
///
/// The snapshot's change notification is registered once (first poll); after that each wake-up
/// checks the channel's version with one atomic load instead of polling the notification again,
/// so the per-chunk path takes no lock.
struct FastRelay<'a, F> {
    fast: &'a mut [FastCopy; 2],
    client: &'a mut TcpStream,
    upstream: &'a mut TcpStream,
    metrics: &'a RouteMetrics,
    probe: Snapshots,
    changed: Pin<&'a mut F>,
    registered: bool,
}

impl<F> Future for FastRelay<'_, F>
where
    F: Future<Output = Result<(), watch::error::RecvError>>,
{
    type Output = Relayed;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Relayed> {
        let this = self.get_mut();
        if !this.registered {
            this.registered = true;
            match this.changed.as_mut().poll(cx) {
                Poll::Ready(Ok(())) => return Poll::Ready(Relayed::Changed),
                Poll::Ready(Err(_)) => return Poll::Ready(Relayed::RouteGone),
                Poll::Pending => {}
            }
        } else {
            match this.probe.has_changed() {
                Ok(true) => return Poll::Ready(Relayed::Changed),
                Ok(false) => {}
                Err(_) => return Poll::Ready(Relayed::RouteGone),
            }
        }
        let [up, down] = &mut *this.fast;
        let m = this.metrics;
        // The flow that ends last leaves its FIN to the close that follows (see `poll_copy`).
        if let Poll::Ready(Err(e)) =
            up.poll_copy(cx, &mut *this.client, &mut *this.upstream, m, down.done)
        {
            return Poll::Ready(Relayed::Failed(e));
        }
        if let Poll::Ready(Err(e)) =
            down.poll_copy(cx, &mut *this.upstream, &mut *this.client, m, up.done)
        {
            return Poll::Ready(Relayed::Failed(e));
        }
        if up.done && down.done {
            Poll::Ready(Relayed::Done)
        } else {
            Poll::Pending
        }
    }
}

/// Closes the connection: with a FIN, or with a RST (`SO_LINGER` 0) when reset.
pub(crate) fn finish(client: TcpStream, upstream: Option<TcpStream>, cut: Cut) {
    if cut == Cut::Reset {
        let _ = socket2::SockRef::from(&client).set_linger(Some(Duration::ZERO));
        if let Some(u) = &upstream {
            let _ = socket2::SockRef::from(u).set_linger(Some(Duration::ZERO));
        }
    }
    drop(client);
    drop(upstream);
}
