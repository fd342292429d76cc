//! An experiment's result, read off its timeline: the guard trip and the withdrawal it caused,
//! time to detect, recovery, and the faults' summed counters.

use std::time::{Duration, UNIX_EPOCH};

use faultline_proto::v1;
use serde_json::Value;

use super::convert::timestamp;
use crate::store::{self, Event, EventKind, StateKind};

/// `None` while pending (nothing ran yet).
pub(crate) fn result(e: &store::Experiment, timeline: &[Event]) -> Option<v1::ExperimentResult> {
    let started = timeline
        .iter()
        .find(|ev| ev.kind == EventKind::STATE_CHANGED && ev.detail["to"] == "running");
    if e.state.kind() == StateKind::Pending {
        return None;
    }
    let find = |kind: &EventKind| timeline.iter().rev().find(|ev| ev.kind == *kind);
    let mut result = v1::ExperimentResult::default();

    if let Some(trip) = find(&EventKind::GUARD_TRIPPED) {
        let d = &trip.detail;
        let withdrawn = find(&EventKind::FAULTS_WITHDRAWN).map(|w| &w.detail);
        result.trip = Some(v1::GuardTrip {
            guard: str_of(&d["guard"]),
            source: str_of(&d["source"]),
            value: d["value"].as_f64().unwrap_or(f64::NAN),
            threshold: d["threshold"].as_f64().unwrap_or(f64::NAN),
            tripped_at: Some(timestamp(trip.at)),
            withdrawn_at: withdrawn
                .and_then(|w| w["sent_at_ms"].as_u64())
                .map(|ms| timestamp(UNIX_EPOCH + Duration::from_millis(ms))),
            last_ack_at: withdrawn.and_then(|w| {
                let sent = w["sent_at_ms"].as_u64()? as f64;
                let last = w["last_ack_ms"].as_f64()?;
                Some(timestamp(
                    UNIX_EPOCH + Duration::from_secs_f64((sent + last) / 1e3),
                ))
            }),
            acknowledged: withdrawn
                .and_then(|w| w["acknowledged"].as_u64())
                .unwrap_or(0) as u32,
            unacknowledged: withdrawn
                .and_then(|w| w["unacknowledged"].as_array())
                .map(|a| a.iter().map(str_of).collect())
                .unwrap_or_default(),
        });
        result.breaking_point = d["phase"].as_u64().map(|broke| v1::BreakingPoint {
            broke: broke as u32,
            broke_name: str_of(&d["phase_name"]),
            held: d["held_phase"].as_u64().map(|h| h as u32),
            held_name: str_of(&d["held_phase_name"]),
        });
        result.time_to_detect = d["time_to_detect_ms"]
            .as_u64()
            .map(|ms| duration(Duration::from_millis(ms)));
    }

    let has_guards = crate::api::watch::has_guards(&e.spec_json);
    result.recovery = match find(&EventKind::RECOVERY) {
        Some(r) if r.detail["recovered"] == true => {
            result.recovery_time = r.detail["recovery_time_ms"]
                .as_u64()
                .map(|ms| duration(Duration::from_millis(ms)));
            v1::RecoveryState::Recovered
        }
        Some(_) => v1::RecoveryState::NotRecovered,
        None if has_guards && started.is_some() => v1::RecoveryState::Observing,
        None => v1::RecoveryState::Unspecified,
    } as i32;

    if let Some(inj) = find(&EventKind::INJECTION) {
        result.rules = inj.detail["rules"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|r| v1::RuleTotal {
                route: str_of(&r["route"]),
                fault: str_of(&r["fault"]),
                matched: r["matched"].as_u64().unwrap_or(0),
                injected: r["injected"].as_u64().unwrap_or(0),
                passed: r["passed"].as_u64().unwrap_or(0),
            })
            .collect();
        result.unmatched = inj.detail["unmatched"]
            .as_array()
            .into_iter()
            .flatten()
            .map(str_of)
            .collect();
    }
    Some(result)
}

fn str_of(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_owned()
}

fn duration(d: Duration) -> faultline_proto::prost_types::Duration {
    faultline_agent::control::convert::duration_to_proto(d)
}
