//! Local guards end to end: a real agent with two HTTP routes in front of a real upstream,
//! driven by a test controller that sends one desired state and then goes silent while keeping
//! the stream open (the controller "unreachable", the 60 s lease still valid). The agent must
//! stop hurting its service by itself.

mod support;

use std::time::{Duration, SystemTime};

use faultline_agent::admin::toxiproxy::ToxicInput;
use faultline_agent::app::Agent;
use faultline_agent::config::AgentConfig;
use faultline_agent::fault::{Fault, Origin};
use faultline_agent::guard::{FaultRef, LocalGuard};
use faultline_agent::route::{DesiredState, Protocol, RouteSpec, RouteTable, Upstream};
use faultline_proto::{prost_types, v1};
use tokio::time::Instant;

use support::{Peer, controller, duration, http_get, http_upstream, next_peer};

/// An agent with `http` routes `api` and `web` to `upstream`, connected to `controller`.
async fn agent(controller: std::net::SocketAddr, upstream: std::net::SocketAddr) -> Agent {
    support::http_agent(controller, upstream, &["api", "web"]).await
}

/// An agent connected to a fresh test controller, past its `Hello`.
async fn connected() -> (Agent, Peer) {
    let (addr, mut peers) = controller().await;
    let agent = agent(addr, http_upstream().await).await;
    let mut peer = next_peer(&mut peers).await;
    peer.hello().await;
    // Further streams are refused: a test whose agent redials has failed anyway.
    drop(peers);
    (agent, peer)
}

fn abort(route: &str, name: &str) -> v1::FaultSpec {
    v1::FaultSpec {
        name: name.into(),
        route: route.into(),
        experiment: "exp-1".into(),
        direction: 0,
        probability: None,
        r#match: None,
        cohort: None,
        kind: Some(v1::fault_spec::Kind::HttpAbort(v1::HttpAbort {
            status: 503,
            body: "injected".into(),
            headers: Default::default(),
        })),
    }
}

fn error_rate_guard(name: &str, faults: &[(&str, &str)]) -> v1::LocalGuard {
    v1::LocalGuard {
        name: name.into(),
        experiment: "exp-1".into(),
        route: "api".into(),
        metric: Some(v1::GuardMetric {
            kind: Some(v1::guard_metric::Kind::ErrorRate(v1::ErrorRate {
                grpc_codes: vec![],
            })),
        }),
        comparison: v1::Comparison::Above as i32,
        threshold: 0.05,
        window: Some(duration(Duration::from_secs(1))),
        hold: Some(duration(Duration::from_millis(200))),
        min_requests: 5,
        trip_on_no_data: false,
        faults: faults
            .iter()
            .map(|(route, name)| v1::FaultRef {
                route: (*route).into(),
                name: (*name).into(),
            })
            .collect(),
    }
}

fn desired(
    generation: u64,
    faults: Vec<v1::FaultSpec>,
    guards: Vec<v1::LocalGuard>,
) -> v1::controller_message::Body {
    v1::controller_message::Body::DesiredState(v1::DesiredState {
        generation,
        lease: Some(duration(Duration::from_secs(60))),
        faults,
        heartbeat_interval: Some(duration(Duration::from_millis(100))),
        local_guards: guards,
    })
}

fn controller_faults(table: &RouteTable, route: &str) -> Vec<String> {
    let mut names: Vec<String> = table
        .get(route)
        .unwrap()
        .faults
        .into_iter()
        .map(|f| f.fault.name)
        .collect();
    names.sort();
    names
}

fn at(t: Option<prost_types::Timestamp>) -> SystemTime {
    SystemTime::try_from(t.expect("a timestamp")).expect("a valid timestamp")
}

