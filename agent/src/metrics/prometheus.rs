//! The `/metrics` page: every route's counters in the Prometheus text exposition format
//! (version 0.0.4).
//!
//! Connection and fault families have a series for every route and fault. The request-level
//! families (`faultline_http_*`, `faultline_grpc_*`) have series only for routes that have
//! counted a request, reset or upstream error (so `tcp` routes add none); such a route then
//! shows every status class and origin, zeros included, so a rate sees the first error, and
//! every gRPC code once it has counted a gRPC call. Routes whose requests fell into a cohort
//! fault's arms also show the `faultline_http_cohort_*` families, per arm (`treatment`,
//! `control`), so a dashboard can set the two side by side.

use std::fmt::{Display, Write as _};
use std::sync::atomic::Ordering::Relaxed;

use super::histogram::PROMETHEUS_LE;
use super::http::{ByOrigin, STATUS_CLASSES, SliSnapshot};
use super::{FaultCounters, RouteMetrics};
use crate::fault::KindTag;
use crate::fault::http::grpc_abort::CODE_NAMES;

/// What `render` shows of one route: its name, counters, and faults by name.
#[derive(Debug)]
pub struct RouteMetricsView<'a> {
    pub route: &'a str,
    pub metrics: &'a RouteMetrics,
    pub faults: Vec<(&'a str, &'a FaultCounters)>,
    /// Open connections per worker thread, while the route listens.
    pub workers: Option<&'a crate::tcp::balance::WorkerLoad>,
}

