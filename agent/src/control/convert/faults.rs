//! Faults on the wire (`v1::FaultSpec`) to and from the domain [`Fault`] and its route.
//!
//! Into the domain, a `FaultSpec` is rewritten into the admin API's toxic shape (attribute
//! names and units are the same by design, see `faults.proto`) and parsed by
//! [`ToxicInput::into_fault`], so the wire and the admin API enforce one set of rules with one
//! piece of code. The JSON field an error names is translated back into the `.proto` field path
//! (`attributes.rate` of a `bandwidth` becomes `bandwidth.rate_kbps`). What only the wire can get
//! wrong (unknown enum values, an unset oneof, a gRPC selector split in two fields) is checked
//! here. Out of the domain is a field-by-field copy.

use std::collections::BTreeMap;

use faultline_proto::v1::{self, fault_spec::Kind, header_match::Condition, str_match};
use serde_json::{Map, Value, json};

use super::ConvertError;
use crate::admin::error::ApiError;
use crate::admin::toxiproxy::ToxicInput;
use crate::fault::http::matcher::{HeaderCond, StrMatch};
use crate::fault::http::{
    Abort, Cohort, Delay, DelayPhase, GrpcAbort, GrpcStream, HttpReset, RequestMatch, ResetPhase,
    StreamAction, Throttle,
};
use crate::fault::partition::{PartitionAction, PartitionPeer};
use crate::fault::{
    Bandwidth, Direction, Fault, FaultKind, KindTag, Latency, LimitData, Origin, Partition,
    Probability, ResetPeer, Slicer, SlowClose, Timeout,
};

/// A fault and the route it acts on: the domain side of a `v1::FaultSpec`.
#[derive(Clone, Debug, PartialEq)]
pub struct RouteFault {
    pub route: String,
    pub fault: Fault,
}

impl From<RouteFault> for (String, Fault) {
    fn from(rf: RouteFault) -> Self {
        (rf.route, rf.fault)
    }
}

// === wire -> domain ===

impl TryFrom<v1::FaultSpec> for RouteFault {
    type Error = ConvertError;

    /// The fault's origin is `Origin::Controller` with the message's experiment; it has no
    /// expiry (a controller-issued fault ends with the lease). `route`, `name` and `experiment`
    /// are required; `probability` absent is 1.0; `DIRECTION_UNSPECIFIED` is both directions.
    fn try_from(spec: v1::FaultSpec) -> Result<Self, ConvertError> {
        let v1::FaultSpec {
            name,
            route,
            experiment,
            direction,
            probability,
            r#match,
            cohort,
            kind,
        } = spec;
        for (path, value) in [
            ("route", &route),
            ("name", &name),
            ("experiment", &experiment),
        ] {
            if value.is_empty() {
                return Err(ConvertError::new(path, "missing required field"));
            }
        }
        let direction = match known::<v1::Direction>(direction, "direction")? {
            v1::Direction::Unspecified | v1::Direction::Both => Direction::Both,
            v1::Direction::Upstream => Direction::Upstream,
            v1::Direction::Downstream => Direction::Downstream,
        };
        // `Probability::new` is the rule the admin API's `toxicity` goes through too; NaN has no
        // JSON form, so it is checked here rather than sent through the JSON parser.
        let toxicity = match probability {
            None => Probability::ALWAYS,
            Some(p) => Probability::new(p).ok_or_else(|| {
                ConvertError::new("probability", format!("must be between 0 and 1, got {p}"))
            })?,
        };
        let kind = kind.ok_or_else(|| {
            ConvertError::new(
                "kind",
                format!(
                    "missing: exactly one of {} must be set",
                    KindTag::ALL.map(KindTag::name).join(", ")
                ),
            )
        })?;
        let (tag, attributes) = attributes(kind)?;
        let input = ToxicInput {
            name: Some(name),
            kind: Some(tag.name().to_owned()),
            stream: Some(direction.as_str().to_owned()),
            toxicity: None,
            attributes: Some(attributes),
            expires_in: None,
            expires_at: None,
            matcher: r#match.map(match_json).transpose()?,
            cohort: cohort.map(|c| json!({ "header": c.header, "seed": c.seed })),
            percentage: None,
        };
        let mut fault = input.into_fault().map_err(|e| from_api(tag, e))?;
        fault.toxicity = toxicity;
        fault.origin = Origin::Controller { experiment };
        Ok(RouteFault { route, fault })
    }
}

