//! `faultline run --wait` and `faultline report` end to end: a controller and an agent
//! in-process (`support::controller`), the CLI as the built binary, and a health endpoint whose
//! answers the test scripts by request count, for a probe guard. Probes run once a second; the
//! first request is the pre-flight reading.

mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use support::controller::{Rig, Run, cli, read};
use tokio::net::TcpListener;

// === a health endpoint that answers from a script ===

/// Which requests fail: request `n` (from 0) fails when `fails(n)`.
type Script = fn(usize) -> bool;

/// Serves `GET /healthz`: 200 `ok`, or 503 for the requests the script fails.
async fn health(script: Script) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let count = count.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |_: Request<hyper::body::Incoming>| {
                    let n = count.fetch_add(1, Ordering::SeqCst);
                    let status = if script(n) {
                        StatusCode::SERVICE_UNAVAILABLE
                    } else {
                        StatusCode::OK
                    };
                    async move {
                        Ok::<_, Infallible>(
                            Response::builder()
                                .status(status)
                                .body(Full::new(Bytes::from_static(b"ok")))
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
    addr
}

/// A spec: one `down` fault on route `r` of every agent, `duration`, the guard lines and the
/// recovery settings.
fn spec(name: &str, duration: &str, guards: &[String], recovery: &str) -> String {
    let mut text = format!(
        "apiVersion: faultline.dev/v1alpha1\nkind: Experiment\nmetadata: {{name: {name}}}\nspec:\n  \
         targets: {{all: true}}\n  faults: [{{route: r, type: down}}]\n  duration: {duration}\n"
    );
    if !guards.is_empty() {
        text.push_str("  guards:\n");
        for g in guards {
            text.push_str(&format!("    - {g}\n"));
        }
        text.push_str(&format!("  recovery: {recovery}\n"));
    }
    text
}

/// A probe guard on `addr` that trips on the first failure (after `hold`).
fn probe(name: &str, addr: SocketAddr, hold: &str) -> String {
    format!(
        "{{name: {name}, probe: {{url: \"http://{addr}/healthz\", interval: 1s, timeout: 500ms, failures: 1}}, for: {hold}}}"
    )
}

async fn run_wait(rig: &Rig, file: &str, text: &str, extra: &[&str]) -> Run {
    let path = rig.file(file, text);
    let mut args = vec!["run", "-f", path.to_str().unwrap(), "--wait"];
    args.extend_from_slice(extra);
    rig.cli(&args).await
}

/// A JUnit failure: its testcase's name, its message and its text.
#[derive(Debug)]
struct Failed {
    case: String,
    message: String,
    text: String,
}

/// Parses a JUnit file (it must be XML) and answers its failures and whether any testcase
/// has an `<error>`.
fn junit_failures(xml: &str) -> (Vec<Failed>, bool) {
    let doc = roxmltree::Document::parse(xml).expect("the JUnit file is XML");
    let failures = doc
        .descendants()
        .filter(|n| n.has_tag_name("failure"))
        .map(|n| Failed {
            case: n.parent().unwrap().attribute("name").unwrap().to_owned(),
            message: n.attribute("message").unwrap().to_owned(),
            text: n.text().unwrap_or_default().to_owned(),
        })
        .collect();
    (failures, doc.descendants().any(|n| n.has_tag_name("error")))
}

/// `run --wait` of `text` with `--junit NAME.xml`: the run and the JUnit file.
async fn run_with_junit(rig: &Rig, name: &str, text: &str) -> (Run, String) {
    let junit = rig.path(&format!("{name}.xml"));
    let file = format!("{name}.yaml");
    let run = run_wait(rig, &file, text, &["--junit", junit.to_str().unwrap()]).await;
    (run, read(&junit))
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

// === exit codes ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_whose_guard_holds_and_recovers_exits_0() {
    let rig = Rig::start("run-pass").await;
    let healthy = health(|_| false).await;
    let text = spec(
        "pass",
        "1s",
        &[probe("health", healthy, "0s")],
        "{stable: 200ms, timeout: 10s}",
    );
    let run = run_wait(&rig, "pass.yaml", &text, &[]).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout
            .starts_with("experiment/pass passed: completed, guards held, recovered "),
        "{run:?}"
    );
    // Not a terminal: one plain line per event, with its time.
    for want in [
        "Z created",
        "Z started: targets agent-a",
        "Z pre-flight passed: health ok",
        "Z completed",
        "Z recovered ",
    ] {
        assert!(
            run.stderr.contains(want),
            "{want:?} not in:\n{}",
            run.stderr
        );
    }
    assert!(
        !run.stderr.contains('\x1b'),
        "no escape codes without a terminal"
    );
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guard_trip_exits_3_and_the_reports_carry_it() {
    let rig = Rig::start("run-trip").await;
    // Healthy at pre-flight, then one failure (the trip), then healthy again.
    let flaky = health(|n| n == 1).await;
    let steady = health(|_| false).await;
    let text = spec(
        "trip",
        "5m",
        &[probe("health", flaky, "0s"), probe("steady", steady, "0s")],
        "{stable: 200ms, timeout: 20s}",
    );
    let (junit, report, html) = (
        rig.path("trip.xml"),
        rig.path("trip.json"),
        rig.path("trip.html"),
    );
    let files = [
        "--junit",
        junit.to_str().unwrap(),
        "--report",
        report.to_str().unwrap(),
        "--html",
        html.to_str().unwrap(),
    ];
    let run = run_wait(&rig, "trip.yaml", &text, &files).await;
    assert_eq!(run.code, 3, "{run:?}");
    assert!(
        run.stdout
            .starts_with("experiment/trip aborted by guard health (value 1 > threshold 0 for 0ms"),
        "{run:?}"
    );
    assert!(run.stdout.contains("; recovered "), "{run:?}");
    assert!(
        run.stderr.contains("guard health tripped (value 1 > 0"),
        "{}",
        run.stderr
    );

    // JUnit: one suite, a case per guard, recovery and the run; the trip is the one failure.
    let xml = read(&junit);
    let doc = roxmltree::Document::parse(&xml).expect("the JUnit file is XML");
    let suites: Vec<_> = doc
        .descendants()
        .filter(|n| n.has_tag_name("testsuite"))
        .collect();
    assert_eq!(suites.len(), 1, "{xml}");
    assert_eq!(suites[0].attribute("name"), Some("experiment/trip"));
    assert_eq!(suites[0].attribute("failures"), Some("1"), "{xml}");
    let cases: Vec<_> = suites[0]
        .children()
        .filter(|n| n.has_tag_name("testcase"))
        .map(|n| n.attribute("name").unwrap().to_owned())
        .collect();
    assert_eq!(
        cases,
        ["guard health", "guard steady", "recovery", "run"],
        "{xml}"
    );
    let (failures, error) = junit_failures(&xml);
    assert_eq!(failures.len(), 1, "{xml}");
    assert_eq!(failures[0].case, "guard health");
    assert_eq!(
        failures[0].message, "guard health tripped: value 1 above threshold 0 for 0ms",
        "{xml}"
    );
    assert!(failures[0].text.contains("time to detect: "), "{xml}");
    assert!(!error, "{xml}");

    // JSON: the whole run.
    let doc = json(&read(&report));
    assert_eq!(doc["verdict"]["outcome"], "tripped", "{doc}");
    assert_eq!(doc["targets"], serde_json::json!(["agent-a"]));
    assert!(doc["seed"].is_u64(), "{doc}");
    assert_eq!(doc["trip"]["guard"], "health");
    assert_eq!(doc["trip"]["value"], 1.0);
    assert_eq!(doc["recovery"]["recovered"], true);
    assert_eq!(doc["rules"][0]["route"], "r");
    assert_eq!(
        doc["rules"][0]["fault"].as_str().map(str::is_empty),
        Some(false),
        "{doc}"
    );
    let series = doc["guards"][0]["series"].as_array().expect("a series");
    assert!(!series.is_empty(), "{doc}");
    let kinds: Vec<&str> = doc["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    for kind in [
        "created",
        "targets_chosen",
        "preflight",
        "started",
        "guard_tripped",
        "aborted",
        "recovery",
    ] {
        assert!(kinds.contains(&kind), "{kind} not in {kinds:?}");
    }

    // HTML: one page, a chart per guard, nothing fetched from elsewhere.
    let page = read(&html);
    assert_html_is_self_contained(&page, 2);
    assert!(page.contains("class=\"mark trip\""), "the trip is marked");
    assert!(
        page.contains("class=\"mark recovered\""),
        "the recovery is marked"
    );

    // `faultline report` writes the same files from the store.
    let again = (
        rig.path("again.xml"),
        rig.path("again.json"),
        rig.path("again.html"),
    );
    let got = rig
        .cli(&[
            "report",
            "trip",
            "--junit",
            again.0.to_str().unwrap(),
            "--report",
            again.1.to_str().unwrap(),
            "--html",
            again.2.to_str().unwrap(),
        ])
        .await;
    assert_eq!(got.code, 0, "{got:?}");
    assert_eq!(got.stdout, run.stdout);
    assert_eq!(read(&again.0), xml);
    assert_eq!(read(&again.1), read(&report));
    assert_eq!(read(&again.2), page);
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_that_does_not_recover_exits_4() {
    let rig = Rig::start("run-unrecovered").await;
    // Healthy at pre-flight, failing for good after; `for` outlasts the run so the guard
    // never trips: the run completes, and recovery times out.
    let sick = health(|n| n >= 1).await;
    let text = spec(
        "sick",
        "1s",
        &[probe("health", sick, "30s")],
        "{stable: 200ms, timeout: 2s}",
    );
    let (run, xml) = run_with_junit(&rig, "sick", &text).await;
    assert_eq!(run.code, 4, "{run:?}");
    assert!(
        run.stdout.starts_with("experiment/sick completed, guards held, but not recovered within 2s: health breached (value "),
        "{run:?}"
    );
    let (failures, _) = junit_failures(&xml);
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(failures[0].case, "recovery");
    assert!(
        failures[0].message.starts_with("not recovered within 2s"),
        "{failures:?}"
    );
    assert!(failures[0].text.contains("timeout: 2s"), "{failures:?}");
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_spec_exits_2_with_file_line_column_and_field() {
    let rig = Rig::start("run-invalid").await;
    let run = run_wait(&rig, "bad.yaml", &spec("bad", "5x", &[], ""), &[]).await;
    assert_eq!(run.code, 2, "{run:?}");
    let path = rig.path("bad.yaml");
    let want = format!("{}:7:13: spec.duration: ", path.display());
    assert!(
        run.stderr.starts_with(&want),
        "{want:?} not at the start of:\n{}",
        run.stderr
    );
    assert_eq!(run.stdout, "");
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pre_flight_refusal_exits_1_and_is_reported() {
    let rig = Rig::start("run-preflight").await;
    let down = health(|_| true).await;
    let text = spec(
        "early",
        "5m",
        &[probe("health", down, "0s")],
        "{stable: 200ms, timeout: 5s}",
    );
    let (run, xml) = run_with_junit(&rig, "early", &text).await;
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stdout
            .starts_with("experiment/early failed: pre-flight: guard health"),
        "{run:?}"
    );
    let (failures, error) = junit_failures(&xml);
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(failures[0].case, "guard health");
    assert!(
        failures[0]
            .message
            .starts_with("guard health was breached before any fault"),
        "{failures:?}"
    );
    assert!(error, "the run is an error");
    rig.stop().await;
}

#[tokio::test]
async fn an_unreachable_controller_exits_1() {
    let dir =
        std::env::temp_dir().join(format!("faultline-run-unreachable-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("x.yaml");
    std::fs::write(&file, spec("x", "1s", &[], "")).unwrap();
    let run = cli(
        "http://127.0.0.1:9",
        &["run", "-f", file.to_str().unwrap(), "--wait"],
    )
    .await;
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr.contains("cannot reach the controller"),
        "{run:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn reports_need_wait_and_report_needs_a_file() {
    let run = cli(
        "http://127.0.0.1:9",
        &["run", "-f", "x.yaml", "--junit", "x.xml"],
    )
    .await;
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("need --wait"), "{run:?}");
    let run = cli("http://127.0.0.1:9", &["report", "x"]).await;
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("nothing to write"), "{run:?}");
}

/// One HTML document, an `<svg>` per guard, no script, no reference the page would fetch.
fn assert_html_is_self_contained(page: &str, guards: usize) {
    assert_eq!(page.matches("<html").count(), 1, "{page}");
    assert_eq!(page.matches("<svg").count(), guards, "{page}");
    for banned in [
        "<script", "src=", "href=", "url(", "@import", "=\"http", "xmlns",
    ] {
        assert!(!page.contains(banned), "{banned:?} in the page:\n{page}");
    }
    assert!(page.contains("<h1 class="), "the verdict is on top");
}

// === following again after the stream breaks ===

/// A TCP relay in front of the controller whose open connections can be cut (as a proxy or
/// load balancer between CI and the controller might), while it keeps accepting new ones.
struct Relay {
    addr: SocketAddr,
    conns: Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
    accepted: Arc<AtomicUsize>,
}

impl Relay {
    async fn start(upstream: &str) -> Relay {
        let upstream: SocketAddr = upstream.trim_start_matches("http://").parse().unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let conns = Arc::new(std::sync::Mutex::new(Vec::new()));
        let accepted = Arc::new(AtomicUsize::new(0));
        let (c, n) = (conns.clone(), accepted.clone());
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                n.fetch_add(1, Ordering::SeqCst);
                c.lock().unwrap().push(tokio::spawn(async move {
                    if let Ok(mut up) = tokio::net::TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut up).await;
                    }
                }));
            }
        });
        Relay {
            addr,
            conns,
            accepted,
        }
    }

    /// Drops every open connection (both sockets close).
    fn cut(&self) {
        for c in self.conns.lock().unwrap().drain(..) {
            c.abort();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_wait_follows_again_after_its_stream_breaks_and_misses_nothing() {
    let rig = Rig::start("run-cut").await;
    let relay = Relay::start(&rig.url).await;
    let path = rig.file("cut.yaml", &spec("cut", "3s", &[], ""));
    let url = format!("http://{}", relay.addr);
    let run =
        tokio::spawn(
            async move { cli(&url, &["run", "-f", path.to_str().unwrap(), "--wait"]).await },
        );
    support::eventually("the experiment to run", Duration::from_secs(10), || async {
        let got = rig.cli(&["get", "experiments"]).await;
        got.stdout.contains("cut   running").then_some(())
    })
    .await;
    relay.cut();
    let run = tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .expect("run --wait ends")
        .unwrap();
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout.starts_with("experiment/cut passed: completed"),
        "{run:?}"
    );
    assert!(
        run.stderr
            .contains("faultline: lost the controller's stream (")
            && run
                .stderr
                .contains("faultline: following the controller again"),
        "{}",
        run.stderr
    );
    assert!(relay.accepted.load(Ordering::SeqCst) >= 2, "it reconnected");
    // Followed again after the last event seen: each event once.
    for once in ["Z created", "Z started: targets agent-a", "Z completed"] {
        assert_eq!(
            run.stderr.matches(once).count(),
            1,
            "{once:?} in:\n{}",
            run.stderr
        );
    }
    rig.stop().await;
}
