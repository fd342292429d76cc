//! `fleet_bench`: simulates N agents as N `AgentService.Connect` streams from one process and
//! measures how fast the controller fans a desired state out to all of them, or (`--guard`) how
//! fast an in-band SLO guard withdraws a fault from all of them.
//!
//! Each simulated agent says `Hello` with the label `bench=yes` and one route `r`, acks every
//! `DesiredState` at once and sends a heartbeat at the interval the controller asks for. The N
//! streams are multiplexed over `--connections` HTTP/2 connections to stay within fd limits.
//!
//! Fan-out (the default): the route is TCP and heartbeats carry no SLIs. For each of `--reps`
//! experiments the tool records the time from the `Start` RPC (measured both from just before
//! the call and from its return) until every agent has acked a state carrying the fault, then
//! `Abort`s and records the time until every agent has acked the cleared state.
//!
//! Guard (`--guard`): the route is HTTP and every heartbeat carries its SLIs: `--requests`
//! responses, all 2xx while the agent runs no fault and 60 % injected 5xx while it runs one, as
//! an agent running a 60 % `http_abort` would report. Each experiment puts that fault on every
//! agent under an `agents` error-rate guard (above 5 % over 200 ms) and is left to trip. Per
//! experiment the tool records, by its own clock, the time from the earliest heartbeat carrying
//! errors to the moment the last agent received the cleared state, and reads from the
//! controller's timeline the trip → last ack time (`send_ms + last_ack_ms`), the time to detect
//! and how many agents acknowledged.
//!
//! Both print p50/p99/max, and with `--controller-pid` the controller's peak RSS and CPU over
//! the run (from `/proc`). Run it through `bench/fleet.sh` (`--guard`: `bench/guard-abort.sh`),
//! which starts a release controller on loopback.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, bail};
use clap::Parser;
use faultline_proto::prost_types;
use faultline_proto::v1::agent_message::Body as AgentBody;
use faultline_proto::v1::agent_service_client::AgentServiceClient;
use faultline_proto::v1::controller_message::Body as ControllerBody;
use faultline_proto::v1::experiment_service_client::ExperimentServiceClient;
use faultline_proto::v1::{
    AbortExperimentRequest, Ack, AgentHeartbeat, AgentMessage, CountsByOrigin,
    CreateExperimentRequest, ExperimentEvent, ExperimentEventKind, ExperimentState,
    GetExperimentRequest, Hello, Protocol, Route, RouteSli, SliSnapshot, StartExperimentRequest,
    create_experiment_request,
};
use serde_json::Value;
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
    /// How many experiments (apply + abort, or guard trips) to time.
    #[arg(long, default_value_t = 10)]
    reps: usize,
    /// The controller's PID, to sample its RSS and CPU from /proc.
    #[arg(long)]
    controller_pid: Option<u32>,
    /// How long to wait for all agents to ack one change (and, with `--guard`, for the
    /// experiment's recovery) before giving up.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// Time SLO guard trips instead of operator aborts: HTTP routes, SLIs in heartbeats, one
    /// guarded `http_abort` experiment per rep, left to trip.
    #[arg(long)]
    guard: bool,
    /// Before any experiment, hold the connected fleet this long (heartbeating, nothing
    /// else) and print the controller's steady-state RSS and CPU over it.
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
    idle: Duration,
    /// With `--guard`: responses each agent reports per heartbeat.
    #[arg(long, default_value_t = 50)]
    requests: u64,
    /// With `--guard`: the pause after one experiment's recovery before the next starts. The
    /// controller's pre-flight judges the history of the last window plus one second (its
    /// history slot), so a shorter pause may see the previous trip's errors.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    cool_down: Duration,
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
    /// Responses per heartbeat in each route SLI; `None`: heartbeats carry no SLIs (fan-out).
    requests: Option<u64>,
    /// The origin of the nanosecond instants below, and the wall-clock time it was taken.
    epoch: Instant,
    epoch_wall: SystemTime,
    /// Guard mode, per rep: when the earliest heartbeat carrying errors was sent
    /// (`u64::MAX`: none yet), ...
    first_error_ns: AtomicU64,
    /// ... when the latest agent received the state that cleared its fault, ...
    last_clear_ns: AtomicU64,
    /// ... and how many agents have received one.
    cleared: AtomicUsize,
    /// Agents whose stream ended (guard mode reports why, once).
    ended: AtomicUsize,
}

