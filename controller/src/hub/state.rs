//! The hub task: connected agents, running experiments, desired states.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::SystemTime;

use faultline_agent::control::convert::{duration_to_proto, fault_spec};
use faultline_proto::v1;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::fanout::Fanouts;
use crate::api::watch::Changes;
use crate::config::Leases;
use crate::metrics::Metrics;
use crate::spec::{self, Caps};
use crate::store::{ExperimentId, ExperimentState, StateKind, StoreError, StoreHandle};
use crate::targets::{self, AgentInfo, Choice, TargetError};

/// How many commands may wait for the hub.
const COMMAND_QUEUE: usize = 256;
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
    pub fn spawn(
        store: StoreHandle,
        caps: Caps,
        leases: Leases,
        changes: Changes,
        metrics: Arc<Metrics>,
    ) -> (Hub, HubTask) {
        let (tx, rx) = mpsc::channel(COMMAND_QUEUE);
        let (stop, stopped) = oneshot::channel();
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
            next_session: 0,
        };
        let task = tokio::spawn(state.run(rx, stopped));
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

struct Agent {
    info: AgentInfo,
    tx: SessionTx,
    session: u64,
}

struct Running {
    exp: spec::Experiment,
    seed: u64,
    choice: Choice,
    /// Agents already counted in `choice.eligible` (or chosen): a reconnect is not a newcomer.
    seen: BTreeSet<String>,
    ends: Instant,
}

struct State {
    store: StoreHandle,
    changes: Changes,
    metrics: Arc<Metrics>,
    fanouts: Fanouts,
    caps: Caps,
    leases: Leases,
    agents: BTreeMap<String, Agent>,
    /// Last generation sent to each agent, kept across reconnects.
    generations: BTreeMap<String, u64>,
    running: BTreeMap<ExperimentId, Running>,
    next_session: u64,
}

impl State {
    async fn run(mut self, mut rx: mpsc::Receiver<Command>, mut stopped: oneshot::Receiver<()>) {
        let mut beat = tokio::time::interval(self.leases.heartbeat);
        beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let next_end = self.running.values().map(|r| r.ends).min();
            tokio::select! {
                _ = &mut stopped => break,
                cmd = rx.recv() => match cmd {
                    Some(cmd) => {
                        self.handle(cmd).await;
                        self.metrics.set_agents_connected(self.agents.len());
                    }
                    None => break,
                },
                _ = beat.tick() => self.heartbeat(),
                _ = sleep_until(next_end) => self.complete_due().await,
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
                }
            },
            Command::Start { name, reply } => {
                let result = self.start(name).await;
                let _ = reply.send(result);
            }
            Command::Ended { id } => {
                if let Some(run) = self.running.remove(&id) {
                    self.push_all(&run.choice.chosen);
                }
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

    async fn start(&mut self, name: String) -> Result<(), StartError> {
        let stored = self.store.get(name.clone()).await?;
        if stored.state.kind() != StateKind::Pending {
            return Err(StartError::NotPending {
                name,
                state: stored.state.kind().as_str(),
            });
        }
        let exp = spec::Experiment::parse(&stored.spec_json).map_err(|e| StartError::BadSpec {
            name: name.clone(),
            message: e.message.clone(),
        })?;
        let agents: Vec<AgentInfo> = self.agents.values().map(|a| a.info.clone()).collect();
        let choice = targets::choose(&exp, stored.seed, &agents, &self.caps)?;
        let running: Vec<(&spec::Experiment, &Choice)> =
            self.running.values().map(|r| (&r.exp, &r.choice)).collect();
        let conflicts = targets::conflicts((&exp, &choice), &running);
        if !conflicts.is_empty() {
            return Err(StartError::Conflicts(conflicts));
        }
        // Committed before any fault leaves: a crash from here on is recovered as aborted.
        let now = SystemTime::now();
        self.store
            .set_targets(stored.id, choice.chosen.clone(), now)
            .await?;
        self.store
            .transition(stored.id, ExperimentState::Running, now)
            .await?;
        self.changes.notify();
        tracing::info!(experiment = %name, targets = ?choice.chosen, "experiment running");
        let chosen = choice.chosen.clone();
        let seen = self.agents.keys().cloned().collect();
        self.running.insert(
            stored.id,
            Running {
                ends: Instant::now() + exp.duration,
                exp,
                seed: stored.seed,
                choice,
                seen,
            },
        );
        self.push_all(&chosen);
        Ok(())
    }

    async fn complete_due(&mut self) {
        let now = Instant::now();
        let due: Vec<ExperimentId> = self
            .running
            .iter()
            .filter(|(_, r)| r.ends <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            let Some(run) = self.running.remove(&id) else {
                continue;
            };
            // Withdrawn first: a fault never outlives its experiment's duration, even when
            // the store is slow or refuses (already aborted).
            self.push_all(&run.choice.chosen);
            match self
                .store
                .transition(id, ExperimentState::Completed, SystemTime::now())
                .await
            {
                Ok(_) => {
                    self.changes.notify();
                    tracing::info!(experiment = %run.exp.name, "experiment completed")
                }
                Err(e) => {
                    tracing::debug!(experiment = %run.exp.name, error = %e, "not completed")
                }
            }
        }
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

    /// Sends each of `ids` its desired state, and times the fan-out until they acknowledge.
    fn push_all(&mut self, ids: &[String]) {
        let started = Instant::now();
        let waiting = ids
            .iter()
            .filter_map(|id| Some((id.clone(), self.push(id)?)))
            .collect();
        self.fanouts.begin(started, waiting);
    }

    fn observe(&self, took: Vec<std::time::Duration>) {
        took.into_iter().for_each(|t| self.metrics.fanout(t));
    }

    /// Sends `id` its whole desired state under a new generation, if it is connected; answers
    /// the generation sent.
    fn push(&mut self, id: &str) -> Option<u64> {
        let agent = self.agents.get(id)?;
        let faults = self
            .running
            .values()
            .filter(|r| r.choice.chosen.iter().any(|c| c == id))
            .flat_map(|r| r.exp.faults.iter().map(|(route, f)| fault_spec(route, f)))
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
                    local_guards: Vec::new(),
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
