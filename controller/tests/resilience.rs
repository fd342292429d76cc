//! Resilience of the control plane with real processes: the `faultline-controller` and
//! `faultline-agent` binaries, each killed with SIGKILL by its own PID, echo servers in the test
//! process, a temp data dir, and the controller on `--lease 1s --heartbeat 250ms`.
//!
//! - kill -9 the controller mid-experiment: every agent clears its faults within lease + 1 s by
//!   itself; the restarted controller (same data dir, same port) reports the experiment
//!   `aborted: controller restarted` with its whole timeline, and the agents reconnect clean.
//! - freeze the controller (SIGSTOP) mid-experiment: its streams stay open but silent, and the
//!   agents clear by the lease alone within lease + 1 s.
//! - kill -9 an agent while an experiment runs and start it again (same id, labels and route
//!   port): it rejoins and gets the experiment's faults again.
//!
//! The agent binary is not a dependency of this crate, so Cargo does not build it for this test
//! alone: `cargo test --workspace` builds it into the same target dir, or build it first with
//! `cargo build -p faultline-agent --bin faultline-agent`. The tests fail with that advice if it
//! is missing.

mod support;

#[path = "../../tests/support/http.rs"]
#[allow(dead_code)] // shared with the root package's tests, which use all of it
mod http;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use faultline_proto::v1::agent_registry_client::AgentRegistryClient;
use faultline_proto::v1::experiment_service_client::ExperimentServiceClient;
use faultline_proto::v1::{
    CreateExperimentRequest, ExperimentEventKind, ExperimentState, GetExperimentRequest,
    ListAgentsRequest, StartExperimentRequest, create_experiment_request,
};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use support::{TempDir, echo, eventually};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tonic::transport::{Channel, Endpoint};

const CONTROLLER: &str = env!("CARGO_BIN_EXE_faultline-controller");

/// The controller's lease and heartbeat for these tests.
const LEASE: Duration = Duration::from_secs(1);
const LEASE_FLAG: &str = "1s";
const HEARTBEAT_FLAG: &str = "250ms";

/// The experiment's latency fault.
const DELAY: Duration = Duration::from_millis(200);
/// A round trip well under the fault's delay: the fault is not there.
const CLEAR: Duration = Duration::from_millis(100);

// === support ===

/// The agent binary, beside this test's executable in the target dir.
fn agent_exe() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(Path::parent).unwrap();
    let agent = dir.join("faultline-agent");
    assert!(
        agent.is_file(),
        "{} is missing: run `cargo test --workspace`, or build it first with \
         `cargo build -p faultline-agent --bin faultline-agent`",
        agent.display()
    );
    agent
}

/// A loopback port that was free a moment ago.
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// One round trip of a few bytes through `addr` on a new connection; `None` if the connection
/// fails (the route is not listening yet).
async fn round_trip(addr: SocketAddr) -> Option<Duration> {
    let mut s = TcpStream::connect(addr).await.ok()?;
    s.set_nodelay(true).unwrap();
    let t0 = Instant::now();
    s.write_all(b"ping").await.ok()?;
    let mut buf = [0u8; 4];
    s.read_exact(&mut buf).await.ok()?;
    assert_eq!(&buf, b"ping");
    Some(t0.elapsed())
}

/// Waits until a round trip through `addr` takes at least the fault's delay; returns it.
async fn delayed(addr: SocketAddr, within: Duration) -> Duration {
    eventually(within, &format!("latency through {addr}"), || async move {
        round_trip(addr).await.filter(|rtt| *rtt >= DELAY)
    })
    .await
}

/// Waits until a round trip through `addr` is fast again; returns when that was seen.
async fn cleared(addr: SocketAddr, within: Duration) -> Instant {
    eventually(
        within,
        &format!("no latency through {addr}"),
        || async move {
            round_trip(addr)
                .await
                .filter(|rtt| *rtt < CLEAR)
                .map(|_| Instant::now())
        },
    )
    .await
}

// === impl Controller ===

