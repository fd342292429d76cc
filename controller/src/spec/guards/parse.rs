//! `spec.guards`, `spec.recovery` -> [`Guard`]s and [`Recovery`], in the parser style of the
//! sibling modules: every field typed, defaulted and range-checked here, every error named and
//! located.
//!
//! What needs the controller's runtime settings (an agents guard's window against the
//! heartbeat interval) is checked with the caps, in [`crate::spec::check`].

use std::collections::BTreeMap;
use std::time::Duration;

use super::{
    AgentsSource, BodyCheck, Condition, DEFAULT_EXPECT_STATUS, DEFAULT_FAILURES, DEFAULT_INTERVAL,
    DEFAULT_MIN_REQUESTS, DEFAULT_PROBE_TIMEOUT, DEFAULT_PROMETHEUS_TIMEOUT,
    DEFAULT_TRIP_AFTER_ERRORS, GrpcCodes, Guard, MIN_INTERVAL, Metric, NoData, ProbeSource,
    PrometheusSource, Recovery, Source, Versus,
};
use crate::spec::document::{Fields, Node, Value};
use crate::spec::error::{FieldPath, SpecError};
use crate::spec::experiment::check_name;
use crate::spec::selector;

/// The keys of a guard; the three sources are exclusive.
const GUARD_FIELDS: [&str; 8] = [
    "name",
    "agents",
    "prometheus",
    "probe",
    "above",
    "below",
    "window",
    "for",
];
const SOURCES: [&str; 3] = ["agents", "prometheus", "probe"];

/// Reads `spec.guards`. `routes` are the experiment's `spec.targets.routes` (filled in from
/// the faults when left out): an agents guard on the targets must watch one of them.
pub(crate) fn parse(
    node: &Node,
    path: &FieldPath,
    routes: &[String],
) -> Result<Vec<Guard>, SpecError> {
    let items = node.seq(path)?;
    let mut out: Vec<Guard> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let at = path.index(i);
        let (guard, name_node) = parse_one(item, &at, routes)?;
        if let Some(j) = out.iter().position(|g| g.name == guard.name) {
            return Err(SpecError::invalid(
                at.key("name"),
                name_node.field_loc(),
                format!(
                    "duplicate guard name {:?} (also {}); each guard needs its own name",
                    guard.name,
                    path.index(j)
                ),
            ));
        }
        out.push(guard);
    }
    Ok(out)
}

fn parse_one<'a>(
    node: &'a Node,
    path: &FieldPath,
    routes: &[String],
) -> Result<(Guard, &'a Node), SpecError> {
    let f = Fields::open(node, path, &GUARD_FIELDS, &[])?;
    let name_node = f.required("name")?;
    let name = name_node.str(&f.path("name"))?;
    check_name(name).map_err(|m| SpecError::invalid(f.path("name"), name_node.field_loc(), m))?;

    let given: Vec<&str> = SOURCES.into_iter().filter(|k| f.get(k).is_some()).collect();
    let kind = match given.as_slice() {
        [one] => *one,
        [] => {
            return Err(SpecError::invalid(
                path.clone(),
                node.field_loc(),
                "a guard needs a source: one of agents, prometheus, probe",
            ));
        }
        several => {
            return Err(SpecError::invalid(
                path.clone(),
                node.field_loc(),
                format!(
                    "a guard has exactly one source (one of agents, prometheus, probe), \
                     got {}",
                    several.join(", ")
                ),
            ));
        }
    };
    let source_node = f.required(kind)?;
    let source_path = f.path(kind);

    let hold = match f.get("for") {
        Some(n) => n.duration(&f.path("for"))?,
        None => Duration::ZERO,
    };
    let (source, condition, window) = match kind {
        "agents" => {
            let agents = agents(source_node, &source_path, routes)?;
            let window = f.required("window")?.positive_duration(&f.path("window"))?;
            (Source::Agents(agents), condition(&f, path)?, window)
        }
        "prometheus" => {
            no_window(
                &f,
                "prometheus guards have no window: the query sets its range; \
                 prometheus.interval sets how often it runs",
            )?;
            let prometheus = prometheus(source_node, &source_path)?;
            (
                Source::Prometheus(prometheus),
                condition(&f, path)?,
                Duration::ZERO,
            )
        }
        _ => {
            no_window(
                &f,
                "probe guards have no window: probe.interval sets how often it runs",
            )?;
            if let Some((key, n)) = ["above", "below"]
                .into_iter()
                .find_map(|k| f.get(k).map(|n| (k, n)))
            {
                return Err(SpecError::invalid(
                    f.path(key),
                    n.key_loc.or(n.loc),
                    "a probe guard takes no threshold: it trips after probe.failures \
                     consecutive failed probes",
                ));
            }
            let probe = probe(source_node, &source_path)?;
            // The probe's value is its count of consecutive failures.
            let condition = Condition::Above(f64::from(probe.failures - 1));
            (Source::Probe(probe), condition, Duration::ZERO)
        }
    };
    let guard = Guard {
        name: name.to_owned(),
        source,
        condition,
        window,
        hold,
    };
    Ok((guard, name_node))
}

