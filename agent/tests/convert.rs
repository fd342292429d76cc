//! The wire <-> domain conversions of `control::convert`: every fault kind round-trips, every
//! validation rule of the admin API is enforced on the wire with the `.proto` field path named,
//! desired states need a lease, and SLI snapshots survive the trip and merge.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use faultline_agent::app::Agent;
use faultline_agent::config::AgentConfig;
use faultline_agent::control::convert::{ConvertError, RouteFault, fault_spec};
use faultline_agent::fault::http::matcher::{
    DestinationMatch, GrpcSelector, HeaderCond, HeaderMatch, StrMatch,
};
use faultline_agent::fault::http::{
    Abort, Cohort, Delay, DelayPhase, GrpcAbort, GrpcStream, HttpReset, RequestMatch, ResetPhase,
    StreamAction, Throttle,
};
use faultline_agent::fault::partition::{PartitionAction, PartitionPeer};
use faultline_agent::fault::{
    Bandwidth, Direction, Down, Fault, FaultKind, KindTag, Latency, LimitData, Origin, Partition,
    Probability, ResetPeer, Slicer, SlowClose, Timeout,
};
use faultline_agent::metrics::histogram::HistogramSnapshot;
use faultline_agent::metrics::http::{HttpMetrics, SliSnapshot};
use faultline_agent::route::{DesiredState, Protocol, RouteSpec, Upstream};
use faultline_proto::prost_types;
use faultline_proto::v1::{self, fault_spec::Kind};
use http::{HeaderName, HeaderValue, Method, StatusCode};
use regex::Regex;

const ROUTE: &str = "web";

// === support ===

fn fault(name: &str, kind: FaultKind) -> Fault {
    Fault {
        name: name.into(),
        kind,
        direction: Direction::Both,
        toxicity: Probability::ALWAYS,
        matcher: None,
        cohort: None,
        expires_at: None,
        origin: Origin::Controller {
            experiment: "checkout-latency".into(),
        },
    }
}

/// A request-level fault with a matcher using every kind of condition, and a cohort.
fn selective(name: &str, kind: FaultKind) -> Fault {
    Fault {
        toxicity: Probability::new(0.25).unwrap(),
        direction: Direction::Downstream,
        matcher: Some(Arc::new(RequestMatch {
            methods: vec![Method::GET, Method::POST],
            path: Some(StrMatch::Regex(Regex::new("^/api/v[0-9]+/").unwrap())),
            grpc: Some(GrpcSelector {
                service: "pkg.Echo".into(),
                method: Some("Say".into()),
            }),
            headers: vec![
                HeaderMatch {
                    name: HeaderName::from_static("x-user"),
                    cond: HeaderCond::Value(StrMatch::Prefix("u-".into())),
                },
                HeaderMatch {
                    name: HeaderName::from_static("x-canary"),
                    cond: HeaderCond::Present,
                },
                HeaderMatch {
                    name: HeaderName::from_static("x-skip"),
                    cond: HeaderCond::Absent,
                },
                HeaderMatch {
                    name: HeaderName::from_static("x-tenant"),
                    cond: HeaderCond::Value(StrMatch::Exact("acme".into())),
                },
            ],
            authority: Some(StrMatch::Exact("api.local".into())),
            destination: Some(DestinationMatch {
                destinations: vec![
                    "10.0.0.0/8".parse().unwrap(),
                    "192.0.2.7/32".parse().unwrap(),
                    "2001:db8::/32".parse().unwrap(),
                ],
                ports: vec![6379],
            }),
        })),
        cohort: Some(Cohort {
            header: HeaderName::from_static("x-user"),
            seed: 42,
        }),
        ..fault(name, kind)
    }
}

