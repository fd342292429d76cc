//! `faultline audit`: the controller's audit log as a table, JSON or YAML.

use faultline_proto::v1::AuditRecord;
use serde_json::json;

use super::args::Format;
use super::render::{document, time};
use crate::output::{self, Table};

/// Prints the records, oldest first.
pub fn render(records: &[AuditRecord], format: Format) -> anyhow::Result<()> {
    let at = |r: &AuditRecord| time(r.at.as_ref().map(|t| (t.seconds, t.nanos)));
    match format {
        Format::Table => {
            let mut t = Table::new(vec![
                "AT",
                "PRINCIPAL",
                "ACTION",
                "TARGET",
                "PEER",
                "OUTCOME",
                "DETAIL",
            ]);
            for r in records {
                let dash = |s: &str| {
                    if s.is_empty() {
                        "-".to_owned()
                    } else {
                        s.to_owned()
                    }
                };
                t.row(vec![
                    at(r),
                    r.principal.clone(),
                    r.action.clone(),
                    dash(&r.target),
                    dash(&r.peer),
                    r.outcome.clone(),
                    dash(&r.detail),
                ]);
            }
            output::table(&t)
        }
        _ => {
            let records: Vec<_> = records
                .iter()
                .map(|r| {
                    json!({
                        "sequence": r.sequence,
                        "at": at(r),
                        "principal": r.principal,
                        "action": r.action,
                        "target": r.target,
                        "peer": r.peer,
                        "outcome": r.outcome,
                        "detail": r.detail,
                    })
                })
                .collect();
            document(&json!({ "records": records }), format)
        }
    }
}
