//! [`StoreHandle`]: the async face of the store for the controller's tasks.
//!
//! rusqlite blocks (and with `synchronous = FULL` every write waits for an fsync), so the
//! [`Store`] lives on one dedicated OS thread that owns the connection and runs jobs one after
//! the other. Tasks send jobs over a *bounded* channel and await the answer on a oneshot: the
//! runtime's workers never block on SQLite, and when the disk is slow the queue fills and
//! senders wait instead of piling up memory.
//!
//! Why a thread and not `spawn_blocking` per call: one owner means one connection, no lock
//! around it and writes in arrival order; and a loop that lives as long as the controller is
//! not the finite work the blocking pool is sized for.
//!
//! Shutdown: drop every [`StoreHandle`] clone, then await [`StoreTask::finished`]; the thread
//! drains the jobs already queued, closes the connection (SQLite checkpoints the WAL) and
//! ends.
//!
//! A request whose caller is cancelled after the job was queued still runs to completion:
//! only the answer is lost. Acknowledge to a client only what an awaited call returned.

use std::collections::BTreeMap;
use std::time::SystemTime;

use tokio::sync::{mpsc, oneshot};

use super::{
    AgentRecord, EmergencyStop, Event, EventKind, Experiment, ExperimentId, ExperimentKey,
    ExperimentState, StateKind, Store, StoreError,
};

type Job = Box<dyn FnOnce(&mut Store) + Send>;

/// A cheap, cloneable handle to the store thread. Every method mirrors the [`Store`] method of
/// the same name.
#[derive(Clone, Debug)]
pub struct StoreHandle {
    jobs: mpsc::Sender<Job>,
}

/// The store thread, to wait for on shutdown.
#[derive(Debug)]
pub struct StoreTask {
    done: oneshot::Receiver<()>,
}

// === impl StoreHandle ===

impl StoreHandle {
    /// Moves `store` onto its own thread. `queue` bounds the jobs waiting for it (at least 1).
    pub fn spawn(store: Store, queue: usize) -> Result<(StoreHandle, StoreTask), StoreError> {
        let (jobs, mut rx) = mpsc::channel::<Job>(queue.max(1));
        let (done_tx, done) = oneshot::channel();
        std::thread::Builder::new()
            .name("faultline-store".into())
            .spawn(move || {
                let mut store = store;
                while let Some(job) = rx.blocking_recv() {
                    job(&mut store);
                }
                drop(store); // closes the connection before we say we are done
                let _ = done_tx.send(());
            })
            .map_err(StoreError::SpawnThread)?;
        Ok((StoreHandle { jobs }, StoreTask { done }))
    }

