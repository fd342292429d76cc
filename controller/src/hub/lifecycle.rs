//! An experiment's life in the hub: pre-flight, start, a ramp's phases, and the end (its
//! duration, an operator's abort, a guard's trip, the emergency stop) with the faults'
//! summed counters. What guards hear is in `guarding`, what follows the end in `recovery`.
//!
//! Order matters on a trip: the cleared desired states leave first, then the store records
//! why; a slow disk never holds faults on an agent.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use faultline_proto::v1;
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::counts::Counts;
use super::guards::{self, Guards};
use super::recovery::Withdrawal;
use super::state::{Running, StartError, State};
use crate::metrics::AbortReason;
use crate::spec::{self, Source};
use crate::store::{EventKind, ExperimentId, ExperimentState, StateKind};
use crate::targets::{self, AgentInfo, Choice};

/// Longest pre-flight wait for a polled guard's first reading, beyond its timeout.
const PREFLIGHT_GRACE: Duration = Duration::from_secs(1);

/// An experiment in pre-flight.
pub(super) struct Starting {
    pub(super) name: String,
    pub(super) exp: spec::Experiment,
    pub(super) seed: u64,
    pub(super) choice: Choice,
    pub(super) guards: Guards,
    pub(super) deadline: Instant,
    pub(super) reply: oneshot::Sender<Result<(), StartError>>,
}

impl State {
    // === start ===

    /// Starts a pending experiment: targets chosen, guards judged (pre-flight), then the
    /// start committed and the faults sent. With polled guards the answer comes once they
    /// have read.
    pub(super) async fn start(
        &mut self,
        name: String,
        reply: oneshot::Sender<Result<(), StartError>>,
    ) {
        let prepared = self.prepare(&name).await;
        let (stored_id, exp, seed, choice) = match prepared {
            Ok(p) => p,
            Err(e) => {
                let _ = reply.send(Err(e));
                return;
            }
        };
        let now = Instant::now();
        let mut guards = Guards::new(&exp, self.leases.heartbeat, now);
        let deadline = now + preflight_wait(&exp);
        if guards.has_pollers() {
            guards.start_pollers(&name, &self.http, &self.samples);
        }
        self.starting.insert(
            stored_id,
            Starting {
                name,
                exp,
                seed,
                choice,
                guards,
                deadline,
                reply,
            },
        );
        if self.starting[&stored_id].guards.pollers_read() {
            self.preflight(stored_id).await;
        }
    }

    async fn prepare(
        &mut self,
        name: &str,
    ) -> Result<(ExperimentId, spec::Experiment, u64, Choice), StartError> {
        if let Some(reason) = &self.emergency_stop {
            return Err(StartError::EmergencyStop(reason.clone()));
        }
        let stored = self.store.get(name.to_owned()).await?;
        if stored.state.kind() != StateKind::Pending || self.starting.contains_key(&stored.id) {
            return Err(StartError::NotPending {
                name: name.to_owned(),
                state: if stored.state.kind() == StateKind::Pending {
                    "starting"
                } else {
                    stored.state.kind().as_str()
                },
            });
        }
        let exp = spec::Experiment::parse(&stored.spec_json).map_err(|e| StartError::BadSpec {
            name: name.to_owned(),
            message: e.message.clone(),
        })?;
        let agents: Vec<AgentInfo> = self.agents.values().map(|a| a.info.clone()).collect();
        let choice = targets::choose(&exp, stored.seed, &agents, &self.caps)?;
        let running: Vec<(&spec::Experiment, &Choice)> =
            self.running.values().map(|r| (&r.exp, &r.choice)).collect();
        let conflicts = targets::conflicts((&exp, &choice), &running);
        if !conflicts.is_empty() {
            return Err(StartError::Conflicts(conflicts));
        }
        Ok((stored.id, exp, stored.seed, choice))
    }