/// One valid fault of every kind, in domain form (as the admin API or the wire would produce).
fn every_kind() -> Vec<Fault> {
    vec![
        Fault {
            direction: Direction::Upstream,
            toxicity: Probability::new(0.5).unwrap(),
            ..fault(
                "latency",
                FaultKind::Latency(Latency {
                    latency: Duration::from_millis(100),
                    jitter: Duration::from_millis(10),
                }),
            )
        },
        fault(
            "bandwidth",
            FaultKind::Bandwidth(Bandwidth {
                bytes_per_sec: 64_000,
            }),
        ),
        fault(
            "slicer",
            FaultKind::Slicer(Slicer {
                average_size: 64,
                size_variation: 32,
                delay: Duration::from_micros(10),
            }),
        ),
        fault(
            "slow_close",
            FaultKind::SlowClose(SlowClose {
                delay: Duration::from_millis(250),
            }),
        ),
        fault(
            "timeout",
            FaultKind::Timeout(Timeout {
                timeout: Duration::from_secs(2),
            }),
        ),
        fault(
            "reset_peer",
            FaultKind::ResetPeer(ResetPeer {
                timeout: Duration::ZERO,
            }),
        ),
        fault(
            "limit_data",
            FaultKind::LimitData(LimitData { bytes: 1234 }),
        ),
        Fault {
            toxicity: Probability::new(0.0).unwrap(),
            ..fault("down", FaultKind::Down(Down))
        },
        fault(
            "partition",
            FaultKind::Partition(Partition {
                cidrs: vec!["127.0.0.2/32".parse().unwrap(), "::1/128".parse().unwrap()],
                peer: PartitionPeer::Upstream,
                action: PartitionAction::Blackhole,
            }),
        ),
        selective(
            "http_abort",
            FaultKind::HttpAbort(Abort {
                status: StatusCode::SERVICE_UNAVAILABLE,
                body: Bytes::from_static("down for maintenance é".as_bytes()),
                // The wire carries a map: the domain gets the headers sorted by name.
                headers: vec![
                    (
                        HeaderName::from_static("content-type"),
                        HeaderValue::from_static("text/plain"),
                    ),
                    (
                        HeaderName::from_static("retry-after"),
                        HeaderValue::from_static("5"),
                    ),
                ],
            }),
        ),
        selective(
            "http_delay",
            FaultKind::HttpDelay(Delay {
                delay: Latency {
                    latency: Duration::from_millis(300),
                    jitter: Duration::from_millis(50),
                },
                phase: DelayPhase::Response,
            }),
        ),
        selective(
            "http_throttle",
            FaultKind::HttpThrottle(Throttle {
                bytes_per_sec: 1500,
            }),
        ),
        selective(
            "http_reset",
            FaultKind::HttpReset(HttpReset {
                phase: ResetPhase::MidResponse { after_bytes: 4096 },
            }),
        ),
        fault(
            "grpc_abort",
            FaultKind::GrpcAbort(GrpcAbort {
                code: 14,
                message: "injected: 100% unavailable".into(),
            }),
        ),
        fault(
            "grpc_stream",
            FaultKind::GrpcStream(GrpcStream {
                after_messages: Some(3),
                after: Some(Duration::from_millis(500)),
                action: Some(StreamAction::Status {
                    code: 4,
                    message: "deadline".into(),
                }),
                message_delay: Duration::from_millis(20),
            }),
        ),
    ]
}

fn convert(spec: v1::FaultSpec) -> Result<RouteFault, ConvertError> {
    RouteFault::try_from(spec)
}

/// A valid spec of `kind` (request-level kinds get no match), for the rule tests to break.
fn spec(kind: Kind) -> v1::FaultSpec {
    v1::FaultSpec {
        name: "f".into(),
        route: ROUTE.into(),
        experiment: "exp".into(),
        direction: v1::Direction::Unspecified as i32,
        probability: None,
        r#match: None,
        cohort: None,
        kind: Some(kind),
    }
}

fn rejects(spec: v1::FaultSpec, path: &str) -> ConvertError {
    let shown = format!("{spec:?}");
    let err = convert(spec).expect_err(&shown);
    assert_eq!(err.path, path, "{shown}: {err}");
    assert!(err.to_string().starts_with(&format!("{path}: ")), "{err}");
    err
}