    /// Runs `f` on the store thread and returns what it returned.
    async fn call<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&mut Store) -> Result<R, StoreError> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job: Job = Box::new(move |store| {
            // The caller may have gone away; the work is done either way.
            let _ = reply.send(f(store));
        });
        self.jobs.send(job).await.map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    pub async fn create_experiment(
        &self,
        name: impl Into<String>,
        spec_json: impl Into<String>,
        seed: u64,
        at: SystemTime,
    ) -> Result<ExperimentId, StoreError> {
        let (name, spec_json) = (name.into(), spec_json.into());
        self.call(move |s| s.create_experiment(&name, &spec_json, seed, at))
            .await
    }

    pub async fn get(&self, key: impl Into<ExperimentKey>) -> Result<Experiment, StoreError> {
        let key = key.into();
        self.call(move |s| s.get(key)).await
    }

    pub async fn list(&self, state: Option<StateKind>) -> Result<Vec<Experiment>, StoreError> {
        self.call(move |s| s.list(state)).await
    }

    pub async fn transition(
        &self,
        id: ExperimentId,
        to: ExperimentState,
        at: SystemTime,
    ) -> Result<Event, StoreError> {
        self.call(move |s| s.transition(id, to, at)).await
    }

    pub async fn append_event(
        &self,
        id: ExperimentId,
        at: SystemTime,
        kind: EventKind,
        detail: serde_json::Value,
    ) -> Result<Event, StoreError> {
        self.call(move |s| s.append_event(id, at, kind, detail))
            .await
    }

    pub async fn timeline(&self, id: ExperimentId) -> Result<Vec<Event>, StoreError> {
        self.call(move |s| s.timeline(id)).await
    }

    pub async fn set_targets(
        &self,
        id: ExperimentId,
        agents: Vec<String>,
        at: SystemTime,
    ) -> Result<Event, StoreError> {
        self.call(move |s| s.set_targets(id, &agents, at)).await
    }

    pub async fn targets(&self, id: ExperimentId) -> Result<Vec<String>, StoreError> {
        self.call(move |s| s.targets(id)).await
    }

    pub async fn delete(
        &self,
        key: impl Into<ExperimentKey>,
        at: SystemTime,
    ) -> Result<ExperimentId, StoreError> {
        let key = key.into();
        self.call(move |s| s.delete(key, at)).await
    }

    pub async fn recover_after_restart(
        &self,
        at: SystemTime,
    ) -> Result<Vec<ExperimentId>, StoreError> {
        self.call(move |s| s.recover_after_restart(at)).await
    }

    pub async fn record_agent_seen(
        &self,
        agent_id: impl Into<String>,
        labels: BTreeMap<String, String>,
        routes: serde_json::Value,
        version: impl Into<String>,
        at: SystemTime,
    ) -> Result<(), StoreError> {
        let (agent_id, version) = (agent_id.into(), version.into());
        self.call(move |s| s.record_agent_seen(&agent_id, &labels, &routes, &version, at))
            .await
    }

    pub async fn touch_agents(&self, ids: Vec<String>, at: SystemTime) -> Result<(), StoreError> {
        self.call(move |s| s.touch_agents(&ids, at)).await
    }

    pub async fn emergency_stop(&self) -> Result<Option<EmergencyStop>, StoreError> {
        self.call(|s| s.emergency_stop()).await
    }

    pub async fn set_emergency_stop(
        &self,
        reason: String,
        at: SystemTime,
    ) -> Result<EmergencyStop, StoreError> {
        self.call(move |s| s.set_emergency_stop(&reason, at)).await
    }

    pub async fn clear_emergency_stop(&self) -> Result<bool, StoreError> {
        self.call(|s| s.clear_emergency_stop()).await
    }

    pub async fn agents(&self) -> Result<Vec<AgentRecord>, StoreError> {
        self.call(|s| s.agents()).await
    }

    pub async fn schema_version(&self) -> Result<u32, StoreError> {
        self.call(|s| s.schema_version()).await
    }

    // The audit log (`audit.rs`).

    pub async fn append_audit(&self, entry: super::AuditEntry) -> Result<i64, StoreError> {
        self.call(move |s| s.append_audit(&entry)).await
    }

    pub async fn finish_audit(
        &self,
        seq: i64,
        outcome: super::AuditOutcome,
        target: Option<String>,
        detail: Option<String>,
    ) -> Result<(), StoreError> {
        self.call(move |s| s.finish_audit(seq, outcome, target, detail))
            .await
    }

    pub async fn audit_log(&self, limit: usize) -> Result<Vec<super::AuditEntry>, StoreError> {
        self.call(move |s| s.audit_log(limit)).await
    }

    // Schedules (`schedules.rs`).

    pub async fn arm_schedule(
        &self,
        template: ExperimentId,
        next_fire: Option<SystemTime>,
        at: SystemTime,
    ) -> Result<super::Arming, StoreError> {
        self.call(move |s| s.arm_schedule(template, next_fire, at))
            .await
    }

    pub async fn armed_schedules(&self) -> Result<Vec<super::ArmedSchedule>, StoreError> {
        self.call(|s| s.armed_schedules()).await
    }

    pub async fn fire_handled(
        &self,
        template: ExperimentId,
        fire_at: SystemTime,
        outcome: super::Fired,
        next_fire: Option<SystemTime>,
        at: SystemTime,
    ) -> Result<bool, StoreError> {
        self.call(move |s| s.fire_handled(template, fire_at, outcome, next_fire, at))
            .await
    }

    pub async fn disarm_schedule(
        &self,
        template: ExperimentId,
        reason: String,
        at: SystemTime,
    ) -> Result<bool, StoreError> {
        self.call(move |s| s.disarm_schedule(template, &reason, at))
            .await
    }

    pub async fn scheduled_runs(
        &self,
        template: ExperimentId,
    ) -> Result<Vec<super::ScheduledRun>, StoreError> {
        self.call(move |s| s.scheduled_runs(template)).await
    }
}

// === impl StoreTask ===

impl StoreTask {
    /// Resolves once every handle is gone, the queued jobs have run and the database is
    /// closed. An error means the thread died (a job panicked) before closing cleanly.
    pub async fn finished(self) -> Result<(), StoreError> {
        self.done.await.map_err(|_| StoreError::Closed)
    }
}
