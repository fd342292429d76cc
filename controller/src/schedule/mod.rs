//! Schedules (`spec.schedule`): experiments that run by themselves.
//!
//! An experiment with a schedule is a *template*. `Start` on it does not run it: it arms the
//! schedule (a row in the store, [`Store::arm_schedule`](crate::store::Store::arm_schedule)),
//! and the template stays pending. At each fire time the scheduler creates a *run*, a new
//! experiment named `TEMPLATE-YYYYMMDDHHMM` (the fire time in UTC; the template part is cut so
//! the name stays a 63-character DNS label) whose spec is the template's without `schedule`,
//! and starts it through the [`Hub`] like `Start` does. The template's timeline records each
//! fire (`schedule_fired`, with the run) and each skip (`schedule_skipped`, with why).
//!
//! - Concurrency: under `Forbid` (the default) a fire while an earlier run of the schedule is
//!   pending or running is skipped; under `Allow` the run is created anyway.
//! - History: after each run, finished runs beyond `historyLimit` (the oldest) are deleted.
//! - `startAt` fires once, at once if it has passed by the time the schedule is armed.
//! - Aborting the template disarms its schedule (the scheduler is woken by Abort and disarms
//!   any schedule whose template is no longer pending); runs already started keep running.
//! - Restarts: armed schedules live in the store. A fire time that passed while the
//!   controller was down fires once at start-up (one late run stands for every missed fire),
//!   then the schedule continues from the current time.
//!
//! One task, [`Scheduler::spawn`], owns the loop: it reads the armed schedules from the store,
//! handles every fire that is due, and sleeps on the [`Clock`] until the earliest next fire or
//! until woken (Start, Abort). It re-reads the time after every sleep, since the wall clock
//! can jump. A run that the hub refuses to start (no agents, a conflict, an emergency stop) is
//! marked failed with the hub's reason.
//!
//! - `clock`: [`Clock`], the system's wall clock and a manual one for tests.
//! - `next_fire`: when a schedule fires next (cron in its time zone, across DST changes).
//! - `run`: a run's name and spec, made from the template's.
//! - `api`: the `ExperimentService` that arms templates on Start and wakes the scheduler on
//!   Abort, around [`ExperimentApi`](crate::api::ExperimentApi).

pub mod api;
pub mod clock;
pub mod next_fire;
mod run;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::{Notify, oneshot};
use tokio::task::JoinHandle;

use crate::api::watch::Changes;
use crate::hub::Hub;
use crate::spec::{Caps, ConcurrencyPolicy, Schedule};
use crate::store::{
    self, ArmedSchedule, Arming, ExperimentState, Fired, StateKind, StoreError, StoreHandle,
};

pub use self::api::ScheduledExperimentApi;
pub use self::clock::{Clock, ManualClock, SystemClock};

/// How long the scheduler waits before trying again after the store failed.
const RETRY_AFTER_STORE_ERROR: Duration = Duration::from_secs(5);

/// Why a template's schedule could not be armed.
#[derive(Debug, thiserror::Error)]
pub enum ArmError {
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("the schedule of {name:?} was already armed (a schedule is armed once)")]
    AlreadyArmed { name: String },
    #[error("experiment {name:?} is {state}, not pending")]
    NotPending { name: String, state: StateKind },
    #[error("the schedule of {name:?} never fires after now")]
    NeverFires { name: String },
}

/// A handle on the scheduler; cheap to clone.
#[derive(Clone, Debug)]
pub struct Scheduler {
    store: StoreHandle,
    clock: Arc<dyn Clock>,
    changes: Changes,
    wake: Arc<Notify>,
}

/// The scheduler's task; stop it with the sender from [`SchedulerTask::split`].
#[derive(Debug)]
pub struct SchedulerTask {
    task: JoinHandle<()>,
    stop: oneshot::Sender<()>,
}

/// What the loop holds.
struct Loop {
    handle: Scheduler,
    hub: Hub,
    /// Runs are checked against the caps like a spec sent to Create.
    caps: Arc<Caps>,
}

// === impl Scheduler ===

