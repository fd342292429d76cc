//! Request dispatch for the admin API.

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use serde::de::DeserializeOwned;
use serde_json::json;

use super::error::ApiError;
use super::toxiproxy::{self, ProxyInput, ProxyJson, ToxicInput, ToxicJson, ToxicUpdate};
use crate::route::RouteTable;

/// Request bodies larger than this are refused.
const MAX_BODY: usize = 1024 * 1024;

pub type Resp = Response<Full<Bytes>>;

pub async fn handle(req: Request<Incoming>, table: &RouteTable, draining: bool) -> Resp {
    match route(req, table, draining).await {
        Ok(r) => r,
        Err(e) => json_response(e.status, &e.body()),
    }
}

/// 401 with a `WWW-Authenticate: Bearer` challenge: the admin API's token is missing or wrong.
pub fn unauthorized() -> Resp {
    let e = ApiError::new(
        StatusCode::UNAUTHORIZED,
        "a bearer token is required: Authorization: Bearer TOKEN (faultline agent --admin-token)",
    );
    let mut r = json_response(e.status, &e.body());
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        http::HeaderValue::from_static("Bearer"),
    );
    r
}

/// 404 on the probe listener (`--health`) for anything but its three read-only paths.
pub fn probes_only() -> Resp {
    let e = ApiError::new(
        StatusCode::NOT_FOUND,
        "this listener serves only GET /ready, /version and /metrics; the admin API is on --admin",
    );
    json_response(e.status, &e.body())
}

async fn route(
    req: Request<Incoming>,
    table: &RouteTable,
    draining: bool,
) -> Result<Resp, ApiError> {
    let from_browser = req
        .headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ua| ua.starts_with("Mozilla/"));
    if from_browser {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "User agent not allowed",
        ));
    }
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let is_update = method == Method::POST || method == Method::PATCH;
    match (&method, segments.as_slice()) {
        (&Method::GET, ["version"]) => Ok(json_response(
            StatusCode::OK,
            &json!({ "version": toxiproxy::TOXIPROXY_VERSION, "faultline": env!("CARGO_PKG_VERSION") }),
        )),
        (&Method::GET, ["ready"]) => Ok(if draining {
            text_response(StatusCode::SERVICE_UNAVAILABLE, "draining\n")
        } else {
            text_response(StatusCode::OK, "ready\n")
        }),
        (&Method::GET, ["metrics"]) => {
            // Two reads of the table: a route added or removed between them shows without faults.
            let mut metrics = table.metrics();
            metrics.extend(
                table
                    .passthrough
                    .metrics()
                    .into_iter()
                    .map(|(name, m)| (name.to_owned(), m)),
            );
            let routes = table.list();
            let loads = table.worker_loads();
            let views: Vec<crate::metrics::RouteMetricsView<'_>> = metrics
                .iter()
                .map(|(name, m)| crate::metrics::RouteMetricsView {
                    route: name,
                    metrics: m,
                    faults: routes
                        .iter()
                        .find(|r| r.name == *name)
                        .map(|r| {
                            r.faults
                                .iter()
                                .map(|f| (f.fault.name.as_str(), &*f.counters))
                                .collect()
                        })
                        .unwrap_or_default(),
                    workers: loads.iter().find(|(n, _)| n == name).map(|(_, w)| w),
                })
                .collect();
            let text = crate::metrics::render(&views);
            let mut r = text_response(StatusCode::OK, &text);
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            Ok(r)
        }
        (_, ["faultline", "v1", rest @ ..]) => super::native::route(req, table, rest).await,
        (&Method::POST, ["reset"]) => {
            table.reset().await?;
            Ok(empty(StatusCode::NO_CONTENT))
        }
        (&Method::GET, ["proxies"]) => {
            let all: serde_json::Map<String, serde_json::Value> = table
                .list()
                .iter()
                .map(|r| {
                    (
                        r.name.clone(),
                        serde_json::to_value(ProxyJson::from(r)).unwrap_or_default(),
                    )
                })
                .collect();
            Ok(json_response(StatusCode::OK, &all))
        }
        (&Method::POST, ["proxies"]) => {
            let spec = body::<ProxyInput>(req).await?.into_spec()?;
            let view = table.create(spec)?;
            Ok(json_response(StatusCode::CREATED, &ProxyJson::from(&view)))
        }
        (&Method::POST, ["populate"]) => populate(req, table).await,
        (&Method::GET, ["proxies", name]) => Ok(json_response(
            StatusCode::OK,
            &ProxyJson::from(&table.get(name)?),
        )),
        (_, ["proxies", name]) if is_update => {
            table.get(name)?;
            let update = body::<ProxyInput>(req).await?.into_update()?;
            let view = table.update(name, update).await?;
            Ok(json_response(StatusCode::OK, &ProxyJson::from(&view)))
        }
        (&Method::DELETE, ["proxies", name]) => {
            table.remove(name).await?;
            Ok(empty(StatusCode::NO_CONTENT))
        }
        (&Method::GET, ["proxies", name, "toxics"]) => {
            let toxics: Vec<ToxicJson> = table
                .get(name)?
                .faults
                .iter()
                .map(ToxicJson::from)
                .collect();
            Ok(json_response(StatusCode::OK, &toxics))
        }
        (&Method::POST, ["proxies", name, "toxics"]) => {
            table.get(name)?;
            let fault = body::<ToxicInput>(req).await?.into_fault()?;
            let view = table.add_fault(name, fault).await?;
            Ok(json_response(StatusCode::OK, &ToxicJson::from(&view)))
        }
        (&Method::GET, ["proxies", name, "toxics", toxic]) => Ok(json_response(
            StatusCode::OK,
            &ToxicJson::from(&table.get_fault(name, toxic)?),
        )),
        (_, ["proxies", name, "toxics", toxic]) if is_update => {
            table.get_fault(name, toxic)?;
            let update = body::<ToxicUpdate>(req).await?;
            let mut api_err = None;
            let result = table
                .update_fault(name, toxic, |current| {
                    update.apply(current).map_err(|e| {
                        api_err = Some(e.clone());
                        crate::route::RouteError::Invalid {
                            field: "attributes",
                            message: e.message,
                        }
                    })
                })
                .await;
            match (result, api_err) {
                (Ok(view), _) => Ok(json_response(StatusCode::OK, &ToxicJson::from(&view))),
                (Err(_), Some(e)) => Err(e),
                (Err(e), None) => Err(e.into()),
            }
        }
        (&Method::DELETE, ["proxies", name, "toxics", toxic]) => {
            table.remove_fault(name, toxic).await?;
            Ok(empty(StatusCode::NO_CONTENT))
        }
        _ => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no such endpoint: {method} {path}"),
        )),
    }
}