// === impl Fleet ===

impl Fleet {
    fn now_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    /// Forgets the previous rep's guard-mode instants.
    fn reset_rep(&self) {
        self.first_error_ns.store(u64::MAX, Ordering::Relaxed);
        self.last_clear_ns.store(0, Ordering::Relaxed);
        self.cleared.store(0, Ordering::Relaxed);
    }
}

/// The controller's peak RSS and CPU time over the run, from `/proc`.
struct Usage {
    pid: Option<u32>,
    cpu_start: Option<u64>,
    run_start: Instant,
    rss_peak: u64,
}

// === impl Usage ===

impl Usage {
    fn new(pid: Option<u32>) -> Self {
        Usage {
            pid,
            cpu_start: pid.and_then(cpu_ticks),
            run_start: Instant::now(),
            rss_peak: 0,
        }
    }

    fn sample(&mut self) {
        if let Some(kb) = self.pid.and_then(rss_kib) {
            self.rss_peak = self.rss_peak.max(kb);
        }
    }

    fn print(&self) {
        let wall = self.run_start.elapsed();
        if let (Some(pid), Some(start)) = (self.pid, self.cpu_start) {
            let used = cpu_ticks(pid).unwrap_or(start) - start;
            let secs = used as f64 / clock_ticks_per_sec();
            println!(
                "controller rss_peak_mib={:.1} cpu_secs={:.2} cpu_cores_avg={:.3} over {:.1}s",
                self.rss_peak as f64 / 1024.0,
                secs,
                secs / wall.as_secs_f64(),
                wall.as_secs_f64()
            );
        }
    }
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
        requests: args.guard.then_some(args.requests),
        epoch: Instant::now(),
        epoch_wall: SystemTime::now(),
        first_error_ns: AtomicU64::new(u64::MAX),
        last_clear_ns: AtomicU64::new(0),
        cleared: AtomicUsize::new(0),
        ended: AtomicUsize::new(0),
    });
    let mut wake = fleet.acked.subscribe();
    let mut usage = Usage::new(args.controller_pid);

    let connect_start = Instant::now();
    let mut tasks = Vec::with_capacity(args.agents);
    for i in 0..args.agents {
        let channel = channels[i % channels.len()].clone();
        let fleet = fleet.clone();
        tasks.push(tokio::spawn(async move {
            let result = agent(i, channel, fleet.clone()).await;
            if fleet.ended.fetch_add(1, Ordering::Relaxed) == 0 && fleet.requests.is_some() {
                eprintln!("agent {i}: stream ended first: {result:?}");
            }
        }));
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
    usage.sample();
    if !args.idle.is_zero() {
        let mut idle = Usage::new(args.controller_pid);
        while idle.run_start.elapsed() < args.idle {
            tokio::time::sleep(Duration::from_millis(500)).await;
            idle.sample();
        }
        print!("idle, {} agents heartbeating: ", args.agents);
        idle.print();
    }

    let api = ExperimentServiceClient::new(channels[0].clone());
    if args.guard {
        guard_trips(&args, &fleet, &mut wake, api, &mut usage).await?;
    } else {
        fan_out(&args, &fleet, &mut wake, api, &mut usage).await?;
    }
    for task in tasks {
        task.abort();
    }
    Ok(())
}

