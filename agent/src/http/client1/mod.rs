//! The agent's own HTTP/1.1 upstream exchange for requests without a body, run by the serving
//! task itself: the request head goes out in one write, the response head is parsed with
//! `httparse`, and the response body is read from the upstream socket as the client takes it
//! ([`Body`]), so a request never leaves its task and no channel carries it.
//!
//! Why not hyper's client here: side by side (BENCHMARKS.md), its machinery (dispatch channel,
//! `oneshot`, body channel, want signal, a task per connection) cost about 8 % of the agent's
//! CPU per keep-alive request. Requests with a body, and responses under body faults, stay on
//! hyper's client (`pool`), which also streams uploads.
//!
//! The response body is framed as RFC 9112 §6.3 says: none for `HEAD`, 1xx, 204 and 304;
//! chunked (decoded here, trailers kept); `Content-Length`; else until the upstream closes.
//! Interim 1xx answers are skipped. A connection goes back to the worker's [`Pool`] only when
//! its response was read exactly to its end and both sides keep the connection alive.
//!
//! An idle connection the upstream has closed is noticed from Tokio's readiness (no system
//! call) when it is taken; one closed in the instant between is caught when the answer is an
//! immediate close, and an idempotent request is then sent once more on a new connection.
//!
//! `framing.rs` frames and decodes the response body; `batch.rs` holds a request's write to the
//! end of the worker's tick while other exchanges are in flight, so the upstream takes the
//! tick's requests in one batch.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll, Waker, ready};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Version};
use http_body::{Frame, SizeHint};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::Instant;

use self::framing::{Framing, Step, framing, keeps_alive, step};
use super::body::BoxError;

mod batch;
mod framing;

/// Idle connections kept per worker and route.
const KEEP_IDLE: usize = 256;
/// The largest response head accepted.
pub(super) const MAX_HEAD: usize = 64 * 1024;
/// Headers accepted in a response head (or its trailers).
pub(super) const MAX_HEADERS: usize = 128;
/// Room made in the read buffer before each read.
const READ_CHUNK: usize = 16 * 1024;

/// An upstream connection and its read buffer.
pub struct Conn {
    addr: SocketAddr,
    stream: TcpStream,
    /// What has been read from the upstream and not yet taken.
    buf: BytesMut,
    /// The request head being sent, kept for the next request on this connection.
    out: Vec<u8>,
}

impl Conn {
    /// Whether the idle connection has heard from the upstream since its last exchange (a close,
    /// or bytes nobody asked for): either way it cannot carry another request.
    fn stale(&self) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        self.stream.poll_read_ready(&mut cx).is_ready()
    }
}

/// The idle upstream connections of one route on one worker (only that worker's thread takes
/// the lock, so it is never contended).
#[derive(Default)]
pub struct Pool {
    idle: Mutex<Vec<(Conn, Instant)>>,
}

impl Pool {
    /// The most recently used idle connection to `addr`; stale ones found on the way are closed.
    fn take(&self, addr: SocketAddr) -> Option<Conn> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        while let Some(i) = idle.iter().rposition(|(c, _)| c.addr == addr) {
            let (conn, _) = idle.swap_remove(i);
            if !conn.stale() {
                return Some(conn);
            }
        }
        None
    }

    fn put(&self, mut conn: Conn) {
        conn.buf.clear();
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() >= KEEP_IDLE {
            idle.remove(0);
        }
        idle.push((conn, Instant::now()));
    }

    /// Closes connections idle since before `now - timeout`, and stale ones.
    pub fn prune(&self, now: Instant, timeout: Duration) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        idle.retain(|(c, since)| now.duration_since(*since) < timeout && !c.stale());
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.idle.lock().unwrap().len()
    }
}

/// How the upstream connection is reached.
pub struct Dial {
    pub addr: SocketAddr,
    pub mark: Option<u32>,
    pub connect_timeout: Duration,
}

