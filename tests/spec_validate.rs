//! `faultline validate`, run as the built binary: malformed experiment specs each exit with
//! code 2 and name the field and its line (`FILE:LINE:COL: FIELD: message` on stderr, the same
//! facts in `-o json`), and the examples in `examples/experiments/` validate. A few tests also
//! read the examples through the library (`faultline_controller::spec`) to check what they
//! become.
//!
//! Line numbers refer to [`BASE`] (or to the spec written out in the test).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use faultline_agent::fault::FaultKind;
use faultline_controller::spec::{self, Caps, Condition, Metric, Mode, Source};
use serde_json::Value;

/// A valid spec the malformed ones are made from. Line numbers:
/// 1 apiVersion, 3 metadata, 4 name, 6 targets, 7 selector, 8 matchLabels, 9 mode, 10 value,
/// 11 faults, 12 route, 13 name, 14 type, 15 attributes, 16 latency, 17 duration.
const BASE: &str = "\
apiVersion: faultline.dev/v1alpha1
kind: Experiment
metadata:
  name: redis-latency
spec:
  targets:
    selector:
      matchLabels: {app: redis}
    mode: percent
    value: 50
  faults:
    - route: redis
      name: slow
      type: latency
      attributes:
        latency: 100
  duration: 5m
";

// === helpers ===