/// `POST /populate`: create or replace the listed proxies. Every entry is validated before any
/// is applied; if one cannot be created (its port is taken), the ones this request created are
/// removed again, so a failed populate leaves the table as it was, less replaced proxies.
async fn populate(req: Request<Incoming>, table: &RouteTable) -> Result<Resp, ApiError> {
    let inputs = body::<Vec<ProxyInput>>(req).await?;
    let mut specs = Vec::with_capacity(inputs.len());
    for (i, input) in inputs.into_iter().enumerate() {
        let spec = input.into_spec().map_err(|mut e| {
            let field = format!("[{i}].{}", e.field.as_deref().unwrap_or(""));
            e.message = format!(
                "bad request body: {field}: {}",
                e.message.trim_start_matches("bad request body: ")
            );
            e.field = Some(field);
            e
        })?;
        specs.push(spec);
    }
    let mut created = Vec::new();
    let mut out = Vec::new();
    for spec in specs {
        if let Ok(existing) = table.get(&spec.name) {
            let same_listen = spec
                .listen
                .parse::<std::net::SocketAddr>()
                .is_ok_and(|a| a == existing.listen);
            if same_listen && existing.upstream == spec.upstream {
                out.push(ProxyJson::from(&existing));
                continue;
            }
            table.remove(&spec.name).await?;
        }
        let name = spec.name.clone();
        match table.create(spec) {
            Ok(view) => {
                created.push(name);
                out.push(ProxyJson::from(&view));
            }
            Err(e) => {
                for n in &created {
                    let _ = table.remove(n).await;
                }
                return Err(e.into());
            }
        }
    }
    Ok(json_response(
        StatusCode::CREATED,
        &json!({ "proxies": out }),
    ))
}

pub(super) async fn body<T: DeserializeOwned>(req: Request<Incoming>) -> Result<T, ApiError> {
    let bytes = Limited::new(req.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("bad request body: {e}")))?
        .to_bytes();
    serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!(
                "bad request body: {e} (line {}, column {})",
                e.line(),
                e.column()
            ),
        )
    })
}

pub(super) fn json_response<T: serde::Serialize + ?Sized>(status: StatusCode, body: &T) -> Resp {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(bytes)))
        .unwrap_or_default()
}

fn text_response(status: StatusCode, text: &str) -> Resp {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(Full::new(Bytes::copy_from_slice(text.as_bytes())))
        .unwrap_or_default()
}

pub(super) fn empty(status: StatusCode) -> Resp {
    Response::builder()
        .status(status)
        .body(Full::new(Bytes::new()))
        .unwrap_or_default()
}
