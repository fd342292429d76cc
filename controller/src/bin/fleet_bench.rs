//! `fleet_bench`: simulates N agents as N `AgentService.Connect` streams from one process and
//! measures how fast the controller fans a desired state out to all of them.
//!
//! Each simulated agent says `Hello` with the label `bench=yes` and one TCP route `r`, acks every
//! `DesiredState` at once and sends a heartbeat (empty SLIs) at the interval the controller asks
//! for. The N streams are multiplexed over `--connections` HTTP/2 connections to stay within fd
//! limits.
//!
//! For each of `--reps` experiments the tool records the time from the `Start` RPC (measured both
//! from just before the call and from its return) until every agent has acked a state carrying the
//! fault, then `Abort`s and records the time until every agent has acked the cleared state. It
//! prints p50/p99/max, and with `--controller-pid` the controller's peak RSS and CPU over the run
//! (from `/proc`).
//!
//! Run it through `bench/fleet.sh`, which starts a release controller on loopback.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use faultline_proto::v1::agent_message::Body as AgentBody;
use faultline_proto::v1::agent_service_client::AgentServiceClient;
use faultline_proto::v1::controller_message::Body as ControllerBody;
use faultline_proto::v1::experiment_service_client::ExperimentServiceClient;
use faultline_proto::v1::{
    AbortExperimentRequest, Ack, AgentHeartbeat, AgentMessage, CreateExperimentRequest, Hello,
    Protocol, Route, StartExperimentRequest, create_experiment_request,
};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};

/// Simulate a fleet of agents against a running controller.
#[derive(Parser, Debug)]
struct Args {
    /// The controller's gRPC address, e.g. `http://127.0.0.1:7070`.
    #[arg(long)]
    controller: String,
    /// How many agents (streams) to simulate.
    #[arg(long, default_value_t = 100)]
    agents: usize,
    /// How many HTTP/2 connections carry the streams.
    #[arg(long, default_value_t = 1)]
    connections: usize,
    /// How many experiments (apply + abort) to time.
    #[arg(long, default_value_t = 10)]
    reps: usize,
    /// The controller's PID, to sample its RSS and CPU from /proc.
    #[arg(long)]
    controller_pid: Option<u32>,
    /// How long to wait for all agents to ack one change before giving up.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    timeout: Duration,
}

/// What the agents have acked: per agent, whether its last acked state carried a fault.
/// Counted with atomics so that no agent task waits on another.
struct Fleet {
    /// Agents whose last ack was for a state with at least one fault.
    faulted: AtomicUsize,
    /// Agents that have acked at least one state (connected and registered).
    joined: AtomicUsize,
    /// Bumped on every ack so the measuring task wakes up.
    acked: watch::Sender<u64>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.agents == 0 || args.connections == 0 {
        bail!("--agents and --connections must be at least 1");
    }

    let endpoint = Endpoint::from_shared(args.controller.clone())
        .context("--controller is not a URL")?
        .http2_adaptive_window(true)
        .tcp_nodelay(true);
    let mut channels = Vec::with_capacity(args.connections);
    for _ in 0..args.connections {
        // `connect` (not lazy) so that each Channel is its own HTTP/2 connection.
        channels.push(endpoint.connect().await.context("connect to controller")?);
    }

    let (acked, _) = watch::channel(0u64);
    let fleet = Arc::new(Fleet {
        faulted: AtomicUsize::new(0),
        joined: AtomicUsize::new(0),
        acked,
    });
    let mut wake = fleet.acked.subscribe();

    let cpu_start = args.controller_pid.and_then(cpu_ticks);
    let run_start = Instant::now();
    let mut rss_peak = 0u64;
    let sample_rss = |peak: &mut u64| {
        if let Some(kb) = args.controller_pid.and_then(rss_kib) {
            *peak = (*peak).max(kb);
        }
    };