/// A controller process, killed (by its PID) if the test ends early.
struct Controller {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Controller {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Controller {
    /// Starts the controller on `addr` over `data_dir` and waits until it answers gRPC. A
    /// port that is briefly unavailable (the process exits at once) is retried a few times.
    async fn start(addr: SocketAddr, data_dir: &Path) -> Controller {
        for attempt in 1..=5 {
            let child = Command::new(CONTROLLER)
                .arg("--listen")
                .arg(addr.to_string())
                .arg("--data-dir")
                .arg(data_dir)
                .args(["--lease", LEASE_FLAG, "--heartbeat", HEARTBEAT_FLAG])
                .args(["--metrics", "127.0.0.1:0"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start faultline-controller");
            let mut controller = Controller { child, addr };
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                if let Some(status) = controller.child.try_wait().unwrap() {
                    eprintln!("controller on {addr} exited ({status}), attempt {attempt}");
                    break;
                }
                if controller.channel().await.is_some() {
                    return controller;
                }
                assert!(Instant::now() < deadline, "controller on {addr} not ready");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!("the controller could not start on {addr}");
    }

    async fn channel(&self) -> Option<Channel> {
        Endpoint::from_shared(format!("http://{}", self.addr))
            .unwrap()
            .connect_timeout(Duration::from_secs(1))
            .connect()
            .await
            .ok()
    }

    /// SIGKILL, then reap.
    fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

// === impl AgentProc ===

/// An agent process with one TCP route `echo`, killed (by its PID) if the test ends early.
struct AgentProc {
    child: Child,
    admin: SocketAddr,
    /// The route's listen address.
    listen: SocketAddr,
}

impl Drop for AgentProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl AgentProc {
    /// Starts an agent dialling `controller` with its route `echo` on `listen` (port 0 picks
    /// one), waits for its "agent started" log line and reads the admin address from it. A
    /// route port briefly unavailable (exit before starting) is retried a few times.
    async fn start(
        controller: SocketAddr,
        id: &str,
        labels: &[&str],
        listen: SocketAddr,
        upstream: SocketAddr,
    ) -> AgentProc {
        let exe = agent_exe();
        for attempt in 1..=5 {
            let mut cmd = Command::new(&exe);
            cmd.args(["--admin", "127.0.0.1:0", "--log-format", "json"])
                .arg("--route")
                .arg(format!("echo={listen}={upstream}"))
                .arg("--controller")
                .arg(format!("http://{controller}"))
                .args(["--agent-id", id]);
            for label in labels {
                cmd.args(["--label", label]);
            }
            let mut child = cmd
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("start faultline-agent");
            let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
            let admin: Option<SocketAddr> = loop {
                let Some(Ok(line)) = lines.next() else {
                    break None;
                };
                let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
                if v["fields"]["message"] == "agent started" {
                    break Some(v["fields"]["admin"].as_str().unwrap().parse().unwrap());
                }
            };
            let Some(admin) = admin else {
                let status = child.wait().unwrap();
                eprintln!("agent {id} exited before starting ({status}), attempt {attempt}");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            };
            // Keep draining stderr so the agent never blocks on a full pipe.
            std::thread::spawn(move || for _ in lines {});
            let r = http::request(admin, "GET", "/proxies/echo", None).await;
            assert_eq!(r.status, 200, "{}", r.body);
            let listen = r.json()["listen"].as_str().unwrap().parse().unwrap();
            let agent = AgentProc {
                child,
                admin,
                listen,
            };
            return agent;
        }
        panic!("agent {id} could not start with its route on {listen}");
    }

    /// How many faults (toxics) the route has now.
    async fn toxics(&self) -> usize {
        let r = http::request(self.admin, "GET", "/proxies/echo", None).await;
        assert_eq!(r.status, 200, "{}", r.body);
        r.json()["toxics"].as_array().unwrap().len()
    }

    /// SIGKILL, then reap.
    fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

// === the control API ===

fn create(name: &str, duration: &str) -> CreateExperimentRequest {
    let yaml = format!(
        "\
apiVersion: faultline.dev/v1alpha1
kind: Experiment
metadata: {{name: {name}}}
spec:
  targets:
    selector: {{matchLabels: {{app: shop}}}}
    mode: all
  faults:
    - route: echo
      name: slow
      type: latency
      stream: downstream
      attributes: {{latency: 200}}
  duration: {duration}
"
    );
    CreateExperimentRequest {
        spec: Some(create_experiment_request::Spec::SpecYaml(yaml)),
    }
}

/// Creates and starts the experiment `name`.
async fn run_experiment(channel: &Channel, name: &str, duration: &str) {
    let mut api = ExperimentServiceClient::new(channel.clone());
    api.create(create(name, duration)).await.unwrap();
    let started = api
        .start(StartExperimentRequest { name: name.into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(started.state(), ExperimentState::Running);
}

/// The ids of the agents connected now with at least `min_generation` applied.
async fn connected(channel: &Channel, min_generation: u64) -> Vec<String> {
    let mut registry = AgentRegistryClient::new(channel.clone());
    let Ok(agents) = registry.list(ListAgentsRequest::default()).await else {
        return vec![];
    };
    agents
        .into_inner()
        .agents
        .into_iter()
        .filter(|a| a.connected && a.generation >= min_generation)
        .map(|a| a.id)
        .collect()
}

async fn wait_connected(channel: &Channel, ids: &[&str], min_generation: u64) {
    eventually(
        Duration::from_secs(10),
        &format!("{ids:?} connected"),
        || async move { (connected(channel, min_generation).await == ids).then_some(()) },
    )
    .await;
}

// === tests ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_controller_clears_every_agent_by_lease_and_a_restart_aborts_the_experiment() {
    let dir = TempDir::new("controller-kill");
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let controller = Controller::start(addr, &dir.0).await;
    let upstream = echo().await;
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let a = AgentProc::start(addr, "agent-a", &["app=shop", "zone=a"], any, upstream).await;
    let b = AgentProc::start(addr, "agent-b", &["app=shop", "zone=b"], any, upstream).await;
    let channel = controller.channel().await.expect("controller answers");
    wait_connected(&channel, &["agent-a", "agent-b"], 1).await;
    for agent in [&a, &b] {
        let rtt = round_trip(agent.listen).await.unwrap();
        assert!(rtt < CLEAR, "fast before the experiment: {rtt:?}");
    }

    run_experiment(&channel, "slow-shop", "5m").await;
    for agent in [&a, &b] {
        let rtt = delayed(agent.listen, Duration::from_secs(3)).await;
        eprintln!("{}: round trip {rtt:?} under the experiment", agent.listen);
        assert_eq!(agent.toxics().await, 1);
    }

    // kill -9: each agent clears by itself within lease + 1 s, measured concurrently.
    drop(channel);
    let t0 = Instant::now();
    controller.kill();
    let bound = LEASE + Duration::from_secs(1);
    let (a_at, b_at) = tokio::join!(
        cleared(a.listen, Duration::from_secs(10)),
        cleared(b.listen, Duration::from_secs(10)),
    );
    for (id, at) in [("agent-a", a_at), ("agent-b", b_at)] {
        let took = at - t0;
        eprintln!("{id}: route fast again {took:?} after the controller's kill -9");
        assert!(
            took <= bound,
            "{id} cleared after {took:?}, bound {bound:?}"
        );
    }
    for agent in [&a, &b] {
        assert_eq!(agent.toxics().await, 0, "no fault left on {}", agent.admin);
    }

    // Restart on the same data dir and port.
    let t1 = Instant::now();
    let controller = Controller::start(addr, &dir.0).await;
    eprintln!("controller restarted on {addr} in {:?}", t1.elapsed());
    let channel = controller.channel().await.expect("controller answers");
    let mut api = ExperimentServiceClient::new(channel.clone());
    let got = api
        .get(GetExperimentRequest {
            name: "slow-shop".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let experiment = got.experiment.unwrap();
    assert_eq!(experiment.state(), ExperimentState::Aborted);
    assert_eq!(experiment.reason, "controller restarted");
    for e in &got.events {
        eprintln!("event {} kind {} {}", e.sequence, e.kind, e.detail_json);
    }
    let sequences: Vec<u64> = got.events.iter().map(|e| e.sequence).collect();
    assert_eq!(sequences, (1..=got.events.len() as u64).collect::<Vec<_>>());
    // The whole timeline, in order: created, started, and last the abort by the restart.
    // (Other events may sit between them, such as the targets chosen.)
    let milestones: Vec<ExperimentEventKind> = got
        .events
        .iter()
        .map(|e| e.kind())
        .filter(|k| {
            matches!(
                k,
                ExperimentEventKind::Created
                    | ExperimentEventKind::Started
                    | ExperimentEventKind::Aborted
            )
        })
        .collect();
    assert_eq!(
        milestones,
        [
            ExperimentEventKind::Created,
            ExperimentEventKind::Started,
            ExperimentEventKind::Aborted
        ]
    );
    assert_eq!(
        got.events.last().unwrap().kind(),
        ExperimentEventKind::Aborted
    );
    assert!(
        got.events
            .last()
            .unwrap()
            .detail_json
            .contains("controller restarted"),
        "{}",
        got.events.last().unwrap().detail_json
    );

    // The agents reconnect, with no faults: not sent again.
    let t2 = Instant::now();
    wait_connected(&channel, &["agent-a", "agent-b"], 0).await;
    eprintln!(
        "both agents reconnected {:?} after the restart",
        t2.elapsed()
    );
    for agent in [&a, &b] {
        assert_eq!(agent.toxics().await, 0, "no fault on {}", agent.admin);
        let rtt = round_trip(agent.listen).await.unwrap();
        assert!(rtt < CLEAR, "{rtt:?}");
    }
    // A few heartbeats later, still none.
    tokio::time::sleep(Duration::from_millis(750)).await;
    for agent in [&a, &b] {
        assert_eq!(agent.toxics().await, 0, "no fault on {}", agent.admin);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_agent_restarted_rejoins_and_gets_the_running_experiment_again() {
    let dir = TempDir::new("agent-kill");
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let controller = Controller::start(addr, &dir.0).await;
    let upstream = echo().await;
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let a = AgentProc::start(addr, "agent-a", &["app=shop", "zone=a"], any, upstream).await;
    let b = AgentProc::start(addr, "agent-b", &["app=shop", "zone=b"], any, upstream).await;
    let channel = controller.channel().await.expect("controller answers");
    wait_connected(&channel, &["agent-a", "agent-b"], 1).await;

    run_experiment(&channel, "slow-shop", "10m").await;
    for agent in [&a, &b] {
        delayed(agent.listen, Duration::from_secs(3)).await;
    }

    // kill -9 agent-a; the controller sees it go.
    let a_listen = a.listen;
    a.kill();
    let t0 = Instant::now();
    wait_connected(&channel, &["agent-b"], 1).await;
    eprintln!("controller saw agent-a gone after {:?}", t0.elapsed());
    assert!(round_trip(a_listen).await.is_none(), "nothing listens");
    // The other target keeps its fault.
    let rtt = round_trip(b.listen).await.unwrap();
    assert!(rtt >= DELAY, "agent-b still delayed: {rtt:?}");

    // Start it again: same id, labels and route port.
    let t1 = Instant::now();
    let a = AgentProc::start(addr, "agent-a", &["app=shop", "zone=a"], a_listen, upstream).await;
    assert_eq!(a.listen, a_listen);
    let toxics_at_start = a.toxics().await;
    eprintln!("agent-a restarted: {toxics_at_start} fault(s) when it first answered");
    assert!(toxics_at_start <= 1, "{toxics_at_start} faults at start");

    // It rejoins and gets the desired state again, within a bounded deadline.
    let rtt = delayed(a_listen, Duration::from_secs(5)).await;
    let took = t1.elapsed();
    eprintln!("agent-a: latency back ({rtt:?}) {took:?} after its restart");
    assert_eq!(a.toxics().await, 1, "exactly the experiment's fault");
    wait_connected(&channel, &["agent-a", "agent-b"], 1).await;

    let mut api = ExperimentServiceClient::new(channel.clone());
    let got = api
        .get(GetExperimentRequest {
            name: "slow-shop".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.experiment.unwrap().state(), ExperimentState::Running);
    for e in &got.events {
        eprintln!("event {} kind {} {}", e.sequence, e.kind, e.detail_json);
    }
    drop(b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_controller_keeps_its_streams_open_and_the_agents_clear_by_lease() {
    // kill -9 closes the controller's sockets, so the agents see their streams break at once.
    // SIGSTOP keeps the streams open and silent: only the lease can clear the faults.
    let dir = TempDir::new("controller-stop");
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let controller = Controller::start(addr, &dir.0).await;
    let upstream = echo().await;
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let a = AgentProc::start(addr, "agent-a", &["app=shop", "zone=a"], any, upstream).await;
    let b = AgentProc::start(addr, "agent-b", &["app=shop", "zone=b"], any, upstream).await;
    let channel = controller.channel().await.expect("controller answers");
    wait_connected(&channel, &["agent-a", "agent-b"], 1).await;
    run_experiment(&channel, "slow-shop", "5m").await;
    for agent in [&a, &b] {
        delayed(agent.listen, Duration::from_secs(3)).await;
    }

    let pid = Pid::from_raw(controller.child.id() as i32);
    let t0 = Instant::now();
    kill(pid, Signal::SIGSTOP).unwrap();
    let bound = LEASE + Duration::from_secs(1);
    let (a_at, b_at) = tokio::join!(
        cleared(a.listen, Duration::from_secs(10)),
        cleared(b.listen, Duration::from_secs(10)),
    );
    for (id, at) in [("agent-a", a_at), ("agent-b", b_at)] {
        let took = at - t0;
        eprintln!("{id}: route fast again {took:?} after the controller froze");
        assert!(
            took <= bound,
            "{id} cleared after {took:?}, bound {bound:?}"
        );
    }
    for agent in [&a, &b] {
        assert_eq!(agent.toxics().await, 0, "no fault left on {}", agent.admin);
    }
    // SIGKILL ends a stopped process too.
    controller.kill();
}