/// Sends a request without a body (its head written by [`encode`] into the connection's own
/// buffer) and reads the answer's head. The body comes through the returned [`Body`], which gives
/// the connection back to `route`'s pool once read to its end.
pub async fn exchange(
    route: &std::sync::Arc<super::HttpRoute>,
    dial: &Dial,
    request: &http::request::Parts,
) -> Result<(http::response::Parts, Body), String> {
    let (_in_flight, others_in_flight) = batch::InFlight::enter();
    let mut reused = route.h1_lean.take(dial.addr);
    loop {
        let was_reused = reused.is_some();
        let mut conn = match reused.take() {
            Some(c) => c,
            None => connect(dial).await.map_err(|e| e.to_string())?,
        };
        conn.out.clear();
        encode(request, &mut conn.out);
        batch::join_the_batch(others_in_flight).await;
        let sent = conn.stream.write_all(&conn.out).await;
        let answer = match sent {
            Ok(()) => read_head(&mut conn, &request.method).await,
            Err(e) => Err(Failure::Early(e)),
        };
        match answer {
            Ok((parts, framing, keep_alive)) => {
                let body = Body::new(conn, framing, keep_alive, route.clone());
                return Ok((parts, body));
            }
            // The upstream closed a reused connection before answering (it had timed it out):
            // the request is sent again on a new connection if that is safe to do.
            Err(Failure::Early(_)) if was_reused && request.method.is_idempotent() => continue,
            Err(Failure::Early(e)) => return Err(e.to_string()),
            Err(Failure::Bad(e)) => return Err(e),
        }
    }
}

async fn connect(dial: &Dial) -> io::Result<Conn> {
    let stream = crate::tcp::connect::connect(dial.addr, dial.mark, dial.connect_timeout).await?;
    Ok(Conn {
        addr: dial.addr,
        stream,
        buf: BytesMut::with_capacity(READ_CHUNK),
        out: Vec::with_capacity(512),
    })
}

/// Writes a request head for `parts` into `out`: the request target as the client sent it,
/// then the headers (hop-by-hop ones already removed).
fn encode(parts: &http::request::Parts, out: &mut Vec<u8>) {
    out.extend_from_slice(parts.method.as_str().as_bytes());
    out.push(b' ');
    if parts.uri.scheme().is_some() {
        out.extend_from_slice(parts.uri.to_string().as_bytes());
    } else {
        let target = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        out.extend_from_slice(target.as_bytes());
    }
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in &parts.headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

enum Failure {
    /// The connection failed or closed before any byte of an answer.
    Early(io::Error),
    /// A malformed answer, or a close in the middle of one.
    Bad(String),
}

/// Reads one more piece of the connection into its buffer; `Ok(0)` is the upstream's close.
async fn fill(conn: &mut Conn) -> io::Result<usize> {
    std::future::poll_fn(|cx| poll_fill(&mut conn.stream, &mut conn.buf, cx)).await
}

fn poll_fill(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    cx: &mut Context<'_>,
) -> Poll<io::Result<usize>> {
    if buf.capacity() - buf.len() < READ_CHUNK / 4 {
        buf.reserve(READ_CHUNK);
    }
    tokio_util::io::poll_read_buf(Pin::new(stream), cx, buf)
}

/// Reads the response head (skipping interim 1xx answers) and decides the body's framing.
async fn read_head(
    conn: &mut Conn,
    method: &Method,
) -> Result<(http::response::Parts, Framing, bool), Failure> {
    let mut any = false;
    loop {
        match parse_head(&mut conn.buf).map_err(Failure::Bad)? {
            Some(Parsed::Interim) => continue,
            Some(Parsed::Final(head)) => {
                let framing = framing(method, &head).map_err(Failure::Bad)?;
                let keep_alive = keeps_alive(&head) && !matches!(framing, Framing::Close);
                return Ok((head, framing, keep_alive));
            }
            None => {}
        }
        if conn.buf.len() > MAX_HEAD {
            return Err(Failure::Bad("upstream response head too large".into()));
        }
        match fill(conn).await {
            Ok(0) if !any => {
                return Err(Failure::Early(io::ErrorKind::UnexpectedEof.into()));
            }
            Ok(0) => return Err(Failure::Bad("upstream closed mid-answer".into())),
            Ok(_) => any = true,
            Err(e) if !any => return Err(Failure::Early(e)),
            Err(e) => return Err(Failure::Bad(e.to_string())),
        }
    }
}

enum Parsed {
    /// An interim 1xx answer, taken out of the buffer.
    Interim,
    Final(http::response::Parts),
}

/// Takes one whole response head out of `buf`, if it holds one. The header values share the
/// head's bytes (one frozen slice of the read buffer) rather than being copied one by one.
fn parse_head(buf: &mut BytesMut) -> Result<Option<Parsed>, String> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    let len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(format!("bad response from upstream: {e}")),
    };
    let code = resp.code.unwrap_or(0);
    if (100..200).contains(&code) {
        if code == 101 {
            return Err("upstream switched protocols unasked".into());
        }
        buf.advance(len);
        return Ok(Some(Parsed::Interim));
    }
    let status = StatusCode::from_u16(code).map_err(|_| "bad status from upstream".to_string())?;
    let version = if resp.version == Some(0) {
        Version::HTTP_10
    } else {
        Version::HTTP_11
    };
    // Where each header sits in the buffer, so the buffer can be frozen and sliced once the
    // parser's borrow of it ends.
    let base = buf.as_ptr() as usize;
    let mut at = [(0usize, 0usize, 0usize, 0usize); MAX_HEADERS];
    let count = resp.headers.len();
    for (slot, h) in at.iter_mut().zip(resp.headers.iter()) {
        let name = h.name.as_ptr() as usize - base;
        let value = h.value.as_ptr() as usize - base;
        *slot = (name, h.name.len(), value, h.value.len());
    }
    let head = buf.split_to(len).freeze();
    let mut map = HeaderMap::with_capacity(count);
    for &(name, name_len, value, value_len) in &at[..count] {
        let name = &head[name..name + name_len];
        let name = HeaderName::from_bytes(name).map_err(|_| {
            let shown = String::from_utf8_lossy(name);
            format!("bad header name from upstream: {shown:?}")
        })?;
        let value = HeaderValue::from_maybe_shared(head.slice(value..value + value_len))
            .map_err(|_| format!("bad value of header {name} from upstream"))?;
        map.append(name, value);
    }
    let (mut parts, ()) = http::Response::new(()).into_parts();
    parts.status = status;
    parts.version = version;
    parts.headers = map;
    Ok(Some(Parsed::Final(parts)))
}

