//! Experiments: creation, look-up, state transitions, targets, deletion and the recovery that
//! runs at start-up.
//!
//! Every write is one `BEGIN IMMEDIATE` transaction that changes the row *and* appends the event
//! recording the change, so the timeline and the state column can never disagree, even across
//! a crash.
//!
//! Deletion is soft: the row and its timeline stay, marked deleted, and disappear from every
//! read; the name becomes free again (CI re-applies the same spec name run after run). The
//! timeline of a fault injected into a live system is an audit record ("what was hitting
//! checkout at 03:02?") and `delete` is an operator tidying a list, not a request to forget;
//! hard deletion would also have to cascade through the event table. If the file ever grows
//! too large, a retention sweep of long-deleted rows is a separate, explicit decision.

use std::collections::BTreeSet;
use std::fmt;
use std::time::SystemTime;

use rusqlite::{Connection, OptionalExtension, Row, params};
use serde_json::json;

use super::error::During;
use super::events::{self, Event, EventKind};
use super::state::{CONTROLLER_RESTARTED, ExperimentState, StateKind};
use super::{Store, StoreError, time};

/// The store's identifier of an experiment. Never reused, even after deletion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ExperimentId(i64);

/// How a caller names an experiment: by id, or by the name in its spec's `metadata.name`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ExperimentKey {
    Id(ExperimentId),
    Name(String),
}

/// An experiment as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Experiment {
    pub id: ExperimentId,
    pub name: String,
    /// The canonical JSON of the validated spec, exactly as it was created.
    pub spec_json: String,
    pub seed: u64,
    pub state: ExperimentState,
    pub created_at: SystemTime,
    pub state_changed_at: SystemTime,
}

// === impl ExperimentId ===

impl ExperimentId {
    /// Rebuilds an id from its number (an API request, a log line).
    pub fn from_raw(id: i64) -> Self {
        Self(id)
    }

    pub fn get(self) -> i64 {
        self.0
    }
}

impl fmt::Display for ExperimentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "id {}", self.0)
    }
}

// === impl ExperimentKey ===

impl From<ExperimentId> for ExperimentKey {
    fn from(id: ExperimentId) -> Self {
        Self::Id(id)
    }
}

impl From<String> for ExperimentKey {
    fn from(name: String) -> Self {
        Self::Name(name)
    }
}

impl From<&str> for ExperimentKey {
    fn from(name: &str) -> Self {
        Self::Name(name.to_owned())
    }
}

impl From<&String> for ExperimentKey {
    fn from(name: &String) -> Self {
        Self::Name(name.clone())
    }
}

impl fmt::Display for ExperimentKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Id(id) => id.fmt(f),
            Self::Name(name) => write!(f, "{name:?}"),
        }
    }
}

// === impl Store ===

impl Store {
    /// Creates a pending experiment and its `created` event.
    ///
    /// `spec_json` is the canonical JSON of the already validated spec; the store only checks
    /// that it is JSON. The name must be unique among experiments that are not deleted.
    pub fn create_experiment(
        &mut self,
        name: &str,
        spec_json: &str,
        seed: u64,
        at: SystemTime,
    ) -> Result<ExperimentId, StoreError> {
        serde_json::from_str::<serde_json::Value>(spec_json).map_err(|source| {
            StoreError::InvalidSpecJson {
                name: name.to_owned(),
                source,
            }
        })?;
        let at_us = time::to_micros("creation time", at)?;
        let tx = self.write_tx("creating an experiment")?;
        let id = tx
            .prepare_cached(
                "INSERT INTO experiments
                 (name, spec_json, seed, state, created_at_us, state_changed_at_us)
                 VALUES (?1, ?2, ?3, 'pending', ?4, ?4) RETURNING id",
            )
            .and_then(|mut stmt| {
                stmt.query_row(
                    // The u64 seed is stored bit for bit in SQLite's i64 and cast back on read.
                    params![name, spec_json, seed as i64, at_us],
                    |row| row.get(0),
                )
            })
            .map(ExperimentId)
            .map_err(|source| match source {
                rusqlite::Error::SqliteFailure(e, _)
                    if e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE =>
                {
                    StoreError::NameTaken {
                        name: name.to_owned(),
                    }
                }
                source => StoreError::Sqlite {
                    op: "creating an experiment",
                    source,
                },
            })?;
        events::insert(
            &tx,
            id,
            at,
            EventKind::CREATED,
            json!({ "name": name, "seed": seed }),
        )?;
        tx.commit().during("committing a new experiment")?;
        Ok(id)
    }

    /// One experiment by id or name; deleted experiments are not found.
    pub fn get(&self, key: impl Into<ExperimentKey>) -> Result<Experiment, StoreError> {
        resolve(&self.conn, &key.into())
    }

