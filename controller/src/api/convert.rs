//! Store records to wire messages.

use std::time::{SystemTime, UNIX_EPOCH};

use faultline_proto::prost_types::Timestamp;
use faultline_proto::v1;

use crate::store::{self, Event, EventKind, StateKind};

pub(crate) fn timestamp(at: SystemTime) -> Timestamp {
    let d = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    Timestamp {
        seconds: d.as_secs() as i64,
        nanos: d.subsec_nanos() as i32,
    }
}

/// An audit row on the wire.
pub(crate) fn audit_record(e: store::AuditEntry) -> v1::AuditRecord {
    v1::AuditRecord {
        sequence: u64::try_from(e.seq).unwrap_or_default(),
        at: Some(timestamp(e.at)),
        principal: e.principal,
        action: e.action,
        target: e.target.unwrap_or_default(),
        peer: e.peer.unwrap_or_default(),
        outcome: e.outcome.as_str().to_owned(),
        detail: e.detail.unwrap_or_default(),
    }
}

pub(crate) fn state(kind: StateKind) -> v1::ExperimentState {
    match kind {
        StateKind::Pending => v1::ExperimentState::Pending,
        StateKind::Running => v1::ExperimentState::Running,
        StateKind::Completed => v1::ExperimentState::Completed,
        StateKind::Aborted => v1::ExperimentState::Aborted,
        StateKind::Failed => v1::ExperimentState::Failed,
    }
}

/// The wire state filter; `UNSPECIFIED` and unknown numbers match nothing.
pub(crate) fn state_filter(states: &[i32]) -> Option<Vec<StateKind>> {
    if states.is_empty() {
        return None;
    }
    Some(
        states
            .iter()
            .filter_map(|s| match v1::ExperimentState::try_from(*s).ok()? {
                v1::ExperimentState::Unspecified => None,
                v1::ExperimentState::Pending => Some(StateKind::Pending),
                v1::ExperimentState::Running => Some(StateKind::Running),
                v1::ExperimentState::Completed => Some(StateKind::Completed),
                v1::ExperimentState::Aborted => Some(StateKind::Aborted),
                v1::ExperimentState::Failed => Some(StateKind::Failed),
            })
            .collect(),
    )
}

/// An experiment with its timeline (for `started_at`) and targets.
pub(crate) fn experiment(
    e: &store::Experiment,
    timeline: &[Event],
    targets: Vec<String>,
) -> v1::Experiment {
    let started_at = timeline
        .iter()
        .find(|ev| ev.kind == EventKind::STATE_CHANGED && ev.detail["to"] == "running")
        .map(|ev| timestamp(ev.at));
    v1::Experiment {
        name: e.name.clone(),
        spec: e.spec_json.clone(),
        state: state(e.state.kind()) as i32,
        reason: e.state.reason().unwrap_or_default().to_owned(),
        created_at: Some(timestamp(e.created_at)),
        started_at,
        ended_at: e.state.is_finished().then(|| timestamp(e.state_changed_at)),
        seed: e.seed,
        targets,
        result: super::result::result(e, timeline),
    }
}

/// The wire kind of a recorded event that maps one to one (guards, phases, schedules).
fn recorded_kind(kind: &EventKind) -> Option<v1::ExperimentEventKind> {
    use v1::ExperimentEventKind as K;
    [
        (EventKind::PREFLIGHT, K::Preflight),
        (EventKind::GUARD_CHANGED, K::GuardChanged),
        (EventKind::GUARD_TRIPPED, K::GuardTripped),
        (EventKind::FAULTS_WITHDRAWN, K::FaultsWithdrawn),
        (EventKind::INJECTION, K::Injection),
        (EventKind::RECOVERY, K::Recovery),
        (EventKind::PHASE_STARTED, K::PhaseStarted),
        (EventKind::SCHEDULE_ARMED, K::ScheduleArmed),
        (EventKind::SCHEDULE_FIRED, K::ScheduleFired),
        (EventKind::SCHEDULE_SKIPPED, K::ScheduleSkipped),
        (EventKind::SCHEDULE_DISARMED, K::ScheduleDisarmed),
    ]
    .into_iter()
    .find(|(k, _)| k == kind)
    .map(|(_, v)| v)
}

/// The timeline as wire events: sequences from 1, each with the state after it.
pub(crate) fn timeline(name: &str, events: &[Event]) -> Vec<v1::ExperimentEvent> {
    let mut current = StateKind::Pending;
    events
        .iter()
        .enumerate()
        .map(|(i, ev)| {
            let kind = if ev.kind == EventKind::CREATED {
                current = StateKind::Pending;
                v1::ExperimentEventKind::Created
            } else if ev.kind == EventKind::STATE_CHANGED {
                current = ev.detail["to"]
                    .as_str()
                    .and_then(StateKind::from_str)
                    .unwrap_or(current);
                match current {
                    StateKind::Running => v1::ExperimentEventKind::Started,
                    StateKind::Completed => v1::ExperimentEventKind::Completed,
                    StateKind::Aborted => v1::ExperimentEventKind::Aborted,
                    StateKind::Failed => v1::ExperimentEventKind::Failed,
                    StateKind::Pending => v1::ExperimentEventKind::Unspecified,
                }
            } else if ev.kind == EventKind::TARGETS_CHOSEN {
                v1::ExperimentEventKind::TargetsChosen
            } else if let Some(kind) = recorded_kind(&ev.kind) {
                kind
            } else {
                // Kinds of later versions: shown by their detail.
                v1::ExperimentEventKind::Unspecified
            };
            let detail_json = match &ev.detail {
                serde_json::Value::Object(m) if m.is_empty() => String::new(),
                d => d.to_string(),
            };
            v1::ExperimentEvent {
                experiment: name.to_owned(),
                sequence: i as u64 + 1,
                at: Some(timestamp(ev.at)),
                kind: kind as i32,
                detail_json,
                state: state(current) as i32,
            }
        })
        .collect()
}
