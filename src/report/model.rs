//! The report's model, built once from an `Experiment` and its timeline. Every format reads it;
//! none of them looks at wire messages.

use faultline_proto::prost_types::Timestamp;
use faultline_proto::v1::{
    Experiment, ExperimentEvent, ExperimentEventKind, ExperimentState, RecoveryState,
};
use serde::Serialize;
use serde_json::Value;

use super::timeline::{Narrator, relation};
use super::{millis, number};
use crate::controller::render;

/// An experiment's run, as every report format shows it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub name: String,
    pub state: String,
    pub reason: String,
    pub verdict: Verdict,
    pub seed: u64,
    pub targets: Vec<String>,
    pub created_at: Option<String>,
    pub started_at: Option<String>,
    pub ended_at: Option<String>,
    /// `spec.duration`.
    pub duration_ms: Option<u64>,
    pub guards: Vec<Guard>,
    /// The phases that started (`phase_started` events), in order; empty for an experiment
    /// without phases.
    pub phases: Vec<Phase>,
    pub trip: Option<Trip>,
    pub recovery: Option<Recovery>,
    pub rules: Vec<Rule>,
    /// Faults that matched nothing (`route/name`).
    pub unmatched: Vec<String>,
    pub timeline: Vec<Entry>,
}

/// How the run ended, in one word and one sentence.
#[derive(Debug, Serialize)]
pub struct Verdict {
    pub outcome: Outcome,
    pub summary: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Completed; the guards held and the service recovered (or there were no guards).
    Passed,
    /// Aborted by a guard; the service recovered (or recovery was not observed).
    Tripped,
    /// Aborted by a guard, and the service did not recover in time.
    TrippedNotRecovered,
    /// Completed, but the service did not recover in time.
    NotRecovered,
    /// Could not run: pre-flight refusal, no targets, `requireTraffic`, rejected faults.
    Failed,
    /// Aborted by an operator or an emergency stop (or a controller restart).
    Stopped,
    /// Still pending or running.
    Unfinished,
}

impl Outcome {
    pub fn passed(self) -> bool {
        self == Outcome::Passed
    }
}

