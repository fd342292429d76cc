//! The audit log: who called which operator action, on what, when, from where, and how it
//! ended. Rows are appended; only an `allowed` row's outcome is later set, once.

use std::time::SystemTime;

use rusqlite::params;

use super::error::During;
use super::{Store, StoreError, time};

/// How an audited call ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuditOutcome {
    /// Authenticated and running (the row is written before the call changes anything).
    Allowed,
    /// Authenticated, and the call succeeded.
    Ok,
    /// Refused before it ran: no credentials, wrong ones, or the wrong role.
    Denied,
    /// Authenticated, and the call failed (the detail holds its status).
    Error,
}

impl AuditOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditOutcome::Allowed => "allowed",
            AuditOutcome::Ok => "ok",
            AuditOutcome::Denied => "denied",
            AuditOutcome::Error => "error",
        }
    }

    fn parse(s: &str) -> Option<AuditOutcome> {
        [
            AuditOutcome::Allowed,
            AuditOutcome::Ok,
            AuditOutcome::Denied,
            AuditOutcome::Error,
        ]
        .into_iter()
        .find(|o| o.as_str() == s)
    }
}

/// One audited call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditEntry {
    /// Its sequence number (0 before it is stored).
    pub seq: i64,
    pub at: SystemTime,
    /// `token:NAME`, `operator:NAME`, `agent:NAME`, or `anonymous`.
    pub principal: String,
    /// The gRPC method, e.g. `ExperimentService/Create`.
    pub action: String,
    /// The experiment named, when the call names one.
    pub target: Option<String>,
    /// The caller's address.
    pub peer: Option<String>,
    pub outcome: AuditOutcome,
    pub detail: Option<String>,
}

impl Store {
    /// Appends `entry`; answers its sequence number.
    pub fn append_audit(&mut self, entry: &AuditEntry) -> Result<i64, StoreError> {
        let at_us = time::to_micros("audit time", entry.at)?;
        let tx = self.write_tx("appending to the audit log")?;
        tx.execute(
            "INSERT INTO audit_log (at_us, principal, action, target, peer, outcome, detail)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                at_us,
                entry.principal,
                entry.action,
                entry.target,
                entry.peer,
                entry.outcome.as_str(),
                entry.detail
            ],
        )
        .during("appending to the audit log")?;
        let seq = tx.last_insert_rowid();
        tx.commit().during("committing the audit log")?;
        Ok(seq)
    }

    /// Records how the allowed call `seq` ended; a target learnt from its answer (Create's
    /// experiment name) fills an empty one. Rows already finished are left as they are.
    pub fn finish_audit(
        &mut self,
        seq: i64,
        outcome: AuditOutcome,
        target: Option<String>,
        detail: Option<String>,
    ) -> Result<(), StoreError> {
        let tx = self.write_tx("finishing an audit row")?;
        tx.execute(
            "UPDATE audit_log SET outcome = ?2, target = COALESCE(target, ?3),
                 detail = COALESCE(?4, detail)
             WHERE seq = ?1 AND outcome = 'allowed'",
            params![seq, outcome.as_str(), target, detail],
        )
        .during("finishing an audit row")?;
        tx.commit().during("committing the audit log")?;
        Ok(())
    }

    /// The last `limit` rows, oldest first.
    pub fn audit_log(&self, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT seq, at_us, principal, action, target, peer, outcome, detail
                 FROM (SELECT * FROM audit_log ORDER BY seq DESC LIMIT ?1) ORDER BY seq",
            )
            .during("reading the audit log")?;
        let rows = stmt
            .query_map([limit], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, Option<String>>(4)?,
                    r.get::<_, Option<String>>(5)?,
                    r.get::<_, String>(6)?,
                    r.get::<_, Option<String>>(7)?,
                ))
            })
            .during("reading the audit log")?
            .collect::<Result<Vec<_>, _>>()
            .during("reading the audit log")?;
        rows.into_iter()
            .map(
                |(seq, at_us, principal, action, target, peer, outcome, detail)| {
                    Ok(AuditEntry {
                        seq,
                        at: time::from_micros("audit time", at_us)?,
                        principal,
                        action,
                        target,
                        peer,
                        // The CHECK constraint admits only the four names.
                        outcome: AuditOutcome::parse(&outcome).unwrap_or(AuditOutcome::Error),
                        detail,
                    })
                },
            )
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn an_allowed_row_gets_its_outcome_once() {
        let dir = std::env::temp_dir().join(format!(
            "faultline-audit-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let mut store = Store::open(&dir).unwrap();
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let entry = AuditEntry {
            seq: 0,
            at,
            principal: "token:ci".into(),
            action: "ExperimentService/Create".into(),
            target: None,
            peer: Some("127.0.0.1:5000".into()),
            outcome: AuditOutcome::Allowed,
            detail: None,
        };
        let seq = store.append_audit(&entry).unwrap();
        store
            .finish_audit(seq, AuditOutcome::Ok, Some("exp-1".into()), None)
            .unwrap();
        store
            .finish_audit(seq, AuditOutcome::Error, None, Some("late".into()))
            .unwrap();
        let log = store.audit_log(10).unwrap();
        assert_eq!(log.len(), 1);
        assert_eq!(log[0].seq, seq);
        assert_eq!(log[0].outcome, AuditOutcome::Ok);
        assert_eq!(log[0].target.as_deref(), Some("exp-1"));
        assert_eq!(log[0].detail, None);
        assert_eq!(log[0].at, at);
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
