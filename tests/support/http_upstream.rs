//! A small HTTP upstream (HTTP/1.1 and h2c on one port) for end-to-end tests:
//!
//! - `GET /hello` -> 200 `hello`
//! - `GET /bytes/N` -> N bytes of `servers::pattern`
//! - `POST /echo` -> the request body, streamed back
//! - `GET /status/N` -> status N
//! - `GET /upgrade` with `Upgrade: echo` -> 101, then echoes raw bytes
//! - `CONNECT anything` -> 200, then echoes raw bytes (a tunnel)
//!
//! Every response carries `x-upstream-requests: <count>` so tests can tell whether a request
//! reached it, and `x-upstream-connection: <n>`, the number of the connection it came on (the
//! first accepted is 1).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

use super::servers::pattern;

type Body = BoxBody<Bytes, hyper::Error>;

pub struct HttpUpstream {
    pub addr: SocketAddr,
    pub requests: Arc<AtomicU64>,
}

impl HttpUpstream {
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }
}

fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).map_err(|never| match never {}).boxed()
}

async fn serve(
    req: Request<Incoming>,
    count: Arc<AtomicU64>,
    conn: u64,
) -> Result<Response<Body>, Infallible> {
    let n = count.fetch_add(1, Ordering::Relaxed) + 1;
    let path = req.uri().path().to_string();
    let mut resp = if path == "/hello" {
        Response::new(full("hello"))
    } else if let Some(len) = path.strip_prefix("/bytes/") {
        Response::new(full(pattern(len.parse().unwrap_or(0))))
    } else if path == "/echo" {
        Response::new(req.into_body().boxed())
    } else if let Some(code) = path.strip_prefix("/status/") {
        let mut r = Response::new(full(format!("status {code}")));
        *r.status_mut() = StatusCode::from_u16(code.parse().unwrap_or(500))
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        r
    } else if req.method() == http::Method::CONNECT || path == "/upgrade" {
        let req_is_connect = req.method() == http::Method::CONNECT;
        let mut req = req;
        let on = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            if let Ok(up) = on.await {
                let mut io = TokioIo::new(up);
                let (mut r, mut w) = tokio::io::split(&mut io);
                let _ = tokio::io::copy(&mut r, &mut w).await;
            }
        });
        let mut r = Response::new(full(Bytes::new()));
        if !req_is_connect {
            *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
            r.headers_mut()
                .insert("connection", "upgrade".parse().unwrap());
            r.headers_mut().insert("upgrade", "echo".parse().unwrap());
        }
        r
    } else {
        let mut r = Response::new(full("not found"));
        *r.status_mut() = StatusCode::NOT_FOUND;
        r
    };
    resp.headers_mut().insert("x-upstream-requests", n.into());
    resp.headers_mut()
        .insert("x-upstream-connection", conn.into());
    Ok(resp)
}

/// Starts the upstream on a free loopback port.
pub async fn start() -> HttpUpstream {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let requests = Arc::new(AtomicU64::new(0));
    let count = requests.clone();
    tokio::spawn(async move {
        let mut conns = 0;
        while let Ok((s, _)) = l.accept().await {
            let count = count.clone();
            conns += 1;
            let conn = conns;
            tokio::spawn(async move {
                let _ = s.set_nodelay(true);
                let svc = service_fn(move |req| serve(req, count.clone(), conn));
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection_with_upgrades(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    HttpUpstream { addr, requests }
}