fn abort(status: u32) -> Kind {
    Kind::HttpAbort(v1::HttpAbort {
        status,
        ..Default::default()
    })
}

fn with_match(kind: Kind, m: v1::RequestMatch) -> v1::FaultSpec {
    v1::FaultSpec {
        r#match: Some(m),
        ..spec(kind)
    }
}

fn path_match(kind: Option<v1::str_match::Kind>) -> v1::RequestMatch {
    v1::RequestMatch {
        path: Some(v1::StrMatch { kind }),
        ..Default::default()
    }
}

fn header_match(name: &str, condition: Option<v1::header_match::Condition>) -> v1::RequestMatch {
    v1::RequestMatch {
        headers: vec![v1::HeaderMatch {
            name: name.into(),
            condition,
        }],
        ..Default::default()
    }
}

fn grpc_match(service: &str, method: &str) -> v1::RequestMatch {
    v1::RequestMatch {
        grpc: Some(v1::GrpcSelector {
            service: service.into(),
            method: method.into(),
        }),
        ..Default::default()
    }
}

fn destination_match(destinations: &[&str], ports: &[u32]) -> v1::RequestMatch {
    v1::RequestMatch {
        destination: Some(v1::DestinationMatch {
            destinations: destinations.iter().map(|d| d.to_string()).collect(),
            ports: ports.to_vec(),
        }),
        ..Default::default()
    }
}

fn lease(seconds: i64) -> Option<prost_types::Duration> {
    Some(prost_types::Duration { seconds, nanos: 0 })
}

// === faults ===

#[test]
fn every_kind_round_trips_domain_to_wire_to_domain() {
    let faults = every_kind();
    let tags: BTreeSet<_> = faults.iter().map(|f| f.kind.tag() as usize).collect();
    assert_eq!(
        tags.len(),
        KindTag::ALL.len(),
        "one fault of each of the 15 kinds"
    );
    for f in faults {
        let wire = fault_spec(ROUTE, &f);
        assert_eq!(wire.route, ROUTE);
        assert_eq!(wire.experiment, "checkout-latency");
        let back = convert(wire.clone()).unwrap_or_else(|e| panic!("{}: {e}", f.name));
        assert_eq!(
            back,
            RouteFault {
                route: ROUTE.into(),
                fault: f.clone()
            },
            "{}",
            f.name
        );
        // And the wire form is stable: converting back out gives the same message.
        assert_eq!(v1::FaultSpec::from(&back), wire, "{}", f.name);
    }
}

#[test]
fn wire_faults_are_controller_issued_without_expiry() {
    let rf = convert(spec(Kind::Down(v1::Down {}))).unwrap();
    assert_eq!(rf.route, ROUTE);
    assert_eq!(
        rf.fault.origin,
        Origin::Controller {
            experiment: "exp".into()
        }
    );
    assert_eq!(rf.fault.expires_at, None);
    let (route, fault): (String, Fault) = rf.into();
    assert_eq!((route.as_str(), fault.name.as_str()), (ROUTE, "f"));
}

