//! Wire messages to what the user reads: tables, JSON and YAML documents, the `describe` page.
//! JSON and YAML carry the same document, built here from the wire messages (camelCase field
//! names, states and event kinds in lower case, times in RFC 3339).

use std::io::{self, Write};
use std::time::{Duration, UNIX_EPOCH};

use anyhow::Context;
use faultline_proto::v1::{
    Agent, Experiment, ExperimentEvent, ExperimentEventKind, ExperimentResult, ExperimentState,
    Protocol, RecoveryState,
};
use serde_json::{Value, json};

use super::args::Format;
use crate::output::{self, Table};

/// `pending`, `running`, ...
pub fn state(state: i32) -> String {
    match ExperimentState::try_from(state) {
        Ok(s) => lower(s.as_str_name(), "EXPERIMENT_STATE_"),
        Err(_) => format!("unknown({state})"),
    }
}

/// `guard_changed`, `started`, ...
pub fn event_kind(kind: i32) -> String {
    match ExperimentEventKind::try_from(kind) {
        Ok(k) => lower(k.as_str_name(), "EXPERIMENT_EVENT_KIND_"),
        Err(_) => format!("unknown({kind})"),
    }
}

fn protocol(p: i32) -> String {
    match Protocol::try_from(p) {
        Ok(p) => lower(p.as_str_name(), "PROTOCOL_"),
        Err(_) => format!("unknown({p})"),
    }
}

fn lower(name: &str, prefix: &str) -> String {
    name.strip_prefix(prefix)
        .unwrap_or(name)
        .to_ascii_lowercase()
}

/// A wire timestamp in RFC 3339 (UTC, seconds), or `-`.
pub fn time(seconds: Option<(i64, i32)>) -> String {
    match seconds {
        Some((s, _)) if s >= 0 => {
            humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(s as u64))
                .to_string()
        }
        _ => "-".into(),
    }
}

macro_rules! ts {
    ($t:expr) => {
        time($t.as_ref().map(|t| (t.seconds, t.nanos)))
    };
}

fn targets(e: &Experiment) -> String {
    if e.targets.is_empty() {
        "-".into()
    } else {
        e.targets.join(",")
    }
}

/// `experiment/NAME running: targets a, b` (the reason too when it has one).
pub fn started(e: &Experiment) -> String {
    let mut line = format!("experiment/{} {}", e.name, state(e.state));
    if !e.reason.is_empty() {
        line.push_str(&format!(" ({})", e.reason));
    }
    if e.targets.is_empty() {
        line.push_str(": no targets");
    } else {
        line.push_str(&format!(": targets {}", e.targets.join(", ")));
    }
    line
}

// === get ===

pub fn experiments(list: &[Experiment], format: Format) -> anyhow::Result<()> {
    match format {
        Format::Table => {
            let mut t = Table::new(vec!["NAME", "STATE", "TARGETS", "REASON"]);
            for e in list {
                t.row(vec![
                    e.name.clone(),
                    state(e.state),
                    targets(e),
                    e.reason.clone(),
                ]);
            }
            output::table(&t)
        }
        _ => document(
            &json!({"experiments": list.iter().map(experiment_json).collect::<Vec<_>>()}),
            format,
        ),
    }
}

pub fn agents(list: &[Agent], format: Format) -> anyhow::Result<()> {
    match format {
        Format::Table => {
            let mut t = Table::new(vec!["ID", "CONNECTED", "GENERATION", "LABELS", "ROUTES"]);
            for a in list {
                let mut labels: Vec<_> = a.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                labels.sort();
                let routes: Vec<_> = a
                    .routes
                    .iter()
                    .map(|r| format!("{}({})", r.name, protocol(r.protocol)))
                    .collect();
                t.row(vec![
                    a.id.clone(),
                    if a.connected { "yes" } else { "no" }.into(),
                    a.generation.to_string(),
                    labels.join(","),
                    routes.join(","),
                ]);
            }
            output::table(&t)
        }
        _ => document(
            &json!({"agents": list.iter().map(agent_json).collect::<Vec<_>>()}),
            format,
        ),
    }
}

fn experiment_json(e: &Experiment) -> Value {
    json!({
        "name": e.name,
        "state": state(e.state),
        "reason": e.reason,
        "targets": e.targets,
        "seed": e.seed,
        "createdAt": opt_time(ts!(e.created_at)),
        "startedAt": opt_time(ts!(e.started_at)),
        "endedAt": opt_time(ts!(e.ended_at)),
        "spec": serde_json::from_str::<Value>(&e.spec).unwrap_or_else(|_| Value::String(e.spec.clone())),
        "result": e.result.as_ref().map(result_json),
    })
}

fn seconds(d: &Option<faultline_proto::prost_types::Duration>) -> Value {
    d.as_ref()
        .map(|d| json!(d.seconds as f64 + f64::from(d.nanos) / 1e9))
        .unwrap_or(Value::Null)
}