/// One guard: its objective, its trip if it tripped, its values over time.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Guard {
    pub name: String,
    /// `agents`, `prometheus` or `probe`.
    pub source: String,
    /// `above` or `below`: the side of the threshold that breaks the objective.
    pub condition: &'static str,
    pub threshold: Option<f64>,
    pub for_ms: u64,
    pub tripped: bool,
    /// Breached at the pre-flight (the experiment failed instead of starting).
    pub refused_start: bool,
    /// Its state and value when recovery observation ended (or the last known).
    pub last_state: Option<String>,
    pub last_value: Option<f64>,
    /// `[ms since the faults started, value]`, down-sampled by the controller.
    pub series: Vec<[f64; 2]>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Phase {
    pub index: u64,
    pub name: String,
    /// Since the faults started.
    pub start_ms: u64,
    pub duration_ms: Option<u64>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Trip {
    pub guard: String,
    pub source: String,
    pub value: f64,
    pub threshold: f64,
    pub for_ms: u64,
    /// Fault start to the trip.
    pub time_to_detect_ms: Option<u64>,
    pub reason: String,
    /// A ramp's breaking point: the phase that ran at the trip, and the one before it.
    pub broke_phase: Option<String>,
    pub held_phase: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Recovery {
    pub recovered: bool,
    /// End of the faults to every guard stable.
    pub recovery_time_ms: Option<u64>,
    pub stable_ms: Option<u64>,
    pub timeout_ms: Option<u64>,
    /// When the faults ended, since they started.
    pub faults_ended_ms: Option<u64>,
}

#[derive(Debug, Serialize)]
pub struct Rule {
    pub route: String,
    pub fault: String,
    pub matched: u64,
    pub injected: u64,
    pub passed: u64,
}

/// One timeline event: when, what, in words, and its detail as recorded.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    pub sequence: u64,
    pub at: String,
    /// Since the experiment started (negative before).
    pub at_ms: Option<i64>,
    pub kind: String,
    pub state: String,
    pub summary: String,
    pub detail: Value,
}

// === impl Report ===

impl Report {
    pub fn build(e: &Experiment, events: &[ExperimentEvent]) -> Report {
        let spec: Value = serde_json::from_str(&e.spec).unwrap_or(Value::Null);
        let mut guards = guards_of(&spec);
        let mut narrator = Narrator::default();
        let started = events
            .iter()
            .find(|ev| ev.kind() == ExperimentEventKind::Started)
            .and_then(|ev| ev.at.as_ref())
            .map(epoch_ms);
        let timeline: Vec<Entry> = events
            .iter()
            .map(|ev| Entry {
                sequence: ev.sequence,
                at: timestamp(&ev.at).unwrap_or_default(),
                at_ms: ev.at.as_ref().zip(started).map(|(at, s)| epoch_ms(at) - s),
                kind: render::event_kind(ev.kind),
                state: render::state(ev.state),
                summary: narrator.line(ev),
                detail: serde_json::from_str(&ev.detail_json).unwrap_or(Value::Null),
            })
            .collect();
        let detail = |kind: &str| {
            timeline
                .iter()
                .rev()
                .find(|en| en.kind == kind)
                .map(|en| &en.detail)
        };
        let trip = detail("guard_tripped").map(trip_of);
        let recovery = detail("recovery").map(recovery_of);
        for g in &mut guards {
            g.tripped = trip.as_ref().is_some_and(|t| t.guard == g.name);
            g.refused_start = detail("preflight")
                .filter(|p| p["passed"] == false)
                .is_some_and(|p| guard_item(p, &g.name)["state"] == "breached");
            if let Some(r) = detail("recovery") {
                g.series = r["series"][&g.name]
                    .as_array()
                    .map(|s| s.iter().filter_map(point).collect())
                    .unwrap_or_default();
            }
            let last = timeline
                .iter()
                .rev()
                .find_map(|en| last_reading(en, &g.name));
            if let Some((state, value)) = last {
                g.last_state = state;
                g.last_value = value;
            }
        }
        let phases = phases_of(&timeline);
        let rules = e.result.as_ref().map_or_else(Vec::new, |r| {
            r.rules
                .iter()
                .map(|t| Rule {
                    route: t.route.clone(),
                    fault: t.fault.clone(),
                    matched: t.matched,
                    injected: t.injected,
                    passed: t.passed,
                })
                .collect()
        });
        let mut report = Report {
            name: e.name.clone(),
            state: render::state(e.state),
            reason: e.reason.clone(),
            verdict: Verdict {
                outcome: outcome(e),
                summary: String::new(),
            },
            seed: e.seed,
            targets: e.targets.clone(),
            created_at: timestamp(&e.created_at),
            started_at: timestamp(&e.started_at),
            ended_at: timestamp(&e.ended_at),
            duration_ms: spec["spec"]["duration"]
                .as_str()
                .and_then(|d| crate::duration::parse(d).ok())
                .map(|d| d.as_millis() as u64),
            guards,
            phases,
            trip,
            recovery,
            rules,
            unmatched: e
                .result
                .as_ref()
                .map_or_else(Vec::new, |r| r.unmatched.clone()),
            timeline,
        };
        report.verdict.summary = report.summary();
        report
    }

    /// `experiment/NAME passed: ...`, the line `run` and `report` end with.
    pub fn verdict_line(&self) -> String {
        format!("experiment/{} {}", self.name, self.verdict.summary)
    }

    fn summary(&self) -> String {
        let recovery = self.recovery_words();
        match self.verdict.outcome {
            Outcome::Passed if self.guards.is_empty() => "passed: completed (no guards)".into(),
            Outcome::Passed => format!("passed: completed, guards held, {recovery}"),
            Outcome::Tripped | Outcome::TrippedNotRecovered => {
                let trip = self.trip.as_ref().map_or_else(String::new, |t| {
                    let after = t.time_to_detect_ms.map_or_else(String::new, |ms| {
                        format!(", {} after the faults started", millis(ms))
                    });
                    format!(
                        " {} (value {} {} threshold {} for {}{after})",
                        t.guard,
                        number(t.value),
                        relation(t.value, t.threshold),
                        number(t.threshold),
                        millis(t.for_ms)
                    )
                });
                let both = if self.verdict.outcome == Outcome::TrippedNotRecovered {
                    " and"
                } else {
                    ";"
                };
                let breaking = self
                    .trip
                    .as_ref()
                    .and_then(|t| Some((t.broke_phase.as_ref()?, t.held_phase.as_ref())))
                    .map_or_else(String::new, |(broke, held)| match held {
                        Some(held) => format!("; breaking point: phase {broke} ({held} held)"),
                        None => format!("; breaking point: the first phase, {broke}"),
                    });
                format!("aborted by guard{trip}{both} {recovery}{breaking}")
            }
            Outcome::NotRecovered => format!("completed, guards held, but {recovery}"),
            Outcome::Failed => format!("failed: {}", self.reason),
            Outcome::Stopped => format!("aborted: {}", self.reason),
            Outcome::Unfinished => format!("still {}", self.state),
        }
    }

    /// `recovered 0.8s after the faults ended`, `not recovered within 20s: ...`.
    pub fn recovery_words(&self) -> String {
        match &self.recovery {
            None => "recovery not observed".into(),
            Some(r) if r.recovered => format!(
                "recovered {} after the faults ended",
                millis(r.recovery_time_ms.unwrap_or(0))
            ),
            Some(r) => {
                let within = r
                    .timeout_ms
                    .map_or_else(String::new, |t| format!(" within {}", millis(t)));
                let outside: Vec<String> = self
                    .guards
                    .iter()
                    .filter(|g| g.last_state.as_deref() != Some("ok"))
                    .map(|g| {
                        let value = g.last_value.map_or_else(
                            || "no value".into(),
                            |v| match g.threshold {
                                Some(t) => {
                                    format!("value {} {} {}", number(v), relation(v, t), number(t))
                                }
                                None => format!("value {}", number(v)),
                            },
                        );
                        let state = g.last_state.as_deref().unwrap_or("no_data");
                        format!("{} {state} ({value})", g.name)
                    })
                    .collect();
                if outside.is_empty() {
                    format!("not recovered{within}")
                } else {
                    format!("not recovered{within}: {}", outside.join(", "))
                }
            }
        }
    }
}

/// A guard's threshold as written, or `-`.
pub fn threshold(g: &Guard) -> String {
    g.threshold.map_or_else(|| "-".into(), number)
}

fn outcome(e: &Experiment) -> Outcome {
    let result = e.result.as_ref();
    let not_recovered = result.is_some_and(|r| r.recovery() == RecoveryState::NotRecovered);
    let tripped = result.is_some_and(|r| r.trip.is_some());
    match e.state() {
        ExperimentState::Completed if not_recovered => Outcome::NotRecovered,
        ExperimentState::Completed => Outcome::Passed,
        ExperimentState::Aborted if tripped && not_recovered => Outcome::TrippedNotRecovered,
        ExperimentState::Aborted if tripped => Outcome::Tripped,
        ExperimentState::Aborted => Outcome::Stopped,
        ExperimentState::Failed => Outcome::Failed,
        _ => Outcome::Unfinished,
    }
}

/// The guards as the canonical spec has them (`spec.guards`).
fn guards_of(spec: &Value) -> Vec<Guard> {
    let Some(items) = spec["spec"]["guards"].as_array() else {
        return Vec::new();
    };
    items
        .iter()
        .map(|g| {
            let source = ["agents", "prometheus", "probe"]
                .into_iter()
                .find(|s| g.get(*s).is_some())
                .unwrap_or("-");
            let (condition, threshold) = match (g["above"].as_f64(), g["below"].as_f64()) {
                (_, Some(b)) => ("below", Some(b)),
                (Some(a), _) => ("above", Some(a)),
                // A probe trips after `failures` consecutive failures: its value is the count.
                _ => (
                    "above",
                    g["probe"]["failures"]
                        .as_f64()
                        .map(|f| f - 1.0)
                        .or(Some(2.0)),
                ),
            };
            Guard {
                name: g["name"].as_str().unwrap_or("-").to_owned(),
                source: source.to_owned(),
                condition,
                threshold: if source == "-" { None } else { threshold },
                for_ms: g["for"]
                    .as_str()
                    .and_then(|d| crate::duration::parse(d).ok())
                    .map_or(0, |d| d.as_millis() as u64),
                tripped: false,
                refused_start: false,
                last_state: None,
                last_value: None,
                series: Vec::new(),
            }
        })
        .collect()
}

/// The entry for `guard` in a `guards` list (pre-flight, recovery), or null.
fn guard_item<'a>(detail: &'a Value, guard: &str) -> &'a Value {
    detail["guards"]
        .as_array()
        .and_then(|gs| gs.iter().find(|g| g["guard"] == guard))
        .unwrap_or(&Value::Null)
}

