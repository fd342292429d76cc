//! Benchmarks of the agent's hot functions: the work done per connection, per request, per
//! data frame and per counted event. They measure; the unit tests beside each function assert.
//!
//! - `tcp_plan`: deciding a TCP connection's plan ([`plan::build`] for both flows, as
//!   `tcp::conn::admit` does, and [`plan::all_passthrough`]) under 0, 3 and 20 faults.
//! - `http_select`: choosing a request's faults ([`select::choose`]) with no rules, one rule
//!   whose header match fails, 10 rules with path and header matchers, and a sticky cohort.
//! - `grpc_framer`: finding message boundaries in a 64 KiB data frame ([`Framer::split`]).
//! - `metrics`: [`LatencyHistogram::record`] and the [`RouteMetrics`] counter updates.
//! - `bandwidth`: [`TokenBucket::take`], with tokens to spare and when throttling.
//!
//! Faults are parsed from JSON through the admin API's own types (`ToxicInput`, `RuleInput`)
//! and snapshots are built as `route::table` publishes them, so the benchmarks see exactly what
//! the data path sees. Run: `cargo bench -p faultline-agent --bench hot_paths [-- --quick]`.
//! Single-threaded and uncontended: the atomics' cost under contention is not measured here.

use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use serde_json::{Value, json};
use tokio::time::Instant;

use faultline_agent::admin::rules::RuleInput;
use faultline_agent::admin::toxiproxy::ToxicInput;
use faultline_agent::fault::bandwidth::TokenBucket;
use faultline_agent::fault::{Fault, Flow, KindTag};
use faultline_agent::http::grpc::Framer;
use faultline_agent::http::select;
use faultline_agent::metrics::{LatencyHistogram, RouteMetrics};
use faultline_agent::route::{ActiveFault, HttpOptions, Protocol, RouteSnapshot, RouteState};
use faultline_agent::tcp::plan::{self, ConnCtx};

// === Snapshots and faults, as the admin API and the route table make them ===

/// A Toxiproxy toxic, parsed as `POST /proxies/{name}/toxics` parses it.
fn toxic(v: Value) -> Fault {
    let input: ToxicInput = serde_json::from_value(v.clone()).expect("a toxic body");
    input
        .into_fault()
        .unwrap_or_else(|e| panic!("{v}: {}", e.message))
}

/// A native rule, parsed as `POST /faultline/v1/routes/{route}/rules` parses it.
fn rule(v: Value) -> Fault {
    let input: RuleInput = serde_json::from_value(v.clone()).expect("a rule body");
    input
        .into_fault()
        .unwrap_or_else(|e| panic!("{v}: {}", e.message))
}

/// A serving route's snapshot, with keys and start times given as `RouteTable::add_fault` does.
fn snapshot(protocol: Protocol, faults: Vec<Fault>) -> RouteSnapshot {
    let now = Instant::now();
    RouteSnapshot {
        name: "bench".into(),
        upstream: "127.0.0.1:8080".parse().expect("an upstream"),
        protocol,
        http: HttpOptions::default(),
        state: RouteState::Serving,
        faults: faults
            .into_iter()
            .zip(1..)
            .map(|(fault, key)| ActiveFault {
                key,
                since: now,
                fault,
                counters: Default::default(),
            })
            .collect(),
        metrics: Arc::new(RouteMetrics::default()),
    }
}

// === tcp_plan ===

/// Three common TCP toxics, all acting on every connection.
fn three_tcp_faults() -> Vec<Fault> {
    vec![
        toxic(
            json!({"name": "lat", "type": "latency", "attributes": {"latency": 100, "jitter": 10}}),
        ),
        toxic(
            json!({"name": "bw", "type": "bandwidth", "stream": "upstream", "attributes": {"rate": 1000}}),
        ),
        toxic(
            json!({"name": "slice", "type": "slicer", "attributes": {"average_size": 64, "size_variation": 32, "delay": 10}}),
        ),
    ]
}

/// Twenty faults of every TCP kind but `down`, over all streams and several toxicities. The
/// partition's networks do not hold the bench's addresses, so it is checked but never acts.
fn twenty_tcp_faults() -> Vec<Fault> {
    let kinds = [
        json!({"type": "latency", "attributes": {"latency": 20, "jitter": 5}}),
        json!({"type": "bandwidth", "attributes": {"rate": 500}}),
        json!({"type": "slicer", "attributes": {"average_size": 128, "size_variation": 64}}),
        json!({"type": "slow_close", "attributes": {"delay": 100}}),
        json!({"type": "limit_data", "attributes": {"bytes": 1_000_000}}),
        json!({"type": "reset_peer", "attributes": {"timeout": 60_000}}),
        json!({"type": "timeout", "attributes": {"timeout": 60_000}}),
        json!({"type": "partition", "attributes": {"cidrs": ["10.0.0.0/8", "192.0.2.0/24"]}}),
    ];
    let streams = ["downstream", "upstream", "both"];
    let toxicities = [1.0, 0.5, 0.1, 0.9];
    (0..20)
        .map(|i| {
            let mut t = kinds[i % kinds.len()].clone();
            t["name"] = json!(format!("f{i:02}"));
            t["stream"] = json!(streams[i % streams.len()]);
            t["toxicity"] = json!(toxicities[i % toxicities.len()]);
            toxic(t)
        })
        .collect()
}

