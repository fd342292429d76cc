//! The controller's durable state: one SQLite file, `faultline.db`, in the data dir
//! (default `./faultline-data`).
//!
//! It holds the experiments (spec, seed, state), their event timelines, the targets chosen for
//! each, the agents seen, and the emergency stop. Callers hand in and get back typed values; no SQL leaves this
//! module.
//!
//! - `state`: the experiment state machine and its legal transitions.
//! - `experiments`: create, get, list, transition, targets, delete, restart recovery.
//! - `events`: the timeline of each experiment.
//! - `agents`: agents seen, upserted.
//! - `safety`: the emergency stop in force, if any.
//! - `schedules`: armed schedules (`spec.schedule`) and the runs they created.
//! - `audit`: the audit log of operator calls (who, what, when, from where, outcome).
//! - `schema`: the forward migrations and the `schema_version` table.
//! - `handle`: [`StoreHandle`], the async handle over the thread that owns the [`Store`].
//!
//! [`Store`] is blocking (rusqlite; every write waits for an fsync). Async code must not call it
//! on a runtime worker: use [`StoreHandle`], or run it on a thread of its own.
//!
//! Start-up: [`Store::open`], then [`Store::recover_after_restart`] before anything is served,
//! then [`StoreHandle::spawn`].

mod agents;
mod audit;
mod error;
mod events;
mod experiments;
mod handle;
mod safety;
mod schedules;
mod schema;
mod state;
mod time;

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, Transaction, TransactionBehavior};

pub use self::agents::AgentRecord;
pub use self::audit::{AuditEntry, AuditOutcome};
pub use self::error::StoreError;
pub use self::events::{Event, EventKind};
pub use self::experiments::{Experiment, ExperimentId, ExperimentKey};
pub use self::handle::{StoreHandle, StoreTask};
pub use self::safety::EmergencyStop;
pub use self::schedules::{ArmedSchedule, Arming, Fired, ScheduledRun};
pub use self::state::{CONTROLLER_RESTARTED, ExperimentState, StateKind};

use self::error::During;

/// The data dir used when none is configured.
pub const DEFAULT_DATA_DIR: &str = "./faultline-data";
/// The database file inside the data dir.
pub const DB_FILE_NAME: &str = "faultline.db";

/// How long a statement waits for a lock held by another connection (a `sqlite3` shell an
/// operator left open, a backup) before failing with `SQLITE_BUSY`.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The open database. Owns its connection; see [`StoreHandle`] for use from async code.
#[derive(Debug)]
pub struct Store {
    conn: Connection,
    path: PathBuf,
}

// === impl Store ===

impl Store {
    /// Opens (creating if needed) `data_dir` and `data_dir/faultline.db`, and brings the schema
    /// up to date. Safe to call on a database left by a crash: SQLite replays the WAL.
    pub fn open(data_dir: impl AsRef<Path>) -> Result<Store, StoreError> {
        let data_dir = data_dir.as_ref();
        std::fs::create_dir_all(data_dir).map_err(|source| StoreError::CreateDataDir {
            path: data_dir.to_owned(),
            source,
        })?;
        let path = data_dir.join(DB_FILE_NAME);
        let open_failed = |source| StoreError::Open {
            path: path.clone(),
            source,
        };
        let mut conn = Connection::open(&path).map_err(open_failed)?;

        // WAL: readers do not block the writer, and a commit appends to one file.
        let mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
            .map_err(open_failed)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::WalUnavailable { path, mode });
        }
        // Durability: synchronous = FULL, not NORMAL. In WAL mode NORMAL fsyncs only at
        // checkpoints: a commit survives the controller being killed (the WAL is in the page
        // cache) but the last commits can vanish if the machine loses power or the kernel
        // crashes. We tell operators and agents "experiment created/aborted" only after the
        // commit returns, and "nothing acknowledged is ever lost" has to hold for a node
        // failure too, so FULL fsyncs the WAL on every commit. The price is one fsync per
        // write transaction; the store writes a handful of rows per experiment and one per
        // agent hello, so it is not on any hot path (per-heartbeat data stays in memory).
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(open_failed)?;
        conn.pragma_update(None, "foreign_keys", true)
            .map_err(open_failed)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(open_failed)?;

        schema::migrate(&mut conn)?;
        Ok(Store { conn, path })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The schema version of the open database (the number of migrations applied).
    pub fn schema_version(&self) -> Result<u32, StoreError> {
        schema::current_version(&self.conn)
    }

    /// A write transaction that takes the write lock up front (`BEGIN IMMEDIATE`), so a
    /// read-then-write inside it never fails half-way to upgrade its lock.
    fn write_tx(&mut self, op: &'static str) -> Result<Transaction<'_>, StoreError> {
        self.conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .during(op)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    struct TempDir(PathBuf);

    impl TempDir {
        fn new() -> Self {
            static N: AtomicU32 = AtomicU32::new(0);
            let dir = std::env::temp_dir().join(format!(
                "faultline-store-unit-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = std::fs::remove_dir_all(&dir);
            Self(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn open_creates_the_dir_and_sets_the_pragmas() {
        let dir = TempDir::new();
        let nested = dir.0.join("a/b");
        let store = Store::open(&nested).unwrap();
        assert_eq!(store.path(), nested.join(DB_FILE_NAME));
        assert!(store.path().is_file());

        let pragma = |name: &str| -> String {
            store
                .conn
                .pragma_query_value(None, name, |r| r.get::<_, rusqlite::types::Value>(0))
                .map(|v| format!("{v:?}"))
                .unwrap()
        };
        assert_eq!(pragma("journal_mode"), r#"Text("wal")"#);
        assert_eq!(pragma("synchronous"), "Integer(2)"); // FULL
        assert_eq!(pragma("foreign_keys"), "Integer(1)");
        assert_eq!(store.schema_version().unwrap(), schema::latest_version());
    }

    #[test]
    fn open_names_the_data_dir_it_could_not_create() {
        let dir = TempDir::new();
        std::fs::create_dir_all(&dir.0).unwrap();
        let file = dir.0.join("not-a-dir");
        std::fs::write(&file, b"x").unwrap();
        let err = Store::open(&file).unwrap_err();
        assert!(
            matches!(&err, StoreError::CreateDataDir { path, .. } if *path == file),
            "{err}"
        );
    }
}
