//! HTTP and gRPC faults in JSON: their attributes, the `match` block, sticky cohorts, and the
//! native rule shape served under `/faultline/v1/routes/{route}/rules`.
//!
//! The Toxiproxy surface accepts the same fault types as toxics (with `toxicity` as the
//! per-request probability); the native surface takes `percentage` (0..100) instead. Both parse
//! through the functions here, so a field is validated, and named in errors, the same way.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, StatusCode};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::capture::{self, MatchInput};
use super::error::ApiError;
use crate::fault::http::matcher::{
    DestinationMatch, GrpcSelector, HeaderCond, HeaderMatch, StrMatch,
};
use crate::fault::http::{
    Abort, Cohort, Delay, DelayPhase, GrpcAbort, GrpcStream, HttpReset, RequestMatch, ResetPhase,
    StreamAction, Throttle, grpc_abort,
};
use crate::fault::{Fault, FaultKind, KindTag, Latency, Probability};

fn bad(field: impl Into<String>, msg: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request(field, msg)
}

fn uint(map: &Map<String, Value>, key: &str) -> Result<Option<u64>, ApiError> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n.as_u64().map(Some).ok_or_else(|| {
            bad(
                format!("attributes.{key}"),
                format!("must be a non-negative integer, got {n}"),
            )
        }),
        Some(other) => Err(bad(
            format!("attributes.{key}"),
            format!("must be a non-negative integer, got {other}"),
        )),
    }
}

fn string<'a>(map: &'a Map<String, Value>, key: &str) -> Result<Option<&'a str>, ApiError> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(bad(
            format!("attributes.{key}"),
            format!("must be a string, got {other}"),
        )),
    }
}

fn known(map: &Map<String, Value>, tag: KindTag, keys: &[&str]) -> Result<(), ApiError> {
    for k in map.keys() {
        if !keys.contains(&k.as_str()) {
            return Err(bad(
                format!("attributes.{k}"),
                format!(
                    "unknown attribute for a {} fault (expected: {})",
                    tag.name(),
                    keys.join(", ")
                ),
            ));
        }
    }
    Ok(())
}

fn grpc_code(map: &Map<String, Value>, key: &str) -> Result<Option<u8>, ApiError> {
    let field = format!("attributes.{key}");
    let raw = match map.get(key) {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => {
            return Err(bad(
                field,
                format!("must be a gRPC status code 1..16 or its name, got {other}"),
            ));
        }
    };
    grpc_abort::parse_code(&raw).map(Some).ok_or_else(|| {
        bad(
            field,
            format!("{raw:?} is not a gRPC status code 1..16 (or a name such as UNAVAILABLE)"),
        )
    })
}