/// Renders the counters of every route in the Prometheus text exposition format.
pub fn render(routes: &[RouteMetricsView<'_>]) -> String {
    let mut out = String::with_capacity(4096);
    connection_families(&mut out, routes);
    fault_family(&mut out, routes);
    worker_families(&mut out, routes);
    // One snapshot per route, so all its families agree.
    let http: Vec<(&str, SliSnapshot, &RouteMetrics)> = routes
        .iter()
        .map(|v| (v.route, v.metrics.http.snapshot(), v.metrics))
        .filter(|(_, s, _)| !s.is_empty())
        .collect();
    http_families(&mut out, &http);
    let arms: Vec<(&str, &str, SliSnapshot, &super::http::HttpMetrics)> = routes
        .iter()
        .flat_map(|v| {
            [
                ("treatment", &v.metrics.treatment),
                ("control", &v.metrics.control),
            ]
            .map(|(arm, m)| (v.route, arm, m.snapshot(), m))
        })
        .filter(|(_, _, s, _)| !s.is_empty())
        .collect();
    cohort_families(&mut out, &arms);
    out
}

/// How a route's connections are spread over the worker threads (see `tcp::balance`).
fn worker_families(o: &mut String, routes: &[RouteMetricsView<'_>]) {
    let name = "faultline_route_worker_connections";
    header(
        o,
        name,
        "gauge",
        "Client connections open now, per worker thread of the route's listener.",
    );
    for v in routes {
        for (i, n) in v.workers.iter().flat_map(|w| w.open.iter().enumerate()) {
            line(o, name, v.route, &[("worker", &i.to_string())], *n as u64);
        }
    }

    let name = "faultline_route_connections_handed_over_total";
    header(
        o,
        name,
        "counter",
        "Long-lived client connections a worker thread handed to a less loaded one.",
    );
    for v in routes.iter().filter(|v| v.workers.is_some()) {
        let n = v.workers.map_or(0, |w| w.handed_over);
        line(o, name, v.route, &[], n);
    }
}

fn connection_families(o: &mut String, routes: &[RouteMetricsView<'_>]) {
    let name = "faultline_route_connections_total";
    header(
        o,
        name,
        "counter",
        "Client connections accepted by the route.",
    );
    for v in routes {
        line(
            o,
            name,
            v.route,
            &[],
            v.metrics.connections_total.load(Relaxed),
        );
    }

    let name = "faultline_route_connections_active";
    header(o, name, "gauge", "Client connections open now.");
    for v in routes {
        line(
            o,
            name,
            v.route,
            &[],
            v.metrics.connections_active.load(Relaxed),
        );
    }

    let name = "faultline_route_bytes_total";
    header(
        o,
        name,
        "counter",
        "Bytes delivered, by direction (upstream = client to server).",
    );
    for v in routes {
        let m = v.metrics;
        line(
            o,
            name,
            v.route,
            &[("direction", "upstream")],
            m.bytes_upstream.load(Relaxed),
        );
        let n = m.bytes_downstream.load(Relaxed);
        line(o, name, v.route, &[("direction", "downstream")], n);
    }

    let name = "faultline_route_upstream_connect_errors_total";
    header(
        o,
        name,
        "counter",
        "Failed connections to the upstream (real failures, not injected ones).",
    );
    for v in routes {
        line(
            o,
            name,
            v.route,
            &[],
            v.metrics.upstream_connect_errors.load(Relaxed),
        );
    }

    let name = "faultline_route_faults_injected_total";
    header(
        o,
        name,
        "counter",
        "Connections a fault was injected into, by fault kind.",
    );
    for v in routes {
        for k in KindTag::ALL {
            line(
                o,
                name,
                v.route,
                &[("kind", k.name())],
                v.metrics.injected_count(k),
            );
        }
    }
}

fn fault_family(o: &mut String, routes: &[RouteMetricsView<'_>]) {
    let name = "faultline_fault_requests_total";
    header(
        o,
        name,
        "counter",
        "Requests (connections, on tcp routes) each fault matched, by outcome; \
         matched = injected + passed (its probability said no).",
    );
    for v in routes {
        for (fault, c) in &v.faults {
            for (outcome, n) in [
                ("matched", &c.matched),
                ("injected", &c.injected),
                ("passed", &c.passed),
            ] {
                let labels = [("fault", *fault), ("outcome", outcome)];
                line(o, name, v.route, &labels, n.load(Relaxed));
            }
        }
    }
}

fn http_families(o: &mut String, routes: &[(&str, SliSnapshot, &RouteMetrics)]) {
    let name = "faultline_http_requests_total";
    header(
        o,
        name,
        "counter",
        "HTTP responses sent to clients, by status class and whether a fault produced them.",
    );
    for (route, s, _) in routes {
        for (i, class) in STATUS_CLASSES.iter().enumerate() {
            for (injected, n) in by_origin(&s.requests, |c| c[i]) {
                line(
                    o,
                    name,
                    route,
                    &[("class", class), ("injected", injected)],
                    n,
                );
            }
        }
    }

    let name = "faultline_grpc_requests_total";
    header(
        o,
        name,
        "counter",
        "gRPC calls, by status code and whether a fault produced it.",
    );
    for (route, s, _) in routes.iter().filter(|(_, s, _)| s.grpc_calls() > 0) {
        for (i, code) in CODE_NAMES.iter().enumerate() {
            for (injected, n) in by_origin(&s.grpc, |c| c[i]) {
                line(o, name, route, &[("code", code), ("injected", injected)], n);
            }
        }
    }

    let name = "faultline_http_upstream_errors_total";
    header(
        o,
        name,
        "counter",
        "Requests the upstream could not be reached for or failed (real failures, not injected ones).",
    );
    for (route, s, _) in routes {
        line(o, name, route, &[], s.upstream_errors);
    }

    let name = "faultline_http_resets_total";
    header(
        o,
        name,
        "counter",
        "Streams or connections reset, by whether a fault reset them.",
    );
    for (route, s, _) in routes {
        for (injected, n) in by_origin(&s.resets, |&n| n) {
            line(o, name, route, &[("injected", injected)], n);
        }
    }

    let name = "faultline_http_request_duration_seconds";
    header(
        o,
        name,
        "histogram",
        "Time from a request's arrival to its response head, real and injected responses alike.",
    );
    let (bucket, sum, count) = (
        format!("{name}_bucket"),
        format!("{name}_sum"),
        format!("{name}_count"),
    );
    for (route, s, m) in routes {
        histogram(o, [&bucket, &sum, &count], route, &[], s, &m.http);
    }
}

/// The request counters and latency histogram again, per cohort arm.
fn cohort_families(o: &mut String, arms: &[(&str, &str, SliSnapshot, &super::http::HttpMetrics)]) {
    if arms.is_empty() {
        return;
    }
    let name = "faultline_http_cohort_requests_total";
    header(
        o,
        name,
        "counter",
        "HTTP responses to requests in a cohort fault's treatment or control arm, by status class and whether a fault produced them.",
    );
    for (route, arm, s, _) in arms {
        for (i, class) in STATUS_CLASSES.iter().enumerate() {
            for (injected, n) in by_origin(&s.requests, |c| c[i]) {
                let labels = [("arm", *arm), ("class", class), ("injected", injected)];
                line(o, name, route, &labels, n);
            }
        }
    }

    let name = "faultline_http_cohort_request_duration_seconds";
    header(
        o,
        name,
        "histogram",
        "Time from a request's arrival to its response head, per cohort arm.",
    );
    let (bucket, sum, count) = (
        format!("{name}_bucket"),
        format!("{name}_sum"),
        format!("{name}_count"),
    );
    for (route, arm, s, m) in arms {
        histogram(o, [&bucket, &sum, &count], route, &[("arm", arm)], s, m);
    }
}

/// One latency histogram's `_bucket`, `_sum` and `_count` lines.
fn histogram(
    o: &mut String,
    [bucket, sum, count]: [&str; 3],
    route: &str,
    labels: &[(&str, &str)],
    s: &SliSnapshot,
    m: &super::http::HttpMetrics,
) {
    let cumulative = m.latency().prometheus_buckets();
    let les = PROMETHEUS_LE.iter().map(|&(_, le)| le).chain(["+Inf"]);
    let mut with_le = labels.to_vec();
    with_le.push(("le", ""));
    for (le, n) in les.zip(cumulative) {
        *with_le.last_mut().expect("pushed above") = ("le", le);
        line(o, bucket, route, &with_le, n);
    }
    // `_count` is the `+Inf` bucket read above, so the two always agree.
    let total = cumulative[PROMETHEUS_LE.len()];
    line(o, sum, route, labels, s.latency.sum_micros as f64 / 1e6);
    line(o, count, route, labels, total);
}

/// `("false", real)` then `("true", injected)`, as `injected` label values.
fn by_origin<T>(split: &ByOrigin<T>, pick: impl Fn(&T) -> u64) -> [(&'static str, u64); 2] {
    [
        ("false", pick(&split.real)),
        ("true", pick(&split.injected)),
    ]
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn line(out: &mut String, name: &str, route: &str, labels: &[(&str, &str)], v: impl Display) {
    let _ = write!(out, "{name}{{route=\"{}\"", escape(route));
    for (k, val) in labels {
        let _ = write!(out, ",{k}=\"{}\"", escape(val));
    }
    let _ = writeln!(out, "}} {v}");
}

/// Escapes a label value: backslash, double quote and line feed, as the format requires.
fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests;
