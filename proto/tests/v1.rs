//! `faultline.v1` as generated: messages survive the wire, every fault kind can be built, and
//! the descriptor set served for reflection describes the three services and documents every
//! element of the API.

use std::collections::{BTreeSet, HashMap};

use faultline_proto::FILE_DESCRIPTOR_SET;
use faultline_proto::prost_types::{self, FileDescriptorProto, FileDescriptorSet};
use faultline_proto::v1::{
    Ack, Agent, AgentHeartbeat, AgentMessage, Bandwidth, Bucket, Cohort, ControllerHeartbeat,
    ControllerMessage, CountByOrigin, CountsByOrigin, DesiredState, DestinationMatch, Direction,
    Down, Experiment, ExperimentEvent, ExperimentEventKind, ExperimentState, FaultSpec, FieldError,
    GetExperimentResponse, Goodbye, GrpcAbort, GrpcSelector, GrpcStream, HeaderMatch, Hello,
    HistogramSnapshot, HttpAbort, HttpDelay, HttpReset, HttpThrottle, Latency, LimitData,
    ListAgentsResponse, Partition, Protocol, RequestMatch, ResetPeer, Route, RouteSli, RuleCount,
    SliSnapshot, Slicer, SlowClose, StrMatch, Timeout, ValidateRequest, ValidateResponse,
    agent_message, controller_message, fault_spec, grpc_stream, header_match, http_delay,
    http_reset, partition, str_match, validate_request,
};
use prost::Message;

/// Encodes `msg`, decodes the bytes as the same type, and checks nothing changed.
fn round_trip<M: Message + Default + PartialEq + std::fmt::Debug>(msg: &M) -> M {
    let bytes = msg.encode_to_vec();
    let back = M::decode(bytes.as_slice()).expect("decodes");
    assert_eq!(&back, msg);
    back
}

fn ts(seconds: i64, nanos: i32) -> prost_types::Timestamp {
    prost_types::Timestamp { seconds, nanos }
}

fn ms(millis: i32) -> prost_types::Duration {
    prost_types::Duration {
        seconds: i64::from(millis / 1000),
        nanos: (millis % 1000) * 1_000_000,
    }
}

/// One fault of every kind, each with non-default fields, named as the agent names the kind.
fn every_kind() -> Vec<(&'static str, fault_spec::Kind)> {
    use fault_spec::Kind;
    vec![
        (
            "latency",
            Kind::Latency(Latency {
                latency_ms: 100,
                jitter_ms: 20,
            }),
        ),
        ("bandwidth", Kind::Bandwidth(Bandwidth { rate_kbps: 64 })),
        (
            "slicer",
            Kind::Slicer(Slicer {
                average_size: 10,
                size_variation: 4,
                delay_us: 250,
            }),
        ),
        ("slow_close", Kind::SlowClose(SlowClose { delay_ms: 500 })),
        ("timeout", Kind::Timeout(Timeout { timeout_ms: 0 })),
        (
            "reset_peer",
            Kind::ResetPeer(ResetPeer { timeout_ms: 1500 }),
        ),
        ("limit_data", Kind::LimitData(LimitData { bytes: 4096 })),
        ("down", Kind::Down(Down {})),
        (
            "partition",
            Kind::Partition(Partition {
                cidrs: vec!["127.0.0.2/32".into(), "10.0.0.0/8".into()],
                peer: partition::Peer::Upstream.into(),
                action: partition::Action::Blackhole.into(),
            }),
        ),
        (
            "http_abort",
            Kind::HttpAbort(HttpAbort {
                status: 503,
                body: "down for maintenance".into(),
                headers: HashMap::from([("retry-after".into(), "5".into())]),
            }),
        ),
        (
            "http_delay",
            Kind::HttpDelay(HttpDelay {
                delay_ms: 300,
                jitter_ms: 50,
                phase: http_delay::Phase::Response.into(),
            }),
        ),
        (
            "http_throttle",
            Kind::HttpThrottle(HttpThrottle {
                bytes_per_second: 10_000,
            }),
        ),
        (
            "http_reset",
            Kind::HttpReset(HttpReset {
                phase: http_reset::Phase::MidResponse.into(),
                after_bytes: 1024,
            }),
        ),
        (
            "grpc_abort",
            Kind::GrpcAbort(GrpcAbort {
                code: 14,
                message: "injected".into(),
            }),
        ),
        (
            "grpc_stream",
            Kind::GrpcStream(GrpcStream {
                after_messages: Some(3),
                after_ms: None,
                action: grpc_stream::Action::Status.into(),
                code: 4,
                message: "deadline".into(),
                message_delay_ms: 10,
            }),
        ),
    ]
}

