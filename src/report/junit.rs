//! `--junit FILE`: JUnit XML, as CI systems read it. One `<testsuite>` per experiment; a
//! `<testcase>` per guard (fails when it tripped or refused the start), per phase (fails when
//! a guard tripped in it), for recovery (fails when the service did not recover in time) and
//! for the run (an error when it failed or an operator aborted it). Failures carry the numbers.

use std::fmt::Write;

use super::model::{Outcome, Report, threshold};
use super::{escape, millis, number};

/// A testcase's result.
enum Verdict {
    Pass,
    Failure(String, String),
    Error(String),
    Skipped(String),
}

struct Case {
    class: &'static str,
    name: String,
    verdict: Verdict,
}

pub fn render(report: &Report) -> String {
    let cases = cases(report);
    let count = |f: fn(&Verdict) -> bool| cases.iter().filter(|c| f(&c.verdict)).count();
    let failures = count(|v| matches!(v, Verdict::Failure(..)));
    let errors = count(|v| matches!(v, Verdict::Error(_)));
    let skipped = count(|v| matches!(v, Verdict::Skipped(_)));
    let time = report
        .timeline
        .iter()
        .filter_map(|e| e.at_ms)
        .max()
        .map_or(0.0, |ms| ms.max(0) as f64 / 1000.0);
    let name = escape(&report.name);
    let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        x,
        "<testsuites name=\"faultline\" tests=\"{}\" failures=\"{failures}\" errors=\"{errors}\" skipped=\"{skipped}\" time=\"{time}\">",
        cases.len()
    );
    let _ = writeln!(
        x,
        "  <testsuite name=\"experiment/{name}\" tests=\"{}\" failures=\"{failures}\" errors=\"{errors}\" skipped=\"{skipped}\" time=\"{time}\" timestamp=\"{}\">",
        cases.len(),
        escape(report.started_at.as_deref().unwrap_or_default()),
    );
    x.push_str("    <properties>\n");
    for (key, value) in [
        ("state", report.state.clone()),
        ("verdict", report.verdict.summary.clone()),
        ("seed", report.seed.to_string()),
        ("targets", report.targets.join(",")),
    ] {
        let _ = writeln!(
            x,
            "      <property name=\"{key}\" value=\"{}\"/>",
            escape(&value)
        );
    }
    x.push_str("    </properties>\n");
    for case in &cases {
        let open = format!(
            "    <testcase classname=\"{name}.{}\" name=\"{}\"",
            case.class,
            escape(&case.name)
        );
        match &case.verdict {
            Verdict::Pass => {
                let _ = writeln!(x, "{open}/>");
            }
            Verdict::Failure(message, body) => {
                let _ = writeln!(
                    x,
                    "{open}>\n      <failure message=\"{}\" type=\"{}\">{}</failure>\n    </testcase>",
                    escape(message),
                    case.class,
                    escape(body)
                );
            }
            Verdict::Error(message) => {
                let _ = writeln!(
                    x,
                    "{open}>\n      <error message=\"{}\"/>\n    </testcase>",
                    escape(message)
                );
            }
            Verdict::Skipped(message) => {
                let _ = writeln!(
                    x,
                    "{open}>\n      <skipped message=\"{}\"/>\n    </testcase>",
                    escape(message)
                );
            }
        }
    }
    x.push_str("  </testsuite>\n</testsuites>\n");
    x
}

fn cases(r: &Report) -> Vec<Case> {
    let mut cases = Vec::new();
    let ran = r.started_at.is_some();
    for g in &r.guards {
        let verdict = match &r.trip {
            Some(t) if g.tripped => Verdict::Failure(
                format!(
                    "guard {} tripped: value {} {} threshold {} for {}",
                    g.name,
                    number(t.value),
                    g.condition,
                    number(t.threshold),
                    millis(t.for_ms)
                ),
                trip_body(r, t),
            ),
            _ if g.refused_start => Verdict::Failure(
                format!(
                    "guard {} was breached before any fault (value {} {} threshold {})",
                    g.name,
                    g.last_value.map_or_else(|| "-".into(), number),
                    g.condition,
                    threshold(g)
                ),
                r.reason.clone(),
            ),
            _ if !ran => Verdict::Skipped("the experiment did not run".into()),
            _ => Verdict::Pass,
        };
        cases.push(Case {
            class: "guard",
            name: format!("guard {}", g.name),
            verdict,
        });
    }
    for p in &r.phases {
        let end = p.duration_ms.map_or(u64::MAX, |d| p.start_ms + d);
        let broke = r.trip.as_ref().filter(|t| {
            t.time_to_detect_ms
                .is_some_and(|ms| (p.start_ms..end).contains(&ms))
        });
        let verdict = match broke {
            Some(t) => Verdict::Failure(
                format!(
                    "guard {} tripped in phase {}: value {} threshold {}",
                    t.guard,
                    p.name,
                    number(t.value),
                    number(t.threshold)
                ),
                trip_body(r, t),
            ),
            None => Verdict::Pass,
        };
        cases.push(Case {
            class: "phase",
            name: format!("phase {} {}", p.index, p.name),
            verdict,
        });
    }
    let recovery = match &r.recovery {
        Some(rec) if rec.recovered => Verdict::Pass,
        Some(_) => Verdict::Failure(r.recovery_words(), recovery_body(r)),
        None if r.guards.is_empty() => Verdict::Skipped("no guards".into()),
        None => Verdict::Skipped("recovery was not observed".into()),
    };
    cases.push(Case {
        class: "recovery",
        name: "recovery".into(),
        verdict: recovery,
    });
    let run = match r.verdict.outcome {
        Outcome::Failed | Outcome::Stopped | Outcome::Unfinished => {
            Verdict::Error(r.verdict.summary.clone())
        }
        _ => Verdict::Pass,
    };
    cases.push(Case {
        class: "run",
        name: "run".into(),
        verdict: run,
    });
    cases
}

fn trip_body(r: &Report, t: &super::model::Trip) -> String {
    let mut body = t.reason.clone();
    if let Some(ms) = t.time_to_detect_ms {
        let _ = write!(body, "\ntime to detect: {}", millis(ms));
    }
    let _ = write!(body, "\n{}", r.recovery_words());
    body
}

fn recovery_body(r: &Report) -> String {
    let Some(rec) = &r.recovery else {
        return String::new();
    };
    let mut body = String::new();
    for (what, v) in [
        ("stable", rec.stable_ms),
        ("timeout", rec.timeout_ms),
        ("faults ended after", rec.faults_ended_ms),
    ] {
        if let Some(ms) = v {
            let _ = writeln!(body, "{what}: {}", millis(ms));
        }
    }
    for g in &r.guards {
        if let Some([t, v]) = g.series.last() {
            let _ = writeln!(
                body,
                "guard {}: last value {} at {} (threshold {})",
                g.name,
                number(*v),
                millis(*t as u64),
                threshold(g)
            );
        }
    }
    body
}
