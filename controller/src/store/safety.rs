//! The emergency stop, kept in the store so it survives a controller restart: while a row is
//! there, no experiment may start.

use std::time::SystemTime;

use rusqlite::{OptionalExtension, params};

use super::error::During;
use super::{Store, StoreError, time};

/// An emergency stop in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmergencyStop {
    pub reason: String,
    pub since: SystemTime,
}

impl Store {
    /// The stop in force, if any.
    pub fn emergency_stop(&self) -> Result<Option<EmergencyStop>, StoreError> {
        let row = self
            .conn
            .prepare_cached("SELECT reason, since_us FROM emergency_stop WHERE id = 1")
            .and_then(|mut stmt| {
                stmt.query_row([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
                    .optional()
            })
            .during("reading the emergency stop")?;
        row.map(|(reason, since_us)| {
            Ok(EmergencyStop {
                reason,
                since: time::from_micros("emergency stop time", since_us)?,
            })
        })
        .transpose()
    }

    /// Puts a stop in force; one already in force is kept as it is. Answers the stop in force.
    pub fn set_emergency_stop(
        &mut self,
        reason: &str,
        at: SystemTime,
    ) -> Result<EmergencyStop, StoreError> {
        let at_us = time::to_micros("emergency stop time", at)?;
        let tx = self.write_tx("setting the emergency stop")?;
        tx.execute(
            "INSERT INTO emergency_stop (id, reason, since_us) VALUES (1, ?1, ?2)
             ON CONFLICT (id) DO NOTHING",
            params![reason, at_us],
        )
        .during("setting the emergency stop")?;
        tx.commit().during("committing the emergency stop")?;
        Ok(self
            .emergency_stop()?
            .expect("the row was just written or already there"))
    }

    /// Lifts the stop; answers whether one was in force.
    pub fn clear_emergency_stop(&mut self) -> Result<bool, StoreError> {
        let tx = self.write_tx("lifting the emergency stop")?;
        let n = tx
            .execute("DELETE FROM emergency_stop WHERE id = 1", [])
            .during("lifting the emergency stop")?;
        tx.commit().during("committing the lifted stop")?;
        Ok(n > 0)
    }
}