/// Parses the attributes of a request-level fault type.
pub fn parse_http_kind(tag: KindTag, map: &Map<String, Value>) -> Result<FaultKind, ApiError> {
    Ok(match tag {
        KindTag::HttpAbort => {
            known(map, tag, &["status", "body", "headers"])?;
            let status = uint(map, "status")?
                .ok_or_else(|| bad("attributes.status", "missing required field"))?;
            if !(200..=599).contains(&status) {
                return Err(bad(
                    "attributes.status",
                    format!("must be an HTTP status 200..599, got {status}"),
                ));
            }
            let status =
                StatusCode::from_u16(status as u16).map_err(|e| bad("attributes.status", e))?;
            let body = Bytes::from(string(map, "body")?.unwrap_or_default().to_owned());
            let mut headers = Vec::new();
            match map.get("headers") {
                None | Some(Value::Null) => {}
                Some(Value::Object(h)) => {
                    for (k, v) in h {
                        let field = format!("attributes.headers.{k}");
                        let name = HeaderName::from_bytes(k.as_bytes())
                            .map_err(|_| bad(&field, "not a valid header name"))?;
                        let v = v.as_str().ok_or_else(|| bad(&field, "must be a string"))?;
                        let value = HeaderValue::from_str(v)
                            .map_err(|_| bad(&field, "not a valid header value"))?;
                        headers.push((name, value));
                    }
                }
                Some(other) => {
                    return Err(bad(
                        "attributes.headers",
                        format!("must be an object of name: value, got {other}"),
                    ));
                }
            }
            FaultKind::HttpAbort(Abort {
                status,
                body,
                headers,
            })
        }
        KindTag::HttpDelay => {
            known(map, tag, &["delay", "jitter", "phase"])?;
            let delay = uint(map, "delay")?
                .ok_or_else(|| bad("attributes.delay", "missing required field (milliseconds)"))?;
            let jitter = uint(map, "jitter")?.unwrap_or(0);
            let phase = match string(map, "phase")?.unwrap_or("request") {
                "request" => DelayPhase::Request,
                "response" => DelayPhase::Response,
                other => {
                    return Err(bad(
                        "attributes.phase",
                        format!("must be \"request\" or \"response\", got {other:?}"),
                    ));
                }
            };
            FaultKind::HttpDelay(Delay {
                delay: Latency {
                    latency: Duration::from_millis(delay),
                    jitter: Duration::from_millis(jitter),
                },
                phase,
            })
        }
        KindTag::HttpThrottle => {
            known(map, tag, &["bytes_per_second"])?;
            let rate = uint(map, "bytes_per_second")?.unwrap_or(0);
            if rate == 0 {
                return Err(bad("attributes.bytes_per_second", "must be at least 1"));
            }
            FaultKind::HttpThrottle(Throttle {
                bytes_per_sec: rate,
            })
        }
        KindTag::HttpReset => {
            known(map, tag, &["phase", "after_bytes"])?;
            let phase = match string(map, "phase")?.unwrap_or("before_response") {
                "before_response" => {
                    if map.contains_key("after_bytes") {
                        return Err(bad(
                            "attributes.after_bytes",
                            "only applies with phase \"mid_response\"",
                        ));
                    }
                    ResetPhase::BeforeResponse
                }
                "mid_response" => ResetPhase::MidResponse {
                    after_bytes: uint(map, "after_bytes")?.unwrap_or(0),
                },
                other => {
                    return Err(bad(
                        "attributes.phase",
                        format!("must be \"before_response\" or \"mid_response\", got {other:?}"),
                    ));
                }
            };
            FaultKind::HttpReset(HttpReset { phase })
        }
        KindTag::GrpcAbort => {
            known(map, tag, &["code", "message"])?;
            let code = grpc_code(map, "code")?
                .ok_or_else(|| bad("attributes.code", "missing required field"))?;
            FaultKind::GrpcAbort(GrpcAbort {
                code,
                message: string(map, "message")?.unwrap_or_default().to_owned(),
            })
        }
        KindTag::GrpcStream => {
            known(
                map,
                tag,
                &[
                    "after_messages",
                    "after",
                    "action",
                    "code",
                    "message",
                    "message_delay",
                ],
            )?;
            let after_messages = uint(map, "after_messages")?;
            let after = uint(map, "after")?.map(Duration::from_millis);
            let message_delay = Duration::from_millis(uint(map, "message_delay")?.unwrap_or(0));
            let action = match string(map, "action")? {
                None if after_messages.is_none() && after.is_none() => None,
                None | Some("reset") => Some(StreamAction::Reset),
                Some("status") => Some(StreamAction::Status {
                    code: grpc_code(map, "code")?
                        .ok_or_else(|| bad("attributes.code", "required with action \"status\""))?,
                    message: string(map, "message")?.unwrap_or_default().to_owned(),
                }),
                Some(other) => {
                    return Err(bad(
                        "attributes.action",
                        format!("must be \"reset\" or \"status\", got {other:?}"),
                    ));
                }
            };
            if action.is_some() && after_messages.is_none() && after.is_none() {
                return Err(bad(
                    "attributes.after_messages",
                    "an action needs after_messages or after (ms)",
                ));
            }
            if action.is_none() && message_delay.is_zero() {
                return Err(bad(
                    "attributes",
                    "a grpc_stream fault needs an action (with after_messages or after) or a message_delay",
                ));
            }
            FaultKind::GrpcStream(GrpcStream {
                after_messages,
                after,
                action,
                message_delay,
            })
        }
        other => {
            return Err(bad(
                "type",
                format!("{} is not a request-level fault", other.name()),
            ));
        }
    })
}