    let connect_start = Instant::now();
    let mut tasks = Vec::with_capacity(args.agents);
    for i in 0..args.agents {
        let channel = channels[i % channels.len()].clone();
        tasks.push(tokio::spawn(agent(i, channel, fleet.clone())));
    }
    wait_until(&mut wake, args.timeout, || {
        fleet.joined.load(Ordering::Relaxed) >= args.agents
    })
    .await
    .context("agents joining")?;
    println!(
        "{} agents connected over {} connections in {:?}",
        args.agents,
        args.connections,
        connect_start.elapsed()
    );
    sample_rss(&mut rss_peak);

    let mut api = ExperimentServiceClient::new(channels[0].clone());
    let mut from_call = Vec::new();
    let mut from_return = Vec::new();
    let mut abort_from_call = Vec::new();
    let mut abort_from_return = Vec::new();
    let tag = std::process::id();
    for rep in 0..args.reps {
        let name = format!("fleet-bench-{tag}-{rep}");
        api.create(spec(&name)).await.context("Create")?;

        let before = Instant::now();
        api.start(StartExperimentRequest { name: name.clone() })
            .await
            .context("Start")?;
        let returned = Instant::now();
        wait_until(&mut wake, args.timeout, || {
            fleet.faulted.load(Ordering::Relaxed) >= args.agents
        })
        .await
        .with_context(|| format!("all agents acking the fault of {name}"))?;
        let done = Instant::now();
        from_call.push(done - before);
        from_return.push(done - returned);
        sample_rss(&mut rss_peak);

        let before = Instant::now();
        api.abort(AbortExperimentRequest {
            name: name.clone(),
            reason: "fleet_bench".into(),
        })
        .await
        .context("Abort")?;
        let returned = Instant::now();
        wait_until(&mut wake, args.timeout, || {
            fleet.faulted.load(Ordering::Relaxed) == 0
        })
        .await
        .with_context(|| format!("all agents acking the abort of {name}"))?;
        let done = Instant::now();
        abort_from_call.push(done - before);
        abort_from_return.push(done - returned);
        sample_rss(&mut rss_peak);
    }

    // Hold the fleet a few heartbeats more so the CPU figure includes steady-state heartbeats.
    let hold = Instant::now();
    while hold.elapsed() < Duration::from_secs(3) {
        tokio::time::sleep(Duration::from_millis(500)).await;
        sample_rss(&mut rss_peak);
    }
    let wall = run_start.elapsed();

    println!(
        "agents={} connections={} reps={}",
        args.agents, args.connections, args.reps
    );
    report("apply  (from Start call)  ", &mut from_call);
    report("apply  (from Start return)", &mut from_return);
    report("abort  (from Abort call)  ", &mut abort_from_call);
    report("abort  (from Abort return)", &mut abort_from_return);
    if let (Some(pid), Some(start)) = (args.controller_pid, cpu_start) {
        let used = cpu_ticks(pid).unwrap_or(start) - start;
        let secs = used as f64 / clock_ticks_per_sec();
        println!(
            "controller rss_peak_mib={:.1} cpu_secs={:.2} cpu_cores_avg={:.3} over {:.1}s",
            rss_peak as f64 / 1024.0,
            secs,
            secs / wall.as_secs_f64(),
            wall.as_secs_f64()
        );
    }
    for task in tasks {
        task.abort();
    }
    Ok(())
}

