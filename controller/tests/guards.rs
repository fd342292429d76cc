//! SLO guards end to end: a controller in-process on 127.0.0.1:0 (heartbeat 100 ms), one agent
//! dialling it with an HTTP route `api` in front of a real HTTP service whose health the test
//! switches, and bounded traffic through the agent. Guards judge what the agent reports (or
//! a probe sees); a trip withdraws the faults and the experiment aborts with the guard's
//! value; the recovery after the faults is measured. One test runs a real Prometheus
//! (Debian's package) scraping the agent's `/metrics` for a PromQL guard.

mod support;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use faultline_agent::app::Agent;
use faultline_agent::config::{AgentConfig, ControllerConfig};
use faultline_agent::route::{Protocol, RouteSpec, Upstream};
use faultline_controller::config::Leases;
use faultline_controller::guard::http::Http;
use faultline_controller::guard::prometheus;
use faultline_controller::spec::PrometheusSource;
use faultline_proto::v1::experiment_service_client::ExperimentServiceClient;
use faultline_proto::v1::{
    CreateExperimentRequest, Experiment, ExperimentEventKind, ExperimentState,
    GetExperimentRequest, GetExperimentResponse, RecoveryState, StartExperimentRequest,
    create_experiment_request,
};
use http_body_util::{BodyExt, Empty, Full};
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use support::prometheus::{PrometheusProcess, prometheus_binary};
use support::{InProcess, eventually};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

const HEARTBEAT: Duration = Duration::from_millis(100);

// === a service whose health the test switches ===