#[test]
fn unspecified_and_absent_fields_take_the_admin_api_defaults() {
    let f = convert(spec(Kind::Latency(v1::Latency {
        latency_ms: 5,
        jitter_ms: 0,
    })))
    .unwrap()
    .fault;
    assert_eq!(f.direction, Direction::Both, "DIRECTION_UNSPECIFIED");
    assert_eq!(f.toxicity, Probability::ALWAYS, "probability absent");

    let f = convert(spec(Kind::Partition(v1::Partition {
        cidrs: vec!["10.0.0.0/8".into(), "127.0.0.2".into()],
        ..Default::default()
    })))
    .unwrap()
    .fault;
    assert_eq!(
        f.kind,
        FaultKind::Partition(Partition {
            cidrs: vec![
                "10.0.0.0/8".parse().unwrap(),
                "127.0.0.2/32".parse().unwrap()
            ],
            peer: PartitionPeer::Client,
            action: PartitionAction::Refuse,
        })
    );

    let f = convert(spec(Kind::HttpDelay(v1::HttpDelay {
        delay_ms: 7,
        ..Default::default()
    })))
    .unwrap()
    .fault;
    assert!(matches!(
        f.kind,
        FaultKind::HttpDelay(Delay {
            phase: DelayPhase::Request,
            ..
        })
    ));

    let f = convert(spec(Kind::HttpReset(v1::HttpReset::default())))
        .unwrap()
        .fault;
    assert_eq!(
        f.kind,
        FaultKind::HttpReset(HttpReset {
            phase: ResetPhase::BeforeResponse
        })
    );

    let f = convert(spec(Kind::GrpcStream(v1::GrpcStream {
        after_messages: Some(2),
        ..Default::default()
    })))
    .unwrap()
    .fault;
    assert_eq!(
        f.kind,
        FaultKind::GrpcStream(GrpcStream {
            after_messages: Some(2),
            after: None,
            action: Some(StreamAction::Reset),
            message_delay: Duration::ZERO,
        })
    );

    // An empty match holds for every request; an absent one is no match at all.
    let f = convert(with_match(abort(503), v1::RequestMatch::default()))
        .unwrap()
        .fault;
    assert_eq!(f.matcher.as_deref(), Some(&RequestMatch::default()));
    assert_eq!(convert(spec(abort(503))).unwrap().fault.matcher, None);
}

#[test]
fn messages_name_the_proto_field_and_the_rule() {
    let err = rejects(spec(abort(99)), "http_abort.status");
    assert_eq!(
        err.to_string(),
        "http_abort.status: must be an HTTP status 200..599, got 99"
    );
    let err = rejects(
        spec(Kind::Bandwidth(v1::Bandwidth { rate_kbps: 0 })),
        "bandwidth.rate_kbps",
    );
    assert_eq!(err.message, "must be at least 1 (KB/s)");
}

