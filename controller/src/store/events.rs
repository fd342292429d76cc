//! The event timeline of each experiment: what happened, when, with a JSON detail.
//!
//! Events are ordered by `seq`, the order in which they were committed. `at` is the caller's
//! wall clock and is kept as given, but it does not order the timeline: a wall clock can step
//! backwards, the commit order cannot.
//!
//! The store writes some kinds itself, in the same transaction as the change they record
//! ([`EventKind::CREATED`], [`EventKind::STATE_CHANGED`], [`EventKind::TARGETS_CHOSEN`],
//! [`EventKind::DELETED`]); [`Store::append_event`] refuses those, so the timeline cannot claim a
//! transition the state column does not show.

use std::borrow::Cow;
use std::fmt;
use std::time::SystemTime;

use rusqlite::{Connection, Row, params};

use super::error::During;
use super::experiments::{ExperimentId, ExperimentKey};
use super::{Store, StoreError, time};

/// One entry of an experiment's timeline.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Commit order, increasing across the whole store.
    pub seq: i64,
    pub experiment: ExperimentId,
    pub at: SystemTime,
    pub kind: EventKind,
    pub detail: serde_json::Value,
}

/// What an event says happened: one of the store's own kinds, or one the controller names
/// (`agent_acknowledged`, `guard_tripped`, ...).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EventKind(Cow<'static, str>);

// === impl EventKind ===

impl EventKind {
    /// The experiment was created (detail: `name`, `seed`).
    pub const CREATED: EventKind = EventKind::from_static("created");
    /// The state changed (detail: `from`, `to`, and `reason` for aborted and failed).
    pub const STATE_CHANGED: EventKind = EventKind::from_static("state_changed");
    /// The targets were recorded (detail: `agents`, in the order chosen).
    pub const TARGETS_CHOSEN: EventKind = EventKind::from_static("targets_chosen");
    /// The experiment was deleted (detail: `{}`).
    pub const DELETED: EventKind = EventKind::from_static("deleted");

    // Kinds the hub writes about guards (see `ExperimentEventKind` in experiment.proto).
    /// Guards judged before the first fault (detail: `passed`, `guards`).
    pub const PREFLIGHT: EventKind = EventKind::from_static("preflight");
    /// A guard changed state (detail: `guard`, `from`, `to`, `value`, `threshold`, `note`).
    pub const GUARD_CHANGED: EventKind = EventKind::from_static("guard_changed");
    /// A guard tripped (detail: `guard`, `source`, `value`, `threshold`, `for_ms`, ...).
    pub const GUARD_TRIPPED: EventKind = EventKind::from_static("guard_tripped");
    /// Cleared states acknowledged after a trip (detail: `sent_at`, `acks_ms`, ...).
    pub const FAULTS_WITHDRAWN: EventKind = EventKind::from_static("faults_withdrawn");
    /// Fault counters summed over agents (detail: `rules`, `unmatched`).
    pub const INJECTION: EventKind = EventKind::from_static("injection");
    /// Recovery observation ended (detail: `recovered`, `recovery_time_ms`, `series`).
    pub const RECOVERY: EventKind = EventKind::from_static("recovery");
    /// A ramp's phase began (detail: `phase`, `name`, `duration_ms`, `faults`).
    pub const PHASE_STARTED: EventKind = EventKind::from_static("phase_started");

    const RESERVED: [EventKind; 4] = [
        Self::CREATED,
        Self::STATE_CHANGED,
        Self::TARGETS_CHOSEN,
        Self::DELETED,
    ];

