//! The upstream HTTP/1.1 connections of one listener's worker for hyper's client (requests with
//! a body, or under a body fault; requests without one go through `client1` and its own pool),
//! shared request by request by all of that worker's client connections (as haproxy's
//! `http-reuse` and Envoy's pools share them).
//!
//! A request takes a connection that is open, idle and going to the right address (the most
//! recently returned first) and holds it in a [`Checkout`] until the response body it got has
//! ended or been dropped; the connection then goes back. A connection counts as busy until
//! hyper reports it ready again (its response read to its end, its request body sent): one put
//! back busy (a response that ended before its request body did) is never handed out, and
//! never closed here. Most `take`s find a ready connection at the end of the list at once.
//!
//! Why share rather than give each client connection an upstream connection of its own: an
//! idle keep-alive client then holds no upstream connection (the upstream sees as many
//! connections as the peak of requests in flight, not one per client), and the connection
//! reused is the one used last, still warm in cache. Over three side-by-side runs
//! (BENCHMARKS.md) keep-alive req/s rose 1.2–2.3 % and CPU per request fell 0.5–1.7 %.
//!
//! An idle connection is closed after [`IDLE_TIMEOUT`] (hyper-util's pool keeps them as long),
//! by a sweep every third of that ([`sweep`]), so an upstream that never closes idle
//! connections itself is not left holding them.
//!
//! Only the worker's own thread touches a pool (connections never leave the worker that opened
//! them), so its lock is never contended.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use tokio::time::Instant;

use super::HttpRoute;

/// Idle connections kept beyond those with a request in flight.
const KEEP_IDLE: usize = 256;

/// How long a connection may sit idle in the pool.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// An upstream HTTP/1.1 connection and where it goes. (`B`, the request body type, is left
/// open for the tests.)
pub struct Upstream1<B = Incoming> {
    pub addr: SocketAddr,
    pub sender: SendRequest<B>,
}

impl<B> Upstream1<B> {
    fn idle(&self) -> bool {
        !self.sender.is_closed() && self.sender.is_ready()
    }
}

pub struct H1Pool<B = Incoming> {
    conns: Mutex<Vec<Pooled<B>>>,
}

/// A connection in the pool, and when it was put there.
struct Pooled<B> {
    conn: Upstream1<B>,
    since: Instant,
}

impl<B> Default for H1Pool<B> {
    fn default() -> Self {
        H1Pool {
            conns: Mutex::new(Vec::new()),
        }
    }
}

impl<B> H1Pool<B> {
    /// An idle connection to `addr`, if there is one. Connections found closed are dropped.
    pub fn take(&self, addr: SocketAddr) -> Option<Upstream1<B>> {
        let mut conns = self.conns.lock().unwrap_or_else(|p| p.into_inner());
        let mut i = conns.len();
        while i > 0 {
            i -= 1;
            let u = &conns[i].conn;
            if u.sender.is_closed() {
                conns.swap_remove(i);
            } else if u.addr == addr && u.sender.is_ready() {
                return Some(conns.swap_remove(i).conn);
            }
        }
        None
    }

    /// Returns a connection, busy or not. Past [`KEEP_IDLE`] connections, an idle one is closed.
    pub fn put(&self, conn: Upstream1<B>) {
        let mut conns = self.conns.lock().unwrap_or_else(|p| p.into_inner());
        conns.push(Pooled {
            conn,
            since: Instant::now(),
        });
        if conns.len() > KEEP_IDLE
            && let Some(i) = conns.iter().position(|p| p.conn.idle())
        {
            conns.swap_remove(i);
        }
    }

    /// Closes the connections idle since before `now - IDLE_TIMEOUT`, and drops closed ones.
    /// Busy connections stay.
    pub fn prune(&self, now: Instant) {
        let mut conns = self.conns.lock().unwrap_or_else(|p| p.into_inner());
        let expired = |p: &Pooled<B>| p.conn.idle() && now.duration_since(p.since) >= IDLE_TIMEOUT;
        conns.retain(|p| !p.conn.sender.is_closed() && !expired(p));
    }
}

/// Prunes `route`'s HTTP/1.1 pool every third of [`IDLE_TIMEOUT`], until the route is gone.
pub async fn sweep(route: Weak<HttpRoute>) {
    let mut every = tokio::time::interval(IDLE_TIMEOUT / 3);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let Some(route) = route.upgrade() else {
            return;
        };
        route.h1.prune(Instant::now());
        route.h1_lean.prune(Instant::now(), IDLE_TIMEOUT);
    }
}

/// A connection taken from its worker's pool for one exchange; back in the pool when dropped,
/// which the response body holding it does when it ends or is dropped.
pub struct Checkout {
    route: Arc<HttpRoute>,
    conn: Option<Upstream1>,
}

impl Checkout {
    pub fn new(route: Arc<HttpRoute>, conn: Upstream1) -> Self {
        Checkout {
            route,
            conn: Some(conn),
        }
    }
}

impl Drop for Checkout {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            self.route.h1.put(conn);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;
    use http::Request;
    use http_body_util::Empty;
    use hyper_util::rt::TokioIo;
    use tokio::net::{TcpListener, TcpStream};

    use super::*;