#[test]
fn every_validation_rule_is_enforced_with_the_field_path() {
    use v1::header_match::Condition;
    use v1::str_match::Kind as S;
    let slicer = |average_size, size_variation| {
        Kind::Slicer(v1::Slicer {
            average_size,
            size_variation,
            delay_us: 0,
        })
    };
    let latency = || Kind::Latency(v1::Latency::default());
    let stream = |g: v1::GrpcStream| Kind::GrpcStream(g);
    let cases: Vec<(v1::FaultSpec, &str)> = vec![
        // Required fields.
        (
            v1::FaultSpec {
                kind: None,
                ..spec(latency())
            },
            "kind",
        ),
        (
            v1::FaultSpec {
                route: String::new(),
                ..spec(latency())
            },
            "route",
        ),
        (
            v1::FaultSpec {
                name: String::new(),
                ..spec(latency())
            },
            "name",
        ),
        (
            v1::FaultSpec {
                experiment: String::new(),
                ..spec(latency())
            },
            "experiment",
        ),
        // Enums: numbers outside the enum.
        (
            v1::FaultSpec {
                direction: 9,
                ..spec(latency())
            },
            "direction",
        ),
        (
            spec(Kind::Partition(v1::Partition {
                cidrs: vec!["10.0.0.0/8".into()],
                peer: 7,
                action: 0,
            })),
            "partition.peer",
        ),
        (
            spec(Kind::Partition(v1::Partition {
                cidrs: vec!["10.0.0.0/8".into()],
                peer: 0,
                action: 7,
            })),
            "partition.action",
        ),
        (
            spec(Kind::HttpDelay(v1::HttpDelay {
                phase: 5,
                ..Default::default()
            })),
            "http_delay.phase",
        ),
        (
            spec(Kind::HttpReset(v1::HttpReset {
                phase: 5,
                after_bytes: 0,
            })),
            "http_reset.phase",
        ),
        (
            spec(stream(v1::GrpcStream {
                action: 9,
                after_messages: Some(1),
                ..Default::default()
            })),
            "grpc_stream.action",
        ),
        // Probability: 0..1, finite.
        (
            v1::FaultSpec {
                probability: Some(1.5),
                ..spec(latency())
            },
            "probability",
        ),
        (
            v1::FaultSpec {
                probability: Some(-0.1),
                ..spec(latency())
            },
            "probability",
        ),
        (
            v1::FaultSpec {
                probability: Some(f64::NAN),
                ..spec(latency())
            },
            "probability",
        ),
        // TCP kinds.
        (
            spec(Kind::Bandwidth(v1::Bandwidth { rate_kbps: 0 })),
            "bandwidth.rate_kbps",
        ),
        (spec(slicer(0, 0)), "slicer.average_size"),
        (spec(slicer(10, 10)), "slicer.size_variation"),
        (spec(slicer(10, 11)), "slicer.size_variation"),
        (
            spec(Kind::Partition(v1::Partition::default())),
            "partition.cidrs",
        ),
        (
            spec(Kind::Partition(v1::Partition {
                cidrs: vec!["10.0.0.0/8".into(), "10.0.0.0/99".into()],
                ..Default::default()
            })),
            "partition.cidrs[1]",
        ),
        (
            spec(Kind::Partition(v1::Partition {
                cidrs: vec!["nope".into()],
                ..Default::default()
            })),
            "partition.cidrs[0]",
        ),
        // HTTP and gRPC kinds.
        (spec(abort(99)), "http_abort.status"),
        (spec(abort(600)), "http_abort.status"),
        (spec(abort(0)), "http_abort.status"),
        (
            spec(Kind::HttpAbort(v1::HttpAbort {
                status: 503,
                body: String::new(),
                headers: HashMap::from([("bad name".into(), "x".into())]),
            })),
            "http_abort.headers[\"bad name\"]",
        ),
        (
            spec(Kind::HttpAbort(v1::HttpAbort {
                status: 503,
                body: String::new(),
                headers: HashMap::from([("x-ok".into(), "a\nb".into())]),
            })),
            "http_abort.headers[\"x-ok\"]",
        ),
        (
            spec(Kind::HttpThrottle(v1::HttpThrottle {
                bytes_per_second: 0,
            })),
            "http_throttle.bytes_per_second",
        ),
        (
            spec(Kind::HttpReset(v1::HttpReset {
                phase: v1::http_reset::Phase::BeforeResponse as i32,
                after_bytes: 10,
            })),
            "http_reset.after_bytes",
        ),
        (
            spec(Kind::GrpcAbort(v1::GrpcAbort {
                code: 0,
                message: String::new(),
            })),
            "grpc_abort.code",
        ),
        (
            spec(Kind::GrpcAbort(v1::GrpcAbort {
                code: 17,
                message: String::new(),
            })),
            "grpc_abort.code",
        ),
        (
            spec(stream(v1::GrpcStream {
                action: v1::grpc_stream::Action::Status as i32,
                after_messages: Some(1),
                code: 0,
                ..Default::default()
            })),
            "grpc_stream.code",
        ),
        (
            spec(stream(v1::GrpcStream {
                action: v1::grpc_stream::Action::Status as i32,
                after_ms: Some(10),
                code: 99,
                ..Default::default()
            })),
            "grpc_stream.code",
        ),
        (
            spec(stream(v1::GrpcStream {
                action: v1::grpc_stream::Action::Reset as i32,
                ..Default::default()
            })),
            "grpc_stream.after_messages",
        ),
        (spec(stream(v1::GrpcStream::default())), "grpc_stream"),
        // match and cohort: only on request-level kinds.
        (with_match(latency(), v1::RequestMatch::default()), "match"),
        (
            v1::FaultSpec {
                cohort: Some(v1::Cohort {
                    header: "x-user".into(),
                    seed: 1,
                }),
                ..spec(Kind::Down(v1::Down {}))
            },
            "cohort",
        ),
        // match: methods, regexes, header names, gRPC selectors, unset oneofs.
        (
            with_match(
                abort(503),
                v1::RequestMatch {
                    methods: vec!["GET".into(), "GE T".into()],
                    ..Default::default()
                },
            ),
            "match.methods[1]",
        ),
        (
            with_match(abort(503), path_match(Some(S::Regex("(unclosed".into())))),
            "match.path.regex",
        ),
        (with_match(abort(503), path_match(None)), "match.path"),
        (
            with_match(
                abort(503),
                v1::RequestMatch {
                    authority: Some(v1::StrMatch {
                        kind: Some(S::Regex("[".into())),
                    }),
                    ..Default::default()
                },
            ),
            "match.authority.regex",
        ),
        (
            with_match(
                abort(503),
                header_match("x-user", Some(Condition::Regex("*".into()))),
            ),
            "match.headers[0].regex",
        ),
        (
            with_match(
                abort(503),
                header_match("bad header", Some(Condition::Present(true))),
            ),
            "match.headers[0].name",
        ),
        (
            with_match(abort(503), header_match("x-user", None)),
            "match.headers[0]",
        ),
        (
            with_match(
                abort(503),
                header_match("x-user", Some(Condition::Present(false))),
            ),
            "match.headers[0].present",
        ),
        (
            with_match(
                abort(503),
                header_match("x-user", Some(Condition::Absent(false))),
            ),
            "match.headers[0].absent",
        ),
        (with_match(abort(503), grpc_match("", "")), "match.grpc"),
        (
            with_match(abort(503), grpc_match("pkg Echo", "")),
            "match.grpc",
        ),
        (
            with_match(abort(503), grpc_match("pkg.Echo", "Sa.y")),
            "match.grpc",
        ),
        (
            with_match(abort(503), grpc_match("pkg.Echo/Say", "")),
            "match.grpc.service",
        ),
        (
            with_match(abort(503), grpc_match("pkg.Echo", "Say/x")),
            "match.grpc.method",
        ),
        // match.destination: networks and ports, as a captured route's match.
        (
            with_match(
                abort(503),
                destination_match(&["10.0.0.0/8", "10.0.0.0/33"], &[]),
            ),
            "match.destination.destinations[1]",
        ),
        (
            with_match(abort(503), destination_match(&["redis"], &[6379])),
            "match.destination.destinations[0]",
        ),
        (
            with_match(abort(503), destination_match(&[], &[6379, 65536])),
            "match.destination.ports[1]",
        ),
        (
            with_match(abort(503), destination_match(&[], &[0])),
            "match.destination.ports[0]",
        ),
        (
            v1::FaultSpec {
                cohort: Some(v1::Cohort {
                    header: "bad header".into(),
                    seed: 1,
                }),
                ..spec(abort(503))
            },
            "cohort.header",
        ),
        (
            v1::FaultSpec {
                cohort: Some(v1::Cohort::default()),
                ..spec(abort(503))
            },
            "cohort.header",
        ),
    ];
    for (s, path) in cases {
        rejects(s, path);
    }
}

