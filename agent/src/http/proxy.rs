//! One request: choose its faults, apply them around the upstream call, stream the answer.

use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;

use http::{HeaderValue, Method, Request, Response, StatusCode, Uri, Version};
use hyper::body::{Body as _, Incoming};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::time::Instant;

use super::HttpRoute;
use super::body::{BoxError, FaultedBody, GrpcStatusObserver, InjectedReset, ProxyBody};
use super::pool::{Checkout, Upstream1};
use super::select::{self, BadHeader, Chosen, Terminal};
use super::{client1, grpc, headers, upgrade};
use crate::route::{Protocol, RouteSnapshot, RouteState};

/// What the requests of one client connection share.
pub struct ConnState {
    pub current: Arc<ArcSwap<RouteSnapshot>>,
    pub route: Arc<HttpRoute>,
    /// The connection's original destination, when it was captured.
    original: Option<SocketAddr>,
}

impl ConnState {
    pub fn new(
        current: Arc<ArcSwap<RouteSnapshot>>,
        route: Arc<HttpRoute>,
        original: Option<SocketAddr>,
    ) -> Self {
        ConnState {
            current,
            route,
            original,
        }
    }

    /// `HOST:PORT` of the upstream for the pooled HTTP/2 client.
    fn authority(&self, snap: &RouteSnapshot) -> String {
        match (&snap.upstream, self.original) {
            (crate::route::Upstream::Original, Some(a)) => a.to_string(),
            (up, _) => up.to_string(),
        }
    }

    /// Sends an HTTP/1.1 request on an idle upstream connection of the worker's pool, or on a
    /// new one, which goes back to the pool when the returned [`Checkout`] is dropped: the
    /// response body holds it.
    async fn send_h1(
        &self,
        snap: &RouteSnapshot,
        req: Request<Incoming>,
    ) -> Result<(Response<Incoming>, Checkout), String> {
        let addr = snap
            .upstream
            .resolve(self.original)
            .await
            .map_err(|e| e.to_string())?;
        let mut up = match self.route.h1.take(addr) {
            Some(u) => u,
            None => self.connect_h1(addr).await?,
        };
        if up.sender.ready().await.is_err() {
            up = self.connect_h1(addr).await?;
            up.sender.ready().await.map_err(|e| e.to_string())?;
        }
        let call = up.sender.send_request(req);
        let checkout = Checkout::new(self.route.clone(), up);
        let resp = call.await.map_err(|e| e.to_string())?;
        Ok((resp, checkout))
    }

    /// Sends an HTTP/1.1 request without a body from this task ([`client1`]).
    async fn send_lean(
        &self,
        snap: &RouteSnapshot,
        parts: &http::request::Parts,
    ) -> Result<Upstream, String> {
        let addr = snap
            .upstream
            .resolve(self.original)
            .await
            .map_err(|e| e.to_string())?;
        let dial = client1::Dial {
            addr,
            mark: self.route.mark,
            connect_timeout: self.route.connect_timeout,
        };
        let (parts, body) = client1::exchange(&self.route, &dial, parts).await?;
        Ok((parts, UpstreamBody::Lean(body), None))
    }

    async fn connect_h1(&self, addr: SocketAddr) -> Result<Upstream1, String> {
        let stream =
            crate::tcp::connect::connect(addr, self.route.mark, self.route.connect_timeout)
                .await
                .map_err(|e| e.to_string())?;
        // One buffer, one `send` per request, as the server side does (see `server`).
        let (sender, connection) = http1::Builder::new()
            .writev(false)
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "upstream connection ended");
            }
        });
        Ok(Upstream1 { addr, sender })
    }
}

const FAULT_HEADER: &str = "x-faultline-fault";

