//! `Upgrade` (WebSocket and friends) and `CONNECT`: forwarded on a dedicated upstream
//! connection, and once both sides agree, the two upgraded streams are spliced together
//! untouched.

use std::net::SocketAddr;

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

use super::body::{BoxError, ProxyBody};

/// Forwards `req` to `upstream` on its own HTTP/1.1 connection. If the upstream switches
/// protocols (101) or accepts a CONNECT (2xx), the client's and upstream's streams are joined.
pub async fn forward(
    mut req: Request<Incoming>,
    upstream: SocketAddr,
    mark: Option<u32>,
    connect_timeout: std::time::Duration,
) -> Result<Response<ProxyBody>, BoxError> {
    let client_upgrade = hyper::upgrade::on(&mut req);
    let is_connect = req.method() == Method::CONNECT;
    let stream = crate::tcp::connect::connect(upstream, mark, connect_timeout).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(error = %e, "upgraded upstream connection ended");
        }
    });
    let mut resp = sender.send_request(req).await?;
    let switched = resp.status() == StatusCode::SWITCHING_PROTOCOLS
        || (is_connect && resp.status().is_success());
    if switched {
        let upstream_upgrade = hyper::upgrade::on(&mut resp);
        tokio::spawn(async move {
            match tokio::try_join!(client_upgrade, upstream_upgrade) {
                Ok((c, u)) => {
                    let (mut c, mut u) = (TokioIo::new(c), TokioIo::new(u));
                    let _ = tokio::io::copy_bidirectional(&mut c, &mut u).await;
                }
                Err(e) => tracing::debug!(error = %e, "upgrade failed"),
            }
        });
    }
    let (parts, body) = resp.into_parts();
    Ok(Response::from_parts(
        parts,
        ProxyBody::Upstream {
            inner: body,
            grpc: None,
            checkout: None,
        },
    ))
}
