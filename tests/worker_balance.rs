//! Long-lived connections end up spread evenly over the agent's worker threads, whatever the
//! kernel's `SO_REUSEPORT` hash does, and `/metrics` shows the spread.

mod support;

use std::time::Duration;

use support::servers::{self, round_trip};
use tokio::net::TcpStream;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_lived_connections_are_spread_evenly_and_all_served() {
    let agent = support::agent_with_threads(Some(2)).await;
    let listen = agent.route("even", servers::echo().await);
    let loads = || {
        let all = agent.table().worker_loads();
        all.into_iter().find(|(n, _)| n == "even").unwrap().1
    };

    // A health check first: one short-lived connection, closed before the others open. It must
    // not turn balancing off, as a burst of short-lived ones does.
    let mut probe = TcpStream::connect(listen).await.unwrap();
    assert_eq!(round_trip(&mut probe, b"ok?\n").await, b"ok?\n");
    drop(probe);
    support::eventually("probe uncounted", Duration::from_secs(5), || async {
        (loads().open.iter().sum::<usize>() == 0).then_some(())
    })
    .await;

    let mut conns = Vec::new();
    for i in 0..64u32 {
        let mut s = TcpStream::connect(listen).await.unwrap();
        let msg = format!("hello {i}\n");
        assert_eq!(round_trip(&mut s, msg.as_bytes()).await, msg.as_bytes());
        conns.push(s);
    }
    let w = loads();
    assert_eq!(w.open.iter().sum::<usize>(), 64, "{w:?}");
    let (min, max) = (w.open.iter().min().unwrap(), w.open.iter().max().unwrap());
    // Each placement keeps the busiest worker within 1 + least/16 of the least loaded one.
    assert!(max - min <= 2 + min / 16, "{w:?}");

    let r = support::http::request(agent.admin, "GET", "/metrics", None).await;
    assert_eq!(r.status, 200);
    let text = r.body;
    for (i, n) in w.open.iter().enumerate() {
        let series =
            format!("faultline_route_worker_connections{{route=\"even\",worker=\"{i}\"}} {n}\n");
        assert!(text.contains(&series), "{series} missing from:\n{text}");
    }
    let handed = format!(
        "faultline_route_connections_handed_over_total{{route=\"even\"}} {}\n",
        w.handed_over
    );
    assert!(text.contains(&handed), "{handed}");

    // Every connection, handed over or not, still works; closing them uncounts them.
    for (i, s) in conns.iter_mut().enumerate() {
        assert_eq!(round_trip(s, b"again").await, b"again", "connection {i}");
    }
    drop(conns);
    support::eventually("connections uncounted", Duration::from_secs(5), || async {
        (loads().open.iter().sum::<usize>() == 0).then_some(())
    })
    .await;
}
