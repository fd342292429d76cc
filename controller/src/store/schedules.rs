//! Armed schedules and the runs they created, kept so a schedule survives a restart.
//!
//! A row of `schedules` exists once a template (an experiment with `spec.schedule`) was
//! started: `armed` while it may still fire, `next_fire_us` the instant it fires next (NULL
//! when nothing is left to fire). Each fire is one transaction that moves `next_fire_us` on
//! and writes the template's `schedule_fired` or `schedule_skipped` event, so a fire handled
//! before a crash is not handled again after it. `schedule_runs` links each run to its
//! template, for the concurrency policy and the history limit.

use std::time::SystemTime;

use rusqlite::{OptionalExtension, Transaction, params};
use serde_json::{Value, json};

use super::error::During;
use super::experiments::live_row;
use super::{EventKind, ExperimentId, StateKind, Store, StoreError, events, time};

// === impl EventKind ===

impl EventKind {
    /// A template's schedule was armed by Start (detail: `nextFire`).
    pub const SCHEDULE_ARMED: EventKind = EventKind::from_static("schedule_armed");
    /// A fire created a run (detail: `fireAt`, `run`, `nextFire`).
    pub const SCHEDULE_FIRED: EventKind = EventKind::from_static("schedule_fired");
    /// A fire was skipped (detail: `fireAt`, `reason`, `nextFire`).
    pub const SCHEDULE_SKIPPED: EventKind = EventKind::from_static("schedule_skipped");
    /// The schedule will not fire again (detail: `reason`).
    pub const SCHEDULE_DISARMED: EventKind = EventKind::from_static("schedule_disarmed");
}

/// An armed schedule as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArmedSchedule {
    /// The template experiment.
    pub template: ExperimentId,
    /// `None`: nothing is left to fire (a `startAt` that fired).
    pub next_fire: Option<SystemTime>,
    pub armed_at: SystemTime,
}

/// A run a schedule created.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScheduledRun {
    pub run: ExperimentId,
    pub name: String,
    pub state: StateKind,
    pub fire_at: SystemTime,
}

/// What [`Store::arm_schedule`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arming {
    Armed,
    /// Armed before (a schedule is armed once, even when it has since run out): nothing
    /// changed.
    AlreadyArmed,
    /// The template is not pending (it was aborted, or ran as a plain experiment).
    NotPending(StateKind),
}

/// How a handled fire went, for [`Store::fire_handled`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fired {
    Run { run: ExperimentId, name: String },
    Skipped { reason: String },
}

fn micros(at: Option<SystemTime>) -> Result<Option<i64>, StoreError> {
    at.map(|t| time::to_micros("schedule fire time", t))
        .transpose()
}

fn rfc3339(at: Option<SystemTime>) -> Value {
    at.map_or(Value::Null, |t| {
        chrono::DateTime::<chrono::Utc>::from(t)
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
            .into()
    })
}

impl Store {
    /// Arms the schedule of `template` (a pending experiment, never armed before) with its
    /// first fire, and records `schedule_armed`.
    pub fn arm_schedule(
        &mut self,
        template: ExperimentId,
        next_fire: Option<SystemTime>,
        at: SystemTime,
    ) -> Result<Arming, StoreError> {
        let (next_us, at_us) = (micros(next_fire)?, time::to_micros("arming time", at)?);
        let tx = self.write_tx("arming a schedule")?;
        let experiment = live_row(&tx, template)?;
        if experiment.state.kind() != StateKind::Pending {
            return Ok(Arming::NotPending(experiment.state.kind()));
        }
        let n = tx
            .execute(
                "INSERT INTO schedules (experiment_id, armed, next_fire_us, armed_at_us)
                 VALUES (?1, 1, ?2, ?3)
                 ON CONFLICT (experiment_id) DO NOTHING",
                params![template.get(), next_us, at_us],
            )
            .during("arming a schedule")?;
        if n == 0 {
            return Ok(Arming::AlreadyArmed);
        }
        let detail = json!({ "nextFire": rfc3339(next_fire) });
        events::insert(&tx, template, at, EventKind::SCHEDULE_ARMED, detail)?;
        tx.commit().during("committing an armed schedule")?;
        Ok(Arming::Armed)
    }

