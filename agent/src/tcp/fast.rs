//! The fast path: copy bytes one way with as little work as possible.
//!
//! [`FastCopy`] keeps its buffer and position in itself rather than in a future, so the copy can
//! be interrupted at any await point (a new snapshot arrived) and resumed or handed over to the
//! faulted path without losing a byte.
//!
//! A flow owns no buffer while what it reads is written on at once, as small request/response
//! traffic on loopback is: it reads into its worker thread's scratch buffer and writes from
//! there, and nothing is left in the scratch when the poll returns. Only bytes the destination
//! does not take at once are copied into a buffer of the flow's own (4 KiB), and a read that
//! fills the scratch starts one that doubles up to 256 KiB while reads keep filling it (a bulk
//! stream then moves in few, large system calls). So thousands of idle keep-alive connections
//! hold no buffers, and busy ones share a scratch buffer that stays in cache.
//!
//! When the source has already sent its FIN behind the bytes just read (the event loop saw
//! `EPOLLRDHUP` with them), those bytes go out with `MSG_MORE` and the FIN that follows a moment
//! later carries them: one segment instead of two, and one wake-up of the receiver instead of
//! two. A request/response exchange on a fresh connection (the server answers and closes) ends
//! this way. Only the first few reads of a flow look: on a live connection the check would
//! find the readiness cleared by the short read and register a waiter (a lock) every chunk.

use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, Interest, ReadBuf};
use tokio::net::TcpStream;

use crate::fault::Flow;
use crate::metrics::RouteMetrics;

const INITIAL: usize = 4 * 1024;
const MAX: usize = 256 * 1024;

thread_local! {
    /// The worker thread's read buffer for flows that own none (see the module comment).
    static SCRATCH: RefCell<Box<[u8]>> = RefCell::new(vec![0; INITIAL].into_boxed_slice());
}

pub struct FastCopy {
    flow: Flow,
    buf: Box<[u8]>,
    pos: usize,
    cap: usize,
    /// The source reached EOF (or the flow was finished by the faulted path).
    eof: bool,
    /// EOF was passed on (the destination's write side is shut down).
    pub done: bool,
    /// The source's FIN is queued behind the bytes in the buffer: they are sent with `MSG_MORE`.
    fin_behind: bool,
    /// Reads left that check for a FIN behind them.
    looks: u8,
}

/// Reads of a flow that check for a FIN behind their bytes: a short exchange is over by then.
const LOOKS: u8 = 4;

impl FastCopy {
    pub fn new(flow: Flow) -> Self {
        FastCopy {
            flow,
            buf: Box::default(),
            pos: 0,
            cap: 0,
            eof: false,
            done: false,
            fin_behind: false,
            looks: LOOKS,
        }
    }

    /// Marks the flow as finished elsewhere (the faulted path saw EOF and shut down).
    pub fn finish(&mut self) {
        self.eof = true;
        self.done = true;
    }

    /// Writes out whatever was read but not yet written.
    pub async fn flush_pending(&mut self, w: &mut TcpStream, m: &RouteMetrics) -> io::Result<()> {
        if self.pos < self.cap {
            w.write_all(&self.buf[self.pos..self.cap]).await?;
            m.add_bytes(self.flow, self.cap - self.pos);
            self.pos = self.cap;
        }
        Ok(())
    }

    /// Copies until EOF (then shuts down the destination's write side) or an error.
    ///
    /// `closing`: the opposite flow has already ended, so the connection is closed as soon as
    /// this one ends. Its EOF is then not passed on with a `shutdown(2)`: closing the socket a
    /// moment later sends the same FIN, and a connection-per-request workload saves a system
    /// call per connection. (Nothing is left unread on either socket at that point, so the
    /// close sends a FIN, not a RST.)
    pub fn poll_copy(
        &mut self,
        cx: &mut Context<'_>,
        r: &mut TcpStream,
        w: &mut TcpStream,
        m: &RouteMetrics,
        closing: bool,
    ) -> Poll<io::Result<()>> {
        if self.done {
            return Poll::Ready(Ok(()));
        }
        loop {
            if self.pos == self.cap && !self.eof {
                // A buffer of the flow's own that only held a stalled remainder goes back; a
                // bulk stream's (grown) buffer stays.
                if self.buf.len() == INITIAL {
                    self.buf = Box::default();
                }
                if self.buf.is_empty() {
                    ready!(SCRATCH.with_borrow_mut(|s| self.poll_through(cx, r, w, m, s)))?;
                } else {
                    let mut rb = ReadBuf::new(&mut self.buf);
                    ready!(Pin::new(&mut *r).poll_read(cx, &mut rb))?;
                    let n = rb.filled().len();
                    if n == 0 {
                        self.eof = true;
                    } else {
                        self.pos = 0;
                        self.cap = n;
                        self.fin_behind = n < self.buf.len() && self.look_for_fin(r, cx);
                    }
                }
            }
            while self.pos < self.cap {
                let chunk = &self.buf[self.pos..self.cap];
                let n = ready!(poll_write(w, cx, chunk, self.fin_behind))?;
                self.pos += n;
                m.add_bytes(self.flow, n);
            }
            if self.eof {
                if !closing {
                    ready!(Pin::new(&mut *w).poll_shutdown(cx))?;
                }
                self.done = true;
                return Poll::Ready(Ok(()));
            }
            // A read that filled the whole buffer suggests a bulk stream: grow.
            if !self.buf.is_empty() && self.cap == self.buf.len() && self.buf.len() < MAX {
                self.buf = vec![0; self.buf.len() * 2].into_boxed_slice();
                self.pos = 0;
                self.cap = 0;
            }
        }
    }

