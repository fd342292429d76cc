//! `--html FILE.html`: one self-contained page. The verdict on top, the run's facts, an SVG
//! chart per guard ([`super::chart`]), the faults' counters and the timeline. Inline CSS, no
//! script, no external reference: it opens from a CI artifact store as it is.

use std::fmt::Write;

use super::model::{Report, threshold};
use super::{chart, escape, millis};

const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:2em auto;max-width:760px;color:#222}\
h1{font-size:1.3em;padding:.5em .7em;border-radius:4px}\
h1.pass{background:#e3f4e1;color:#1d5e1a}h1.fail{background:#fbe3e1;color:#8a1c12}\
table{border-collapse:collapse;width:100%}td,th{text-align:left;padding:2px 8px 2px 0;vertical-align:top}\
dt{font-weight:600;float:left;width:9em}dd{margin:0 0 0 9em}\
.chart{display:block;margin:.5em 0 1.5em}.faults{fill:#f6d6d2}.phase{fill:#d9e6f6;opacity:.5}\
.phase.alt{fill:#c6d8f0}.axis{stroke:#888}.tick{font-size:11px;fill:#555}\
.threshold{stroke:#c0392b;stroke-dasharray:5 4}.series{fill:none;stroke:#1f5fa8;stroke-width:2}\
.mark{stroke-width:1.5}.end{stroke:#888}.trip{stroke:#c0392b}.abort{stroke:#7b1d12;stroke-dasharray:2 2}\
.recovered{stroke:#2e8b3a}.mark-label{font-size:11px;stroke:none;fill:#333}.empty{fill:#888}";

pub fn render(r: &Report) -> String {
    let mut h =
        String::from("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    let _ = writeln!(
        h,
        "<title>faultline: experiment/{}</title>\n<style>{STYLE}</style>\n</head>\n<body>",
        escape(&r.name)
    );
    let class = if r.verdict.outcome.passed() {
        "pass"
    } else {
        "fail"
    };
    let _ = writeln!(
        h,
        "<h1 class=\"{class}\">{}</h1>",
        escape(&r.verdict_line())
    );
    h.push_str("<dl>\n");
    let facts = [
        ("State", r.state.clone()),
        ("Reason", r.reason.clone()),
        ("Seed", r.seed.to_string()),
        ("Targets", r.targets.join(", ")),
        ("Started", r.started_at.clone().unwrap_or_default()),
        ("Ended", r.ended_at.clone().unwrap_or_default()),
        ("Duration", r.duration_ms.map(millis).unwrap_or_default()),
        ("Recovery", r.recovery_words()),
    ];
    for (name, value) in facts.iter().filter(|(_, v)| !v.is_empty()) {
        let _ = writeln!(h, "<dt>{name}</dt><dd>{}</dd>", escape(value));
    }
    h.push_str("</dl>\n");
    for g in &r.guards {
        let _ = writeln!(
            h,
            "<h2>guard {} <small>({}, {} {}, for {})</small></h2>\n{}",
            escape(&g.name),
            escape(&g.source),
            g.condition,
            threshold(g),
            millis(g.for_ms),
            chart::svg(r, g)
        );
    }
    if !r.rules.is_empty() || !r.unmatched.is_empty() {
        h.push_str("<h2>Faults</h2>\n<table>\n<tr><th>Route</th><th>Fault</th><th>Matched</th><th>Injected</th><th>Passed</th></tr>\n");
        for t in &r.rules {
            let _ = writeln!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(&t.route),
                escape(&t.fault),
                t.matched,
                t.injected,
                t.passed
            );
        }
        h.push_str("</table>\n");
        if !r.unmatched.is_empty() {
            let _ = writeln!(
                h,
                "<p>Matched no request or connection: {}</p>",
                escape(&r.unmatched.join(", "))
            );
        }
    }
    h.push_str("<h2>Timeline</h2>\n<table>\n<tr><th>At</th><th>+</th><th>Event</th></tr>\n");
    for e in &r.timeline {
        let offset = e
            .at_ms
            .filter(|ms| *ms >= 0)
            .map_or_else(String::new, |ms| millis(ms as u64));
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td>{offset}</td><td>{}</td></tr>",
            escape(&e.at),
            escape(&e.summary)
        );
    }
    h.push_str("</table>\n</body>\n</html>\n");
    h
}