    /// The schedules armed, by template id.
    pub fn armed_schedules(&self) -> Result<Vec<ArmedSchedule>, StoreError> {
        let op = "reading the armed schedules";
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT experiment_id, next_fire_us, armed_at_us FROM schedules
                 WHERE armed = 1 ORDER BY experiment_id",
            )
            .during(op)?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, Option<i64>>(1)?,
                    r.get::<_, i64>(2)?,
                ))
            })
            .during(op)?;
        rows.map(|row| {
            let (id, next_us, armed_us) = row.during(op)?;
            Ok(ArmedSchedule {
                template: ExperimentId::from_raw(id),
                next_fire: next_us
                    .map(|us| time::from_micros("schedule fire time", us))
                    .transpose()?,
                armed_at: time::from_micros("arming time", armed_us)?,
            })
        })
        .collect()
    }

    /// Records a fire of `template` at `fire_at`: its run (already created) linked, or why it
    /// was skipped, and the next fire (`None`: the schedule is done and disarmed). Answers
    /// `false`, changing nothing, when the schedule is no longer armed.
    pub fn fire_handled(
        &mut self,
        template: ExperimentId,
        fire_at: SystemTime,
        outcome: Fired,
        next_fire: Option<SystemTime>,
        at: SystemTime,
    ) -> Result<bool, StoreError> {
        let (fire_us, next_us) = (
            time::to_micros("schedule fire time", fire_at)?,
            micros(next_fire)?,
        );
        let tx = self.write_tx("recording a schedule fire")?;
        if !is_armed(&tx, template)? {
            return Ok(false);
        }
        tx.execute(
            "UPDATE schedules SET next_fire_us = ?2, armed = (?2 IS NOT NULL)
             WHERE experiment_id = ?1",
            params![template.get(), next_us],
        )
        .during("recording a schedule fire")?;
        let (kind, mut detail) = match outcome {
            Fired::Run { run, name } => {
                tx.execute(
                    "INSERT INTO schedule_runs (run_id, experiment_id, fire_at_us)
                     VALUES (?1, ?2, ?3)",
                    params![run.get(), template.get(), fire_us],
                )
                .during("linking a scheduled run")?;
                (EventKind::SCHEDULE_FIRED, json!({ "run": name }))
            }
            Fired::Skipped { reason } => (EventKind::SCHEDULE_SKIPPED, json!({ "reason": reason })),
        };
        detail["fireAt"] = rfc3339(Some(fire_at));
        detail["nextFire"] = rfc3339(next_fire);
        events::insert(&tx, template, at, kind, detail)?;
        tx.commit().during("committing a schedule fire")?;
        Ok(true)
    }

    /// Disarms the schedule of `template` and records why; `false` if it was not armed.
    pub fn disarm_schedule(
        &mut self,
        template: ExperimentId,
        reason: &str,
        at: SystemTime,
    ) -> Result<bool, StoreError> {
        let tx = self.write_tx("disarming a schedule")?;
        if !is_armed(&tx, template)? {
            return Ok(false);
        }
        tx.execute(
            "UPDATE schedules SET armed = 0 WHERE experiment_id = ?1",
            params![template.get()],
        )
        .during("disarming a schedule")?;
        // A deleted template keeps its timeline; the event is written all the same.
        let detail = json!({ "reason": reason });
        events::insert(&tx, template, at, EventKind::SCHEDULE_DISARMED, detail)?;
        tx.commit().during("committing a disarmed schedule")?;
        Ok(true)
    }

    /// The runs `template`'s schedule created and that are not deleted, newest fire first.
    pub fn scheduled_runs(&self, template: ExperimentId) -> Result<Vec<ScheduledRun>, StoreError> {
        let op = "reading a schedule's runs";
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT e.id, e.name, e.state, r.fire_at_us
                 FROM schedule_runs r JOIN experiments e ON e.id = r.run_id
                 WHERE r.experiment_id = ?1 AND e.deleted_at_us IS NULL
                 ORDER BY r.fire_at_us DESC, e.id DESC",
            )
            .during(op)?;
        let rows = stmt
            .query_map([template.get()], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, i64>(3)?,
                ))
            })
            .during(op)?;
        rows.map(|row| {
            let (id, name, state, fire_us) = row.during(op)?;
            Ok(ScheduledRun {
                run: ExperimentId::from_raw(id),
                name,
                state: StateKind::from_str(&state).ok_or_else(|| StoreError::Corrupt {
                    what: "experiment state",
                    detail: format!("unknown state {state:?}"),
                })?,
                fire_at: time::from_micros("schedule fire time", fire_us)?,
            })
        })
        .collect()
    }
}

fn is_armed(tx: &Transaction<'_>, template: ExperimentId) -> Result<bool, StoreError> {
    tx.query_row(
        "SELECT armed FROM schedules WHERE experiment_id = ?1",
        [template.get()],
        |r| r.get::<_, bool>(0),
    )
    .optional()
    .during("reading a schedule")
    .map(|armed| armed == Some(true))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_schedule_is_armed_once_moves_on_with_each_fire_and_ends() {
        let dir = std::env::temp_dir().join(format!("faultline-schedules-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut store = Store::open(&dir).unwrap();
        let t = |s: u64| SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000 + s);
        let template = store.create_experiment("tpl", "{}", 1, t(0)).unwrap();

        assert_eq!(
            store.arm_schedule(template, Some(t(60)), t(0)).unwrap(),
            Arming::Armed
        );
        assert_eq!(
            store.arm_schedule(template, Some(t(60)), t(1)).unwrap(),
            Arming::AlreadyArmed
        );
        let skipped = Fired::Skipped {
            reason: "busy".into(),
        };
        assert!(
            store
                .fire_handled(template, t(60), skipped, Some(t(120)), t(60))
                .unwrap()
        );
        let armed = store.armed_schedules().unwrap();
        assert_eq!(armed.len(), 1);
        assert_eq!(armed[0].next_fire, Some(t(120)));

        let run = store.create_experiment("tpl-run", "{}", 1, t(120)).unwrap();
        let fired = Fired::Run {
            run,
            name: "tpl-run".into(),
        };
        assert!(
            store
                .fire_handled(template, t(120), fired, None, t(120))
                .unwrap()
        );
        assert!(
            store.armed_schedules().unwrap().is_empty(),
            "nothing left to fire"
        );
        let runs = store.scheduled_runs(template).unwrap();
        assert_eq!(runs.len(), 1);
        assert_eq!(
            (runs[0].run, runs[0].state, runs[0].fire_at),
            (run, StateKind::Pending, t(120))
        );
        assert!(!store.disarm_schedule(template, "done", t(121)).unwrap());

        let kinds: Vec<String> = store
            .timeline(template)
            .unwrap()
            .iter()
            .map(|e| e.kind.as_str().to_owned())
            .collect();
        assert_eq!(
            kinds,
            [
                "created",
                "schedule_armed",
                "schedule_skipped",
                "schedule_fired"
            ]
        );
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
