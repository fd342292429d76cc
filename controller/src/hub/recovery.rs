//! After the faults: the withdrawal a trip caused, until every target acknowledged it, and the
//! recovery watch, until every guard stays inside its objective for `spec.recovery.stable` or
//! its timeout passes.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use serde_json::json;
use tokio::time::Instant;

use super::guards::Guards;
use super::lifecycle::millis;
use super::state::{Running, State};
use crate::spec;
use crate::store::{EventKind, ExperimentId};

/// An experiment whose faults ended, while its guards watch the service recover.
pub(super) struct Observing {
    pub(super) name: String,
    pub(super) guards: Guards,
    pub(super) chosen: Vec<String>,
    pub(super) ended: Instant,
    pub(super) stable_since: Option<Instant>,
    pub(super) deadline: Instant,
    pub(super) recovery: spec::Recovery,
}

/// Cleared states sent after a trip, waiting for the targets' acknowledgements.
pub(super) struct Withdrawal {
    pub(super) id: ExperimentId,
    pub(super) sent: Instant,
    pub(super) sent_wall: SystemTime,
    pub(super) waiting: BTreeMap<String, u64>,
    pub(super) acks: BTreeMap<String, Duration>,
    pub(super) deadline: Instant,
}

impl State {
    pub(super) async fn withdrawal_acked(&mut self, agent: &str, generation: u64) {
        let mut done = Vec::new();
        for (i, w) in self.withdrawals.iter_mut().enumerate() {
            if w.waiting.get(agent).is_some_and(|g| *g <= generation) {
                w.waiting.remove(agent);
                w.acks.insert(agent.to_owned(), w.sent.elapsed());
                if w.waiting.is_empty() {
                    done.push(i);
                }
            }
        }
        for i in done.into_iter().rev() {
            let w = self.withdrawals.swap_remove(i);
            self.withdrawn(w).await;
        }
    }

    pub(super) async fn withdrawn(&mut self, w: Withdrawal) {
        let last = w.acks.values().max().copied();
        let detail = json!({
            "sent_at_ms": millis(w.sent_wall),
            "acks_ms": w.acks.iter().map(|(a, d)| (a.clone(), json!(d.as_secs_f64() * 1e3))).collect::<serde_json::Map<_, _>>(),
            "acknowledged": w.acks.len(),
            "last_ack_ms": last.map(|d| d.as_secs_f64() * 1e3),
            "unacknowledged": w.waiting.keys().collect::<Vec<_>>(),
        });
        self.event(w.id, EventKind::FAULTS_WITHDRAWN, detail).await;
    }

    /// The faults are gone; with guards, the recovery watch begins.
    pub(super) fn observe_recovery(&mut self, id: ExperimentId, mut run: Running, ended: Instant) {
        if run.guards.is_empty() {
            return;
        }
        run.guards.restart();
        self.observing.insert(
            id,
            Observing {
                name: run.exp.name.clone(),
                guards: run.guards,
                chosen: run.choice.chosen,
                ended,
                stable_since: None,
                deadline: ended + run.exp.recovery.timeout,
                recovery: run.exp.recovery,
            },
        );
    }

    pub(super) async fn check_recoveries(&mut self, now: Instant) {
        let mut finished = Vec::new();
        for (id, obs) in &mut self.observing {
            if self.withdrawals.iter().any(|w| w.id == *id) {
                continue; // the withdrawal's record comes first
            }
            if obs.guards.all_ok() {
                let since = *obs.stable_since.get_or_insert(now);
                if now.saturating_duration_since(since) >= obs.recovery.stable {
                    finished.push((*id, Some(since.saturating_duration_since(obs.ended))));
                    continue;
                }
            } else {
                obs.stable_since = None;
            }
            if now >= obs.deadline {
                finished.push((*id, None));
            }
        }
        for (id, took) in finished {
            let Some(obs) = self.observing.remove(&id) else {
                continue;
            };
            tracing::info!(experiment = %obs.name, recovery = ?took, "recovery watch over");
            let detail = json!({
                "recovered": took.is_some(),
                "recovery_time_ms": took.map(|d| d.as_millis() as u64),
                "stable_ms": obs.recovery.stable.as_millis() as u64,
                "timeout_ms": obs.recovery.timeout.as_millis() as u64,
                "series_origin": "fault start",
                "series": obs.guards.series(),
                "guards": obs.guards.states(),
                "faults_ended_ms": obs.ended.saturating_duration_since(obs.guards.origin()).as_millis() as u64,
            });
            self.event(id, EventKind::RECOVERY, detail).await;
        }
    }
}
