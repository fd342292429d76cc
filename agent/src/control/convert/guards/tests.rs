use faultline_proto::prost_types;

use super::*;
use crate::fault::{FaultKind, Origin};
use crate::route::DesiredState;

fn secs(seconds: i64, nanos: i32) -> Option<prost_types::Duration> {
    Some(prost_types::Duration { seconds, nanos })
}

fn abort(route: &str, name: &str) -> v1::FaultSpec {
    v1::FaultSpec {
        name: name.into(),
        route: route.into(),
        experiment: "exp".into(),
        direction: 0,
        probability: None,
        r#match: None,
        cohort: None,
        kind: Some(v1::fault_spec::Kind::HttpAbort(v1::HttpAbort {
            status: 503,
            body: String::new(),
            headers: Default::default(),
        })),
    }
}

fn guard() -> v1::LocalGuard {
    v1::LocalGuard {
        name: "errors".into(),
        experiment: "exp".into(),
        route: "api".into(),
        metric: Some(v1::GuardMetric {
            kind: Some(Kind::ErrorRate(v1::ErrorRate {
                grpc_codes: vec![14, 4],
            })),
        }),
        comparison: v1::Comparison::Above as i32,
        threshold: 0.05,
        window: secs(1, 0),
        hold: secs(0, 200_000_000),
        min_requests: 10,
        trip_on_no_data: false,
        faults: vec![v1::FaultRef {
            route: "api".into(),
            name: "abort".into(),
        }],
    }
}

fn desired(guards: Vec<v1::LocalGuard>) -> v1::DesiredState {
    v1::DesiredState {
        generation: 4,
        lease: secs(60, 0),
        faults: vec![abort("api", "abort"), abort("api", "other")],
        heartbeat_interval: None,
        local_guards: guards,
    }
}

#[test]
fn a_guard_converts_and_round_trips() {
    let d = DesiredState::try_from(desired(vec![guard()])).expect("valid");
    assert_eq!(d.guards.len(), 1);
    let g = &d.guards[0];
    assert_eq!(
        g.metric,
        GuardMetric::ErrorRate {
            grpc_codes: GrpcCodes::from_codes(&[4, 14]).unwrap()
        }
    );
    assert_eq!(g.comparison, Comparison::Above);
    assert_eq!(
        (g.window, g.hold),
        (Duration::from_secs(1), Duration::from_millis(200))
    );
    assert_eq!(g.min_requests, 10);
    let back = v1::DesiredState::from(&d);
    let mut want = guard();
    if let Some(v1::GuardMetric {
        kind: Some(Kind::ErrorRate(e)),
    }) = &mut want.metric
    {
        e.grpc_codes = vec![4, 14]; // sorted on the way back
    }
    assert_eq!(back.local_guards, vec![want]);
    assert!(matches!(d.faults[0].1.kind, FaultKind::HttpAbort(_)));
    assert!(matches!(d.faults[0].1.origin, Origin::Controller { .. }));
}

#[test]
fn every_metric_round_trips() {
    for kind in [
        Kind::ErrorRate(v1::ErrorRate { grpc_codes: vec![] }),
        Kind::LatencyQuantile(0.99),
        Kind::RequestRate(v1::RequestRate {}),
    ] {
        let mut g = guard();
        g.metric = Some(v1::GuardMetric { kind: Some(kind) });
        g.threshold = 0.5;
        g.hold = None;
        let domain = LocalGuard::try_from(g.clone()).expect("valid");
        assert_eq!(v1::LocalGuard::from(&domain), g);
    }
}

#[test]
fn errors_name_the_field() {
    type Edit = fn(&mut v1::LocalGuard);
    let cases: [(Edit, &str, &str); 14] = [
        (|g| g.name.clear(), "local_guards[1].name", "missing"),
        (
            |g| g.experiment.clear(),
            "local_guards[1].experiment",
            "missing",
        ),
        (|g| g.route.clear(), "local_guards[1].route", "missing"),
        (|g| g.metric = None, "local_guards[1].metric", "missing"),
        (
            |g| g.metric = Some(v1::GuardMetric { kind: None }),
            "local_guards[1].metric.kind",
            "exactly one",
        ),
        (
            |g| {
                g.metric = Some(v1::GuardMetric {
                    kind: Some(Kind::ErrorRate(v1::ErrorRate {
                        grpc_codes: vec![14, 17],
                    })),
                })
            },
            "local_guards[1].metric.error_rate.grpc_codes[1]",
            "got 17",
        ),
        (
            |g| {
                g.metric = Some(v1::GuardMetric {
                    kind: Some(Kind::LatencyQuantile(1.0)),
                })
            },
            "local_guards[1].metric.latency_quantile",
            "got 1",
        ),
        (
            |g| g.comparison = 0,
            "local_guards[1].comparison",
            "COMPARISON_ABOVE",
        ),
        (
            |g| g.threshold = f64::NAN,
            "local_guards[1].threshold",
            "finite",
        ),
        (|g| g.threshold = 2.0, "local_guards[1].threshold", "ratio"),
        (
            |g| g.window = secs(0, 0),
            "local_guards[1].window",
            "must be longer than zero",
        ),
        (|g| g.hold = secs(-1, 0), "local_guards[1].hold", "negative"),
        (
            |g| g.faults[0].name = "nope".into(),
            "local_guards[1].faults[0]",
            "no fault named \"nope\"",
        ),
        (
            |g| g.faults.clear(),
            "local_guards[1].faults",
            "at least one",
        ),
    ];
    for (edit, path, text) in cases {
        let mut other = guard();
        other.name = "other".into();
        let mut bad = guard();
        edit(&mut bad);
        let err = DesiredState::try_from(desired(vec![other, bad])).unwrap_err();
        assert_eq!(err.path, path, "{err}");
        assert!(err.message.contains(text), "{err} should mention {text:?}");
    }
    let err = DesiredState::try_from(desired(vec![guard(), guard()])).unwrap_err();
    assert_eq!(
        err.to_string(),
        "local_guards[1].name: experiment \"exp\" has two local guards named \"errors\""
    );
    assert_eq!(
        DesiredState::try_from(desired(vec![{
            let mut g = guard();
            g.window = None;
            g
        }]))
        .unwrap_err()
        .to_string(),
        "local_guards[0].window: missing required field"
    );
}

#[test]
fn a_trip_goes_out_whole() {
    let at = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let t = Trip {
        guard: crate::guard::GuardKey {
            experiment: "exp".into(),
            name: "errors".into(),
        },
        value: 0.5,
        threshold: 0.05,
        breached_at: at,
        tripped_at: at + Duration::from_millis(200),
        cleared_at: at + Duration::from_millis(201),
        cleared_faults: 2,
        generation: 4,
    };
    let m = v1::LocalGuardTrip::from(&t);
    assert_eq!((m.experiment.as_str(), m.guard.as_str()), ("exp", "errors"));
    assert_eq!(
        (m.value, m.threshold, m.cleared_faults, m.generation),
        (0.5, 0.05, 2, 4)
    );
    assert_eq!(m.tripped_at.unwrap().nanos, 200_000_000);
    assert_eq!(m.cleared_at.unwrap().seconds, 1_700_000_000);
}
