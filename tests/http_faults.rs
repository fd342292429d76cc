//! End to end through real sockets: HTTP/1.1 and h2c routes, each request-level fault measured
//! from the client, matching and sampling, and bad input.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use faultline_agent::route::{HttpOptions, Protocol};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::json;
use support::http_upstream;
use support::servers::pattern;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

type HttpClient = Client<HttpConnector, Full<Bytes>>;

fn h1() -> HttpClient {
    Client::builder(TokioExecutor::new()).build(HttpConnector::new())
}

fn h2() -> HttpClient {
    Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build(HttpConnector::new())
}

struct Got {
    status: StatusCode,
    headers: http::HeaderMap,
    body: Result<Bytes, String>,
    took: Duration,
}

async fn send(
    c: &HttpClient,
    method: &str,
    addr: SocketAddr,
    path: &str,
    body: Bytes,
    headers: &[(&str, &str)],
) -> Result<Got, String> {
    let mut b = Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"));
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let t = Instant::now();
    let resp = c
        .request(b.body(Full::new(body)).unwrap())
        .await
        .map_err(|e| format!("{e:?}"))?;
    let (parts, body) = resp.into_parts();
    let body = body
        .collect()
        .await
        .map(|c| c.to_bytes())
        .map_err(|e| format!("{e:?}"));
    Ok(Got {
        status: parts.status,
        headers: parts.headers,
        body,
        took: t.elapsed(),
    })
}

async fn get(c: &HttpClient, addr: SocketAddr, path: &str) -> Got {
    send(c, "GET", addr, path, Bytes::new(), &[])
        .await
        .expect("request")
}