/// A proto enum field's value, or an error naming it when the number is not in the enum.
fn known<E: TryFrom<i32>>(value: i32, path: &str) -> Result<E, ConvertError> {
    E::try_from(value).map_err(|_| ConvertError::new(path, format!("unknown enum value {value}")))
}

/// The kind's admin-API attributes, as `admin::toxiproxy` and `admin::rules` parse them. An
/// `..._UNSPECIFIED` enum leaves its attribute out, so it takes the admin API's default.
fn attributes(kind: Kind) -> Result<(KindTag, Value), ConvertError> {
    let mut m = Map::new();
    let tag = match kind {
        Kind::Latency(l) => {
            m.insert("latency".into(), json!(l.latency_ms));
            m.insert("jitter".into(), json!(l.jitter_ms));
            KindTag::Latency
        }
        Kind::Bandwidth(b) => {
            m.insert("rate".into(), json!(b.rate_kbps));
            KindTag::Bandwidth
        }
        Kind::Slicer(s) => {
            m.insert("average_size".into(), json!(s.average_size));
            m.insert("size_variation".into(), json!(s.size_variation));
            m.insert("delay".into(), json!(s.delay_us));
            KindTag::Slicer
        }
        Kind::SlowClose(s) => {
            m.insert("delay".into(), json!(s.delay_ms));
            KindTag::SlowClose
        }
        Kind::Timeout(t) => {
            m.insert("timeout".into(), json!(t.timeout_ms));
            KindTag::Timeout
        }
        Kind::ResetPeer(r) => {
            m.insert("timeout".into(), json!(r.timeout_ms));
            KindTag::ResetPeer
        }
        Kind::LimitData(l) => {
            m.insert("bytes".into(), json!(l.bytes));
            KindTag::LimitData
        }
        Kind::Down(v1::Down {}) => KindTag::Down,
        Kind::Partition(p) => {
            use v1::partition::{Action, Peer};
            m.insert("cidrs".into(), json!(p.cidrs));
            match known::<Peer>(p.peer, "partition.peer")? {
                Peer::Unspecified => {}
                Peer::Client => _ = m.insert("peer".into(), json!("client")),
                Peer::Upstream => _ = m.insert("peer".into(), json!("upstream")),
            }
            match known::<Action>(p.action, "partition.action")? {
                Action::Unspecified => {}
                Action::Refuse => _ = m.insert("action".into(), json!("refuse")),
                Action::Blackhole => _ = m.insert("action".into(), json!("blackhole")),
            }
            KindTag::Partition
        }
        Kind::HttpAbort(a) => {
            m.insert("status".into(), json!(a.status));
            m.insert("body".into(), json!(a.body));
            // Sorted by name, so the domain's header order does not depend on a hash map's.
            let headers: BTreeMap<String, String> = a.headers.into_iter().collect();
            m.insert("headers".into(), json!(headers));
            KindTag::HttpAbort
        }
        Kind::HttpDelay(d) => {
            use v1::http_delay::Phase;
            m.insert("delay".into(), json!(d.delay_ms));
            m.insert("jitter".into(), json!(d.jitter_ms));
            match known::<Phase>(d.phase, "http_delay.phase")? {
                Phase::Unspecified => {}
                Phase::Request => _ = m.insert("phase".into(), json!("request")),
                Phase::Response => _ = m.insert("phase".into(), json!("response")),
            }
            KindTag::HttpDelay
        }
        Kind::HttpThrottle(t) => {
            m.insert("bytes_per_second".into(), json!(t.bytes_per_second));
            KindTag::HttpThrottle
        }
        Kind::HttpReset(r) => {
            use v1::http_reset::Phase;
            match known::<Phase>(r.phase, "http_reset.phase")? {
                Phase::Unspecified => {}
                Phase::BeforeResponse => _ = m.insert("phase".into(), json!("before_response")),
                Phase::MidResponse => _ = m.insert("phase".into(), json!("mid_response")),
            }
            // proto3 cannot tell 0 from absent; a non-zero count with another phase is an error.
            if r.after_bytes != 0 {
                m.insert("after_bytes".into(), json!(r.after_bytes));
            }
            KindTag::HttpReset
        }
        Kind::GrpcAbort(g) => {
            m.insert("code".into(), json!(g.code));
            m.insert("message".into(), json!(g.message));
            KindTag::GrpcAbort
        }
        Kind::GrpcStream(g) => {
            use v1::grpc_stream::Action;
            if let Some(n) = g.after_messages {
                m.insert("after_messages".into(), json!(n));
            }
            if let Some(ms) = g.after_ms {
                m.insert("after".into(), json!(ms));
            }
            let action = known::<Action>(g.action, "grpc_stream.action")?;
            match action {
                Action::Unspecified => {}
                Action::Reset => _ = m.insert("action".into(), json!("reset")),
                Action::Status => _ = m.insert("action".into(), json!("status")),
            }
            // The code is required with ACTION_STATUS (0 is then rejected); otherwise unused.
            if action == Action::Status || g.code != 0 {
                m.insert("code".into(), json!(g.code));
            }
            if !g.message.is_empty() {
                m.insert("message".into(), json!(g.message));
            }
            if g.message_delay_ms != 0 {
                m.insert("message_delay".into(), json!(g.message_delay_ms));
            }
            KindTag::GrpcStream
        }
    };
    Ok((tag, Value::Object(m)))
}