    /// Whether the source's FIN is already behind a short read, checked on the flow's first
    /// [`LOOKS`] reads only.
    fn look_for_fin(&mut self, r: &TcpStream, cx: &mut Context<'_>) -> bool {
        self.looks > 0 && {
            self.looks -= 1;
            read_closed(r, cx)
        }
    }

    /// Reads into `scratch` and writes on at once. What the destination does not take, and a
    /// read that filled `scratch` (a bulk stream starting), moves into a buffer of the flow's
    /// own; nothing stays in `scratch` once this returns.
    fn poll_through(
        &mut self,
        cx: &mut Context<'_>,
        r: &mut TcpStream,
        w: &mut TcpStream,
        m: &RouteMetrics,
        scratch: &mut [u8],
    ) -> Poll<io::Result<()>> {
        let mut rb = ReadBuf::new(scratch);
        ready!(Pin::new(&mut *r).poll_read(cx, &mut rb))?;
        let n = rb.filled().len();
        if n == 0 {
            self.eof = true;
            return Poll::Ready(Ok(()));
        }
        let full = n == scratch.len();
        let fin_behind = !full && self.look_for_fin(r, cx);
        let mut sent = 0;
        while sent < n {
            let Poll::Ready(k) = poll_write(w, cx, &scratch[sent..n], fin_behind) else {
                break;
            };
            let k = k?;
            sent += k;
            m.add_bytes(self.flow, k);
        }
        if sent < n || full {
            let mut own = vec![0; if full { 2 * INITIAL } else { INITIAL }].into_boxed_slice();
            own[..n - sent].copy_from_slice(&scratch[sent..n]);
            self.buf = own;
            self.pos = 0;
            self.cap = n - sent;
            self.fin_behind = fin_behind;
        }
        Poll::Ready(Ok(()))
    }
}

/// One write of `chunk` to `w`, with `MSG_MORE` when the source's FIN is behind it; a write of
/// nothing is an error.
fn poll_write(
    w: &mut TcpStream,
    cx: &mut Context<'_>,
    chunk: &[u8],
    fin_behind: bool,
) -> Poll<io::Result<usize>> {
    let n = if fin_behind {
        ready!(poll_send_more(w, cx, chunk))?
    } else {
        ready!(Pin::new(&mut *w).poll_write(cx, chunk))?
    };
    if n == 0 {
        return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
    }
    Poll::Ready(Ok(n))
}

/// Whether `s` has seen its peer's FIN (`EPOLLRDHUP` reported with its readable data): after a
/// read that did not fill the buffer, the next read returns end of stream. No system call: a
/// load of the readiness Tokio already has when the FIN is there; otherwise (the short read
/// cleared the readiness) the poll registers a waiter, which dropping the future removes, a
/// lock each, hence the few `LOOKS`.
fn read_closed(s: &TcpStream, cx: &mut Context<'_>) -> bool {
    let ready = std::pin::pin!(s.ready(Interest::READABLE));
    matches!(ready.poll(cx), Poll::Ready(Ok(r)) if r.is_read_closed())
}

/// `send(2)` with `MSG_MORE`: the kernel holds a partial segment until the next send, the
/// shutdown or the close that the caller makes next.
fn poll_send_more(s: &TcpStream, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
    loop {
        ready!(s.poll_write_ready(cx))?;
        let sent = s.try_io(Interest::WRITABLE, || {
            socket2::SockRef::from(s).send_with_flags(buf, libc::MSG_MORE | libc::MSG_NOSIGNAL)
        });
        match sent {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            r => return Poll::Ready(r),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::future::poll_fn;

    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;

    use super::*;

    async fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let a = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (b, _) = l.accept().await.unwrap();
        (a, b)
    }

    /// A small read the destination cannot take moves into a 4 KiB buffer of the flow's own,
    /// goes out once the destination drains, and the buffer is given back afterwards.
    #[tokio::test]
    async fn what_a_stalled_destination_does_not_take_waits_in_the_flows_own_buffer() {
        let m = RouteMetrics::default();
        let (mut src_w, mut src_r) = pair().await;
        let (mut dst_w, mut dst_r) = pair().await;
        // Fill the destination until it takes nothing more.
        let mut filled = 0usize;
        loop {
            match dst_w.try_write(&[7u8; 65536]) {
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("{e}"),
            }
        }
        src_w.write_all(&[1u8; 1000]).await.unwrap();
        src_r.readable().await.unwrap();

        let mut copy = FastCopy::new(Flow::Upstream);
        let first =
            poll_fn(|cx| Poll::Ready(copy.poll_copy(cx, &mut src_r, &mut dst_w, &m, false))).await;
        assert!(first.is_pending());
        assert_eq!(
            copy.buf.len(),
            INITIAL,
            "the remainder has a buffer of its own"
        );
        assert_eq!(copy.cap - copy.pos, 1000);

        // The destination drains; the rest follows, then a second small chunk and the FIN.
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            dst_r.read_to_end(&mut got).await.unwrap();
            got
        });
        src_w.write_all(&[2u8; 500]).await.unwrap();
        src_w.shutdown().await.unwrap();
        poll_fn(|cx| copy.poll_copy(cx, &mut src_r, &mut dst_w, &m, false))
            .await
            .unwrap();
        assert!(copy.buf.is_empty(), "given back once drained");
        let got = reader.await.unwrap();
        assert_eq!(got.len(), filled + 1500);
        assert!(got[..filled].iter().all(|&b| b == 7));
        assert!(got[filled..filled + 1000].iter().all(|&b| b == 1));
        assert!(got[filled + 1000..].iter().all(|&b| b == 2));
    }
}
