//! End to end through real sockets: every admin API endpoint, checked against Toxiproxy 2.x's
//! documented request and response shapes and status codes, and against what the data path
//! does afterwards.

mod support;

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{Value, json};
use support::http::{self, Response};
use support::servers::{self, round_trip};
use tokio::net::TcpStream;

// === helpers ===

async fn get(admin: SocketAddr, path: &str) -> Response {
    http::request(admin, "GET", path, None).await
}

async fn post(admin: SocketAddr, path: &str, body: Value) -> Response {
    http::request(admin, "POST", path, Some(&body)).await
}

async fn delete(admin: SocketAddr, path: &str) -> Response {
    http::request(admin, "DELETE", path, None).await
}

/// Asserts Toxiproxy's error shape: `{"error": "...", "status": N}`, plus faultline's `field`.
fn assert_error(r: &Response, status: u16, field: Option<&str>) {
    assert_eq!(r.status, status, "{}", r.body);
    let body = r.json();
    assert!(
        body["error"].as_str().is_some_and(|e| !e.is_empty()),
        "no error message: {body}"
    );
    assert_eq!(body["status"], status, "{body}");
    assert_eq!(body["field"].as_str(), field, "{body}");
}

/// Creates a proxy through the API and returns the address it listens on.
async fn create(admin: SocketAddr, name: &str, upstream: SocketAddr) -> SocketAddr {
    create_on(admin, name, "127.0.0.1:0", upstream).await
}

