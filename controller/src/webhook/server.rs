//! The webhook's HTTPS server (hyper 1 over tokio-rustls, HTTP/1.1 and HTTP/2) on its own
//! listener: `POST /mutate` answers an `AdmissionReview`, `GET /healthz` says it is up.
//!
//! A request the webhook cannot read (not JSON, not an `admission.k8s.io/v1` review, larger than
//! [`MAX_BODY`]) gets a 400 and the API server applies the webhook's `failurePolicy`; a review it
//! can read always gets a 200 with its verdict. Nothing a request carries can stop the server:
//! parsing is fallible end to end and each connection is its own task (at most
//! [`MAX_CONNECTIONS`] at once, each handshake bounded in time).
//!
//! When `shutdown` resolves the server stops accepting, asks each connection to finish its
//! in-flight request ([`GRACE`] at most), then returns.

use std::convert::Infallible;
use std::future::Future;
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode, header};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use super::Webhook;
use super::mutate;
use super::review::{self, AdmissionReview};

/// The largest review read: the API server's own request limit is 3 MiB.
pub const MAX_BODY: usize = 4 * 1024 * 1024;
/// How long a TLS handshake may take.
const HANDSHAKE: Duration = Duration::from_secs(10);
/// Connections served at once; more wait in the listen backlog. The API server holds a few.
pub const MAX_CONNECTIONS: usize = 256;
/// How long open connections may finish after shutdown.
const GRACE: Duration = Duration::from_secs(5);

/// Serves the webhook on `listener` until `shutdown` resolves.
pub async fn serve(listener: TcpListener, webhook: Webhook, shutdown: impl Future<Output = ()>) {
    let acceptor = TlsAcceptor::from(webhook.tls.clone());
    let inject = webhook.inject.clone();
    let draining = CancellationToken::new();
    let mut conns = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept(), if conns.len() < MAX_CONNECTIONS => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "webhook accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => continue,
        };
        let (acceptor, inject, draining) = (acceptor.clone(), inject.clone(), draining.clone());
        conns.spawn(async move {
            let tls = match tokio::time::timeout(HANDSHAKE, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "webhook TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "webhook TLS handshake timed out");
                    return;
                }
            };
            let service = hyper::service::service_fn(move |req| {
                let inject = inject.clone();
                async move { Ok::<_, Infallible>(answer(req, &inject).await) }
            });
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            let conn = builder.serve_connection(TokioIo::new(tls), service);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => return,
                () = draining.cancelled() => conn.as_mut().graceful_shutdown(),
            }
            let _ = conn.await;
        });
    }
    draining.cancel();
    let drained = async { while conns.join_next().await.is_some() {} };
    if tokio::time::timeout(GRACE, drained).await.is_err() {
        conns.shutdown().await;
    }
}

async fn answer(req: Request<Incoming>, inject: &super::InjectConfig) -> Response<Full<Bytes>> {
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/healthz") => plain(StatusCode::OK, "ok\n".into()),
        (&Method::POST, "/mutate") => {
            let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
                Ok(body) => body.to_bytes(),
                Err(e) => {
                    return plain(
                        StatusCode::BAD_REQUEST,
                        format!("cannot read the request body: {e}\n"),
                    );
                }
            };
            let review: AdmissionReview = match serde_json::from_slice(&body) {
                Ok(review) => review,
                Err(e) => {
                    return plain(
                        StatusCode::BAD_REQUEST,
                        format!("not an AdmissionReview: {e}\n"),
                    );
                }
            };
            if review.api_version != review::API_VERSION || review.kind != review::KIND {
                return plain(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "expected apiVersion {} kind {}, got {} {}\n",
                        review::API_VERSION,
                        review::KIND,
                        review.api_version,
                        review.kind
                    ),
                );
            }
            let Some(request) = review.request else {
                return plain(
                    StatusCode::BAD_REQUEST,
                    "the AdmissionReview has no request\n".into(),
                );
            };
            let response = mutate::review(request, inject).into_review();
            let json = serde_json::to_vec(&response).expect("a review response serializes");
            let mut res = Response::new(Full::new(Bytes::from(json)));
            res.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("application/json"),
            );
            res
        }
        (_, "/healthz" | "/mutate") => plain(
            StatusCode::METHOD_NOT_ALLOWED,
            "use POST /mutate or GET /healthz\n".into(),
        ),
        _ => plain(
            StatusCode::NOT_FOUND,
            "not found: POST /mutate or GET /healthz\n".into(),
        ),
    }
}

fn plain(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut res = Response::new(Full::new(Bytes::from(body)));
    *res.status_mut() = status;
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    res
}