/// Fan-out mode: start and abort `--reps` experiments, timing each until every agent acked.
async fn fan_out(
    args: &Args,
    fleet: &Fleet,
    wake: &mut watch::Receiver<u64>,
    mut api: ExperimentServiceClient<Channel>,
    usage: &mut Usage,
) -> anyhow::Result<()> {
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
        wait_until(wake, args.timeout, || {
            fleet.faulted.load(Ordering::Relaxed) >= args.agents
        })
        .await
        .with_context(|| format!("all agents acking the fault of {name}"))?;
        let done = Instant::now();
        from_call.push(done - before);
        from_return.push(done - returned);
        usage.sample();

        let before = Instant::now();
        api.abort(AbortExperimentRequest {
            name: name.clone(),
            reason: "fleet_bench".into(),
        })
        .await
        .context("Abort")?;
        let returned = Instant::now();
        wait_until(wake, args.timeout, || {
            fleet.faulted.load(Ordering::Relaxed) == 0
        })
        .await
        .with_context(|| format!("all agents acking the abort of {name}"))?;
        let done = Instant::now();
        abort_from_call.push(done - before);
        abort_from_return.push(done - returned);
        usage.sample();
    }

    hold(usage).await;
    println!(
        "agents={} connections={} reps={}",
        args.agents, args.connections, args.reps
    );
    report("apply  (from Start call)  ", &mut from_call);
    report("apply  (from Start return)", &mut from_return);
    report("abort  (from Abort call)  ", &mut abort_from_call);
    report("abort  (from Abort return)", &mut abort_from_return);
    usage.print();
    Ok(())
}

/// What one guard trip showed.
#[derive(Default)]
struct Trip {
    /// Bench clock: earliest heartbeat with errors → last agent received the cleared state.
    breach_to_all_acked: Option<Duration>,
    /// Bench clock: `Start` call → earliest heartbeat with errors.
    start_to_breach: Option<Duration>,
    /// Wall clocks (ms resolution): earliest heartbeat with errors → the controller's trip.
    breach_to_trip_ms: Option<f64>,
    /// Controller clock: trip → cleared states handed to every stream.
    send_ms: Option<f64>,
    /// Controller clock: those sends → the last ack.
    last_ack_ms: Option<f64>,
    /// Controller clock: fault start → trip.
    time_to_detect_ms: Option<f64>,
    acknowledged: Option<u64>,
    unacknowledged: Vec<String>,
    recovery_ms: Option<f64>,
    /// The guard's value when it tripped.
    value: Option<f64>,
}