    /// Every guard has read (or the wait is over): judge them, then start or refuse.
    pub(super) async fn preflight(&mut self, id: ExperimentId) {
        let Some(mut s) = self.starting.remove(&id) else {
            return;
        };
        let now = Instant::now();
        if !s.guards.is_empty() {
            let agents: Vec<&AgentInfo> = self.agents.values().map(|a| &a.info).collect();
            s.guards.seed(&self.history, &agents, &s.choice.chosen, now);
            let breached = s
                .guards
                .items
                .iter()
                .find(|i| i.tracker.state() == Some(crate::guard::eval::GuardState::Breached));
            let refusal = breached.map(|item| match item.tracker.last_value() {
                Some(v) => format!(
                    "guard {} is already breached ({}); the service is outside its objective \
                     before any fault",
                    item.spec.name,
                    guards::comparison(item, v)
                ),
                None => format!(
                    "guard {} has no data and its policy is to trip ({})",
                    item.spec.name,
                    item.note.as_deref().unwrap_or("no reading")
                ),
            });
            let detail = json!({"passed": refusal.is_none(), "guards": s.guards.states()});
            self.event(id, EventKind::PREFLIGHT, detail).await;
            if let Some(reason) = refusal {
                tracing::info!(experiment = %s.name, %reason, "pre-flight refused the start");
                let failed = ExperimentState::failed(format!("pre-flight: {reason}"));
                if let Err(e) = self.store.transition(id, failed, SystemTime::now()).await {
                    tracing::warn!(experiment = %s.name, error = %e, "cannot record the refusal");
                }
                self.changes.notify();
                let _ = s.reply.send(Err(StartError::Preflight(reason)));
                return;
            }
        }
        let result = self.launch(id, s.exp, s.seed, s.choice, s.guards).await;
        let _ = s.reply.send(result);
    }

    /// Commits the start, then sends the faults.
    async fn launch(
        &mut self,
        id: ExperimentId,
        exp: spec::Experiment,
        seed: u64,
        choice: Choice,
        mut guards: Guards,
    ) -> Result<(), StartError> {
        // Committed before any fault leaves: a crash from here on is recovered as aborted.
        let now = SystemTime::now();
        self.store
            .set_targets(id, choice.chosen.clone(), now)
            .await?;
        self.store
            .transition(id, ExperimentState::Running, now)
            .await?;
        self.changes.notify();
        tracing::info!(experiment = %exp.name, targets = ?choice.chosen, "experiment running");
        let chosen = choice.chosen.clone();
        let seen = self.agents.keys().cloned().collect();
        let started = Instant::now();
        guards.set_origin(started);
        let phase = exp.phases.first().map(|p| (0, started + p.duration));
        self.running.insert(
            id,
            Running {
                ends: started + exp.duration,
                exp,
                seed,
                choice,
                seen,
                started,
                guards,
                counts: Counts::default(),
                phase,
            },
        );
        self.push_all(&chosen);
        if phase.is_some() {
            self.phase_started(id).await;
        }
        Ok(())
    }