/// The state and value of `guard` an entry tells, if it tells one.
fn last_reading(en: &Entry, guard: &str) -> Option<(Option<String>, Option<f64>)> {
    let item = match en.kind.as_str() {
        "recovery" | "preflight" => guard_item(&en.detail, guard),
        "guard_changed" if en.detail["guard"] == guard => {
            return Some((
                en.detail["to"].as_str().map(str::to_owned),
                en.detail["value"].as_f64(),
            ));
        }
        _ => return None,
    };
    (!item.is_null()).then(|| {
        (
            item["state"].as_str().map(str::to_owned),
            item["value"].as_f64(),
        )
    })
}

fn point(p: &Value) -> Option<[f64; 2]> {
    Some([p.get(0)?.as_f64()?, p.get(1)?.as_f64()?])
}

fn trip_of(d: &Value) -> Trip {
    Trip {
        guard: d["guard"].as_str().unwrap_or("-").to_owned(),
        source: d["source"].as_str().unwrap_or("-").to_owned(),
        value: d["value"].as_f64().unwrap_or(f64::NAN),
        threshold: d["threshold"].as_f64().unwrap_or(f64::NAN),
        for_ms: d["for_ms"].as_u64().unwrap_or(0),
        time_to_detect_ms: d["time_to_detect_ms"].as_u64(),
        reason: d["reason"].as_str().unwrap_or_default().to_owned(),
        broke_phase: d["phase_name"].as_str().map(str::to_owned),
        held_phase: d["held_phase_name"].as_str().map(str::to_owned),
    }
}