/// Guard mode: start `--reps` guarded experiments and let each trip; time each from the
/// breach to the last ack, by the bench's clock and by the controller's.
async fn guard_trips(
    args: &Args,
    fleet: &Fleet,
    wake: &mut watch::Receiver<u64>,
    mut api: ExperimentServiceClient<Channel>,
    usage: &mut Usage,
) -> anyhow::Result<()> {
    // Agents heartbeat at their default 1 s until the first desired state names the
    // controller's interval, and then from their first beat; let that settle, and the
    // controller's history fill, before the first rep.
    cool_down(Duration::from_secs(2), usage).await;
    let tag = std::process::id();
    let mut trips = Vec::with_capacity(args.reps);
    let mut refused = 0;
    for rep in 0..args.reps {
        if rep > 0 {
            cool_down(args.cool_down, usage).await;
        }
        // Pre-flight may refuse a start while the previous trip's errors are in the
        // controller's history; each refusal fails that experiment, so retry under a new name.
        let mut attempt = 0;
        let (name, started_ns) = loop {
            let name = format!("guard-bench-{tag}-{rep}-{attempt}");
            fleet.reset_rep();
            api.create(guarded_spec(&name)).await.context("Create")?;
            let started_ns = fleet.now_ns();
            match api
                .start(StartExperimentRequest { name: name.clone() })
                .await
            {
                Ok(_) => break (name, started_ns),
                Err(e) if e.code() == tonic::Code::FailedPrecondition && attempt < 5 => {
                    println!("{name}: start refused: {}", e.message());
                    refused += 1;
                    attempt += 1;
                    cool_down(args.cool_down, usage).await;
                }
                Err(e) => return Err(e).with_context(|| format!("Start {name}")),
            }
        };

        // Every agent is a target and gets the fault; the trip clears it on every one. The
        // timeline is read only afterwards, so that polling it does not load the controller
        // while the withdrawal is timed.
        let all_cleared = wait_until(wake, args.timeout, || {
            fleet.cleared.load(Ordering::Relaxed) >= args.agents
        })
        .await;
        usage.sample();
        let (state, events) = settle(&mut api, &name, args.timeout, usage).await?;
        if let Err(e) = all_cleared {
            let detail = |kind: ExperimentEventKind| {
                events
                    .iter()
                    .find(|e| e.kind == kind as i32)
                    .map(|e| e.detail_json.chars().take(600).collect::<String>())
            };
            bail!(
                "{name}: {} of {} agents received the cleared state ({e}); {} agents still \
                 run the fault, {} streams ended; the experiment is {} with events {}; \
                 GUARD_TRIPPED {:?}; FAULTS_WITHDRAWN {:?}",
                fleet.cleared.load(Ordering::Relaxed),
                args.agents,
                fleet.faulted.load(Ordering::Relaxed),
                fleet.ended.load(Ordering::Relaxed),
                state_name(state),
                kinds(&events),
                detail(ExperimentEventKind::GuardTripped),
                detail(ExperimentEventKind::FaultsWithdrawn),
            );
        }

        let first_error = fleet.first_error_ns.load(Ordering::Relaxed);
        let last_clear = fleet.last_clear_ns.load(Ordering::Relaxed);
        let mut trip = Trip::default();
        if first_error != u64::MAX {
            trip.breach_to_all_acked =
                Some(Duration::from_nanos(last_clear.saturating_sub(first_error)));
            trip.start_to_breach =
                Some(Duration::from_nanos(first_error.saturating_sub(started_ns)));
        }
        let detail = |kind: ExperimentEventKind| -> Option<Value> {
            let e = events.iter().find(|e| e.kind == kind as i32)?;
            serde_json::from_str(&e.detail_json).ok()
        };
        let Some(tripped) = detail(ExperimentEventKind::GuardTripped) else {
            bail!(
                "{name}: no GUARD_TRIPPED event; the experiment is {} with events {}",
                state_name(state),
                kinds(&events)
            );
        };
        trip.send_ms = tripped["send_ms"].as_f64();
        trip.value = tripped["value"].as_f64();
        trip.time_to_detect_ms = tripped["time_to_detect_ms"].as_f64();
        if let (Some(at), true) = (tripped["tripped_at_ms"].as_f64(), first_error != u64::MAX) {
            let breach = fleet.epoch_wall + Duration::from_nanos(first_error);
            let breach_ms = breach
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_secs_f64() * 1e3)
                .unwrap_or(0.0);
            trip.breach_to_trip_ms = Some(at - breach_ms);
        }
        if let Some(w) = detail(ExperimentEventKind::FaultsWithdrawn) {
            trip.last_ack_ms = w["last_ack_ms"].as_f64();
            trip.acknowledged = w["acknowledged"].as_u64();
            trip.unacknowledged = w["unacknowledged"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
        }
        trip.recovery_ms =
            detail(ExperimentEventKind::Recovery).and_then(|r| r["recovery_time_ms"].as_f64());
        if trip.last_ack_ms.is_none() || !trip.unacknowledged.is_empty() {
            println!(
                "{name}: withdrawal incomplete: acknowledged={:?} last_ack_ms={:?} unacknowledged={:?}",
                trip.acknowledged, trip.last_ack_ms, trip.unacknowledged
            );
        }
        println!(
            "{name}: breach->all_acked={:.2}ms breach->trip={:?}ms send={:?}ms last_ack={:?}ms \
             detect={:?}ms value={:?} acknowledged={:?} recovery={:?}ms",
            trip.breach_to_all_acked.map_or(f64::NAN, ms),
            trip.breach_to_trip_ms.map(round2),
            trip.send_ms.map(round2),
            trip.last_ack_ms.map(round2),
            trip.time_to_detect_ms,
            trip.value.map(|v| (v * 1e4).round() / 1e4),
            trip.acknowledged,
            trip.recovery_ms
        );
        trips.push(trip);
        usage.sample();
    }

    hold(usage).await;
    println!(
        "agents={} connections={} reps={} mode=guard requests_per_heartbeat={}",
        args.agents, args.connections, args.reps, args.requests
    );
    println!("starts refused by pre-flight={refused}");
    let acked: Vec<u64> = trips.iter().filter_map(|t| t.acknowledged).collect();
    let unacked: usize = trips.iter().map(|t| t.unacknowledged.len()).sum();
    println!(
        "trips={}/{} acknowledged min={} max={} of {} agents, unacknowledged total={}",
        trips.len(),
        args.reps,
        acked.iter().min().copied().unwrap_or(0),
        acked.iter().max().copied().unwrap_or(0),
        args.agents,
        unacked
    );
    let pick = |f: fn(&Trip) -> Option<Duration>| -> Vec<Duration> {
        trips.iter().filter_map(f).collect()
    };
    report(
        "breach -> all agents acked (bench clock)     ",
        &mut pick(|t| t.breach_to_all_acked),
    );
    report(
        "trip -> last ack (controller, send+last_ack) ",
        &mut pick(|t| Some(millis(t.send_ms)? + millis(t.last_ack_ms)?)),
    );
    report(
        "  trip -> sends done (send_ms)               ",
        &mut pick(|t| millis(t.send_ms)),
    );
    report(
        "  sends -> last ack (last_ack_ms)            ",
        &mut pick(|t| millis(t.last_ack_ms)),
    );
    report(
        "breach -> trip (wall clocks, 1 ms steps)     ",
        &mut pick(|t| millis(t.breach_to_trip_ms)),
    );
    report(
        "start -> breach (bench clock)                ",
        &mut pick(|t| t.start_to_breach),
    );
    report(
        "time to detect (controller, start -> trip)   ",
        &mut pick(|t| millis(t.time_to_detect_ms)),
    );
    report(
        "recovery (controller, recovery_time_ms)      ",
        &mut pick(|t| millis(t.recovery_ms)),
    );
    usage.print();
    Ok(())
}