impl Scheduler {
    /// Spawns the loop. `changes` is bumped after every event it commits, for `Watch`.
    pub fn spawn(
        store: StoreHandle,
        hub: Hub,
        caps: Arc<Caps>,
        changes: Changes,
        clock: Arc<dyn Clock>,
    ) -> (Scheduler, SchedulerTask) {
        let handle = Scheduler {
            store,
            clock,
            changes,
            wake: Arc::new(Notify::new()),
        };
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(
            Loop {
                handle: handle.clone(),
                hub,
                caps,
            }
            .run(stopped),
        );
        (handle, SchedulerTask { task, stop })
    }

    /// Arms the schedule of `template` if its spec has one: answers `false` (nothing done)
    /// for an experiment without a schedule, which starts the ordinary way.
    pub async fn arm(&self, template: &store::Experiment) -> Result<bool, ArmError> {
        let Some(schedule) = run::schedule_of(template) else {
            return Ok(false);
        };
        let now = self.clock.now();
        let name = template.name.clone();
        let Some(first) = next_fire::first_fire(&schedule, now) else {
            return Err(ArmError::NeverFires { name });
        };
        match self
            .store
            .arm_schedule(template.id, Some(first), now)
            .await?
        {
            Arming::Armed => {}
            Arming::AlreadyArmed => return Err(ArmError::AlreadyArmed { name }),
            Arming::NotPending(state) => return Err(ArmError::NotPending { name, state }),
        }
        self.changes.notify();
        self.wake();
        tracing::info!(experiment = %name, first_fire = ?first, "schedule armed");
        Ok(true)
    }

    /// Has the loop look at the store again (a template was aborted or armed).
    pub fn wake(&self) {
        self.wake.notify_one();
    }
}

// === impl SchedulerTask ===

impl SchedulerTask {
    /// The stop signal and the task to wait for.
    pub fn split(self) -> (oneshot::Sender<()>, JoinHandle<()>) {
        (self.stop, self.task)
    }
}

// === impl Loop ===