fn tcp_plan(c: &mut Criterion) {
    let cases = [
        ("no_faults", snapshot(Protocol::Tcp, Vec::new())),
        ("3_tcp_faults", snapshot(Protocol::Tcp, three_tcp_faults())),
        ("20_faults", snapshot(Protocol::Tcp, twenty_tcp_faults())),
    ];
    let client: SocketAddr = "127.0.0.1:40000".parse().expect("an address");
    let mut ctx = ConnCtx {
        seed: 1,
        started: Instant::now(),
        client,
        upstream: Some("127.0.0.1:8080".parse().expect("an address")),
    };
    let mut g = c.benchmark_group("tcp_plan");
    for (name, snap) in &cases {
        // Each iteration is a new connection: a new seed, so toxicity rolls vary.
        g.bench_with_input(
            BenchmarkId::new("build_both_flows", name),
            snap,
            |b, snap| {
                b.iter(|| {
                    ctx.seed = plan::mix(ctx.seed);
                    let up = plan::build(snap, Flow::Upstream, &ctx);
                    let down = plan::build(snap, Flow::Downstream, &ctx);
                    black_box((up, down))
                })
            },
        );
        g.bench_with_input(
            BenchmarkId::new("all_passthrough", name),
            snap,
            |b, snap| {
                b.iter(|| {
                    ctx.seed = plan::mix(ctx.seed);
                    black_box(plan::all_passthrough(snap, &ctx))
                })
            },
        );
    }
    g.finish();
}

// === http_select ===

/// A typical API request; header names and values as a client library sends them.
fn api_request() -> http::Request<()> {
    http::Request::builder()
        .method("GET")
        .uri("/api/v1/users/42")
        .header("host", "api.local")
        .header("user-agent", "bench-client/1.0")
        .header("accept", "application/json")
        .header("x-user-id", "user-4242")
        .header("x-request-id", "0f8e2c1a-5b7d-4e21-9c3f-6a1d2b3c4d5e")
        .body(())
        .expect("a request")
}

/// One 10% abort for canary traffic only; the bench request is not canary traffic.
fn one_unmatched_rule() -> Vec<Fault> {
    vec![rule(json!({
        "name": "canary-abort", "type": "http_abort", "percentage": 10,
        "match": {"headers": [{"name": "x-canary", "exact": "1"}]},
        "attributes": {"status": 503},
    }))]
}

/// Ten rules over path prefixes, path regexes, headers, methods and authority; four of them
/// match the bench request and are sampled (at 2% to 10%), six do not.
fn ten_rules() -> Vec<Fault> {
    [
        json!({"name": "r01", "type": "http_abort", "percentage": 1,
               "match": {"path": {"prefix": "/api/"}, "headers": [{"name": "x-canary", "present": true}]},
               "attributes": {"status": 503}}),
        json!({"name": "r02", "type": "http_delay", "percentage": 5,
               "match": {"path": {"regex": "^/api/v[0-9]+/users/[0-9]+$"}},
               "attributes": {"delay": 50}}),
        json!({"name": "r03", "type": "http_abort", "percentage": 2,
               "match": {"path": {"prefix": "/admin/"}},
               "attributes": {"status": 500}}),
        json!({"name": "r04", "type": "http_throttle", "percentage": 10,
               "match": {"path": {"prefix": "/api/v1/"}, "headers": [{"name": "accept", "prefix": "application/json"}]},
               "attributes": {"bytes_per_second": 10_000}}),
        json!({"name": "r05", "type": "http_reset", "percentage": 1,
               "match": {"methods": ["POST", "PUT"], "path": {"prefix": "/api/"}},
               "attributes": {"phase": "mid_response", "after_bytes": 1024}}),
        json!({"name": "r06", "type": "http_delay", "percentage": 2,
               "match": {"headers": [{"name": "x-user-id", "regex": "^user-[0-9]{4}$"}]},
               "attributes": {"delay": 200, "jitter": 50, "phase": "response"}}),
        json!({"name": "r07", "type": "http_abort", "percentage": 5,
               "match": {"path": {"regex": "^/api/v2/"}},
               "attributes": {"status": 429}}),
        json!({"name": "r08", "type": "http_abort", "percentage": 10,
               "match": {"headers": [{"name": "x-tenant", "exact": "acme"}]},
               "attributes": {"status": 503}}),
        json!({"name": "r09", "type": "http_reset", "percentage": 0.5,
               "match": {"path": {"prefix": "/api/v1/orders"}}}),
        json!({"name": "r10", "type": "http_delay", "percentage": 2,
               "match": {"authority": {"exact": "api.local"}, "path": {"prefix": "/api"}},
               "attributes": {"delay": 10}}),
    ]
    .into_iter()
    .map(rule)
    .collect()
}