/// Polls `name` until it is ABORTED and its RECOVERY event is recorded (or `timeout` passes);
/// answers its state and timeline.
async fn settle(
    api: &mut ExperimentServiceClient<Channel>,
    name: &str,
    timeout: Duration,
    usage: &mut Usage,
) -> anyhow::Result<(i32, Vec<ExperimentEvent>)> {
    let deadline = Instant::now() + timeout;
    loop {
        let got = api
            .get(GetExperimentRequest { name: name.into() })
            .await
            .context("Get")?
            .into_inner();
        let state = got.experiment.map(|e| e.state).unwrap_or_default();
        let recovered = got
            .events
            .iter()
            .any(|e| e.kind == ExperimentEventKind::Recovery as i32);
        if (state == ExperimentState::Aborted as i32 && recovered) || Instant::now() >= deadline {
            return Ok((state, got.events));
        }
        usage.sample();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn state_name(state: i32) -> &'static str {
    ExperimentState::try_from(state).map_or("UNKNOWN", |s| s.as_str_name())
}

/// The timeline's kinds, counted: `CREATED, AGENT_APPLIED x1000, ...`.
fn kinds(events: &[ExperimentEvent]) -> String {
    let mut out: Vec<(i32, usize)> = Vec::new();
    for e in events {
        match out.last_mut() {
            Some((k, n)) if *k == e.kind => *n += 1,
            _ => out.push((e.kind, 1)),
        }
    }
    out.iter()
        .map(|(k, n)| {
            let name = ExperimentEventKind::try_from(*k).map_or("UNKNOWN", |k| k.as_str_name());
            let name = name.trim_start_matches("EXPERIMENT_EVENT_KIND_");
            if *n == 1 {
                name.to_owned()
            } else {
                format!("{name} x{n}")
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Waits `span` between guard trips, sampling the controller's RSS.
async fn cool_down(span: Duration, usage: &mut Usage) {
    let until = Instant::now() + span;
    while Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(250).min(span)).await;
        usage.sample();
    }
}

/// Holds the fleet a few heartbeats more so the CPU figure includes steady-state heartbeats.
async fn hold(usage: &mut Usage) {
    let hold = Instant::now();
    while hold.elapsed() < Duration::from_secs(3) {
        tokio::time::sleep(Duration::from_millis(500)).await;
        usage.sample();
    }
}

/// One simulated agent: Hello, then ack every desired state and heartbeat at the asked interval.
async fn agent(i: usize, channel: Channel, fleet: Arc<Fleet>) -> anyhow::Result<()> {
    let (tx, rx) = mpsc::channel::<AgentMessage>(8);
    // Guard mode judges HTTP SLIs, so the route speaks HTTP there.
    let protocol = if fleet.requests.is_some() {
        Protocol::Http
    } else {
        Protocol::Tcp
    };
    let hello = Hello {
        agent_id: format!("bench-{i:05}"),
        labels: HashMap::from([("bench".to_string(), "yes".to_string())])
            .into_iter()
            .collect(),
        routes: vec![Route {
            name: "r".into(),
            listen: "127.0.0.1:1".into(),
            upstream: "127.0.0.1:2".into(),
            protocol: protocol as i32,
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
                let received_ns = fleet.now_ns();
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
                        fleet.last_clear_ns.fetch_max(received_ns, Ordering::Relaxed);
                        fleet.cleared.fetch_add(1, Ordering::Relaxed);
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
                let route_slis = match fleet.requests {
                    Some(requests) => vec![route_sli(requests, faulted, interval)],
                    None => vec![],
                };
                let sent_ns = fleet.now_ns();
                tx.send(AgentMessage {
                    body: Some(AgentBody::Heartbeat(AgentHeartbeat {
                        sent_at: Some(SystemTime::now().into()),
                        generation,
                        route_slis,
                        rule_counts: vec![],
                    })),
                })
                .await?;
                if faulted && fleet.requests.is_some() {
                    fleet.first_error_ns.fetch_min(sent_ns, Ordering::Relaxed);
                }
            }
        }
    }
}

/// Route `r`'s SLIs over one heartbeat: `requests` responses, all 2xx without a fault; with one,
/// 60 % of them 5xx injected by it (a 60 % `http_abort`) and the rest 2xx.
fn route_sli(requests: u64, faulted: bool, window: Duration) -> RouteSli {
    let injected_5xx = if faulted { requests * 3 / 5 } else { 0 };
    RouteSli {
        route: "r".into(),
        sli: Some(SliSnapshot {
            // 1xx, 2xx, 3xx, 4xx, 5xx.
            requests: Some(CountsByOrigin {
                real: vec![0, requests - injected_5xx, 0, 0, 0],
                injected: vec![0, 0, 0, 0, injected_5xx],
            }),
            ..SliSnapshot::default()
        }),
        window: prost_types::Duration::try_from(window).ok(),
        treatment: None,
        control: None,
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

/// A 60 % `http_abort` on every simulated agent, under an in-band error-rate guard with no
/// `for`: the first window above 5 % trips it.
fn guarded_spec(name: &str) -> CreateExperimentRequest {
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
    - {{route: r, name: abort, type: http_abort, percentage: 60, attributes: {{status: 503}}}}
  duration: 10m
  guards:
    - name: errors
      agents: {{route: r, metric: errorRate, minRequests: 1}}
      above: 0.05
      window: 200ms
  recovery: {{stable: 200ms, timeout: 10s}}
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

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

/// Milliseconds from the controller's timeline as a duration (negatives, from the
/// millisecond rounding of wall-clock times, as 0).
fn millis(v: Option<f64>) -> Option<Duration> {
    v.map(|ms| Duration::from_secs_f64(ms.max(0.0) / 1e3))
}