#[test]
fn boundary_values_are_accepted() {
    for kind in [
        abort(200),
        abort(599),
        Kind::GrpcAbort(v1::GrpcAbort {
            code: 1,
            message: String::new(),
        }),
        Kind::GrpcAbort(v1::GrpcAbort {
            code: 16,
            message: String::new(),
        }),
        Kind::Slicer(v1::Slicer {
            average_size: 10,
            size_variation: 9,
            delay_us: 0,
        }),
        Kind::Bandwidth(v1::Bandwidth { rate_kbps: 1 }),
    ] {
        convert(spec(kind.clone())).unwrap_or_else(|e| panic!("{kind:?}: {e}"));
    }
    for p in [0.0, 1.0] {
        let f = convert(v1::FaultSpec {
            probability: Some(p),
            ..spec(Kind::Down(v1::Down {}))
        })
        .unwrap();
        assert_eq!(f.fault.toxicity.get(), p);
    }
}

// === desired state ===

fn desired(faults: Vec<v1::FaultSpec>, lease: Option<prost_types::Duration>) -> v1::DesiredState {
    v1::DesiredState {
        generation: 3,
        lease,
        faults,
        heartbeat_interval: None,
        local_guards: Vec::new(),
    }
}

#[test]
fn a_desired_state_without_a_lease_is_rejected() {
    let faults = vec![spec(Kind::Down(v1::Down {}))];
    let err = DesiredState::try_from(desired(faults.clone(), None)).unwrap_err();
    assert_eq!(err.path, "lease");
    let err = DesiredState::try_from(desired(faults, lease(0))).unwrap_err();
    assert_eq!(err.path, "lease");
    // Even an empty desired state (which clears every fault) holds a lease.
    let err = DesiredState::try_from(desired(vec![], None)).unwrap_err();
    assert_eq!(err.path, "lease");
}

