//! The fast path: copy bytes one way with as little work as possible.
//!
//! [`FastCopy`] keeps its buffer and position in itself rather than in a future, so the copy can
//! be interrupted at any await point (a new snapshot arrived) and resumed or handed over to the
//! faulted path without losing a byte. The buffer starts small (4 KiB, so thousands of idle
//! keep-alive connections stay cheap) and doubles up to 256 KiB while reads keep filling it (a
//! bulk stream then moves in few, large system calls).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};

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
}

impl FastCopy {
    pub fn new(flow: Flow) -> Self {
        FastCopy {
            flow,
            buf: Box::default(),
            pos: 0,
            cap: 0,
            eof: false,
            done: false,
        }
    }

    /// Marks the flow as finished elsewhere (the faulted path saw EOF and shut down).
    pub fn finish(&mut self) {
        self.eof = true;
        self.done = true;
    }

    /// Writes out whatever was read but not yet written.
    pub async fn flush_pending<W: AsyncWrite + Unpin>(
        &mut self,
        w: &mut W,
        m: &RouteMetrics,
    ) -> io::Result<()> {
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
    pub fn poll_copy<R, W>(
        &mut self,
        cx: &mut Context<'_>,
        mut r: Pin<&mut R>,
        mut w: Pin<&mut W>,
        m: &RouteMetrics,
        closing: bool,
    ) -> Poll<io::Result<()>>
    where
        R: AsyncRead + ?Sized,
        W: AsyncWrite + ?Sized,
    {
        if self.done {
            return Poll::Ready(Ok(()));
        }
        loop {
            if self.pos == self.cap && !self.eof {
                if self.buf.is_empty() {
                    self.buf = vec![0; INITIAL].into_boxed_slice();
                }
                let mut rb = ReadBuf::new(&mut self.buf);
                ready!(r.as_mut().poll_read(cx, &mut rb))?;
                let n = rb.filled().len();
                if n == 0 {
                    self.eof = true;
                } else {
                    self.pos = 0;
                    self.cap = n;
                }
            }
            while self.pos < self.cap {
                let n = ready!(w.as_mut().poll_write(cx, &self.buf[self.pos..self.cap]))?;
                if n == 0 {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                self.pos += n;
                m.add_bytes(self.flow, n);
            }
            if self.eof {
                if !closing {
                    ready!(w.as_mut().poll_shutdown(cx))?;
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
