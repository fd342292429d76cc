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
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use support::servers::{self, round_trip};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::net::TcpStream;
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

/// The latency toxic the client adds.
const LATENCY: Duration = Duration::from_millis(300);
/// How long the script may take to reach its next step.
const STEP_TIMEOUT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn toxiproxy_python_client_manages_a_proxy_and_its_latency_toxic_delays_traffic() {
    let python = python();
    require_client(&python).await;
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

/// The interpreter to run the client with.
fn python() -> PathBuf {
    std::env::var_os("FAULTLINE_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-venv/bin/python")
        })
}

/// Fails (never skips) unless `python` runs and can import the client library.
async fn require_client(python: &Path) {
    const SETUP: &str = "run scripts/test.sh, which creates target/test-venv with \
        toxiproxy-python==0.1.1 (or set FAULTLINE_TEST_PYTHON to a Python that has it)";
    let out = Command::new(python)
        .args(["-c", "import toxiproxy"])
        .output()
        .await
        .unwrap_or_else(|e| panic!("cannot run {}: {e}; {SETUP}", python.display()));
    assert!(
        out.status.success(),
        "{} cannot import toxiproxy: {}; {SETUP}",
        python.display(),
        String::from_utf8_lossy(&out.stderr).trim()
    );
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
    child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
}

impl Script {
    fn spawn(python: &Path, admin: SocketAddr, upstream: SocketAddr, listen: SocketAddr) -> Script {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/toxiproxy_client.py");
        let mut child = Command::new(python)
            .arg(&path)
            .arg(admin.to_string())
            .arg(upstream.to_string())
            .arg(LATENCY.as_millis().to_string())
            .arg(listen.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {} {}: {e}", python.display(), path.display()));
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        Script {
            child,
            stdin,
            stdout,
        }
    }

    /// Waits for the script to report `step` and returns the listen address it printed.
    async fn reached(&mut self, step: &str) -> SocketAddr {
        let line = self.line(step).await;
        match line.split_once(' ') {
            Some((s, addr)) if s == step => addr
                .parse()
                .unwrap_or_else(|e| panic!("{step}: bad address {addr:?}: {e}")),
            _ => {
                self.fail(&format!("expected step {step:?}, got {line:?}"))
                    .await
            }
        }
    }

    async fn go(&mut self) {
        self.stdin
            .write_all(b"go\n")
            .await
            .expect("write to the script");
        self.stdin.flush().await.unwrap();
    }

    /// Expects the final `ok` and a successful exit.
    async fn finished(mut self) {
        let line = self.line("ok").await;
        if line != "ok" {
            self.fail(&format!("expected \"ok\", got {line:?}")).await;
        }
        let status = tokio::time::timeout(STEP_TIMEOUT, self.child.wait())
            .await
            .expect("the script exits")
            .unwrap();
        if !status.success() {
            self.fail(&format!("exited with {status}")).await;
        }
    }

    async fn line(&mut self, waiting_for: &str) -> String {
        match tokio::time::timeout(STEP_TIMEOUT, self.stdout.next_line()).await {
            Ok(Ok(Some(line))) => line,
            Ok(Ok(None)) => self.fail(&format!("ended before {waiting_for:?}")).await,
            Ok(Err(e)) => {
                self.fail(&format!("reading stdout before {waiting_for:?}: {e}"))
                    .await
            }
            Err(_) => {
                self.fail(&format!("no {waiting_for:?} after {STEP_TIMEOUT:?}"))
                    .await
            }
        }
    }

    /// Stops the script and panics with `what` and whatever it wrote to stderr.
    async fn fail(&mut self, what: &str) -> ! {
        if tokio::time::timeout(Duration::from_secs(5), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
        let mut stderr = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = e.read_to_string(&mut stderr).await;
        }
        panic!(
            "toxiproxy_client.py: {what}\n--- stderr ---\n{}",
            stderr.trim_end()
        );
    }
}
