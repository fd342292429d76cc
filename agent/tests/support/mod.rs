//! What the agent's end-to-end tests stand on: a controller the test plays message by message
//! (a tonic `AgentService` on 127.0.0.1:0 handing each `Connect` stream to the test), a minimal
//! HTTP/1.1 upstream, and a one-request HTTP client over a real socket.

#![allow(dead_code)] // each test binary uses its own part

use std::net::SocketAddr;
use std::time::Duration;

use faultline_proto::prost_types;
use faultline_proto::v1;
use faultline_proto::v1::agent_service_server::{AgentService, AgentServiceServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::timeout;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status, Streaming};

/// How long a test waits for any one message or connection.
pub const PATIENCE: Duration = Duration::from_secs(5);

// === the test's controller ===

/// One `Connect` stream, from the controller's side.
pub struct Peer {
    pub inbound: Streaming<v1::AgentMessage>,
    pub outbound: mpsc::Sender<Result<v1::ControllerMessage, Status>>,
}

impl Peer {
    /// The next message, within `within`; `None` if none came.
    pub async fn recv_within(&mut self, within: Duration) -> Option<v1::agent_message::Body> {
        let msg = timeout(within, self.inbound.message()).await.ok()?;
        Some(
            msg.expect("the stream is healthy")
                .expect("the stream is open")
                .body
                .expect("the message has a body"),
        )
    }

    pub async fn recv(&mut self) -> v1::agent_message::Body {
        self.recv_within(PATIENCE)
            .await
            .expect("a message from the agent in time")
    }

    pub async fn hello(&mut self) -> v1::Hello {
        match self.recv().await {
            v1::agent_message::Body::Hello(h) => h,
            other => panic!("expected Hello first, got {other:?}"),
        }
    }

    /// The next `Ack`, skipping heartbeats (a silent controller answers none).
    pub async fn ack(&mut self) -> v1::Ack {
        self.next_ack(false).await
    }

    /// The next `Ack`, answering heartbeats that come before it (a live controller renews the
    /// lease with each answer).
    pub async fn ack_answering_heartbeats(&mut self) -> v1::Ack {
        self.next_ack(true).await
    }

    async fn next_ack(&mut self, answer_heartbeats: bool) -> v1::Ack {
        loop {
            match self.recv().await {
                v1::agent_message::Body::Ack(a) => return a,
                v1::agent_message::Body::Heartbeat(_) if answer_heartbeats => {
                    self.send(controller_heartbeat()).await
                }
                v1::agent_message::Body::Heartbeat(_) => {}
                other => panic!("expected an Ack, got {other:?}"),
            }
        }
    }

    /// The next message, which must be a heartbeat.
    pub async fn heartbeat(&mut self) -> v1::AgentHeartbeat {
        match self.recv().await {
            v1::agent_message::Body::Heartbeat(h) => h,
            other => panic!("expected a heartbeat, got {other:?}"),
        }
    }

    /// The next `LocalGuardTrip`, skipping heartbeats.
    pub async fn local_trip(&mut self) -> v1::LocalGuardTrip {
        loop {
            match self.recv().await {
                v1::agent_message::Body::LocalTrip(t) => return t,
                v1::agent_message::Body::Heartbeat(_) => {}
                other => panic!("expected a LocalGuardTrip, got {other:?}"),
            }
        }
    }

    pub async fn send(&self, body: v1::controller_message::Body) {
        self.outbound
            .send(Ok(v1::ControllerMessage { body: Some(body) }))
            .await
            .expect("the stream to the agent is open");
    }
}

/// Hands every `Connect` stream to the test.
struct TestController {
    peers: mpsc::Sender<Peer>,
}

#[tonic::async_trait]
impl AgentService for TestController {
    type ConnectStream = ReceiverStream<Result<v1::ControllerMessage, Status>>;

