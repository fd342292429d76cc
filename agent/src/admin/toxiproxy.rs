//! Toxiproxy 2.x's JSON shapes and their conversion into faultline's domain types.
//!
//! This is the boundary: request bodies are parsed here into [`RouteSpec`] and [`Fault`], with
//! every error naming the field; nothing past this module sees JSON. Units follow Toxiproxy:
//! latency, jitter and timeouts in milliseconds, bandwidth `rate` in KB/s (1 KB = 1000 bytes),
//! slicer `delay` in microseconds. faultline's own additions are extra toxic types (`down`,
//! `partition`), the `both` stream, and the optional `expires_in` / `expires_at` fields, which
//! Toxiproxy's clients never send.

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use tokio::time::Instant;

use super::capture::{self, MatchInput};
use super::error::ApiError;
use crate::fault::partition::{PartitionAction, PartitionPeer};
use crate::fault::{
    Bandwidth, Direction, Down, Fault, FaultKind, KindTag, Latency, LimitData, Origin, Partition,
    Probability, ResetPeer, Slicer, SlowClose, Timeout, parse_duration,
};
use crate::route::{
    FaultView, HttpOptions, Protocol, RouteSpec, RouteUpdate, RouteView, Upstream,
    parse_response_timeout,
};

/// The Toxiproxy API version this surface is compatible with.
pub const TOXIPROXY_VERSION: &str = "2.12.0";

// === Proxies ===

#[derive(Debug, Serialize)]
pub struct ProxyJson {
    pub name: String,
    pub listen: String,
    pub upstream: String,
    pub enabled: bool,
    pub toxics: Vec<ToxicJson>,
    /// faultline: `tcp`, `http` or `grpc`.
    pub protocol: &'static str,
    /// faultline: HTTP options (http and grpc routes only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub header_faults: Option<bool>,
    /// faultline: how long the upstream has to start answering (`30s`), when limited.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_timeout: Option<String>,
    /// faultline: a captured route's direction (`outbound`, `inbound`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capture: Option<&'static str>,
    /// faultline: a captured route's original destinations.
    #[serde(rename = "match", skip_serializing_if = "Option::is_none")]
    pub capture_match: Option<MatchInput>,
}

impl From<&RouteView> for ProxyJson {
    fn from(r: &RouteView) -> Self {
        ProxyJson {
            name: r.name.clone(),
            listen: r.listen.to_string(),
            upstream: r.upstream.to_string(),
            enabled: r.enabled,
            toxics: r.faults.iter().map(ToxicJson::from).collect(),
            protocol: r.protocol.as_str(),
            header_faults: r.protocol.is_http().then_some(r.http.header_faults),
            response_timeout: r
                .http
                .response_timeout
                .map(|t| humantime::format_duration(t).to_string()),
            capture: r.capture.as_ref().map(|c| c.direction.as_str()),
            capture_match: r.capture.as_ref().map(capture::to_input),
        }
    }
}

/// A proxy as clients send it. Unknown fields are ignored, as Toxiproxy does, because its
/// clients send back whole proxy objects on update.
#[derive(Debug, Default, Deserialize)]
pub struct ProxyInput {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub listen: Option<String>,
    #[serde(default)]
    pub upstream: Option<String>,
    #[serde(default)]
    pub enabled: Option<bool>,
    /// faultline: `tcp` (default), `http` or `grpc`.
    #[serde(default)]
    pub protocol: Option<String>,
    /// faultline: honour `x-faultline-*` request headers (http and grpc routes).
    #[serde(default)]
    pub header_faults: Option<bool>,
    /// faultline: cap on header-triggered faults in progress at once.
    #[serde(default)]
    pub max_header_faults: Option<u32>,
    /// faultline: add `x-faultline-fault: NAME` to responses a fault acted on.
    #[serde(default)]
    pub fault_header: Option<bool>,
    /// faultline: how long the upstream has to start answering (`30s`); default no limit.
    #[serde(default)]
    pub response_timeout: Option<String>,
    /// faultline: a captured route (`outbound` or `inbound`): no listener; it takes redirected
    /// connections whose original destination fits `match`.
    #[serde(default)]
    pub capture: Option<String>,
    /// faultline: a captured route's original destinations (`destinations`, `ports`).
    #[serde(default, rename = "match")]
    pub capture_match: Option<MatchInput>,
}