pub async fn handle(
    conn: Arc<ConnState>,
    req: Request<Incoming>,
) -> Result<Response<ProxyBody>, BoxError> {
    let started = Instant::now();
    // One lock-free load per request; matchers in it were compiled when the fault was added.
    let snap = conn.current.load_full();
    if snap.state != RouteState::Serving {
        return Err(Box::new(InjectedReset));
    }
    let is_grpc = conn.route.protocol == Protocol::Grpc || grpc::is_grpc(&req);
    let chosen = match select::choose(&snap, &req, conn.original, is_grpc) {
        Ok(c) => c,
        Err(bad) => return Ok(bad_header(&snap, bad, started)),
    };
    if !chosen.request_delay.is_zero() {
        tokio::time::sleep(chosen.request_delay).await;
    }
    if let Some(t) = &chosen.terminal {
        return answer(&snap, &chosen, t.clone(), started);
    }
    if req.method() == Method::CONNECT || headers::is_upgrade(req.headers()) {
        let upstream = snap.upstream.resolve(conn.original).await?;
        return upgrade::forward(req, upstream, conn.route.mark, conn.route.connect_timeout).await;
    }

    let (mut parts, body) = req.into_parts();
    headers::strip_hop_by_hop(&mut parts.headers);
    if snap.http.header_faults {
        select::strip_directives(&mut parts.headers);
    }
    let use_h2 = conn.route.protocol == Protocol::Grpc || parts.version == Version::HTTP_2;
    if use_h2 {
        // HTTP/2: the pooled, multiplexed client needs the upstream in an absolute URI.
        let path = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/");
        parts.uri = match Uri::try_from(format!("http://{}{path}", conn.authority(&snap))) {
            Ok(u) => u,
            Err(e) => {
                return Ok(local(
                    StatusCode::BAD_REQUEST,
                    format!("faultline: bad request target: {e}\n"),
                ));
            }
        };
        parts.version = Version::HTTP_2;
    }
    let call = async {
        if use_h2 {
            conn.route
                .h2
                .request(Request::from_parts(parts, body))
                .await
                .map(|r| hyper_answer(r, None))
                .map_err(|e| e.to_string())
        } else if body.is_end_stream() && !is_grpc && !chosen.shapes_body() {
            // HTTP/1.1 without a request body: exchanged by this task (see `client1`).
            conn.send_lean(&snap, &parts).await
        } else {
            // HTTP/1.1 with a body, or under a body fault: hyper's client on a pooled
            // connection, request target unchanged.
            parts.version = Version::HTTP_11;
            conn.send_h1(&snap, Request::from_parts(parts, body))
                .await
                .map(|(r, checkout)| hyper_answer(r, Some(checkout)))
        }
    };
    // Dropping the call on time-out drops its upstream connection with it: one left
    // mid-exchange is never pooled again.
    let resp = match snap.http.response_timeout {
        None => call.await.map_err(UpstreamFailure::Unavailable),
        Some(limit) => match tokio::time::timeout(limit, call).await {
            Ok(r) => r.map_err(UpstreamFailure::Unavailable),
            Err(_) => Err(UpstreamFailure::TimedOut(limit)),
        },
    };
    let (mut parts, body, checkout) = match resp {
        Ok(r) => r,
        Err(failure) => {
            return Ok(upstream_failed(
                &snap,
                &conn.route,
                &chosen,
                is_grpc,
                failure,
                started,
            ));
        }
    };
    if !chosen.response_delay.is_zero() {
        tokio::time::sleep(chosen.response_delay).await;
    }
    headers::strip_hop_by_hop(&mut parts.headers);
    let record = snap.metrics.recorder(chosen.arm);
    record.response(parts.status.as_u16(), false, started.elapsed());
    let observer = is_grpc.then(|| GrpcStatusObserver {
        metrics: snap.metrics.clone(),
        injected: false,
        arm: chosen.arm,
    });
    if is_grpc {
        // A trailers-only answer carries its status in the headers.
        if let Some(code) = grpc::status_of(&parts.headers) {
            record.grpc(code, false);
        }
    }
    if snap.http.fault_header
        && let Some(name) = &chosen.fired
        && let Ok(v) = HeaderValue::from_str(name)
    {
        parts.headers.insert(FAULT_HEADER, v);
    }
    let body = match body {
        // Only requests without body faults or gRPC take the lean exchange.
        UpstreamBody::Lean(body) => ProxyBody::Lean(body),
        UpstreamBody::Hyper(body) if chosen.shapes_body() => {
            let observer = observer.map(|o| GrpcStatusObserver {
                injected: true,
                ..o
            });
            ProxyBody::Faulted(
                Box::new(FaultedBody::new(
                    body,
                    observer,
                    chosen.throttle,
                    chosen.reset_after,
                    chosen.stream.clone(),
                )),
                checkout,
            )
        }
        UpstreamBody::Hyper(body) => ProxyBody::Upstream {
            inner: body,
            grpc: observer,
            checkout,
        },
    };
    Ok(Response::from_parts(parts, body))
}

