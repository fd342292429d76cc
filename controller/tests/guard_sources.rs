//! The Prometheus and probe guard sources against real servers on loopback: a real Prometheus
//! (Debian's `prometheus`) scraping a gauge this test serves, and a probe target whose
//! behaviour the test switches (healthy, 503, never answering, wrong body), over HTTP and HTTPS.
//!
//! The Prometheus test skips (with a message) when the binary is missing, unless
//! `FAULTLINE_REQUIRE_PROMETHEUS` is set (CI sets it; scripts/test.sh installs Prometheus).

mod support;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use faultline_controller::guard::http::Http;
use faultline_controller::guard::probe::{self, ProbeFailure};
use faultline_controller::guard::prometheus::{self, SourceError};
use faultline_controller::guard::{Reading, Sample};
use faultline_controller::spec::{BodyCheck, ProbeSource, PrometheusSource};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use support::prometheus::{PrometheusProcess, prometheus_binary};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::time::{Instant, timeout};
use tokio_util::sync::CancellationToken;

/// The bound on every wait for a single reading.
const READING: Duration = Duration::from_secs(10);

// === probe target ===

const HEALTHY: u8 = 0;
const UNAVAILABLE: u8 = 1;
const HANG: u8 = 2;
const WRONG_BODY: u8 = 3;

/// A server whose answer the test switches; it records the last request it saw.
#[derive(Default)]
struct Target {
    mode: AtomicU8,
    /// `METHOD x-probe-header` of the last request.
    last: Mutex<Option<String>>,
}

impl Target {
    fn set(&self, mode: u8) {
        self.mode.store(mode, Ordering::SeqCst);
    }

    async fn answer(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let probe_header = req
            .headers()
            .get("x-probe")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-");
        *self.last.lock().unwrap() = Some(format!("{} {probe_header}", req.method()));
        let (status, body) = match self.mode.load(Ordering::SeqCst) {
            HEALTHY => (StatusCode::OK, "ok\n"),
            UNAVAILABLE => (StatusCode::SERVICE_UNAVAILABLE, "down\n"),
            WRONG_BODY => (StatusCode::OK, "nope\n"),
            _ => std::future::pending().await,
        };
        let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
        *response.status_mut() = status;
        response
    }
}

/// Serves `target` on a free loopback port, over TLS if `tls` is given.
async fn serve(target: Arc<Target>, tls: Option<tokio_rustls::TlsAcceptor>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let target = target.clone();
            let tls = tls.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| {
                    let target = target.clone();
                    async move { Ok::<_, Infallible>(target.answer(req).await) }
                });
                let http = http1::Builder::new();
                let _ = match tls {
                    Some(tls) => match tls.accept(tcp).await {
                        Ok(stream) => http.serve_connection(TokioIo::new(stream), service).await,
                        Err(_) => return, // the client refused our certificate
                    },
                    None => http.serve_connection(TokioIo::new(tcp), service).await,
                };
            });
        }
    });
    addr
}

fn probe_source(url: String) -> ProbeSource {
    ProbeSource {
        method: "GET".into(),
        url,
        headers: BTreeMap::from([("x-probe".to_owned(), "faultline".to_owned())]),
        expect_status: (200, 299),
        body: Some(BodyCheck::Contains("ok".into())),
        timeout: Duration::from_millis(300),
        interval: Duration::from_millis(100),
        failures: 3,
    }
}

async fn closed_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
}

async fn next(rx: &mut mpsc::Receiver<Sample>) -> Sample {
    timeout(READING, rx.recv())
        .await
        .expect("a reading within the bound")
        .expect("the poller is running")
}

// === probe ===