fn recovery_of(d: &Value) -> Recovery {
    Recovery {
        recovered: d["recovered"] == true,
        recovery_time_ms: d["recovery_time_ms"].as_u64(),
        stable_ms: d["stable_ms"].as_u64(),
        timeout_ms: d["timeout_ms"].as_u64(),
        faults_ended_ms: d["faults_ended_ms"].as_u64(),
    }
}

/// Phases from `phase_started` events (detail: `phase`, `name`, `duration_ms`), timed from the
/// start.
fn phases_of(timeline: &[Entry]) -> Vec<Phase> {
    timeline
        .iter()
        .filter(|en| en.kind == "phase_started")
        .map(|en| Phase {
            index: en.detail["phase"].as_u64().unwrap_or(0),
            name: en.detail["name"].as_str().unwrap_or_default().to_owned(),
            start_ms: en.at_ms.unwrap_or(0).max(0) as u64,
            duration_ms: en.detail["duration_ms"].as_u64(),
        })
        .collect()
}

fn epoch_ms(t: &Timestamp) -> i64 {
    t.seconds * 1000 + i64::from(t.nanos) / 1_000_000
}

/// A wire timestamp in RFC 3339 (UTC, seconds).
pub fn timestamp(t: &Option<Timestamp>) -> Option<String> {
    let text = render::time(t.as_ref().map(|t| (t.seconds, t.nanos)));
    (text != "-").then_some(text)
}