/// The upstream's answer: its head, its body (from hyper's client or from [`client1`]), and
/// the pooled hyper connection it holds, if any.
type Upstream = (http::response::Parts, UpstreamBody, Option<Checkout>);

enum UpstreamBody {
    Hyper(Incoming),
    Lean(client1::Body),
}

fn hyper_answer(r: Response<Incoming>, checkout: Option<Checkout>) -> Upstream {
    let (parts, body) = r.into_parts();
    (parts, UpstreamBody::Hyper(body), checkout)
}

/// Answers the request as a terminal fault says, without calling upstream.
fn answer(
    snap: &RouteSnapshot,
    chosen: &Chosen,
    t: Terminal,
    started: Instant,
) -> Result<Response<ProxyBody>, BoxError> {
    let record = snap.metrics.recorder(chosen.arm);
    let mut resp = match t {
        Terminal::Reset => {
            record.reset(true);
            return Err(Box::new(InjectedReset));
        }
        Terminal::Abort(a) => {
            let mut r = Response::new(ProxyBody::full(a.body.clone()));
            *r.status_mut() = a.status;
            for (k, v) in &a.headers {
                r.headers_mut().insert(k.clone(), v.clone());
            }
            record.response(a.status.as_u16(), true, started.elapsed());
            r
        }
        Terminal::GrpcAbort(g) => {
            record.response(200, true, started.elapsed());
            record.grpc(g.code, true);
            grpc::trailers_only(g.code, &g.message, ProxyBody::Empty)
        }
    };
    if snap.http.fault_header
        && let Some(v) = chosen
            .fired
            .as_deref()
            .and_then(|n| HeaderValue::from_str(n).ok())
    {
        resp.headers_mut().insert(FAULT_HEADER, v);
    }
    Ok(resp)
}

fn bad_header(snap: &RouteSnapshot, bad: BadHeader, started: Instant) -> Response<ProxyBody> {
    snap.metrics
        .recorder(bad.arm)
        .response(400, false, started.elapsed());
    local(
        StatusCode::BAD_REQUEST,
        format!("faultline: {}: {}\n", bad.header, bad.message),
    )
}

/// Why the upstream gave no answer.
enum UpstreamFailure {
    /// It could not be reached, or failed the exchange.
    Unavailable(String),
    /// It did not start answering within the route's `response_timeout`.
    TimedOut(std::time::Duration),
}

impl std::fmt::Display for UpstreamFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UpstreamFailure::Unavailable(e) => f.write_str(e),
            UpstreamFailure::TimedOut(limit) => {
                write!(f, "no answer within {}", humantime::format_duration(*limit))
            }
        }
    }
}

/// The client's answer when the upstream gave none: 502 (gRPC: UNAVAILABLE), or 504 (gRPC:
/// DEADLINE_EXCEEDED) after the route's `response_timeout`. Counted as a real upstream error,
/// not as an injected one.
fn upstream_failed(
    snap: &RouteSnapshot,
    route: &HttpRoute,
    chosen: &Chosen,
    is_grpc: bool,
    failure: UpstreamFailure,
    started: Instant,
) -> Response<ProxyBody> {
    let metrics = &snap.metrics;
    let record = metrics.recorder(chosen.arm);
    record.upstream_error();
    let (status, grpc_code, message) = match &failure {
        UpstreamFailure::Unavailable(_) => (
            StatusCode::BAD_GATEWAY,
            14,
            format!("faultline: upstream {} unavailable", snap.upstream),
        ),
        UpstreamFailure::TimedOut(limit) => (
            StatusCode::GATEWAY_TIMEOUT,
            4,
            format!(
                "faultline: upstream {} did not answer within {}",
                snap.upstream,
                humantime::format_duration(*limit)
            ),
        ),
    };
    let now_ms = route.epoch.elapsed().as_millis() as u64;
    if let Some(suppressed) = metrics.upstream_error(now_ms) {
        tracing::warn!(route = %snap.name, upstream = %snap.upstream, error = %failure, suppressed, "upstream request failed");
    }
    if is_grpc {
        record.response(200, false, started.elapsed());
        record.grpc(grpc_code, false);
        return grpc::trailers_only(grpc_code, &message, ProxyBody::Empty);
    }
    record.response(status.as_u16(), false, started.elapsed());
    local(status, format!("{message}\n"))
}

fn local(status: StatusCode, body: String) -> Response<ProxyBody> {
    let mut r = Response::new(ProxyBody::full(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}