    async fn connect(
        &self,
        request: Request<Streaming<v1::AgentMessage>>,
    ) -> Result<Response<Self::ConnectStream>, Status> {
        let (outbound, rx) = mpsc::channel(16);
        self.peers
            .send(Peer {
                inbound: request.into_inner(),
                outbound,
            })
            .await
            .map_err(|_| Status::unavailable("the test is over"))?;
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

/// Starts the controller on 127.0.0.1, port 0; returns its address and the streams it accepts.
pub async fn controller() -> (SocketAddr, mpsc::Receiver<Peer>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (peers, rx) = mpsc::channel(4);
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(AgentServiceServer::new(TestController { peers }))
            .serve_with_incoming(TcpIncoming::from(listener).with_nodelay(Some(true)))
            .await
            .expect("the test controller stops only with the test");
    });
    (addr, rx)
}

/// The next stream the agent opens, within `PATIENCE`.
pub async fn next_peer(peers: &mut mpsc::Receiver<Peer>) -> Peer {
    next_peer_within(peers, PATIENCE).await
}

/// The next stream the agent opens, within `within`.
pub async fn next_peer_within(peers: &mut mpsc::Receiver<Peer>, within: Duration) -> Peer {
    timeout(within, peers.recv())
        .await
        .unwrap_or_else(|_| panic!("the agent did not connect within {within:?}"))
        .expect("the controller runs")
}

/// The controller's answer to a heartbeat, which renews the lease.
pub fn controller_heartbeat() -> v1::controller_message::Body {
    v1::controller_message::Body::Heartbeat(v1::ControllerHeartbeat {
        sent_at: Some(std::time::SystemTime::now().into()),
    })
}

pub fn duration(d: Duration) -> prost_types::Duration {
    prost_types::Duration {
        seconds: d.as_secs() as i64,
        nanos: d.subsec_nanos() as i32,
    }
}

// === HTTP ===

/// A minimal HTTP/1.1 upstream: answers every request `200 ok` and closes.
pub async fn http_upstream() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = s
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                    )
                    .await;
            });
        }
    });
    addr
}

/// One HTTP/1.1 request to `addr`; returns the response's status code.
pub async fn http_get(addr: SocketAddr) -> u16 {
    let response = http_response(addr).await;
    response
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("a status line, got {response:?}"))
}

/// One HTTP/1.1 request to `addr`; returns the response's status line.
pub async fn http_status_line(addr: SocketAddr) -> String {
    let response = http_response(addr).await;
    response.lines().next().unwrap_or_default().to_owned()
}

/// One HTTP/1.1 request to `addr` with the header `name: value`; returns the status code.
pub async fn http_get_with(addr: SocketAddr, name: &str, value: &str) -> u16 {
    let response = http_request(addr, &format!("{name}: {value}\r\n")).await;
    response
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("a status line, got {response:?}"))
}

/// One HTTP/1.1 request to `addr`; returns the whole response, read until the upstream closes.
async fn http_response(addr: SocketAddr) -> String {
    http_request(addr, "").await
}

/// One HTTP/1.1 request to `addr` with `extra` header lines; returns the whole response.
async fn http_request(addr: SocketAddr, extra: &str) -> String {
    let mut s = TcpStream::connect(addr)
        .await
        .expect("connect to the route");
    s.write_all(
        format!("GET / HTTP/1.1\r\nhost: test\r\n{extra}connection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut response = String::new();
    s.read_to_string(&mut response).await.unwrap();
    response
}

/// An agent with an `http` route per name in `routes`, each to `upstream`, connected to the
/// test controller at `controller` as `agent-1`.
pub async fn http_agent(
    controller: SocketAddr,
    upstream: SocketAddr,
    routes: &[&str],
) -> faultline_agent::app::Agent {
    use faultline_agent::config::{AgentConfig, ControllerConfig};
    use faultline_agent::route::{Protocol, RouteSpec, Upstream};
    let routes = routes
        .iter()
        .map(|name| {
            let mut r = RouteSpec::tcp(*name, "127.0.0.1:0", Upstream::Addr(upstream));
            r.protocol = Protocol::Http;
            r
        })
        .collect();
    let config = AgentConfig {
        routes,
        controller: Some(
            ControllerConfig::new(
                &format!("http://{controller}"),
                "agent-1",
                Default::default(),
            )
            .expect("valid controller settings"),
        ),
        ..AgentConfig::embedded()
    };
    faultline_agent::app::Agent::start(&config)
        .await
        .expect("agent starts")
}
