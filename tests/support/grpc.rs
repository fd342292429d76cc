//! A gRPC upstream: the `faultline.testing.Echo` service from faultline-proto, served by tonic
//! over HTTP/2 cleartext on a free loopback port, counting the calls that reach it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use faultline_proto::testing::echo_server::{Echo, EchoServer};
use faultline_proto::testing::{EchoReply, EchoRequest, StreamRequest};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};

/// A running Echo server. Its task lives for the test (it ends with the test's runtime).
pub struct Upstream {
    pub addr: SocketAddr,
    calls: Arc<Calls>,
}

impl Upstream {
    /// How many `Unary` calls have reached the server.
    pub fn unary_calls(&self) -> usize {
        self.calls.unary.load(Ordering::Relaxed)
    }

    /// How many `ServerStream` calls have reached the server.
    pub fn stream_calls(&self) -> usize {
        self.calls.stream.load(Ordering::Relaxed)
    }
}

/// Starts the Echo server on 127.0.0.1, port 0. The socket listens before this returns, so a
/// client may connect at once.
pub async fn echo() -> Upstream {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let calls = Arc::new(Calls::default());
    let service = EchoService {
        calls: calls.clone(),
    };
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(EchoServer::new(service))
            // No Nagle: a reply must not wait ~40 ms for the client's delayed ACK of the
            // response headers, or timings through the proxy would measure that instead.
            .serve_with_incoming(TcpIncoming::from(listener).with_nodelay(Some(true)))
            .await
            .expect("the test Echo server stops only with the test");
    });
    Upstream { addr, calls }
}

/// Call counters, shared by the service and the test (atomics: read while calls run).
#[derive(Default)]
struct Calls {
    unary: AtomicUsize,
    stream: AtomicUsize,
}

// === impl EchoService ===

struct EchoService {
    calls: Arc<Calls>,
}

#[tonic::async_trait]
impl Echo for EchoService {
    async fn unary(&self, req: Request<EchoRequest>) -> Result<Response<EchoReply>, Status> {
        self.calls.unary.fetch_add(1, Ordering::Relaxed);
        Ok(Response::new(EchoReply {
            message: req.into_inner().message,
            sequence: 0,
        }))
    }

    type ServerStreamStream = ReceiverStream<Result<EchoReply, Status>>;

    /// Sends `count` replies, `interval_ms` apart, from a task; the bounded channel makes the
    /// task wait for the client (through the proxy) to take each reply.
    async fn server_stream(
        &self,
        req: Request<StreamRequest>,
    ) -> Result<Response<Self::ServerStreamStream>, Status> {
        self.calls.stream.fetch_add(1, Ordering::Relaxed);
        let StreamRequest {
            message,
            count,
            interval_ms,
        } = req.into_inner();
        let interval = Duration::from_millis(u64::from(interval_ms));
        let (tx, rx) = mpsc::channel(1);
        tokio::spawn(async move {
            for sequence in 0..count {
                if sequence > 0 && !interval.is_zero() {
                    tokio::time::sleep(interval).await;
                }
                let reply = EchoReply {
                    message: message.clone(),
                    sequence,
                };
                if tx.send(Ok(reply)).await.is_err() {
                    break; // the client went away (or the proxy reset the stream)
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}
