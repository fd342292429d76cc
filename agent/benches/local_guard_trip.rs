//! Breach → faults off in the agent: how long after the response that makes a local guard's
//! condition true is counted do the guarded faults leave the route table?
//!
//! An in-process route table with an `http` route holding a controller-issued `http_abort`,
//! and a local guard (error rate above 5 %, min 10 requests, hold 0) run by the real
//! [`Guards`] task on a current-thread runtime, as on the agent's control side. Each round
//! re-arms the guard (a desired state without it forgets the trip, one with it starts a fresh
//! window), waits a random part of a tick so breaches land at every phase of the 5 ms tick,
//! counts nine 503s (too few requests: no verdict), then times from counting the tenth (the
//! data plane's own `record_response`) to the route's snapshot without the fault.
//!
//! Run: `cargo bench -p faultline-agent --bench local_guard_trip`. Prints p50/p90/p99/max over
//! `ROUNDS` trips, and separately the part from the trip decision to the faults being off (the
//! rest is waiting for the next tick). It measures; it asserts nothing.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use faultline_agent::admin::toxiproxy::ToxicInput;
use faultline_agent::fault::{Fault, Origin};
use faultline_agent::guard::{
    Comparison, FaultRef, GrpcCodes, GuardMetric, Guards, LocalGuard, TICK,
};
use faultline_agent::route::{DesiredState, Protocol, RouteSpec, RouteTable, Upstream};
use faultline_agent::tcp::DataPlane;
use faultline_agent::tcp::workers::Pinning;
use faultline_proto::{prost_types, v1};
use serde_json::json;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

const ROUNDS: usize = 200;
const MS: Duration = Duration::from_millis(1);

fn abort() -> Fault {
    let input: ToxicInput = serde_json::from_value(json!({
        "name": "abort",
        "type": "http_abort",
        "attributes": { "status": 503 },
    }))
    .expect("a toxic");
    let mut fault = input.into_fault().expect("a valid fault");
    fault.origin = Origin::Controller {
        experiment: "exp".into(),
    };
    fault
}

fn guard() -> LocalGuard {
    LocalGuard {
        name: "errors".into(),
        experiment: "exp".into(),
        route: "api".into(),
        metric: GuardMetric::ErrorRate {
            grpc_codes: GrpcCodes::ALL_BUT_OK,
        },
        comparison: Comparison::Above,
        threshold: 0.05,
        window: Duration::from_secs(1),
        hold: Duration::ZERO,
        min_requests: 10,
        trip_on_no_data: false,
        faults: vec![FaultRef {
            route: "api".into(),
            name: "abort".into(),
        }],
    }
}

fn desired(generation: u64, guards: Vec<LocalGuard>) -> DesiredState {
    DesiredState {
        generation,
        lease: Duration::from_secs(60),
        faults: vec![("api".into(), abort())],
        guards,
    }
}

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let (took, clearing) = runtime.block_on(measure());
    report("breach -> faults off in the route table", took);
    report(
        "of which trip -> cleared (the table's critical section and publish)",
        clearing,
    );
}

fn report(what: &str, mut took: Vec<Duration>) {
    took.sort();
    let pct = |p: f64| took[((took.len() as f64 * p).ceil() as usize).clamp(1, took.len()) - 1];
    println!(
        "local guard, {what}, {} trips (tick {TICK:?}): p50 {:?}  p90 {:?}  p99 {:?}  max {:?}",
        took.len(),
        pct(0.50),
        pct(0.90),
        pct(0.99),
        took[took.len() - 1],
    );
}

/// Breach to faults off, and the trip message's `tripped_at` to `cleared_at`, per round.
async fn measure() -> (Vec<Duration>, Vec<Duration>) {
    let drain = CancellationToken::new();
    let plane = DataPlane::new(drain.clone(), Duration::from_secs(1), 1, Pinning::Off)
        .expect("a data plane");
    let table = RouteTable::new(plane);
    let mut spec = RouteSpec::tcp(
        "api",
        "127.0.0.1:0",
        Upstream::Addr("127.0.0.1:9".parse().unwrap()),
    );
    spec.protocol = Protocol::Http;
    table.create(spec).expect("a route");
    let metrics = Arc::clone(&table.metrics()[0].1);
    let mut snapshots = table.subscribe("api").expect("the route");
    let (tx, mut trips) = mpsc::channel(16);
    let guards = Guards::start(table.clone(), tx);
    let mut took = Vec::with_capacity(ROUNDS);
    let mut clearing = Vec::with_capacity(ROUNDS);
    for round in 0..ROUNDS as u64 {
        // Re-arm: forget the last trip (the fault is back), then a fresh guard window.
        table
            .apply_desired(desired(2 * round + 1, vec![]))
            .await
            .expect("applied");
        guards.update(vec![]);
        table
            .apply_desired(desired(2 * round + 2, vec![guard()]))
            .await
            .expect("applied");
        guards.update(vec![guard()]);
        assert_eq!(
            snapshots.borrow_and_update().faults.len(),
            1,
            "the fault is on"
        );
        // Let the task take the new guard, then land at a random phase of its tick.
        tokio::time::sleep(2 * TICK + Duration::from_micros(fastrand::u64(0..5000))).await;
        for _ in 0..9 {
            metrics.http.record_response(503, true, MS);
        }
        let breach = Instant::now();
        metrics.http.record_response(503, true, MS);
        snapshots
            .wait_for(|s| s.faults.is_empty())
            .await
            .expect("the route lives");
        took.push(breach.elapsed());
        let trip = match trips.recv().await.expect("a trip message").body {
            Some(v1::agent_message::Body::LocalTrip(t)) => t,
            other => panic!("expected a trip, got {other:?}"),
        };
        let at = |t: Option<prost_types::Timestamp>| SystemTime::try_from(t.unwrap()).unwrap();
        clearing.push(
            at(trip.cleared_at)
                .duration_since(at(trip.tripped_at))
                .unwrap_or_default(),
        );
    }
    drain.cancel();
    (took, clearing)
}
