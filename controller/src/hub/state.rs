//! The hub task: connected agents, running experiments, desired states.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use faultline_agent::control::convert::{duration_to_proto, fault_spec};
use faultline_proto::v1;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::fanout::Fanouts;
use super::guards::Guards;
use super::history::History;
use super::lifecycle::Starting;
use super::recovery::{Observing, Withdrawal};
use crate::api::watch::Changes;
use crate::config::Leases;
use crate::guard::{RouteReport, Sample};
use crate::metrics::Metrics;
use crate::spec::{self, Caps};
use crate::store::{ExperimentId, StoreError, StoreHandle};
use crate::targets::{self, AgentInfo, Choice, TargetError};

/// How many commands may wait for the hub.
const COMMAND_QUEUE: usize = 256;
/// How many guard readings from pollers may wait for the hub.
const SAMPLE_QUEUE: usize = 256;
/// How often guards are re-read without new reports: windows age, `for` runs out, recovery
/// and withdrawals time out.
const GUARD_TICK: Duration = Duration::from_millis(50);
/// How often the connected agents' `last seen` is refreshed in the store, all in one
/// transaction: per-heartbeat writes would queue the store behind thousands of fsyncs a
/// second and delay the experiment transitions waiting on it.
const SEEN_PERIOD: Duration = Duration::from_secs(10);
/// How many messages may wait for one agent's stream; an agent this far behind is dropped
/// (its stream ends, it clears its faults and redials for the whole state).
pub(super) const SESSION_QUEUE: usize = 16;

/// What a stream sends the agent.
pub(super) type SessionTx = mpsc::Sender<Result<v1::ControllerMessage, tonic::Status>>;

/// Why an experiment could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("experiment {name:?} is {state}, not pending")]
    NotPending { name: String, state: &'static str },
    #[error("stored spec of {name:?} no longer validates: {message}")]
    BadSpec { name: String, message: String },
    #[error("targets: {0}")]
    Targets(#[from] TargetError),
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Conflicts(Vec<targets::Conflict>),
    #[error("pre-flight: {0}")]
    Preflight(String),
    #[error("an emergency stop is in force ({0}); `faultline resume` lifts it")]
    EmergencyStop(String),
    #[error("the controller is shutting down")]
    Stopped,
}

enum Command {
    Hello {
        info: AgentInfo,
        tx: SessionTx,
        reply: oneshot::Sender<u64>,
    },
    Gone {
        id: String,
        session: u64,
    },
    Ack {
        id: String,
        generation: u64,
        error: Option<String>,
    },
    Heartbeat {
        id: String,
        slis: Vec<RouteReport>,
        rules: Vec<v1::RuleCount>,
    },
    LocalTrip {
        id: String,
        trip: v1::LocalGuardTrip,
    },
    Start {
        name: String,
        reply: oneshot::Sender<Result<(), StartError>>,
    },
    Ended {
        id: ExperimentId,
    },
    Agents {
        reply: oneshot::Sender<BTreeMap<String, u64>>,
    },
    StopAll {
        reason: String,
        reply: oneshot::Sender<Vec<String>>,
    },
    Resume,
}

/// A handle on the hub; cheap to clone.
#[derive(Clone, Debug)]
pub struct Hub {
    tx: mpsc::Sender<Command>,
}

/// The hub's task; [`HubTask::finished`] waits for it after the stop signal.
#[derive(Debug)]
pub struct HubTask {
    task: JoinHandle<()>,
    stop: oneshot::Sender<()>,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Command")
    }
}

// === impl Hub ===

impl Hub {
    /// `changes` is bumped after every event the hub commits, for `Watch`.
    /// `emergency_stop`: the reason of a stop in force at start-up (from the store).
    pub fn spawn(
        store: StoreHandle,
        caps: Caps,
        leases: Leases,
        changes: Changes,
        metrics: Arc<Metrics>,
        emergency_stop: Option<String>,
    ) -> (Hub, HubTask) {
        let (tx, rx) = mpsc::channel(COMMAND_QUEUE);
        let (stop, stopped) = oneshot::channel();
        let (samples, samples_rx) = mpsc::channel(SAMPLE_QUEUE);
        let state = State {
            store,
            changes,
            metrics,
            fanouts: Fanouts::default(),
            caps,
            leases,
            agents: BTreeMap::new(),
            generations: BTreeMap::new(),
            running: BTreeMap::new(),
            starting: BTreeMap::new(),
            observing: BTreeMap::new(),
            withdrawals: Vec::new(),
            history: History::default(),
            samples,
            http: crate::guard::http::Http::new(),
            emergency_stop,
            next_session: 0,
        };
        let task = tokio::spawn(state.run(rx, samples_rx, stopped));
        (Hub { tx }, HubTask { task, stop })
    }