#[tokio::test]
async fn probe_passes_on_a_healthy_answer_and_names_each_failure() {
    let target = Arc::new(Target::default());
    let addr = serve(target.clone(), None).await;
    let url = format!("http://{addr}/healthz");
    let http = Http::new();
    let mut source = probe_source(url.clone());

    probe::probe(&http, &source).await.expect("healthy");
    assert_eq!(
        target.last.lock().unwrap().as_deref(),
        Some("GET faultline")
    );

    target.set(UNAVAILABLE);
    let e = probe::probe(&http, &source).await.unwrap_err();
    assert!(
        matches!(e, ProbeFailure::Status { status: 503, .. }),
        "{e:?}"
    );
    assert_eq!(e.to_string(), format!("status 503 from {url}"));

    // 503 passes when the range includes it.
    source.expect_status = (500, 503);
    source.body = None;
    probe::probe(&http, &source).await.expect("503 is expected");
    source.expect_status = (200, 299);
    source.body = Some(BodyCheck::Contains("ok".into()));

    target.set(HANG);
    let started = Instant::now();
    let e = probe::probe(&http, &source).await.unwrap_err();
    assert_eq!(e.to_string(), format!("timed out after 300ms ({url})"));
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(3),
        "{took:?}"
    );

    target.set(WRONG_BODY);
    let e = probe::probe(&http, &source).await.unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("body does not contain \"ok\" ({url})")
    );

    source.body = Some(BodyCheck::Regex(regex::Regex::new("^no+pe$").unwrap()));
    let e = probe::probe(&http, &source).await.unwrap_err();
    assert!(matches!(e, ProbeFailure::BodyMismatch { .. }), "{e:?}");
    source.body = Some(BodyCheck::Regex(regex::Regex::new("(?m)^no+pe$").unwrap()));
    probe::probe(&http, &source)
        .await
        .expect("the regex matches a line");

    let dead = format!("http://{}/healthz", closed_port().await);
    let e = probe::probe(&http, &probe_source(dead.clone()))
        .await
        .unwrap_err();
    let message = e.to_string();
    assert!(matches!(e, ProbeFailure::Unreachable { .. }), "{e:?}");
    assert!(
        message.starts_with(&format!("cannot reach {dead}: ")),
        "{message}"
    );
    assert!(message.to_lowercase().contains("refused"), "{message}");

    let mut bad = probe_source(url.clone());
    bad.method = "BAD METHOD".into();
    let e = probe::probe(&http, &bad).await.unwrap_err();
    assert!(matches!(e, ProbeFailure::Invalid { .. }), "{e:?}");
}

#[tokio::test]
async fn probe_poller_counts_consecutive_failures_and_resets_after_a_pass() {
    let target = Arc::new(Target::default());
    let addr = serve(target.clone(), None).await;
    let url = format!("http://{addr}/healthz");
    let (tx, mut rx) = mpsc::channel(1);
    let stop = CancellationToken::new();
    let task = probe::spawn(
        Http::new(),
        "exp".into(),
        "health".into(),
        probe_source(url.clone()),
        tx,
        stop.clone(),
    );

    // Each reading is taken before the next switch: the next probe runs an interval
    // (100ms) after the one just read, and the switch happens as soon as it is read.
    let mut seen = Vec::new();
    for (mode, expect_note) in [
        (UNAVAILABLE, None),
        (WRONG_BODY, Some(format!("status 503 from {url}"))),
        (HANG, Some(format!("body does not contain \"ok\" ({url})"))),
        (HEALTHY, Some(format!("timed out after 300ms ({url})"))),
        (HEALTHY, None),
    ] {
        let sample = next(&mut rx).await;
        assert_eq!(
            (sample.experiment.as_str(), sample.guard.as_str()),
            ("exp", "health")
        );
        assert_eq!(sample.note, expect_note);
        let Reading::Value(v) = sample.reading else {
            panic!("a probe reading is a value: {:?}", sample.reading);
        };
        seen.push(v);
        target.set(mode);
    }
    assert_eq!(seen, [0.0, 1.0, 2.0, 3.0, 0.0]);

    stop.cancel();
    timeout(READING, task)
        .await
        .expect("stops when cancelled")
        .unwrap();

    // It also stops when the hub drops its receiver.
    let (tx, rx) = mpsc::channel(1);
    let task = probe::spawn(
        Http::new(),
        "exp".into(),
        "health".into(),
        probe_source(url),
        tx,
        CancellationToken::new(),
    );
    drop(rx);
    timeout(READING, task)
        .await
        .expect("stops without a receiver")
        .unwrap();
}