#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn faultline(args: &[&str], stdin: Option<&str>) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_faultline"))
        .args(args)
        .env_remove("FAULTLINE_HEARTBEAT")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the faultline binary runs");
    let mut input = child.stdin.take().expect("piped stdin");
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).unwrap();
    }
    drop(input);
    let out = child.wait_with_output().unwrap();
    Run {
        code: out.status.code().expect("exited, not killed"),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

/// Writes `text` to a file of the test's own under Cargo's scratch directory.
fn write(name: &str, text: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("spec_validate");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// `BASE` with each `(from, to)` replaced once; `from` must be there.
fn base_with(edits: &[(&str, &str)]) -> String {
    let mut s = BASE.to_string();
    for (from, to) in edits {
        assert!(s.contains(from), "BASE has no {from:?}");
        s = s.replacen(from, to, 1);
    }
    s
}

/// The error `faultline validate` reported, from `-o json`.
#[derive(Debug)]
struct Refused {
    field: String,
    line: Option<u64>,
    column: Option<u64>,
    kind: String,
    cap: Option<String>,
    message: String,
}

/// Validates `spec` (with `caps`, if given) as the file `NAME.yaml` (or `.json`), expecting
/// exit code 2. Checks that the text output is exactly `FILE:LINE:COL: FIELD: message` on
/// stderr and agrees with `-o json`, and returns the JSON's facts.
fn refused(name: &str, spec: &str, caps: Option<&str>) -> Refused {
    let ext = if spec.trim_start().starts_with('{') {
        "json"
    } else {
        "yaml"
    };
    let file = write(&format!("{name}.{ext}"), spec);
    let file = file.to_str().unwrap();
    let caps_file = caps.map(|c| write(&format!("{name}.caps.yaml"), c));
    let mut args = vec!["validate", "-f", file];
    if let Some(c) = &caps_file {
        args.extend(["--caps", c.to_str().unwrap()]);
    }

    let json_run = faultline(&[args.as_slice(), &["-o", "json"]].concat(), None);
    assert_eq!(json_run.code, 2, "{json_run:?}");
    let body: Value = serde_json::from_str(&json_run.stdout).expect("one JSON object");
    assert_eq!(body["valid"], false, "{body}");
    assert_eq!(body["file"], file, "{body}");
    let e = &body["error"];
    let refused = Refused {
        field: e["field"].as_str().unwrap().to_owned(),
        line: e["line"].as_u64(),
        column: e["column"].as_u64(),
        kind: e["kind"].as_str().unwrap().to_owned(),
        cap: e["cap"].as_str().map(str::to_owned),
        message: e["message"].as_str().unwrap().to_owned(),
    };

    assert!(!refused.message.contains('\n'), "one line: {refused:?}");

    let text_run = faultline(&args, None);
    assert_eq!(text_run.code, 2, "{text_run:?}");
    assert_eq!(text_run.stdout, "", "{text_run:?}");
    let source = e["source"].as_str().unwrap();
    let mut expected = source.to_string();
    if let (Some(l), Some(c)) = (refused.line, refused.column) {
        expected.push_str(&format!(":{l}:{c}"));
    }
    expected.push_str(": ");
    if !refused.field.is_empty() {
        expected.push_str(&format!("{}: ", refused.field));
    }
    expected.push_str(&refused.message);
    assert_eq!(text_run.stderr, format!("{expected}\n"));
    refused
}

/// Asserts the field and line of an invalid spec and that the message contains `says`.
#[track_caller]
fn assert_refused(r: &Refused, field: &str, line: u64, says: &str) {
    assert_eq!(r.field, field, "{r:?}");
    assert_eq!(r.line, Some(line), "{r:?}");
    assert!(r.column.is_some_and(|c| c >= 1), "{r:?}");
    assert!(
        r.message.contains(says),
        "{:?} does not contain {says:?}",
        r.message
    );
}

// === malformed specs ===

#[test]
fn bad_yaml_syntax_is_located() {
    let r = refused(
        "syntax",
        &base_with(&[("    mode: percent\n", "    mode: \"percent\n")]),
        None,
    );
    assert_refused(&r, "", 9, "not valid YAML: unclosed quote");
    assert_eq!(r.kind, "syntax");
}

#[test]
fn duplicate_yaml_keys_are_refused() {
    let r = refused(
        "duplicate_key",
        &base_with(&[("    value: 50\n", "    value: 50\n    value: 60\n")]),
        None,
    );
    assert_refused(&r, "", 11, "duplicate mapping key");
}

#[test]
fn unknown_top_level_field() {
    let r = refused("unknown_top", &format!("{BASE}status: {{}}\n"), None);
    assert_refused(
        &r,
        "status",
        18,
        "unknown field (expected one of: apiVersion, kind, metadata, spec)",
    );
}

#[test]
fn unknown_nested_field() {
    let r = refused(
        "unknown_nested",
        &base_with(&[("    value: 50\n", "    value: 50\n    weight: 3\n")]),
        None,
    );
    assert_refused(&r, "spec.targets.weight", 11, "unknown field");
}

#[test]
fn wrong_api_version() {
    let r = refused(
        "api_version",
        &base_with(&[("faultline.dev/v1alpha1", "faultline.dev/v1")]),
        None,
    );
    assert_refused(
        &r,
        "apiVersion",
        1,
        "unsupported apiVersion \"faultline.dev/v1\" (expected faultline.dev/v1alpha1)",
    );
    assert_eq!(r.column, Some(13));
}

#[test]
fn wrong_kind() {
    let r = refused(
        "kind",
        &base_with(&[("kind: Experiment", "kind: Deployment")]),
        None,
    );
    assert_refused(&r, "kind", 2, "unsupported kind \"Deployment\"");
}

#[test]
fn missing_name_points_at_metadata() {
    let r = refused(
        "missing_name",
        &base_with(&[("  name: redis-latency\n", "  labels: {team: storage}\n")]),
        None,
    );
    assert_refused(&r, "metadata.name", 3, "missing required field");
}

#[test]
fn name_must_be_a_dns_label() {
    let r = refused(
        "bad_name",
        &base_with(&[("name: redis-latency", "name: Redis_Latency")]),
        None,
    );
    assert_refused(&r, "metadata.name", 4, "is not a valid name");
}

#[test]
fn bad_duration() {
    let r = refused(
        "duration",
        &base_with(&[("duration: 5m", "duration: five minutes")]),
        None,
    );
    assert_refused(
        &r,
        "spec.duration",
        17,
        "is not a duration such as \"250ms\" or \"5m\"",
    );
}

#[test]
fn duration_without_unit() {
    let r = refused(
        "duration_number",
        &base_with(&[("duration: 5m", "duration: 300")]),
        None,
    );
    assert_refused(&r, "spec.duration", 17, "got the number 300");
}

#[test]
fn percent_101() {
    let r = refused(
        "percent_101",
        &base_with(&[("value: 50", "value: 101")]),
        None,
    );
    assert_refused(
        &r,
        "spec.targets.value",
        10,
        "mode percent needs a percentage from 1 to 100, got 101",
    );
    assert_eq!(r.column, Some(12));
}

#[test]
fn count_0() {
    let r = refused(
        "count_0",
        &base_with(&[("mode: percent", "mode: count"), ("value: 50", "value: 0")]),
        None,
    );
    assert_refused(&r, "spec.targets.value", 10, "at least 1, got 0");
}

#[test]
fn unknown_mode() {
    let r = refused("mode", &base_with(&[("mode: percent", "mode: most")]), None);
    assert_refused(&r, "spec.targets.mode", 9, "expected all, count or percent");
}

#[test]
fn empty_selector_without_all() {
    let r = refused(
        "empty_selector",
        &base_with(&[(
            "    selector:\n      matchLabels: {app: redis}\n",
            "    selector: {}\n",
        )]),
        None,
    );
    assert_refused(
        &r,
        "spec.targets.selector",
        7,
        "an empty selector would select every agent",
    );
}

#[test]
fn missing_selector_without_all() {
    let r = refused(
        "no_selector",
        &base_with(&[("    selector:\n      matchLabels: {app: redis}\n", "")]),
        None,
    );
    assert_refused(&r, "spec.targets.selector", 6, "set all: true");
}

#[test]
fn bad_operator() {
    let r = refused(
        "operator",
        &base_with(&[(
            "      matchLabels: {app: redis}\n",
            "      matchExpressions:\n        - {key: app, operator: Equals, values: [redis]}\n",
        )]),
        None,
    );
    assert_refused(
        &r,
        "spec.targets.selector.matchExpressions[0].operator",
        9,
        "unknown operator \"Equals\" (expected In, NotIn, Exists or DoesNotExist)",
    );
}

#[test]
fn in_without_values() {
    let r = refused(
        "in_without_values",
        &base_with(&[(
            "      matchLabels: {app: redis}\n",
            "      matchExpressions:\n        - key: app\n          operator: In\n",
        )]),
        None,
    );
    assert_refused(
        &r,
        "spec.targets.selector.matchExpressions[0].values",
        10,
        "operator In needs at least one value",
    );
}

#[test]
fn bad_label_value() {
    let r = refused(
        "label_value",
        &base_with(&[("{app: redis}", "{app: \"redis cache\"}")]),
        None,
    );
    assert_refused(
        &r,
        "spec.targets.selector.matchLabels.app",
        8,
        "may only contain letters, digits",
    );
}

#[test]
fn unknown_fault_kind() {
    let r = refused(
        "fault_kind",
        &base_with(&[("type: latency", "type: lag")]),
        None,
    );
    assert_refused(&r, "spec.faults[0].type", 14, "invalid toxic type: \"lag\"");
}

#[test]
fn negative_latency() {
    let r = refused(
        "negative_latency",
        &base_with(&[("latency: 100", "latency: -100")]),
        None,
    );
    assert_refused(
        &r,
        "spec.faults[0].attributes.latency",
        16,
        "must be a non-negative integer, got -100",
    );
    assert_eq!(r.column, Some(18));
}

#[test]
fn unknown_attribute() {
    let r = refused(
        "attribute",
        &base_with(&[("latency: 100", "delay: 100")]),
        None,
    );
    assert_refused(
        &r,
        "spec.faults[0].attributes.delay",
        16,
        "unknown attribute for a latency toxic",
    );
}

#[test]
fn percentage_out_of_range() {
    let r = refused(
        "percentage",
        &base_with(&[("type: latency\n", "type: latency\n      percentage: 150\n")]),
        None,
    );
    assert_refused(
        &r,
        "spec.faults[0].percentage",
        15,
        "must be between 0 and 100, got 150",
    );
}

#[test]
fn toxicity_is_not_an_experiment_field() {
    let r = refused(
        "toxicity",
        &base_with(&[("type: latency\n", "type: latency\n      toxicity: 1.5\n")]),
        None,
    );
    assert_refused(&r, "spec.faults[0].toxicity", 15, "percentage (0..100)");
}

#[test]
fn expiry_is_not_an_experiment_field() {
    let r = refused(
        "expires_in",
        &base_with(&[("type: latency\n", "type: latency\n      expires_in: 30s\n")]),
        None,
    );
    assert_refused(&r, "spec.faults[0].expires_in", 15, "spec.duration");
}

#[test]
fn bad_regex_in_match() {
    let spec = base_with(&[(
        "      type: latency\n      attributes:\n        latency: 100\n",
        "      type: http_abort\n      match:\n        path: {regex: \"/v1/([a-z\"}\n      attributes: {status: 503}\n",
    )]);
    let r = refused("regex", &spec, None);
    assert_refused(
        &r,
        "spec.faults[0].match.path.regex",
        16,
        "invalid regex: regex parse error: /v1/([a-z error: unclosed character class",
    );
}

#[test]
fn match_on_a_tcp_fault() {
    let r = refused(
        "match_tcp",
        &base_with(&[(
            "type: latency\n",
            "type: latency\n      match: {methods: [GET]}\n",
        )]),
        None,
    );
    assert_refused(&r, "spec.faults[0].match", 15, "only request-level faults");
}

#[test]
fn bad_grpc_code() {
    let spec = base_with(&[(
        "      type: latency\n      attributes:\n        latency: 100\n",
        "      type: grpc_abort\n      attributes:\n        code: MOSTLY_FINE\n",
    )]);
    let r = refused("grpc_code", &spec, None);
    assert_refused(
        &r,
        "spec.faults[0].attributes.code",
        16,
        "is not a gRPC status code",
    );
}

#[test]
fn fault_missing_route() {
    let r = refused(
        "missing_route",
        &base_with(&[(
            "    - route: redis\n      name: slow\n",
            "    - name: slow\n",
        )]),
        None,
    );
    assert_refused(&r, "spec.faults[0].route", 12, "missing required field");
}

#[test]
fn fault_route_not_targeted() {
    let r = refused(
        "route_not_targeted",
        &base_with(&[(
            "    mode: percent\n",
            "    routes: [postgres]\n    mode: percent\n",
        )]),
        None,
    );
    assert_refused(
        &r,
        "spec.faults[0].route",
        13,
        "route \"redis\" is not one of spec.targets.routes (postgres)",
    );
}

#[test]
fn duplicate_fault_names() {
    let second = "    - route: redis\n      name: slow\n      type: down\n";
    let r = refused(
        "duplicate_names",
        &base_with(&[("  duration: 5m\n", &format!("{second}  duration: 5m\n"))]),
        None,
    );
    assert_refused(
        &r,
        "spec.faults[1].name",
        18,
        "duplicate fault name \"slow\" on route \"redis\" (also spec.faults[0])",
    );
}

#[test]
fn no_faults() {
    let r = refused(
        "no_faults",
        &base_with(&[
            (
                "    - route: redis\n      name: slow\n      type: latency\n      attributes:\n        latency: 100\n",
                "",
            ),
            ("  faults:\n", "  faults: []\n"),
        ]),
        None,
    );
    assert_refused(&r, "spec.faults", 11, "at least one fault");
}

// === guards ===

/// An agents guard on BASE's route, without its threshold and window (lines 19 and 20).
const AGENTS_GUARD: &str = "    - name: errors\n      agents: {route: redis, metric: errorRate}\n";

/// `BASE` with `guards` (list items) under `spec.guards`: the first item is on line 19.
fn base_with_guards(guards: &str) -> String {
    format!("{BASE}  guards:\n{guards}")
}

#[test]
fn malformed_guards() {
    let agents = AGENTS_GUARD;
    // (file name, guards, field, line, message)
    let cases: [(&str, String, &str, u64, &str); 5] = [
        (
            "guard_unknown_source",
            "    - name: g\n      datadog: {query: x}\n".into(),
            "spec.guards[0].datadog",
            20,
            "unknown field (expected one of: name, agents, prometheus, probe,",
        ),
        (
            "guard_bad_promql_url",
            "    - name: p\n      above: 1\n      prometheus: {url: \"prometheus:9090/api\", query: up}\n"
                .into(),
            "spec.guards[0].prometheus.url",
            21,
            "is not an absolute http:// or https:// URL",
        ),
        (
            "guard_threshold_not_a_number",
            format!("{agents}      above: 5%\n      window: 10s\n"),
            "spec.guards[0].above",
            21,
            "must be a number, got the string \"5%\"",
        ),
        (
            "guard_window_below_heartbeat",
            format!("{agents}      above: 0.05\n      window: 100ms\n"),
            "spec.guards[0].window",
            22,
            "100ms is shorter than the controller's heartbeat interval (1s): the window would \
             hold no heartbeat",
        ),
        (
            "guard_probe_with_above",
            "    - name: health\n      probe: {url: \"http://redis:8080/healthz\"}\n      above: 2\n"
                .into(),
            "spec.guards[0].above",
            21,
            "a probe guard takes no threshold: it trips after probe.failures consecutive failed",
        ),
    ];
    for (name, guards, field, line, says) in cases {
        let r = refused(name, &base_with_guards(&guards), None);
        assert_refused(&r, field, line, says);
        assert_eq!(r.kind, "invalid", "{r:?}");
    }
}

#[test]
fn the_heartbeat_flag_sets_the_shortest_agents_window() {
    let spec = base_with_guards(&format!(
        "{AGENTS_GUARD}      above: 0.05\n      window: 100ms\n"
    ));
    let file = write("guard_heartbeat.yaml", &spec);
    let name = file.to_str().unwrap();
    let run = faultline(&["validate", "-f", name, "--heartbeat", "10ms"], None);
    assert_eq!(run.code, 0, "{run:?}");
    let run = faultline(&["validate", "-f", name, "--heartbeat", "200ms"], None);
    assert_eq!(run.code, 2, "{run:?}");
    assert_eq!(
        run.stderr,
        format!(
            "{name}:22:15: spec.guards[0].window: 100ms is shorter than the controller's \
             heartbeat interval (200ms): the window would hold no heartbeat\n"
        )
    );
}

#[test]
fn a_spec_with_every_guard_source_is_valid() {
    let guards = "    - name: errors
      agents: {route: redis, metric: errorRate, minRequests: 20}
      above: 0.05
      window: 10s
      for: 2s
    - name: p99
      prometheus:
        url: http://prometheus:9090
        query: histogram_quantile(0.99, sum(rate(redis_seconds_bucket[30s])) by (le))
      above: 0.25
    - name: health
      probe: {url: \"https://redis-exporter:9121/health\", expectStatus: 200}
  recovery: {stable: 10s, timeout: 2m}
  requireTraffic: true
";
    let file = write("guards_all_sources.yaml", &base_with_guards(guards));
    let name = file.to_str().unwrap();
    let run = faultline(&["validate", "-f", name], None);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.ends_with(", for 5m, 3 guards)\n"), "{run:?}");

    let run = faultline(&["validate", "-f", name, "-o", "json"], None);
    assert_eq!(run.code, 0, "{run:?}");
    let body: Value = serde_json::from_str(&run.stdout).unwrap();
    let exp = &body["experiment"];
    assert_eq!(
        exp["guards"],
        serde_json::json!([
            {"name": "errors", "source": "agents", "condition": "> 0.05"},
            {"name": "p99", "source": "prometheus", "condition": "> 0.25"},
            {"name": "health", "source": "probe", "condition": "> 2"},
        ])
    );
    assert_eq!(
        exp["recovery"],
        serde_json::json!({"stable": "10s", "timeout": "2m"})
    );
    assert_eq!(exp["requireTraffic"], true);
}

#[test]
fn a_schedule_with_a_bad_cron_expression_is_refused() {
    let r = refused(
        "schedule",
        &format!("{BASE}  schedule: {{cron: \"0 3 * *\"}}\n"),
        None,
    );
    assert_refused(&r, "spec.schedule.cron", 18, "");
}

#[test]
fn wrong_type_for_a_flag() {
    let r = refused(
        "allow_overlap",
        &format!("{BASE}  allowOverlap: yes\n"),
        None,
    );
    assert_refused(
        &r,
        "spec.allowOverlap",
        18,
        "must be true or false, got the string \"yes\"",
    );
}

#[test]
fn empty_document() {
    let r = refused("empty", "# nothing here\n", None);
    assert_eq!(r.field, "");
    assert!(r.message.starts_with("the document is empty"), "{r:?}");
}

#[test]
fn bad_json_syntax_is_located() {
    let r = refused(
        "json_syntax",
        "{\n  \"apiVersion\": \"faultline.dev/v1alpha1\",\n  \"kind\": \"Experiment\",\n}\n",
        None,
    );
    assert_refused(&r, "", 4, "not valid JSON: trailing comma");
}

#[test]
fn json_specs_are_located_too() {
    let spec = r#"{
  "apiVersion": "faultline.dev/v1alpha1",
  "kind": "Experiment",
  "metadata": {"name": "json-spec"},
  "spec": {
    "targets": {"selector": {"matchLabels": {"app": "redis"}}, "mode": "percent", "value": 101},
    "faults": [{"route": "redis", "type": "latency", "attributes": {"latency": 100}}],
    "duration": "5m"
  }
}"#;
    let r = refused("json_percent", spec, None);
    assert_refused(&r, "spec.targets.value", 6, "got 101");
}

// === caps ===

#[test]
fn cap_exceeded_duration() {
    let r = refused(
        "cap_duration",
        &base_with(&[("duration: 5m", "duration: 2h")]),
        Some("maxDuration: 30m\n"),
    );
    assert_refused(
        &r,
        "spec.duration",
        17,
        "2h is longer than the cap maxDuration (30m)",
    );
    assert_eq!(r.kind, "cap");
    assert_eq!(r.cap.as_deref(), Some("maxDuration"));
}

#[test]
fn cap_exceeded_percent() {
    let r = refused("cap_percent", BASE, Some("maxPercentOfAgents: 25\n"));
    assert_refused(
        &r,
        "spec.targets.value",
        10,
        "50% of the matching agents is more than the cap maxPercentOfAgents (25%)",
    );
    assert_eq!(r.cap.as_deref(), Some("maxPercentOfAgents"));
}

#[test]
fn cap_exceeded_by_mode_all() {
    let r = refused(
        "cap_mode_all",
        &base_with(&[("    mode: percent\n    value: 50\n", "")]),
        Some("maxPercentOfAgents: 25\n"),
    );
    // `mode` is not written: the error points at spec.targets.
    assert_refused(
        &r,
        "spec.targets.mode",
        6,
        "mode all (100% of the matching agents) is more than",
    );
}

#[test]
fn selector_not_allowed_by_caps() {
    let caps =
        "allowedSelectors:\n  - matchLabels: {env: staging}\n  - matchLabels: {track: canary}\n";
    let r = refused("cap_selector", BASE, Some(caps));
    assert_refused(
        &r,
        "spec.targets.selector",
        7,
        "selector app=redis is not within the cap allowedSelectors (allowed: env=staging; track=canary)",
    );
    assert_eq!(r.cap.as_deref(), Some("allowedSelectors"));
}

#[test]
fn all_agents_not_allowed_by_caps() {
    let r = refused(
        "cap_all",
        &base_with(&[(
            "    selector:\n      matchLabels: {app: redis}\n",
            "    all: true\n",
        )]),
        Some("allowedSelectors:\n  - matchLabels: {env: staging}\n"),
    );
    assert_refused(
        &r,
        "spec.targets.all",
        7,
        "all: true (every agent) is not within",
    );
}

#[test]
fn a_selector_within_the_allowed_ones_passes_the_caps() {
    let spec = base_with(&[("{app: redis}", "{app: redis, env: staging}")]);
    let file = write("cap_ok.yaml", &spec);
    let caps = write(
        "cap_ok.caps.yaml",
        "maxDuration: 10m\nmaxPercentOfAgents: 50\nallowedSelectors:\n  - matchLabels: {env: staging}\n",
    );
    let run = faultline(
        &[
            "validate",
            "-f",
            file.to_str().unwrap(),
            "--caps",
            caps.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(run.code, 0, "{run:?}");
}

#[test]
fn an_invalid_caps_file_is_named() {
    let file = write("caps_invalid_spec.yaml", BASE);
    let caps = write(
        "caps_invalid.caps.yaml",
        "maxDuration: 10m\nmaxDurations: 1h\n",
    );
    let run = faultline(
        &[
            "validate",
            "-f",
            file.to_str().unwrap(),
            "--caps",
            caps.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(run.code, 2, "{run:?}");
    assert_eq!(
        run.stderr,
        format!(
            "{}:2:1: maxDurations: unknown field (expected one of: maxDuration, \
             maxPercentOfAgents, allowedSelectors)\n",
            caps.display()
        )
    );
}

// === valid specs, files and exit codes ===

fn examples() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/experiments");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 3, "{files:?}");
    files
}

#[test]
fn the_examples_are_valid() {
    for file in examples() {
        let name = file.to_str().unwrap();
        let run = faultline(&["validate", "-f", name], None);
        assert_eq!(run.code, 0, "{name}: {run:?}");
        let valid = run
            .stdout
            .strip_prefix(&format!("{name}: valid ("))
            .unwrap_or("");
        assert!(
            valid.contains(" fault") && valid.contains(", targets "),
            "{run:?}"
        );
        assert_eq!(run.stderr, "");
    }
}

#[test]
fn valid_summary_and_json() {
    let file = write("summary.yaml", BASE);
    let name = file.to_str().unwrap();
    let run = faultline(&["validate", "-f", name], None);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        run.stdout,
        format!(
            "{name}: valid (1 fault, targets 50% of agents matching app=redis on route redis, \
             for 5m)\n"
        )
    );

    let run = faultline(&["validate", "-f", name, "-o", "json"], None);
    assert_eq!(run.code, 0, "{run:?}");
    let body: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(body["valid"], true);
    let exp = &body["experiment"];
    assert_eq!(exp["name"], "redis-latency");
    assert_eq!(exp["durationMs"], 300_000);
    assert_eq!(exp["targets"]["mode"], "percent");
    assert_eq!(exp["targets"]["value"], 50);
    assert_eq!(exp["targets"]["routes"], serde_json::json!(["redis"]));
    assert_eq!(
        exp["faults"],
        serde_json::json!([{"route": "redis", "name": "slow", "type": "latency"}])
    );
}

#[test]
fn a_spec_on_stdin() {
    let run = faultline(&["validate", "-f", "-"], Some(BASE));
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.starts_with("<stdin>: valid (1 fault"), "{run:?}");

    let bad = base_with(&[("value: 50", "value: 0")]);
    let run = faultline(&["validate", "-f", "-"], Some(&bad));
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr
            .starts_with("<stdin>:10:12: spec.targets.value: "),
        "{run:?}"
    );
}

#[test]
fn an_unreadable_file_exits_1() {
    let run = faultline(&["validate", "-f", "/nonexistent/spec.yaml"], None);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr
            .starts_with("faultline: cannot read /nonexistent/spec.yaml"),
        "{run:?}"
    );
}

