//! `spec.guards`, `spec.recovery` and `spec.requireTraffic` read through the whole experiment
//! parser: what each rule refuses, with the field and where it is.

use std::time::Duration;

use super::*;
use crate::spec::{self, Caps, Experiment, Location, SpecError};

/// Lines 1-7; what a test adds under `spec:` starts on line 8.
const BASE: &str = "\
apiVersion: faultline.dev/v1alpha1
kind: Experiment
metadata: {name: x}
spec:
  targets: {all: true, routes: [api, web]}
  faults: [{route: api, type: down}]
  duration: 1m
";

/// `BASE` with `tail` (YAML under `spec:`, written from column 1) indented into `spec`.
fn spec_with(tail: &str) -> String {
    let mut s = BASE.to_string();
    for line in tail.lines() {
        s.push_str("  ");
        s.push_str(line);
        s.push('\n');
    }
    s
}

fn parse(tail: &str) -> Result<Experiment, SpecError> {
    spec::validate(&spec_with(tail), &Caps::default())
}

/// `BASE` with `items` under `spec.guards` (from line 9): an item's first line is written
/// from column 1 (`- name: x`) and lands at column 3, its other lines are written as they
/// land (from column 5).
fn with_guards(items: &str) -> String {
    let mut s = format!("{BASE}  guards:\n");
    for line in items.lines() {
        if line.starts_with("- ") {
            s.push_str("  ");
        }
        s.push_str(line);
        s.push('\n');
    }
    s
}

/// The only guard of `item`.
fn guard(item: &str) -> Guard {
    let mut e = spec::validate(&with_guards(item), &Caps::default()).unwrap();
    assert_eq!(e.guards.len(), 1);
    e.guards.remove(0)
}