#[tokio::test]
async fn probe_over_https_passes_with_the_extra_root_and_fails_without() {
    let cert =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
    let key = rustls_key(cert.signing_key.serialize_der());
    let server = tokio_rustls::rustls::ServerConfig::builder_with_provider(Arc::new(
        tokio_rustls::rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![cert.cert.der().clone()], key)
    .unwrap();
    let tls = tokio_rustls::TlsAcceptor::from(Arc::new(server));
    let target = Arc::new(Target::default());
    let addr = serve(target.clone(), Some(tls)).await;

    let roots = Http::pem_certificates(cert.cert.pem().as_bytes()).unwrap();
    assert_eq!(roots.len(), 1);
    let trusting = Http::with_roots(roots).unwrap();
    // The certificate names both the address and the name.
    let port = addr.port();
    for url in [
        format!("https://127.0.0.1:{port}/healthz"),
        format!("https://localhost:{port}/healthz"),
    ] {
        probe::probe(&trusting, &probe_source(url.clone()))
            .await
            .unwrap_or_else(|e| panic!("{url}: {e}"));
    }
    assert_eq!(
        target.last.lock().unwrap().as_deref(),
        Some("GET faultline")
    );
    target.set(UNAVAILABLE);
    let url = format!("https://{addr}/healthz");
    let e = probe::probe(&trusting, &probe_source(url.clone()))
        .await
        .unwrap_err();
    assert_eq!(e.to_string(), format!("status 503 from {url}"));
    target.set(HEALTHY);

    let e = probe::probe(&Http::new(), &probe_source(url.clone()))
        .await
        .unwrap_err();
    let message = e.to_string();
    assert!(matches!(e, ProbeFailure::Unreachable { .. }), "{e:?}");
    assert!(message.contains("certificate"), "{message}");

    assert!(Http::pem_certificates(b"not a certificate").is_err());
}

fn rustls_key(pkcs8: Vec<u8>) -> tokio_rustls::rustls::pki_types::PrivateKeyDer<'static> {
    tokio_rustls::rustls::pki_types::PrivatePkcs8KeyDer::from(pkcs8).into()
}

// === prometheus without a server ===

fn prometheus_source(url: String, query: &str) -> PrometheusSource {
    PrometheusSource {
        url,
        query: query.into(),
        interval: Duration::from_millis(50),
        timeout: Duration::from_secs(2),
        trip_after_errors: Some(3),
    }
}

#[tokio::test]
async fn prometheus_query_to_a_dead_port_names_the_url() {
    let url = format!("http://{}", closed_port().await);
    let e = prometheus::query(&Http::new(), &prometheus_source(url.clone(), "up"))
        .await
        .unwrap_err();
    let message = e.to_string();
    assert!(matches!(e, SourceError::Unreachable { .. }), "{e:?}");
    assert!(
        message.starts_with(&format!("query to {url} failed: ")),
        "{message}"
    );
    assert!(message.to_lowercase().contains("refused"), "{message}");

    let e = prometheus::query(&Http::new(), &prometheus_source("prom:9090".into(), "up"))
        .await
        .unwrap_err();
    assert!(matches!(e, SourceError::InvalidUrl { .. }), "{e:?}");
}

#[tokio::test]
async fn prometheus_poller_is_no_data_then_broken_after_consecutive_errors() {
    let url = format!("http://{}", closed_port().await);
    let (tx, mut rx) = mpsc::channel(1);
    let stop = CancellationToken::new();
    let task = prometheus::spawn(
        Http::new(),
        "exp".into(),
        "p99".into(),
        prometheus_source(url.clone(), "up"),
        tx,
        stop.clone(),
    );
    for expected in 1..=4u32 {
        let sample = next(&mut rx).await;
        let note = sample.note.expect("an error note");
        assert!(
            note.starts_with(&format!("query to {url} failed")),
            "{note}"
        );
        match sample.reading {
            Reading::NoData { why } if expected < 3 => assert_eq!(why, note),
            Reading::Broken { value, why } if expected >= 3 => {
                assert_eq!(value, f64::from(expected));
                assert!(
                    why.starts_with(&format!("{expected} query errors in a row: ")),
                    "{why}"
                );
            }
            other => panic!("reading {expected}: {other:?}"),
        }
    }
    stop.cancel();
    timeout(READING, task)
        .await
        .expect("stops when cancelled")
        .unwrap();
}