#[test]
fn a_missing_filename_is_a_usage_error() {
    let run = faultline(&["validate"], None);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("--filename <FILE>"), "{run:?}");
}

// === what the examples become (library) ===

fn example(name: &str) -> spec::Experiment {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/experiments")
        .join(name);
    spec::validate(&std::fs::read_to_string(path).unwrap(), &Caps::default()).unwrap()
}

#[test]
fn the_canary_outage_example_is_a_503_on_a_fifth_of_canary_requests() {
    let exp = example("api-outage-canary.yaml");
    assert_eq!(exp.name, "checkout-api-canary-503");
    assert_eq!(exp.targets.mode, Mode::All);
    assert_eq!(exp.targets.routes, ["api"]);
    assert_eq!(
        exp.targets.selector.to_string(),
        "app=checkout-api,track in (canary)"
    );
    let (route, fault) = &exp.faults[0];
    assert_eq!(route, "api");
    let FaultKind::HttpAbort(abort) = &fault.kind else {
        panic!("{fault:?}")
    };
    assert_eq!(abort.status.as_u16(), 503);
    assert!((fault.toxicity.get() - 0.2).abs() < 1e-9);
    assert!(fault.matcher.is_some());
}

#[test]
fn the_grpc_example_is_unavailable_on_two_agents() {
    let exp = example("grpc-unavailable.yaml");
    assert_eq!(exp.targets.mode.count_of(10), 2);
    assert!(!exp.targets.include_new_agents);
    let FaultKind::GrpcAbort(abort) = &exp.faults[0].1.kind else {
        panic!("{:?}", exp.faults[0])
    };
    assert_eq!(abort.code, 14, "UNAVAILABLE");
}