/// A response body read from the upstream connection as the client takes it.
pub struct Body {
    /// `None` once the body has ended (the connection given back or closed).
    conn: Option<Conn>,
    framing: Framing,
    keep_alive: bool,
    route: std::sync::Arc<super::HttpRoute>,
}

impl Body {
    fn new(
        conn: Conn,
        framing: Framing,
        keep_alive: bool,
        route: std::sync::Arc<super::HttpRoute>,
    ) -> Self {
        let mut body = Body {
            conn: Some(conn),
            framing,
            keep_alive,
            route,
        };
        if framing == Framing::Empty {
            body.finish();
        }
        body
    }

    /// The body was read to its end: the connection goes back if it can carry another request
    /// (nothing beyond the answer in its buffer, and both sides keep it open).
    fn finish(&mut self) {
        if let Some(conn) = self.conn.take()
            && self.keep_alive
            && conn.buf.is_empty()
        {
            self.route.h1_lean.put(conn);
        }
    }

    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        loop {
            let Some(conn) = self.conn.as_mut() else {
                return Poll::Ready(None);
            };
            match step(&mut self.framing, &mut conn.buf)? {
                Step::Frame(f) => {
                    if self.framing == Framing::Length(0) {
                        self.finish();
                    }
                    return Poll::Ready(Some(Ok(f)));
                }
                Step::End(trailers) => {
                    self.finish();
                    return Poll::Ready(trailers.map(|t| Ok(Frame::trailers(t))));
                }
                Step::More => {}
            }
            let n = ready!(poll_fill(&mut conn.stream, &mut conn.buf, cx))?;
            if n == 0 {
                if self.framing == Framing::Close {
                    self.keep_alive = false;
                    self.finish();
                    return Poll::Ready(None);
                }
                return Poll::Ready(Some(Err("upstream closed mid-body".into())));
            }
        }
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.get_mut().poll_next(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.conn.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        match self.framing {
            Framing::Empty => SizeHint::with_exact(0),
            Framing::Length(n) => SizeHint::with_exact(n),
            _ => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use http_body_util::BodyExt;
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;

    use super::*;
    use crate::http::HttpRoute;

    /// A raw upstream: each request head it reads gets the next canned answer; `true` beside
    /// an answer closes the connection after it. Counts the connections it accepted.
    async fn canned(answers: Vec<(&'static [u8], bool)>) -> (SocketAddr, Arc<AtomicUsize>) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let queue = Arc::new(Mutex::new(VecDeque::from(answers)));
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                let queue = queue.clone();
                tokio::spawn(async move {
                    let mut got = Vec::new();
                    let mut byte = [0u8; 1];
                    loop {
                        while !got.ends_with(b"\r\n\r\n") {
                            if s.read(&mut byte).await.unwrap_or(0) == 0 {
                                return;
                            }
                            got.push(byte[0]);
                        }
                        got.clear();
                        let Some((answer, close)) = queue.lock().unwrap().pop_front() else {
                            return;
                        };
                        s.write_all(answer).await.unwrap();
                        if close {
                            return;
                        }
                    }
                });
            }
        });
        (addr, accepted)
    }