fn fault(name: &str, kind: fault_spec::Kind) -> FaultSpec {
    FaultSpec {
        name: name.into(),
        route: "api".into(),
        experiment: "checkout-latency".into(),
        direction: Direction::Downstream.into(),
        probability: Some(0.25),
        r#match: None,
        cohort: None,
        kind: Some(kind),
    }
}

// === Round trips ===

#[test]
fn every_fault_kind_round_trips_and_keeps_its_parameters() {
    let kinds = every_kind();
    assert_eq!(kinds.len(), 15, "one entry per agent fault kind");
    for (name, kind) in kinds {
        let back = round_trip(&fault(name, kind.clone()));
        assert_eq!(back.kind, Some(kind), "{name}");
        assert_eq!(back.probability, Some(0.25));
        assert_eq!(back.direction(), Direction::Downstream);
    }
}

#[test]
fn optional_fields_keep_presence_across_the_wire() {
    // An absent probability (meaning 1.0) is not the same as probability 0.0.
    let mut f = fault("p", fault_spec::Kind::Down(Down {}));
    f.probability = None;
    assert_eq!(round_trip(&f).probability, None);
    f.probability = Some(0.0);
    assert_eq!(round_trip(&f).probability, Some(0.0));

    // `after_messages: 0` (cut before the first message) differs from no count at all.
    let g = GrpcStream {
        after_messages: Some(0),
        after_ms: None,
        ..Default::default()
    };
    let back = round_trip(&g);
    assert_eq!((back.after_messages, back.after_ms), (Some(0), None));
    assert_eq!(back.action(), grpc_stream::Action::Unspecified);

    // A YAML error has a line and column; a JSON one has neither.
    let yaml = FieldError {
        path: "spec.faults[0].latency".into(),
        line: Some(12),
        column: Some(7),
        message: "unknown field".into(),
    };
    let json = FieldError {
        line: None,
        column: None,
        ..yaml.clone()
    };
    assert_eq!(round_trip(&yaml).line, Some(12));
    assert_eq!(round_trip(&json).line, None);
}

