//! `spec.schedule`: when an experiment runs by itself. An experiment with a schedule is a
//! template: `Start` arms the schedule, and at each fire time the controller creates and starts
//! a run, a copy of the template without `schedule` (see `crate::schedule`).
//!
//! ```yaml
//! schedule: {startAt: "2026-12-01T09:00:00Z"}      # once; a time in the past fires at once
//! schedule:
//!   cron: "0 9 * * 1-5"            # 5 fields: minute hour day-of-month month day-of-week
//!   timeZone: Europe/Berlin        # IANA name; default UTC
//!   concurrencyPolicy: Forbid      # default; Allow: a run may start while the last one runs
//!   historyLimit: 10               # default; finished runs kept, older ones deleted
//! ```
//!
//! `startAt` and `cron` are mutually exclusive; `concurrencyPolicy` and `historyLimit` only go
//! with `cron`. `spec.duration` stays each run's duration.

use std::str::FromStr;
use std::time::SystemTime;

use chrono::{DateTime, Utc};
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};

use super::document::{Fields, Node};
use super::error::{FieldPath, SpecError};

/// Finished runs of a cron schedule kept when `historyLimit` is left out.
pub const DEFAULT_HISTORY_LIMIT: u32 = 10;

/// Validated `spec.schedule`.
#[derive(Clone, Debug, PartialEq)]
pub enum Schedule {
    /// `startAt`: one run at this instant (at once if it has passed when armed).
    Once(SystemTime),
    /// Boxed: the parsed expression is large next to an instant.
    Cron(Box<CronSchedule>),
}

/// A recurring schedule: `cron` in `timeZone`.
#[derive(Clone, Debug, PartialEq)]
pub struct CronSchedule {
    /// The expression as written (5 fields).
    pub expression: String,
    pub cron: Cron,
    pub time_zone: chrono_tz::Tz,
    pub concurrency: ConcurrencyPolicy,
    /// Finished runs kept; older ones are deleted after each new run.
    pub history_limit: u32,
}

/// What happens when a fire time comes while the schedule's previous run is still running.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConcurrencyPolicy {
    /// The fire is skipped (and recorded on the template's timeline).
    Forbid,
    /// The new run starts anyway (the hub may still refuse it for overlapping faults).
    Allow,
}

impl ConcurrencyPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            ConcurrencyPolicy::Forbid => "Forbid",
            ConcurrencyPolicy::Allow => "Allow",
        }
    }
}

/// Reads `spec.schedule`.
pub(crate) fn parse(node: &Node, path: &FieldPath) -> Result<Schedule, SpecError> {
    let f = Fields::open(
        node,
        path,
        &[
            "startAt",
            "cron",
            "timeZone",
            "concurrencyPolicy",
            "historyLimit",
        ],
        &[],
    )?;
    match (f.get("startAt"), f.get("cron")) {
        (Some(at), None) => {
            for cron_only in ["timeZone", "concurrencyPolicy", "historyLimit"] {
                if let Some(n) = f.get(cron_only) {
                    return Err(SpecError::invalid(
                        f.path(cron_only),
                        n.field_loc(),
                        "only a cron schedule takes this field (startAt runs once)",
                    ));
                }
            }
            start_at(at, &f.path("startAt")).map(Schedule::Once)
        }
        (None, Some(cron)) => cron_schedule(&f, cron).map(|c| Schedule::Cron(Box::new(c))),
        (Some(_), Some(cron)) => Err(SpecError::invalid(
            f.path("cron"),
            cron.field_loc(),
            "startAt and cron are mutually exclusive: give one",
        )),
        (None, None) => Err(SpecError::invalid(
            path.clone(),
            node.field_loc(),
            "needs startAt (one run) or cron (recurring)",
        )),
    }
}

fn start_at(node: &Node, path: &FieldPath) -> Result<SystemTime, SpecError> {
    let s = node.str(path)?;
    DateTime::parse_from_rfc3339(s.trim())
        .map(|t| SystemTime::from(t.with_timezone(&Utc)))
        .map_err(|e| {
            SpecError::invalid(
                path.clone(),
                node.field_loc(),
                format!("{s:?} is not an RFC 3339 time such as \"2026-12-01T09:00:00Z\" ({e})"),
            )
        })
}

fn cron_schedule(f: &Fields<'_>, node: &Node) -> Result<CronSchedule, SpecError> {
    let path = f.path("cron");
    let expression = node.str(&path)?.trim();
    let cron = parse_cron(expression)
        .map_err(|m| SpecError::invalid(path.clone(), node.field_loc(), m))?;
    let time_zone = match f.get("timeZone") {
        Some(n) => {
            let p = f.path("timeZone");
            let name = n.str(&p)?;
            chrono_tz::Tz::from_str(name.trim()).map_err(|_| {
                SpecError::invalid(
                    p,
                    n.field_loc(),
                    format!("unknown time zone {name:?} (an IANA name such as \"Europe/Berlin\" or \"UTC\")"),
                )
            })?
        }
        None => chrono_tz::UTC,
    };
    let concurrency = match f.get("concurrencyPolicy") {
        Some(n) => {
            let p = f.path("concurrencyPolicy");
            match n.str(&p)? {
                "Forbid" => ConcurrencyPolicy::Forbid,
                "Allow" => ConcurrencyPolicy::Allow,
                other => {
                    return Err(SpecError::invalid(
                        p,
                        n.field_loc(),
                        format!("must be Forbid or Allow, got {other:?}"),
                    ));
                }
            }
        }
        None => ConcurrencyPolicy::Forbid,
    };
    let history_limit = match f.get("historyLimit") {
        Some(n) => {
            let p = f.path("historyLimit");
            u32::try_from(n.u64(&p)?)
                .map_err(|_| SpecError::invalid(p, n.field_loc(), "must be at most 4294967295"))?
        }
        None => DEFAULT_HISTORY_LIMIT,
    };
    Ok(CronSchedule {
        expression: expression.to_owned(),
        cron,
        time_zone,
        concurrency,
        history_limit,
    })
}