/// One simulated agent: Hello, then ack every desired state and heartbeat at the asked interval.
async fn agent(i: usize, channel: Channel, fleet: Arc<Fleet>) -> anyhow::Result<()> {
    let (tx, rx) = mpsc::channel::<AgentMessage>(8);
    let hello = Hello {
        agent_id: format!("bench-{i:05}"),
        labels: HashMap::from([("bench".to_string(), "yes".to_string())])
            .into_iter()
            .collect(),
        routes: vec![Route {
            name: "r".into(),
            listen: "127.0.0.1:1".into(),
            upstream: "127.0.0.1:2".into(),
            protocol: Protocol::Tcp as i32,
        }],
        version: "fleet-bench".into(),
    };
    tx.send(AgentMessage {
        body: Some(AgentBody::Hello(hello)),
    })
    .await?;
    let mut inbound = AgentServiceClient::new(channel)
        .connect(ReceiverStream::new(rx))
        .await?
        .into_inner();

    let mut joined = false;
    let mut faulted = false;
    let mut generation = 0u64;
    let mut interval = Duration::from_secs(1);
    let mut next_beat = tokio::time::Instant::now() + interval;
    loop {
        tokio::select! {
            msg = inbound.message() => {
                let Some(msg) = msg? else { return Ok(()) };
                let Some(ControllerBody::DesiredState(state)) = msg.body else { continue };
                generation = state.generation;
                if let Some(hb) = state.heartbeat_interval.and_then(|d| Duration::try_from(d).ok())
                    && !hb.is_zero()
                {
                    interval = hb;
                }
                tx.send(AgentMessage {
                    body: Some(AgentBody::Ack(Ack {
                        generation,
                        applied_faults: state.faults.len() as u32,
                        error: None,
                    })),
                })
                .await?;
                let now_faulted = !state.faults.is_empty();
                if now_faulted != faulted {
                    faulted = now_faulted;
                    if faulted {
                        fleet.faulted.fetch_add(1, Ordering::Relaxed);
                    } else {
                        fleet.faulted.fetch_sub(1, Ordering::Relaxed);
                    }
                }
                if !joined {
                    joined = true;
                    fleet.joined.fetch_add(1, Ordering::Relaxed);
                }
                fleet.acked.send_modify(|n| *n += 1);
            }
            _ = tokio::time::sleep_until(next_beat) => {
                next_beat += interval;
                tx.send(AgentMessage {
                    body: Some(AgentBody::Heartbeat(AgentHeartbeat {
                        sent_at: Some(std::time::SystemTime::now().into()),
                        generation,
                        route_slis: vec![],
                        rule_counts: vec![],
                    })),
                })
                .await?;
            }
        }
    }
}

/// Waits on `wake` until `done()` holds, or fails after `timeout`.
async fn wait_until(
    wake: &mut watch::Receiver<u64>,
    timeout: Duration,
    done: impl Fn() -> bool,
) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + timeout;
    while !done() {
        match tokio::time::timeout_at(deadline, wake.changed()).await {
            Ok(r) => r?,
            Err(_) => bail!("timed out after {timeout:?}"),
        }
    }
    Ok(())
}

/// A one-fault experiment that targets every simulated agent.
fn spec(name: &str) -> CreateExperimentRequest {
    let yaml = format!(
        "\
apiVersion: faultline.dev/v1alpha1
kind: Experiment
metadata: {{name: {name}}}
spec:
  targets:
    selector: {{matchLabels: {{bench: \"yes\"}}}}
    mode: all
  faults:
    - route: r
      name: slow
      type: latency
      stream: downstream
      attributes: {{latency: 10}}
  duration: 10m
"
    );
    CreateExperimentRequest {
        spec: Some(create_experiment_request::Spec::SpecYaml(yaml)),
    }
}

fn report(label: &str, samples: &mut [Duration]) {
    if samples.is_empty() {
        return;
    }
    samples.sort();
    let at =
        |q: f64| samples[((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1];
    println!(
        "{label} p50={:.2}ms p99={:.2}ms max={:.2}ms",
        ms(at(0.50)),
        ms(at(0.99)),
        ms(samples[samples.len() - 1])
    );
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// VmRSS of `pid` in KiB.
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// utime + stime of `pid`, in clock ticks.
fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line; 12 and 13 after the name.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Clock ticks per second; 100 on every Linux we run on (`getconf CLK_TCK`).
fn clock_ticks_per_sec() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}