fn result_json(r: &ExperimentResult) -> Value {
    json!({
        "trip": r.trip.as_ref().map(|t| json!({
            "guard": t.guard,
            "source": t.source,
            "value": t.value,
            "threshold": t.threshold,
            "trippedAt": opt_time(ts!(t.tripped_at)),
            "withdrawnAt": opt_time(ts!(t.withdrawn_at)),
            "lastAckAt": opt_time(ts!(t.last_ack_at)),
            "acknowledged": t.acknowledged,
            "unacknowledged": t.unacknowledged,
        })),
        "timeToDetectSeconds": seconds(&r.time_to_detect),
        "recovery": lower(r.recovery().as_str_name(), "RECOVERY_STATE_"),
        "recoveryTimeSeconds": seconds(&r.recovery_time),
        "rules": r.rules.iter().map(|t| json!({
            "route": t.route, "fault": t.fault,
            "matched": t.matched, "injected": t.injected, "passed": t.passed,
        })).collect::<Vec<_>>(),
        "unmatched": r.unmatched,
        "breakingPoint": r.breaking_point.as_ref().map(|bp| json!({
            "broke": bp.broke_name,
            "held": bp.held.map(|_| bp.held_name.clone()),
        })),
    })
}

/// The result's lines on the describe page.
fn result_lines(r: &ExperimentResult) -> Vec<String> {
    let mut lines = Vec::new();
    if let Some(t) = &r.trip {
        let acks = if t.unacknowledged.is_empty() {
            format!("{} acknowledged", t.acknowledged)
        } else {
            format!(
                "{} acknowledged, not: {}",
                t.acknowledged,
                t.unacknowledged.join(", ")
            )
        };
        lines.push(format!(
            "Tripped:   guard {} ({}) value {} threshold {} at {}; {acks}",
            t.guard,
            t.source,
            t.value,
            t.threshold,
            ts!(t.tripped_at)
        ));
    }
    if let Some(bp) = &r.breaking_point {
        let held = match bp.held {
            Some(_) => format!("{} held", bp.held_name),
            None => "no phase held".to_owned(),
        };
        lines.push(format!("Breaking:  phase {} broke; {held}", bp.broke_name));
    }
    if let Value::Number(n) = seconds(&r.time_to_detect) {
        lines.push(format!("Detected:  {n}s after the faults started"));
    }
    let recovery = match (r.recovery(), seconds(&r.recovery_time)) {
        (RecoveryState::Recovered, Value::Number(n)) => {
            format!("recovered {n}s after the faults ended")
        }
        (RecoveryState::NotRecovered, _) => "not recovered".to_owned(),
        (RecoveryState::Observing, _) => "observing".to_owned(),
        _ => "- (no guards)".to_owned(),
    };
    lines.push(format!("Recovery:  {recovery}"));
    for t in &r.rules {
        lines.push(format!(
            "Fault:     {}/{} matched {}, injected {}, passed {}",
            t.route, t.fault, t.matched, t.injected, t.passed
        ));
    }
    if !r.unmatched.is_empty() {
        lines.push(format!(
            "Unverified: {} matched no request or connection",
            r.unmatched.join(", ")
        ));
    }
    lines
}

fn agent_json(a: &Agent) -> Value {
    json!({
        "id": a.id,
        "connected": a.connected,
        "generation": a.generation,
        "version": a.version,
        "labels": a.labels.iter().collect::<std::collections::BTreeMap<_, _>>(),
        "routes": a.routes.iter().map(|r| json!({
            "name": r.name,
            "listen": r.listen,
            "upstream": r.upstream,
            "protocol": protocol(r.protocol),
        })).collect::<Vec<_>>(),
        "lastSeen": opt_time(ts!(a.last_seen)),
    })
}

fn opt_time(t: String) -> Value {
    if t == "-" {
        Value::Null
    } else {
        Value::String(t)
    }
}

pub fn document(value: &Value, format: Format) -> anyhow::Result<()> {
    let text = match format {
        Format::Yaml => serde_saphyr::to_string(value).context("cannot render YAML")?,
        _ => serde_json::to_string_pretty(value).context("cannot render JSON")?,
    };
    let mut out = io::stdout().lock();
    writeln!(out, "{}", text.trim_end())
        .and_then(|()| out.flush())
        .context("cannot write to stdout")
}

// === describe ===

