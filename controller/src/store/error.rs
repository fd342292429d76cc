//! The store's one error type: every variant names what failed (which experiment, which
//! transition, which operation), so the gRPC layer can map it to a status code in one place
//! (`NotFound`, `AlreadyExists`, `FailedPrecondition`, ...) and a log line needs no context added.

use std::path::PathBuf;
use std::time::SystemTime;

use super::experiments::{ExperimentId, ExperimentKey};
use super::state::StateKind;

/// Everything that can go wrong in [`Store`](super::Store) and
/// [`StoreHandle`](super::StoreHandle).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    // --- opening ---
    #[error("cannot create the data dir {path}: {source}")]
    CreateDataDir {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error("cannot open the database {path}: {source}")]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },

    #[error("the database {path} could not switch to WAL journal mode (it reports {mode:?})")]
    WalUnavailable { path: PathBuf, mode: String },

    #[error(
        "the database schema is at version {found}, newer than this controller knows \
         ({supported}); run a newer controller or restore an older data dir"
    )]
    SchemaTooNew { found: u32, supported: u32 },

    #[error("schema migration {version} ({name}) failed: {source}")]
    Migration {
        version: u32,
        name: &'static str,
        source: rusqlite::Error,
    },

    // --- experiments ---
    #[error("an experiment named {name:?} already exists")]
    NameTaken { name: String },

    #[error("experiment {key} not found")]
    NotFound { key: ExperimentKey },

    #[error("experiment {name:?} ({id}) cannot go from {from} to {to}")]
    IllegalTransition {
        id: ExperimentId,
        name: String,
        from: StateKind,
        to: StateKind,
    },

    #[error("experiment {name:?} is {state}: only a finished experiment can be deleted")]
    NotFinished { name: String, state: StateKind },

    #[error(
        "experiment {name:?} is {state}: targets can only be recorded while pending or running"
    )]
    TargetsWhenFinished { name: String, state: StateKind },

    #[error("agent {agent:?} appears twice in the targets of experiment {name:?}")]
    DuplicateTarget { name: String, agent: String },

    #[error("the spec of experiment {name:?} is not valid JSON: {source}")]
    InvalidSpecJson {
        name: String,
        source: serde_json::Error,
    },

    // --- events ---
    #[error("event kind {kind:?} is written by the store itself and cannot be appended")]
    ReservedEventKind { kind: String },

    // --- values ---
    #[error("{what} {at:?} cannot be stored: it is before 1970 or too far in the future")]
    TimeOutOfRange { what: &'static str, at: SystemTime },

    #[error("corrupt {what} in the database: {detail}")]
    Corrupt { what: &'static str, detail: String },

    // --- SQLite itself ---
    #[error("database error while {op}: {source}")]
    Sqlite {
        op: &'static str,
        source: rusqlite::Error,
    },

    // --- the store thread ---
    #[error("cannot start the store thread: {0}")]
    SpawnThread(std::io::Error),

    #[error("the store thread has stopped")]
    Closed,
}

/// Attaches the name of the operation to a rusqlite error: `.during("listing experiments")?`.
pub(crate) trait During<T> {
    fn during(self, op: &'static str) -> Result<T, StoreError>;
}

impl<T> During<T> for Result<T, rusqlite::Error> {
    fn during(self, op: &'static str) -> Result<T, StoreError> {
        self.map_err(|source| StoreError::Sqlite { op, source })
    }
}