    /// The experiments that are not deleted, oldest first, all of them or those in one state.
    pub fn list(&self, state: Option<StateKind>) -> Result<Vec<Experiment>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM experiments
                 WHERE deleted_at_us IS NULL AND (?1 IS NULL OR state = ?1)
                 ORDER BY id"
            ))
            .during("listing experiments")?;
        let rows = stmt
            .query_map([state.map(StateKind::as_str)], RawExperiment::from_row)
            .during("listing experiments")?;
        rows.map(|raw| raw.during("listing experiments")?.decode())
            .collect()
    }

    /// Moves an experiment to `to` if the state machine allows it, and appends the
    /// `state_changed` event, in one transaction. Returns the event as stored.
    pub fn transition(
        &mut self,
        id: ExperimentId,
        to: ExperimentState,
        at: SystemTime,
    ) -> Result<Event, StoreError> {
        let tx = self.write_tx("changing an experiment's state")?;
        let experiment = live_row(&tx, id)?;
        let event = change_state(&tx, &experiment, to, at)?;
        tx.commit().during("committing a state change")?;
        Ok(event)
    }

    /// Records the agents chosen as targets, in the order chosen, replacing any earlier
    /// choice (agents joining mid-run are recorded by calling it again with the longer list),
    /// with a `targets_chosen` event. Only while the experiment is pending or running.
    pub fn set_targets(
        &mut self,
        id: ExperimentId,
        agents: &[String],
        at: SystemTime,
    ) -> Result<Event, StoreError> {
        let tx = self.write_tx("recording targets")?;
        let experiment = live_row(&tx, id)?;
        if experiment.state.is_finished() {
            return Err(StoreError::TargetsWhenFinished {
                name: experiment.name,
                state: experiment.state.kind(),
            });
        }
        let mut seen = BTreeSet::new();
        if let Some(agent) = agents.iter().find(|a| !seen.insert(a.as_str())) {
            return Err(StoreError::DuplicateTarget {
                name: experiment.name,
                agent: agent.clone(),
            });
        }
        tx.execute(
            "DELETE FROM experiment_targets WHERE experiment_id = ?1",
            [id.0],
        )
        .during("replacing targets")?;
        {
            let mut insert = tx
                .prepare_cached(
                    "INSERT INTO experiment_targets (experiment_id, position, agent_id)
                     VALUES (?1, ?2, ?3)",
                )
                .during("recording targets")?;
            for (position, agent) in agents.iter().enumerate() {
                insert
                    .execute(params![id.0, position as i64, agent])
                    .during("recording targets")?;
            }
        }
        let event = events::insert(
            &tx,
            id,
            at,
            EventKind::TARGETS_CHOSEN,
            json!({ "agents": agents }),
        )?;
        tx.commit().during("committing targets")?;
        Ok(event)
    }

    /// The agents recorded by the last [`set_targets`](Self::set_targets), in the order chosen.
    pub fn targets(&self, id: ExperimentId) -> Result<Vec<String>, StoreError> {
        live_row(&self.conn, id)?;
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT agent_id FROM experiment_targets
                 WHERE experiment_id = ?1 ORDER BY position",
            )
            .during("reading targets")?;
        let rows = stmt
            .query_map([id.0], |row| row.get(0))
            .during("reading targets")?;
        rows.collect::<Result<_, _>>().during("reading targets")
    }

    /// Soft-deletes a finished experiment (see the module docs for why soft) and frees its
    /// name. Returns the id it had.
    pub fn delete(
        &mut self,
        key: impl Into<ExperimentKey>,
        at: SystemTime,
    ) -> Result<ExperimentId, StoreError> {
        let at_us = time::to_micros("deletion time", at)?;
        let tx = self.write_tx("deleting an experiment")?;
        let experiment = resolve(&tx, &key.into())?;
        if !experiment.state.is_finished() {
            return Err(StoreError::NotFinished {
                name: experiment.name,
                state: experiment.state.kind(),
            });
        }
        tx.execute(
            "UPDATE experiments SET deleted_at_us = ?2 WHERE id = ?1",
            params![experiment.id.0, at_us],
        )
        .during("deleting an experiment")?;
        events::insert(&tx, experiment.id, at, EventKind::DELETED, json!({}))?;
        tx.commit().during("committing a deletion")?;
        Ok(experiment.id)
    }

    /// Run once at start-up, before serving: every experiment still `running` becomes
    /// `aborted: controller restarted`, each with its event, all in one transaction. Returns
    /// the ids aborted, oldest first.
    ///
    /// Its faults are not sent again: the agents cleared them when their lease ran out.
    /// `pending` experiments are left pending. The controller must commit `pending -> running`
    /// *before* it sends any fault, so an experiment that was started is never still
    /// pending in the store, and a pending one never reached an agent.
    pub fn recover_after_restart(
        &mut self,
        at: SystemTime,
    ) -> Result<Vec<ExperimentId>, StoreError> {
        let tx = self.write_tx("aborting experiments after a restart")?;
        let running = {
            let mut stmt = tx
                .prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM experiments
                     WHERE deleted_at_us IS NULL AND state = 'running' ORDER BY id"
                ))
                .during("finding running experiments")?;
            let rows = stmt
                .query_map([], RawExperiment::from_row)
                .during("finding running experiments")?;
            rows.map(|raw| raw.during("finding running experiments")?.decode())
                .collect::<Result<Vec<_>, _>>()?
        };
        for experiment in &running {
            change_state(
                &tx,
                experiment,
                ExperimentState::aborted(CONTROLLER_RESTARTED),
                at,
            )?;
        }
        tx.commit().during("committing the restart aborts")?;
        Ok(running.into_iter().map(|e| e.id).collect())
    }
}

