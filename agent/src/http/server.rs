//! One task per client connection of an HTTP or gRPC route.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Wake, Waker};

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::HttpRoute;
use super::proxy::{self, ConnState};
use super::timer::ConnTimer;
use crate::fault::Flow;
use crate::route::{Protocol, RouteFeed, RouteSnapshot};
use crate::tcp::conn::{admit, finish};
use crate::tcp::plan::{self, ConnCtx};

pub async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    feed: RouteFeed,
    route: Arc<HttpRoute>,
    drain: CancellationToken,
    original: Option<SocketAddr>,
) {
    let snap = feed.current.load_full();
    let _active = snap.metrics.connection();
    let _ = stream.set_nodelay(true);
    let mut rx = feed.rx.clone();
    rx.borrow_and_update();
    let ctx = ConnCtx {
        seed: fastrand::u64(..),
        started: Instant::now(),
        client: peer,
        upstream: original,
    };
    let mut counted = [Vec::new(), Vec::new()];
    if let Err(cut) = admit(&mut rx, &ctx, &mut counted, &stream).await {
        return finish(stream, None, cut);
    }

    let state = Arc::new(ConnState::new(
        feed.current.clone(),
        route.clone(),
        original,
    ));
    let svc = service_fn(move |req| proxy::handle(state.clone(), req));
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // hyper's default header-read timeout (30 s) on a per-connection timer: see `timer`.
    // `writev(false)`: a response's head and small body go out in one `send` from one buffer
    // rather than a `writev` of two (measured: -3 % CPU per keep-alive request, 1 MiB bodies
    // unchanged; BENCHMARKS.md).
    builder
        .http1()
        .timer(ConnTimer::default())
        .keep_alive(true)
        .writev(false);
    builder.http2().timer(TokioTimer::new());
    if route.protocol == Protocol::Grpc {
        builder = builder.http2_only();
    }
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), svc);
    tokio::pin!(conn);
    let mut draining = false;
    loop {
        match watch_connection(conn.as_mut(), &drain, draining, &mut rx).await {
            Event::Ended(r) => {
                if let Err(e) = r {
                    tracing::debug!(route = %snap.name, %peer, error = %e, "http connection ended with an error");
                }
                return;
            }
            Event::Drain => {
                draining = true;
                conn.as_mut().graceful_shutdown();
            }
            // The route was removed or disabled.
            Event::Changed { gone: true } => return,
            Event::Changed { gone: false } => {
                // A down/partition fault may now cut this client.
                let snap = rx.borrow_and_update().clone();
                let p = plan::build(&snap, Flow::Upstream, &ctx);
                p.count(&mut counted[0], &snap.metrics);
                if p.cut.is_some() {
                    return;
                }
            }
        }
    }
}

enum Event<E> {
    Ended(Result<(), E>),
    Drain,
    Changed { gone: bool },
}

/// Drives the connection until it ends, the agent drains, or the route's snapshot changes.
///
/// The drain and snapshot notifications are polled with a waker of their own ([`Nudge`]) that
/// raises a flag before waking the task: the connection wakes several times per request, and
/// each of those wake-ups then costs one atomic swap, where checking the drain token (a lock)
/// and the snapshot's version every time cost more than that.
async fn watch_connection<C, E>(
    mut conn: Pin<&mut C>,
    drain: &CancellationToken,
    draining: bool,
    rx: &mut watch::Receiver<Arc<RouteSnapshot>>,
) -> Event<E>
where
    C: Future<Output = Result<(), E>>,
{
    let drained = drain.cancelled();
    let changed = rx.changed();
    tokio::pin!(drained, changed);
    let mut nudge: Option<Arc<Nudge>> = None;
    std::future::poll_fn(|cx| {
        if let Poll::Ready(r) = conn.as_mut().poll(cx) {
            return Poll::Ready(Event::Ended(r));
        }
        let nudge = nudge.get_or_insert_with(|| {
            Arc::new(Nudge {
                fired: AtomicBool::new(true),
                task: cx.waker().clone(),
            })
        });
        if nudge.fired.swap(false, Ordering::AcqRel) {
            let waker = Waker::from(nudge.clone());
            let mut ncx = Context::from_waker(&waker);
            if !draining && drained.as_mut().poll(&mut ncx).is_ready() {
                return Poll::Ready(Event::Drain);
            }
            if let Poll::Ready(r) = changed.as_mut().poll(&mut ncx) {
                return Poll::Ready(Event::Changed { gone: r.is_err() });
            }
        }
        Poll::Pending
    })
    .await
}

/// A waker for the drain and snapshot notifications: notes that one of them fired, then wakes
/// the connection's task.
struct Nudge {
    fired: AtomicBool,
    task: Waker,
}

impl Wake for Nudge {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.fired.store(true, Ordering::Release);
        self.task.wake_by_ref();
    }
}