    /// Registers a connected agent; answers its session number.
    pub(super) async fn hello(&self, info: AgentInfo, tx: SessionTx) -> Option<u64> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Command::Hello { info, tx, reply })
            .await
            .ok()?;
        rx.await.ok()
    }

    pub(super) async fn gone(&self, id: String, session: u64) {
        let _ = self.tx.send(Command::Gone { id, session }).await;
    }

    pub(super) async fn ack(&self, id: String, generation: u64, error: Option<String>) {
        let _ = self
            .tx
            .send(Command::Ack {
                id,
                generation,
                error,
            })
            .await;
    }

    /// An agent's heartbeat: its route SLIs (already converted) and fault counters.
    pub(super) async fn heartbeat(
        &self,
        id: String,
        slis: Vec<RouteReport>,
        rules: Vec<v1::RuleCount>,
    ) {
        let _ = self.tx.send(Command::Heartbeat { id, slis, rules }).await;
    }

    /// An agent's local guard tripped.
    pub(super) async fn local_trip(&self, id: String, trip: v1::LocalGuardTrip) {
        let _ = self.tx.send(Command::LocalTrip { id, trip }).await;
    }

    /// Starts a pending experiment: targets chosen, stored, state running (committed), then
    /// the desired states pushed.
    pub async fn start(&self, name: String) -> Result<(), StartError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Command::Start { name, reply })
            .await
            .map_err(|_| StartError::Stopped)?;
        rx.await.map_err(|_| StartError::Stopped)?
    }

    /// The experiment has ended elsewhere (aborted): its faults are withdrawn at once.
    pub async fn ended(&self, id: ExperimentId) {
        let _ = self.tx.send(Command::Ended { id }).await;
    }

    /// The emergency stop (already recorded in the store): every running or starting
    /// experiment is aborted with `emergency stop: REASON`, and starts are refused until
    /// [`Hub::resume`]. Answers the experiments aborted.
    pub async fn stop_all(&self, reason: String) -> Result<Vec<String>, StartError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Command::StopAll { reason, reply })
            .await
            .map_err(|_| StartError::Stopped)?;
        rx.await.map_err(|_| StartError::Stopped)
    }

    /// Lifts the emergency stop (already lifted in the store).
    pub async fn resume(&self) {
        let _ = self.tx.send(Command::Resume).await;
    }

    /// Connected agents and their current generation.
    pub async fn agents(&self) -> BTreeMap<String, u64> {
        let (reply, rx) = oneshot::channel();
        if self.tx.send(Command::Agents { reply }).await.is_err() {
            return BTreeMap::new();
        }
        rx.await.unwrap_or_default()
    }
}

// === impl HubTask ===

impl HubTask {
    /// The stop signal (every agent stream ends) and the task to wait for.
    pub fn split(self) -> (oneshot::Sender<()>, JoinHandle<()>) {
        (self.stop, self.task)
    }
}

// === impl State ===

pub(super) struct Agent {
    pub(super) info: AgentInfo,
    tx: SessionTx,
    session: u64,
}

pub(super) struct Running {
    pub(super) exp: spec::Experiment,
    pub(super) seed: u64,
    pub(super) choice: Choice,
    /// Agents already counted in `choice.eligible` (or chosen): a reconnect is not a newcomer.
    pub(super) seen: BTreeSet<String>,
    pub(super) ends: Instant,
    /// When the faults were sent.
    pub(super) started: Instant,
    pub(super) guards: Guards,
    /// The fault counters the targets reported, carried across counter restarts.
    pub(super) counts: super::counts::Counts,
    /// A ramp's current phase and when it ends; `None` without phases.
    pub(super) phase: Option<(usize, Instant)>,
}

impl Running {
    /// The faults at their current intensity: the phase's, or the spec's.
    pub(super) fn faults(&self) -> &[(String, faultline_agent::fault::Fault)] {
        match self.phase {
            Some((i, _)) => &self.exp.phases[i].faults,
            None => &self.exp.faults,
        }
    }

    /// The next instant something is due: a phase change or the end.
    pub(super) fn next_due(&self) -> Instant {
        match self.phase {
            Some((_, ends)) => ends.min(self.ends),
            None => self.ends,
        }
    }
}

