//! The controller's desired state and lease, through the route table's public API, with an agent
//! started in-process and real sockets where traffic tells the story.

#[path = "../../tests/support/http.rs"]
#[allow(dead_code)]
mod http;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use faultline_agent::app::Agent;
use faultline_agent::config::AgentConfig;
use faultline_agent::fault::{Direction, Down, Fault, FaultKind, Latency, Origin, Probability};
use faultline_agent::route::{
    DesiredError, DesiredState, Protocol, RouteError, RouteSnapshot, RouteSpec, RouteTable,
    Upstream,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::Instant;

const LONG_LEASE: Duration = Duration::from_secs(30);
const SHORT_LEASE: Duration = Duration::from_millis(300);
/// How long after its deadline a lease's faults may still be seen.
const CLEAR_SLACK: Duration = Duration::from_millis(200);

// === support ===

struct TestAgent {
    agent: Agent,
    echo: SocketAddr,
}

impl TestAgent {
    async fn start() -> TestAgent {
        let config = AgentConfig {
            ..AgentConfig::embedded()
        };
        let agent = Agent::start(&config).await.expect("agent starts");
        TestAgent {
            agent,
            echo: echo().await,
        }
    }

    fn table(&self) -> &Arc<RouteTable> {
        &self.agent.table
    }

    /// A TCP route to the echo server; returns its listen address.
    fn route(&self, name: &str) -> SocketAddr {
        self.route_with(name, Protocol::Tcp)
    }

    fn route_with(&self, name: &str, protocol: Protocol) -> SocketAddr {
        let mut spec = RouteSpec::tcp(name, "127.0.0.1:0", Upstream::Addr(self.echo));
        spec.protocol = protocol;
        self.table().create(spec).expect("create route").listen
    }

    fn snapshot(&self, route: &str) -> Arc<RouteSnapshot> {
        self.table().subscribe(route).unwrap().borrow().clone()
    }

    /// `(key, name)` of every fault on the route, in snapshot order.
    fn keys(&self, route: &str) -> Vec<(u64, String)> {
        self.snapshot(route)
            .faults
            .iter()
            .map(|f| (f.key, f.fault.name.clone()))
            .collect()
    }

    fn names(&self, route: &str) -> Vec<String> {
        self.keys(route).into_iter().map(|(_, n)| n).collect()
    }

    async fn stop(self) {
        self.agent.shutdown(Duration::ZERO).await;
    }
}

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
/// fresh connection (timed from the first write, so the connect is not counted).
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

/// Retries `check` every 10 ms until it returns `Some`, or panics after `timeout` naming `what`.
async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits (bounded) for the route's snapshot to hold no controller-issued fault; returns when
/// that snapshot was seen.
async fn controller_faults_gone(
    rx: &mut watch::Receiver<Arc<RouteSnapshot>>,
    within: Duration,
) -> Instant {
    tokio::time::timeout(
        within,
        rx.wait_for(|s| s.faults.iter().all(|f| f.fault.origin == Origin::Admin)),
    )
    .await
    .unwrap_or_else(|_| panic!("controller faults still there after {within:?}"))
    .expect("route still exists");
    Instant::now()
}

fn latency(name: &str, ms: u64, origin: Origin) -> Fault {
    fault(
        name,
        FaultKind::Latency(Latency {
            latency: Duration::from_millis(ms),
            jitter: Duration::ZERO,
        }),
        origin,
    )
}

fn fault(name: &str, kind: FaultKind, origin: Origin) -> Fault {
    Fault {
        name: name.into(),
        kind,
        direction: Direction::Downstream,
        toxicity: Probability::ALWAYS,
        matcher: None,
        cohort: None,
        expires_at: None,
        origin,
    }
}

fn controller() -> Origin {
    Origin::Controller {
        experiment: "exp-1".into(),
    }
}

/// A controller latency fault of `ms` on `route`.
fn ctl(route: &str, name: &str, ms: u64) -> (String, Fault) {
    (route.into(), latency(name, ms, controller()))
}

fn desired(generation: u64, lease: Duration, faults: Vec<(String, Fault)>) -> DesiredState {
    DesiredState {
        generation,
        lease,
        faults,
        guards: Vec::new(),
    }
}

// === applying a desired state ===

#[tokio::test]
async fn an_applied_desired_state_acts_on_traffic_and_is_tagged_controller_issued() {
    let a = TestAgent::start().await;
    let listen = a.route("db");
    let before = round_trip(listen).await;
    assert!(before < Duration::from_millis(150), "baseline {before:?}");

    let applied = a
        .table()
        .apply_desired(desired(1, LONG_LEASE, vec![ctl("db", "slow", 300)]))
        .await
        .expect("applied");
    assert_eq!((applied.generation, applied.faults), (1, 1));
    assert_eq!(a.table().controller_generation(), Some(1));
    let lease = a.table().lease().expect("a lease is held");
    assert_eq!((lease.generation, lease.term), (1, LONG_LEASE));

    let rtt = round_trip(listen).await;
    assert!(
        rtt >= Duration::from_millis(300),
        "with 300 ms latency: {rtt:?}"
    );
    assert!(
        rtt < Duration::from_millis(1300),
        "with 300 ms latency: {rtt:?}"
    );

    let view = a.table().get_fault("db", "slow").unwrap();
    assert_eq!(view.fault.origin, controller());
    // Told apart on the admin API too.
    let r = http::request(a.agent.admin_addr, "GET", "/proxies/db/toxics", None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()[0]["name"], "slow");
    assert_eq!(r.json()[0]["origin"], "controller");
    a.stop().await;
}

#[tokio::test]
async fn a_re_sent_desired_state_keeps_every_faults_identity() {
    let a = TestAgent::start().await;
    a.route("db");
    a.route("cache");
    let set = || {
        vec![
            ctl("db", "slow", 100),
            ctl("db", "slower", 200),
            ctl("cache", "slow", 50),
        ]
    };
    a.table()
        .apply_desired(desired(1, LONG_LEASE, set()))
        .await
        .unwrap();
    let (db, cache) = (a.keys("db"), a.keys("cache"));
    let db_snap = a.snapshot("db");
    let mut db_rx = a.table().subscribe("db").unwrap();
    let mut cache_rx = a.table().subscribe("cache").unwrap();
    db_rx.borrow_and_update();
    cache_rx.borrow_and_update();

    // The same set (on reconnect, say), with a newer generation: nothing re-rolls.
    let applied = a
        .table()
        .apply_desired(desired(2, LONG_LEASE, set()))
        .await
        .unwrap();
    assert_eq!(applied.generation, 2);
    assert_eq!(a.table().controller_generation(), Some(2));
    assert_eq!(a.keys("db"), db);
    assert_eq!(a.keys("cache"), cache);
    assert!(!db_rx.has_changed().unwrap(), "no new snapshot for db");
    assert!(
        !cache_rx.has_changed().unwrap(),
        "no new snapshot for cache"
    );
    let again = a.snapshot("db");
    for (old, new) in db_snap.faults.iter().zip(again.faults.iter()) {
        assert_eq!(old.since, new.since);
        assert!(Arc::ptr_eq(&old.counters, &new.counters));
    }

    // One fault changed, one dropped: only db gets a snapshot; the unchanged fault keeps its key.
    a.table()
        .apply_desired(desired(
            3,
            LONG_LEASE,
            vec![ctl("db", "slow", 150), ctl("cache", "slow", 50)],
        ))
        .await
        .unwrap();
    let db_now = a.keys("db");
    assert_eq!(db_now.len(), 1);
    assert_eq!(db_now[0].1, "slow");
    assert!(
        db_now[0].0 > db.iter().map(|k| k.0).max().unwrap(),
        "a changed definition is a new fault: {db_now:?} after {db:?}"
    );
    assert!(db_rx.has_changed().unwrap());
    assert!(!cache_rx.has_changed().unwrap());
    assert_eq!(a.keys("cache"), cache);
    a.stop().await;
}

#[tokio::test]
async fn an_invalid_entry_changes_nothing_and_is_named() {
    let a = TestAgent::start().await;
    a.route("db");
    a.route_with("web", Protocol::Http);
    a.table()
        .add_fault("db", latency("mine", 5, Origin::Admin))
        .await
        .unwrap();
    a.table()
        .apply_desired(desired(1, LONG_LEASE, vec![ctl("db", "slow", 100)]))
        .await
        .unwrap();
    let before = a.keys("db");
    let mut rx = a.table().subscribe("db").unwrap();
    rx.borrow_and_update();

    let abort = fault(
        "boom",
        FaultKind::HttpAbort(faultline_agent::fault::http::Abort {
            status: ::http::StatusCode::SERVICE_UNAVAILABLE,
            body: Default::default(),
            headers: vec![],
        }),
        controller(),
    );
    // (what, the faults, the index of the bad entry, what the error says)
    type Case = (&'static str, Vec<(String, Fault)>, usize, &'static str);
    let cases: Vec<Case> = vec![
        (
            "unknown route",
            vec![ctl("db", "slow", 999), ctl("nope", "x", 1)],
            1,
            "no route named \"nope\"",
        ),
        (
            "duplicate name",
            vec![
                ctl("db", "a", 1),
                // The same name on another route is fine.
                (
                    "web".into(),
                    Fault {
                        name: "a".into(),
                        ..abort.clone()
                    },
                ),
                ctl("db", "b", 1),
                ctl("db", "a", 2),
            ],
            3,
            "faults[0] already",
        ),
        (
            "http fault on a tcp route",
            vec![ctl("db", "slow", 999), ("db".into(), abort.clone())],
            1,
            "a http_abort fault cannot act on a tcp route",
        ),
        (
            "name of an admin fault",
            vec![ctl("db", "mine", 1)],
            0,
            "already has a fault named \"mine\"",
        ),
        (
            "admin-issued entry",
            vec![("db".into(), latency("x", 1, Origin::Admin))],
            0,
            "origin",
        ),
    ];
    for (what, faults, index, text) in cases {
        let err = a
            .table()
            .apply_desired(desired(2, LONG_LEASE, faults))
            .await
            .expect_err(what);
        let msg = err.to_string();
        match &err {
            DesiredError::Entry { index: i, .. } => assert_eq!(*i, index, "{what}: {msg}"),
            other => panic!("{what}: expected an entry error, got {other:?}"),
        }
        assert!(
            msg.starts_with(&format!("faults[{index}] ")),
            "{what}: {msg}"
        );
        assert!(msg.contains(text), "{what}: {msg:?} should say {text:?}");
        assert_eq!(a.keys("db"), before, "{what} changed db");
        assert!(a.names("web").is_empty(), "{what} changed web");
        assert!(!rx.has_changed().unwrap(), "{what} published a snapshot");
        assert_eq!(a.table().controller_generation(), Some(1), "{what}");
    }
    assert!(matches!(
        a.table()
            .apply_desired(desired(2, Duration::ZERO, vec![]))
            .await,
        Err(DesiredError::ZeroLease)
    ));
    assert_eq!(a.keys("db"), before);
    a.stop().await;
}

#[tokio::test]
async fn a_stale_generation_is_refused() {
    let a = TestAgent::start().await;
    a.route("db");
    a.table()
        .apply_desired(desired(5, LONG_LEASE, vec![ctl("db", "slow", 100)]))
        .await
        .unwrap();
    let before = a.keys("db");
    let err = a
        .table()
        .apply_desired(desired(4, LONG_LEASE, vec![]))
        .await
        .unwrap_err();
    assert!(
        matches!(err, DesiredError::Stale { got: 4, current: 5 }),
        "{err:?}"
    );
    assert!(err.to_string().contains("stale"), "{err}");
    assert_eq!(a.keys("db"), before);
    assert_eq!(a.table().controller_generation(), Some(5));
    // The same generation again is a re-send, not a stale message.
    a.table()
        .apply_desired(desired(5, LONG_LEASE, vec![ctl("db", "slow", 100)]))
        .await
        .expect("re-send");
    assert_eq!(a.keys("db"), before);
    a.stop().await;
}

#[tokio::test]
async fn controller_faults_cannot_be_added_without_a_lease() {
    let a = TestAgent::start().await;
    a.route("db");
    let err = a
        .table()
        .add_fault("db", latency("sneaky", 100, controller()))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            RouteError::Invalid {
                field: "origin",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(a.names("db").is_empty());
    assert_eq!(a.table().lease(), None);
    assert_eq!(a.table().renew_lease(LONG_LEASE), None, "nothing to renew");
    a.stop().await;
}

// === the lease ===

#[tokio::test]
async fn an_expired_lease_clears_controller_faults_but_not_admin_ones() {
    let a = TestAgent::start().await;
    let listen = a.route("db");
    a.route("cache");
    a.table()
        .add_fault("db", latency("mine", 1, Origin::Admin))
        .await
        .unwrap();
    let mut rx = a.table().subscribe("db").unwrap();
    let applied_at = Instant::now();
    a.table()
        .apply_desired(desired(
            1,
            SHORT_LEASE,
            vec![ctl("db", "slow", 300), ctl("cache", "slow", 300)],
        ))
        .await
        .unwrap();
    let deadline = a.table().lease().expect("held").deadline;
    assert!(deadline <= applied_at + SHORT_LEASE + Duration::from_millis(50));
    assert_eq!(a.names("db"), ["mine", "slow"]);

    let gone = controller_faults_gone(&mut rx, SHORT_LEASE + CLEAR_SLACK).await;
    let after_deadline = gone.saturating_duration_since(deadline);
    eprintln!(
        "lease expiry -> cleared: {after_deadline:?} after the deadline, {:?} after apply",
        gone - applied_at
    );
    assert!(gone >= deadline, "cleared {:?} early", deadline - gone);
    assert!(
        gone - applied_at <= SHORT_LEASE + CLEAR_SLACK,
        "cleared {:?} after apply",
        gone - applied_at
    );
    assert_eq!(a.names("db"), ["mine"], "the admin fault stays");
    assert!(a.names("cache").is_empty());
    assert_eq!(a.table().lease(), None);
    assert_eq!(a.table().controller_generation(), None);
    assert_eq!(a.table().renew_lease(SHORT_LEASE), None, "no resurrection");

    let rtt = round_trip(listen).await;
    assert!(rtt < Duration::from_millis(250), "latency gone: {rtt:?}");
    a.stop().await;
}

#[tokio::test]
async fn renewing_the_lease_keeps_controller_faults() {
    let a = TestAgent::start().await;
    a.route("db");
    let mut rx = a.table().subscribe("db").unwrap();
    a.table()
        .apply_desired(desired(1, SHORT_LEASE, vec![ctl("db", "slow", 300)]))
        .await
        .unwrap();
    let keys = a.keys("db");
    rx.borrow_and_update();

    // Heartbeats every 100 ms for three lease times.
    let mut beat = tokio::time::interval(Duration::from_millis(100));
    let until = Instant::now() + 3 * SHORT_LEASE;
    let mut last = None;
    while Instant::now() < until {
        beat.tick().await;
        let status = a.table().renew_lease(SHORT_LEASE).expect("lease held");
        assert_eq!(status.generation, 1);
        last = Some(status.deadline);
        assert_eq!(a.keys("db"), keys);
    }
    assert!(!rx.has_changed().unwrap(), "renewals publish nothing");

    // The heartbeats stop: the faults go at the last deadline.
    let last = last.unwrap();
    let gone = controller_faults_gone(&mut rx, SHORT_LEASE + CLEAR_SLACK).await;
    eprintln!(
        "after the last renewal: cleared {:?} after the deadline",
        gone.saturating_duration_since(last)
    );
    assert!(gone >= last && gone <= last + CLEAR_SLACK);
    a.stop().await;
}

#[tokio::test]
async fn clearing_on_a_broken_stream_is_immediate_and_a_reconnect_restores() {
    let a = TestAgent::start().await;
    let listen = a.route("db");
    a.table()
        .add_fault("db", latency("mine", 1, Origin::Admin))
        .await
        .unwrap();
    a.table()
        .apply_desired(desired(7, LONG_LEASE, vec![ctl("db", "slow", 300)]))
        .await
        .unwrap();
    assert!(round_trip(listen).await >= Duration::from_millis(300));

    let cleared = a
        .table()
        .clear_controller_faults("controller stream broke")
        .await;
    assert_eq!(cleared, 1);
    // No waiting: the snapshot is already the cleared one.
    assert_eq!(a.names("db"), ["mine"]);
    assert_eq!(a.table().lease(), None);
    assert_eq!(a.table().renew_lease(LONG_LEASE), None);
    assert!(round_trip(listen).await < Duration::from_millis(250));

    // Clearing again is harmless.
    assert_eq!(a.table().clear_controller_faults("again").await, 0);

    // On reconnect the controller re-sends the whole desired state; a new lease starts afresh.
    let applied = a
        .table()
        .apply_desired(desired(1, LONG_LEASE, vec![ctl("db", "slow", 300)]))
        .await
        .expect("a new lease accepts any generation");
    assert_eq!(applied.generation, 1);
    assert_eq!(a.names("db"), ["mine", "slow"]);
    let rtt = eventually(
        "the re-sent fault on traffic",
        Duration::from_secs(5),
        || async {
            let rtt = round_trip(listen).await;
            (rtt >= Duration::from_millis(300)).then_some(rtt)
        },
    )
    .await;
    assert!(rtt < Duration::from_millis(1300), "{rtt:?}");
    a.stop().await;
}

#[tokio::test]
async fn a_controller_down_fault_closes_the_listener_until_its_lease_ends() {
    let a = TestAgent::start().await;
    let listen = a.route("db");
    a.table()
        .apply_desired(desired(
            1,
            SHORT_LEASE,
            vec![(
                "db".into(),
                fault("off", FaultKind::Down(Down), controller()),
            )],
        ))
        .await
        .unwrap();
    // apply_desired returns once the listener has closed.
    assert!(TcpStream::connect(listen).await.is_err(), "route is down");

    let rtt = eventually(
        "the listener back after the lease",
        SHORT_LEASE + Duration::from_secs(2),
        || async {
            match TcpStream::connect(listen).await {
                Ok(_) => Some(round_trip(listen).await),
                Err(_) => None,
            }
        },
    )
    .await;
    assert!(rtt < Duration::from_millis(250), "{rtt:?}");
    assert!(a.names("db").is_empty());
    a.stop().await;
}
