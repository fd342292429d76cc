//! Desired-state fan-out timing: from the hub sending an experiment's change to the targeted
//! agents until the last of them acknowledged that generation (or a later one).
//!
//! Bounded: at most [`MAX_PENDING`] fan-outs are tracked; older ones are forgotten unmeasured.
//! An agent that leaves or refuses is dropped from its fan-outs; one left with nobody that
//! acknowledged is not measured (it never completed).

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use tokio::time::Instant;

const MAX_PENDING: usize = 64;

#[derive(Debug, Default)]
pub(super) struct Fanouts {
    pending: VecDeque<Fanout>,
}

#[derive(Debug)]
struct Fanout {
    started: Instant,
    /// Agent id -> the generation it must acknowledge.
    waiting: BTreeMap<String, u64>,
    acked: usize,
}

impl Fanouts {
    pub(super) fn begin(&mut self, started: Instant, waiting: BTreeMap<String, u64>) {
        if waiting.is_empty() {
            return;
        }
        if self.pending.len() == MAX_PENDING {
            self.pending.pop_front();
        }
        self.pending.push_back(Fanout {
            started,
            waiting,
            acked: 0,
        });
    }

    /// `id` acknowledged `generation`; answers the fan-outs that are now complete.
    pub(super) fn acked(&mut self, id: &str, generation: u64) -> Vec<Duration> {
        for f in &mut self.pending {
            if f.waiting.get(id).is_some_and(|g| *g <= generation) {
                f.waiting.remove(id);
                f.acked += 1;
            }
        }
        self.sweep()
    }

    /// `id` left or refused: it will not acknowledge.
    pub(super) fn dropped(&mut self, id: &str) -> Vec<Duration> {
        for f in &mut self.pending {
            f.waiting.remove(id);
        }
        self.sweep()
    }

    fn sweep(&mut self) -> Vec<Duration> {
        let mut done = Vec::new();
        self.pending.retain(|f| {
            if !f.waiting.is_empty() {
                return true;
            }
            if f.acked > 0 {
                done.push(f.started.elapsed());
            }
            false
        });
        done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_fanout_ends_at_the_last_acknowledgement() {
        let mut f = Fanouts::default();
        f.begin(
            Instant::now(),
            [("a".to_owned(), 3), ("b".to_owned(), 7)].into(),
        );
        tokio::time::advance(Duration::from_millis(5)).await;
        assert!(f.acked("a", 3).is_empty());
        assert!(
            f.acked("b", 6).is_empty(),
            "an older generation does not count"
        );
        tokio::time::advance(Duration::from_millis(5)).await;
        assert_eq!(f.acked("b", 7), vec![Duration::from_millis(10)]);
        assert!(f.pending.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_fanout_nobody_acknowledged_is_not_measured() {
        let mut f = Fanouts::default();
        f.begin(Instant::now(), [("a".to_owned(), 1)].into());
        assert!(f.dropped("a").is_empty());
        assert!(f.pending.is_empty());
    }
}
