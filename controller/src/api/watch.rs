//! `ExperimentService.Watch`: an experiment's timeline as a server stream.
//!
//! Every place that commits an event (the API and the hub) bumps [`Changes`], a `watch`
//! channel holding a counter. A watch task reads the timeline from the store by sequence,
//! sends what the client has not seen, and waits for the next bump; a `watch` channel keeps
//! only the latest value, so a slow client never holds the controller back: it simply
//! re-reads the store from its last sequence when it catches up. The stream ends after an
//! event that leaves the experiment completed, aborted or failed has been sent, or, for an
//! experiment with guards that ran, after its recovery event (the hub always writes one).

use std::sync::Arc;

use faultline_proto::v1::{self, ExperimentEvent};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use super::{convert, status};
use crate::store::{Event, EventKind, ExperimentId, StoreHandle};

/// How many events may wait for a slow client before the watch task waits for it.
const STREAM_QUEUE: usize = 16;

/// The stream `Watch` answers with.
pub type WatchStream = ReceiverStream<Result<ExperimentEvent, Status>>;

/// A notification that some experiment's timeline changed (only "it changed" matters), and
/// that the controller is shutting down. Cheap to clone; shared by the API and the hub.
#[derive(Clone, Debug)]
pub struct Changes(Arc<watch::Sender<bool>>);

impl Default for Changes {
    fn default() -> Self {
        Changes(Arc::new(watch::channel(false).0))
    }
}

impl Changes {
    /// Wakes every watcher; called after an event is committed.
    pub fn notify(&self) {
        self.0.send_modify(|_| ());
    }

    /// Ends every open Watch stream (at shutdown, so none holds the server's drain open).
    pub fn close(&self) {
        self.0.send_replace(true);
    }

    fn subscribe(&self) -> watch::Receiver<bool> {
        self.0.subscribe()
    }
}

fn is_final(state: i32) -> bool {
    [
        v1::ExperimentState::Completed,
        v1::ExperimentState::Aborted,
        v1::ExperimentState::Failed,
    ]
    .into_iter()
    .any(|s| s as i32 == state)
}

/// Whether a stored spec has guards (and so a recovery watch after its faults).
pub(crate) fn has_guards(spec_json: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(spec_json)
        .ok()
        .and_then(|v| v["spec"]["guards"].as_array().map(|g| !g.is_empty()))
        .unwrap_or(false)
}

/// An experiment with guards is settled once it never ran (failed or aborted while pending)
/// or its recovery watch has been recorded.
fn settled(events: &[Event]) -> bool {
    let ran = events
        .iter()
        .any(|ev| ev.kind == EventKind::STATE_CHANGED && ev.detail["to"] == "running");
    !ran || events.iter().any(|ev| ev.kind == EventKind::RECOVERY)
}

/// Starts the task that feeds one client's stream.
pub(crate) fn spawn(
    store: StoreHandle,
    changes: &Changes,
    id: ExperimentId,
    name: String,
    after: u64,
) -> WatchStream {
    let (tx, rx) = mpsc::channel(STREAM_QUEUE);
    // Subscribed before the first read, so no commit between the read and the wait is missed.
    let mut changed = changes.subscribe();
    tokio::spawn(async move {
        let mut last = after;
        let guarded = match store.get(id).await {
            Ok(e) => has_guards(&e.spec_json),
            Err(e) => {
                let _ = tx.send(Err(status::from_store(e))).await;
                return;
            }
        };
        loop {
            if *changed.borrow_and_update() {
                return;
            }
            let events = match store.timeline(id).await {
                Ok(events) => events,
                Err(e) => {
                    let _ = tx.send(Err(status::from_store(e))).await;
                    return;
                }
            };
            let timeline = convert::timeline(&name, &events);
            // Finished: once its last event is sent (or was seen before `after_sequence`).
            let finished = timeline.last().is_some_and(|e| is_final(e.state))
                && (!guarded || settled(&events));
            for event in timeline {
                if event.sequence <= last {
                    continue;
                }
                last = event.sequence;
                if tx.send(Ok(event)).await.is_err() {
                    return;
                }
            }
            if finished {
                return;
            }
            tokio::select! {
                res = changed.changed() => if res.is_err() { return; },
                () = tx.closed() => return,
            }
        }
    });
    ReceiverStream::new(rx)
}