/// `above: T` xor `below: T`.
fn condition(f: &Fields<'_>, path: &FieldPath) -> Result<Condition, SpecError> {
    match (f.get("above"), f.get("below")) {
        (Some(n), None) => Ok(Condition::Above(n.number(&f.path("above"))?)),
        (None, Some(n)) => Ok(Condition::Below(n.number(&f.path("below"))?)),
        (None, None) => Err(SpecError::invalid(
            path.key("above"),
            f.missing("above").location,
            "missing threshold: give above or below",
        )),
        (Some(_), Some(n)) => Err(SpecError::invalid(
            path.key("below"),
            n.key_loc.or(n.loc),
            "give above or below, not both",
        )),
    }
}

fn no_window(f: &Fields<'_>, why: &str) -> Result<(), SpecError> {
    match f.get("window") {
        Some(n) => Err(SpecError::invalid(
            f.path("window"),
            n.key_loc.or(n.loc),
            why,
        )),
        None => Ok(()),
    }
}

fn optional<T>(
    f: &Fields<'_>,
    key: &str,
    default: T,
    read: impl FnOnce(&Node, &FieldPath) -> Result<T, SpecError>,
) -> Result<T, SpecError> {
    match f.get(key) {
        Some(n) => read(n, &f.path(key)),
        None => Ok(default),
    }
}

fn located(f: &Fields<'_>, key: &str, node: &Node, message: impl Into<String>) -> SpecError {
    SpecError::invalid(f.path(key), node.field_loc(), message)
}

// === agents ===

fn agents(node: &Node, path: &FieldPath, routes: &[String]) -> Result<AgentsSource, SpecError> {
    let f = Fields::open(
        node,
        path,
        &[
            "route",
            "selector",
            "metric",
            "quantile",
            "grpcCodes",
            "minRequests",
            "noData",
            "local",
            "versus",
        ],
        &[],
    )?;
    let selector = match f.get("selector") {
        Some(n) => {
            let s = selector::parse(n, &f.path("selector"))?;
            if s.is_everything() {
                return Err(SpecError::invalid(
                    f.path("selector"),
                    n.field_loc(),
                    "an empty selector would judge every agent; give matchLabels or \
                     matchExpressions, or leave selector out to judge the experiment's targets",
                ));
            }
            Some(s)
        }
        None => None,
    };
    let route_node = f.required("route")?;
    let route = route_node.str(&f.path("route"))?;
    if route.is_empty() {
        return Err(located(&f, "route", route_node, "must not be empty"));
    }
    if selector.is_none() && !routes.iter().any(|r| r == route) {
        return Err(located(
            &f,
            "route",
            route_node,
            format!(
                "route {route:?} is not one of spec.targets.routes ({}); give a selector to \
                 watch other agents",
                routes.join(", ")
            ),
        ));
    }

    let metric = metric(&f)?;
    let min_requests = optional(&f, "minRequests", DEFAULT_MIN_REQUESTS, Node::u64)?;
    let no_data = optional(&f, "noData", NoData::Ignore, |n, p| match n.str(p)? {
        "ignore" => Ok(NoData::Ignore),
        "trip" => Ok(NoData::Trip),
        other => Err(SpecError::invalid(
            p.clone(),
            n.field_loc(),
            format!("unknown noData {other:?} (expected ignore or trip)"),
        )),
    })?;
    let local = optional(&f, "local", false, Node::bool)?;
    if local && selector.is_some() {
        return Err(located(
            &f,
            "local",
            f.required("local")?,
            "local: true needs the experiment's targets to judge themselves; it cannot be \
             combined with a selector",
        ));
    }
    let versus = match f.get("versus") {
        None => None,
        Some(n) => {
            let p = f.path("versus");
            match n.str(&p)? {
                "control" => {}
                other => {
                    return Err(SpecError::invalid(
                        p,
                        n.field_loc(),
                        format!("unknown versus {other:?} (expected control)"),
                    ));
                }
            }
            if metric == Metric::RequestRate {
                return Err(located(
                    &f,
                    "versus",
                    n,
                    "versus: control compares errorRate or latency between the cohorts; a \
                     request rate depends on the cohorts' sizes",
                ));
            }
            if local {
                return Err(located(
                    &f,
                    "versus",
                    n,
                    "versus: control is judged by the controller only; it cannot be local",
                ));
            }
            Some(Versus::Control)
        }
    };
    Ok(AgentsSource {
        route: route.to_owned(),
        selector,
        metric,
        min_requests,
        no_data,
        local,
        versus,
    })
}

