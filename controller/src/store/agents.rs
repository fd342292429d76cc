//! Agents the controller has seen: their labels, routes and version, and when.
//!
//! Each write is an fsync (see `mod.rs`), so record an agent when it says hello or changes,
//! not on every heartbeat: the live "last heartbeat" of ten thousand connected agents belongs
//! in memory, and this table answers "which agents have we ever seen, and as what".

use std::collections::BTreeMap;
use std::time::SystemTime;

use rusqlite::{Row, params};

use super::error::During;
use super::{Store, StoreError, time};

/// An agent as last recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentRecord {
    pub id: String,
    pub labels: BTreeMap<String, String>,
    /// The routes and their protocols, as the agent reported them.
    pub routes: serde_json::Value,
    pub version: String,
    pub first_seen: SystemTime,
    pub last_seen: SystemTime,
}

// === impl Store ===

impl Store {
    /// Inserts or updates an agent. A report older than the one stored (`at` before its
    /// `last_seen`) changes nothing, so reports that arrive out of order cannot roll an agent's
    /// labels back.
    pub fn record_agent_seen(
        &mut self,
        agent_id: &str,
        labels: &BTreeMap<String, String>,
        routes: &serde_json::Value,
        version: &str,
        at: SystemTime,
    ) -> Result<(), StoreError> {
        let at_us = time::to_micros("agent seen time", at)?;
        let labels: serde_json::Map<String, serde_json::Value> = labels
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().into()))
            .collect();
        // One statement is its own transaction: no explicit BEGIN needed.
        self.conn
            .prepare_cached(
                "INSERT INTO agents
                 (agent_id, labels_json, routes_json, version, first_seen_us, last_seen_us)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?5)
                 ON CONFLICT (agent_id) DO UPDATE SET
                     labels_json  = excluded.labels_json,
                     routes_json  = excluded.routes_json,
                     version      = excluded.version,
                     last_seen_us = excluded.last_seen_us
                 WHERE excluded.last_seen_us >= agents.last_seen_us",
            )
            .and_then(|mut stmt| {
                stmt.execute(params![
                    agent_id,
                    serde_json::Value::Object(labels).to_string(),
                    routes.to_string(),
                    version,
                    at_us
                ])
            })
            .during("recording an agent")?;
        Ok(())
    }

    /// Every agent ever recorded, by id.
    /// Moves `last seen` of the agents `ids` forward to `at`, in one transaction (the hub's
    /// periodic refresh of the agents connected to it; unknown ids are skipped).
    pub fn touch_agents(&mut self, ids: &[String], at: SystemTime) -> Result<(), StoreError> {
        let at_us = time::to_micros("agent seen time", at)?;
        let tx = self.write_tx("refreshing agents' last seen")?;
        {
            let mut stmt = tx
                .prepare_cached(
                    "UPDATE agents SET last_seen_us = ?1
                     WHERE agent_id = ?2 AND last_seen_us < ?1",
                )
                .during("refreshing agents' last seen")?;
            for id in ids {
                stmt.execute(params![at_us, id])
                    .during("refreshing agents' last seen")?;
            }
        }
        tx.commit().during("committing agents' last seen")?;
        Ok(())
    }

    pub fn agents(&self) -> Result<Vec<AgentRecord>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT agent_id, labels_json, routes_json, version, first_seen_us, last_seen_us
                 FROM agents ORDER BY agent_id",
            )
            .during("listing agents")?;
        let rows = stmt
            .query_map([], RawAgent::from_row)
            .during("listing agents")?;
        rows.map(|raw| raw.during("listing agents")?.decode())
            .collect()
    }
}

struct RawAgent {
    id: String,
    labels: String,
    routes: String,
    version: String,
    first_seen_us: i64,
    last_seen_us: i64,
}

impl RawAgent {
    fn from_row(row: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            id: row.get(0)?,
            labels: row.get(1)?,
            routes: row.get(2)?,
            version: row.get(3)?,
            first_seen_us: row.get(4)?,
            last_seen_us: row.get(5)?,
        })
    }

    fn decode(self) -> Result<AgentRecord, StoreError> {
        let corrupt = |what, e: serde_json::Error| StoreError::Corrupt {
            what,
            detail: format!("agent {:?}: {e}", self.id),
        };
        Ok(AgentRecord {
            labels: serde_json::from_str(&self.labels).map_err(|e| corrupt("agent labels", e))?,
            routes: serde_json::from_str(&self.routes).map_err(|e| corrupt("agent routes", e))?,
            first_seen: time::from_micros("agent first seen time", self.first_seen_us)?,
            last_seen: time::from_micros("agent last seen time", self.last_seen_us)?,
            id: self.id,
            version: self.version,
        })
    }
}