/// A request-level fault's parameters, in the names `parse_http_kind` reads.
pub fn http_attributes_of(kind: &FaultKind) -> Value {
    let ms = |d: Duration| d.as_millis() as u64;
    match kind {
        FaultKind::HttpAbort(a) => {
            let headers: Map<String, Value> = a
                .headers
                .iter()
                .map(|(k, v)| {
                    (
                        k.to_string(),
                        Value::String(v.to_str().unwrap_or_default().to_owned()),
                    )
                })
                .collect();
            json!({ "status": a.status.as_u16(), "body": String::from_utf8_lossy(&a.body), "headers": headers })
        }
        FaultKind::HttpDelay(d) => json!({
            "delay": ms(d.delay.latency),
            "jitter": ms(d.delay.jitter),
            "phase": match d.phase { DelayPhase::Request => "request", DelayPhase::Response => "response" },
        }),
        FaultKind::HttpThrottle(t) => json!({ "bytes_per_second": t.bytes_per_sec }),
        FaultKind::HttpReset(r) => match r.phase {
            ResetPhase::BeforeResponse => json!({ "phase": "before_response" }),
            ResetPhase::MidResponse { after_bytes } => {
                json!({ "phase": "mid_response", "after_bytes": after_bytes })
            }
        },
        FaultKind::GrpcAbort(g) => json!({ "code": g.code, "message": g.message }),
        FaultKind::GrpcStream(g) => {
            let mut m = Map::new();
            if let Some(n) = g.after_messages {
                m.insert("after_messages".into(), json!(n));
            }
            if let Some(d) = g.after {
                m.insert("after".into(), json!(ms(d)));
            }
            match &g.action {
                Some(StreamAction::Reset) => {
                    m.insert("action".into(), json!("reset"));
                }
                Some(StreamAction::Status { code, message }) => {
                    m.insert("action".into(), json!("status"));
                    m.insert("code".into(), json!(code));
                    m.insert("message".into(), json!(message));
                }
                None => {}
            }
            if !g.message_delay.is_zero() {
                m.insert("message_delay".into(), json!(ms(g.message_delay)));
            }
            Value::Object(m)
        }
        _ => Value::Object(Map::new()),
    }
}

fn str_match(v: &Value, field: &str) -> Result<StrMatch, ApiError> {
    let obj = v.as_object().filter(|o| o.len() == 1).ok_or_else(|| {
        bad(
            field,
            "must be one of {\"exact\": ...}, {\"prefix\": ...}, {\"regex\": ...}",
        )
    })?;
    let (k, v) = obj.iter().next().expect("one entry");
    let s = v
        .as_str()
        .ok_or_else(|| bad(format!("{field}.{k}"), "must be a string"))?;
    match k.as_str() {
        "exact" => Ok(StrMatch::Exact(s.to_owned())),
        "prefix" => Ok(StrMatch::Prefix(s.to_owned())),
        "regex" => regex::Regex::new(s)
            .map(StrMatch::Regex)
            .map_err(|e| bad(format!("{field}.regex"), format!("invalid regex: {e}"))),
        other => Err(bad(
            format!("{field}.{other}"),
            "unknown matcher (expected exact, prefix or regex)",
        )),
    }
}

fn str_match_json(m: &StrMatch) -> Value {
    match m {
        StrMatch::Exact(s) => json!({ "exact": s }),
        StrMatch::Prefix(s) => json!({ "prefix": s }),
        StrMatch::Regex(r) => json!({ "regex": r.as_str() }),
    }
}