/// A 10% abort for a sticky cohort of users, keyed by `x-user-id`.
fn cohort_rule() -> Vec<Fault> {
    vec![rule(json!({
        "name": "cohort-abort", "type": "http_abort", "percentage": 10,
        "cohort": {"header": "x-user-id", "seed": 7},
        "attributes": {"status": 503},
    }))]
}

/// The bench request for a user outside the cohort: the 90% case, which every request of that
/// user takes (a user inside it gets the abort every time, a different path).
fn request_outside_cohort(snap: &RouteSnapshot) -> http::Request<()> {
    (0..1000)
        .map(|i| {
            let mut req = api_request();
            let id = http::HeaderValue::from_str(&format!("user-{i}")).expect("a header value");
            req.headers_mut().insert("x-user-id", id);
            req
        })
        .find(|req| {
            let chosen = select::choose(snap, req, None, false).expect("no header faults");
            !chosen.injected()
        })
        .expect("90% of users are outside a 10% cohort")
}

fn http_select(c: &mut Criterion) {
    let req = api_request();
    let cohort = snapshot(Protocol::Http, cohort_rule());
    let cohort_req = request_outside_cohort(&cohort);
    let cases = [
        ("no_rules", snapshot(Protocol::Http, Vec::new()), &req),
        (
            "1_rule_header_mismatch",
            snapshot(Protocol::Http, one_unmatched_rule()),
            &req,
        ),
        ("10_rules", snapshot(Protocol::Http, ten_rules()), &req),
        ("sticky_cohort", cohort, &cohort_req),
    ];
    let mut g = c.benchmark_group("http_select");
    for (name, snap, req) in &cases {
        g.bench_with_input(BenchmarkId::new("choose", name), snap, |b, snap| {
            b.iter(|| black_box(select::choose(snap, black_box(*req), None, false)))
        });
    }
    g.finish();
}

// === grpc_framer ===

/// 64 KiB of back-to-back gRPC messages with 100-byte payloads (105 bytes with the prefix);
/// the frame ends partway through its 625th message, as frames do.
fn grpc_frame() -> Bytes {
    let mut message = vec![0u8];
    message.extend_from_slice(&100u32.to_be_bytes());
    message.extend(std::iter::repeat_n(0x5a, 100));
    let frame: Vec<u8> = message.iter().copied().cycle().take(64 * 1024).collect();
    Bytes::from(frame)
}

fn grpc_framer(c: &mut Criterion) {
    let frame = grpc_frame();
    let mut g = c.benchmark_group("grpc_framer");
    g.throughput(Throughput::Bytes(frame.len() as u64));
    g.bench_function("split_64KiB_of_100B_messages", |b| {
        // A fresh framer each time, so every iteration starts at a message boundary.
        b.iter(|| black_box(Framer::default().split(frame.clone())))
    });
    g.finish();
}

// === metrics ===

fn metrics(c: &mut Criterion) {
    // Latencies from 3 µs to 6 s, so the bucket lookups do not all take one branch.
    let latencies: Vec<Duration> = (0..64u32)
        .map(|i| Duration::from_nanos(3_000u64 << (i % 22)) + Duration::from_nanos(u64::from(i)))
        .collect();
    let mut g = c.benchmark_group("metrics");

    let hist = LatencyHistogram::default();
    let mut i = 0;
    g.bench_function("latency_histogram_record", |b| {
        b.iter(|| {
            i = (i + 1) % latencies.len();
            hist.record(black_box(latencies[i]))
        })
    });

    let m = Arc::new(RouteMetrics::default());
    g.bench_function("route_add_bytes", |b| {
        b.iter(|| m.add_bytes(black_box(Flow::Upstream), black_box(16_384)))
    });
    g.bench_function("route_injected", |b| {
        b.iter(|| m.injected(black_box(KindTag::Latency)))
    });
    g.bench_function("route_connection_guard", |b| {
        b.iter(|| drop(black_box(m.connection())))
    });
    let mut i = 0;
    g.bench_function("http_record_response", |b| {
        b.iter(|| {
            i = (i + 1) % latencies.len();
            m.http
                .record_response(black_box(200), black_box(false), latencies[i])
        })
    });
    g.finish();
}

// === bandwidth ===

fn bandwidth(c: &mut Criterion) {
    let mut g = c.benchmark_group("bandwidth");
    // 10 GB/s with 1 µs between writes: the bucket never runs dry; `take` answers zero.
    let mut now = Instant::now();
    let mut bucket = TokenBucket::new(10_000_000_000, now);
    g.bench_function("token_bucket_take/under_rate", |b| {
        b.iter(|| {
            now += Duration::from_micros(1);
            black_box(bucket.take(black_box(1448), now))
        })
    });
    // 100 kB/s: every write waits, and the clock moves on by the wait, as the faulted path
    // sleeps for it.
    let mut now = Instant::now();
    let mut bucket = TokenBucket::new(100_000, now);
    g.bench_function("token_bucket_take/throttled", |b| {
        b.iter(|| {
            let wait = bucket.take(black_box(1448), now);
            now += wait;
            black_box(wait)
        })
    });
    g.finish();
}

criterion_group!(
    benches,
    tcp_plan,
    http_select,
    grpc_framer,
    metrics,
    bandwidth
);
criterion_main!(benches);
