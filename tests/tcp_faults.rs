//! End to end through real sockets: each TCP fault, measured from a client's point of view.

mod support;

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::json;
use support::servers::{self, pattern, round_trip};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

async fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr)
        .await
        .expect("connect through the agent");
    s.set_nodelay(true).unwrap();
    s
}

/// Connects from a chosen loopback source address (127.0.0.2 plays a second host).
async fn connect_from(src: &str, addr: SocketAddr) -> std::io::Result<TcpStream> {
    let sock = TcpSocket::new_v4()?;
    sock.bind(format!("{src}:0").parse().unwrap())?;
    sock.connect(addr).await
}

async fn rtt(s: &mut TcpStream) -> Duration {
    let t = Instant::now();
    assert_eq!(round_trip(s, b"ping").await, b"ping");
    t.elapsed()
}

/// Reads until EOF or error; returns the bytes and how the stream ended.
async fn read_all(s: &mut TcpStream) -> (Vec<u8>, std::io::Result<()>) {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match s.read(&mut buf).await {
            Ok(0) => return (out, Ok(())),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) => return (out, Err(e)),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_100ms_adds_100_to_130ms_to_a_round_trip() {
    let agent = support::agent().await;
    let addr = agent.route("echo", servers::echo().await);
    let mut s = connect(addr).await;
    // The first round trip also waits for the agent's upstream connect: take the best of a few.
    let mut base = Duration::MAX;
    for _ in 0..5 {
        base = base.min(rtt(&mut s).await);
    }
    agent
        .toxic(
            "echo",
            json!({"type": "latency", "attributes": {"latency": 100}}),
        )
        .await;
    let with = rtt(&mut s).await;
    let added = with.saturating_sub(base);
    assert!(added >= Duration::from_millis(100), "added {added:?}");
    assert!(added < Duration::from_millis(130), "added {added:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_delays_a_bulk_stream_without_dividing_its_throughput() {
    let agent = support::agent().await;
    let len = 8 * 1024 * 1024;
    let addr = agent.route("bulk", servers::source(len).await);
    agent
        .toxic(
            "bulk",
            json!({"type": "latency", "attributes": {"latency": 100}}),
        )
        .await;
    let t = Instant::now();
    let mut s = connect(addr).await;
    let (data, end) = read_all(&mut s).await;
    let took = t.elapsed();
    end.unwrap();
    assert_eq!(data, pattern(len));
    // 8 MiB arrives in hundreds of chunks; if each waited its 100 ms in turn this would take
    // tens of seconds. Delivered 100 ms late at full speed, it takes a little over 100 ms.
    assert!(took >= Duration::from_millis(100), "{took:?}");
    assert!(took < Duration::from_millis(1500), "{took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bandwidth_100_kb_per_s_moves_500_kb_in_5s() {
    let agent = support::agent().await;
    let len = 500_000;
    let addr = agent.route("slow", servers::source(len).await);
    agent
        .toxic(
            "slow",
            json!({"type": "bandwidth", "attributes": {"rate": 100}}),
        )
        .await;
    let t = Instant::now();
    let mut s = connect(addr).await;
    let (data, end) = read_all(&mut s).await;
    let took = t.elapsed();
    end.unwrap();
    assert_eq!(data.len(), len);
    assert!(
        took >= Duration::from_millis(4500) && took <= Duration::from_millis(5500),
        "{took:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slicer_delivers_small_delayed_slices_in_order() {
    let agent = support::agent().await;
    let len = 10_000;
    let addr = agent.route("sliced", servers::source(len).await);
    agent
        .toxic(
            "sliced",
            json!({"type": "slicer", "attributes": {"average_size": 100, "size_variation": 50, "delay": 1000}}),
        )
        .await;
    let t = Instant::now();
    let mut s = connect(addr).await;
    let mut reads = 0;
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = s.read(&mut buf).await.unwrap();
        if n == 0 {
            break;
        }
        reads += 1;
        data.extend_from_slice(&buf[..n]);
    }
    assert_eq!(data, pattern(len));
    // ~100 slices, each after a 1 ms pause: the client sees many small reads over >= ~100 ms.
    assert!(reads >= 30, "{reads} reads");
    assert!(
        t.elapsed() >= Duration::from_millis(60),
        "{:?}",
        t.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_close_holds_the_close_back() {
    let agent = support::agent().await;
    let addr = agent.route("closing", servers::source(10).await);
    agent
        .toxic(
            "closing",
            json!({"type": "slow_close", "attributes": {"delay": 300}}),
        )
        .await;
    let mut s = connect(addr).await;
    let mut first = [0u8; 10];
    s.read_exact(&mut first).await.unwrap();
    let t = Instant::now();
    let (rest, end) = read_all(&mut s).await;
    end.unwrap();
    assert!(rest.is_empty());
    let held = t.elapsed();
    assert!(
        held >= Duration::from_millis(280),
        "close came after {held:?}"
    );
    assert!(
        held < Duration::from_millis(1000),
        "close came after {held:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_drops_data_then_closes() {
    let agent = support::agent().await;
    let addr = agent.route("stall", servers::echo().await);
    agent
        .toxic(
            "stall",
            json!({"type": "timeout", "stream": "upstream", "attributes": {"timeout": 200}}),
        )
        .await;
    let mut s = connect(addr).await;
    let t = Instant::now();
    s.write_all(b"hello").await.unwrap();
    let (data, _) = read_all(&mut s).await;
    let took = t.elapsed();
    assert!(data.is_empty(), "nothing may pass a timeout fault");
    assert!(
        took >= Duration::from_millis(190) && took < Duration::from_millis(600),
        "{took:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_zero_is_a_blackhole_until_removed() {
    let agent = support::agent().await;
    let addr = agent.route("hole", servers::echo().await);
    let mut s = connect(addr).await;
    agent
        .toxic(
            "hole",
            json!({"type": "timeout", "stream": "upstream", "attributes": {"timeout": 0}}),
        )
        .await;
    s.write_all(b"lost").await.unwrap();
    let mut buf = [0u8; 4];
    let r = tokio::time::timeout(Duration::from_millis(300), s.read(&mut buf)).await;
    assert!(
        r.is_err(),
        "the connection must stay open and silent, got {r:?}"
    );
    agent.remove_toxic("hole", "timeout_upstream").await;
    assert_eq!(round_trip(&mut s, b"back").await, b"back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_peer_gives_the_client_econnreset() {
    let agent = support::agent().await;
    let addr = agent.route("rst", servers::echo().await);
    let mut s = connect(addr).await;
    assert_eq!(round_trip(&mut s, b"ok").await, b"ok");
    let t = Instant::now();
    agent
        .toxic(
            "rst",
            json!({"type": "reset_peer", "attributes": {"timeout": 100}}),
        )
        .await;
    let (_, end) = read_all(&mut s).await;
    let err = end.expect_err("a reset, not a clean close");
    assert_eq!(err.kind(), ErrorKind::ConnectionReset);
    assert!(
        t.elapsed() >= Duration::from_millis(95),
        "{:?}",
        t.elapsed()
    );

    // A new connection under reset_peer 0 is reset at once.
    agent.remove_toxic("rst", "reset_peer_downstream").await;
    agent
        .toxic(
            "rst",
            json!({"type": "reset_peer", "attributes": {"timeout": 0}}),
        )
        .await;
    // The reset can arrive before the client's connect() has even returned.
    let err = match TcpStream::connect(addr).await {
        Ok(mut s) => read_all(&mut s).await.1.unwrap_err(),
        Err(e) => e,
    };
    assert_eq!(err.kind(), ErrorKind::ConnectionReset);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limit_data_closes_after_exactly_n_bytes() {
    let agent = support::agent().await;
    let addr = agent.route("limited", servers::source(100_000).await);
    agent
        .toxic(
            "limited",
            json!({"type": "limit_data", "attributes": {"bytes": 12_345}}),
        )
        .await;
    let mut s = connect(addr).await;
    let (data, end) = read_all(&mut s).await;
    end.unwrap();
    assert_eq!(data.len(), 12_345);
    assert_eq!(data, pattern(100_000)[..12_345]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn down_refuses_new_connections_and_cuts_open_ones() {
    let agent = support::agent().await;
    let addr = agent.route("svc", servers::echo().await);
    let mut open = connect(addr).await;
    assert_eq!(round_trip(&mut open, b"up").await, b"up");
    agent.toxic("svc", json!({"type": "down"})).await;
    let (_, _) = read_all(&mut open).await; // cut: EOF or reset, but it ends
    support::eventually("connections refused", Duration::from_secs(2), || async {
        match TcpStream::connect(addr).await {
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => Some(()),
            _ => None,
        }
    })
    .await;
    agent.remove_toxic("svc", "down_downstream").await;
    let mut s = connect(addr).await;
    assert_eq!(round_trip(&mut s, b"again").await, b"again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partition_refuses_one_peer_and_serves_the_other() {
    let agent = support::agent().await;
    let addr = agent.route("split", servers::echo().await);
    agent
        .toxic("split", json!({"type": "partition", "attributes": {"cidrs": ["127.0.0.2/32"], "action": "refuse"}}))
        .await;
    let mut inside = connect_from("127.0.0.1", addr).await.unwrap();
    assert_eq!(round_trip(&mut inside, b"served").await, b"served");
    // The reset can arrive before the client's connect() has even returned.
    let err = match connect_from("127.0.0.2", addr).await {
        Ok(mut outside) => {
            let (data, end) = read_all(&mut outside).await;
            assert!(data.is_empty());
            end.unwrap_err()
        }
        Err(e) => e,
    };
    assert_eq!(err.kind(), ErrorKind::ConnectionReset);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partition_blackhole_holds_a_peer_until_it_heals() {
    let agent = support::agent().await;
    let addr = agent.route("island", servers::echo().await);
    agent
        .toxic("island", json!({"name": "cut", "type": "partition", "attributes": {"cidrs": ["127.0.0.2"], "action": "blackhole"}}))
        .await;
    let mut outside = connect_from("127.0.0.2", addr).await.unwrap();
    outside.write_all(b"held").await.unwrap();
    let mut buf = [0u8; 4];
    assert!(
        tokio::time::timeout(Duration::from_millis(300), outside.read(&mut buf))
            .await
            .is_err()
    );
    let mut inside = connect_from("127.0.0.1", addr).await.unwrap();
    assert_eq!(round_trip(&mut inside, b"fine").await, b"fine");
    agent.remove_toxic("island", "cut").await;
    // Held, not dropped: once the partition heals the bytes arrive, as TCP would retransmit them.
    outside.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"held");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fault_changes_an_open_connection_and_its_removal_restores_it() {
    let agent = support::agent().await;
    let addr = agent.route("live", servers::echo().await);
    let mut s = connect(addr).await;
    let before = rtt(&mut s).await;
    assert!(before < Duration::from_millis(50), "{before:?}");
    agent.toxic("live", json!({"name": "slow", "type": "latency", "stream": "upstream", "attributes": {"latency": 150}})).await;
    let during = rtt(&mut s).await;
    assert!(during >= Duration::from_millis(150), "{during:?}");
    agent.remove_toxic("live", "slow").await;
    let after = rtt(&mut s).await;
    assert!(after < Duration::from_millis(50), "{after:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fault_with_an_expiry_removes_itself() {
    let agent = support::agent().await;
    let addr = agent.route("brief", servers::echo().await);
    agent
        .toxic("brief", json!({"name": "blip", "type": "latency", "expires_in": 200, "attributes": {"latency": 100}}))
        .await;
    let mut s = connect(addr).await;
    assert!(rtt(&mut s).await >= Duration::from_millis(100));
    support::eventually("the fault to expire", Duration::from_secs(2), || async {
        agent
            .table()
            .get("brief")
            .unwrap()
            .faults
            .is_empty()
            .then_some(())
    })
    .await;
    assert!(rtt(&mut s).await < Duration::from_millis(50));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn toxicity_applies_a_fault_to_that_share_of_connections() {
    let agent = support::agent().await;
    let addr = agent.route("some", servers::echo().await);
    agent
        .toxic(
            "some",
            json!({"type": "reset_peer", "toxicity": 0.5, "attributes": {"timeout": 0}}),
        )
        .await;
    let mut reset = 0;
    for _ in 0..200 {
        // A reset can arrive before the client's connect() has even returned.
        let Ok(mut s) = TcpStream::connect(addr).await else {
            reset += 1;
            continue;
        };
        let _ = s.write_all(b"x").await;
        let mut b = [0u8; 1];
        if s.read_exact(&mut b).await.is_err() {
            reset += 1;
        }
    }
    assert!(
        (70..=130).contains(&reset),
        "{reset} of 200 reset at toxicity 0.5"
    );
    // The fault's own counters agree with what the clients saw.
    let rules =
        support::http::request(agent.admin, "GET", "/faultline/v1/routes/some/rules", None).await;
    let stats = &rules.json()[0]["stats"];
    assert_eq!(stats["matched"], 200, "{}", rules.body);
    assert_eq!(stats["injected"], reset, "{}", rules.body);
    assert_eq!(stats["passed"], 200 - reset, "{}", rules.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_the_server_closes_behind_arrives_whole_and_at_once() {
    // The agent sends bytes with the server's FIN behind them with MSG_MORE, for the FIN to
    // carry (tcp/fast.rs). Were nothing to push them, the kernel would hold them 200 ms.
    let agent = support::agent().await;
    let addr = agent.route("answer", servers::source(1000).await);
    for client_done_first in [false, true] {
        let mut took = Vec::new();
        for _ in 0..20 {
            let mut s = connect(addr).await;
            let t = Instant::now();
            if client_done_first {
                s.shutdown().await.unwrap();
            }
            let (data, end) = read_all(&mut s).await;
            took.push(t.elapsed());
            end.expect("a clean end of stream");
            assert_eq!(data, pattern(1000));
        }
        took.sort();
        assert!(
            took[took.len() / 2] < Duration::from_millis(100),
            "client_done_first={client_done_first}: {took:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_upstream_closes_the_client_cleanly_and_is_counted() {
    let agent = support::agent().await;
    let addr = agent.route("nowhere", servers::closed_port().await);
    let good = agent.route("good", servers::echo().await);
    for _ in 0..50 {
        let mut s = connect(addr).await;
        let (data, end) = read_all(&mut s).await;
        assert!(data.is_empty());
        end.unwrap();
    }
    let mut s = connect(good).await;
    assert_eq!(round_trip(&mut s, b"still here").await, b"still here");
    let metrics = support::http::request(agent.admin, "GET", "/metrics", None)
        .await
        .body;
    assert!(
        metrics.contains("faultline_route_upstream_connect_errors_total{route=\"nowhere\"} 50"),
        "{metrics}"
    );
}

/// No fault: small chunks pass through the worker's scratch buffer, and whatever a stalled
/// reader does not take at once waits in the flow's own buffer; 8 MiB arrive intact and in
/// order, the reader starting only once 1 MiB is on its way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_chunks_to_a_stalled_reader_pass_the_fast_path_byte_identical() {
    let agent = support::agent().await;
    let addr = agent.route("plain", servers::echo().await);
    let len = 8 * 1024 * 1024;
    let data = pattern(len);
    let s = connect(addr).await;
    let (mut r, mut w) = s.into_split();
    let sent = data.clone();
    let (started, go) = tokio::sync::oneshot::channel();
    let writer = tokio::spawn(async move {
        let mut started = Some(started);
        for (i, chunk) in sent.chunks(1000).enumerate() {
            w.write_all(chunk).await.unwrap();
            if i == 1024
                && let Some(tx) = started.take()
            {
                let _ = tx.send(());
            }
            if i % 8 == 0 {
                tokio::task::yield_now().await;
            }
        }
        w.shutdown().await.unwrap();
    });
    go.await.unwrap();
    let mut got = Vec::with_capacity(len);
    r.read_to_end(&mut got).await.unwrap();
    writer.await.unwrap();
    assert_eq!(got.len(), len);
    assert!(got == data, "bytes differ");
}

/// 64 MiB through latency, a high bandwidth limit and a slicer, both ways, arrives intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_mib_pass_byte_identical_through_stacked_faults() {
    let agent = support::agent().await;
    let addr = agent.route("stack", servers::echo().await);
    for (name, body) in [
        (
            "lat",
            json!({"type": "latency", "stream": "both", "attributes": {"latency": 5, "jitter": 5}}),
        ),
        (
            "bw",
            json!({"type": "bandwidth", "stream": "both", "attributes": {"rate": 400_000}}),
        ),
        (
            "slices",
            json!({"type": "slicer", "stream": "both", "attributes": {"average_size": 8192, "size_variation": 4000, "delay": 10}}),
        ),
    ] {
        let mut b = body;
        b["name"] = json!(name);
        agent.toxic("stack", b).await;
    }
    let len = 64 * 1024 * 1024;
    let data = pattern(len);
    let s = connect(addr).await;
    let (mut r, mut w) = s.into_split();
    let sent = data.clone();
    let writer = tokio::spawn(async move {
        for chunk in sent.chunks(256 * 1024) {
            w.write_all(chunk).await.unwrap();
        }
        w.shutdown().await.unwrap();
    });
    let mut got = Vec::with_capacity(len);
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = r.read(&mut buf).await.unwrap();
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    writer.await.unwrap();
    assert_eq!(got.len(), len);
    assert!(got == data, "bytes differ");
}
