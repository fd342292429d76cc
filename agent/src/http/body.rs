//! Response bodies: the upstream's body streamed through untouched, a fixed body for injected
//! answers, or a faulted body that throttles, resets mid-way, or cuts and delays gRPC messages.

use std::collections::VecDeque;
use std::error::Error as StdError;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::time::{Instant, Sleep};

use super::grpc::{self, Framer};
use super::pool::Checkout;
use crate::fault::bandwidth::TokenBucket;
use crate::fault::http::{Arm, GrpcStream, StreamAction};
use crate::metrics::RouteMetrics;

pub type BoxError = Box<dyn StdError + Send + Sync>;

/// An error a fault injects into a response stream (HTTP/1: the connection is dropped;
/// HTTP/2: the stream is reset).
#[derive(Debug)]
pub struct InjectedReset;

impl std::fmt::Display for InjectedReset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("reset injected by faultline")
    }
}

impl StdError for InjectedReset {}

/// Records the gRPC status a response ends with (from its trailers).
#[derive(Debug)]
pub struct GrpcStatusObserver {
    pub metrics: Arc<RouteMetrics>,
    pub injected: bool,
    /// The request's cohort arm, counted besides the route.
    pub arm: Arm,
}

impl GrpcStatusObserver {
    fn trailers(&self, t: &HeaderMap) {
        if let Some(code) = grpc::status_of(t) {
            self.metrics.recorder(self.arm).grpc(code, self.injected);
        }
    }
}

pub enum ProxyBody {
    /// An injected or locally generated answer.
    Full(Option<Bytes>),
    /// Trailers only (a status that ends a gRPC stream with no body).
    Empty,
    /// The upstream's body, untouched (gRPC statuses observed on the way). `checkout`: the
    /// pooled HTTP/1.1 connection it comes on, back to its pool when this body is dropped.
    Upstream {
        inner: Incoming,
        grpc: Option<GrpcStatusObserver>,
        checkout: Option<Checkout>,
    },
    /// The upstream's body under faults, and its connection's checkout as above.
    Faulted(Box<FaultedBody>, Option<Checkout>),
    /// The upstream's body as this task reads it from the connection (`client1`).
    Lean(super::client1::Body),
}

impl ProxyBody {
    pub fn full(b: impl Into<Bytes>) -> Self {
        ProxyBody::Full(Some(b.into()))
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            ProxyBody::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            ProxyBody::Empty => Poll::Ready(None),
            ProxyBody::Upstream { inner, grpc, .. } => {
                let frame = ready!(Pin::new(inner).poll_frame(cx));
                if let (Some(Ok(f)), Some(obs)) = (&frame, grpc.as_ref())
                    && let Some(t) = f.trailers_ref()
                {
                    obs.trailers(t);
                }
                Poll::Ready(frame.map(|r| r.map_err(Into::into)))
            }
            ProxyBody::Faulted(f, _) => f.poll(cx),
            ProxyBody::Lean(b) => Pin::new(b).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ProxyBody::Full(b) => b.is_none(),
            ProxyBody::Empty => true,
            ProxyBody::Upstream { inner, .. } => inner.is_end_stream(),
            ProxyBody::Faulted(..) => false,
            ProxyBody::Lean(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ProxyBody::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            ProxyBody::Full(None) | ProxyBody::Empty => SizeHint::with_exact(0),
            ProxyBody::Upstream { inner, .. } => inner.size_hint(),
            ProxyBody::Faulted(..) => SizeHint::default(),
            ProxyBody::Lean(b) => b.size_hint(),
        }
    }
}

/// A gRPC stream fault's progress.
struct StreamFault {
    fault: GrpcStream,
    framer: Framer,
    messages: u64,
    deadline: Option<Pin<Box<Sleep>>>,
    /// The next piece starts a message that has not been delayed yet.
    delay: Option<Pin<Box<Sleep>>>,
}

pub struct FaultedBody {
    inner: Incoming,
    grpc: Option<GrpcStatusObserver>,
    throttle: Option<(TokenBucket, Option<Pin<Box<Sleep>>>)>,
    reset_after: Option<u64>,
    stream: Option<StreamFault>,
    sent: u64,
    /// Pieces read from upstream and not yet sent: (data, starts a message, ends a message).
    pending: VecDeque<(Bytes, bool, bool)>,
    /// Set once an action has ended the stream, or the upstream ended it.
    done: bool,
    /// Trailers from upstream, sent after the pending data.
    trailers: Option<HeaderMap>,
    /// The pause between the last byte and a mid-response reset.
    reset_flush: Option<Pin<Box<Sleep>>>,
}

/// How long a mid-response reset waits after the last byte it lets through.
const RESET_FLUSH: std::time::Duration = std::time::Duration::from_millis(20);

impl FaultedBody {
    pub fn new(
        inner: Incoming,
        grpc: Option<GrpcStatusObserver>,
        throttle: Option<u64>,
        reset_after: Option<u64>,
        stream: Option<GrpcStream>,
    ) -> Self {
        let now = Instant::now();
        FaultedBody {
            inner,
            grpc,
            throttle: throttle.map(|rate| (TokenBucket::new(rate, now), None)),
            reset_after,
            stream: stream.map(|fault| StreamFault {
                deadline: fault
                    .after
                    .map(|d| Box::pin(tokio::time::sleep_until(now + d))),
                fault,
                framer: Framer::default(),
                messages: 0,
                delay: None,
            }),
            sent: 0,
            pending: VecDeque::new(),
            done: false,
            trailers: None,
            reset_flush: None,
        }
    }

