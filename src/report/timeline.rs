//! Timeline events in words: `started: targets agent-a`, `guard errors: ok -> breached (value
//! 0.61 > 0.05)`. `run` prints these lines as events arrive; reports show them in the timeline.

use faultline_proto::v1::{ExperimentEvent, ExperimentEventKind as Kind};
use serde_json::Value;

use super::{millis, number};
use crate::controller::render;

/// Tells events one by one; remembers what later lines need (the targets chosen before the
/// start).
#[derive(Default)]
pub struct Narrator {
    targets: Vec<String>,
}

impl Narrator {
    /// The event in one line, without its time.
    pub fn line(&mut self, ev: &ExperimentEvent) -> String {
        let d: Value = serde_json::from_str(&ev.detail_json).unwrap_or(Value::Null);
        let text = |key: &str| d[key].as_str().unwrap_or("-").to_owned();
        let reason = || match d["reason"].as_str() {
            Some(r) if !r.is_empty() => format!(": {r}"),
            _ => String::new(),
        };
        let next_fire = || match d["nextFire"].as_str() {
            Some(n) => format!("; next fire {n}"),
            None => "; no further fire".to_owned(),
        };
        match Kind::try_from(ev.kind) {
            Ok(Kind::Created) => "created".into(),
            Ok(Kind::TargetsChosen) => {
                self.targets = strings(&d["agents"]);
                format!("targets chosen: {}", list(&self.targets))
            }
            Ok(Kind::Preflight) => {
                let verdict = if d["passed"] == false {
                    "refused"
                } else {
                    "passed"
                };
                let guards: Vec<String> = d["guards"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|g| {
                        let name = g["guard"].as_str().unwrap_or("-");
                        let state = g["state"].as_str().unwrap_or("no_data");
                        format!("{name} {state} ({})", reading(g))
                    })
                    .collect();
                format!("pre-flight {verdict}: {}", list(&guards))
            }
            Ok(Kind::Started) => format!("started: targets {}", list(&self.targets)),
            Ok(Kind::Completed) => "completed: the faults are withdrawn".into(),
            Ok(Kind::Aborted) => format!("aborted{}", reason()),
            Ok(Kind::Failed) => format!("failed{}", reason()),
            Ok(Kind::AgentApplied) => format!("agent {} applied the faults", text("agent")),
            Ok(Kind::AgentRejected) => {
                format!(
                    "agent {} rejected the faults: {}",
                    text("agent"),
                    text("error")
                )
            }
            Ok(Kind::AgentJoined) => format!("agent {} joined as a target", text("agent")),
            Ok(Kind::AgentLost) => format!("agent {} lost", text("agent")),
            Ok(Kind::GuardChanged) => {
                let name = text("guard");
                let note = match d["note"].as_str() {
                    Some(n) if !n.is_empty() => format!(": {n}"),
                    _ => String::new(),
                };
                format!(
                    "guard {name}: {} -> {} ({}){note}",
                    text("from"),
                    text("to"),
                    reading(&d)
                )
            }
            Ok(Kind::GuardTripped) => format!(
                "guard {} tripped ({}, for {}); faults withdrawn",
                text("guard"),
                reading(&d),
                millis(d["for_ms"].as_u64().unwrap_or(0))
            ),
            Ok(Kind::FaultsWithdrawn) => {
                let last = d["last_ack_ms"].as_f64().map_or_else(String::new, |ms| {
                    format!(", the last after {}ms", number(ms))
                });
                let missing = strings(&d["unacknowledged"]);
                let missing = if missing.is_empty() {
                    String::new()
                } else {
                    format!("; not acknowledged: {}", missing.join(", "))
                };
                format!(
                    "faults withdrawn: {} acknowledged{last}{missing}",
                    d["acknowledged"].as_u64().unwrap_or(0)
                )
            }
            Ok(Kind::Injection) => {
                let rules: Vec<String> = d["rules"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|r| {
                        format!(
                            "{}/{} matched {}, injected {}",
                            r["route"].as_str().unwrap_or("-"),
                            r["fault"].as_str().unwrap_or("-"),
                            r["matched"],
                            r["injected"]
                        )
                    })
                    .collect();
                format!("injection: {}", list(&rules))
            }
            Ok(Kind::Recovery) => match d["recovery_time_ms"].as_u64() {
                Some(ms) if d["recovered"] == true => {
                    format!("recovered {} after the faults ended", millis(ms))
                }
                _ => format!(
                    "not recovered within {}",
                    millis(d["timeout_ms"].as_u64().unwrap_or(0))
                ),
            },
            Ok(Kind::ScheduleArmed) => format!("schedule armed{}", next_fire()),
            Ok(Kind::ScheduleFired) => format!(
                "schedule fired for {}: run {}{}",
                text("fireAt"),
                text("run"),
                next_fire()
            ),
            Ok(Kind::ScheduleSkipped) => format!(
                "schedule fire for {} skipped{}{}",
                text("fireAt"),
                reason(),
                next_fire()
            ),
            Ok(Kind::ScheduleDisarmed) => format!("schedule disarmed{}", reason()),
            _ => format!("{} {}", render::event_kind(ev.kind), ev.detail_json),
        }
    }
}

/// `value 0.61 > 0.05` from a detail's `value` and `threshold`.
pub fn reading(d: &Value) -> String {
    match (d["value"].as_f64(), d["threshold"].as_f64()) {
        (Some(v), Some(t)) => format!("value {} {} {}", number(v), relation(v, t), number(t)),
        (Some(v), None) => format!("value {}", number(v)),
        _ => "no value".into(),
    }
}

/// How a value stands to a threshold: `>`, `<` or `=`.
pub fn relation(value: f64, threshold: f64) -> &'static str {
    if value > threshold {
        ">"
    } else if value < threshold {
        "<"
    } else {
        "="
    }
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(str::to_owned))
        .collect()
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        "none".into()
    } else {
        items.join(", ")
    }
}