impl ProxyInput {
    pub fn into_spec(self) -> Result<RouteSpec, ApiError> {
        let name = self
            .name
            .filter(|n| !n.is_empty())
            .ok_or_else(|| ApiError::bad_request("name", "missing required field"))?;
        let upstream = self
            .upstream
            .filter(|u| !u.is_empty())
            .ok_or_else(|| ApiError::bad_request("upstream", "missing required field"))?;
        let upstream = parse_upstream(&upstream)?;
        let capture = match self.capture.as_deref() {
            None | Some("") => {
                if self.capture_match.is_some() {
                    return Err(ApiError::bad_request("match", "needs capture"));
                }
                None
            }
            Some(direction) => Some(
                capture::parse(direction, self.capture_match)
                    .map_err(|(field, message)| ApiError::bad_request(field, message))?,
            ),
        };
        // Toxiproxy defaults an empty listen address to a random loopback port.
        let listen = self
            .listen
            .filter(|l| !l.is_empty())
            .unwrap_or_else(|| "127.0.0.1:0".to_string());
        if capture.is_none() {
            check_listen(&listen)?;
        }
        let protocol = match self.protocol.as_deref() {
            None | Some("") if capture.is_some() => Protocol::Auto,
            None | Some("") => Protocol::Tcp,
            Some(p) => p
                .parse::<Protocol>()
                .map_err(|e| ApiError::bad_request("protocol", e))?,
        };
        let mut http = HttpOptions::default();
        if let Some(t) = &self.response_timeout {
            if !protocol.is_http() {
                return Err(ApiError::bad_request(
                    "response_timeout",
                    "HTTP options need protocol http or grpc",
                ));
            }
            http.response_timeout = Some(
                parse_response_timeout(t)
                    .map_err(|e| ApiError::bad_request("response_timeout", e))?,
            );
        }
        if self.header_faults.is_some()
            || self.max_header_faults.is_some()
            || self.fault_header.is_some()
        {
            if !protocol.is_http() {
                return Err(ApiError::bad_request(
                    "header_faults",
                    "HTTP options need protocol http or grpc",
                ));
            }
            http.header_faults = self.header_faults.unwrap_or(false);
            http.fault_header = self.fault_header.unwrap_or(false);
            if let Some(n) = self.max_header_faults {
                if n == 0 {
                    return Err(ApiError::bad_request(
                        "max_header_faults",
                        "must be at least 1",
                    ));
                }
                http.max_header_faults = n;
            }
        }
        Ok(RouteSpec {
            name,
            listen,
            upstream,
            enabled: self.enabled.unwrap_or(true),
            protocol,
            http,
            capture,
        })
    }

    pub fn into_update(self) -> Result<RouteUpdate, ApiError> {
        if let Some(l) = &self.listen {
            check_listen(l)?;
        }
        Ok(RouteUpdate {
            listen: self.listen,
            upstream: self.upstream.as_deref().map(parse_upstream).transpose()?,
            enabled: self.enabled,
        })
    }
}

fn parse_upstream(s: &str) -> Result<Upstream, ApiError> {
    s.parse::<Upstream>()
        .map_err(|e| ApiError::bad_request("upstream", e))
}

fn check_listen(s: &str) -> Result<(), ApiError> {
    // The same syntax as an upstream, but port 0 (any free port) is allowed.
    let probe = s.rsplit_once(':').map(|(h, _)| format!("{h}:1"));
    let ok = s
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
        && probe.is_some_and(|p| p.parse::<Upstream>().is_ok());
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            "listen",
            format!("{s:?} is not HOST:PORT"),
        ))
    }
}

// === Toxics ===

#[derive(Debug, Serialize)]
pub struct ToxicJson {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub stream: String,
    pub toxicity: f64,
    pub attributes: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// faultline: who issued the fault (`admin` or `controller`).
    pub origin: &'static str,
    #[serde(rename = "match", skip_serializing_if = "Option::is_none")]
    pub matcher: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cohort: Option<Value>,
}