fn metric(f: &Fields<'_>) -> Result<Metric, SpecError> {
    let node = f.required("metric")?;
    let name = node.str(&f.path("metric"))?;
    let only = |key: &str, what: &str| match f.get(key) {
        Some(n) => Err(SpecError::invalid(
            f.path(key),
            n.key_loc.or(n.loc),
            format!("{key} is for metric {what} only"),
        )),
        None => Ok(()),
    };
    match name {
        "errorRate" => {
            only("quantile", "latency")?;
            let grpc_codes = optional(f, "grpcCodes", GrpcCodes::NOT_OK, grpc_codes)?;
            Ok(Metric::ErrorRate { grpc_codes })
        }
        "latency" => {
            only("grpcCodes", "errorRate")?;
            let q_node = f.required("quantile")?;
            let quantile = q_node.number(&f.path("quantile"))?;
            if !(quantile > 0.0 && quantile < 1.0) {
                return Err(located(
                    f,
                    "quantile",
                    q_node,
                    format!("must be between 0 and 1 (exclusive), such as 0.99; got {quantile}"),
                ));
            }
            Ok(Metric::Latency { quantile })
        }
        "requestRate" => {
            only("quantile", "latency")?;
            only("grpcCodes", "errorRate")?;
            Ok(Metric::RequestRate)
        }
        other => Err(located(
            f,
            "metric",
            node,
            format!("unknown metric {other:?} (expected errorRate, latency or requestRate)"),
        )),
    }
}

fn grpc_codes(node: &Node, path: &FieldPath) -> Result<GrpcCodes, SpecError> {
    let items = node.seq(path)?;
    if items.is_empty() {
        return Err(SpecError::invalid(
            path.clone(),
            node.field_loc(),
            "must list at least one gRPC status code (leave grpcCodes out to count every \
             code but OK)",
        ));
    }
    let mut set = 0u32;
    for (i, item) in items.iter().enumerate() {
        let at = path.index(i);
        let code = item.u64(&at)?;
        if code > 16 {
            return Err(SpecError::invalid(
                at,
                item.field_loc(),
                format!("{code} is not a gRPC status code (0 to 16)"),
            ));
        }
        set |= 1 << code;
    }
    Ok(GrpcCodes(set))
}

// === prometheus ===