/// A `RequestMatch` as the admin API's `match` block.
fn match_json(m: v1::RequestMatch) -> Result<Value, ConvertError> {
    let mut o = Map::new();
    if !m.methods.is_empty() {
        o.insert("methods".into(), json!(m.methods));
    }
    if let Some(p) = m.path {
        o.insert("path".into(), str_match_json(p.kind));
    }
    if let Some(g) = m.grpc {
        // The admin API takes one "/service/method" string; a '/' inside either field would
        // move the split, so it is refused before the two are joined.
        for (path, value) in [
            ("match.grpc.service", &g.service),
            ("match.grpc.method", &g.method),
        ] {
            if value.contains('/') {
                return Err(ConvertError::new(
                    path,
                    format!("{value:?} must not contain '/'"),
                ));
            }
        }
        let joined = if g.method.is_empty() {
            format!("/{}", g.service)
        } else {
            format!("/{}/{}", g.service, g.method)
        };
        o.insert("grpc".into(), json!(joined));
    }
    if !m.headers.is_empty() {
        let headers = m
            .headers
            .into_iter()
            .map(|h| {
                let mut e = Map::new();
                e.insert("name".into(), json!(h.name));
                match h.condition {
                    None => {}
                    Some(Condition::Exact(s)) => _ = e.insert("exact".into(), json!(s)),
                    Some(Condition::Prefix(s)) => _ = e.insert("prefix".into(), json!(s)),
                    Some(Condition::Regex(s)) => _ = e.insert("regex".into(), json!(s)),
                    Some(Condition::Present(b)) => _ = e.insert("present".into(), json!(b)),
                    Some(Condition::Absent(b)) => _ = e.insert("absent".into(), json!(b)),
                }
                Value::Object(e)
            })
            .collect();
        o.insert("headers".into(), Value::Array(headers));
    }
    if let Some(a) = m.authority {
        o.insert("authority".into(), str_match_json(a.kind));
    }
    if let Some(d) = m.destination {
        // Ports stay u32 here so the admin parser names one out of range.
        o.insert(
            "destination".into(),
            json!({ "destinations": d.destinations, "ports": d.ports }),
        );
    }
    Ok(Value::Object(o))
}

/// An unset `StrMatch` becomes `{}`, which the admin parser rejects with the field named.
fn str_match_json(kind: Option<str_match::Kind>) -> Value {
    match kind {
        None => json!({}),
        Some(str_match::Kind::Exact(s)) => json!({ "exact": s }),
        Some(str_match::Kind::Prefix(s)) => json!({ "prefix": s }),
        Some(str_match::Kind::Regex(s)) => json!({ "regex": s }),
    }
}

/// An admin API error, re-addressed to the `.proto` field it came from.
fn from_api(tag: KindTag, e: ApiError) -> ConvertError {
    let field = e.field.unwrap_or_default();
    // `ApiError::bad_request` prefixes its message with the field; keep only what follows.
    let message = e
        .message
        .strip_prefix(&format!("bad request body: {field}: "))
        .map(str::to_owned)
        .unwrap_or(e.message);
    ConvertError::new(proto_path(tag, &field), message)
}