#[test]
fn desired_state_errors_name_the_fault_by_index() {
    let faults = vec![
        spec(Kind::Down(v1::Down {})),
        spec(abort(503)),
        spec(abort(99)),
    ];
    let err = DesiredState::try_from(desired(faults, lease(10))).unwrap_err();
    assert_eq!(
        err.to_string(),
        "faults[2].http_abort.status: must be an HTTP status 200..599, got 99"
    );
}

#[test]
fn desired_state_round_trips() {
    let d = DesiredState {
        generation: 12,
        lease: Duration::from_millis(2500),
        faults: every_kind()
            .into_iter()
            .map(|f| (ROUTE.to_string(), f))
            .collect(),
        guards: Vec::new(),
    };
    let wire = v1::DesiredState::from(&d);
    assert_eq!(
        wire.lease,
        Some(prost_types::Duration {
            seconds: 2,
            nanos: 500_000_000
        })
    );
    let back = DesiredState::try_from(wire).unwrap();
    assert_eq!(back.generation, 12);
    assert_eq!(back.lease, d.lease);
    assert_eq!(back.faults, d.faults);
}

#[tokio::test]
async fn a_converted_desired_state_applies_to_the_route_table() {
    let config = AgentConfig {
        ..AgentConfig::embedded()
    };
    let agent = Agent::start(&config).await.expect("agent starts");
    let mut route = RouteSpec::tcp(
        ROUTE,
        "127.0.0.1:0",
        Upstream::Addr("127.0.0.1:9".parse().unwrap()),
    );
    route.protocol = Protocol::Tcp;
    agent.table.create(route).expect("create route");

    let wire = desired(
        vec![spec(Kind::Latency(v1::Latency {
            latency_ms: 50,
            jitter_ms: 0,
        }))],
        lease(30),
    );
    let applied = agent
        .table
        .apply_desired(DesiredState::try_from(wire).unwrap())
        .await
        .expect("applied");
    assert_eq!((applied.generation, applied.faults), (3, 1));
    let snap = agent.table.subscribe(ROUTE).unwrap().borrow().clone();
    let names: Vec<_> = snap.faults.iter().map(|f| &f.fault.name).collect();
    assert_eq!(names, ["f"]);
    assert_eq!(
        snap.faults[0].fault.origin,
        Origin::Controller {
            experiment: "exp".into()
        }
    );
    agent.shutdown(Duration::ZERO).await;
}

// === SLIs ===

fn metrics(seed: u64) -> SliSnapshot {
    let m = HttpMetrics::default();
    for i in 0..20 + seed {
        let status = [200, 204, 301, 404, 503][(i % 5) as usize];
        m.record_response(status, i % 3 == 0, Duration::from_micros(i * 997 + seed));
        m.record_grpc((i % 17) as u8, i % 2 == 0);
    }
    m.record_upstream_error();
    m.record_reset(true);
    m.record_reset(false);
    m.record_response(200, false, Duration::from_secs(3600)); // the last bucket
    m.snapshot()
}