fn prometheus(node: &Node, path: &FieldPath) -> Result<PrometheusSource, SpecError> {
    let f = Fields::open(
        node,
        path,
        &["url", "query", "interval", "timeout", "tripAfterErrors"],
        &[],
    )?;
    let url = url(&f)?;
    let query_node = f.required("query")?;
    let query = query_node.str(&f.path("query"))?;
    if query.trim().is_empty() {
        return Err(located(&f, "query", query_node, "must not be empty"));
    }
    let interval = interval(&f)?;
    let timeout = timeout(&f, interval, interval.min(DEFAULT_PROMETHEUS_TIMEOUT))?;
    let trip_after_errors = optional(&f, "tripAfterErrors", DEFAULT_TRIP_AFTER_ERRORS, |n, p| {
        let v = n.u64(p)?;
        u32::try_from(v)
            .map_err(|_| SpecError::invalid(p.clone(), n.field_loc(), format!("{v} is too large")))
    })?;
    Ok(PrometheusSource {
        url,
        query: query.to_owned(),
        interval,
        timeout,
        trip_after_errors: (trip_after_errors > 0).then_some(trip_after_errors),
    })
}

/// `url`: an absolute `http://` or `https://` URL with a host.
fn url(f: &Fields<'_>) -> Result<String, SpecError> {
    let node = f.required("url")?;
    let s = node.str(&f.path("url"))?;
    let bad = |why: String| {
        located(
            f,
            "url",
            node,
            format!("{s:?} is not an absolute http:// or https:// URL ({why})"),
        )
    };
    let uri: http::Uri = s
        .parse()
        .map_err(|e: http::uri::InvalidUri| bad(e.to_string()))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        Some(other) => return Err(bad(format!("unsupported scheme {other:?}"))),
        None => return Err(bad("no scheme".into())),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(bad("no host".into()));
    }
    Ok(s.to_owned())
}

/// `interval`: default 1s, at least [`MIN_INTERVAL`].
fn interval(f: &Fields<'_>) -> Result<Duration, SpecError> {
    let Some(node) = f.get("interval") else {
        return Ok(DEFAULT_INTERVAL);
    };
    let d = node.duration(&f.path("interval"))?;
    if d < MIN_INTERVAL {
        return Err(located(
            f,
            "interval",
            node,
            format!(
                "{} is shorter than the shortest interval ({})",
                humantime::format_duration(d),
                humantime::format_duration(MIN_INTERVAL)
            ),
        ));
    }
    Ok(d)
}

/// `timeout`: longer than zero and at most `interval`.
fn timeout(f: &Fields<'_>, interval: Duration, default: Duration) -> Result<Duration, SpecError> {
    let Some(node) = f.get("timeout") else {
        return Ok(default);
    };
    let d = node.positive_duration(&f.path("timeout"))?;
    if d > interval {
        return Err(located(
            f,
            "timeout",
            node,
            format!(
                "{} is longer than the interval ({}): one request at a time",
                humantime::format_duration(d),
                humantime::format_duration(interval)
            ),
        ));
    }
    Ok(d)
}

// === probe ===

fn probe(node: &Node, path: &FieldPath) -> Result<ProbeSource, SpecError> {
    let f = Fields::open(
        node,
        path,
        &[
            "url",
            "method",
            "headers",
            "expectStatus",
            "bodyContains",
            "bodyRegex",
            "timeout",
            "interval",
            "failures",
        ],
        &[],
    )?;
    let url = url(&f)?;
    let method = optional(&f, "method", "GET".to_owned(), |n, p| {
        let m = n.str(p)?.to_ascii_uppercase();
        http::Method::from_bytes(m.as_bytes())
            .map(|_| m.clone())
            .map_err(|_| {
                SpecError::invalid(
                    p.clone(),
                    n.field_loc(),
                    format!("{m:?} is not an HTTP method"),
                )
            })
    })?;
    let headers = optional(&f, "headers", BTreeMap::new(), headers)?;
    let expect_status = optional(&f, "expectStatus", DEFAULT_EXPECT_STATUS, expect_status)?;
    let body = body(&f)?;
    let interval = interval(&f)?;
    let timeout = timeout(&f, interval, DEFAULT_PROBE_TIMEOUT.min(interval))?;
    let failures = optional(&f, "failures", DEFAULT_FAILURES, |n, p| {
        let v = n.u64(p)?;
        u32::try_from(v).ok().filter(|v| *v >= 1).ok_or_else(|| {
            SpecError::invalid(
                p.clone(),
                n.field_loc(),
                format!("must be at least 1 (and fit in 32 bits), got {v}"),
            )
        })
    })?;
    Ok(ProbeSource {
        method,
        url,
        headers,
        expect_status,
        body,
        timeout,
        interval,
        failures,
    })
}

