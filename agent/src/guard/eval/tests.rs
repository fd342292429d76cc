//! The window, value, no-data and hold logic, on paused time: each test records into a route's
//! counters, moves the clock by whole ticks and takes each tick as the runner would.

use std::time::Duration;

use super::*;
use crate::guard::TICK;
use crate::guard::spec::{Comparison, FaultRef, GrpcCodes};

const MS: Duration = Duration::from_millis(1);

fn guard(metric: GuardMetric, comparison: Comparison, threshold: f64) -> LocalGuard {
    LocalGuard {
        name: "errors".into(),
        experiment: "exp".into(),
        route: "api".into(),
        metric,
        comparison,
        threshold,
        window: Duration::from_secs(1),
        hold: Duration::ZERO,
        min_requests: 0,
        trip_on_no_data: false,
        faults: vec![FaultRef {
            route: "api".into(),
            name: "abort".into(),
        }],
    }
}

fn error_rate(threshold: f64) -> LocalGuard {
    guard(
        GuardMetric::ErrorRate {
            grpc_codes: GrpcCodes::ALL_BUT_OK,
        },
        Comparison::Above,
        threshold,
    )
}

/// A guard on fresh counters, started now.
fn start(g: LocalGuard) -> (Evaluator, Arc<RouteMetrics>) {
    let m = Arc::new(RouteMetrics::default());
    (Evaluator::new(g, m.clone(), Instant::now()), m)
}

/// Moves the clock one tick and takes it.
async fn tick(e: &mut Evaluator) -> Option<Breach> {
    tokio::time::advance(TICK).await;
    e.tick(Instant::now())
}

fn record(m: &RouteMetrics, ok: u64, failed: u64) {
    for _ in 0..ok {
        m.http.record_response(200, false, MS);
    }
    for _ in 0..failed {
        m.http.record_response(503, true, MS);
    }
}

#[tokio::test(start_paused = true)]
async fn an_error_rate_over_the_threshold_trips_at_the_next_tick_without_hold() {
    let (mut e, m) = start(error_rate(0.05));
    record(&m, 100, 5); // 4.8 %: healthy
    assert_eq!(tick(&mut e).await, None);
    assert!(
        matches!(e.verdict(Instant::now()), Verdict::Healthy(v) if (v - 5.0 / 105.0).abs() < 1e-9)
    );
    record(&m, 0, 1); // 6 / 106 = 5.7 %
    let at = Instant::now() + TICK;
    let b = tick(&mut e).await.expect("trips");
    assert_eq!((b.breached_at, b.tripped_at), (at, at));
    assert!((b.value - 6.0 / 106.0).abs() < 1e-9, "{}", b.value);
}

#[tokio::test(start_paused = true)]
async fn errors_leave_the_window_after_it() {
    let (mut e, m) = start(error_rate(0.5));
    record(&m, 1, 0);
    assert_eq!(tick(&mut e).await, None);
    // Ten errors, then a second of nothing: they slide out and only "no data" is left.
    tokio::time::advance(Duration::from_secs(1)).await;
    record(&m, 0, 10);
    assert!(tick(&mut e).await.is_some());
    for _ in 0..200 {
        tick(&mut e).await;
    }
    assert_eq!(e.verdict(Instant::now()), Verdict::NoData);
}

#[tokio::test(start_paused = true)]
async fn the_condition_must_hold_for_hold_without_a_break() {
    let mut g = error_rate(0.05);
    g.hold = Duration::from_millis(20);
    let (mut e, m) = start(g);
    record(&m, 0, 1);
    let first = Instant::now() + TICK;
    for _ in 0..4 {
        assert_eq!(tick(&mut e).await, None, "held less than 20 ms");
    }
    // A burst of successes brings the rate under the threshold for one tick: start over.
    record(&m, 100, 0);
    assert_eq!(tick(&mut e).await, None);
    assert_eq!(e.since, None);
    record(&m, 0, 10);
    let again = Instant::now() + TICK;
    for _ in 0..4 {
        assert_eq!(tick(&mut e).await, None);
    }
    let b = tick(&mut e).await.expect("held 20 ms");
    assert_ne!(b.breached_at, first);
    assert_eq!(b.breached_at, again);
    assert_eq!(b.tripped_at - b.breached_at, Duration::from_millis(20));
}

#[tokio::test(start_paused = true)]
async fn too_few_requests_is_no_data_judged_after_a_whole_window() {
    for trip_on_no_data in [false, true] {
        let mut g = error_rate(0.05);
        g.min_requests = 10;
        g.trip_on_no_data = trip_on_no_data;
        let (mut e, m) = start(g);
        record(&m, 0, 9); // 100 % errors, but only nine requests
        let mut tripped = None;
        for i in 1..=400u32 {
            if let Some(b) = tick(&mut e).await {
                tripped = Some((i, b));
                break;
            }
        }
        if trip_on_no_data {
            let (i, b) = tripped.expect("no data trips");
            assert_eq!(
                TICK * i,
                Duration::from_secs(1),
                "judged once the window is full"
            );
            assert!(b.value.is_nan());
        } else {
            assert_eq!(tripped, None, "no data never trips");
            assert_eq!(e.verdict(Instant::now()), Verdict::NoData);
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_latency_quantile_is_judged_in_seconds() {
    let g = guard(GuardMetric::LatencyQuantile(0.9), Comparison::Above, 0.1);
    let (mut e, m) = start(g);
    for _ in 0..95 {
        m.http.record_response(200, false, 5 * MS);
    }
    for _ in 0..5 {
        m.http.record_response(200, false, 300 * MS);
    }
    assert_eq!(tick(&mut e).await, None, "p90 is about 5 ms");
    for _ in 0..10 {
        m.http.record_response(200, false, 300 * MS);
    }
    let b = tick(&mut e).await.expect("p90 is about 300 ms");
    assert!((0.3..0.32).contains(&b.value), "{}", b.value);
}

#[tokio::test(start_paused = true)]
async fn a_request_rate_below_waits_for_a_whole_window_and_above_does_not() {
    let g = guard(GuardMetric::RequestRate, Comparison::Below, 50.0);
    let (mut e, m) = start(g);
    record(&m, 10, 0);
    for _ in 1..200 {
        assert_eq!(tick(&mut e).await, None);
    }
    assert_eq!(e.verdict(Instant::now()), Verdict::Pending);
    let b = tick(&mut e)
        .await
        .expect("10 requests in 1 s is under 50/s");
    assert_eq!(b.value, 10.0);

    let g = guard(GuardMetric::RequestRate, Comparison::Above, 50.0);
    let (mut e, m) = start(g);
    record(&m, 60, 0);
    assert_eq!(tick(&mut e).await.map(|b| b.value), Some(60.0));
}