#[tokio::test]
async fn prometheus_poller_without_trip_after_errors_reports_only_no_data() {
    let url = format!("http://{}", closed_port().await);
    let (tx, mut rx) = mpsc::channel(1);
    let mut source = prometheus_source(url, "up");
    source.trip_after_errors = None;
    let task = prometheus::spawn(
        Http::new(),
        "exp".into(),
        "p99".into(),
        source,
        tx,
        CancellationToken::new(),
    );
    for _ in 0..5 {
        let sample = next(&mut rx).await;
        assert!(
            matches!(sample.reading, Reading::NoData { .. }),
            "{sample:?}"
        );
    }
    drop(rx);
    timeout(READING, task)
        .await
        .expect("stops without a receiver")
        .unwrap();
}

// === a real Prometheus ===

/// The gauge a real Prometheus scrapes; `up: false` answers the scrape with 503.
struct Gauge {
    bits: AtomicU64,
    up: AtomicBool,
}

impl Gauge {
    fn set(&self, v: f64) {
        self.bits.store(v.to_bits(), Ordering::SeqCst);
    }
}

async fn serve_gauge(gauge: Arc<Gauge>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let gauge = gauge.clone();
            tokio::spawn(async move {
                let service = service_fn(move |_req: Request<Incoming>| {
                    let gauge = gauge.clone();
                    async move {
                        let mut response = if gauge.up.load(Ordering::SeqCst) {
                            let v = f64::from_bits(gauge.bits.load(Ordering::SeqCst));
                            Response::new(Full::new(Bytes::from(format!(
                                "# HELP faultline_test_gauge A gauge the test sets.\n\
                                 # TYPE faultline_test_gauge gauge\n\
                                 faultline_test_gauge {v}\n"
                            ))))
                        } else {
                            let mut r = Response::new(Full::new(Bytes::from("down\n")));
                            *r.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
                            r
                        };
                        response
                            .headers_mut()
                            .insert("content-type", "text/plain; version=0.0.4".parse().unwrap());
                        Ok::<_, Infallible>(response)
                    }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), service)
                    .await;
            });
        }
    });
    addr
}

