//! A real third-party Toxiproxy client against the agent: `tests/toxiproxy_client.py` drives the
//! admin API with toxiproxy-python 0.1.1 (create a proxy, add a latency toxic, list it, disable
//! and enable the proxy, remove the toxic, reset, destroy the proxy), checking every answer,
//! while this test checks each step's effect on the data path through real sockets.
//!
//! The interpreter is `$FAULTLINE_TEST_PYTHON`, or `target/test-venv/bin/python` in the workspace,
//! which `scripts/test.sh` sets up. Without it the test fails: it never skips silently.

mod support;

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use support::python::{self, NoLine, PyScript, Requirement};
use support::servers::{self, round_trip};
use tokio::net::TcpStream;

/// The latency toxic the client adds.
const LATENCY: Duration = Duration::from_millis(300);
/// How long the script may take to reach its next step.
const STEP_TIMEOUT: Duration = Duration::from_secs(30);
/// What the script needs from the interpreter.
const CLIENT: Requirement = Requirement {
    import: "import toxiproxy",
    modules: "toxiproxy",
    setup: "run scripts/test.sh, which creates target/test-venv with \
        toxiproxy-python==0.1.1 (or set FAULTLINE_TEST_PYTHON to a Python that has it)",
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn toxiproxy_python_client_manages_a_proxy_and_its_latency_toxic_delays_traffic() {
    let python = python::interpreter(&CLIENT).await;
    let agent = support::agent().await;
    let upstream = servers::echo().await;
    let listen = quiet_addr();
    let mut script = Script::spawn(&python, agent.admin, upstream, listen);

    assert_eq!(script.reached("toxic-added").await, listen);
    let rtt = round_trip_time(listen).await;
    assert!(
        rtt >= LATENCY,
        "the client's {LATENCY:?} latency toxic is not in effect: {rtt:?}"
    );
    assert!(
        rtt < LATENCY + Duration::from_secs(1),
        "round trip took {rtt:?}"
    );
    script.go().await;

    assert_eq!(script.reached("disabled").await, listen);
    eventually_refused(listen).await;
    script.go().await;

    assert_eq!(script.reached("toxic-removed").await, listen);
    let rtt = round_trip_time(listen).await;
    assert!(
        rtt < LATENCY / 2,
        "re-enabled proxy without toxics took {rtt:?}"
    );
    script.go().await;

    assert_eq!(script.reached("destroyed").await, listen);
    eventually_refused(listen).await;
    script.go().await;

    script.finished().await;
}

/// A free loopback address below the kernel's ephemeral port range (Linux: 32768-60999), for
/// the proxy the client disables and enables again: while its listener is closed, no `bind(0)`
/// or outgoing connection elsewhere on the machine can take the port.
fn quiet_addr() -> SocketAddr {
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
}

/// Opens a fresh connection through `listen` and times one echo round trip.
async fn round_trip_time(listen: SocketAddr) -> Duration {
    let mut s = TcpStream::connect(listen)
        .await
        .expect("connect through the proxy");
    s.set_nodelay(true).unwrap();
    let t = Instant::now();
    assert_eq!(round_trip(&mut s, b"ping").await, b"ping");
    t.elapsed()
}

/// Waits until `listen` refuses connections. (The agent closes a listener shortly after the
/// API answers, not before; see the admin_api tests.)
async fn eventually_refused(listen: SocketAddr) {
    support::eventually(
        "the proxy to refuse connections",
        Duration::from_secs(5),
        || async {
            let r = TcpStream::connect(listen).await;
            matches!(r, Err(e) if e.kind() == ErrorKind::ConnectionRefused).then_some(())
        },
    )
    .await
}

// === impl Script ===

/// The running client script, spoken to one line at a time.
struct Script {
    py: PyScript,
}

impl Script {
    fn spawn(python: &Path, admin: SocketAddr, upstream: SocketAddr, listen: SocketAddr) -> Script {
        let args = [
            admin.to_string(),
            upstream.to_string(),
            LATENCY.as_millis().to_string(),
            listen.to_string(),
        ];
        let py = PyScript::spawn(python, "toxiproxy_client.py", args, STEP_TIMEOUT);
        Script { py }
    }

    /// Waits for the script to report `step` and returns the listen address it printed.
    async fn reached(&mut self, step: &str) -> SocketAddr {
        let line = self.line(step).await;
        match line.split_once(' ') {
            Some((s, addr)) if s == step => addr
                .parse()
                .unwrap_or_else(|e| panic!("{step}: bad address {addr:?}: {e}")),
            _ => {
                self.py
                    .fail(&format!("expected step {step:?}, got {line:?}"))
                    .await
            }
        }
    }

    async fn go(&mut self) {
        self.py.send("go").await;
    }

    /// Expects the final `ok` and a successful exit.
    async fn finished(mut self) {
        let line = self.line("ok").await;
        if line != "ok" {
            self.py
                .fail(&format!("expected \"ok\", got {line:?}"))
                .await;
        }
        self.py.finish().await;
    }

    async fn line(&mut self, waiting_for: &str) -> String {
        let what = match self.py.next_line().await {
            Ok(line) => return line,
            Err(NoLine::Ended) => format!("ended before {waiting_for:?}"),
            Err(NoLine::Unreadable(e)) => format!("reading stdout before {waiting_for:?}: {e}"),
            Err(NoLine::TimedOut(after)) => format!("no {waiting_for:?} after {after:?}"),
        };
        self.py.fail(&what).await
    }
}