/// An HTTP service answering 200 `ok`, or 503 while it is unhealthy.
#[derive(Clone)]
struct Service {
    addr: SocketAddr,
    /// Unhealthy until this many ms since the epoch (0: healthy; u64::MAX: for good).
    sick_until_ms: Arc<AtomicU64>,
    /// When not 0, every this-many-th request fails anyway: baseline noise.
    fail_every: Arc<AtomicU64>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

impl Service {
    async fn start() -> Service {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let sick_until_ms = Arc::new(AtomicU64::new(0));
        let fail_every = Arc::new(AtomicU64::new(0));
        let served = Arc::new(AtomicU64::new(0));
        let (sick, every) = (sick_until_ms.clone(), fail_every.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (sick, every, served) = (sick.clone(), every.clone(), served.clone());
                tokio::spawn(async move {
                    let svc =
                        hyper::service::service_fn(move |_req: Request<hyper::body::Incoming>| {
                            let n = served.fetch_add(1, Ordering::Relaxed) + 1;
                            let every = every.load(Ordering::Relaxed);
                            let sick = sick.load(Ordering::Relaxed) > now_ms()
                                || (every > 0 && n.is_multiple_of(every));
                            async move {
                                let (status, body) = if sick {
                                    (StatusCode::SERVICE_UNAVAILABLE, "sick")
                                } else {
                                    (StatusCode::OK, "ok")
                                };
                                Ok::<_, Infallible>(
                                    Response::builder()
                                        .status(status)
                                        .body(Full::new(Bytes::from_static(body.as_bytes())))
                                        .unwrap(),
                                )
                            }
                        });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Service {
            addr,
            sick_until_ms,
            fail_every,
        }
    }

    fn sick_for(&self, d: Duration) {
        self.sick_until_ms
            .store(now_ms() + d.as_millis() as u64, Ordering::Relaxed);
    }

    fn sick_for_good(&self) {
        self.sick_until_ms.store(u64::MAX, Ordering::Relaxed);
    }
}

// === traffic ===

/// Requests through the agent, one after another every few ms, bounded in count; counts
/// answers by status.
struct Traffic {
    task: JoinHandle<()>,
    ok: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
}

impl Traffic {
    const MAX_REQUESTS: u64 = 30_000;

    fn start(through: SocketAddr) -> Traffic {
        Self::start_as(through, false)
    }

    /// With `users`, each request carries `x-user: user-N`, a new user each time (sticky
    /// cohorts key on it).
    fn start_as(through: SocketAddr, users: bool) -> Traffic {
        let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let (ok2, failed2) = (ok.clone(), failed.clone());
        let client: Client<HttpConnector, Empty<Bytes>> =
            Client::builder(TokioExecutor::new()).build_http();
        let task = tokio::spawn(async move {
            for i in 0..Self::MAX_REQUESTS {
                let mut req = Request::get(format!("http://{through}/"));
                if users {
                    req = req.header("x-user", format!("user-{i}"));
                }
                let req = req.body(Empty::new()).unwrap();
                match client.request(req).await {
                    Ok(resp) if resp.status() == StatusCode::OK => {
                        let _ = resp.into_body().collect().await;
                        ok2.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(resp) => {
                        let _ = resp.into_body().collect().await;
                        failed2.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => {
                        failed2.fetch_add(1, Ordering::Relaxed);
                    }
                }
                tokio::time::sleep(Duration::from_millis(3)).await;
            }
        });
        Traffic { task, ok, failed }
    }

    fn counts(&self) -> (u64, u64) {
        (
            self.ok.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        self.task.abort();
    }
}

// === the controller and the agent ===

struct Fixture {
    api: ExperimentServiceClient<Channel>,
    agent: Agent,
    /// The agent's route `api`.
    route: SocketAddr,
    service: Service,
    controller: InProcess,
}

impl Fixture {
    async fn start() -> Fixture {
        let controller = InProcess::start(
            "guards",
            Leases::new(Duration::from_secs(1), HEARTBEAT).unwrap(),
            false,
        )
        .await;
        let addr = controller.addr;
        let service = Service::start().await;
        let mut route = RouteSpec::tcp("api", "127.0.0.1:0", Upstream::Addr(service.addr));
        route.protocol = Protocol::Http;
        let config = AgentConfig {
            routes: vec![route],
            controller: Some(
                ControllerConfig::new(
                    &format!("http://{addr}"),
                    "agent-a",
                    BTreeMap::from([("app".to_owned(), "shop".to_owned())]),
                )
                .unwrap(),
            ),
            ..AgentConfig::embedded()
        };
        let agent = Agent::start(&config).await.expect("agent starts");
        let route = agent.table.get("api").unwrap().listen;
        let fx = Fixture {
            api: ExperimentServiceClient::new(controller.channel().await),
            agent,
            route,
            service,
            controller,
        };
        // Connected once the agent runs a desired state (generation 1, no faults).
        eventually(Duration::from_secs(10), "the agent connected", || async {
            fx.agent.table.lease().map(|_| ())
        })
        .await;
        fx
    }

    async fn create(&mut self, name: &str, spec: &str) {
        let yaml = format!(
            "apiVersion: faultline.dev/v1alpha1\nkind: Experiment\nmetadata: {{name: {name}}}\n\
             spec:\n  targets: {{selector: {{matchLabels: {{app: shop}}}}}}\n{spec}"
        );
        self.api
            .create(CreateExperimentRequest {
                spec: Some(create_experiment_request::Spec::SpecYaml(yaml)),
            })
            .await
            .expect("the spec is valid");
    }

    async fn start_experiment(&mut self, name: &str) -> Result<Experiment, tonic::Status> {
        self.api
            .start(StartExperimentRequest { name: name.into() })
            .await
            .map(|r| r.into_inner())
    }

    async fn get(&mut self, name: &str) -> GetExperimentResponse {
        self.api
            .get(GetExperimentRequest { name: name.into() })
            .await
            .unwrap()
            .into_inner()
    }

    /// Creates `name` from `spec`, starts it (pre-flight must pass) and waits until it settles.
    async fn run_to_end(&mut self, name: &str, spec: &str) -> GetExperimentResponse {
        self.create(name, spec).await;
        self.start_experiment(name)
            .await
            .expect("pre-flight passes");
        self.settled(name, Duration::from_secs(30)).await
    }

    /// Waits until `name`'s recovery watch is over (or it never ran) and answers it.
    async fn settled(&mut self, name: &str, within: Duration) -> GetExperimentResponse {
        let api = self.api.clone();
        eventually(within, "the experiment settled", || {
            let mut api = api.clone();
            async move {
                let got = api
                    .get(GetExperimentRequest { name: name.into() })
                    .await
                    .unwrap()
                    .into_inner();
                let r = got.experiment.as_ref()?.result.as_ref()?;
                (r.recovery() != RecoveryState::Observing).then_some(got)
            }
        })
        .await
    }

    /// Waits for `name` to complete, then does `then` to the service at once.
    async fn when_completed(&self, name: &str, then: impl Fn(&Service)) {
        let api = self.api.clone();
        eventually(Duration::from_secs(10), "completed", || {
            let mut api = api.clone();
            async move {
                let got = api
                    .get(GetExperimentRequest { name: name.into() })
                    .await
                    .unwrap()
                    .into_inner();
                (got.experiment?.state() == ExperimentState::Completed).then_some(())
            }
        })
        .await;
        then(&self.service);
    }

    /// Controller-issued faults the agent runs now.
    fn controller_faults(&self) -> usize {
        let route = self.agent.table.get("api").unwrap();
        route
            .faults
            .iter()
            .filter(|f| {
                matches!(
                    f.fault.origin,
                    faultline_agent::fault::Origin::Controller { .. }
                )
            })
            .count()
    }

    async fn stop(self) {
        self.agent.shutdown(Duration::from_secs(1)).await;
        self.controller.stop().await;
    }
}

fn events(got: &GetExperimentResponse, kind: ExperimentEventKind) -> Vec<serde_json::Value> {
    got.events
        .iter()
        .filter(|e| e.kind() == kind)
        .map(|e| serde_json::from_str(&e.detail_json).unwrap_or_default())
        .collect()
}

fn secs(d: &faultline_proto::prost_types::Duration) -> f64 {
    d.seconds as f64 + f64::from(d.nanos) / 1e9
}

/// An in-band error-rate guard on the route, as spec lines.
const ERROR_GUARD: &str = concat!(
    "  guards:\n",
    "    - name: errors\n",
    "      agents: {route: api, metric: errorRate, minRequests: 10}\n",
    "      above: 0.05\n",
    "      window: 500ms\n",
    "      for: 200ms\n",
);

// === tests ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_rate_guard_trips_withdraws_the_faults_and_measures_recovery() {
    let mut fx = Fixture::start().await;
    let traffic = Traffic::start(fx.route);
    fx.create(
        "abort-60",
        &format!(
            "  faults:\n    - {{route: api, name: abort, type: http_abort, percentage: 60, attributes: {{status: 503}}}}\n  duration: 5m\n{ERROR_GUARD}  recovery: {{stable: 1s, timeout: 20s}}\n"
        ),
    )
    .await;
    let started = fx
        .start_experiment("abort-60")
        .await
        .expect("pre-flight passes");
    assert_eq!(started.state(), ExperimentState::Running);

    let got = fx.settled("abort-60", Duration::from_secs(30)).await;
    let exp = got.experiment.as_ref().unwrap();
    assert_eq!(exp.state(), ExperimentState::Aborted, "{exp:?}");
    assert!(
        exp.reason.starts_with("guard errors (value ")
            && exp.reason.contains("> threshold 0.05 for 200ms"),
        "{}",
        exp.reason
    );
    assert_eq!(
        fx.controller_faults(),
        0,
        "the faults are gone from the agent"
    );

    let result = exp.result.as_ref().unwrap();
    let trip = result.trip.as_ref().expect("a trip is recorded");
    assert_eq!(trip.guard, "errors");
    assert_eq!(trip.source, "agents");
    assert!(trip.value > 0.05 && trip.value <= 1.0, "{trip:?}");
    assert_eq!(trip.acknowledged, 1, "{trip:?}");
    assert!(trip.unacknowledged.is_empty());
    let ttd = secs(result.time_to_detect.as_ref().unwrap());
    // The breach is seen within a heartbeat or two of the first faulted requests, then must
    // hold for 200 ms.
    assert!((0.2..5.0).contains(&ttd), "time to detect {ttd}s");
    let tripped = events(&got, ExperimentEventKind::GuardTripped);
    let withdrawn = events(&got, ExperimentEventKind::FaultsWithdrawn);
    assert_eq!(tripped.len(), 1);
    let ack_ms = withdrawn[0]["last_ack_ms"].as_f64().unwrap();
    assert!(ack_ms < 1000.0, "acknowledged within a lease: {ack_ms} ms");
    eprintln!(
        "detect {ttd:.3}s, withdrawal acknowledged {ack_ms:.1} ms after the send, value {}",
        trip.value
    );

    // Verified injection: the fault matched and injected.
    let rule = &result.rules[0];
    assert_eq!((rule.route.as_str(), rule.fault.as_str()), ("api", "abort"));
    assert!(rule.matched > 0 && rule.injected > 0, "{rule:?}");
    assert!(result.unmatched.is_empty());

    // The service was healthy all along: it recovers as soon as the window is clean.
    assert_eq!(result.recovery(), RecoveryState::Recovered, "{result:?}");
    let recovery = secs(result.recovery_time.as_ref().unwrap());
    assert!(recovery < 2.0, "recovery {recovery}s");
    let changed = events(&got, ExperimentEventKind::GuardChanged);
    assert!(
        changed.iter().any(|c| c["to"] == "breached") && changed.iter().any(|c| c["to"] == "ok"),
        "{changed:?}"
    );
    let recovery_event = &events(&got, ExperimentEventKind::Recovery)[0];
    assert!(
        recovery_event["series"]["errors"]
            .as_array()
            .is_some_and(|s| !s.is_empty())
    );
    assert!(traffic.counts().0 > 0);
    fx.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovery_time_is_how_long_the_service_stays_unhealthy_after_the_faults() {
    let mut fx = Fixture::start().await;
    let _traffic = Traffic::start(fx.route);
    // A fault that does not break the objective (a small delay), for 1 s.
    let run = |name: &str| {
        format!(
            "  faults:\n    - {{route: api, name: slow, type: http_delay, attributes: {{delay: 5}}}}\n  duration: 1s\n{ERROR_GUARD}  recovery: {{stable: 1s, timeout: {}}}\n",
            if name == "never" { "3s" } else { "20s" }
        )
    };
    fx.create("three-seconds", &run("three-seconds")).await;
    fx.start_experiment("three-seconds").await.unwrap();
    // When the faults end, the service stays unhealthy for 3 s.
    fx.when_completed("three-seconds", |svc| svc.sick_for(Duration::from_secs(3)))
        .await;
    let got = fx.settled("three-seconds", Duration::from_secs(30)).await;
    let result = got.experiment.as_ref().unwrap().result.clone().unwrap();
    assert_eq!(result.recovery(), RecoveryState::Recovered, "{result:?}");
    let took = secs(result.recovery_time.as_ref().unwrap());
    // 3 s of errors, plus the time the 500 ms window needs to hold under 5 % errors again,
    // plus the test's reaction to the completion (a poll of 20 ms) and a heartbeat or two.
    eprintln!("recovery measured: {took:.3}s for a 3 s outage");
    assert!(
        (2.9..=4.0).contains(&took),
        "recovery {took}s, expected about 3 s"
    );

    // One that never recovers within its timeout.
    fx.create("never", &run("never")).await;
    fx.start_experiment("never").await.unwrap();
    fx.when_completed("never", Service::sick_for_good).await;
    let got = fx.settled("never", Duration::from_secs(30)).await;
    let result = got.experiment.as_ref().unwrap().result.clone().unwrap();
    assert_eq!(result.recovery(), RecoveryState::NotRecovered, "{result:?}");
    assert!(result.recovery_time.is_none());
    fx.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pre_flight_refuses_a_start_when_a_guard_is_already_breached() {
    let mut fx = Fixture::start().await;
    fx.service.sick_for_good();
    let traffic = Traffic::start(fx.route);
    eventually(Duration::from_secs(10), "failing traffic", || async {
        (traffic.counts().1 > 50).then_some(())
    })
    .await;
    // Let a heartbeat or two carry the failures.
    let wait_reports = async {
        let t0 = tokio::time::Instant::now();
        eventually(Duration::from_secs(5), "reports", || async move {
            (t0.elapsed() >= HEARTBEAT * 3).then_some(())
        })
        .await
    };
    wait_reports.await;
    fx.create(
        "refused",
        &format!(
            "  faults:\n    - {{route: api, name: slow, type: http_delay, attributes: {{delay: 5}}}}\n  duration: 1m\n{ERROR_GUARD}"
        ),
    )
    .await;
    let err = fx.start_experiment("refused").await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);
    assert!(
        err.message()
            .contains("guard errors is already breached (value 1 > threshold 0.05)"),
        "{}",
        err.message()
    );
    let got = fx.get("refused").await;
    let exp = got.experiment.as_ref().unwrap();
    assert_eq!(exp.state(), ExperimentState::Failed);
    assert!(
        exp.reason.starts_with("pre-flight: guard errors"),
        "{}",
        exp.reason
    );
    assert_eq!(
        events(&got, ExperimentEventKind::Preflight)[0]["passed"],
        false
    );
    assert_eq!(fx.controller_faults(), 0, "no fault was sent");
    fx.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_data_follows_its_policy_at_pre_flight() {
    let mut fx = Fixture::start().await;
    // No traffic at all.
    let spec = |policy: &str| {
        format!(
            "  faults:\n    - {{route: api, name: slow, type: http_delay, attributes: {{delay: 5}}}}\n  duration: 1m\n  guards:\n    - name: errors\n      agents: {{route: api, metric: errorRate, minRequests: 10, noData: {policy}}}\n      above: 0.05\n      window: 1s\n"
        )
    };
    fx.create("trips", &spec("trip")).await;
    let err = fx.start_experiment("trips").await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);
    assert!(
        err.message()
            .contains("guard errors has no data and its policy is to trip"),
        "{}",
        err.message()
    );
    fx.create("ignores", &spec("ignore")).await;
    let started = fx
        .start_experiment("ignores")
        .await
        .expect("no data is ignored");
    assert_eq!(started.state(), ExperimentState::Running);
    eventually(
        Duration::from_secs(5),
        "the fault reached the agent",
        || async { (fx.controller_faults() == 1).then_some(()) },
    )
    .await;
    fx.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_probe_guard_trips_when_the_service_fails_and_lets_a_healthy_run_complete() {
    let mut fx = Fixture::start().await;
    let addr = fx.service.addr;
    let probe = |failures: u32| {
        format!(
            "  guards:\n    - name: health\n      probe: {{url: \"http://{}/healthz\", interval: 1s, timeout: 500ms, failures: {failures}, bodyContains: ok}}\n  recovery: {{stable: 1s, timeout: 20s}}\n",
            addr
        )
    };
    let faults =
        "  faults:\n    - {route: api, name: slow, type: http_delay, attributes: {delay: 5}}\n";
    fx.create("healthy", &format!("{faults}  duration: 2s\n{}", probe(1)))
        .await;
    fx.start_experiment("healthy").await.unwrap();
    let got = fx.settled("healthy", Duration::from_secs(30)).await;
    let exp = got.experiment.as_ref().unwrap();
    assert_eq!(exp.state(), ExperimentState::Completed, "{exp:?}");
    assert_eq!(
        exp.result.as_ref().unwrap().recovery(),
        RecoveryState::Recovered
    );

    fx.create("failing", &format!("{faults}  duration: 5m\n{}", probe(2)))
        .await;
    fx.start_experiment("failing").await.unwrap();
    fx.service.sick_for(Duration::from_secs(4));
    let got = fx.settled("failing", Duration::from_secs(30)).await;
    let exp = got.experiment.as_ref().unwrap();
    assert_eq!(exp.state(), ExperimentState::Aborted, "{exp:?}");
    assert!(
        exp.reason
            .starts_with("guard health (value 2 > threshold 1")
            && exp.reason.contains("503"),
        "{}",
        exp.reason
    );
    let trip = exp.result.as_ref().unwrap().trip.clone().unwrap();
    assert_eq!(trip.source, "probe");
    assert_eq!(fx.controller_faults(), 0);
    fx.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fault_that_matched_nothing_is_flagged_and_fails_with_require_traffic() {
    let mut fx = Fixture::start().await;
    // No traffic: the fault matches nothing.
    let faults = "  faults:\n    - {route: api, name: abort, type: http_abort, attributes: {status: 500}}\n  duration: 500ms\n";
    fx.create("flagged", faults).await;
    fx.start_experiment("flagged").await.unwrap();
    fx.create("required", &format!("{faults}  requireTraffic: true\n"))
        .await;
    let api = fx.api.clone();
    let done = |name: &'static str| {
        let api = api.clone();
        eventually(Duration::from_secs(10), "ended", move || {
            let mut api = api.clone();
            async move {
                let got = api
                    .get(GetExperimentRequest { name: name.into() })
                    .await
                    .unwrap()
                    .into_inner();
                let exp = got.experiment?;
                (exp.state() != ExperimentState::Running && exp.state() != ExperimentState::Pending)
                    .then_some(exp)
            }
        })
    };
    let flagged = done("flagged").await;
    assert_eq!(flagged.state(), ExperimentState::Completed);
    assert_eq!(
        flagged.result.unwrap().unmatched,
        vec!["api/abort".to_string()]
    );
    fx.start_experiment("required").await.unwrap();
    let required = done("required").await;
    assert_eq!(required.state(), ExperimentState::Failed);
    assert!(
        required.reason.contains("requireTraffic") && required.reason.contains("api/abort"),
        "{}",
        required.reason
    );
    fx.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_promql_guard_on_a_real_prometheus_trips_the_experiment() {
    // Needs Debian's `prometheus` (scripts/test.sh installs it and sets
    // FAULTLINE_REQUIRE_PROMETHEUS, which turns a missing binary into a failure).
    let Some(binary) = prometheus_binary() else {
        return;
    };
    let mut fx = Fixture::start().await;
    let _traffic = Traffic::start(fx.route);
    let mut prom = PrometheusProcess::start(&binary, &[fx.agent.admin_addr], "guards");
    let http = Http::new();
    prom.ready(&http).await;
    // The share of the route's responses a fault injected as 5xx, over the last 5 s.
    let query = "sum(rate(faultline_http_requests_total{route=\"api\",class=\"5xx\",injected=\"true\"}[5s])) \
                 / sum(rate(faultline_http_requests_total{route=\"api\"}[5s]))";
    let source = PrometheusSource {
        url: format!("http://{}", prom.addr),
        query: query.into(),
        interval: Duration::from_secs(1),
        timeout: Duration::from_millis(500),
        trip_after_errors: Some(3),
    };
    // The first samples take a few scrapes to appear: poll, do not sleep.
    let before = eventually(Duration::from_secs(60), "the query has a value", || async {
        prometheus::query(&http, &source)
            .await
            .ok()
            .filter(|v| v.is_finite())
    })
    .await;
    assert_eq!(before, 0.0, "no injected errors before the experiment");

    fx.create(
        "promql",
        &format!(
            "  faults:\n    - {{route: api, name: abort, type: http_abort, percentage: 60, attributes: {{status: 503}}}}\n  duration: 5m\n  guards:\n    - name: injected-errors\n      prometheus: {{url: \"http://{}\", query: '{query}', interval: 1s, timeout: 500ms}}\n      above: 0.05\n  recovery: {{stable: 1s, timeout: 30s}}\n",
            prom.addr
        ),
    )
    .await;
    fx.start_experiment("promql")
        .await
        .expect("pre-flight passes");
    let got = fx.settled("promql", Duration::from_secs(60)).await;
    let exp = got.experiment.as_ref().unwrap();
    assert_eq!(
        exp.state(),
        ExperimentState::Aborted,
        "{exp:?}\n{}",
        prom.log()
    );
    assert!(
        exp.reason.starts_with("guard injected-errors (value ")
            && exp.reason.contains("> threshold 0.05"),
        "{}",
        exp.reason
    );
    let result = exp.result.as_ref().unwrap();
    assert_eq!(result.trip.as_ref().unwrap().source, "prometheus");
    assert_eq!(fx.controller_faults(), 0);
    // Once the injected errors leave the 5 s rate window, the guard is ok again.
    assert_eq!(result.recovery(), RecoveryState::Recovered, "{result:?}");
    eprintln!(
        "promql guard: detect {:.3}s, recovery {:.3}s",
        secs(result.time_to_detect.as_ref().unwrap()),
        secs(result.recovery_time.as_ref().unwrap())
    );
    drop(prom);
    fx.stop().await;
}

/// A local guard's trip reported by an agent aborts the experiment, and the agent's next
/// desired state has neither the faults nor the guard. The agent here is the test itself,
/// speaking the stream message by message, so the trip comes exactly when the test says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_trip_from_an_agent_aborts_the_experiment() {
    use faultline_proto::v1::{
        LocalGuardTrip, Protocol as WireProtocol, agent_message::Body as Out,
    };
    use support::fake_agent::FakeAgent;

    let controller = InProcess::start(
        "local-trip",
        Leases::new(Duration::from_secs(1), HEARTBEAT).unwrap(),
        false,
    )
    .await;
    let channel = controller.channel().await;
    let mut agent =
        FakeAgent::connect(channel.clone(), "fake", &[("api", WireProtocol::Http)]).await;
    assert!(
        agent.next_desired().await.faults.is_empty(),
        "nothing runs before the experiment"
    );

    let mut api = ExperimentServiceClient::new(channel);
    let yaml = "apiVersion: faultline.dev/v1alpha1\nkind: Experiment\nmetadata: {name: local}\n\
                spec:\n  targets: {selector: {matchLabels: {app: shop}}}\n  faults:\n    \
                - {route: api, name: abort, type: http_abort, attributes: {status: 503}}\n  \
                duration: 5m\n  guards:\n    - name: mine\n      \
                agents: {route: api, metric: errorRate, local: true}\n      above: 0.05\n      \
                window: 1s\n  recovery: {stable: 200ms, timeout: 5s}\n";
    api.create(CreateExperimentRequest {
        spec: Some(create_experiment_request::Spec::SpecYaml(yaml.into())),
    })
    .await
    .unwrap();
    api.start(StartExperimentRequest {
        name: "local".into(),
    })
    .await
    .expect("no data is ignored at pre-flight");
    let running = agent.next_desired().await;
    assert_eq!(running.faults.len(), 1);
    assert_eq!(running.local_guards.len(), 1);
    let guard = &running.local_guards[0];
    assert_eq!(
        (guard.name.as_str(), guard.experiment.as_str()),
        ("mine", "local")
    );
    assert_eq!(guard.faults.len(), 1);

    // The agent judged its own traffic and cleared the faults; it says so.
    let now = SystemTime::now();
    agent
        .send(Out::LocalTrip(LocalGuardTrip {
            experiment: "local".into(),
            guard: "mine".into(),
            value: 0.9,
            threshold: 0.05,
            breached_at: Some(now.into()),
            tripped_at: Some(now.into()),
            cleared_at: Some(now.into()),
            cleared_faults: 1,
            generation: running.generation,
        }))
        .await;
    let cleared = agent.next_desired().await;
    assert!(cleared.faults.is_empty() && cleared.local_guards.is_empty());

    let fx_api = api.clone();
    let got = eventually(Duration::from_secs(15), "the recovery watch ended", || {
        let mut api = fx_api.clone();
        async move {
            let got = api
                .get(GetExperimentRequest {
                    name: "local".into(),
                })
                .await
                .unwrap()
                .into_inner();
            let r = got.experiment.as_ref()?.result.as_ref()?;
            (r.recovery() != RecoveryState::Observing).then_some(got)
        }
    })
    .await;
    let exp = got.experiment.as_ref().unwrap();
    assert_eq!(exp.state(), ExperimentState::Aborted);
    assert_eq!(
        exp.reason,
        "guard mine (local on agent fake: value 0.9 > threshold 0.05)"
    );
    let trip = exp.result.as_ref().unwrap().trip.clone().unwrap();
    assert_eq!((trip.source.as_str(), trip.acknowledged), ("local", 1));
    let tripped = &events(&got, ExperimentEventKind::GuardTripped)[0];
    assert_eq!(tripped["agent"], "fake");
    assert_eq!(tripped["agent_cleared_faults"], 1);
    drop(agent);
    controller.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ramp_stops_at_its_breaking_point_and_names_it() {
    let mut fx = Fixture::start().await;
    let _traffic = Traffic::start(fx.route);
    // The service's objective breaks above 20 % errors; the ramp injects 5, 10, 30, 60 %. The
    // guard judges at least 50 requests over a second (about 300 at this traffic's pace), so
    // a 5 % or 10 % phase does not read above 20 % by chance: with 19 requests in a window
    // on a loaded machine, 4 failures at 5 % once tripped the first phase.
    let got = fx
        .run_to_end(
        "ramp",
        "  faults:\n    - {route: api, name: abort, type: http_abort, percentage: 5, attributes: {status: 503}}\n  \
         phases:\n    - {name: five, duration: 1500ms}\n    \
         - {name: ten, duration: 1500ms, faults: {abort: {percentage: 10}}}\n    \
         - {name: thirty, duration: 1500ms, faults: {abort: {percentage: 30}}}\n    \
         - {name: sixty, duration: 1500ms, faults: {abort: {percentage: 60}}}\n  \
         stopAtBreakingPoint: true\n  guards:\n    - name: errors\n      \
         agents: {route: api, metric: errorRate, minRequests: 50}\n      above: 0.2\n      \
         window: 1s\n  recovery: {stable: 500ms, timeout: 20s}\n",
    )
    .await;
    let exp = got.experiment.as_ref().unwrap();
    assert_eq!(exp.state(), ExperimentState::Aborted, "{exp:?}");
    let result = exp.result.as_ref().unwrap();
    let bp = result.breaking_point.as_ref().expect("a breaking point");
    assert_eq!(
        (bp.broke_name.as_str(), bp.held, bp.held_name.as_str()),
        ("thirty", Some(1), "ten"),
        "{result:?}"
    );
    let phases: Vec<String> = events(&got, ExperimentEventKind::PhaseStarted)
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(phases, ["five", "ten", "thirty"]);
    assert_eq!(fx.controller_faults(), 0);
    fx.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cohort_guard_trips_on_a_real_regression_and_ignores_baseline_noise() {
    let mut fx = Fixture::start().await;
    let _traffic = Traffic::start_as(fx.route, true);
    // The service fails every tenth request whoever sends it: noise both cohorts share.
    fx.service.fail_every.store(10, Ordering::Relaxed);
    let guard = "  guards:\n    - name: cohort-errors\n      \
                 agents: {route: api, metric: errorRate, versus: control, minRequests: 10}\n      \
                 above: 0.15\n      window: 1s\n  recovery: {stable: 300ms, timeout: 20s}\n";

    // A harmless fault on 20 % of users: their error rate is the control's, give or take.
    let got = fx
        .run_to_end(
            "noise",
            &format!(
                "  faults:\n    - {{route: api, name: slow, type: http_delay, percentage: 20, \
                 cohort: {{header: x-user}}, attributes: {{delay: 1}}}}\n  duration: 3s\n{guard}"
            ),
        )
        .await;
    let exp = got.experiment.as_ref().unwrap();
    assert_eq!(exp.state(), ExperimentState::Completed, "{exp:?}");
    assert!(exp.result.as_ref().unwrap().trip.is_none());

    // A real regression: the same 20 % of users get 503s; the control does not.
    let got = fx
        .run_to_end(
            "regression",
            &format!(
                "  faults:\n    - {{route: api, name: abort, type: http_abort, percentage: 20, \
                 cohort: {{header: x-user}}, attributes: {{status: 503}}}}\n  duration: 5m\n{guard}"
            ),
        )
        .await;
    let exp = got.experiment.as_ref().unwrap();
    assert_eq!(exp.state(), ExperimentState::Aborted, "{exp:?}");
    assert!(
        exp.reason.starts_with("guard cohort-errors (value "),
        "{}",
        exp.reason
    );
    let trip = exp.result.as_ref().unwrap().trip.clone().unwrap();
    // Treatment ~100 % errors (all injected, plus the noise), control ~10 %: about 0.9.
    assert!(trip.value > 0.5, "{trip:?}");
    fx.stop().await;
}