/// Parses a `match` block.
pub fn parse_match(v: &Value) -> Result<RequestMatch, ApiError> {
    let obj = v
        .as_object()
        .ok_or_else(|| bad("match", "must be an object"))?;
    let mut m = RequestMatch::default();
    for (k, v) in obj {
        match k.as_str() {
            "methods" => {
                let list = v
                    .as_array()
                    .ok_or_else(|| bad("match.methods", "must be a list of HTTP methods"))?;
                for (i, item) in list.iter().enumerate() {
                    let s = item
                        .as_str()
                        .ok_or_else(|| bad(format!("match.methods[{i}]"), "must be a string"))?;
                    let method =
                        Method::from_bytes(s.to_ascii_uppercase().as_bytes()).map_err(|_| {
                            bad(
                                format!("match.methods[{i}]"),
                                format!("{s:?} is not an HTTP method"),
                            )
                        })?;
                    m.methods.push(method);
                }
            }
            "path" => m.path = Some(str_match(v, "match.path")?),
            "authority" => m.authority = Some(str_match(v, "match.authority")?),
            "destination" => m.destination = Some(destination(v)?),
            "grpc" => {
                let s = v.as_str().ok_or_else(|| {
                    bad(
                        "match.grpc",
                        "must be \"/package.Service\" or \"/package.Service/Method\"",
                    )
                })?;
                let rest = s.strip_prefix('/').unwrap_or(s);
                let (service, method) = match rest.split_once('/') {
                    Some((svc, meth)) => (svc, Some(meth)),
                    None => (rest, None),
                };
                let valid = |x: &str| {
                    !x.is_empty()
                        && x.chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_')
                };
                if !valid(service) || method.is_some_and(|m| !valid(m) || m.contains('.')) {
                    return Err(bad(
                        "match.grpc",
                        format!("{s:?} is not \"/package.Service\" or \"/package.Service/Method\""),
                    ));
                }
                m.grpc = Some(GrpcSelector {
                    service: service.to_owned(),
                    method: method.map(str::to_owned),
                });
            }
            "headers" => {
                let list = v
                    .as_array()
                    .ok_or_else(|| bad("match.headers", "must be a list"))?;
                for (i, h) in list.iter().enumerate() {
                    let field = format!("match.headers[{i}]");
                    let h = h
                        .as_object()
                        .ok_or_else(|| bad(&field, "must be an object with a name"))?;
                    let name = h
                        .get("name")
                        .and_then(Value::as_str)
                        .ok_or_else(|| bad(format!("{field}.name"), "missing required field"))?;
                    let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                        bad(
                            format!("{field}.name"),
                            format!("{name:?} is not a header name"),
                        )
                    })?;
                    let mut conds = h.iter().filter(|(k, _)| k.as_str() != "name");
                    let cond = match (conds.next(), conds.next()) {
                        (Some((k, v)), None) => match k.as_str() {
                            "exact" | "prefix" | "regex" => HeaderCond::Value(str_match(
                                &json!({ k.clone(): v.clone() }),
                                &field,
                            )?),
                            "present" if v == &Value::Bool(true) => HeaderCond::Present,
                            "absent" if v == &Value::Bool(true) => HeaderCond::Absent,
                            other => {
                                return Err(bad(
                                    format!("{field}.{other}"),
                                    "expected one of exact, prefix, regex, present: true, absent: true",
                                ));
                            }
                        },
                        _ => {
                            return Err(bad(
                                &field,
                                "needs exactly one of exact, prefix, regex, present: true, absent: true",
                            ));
                        }
                    };
                    m.headers.push(HeaderMatch { name, cond });
                }
            }
            other => {
                return Err(bad(
                    format!("match.{other}"),
                    "unknown field (expected methods, path, grpc, headers, authority, destination)",
                ));
            }
        }
    }
    Ok(m)
}

/// Parses `match.destination`: `{"destinations": [CIDR or address, ...], "ports": [...]}`,
/// the shape of a captured route's `match`, validated by the same function.
fn destination(v: &Value) -> Result<DestinationMatch, ApiError> {
    const F: &str = "match.destination";
    let o = v.as_object().ok_or_else(|| {
        bad(
            F,
            "must be an object {\"destinations\": [CIDR or address, ...], \"ports\": [...]}",
        )
    })?;
    let mut input = MatchInput::default();
    for (k, v) in o {
        let field = format!("{F}.{k}");
        if k != "destinations" && k != "ports" {
            return Err(bad(field, "unknown field (expected destinations, ports)"));
        }
        let list = v.as_array().ok_or_else(|| bad(&field, "must be a list"))?;
        for (i, item) in list.iter().enumerate() {
            if k == "destinations" {
                let s = item.as_str().ok_or_else(|| {
                    bad(
                        format!("{field}[{i}]"),
                        "must be a string (an address or CIDR)",
                    )
                })?;
                input.destinations.push(s.to_owned());
            } else {
                let port = item
                    .as_u64()
                    .and_then(|p| u16::try_from(p).ok())
                    .ok_or_else(|| {
                        bad(
                            format!("{field}[{i}]"),
                            format!("must be a port (1-65535), got {item}"),
                        )
                    })?;
                input.ports.push(port);
            }
        }
    }
    capture::destinations(input).map_err(|(f, e)| bad(format!("{F}.{f}"), e))
}