impl From<&FaultView> for ToxicJson {
    fn from(v: &FaultView) -> Self {
        let f = &v.fault;
        ToxicJson {
            name: f.name.clone(),
            kind: f.kind.tag().name().to_string(),
            stream: f.direction.as_str().to_string(),
            toxicity: f.toxicity.get(),
            attributes: attributes_of(&f.kind),
            expires_at: f.expires_at.map(|at| {
                let left = at.saturating_duration_since(Instant::now());
                humantime::format_rfc3339_millis(SystemTime::now() + left).to_string()
            }),
            origin: match f.origin {
                Origin::Admin => "admin",
                Origin::Controller { .. } => "controller",
            },
            matcher: f.matcher.as_deref().map(super::rules::match_json),
            cohort: f.cohort.as_ref().map(super::rules::cohort_json),
        }
    }
}

/// A toxic as clients send it to `POST /proxies/{name}/toxics`.
#[derive(Debug, Deserialize)]
pub struct ToxicInput {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub stream: Option<String>,
    #[serde(default)]
    pub toxicity: Option<Value>,
    #[serde(default)]
    pub attributes: Option<Value>,
    /// faultline: remove the fault after this long (milliseconds, or a duration like "30s").
    #[serde(default)]
    pub expires_in: Option<Value>,
    /// faultline: remove the fault at this RFC 3339 instant.
    #[serde(default)]
    pub expires_at: Option<String>,
    /// faultline: which requests a request-level fault applies to.
    #[serde(rename = "match", default)]
    pub matcher: Option<Value>,
    /// faultline: a sticky cohort for a request-level fault.
    #[serde(default)]
    pub cohort: Option<Value>,
    /// faultline: the probability as a percentage (0..100), instead of `toxicity`.
    #[serde(default)]
    pub percentage: Option<Value>,
}

impl ToxicInput {
    pub fn into_fault(self) -> Result<Fault, ApiError> {
        let kind_name = self
            .kind
            .ok_or_else(|| ApiError::bad_request("type", "missing required field"))?;
        let tag = KindTag::parse(&kind_name).ok_or_else(|| ApiError {
            status: http::StatusCode::BAD_REQUEST,
            message: format!(
                "invalid toxic type: {kind_name:?} (known: {})",
                KindTag::ALL.map(KindTag::name).join(", ")
            ),
            field: Some("type".into()),
        })?;
        let stream = self.stream.unwrap_or_else(|| "downstream".into());
        let direction = Direction::parse(&stream).ok_or_else(|| ApiError {
            status: http::StatusCode::BAD_REQUEST,
            message: format!(
                "stream was invalid, can be either upstream or downstream (or both): got {stream:?}"
            ),
            field: Some("stream".into()),
        })?;
        let name = self
            .name
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| format!("{kind_name}_{stream}"));
        let toxicity = match (&self.toxicity, &self.percentage) {
            (Some(_), Some(_)) => {
                return Err(ApiError::bad_request(
                    "percentage",
                    "give toxicity (0..1) or percentage (0..100), not both",
                ));
            }
            (_, Some(p)) => super::rules::percentage(p)?,
            (t, None) => parse_toxicity(t.as_ref())?.unwrap_or(Probability::ALWAYS),
        };
        let attrs = as_object(self.attributes.as_ref())?;
        let kind = parse_kind(tag, &attrs)?;
        let expires_at = parse_expiry(self.expires_in.as_ref(), self.expires_at.as_deref())?;
        let mut fault = Fault {
            name,
            kind,
            direction,
            toxicity,
            expires_at,
            origin: Origin::Admin,
            matcher: None,
            cohort: None,
        };
        super::rules::apply_selection(&mut fault, self.matcher.as_ref(), self.cohort.as_ref())?;
        Ok(fault)
    }
}

/// The body of `POST /proxies/{name}/toxics/{toxic}`: attributes are merged into the current
/// ones; toxicity and expiry are replaced when given.
#[derive(Debug, Deserialize)]
pub struct ToxicUpdate {
    #[serde(default)]
    pub attributes: Option<Value>,
    #[serde(default)]
    pub toxicity: Option<Value>,
    #[serde(default)]
    pub expires_in: Option<Value>,
    #[serde(default)]
    pub expires_at: Option<String>,
}