    fn route() -> Arc<HttpRoute> {
        HttpRoute::new(
            crate::route::Protocol::Http,
            Duration::from_secs(2),
            std::time::Instant::now(),
            None,
        )
    }

    async fn get(
        route: &Arc<HttpRoute>,
        addr: SocketAddr,
        method: Method,
    ) -> Result<(StatusCode, Bytes, Option<HeaderMap>), String> {
        let req = http::Request::builder()
            .method(method)
            .uri("/x")
            .header("host", "up")
            .body(())
            .unwrap();
        let (parts, ()) = req.into_parts();
        let dial = Dial {
            addr,
            mark: None,
            connect_timeout: Duration::from_secs(2),
        };
        let (resp, body) = exchange(route, &dial, &parts).await?;
        let collected = body.collect().await.map_err(|e| e.to_string())?;
        let trailers = collected.trailers().cloned();
        Ok((resp.status, collected.to_bytes(), trailers))
    }

    #[tokio::test]
    async fn length_chunked_and_close_delimited_bodies_arrive_whole() {
        let (addr, accepted) = canned(vec![
            (b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello", false),
            (
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nx-sum: 42\r\n\r\n",
                false,
            ),
            (b"HTTP/1.1 200 OK\r\n\r\nuntil the close", true),
        ])
        .await;
        let route = route();
        let (s, body, _) = get(&route, addr, Method::GET).await.unwrap();
        assert_eq!((s, &body[..]), (StatusCode::OK, &b"hello"[..]));
        assert_eq!(route.h1_lean.len(), 1, "back in the pool");
        let (_, body, trailers) = get(&route, addr, Method::GET).await.unwrap();
        assert_eq!(&body[..], b"hello world");
        assert_eq!(trailers.unwrap()["x-sum"], "42");
        let (_, body, _) = get(&route, addr, Method::GET).await.unwrap();
        assert_eq!(&body[..], b"until the close");
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            1,
            "one connection for all three"
        );
        assert_eq!(
            route.h1_lean.len(),
            0,
            "a close-delimited body ends its connection"
        );
    }

    #[tokio::test]
    async fn interim_answers_are_skipped_and_head_204_have_no_body() {
        let (addr, accepted) = canned(vec![
            (
                b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
                false,
            ),
            (b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n", false),
            (b"HTTP/1.1 204 No Content\r\n\r\n", false),
            (b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nend", false),
        ])
        .await;
        let route = route();
        let (s, body, _) = get(&route, addr, Method::GET).await.unwrap();
        assert_eq!((s, &body[..]), (StatusCode::OK, &b"ok"[..]));
        let (s, body, _) = get(&route, addr, Method::HEAD).await.unwrap();
        assert_eq!((s, body.len()), (StatusCode::OK, 0));
        let (s, body, _) = get(&route, addr, Method::GET).await.unwrap();
        assert_eq!((s, body.len()), (StatusCode::NO_CONTENT, 0));
        let (_, body, _) = get(&route, addr, Method::GET).await.unwrap();
        assert_eq!(&body[..], b"end", "the connection was still in step");
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_closed_connection_is_not_reused_and_a_get_on_a_stale_one_is_sent_again() {
        let (addr, accepted) = canned(vec![
            (
                b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 1\r\n\r\na",
                false,
            ),
            // Announced as kept alive, then closed by the upstream right after.
            (b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\nb", true),
            (b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\nc", false),
        ])
        .await;
        let route = route();
        let (_, body, _) = get(&route, addr, Method::GET).await.unwrap();
        assert_eq!(&body[..], b"a");
        assert_eq!(route.h1_lean.len(), 0, "connection: close is honoured");
        let (_, body, _) = get(&route, addr, Method::GET).await.unwrap();
        assert_eq!(&body[..], b"b");
        // The pooled connection is closed at the upstream: taken stale or found closed when
        // written to, either way the GET arrives on a new connection.
        let (_, body, _) = get(&route, addr, Method::GET).await.unwrap();
        assert_eq!(&body[..], b"c");
        assert_eq!(accepted.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn malformed_answers_are_errors_not_panics() {
        for bad in [
            &b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\nhello"[..],
            &b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n"[..],
            &b"NOT HTTP\r\n\r\n"[..],
            &b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\nshort"[..],
        ] {
            let bad: &'static [u8] = Box::leak(bad.to_vec().into_boxed_slice());
            let (addr, _) = canned(vec![(bad, true)]).await;
            let route = route();
            assert!(get(&route, addr, Method::GET).await.is_err(), "{bad:?}");
            assert_eq!(route.h1_lean.len(), 0);
        }
    }
}