pub(super) struct State {
    pub(super) store: StoreHandle,
    pub(super) changes: Changes,
    pub(super) metrics: Arc<Metrics>,
    pub(super) fanouts: Fanouts,
    pub(super) caps: Caps,
    pub(super) leases: Leases,
    pub(super) agents: BTreeMap<String, Agent>,
    /// Last generation sent to each agent, kept across reconnects.
    pub(super) generations: BTreeMap<String, u64>,
    pub(super) running: BTreeMap<ExperimentId, Running>,
    /// Experiments in pre-flight: waiting for their polled guards' first readings.
    pub(super) starting: BTreeMap<ExperimentId, Starting>,
    /// Experiments whose faults ended, while their guards watch the service recover.
    pub(super) observing: BTreeMap<ExperimentId, Observing>,
    /// Cleared states sent after a trip, until every target acknowledged them.
    pub(super) withdrawals: Vec<Withdrawal>,
    pub(super) history: History,
    /// Where pollers send readings.
    pub(super) samples: mpsc::Sender<Sample>,
    pub(super) http: crate::guard::http::Http,
    /// The reason of the emergency stop in force: starts are refused.
    pub(super) emergency_stop: Option<String>,
    next_session: u64,
}

impl State {
    async fn run(
        mut self,
        mut rx: mpsc::Receiver<Command>,
        mut samples: mpsc::Receiver<Sample>,
        mut stopped: oneshot::Receiver<()>,
    ) {
        let mut beat = tokio::time::interval(self.leases.heartbeat);
        beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut guard_tick = tokio::time::interval(GUARD_TICK);
        guard_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut sweep = tokio::time::interval(super::history::SPAN);
        let mut seen = tokio::time::interval(SEEN_PERIOD);
        seen.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let next_end = self.running.values().map(Running::next_due).min();
            tokio::select! {
                biased;
                _ = &mut stopped => break,
                cmd = rx.recv() => match cmd {
                    Some(cmd) => {
                        self.handle(cmd).await;
                        self.metrics.set_agents_connected(self.agents.len());
                    }
                    None => break,
                },
                Some(sample) = samples.recv() => self.sample(sample).await,
                _ = sleep_until(next_end) => self.complete_due().await,
                _ = beat.tick() => self.heartbeat(),
                _ = guard_tick.tick(), if self.guarding() => self.guard_tick().await,
                _ = sweep.tick() => self.history.sweep(Instant::now()),
                _ = seen.tick() => self.touch_seen(),
            }
        }
        for (_, agent) in std::mem::take(&mut self.agents) {
            let _ = agent.tx.try_send(Ok(goodbye("controller shutting down")));
        }
        tracing::debug!("hub stopped");
    }

    async fn handle(&mut self, cmd: Command) {
        match cmd {
            Command::Hello { info, tx, reply } => {
                self.next_session += 1;
                let session = self.next_session;
                let id = info.id.clone();
                tracing::info!(agent = %id, session, "agent connected");
                self.joined(&info).await;
                self.agents.insert(id.clone(), Agent { info, tx, session });
                let _ = reply.send(session);
                self.push(&id);
            }
            Command::Gone { id, session } => {
                if self.agents.get(&id).is_some_and(|a| a.session == session) {
                    self.agents.remove(&id);
                    let took = self.fanouts.dropped(&id);
                    self.observe(took);
                    tracing::info!(agent = %id, session, "agent disconnected");
                }
            }
            Command::Ack {
                id,
                generation,
                error,
            } => match error {
                Some(e) => {
                    tracing::warn!(agent = %id, generation, error = %e, "agent refused desired state");
                    let took = self.fanouts.dropped(&id);
                    self.observe(took);
                }
                None => {
                    tracing::debug!(agent = %id, generation, "agent acknowledged");
                    let took = self.fanouts.acked(&id, generation);
                    self.observe(took);
                    self.withdrawal_acked(&id, generation).await;
                }
            },
            Command::Heartbeat { id, slis, rules } => self.agent_heartbeat(id, slis, rules).await,
            Command::LocalTrip { id, trip } => self.local_trip(id, trip).await,
            Command::Start { name, reply } => self.start(name, reply).await,
            Command::Ended { id } => self.ended(id).await,
            Command::StopAll { reason, reply } => {
                let aborted = self.stop_all(reason).await;
                let _ = reply.send(aborted);
            }
            Command::Resume => {
                tracing::warn!("emergency stop lifted");
                self.emergency_stop = None;
            }
            Command::Agents { reply } => {
                let live = self
                    .agents
                    .keys()
                    .map(|id| (id.clone(), self.generations.get(id).copied().unwrap_or(0)))
                    .collect();
                let _ = reply.send(live);
            }
        }
    }

    /// An agent connected: targeted again by the experiments that chose it, or newly by
    /// those it joins (recorded in the store).
    async fn joined(&mut self, info: &AgentInfo) {
        for (id, run) in &mut self.running {
            if run.choice.chosen.contains(&info.id) {
                continue;
            }
            // A newcomer the selector matches counts once towards the eligible agents (routes
            // unfit for the faults are not told apart here: `targets` keeps that private).
            let new = run.seen.insert(info.id.clone());
            let counts = new && run.exp.targets.selector.matches(&info.labels);
            let joins = targets::joins(&run.exp, run.seed, &run.choice, info, &self.caps);
            if counts {
                run.choice.eligible += 1;
            }
            if !joins {
                continue;
            }
            run.choice.chosen.push(info.id.clone());
            if let Err(e) = self
                .store
                .set_targets(*id, run.choice.chosen.clone(), SystemTime::now())
                .await
            {
                tracing::warn!(experiment = %run.exp.name, error = %e, "cannot record a joining agent");
            }
            self.changes.notify();
        }
    }

    /// Refreshes the connected agents' `last seen` in the background (the hub does not wait).
    fn touch_seen(&self) {
        if self.agents.is_empty() {
            return;
        }
        let ids: Vec<String> = self.agents.keys().cloned().collect();
        let store = self.store.clone();
        tokio::spawn(async move {
            if let Err(e) = store.touch_agents(ids, SystemTime::now()).await {
                tracing::warn!(error = %e, "cannot refresh the agents' last seen");
            }
        });
    }

    fn heartbeat(&mut self) {
        let beat = v1::ControllerMessage {
            body: Some(v1::controller_message::Body::Heartbeat(
                v1::ControllerHeartbeat {
                    sent_at: Some(SystemTime::now().into()),
                },
            )),
        };
        // A full queue skips one beat; a closed one is a session whose `Gone` is on its way.
        for agent in self.agents.values() {
            let _ = agent.tx.try_send(Ok(beat.clone()));
        }
    }

    /// Sends each of `ids` its desired state, and times the fan-out until they acknowledge;
    /// answers the generation each connected agent was sent.
    pub(super) fn push_all(&mut self, ids: &[String]) -> BTreeMap<String, u64> {
        let started = Instant::now();
        let waiting: BTreeMap<String, u64> = ids
            .iter()
            .filter_map(|id| Some((id.clone(), self.push(id)?)))
            .collect();
        self.fanouts.begin(started, waiting.clone());
        waiting
    }

    pub(super) fn observe(&self, took: Vec<std::time::Duration>) {
        took.into_iter().for_each(|t| self.metrics.fanout(t));
    }

    /// Sends `id` its whole desired state under a new generation, if it is connected; answers
    /// the generation sent.
    pub(super) fn push(&mut self, id: &str) -> Option<u64> {
        let agent = self.agents.get(id)?;
        let targeting = || {
            self.running
                .values()
                .filter(|r| r.choice.chosen.iter().any(|c| c == id))
        };
        let faults = targeting()
            .flat_map(|r| r.faults().iter().map(|(route, f)| fault_spec(route, f)))
            .collect();
        let local_guards = targeting()
            .flat_map(|r| super::local::local_guards(&r.exp, &agent.info))
            .collect();
        let generation = self.generations.entry(id.to_owned()).or_insert(0);
        *generation += 1;
        let msg = v1::ControllerMessage {
            body: Some(v1::controller_message::Body::DesiredState(
                v1::DesiredState {
                    generation: *generation,
                    lease: Some(duration_to_proto(self.leases.lease)),
                    faults,
                    heartbeat_interval: Some(duration_to_proto(self.leases.heartbeat)),
                    local_guards,
                },
            )),
        };
        let generation = *generation;
        if let Err(e) = agent.tx.try_send(Ok(msg)) {
            // Too far behind (or gone): end its stream; it clears by itself and redials
            // for the whole state.
            tracing::warn!(agent = %id, error = %e, "cannot send desired state; dropping the session");
            self.agents.remove(id);
            let took = self.fanouts.dropped(id);
            self.observe(took);
            return None;
        }
        Some(generation)
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn goodbye(reason: &str) -> v1::ControllerMessage {
    v1::ControllerMessage {
        body: Some(v1::controller_message::Body::Goodbye(v1::Goodbye {
            reason: reason.to_owned(),
        })),
    }
}