/// A 5-field expression (minute hour day-of-month month day-of-week), as crontab(5) has it.
fn parse_cron(expression: &str) -> Result<Cron, String> {
    let fields = expression.split_whitespace().count();
    if fields != 5 {
        return Err(format!(
            "{expression:?} has {fields} fields; a cron expression has 5: \
             minute hour day-of-month month day-of-week (e.g. \"0 9 * * 1-5\")"
        ));
    }
    CronParser::builder()
        .seconds(Seconds::Disallowed)
        .year(Year::Disallowed)
        .build()
        .parse(expression)
        .map_err(|e| format!("{expression:?} is not a valid cron expression ({e})"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Experiment;
    use crate::spec::error::ErrorKind;

    fn spec_with(schedule: &str) -> String {
        format!(
            "\
apiVersion: faultline.dev/v1alpha1
kind: Experiment
metadata: {{name: nightly}}
spec:
  targets: {{all: true}}
  faults: [{{route: r, type: down}}]
  duration: 1m
  schedule: {schedule}
"
        )
    }

    fn schedule(schedule: &str) -> Result<Option<Schedule>, SpecError> {
        Experiment::parse(&spec_with(schedule)).map(|e| e.schedule)
    }

    #[track_caller]
    fn error(schedule_text: &str, path: &str, message: &str) {
        let e = schedule(schedule_text).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Invalid, "{e}");
        assert_eq!(e.path.to_string(), path, "{e}");
        assert_eq!(e.location.map(|l| l.line), Some(8), "{e}");
        assert!(e.message.contains(message), "{e}");
    }

    #[test]
    fn a_cron_schedule_gets_its_defaults() {
        let Some(Schedule::Cron(c)) = schedule("{cron: \"*/5 * * * *\"}").unwrap() else {
            panic!("a cron schedule")
        };
        assert_eq!(c.expression, "*/5 * * * *");
        assert_eq!(c.time_zone, chrono_tz::UTC);
        assert_eq!(c.concurrency, ConcurrencyPolicy::Forbid);
        assert_eq!(c.history_limit, DEFAULT_HISTORY_LIMIT);

        let full = "{cron: \"0 9 * * 1-5\", timeZone: Europe/Berlin, concurrencyPolicy: Allow, historyLimit: 3}";
        let Some(Schedule::Cron(c)) = schedule(full).unwrap() else {
            panic!("a cron schedule")
        };
        assert_eq!(c.time_zone, chrono_tz::Europe::Berlin);
        assert_eq!(c.concurrency, ConcurrencyPolicy::Allow);
        assert_eq!(c.history_limit, 3);
    }

    #[test]
    fn start_at_is_an_rfc3339_instant() {
        let s = schedule("{startAt: \"2026-12-01T10:00:00+01:00\"}").unwrap();
        let want = DateTime::parse_from_rfc3339("2026-12-01T09:00:00Z").unwrap();
        assert_eq!(s, Some(Schedule::Once(SystemTime::from(want))));
        // In the past is allowed: it fires as soon as it is armed.
        assert!(schedule("{startAt: \"2001-01-01T00:00:00Z\"}").is_ok());
        assert_eq!(
            Experiment::parse(&spec_with("null")).unwrap().schedule,
            None
        );
    }

    #[test]
    fn errors_name_the_field() {
        error(
            "{startAt: tomorrow}",
            "spec.schedule.startAt",
            "not an RFC 3339 time",
        );
        error("{cron: \"* * *\"}", "spec.schedule.cron", "has 3 fields");
        error(
            "{cron: \"0 0 * * * *\"}",
            "spec.schedule.cron",
            "has 6 fields",
        );
        error(
            "{cron: \"61 * * * *\"}",
            "spec.schedule.cron",
            "not a valid cron expression",
        );
        error(
            "{cron: \"0 9 * * *\", timeZone: Mars/Olympus}",
            "spec.schedule.timeZone",
            "unknown time zone \"Mars/Olympus\"",
        );
        error(
            "{cron: \"0 9 * * *\", concurrencyPolicy: Replace}",
            "spec.schedule.concurrencyPolicy",
            "must be Forbid or Allow",
        );
        error(
            "{cron: \"0 9 * * *\", historyLimit: -1}",
            "spec.schedule.historyLimit",
            "non-negative integer",
        );
        error(
            "{cron: \"0 9 * * *\", startAt: \"2026-12-01T09:00:00Z\"}",
            "spec.schedule.cron",
            "mutually exclusive",
        );
        error(
            "{startAt: \"2026-12-01T09:00:00Z\", historyLimit: 2}",
            "spec.schedule.historyLimit",
            "only a cron schedule",
        );
        error("{}", "spec.schedule", "needs startAt");
        error("{every: 5m}", "spec.schedule.every", "unknown field");
    }
}