/// Runs `query` until `accept` takes its result, or panics at the deadline with the last one.
async fn query_until(
    http: &Http,
    source: &PrometheusSource,
    within: Duration,
    accept: impl Fn(&Result<f64, SourceError>) -> bool,
) -> Result<f64, SourceError> {
    let deadline = Instant::now() + within;
    loop {
        let result = prometheus::query(http, source).await;
        if accept(&result) {
            return result;
        }
        if Instant::now() > deadline {
            panic!(
                "{:?} after {within:?}: last result {result:?}",
                source.query
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits for a poller reading `accept` takes; every reading before it must pass `allow`.
async fn reading_until(
    rx: &mut mpsc::Receiver<Sample>,
    within: Duration,
    accept: impl Fn(&Reading) -> bool,
    allow: impl Fn(&Reading) -> bool,
) -> Sample {
    let deadline = Instant::now() + within;
    loop {
        let sample = timeout(
            deadline.saturating_duration_since(Instant::now()),
            rx.recv(),
        )
        .await
        .unwrap_or_else(|_| panic!("no matching reading within {within:?}"))
        .expect("the poller is running");
        if accept(&sample.reading) {
            return sample;
        }
        assert!(allow(&sample.reading), "unexpected reading: {sample:?}");
    }
}

#[tokio::test]
async fn prometheus_query_and_poller_follow_a_gauge_scraped_by_a_real_prometheus() {
    let Some(binary) = prometheus_binary() else {
        return;
    };
    let gauge = Arc::new(Gauge {
        bits: AtomicU64::new(0.6f64.to_bits()),
        up: AtomicBool::new(true),
    });
    let scrape = serve_gauge(gauge.clone()).await;
    let mut prom = PrometheusProcess::start(&binary, &[scrape], "guard-sources");
    let http = Http::new();
    prom.ready(&http).await;
    // With a trailing slash: the query path is still /api/v1/query.
    let url = format!("http://{}/", prom.addr);
    let source = |query: &str| prometheus_source(url.clone(), query);

    // The first sample appears a scrape or two after start-up; until then: no series.
    let value = query_until(
        &http,
        &source("faultline_test_gauge"),
        Duration::from_secs(60),
        |r| !matches!(r, Err(SourceError::NoSeries { .. })),
    )
    .await;
    assert_eq!(value.unwrap_or_else(|e| panic!("{e}\n{}", prom.log())), 0.6);

    // Scalars, and Prometheus' spellings of special values.
    let q = |query: &'static str| {
        let http = http.clone();
        let source = source(query);
        async move { prometheus::query(&http, &source).await }
    };
    assert_eq!(q("scalar(faultline_test_gauge) * 2").await.unwrap(), 1.2);
    assert_eq!(q("1/0").await.unwrap(), f64::INFINITY);
    assert_eq!(q("-1/0").await.unwrap(), f64::NEG_INFINITY);
    assert!(q("0/0").await.unwrap().is_nan());

    // Several series: the job's gauge plus Prometheus' own `up`, `scrape_*` series.
    let e = q(r#"{job="guard-test"}"#).await.unwrap_err();
    assert!(
        matches!(e, SourceError::ManySeries { count, .. } if count >= 2),
        "{e:?}"
    );
    let e = q("faultline_no_such_metric").await.unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("the query returned no series ({url})")
    );

    // Invalid PromQL: Prometheus' own message, with the status and the URL.
    let e = q("sum(").await.unwrap_err();
    let message = e.to_string();
    assert!(
        matches!(&e, SourceError::Status { status, .. } if status.as_u16() == 400),
        "{e:?}"
    );
    assert!(
        message.starts_with(&format!("{url} answered HTTP 400 Bad Request: bad_data: ")),
        "{message}"
    );
    assert!(message.contains("parse error"), "{message}");

    // A path prefix Prometheus does not serve: its 404, named.
    let wrong = prometheus_source(format!("http://{}/prefix", prom.addr), "up");
    let e = prometheus::query(&http, &wrong).await.unwrap_err();
    assert!(
        matches!(&e, SourceError::Status { status, .. } if status.as_u16() == 404),
        "{e:?}"
    );

    // The poller: the value, a change, the series vanishing (scrapes fail), its return.
    let (tx, mut rx) = mpsc::channel(1);
    let stop = CancellationToken::new();
    let mut polled = source("faultline_test_gauge");
    polled.interval = Duration::from_millis(200);
    polled.trip_after_errors = Some(2);
    let task = prometheus::spawn(
        http.clone(),
        "exp".into(),
        "g".into(),
        polled,
        tx,
        stop.clone(),
    );
    let first = next(&mut rx).await;
    assert_eq!((first.reading, first.note), (Reading::Value(0.6), None));

    gauge.set(2.5);
    let is = |v: f64| move |r: &Reading| *r == Reading::Value(v);
    reading_until(&mut rx, Duration::from_secs(20), is(2.5), is(0.6)).await;

    // A failed scrape marks the series stale: the query finds no series.
    gauge.up.store(false, Ordering::SeqCst);
    let no_data = reading_until(
        &mut rx,
        Duration::from_secs(20),
        |r| matches!(r, Reading::NoData { .. }),
        is(2.5),
    )
    .await;
    let Reading::NoData { why } = &no_data.reading else {
        unreachable!()
    };
    assert_eq!(why, &format!("the query returned no series ({url})"));
    assert_eq!(no_data.note.as_deref(), Some(why.as_str()));
    let broken = next(&mut rx).await;
    assert!(
        matches!(&broken.reading, Reading::Broken { value, why }
            if *value == 2.0 && why.ends_with(&format!("the query returned no series ({url})"))),
        "{broken:?}"
    );

    gauge.set(0.25);
    gauge.up.store(true, Ordering::SeqCst);
    reading_until(&mut rx, Duration::from_secs(20), is(0.25), |r| {
        matches!(r, Reading::Broken { .. })
    })
    .await;

    stop.cancel();
    timeout(READING, task)
        .await
        .expect("stops when cancelled")
        .unwrap();
    drop(prom);
}