fn headers(node: &Node, path: &FieldPath) -> Result<BTreeMap<String, String>, SpecError> {
    let mut out = BTreeMap::new();
    for e in node.entries(path)? {
        let at = path.key(&e.key);
        let name = http::HeaderName::from_bytes(e.key.as_bytes()).map_err(|_| {
            SpecError::invalid(
                at.clone(),
                e.value.key_loc,
                format!("{:?} is not a valid header name", e.key),
            )
        })?;
        let value = e.value.str(&at)?;
        http::HeaderValue::from_str(value).map_err(|_| {
            SpecError::invalid(
                at.clone(),
                e.value.field_loc(),
                format!("{value:?} is not a valid header value"),
            )
        })?;
        out.insert(name.as_str().to_owned(), value.to_owned());
    }
    Ok(out)
}

/// `200` or `"200-299"`, each within 100..=599.
fn expect_status(node: &Node, path: &FieldPath) -> Result<(u16, u16), SpecError> {
    let bad = |msg: String| SpecError::invalid(path.clone(), node.field_loc(), msg);
    let status = |v: u64| {
        u16::try_from(v)
            .ok()
            .filter(|s| (100..=599).contains(s))
            .ok_or_else(|| bad(format!("{v} is not an HTTP status (100 to 599)")))
    };
    let (low, high) = match &node.value {
        Value::Int(_) | Value::UInt(_) => {
            let s = status(node.u64(path)?)?;
            (s, s)
        }
        Value::Str(s) => {
            let (l, h) = s.split_once('-').unwrap_or((s, s));
            let parse = |t: &str| {
                t.trim().parse::<u64>().map_err(|_| {
                    bad(format!(
                        "{s:?} is not a status or a range of statuses such as \"200-299\""
                    ))
                })
            };
            (status(parse(l)?)?, status(parse(h)?)?)
        }
        _ => {
            return Err(bad(format!(
                "must be a status such as 200 or a range such as \"200-299\", got {}",
                node.describe()
            )));
        }
    };
    if low > high {
        return Err(bad(format!("the range {low}-{high} is empty")));
    }
    Ok((low, high))
}

fn body(f: &Fields<'_>) -> Result<Option<BodyCheck>, SpecError> {
    match (f.get("bodyContains"), f.get("bodyRegex")) {
        (Some(_), Some(n)) => Err(SpecError::invalid(
            f.path("bodyRegex"),
            n.key_loc.or(n.loc),
            "give bodyContains or bodyRegex, not both",
        )),
        (Some(n), None) => {
            let s = n.str(&f.path("bodyContains"))?;
            if s.is_empty() {
                return Err(located(f, "bodyContains", n, "must not be empty"));
            }
            Ok(Some(BodyCheck::Contains(s.to_owned())))
        }
        (None, Some(n)) => {
            let s = n.str(&f.path("bodyRegex"))?;
            let re = regex::Regex::new(s)
                .map_err(|e| located(f, "bodyRegex", n, format!("invalid regex: {e}")))?;
            Ok(Some(BodyCheck::Regex(re)))
        }
        (None, None) => Ok(None),
    }
}

// === recovery ===

/// Reads `spec.recovery`.
pub(crate) fn parse_recovery(node: &Node, path: &FieldPath) -> Result<Recovery, SpecError> {
    let f = Fields::open(node, path, &["stable", "timeout"], &[])?;
    let defaults = Recovery::default();
    let stable = optional(&f, "stable", defaults.stable, Node::positive_duration)?;
    let timeout = optional(&f, "timeout", defaults.timeout, Node::positive_duration)?;
    if stable >= timeout {
        // The field written is at fault; when both are, the timeout.
        let key = if f.get("timeout").is_some() {
            "timeout"
        } else {
            "stable"
        };
        let n = f.required(key)?;
        return Err(located(
            &f,
            key,
            n,
            format!(
                "stable ({}) must be shorter than timeout ({}): the service must be able to \
                 stay stable before recovery times out",
                humantime::format_duration(stable),
                humantime::format_duration(timeout)
            ),
        ));
    }
    Ok(Recovery { stable, timeout })
}
