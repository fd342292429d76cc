//! The agent's controller connection, against the test controller in `support`: a tonic
//! `AgentService` on 127.0.0.1:0 that hands each `Connect` stream to the test, which plays the
//! controller's side message by message. The agent is started in-process with `--controller`
//! pointing at it; traffic goes through its route to an echo server over real sockets.

mod support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use faultline_agent::app::Agent;
use faultline_agent::config::{AgentConfig, ControllerConfig};
use faultline_agent::route::capture::{CaptureDirection, CaptureMatch};
use faultline_agent::route::{Protocol, RouteSnapshot, RouteSpec, Upstream};
use faultline_proto::v1;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::{Instant, timeout};

use support::{
    PATIENCE, controller, controller_heartbeat, duration, http_status_line, http_upstream,
    next_peer, next_peer_within,
};

const LATENCY: Duration = Duration::from_millis(200);

// === messages ===

fn desired(generation: u64, faults: Vec<v1::FaultSpec>) -> v1::controller_message::Body {
    v1::controller_message::Body::DesiredState(v1::DesiredState {
        generation,
        lease: Some(duration(Duration::from_secs(1))),
        faults,
        heartbeat_interval: Some(duration(Duration::from_millis(100))),
        local_guards: Vec::new(),
    })
}

fn latency_fault(route: &str, name: &str) -> v1::FaultSpec {
    v1::FaultSpec {
        name: name.into(),
        route: route.into(),
        experiment: "exp-1".into(),
        direction: v1::Direction::Downstream as i32,
        probability: None,
        r#match: None,
        cohort: None,
        kind: Some(v1::fault_spec::Kind::Latency(v1::Latency {
            latency_ms: LATENCY.as_millis() as u64,
            jitter_ms: 0,
        })),
    }
}

// === the agent and traffic ===

/// Echoes every byte back on each connection.
async fn echo() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let _ = s.set_nodelay(true);
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    addr
}

/// The time for one 5-byte message to go through the route to the echo server and back, on a
/// fresh connection (timed from the first write).
async fn round_trip(addr: SocketAddr) -> Duration {
    let mut s = TcpStream::connect(addr)
        .await
        .expect("connect to the route");
    s.set_nodelay(true).unwrap();
    let start = Instant::now();
    s.write_all(b"hello").await.unwrap();
    let mut buf = [0u8; 5];
    s.read_exact(&mut buf).await.expect("echo comes back");
    assert_eq!(&buf, b"hello");
    start.elapsed()
}