/// The `describe experiment` page.
pub fn describe(e: &Experiment, events: &[ExperimentEvent]) -> String {
    let mut page = String::new();
    let mut field = |name: &str, value: &str| {
        page.push_str(&format!("{:<10}{}\n", format!("{name}:"), value));
    };
    field("Name", &e.name);
    field("State", &state(e.state));
    field("Reason", if e.reason.is_empty() { "-" } else { &e.reason });
    field("Seed", &e.seed.to_string());
    field("Created", &ts!(e.created_at));
    field("Started", &ts!(e.started_at));
    field("Ended", &ts!(e.ended_at));
    field("Targets", &targets(e));
    page.push_str("Spec:\n");
    for line in spec_summary(&e.spec) {
        page.push_str(&format!("  {line}\n"));
    }
    if let Some(r) = &e.result {
        page.push_str("Result:\n");
        for line in result_lines(r) {
            page.push_str(&format!("  {line}\n"));
        }
    }
    page.push_str("Timeline:\n");
    let mut t = Table::new(vec!["SEQ", "AT", "EVENT", "STATE", "DETAIL"]);
    for ev in events {
        t.row(vec![
            ev.sequence.to_string(),
            ts!(ev.at),
            event_kind(ev.kind),
            state(ev.state),
            short(&ev.detail_json),
        ]);
    }
    let mut table = Vec::new();
    t.write_to(&mut table)
        .expect("writing to a Vec cannot fail");
    for line in String::from_utf8_lossy(&table).lines() {
        page.push_str(&format!("  {line}\n"));
    }
    page
}

/// A detail as the timeline table shows it: long ones (a recovery's series) cut short; `-o
/// json` has them whole.
fn short(detail: &str) -> String {
    const MAX: usize = 160;
    match detail.char_indices().nth(MAX) {
        Some((at, _)) => format!("{}…", &detail[..at]),
        None => detail.to_owned(),
    }
}

/// The stored (canonical JSON) spec in a few lines: duration, targets, one line per fault.
fn spec_summary(spec: &str) -> Vec<String> {
    let Ok(doc) = serde_json::from_str::<Value>(spec) else {
        return vec![spec.to_owned()];
    };
    let s = &doc["spec"];
    let mut lines = vec![
        format!("Duration: {}", plain(&s["duration"])),
        format!("Targets:  {}", plain(&s["targets"])),
    ];
    if let Some(faults) = s["faults"].as_array() {
        for f in faults {
            let mut line = format!(
                "Fault:    {} on route {}",
                plain(&f["type"]),
                plain(&f["route"])
            );
            if let Some(name) = f["name"].as_str() {
                line.push_str(&format!(" ({name})"));
            }
            lines.push(line);
        }
    }
    lines
}

/// A string without its quotes; anything else as compact JSON.
fn plain(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_read_in_lower_case() {
        assert_eq!(state(ExperimentState::Running as i32), "running");
        assert_eq!(state(99), "unknown(99)");
        assert_eq!(
            event_kind(ExperimentEventKind::AgentApplied as i32),
            "agent_applied"
        );
    }

    #[test]
    fn saphyr_serializes_the_document() {
        let yaml =
            serde_saphyr::to_string(&json!({"experiments": [{"name": "a", "seed": 3}]})).unwrap();
        assert!(yaml.contains("name: a"), "{yaml}");
        assert!(yaml.contains("seed: 3"), "{yaml}");
    }

    #[test]
    fn a_result_reads_as_trip_detection_recovery_and_counts() {
        use faultline_proto::v1::{GuardTrip, RuleTotal};
        let d = |ms: i32| faultline_proto::prost_types::Duration {
            seconds: 0,
            nanos: ms * 1_000_000,
        };
        let r = ExperimentResult {
            trip: Some(GuardTrip {
                guard: "errors".into(),
                source: "agents".into(),
                value: 0.6,
                threshold: 0.05,
                acknowledged: 2,
                unacknowledged: vec!["c".into()],
                ..Default::default()
            }),
            time_to_detect: Some(d(250)),
            recovery: RecoveryState::Recovered as i32,
            recovery_time: Some(d(800)),
            rules: vec![RuleTotal {
                route: "api".into(),
                fault: "abort".into(),
                matched: 10,
                injected: 6,
                passed: 4,
            }],
            unmatched: vec!["db/slow".into()],
            breaking_point: Some(faultline_proto::v1::BreakingPoint {
                broke: 2,
                broke_name: "thirty".into(),
                held: Some(1),
                held_name: "ten".into(),
            }),
        };
        let lines = result_lines(&r).join("\n");
        for want in [
            "guard errors (agents) value 0.6 threshold 0.05",
            "2 acknowledged, not: c",
            "Detected:  0.25s after the faults started",
            "Recovery:  recovered 0.8s after the faults ended",
            "Fault:     api/abort matched 10, injected 6, passed 4",
            "Unverified: db/slow matched no request or connection",
            "Breaking:  phase thirty broke; ten held",
        ] {
            assert!(lines.contains(want), "{want:?} not in:\n{lines}");
        }
        let json = result_json(&r);
        assert_eq!(json["recovery"], "recovered");
        assert_eq!(json["recoveryTimeSeconds"], 0.8);
        assert_eq!(short(&"x".repeat(500)).chars().count(), 161);
    }
}
