//! What the guards of running and recovering experiments hear: agents' heartbeats (history,
//! fault counters, in-band windows), pollers' readings, and the guard tick (windows aging,
//! `for` running out, pre-flight deadlines, withdrawals and recovery watches timing out). A
//! trip is acted on before its transitions are written.

use faultline_proto::v1;
use serde_json::json;
use tokio::time::Instant;

use super::guards::Happening;
use super::state::State;
use crate::guard::{RouteReport, Sample};
use crate::store::{EventKind, ExperimentId};

impl State {
    /// An agent's heartbeat: history, fault counters, in-band guards.
    pub(super) async fn agent_heartbeat(
        &mut self,
        id: String,
        slis: Vec<RouteReport>,
        rules: Vec<v1::RuleCount>,
    ) {
        let now = Instant::now();
        for r in &slis {
            self.history.add(&id, &r.route, now, &r.all);
        }
        let Some(agent) = self.agents.get(&id) else {
            return;
        };
        let info = &agent.info;
        let mut happened = Vec::new();
        for (eid, run) in &mut self.running {
            if run.choice.chosen.contains(&id) {
                run.counts.report(&id, &rules);
            }
            let h = run.guards.heartbeat(info, &run.choice.chosen, &slis, now);
            if !h.is_empty() {
                happened.push((*eid, h));
            }
        }
        for (eid, obs) in &mut self.observing {
            let h = obs.guards.heartbeat(info, &obs.chosen, &slis, now);
            if !h.is_empty() {
                happened.push((*eid, h));
            }
        }
        for (eid, h) in happened {
            self.happened(eid, h).await;
        }
    }

    /// A poller's reading.
    pub(super) async fn sample(&mut self, sample: Sample) {
        let name = sample.experiment.clone();
        let named = |n: &str| n == name;
        let find =
            |ids: Vec<(ExperimentId, bool)>| ids.into_iter().find(|(_, m)| *m).map(|(id, _)| id);
        if let Some(id) = find(
            self.starting
                .iter()
                .map(|(id, s)| (*id, named(&s.name)))
                .collect(),
        ) {
            let s = self.starting.get_mut(&id).expect("found above");
            s.guards.sample(sample);
            if s.guards.pollers_read() {
                self.preflight(id).await;
            }
        } else if let Some(id) = find(
            self.running
                .iter()
                .map(|(id, r)| (*id, named(&r.exp.name)))
                .collect(),
        ) {
            let h = self
                .running
                .get_mut(&id)
                .expect("found")
                .guards
                .sample(sample);
            self.happened(id, h).await;
        } else if let Some(id) = find(
            self.observing
                .iter()
                .map(|(id, o)| (*id, named(&o.name)))
                .collect(),
        ) {
            let h = self
                .observing
                .get_mut(&id)
                .expect("found")
                .guards
                .sample(sample);
            self.happened(id, h).await;
        }
    }

    /// Whether anything needs the guard tick.
    pub(super) fn guarding(&self) -> bool {
        !self.starting.is_empty()
            || !self.withdrawals.is_empty()
            || !self.observing.is_empty()
            || self.running.values().any(|r| !r.guards.is_empty())
    }

    pub(super) async fn guard_tick(&mut self) {
        let now = Instant::now();
        let late: Vec<ExperimentId> = self
            .starting
            .iter()
            .filter(|(_, s)| s.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in late {
            self.preflight(id).await;
        }
        let mut happened = Vec::new();
        for (id, run) in &mut self.running {
            happened.push((*id, run.guards.tick(now)));
        }
        for (id, obs) in &mut self.observing {
            happened.push((*id, obs.guards.tick(now)));
        }
        for (id, h) in happened {
            self.happened(id, h).await;
        }
        let overdue: Vec<usize> = (0..self.withdrawals.len())
            .filter(|&i| self.withdrawals[i].deadline <= now)
            .collect();
        for i in overdue.into_iter().rev() {
            let w = self.withdrawals.swap_remove(i);
            self.withdrawn(w).await;
        }
        self.check_recoveries(now).await;
    }

    /// What guards did: trips first (the faults go before anything is written), then the
    /// transitions for the timeline.
    async fn happened(&mut self, id: ExperimentId, happenings: Vec<Happening>) {
        for h in &happenings {
            if let Happening::Tripped { guard, value, .. } = h
                && self.running.contains_key(&id)
            {
                self.trip(id, *guard, *value, None).await;
            }
        }
        for h in happenings {
            let Happening::Changed {
                guard,
                from,
                to,
                value,
                note,
            } = h
            else {
                continue;
            };
            let item = self
                .running
                .get(&id)
                .map(|r| &r.guards)
                .or_else(|| self.observing.get(&id).map(|o| &o.guards))
                .and_then(|g| g.items.get(guard));
            let Some(item) = item else { continue };
            let detail = json!({
                "guard": item.spec.name,
                "from": from.as_str(),
                "to": to.as_str(),
                "value": value,
                "threshold": item.spec.condition.threshold(),
                "note": note,
            });
            self.event(id, EventKind::GUARD_CHANGED, detail).await;
        }
    }
}