/// An agent with an http route in front of the test upstream.
async fn setup(
    options: HttpOptions,
) -> (support::TestAgent, http_upstream::HttpUpstream, SocketAddr) {
    let agent = support::agent().await;
    let up = http_upstream::start().await;
    let addr = agent.route_with("api", up.addr, Protocol::Http, options);
    (agent, up, addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_pass_through_on_http1_and_h2c() {
    let (_agent, up, addr) = setup(HttpOptions::default()).await;
    for c in [h1(), h2()] {
        let g = get(&c, addr, "/hello").await;
        assert_eq!(g.status, 200);
        assert_eq!(g.body.unwrap(), "hello");
        let g = get(&c, addr, "/status/404").await;
        assert_eq!(g.status, 404);
    }
    assert_eq!(up.requests(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_answers_with_the_status_and_body_without_calling_upstream() {
    let (agent, up, addr) = setup(HttpOptions::default()).await;
    agent
        .rule(
            "api",
            json!({"name": "outage", "type": "http_abort", "match": {"path": {"prefix": "/hel"}},
            "attributes": {"status": 503, "body": "try later", "headers": {"retry-after": "2"}}}),
        )
        .await;
    for c in [h1(), h2()] {
        let g = get(&c, addr, "/hello").await;
        assert_eq!(g.status, 503);
        assert_eq!(g.body.unwrap(), "try later");
        assert_eq!(g.headers["retry-after"], "2");
        // Unmatched paths still reach the upstream.
        assert_eq!(get(&c, addr, "/status/200").await.status, 200);
    }
    assert_eq!(up.requests(), 2, "aborted requests never reach upstream");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delay_holds_the_request_or_the_response_head() {
    let (agent, _up, addr) = setup(HttpOptions::default()).await;
    let c = h1();
    let base = get(&c, addr, "/hello").await.took;
    agent
        .rule(
            "api",
            json!({"name": "slow", "type": "http_delay", "attributes": {"delay": 200}}),
        )
        .await;
    for c in [h1(), h2()] {
        let g = get(&c, addr, "/hello").await;
        assert_eq!(g.body.unwrap(), "hello");
        let added = g.took.saturating_sub(base);
        assert!(
            added >= Duration::from_millis(195) && added < Duration::from_millis(300),
            "{added:?}"
        );
    }
    let r = support::http::request(
        agent.admin,
        "DELETE",
        "/faultline/v1/routes/api/rules/slow",
        None,
    )
    .await;
    assert_eq!(r.status, 204);
    agent.rule("api", json!({"name": "late", "type": "http_delay", "attributes": {"delay": 150, "phase": "response"}})).await;
    let g = get(&c, addr, "/hello").await;
    assert!(
        g.took >= Duration::from_millis(145) && g.took < Duration::from_millis(260),
        "{:?}",
        g.took
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttle_holds_the_response_rate() {
    let (agent, _up, addr) = setup(HttpOptions::default()).await;
    agent.rule("api", json!({"name": "thin", "type": "http_throttle", "attributes": {"bytes_per_second": 100_000}})).await;
    for c in [h1(), h2()] {
        let g = get(&c, addr, "/bytes/210000").await;
        assert_eq!(g.body.unwrap(), pattern(210_000));
        // 210 kB at 100 kB/s with a 10 kB initial bucket: ~2 s.
        assert!(
            g.took >= Duration::from_millis(1800) && g.took <= Duration::from_millis(2400),
            "{:?}",
            g.took
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_before_the_response_drops_the_connection_or_resets_the_stream() {
    let (agent, up, addr) = setup(HttpOptions::default()).await;
    agent
        .rule(
            "api",
            json!({"name": "rst", "type": "http_reset", "match": {"path": {"exact": "/hello"}}}),
        )
        .await;
    for c in [h1(), h2()] {
        let r = send(&c, "GET", addr, "/hello", Bytes::new(), &[]).await;
        assert!(
            r.is_err(),
            "expected a reset, got {:?}",
            r.map(|g| g.status)
        );
    }
    // On h2 only the stream is reset: the connection keeps serving other requests.
    let c = h2();
    assert!(
        send(&c, "GET", addr, "/hello", Bytes::new(), &[])
            .await
            .is_err()
    );
    assert_eq!(get(&c, addr, "/status/200").await.status, 200);
    assert_eq!(up.requests(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_mid_response_cuts_the_body_after_n_bytes() {
    let (agent, _up, addr) = setup(HttpOptions::default()).await;
    agent.rule("api", json!({"name": "cut", "type": "http_reset", "attributes": {"phase": "mid_response", "after_bytes": 50000}})).await;
    for c in [h1(), h2()] {
        let g = get(&c, addr, "/bytes/200000").await;
        assert_eq!(g.status, 200, "the head arrives");
        assert!(g.body.is_err(), "the body must fail mid-way");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_percent_abort_over_20000_requests_lands_near_ten_percent() {
    let (agent, _up, addr) = setup(HttpOptions::default()).await;
    agent.rule("api", json!({"name": "tenth", "type": "http_abort", "percentage": 10, "attributes": {"status": 503}})).await;
    let c = h1();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..32 {
        let c = c.clone();
        tasks.spawn(async move {
            let mut aborted = 0u32;
            for _ in 0..625 {
                if get(&c, addr, "/hello").await.status == 503 {
                    aborted += 1;
                }
            }
            aborted
        });
    }
    let mut aborted = 0;
    while let Some(n) = tasks.join_next().await {
        aborted += n.unwrap();
    }
    assert!(
        (1700..=2300).contains(&aborted),
        "{aborted} of 20000 aborted"
    );
    let rule = support::http::request(
        agent.admin,
        "GET",
        "/faultline/v1/routes/api/rules/tenth",
        None,
    )
    .await
    .json();
    assert_eq!(rule["stats"]["matched"], 20_000);
    assert_eq!(rule["stats"]["injected"], aborted);
    assert_eq!(rule["stats"]["passed"], 20_000 - aborted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sticky_cohort_gives_the_same_key_the_same_decision_every_time() {
    let (agent, _up, addr) = setup(HttpOptions::default()).await;
    agent
        .rule(
            "api",
            json!({"name": "cohort", "type": "http_abort", "percentage": 50,
            "cohort": {"header": "x-user", "seed": 7}, "attributes": {"status": 500}}),
        )
        .await;
    let c = h1();
    let mut hit_users = 0;
    for user in 0..20 {
        let key = format!("user-{user}");
        let first = send(&c, "GET", addr, "/hello", Bytes::new(), &[("x-user", &key)])
            .await
            .unwrap()
            .status;
        let same = if user == 0 { 1000 } else { 20 };
        for _ in 0..same {
            let s = send(&c, "GET", addr, "/hello", Bytes::new(), &[("x-user", &key)])
                .await
                .unwrap()
                .status;
            assert_eq!(s, first, "{key} changed its fate");
        }
        if first == 500 {
            hit_users += 1;
        }
    }
    assert!(
        (3..=17).contains(&hit_users),
        "{hit_users} of 20 users in the cohort"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rule_added_while_a_keep_alive_connection_is_open_affects_its_next_request() {
    let (agent, _up, addr) = setup(HttpOptions::default()).await;
    // One raw keep-alive connection, so there is no doubt the same connection is reused.
    let mut s = TcpStream::connect(addr).await.unwrap();
    let req = b"GET /hello HTTP/1.1\r\nhost: x\r\n\r\n";
    s.write_all(req).await.unwrap();
    let first = read_response(&mut s).await;
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");
    agent
        .rule(
            "api",
            json!({"name": "now", "type": "http_abort", "attributes": {"status": 429}}),
        )
        .await;
    s.write_all(req).await.unwrap();
    let second = read_response(&mut s).await;
    assert!(second.starts_with("HTTP/1.1 429"), "{second}");
}

/// Reads until the agent ends the connection (EOF or reset); panics if it stays open.
async fn until_closed(s: &mut TcpStream) {
    let mut buf = [0u8; 1024];
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .expect("the agent closes the connection");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_keep_alive_connection_is_cut_by_down_and_closed_by_a_drain() {
    let (agent, _up, addr) = setup(HttpOptions::default()).await;
    let req = b"GET /hello HTTP/1.1\r\nhost: x\r\n\r\n";
    let mut a = TcpStream::connect(addr).await.unwrap();
    let mut b = TcpStream::connect(addr).await.unwrap();
    for s in [&mut a, &mut b] {
        s.write_all(req).await.unwrap();
        let r = read_response(s).await;
        assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    }
    // The route's snapshot changes under an idle keep-alive connection: `down` cuts it.
    agent.toxic("api", json!({"type": "down"})).await;
    until_closed(&mut a).await;
    agent.remove_toxic("api", "down_downstream").await;
    // `b` was opened before the fault too and is cut with `a`; a new one is served.
    until_closed(&mut b).await;
    let mut c = TcpStream::connect(addr).await.unwrap();
    c.write_all(req).await.unwrap();
    let r = read_response(&mut c).await;
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    // The agent drains: the idle keep-alive connection is closed, and no connection is left
    // for the grace period to cut.
    let left = agent.agent.shutdown(Duration::from_secs(10)).await;
    assert_eq!(left, 0);
    until_closed(&mut c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_connections_share_idle_upstream_connections_but_never_a_busy_one() {
    // One worker: upstream connections are pooled per worker.
    let agent = support::agent_with_threads(Some(1)).await;
    let up = http_upstream::start().await;
    let addr = agent.route_with("api", up.addr, Protocol::Http, HttpOptions::default());
    let get = b"GET /hello HTTP/1.1\r\nhost: x\r\n\r\n";
    let upstream_conn = |resp: &str| -> String {
        resp.lines()
            .find_map(|l| l.strip_prefix("x-upstream-connection: "))
            .unwrap_or_else(|| panic!("no x-upstream-connection in {resp}"))
            .trim()
            .to_string()
    };

    // Two client connections one after the other: the second reuses the first's, now idle.
    let mut a = TcpStream::connect(addr).await.unwrap();
    a.write_all(get).await.unwrap();
    let first = upstream_conn(&read_response(&mut a).await);
    let mut b = TcpStream::connect(addr).await.unwrap();
    b.write_all(get).await.unwrap();
    assert_eq!(upstream_conn(&read_response(&mut b).await), first);

    // `a` holds that connection busy with a 16 MiB answer it has not read yet: `b` gets
    // another.
    let big = b"GET /bytes/16777216 HTTP/1.1\r\nhost: x\r\n\r\n";
    a.write_all(big).await.unwrap();
    let head = String::from_utf8(read_head(&mut a).await).unwrap();
    assert_eq!(upstream_conn(&head), first);
    b.write_all(get).await.unwrap();
    let second = upstream_conn(&read_response(&mut b).await);
    assert_ne!(second, first, "a busy upstream connection was handed out");
    let mut rest = vec![0u8; 16 * 1024 * 1024];
    a.read_exact(&mut rest).await.unwrap();
    assert_eq!(rest, pattern(16 * 1024 * 1024));

    // Both idle again: a third client uses one of them, no third connection is opened.
    let mut c = TcpStream::connect(addr).await.unwrap();
    c.write_all(get).await.unwrap();
    let third = upstream_conn(&read_response(&mut c).await);
    assert!(third == first || third == second, "{third}");
    assert_eq!(up.requests(), 5);

    // Requests with a body go through hyper's client, whose pool is shared the same way: two
    // POSTs in a row, from two clients, come on one upstream connection.
    let post = b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\n\r\nhello";
    a.write_all(post).await.unwrap();
    let one = read_response(&mut a).await;
    assert!(one.ends_with("hello"), "{one}");
    c.write_all(post).await.unwrap();
    let two = read_response(&mut c).await;
    assert_eq!(upstream_conn(&one), upstream_conn(&two));

    // A client that goes away in the middle of a body leaves that connection half read: the
    // next request does not get it (it would read the rest of that body as its answer).
    let mut d = TcpStream::connect(addr).await.unwrap();
    d.write_all(b"GET /bytes/16777216 HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let head = String::from_utf8(read_head(&mut d).await).unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    drop(d);
    for _ in 0..3 {
        let mut e = TcpStream::connect(addr).await.unwrap();
        e.write_all(get).await.unwrap();
        let resp = read_response(&mut e).await;
        assert!(
            resp.starts_with("HTTP/1.1 200") && resp.ends_with("hello"),
            "{resp}"
        );
    }
}

/// Reads a response head, byte by byte, so nothing after it is consumed.
async fn read_head(s: &mut TcpStream) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).await.unwrap();
        buf.push(byte[0]);
    }
    buf
}

/// Reads one response with a content-length body.
async fn read_response(s: &mut TcpStream) -> String {
    let buf = read_head(s).await;
    let head = String::from_utf8_lossy(&buf).to_string();
    let len: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap())
        })
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).await.unwrap();
    head + &String::from_utf8_lossy(&body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_mib_bodies_pass_byte_identical_with_and_without_a_delay() {
    let (agent, _up, addr) = setup(HttpOptions::default()).await;
    let data = Bytes::from(pattern(16 * 1024 * 1024));
    for round in 0..2 {
        if round == 1 {
            agent
                .rule(
                    "api",
                    json!({"name": "d", "type": "http_delay", "attributes": {"delay": 50}}),
                )
                .await;
        }
        for c in [h1(), h2()] {
            let g = send(&c, "POST", addr, "/echo", data.clone(), &[])
                .await
                .unwrap();
            assert_eq!(g.status, 200);
            assert!(
                g.body.unwrap() == data,
                "upload echoed back differs (round {round})"
            );
            let g = get(&c, addr, &format!("/bytes/{}", data.len())).await;
            assert!(g.body.unwrap() == data, "download differs (round {round})");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_triggered_faults_work_only_where_enabled() {
    let (_agent, up, addr) = setup(HttpOptions {
        header_faults: true,
        ..HttpOptions::default()
    })
    .await;
    let c = h1();
    let g = send(
        &c,
        "GET",
        addr,
        "/hello",
        Bytes::new(),
        &[("x-faultline-abort", "503")],
    )
    .await
    .unwrap();
    assert_eq!(g.status, 503);
    let g = send(
        &c,
        "GET",
        addr,
        "/hello",
        Bytes::new(),
        &[("x-faultline-delay", "150ms")],
    )
    .await
    .unwrap();
    assert_eq!(g.status, 200);
    assert!(g.took >= Duration::from_millis(145), "{:?}", g.took);
    let g = send(
        &c,
        "GET",
        addr,
        "/hello",
        Bytes::new(),
        &[("x-faultline-abort", "99")],
    )
    .await
    .unwrap();
    assert_eq!(g.status, 400);
    assert!(g.body.unwrap().starts_with(b"faultline: x-faultline-abort"));
    let before = up.requests();

    // Off by default: the headers pass through and nothing is injected.
    let (_agent2, _up2, plain) = setup(HttpOptions::default()).await;
    let g = send(
        &c,
        "GET",
        plain,
        "/hello",
        Bytes::new(),
        &[("x-faultline-abort", "503")],
    )
    .await
    .unwrap();
    assert_eq!(g.status, 200);
    assert_eq!(up.requests(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrades_pass_through_untouched() {
    let (_agent, _up, addr) = setup(HttpOptions::default()).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(
        b"GET /upgrade HTTP/1.1\r\nhost: x\r\nconnection: upgrade\r\nupgrade: echo\r\n\r\n",
    )
    .await
    .unwrap();
    let buf = read_head(&mut s).await;
    assert!(
        buf.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&buf)
    );
    s.write_all(b"raw bytes after the upgrade").await.unwrap();
    let mut back = [0u8; 27];
    s.read_exact(&mut back).await.unwrap();
    assert_eq!(&back, b"raw bytes after the upgrade");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_tunnels_pass_through_untouched() {
    let (_agent, _up, addr) = setup(HttpOptions::default()).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"CONNECT db.internal:5432 HTTP/1.1\r\nhost: db.internal:5432\r\n\r\n")
        .await
        .unwrap();
    let buf = read_head(&mut s).await;
    assert!(
        buf.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&buf)
    );
    s.write_all(b"\x00\x01binary tunnel bytes").await.unwrap();
    let mut back = [0u8; 21];
    s.read_exact(&mut back).await.unwrap();
    assert_eq!(&back, b"\x00\x01binary tunnel bytes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_triggered_faults_are_capped_per_route() {
    let options = HttpOptions {
        header_faults: true,
        max_header_faults: 2,
        ..HttpOptions::default()
    };
    let (_agent, _up, addr) = setup(options).await;
    let c = h1();
    // Six concurrent requests each ask for a 300 ms delay; only two may have it at once.
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..6 {
        let c = c.clone();
        tasks.spawn(async move {
            send(
                &c,
                "GET",
                addr,
                "/hello",
                Bytes::new(),
                &[("x-faultline-delay", "300ms")],
            )
            .await
            .unwrap()
            .took
        });
    }
    let mut delayed = 0;
    while let Some(took) = tasks.join_next().await {
        if took.unwrap() >= Duration::from_millis(295) {
            delayed += 1;
        }
    }
    assert_eq!(
        delayed, 2,
        "the cap of 2 concurrent header faults was not kept"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_bytes_get_400_and_the_agent_keeps_serving() {
    let (_agent, _up, addr) = setup(HttpOptions::default()).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"\x16\x03\x01 this is not http at all\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out).await;
    assert!(
        out.starts_with(b"HTTP/1.1 400"),
        "{}",
        String::from_utf8_lossy(&out)
    );
    assert_eq!(get(&h1(), addr, "/hello").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_rules_are_refused_naming_the_field_and_change_nothing() {
    let (agent, _up, _addr) = setup(HttpOptions::default()).await;
    let cases = [
        (
            json!({"type": "http_abort", "attributes": {"status": 503}, "match": {"path": {"regex": "(unclosed"}}}),
            "match.path.regex",
        ),
        (
            json!({"type": "http_abort", "attributes": {"status": 99}}),
            "attributes.status",
        ),
        (
            json!({"type": "http_abort", "attributes": {"status": 600}}),
            "attributes.status",
        ),
        (
            json!({"type": "http_abort", "percentage": 101, "attributes": {"status": 503}}),
            "percentage",
        ),
        (
            json!({"type": "http_abort", "percentage": -1, "attributes": {"status": 503}}),
            "percentage",
        ),
        (
            json!({"type": "grpc_abort", "attributes": {"code": 17}}),
            "attributes.code",
        ),
        (
            json!({"type": "grpc_abort", "attributes": {"code": "NOT_A_CODE"}}),
            "attributes.code",
        ),
        (
            json!({"type": "http_delay", "attributes": {"delay": -5}}),
            "attributes.delay",
        ),
        (
            json!({"type": "http_abort", "attributes": {"status": 503}, "match": {"grpc": "no/slashes/here/x"}}),
            "match.grpc",
        ),
        (
            json!({"type": "http_abort", "attributes": {"status": 503}, "match": {"headers": [{"name": "x", "regex": "["}]}}),
            "match.headers[0]",
        ),
        (
            json!({"type": "http_abort", "attributes": {"status": 503}, "match": {"destination": {"destinations": ["10.0.0.0/8", "not-an-ip"]}}}),
            "match.destination.destinations[1]",
        ),
        (
            json!({"type": "http_abort", "attributes": {"status": 503}, "match": {"destination": {"ports": [70000]}}}),
            "match.destination.ports[0]",
        ),
        (
            json!({"type": "http_abort", "attributes": {"status": 503}, "match": {"destination": {"addresses": []}}}),
            "match.destination.addresses",
        ),
        (
            json!({"type": "http_abort", "attributes": {"status": 503}, "cohort": {"seed": 1}}),
            "cohort.header",
        ),
        (
            json!({"type": "latency", "attributes": {"latency": 5}}),
            "type",
        ),
    ];
    for (body, field) in cases {
        let r = support::http::request(
            agent.admin,
            "POST",
            "/faultline/v1/routes/api/rules",
            Some(&body),
        )
        .await;
        assert_eq!(r.status, 400, "{body}: {}", r.body);
        let got = r.json()["field"].as_str().unwrap_or_default().to_string();
        assert!(
            got.starts_with(field),
            "{body}: field {got:?}, wanted {field:?} ({})",
            r.body
        );
    }
    let rules = support::http::request(agent.admin, "GET", "/faultline/v1/routes/api/rules", None)
        .await
        .json();
    assert_eq!(rules, json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slis_tell_injected_failures_from_real_ones() {
    let (agent, _up, addr) = setup(HttpOptions {
        fault_header: true,
        ..HttpOptions::default()
    })
    .await;
    agent.rule("api", json!({"name": "boom", "type": "http_abort", "match": {"path": {"exact": "/hello"}}, "attributes": {"status": 503}})).await;
    let c = h1();
    let g = get(&c, addr, "/hello").await;
    assert_eq!(g.status, 503);
    assert_eq!(g.headers["x-faultline-fault"], "boom");
    assert_eq!(get(&c, addr, "/status/500").await.status, 500);
    let metrics = support::http::request(agent.admin, "GET", "/metrics", None)
        .await
        .body;
    assert!(
        metrics.contains(
            "faultline_http_requests_total{route=\"api\",class=\"5xx\",injected=\"true\"} 1"
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            "faultline_http_requests_total{route=\"api\",class=\"5xx\",injected=\"false\"} 1"
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            "faultline_fault_requests_total{route=\"api\",fault=\"boom\",outcome=\"injected\"} 1"
        ),
        "{metrics}"
    );
    let sli =
        support::http::request(agent.admin, "GET", "/faultline/v1/routes/api/sli", None).await;
    assert_eq!(sli.status, 200, "{}", sli.body);
}

/// A TCP listener that accepts connections, reads what comes, and never answers.
async fn silent_upstream() -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                while matches!(s.read(&mut buf).await, Ok(n) if n > 0) {}
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_that_never_answers_gets_504_after_the_response_timeout() {
    let agent = support::agent().await;
    let limit = Duration::from_millis(300);
    let options = HttpOptions {
        response_timeout: Some(limit),
        ..HttpOptions::default()
    };
    let addr = agent.route_with("api", silent_upstream().await, Protocol::Http, options);
    // HTTP/1.1 without a body (the in-task exchange), with a body (hyper's client), and h2c.
    let cases = [
        (h1(), "GET", Bytes::new()),
        (h1(), "POST", Bytes::from_static(b"payload")),
        (h2(), "GET", Bytes::new()),
    ];
    for (c, method, body) in cases {
        let g = send(&c, method, addr, "/slow", body, &[]).await.unwrap();
        assert_eq!(g.status, StatusCode::GATEWAY_TIMEOUT, "{method}");
        let text = String::from_utf8_lossy(&g.body.unwrap()).into_owned();
        assert!(
            text.contains("did not answer within 300ms"),
            "{method}: {text}"
        );
        assert!(g.took >= limit, "{method} answered after {:?}", g.took);
        assert!(g.took < Duration::from_secs(10), "{method}: {:?}", g.took);
    }
    // gRPC: DEADLINE_EXCEEDED in a trailers-only answer.
    let g = send(
        &h2(),
        "POST",
        addr,
        "/pkg.Svc/Call",
        Bytes::from_static(b"\0\0\0\0\0"),
        &[("content-type", "application/grpc"), ("te", "trailers")],
    )
    .await
    .unwrap();
    assert_eq!(g.status, StatusCode::OK);
    assert_eq!(g.headers["grpc-status"], "4");
    // Real upstream errors, not injected ones.
    let metrics = support::http::request(agent.admin, "GET", "/metrics", None)
        .await
        .body;
    assert!(
        metrics.contains(
            "faultline_http_requests_total{route=\"api\",class=\"5xx\",injected=\"false\"} 3"
        ),
        "{metrics}"
    );
    // The route shows its limit.
    let route = support::http::request(agent.admin, "GET", "/proxies/api", None)
        .await
        .json();
    assert_eq!(route["response_timeout"], "300ms");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_timeout_is_checked_when_a_route_is_created() {
    let agent = support::agent().await;
    let create = |name: &str, extra: serde_json::Value| {
        let mut body = json!({"name": name, "listen": "127.0.0.1:0", "upstream": "127.0.0.1:9"});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        body
    };
    let ok = support::http::request(
        agent.admin,
        "POST",
        "/proxies",
        Some(&create(
            "a",
            json!({"protocol": "http", "response_timeout": "2s"}),
        )),
    )
    .await;
    assert_eq!(ok.status, 201, "{}", ok.body);
    assert_eq!(ok.json()["response_timeout"], "2s");
    for (extra, says) in [
        (
            json!({"protocol": "http", "response_timeout": "soon"}),
            "not a duration",
        ),
        (
            json!({"protocol": "http", "response_timeout": "0s"}),
            "more than 0",
        ),
        (
            json!({"response_timeout": "2s"}),
            "need protocol http or grpc",
        ),
    ] {
        let r = support::http::request(agent.admin, "POST", "/proxies", Some(&create("b", extra)))
            .await;
        assert_eq!(r.status, 400, "{}", r.body);
        assert!(r.body.contains("response_timeout"), "{}", r.body);
        assert!(r.body.contains(says), "{}", r.body);
    }
    let list = support::http::request(agent.admin, "GET", "/proxies", None)
        .await
        .json();
    assert!(
        list.get("b").is_none(),
        "a refused route is not half-created: {list}"
    );
}