async fn create_on(
    admin: SocketAddr,
    name: &str,
    listen: &str,
    upstream: SocketAddr,
) -> SocketAddr {
    let r = post(
        admin,
        "/proxies",
        json!({"name": name, "listen": listen, "upstream": upstream.to_string()}),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    listen_of(&r.json())
}

/// A free loopback address below the kernel's ephemeral port range (Linux: 32768-60999).
/// Tests that close a proxy's listener and then expect its port to refuse connections, or
/// bind it again, listen here: no `bind(0)` or outgoing connection elsewhere on the machine
/// (other tests run alongside) can take such a port while it is closed.
fn quiet_addr() -> String {
    let seed = RandomState::new().build_hasher().finish();
    (0..1000u64)
        .map(|i| 20_000 + (seed.wrapping_add(i * 7_919) % 12_000) as u16)
        .find_map(|port| {
            std::net::TcpListener::bind(("127.0.0.1", port))
                .ok()?
                .local_addr()
                .ok()
        })
        .expect("a free port in 20000-31999")
        .to_string()
}

fn listen_of(proxy: &Value) -> SocketAddr {
    proxy["listen"]
        .as_str()
        .and_then(|l| l.parse().ok())
        .unwrap_or_else(|| panic!("listen is not an address: {proxy}"))
}

/// Connects through a proxy and checks that bytes come back from the echo upstream.
async fn assert_echoes(addr: SocketAddr) {
    let mut s = TcpStream::connect(addr)
        .await
        .expect("connect through the proxy");
    assert_eq!(round_trip(&mut s, b"hello").await, b"hello");
}

async fn refuses(addr: SocketAddr) -> Result<(), String> {
    match TcpStream::connect(addr).await {
        Err(e) if e.kind() == ErrorKind::ConnectionRefused => Ok(()),
        Err(e) => Err(format!("{addr}: {e}")),
        Ok(_) => Err(format!("{addr} accepted a connection")),
    }
}

async fn assert_refused(addr: SocketAddr) {
    if let Err(e) = refuses(addr).await {
        panic!("expected ECONNREFUSED: {e}");
    }
}

/// Waits until a proxy's listener is closed. The agent answers a disable or a delete before the
/// route's accept task has dropped its listener, so a connection made in between is reset
/// rather than refused (see `listener_is_closed_when_disable_and_delete_answer`).
async fn assert_refused_soon(addr: SocketAddr) {
    support::eventually("the listener to close", Duration::from_secs(5), || async {
        refuses(addr).await.ok()
    })
    .await
}

// === /version, /ready, /metrics ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_is_json_with_a_version() {
    let agent = support::agent().await;
    let r = get(agent.admin, "/version").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let version = r.json()["version"].as_str().map(str::to_owned);
    assert!(
        version.as_deref().is_some_and(|v| v.starts_with("2.")),
        "{}",
        r.body
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_is_200() {
    let agent = support::agent().await;
    let r = get(agent.admin, "/ready").await;
    assert_eq!(r.status, 200, "{}", r.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_connections_and_bytes_after_traffic() {
    let agent = support::agent().await;
    let addr = create(agent.admin, "m", servers::echo().await).await;
    assert_echoes(addr).await;
    let text = support::eventually(
        "counters after one 5-byte echo",
        Duration::from_secs(5),
        || async {
            let r = get(agent.admin, "/metrics").await;
            assert_eq!(r.status, 200);
            assert!(
                r.header("content-type")
                    .is_some_and(|c| c.starts_with("text/plain"))
            );
            let want = [
                "faultline_route_connections_total{route=\"m\"} 1\n",
                "faultline_route_bytes_total{route=\"m\",direction=\"upstream\"} 5\n",
                "faultline_route_bytes_total{route=\"m\",direction=\"downstream\"} 5\n",
            ];
            want.iter().all(|w| r.body.contains(w)).then_some(r.body)
        },
    )
    .await;
    for family in [
        "# TYPE faultline_route_connections_total counter\n",
        "# TYPE faultline_route_connections_active gauge\n",
        "faultline_route_upstream_connect_errors_total{route=\"m\"} 0\n",
        "faultline_route_faults_injected_total{route=\"m\",kind=\"latency\"} 0\n",
    ] {
        assert!(text.contains(family), "missing {family:?} in\n{text}");
    }
}

// === /proxies ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_proxy_is_201_and_reports_the_bound_port() {
    let agent = support::agent().await;
    let upstream = servers::echo().await;
    let r = post(
        agent.admin,
        "/proxies",
        json!({"name": "web", "listen": "127.0.0.1:0", "upstream": upstream.to_string()}),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let body = r.json();
    assert_eq!(body["name"], "web");
    assert_eq!(body["upstream"], upstream.to_string());
    assert_eq!(body["enabled"], true);
    assert_eq!(body["toxics"], json!([]));
    let listen = listen_of(&body);
    assert_eq!(listen.ip().to_string(), "127.0.0.1");
    assert_ne!(listen.port(), 0);
    assert_echoes(listen).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_proxies_maps_names_to_proxies() {
    let agent = support::agent().await;
    let r = get(agent.admin, "/proxies").await;
    assert_eq!((r.status, r.json()), (200, json!({})));
    let upstream = servers::echo().await;
    let a = create(agent.admin, "a", upstream).await;
    let b = create(agent.admin, "b", upstream).await;
    let all = get(agent.admin, "/proxies").await.json();
    let names: Vec<&String> = all.as_object().unwrap().keys().collect();
    assert_eq!(names, ["a", "b"]);
    assert_eq!(all["a"]["name"], "a");
    assert_eq!(listen_of(&all["a"]), a);
    assert_eq!(listen_of(&all["b"]), b);
    assert_eq!(all["b"]["upstream"], upstream.to_string());
    assert_eq!(all["b"]["enabled"], true);
    assert_eq!(all["b"]["toxics"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_duplicate_proxy_is_409_and_keeps_the_first() {
    let agent = support::agent().await;
    let upstream = servers::echo().await;
    let first = create(agent.admin, "dup", upstream).await;
    let other = servers::sink().await;
    let r = post(
        agent.admin,
        "/proxies",
        json!({"name": "dup", "listen": "127.0.0.1:0", "upstream": other.to_string()}),
    )
    .await;
    assert_error(&r, 409, Some("name"));
    let kept = get(agent.admin, "/proxies/dup").await.json();
    assert_eq!(kept["upstream"], upstream.to_string());
    assert_eq!(listen_of(&kept), first);
    assert_echoes(first).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_proxy_with_a_bad_field_is_400_naming_it_and_creates_nothing() {
    let agent = support::agent().await;
    let cases = [
        (json!({"upstream": "127.0.0.1:9"}), "name"),
        (json!({"name": "", "upstream": "127.0.0.1:9"}), "name"),
        (json!({"name": "p"}), "upstream"),
        (
            json!({"name": "p", "upstream": "not an address"}),
            "upstream",
        ),
        (
            json!({"name": "p", "upstream": "127.0.0.1:99999"}),
            "upstream",
        ),
        (
            json!({"name": "p", "upstream": "127.0.0.1:9", "listen": "nonsense"}),
            "listen",
        ),
        (
            json!({"name": "p", "upstream": "127.0.0.1:9", "listen": "127.0.0.1:http"}),
            "listen",
        ),
    ];
    for (body, field) in cases {
        let r = post(agent.admin, "/proxies", body.clone()).await;
        assert_eq!(r.status, 400, "{body}: {}", r.body);
        assert_error(&r, 400, Some(field));
    }
    assert_eq!(get(agent.admin, "/proxies").await.json(), json!({}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_proxy_on_a_taken_port_is_409_naming_listen() {
    let agent = support::agent().await;
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let listen = taken.local_addr().unwrap().to_string();
    let r = post(
        agent.admin,
        "/proxies",
        json!({"name": "p", "listen": listen, "upstream": "127.0.0.1:9"}),
    )
    .await;
    assert_error(&r, 409, Some("listen"));
    assert_error(&get(agent.admin, "/proxies/p").await, 404, None);
}

// === /proxies/{name} ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_proxy_returns_its_json() {
    let agent = support::agent().await;
    let upstream = servers::echo().await;
    let listen = create(agent.admin, "one", upstream).await;
    let r = get(agent.admin, "/proxies/one").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let body = r.json();
    assert_eq!(body["name"], "one");
    assert_eq!(listen_of(&body), listen);
    assert_eq!(body["upstream"], upstream.to_string());
    assert_eq!(body["enabled"], true);
    assert_eq!(body["toxics"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_proxy_is_404_for_get_update_and_delete() {
    let agent = support::agent().await;
    assert_error(&get(agent.admin, "/proxies/ghost").await, 404, None);
    let r = post(agent.admin, "/proxies/ghost", json!({"enabled": false})).await;
    assert_error(&r, 404, None);
    assert_error(&delete(agent.admin, "/proxies/ghost").await, 404, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabled_proxy_refuses_connections_and_enabled_serves_again() {
    let agent = support::agent().await;
    let listen = create_on(agent.admin, "flip", &quiet_addr(), servers::echo().await).await;

    let r = post(agent.admin, "/proxies/flip", json!({"enabled": false})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["enabled"], false);
    assert_eq!(listen_of(&r.json()), listen);
    assert_refused_soon(listen).await;

    let r = post(agent.admin, "/proxies/flip", json!({"enabled": true})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["enabled"], true);
    assert_echoes(listen).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_proxy_is_204_then_gone_and_refuses_connections() {
    let agent = support::agent().await;
    let listen = create_on(agent.admin, "bye", &quiet_addr(), servers::echo().await).await;
    let r = delete(agent.admin, "/proxies/bye").await;
    assert_eq!((r.status, r.body.as_str()), (204, ""));
    assert_refused_soon(listen).await;
    assert_error(&get(agent.admin, "/proxies/bye").await, 404, None);
    assert_eq!(get(agent.admin, "/proxies").await.json(), json!({}));
}

/// Like Toxiproxy, a proxy's listener is closed before a disable or delete is answered, so the
/// next connection is refused and the port is free again (300 rounds, so a race would show).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listener_is_closed_when_disable_and_delete_answer() {
    let agent = support::agent().await;
    let upstream = servers::echo().await;
    let mut failures = Vec::new();
    for i in 0..300 {
        let path = format!("/proxies/p{i}");
        let listen = create_on(agent.admin, &format!("p{i}"), &quiet_addr(), upstream).await;
        assert_echoes(listen).await;
        assert_eq!(
            post(agent.admin, &path, json!({"enabled": false}))
                .await
                .status,
            200
        );
        if let Err(e) = refuses(listen).await {
            failures.push(format!("after disable: {e}"));
        }
        let r = post(agent.admin, &path, json!({"enabled": true})).await;
        if r.status == 200 {
            assert_echoes(listen).await;
        } else {
            failures.push(format!("enable: {} {}", r.status, r.body));
        }
        assert_eq!(delete(agent.admin, &path).await.status, 204);
        if let Err(e) = refuses(listen).await {
            failures.push(format!("after delete: {e}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of 900 steps lost the race, e.g. {:?}",
        failures.len(),
        &failures[..failures.len().min(3)]
    );
}

// === /proxies/{name}/toxics ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_toxic_fills_in_toxiproxy_defaults() {
    let agent = support::agent().await;
    create(agent.admin, "t", servers::echo().await).await;
    let r = post(
        agent.admin,
        "/proxies/t/toxics",
        json!({"type": "latency", "attributes": {"latency": 100}}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let toxic = r.json();
    assert_eq!(toxic["name"], "latency_downstream");
    assert_eq!(toxic["type"], "latency");
    assert_eq!(toxic["stream"], "downstream");
    assert_eq!(toxic["toxicity"].as_f64(), Some(1.0));
    assert_eq!(toxic["attributes"], json!({"latency": 100, "jitter": 0}));

    let r = post(
        agent.admin,
        "/proxies/t/toxics",
        json!({"type": "latency", "stream": "upstream"}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["name"], "latency_upstream");

    let listed = get(agent.admin, "/proxies/t/toxics").await;
    assert_eq!(listed.status, 200);
    let names: Vec<Value> = listed
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].clone())
        .collect();
    assert_eq!(
        names,
        [json!("latency_downstream"), json!("latency_upstream")]
    );
    assert_eq!(listed.json()[0], toxic);
    assert_eq!(
        get(agent.admin, "/proxies/t").await.json()["toxics"],
        listed.json()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_toxic_name_is_409() {
    let agent = support::agent().await;
    create(agent.admin, "t", servers::echo().await).await;
    let body = json!({"name": "slow", "type": "latency", "attributes": {"latency": 10}});
    assert_eq!(
        post(agent.admin, "/proxies/t/toxics", body.clone())
            .await
            .status,
        200
    );
    let r = post(agent.admin, "/proxies/t/toxics", body).await;
    assert_error(&r, 409, Some("name"));
    assert_eq!(
        get(agent.admin, "/proxies/t/toxics")
            .await
            .json()
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn toxics_of_an_unknown_proxy_are_404() {
    let agent = support::agent().await;
    let r = post(
        agent.admin,
        "/proxies/ghost/toxics",
        json!({"type": "latency", "attributes": {"latency": 10}}),
    )
    .await;
    assert_error(&r, 404, None);
    assert_error(&get(agent.admin, "/proxies/ghost/toxics").await, 404, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_toxic_is_400_naming_the_field_and_adds_nothing() {
    let agent = support::agent().await;
    create(agent.admin, "t", servers::echo().await).await;
    let cases = [
        (json!({"type": "lag"}), "type"),
        (
            json!({"type": "latency", "attributes": {"latency": -5}}),
            "attributes.latency",
        ),
        (
            json!({"type": "latency", "attributes": {"latency": "slow"}}),
            "attributes.latency",
        ),
        (json!({"type": "latency", "toxicity": 1.5}), "toxicity"),
        (json!({"type": "latency", "stream": "sideways"}), "stream"),
        (
            json!({"type": "latency", "attributes": {"latancy": 5}}),
            "attributes.latancy",
        ),
    ];
    for (body, field) in cases {
        let r = post(agent.admin, "/proxies/t/toxics", body.clone()).await;
        assert_eq!(r.status, 400, "{body}: {}", r.body);
        assert_error(&r, 400, Some(field));
    }
    let r = get(agent.admin, "/proxies/t/toxics").await;
    assert_eq!((r.status, r.json()), (200, json!([])));
}

// === /proxies/{name}/toxics/{toxic} ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_toxic_returns_its_json() {
    let agent = support::agent().await;
    create(agent.admin, "t", servers::echo().await).await;
    let body = json!({"name": "cut", "type": "limit_data", "stream": "upstream", "toxicity": 0.5,
        "attributes": {"bytes": 1000}});
    let created = post(agent.admin, "/proxies/t/toxics", body).await.json();
    let r = get(agent.admin, "/proxies/t/toxics/cut").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json(), created);
    assert_eq!(created["stream"], "upstream");
    assert_eq!(created["toxicity"].as_f64(), Some(0.5));
    assert_eq!(created["attributes"], json!({"bytes": 1000}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_toxic_is_404_for_get_update_and_delete() {
    let agent = support::agent().await;
    create(agent.admin, "t", servers::echo().await).await;
    assert_error(
        &get(agent.admin, "/proxies/t/toxics/ghost").await,
        404,
        None,
    );
    let r = post(
        agent.admin,
        "/proxies/t/toxics/ghost",
        json!({"attributes": {"latency": 1}}),
    )
    .await;
    assert_error(&r, 404, None);
    assert_error(
        &delete(agent.admin, "/proxies/t/toxics/ghost").await,
        404,
        None,
    );
    assert_error(
        &get(agent.admin, "/proxies/ghost/toxics/ghost").await,
        404,
        None,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_toxic_merges_attributes() {
    let agent = support::agent().await;
    create(agent.admin, "t", servers::echo().await).await;
    let body = json!({"type": "latency", "attributes": {"latency": 100, "jitter": 10}});
    assert_eq!(
        post(agent.admin, "/proxies/t/toxics", body).await.status,
        200
    );
    let r = post(
        agent.admin,
        "/proxies/t/toxics/latency_downstream",
        json!({"attributes": {"latency": 5}, "toxicity": 0.25}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let updated = r.json();
    assert_eq!(updated["attributes"], json!({"latency": 5, "jitter": 10}));
    assert_eq!(updated["toxicity"].as_f64(), Some(0.25));
    assert_eq!(updated["name"], "latency_downstream");
    assert_eq!(updated["stream"], "downstream");
    assert_eq!(
        get(agent.admin, "/proxies/t/toxics/latency_downstream")
            .await
            .json(),
        updated
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_toxic_update_is_400_and_changes_nothing() {
    let agent = support::agent().await;
    create(agent.admin, "t", servers::echo().await).await;
    let body = json!({"type": "latency", "attributes": {"latency": 100}});
    let before = post(agent.admin, "/proxies/t/toxics", body).await.json();
    let r = post(
        agent.admin,
        "/proxies/t/toxics/latency_downstream",
        json!({"attributes": {"latency": -1}}),
    )
    .await;
    assert_error(&r, 400, Some("attributes.latency"));
    let r = post(
        agent.admin,
        "/proxies/t/toxics/latency_downstream",
        json!({"toxicity": 2}),
    )
    .await;
    assert_error(&r, 400, Some("toxicity"));
    assert_eq!(
        get(agent.admin, "/proxies/t/toxics/latency_downstream")
            .await
            .json(),
        before
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_toxic_is_204_and_removes_it() {
    let agent = support::agent().await;
    create(agent.admin, "t", servers::echo().await).await;
    let body = json!({"type": "latency", "attributes": {"latency": 100}});
    assert_eq!(
        post(agent.admin, "/proxies/t/toxics", body).await.status,
        200
    );
    let r = delete(agent.admin, "/proxies/t/toxics/latency_downstream").await;
    assert_eq!((r.status, r.body.as_str()), (204, ""));
    assert_error(
        &get(agent.admin, "/proxies/t/toxics/latency_downstream").await,
        404,
        None,
    );
    assert_eq!(
        get(agent.admin, "/proxies/t/toxics").await.json(),
        json!([])
    );
}

// === /populate, /reset ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn populate_is_201_with_the_created_proxies() {
    let agent = support::agent().await;
    let upstream = servers::echo().await.to_string();
    let r = post(
        agent.admin,
        "/populate",
        json!([
            {"name": "a", "listen": "127.0.0.1:0", "upstream": upstream},
            {"name": "b", "listen": quiet_addr(), "upstream": upstream, "enabled": false},
        ]),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let proxies = r.json()["proxies"].as_array().cloned().unwrap_or_default();
    assert_eq!(proxies.len(), 2, "{}", r.body);
    assert_eq!(
        (&proxies[0]["name"], &proxies[0]["enabled"]),
        (&json!("a"), &json!(true))
    );
    assert_eq!(
        (&proxies[1]["name"], &proxies[1]["enabled"]),
        (&json!("b"), &json!(false))
    );
    assert_echoes(listen_of(&proxies[0])).await;
    assert_refused(listen_of(&proxies[1])).await;
    let all = get(agent.admin, "/proxies").await.json();
    assert_eq!(all.as_object().map(|m| m.len()), Some(2), "{all}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn populate_with_one_bad_entry_changes_nothing() {
    let agent = support::agent().await;
    let upstream = servers::echo().await;
    let kept = create(agent.admin, "keep", upstream).await;
    let before = get(agent.admin, "/proxies").await.json();
    let r = post(
        agent.admin,
        "/populate",
        json!([
            {"name": "new", "listen": "127.0.0.1:0", "upstream": upstream.to_string()},
            {"name": "keep", "listen": "127.0.0.1:0", "upstream": servers::sink().await.to_string()},
            {"name": "broken", "listen": "127.0.0.1:0"},
        ]),
    )
    .await;
    assert_error(&r, 400, Some("[2].upstream"));
    assert_eq!(get(agent.admin, "/proxies").await.json(), before);
    assert_echoes(kept).await;
}

/// Like Toxiproxy, populate replaces a proxy whose upstream changed, on the same listen port.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn populate_replaces_a_proxy_on_the_same_port() {
    let agent = support::agent().await;
    let port = quiet_addr();
    let first = servers::sink().await.to_string();
    let r = post(
        agent.admin,
        "/proxies",
        json!({"name": "db", "listen": port, "upstream": first}),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let upstream = servers::echo().await;
    let r = post(
        agent.admin,
        "/populate",
        json!([{"name": "db", "listen": port, "upstream": upstream.to_string()}]),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let db = get(agent.admin, "/proxies/db").await.json();
    assert_eq!(db["upstream"], upstream.to_string(), "{db}");
    assert_echoes(listen_of(&db)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_is_204_removes_toxics_and_enables_proxies() {
    let agent = support::agent().await;
    let upstream = servers::echo().await;
    create(agent.admin, "toxic", upstream).await;
    let off = create_on(agent.admin, "off", &quiet_addr(), upstream).await;
    let body = json!({"type": "latency", "attributes": {"latency": 100}});
    assert_eq!(
        post(agent.admin, "/proxies/toxic/toxics", body)
            .await
            .status,
        200
    );
    assert_eq!(
        post(agent.admin, "/proxies/off", json!({"enabled": false}))
            .await
            .status,
        200
    );
    assert_refused_soon(off).await;

    let r = http::request(agent.admin, "POST", "/reset", None).await;
    assert_eq!((r.status, r.body.as_str()), (204, ""));
    assert_eq!(
        get(agent.admin, "/proxies/toxic/toxics").await.json(),
        json!([])
    );
    assert_eq!(
        get(agent.admin, "/proxies/off").await.json()["enabled"],
        true
    );
    assert_echoes(off).await;
}

// === requests the API refuses ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_user_agent_is_403() {
    let agent = support::agent().await;
    let ua = [("User-Agent", "Mozilla/5.0 (X11; Linux x86_64)")];
    let r = http::raw(agent.admin, "GET", "/proxies", None, &ua).await;
    assert_error(&r, 403, None);
    let body = r#"{"name": "evil", "upstream": "127.0.0.1:9"}"#;
    let r = http::raw(agent.admin, "POST", "/proxies", Some(body), &ua).await;
    assert_error(&r, 403, None);
    assert_eq!(get(agent.admin, "/proxies").await.json(), json!({}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_json_is_400_and_the_agent_keeps_serving() {
    let agent = support::agent().await;
    let r = http::raw(
        agent.admin,
        "POST",
        "/proxies",
        Some(r#"{"name": "p", "#),
        &[],
    )
    .await;
    assert_error(&r, 400, None);
    let r = http::raw(agent.admin, "POST", "/populate", Some("[{]"), &[]).await;
    assert_error(&r, 400, None);
    assert_eq!(get(agent.admin, "/proxies").await.json(), json!({}));
    let listen = create(agent.admin, "p", servers::echo().await).await;
    let r = http::raw(
        agent.admin,
        "POST",
        "/proxies/p/toxics",
        Some("latency"),
        &[],
    )
    .await;
    assert_error(&r, 400, None);
    assert_eq!(
        get(agent.admin, "/proxies/p/toxics").await.json(),
        json!([])
    );
    assert_echoes(listen).await;
}
