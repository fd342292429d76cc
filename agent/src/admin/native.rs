//! faultline's native admin endpoints, beside the Toxiproxy surface, under `/faultline/v1`:
//!
//! - `GET /faultline/v1/routes`, `POST /faultline/v1/routes` (with `protocol` and HTTP options),
//!   `GET/DELETE /faultline/v1/routes/{route}`;
//! - `GET/POST /faultline/v1/routes/{route}/rules`, `GET/DELETE .../rules/{rule}`: faults with
//!   `percentage` (0..100), `match`, `cohort`, and their matched/injected/passed counters;
//! - `GET /faultline/v1/routes/{route}/sli`: the route's SLIs (requests by class and gRPC code,
//!   real and injected, errors, resets, a mergeable latency histogram).

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use serde_json::{Value, json};

use super::error::ApiError;
use super::router::{body, empty, json_response};
use super::rules::{RuleInput, rule_json};
use super::toxiproxy::{ProxyInput, ProxyJson};
use crate::route::{RouteTable, RouteView};

type Resp = Response<Full<Bytes>>;

fn route_json(r: &RouteView) -> Value {
    let mut v = serde_json::to_value(ProxyJson::from(r)).unwrap_or_default();
    if let Some(o) = v.as_object_mut() {
        o.remove("toxics");
        o.insert(
            "rules".into(),
            Value::Array(r.faults.iter().map(rule_json).collect()),
        );
        if r.protocol.is_http() {
            o.insert("fault_header".into(), json!(r.http.fault_header));
            o.insert("max_header_faults".into(), json!(r.http.max_header_faults));
        }
    }
    v
}

pub async fn route(
    req: Request<Incoming>,
    table: &RouteTable,
    rest: &[&str],
) -> Result<Resp, ApiError> {
    let method = req.method().clone();
    match (&method, rest) {
        (&Method::GET, ["routes"]) => {
            let all: Vec<Value> = table.list().iter().map(route_json).collect();
            Ok(json_response(StatusCode::OK, &all))
        }
        (&Method::POST, ["routes"]) => {
            let spec = body::<ProxyInput>(req).await?.into_spec()?;
            let view = table.create(spec)?;
            Ok(json_response(StatusCode::CREATED, &route_json(&view)))
        }
        (&Method::GET, ["routes", name]) => Ok(json_response(
            StatusCode::OK,
            &route_json(&table.get(name)?),
        )),
        (&Method::DELETE, ["routes", name]) => {
            table.remove(name).await?;
            Ok(empty(StatusCode::NO_CONTENT))
        }
        (&Method::GET, ["routes", name, "rules"]) => {
            let rules: Vec<Value> = table.get(name)?.faults.iter().map(rule_json).collect();
            Ok(json_response(StatusCode::OK, &rules))
        }
        (&Method::POST, ["routes", name, "rules"]) => {
            table.get(name)?;
            let fault = body::<RuleInput>(req).await?.into_fault()?;
            let view = table.add_fault(name, fault).await?;
            Ok(json_response(StatusCode::CREATED, &rule_json(&view)))
        }
        (&Method::GET, ["routes", name, "rules", rule]) => Ok(json_response(
            StatusCode::OK,
            &rule_json(&table.get_fault(name, rule)?),
        )),
        (&Method::DELETE, ["routes", name, "rules", rule]) => {
            table.remove_fault(name, rule).await?;
            Ok(empty(StatusCode::NO_CONTENT))
        }
        (&Method::GET, ["routes", name, "sli"]) => {
            table.get(name)?;
            let metrics = table
                .metrics()
                .into_iter()
                .find(|(n, _)| n == name)
                .map(|(_, m)| m)
                .ok_or_else(|| {
                    ApiError::new(
                        StatusCode::NOT_FOUND,
                        format!("proxy not found: no route named {name:?}"),
                    )
                })?;
            Ok(json_response(StatusCode::OK, &metrics.http.snapshot()))
        }
        _ => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!(
                "no such endpoint: {method} /faultline/v1/{}",
                rest.join("/")
            ),
        )),
    }
}
