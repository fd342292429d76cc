//! The control plane end to end: a controller in-process on 127.0.0.1:0 over a temp data dir,
//! three agents in-process dialling it, each with a TCP route to an echo server, all through
//! real sockets. An experiment that selects two agents delays their traffic and not the
//! third's; abort clears both at once; an experiment's duration ending clears it too.

mod support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use faultline_agent::app::Agent;
use faultline_agent::config::{AgentConfig, ControllerConfig};
use faultline_agent::route::{RouteSpec, Upstream};
use faultline_controller::config::Leases;
use faultline_proto::v1::agent_registry_client::AgentRegistryClient;
use faultline_proto::v1::experiment_service_client::ExperimentServiceClient;
use faultline_proto::v1::{
    AbortExperimentRequest, CreateExperimentRequest, ExperimentState, GetExperimentRequest,
    ListAgentsRequest, StartExperimentRequest, create_experiment_request,
};
use support::{InProcess, echo, eventually};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tonic::transport::Channel;

// === support ===

/// One round trip of a few bytes through `addr` on a new connection.
async fn round_trip(addr: SocketAddr) -> Duration {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.set_nodelay(true).unwrap();
    let t0 = Instant::now();
    s.write_all(b"ping").await.unwrap();
    let mut buf = [0u8; 4];
    s.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"ping");
    t0.elapsed()
}

/// An agent dialling `controller` with `labels`, its route `echo` listening on a free port.
async fn agent(
    controller: SocketAddr,
    id: &str,
    labels: &[(&str, &str)],
    upstream: SocketAddr,
) -> (Agent, SocketAddr) {
    let labels: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let config = AgentConfig {
        routes: vec![RouteSpec::tcp(
            "echo",
            "127.0.0.1:0",
            Upstream::Addr(upstream),
        )],
        controller: Some(
            ControllerConfig::new(&format!("http://{controller}"), id, labels).unwrap(),
        ),
        ..AgentConfig::embedded()
    };
    let agent = Agent::start(&config).await.expect("agent starts");
    let listen = agent.table.get("echo").unwrap().listen;
    (agent, listen)
}

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

const DELAY: Duration = Duration::from_millis(200);
/// A round trip well under the fault's delay: the fault is not there.
const CLEAR: Duration = Duration::from_millis(100);

async fn state(api: &mut ExperimentServiceClient<Channel>, name: &str) -> ExperimentState {
    let got = api
        .get(GetExperimentRequest { name: name.into() })
        .await
        .unwrap()
        .into_inner();
    got.experiment.unwrap().state()
}

// === tests ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn experiments_reach_their_targets_and_clear_on_abort_and_on_completion() {
    let leases = Leases::default();
    let controller = InProcess::start("three-agents", leases, false).await;
    let addr = controller.addr;

    let upstream = echo().await;
    let (a, a_addr) = agent(addr, "agent-a", &[("app", "shop"), ("zone", "a")], upstream).await;
    let (b, b_addr) = agent(addr, "agent-b", &[("app", "shop"), ("zone", "b")], upstream).await;
    let (c, c_addr) = agent(
        addr,
        "agent-c",
        &[("app", "other"), ("zone", "a")],
        upstream,
    )
    .await;

    let channel = controller.channel().await;
    let mut registry = AgentRegistryClient::new(channel.clone());
    let mut api = ExperimentServiceClient::new(channel);

    eventually(Duration::from_secs(10), "three agents connected", || {
        let mut registry = registry.clone();
        async move {
            let agents = registry
                .list(ListAgentsRequest::default())
                .await
                .unwrap()
                .into_inner()
                .agents;
            let connected: Vec<String> = agents
                .into_iter()
                .filter(|a| a.connected && a.generation >= 1)
                .map(|a| a.id)
                .collect();
            (connected == ["agent-a", "agent-b", "agent-c"]).then_some(())
        }
    })
    .await;
    // Before any experiment, every route is fast.
    for addr in [a_addr, b_addr, c_addr] {
        assert!(round_trip(addr).await < CLEAR);
    }

    // Start: the two shop agents are delayed, the other is not.
    api.create(create("slow-shop", "5m")).await.unwrap();
    let started = api
        .start(StartExperimentRequest {
            name: "slow-shop".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(started.state(), ExperimentState::Running);
    for addr in [a_addr, b_addr] {
        let rtt = eventually(
            Duration::from_secs(3),
            "latency on a target",
            || async move {
                let rtt = round_trip(addr).await;
                (rtt >= DELAY).then_some(rtt)
            },
        )
        .await;
        assert!(rtt >= DELAY, "{rtt:?}");
        eprintln!("target {addr}: round trip {rtt:?} under the experiment");
    }
    for _ in 0..3 {
        let rtt = round_trip(c_addr).await;
        assert!(rtt < CLEAR, "the third agent is not targeted: {rtt:?}");
    }
    let registry_view = registry
        .list(ListAgentsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .agents;
    assert!(registry_view.iter().all(|a| a.connected));

    // Abort: both targets clear within one heartbeat (plus a margin for the probe).
    let t0 = Instant::now();
    api.abort(AbortExperimentRequest {
        name: "slow-shop".into(),
        reason: "test".into(),
    })
    .await
    .unwrap();
    for addr in [a_addr, b_addr] {
        eventually(
            Duration::from_secs(3),
            "latency gone after abort",
            || async move { (round_trip(addr).await < CLEAR).then_some(()) },
        )
        .await;
    }
    let cleared = t0.elapsed();
    eprintln!("abort: both targets clear after {cleared:?}");
    assert!(
        cleared <= leases.heartbeat + Duration::from_millis(500),
        "cleared {cleared:?} after abort"
    );

    // A 1 s experiment completes by itself and clears.
    api.create(create("short", "1s")).await.unwrap();
    let t0 = Instant::now();
    api.start(StartExperimentRequest {
        name: "short".into(),
    })
    .await
    .unwrap();
    let rtt = eventually(
        Duration::from_secs(1),
        "latency during the short one",
        || async {
            let rtt = round_trip(a_addr).await;
            (rtt >= DELAY).then_some(rtt)
        },
    )
    .await;
    assert!(rtt >= DELAY);
    eventually(Duration::from_secs(3), "short completed", || {
        let mut api = api.clone();
        async move { (state(&mut api, "short").await == ExperimentState::Completed).then_some(()) }
    })
    .await;
    let ended = t0.elapsed();
    eprintln!("short: completed {ended:?} after start");
    assert!(ended >= Duration::from_secs(1), "completed after {ended:?}");
    for addr in [a_addr, b_addr] {
        eventually(
            Duration::from_secs(2),
            "latency gone after completion",
            || async move { (round_trip(addr).await < CLEAR).then_some(()) },
        )
        .await;
    }
    assert!(round_trip(c_addr).await < CLEAR);

    for agent in [a, b, c] {
        agent.shutdown(Duration::from_secs(1)).await;
    }
    controller.stop().await;
}
