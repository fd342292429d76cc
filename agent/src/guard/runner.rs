//! The task that evaluates a session's local guards every [`TICK`] and trips them.
//!
//! It owns every guard's state (no lock): the session hands it each applied desired state's
//! guards through a `watch` channel ([`Guards::update`]) and it reconciles: a guard whose
//! definition is unchanged keeps its window, a changed or new one starts a fresh window, a
//! tripped one stays tripped while desired states name it (the route table keeps its faults off,
//! see [`RouteTable::trip_local_guard`]), and a guard no longer named is dropped.
//!
//! A trip clears the guard's faults in the route table first and then queues the
//! `LocalGuardTrip` on the session's outbound stream, ahead of the next heartbeat. The task
//! ends with the session: dropping [`Guards`] aborts it.

use std::sync::Arc;
use std::time::SystemTime;

use faultline_proto::v1;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};

use super::TICK;
use super::eval::{Breach, Evaluator};
use super::spec::{LocalGuard, Trip};
use crate::route::RouteTable;

/// A session's local guards: the handle to their task.
pub struct Guards {
    tx: watch::Sender<Arc<[LocalGuard]>>,
    task: JoinHandle<()>,
}

impl Guards {
    /// Starts the task (on the current runtime: the control side's) with no guards; trips go
    /// to `out`, the session's outbound stream.
    pub fn start(table: Arc<RouteTable>, out: mpsc::Sender<v1::AgentMessage>) -> Self {
        let (tx, rx) = watch::channel(Arc::from(Vec::new()));
        let task = tokio::spawn(run(table, rx, out));
        Guards { tx, task }
    }

    /// The guards of the desired state just applied.
    pub fn update(&self, guards: Vec<LocalGuard>) {
        self.tx.send_replace(guards.into());
    }
}

impl Drop for Guards {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One guard of the current set.
enum Slot {
    Running(Box<Evaluator>),
    /// Tripped, or could not be judged (its route is gone): nothing to do until a desired state
    /// changes or drops it.
    Stopped(LocalGuard),
}

impl Slot {
    fn guard(&self) -> &LocalGuard {
        match self {
            Slot::Running(e) => e.guard(),
            Slot::Stopped(g) => g,
        }
    }
}

async fn run(
    table: Arc<RouteTable>,
    mut guards: watch::Receiver<Arc<[LocalGuard]>>,
    out: mpsc::Sender<v1::AgentMessage>,
) {
    let mut slots: Vec<Slot> = Vec::new();
    let mut ticker = tokio::time::interval(TICK);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        let idle = !slots.iter().any(|s| matches!(s, Slot::Running(_)));
        tokio::select! {
            changed = guards.changed() => {
                if changed.is_err() {
                    return;
                }
                let set = guards.borrow_and_update().clone();
                slots = reconcile(&table, slots, &set);
                ticker.reset();
            }
            _ = ticker.tick(), if !idle => {
                let now = Instant::now();
                for slot in &mut slots {
                    let Slot::Running(e) = slot else { continue };
                    let Some(breach) = e.tick(now) else { continue };
                    let guard = e.guard().clone();
                    let trip = trip(&table, &guard, breach).await;
                    *slot = Slot::Stopped(guard);
                    if let Some(trip) = trip
                        && out.send(trip_message(&trip)).await.is_err()
                    {
                        return;
                    }
                }
            }
        }
    }
}

/// The new slots for `set`, keeping what may be kept of `old`.
fn reconcile(table: &RouteTable, mut old: Vec<Slot>, set: &[LocalGuard]) -> Vec<Slot> {
    let now = Instant::now();
    let metrics = table.metrics();
    set.iter()
        .map(|g| {
            let key = (&g.experiment, &g.name);
            let kept = old
                .iter()
                .position(|s| (&s.guard().experiment, &s.guard().name) == key)
                .map(|i| old.swap_remove(i));
            match kept {
                Some(Slot::Running(e)) if e.guard() == g => Slot::Running(e),
                // Tripped: the faults stay off for as long as the guard is named.
                Some(Slot::Stopped(_)) if table.is_tripped(&g.key()) => Slot::Stopped(g.clone()),
                _ => match metrics.iter().find(|(name, _)| *name == g.route) {
                    Some((_, m)) => {
                        Slot::Running(Box::new(Evaluator::new(g.clone(), m.clone(), now)))
                    }
                    None => Slot::Stopped(g.clone()),
                },
            }
        })
        .collect()
}

/// Clears the guard's faults; `None` when the route table refused (no lease, or the guard is no
/// longer applied), in which case nothing is reported.
async fn trip(table: &RouteTable, guard: &LocalGuard, breach: Breach) -> Option<Trip> {
    let cleared = table.trip_local_guard(&guard.key(), &guard.faults).await;
    let Some(cleared) = cleared else {
        tracing::debug!(experiment = %guard.experiment, guard = %guard.name, "local guard breached with no lease or after it was withdrawn; nothing to clear");
        return None;
    };
    let wall = |at: Instant| {
        let now = Instant::now();
        let sys = SystemTime::now();
        if at <= now {
            sys - (now - at)
        } else {
            sys + (at - now)
        }
    };
    tracing::warn!(
        experiment = %guard.experiment,
        guard = %guard.name,
        route = %guard.route,
        value = breach.value,
        threshold = guard.threshold,
        faults = cleared.faults,
        "local guard tripped: its faults are cleared"
    );
    Some(Trip {
        guard: guard.key(),
        value: breach.value,
        threshold: guard.threshold,
        breached_at: wall(breach.breached_at),
        tripped_at: wall(breach.tripped_at),
        cleared_at: wall(cleared.at),
        cleared_faults: cleared.faults,
        generation: cleared.generation,
    })
}

fn trip_message(trip: &Trip) -> v1::AgentMessage {
    v1::AgentMessage {
        body: Some(v1::agent_message::Body::LocalTrip(
            v1::LocalGuardTrip::from(trip),
        )),
    }
}