impl ToxicUpdate {
    pub fn apply(&self, current: &Fault) -> Result<Fault, ApiError> {
        let mut merged = match attributes_of(&current.kind) {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        for (k, v) in as_object(self.attributes.as_ref())? {
            merged.insert(k, v);
        }
        let kind = parse_kind(current.kind.tag(), &merged)?;
        let toxicity = parse_toxicity(self.toxicity.as_ref())?.unwrap_or(current.toxicity);
        let expires_at = if self.expires_in.is_some() || self.expires_at.is_some() {
            parse_expiry(self.expires_in.as_ref(), self.expires_at.as_deref())?
        } else {
            current.expires_at
        };
        Ok(Fault {
            kind,
            toxicity,
            expires_at,
            ..current.clone()
        })
    }
}

fn as_object(v: Option<&Value>) -> Result<Map<String, Value>, ApiError> {
    match v {
        None | Some(Value::Null) => Ok(Map::new()),
        Some(Value::Object(m)) => Ok(m.clone()),
        Some(other) => Err(ApiError::bad_request(
            "attributes",
            format!("must be an object, got {other}"),
        )),
    }
}

fn parse_toxicity(v: Option<&Value>) -> Result<Option<Probability>, ApiError> {
    let Some(v) = v else { return Ok(None) };
    let p = v.as_f64().ok_or_else(|| {
        ApiError::bad_request(
            "toxicity",
            format!("must be a number between 0 and 1, got {v}"),
        )
    })?;
    Probability::new(p).map(Some).ok_or_else(|| {
        ApiError::bad_request("toxicity", format!("must be between 0 and 1, got {p}"))
    })
}

fn parse_expiry(
    expires_in: Option<&Value>,
    expires_at: Option<&str>,
) -> Result<Option<Instant>, ApiError> {
    match (expires_in, expires_at) {
        (Some(_), Some(_)) => Err(ApiError::bad_request(
            "expires_in",
            "give expires_in or expires_at, not both",
        )),
        (Some(v), None) => {
            let d = match v {
                Value::Number(n) => n.as_u64().map(Duration::from_millis).ok_or_else(|| {
                    ApiError::bad_request(
                        "expires_in",
                        format!("must be a non-negative number of milliseconds, got {n}"),
                    )
                })?,
                Value::String(s) => {
                    parse_duration(s).map_err(|e| ApiError::bad_request("expires_in", e))?
                }
                other => {
                    return Err(ApiError::bad_request(
                        "expires_in",
                        format!("must be milliseconds or a duration like \"30s\", got {other}"),
                    ));
                }
            };
            Ok(Some(Instant::now() + d))
        }
        (None, Some(s)) => {
            let at = humantime::parse_rfc3339_weak(s).map_err(|e| {
                ApiError::bad_request("expires_at", format!("{s:?} is not an RFC 3339 time ({e})"))
            })?;
            let left = at
                .duration_since(SystemTime::now())
                .unwrap_or(Duration::ZERO);
            Ok(Some(Instant::now() + left))
        }
        (None, None) => Ok(None),
    }
}

/// Reads the attributes of a toxic type, rejecting unknown names and bad values.
struct Attrs<'a> {
    map: &'a Map<String, Value>,
    tag: KindTag,
}

impl Attrs<'_> {
    fn check_known(&self, known: &[&str]) -> Result<(), ApiError> {
        for k in self.map.keys() {
            if !known.contains(&k.as_str()) {
                let expected = if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                };
                return Err(ApiError::bad_request(
                    format!("attributes.{k}"),
                    format!(
                        "unknown attribute for a {} toxic (expected: {expected})",
                        self.tag.name()
                    ),
                ));
            }
        }
        Ok(())
    }

    /// A non-negative integer, 0 when absent (as Toxiproxy's zero values).
    fn uint(&self, key: &str) -> Result<u64, ApiError> {
        match self.map.get(key) {
            None | Some(Value::Null) => Ok(0),
            Some(Value::Number(n)) => n
                .as_u64()
                .or_else(|| {
                    n.as_f64()
                        .filter(|f| *f >= 0.0 && f.fract() == 0.0)
                        .map(|f| f as u64)
                })
                .ok_or_else(|| {
                    ApiError::bad_request(
                        format!("attributes.{key}"),
                        format!("must be a non-negative integer, got {n}"),
                    )
                }),
            Some(other) => Err(ApiError::bad_request(
                format!("attributes.{key}"),
                format!("must be a non-negative integer, got {other}"),
            )),
        }
    }

    fn str(&self, key: &str) -> Result<Option<&str>, ApiError> {
        match self.map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(ApiError::bad_request(
                format!("attributes.{key}"),
                format!("must be a string, got {other}"),
            )),
        }
    }
}

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