/// The `.proto` path of a field the admin API names (`attributes.delay` of a `slicer` is
/// `slicer.delay_us`). `match.*` and `cohort.*` are spelled alike on both sides.
fn proto_path(tag: KindTag, field: &str) -> String {
    let kind = tag.name();
    match field {
        "toxicity" | "percentage" => return "probability".into(),
        "stream" => return "direction".into(),
        "type" => return "kind".into(),
        _ => {}
    }
    let Some(rest) = field.strip_prefix("attributes") else {
        return field.to_owned();
    };
    let Some(rest) = rest.strip_prefix('.') else {
        return kind.to_owned();
    };
    if let (KindTag::HttpAbort, Some(header)) = (tag, rest.strip_prefix("headers.")) {
        return format!("{kind}.headers[{header:?}]");
    }
    let (key, suffix) = rest.split_at(rest.find(['[', '.']).unwrap_or(rest.len()));
    let key = match (tag, key) {
        (KindTag::Latency, "latency") => "latency_ms",
        (KindTag::Latency | KindTag::HttpDelay, "jitter") => "jitter_ms",
        (KindTag::Bandwidth, "rate") => "rate_kbps",
        (KindTag::Slicer, "delay") => "delay_us",
        (KindTag::SlowClose | KindTag::HttpDelay, "delay") => "delay_ms",
        (KindTag::Timeout | KindTag::ResetPeer, "timeout") => "timeout_ms",
        (KindTag::GrpcStream, "after") => "after_ms",
        (KindTag::GrpcStream, "message_delay") => "message_delay_ms",
        (_, key) => key,
    };
    format!("{kind}.{key}{suffix}")
}

// === domain -> wire ===

impl From<&RouteFault> for v1::FaultSpec {
    fn from(rf: &RouteFault) -> Self {
        fault_spec(&rf.route, &rf.fault)
    }
}

/// The wire form of `fault` on `route`. An admin-issued fault has no experiment (the field is
/// left empty, which the agent would refuse); the expiry does not travel.
pub fn fault_spec(route: &str, fault: &Fault) -> v1::FaultSpec {
    v1::FaultSpec {
        name: fault.name.clone(),
        route: route.to_owned(),
        experiment: match &fault.origin {
            Origin::Controller { experiment } => experiment.clone(),
            Origin::Admin => String::new(),
        },
        direction: match fault.direction {
            Direction::Upstream => v1::Direction::Upstream,
            Direction::Downstream => v1::Direction::Downstream,
            Direction::Both => v1::Direction::Both,
        } as i32,
        probability: Some(fault.toxicity.get()),
        r#match: fault.matcher.as_deref().map(request_match),
        cohort: fault.cohort.as_ref().map(cohort),
        kind: Some(kind(&fault.kind)),
    }
}