impl Loop {
    async fn run(self, mut stopped: oneshot::Receiver<()>) {
        loop {
            let next = match self.tick().await {
                Ok(next) => next,
                Err(e) => {
                    tracing::warn!(error = %e, "scheduler: store error; retrying");
                    Some(self.handle.clock.now() + RETRY_AFTER_STORE_ERROR)
                }
            };
            let clock = &self.handle.clock;
            let sleep = async {
                match next {
                    Some(at) => clock.sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = &mut stopped => return,
                _ = self.handle.wake.notified() => {}
                _ = sleep => {}
            }
        }
    }

    /// Handles every fire that is due; answers the earliest fire still to come.
    async fn tick(&self) -> Result<Option<SystemTime>, StoreError> {
        let store = &self.handle.store;
        let mut earliest: Option<SystemTime> = None;
        for armed in store.armed_schedules().await? {
            let Some(next) = self.due(&armed).await? else {
                continue;
            };
            earliest = Some(earliest.map_or(next, |e| e.min(next)));
        }
        Ok(earliest)
    }

    /// One armed schedule: disarmed if its template is gone or no longer pending, fired if
    /// due. Answers its next fire, if it has one.
    async fn due(&self, armed: &ArmedSchedule) -> Result<Option<SystemTime>, StoreError> {
        let template = match self.handle.store.get(armed.template).await {
            Ok(t) => t,
            Err(StoreError::NotFound { .. }) => {
                self.disarm(armed, "the template was deleted".into())
                    .await?;
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        if template.state.kind() != StateKind::Pending {
            let why = format!("the template is {}", template.state.kind());
            self.disarm(armed, why).await?;
            return Ok(None);
        }
        let Some(schedule) = run::schedule_of(&template) else {
            let why = "the template's spec has no valid schedule".to_owned();
            self.disarm(armed, why).await?;
            return Ok(None);
        };
        let Some(fire_at) = armed.next_fire else {
            self.disarm(armed, "nothing left to fire".into()).await?;
            return Ok(None);
        };
        let now = self.handle.clock.now();
        if fire_at > now {
            return Ok(Some(fire_at));
        }
        self.fire(&template, &schedule, fire_at, now).await
    }

    async fn disarm(&self, armed: &ArmedSchedule, reason: String) -> Result<(), StoreError> {
        let now = self.handle.clock.now();
        let disarmed = self
            .handle
            .store
            .disarm_schedule(armed.template, reason.clone(), now)
            .await?;
        if disarmed {
            self.handle.changes.notify();
            tracing::info!(template = %armed.template, %reason, "schedule disarmed");
        }
        Ok(())
    }

    /// One fire: a run created and started, or a skip; both recorded with the next fire.
    async fn fire(
        &self,
        template: &store::Experiment,
        schedule: &Schedule,
        fire_at: SystemTime,
        now: SystemTime,
    ) -> Result<Option<SystemTime>, StoreError> {
        let store = &self.handle.store;
        let next = next_fire::fire_after(schedule, now.max(fire_at));
        let outcome = match self.busy_run(template, schedule).await? {
            Some(reason) => Fired::Skipped { reason },
            None => self.create_run(template, fire_at, now).await?,
        };
        let linked = store
            .fire_handled(template.id, fire_at, outcome.clone(), next, now)
            .await?;
        self.handle.changes.notify();
        match outcome {
            Fired::Skipped { reason } => {
                tracing::info!(template = %template.name, %reason, "scheduled fire skipped");
            }
            Fired::Run { run, name } if !linked => {
                // Disarmed while the run was being made: it never starts.
                let state = ExperimentState::aborted("its schedule was disarmed");
                store.transition(run, state, now).await?;
                tracing::info!(template = %template.name, run = %name, "schedule disarmed");
                return Ok(None);
            }
            Fired::Run { run, name } => {
                tracing::info!(template = %template.name, run = %name, "schedule fired");
                self.start(run, name, now).await?;
                if let Schedule::Cron(c) = schedule {
                    self.prune(template, c.history_limit, now).await?;
                }
            }
        }
        Ok(next)
    }

    /// Why the schedule's earlier run forbids a new one, if it does.
    async fn busy_run(
        &self,
        template: &store::Experiment,
        schedule: &Schedule,
    ) -> Result<Option<String>, StoreError> {
        let Schedule::Cron(c) = schedule else {
            return Ok(None);
        };
        if c.concurrency != ConcurrencyPolicy::Forbid {
            return Ok(None);
        }
        let runs = self.handle.store.scheduled_runs(template.id).await?;
        Ok(runs.iter().find(|r| !r.state.is_finished()).map(|r| {
            format!(
                "run {:?} is still {} (concurrencyPolicy: Forbid)",
                r.name, r.state
            )
        }))
    }

    /// Creates the run of a fire, or says why it could not be.
    async fn create_run(
        &self,
        template: &store::Experiment,
        fire_at: SystemTime,
        now: SystemTime,
    ) -> Result<Fired, StoreError> {
        let name = run::run_name(&template.name, fire_at);
        let spec_json = match run::run_spec(template, &name, &self.caps) {
            Ok(json) => json,
            Err(reason) => return Ok(Fired::Skipped { reason }),
        };
        match self
            .handle
            .store
            .create_experiment(&name, spec_json, template.seed, now)
            .await
        {
            Ok(run) => Ok(Fired::Run { run, name }),
            Err(e @ StoreError::NameTaken { .. }) => Ok(Fired::Skipped {
                reason: e.to_string(),
            }),
            Err(e) => Err(e),
        }
    }

    /// Starts a run through the hub; a refusal fails the run with the hub's reason.
    async fn start(
        &self,
        run: store::ExperimentId,
        name: String,
        now: SystemTime,
    ) -> Result<(), StoreError> {
        let Err(e) = self.hub.start(name.clone()).await else {
            return Ok(());
        };
        tracing::warn!(run = %name, error = %e, "scheduled run did not start");
        let state = ExperimentState::failed(format!("scheduled start failed: {e}"));
        match self.handle.store.transition(run, state, now).await {
            // The hub may have moved it on already (failed itself); that state stands.
            Ok(_) | Err(StoreError::IllegalTransition { .. }) => {}
            Err(e) => return Err(e),
        }
        self.handle.changes.notify();
        Ok(())
    }

    /// Deletes the finished runs of `template` beyond the newest `limit`.
    async fn prune(
        &self,
        template: &store::Experiment,
        limit: u32,
        now: SystemTime,
    ) -> Result<(), StoreError> {
        let store = &self.handle.store;
        let runs = store.scheduled_runs(template.id).await?;
        let finished = runs.into_iter().filter(|r| r.state.is_finished());
        for old in finished.skip(limit as usize) {
            match store.delete(old.run, now).await {
                Ok(_) | Err(StoreError::NotFinished { .. } | StoreError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
            tracing::info!(template = %template.name, run = %old.name, "old scheduled run deleted");
        }
        self.handle.changes.notify();
        Ok(())
    }
}