#[test]
fn the_latency_example_is_200ms_on_half_the_redis_agents() {
    let exp = example("redis-latency.yaml");
    assert_eq!(exp.seed, Some(1234));
    assert_eq!(exp.targets.mode.count_of(8), 4);
    let FaultKind::Latency(l) = &exp.faults[0].1.kind else {
        panic!("{:?}", exp.faults[0])
    };
    assert_eq!(l.latency.as_millis(), 200);
    assert_eq!(l.jitter.as_millis(), 50);
}

#[test]
fn the_guarded_example_stops_on_errors_or_a_failing_health_check() {
    let exp = example("checkout-guarded.yaml");
    assert_eq!(exp.guards.len(), 2);
    let errors = &exp.guards[0];
    assert_eq!(errors.condition, Condition::Above(0.05));
    assert_eq!(errors.window, Duration::from_secs(10));
    assert_eq!(errors.hold, Duration::from_secs(2));
    let Source::Agents(agents) = &errors.source else {
        panic!("{errors:?}")
    };
    assert_eq!(agents.route, "api");
    assert!(matches!(agents.metric, Metric::ErrorRate { .. }));
    assert_eq!(agents.min_requests, 20);
    let health = &exp.guards[1];
    let Source::Probe(probe) = &health.source else {
        panic!("{health:?}")
    };
    assert_eq!(probe.expect_status, (200, 299));
    assert_eq!(probe.failures, 3);
    assert_eq!(health.condition, Condition::Above(2.0));
    assert_eq!(exp.recovery.stable, Duration::from_secs(10));
    assert_eq!(exp.recovery.timeout, Duration::from_secs(120));
}