pub fn match_json(m: &RequestMatch) -> Value {
    let mut o = Map::new();
    if !m.methods.is_empty() {
        o.insert(
            "methods".into(),
            json!(m.methods.iter().map(Method::as_str).collect::<Vec<_>>()),
        );
    }
    if let Some(p) = &m.path {
        o.insert("path".into(), str_match_json(p));
    }
    if let Some(g) = &m.grpc {
        let s = match &g.method {
            Some(meth) => format!("/{}/{meth}", g.service),
            None => format!("/{}", g.service),
        };
        o.insert("grpc".into(), json!(s));
    }
    if !m.headers.is_empty() {
        let hs: Vec<Value> = m
            .headers
            .iter()
            .map(|h| {
                let mut e = match &h.cond {
                    HeaderCond::Value(v) => str_match_json(v),
                    HeaderCond::Present => json!({ "present": true }),
                    HeaderCond::Absent => json!({ "absent": true }),
                };
                e["name"] = json!(h.name.as_str());
                e
            })
            .collect();
        o.insert("headers".into(), Value::Array(hs));
    }
    if let Some(a) = &m.authority {
        o.insert("authority".into(), str_match_json(a));
    }
    if let Some(d) = &m.destination {
        let d = capture::destinations_input(d);
        o.insert(
            "destination".into(),
            json!({ "destinations": d.destinations, "ports": d.ports }),
        );
    }
    Value::Object(o)
}

pub fn parse_cohort(v: &Value) -> Result<Cohort, ApiError> {
    let o = v
        .as_object()
        .ok_or_else(|| bad("cohort", "must be {\"header\": NAME, \"seed\": N}"))?;
    for k in o.keys() {
        if k != "header" && k != "seed" {
            return Err(bad(
                format!("cohort.{k}"),
                "unknown field (expected header, seed)",
            ));
        }
    }
    let header = o
        .get("header")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("cohort.header", "missing required field"))?;
    let header = HeaderName::from_bytes(header.as_bytes())
        .map_err(|_| bad("cohort.header", format!("{header:?} is not a header name")))?;
    let seed = match o.get("seed") {
        None => 0,
        Some(v) => v
            .as_u64()
            .ok_or_else(|| bad("cohort.seed", "must be a non-negative integer"))?,
    };
    Ok(Cohort { header, seed })
}

pub fn cohort_json(c: &Cohort) -> Value {
    json!({ "header": c.header.as_str(), "seed": c.seed })
}

/// Applies the request-selection fields (`match`, `cohort`) to a parsed fault, checking they
/// are only given for request-level faults.
pub fn apply_selection(
    fault: &mut Fault,
    m: Option<&Value>,
    cohort: Option<&Value>,
) -> Result<(), ApiError> {
    let request_level = fault.kind.tag().is_request_level();
    if let Some(m) = m.filter(|v| !v.is_null()) {
        if !request_level {
            return Err(bad(
                "match",
                format!(
                    "only request-level faults (http_*, grpc_*) take a match; {} acts on connections",
                    fault.kind.tag().name()
                ),
            ));
        }
        fault.matcher = Some(Arc::new(parse_match(m)?));
    }
    if let Some(c) = cohort.filter(|v| !v.is_null()) {
        if !request_level {
            return Err(bad(
                "cohort",
                "only request-level faults (http_*, grpc_*) take a cohort",
            ));
        }
        fault.cohort = Some(parse_cohort(c)?);
    }
    Ok(())
}

/// Converts a native `percentage` (0..100) into a probability.
pub fn percentage(v: &Value) -> Result<Probability, ApiError> {
    let p = v.as_f64().ok_or_else(|| {
        bad(
            "percentage",
            format!("must be a number between 0 and 100, got {v}"),
        )
    })?;
    if !(0.0..=100.0).contains(&p) {
        return Err(bad(
            "percentage",
            format!("must be between 0 and 100, got {p}"),
        ));
    }
    Probability::new(p / 100.0).ok_or_else(|| bad("percentage", "must be between 0 and 100"))
}

