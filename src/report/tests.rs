//! The report model from a made-up timeline, and what each format makes of it.

use faultline_proto::prost_types::Timestamp;
use faultline_proto::v1::{
    Experiment, ExperimentEvent, ExperimentEventKind as Kind, ExperimentResult, ExperimentState,
    GuardTrip, RecoveryState,
};
use serde_json::json;

use super::{Outcome, Report, escape, html, json, junit, millis, number};

const SPEC: &str = r#"{"spec":{"duration":"5m","guards":[
  {"name":"errors","agents":{"route":"api"},"above":0.05,"window":"10s","for":"2s"},
  {"name":"health","probe":{"url":"http://h/","failures":3},"for":"0s"}]}}"#;

fn event(
    sequence: u64,
    at: i64,
    kind: Kind,
    state: ExperimentState,
    detail: serde_json::Value,
) -> ExperimentEvent {
    ExperimentEvent {
        experiment: "x<y".into(),
        sequence,
        at: Some(Timestamp {
            seconds: at,
            nanos: 0,
        }),
        kind: kind as i32,
        detail_json: detail.to_string(),
        state: state as i32,
    }
}

/// Tripped by `errors` at 3 s, then not recovered: `errors` still breached at 0.3.
fn tripped_and_sick() -> Report {
    use ExperimentState::{Aborted, Running};
    let exp = Experiment {
        name: "x<y".into(),
        spec: SPEC.into(),
        state: Aborted as i32,
        reason: "guard errors (value 0.61 > threshold 0.05 for 2s)".into(),
        seed: 7,
        targets: vec!["agent-a".into()],
        started_at: Some(Timestamp {
            seconds: 100,
            nanos: 0,
        }),
        result: Some(ExperimentResult {
            trip: Some(GuardTrip {
                guard: "errors".into(),
                ..Default::default()
            }),
            recovery: RecoveryState::NotRecovered as i32,
            ..Default::default()
        }),
        ..Default::default()
    };
    let events = [
        event(
            1,
            99,
            Kind::TargetsChosen,
            ExperimentState::Pending,
            json!({"agents": ["agent-a"]}),
        ),
        event(
            2,
            100,
            Kind::Started,
            Running,
            json!({"from": "pending", "to": "running"}),
        ),
        event(
            3,
            103,
            Kind::GuardTripped,
            Running,
            json!({"guard": "errors", "source": "agents",
            "value": 0.61, "threshold": 0.05, "for_ms": 2000, "time_to_detect_ms": 3000,
            "reason": "guard errors (value 0.61 > threshold 0.05 for 2s)"}),
        ),
        event(
            4,
            103,
            Kind::Aborted,
            Aborted,
            json!({"reason": "guard errors"}),
        ),
        event(
            5,
            123,
            Kind::Recovery,
            Aborted,
            json!({"recovered": false, "timeout_ms": 20000,
            "stable_ms": 5000, "faults_ended_ms": 3000,
            "series": {"errors": [[0, 0.01], [3000, 0.61], [20000, 0.3]], "health": []},
            "guards": [{"guard": "errors", "state": "breached", "value": 0.3, "threshold": 0.05},
                       {"guard": "health", "state": "ok", "value": 0.0, "threshold": 2.0}]}),
        ),
    ];
    Report::build(&exp, &events)
}

#[test]
fn a_trip_without_recovery_says_both() {
    let r = tripped_and_sick();
    assert_eq!(r.verdict.outcome, Outcome::TrippedNotRecovered);
    assert_eq!(crate::run::exit_code(r.verdict.outcome), 3);
    assert_eq!(
        r.verdict_line(),
        "experiment/x<y aborted by guard errors (value 0.61 > threshold 0.05 for 2s, 3s after \
         the faults started) and not recovered within 20s: errors breached (value 0.3 > 0.05)"
    );
    assert_eq!(
        r.guards[1].threshold,
        Some(2.0),
        "a probe's threshold is failures - 1"
    );
    assert_eq!(r.guards[0].series.len(), 3);
    assert_eq!(r.timeline[2].at_ms, Some(3000));
    assert_eq!(r.timeline[1].summary, "started: targets agent-a");
}

#[test]
fn junit_fails_the_tripped_guard_and_recovery_with_their_numbers() {
    let xml = junit::render(&tripped_and_sick());
    assert!(
        xml.contains("<testsuite name=\"experiment/x&lt;y\" tests=\"4\" failures=\"2\""),
        "{xml}"
    );
    assert!(
        xml.contains("message=\"guard errors tripped: value 0.61 above threshold 0.05 for 2s\""),
        "{xml}"
    );
    assert!(
        xml.contains("<testcase classname=\"x&lt;y.guard\" name=\"guard health\"/>"),
        "{xml}"
    );
    assert!(
        xml.contains("guard errors: last value 0.3 at 20s (threshold 0.05)"),
        "{xml}"
    );
}

#[test]
fn html_has_a_chart_per_guard_and_escapes_text() {
    let page = html::render(&tripped_and_sick());
    assert_eq!(page.matches("<svg").count(), 2);
    assert!(page.contains("no samples recorded"), "health has no series");
    assert!(page.contains("experiment/x&lt;y aborted by guard"));
    assert!(!page.contains("x<y"));
    let doc = json::render(&tripped_and_sick());
    let v: serde_json::Value = serde_json::from_str(&doc).unwrap();
    assert_eq!(v["verdict"]["outcome"], "tripped_not_recovered");
}

#[test]
fn outcomes_map_to_the_documented_exit_codes() {
    use crate::run::exit_code;
    assert_eq!(exit_code(Outcome::Passed), 0);
    assert_eq!(exit_code(Outcome::Tripped), 3);
    assert_eq!(exit_code(Outcome::NotRecovered), 4);
    for o in [Outcome::Failed, Outcome::Stopped, Outcome::Unfinished] {
        assert_eq!(exit_code(o), 1);
    }
}

#[test]
fn markup_is_escaped_and_control_characters_dropped() {
    assert_eq!(
        escape("<a href=\"x\">&'\u{1}</a>"),
        "&lt;a href=&quot;x&quot;&gt;&amp;&apos;&lt;/a&gt;"
    );
}

#[test]
fn numbers_and_durations_read_short() {
    assert_eq!(number(0.61), "0.61");
    assert_eq!(number(2.0), "2");
    assert_eq!(number(0.123456), "0.1235");
    assert_eq!(millis(350), "350ms");
    assert_eq!(millis(1200), "1.2s");
    assert_eq!(millis(125_000), "2m5s");
}

#[test]
fn schedule_events_are_told_in_words() {
    use super::timeline::Narrator;
    let mut n = Narrator::default();
    let fired = event(
        2,
        10,
        Kind::ScheduleFired,
        ExperimentState::Running,
        json!({"fireAt": "2026-03-02T09:10:00.000Z", "run": "gd-202603020910",
               "nextFire": "2026-03-09T09:10:00.000Z"}),
    );
    assert_eq!(
        n.line(&fired),
        "schedule fired for 2026-03-02T09:10:00.000Z: run gd-202603020910; \
         next fire 2026-03-09T09:10:00.000Z"
    );
    let skipped = event(
        3,
        11,
        Kind::ScheduleSkipped,
        ExperimentState::Running,
        json!({"fireAt": "2026-03-09T09:10:00.000Z", "reason": "a run is still going",
               "nextFire": null}),
    );
    assert_eq!(
        n.line(&skipped),
        "schedule fire for 2026-03-09T09:10:00.000Z skipped: a run is still going; \
         no further fire"
    );
}