    /// Ramps whose phase is over move to the next one: new intensities to every target.
    async fn advance_phases(&mut self, now: Instant) {
        let due: Vec<ExperimentId> = self
            .running
            .iter()
            .filter(|(_, r)| {
                r.phase
                    .is_some_and(|(i, ends)| ends <= now && i + 1 < r.exp.phases.len())
            })
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            let Some(run) = self.running.get_mut(&id) else {
                continue;
            };
            let (i, ends) = run.phase.expect("filtered on phases");
            run.phase = Some((i + 1, ends + run.exp.phases[i + 1].duration));
            let chosen = run.choice.chosen.clone();
            self.push_all(&chosen);
            self.phase_started(id).await;
        }
    }

    async fn phase_started(&mut self, id: ExperimentId) {
        let Some(run) = self.running.get(&id) else {
            return;
        };
        let Some((i, _)) = run.phase else { return };
        let phase = &run.exp.phases[i];
        tracing::info!(experiment = %run.exp.name, phase = %phase.name, "phase started");
        let faults: Vec<Value> = phase
            .faults
            .iter()
            .map(|(route, f)| json!({"route": route, "fault": f.name, "percentage": f.toxicity.get() * 100.0}))
            .collect();
        let detail = json!({
            "phase": i,
            "name": phase.name,
            "duration_ms": phase.duration.as_millis() as u64,
            "faults": faults,
        });
        self.event(id, EventKind::PHASE_STARTED, detail).await;
    }

    // === the end ===

    /// A guard tripped: withdraw the faults at once, then record why.
    pub(super) async fn trip(
        &mut self,
        id: ExperimentId,
        guard: usize,
        value: f64,
        local: Option<(&str, &v1::LocalGuardTrip)>,
    ) {
        let Some(run) = self.running.remove(&id) else {
            return;
        };
        let tripped = Instant::now();
        let tripped_wall = SystemTime::now();
        let waiting = self.push_all(&run.choice.chosen);
        let sent = Instant::now();
        let item = &run.guards.items[guard];
        let reason = guards::reason(item, value, local.map(|(agent, _)| agent));
        tracing::warn!(experiment = %run.exp.name, %reason, "guard tripped; faults withdrawn");
        self.metrics.aborted(AbortReason::Guard, 1);
        self.withdrawals.push(Withdrawal {
            id,
            sent,
            sent_wall: SystemTime::now(),
            waiting,
            acks: BTreeMap::new(),
            deadline: sent + self.leases.lease,
        });
        let mut detail = json!({
            "guard": item.spec.name,
            "source": if local.is_some() { "local" } else { item.spec.source.kind() },
            "value": value,
            "threshold": item.spec.condition.threshold(),
            "for_ms": item.spec.hold.as_millis() as u64,
            "tripped_at_ms": millis(tripped_wall),
            "time_to_detect_ms": tripped.saturating_duration_since(run.started).as_millis() as u64,
            "send_ms": sent.saturating_duration_since(tripped).as_secs_f64() * 1e3,
            "note": item.note,
            "reason": reason,
        });
        if let Some((i, _)) = run.phase {
            // A ramp stopped by a guard: this phase broke, the one before held.
            let phases = &run.exp.phases;
            detail["phase"] = i.into();
            detail["phase_name"] = phases[i].name.clone().into();
            if i > 0 {
                detail["held_phase"] = (i - 1).into();
                detail["held_phase_name"] = phases[i - 1].name.clone().into();
            }
        }
        if let Some((agent, t)) = local {
            detail["agent"] = agent.into();
            detail["agent_breached_at_ms"] = t.breached_at.map(ts_millis).into();
            detail["agent_cleared_at_ms"] = t.cleared_at.map(ts_millis).into();
            detail["agent_cleared_faults"] = t.cleared_faults.into();
        }
        self.event(id, EventKind::GUARD_TRIPPED, detail).await;
        self.injection(id, &run).await;
        match self
            .store
            .transition(id, ExperimentState::aborted(reason), SystemTime::now())
            .await
        {
            Ok(_) => self.changes.notify(),
            Err(e) => tracing::debug!(experiment = %run.exp.name, error = %e, "not aborted"),
        }
        self.observe_recovery(id, run, tripped);
    }

    /// An agent's local guard tripped and it cleared the faults itself.
    pub(super) async fn local_trip(&mut self, agent: String, trip: v1::LocalGuardTrip) {
        let found = self.running.iter().find_map(|(id, r)| {
            let g = r
                .guards
                .items
                .iter()
                .position(|i| i.spec.name == trip.guard)?;
            (r.exp.name == trip.experiment).then_some((*id, g))
        });
        match found {
            Some((id, guard)) => {
                self.trip(id, guard, trip.value, Some((&agent, &trip)))
                    .await
            }
            None => {
                tracing::debug!(%agent, experiment = %trip.experiment, "a local trip for no running experiment")
            }
        }
    }

    /// Experiments whose duration is over: faults withdrawn, then completed (or failed, when
    /// `requireTraffic` and a fault matched nothing).
    pub(super) async fn complete_due(&mut self) {
        let now = Instant::now();
        self.advance_phases(now).await;
        let due: Vec<ExperimentId> = self
            .running
            .iter()
            .filter(|(_, r)| r.ends <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            let Some(run) = self.running.remove(&id) else {
                continue;
            };
            // Withdrawn first: a fault never outlives its experiment's duration, even when
            // the store is slow or refuses (already aborted).
            self.push_all(&run.choice.chosen);
            let ended = Instant::now();
            let unmatched = self.injection(id, &run).await;
            let to = if run.exp.require_traffic && !unmatched.is_empty() {
                ExperimentState::failed(format!(
                    "requireTraffic: no request or connection matched {}",
                    unmatched.join(", ")
                ))
            } else {
                ExperimentState::Completed
            };
            match self.store.transition(id, to, SystemTime::now()).await {
                Ok(_) => {
                    self.changes.notify();
                    tracing::info!(experiment = %run.exp.name, "experiment completed")
                }
                Err(e) => {
                    tracing::debug!(experiment = %run.exp.name, error = %e, "not completed")
                }
            }
            self.observe_recovery(id, run, ended);
        }
    }

    /// Aborted elsewhere (the API): withdraw, count, watch the recovery.
    pub(super) async fn ended(&mut self, id: ExperimentId) {
        if let Some(s) = self.starting.remove(&id) {
            let _ = s.reply.send(Err(StartError::NotPending {
                name: s.name,
                state: "aborted",
            }));
        }
        if let Some(run) = self.running.remove(&id) {
            self.push_all(&run.choice.chosen);
            let ended = Instant::now();
            self.injection(id, &run).await;
            self.observe_recovery(id, run, ended);
        }
    }

    /// The emergency stop: starts refused from now on; every starting experiment is refused
    /// and every running one withdrawn at once, then recorded as aborted.
    pub(super) async fn stop_all(&mut self, reason: String) -> Vec<String> {
        tracing::warn!(%reason, "emergency stop");
        let full = format!("emergency stop: {reason}");
        self.emergency_stop = Some(reason.clone());
        let mut aborted = Vec::new();
        for (id, s) in std::mem::take(&mut self.starting) {
            let _ = s.reply.send(Err(StartError::EmergencyStop(reason.clone())));
            let to = ExperimentState::aborted(full.clone());
            if self
                .store
                .transition(id, to, SystemTime::now())
                .await
                .is_ok()
            {
                aborted.push(s.name);
            }
        }
        // Every target's cleared state leaves before anything is written.
        let runs: Vec<(ExperimentId, Running)> =
            std::mem::take(&mut self.running).into_iter().collect();
        let targets: Vec<String> = runs
            .iter()
            .flat_map(|(_, r)| r.choice.chosen.iter().cloned())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        self.push_all(&targets);
        let ended = Instant::now();
        for (id, run) in runs {
            self.injection(id, &run).await;
            let to = ExperimentState::aborted(full.clone());
            match self.store.transition(id, to, SystemTime::now()).await {
                Ok(_) => aborted.push(run.exp.name.clone()),
                Err(e) => tracing::debug!(experiment = %run.exp.name, error = %e, "not aborted"),
            }
            self.observe_recovery(id, run, ended);
        }
        self.metrics
            .aborted(AbortReason::Manual, aborted.len() as u64);
        self.changes.notify();
        aborted
    }

    /// Records the faults' counters summed over agents; answers the unmatched ones.
    pub(super) async fn injection(&mut self, id: ExperimentId, run: &Running) -> Vec<String> {
        let mut totals: BTreeMap<(String, String), [u64; 3]> = run
            .exp
            .faults
            .iter()
            .map(|(route, f)| ((route.clone(), f.name.clone()), [0; 3]))
            .collect();
        for (key, counted) in run.counts.totals() {
            if let Some(t) = totals.get_mut(&key) {
                *t = counted;
            }
        }
        let unmatched: Vec<String> = totals
            .iter()
            .filter(|(_, t)| t[0] == 0)
            .map(|((r, f), _)| format!("{r}/{f}"))
            .collect();
        let rules: Vec<Value> = totals
            .iter()
            .map(|((r, f), t)| {
                json!({"route": r, "fault": f, "matched": t[0], "injected": t[1], "passed": t[2]})
            })
            .collect();
        let detail = json!({"rules": rules, "unmatched": unmatched, "agents": run.counts.agents()});
        self.event(id, EventKind::INJECTION, detail).await;
        unmatched
    }

    pub(super) async fn event(&mut self, id: ExperimentId, kind: EventKind, detail: Value) {
        match self
            .store
            .append_event(id, SystemTime::now(), kind.clone(), detail)
            .await
        {
            Ok(_) => self.changes.notify(),
            Err(e) => tracing::warn!(kind = kind.as_str(), error = %e, "cannot record an event"),
        }
    }
}

/// How long pre-flight waits for the polled guards' first readings.
fn preflight_wait(exp: &spec::Experiment) -> Duration {
    exp.guards
        .iter()
        .map(|g| match &g.source {
            Source::Prometheus(p) => p.timeout,
            Source::Probe(p) => p.timeout,
            Source::Agents(_) => Duration::ZERO,
        })
        .max()
        .unwrap_or_default()
        + PREFLIGHT_GRACE
}

pub(super) fn millis(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn ts_millis(t: faultline_proto::prost_types::Timestamp) -> i64 {
    t.seconds * 1000 + i64::from(t.nanos) / 1_000_000
}
