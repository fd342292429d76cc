//! The fast path: copy bytes one way with as little work as possible.
//!
//! [`FastCopy`] keeps its buffer and position in itself rather than in a future, so the copy can
//! be interrupted at any await point (a new snapshot arrived) and resumed or handed over to the
//! faulted path without losing a byte. The buffer starts small (4 KiB, so thousands of idle
//! keep-alive connections stay cheap) and doubles up to 256 KiB while reads keep filling it (a
//! bulk stream then moves in few, large system calls).
//!
//! When the source has already sent its FIN behind the bytes just read (the event loop saw
//! `EPOLLRDHUP` with them), those bytes go out with `MSG_MORE` and the FIN that follows a moment
//! later carries them: one segment instead of two, and one wake-up of the receiver instead of
//! two. A request/response exchange on a fresh connection (the server answers and closes) ends
//! this way. Only the first few reads of a flow look: on a live connection the check would
//! find the readiness cleared by the short read and register a waiter (a lock) every chunk.

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
                if self.buf.is_empty() {
                    self.buf = vec![0; INITIAL].into_boxed_slice();
                }
                let mut rb = ReadBuf::new(&mut self.buf);
                ready!(Pin::new(&mut *r).poll_read(cx, &mut rb))?;
                let n = rb.filled().len();
                if n == 0 {
                    self.eof = true;
                } else {
                    self.pos = 0;
                    self.cap = n;
                    self.fin_behind = self.looks > 0 && n < self.buf.len() && {
                        self.looks -= 1;
                        read_closed(r, cx)
                    };
                }
            }
            while self.pos < self.cap {
                let chunk = &self.buf[self.pos..self.cap];
                let n = if self.fin_behind {
                    ready!(poll_send_more(w, cx, chunk))?
                } else {
                    ready!(Pin::new(&mut *w).poll_write(cx, chunk))?
                };
                if n == 0 {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
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
            if self.cap == self.buf.len() && self.buf.len() < MAX {
                self.buf = vec![0; self.buf.len() * 2].into_boxed_slice();
                self.pos = 0;
                self.cap = 0;
            }
        }
    }
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