#[test]
fn sli_snapshots_round_trip() {
    let s = metrics(1);
    assert_eq!(s.latency.buckets.last().map(|b| b.0), Some(447));
    let wire = v1::SliSnapshot::from(&s);
    assert_eq!(wire.requests.as_ref().unwrap().real.len(), 5);
    assert_eq!(wire.grpc.as_ref().unwrap().injected.len(), 17);
    assert_eq!(SliSnapshot::try_from(wire).unwrap(), s);
    let empty = SliSnapshot::default();
    assert_eq!(
        SliSnapshot::try_from(v1::SliSnapshot::from(&empty)).unwrap(),
        empty
    );
    assert_eq!(
        SliSnapshot::try_from(v1::SliSnapshot::default()).unwrap(),
        empty
    );
}

#[test]
fn snapshots_from_the_wire_merge_like_local_ones() {
    let (a, b) = (metrics(1), metrics(7));
    let mut local = a.clone();
    local.merge(&b);

    // The controller's view: two agents' heartbeats, converted, then merged.
    let mut merged = SliSnapshot::try_from(v1::SliSnapshot::from(&a)).unwrap();
    merged.merge(&SliSnapshot::try_from(v1::SliSnapshot::from(&b)).unwrap());
    assert_eq!(merged, local);
    assert_eq!(merged.responses(), a.responses() + b.responses());
    assert_eq!(merged.latency.count, a.latency.count + b.latency.count);
    assert_eq!(
        merged.latency.quantile(0.5),
        local.latency.quantile(0.5),
        "quantiles agree"
    );

    // A merged snapshot travels too (the controller may forward one).
    assert_eq!(
        SliSnapshot::try_from(v1::SliSnapshot::from(&merged)).unwrap(),
        merged
    );
}

#[test]
fn bad_sli_shapes_are_rejected_with_the_field_path() {
    let good = v1::SliSnapshot::from(&metrics(2));
    let counts = |n: usize| v1::CountsByOrigin {
        real: vec![1; n],
        injected: vec![],
    };
    let cases: Vec<(v1::SliSnapshot, &str)> = vec![
        (
            v1::SliSnapshot {
                requests: Some(counts(6)),
                ..good.clone()
            },
            "requests.real",
        ),
        (
            v1::SliSnapshot {
                requests: Some(v1::CountsByOrigin {
                    real: vec![],
                    injected: vec![0; 17],
                }),
                ..good.clone()
            },
            "requests.injected",
        ),
        (
            v1::SliSnapshot {
                grpc: Some(counts(18)),
                ..good.clone()
            },
            "grpc.real",
        ),
        (
            v1::SliSnapshot {
                latency: Some(v1::HistogramSnapshot {
                    buckets: vec![v1::Bucket {
                        index: 448,
                        count: 1,
                    }],
                    count: 1,
                    sum_micros: 0,
                }),
                ..good.clone()
            },
            "latency.buckets[0].index",
        ),
        (
            v1::SliSnapshot {
                latency: Some(v1::HistogramSnapshot {
                    count: 0,
                    ..good.latency.clone().unwrap()
                }),
                ..good.clone()
            },
            "latency.count",
        ),
    ];
    for (s, path) in cases {
        let err = SliSnapshot::try_from(s).unwrap_err();
        assert_eq!(err.path, path, "{err}");
    }
    // 5 and 17 entries exactly are fine; fewer are padded with zeros.
    let s = SliSnapshot::try_from(v1::SliSnapshot {
        grpc: Some(counts(17)),
        requests: Some(counts(3)),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(s.grpc.real, [1; 17]);
    assert_eq!(s.requests.real, [1, 1, 1, 0, 0]);
    let _: HistogramSnapshot = s.latency;
}