    /// An upstream that accepts connections and never answers; each accepted socket is handed
    /// to the test so it can close it.
    async fn silent_upstream() -> (SocketAddr, tokio::sync::mpsc::UnboundedReceiver<TcpStream>) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((s, _)) = l.accept().await {
                let _ = tx.send(s);
            }
        });
        (addr, rx)
    }

    type Pool = H1Pool<Empty<Bytes>>;
    type Conn = Upstream1<Empty<Bytes>>;

    async fn connect(addr: SocketAddr) -> Conn {
        let io = TokioIo::new(TcpStream::connect(addr).await.unwrap());
        let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
        tokio::spawn(conn);
        sender.ready().await.unwrap();
        Upstream1 { addr, sender }
    }

    /// A request that `silent_upstream` never answers: the connection stays busy.
    fn make_busy(u: &mut Conn) {
        let call = u.sender.send_request(Request::new(Empty::new()));
        tokio::spawn(call);
    }

    fn len(pool: &Pool) -> usize {
        pool.conns.lock().unwrap().len()
    }

    #[tokio::test]
    async fn hands_out_only_idle_open_connections_to_the_address() {
        let (addr, mut accepted) = silent_upstream().await;
        let (other, _other_accepted) = silent_upstream().await;
        let pool = Pool::default();
        assert!(pool.take(addr).is_none());

        let mut busy = connect(addr).await;
        make_busy(&mut busy);
        pool.put(busy);
        pool.put(connect(other).await);
        assert!(
            pool.take(addr).is_none(),
            "busy or elsewhere: nothing to hand out"
        );
        assert_eq!(len(&pool), 2);

        let idle = connect(addr).await;
        pool.put(idle);
        let got = pool.take(addr).expect("the idle connection");
        assert!(got.sender.is_ready());
        pool.put(got);

        // The upstream closes both connections to `addr`; once hyper has seen that, they are
        // dropped at the next `take` instead of being handed out.
        for _ in 0..2 {
            drop(accepted.recv().await.unwrap());
        }
        let closed = |pool: &Pool| {
            let conns = pool.conns.lock().unwrap();
            conns.iter().filter(|p| p.conn.sender.is_closed()).count()
        };
        tokio::time::timeout(Duration::from_secs(10), async {
            while closed(&pool) < 2 {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("hyper sees both connections closed");
        assert!(pool.take(addr).is_none());
        assert_eq!(len(&pool), 1);
        assert!(pool.take(other).is_some());
    }

    #[tokio::test]
    async fn connections_idle_past_the_timeout_are_closed_busy_ones_stay() {
        let (addr, _accepted) = silent_upstream().await;
        let pool = Pool::default();
        let mut busy = connect(addr).await;
        let idle = connect(addr).await;
        tokio::time::pause();
        make_busy(&mut busy);
        pool.put(busy);
        pool.put(idle);
        tokio::time::advance(IDLE_TIMEOUT - Duration::from_secs(1)).await;
        pool.prune(Instant::now());
        assert_eq!(len(&pool), 2, "not idle long enough yet");
        tokio::time::advance(Duration::from_secs(1)).await;
        pool.prune(Instant::now());
        assert_eq!(len(&pool), 1, "the idle one is closed");
        assert!(
            pool.take(addr).is_none(),
            "the busy one stays, and is not handed out"
        );
    }

    #[tokio::test]
    async fn the_route_sweeps_its_pool_until_it_is_dropped() {
        let (addr, _accepted) = silent_upstream().await;
        let io = TokioIo::new(TcpStream::connect(addr).await.unwrap());
        let (mut sender, conn) = hyper::client::conn::http1::handshake::<_, Incoming>(io)
            .await
            .unwrap();
        tokio::spawn(conn);
        sender.ready().await.unwrap();
        tokio::time::pause();
        let route = HttpRoute::new(
            crate::route::Protocol::Http,
            Duration::from_secs(1),
            std::time::Instant::now(),
            None,
        );
        route.h1.put(Upstream1 { addr, sender });
        // Paused time: sleeping lets the runtime go idle, which moves the clock to the sweep's
        // next tick (timer deadlines are rounded up to the next millisecond).
        tokio::time::sleep(IDLE_TIMEOUT - Duration::from_secs(1)).await;
        assert_eq!(
            route.h1.conns.lock().unwrap().len(),
            1,
            "not idle long enough yet"
        );
        tokio::time::sleep(IDLE_TIMEOUT / 3 + Duration::from_secs(1)).await;
        assert!(route.h1.conns.lock().unwrap().is_empty(), "swept");
        let weak = Arc::downgrade(&route);
        drop(route);
        tokio::time::sleep(IDLE_TIMEOUT).await;
        assert!(
            weak.upgrade().is_none(),
            "the sweep holds no strong reference"
        );
    }

    #[tokio::test]
    async fn past_the_idle_limit_closes_an_idle_connection_never_a_busy_one() {
        let (addr, _accepted) = silent_upstream().await;
        let pool = Pool::default();
        for _ in 0..KEEP_IDLE {
            let mut u = connect(addr).await;
            make_busy(&mut u);
            pool.put(u);
        }
        // One more busy one: nothing idle to close, all are kept.
        let mut u = connect(addr).await;
        make_busy(&mut u);
        pool.put(u);
        assert_eq!(len(&pool), KEEP_IDLE + 1);
        // An idle one past the limit is the one closed.
        pool.put(connect(addr).await);
        assert_eq!(len(&pool), KEEP_IDLE + 1);
        assert!(pool.take(addr).is_none(), "only busy connections are left");
    }
}