fn ms(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn kind(kind: &FaultKind) -> Kind {
    match kind {
        FaultKind::Latency(Latency { latency, jitter }) => Kind::Latency(v1::Latency {
            latency_ms: ms(*latency),
            jitter_ms: ms(*jitter),
        }),
        FaultKind::Bandwidth(Bandwidth { bytes_per_sec }) => Kind::Bandwidth(v1::Bandwidth {
            rate_kbps: bytes_per_sec / 1000,
        }),
        FaultKind::Slicer(Slicer {
            average_size,
            size_variation,
            delay,
        }) => Kind::Slicer(v1::Slicer {
            average_size: *average_size as u64,
            size_variation: *size_variation as u64,
            delay_us: u64::try_from(delay.as_micros()).unwrap_or(u64::MAX),
        }),
        FaultKind::SlowClose(SlowClose { delay }) => Kind::SlowClose(v1::SlowClose {
            delay_ms: ms(*delay),
        }),
        FaultKind::Timeout(Timeout { timeout }) => Kind::Timeout(v1::Timeout {
            timeout_ms: ms(*timeout),
        }),
        FaultKind::ResetPeer(ResetPeer { timeout }) => Kind::ResetPeer(v1::ResetPeer {
            timeout_ms: ms(*timeout),
        }),
        FaultKind::LimitData(LimitData { bytes }) => {
            Kind::LimitData(v1::LimitData { bytes: *bytes })
        }
        FaultKind::Down(_) => Kind::Down(v1::Down {}),
        FaultKind::Partition(Partition {
            cidrs,
            peer,
            action,
        }) => Kind::Partition(v1::Partition {
            cidrs: cidrs.iter().map(ToString::to_string).collect(),
            peer: match peer {
                PartitionPeer::Client => v1::partition::Peer::Client,
                PartitionPeer::Upstream => v1::partition::Peer::Upstream,
            } as i32,
            action: match action {
                PartitionAction::Refuse => v1::partition::Action::Refuse,
                PartitionAction::Blackhole => v1::partition::Action::Blackhole,
            } as i32,
        }),
        FaultKind::HttpAbort(Abort {
            status,
            body,
            headers,
        }) => Kind::HttpAbort(v1::HttpAbort {
            status: u32::from(status.as_u16()),
            body: String::from_utf8_lossy(body).into_owned(),
            // Values were parsed from strings, so their bytes are UTF-8.
            headers: headers
                .iter()
                .map(|(k, v)| {
                    let v = String::from_utf8_lossy(v.as_bytes()).into_owned();
                    (k.as_str().to_owned(), v)
                })
                .collect(),
        }),
        FaultKind::HttpDelay(Delay { delay, phase }) => Kind::HttpDelay(v1::HttpDelay {
            delay_ms: ms(delay.latency),
            jitter_ms: ms(delay.jitter),
            phase: match phase {
                DelayPhase::Request => v1::http_delay::Phase::Request,
                DelayPhase::Response => v1::http_delay::Phase::Response,
            } as i32,
        }),
        FaultKind::HttpThrottle(Throttle { bytes_per_sec }) => {
            Kind::HttpThrottle(v1::HttpThrottle {
                bytes_per_second: *bytes_per_sec,
            })
        }
        FaultKind::HttpReset(HttpReset { phase }) => {
            use v1::http_reset::Phase;
            let (phase, after_bytes) = match phase {
                ResetPhase::BeforeResponse => (Phase::BeforeResponse, 0),
                ResetPhase::MidResponse { after_bytes } => (Phase::MidResponse, *after_bytes),
            };
            Kind::HttpReset(v1::HttpReset {
                phase: phase as i32,
                after_bytes,
            })
        }
        FaultKind::GrpcAbort(GrpcAbort { code, message }) => Kind::GrpcAbort(v1::GrpcAbort {
            code: u32::from(*code),
            message: message.clone(),
        }),
        FaultKind::GrpcStream(GrpcStream {
            after_messages,
            after,
            action,
            message_delay,
        }) => {
            use v1::grpc_stream::Action;
            let (action, code, message) = match action {
                None => (Action::Unspecified, 0, String::new()),
                Some(StreamAction::Reset) => (Action::Reset, 0, String::new()),
                Some(StreamAction::Status { code, message }) => {
                    (Action::Status, u32::from(*code), message.clone())
                }
            };
            Kind::GrpcStream(v1::GrpcStream {
                after_messages: *after_messages,
                after_ms: after.map(ms),
                action: action as i32,
                code,
                message,
                message_delay_ms: ms(*message_delay),
            })
        }
    }
}

fn request_match(m: &RequestMatch) -> v1::RequestMatch {
    v1::RequestMatch {
        methods: m.methods.iter().map(|x| x.as_str().to_owned()).collect(),
        path: m.path.as_ref().map(str_match),
        grpc: m.grpc.as_ref().map(|g| v1::GrpcSelector {
            service: g.service.clone(),
            method: g.method.clone().unwrap_or_default(),
        }),
        headers: m
            .headers
            .iter()
            .map(|h| v1::HeaderMatch {
                name: h.name.as_str().to_owned(),
                condition: Some(match &h.cond {
                    HeaderCond::Value(StrMatch::Exact(s)) => Condition::Exact(s.clone()),
                    HeaderCond::Value(StrMatch::Prefix(s)) => Condition::Prefix(s.clone()),
                    HeaderCond::Value(StrMatch::Regex(r)) => Condition::Regex(r.as_str().into()),
                    HeaderCond::Present => Condition::Present(true),
                    HeaderCond::Absent => Condition::Absent(true),
                }),
            })
            .collect(),
        authority: m.authority.as_ref().map(str_match),
        destination: m.destination.as_ref().map(|d| v1::DestinationMatch {
            destinations: d.destinations.iter().map(ToString::to_string).collect(),
            ports: d.ports.iter().map(|&p| p.into()).collect(),
        }),
    }
}

fn str_match(m: &StrMatch) -> v1::StrMatch {
    v1::StrMatch {
        kind: Some(match m {
            StrMatch::Exact(s) => str_match::Kind::Exact(s.clone()),
            StrMatch::Prefix(s) => str_match::Kind::Prefix(s.clone()),
            StrMatch::Regex(r) => str_match::Kind::Regex(r.as_str().to_owned()),
        }),
    }
}

fn cohort(c: &Cohort) -> v1::Cohort {
    v1::Cohort {
        header: c.header.as_str().to_owned(),
        seed: c.seed,
    }
}