fn labels() -> BTreeMap<String, String> {
    [("app", "checkout"), ("zone", "eu-1")]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// An agent with a `tcp` route `web` to `echo` and an `http` route `api` to `http`, connected
/// to the controller at `controller`.
async fn agent(controller: SocketAddr, echo: SocketAddr, http: SocketAddr) -> Agent {
    let mut api = RouteSpec::tcp("api", "127.0.0.1:0", Upstream::Addr(http));
    api.protocol = Protocol::Http;
    // A captured route that detects the protocol per connection: announced as `auto`.
    let mut outbound = RouteSpec::tcp("outbound", "", Upstream::Original);
    outbound.protocol = Protocol::Auto;
    outbound.capture = Some(CaptureMatch::any(CaptureDirection::Outbound));
    let config = AgentConfig {
        routes: vec![
            RouteSpec::tcp("web", "127.0.0.1:0", Upstream::Addr(echo)),
            api,
            outbound,
        ],
        controller: Some(
            ControllerConfig::new(&format!("http://{controller}"), "agent-1", labels())
                .expect("valid controller settings"),
        ),
        ..AgentConfig::embedded()
    };
    Agent::start(&config).await.expect("agent starts")
}

fn fault_names(rx: &watch::Receiver<Arc<RouteSnapshot>>) -> Vec<String> {
    rx.borrow()
        .faults
        .iter()
        .map(|f| f.fault.name.clone())
        .collect()
}

fn assert_hello(hello: &v1::Hello, agent: &Agent, echo: SocketAddr, http: SocketAddr) {
    assert_eq!(hello.agent_id, "agent-1");
    assert_eq!(hello.version, env!("CARGO_PKG_VERSION"));
    let labels: BTreeMap<String, String> = hello.labels.clone().into_iter().collect();
    assert_eq!(labels, self::labels());
    let mut routes: Vec<(String, String, String, i32)> = hello
        .routes
        .iter()
        .map(|r| {
            (
                r.name.clone(),
                r.listen.clone(),
                r.upstream.clone(),
                r.protocol,
            )
        })
        .collect();
    routes.sort();
    let listen = |name: &str| agent.table.get(name).unwrap().listen.to_string();
    assert_eq!(
        routes,
        vec![
            (
                "api".into(),
                listen("api"),
                http.to_string(),
                v1::Protocol::Http as i32
            ),
            (
                "outbound".into(),
                listen("outbound"),
                "original".into(),
                v1::Protocol::Auto as i32
            ),
            (
                "web".into(),
                listen("web"),
                echo.to_string(),
                v1::Protocol::Tcp as i32
            ),
        ]
    );
}

// === tests ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_applies_acknowledges_reports_and_clears_when_the_stream_ends() {
    let (addr, mut peers) = controller().await;
    let echo = echo().await;
    let http = http_upstream().await;
    let agent = agent(addr, echo, http).await;
    let web = agent.table.get("web").unwrap().listen;
    let mut snapshots = agent.table.subscribe("web").unwrap();

    // Hello: who the agent is and what it proxies.
    let mut peer = next_peer(&mut peers).await;
    let hello = peer.hello().await;
    assert_hello(&hello, &agent, echo, http);
    let clean = round_trip(web).await;
    assert!(clean < LATENCY / 2, "no fault yet, round trip {clean:?}");

    // A desired state with a latency fault: applied and acknowledged.
    peer.send(desired(1, vec![latency_fault("web", "slow")]))
        .await;
    let ack = peer.ack_answering_heartbeats().await;
    assert_eq!(
        (ack.generation, ack.applied_faults, ack.error.as_deref()),
        (1, 1, None)
    );
    assert_eq!(fault_names(&snapshots), ["slow"]);
    let slowed = round_trip(web).await;
    assert!(slowed >= LATENCY, "with the fault, round trip {slowed:?}");

    // Heartbeats every 100 ms, carrying the generation, the fault's counters and each route's
    // SLI changes since the previous beat; answering them renews the 1 s lease, so the fault
    // outlives it. Two requests through `api` are reported once, in whichever beat followed.
    let api = agent.table.get("api").unwrap().listen;
    assert_eq!(http_status_line(api).await, "HTTP/1.1 200 OK");
    assert_eq!(http_status_line(api).await, "HTTP/1.1 200 OK");
    let started = Instant::now();
    let mut beats = 0;
    let mut api_2xx = 0;
    let mut latencies = 0;
    while started.elapsed() < Duration::from_millis(1500) {
        let beat = peer.heartbeat().await;
        beats += 1;
        assert_eq!(beat.generation, 1);
        assert!(beat.sent_at.is_some());
        // (TCP kinds do not count matches yet; the entry is what this proves.)
        let counts: Vec<(String, String)> = beat
            .rule_counts
            .iter()
            .map(|c| (c.route.clone(), c.fault.clone()))
            .collect();
        assert_eq!(counts, [("web".to_owned(), "slow".to_owned())]);
        for route in &beat.route_slis {
            assert_eq!(route.route, "api", "only api saw HTTP traffic");
            let window = Duration::try_from(route.window.expect("a window")).unwrap();
            assert!(window > Duration::ZERO && window < PATIENCE, "{window:?}");
            let sli = route.sli.as_ref().expect("the SLIs");
            api_2xx += sli.requests.as_ref().map_or(0, |r| r.real[1]);
            latencies += sli.latency.as_ref().map_or(0, |l| l.count);
        }
        peer.send(controller_heartbeat()).await;
    }
    assert!(
        (8..=20).contains(&beats),
        "{beats} heartbeats in 1.5 s at 100 ms"
    );
    assert_eq!(fault_names(&snapshots), ["slow"], "the renewed lease holds");
    assert_eq!((api_2xx, latencies), (2, 2), "each request reported once");

    // An invalid desired state: refused with the field named, nothing changed.
    let mut bad = latency_fault("web", "broken");
    bad.kind = None;
    peer.send(desired(2, vec![latency_fault("web", "slow"), bad]))
        .await;
    let ack = peer.ack_answering_heartbeats().await;
    assert_eq!((ack.generation, ack.applied_faults), (2, 1));
    let error = ack.error.expect("the ack carries the error");
    assert!(error.starts_with("faults[1].kind"), "{error}");
    assert_eq!(fault_names(&snapshots), ["slow"]);
    assert_eq!(agent.table.controller_generation(), Some(1));

    // The controller drops the stream: the fault is gone within 1 s, and the agent comes back
    // with a fresh Hello.
    drop(peer);
    let dropped = Instant::now();
    timeout(
        Duration::from_secs(1),
        snapshots.wait_for(|s| s.faults.is_empty()),
    )
    .await
    .expect("the fault is cleared within 1 s of the stream's end")
    .unwrap();
    let cleared_in = dropped.elapsed();
    assert!(cleared_in < Duration::from_secs(1), "{cleared_in:?}");
    let after = round_trip(web).await;
    assert!(after < LATENCY / 2, "fault cleared, round trip {after:?}");
    assert_eq!(agent.table.lease(), None);

    let mut peer = next_peer_within(&mut peers, Duration::from_secs(2)).await;
    let hello = peer.hello().await;
    assert_hello(&hello, &agent, echo, http);
    // The re-sent desired state applies again on the new stream.
    peer.send(desired(1, vec![latency_fault("web", "slow")]))
        .await;
    let ack = peer.ack_answering_heartbeats().await;
    assert_eq!(
        (ack.generation, ack.applied_faults, ack.error),
        (1, 1, None)
    );
    assert_eq!(fault_names(&snapshots), ["slow"]);

    // Shutdown ends the stream from the agent's side.
    agent.shutdown(Duration::ZERO).await;
    let end = timeout(Duration::from_secs(1), async {
        loop {
            match peer.inbound.message().await {
                Ok(Some(_)) => continue,
                other => return other.map(|_| ()),
            }
        }
    })
    .await;
    assert!(end.is_ok(), "the agent's stream ends on shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn goodbye_clears_the_faults_and_the_agent_redials() {
    let (addr, mut peers) = controller().await;
    let echo = echo().await;
    let http = http_upstream().await;
    let agent = agent(addr, echo, http).await;
    let mut snapshots = agent.table.subscribe("web").unwrap();

    let mut peer = next_peer(&mut peers).await;
    peer.hello().await;
    peer.send(desired(5, vec![latency_fault("web", "slow")]))
        .await;
    assert_eq!(peer.ack_answering_heartbeats().await.applied_faults, 1);
    peer.send(v1::controller_message::Body::Goodbye(v1::Goodbye {
        reason: "controller shutting down".into(),
    }))
    .await;
    timeout(
        Duration::from_secs(1),
        snapshots.wait_for(|s| s.faults.is_empty()),
    )
    .await
    .expect("cleared within 1 s of the goodbye")
    .unwrap();
    let mut again = next_peer_within(&mut peers, Duration::from_secs(2)).await;
    assert_eq!(again.hello().await.agent_id, "agent-1");
    drop(peer);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_controller_loses_its_faults_at_the_lease_and_the_agent_redials() {
    let (addr, mut peers) = controller().await;
    let echo = echo().await;
    let http = http_upstream().await;
    let agent = agent(addr, echo, http).await;
    let mut snapshots = agent.table.subscribe("web").unwrap();

    let mut peer = next_peer(&mut peers).await;
    peer.hello().await;
    peer.send(desired(3, vec![latency_fault("web", "slow")]))
        .await;
    assert_eq!(peer.ack_answering_heartbeats().await.applied_faults, 1);
    let applied = Instant::now();
    // The stream stays open, but the controller says nothing more: the 1 s lease runs out.
    timeout(
        Duration::from_secs(2),
        snapshots.wait_for(|s| s.faults.is_empty()),
    )
    .await
    .expect("cleared at the lease")
    .unwrap();
    let cleared = applied.elapsed();
    assert!(
        cleared >= Duration::from_millis(900) && cleared < Duration::from_millis(1500),
        "cleared after {cleared:?} with a 1 s lease"
    );
    // The agent gives up on the silent stream and dials again.
    let mut again = next_peer_within(&mut peers, Duration::from_secs(2)).await;
    assert_eq!(again.hello().await.agent_id, "agent-1");
    drop(peer);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_controller_leaves_the_agent_serving() {
    // A port nothing listens on.
    let addr = {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap()
    };
    let echo = echo().await;
    let http = http_upstream().await;
    let agent = agent(addr, echo, http).await;
    let web = agent.table.get("web").unwrap().listen;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rtt = round_trip(web).await;
    assert!(rtt < LATENCY / 2, "{rtt:?}");
    assert_eq!(agent.table.lease(), None);
    agent.shutdown(Duration::ZERO).await;
}