    pub const fn from_static(kind: &'static str) -> Self {
        Self(Cow::Borrowed(kind))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether only the store itself writes this kind.
    pub fn is_reserved(&self) -> bool {
        Self::RESERVED.contains(self)
    }
}

impl From<String> for EventKind {
    fn from(kind: String) -> Self {
        Self(Cow::Owned(kind))
    }
}

impl From<&'static str> for EventKind {
    fn from(kind: &'static str) -> Self {
        Self::from_static(kind)
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

// === impl Store ===

impl Store {
    /// Appends a controller-named event to an experiment's timeline and returns it as stored.
    ///
    /// The experiment may be in any state (a late agent acknowledgement of an aborted
    /// experiment is still history). Kinds the store writes itself are refused.
    pub fn append_event(
        &mut self,
        id: ExperimentId,
        at: SystemTime,
        kind: EventKind,
        detail: serde_json::Value,
    ) -> Result<Event, StoreError> {
        if kind.is_reserved() {
            return Err(StoreError::ReservedEventKind {
                kind: kind.to_string(),
            });
        }
        let tx = self.write_tx("appending an event")?;
        // The existence check gives a typed NotFound (and hides deleted experiments); the
        // foreign key would only say "constraint failed".
        super::experiments::live_row(&tx, id)?;
        let event = insert(&tx, id, at, kind, detail)?;
        tx.commit().during("committing an event")?;
        Ok(event)
    }

    /// The timeline of an experiment, in commit order.
    pub fn timeline(&self, id: ExperimentId) -> Result<Vec<Event>, StoreError> {
        super::experiments::live_row(&self.conn, id)?;
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT seq, experiment_id, at_us, kind, detail_json
                 FROM events WHERE experiment_id = ?1 ORDER BY seq",
            )
            .during("reading a timeline")?;
        let rows = stmt
            .query_map([id.get()], RawEvent::from_row)
            .during("reading a timeline")?;
        rows.map(|raw| raw.during("reading a timeline")?.decode())
            .collect()
    }
}

/// Inserts one event inside the caller's transaction.
pub(crate) fn insert(
    conn: &Connection,
    id: ExperimentId,
    at: SystemTime,
    kind: EventKind,
    detail: serde_json::Value,
) -> Result<Event, StoreError> {
    let at_us = time::to_micros("event time", at)?;
    let seq = conn
        .prepare_cached(
            "INSERT INTO events (experiment_id, at_us, kind, detail_json)
             VALUES (?1, ?2, ?3, ?4) RETURNING seq",
        )
        .and_then(|mut stmt| {
            stmt.query_row(
                params![id.get(), at_us, kind.as_str(), detail.to_string()],
                |row| row.get(0),
            )
        })
        .map_err(|source| match source {
            rusqlite::Error::SqliteFailure(e, _)
                if e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY =>
            {
                StoreError::NotFound {
                    key: ExperimentKey::Id(id),
                }
            }
            source => StoreError::Sqlite {
                op: "inserting an event",
                source,
            },
        })?;
    Ok(Event {
        seq,
        experiment: id,
        // What a read gives back: truncated to the microsecond.
        at: time::from_micros("event time", at_us)?,
        kind,
        detail,
    })
}

struct RawEvent {
    seq: i64,
    experiment: i64,
    at_us: i64,
    kind: String,
    detail: String,
}

impl RawEvent {
    fn from_row(row: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            seq: row.get(0)?,
            experiment: row.get(1)?,
            at_us: row.get(2)?,
            kind: row.get(3)?,
            detail: row.get(4)?,
        })
    }

    fn decode(self) -> Result<Event, StoreError> {
        let detail = serde_json::from_str(&self.detail).map_err(|e| StoreError::Corrupt {
            what: "event detail",
            detail: format!("event {}: {e}", self.seq),
        })?;
        Ok(Event {
            seq: self.seq,
            experiment: ExperimentId::from_raw(self.experiment),
            at: time::from_micros("event time", self.at_us)?,
            kind: EventKind::from(self.kind),
            detail,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_written_kinds_are_reserved_and_others_are_not() {
        for kind in ["created", "state_changed", "targets_chosen", "deleted"] {
            assert!(EventKind::from(kind.to_owned()).is_reserved(), "{kind}");
        }
        assert!(!EventKind::from_static("agent_acknowledged").is_reserved());
        assert_eq!(EventKind::STATE_CHANGED.to_string(), "state_changed");
    }
}