    /// Ends the stream cleanly with a gRPC status, as a gRPC stream fault says.
    fn end_with_status(
        &mut self,
        code: u8,
        message: &str,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.done = true;
        if let Some(obs) = &self.grpc {
            obs.metrics.recorder(obs.arm).grpc(code, true);
        }
        Poll::Ready(Some(Ok(Frame::trailers(grpc::status_trailers(
            code, message,
        )))))
    }

    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if self.done {
            return Poll::Ready(None);
        }
        // A timed stream fault acts whether or not data is flowing.
        if let Some(s) = &mut self.stream {
            let timed_out = s
                .deadline
                .as_mut()
                .is_some_and(|d| d.as_mut().poll(cx).is_ready());
            let counted_out = s.fault.after_messages.is_some_and(|n| s.messages >= n);
            if timed_out || counted_out {
                match s.fault.action.clone() {
                    // A reset goes through the same path as a mid-response reset: what was
                    // already sent reaches the client first.
                    Some(StreamAction::Reset) => {
                        self.reset_after = Some(self.sent);
                        self.stream = None;
                    }
                    Some(StreamAction::Status { code, message }) => {
                        return self.end_with_status(code, &message);
                    }
                    None => {}
                }
            }
        }
        if let Some(limit) = self.reset_after
            && self.sent >= limit
        {
            // Let what was sent reach the wire first: an HTTP/2 RST_STREAM discards the
            // stream's queued frames, head included.
            let flush = self
                .reset_flush
                .get_or_insert_with(|| Box::pin(tokio::time::sleep(RESET_FLUSH)));
            if flush.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            self.done = true;
            if let Some(obs) = &self.grpc {
                obs.metrics.recorder(obs.arm).reset(true);
            }
            return Poll::Ready(Some(Err(Box::new(InjectedReset))));
        }
        loop {
            if let Some((data, starts, ends)) = self.pending.pop_front() {
                return self.send_piece(cx, data, starts, ends);
            }
            if let Some(t) = self.trailers.take() {
                self.done = true;
                return Poll::Ready(Some(Ok(Frame::trailers(t))));
            }
            match ready!(Pin::new(&mut self.inner).poll_frame(cx)) {
                None => {
                    self.done = true;
                    return Poll::Ready(None);
                }
                Some(Err(e)) => return Poll::Ready(Some(Err(e.into()))),
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => match &mut self.stream {
                        Some(s) => {
                            for p in s.framer.split(data) {
                                self.pending
                                    .push_back((p.data, p.starts_message, p.ends_message));
                            }
                        }
                        None => self.pending.push_back((data, false, false)),
                    },
                    Err(frame) => {
                        if let Ok(t) = frame.into_trailers() {
                            if let Some(obs) = &self.grpc {
                                obs.trailers(&t);
                            }
                            self.trailers = Some(t);
                        }
                    }
                },
            }
        }
    }

    /// Sends (part of) a piece, after any message delay and throttle wait.
    fn send_piece(
        &mut self,
        cx: &mut Context<'_>,
        mut data: Bytes,
        starts: bool,
        ends: bool,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        // Message delay: wait before the first piece of each message.
        if let Some(s) = &mut self.stream
            && starts
            && !s.fault.message_delay.is_zero()
        {
            let sleep = s
                .delay
                .get_or_insert_with(|| Box::pin(tokio::time::sleep(s.fault.message_delay)));
            if sleep.as_mut().poll(cx).is_pending() {
                self.pending.push_front((data, starts, ends));
                return Poll::Pending;
            }
            s.delay = None;
        }
        // Throttle: wait for tokens, sending at most a bucket's worth at once.
        if let Some((bucket, wait)) = &mut self.throttle {
            if let Some(w) = wait {
                // This piece's tokens are paid for; send it once the wait is over.
                if w.as_mut().poll(cx).is_pending() {
                    self.pending.push_front((data, false, ends));
                    return Poll::Pending;
                }
                *wait = None;
            } else {
                let n = data.len().min(bucket.max_write());
                let rest = data.split_off(n);
                let head_ends = ends && rest.is_empty();
                if !rest.is_empty() {
                    self.pending.push_front((rest, false, ends));
                }
                let pause = bucket.take(n, Instant::now());
                if !pause.is_zero() {
                    let mut sleep = Box::pin(tokio::time::sleep(pause));
                    if sleep.as_mut().poll(cx).is_pending() {
                        self.pending.push_front((data, false, head_ends));
                        *wait = Some(sleep);
                        return Poll::Pending;
                    }
                }
                return self.emit(data, head_ends);
            }
        }
        self.emit(data, ends)
    }

    fn emit(
        &mut self,
        mut data: Bytes,
        ends: bool,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(limit) = self.reset_after {
            let left = limit.saturating_sub(self.sent);
            if (data.len() as u64) > left {
                data.truncate(left as usize);
                self.pending.clear();
            }
        }
        self.sent += data.len() as u64;
        if ends && let Some(s) = &mut self.stream {
            s.messages += 1;
        }
        Poll::Ready(Some(Ok(Frame::data(data))))
    }
}