fn parse_kind(tag: KindTag, map: &Map<String, Value>) -> Result<FaultKind, ApiError> {
    if tag.is_request_level() {
        return super::rules::parse_http_kind(tag, map);
    }
    let a = Attrs { map, tag };
    Ok(match tag {
        KindTag::Latency => {
            a.check_known(&["latency", "jitter"])?;
            FaultKind::Latency(Latency {
                latency: ms(a.uint("latency")?),
                jitter: ms(a.uint("jitter")?),
            })
        }
        KindTag::Bandwidth => {
            a.check_known(&["rate"])?;
            let rate = a.uint("rate")?;
            if rate == 0 {
                return Err(ApiError::bad_request(
                    "attributes.rate",
                    "must be at least 1 (KB/s)",
                ));
            }
            FaultKind::Bandwidth(Bandwidth {
                bytes_per_sec: rate.saturating_mul(1000),
            })
        }
        KindTag::Slicer => {
            a.check_known(&["average_size", "size_variation", "delay"])?;
            let average_size = a.uint("average_size")? as usize;
            let size_variation = a.uint("size_variation")? as usize;
            if average_size == 0 {
                return Err(ApiError::bad_request(
                    "attributes.average_size",
                    "must be at least 1 (bytes)",
                ));
            }
            if size_variation >= average_size {
                return Err(ApiError::bad_request(
                    "attributes.size_variation",
                    format!("must be smaller than average_size ({average_size})"),
                ));
            }
            FaultKind::Slicer(Slicer {
                average_size,
                size_variation,
                delay: Duration::from_micros(a.uint("delay")?),
            })
        }
        KindTag::SlowClose => {
            a.check_known(&["delay"])?;
            FaultKind::SlowClose(SlowClose {
                delay: ms(a.uint("delay")?),
            })
        }
        KindTag::Timeout => {
            a.check_known(&["timeout"])?;
            FaultKind::Timeout(Timeout {
                timeout: ms(a.uint("timeout")?),
            })
        }
        KindTag::ResetPeer => {
            a.check_known(&["timeout"])?;
            FaultKind::ResetPeer(ResetPeer {
                timeout: ms(a.uint("timeout")?),
            })
        }
        KindTag::LimitData => {
            a.check_known(&["bytes"])?;
            FaultKind::LimitData(LimitData {
                bytes: a.uint("bytes")?,
            })
        }
        KindTag::Down => {
            a.check_known(&[])?;
            FaultKind::Down(Down)
        }
        KindTag::HttpAbort
        | KindTag::HttpDelay
        | KindTag::HttpThrottle
        | KindTag::HttpReset
        | KindTag::GrpcAbort
        | KindTag::GrpcStream => unreachable!("request-level kinds are parsed in admin::rules"),
        KindTag::Partition => {
            a.check_known(&["cidrs", "peer", "action"])?;
            let cidrs = match map.get("cidrs") {
                Some(Value::Array(items)) if !items.is_empty() => items
                    .iter()
                    .enumerate()
                    .map(|(i, v)| {
                        let s = v.as_str().ok_or_else(|| {
                            ApiError::bad_request(
                                format!("attributes.cidrs[{i}]"),
                                format!("must be a string, got {v}"),
                            )
                        })?;
                        s.parse::<ipnet::IpNet>()
                            .or_else(|_| s.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                            .map_err(|_| {
                                ApiError::bad_request(
                                    format!("attributes.cidrs[{i}]"),
                                    format!("{s:?} is not a CIDR or an IP address"),
                                )
                            })
                    })
                    .collect::<Result<Vec<_>, _>>()?,
                _ => {
                    return Err(ApiError::bad_request(
                        "attributes.cidrs",
                        "must be a non-empty list of CIDRs",
                    ));
                }
            };
            let peer = match a.str("peer")?.unwrap_or("client") {
                "client" => PartitionPeer::Client,
                "upstream" => PartitionPeer::Upstream,
                other => {
                    return Err(ApiError::bad_request(
                        "attributes.peer",
                        format!("must be \"client\" or \"upstream\", got {other:?}"),
                    ));
                }
            };
            let action = match a.str("action")?.unwrap_or("refuse") {
                "refuse" => PartitionAction::Refuse,
                "blackhole" => PartitionAction::Blackhole,
                other => {
                    return Err(ApiError::bad_request(
                        "attributes.action",
                        format!("must be \"refuse\" or \"blackhole\", got {other:?}"),
                    ));
                }
            };
            FaultKind::Partition(Partition {
                cidrs,
                peer,
                action,
            })
        }
    })
}

/// A fault's parameters in Toxiproxy's attribute names and units.
pub fn attributes_of(kind: &FaultKind) -> Value {
    let ms = |d: Duration| d.as_millis() as u64;
    match kind {
        FaultKind::Latency(l) => json!({ "latency": ms(l.latency), "jitter": ms(l.jitter) }),
        FaultKind::Bandwidth(b) => json!({ "rate": b.bytes_per_sec / 1000 }),
        FaultKind::Slicer(s) => json!({
            "average_size": s.average_size,
            "size_variation": s.size_variation,
            "delay": s.delay.as_micros() as u64,
        }),
        FaultKind::SlowClose(s) => json!({ "delay": ms(s.delay) }),
        FaultKind::Timeout(t) => json!({ "timeout": ms(t.timeout) }),
        FaultKind::ResetPeer(r) => json!({ "timeout": ms(r.timeout) }),
        FaultKind::LimitData(l) => json!({ "bytes": l.bytes }),
        FaultKind::Down(_) => json!({}),
        FaultKind::HttpAbort(_)
        | FaultKind::HttpDelay(_)
        | FaultKind::HttpThrottle(_)
        | FaultKind::HttpReset(_)
        | FaultKind::GrpcAbort(_)
        | FaultKind::GrpcStream(_) => super::rules::http_attributes_of(kind),
        FaultKind::Partition(p) => json!({
            "cidrs": p.cidrs.iter().map(|c| c.to_string()).collect::<Vec<_>>(),
            "peer": match p.peer { PartitionPeer::Client => "client", PartitionPeer::Upstream => "upstream" },
            "action": match p.action { PartitionAction::Refuse => "refuse", PartitionAction::Blackhole => "blackhole" },
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toxic(v: Value) -> Result<Fault, ApiError> {
        serde_json::from_value::<ToxicInput>(v)
            .unwrap()
            .into_fault()
    }

    #[test]
    fn defaults_follow_toxiproxy() {
        let f = toxic(json!({"type": "latency", "attributes": {"latency": 100}})).unwrap();
        assert_eq!(f.name, "latency_downstream");
        assert_eq!(f.direction, Direction::Downstream);
        assert_eq!(f.toxicity, Probability::ALWAYS);
        assert_eq!(
            f.kind,
            FaultKind::Latency(Latency {
                latency: ms(100),
                jitter: Duration::ZERO
            })
        );
    }

    #[test]
    fn bad_values_name_their_field() {
        let cases = [
            (json!({"type": "nope"}), "type"),
            (
                json!({"type": "latency", "attributes": {"latency": -5}}),
                "attributes.latency",
            ),
            (
                json!({"type": "latency", "attributes": {"latency": "x"}}),
                "attributes.latency",
            ),
            (
                json!({"type": "latency", "attributes": {"latancy": 5}}),
                "attributes.latancy",
            ),
            (json!({"type": "latency", "toxicity": 1.5}), "toxicity"),
            (json!({"type": "latency", "toxicity": "half"}), "toxicity"),
            (json!({"type": "latency", "stream": "sideways"}), "stream"),
            (
                json!({"type": "bandwidth", "attributes": {"rate": 0}}),
                "attributes.rate",
            ),
            (
                json!({"type": "slicer", "attributes": {"average_size": 10, "size_variation": 10}}),
                "attributes.size_variation",
            ),
            (
                json!({"type": "partition", "attributes": {"cidrs": ["nope"]}}),
                "attributes.cidrs[0]",
            ),
            (
                json!({"type": "partition", "attributes": {}}),
                "attributes.cidrs",
            ),
            (
                json!({"type": "latency", "expires_in": "soon"}),
                "expires_in",
            ),
        ];
        for (input, field) in cases {
            let err = toxic(input.clone()).unwrap_err();
            assert_eq!(err.status, http::StatusCode::BAD_REQUEST, "{input}");
            assert_eq!(
                err.field.as_deref(),
                Some(field),
                "{input}: {}",
                err.message
            );
        }
    }

    #[test]
    fn attributes_round_trip() {
        for input in [
            json!({"type": "latency", "attributes": {"latency": 100, "jitter": 10}}),
            json!({"type": "bandwidth", "attributes": {"rate": 100}}),
            json!({"type": "slicer", "attributes": {"average_size": 64, "size_variation": 32, "delay": 10}}),
            json!({"type": "limit_data", "attributes": {"bytes": 1234}}),
            json!({"type": "partition", "attributes": {"cidrs": ["127.0.0.2/32"], "peer": "client", "action": "blackhole"}}),
        ] {
            let f = toxic(input.clone()).unwrap();
            assert_eq!(attributes_of(&f.kind), input["attributes"]);
        }
    }

    #[test]
    fn update_merges_attributes() {
        let f = toxic(json!({"type": "latency", "attributes": {"latency": 100, "jitter": 10}}))
            .unwrap();
        let u: ToxicUpdate =
            serde_json::from_value(json!({"attributes": {"latency": 5}, "toxicity": 0.5})).unwrap();
        let g = u.apply(&f).unwrap();
        assert_eq!(attributes_of(&g.kind), json!({"latency": 5, "jitter": 10}));
        assert_eq!(g.toxicity.get(), 0.5);
    }

    #[test]
    fn captured_proxies_take_capture_and_match_and_show_them() {
        let input: ProxyInput = serde_json::from_value(json!({
            "name": "cache", "upstream": "original", "capture": "outbound",
            "match": {"destinations": ["10.0.0.0/8"], "ports": [6379]}
        }))
        .unwrap();
        let spec = input.into_spec().unwrap();
        assert_eq!(spec.protocol, Protocol::Auto);
        assert_eq!(
            spec.capture.as_ref().unwrap().to_string(),
            "capture:outbound:10.0.0.0/8:6379"
        );
        let view = RouteView {
            name: spec.name.clone(),
            listen: "0.0.0.0:0".parse().unwrap(),
            upstream: spec.upstream.clone(),
            enabled: true,
            protocol: spec.protocol,
            http: spec.http,
            faults: vec![],
            capture: spec.capture.clone(),
        };
        let shown = serde_json::to_value(ProxyJson::from(&view)).unwrap();
        assert_eq!(shown["capture"], "outbound");
        assert_eq!(
            shown["match"],
            json!({"destinations": ["10.0.0.0/8"], "ports": [6379]})
        );
        assert_eq!(shown["upstream"], "original");
        assert_eq!(shown["protocol"], "auto");
        for (body, field) in [
            (
                json!({"name": "c", "upstream": "original", "capture": "up"}),
                "capture",
            ),
            (
                json!({"name": "c", "upstream": "h:1", "capture": "inbound", "match": {"ports": [0]}}),
                "match.ports[0]",
            ),
            (
                json!({"name": "c", "upstream": "h:1", "match": {"ports": [1]}}),
                "match",
            ),
        ] {
            let e = serde_json::from_value::<ProxyInput>(body)
                .unwrap()
                .into_spec()
                .unwrap_err();
            assert_eq!(e.field.as_deref(), Some(field), "{e:?}");
        }
    }
}
