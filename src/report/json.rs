//! `--report FILE.json`: the report model as JSON (camelCase keys, times in RFC 3339, offsets in
//! ms: series from the fault start, timeline from the experiment's start).

use super::Report;

pub fn render(report: &Report) -> String {
    let mut text =
        serde_json::to_string_pretty(report).expect("the report model serializes to JSON");
    text.push('\n');
    text
}
