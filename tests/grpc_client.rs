//! Real gRPC clients against a `grpc` route: `tests/grpc_client.py` calls the in-process tonic
//! Echo server (`support::grpc`) through the agent with grpcio 1.85.1, generating its stubs from
//! `proto/faultline/testing/v1/echo.proto` at run time, while this test adds and removes rules
//! through the admin API and checks what the client saw: status code, status message, the
//! messages received and when. One test does the same with a tonic client.
//!
//! The interpreter is `$FAULTLINE_TEST_PYTHON`, or `target/test-venv/bin/python` in the workspace,
//! which `scripts/test.sh` sets up. Without it the test fails: it never skips silently.

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use faultline_agent::route::{HttpOptions, Protocol};
use faultline_proto::testing::EchoRequest;
use faultline_proto::testing::echo_client::EchoClient;
use serde_json::{Value, json};
use support::TestAgent;
use support::grpc;
use support::python::{self, NoLine, PyScript, Requirement};
use tonic::transport::Channel;
use tonic::{Code, Status};

const ROUTE: &str = "echo";
const UNARY: &str = "/faultline.testing.Echo/Unary";
const SERVER_STREAM: &str = "/faultline.testing.Echo/ServerStream";
/// How long the script may take to answer one command (its own deadline per call is 10 s).
const STEP_TIMEOUT: Duration = Duration::from_secs(30);
/// What the script needs from the interpreter.
const CLIENT: Requirement = Requirement {
    import: "import grpc, grpc_tools.protoc",
    modules: "grpc and grpc_tools",
    setup: "run scripts/test.sh, which creates target/test-venv with \
        grpcio==1.85.1 and grpcio-tools==1.85.1 (or set FAULTLINE_TEST_PYTHON to a Python \
        that has them)",
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpcio_unary_sees_injected_unavailable_with_its_message_until_the_rule_is_removed() {
    let (agent, upstream, mut client) = setup().await;

    // (a) No rule: the echo comes back.
    client.unary("hello").await.assert_ok(&["hello"]);
    assert_eq!(upstream.unary_calls(), 1);

    // (b) An abort rule on Unary: every call fails with exactly the configured status.
    agent
        .rule(
            ROUTE,
            json!({
                "name": "unavail", "type": "grpc_abort", "percentage": 100,
                "match": {"grpc": UNARY},
                "attributes": {"code": 14, "message": "injected outage"},
            }),
        )
        .await;
    for _ in 0..3 {
        let out = client.unary("hello").await;
        out.assert_status("UNAVAILABLE", "injected outage");
        assert!(
            out.replies.is_empty(),
            "an aborted call got replies: {out:?}"
        );
    }
    assert_eq!(
        upstream.unary_calls(),
        1,
        "aborted calls reached the upstream"
    );
    // The rule matches Unary only: a stream on the same route and channel is untouched.
    client.server_stream("s", 2, 0).await.assert_ok(&["s", "s"]);

    // Without the rule, calls succeed again on the same channel.
    remove_rule(&agent, "unavail").await;
    client.unary("again").await.assert_ok(&["again"]);
    assert_eq!(upstream.unary_calls(), 2);
    client.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpcio_server_stream_is_cut_after_exactly_three_messages_with_the_configured_status() {
    let (agent, upstream, mut client) = setup().await;
    client.server_stream("m", 10, 0).await.assert_ok(&["m"; 10]);

    agent
        .rule(
            ROUTE,
            json!({
                "name": "cut", "type": "grpc_stream",
                "match": {"grpc": SERVER_STREAM},
                "attributes": {"after_messages": 3, "action": "status", "code": 14, "message": "stream cut"},
            }),
        )
        .await;
    let out = client.server_stream("m", 10, 0).await;
    out.assert_status("UNAVAILABLE", "stream cut");
    out.assert_replies(&["m"; 3]);
    assert_eq!(upstream.stream_calls(), 2);
    client.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpcio_server_stream_reset_after_three_messages_fails_the_call() {
    let (agent, _upstream, mut client) = setup().await;
    agent
        .rule(
            ROUTE,
            json!({
                "name": "reset", "type": "grpc_stream",
                "match": {"grpc": SERVER_STREAM},
                "attributes": {"after_messages": 3, "action": "reset"},
            }),
        )
        .await;
    let out = client.server_stream("m", 10, 0).await;
    // How grpcio names a reset stream depends on the RST_STREAM code (CANCEL: CANCELLED,
    // INTERNAL_ERROR: INTERNAL, REFUSED_STREAM: UNAVAILABLE); any of them will do, OK will not.
    assert_ne!(out.code, "OK", "a reset stream ended cleanly: {out:?}");
    // The agent lets what it already sent reach the client before the RST_STREAM.
    assert_eq!(
        out.replies.len(),
        3,
        "a reset after 3 messages delivers exactly 3: {out:?}"
    );
    out.assert_replies(&["m"; 3]);
    client.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpcio_server_stream_message_delay_holds_back_each_message() {
    let (agent, _upstream, mut client) = setup().await;
    // Without the rule, five messages sent back to back take far less than 5 x 100 ms.
    let out = client.server_stream("d", 5, 0).await;
    out.assert_ok(&["d"; 5]);
    assert!(
        out.elapsed < Duration::from_millis(450),
        "the stream is slow without a rule: {out:?}"
    );

    agent
        .rule(
            ROUTE,
            json!({
                "name": "slow", "type": "grpc_stream",
                "match": {"grpc": SERVER_STREAM},
                "attributes": {"message_delay": 100},
            }),
        )
        .await;
    let out = client.server_stream("d", 5, 0).await;
    out.assert_ok(&["d"; 5]);
    assert!(
        out.elapsed >= Duration::from_millis(450),
        "5 messages with a 100 ms delay each took {:?}: {out:?}",
        out.elapsed
    );
    // The messages themselves are held back, not only the end of the stream.
    assert!(
        out.arrivals[4] >= Duration::from_millis(450),
        "the 5th of 5 messages delayed 100 ms each arrived after {:?}: {out:?}",
        out.arrivals[4]
    );
    assert!(
        out.elapsed < Duration::from_secs(3),
        "the delayed stream took {:?}: {out:?}",
        out.elapsed
    );
    client.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tonic_unary_sees_injected_unavailable_with_its_message_until_the_rule_is_removed() {
    let agent = support::agent().await;
    let upstream = grpc::echo().await;
    let route = agent.route_with(ROUTE, upstream.addr, Protocol::Grpc, HttpOptions::default());
    let mut client = EchoClient::connect(format!("http://{route}"))
        .await
        .expect("connect to the route");
    assert_eq!(tonic_unary(&mut client, "hello").await.unwrap(), "hello");
    agent
        .rule(
            ROUTE,
            json!({
                "name": "unavail", "type": "grpc_abort", "percentage": 100,
                "match": {"grpc": UNARY},
                "attributes": {"code": 14, "message": "injected outage"},
            }),
        )
        .await;
    let status = tonic_unary(&mut client, "hello")
        .await
        .expect_err("the call is aborted");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert_eq!(status.message(), "injected outage", "{status:?}");
    assert_eq!(
        upstream.unary_calls(),
        1,
        "the aborted call reached the upstream"
    );

    remove_rule(&agent, "unavail").await;
    assert_eq!(tonic_unary(&mut client, "again").await.unwrap(), "again");
    assert_eq!(upstream.unary_calls(), 2);
}

/// A tonic client on a fresh `grpc` route, and the route's agent and upstream.
async fn tonic_setup() -> (TestAgent, grpc::Upstream, EchoClient<Channel>) {
    let agent = support::agent().await;
    let upstream = grpc::echo().await;
    let route = agent.route_with(ROUTE, upstream.addr, Protocol::Grpc, HttpOptions::default());
    let client = EchoClient::connect(format!("http://{route}"))
        .await
        .expect("connect to the route");
    (agent, upstream, client)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tonic_unary_is_delayed_by_an_http_delay_rule() {
    let (agent, _upstream, mut client) = tonic_setup().await;
    let t = std::time::Instant::now();
    tonic_unary(&mut client, "warm").await.unwrap();
    let base = t.elapsed();
    agent
        .rule(ROUTE, json!({"name": "slow", "type": "http_delay", "match": {"grpc": UNARY}, "attributes": {"delay": 200}}))
        .await;
    let t = std::time::Instant::now();
    assert_eq!(tonic_unary(&mut client, "late").await.unwrap(), "late");
    let added = t.elapsed().saturating_sub(base);
    assert!(
        added >= Duration::from_millis(195) && added < Duration::from_millis(320),
        "{added:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tonic_server_stream_is_throttled_by_an_http_throttle_rule() {
    let (agent, _upstream, mut client) = tonic_setup().await;
    // 40 replies of ~2 kB each is ~80 kB: at 40 kB/s (4 kB initial bucket) about 1.9 s.
    agent
        .rule(ROUTE, json!({"name": "thin", "type": "http_throttle", "match": {"grpc": SERVER_STREAM}, "attributes": {"bytes_per_second": 40000}}))
        .await;
    let message = "x".repeat(2000);
    let t = std::time::Instant::now();
    let req = faultline_proto::testing::StreamRequest {
        message: message.clone(),
        count: 40,
        interval_ms: 0,
    };
    let mut stream = client
        .server_stream(req)
        .await
        .expect("stream starts")
        .into_inner();
    let mut n = 0;
    while let Some(reply) = stream.message().await.expect("stream completes") {
        assert_eq!(reply.message, message);
        n += 1;
    }
    let took = t.elapsed();
    assert_eq!(n, 40);
    assert!(
        took >= Duration::from_millis(1700) && took < Duration::from_millis(2600),
        "{took:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tonic_unary_sees_a_reset_stream_from_an_http_reset_rule() {
    let (agent, upstream, mut client) = tonic_setup().await;
    agent
        .rule(
            ROUTE,
            json!({"name": "rst", "type": "http_reset", "match": {"grpc": UNARY}}),
        )
        .await;
    let status = tonic_unary(&mut client, "gone")
        .await
        .expect_err("the stream is reset");
    // tonic reports a RST_STREAM as an error status; the call never reached the upstream.
    assert_ne!(status.code(), Code::Ok, "{status:?}");
    assert_eq!(upstream.unary_calls(), 0);
    remove_rule(&agent, "rst").await;
    assert_eq!(tonic_unary(&mut client, "back").await.unwrap(), "back");
}

/// One Unary call with the tonic client; `Ok` holds the echoed message.
async fn tonic_unary(client: &mut EchoClient<Channel>, message: &str) -> Result<String, Status> {
    let req = EchoRequest {
        message: message.into(),
    };
    tokio::time::timeout(STEP_TIMEOUT, client.unary(req))
        .await
        .expect("the tonic call ends")
        .map(|r| r.into_inner().message)
}

/// An agent with a `grpc` route to a fresh Echo server, and the Python client on that route.
async fn setup() -> (TestAgent, grpc::Upstream, PyClient) {
    let python = python::interpreter(&CLIENT).await;
    let agent = support::agent().await;
    let upstream = grpc::echo().await;
    let route = agent.route_with(ROUTE, upstream.addr, Protocol::Grpc, HttpOptions::default());
    let client = PyClient::spawn(&python, route).await;
    (agent, upstream, client)
}

async fn remove_rule(agent: &TestAgent, name: &str) {
    let path = format!("/faultline/v1/routes/{ROUTE}/rules/{name}");
    let r = support::http::request(agent.admin, "DELETE", &path, None).await;
    assert_eq!(r.status, 204, "removing rule {name}: {}", r.body);
}

// === impl Outcome ===

/// How one call ended, as the Python client saw it.
#[derive(Debug)]
struct Outcome {
    /// The `grpc.StatusCode` name, e.g. `OK` or `UNAVAILABLE`.
    code: String,
    details: String,
    /// `(message, sequence)` of each reply received, in order.
    replies: Vec<(String, u64)>,
    /// When each reply arrived, from the call's start.
    arrivals: Vec<Duration>,
    /// When the call ended, from its start.
    elapsed: Duration,
}

impl Outcome {
    fn parse(v: &Value) -> Option<Outcome> {
        let ms = |v: &Value| v.as_f64().map(|ms| Duration::from_secs_f64(ms / 1000.0));
        Some(Outcome {
            code: v["code"].as_str()?.to_owned(),
            details: v["details"].as_str()?.to_owned(),
            replies: v["replies"]
                .as_array()?
                .iter()
                .map(|r| Some((r["message"].as_str()?.to_owned(), r["sequence"].as_u64()?)))
                .collect::<Option<_>>()?,
            arrivals: v["arrivals_ms"]
                .as_array()?
                .iter()
                .map(ms)
                .collect::<Option<_>>()?,
            elapsed: ms(&v["elapsed_ms"])?,
        })
    }

    fn assert_ok(&self, messages: &[&str]) {
        assert_eq!(self.code, "OK", "{self:?}");
        self.assert_replies(messages);
    }

    fn assert_status(&self, code: &str, details: &str) {
        assert_eq!(
            (self.code.as_str(), self.details.as_str()),
            (code, details),
            "{self:?}"
        );
    }

    /// The replies are exactly `messages`, with sequence numbers 0, 1, 2, ...
    fn assert_replies(&self, messages: &[&str]) {
        let want: Vec<(String, u64)> = (0..)
            .zip(messages)
            .map(|(i, m)| (m.to_string(), i))
            .collect();
        assert_eq!(self.replies, want, "{self:?}");
    }
}

// === impl PyClient ===

/// The running `grpc_client.py`, one JSON command and answer at a time.
struct PyClient {
    py: PyScript,
}

impl PyClient {
    /// Starts the script against `route` and waits until its stubs are generated.
    async fn spawn(python: &Path, route: SocketAddr) -> PyClient {
        let py = PyScript::spawn(python, "grpc_client.py", [route.to_string()], STEP_TIMEOUT);
        let mut client = PyClient { py };
        let ready = client.answer("ready").await;
        if ready != json!({"ready": true}) {
            client
                .py
                .fail(&format!("expected ready, got {ready}"))
                .await;
        }
        client
    }

    async fn unary(&mut self, message: &str) -> Outcome {
        self.call(json!({"call": "Unary", "message": message}))
            .await
    }

    async fn server_stream(&mut self, message: &str, count: u32, interval_ms: u32) -> Outcome {
        self.call(json!({
            "call": "ServerStream", "message": message, "count": count, "interval_ms": interval_ms,
        }))
        .await
    }

    async fn call(&mut self, command: Value) -> Outcome {
        self.py.send(&command.to_string()).await;
        let answer = self.answer(&command.to_string()).await;
        match Outcome::parse(&answer) {
            Some(outcome) => outcome,
            None => {
                self.py
                    .fail(&format!("bad answer to {command}: {answer}"))
                    .await
            }
        }
    }

    /// Closes stdin and expects a clean exit.
    async fn finish(self) {
        self.py.finish().await;
    }

    async fn answer(&mut self, to: &str) -> Value {
        let line = match self.py.next_line().await {
            Ok(line) => line,
            Err(NoLine::Ended) => self.py.fail(&format!("ended before answering {to}")).await,
            Err(NoLine::Unreadable(e)) => {
                self.py
                    .fail(&format!("reading the answer to {to}: {e}"))
                    .await
            }
            Err(NoLine::TimedOut(after)) => {
                self.py
                    .fail(&format!("no answer to {to} after {after:?}"))
                    .await
            }
        };
        match serde_json::from_str(&line) {
            Ok(v) => v,
            Err(e) => {
                self.py
                    .fail(&format!("answer to {to} is not JSON ({e}): {line}"))
                    .await
            }
        }
    }
}