// === helpers shared with events.rs ===

const COLUMNS: &str =
    "id, name, spec_json, seed, state, state_reason, created_at_us, state_changed_at_us";

/// The experiment with this id, unless it does not exist or is deleted.
pub(crate) fn live_row(conn: &Connection, id: ExperimentId) -> Result<Experiment, StoreError> {
    resolve(conn, &ExperimentKey::Id(id))
}

fn resolve(conn: &Connection, key: &ExperimentKey) -> Result<Experiment, StoreError> {
    let (column, value): (&str, &dyn rusqlite::ToSql) = match key {
        ExperimentKey::Id(id) => ("id", &id.0),
        ExperimentKey::Name(name) => ("name", name),
    };
    conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM experiments WHERE {column} = ?1 AND deleted_at_us IS NULL"
    ))
    .and_then(|mut stmt| stmt.query_row([value], RawExperiment::from_row).optional())
    .during("looking up an experiment")?
    .ok_or_else(|| StoreError::NotFound { key: key.clone() })?
    .decode()
}

/// Checks and writes one transition and its event, inside the caller's transaction.
fn change_state(
    conn: &Connection,
    experiment: &Experiment,
    to: ExperimentState,
    at: SystemTime,
) -> Result<Event, StoreError> {
    let from = experiment.state.kind();
    if !from.can_become(to.kind()) {
        return Err(StoreError::IllegalTransition {
            id: experiment.id,
            name: experiment.name.clone(),
            from,
            to: to.kind(),
        });
    }
    let at_us = time::to_micros("transition time", at)?;
    conn.prepare_cached(
        "UPDATE experiments SET state = ?2, state_reason = ?3, state_changed_at_us = ?4
         WHERE id = ?1",
    )
    .and_then(|mut stmt| {
        stmt.execute(params![
            experiment.id.0,
            to.kind().as_str(),
            to.reason(),
            at_us
        ])
    })
    .during("writing a state")?;
    let mut detail = json!({ "from": from.as_str(), "to": to.kind().as_str() });
    if let Some(reason) = to.reason() {
        detail["reason"] = reason.into();
    }
    events::insert(conn, experiment.id, at, EventKind::STATE_CHANGED, detail)
}

/// A row as SQLite returns it, before the checks that turn it into an [`Experiment`].
struct RawExperiment {
    id: i64,
    name: String,
    spec_json: String,
    seed: i64,
    state: String,
    state_reason: Option<String>,
    created_at_us: i64,
    state_changed_at_us: i64,
}

impl RawExperiment {
    fn from_row(row: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            id: row.get(0)?,
            name: row.get(1)?,
            spec_json: row.get(2)?,
            seed: row.get(3)?,
            state: row.get(4)?,
            state_reason: row.get(5)?,
            created_at_us: row.get(6)?,
            state_changed_at_us: row.get(7)?,
        })
    }

    fn decode(self) -> Result<Experiment, StoreError> {
        let state = ExperimentState::from_columns(&self.state, self.state_reason.clone())
            .ok_or_else(|| StoreError::Corrupt {
                what: "experiment state",
                detail: format!(
                    "experiment {:?} has state {:?} with reason {:?}",
                    self.name, self.state, self.state_reason
                ),
            })?;
        Ok(Experiment {
            id: ExperimentId(self.id),
            seed: self.seed as u64,
            state,
            created_at: time::from_micros("creation time", self.created_at_us)?,
            state_changed_at: time::from_micros("transition time", self.state_changed_at_us)?,
            name: self.name,
            spec_json: self.spec_json,
        })
    }
}
