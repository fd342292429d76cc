//! The schema, as a list of forward migrations.
//!
//! `schema_version` holds one row per migration applied. On open, every migration newer than
//! the highest row runs in its own transaction together with its row, so a crash mid-migration
//! leaves the previous version intact and the next open retries it. Migrations are append-only:
//! never edit one that has shipped; add the next number. A database newer than this binary is
//! refused rather than written with a schema it does not understand.

use std::time::SystemTime;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::error::During;
use super::{StoreError, time};

pub(crate) struct Migration {
    pub(crate) version: u32,
    pub(crate) name: &'static str,
    pub(crate) sql: &'static str,
}

/// Every migration, in order; `version` is the index + 1.
pub(crate) const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "experiments, events, targets and agents",
        // STRICT tables: SQLite checks column types instead of storing whatever it is handed.
        // Times are µs since the Unix epoch (see `time.rs`).
        sql: r#"
        CREATE TABLE experiments (
            id                 INTEGER PRIMARY KEY AUTOINCREMENT,
            name               TEXT    NOT NULL,
            spec_json          TEXT    NOT NULL,
            -- the u64 seed, bit for bit, as SQLite's signed 64-bit integer
            seed               INTEGER NOT NULL,
            state              TEXT    NOT NULL
                CHECK (state IN ('pending', 'running', 'completed', 'aborted', 'failed')),
            state_reason       TEXT
                CHECK ((state_reason IS NOT NULL) = (state IN ('aborted', 'failed'))),
            created_at_us      INTEGER NOT NULL,
            state_changed_at_us INTEGER NOT NULL,
            -- soft delete: set once, by `delete`
            deleted_at_us      INTEGER
        ) STRICT;

        -- names are unique among experiments that are not deleted
        CREATE UNIQUE INDEX experiments_live_name ON experiments (name)
            WHERE deleted_at_us IS NULL;
        CREATE INDEX experiments_by_state ON experiments (state)
            WHERE deleted_at_us IS NULL;

        CREATE TABLE events (
            seq           INTEGER PRIMARY KEY AUTOINCREMENT,
            experiment_id INTEGER NOT NULL REFERENCES experiments (id),
            at_us         INTEGER NOT NULL,
            kind          TEXT    NOT NULL,
            detail_json   TEXT    NOT NULL
        ) STRICT;
        CREATE INDEX events_by_experiment ON events (experiment_id, seq);

        CREATE TABLE experiment_targets (
            experiment_id INTEGER NOT NULL REFERENCES experiments (id),
            position      INTEGER NOT NULL,
            agent_id      TEXT    NOT NULL,
            PRIMARY KEY (experiment_id, position),
            UNIQUE (experiment_id, agent_id)
        ) STRICT;
        CREATE INDEX experiment_targets_by_agent ON experiment_targets (agent_id);

        CREATE TABLE agents (
            agent_id       TEXT    PRIMARY KEY,
            labels_json    TEXT    NOT NULL,
            routes_json    TEXT    NOT NULL,
            version        TEXT    NOT NULL,
            first_seen_us  INTEGER NOT NULL,
            last_seen_us   INTEGER NOT NULL
        ) STRICT;
    "#,
    },
    Migration {
        version: 2,
        name: "the emergency stop",
        // At most one row: present while the stop is in force.
        sql: r#"
            CREATE TABLE emergency_stop (
                id        INTEGER PRIMARY KEY CHECK (id = 1),
                reason    TEXT    NOT NULL,
                since_us  INTEGER NOT NULL
            ) STRICT;
        "#,
    },
    Migration {
        version: 3,
        name: "schedules and their runs",
        // One row per template whose schedule was armed (see `schedules.rs`); each run a
        // schedule created, linked to its template for the concurrency policy and history.
        sql: r#"
            CREATE TABLE schedules (
                experiment_id INTEGER PRIMARY KEY REFERENCES experiments (id),
                armed         INTEGER NOT NULL CHECK (armed IN (0, 1)),
                -- NULL once nothing is left to fire
                next_fire_us  INTEGER,
                armed_at_us   INTEGER NOT NULL
            ) STRICT;
            CREATE TABLE schedule_runs (
                run_id        INTEGER PRIMARY KEY REFERENCES experiments (id),
                experiment_id INTEGER NOT NULL REFERENCES schedules (experiment_id),
                fire_at_us    INTEGER NOT NULL
            ) STRICT;
            CREATE INDEX schedule_runs_by_schedule ON schedule_runs (experiment_id, fire_at_us);
        "#,
    },
    Migration {
        version: 4,
        name: "the audit log",
        // One row per operator call, allowed or denied (see `audit.rs`): written before the
        // call runs (outcome 'allowed'), then its outcome ('ok' or 'error'); a denied call is
        // one row with outcome 'denied'. Append-only: nothing deletes or rewrites a decision.
        sql: r#"
            CREATE TABLE audit_log (
                seq        INTEGER PRIMARY KEY AUTOINCREMENT,
                at_us      INTEGER NOT NULL,
                principal  TEXT    NOT NULL,
                action     TEXT    NOT NULL,
                target     TEXT,
                peer       TEXT,
                outcome    TEXT    NOT NULL
                    CHECK (outcome IN ('allowed', 'ok', 'denied', 'error')),
                detail     TEXT
            ) STRICT;
        "#,
    },
];