/// The native rule shape (`/faultline/v1/routes/{route}/rules`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleInput {
    pub name: Option<String>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub stream: Option<String>,
    #[serde(default)]
    pub percentage: Option<Value>,
    #[serde(rename = "match", default)]
    pub matcher: Option<Value>,
    #[serde(default)]
    pub cohort: Option<Value>,
    #[serde(default)]
    pub attributes: Option<Value>,
    #[serde(default)]
    pub expires_in: Option<Value>,
    #[serde(default)]
    pub expires_at: Option<String>,
}

impl RuleInput {
    pub fn into_fault(self) -> Result<Fault, ApiError> {
        super::toxiproxy::ToxicInput {
            name: self.name,
            kind: self.kind,
            stream: self.stream.or_else(|| Some("both".into())),
            toxicity: None,
            attributes: self.attributes,
            expires_in: self.expires_in,
            expires_at: self.expires_at,
            matcher: self.matcher,
            cohort: self.cohort,
            percentage: self.percentage,
        }
        .into_fault()
    }
}

/// A rule as the native API shows it, with its counters.
pub fn rule_json(v: &crate::route::FaultView) -> Value {
    use std::sync::atomic::Ordering::Relaxed;
    let t = super::toxiproxy::ToxicJson::from(v);
    let mut out = serde_json::to_value(&t).unwrap_or_default();
    if let Some(o) = out.as_object_mut() {
        o.remove("toxicity");
        o.insert("percentage".into(), json!(v.fault.toxicity.get() * 100.0));
        o.insert(
            "stats".into(),
            json!({
                "matched": v.counters.matched.load(Relaxed),
                "injected": v.counters.injected.load(Relaxed),
                "passed": v.counters.passed.load(Relaxed),
            }),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destination_parses_like_a_captured_routes_match_and_shows_back() {
        let m = parse_match(&json!({
            "path": {"prefix": "/v1/"},
            "destination": {"destinations": ["10.9.0.0/16", "192.0.2.7", "2001:db8::/32"], "ports": [6379]},
        }))
        .unwrap();
        let d = m.destination.as_ref().unwrap();
        assert_eq!(d.ports, [6379]);
        assert_eq!(d.destinations.len(), 3);
        assert!(d.matches("192.0.2.7:6379".parse().unwrap()));
        let shown = match_json(&m);
        assert_eq!(
            shown["destination"],
            json!({"destinations": ["10.9.0.0/16", "192.0.2.7/32", "2001:db8::/32"], "ports": [6379]})
        );
        assert_eq!(parse_match(&shown).unwrap(), m);
        // Either list may be left out.
        let ports_only = parse_match(&json!({"destination": {"ports": [80]}})).unwrap();
        assert_eq!(
            ports_only.destination,
            Some(DestinationMatch {
                destinations: vec![],
                ports: vec![80]
            })
        );
    }

    #[test]
    fn bad_destinations_name_the_field() {
        let field = |d: Value| {
            parse_match(&json!({ "destination": d }))
                .unwrap_err()
                .field
                .unwrap_or_default()
        };
        assert_eq!(field(json!("10.0.0.0/8")), "match.destination");
        assert_eq!(
            field(json!({"destinations": "10.0.0.0/8"})),
            "match.destination.destinations"
        );
        assert_eq!(
            field(json!({"destinations": ["10.0.0.0/8", "10.0.0.300"]})),
            "match.destination.destinations[1]"
        );
        assert_eq!(
            field(json!({"destinations": [10]})),
            "match.destination.destinations[0]"
        );
        assert_eq!(
            field(json!({"ports": [80, 70000]})),
            "match.destination.ports[1]"
        );
        assert_eq!(field(json!({"ports": [0]})), "match.destination.ports[0]");
        assert_eq!(
            field(json!({"ports": ["http"]})),
            "match.destination.ports[0]"
        );
        assert_eq!(
            field(json!({"addresses": ["10.0.0.1"]})),
            "match.destination.addresses"
        );
        let e =
            parse_match(&json!({"destination": {"destinations": ["10.0.0.0/40"]}})).unwrap_err();
        assert!(
            e.message.contains("is not an address or CIDR"),
            "{}",
            e.message
        );
    }
}