// === tests ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_breached_guard_clears_its_faults_with_the_controller_silent() {
    let (agent, mut peer) = connected().await;
    let api = agent.table.get("api").unwrap().listen;
    let web = agent.table.get("web").unwrap().listen;
    let faults = vec![abort("api", "abort"), abort("web", "unrelated")];
    let guard = error_rate_guard("api-errors", &[("api", "abort")]);
    peer.send(desired(1, faults.clone(), vec![guard.clone()]))
        .await;
    let ack = peer.ack().await;
    assert_eq!(
        (ack.generation, ack.applied_faults, ack.error),
        (1, 2, None)
    );
    // From here on the controller says nothing: no heartbeat, no new desired state.

    // Every request fails until the guard has seen 5 of them and 200 ms of breach; then they
    // succeed. Bounded: at most 100,000 requests, 5 s (the count bound must outlast the 200 ms
    // hold at loopback speed: 2,000 requests once took less than that and failed the test).
    let started = Instant::now();
    let (mut failed, mut first_ok) = (0, None);
    for _ in 0..100_000 {
        match http_get(api).await {
            503 => failed += 1,
            200 => {
                first_ok = Some(started.elapsed());
                break;
            }
            other => panic!("unexpected status {other}"),
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "still failing after 5 s"
        );
    }
    let first_ok = first_ok.expect("requests succeed again");
    assert!(failed >= 5, "{failed} failed requests: min_requests is 5");
    assert!(
        first_ok >= Duration::from_millis(200),
        "hold is 200 ms, ok after {first_ok:?}"
    );
    assert_eq!(http_get(api).await, 200);
    assert_eq!(controller_faults(&agent.table, "api"), Vec::<String>::new());
    // Another experiment's fault on another route is untouched.
    assert_eq!(controller_faults(&agent.table, "web"), ["unrelated"]);
    assert_eq!(http_get(web).await, 503);

    // The trip was reported on the stream without the controller asking.
    let trip = peer.local_trip().await;
    assert_eq!(
        (trip.experiment.as_str(), trip.guard.as_str()),
        ("exp-1", "api-errors")
    );
    assert_eq!(
        (trip.value, trip.threshold),
        (1.0, 0.05),
        "every request failed"
    );
    assert_eq!((trip.cleared_faults, trip.generation), (1, 1));
    let (breached, tripped, cleared) = (
        at(trip.breached_at),
        at(trip.tripped_at),
        at(trip.cleared_at),
    );
    let held = tripped
        .duration_since(breached)
        .expect("tripped after the breach");
    assert!(
        held >= Duration::from_millis(200) && held < Duration::from_secs(1),
        "held {held:?}"
    );
    assert!(cleared >= tripped);
    assert_eq!(
        agent.table.controller_generation(),
        Some(1),
        "the lease holds"
    );

    // The controller re-sends the state before it has processed the trip: the fault stays off.
    peer.send(desired(2, faults.clone(), vec![guard])).await;
    let ack = peer.ack().await;
    assert_eq!(
        (ack.generation, ack.applied_faults, ack.error),
        (2, 1, None)
    );
    assert_eq!(controller_faults(&agent.table, "api"), Vec::<String>::new());
    assert_eq!(http_get(api).await, 200);

    // A state without the guard forgets the trip: the fault applies again.
    peer.send(desired(3, faults, vec![])).await;
    let ack = peer.ack().await;
    assert_eq!(
        (ack.generation, ack.applied_faults, ack.error),
        (3, 2, None)
    );
    assert_eq!(controller_faults(&agent.table, "api"), ["abort"]);
    assert_eq!(http_get(api).await, 503);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guard_naming_an_unknown_route_or_fault_is_refused_whole() {
    let (agent, mut peer) = connected().await;
    let faults = vec![abort("api", "abort")];
    let mut unknown_route = error_rate_guard("g", &[("api", "abort")]);
    unknown_route.route = "nope".into();
    let unknown_fault = error_rate_guard("g", &[("api", "abort"), ("api", "missing")]);
    for (generation, guard, want) in [
        (
            1,
            unknown_route,
            "local_guards[0].route: no route named \"nope\"",
        ),
        (
            2,
            unknown_fault,
            "local_guards[0].faults[1]: no fault named \"missing\" on route \"api\"",
        ),
    ] {
        peer.send(desired(generation, faults.clone(), vec![guard]))
            .await;
        let ack = peer.ack().await;
        let error = ack.error.expect("refused");
        assert!(error.starts_with(want), "{error}");
        assert_eq!((ack.generation, ack.applied_faults), (generation, 0));
        assert_eq!(controller_faults(&agent.table, "api"), Vec::<String>::new());
        assert_eq!(agent.table.lease(), None, "nothing applied");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_data_trips_only_a_guard_that_says_so() {
    let (agent, mut peer) = connected().await;
    let no_data = |name: &str, fault: &str, trips: bool| {
        let mut g = error_rate_guard(name, &[("api", fault)]);
        g.window = Some(duration(Duration::from_millis(200)));
        g.hold = None;
        g.min_requests = 1;
        g.trip_on_no_data = trips;
        g
    };
    peer.send(desired(
        1,
        vec![abort("api", "a"), abort("api", "b")],
        vec![no_data("trips", "a", true), no_data("waits", "b", false)],
    ))
    .await;
    assert_eq!(peer.ack().await.applied_faults, 2);
    let applied = Instant::now();

    // No traffic at all: after one whole window, the first guard trips on no data.
    let trip = peer.local_trip().await;
    assert_eq!(trip.guard, "trips");
    assert!(trip.value.is_nan(), "no data has no value: {}", trip.value);
    assert!(
        applied.elapsed() >= Duration::from_millis(200),
        "judged after a whole window"
    );
    assert_eq!(controller_faults(&agent.table, "api"), ["b"]);

    // The second never does: three more windows of heartbeats and nothing else.
    let quiet = Instant::now();
    while quiet.elapsed() < Duration::from_millis(600) {
        match peer.recv_within(Duration::from_millis(600)).await {
            Some(v1::agent_message::Body::Heartbeat(_)) | None => {}
            Some(other) => panic!("only heartbeats, got {other:?}"),
        }
    }
    assert_eq!(controller_faults(&agent.table, "api"), ["b"]);
}

// === the route table's side, without a controller ===

fn http_abort(name: &str, origin: Origin) -> Fault {
    let input: ToxicInput = serde_json::from_value(serde_json::json!({
        "name": name,
        "type": "http_abort",
        "attributes": { "status": 503 },
    }))
    .expect("a toxic");
    let mut fault = input.into_fault().expect("a valid fault");
    fault.origin = origin;
    fault
}

fn ctl(route: &str, name: &str) -> (String, Fault) {
    let origin = Origin::Controller {
        experiment: "exp-1".into(),
    };
    (route.into(), http_abort(name, origin))
}

fn domain_guard(faults: &[(&str, &str)]) -> LocalGuard {
    let wire = error_rate_guard("g", faults);
    LocalGuard::try_from(wire).expect("a valid guard")
}

#[tokio::test]
async fn a_trip_removes_exactly_the_guarded_controller_faults_and_keeps_them_off() {
    let upstream = http_upstream().await;
    let mut config = AgentConfig {
        ..AgentConfig::embedded()
    };
    for name in ["api", "web"] {
        let mut r = RouteSpec::tcp(name, "127.0.0.1:0", Upstream::Addr(upstream));
        r.protocol = Protocol::Http;
        config.routes.push(r);
    }
    config
        .faults
        .push(("api".into(), http_abort("admin", Origin::Admin)));
    let agent = Agent::start(&config).await.expect("agent starts");
    let table = &agent.table;
    let guarded = [("api", "abort"), ("web", "abort")];
    let state = |generation: u64, guards: Vec<LocalGuard>| DesiredState {
        generation,
        lease: Duration::from_secs(60),
        faults: vec![ctl("api", "abort"), ctl("api", "keep"), ctl("web", "abort")],
        guards,
    };
    let key = domain_guard(&guarded).key();

    assert_eq!(
        table.trip_local_guard(&key, &[]).await,
        None,
        "no lease, no trip"
    );
    let applied = table
        .apply_desired(state(1, vec![domain_guard(&guarded)]))
        .await
        .unwrap();
    assert_eq!(applied.faults, 3);
    let faults: Vec<FaultRef> = domain_guard(&guarded).faults;
    let cleared = table.trip_local_guard(&key, &faults).await.expect("trips");
    assert_eq!((cleared.faults, cleared.generation), (2, 1));
    assert_eq!(controller_faults(table, "api"), ["admin", "keep"]);
    assert_eq!(controller_faults(table, "web"), Vec::<String>::new());
    assert!(table.is_tripped(&key));
    assert_eq!(
        table.trip_local_guard(&key, &faults).await,
        None,
        "a guard trips once"
    );

    // Re-sent with the guard: the guarded faults stay off.
    let applied = table
        .apply_desired(state(2, vec![domain_guard(&guarded)]))
        .await
        .unwrap();
    assert_eq!(applied.faults, 1);
    assert_eq!(controller_faults(table, "api"), ["admin", "keep"]);
    // Without it: the trip is forgotten.
    let applied = table.apply_desired(state(3, vec![])).await.unwrap();
    assert_eq!(applied.faults, 3);
    assert_eq!(controller_faults(table, "api"), ["abort", "admin", "keep"]);
    assert!(!table.is_tripped(&key));
    assert_eq!(
        table.trip_local_guard(&key, &faults).await,
        None,
        "a guard the applied state does not name cannot trip"
    );

    // The end of the lease forgets every guard.
    table
        .apply_desired(state(4, vec![domain_guard(&guarded)]))
        .await
        .unwrap();
    table.clear_controller_faults("test").await;
    assert_eq!(table.trip_local_guard(&key, &faults).await, None);
    assert_eq!(controller_faults(table, "api"), ["admin"]);
}