/// The version this binary brings a database to.
pub(crate) fn latest_version() -> u32 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}

/// Brings the database up to [`latest_version`]; a no-op on a database already there.
pub(crate) fn migrate(conn: &mut Connection) -> Result<u32, StoreError> {
    debug_assert!(
        MIGRATIONS
            .iter()
            .enumerate()
            .all(|(i, m)| m.version as usize == i + 1)
    );
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_version (
             version       INTEGER PRIMARY KEY,
             name          TEXT    NOT NULL,
             applied_at_us INTEGER NOT NULL
         ) STRICT;",
    )
    .during("creating the schema_version table")?;

    let found = current_version(conn)?;
    if found > latest_version() {
        return Err(StoreError::SchemaTooNew {
            found,
            supported: latest_version(),
        });
    }
    let applied_at_us = time::to_micros("migration time", SystemTime::now())?;
    for m in MIGRATIONS.iter().filter(|m| m.version > found) {
        let failed = |source| StoreError::Migration {
            version: m.version,
            name: m.name,
            source,
        };
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(failed)?;
        tx.execute_batch(m.sql).map_err(failed)?;
        tx.execute(
            "INSERT INTO schema_version (version, name, applied_at_us)
             VALUES (?1, ?2, ?3)",
            params![m.version, m.name, applied_at_us],
        )
        .map_err(failed)?;
        tx.commit().map_err(failed)?;
    }
    current_version(conn)
}

pub(crate) fn current_version(conn: &Connection) -> Result<u32, StoreError> {
    conn.query_row("SELECT MAX(version) FROM schema_version", [], |row| {
        row.get::<_, Option<u32>>(0)
    })
    .optional()
    .during("reading the schema version")
    .map(|v| v.flatten().unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn memory() -> Connection {
        let conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "foreign_keys", true).unwrap();
        conn
    }

    #[test]
    fn versions_are_numbered_from_one_without_gaps() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version as usize, i + 1, "migration {:?}", m.name);
        }
    }

    #[test]
    fn migrating_twice_applies_each_migration_once() {
        let mut conn = memory();
        assert_eq!(migrate(&mut conn).unwrap(), latest_version());
        assert_eq!(migrate(&mut conn).unwrap(), latest_version());
        let rows: u32 = conn
            .query_row("SELECT COUNT(*) FROM schema_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows as usize, MIGRATIONS.len());
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let mut conn = memory();
        migrate(&mut conn).unwrap();
        conn.execute(
            "INSERT INTO schema_version VALUES (?1, 'from the future', 0)",
            [latest_version() + 1],
        )
        .unwrap();
        let err = migrate(&mut conn).unwrap_err();
        assert!(
            matches!(err, StoreError::SchemaTooNew { found, supported }
                if found == latest_version() + 1 && supported == latest_version()),
            "{err}"
        );
    }

    #[test]
    fn the_state_reason_check_holds_in_sql_too() {
        let mut conn = memory();
        migrate(&mut conn).unwrap();
        let insert = |state: &str, reason: Option<&str>| {
            conn.execute(
                "INSERT INTO experiments
                 (name, spec_json, seed, state, state_reason, created_at_us, state_changed_at_us)
                 VALUES (?1, '{}', 0, ?2, ?3, 0, 0)",
                params![format!("{state}-{reason:?}"), state, reason],
            )
        };
        assert!(insert("aborted", Some("x")).is_ok());
        assert!(insert("aborted", None).is_err());
        assert!(insert("running", Some("x")).is_err());
        assert!(insert("paused", None).is_err());
    }
}