#[test]
fn request_match_and_cohort_round_trip() {
    let m = RequestMatch {
        methods: vec!["GET".into(), "POST".into()],
        path: Some(StrMatch {
            kind: Some(str_match::Kind::Prefix("/api/".into())),
        }),
        grpc: Some(GrpcSelector {
            service: "faultline.testing.Echo".into(),
            method: "Unary".into(),
        }),
        headers: vec![
            HeaderMatch {
                name: "x-user".into(),
                condition: Some(header_match::Condition::Regex("^u[0-9]+$".into())),
            },
            HeaderMatch {
                name: "x-canary".into(),
                condition: Some(header_match::Condition::Present(true)),
            },
            HeaderMatch {
                name: "x-skip".into(),
                condition: Some(header_match::Condition::Absent(true)),
            },
            HeaderMatch {
                name: "x-tenant".into(),
                condition: Some(header_match::Condition::Exact("acme".into())),
            },
        ],
        authority: Some(StrMatch {
            kind: Some(str_match::Kind::Exact("api.local".into())),
        }),
        destination: Some(DestinationMatch {
            destinations: vec!["10.0.0.0/8".into(), "2001:db8::7".into()],
            ports: vec![6379, 443],
        }),
    };
    let mut f = fault(
        "abort",
        fault_spec::Kind::GrpcAbort(GrpcAbort {
            code: 14,
            message: "x".into(),
        }),
    );
    f.r#match = Some(m.clone());
    f.cohort = Some(Cohort {
        header: "x-user".into(),
        seed: u64::MAX,
    });
    let back = round_trip(&f);
    assert_eq!(back.r#match, Some(m));
    assert_eq!(back.cohort.map(|c| c.seed), Some(u64::MAX));
}

#[test]
fn the_agent_stream_round_trips() {
    let hello = AgentMessage {
        body: Some(agent_message::Body::Hello(Hello {
            agent_id: "pod-a".into(),
            labels: HashMap::from([("app".into(), "checkout".into())]),
            routes: vec![Route {
                name: "api".into(),
                listen: "0.0.0.0:8080".into(),
                upstream: "127.0.0.1:9000".into(),
                protocol: Protocol::Grpc.into(),
            }],
            version: "0.1.0".into(),
        })),
    };
    round_trip(&hello);

    let rejected = AgentMessage {
        body: Some(agent_message::Body::Ack(Ack {
            generation: 7,
            applied_faults: 0,
            error: Some("faults[0].http_abort.status: must be 200..599".into()),
        })),
    };
    round_trip(&rejected);

    let sli = SliSnapshot {
        requests: Some(CountsByOrigin {
            real: vec![0, 950, 0, 3, 2],
            injected: vec![0, 0, 0, 0, 45],
        }),
        grpc: Some(CountsByOrigin {
            real: [vec![900], vec![0; 16]].concat(),
            injected: [vec![0; 14], vec![45], vec![0; 2]].concat(),
        }),
        upstream_errors: 2,
        resets: Some(CountByOrigin {
            real: 1,
            injected: 4,
        }),
        latency: Some(HistogramSnapshot {
            buckets: vec![
                Bucket {
                    index: 3,
                    count: 10,
                },
                Bucket {
                    index: 447,
                    count: 1,
                },
            ],
            count: 11,
            sum_micros: 2_147_483_678,
        }),
    };
    let beat = AgentMessage {
        body: Some(agent_message::Body::Heartbeat(AgentHeartbeat {
            sent_at: Some(ts(1_700_000_000, 123_000_000)),
            generation: 7,
            route_slis: vec![RouteSli {
                route: "api".into(),
                sli: Some(sli.clone()),
                window: Some(ms(1000)),
                treatment: None,
                control: None,
            }],
            rule_counts: vec![RuleCount {
                route: "api".into(),
                fault: "abort".into(),
                matched: 1000,
                injected: 250,
                passed: 750,
            }],
        })),
    };
    let back = round_trip(&beat);
    let Some(agent_message::Body::Heartbeat(h)) = back.body else {
        panic!("not a heartbeat: {back:?}");
    };
    assert_eq!(h.route_slis[0].sli.as_ref(), Some(&sli));
    assert_eq!(h.route_slis[0].window, Some(ms(1000)));

    let desired = ControllerMessage {
        body: Some(controller_message::Body::DesiredState(DesiredState {
            generation: 8,
            lease: Some(ms(3000)),
            faults: every_kind()
                .into_iter()
                .map(|(name, kind)| fault(name, kind))
                .collect(),
            heartbeat_interval: Some(ms(1000)),
            local_guards: Vec::new(),
        })),
    };
    let back = round_trip(&desired);
    let Some(controller_message::Body::DesiredState(d)) = back.body else {
        panic!("not a desired state: {back:?}");
    };
    assert_eq!((d.generation, d.faults.len()), (8, 15));
    assert_eq!(
        d.lease,
        Some(prost_types::Duration {
            seconds: 3,
            nanos: 0
        })
    );

    round_trip(&ControllerMessage {
        body: Some(controller_message::Body::Heartbeat(ControllerHeartbeat {
            sent_at: Some(ts(1_700_000_001, 0)),
        })),
    });
    round_trip(&ControllerMessage {
        body: Some(controller_message::Body::Goodbye(Goodbye {
            reason: "controller shutting down".into(),
        })),
    });
}

#[test]
fn experiments_and_agents_round_trip() {
    round_trip(&ValidateRequest {
        spec: Some(validate_request::Spec::SpecYaml(
            "apiVersion: faultline.dev/v1alpha1\nkind: Experiment\n".into(),
        )),
    });
    round_trip(&ValidateResponse {
        valid: false,
        errors: vec![FieldError {
            path: "spec.duration".into(),
            line: Some(4),
            column: Some(13),
            message: "\"5 parsecs\" is not a duration".into(),
        }],
        spec: String::new(),
    });

    let experiment = Experiment {
        name: "checkout-latency".into(),
        spec: r#"{"apiVersion":"faultline.dev/v1alpha1"}"#.into(),
        state: ExperimentState::Aborted.into(),
        reason: "controller restarted".into(),
        created_at: Some(ts(1_700_000_000, 0)),
        started_at: Some(ts(1_700_000_005, 0)),
        ended_at: Some(ts(1_700_000_060, 500)),
        seed: 42,
        targets: vec!["pod-a".into(), "pod-b".into()],
        result: None,
    };
    let event = ExperimentEvent {
        experiment: experiment.name.clone(),
        sequence: 3,
        at: Some(ts(1_700_000_060, 500)),
        kind: ExperimentEventKind::Aborted.into(),
        detail_json: r#"{"reason":"controller restarted"}"#.into(),
        state: ExperimentState::Aborted.into(),
    };
    let back = round_trip(&GetExperimentResponse {
        experiment: Some(experiment.clone()),
        events: vec![event],
    });
    assert_eq!(back.events[0].kind(), ExperimentEventKind::Aborted);
    assert_eq!(
        back.experiment.map(|e| e.state()),
        Some(ExperimentState::Aborted)
    );

    round_trip(&ListAgentsResponse {
        agents: vec![Agent {
            id: "pod-a".into(),
            labels: HashMap::from([("zone".into(), "a".into())]),
            routes: vec![Route {
                name: "db".into(),
                listen: "127.0.0.1:15432".into(),
                upstream: "db:5432".into(),
                protocol: Protocol::Tcp.into(),
            }],
            version: "0.1.0".into(),
            last_seen: Some(ts(1_700_000_100, 0)),
            generation: 9,
            connected: true,
        }],
    });
}

#[test]
fn unknown_enum_values_decode_and_read_as_unspecified() {
    // A newer controller may send event kinds this build does not know.
    let mut event = ExperimentEvent {
        kind: 99,
        ..Default::default()
    };
    event = round_trip(&event);
    assert_eq!(event.kind, 99);
    assert_eq!(event.kind(), ExperimentEventKind::Unspecified);
}

// === The descriptor set ===

fn descriptors() -> FileDescriptorSet {
    FileDescriptorSet::decode(FILE_DESCRIPTOR_SET).expect("FILE_DESCRIPTOR_SET decodes")
}

fn v1_files(set: &FileDescriptorSet) -> Vec<&FileDescriptorProto> {
    set.file
        .iter()
        .filter(|f| f.package() == "faultline.v1")
        .collect()
}

#[test]
fn descriptor_set_holds_the_three_services_with_their_methods() {
    let set = descriptors();
    let services: HashMap<String, Vec<(String, bool, bool)>> = v1_files(&set)
        .into_iter()
        .flat_map(|f| &f.service)
        .map(|s| {
            let methods = s
                .method
                .iter()
                .map(|m| {
                    (
                        m.name().to_owned(),
                        m.client_streaming(),
                        m.server_streaming(),
                    )
                })
                .collect();
            (s.name().to_owned(), methods)
        })
        .collect();
    let m = |name: &str, client: bool, server: bool| (name.to_owned(), client, server);
    assert_eq!(
        services,
        HashMap::from([
            ("AgentService".to_owned(), vec![m("Connect", true, true)]),
            (
                "ExperimentService".to_owned(),
                vec![
                    m("Validate", false, false),
                    m("Create", false, false),
                    m("Start", false, false),
                    m("List", false, false),
                    m("Get", false, false),
                    m("Watch", false, true),
                    m("Abort", false, false),
                    m("Delete", false, false),
                    m("StopAll", false, false),
                    m("Resume", false, false),
                    m("ListAudit", false, false),
                ]
            ),
            ("AgentRegistry".to_owned(), vec![m("List", false, false)]),
        ])
    );
}

#[test]
fn descriptor_set_is_self_contained() {
    // Reflection clients resolve every import from the set itself, so the well-known types and
    // the test service travel with it.
    let set = descriptors();
    let names: BTreeSet<&str> = set.file.iter().map(|f| f.name()).collect();
    for file in &set.file {
        for dep in &file.dependency {
            assert!(
                names.contains(dep.as_str()),
                "{} imports {dep}",
                file.name()
            );
        }
    }
    for expected in [
        "faultline/testing/v1/echo.proto",
        "faultline/v1/agent.proto",
        "faultline/v1/experiment.proto",
        "faultline/v1/faults.proto",
        "faultline/v1/registry.proto",
        "faultline/v1/sli.proto",
        "google/protobuf/duration.proto",
        "google/protobuf/timestamp.proto",
    ] {
        assert!(
            names.contains(expected),
            "{expected} missing from {names:?}"
        );
    }
}

#[test]
fn fault_kinds_on_the_wire_are_named_as_in_the_agent() {
    // The oneof's field names are the agent's `KindTag::name()`s, in its order.
    let set = descriptors();
    let spec = v1_files(&set)
        .into_iter()
        .flat_map(|f| &f.message_type)
        .find(|m| m.name() == "FaultSpec")
        .expect("FaultSpec");
    let kind_index = spec
        .oneof_decl
        .iter()
        .position(|o| o.name() == "kind")
        .expect("oneof kind") as i32;
    let names: Vec<&str> = spec
        .field
        .iter()
        .filter(|f| f.oneof_index == Some(kind_index))
        .map(|f| f.name())
        .collect();
    let agent_names: Vec<&str> = every_kind().iter().map(|(n, _)| *n).collect();
    assert_eq!(names, agent_names);
}

/// Every service, method, message, field, oneof, enum and enum value of `faultline.v1`
/// carries a comment, so the generated docs and reflection clients describe all of it.
#[test]
fn every_element_of_the_v1_api_is_documented() {
    // Paths into FileDescriptorProto (descriptor.proto field numbers).
    const MESSAGE: i32 = 4;
    const ENUM: i32 = 5;
    const SERVICE: i32 = 6;
    const M_FIELD: i32 = 2;
    const M_NESTED: i32 = 3;
    const M_ENUM: i32 = 4;
    const M_ONEOF: i32 = 8;
    const E_VALUE: i32 = 2;
    const S_METHOD: i32 = 2;

    fn message(
        m: &prost_types::DescriptorProto,
        path: Vec<i32>,
        name: String,
        out: &mut Vec<(Vec<i32>, String)>,
    ) {
        for (i, f) in m.field.iter().enumerate() {
            let p = [path.clone(), vec![M_FIELD, i as i32]].concat();
            out.push((p, format!("{name}.{}", f.name())));
        }
        for (i, o) in m.oneof_decl.iter().enumerate() {
            // proto3 `optional` fields get a synthetic oneof each, with no source of its own.
            let synthetic = m
                .field
                .iter()
                .any(|f| f.oneof_index == Some(i as i32) && f.proto3_optional());
            if synthetic {
                continue;
            }
            let p = [path.clone(), vec![M_ONEOF, i as i32]].concat();
            out.push((p, format!("{name}.{}", o.name())));
        }
        for (i, e) in m.enum_type.iter().enumerate() {
            let p = [path.clone(), vec![M_ENUM, i as i32]].concat();
            enumeration(e, p, format!("{name}.{}", e.name()), out);
        }
        for (i, n) in m.nested_type.iter().enumerate() {
            // Map entries are synthesized by the compiler and have no source.
            if n.options.as_ref().is_some_and(|o| o.map_entry()) {
                continue;
            }
            let p = [path.clone(), vec![M_NESTED, i as i32]].concat();
            message(n, p, format!("{name}.{}", n.name()), out);
        }
        out.push((path, name));
    }

    fn enumeration(
        e: &prost_types::EnumDescriptorProto,
        path: Vec<i32>,
        name: String,
        out: &mut Vec<(Vec<i32>, String)>,
    ) {
        for (i, v) in e.value.iter().enumerate() {
            let p = [path.clone(), vec![E_VALUE, i as i32]].concat();
            out.push((p, format!("{name}.{}", v.name())));
        }
        out.push((path, name));
    }

    let set = descriptors();
    let files = v1_files(&set);
    assert_eq!(files.len(), 5);
    let mut undocumented = Vec::new();
    let mut checked = 0;
    for file in files {
        let documented: BTreeSet<&[i32]> = file
            .source_code_info
            .as_ref()
            .expect("the set keeps source info")
            .location
            .iter()
            .filter(|l| {
                l.leading_comments
                    .as_deref()
                    .is_some_and(|c| !c.trim().is_empty())
                    || l.trailing_comments
                        .as_deref()
                        .is_some_and(|c| !c.trim().is_empty())
            })
            .map(|l| l.path.as_slice())
            .collect();
        let mut elements = Vec::new();
        for (i, m) in file.message_type.iter().enumerate() {
            message(
                m,
                vec![MESSAGE, i as i32],
                m.name().to_owned(),
                &mut elements,
            );
        }
        for (i, e) in file.enum_type.iter().enumerate() {
            enumeration(e, vec![ENUM, i as i32], e.name().to_owned(), &mut elements);
        }
        for (i, s) in file.service.iter().enumerate() {
            for (j, m) in s.method.iter().enumerate() {
                let p = vec![SERVICE, i as i32, S_METHOD, j as i32];
                elements.push((p, format!("{}.{}", s.name(), m.name())));
            }
            elements.push((vec![SERVICE, i as i32], s.name().to_owned()));
        }
        checked += elements.len();
        undocumented.extend(
            elements
                .into_iter()
                .filter(|(path, _)| !documented.contains(path.as_slice()))
                .map(|(_, name)| format!("{}: {name}", file.name())),
        );
    }
    assert!(checked > 250, "only {checked} elements found");
    assert!(undocumented.is_empty(), "undocumented: {undocumented:#?}");
}
