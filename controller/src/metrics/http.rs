//! The `/metrics` HTTP endpoint (hyper 1, HTTP/1.1) on its own listen address.
//!
//! `GET /metrics` answers the Prometheus text with the experiments counted from the store at
//! that moment; anything else is 404. The accept loop stops when `shutdown` resolves; open
//! scrapes are short and are dropped with it.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

use super::Metrics;
use crate::store::{StateKind, StoreHandle};

const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Serves `/metrics` on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    store: StoreHandle,
    shutdown: impl Future<Output = ()>,
) {
    let mut conns = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, _) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "metrics accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => continue,
        };
        let (metrics, store) = (metrics.clone(), store.clone());
        conns.spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let (metrics, store) = (metrics.clone(), store.clone());
                async move { Ok::<_, Infallible>(answer(req, &metrics, &store).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
    conns.shutdown().await;
}

async fn answer(
    req: Request<Incoming>,
    metrics: &Metrics,
    store: &StoreHandle,
) -> Response<Full<Bytes>> {
    if req.method() != Method::GET || req.uri().path() != "/metrics" {
        return plain(
            StatusCode::NOT_FOUND,
            "not found: try GET /metrics\n".into(),
        );
    }
    let experiments = match store.list(None).await {
        Ok(all) => {
            let mut by_state = [
                StateKind::Pending,
                StateKind::Running,
                StateKind::Completed,
                StateKind::Aborted,
                StateKind::Failed,
            ]
            .map(|s| (s, 0u64));
            for e in &all {
                if let Some(slot) = by_state.iter_mut().find(|(s, _)| *s == e.state.kind()) {
                    slot.1 += 1;
                }
            }
            by_state
        }
        Err(e) => {
            return plain(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("store unavailable: {e}\n"),
            );
        }
    };
    plain(StatusCode::OK, metrics.render(&experiments))
}

fn plain(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut res = Response::new(Full::new(Bytes::from(body)));
    *res.status_mut() = status;
    res.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(CONTENT_TYPE),
    );
    res
}