/// The error `item` (guards, from line 9) gets: its field, line and column, and message.
#[track_caller]
fn refused(item: &str, field: &str, line: u32, column: u32, says: &str) {
    let e = spec::validate(&with_guards(item), &Caps::default()).unwrap_err();
    assert_eq!(e.path.to_string(), field, "{e}");
    assert_eq!(e.location, Some(Location { line, column }), "{e}");
    assert!(
        e.message.contains(says),
        "{:?} does not say {says:?}",
        e.message
    );
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

// === agents ===

#[test]
fn an_agents_guard_reads_with_its_defaults() {
    let g = guard(
        "- name: errors
    agents: {route: api, metric: errorRate}
    above: 0.05
    window: 10s
",
    );
    assert_eq!(g.name, "errors");
    assert_eq!(g.condition, Condition::Above(0.05));
    assert_eq!(g.window, secs(10));
    assert_eq!(g.hold, Duration::ZERO);
    let Source::Agents(a) = &g.source else {
        panic!("{g:?}")
    };
    assert_eq!(a.route, "api");
    assert_eq!(a.selector, None);
    assert_eq!(
        a.metric,
        Metric::ErrorRate {
            grpc_codes: GrpcCodes::NOT_OK
        }
    );
    assert_eq!(a.min_requests, 1);
    assert_eq!(a.no_data, NoData::Ignore);
    assert!(!a.local);
}

#[test]
fn an_agents_guard_reads_every_field() {
    let g = guard(
        "- name: slow
    agents:
      route: other
      selector: {matchLabels: {app: web}}
      metric: latency
      quantile: 0.99
      minRequests: 20
      noData: trip
    below: 2
    window: 1m
    for: 2s
",
    );
    assert_eq!(g.condition, Condition::Below(2.0));
    assert_eq!(g.hold, secs(2));
    let Source::Agents(a) = &g.source else {
        panic!("{g:?}")
    };
    assert_eq!(
        a.selector.as_ref().map(ToString::to_string).as_deref(),
        Some("app=web")
    );
    assert_eq!(a.metric, Metric::Latency { quantile: 0.99 });
    assert_eq!((a.min_requests, a.no_data), (20, NoData::Trip));

    let g = guard(
        "- {name: e, agents: {route: api, metric: errorRate, grpcCodes: [2, 14], local: true}, above: 1, window: 1s}\n",
    );
    let Source::Agents(a) = &g.source else {
        panic!("{g:?}")
    };
    assert_eq!(
        a.metric,
        Metric::ErrorRate {
            grpc_codes: GrpcCodes((1 << 2) | (1 << 14))
        }
    );
    assert!(a.local);
    let g =
        guard("- {name: r, agents: {route: web, metric: requestRate}, below: 10, window: 5s}\n");
    assert!(matches!(
        g.source,
        Source::Agents(AgentsSource {
            metric: Metric::RequestRate,
            ..
        })
    ));
}

#[test]
fn agents_fields_are_checked() {
    let g = "- name: g\n    window: 10s\n    above: 1\n    agents:\n";
    refused(
        &format!("{g}      route: db\n      metric: errorRate\n"),
        "spec.guards[0].agents.route",
        13,
        14,
        "route \"db\" is not one of spec.targets.routes (api, web)",
    );
    refused(
        &format!("{g}      route: api\n      metric: latency\n"),
        "spec.guards[0].agents.quantile",
        12,
        5,
        "missing required field",
    );
    refused(
        &format!("{g}      route: api\n      metric: latency\n      quantile: 1\n"),
        "spec.guards[0].agents.quantile",
        15,
        17,
        "between 0 and 1",
    );
    refused(
        &format!(
            "{g}      route: api\n      metric: latency\n      quantile: 0.9\n      grpcCodes: [2]\n"
        ),
        "spec.guards[0].agents.grpcCodes",
        16,
        7,
        "grpcCodes is for metric errorRate only",
    );
    refused(
        &format!("{g}      route: api\n      metric: errorRate\n      grpcCodes: []\n"),
        "spec.guards[0].agents.grpcCodes",
        15,
        7,
        "at least one gRPC status code",
    );
    refused(
        &format!("{g}      route: api\n      metric: errorRate\n      grpcCodes: [2, 17]\n"),
        "spec.guards[0].agents.grpcCodes[1]",
        15,
        22,
        "17 is not a gRPC status code (0 to 16)",
    );
    refused(
        &format!("{g}      route: api\n      metric: errors\n"),
        "spec.guards[0].agents.metric",
        14,
        15,
        "expected errorRate, latency or requestRate",
    );
    refused(
        &format!("{g}      route: api\n      metric: errorRate\n      noData: panic\n"),
        "spec.guards[0].agents.noData",
        15,
        15,
        "expected ignore or trip",
    );
    refused(
        &format!(
            "{g}      route: db\n      selector: {{matchLabels: {{app: db}}}}\n      metric: errorRate\n      local: true\n"
        ),
        "spec.guards[0].agents.local",
        16,
        14,
        "cannot be combined with a selector",
    );
}

#[test]
fn versus_control_compares_cohorts_of_error_rate_or_latency_only() {
    let g = "- name: g\n    window: 10s\n    above: 0.02\n    agents:\n      route: api\n";
    let ok = guard(&format!(
        "{g}      metric: errorRate\n      versus: control\n"
    ));
    let Source::Agents(a) = ok.source else {
        panic!("agents")
    };
    assert_eq!(a.versus, Some(Versus::Control));
    refused(
        &format!("{g}      metric: errorRate\n      versus: baseline\n"),
        "spec.guards[0].agents.versus",
        15,
        15,
        "unknown versus \"baseline\" (expected control)",
    );
    refused(
        &format!("{g}      metric: requestRate\n      versus: control\n"),
        "spec.guards[0].agents.versus",
        15,
        15,
        "compares errorRate or latency",
    );
    refused(
        &format!("{g}      metric: errorRate\n      local: true\n      versus: control\n"),
        "spec.guards[0].agents.versus",
        16,
        15,
        "cannot be local",
    );
}

#[test]
fn an_agents_guard_needs_a_window() {
    refused(
        "- name: g\n    agents: {route: api, metric: errorRate}\n    above: 1\n",
        "spec.guards[0].window",
        9,
        5,
        "missing required field",
    );
    refused(
        "- {name: g, agents: {route: api, metric: errorRate}, above: 1, window: soon}\n",
        "spec.guards[0].window",
        9,
        74,
        "is not a duration",
    );
}

// === the guard itself ===

#[test]
fn a_guard_has_exactly_one_source() {
    refused(
        "- name: g\n    above: 1\n",
        "spec.guards[0]",
        9,
        5,
        "a guard needs a source: one of agents, prometheus, probe",
    );
    refused(
        "- name: g\n    probe: {url: http://h/}\n    prometheus: {url: http://p, query: up}\n",
        "spec.guards[0]",
        9,
        5,
        "exactly one source (one of agents, prometheus, probe), got prometheus, probe",
    );
    refused(
        "- name: g\n    datadog: {query: x}\n",
        "spec.guards[0].datadog",
        10,
        5,
        "unknown field (expected one of: name, agents, prometheus, probe, above, below, window, for)",
    );
}

#[test]
fn guard_names_are_unique_dns_labels() {
    let agents = "agents: {route: api, metric: errorRate}, above: 1, window: 1s";
    refused(
        &format!("- {{{agents}}}\n"),
        "spec.guards[0].name",
        9,
        5,
        "missing required field",
    );
    refused(
        &format!("- {{name: Errors, {agents}}}\n"),
        "spec.guards[0].name",
        9,
        12,
        "is not a valid name",
    );
    refused(
        &format!("- {{name: e, {agents}}}\n- {{name: e, {agents}}}\n"),
        "spec.guards[1].name",
        10,
        12,
        "duplicate guard name \"e\" (also spec.guards[0])",
    );
}

#[test]
fn thresholds_are_one_number() {
    let g = "- name: g\n    agents: {route: api, metric: errorRate}\n    window: 1s\n";
    refused(
        &format!("{g}    above: 5%\n"),
        "spec.guards[0].above",
        12,
        12,
        "must be a number, got the string \"5%\"",
    );
    refused(
        &format!("{g}    below: high\n"),
        "spec.guards[0].below",
        12,
        12,
        "must be a number, got the string \"high\"",
    );
    refused(
        &format!("{g}    above: 1\n    below: 0\n"),
        "spec.guards[0].below",
        13,
        5,
        "give above or below, not both",
    );
    refused(
        g,
        "spec.guards[0].above",
        9,
        5,
        "missing threshold: give above or below",
    );
    let g = guard(&format!("{g}    above: 3\n"));
    assert_eq!(g.condition, Condition::Above(3.0));
}

// === prometheus ===

#[test]
fn a_prometheus_guard_reads_with_its_defaults() {
    let g = guard("- {name: p, prometheus: {url: \"http://prom:9090\", query: up}, below: 1}\n");
    assert_eq!(g.window, Duration::ZERO);
    assert_eq!(
        g.source,
        Source::Prometheus(PrometheusSource {
            url: "http://prom:9090".into(),
            query: "up".into(),
            interval: secs(1),
            timeout: secs(1),
            trip_after_errors: Some(3),
        })
    );
    let g = guard(
        "- name: p\n    prometheus:\n      url: https://prom.example/\n      query: up\n      interval: 30s\n      tripAfterErrors: 0\n    above: 0.25\n    for: 5s\n",
    );
    let Source::Prometheus(p) = &g.source else {
        panic!("{g:?}")
    };
    assert_eq!((p.interval, p.timeout), (secs(30), secs(5)));
    assert_eq!(p.trip_after_errors, None);
    assert_eq!(g.hold, secs(5));
}

#[test]
fn prometheus_fields_are_checked() {
    let g = "- name: p\n    above: 1\n    prometheus:\n";
    for (url, says) in [
        ("not a url", "is not an absolute http:// or https:// URL"),
        ("ftp://prom:21", "unsupported scheme \"ftp\""),
        ("/api/v1/query", "no scheme"),
    ] {
        refused(
            &format!("{g}      url: {url}\n      query: up\n"),
            "spec.guards[0].prometheus.url",
            12,
            12,
            says,
        );
    }
    let ok_url = "      url: http://prom\n";
    refused(
        &format!("{g}{ok_url}      query: \" \"\n"),
        "spec.guards[0].prometheus.query",
        13,
        14,
        "must not be empty",
    );
    refused(
        &format!("{g}{ok_url}      query: up\n      interval: 500ms\n"),
        "spec.guards[0].prometheus.interval",
        14,
        17,
        "500ms is shorter than the shortest interval (1s)",
    );
    refused(
        &format!("{g}{ok_url}      query: up\n      interval: 2s\n      timeout: 3s\n"),
        "spec.guards[0].prometheus.timeout",
        15,
        16,
        "3s is longer than the interval (2s)",
    );
    refused(
        &format!("{g}{ok_url}      query: up\n      timeout: 0s\n"),
        "spec.guards[0].prometheus.timeout",
        14,
        16,
        "must be longer than zero",
    );
    refused(
        &format!("{g}{ok_url}      query: up\n    window: 10s\n"),
        "spec.guards[0].window",
        14,
        5,
        "prometheus guards have no window",
    );
}

// === probe ===

#[test]
fn a_probe_guard_reads_with_its_defaults() {
    let g = guard("- {name: health, probe: {url: \"http://app:8080/healthz\"}}\n");
    assert_eq!(g.window, Duration::ZERO);
    // The probe's value is its count of consecutive failures: the third trips.
    assert_eq!(g.condition, Condition::Above(2.0));
    assert!(!g.condition.breached(2.0) && g.condition.breached(3.0));
    assert_eq!(
        g.source,
        Source::Probe(ProbeSource {
            method: "GET".into(),
            url: "http://app:8080/healthz".into(),
            headers: Default::default(),
            expect_status: (200, 399),
            body: None,
            timeout: secs(1),
            interval: secs(1),
            failures: 3,
        })
    );
}

#[test]
fn a_probe_guard_reads_every_field() {
    let g = guard(
        "- name: health
    probe:
      url: https://app/healthz
      method: post
      headers: {X-Probe: faultline}
      expectStatus: 204
      bodyRegex: \"^ok$\"
      timeout: 250ms
      interval: 2s
      failures: 1
",
    );
    assert_eq!(g.condition, Condition::Above(0.0));
    let Source::Probe(p) = &g.source else {
        panic!("{g:?}")
    };
    assert_eq!(p.method, "POST");
    assert_eq!(
        p.headers.get("x-probe").map(String::as_str),
        Some("faultline")
    );
    assert_eq!(p.expect_status, (204, 204));
    assert_eq!(
        p.body,
        Some(BodyCheck::Regex(regex::Regex::new("^ok$").unwrap()))
    );
    assert_eq!(
        (p.timeout, p.interval),
        (Duration::from_millis(250), secs(2))
    );
    let g =
        guard("- {name: h, probe: {url: \"http://a\", expectStatus: 200-299, bodyContains: ok}}\n");
    let Source::Probe(p) = &g.source else {
        panic!("{g:?}")
    };
    assert_eq!(p.expect_status, (200, 299));
    assert_eq!(p.body, Some(BodyCheck::Contains("ok".into())));
}

#[test]
fn probe_fields_are_checked() {
    let g = "- name: h\n    probe:\n      url: http://app/\n";
    let cases: [(&str, &str, u32, u32, &str); 9] = [
        (
            "method: \"GE T\"",
            "method",
            12,
            15,
            "\"GE T\" is not an HTTP method",
        ),
        (
            "headers: {\"bad header\": x}",
            "headers[\"bad header\"]",
            12,
            17,
            "is not a valid header name",
        ),
        (
            "expectStatus: 600",
            "expectStatus",
            12,
            21,
            "600 is not an HTTP status (100 to 599)",
        ),
        (
            "expectStatus: 300-200",
            "expectStatus",
            12,
            21,
            "the range 300-200 is empty",
        ),
        (
            "expectStatus: 2xx",
            "expectStatus",
            12,
            21,
            "is not a status or a range",
        ),
        ("bodyRegex: \"([a-z\"", "bodyRegex", 12, 18, "invalid regex"),
        ("failures: 0", "failures", 12, 17, "must be at least 1"),
        (
            "timeout: 2s",
            "timeout",
            12,
            16,
            "2s is longer than the interval (1s)",
        ),
        (
            "interval: 100ms",
            "interval",
            12,
            17,
            "shorter than the shortest interval",
        ),
    ];
    for (field, path, line, column, says) in cases {
        refused(
            &format!("{g}      {field}\n"),
            &format!("spec.guards[0].probe.{path}"),
            line,
            column,
            says,
        );
    }
    refused(
        "- name: h\n    probe:\n      url: ftp://x\n",
        "spec.guards[0].probe.url",
        11,
        12,
        "unsupported scheme",
    );
    refused(
        &format!("{g}      bodyContains: ok\n      bodyRegex: ok\n"),
        "spec.guards[0].probe.bodyRegex",
        13,
        7,
        "not both",
    );
}

#[test]
fn a_probe_takes_no_threshold_and_no_window() {
    let g = "- name: h\n    probe: {url: \"http://app/\"}\n";
    refused(
        &format!("{g}    above: 0.5\n"),
        "spec.guards[0].above",
        11,
        5,
        "trips after probe.failures consecutive failed probes",
    );
    refused(
        &format!("{g}    window: 5s\n"),
        "spec.guards[0].window",
        11,
        5,
        "probe guards have no window",
    );
}

// === recovery, requireTraffic, the heartbeat ===

#[test]
fn recovery_and_require_traffic() {
    let e = parse("").unwrap();
    assert_eq!(e.recovery, Recovery::default());
    assert_eq!(
        (e.recovery.stable, e.recovery.timeout),
        (secs(5), secs(300))
    );
    assert!(e.guards.is_empty() && !e.require_traffic);

    let e =
        parse("recovery: {stable: 10s, timeout: 2m}\nrequireTraffic: true\nguards: []\n").unwrap();
    assert_eq!(
        e.recovery,
        Recovery {
            stable: secs(10),
            timeout: secs(120)
        }
    );
    assert!(e.require_traffic);

    let e = parse("recovery:\n  timeout: 5s\n").unwrap_err();
    assert_eq!(e.path.to_string(), "spec.recovery.timeout");
    assert_eq!(
        e.location,
        Some(Location {
            line: 9,
            column: 14
        })
    );
    assert_eq!(
        e.message,
        "stable (5s) must be shorter than timeout (5s): the service must be able to stay \
         stable before recovery times out"
    );
    let e = parse("recovery: {stable: 10m}\n").unwrap_err();
    assert_eq!(e.path.to_string(), "spec.recovery.stable");
    let e = parse("recovery: {stable: 0s}\n").unwrap_err();
    assert_eq!(e.message, "must be longer than zero");
    let e = parse("requireTraffic: 1\n").unwrap_err();
    assert_eq!(e.path.to_string(), "spec.requireTraffic");
}

#[test]
fn an_agents_window_holds_at_least_one_heartbeat() {
    let text = with_guards(
        "- {name: g, agents: {route: api, metric: errorRate}, above: 1, window: 100ms}\n",
    );
    let e = spec::validate(&text, &Caps::default()).unwrap_err();
    assert_eq!(e.path.to_string(), "spec.guards[0].window");
    assert_eq!(
        e.location,
        Some(Location {
            line: 9,
            column: 74
        })
    );
    assert_eq!(
        e.message,
        "100ms is shorter than the controller's heartbeat interval (1s): the window would hold \
         no heartbeat"
    );
    let fast = Caps {
        heartbeat: Duration::from_millis(10),
        ..Caps::default()
    };
    assert!(spec::validate(&text, &fast).is_ok());
}
