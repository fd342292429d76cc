//! The recent SLIs of every agent route, so an experiment's in-band guards can be judged
//! before its first fault is sent (pre-flight) and start with a full window.
//!
//! Reports are summed per route into one-second slots and kept for [`SPAN`]: memory grows
//! with agents and routes that see traffic, not with the heartbeat rate.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use faultline_agent::metrics::http::SliSnapshot;
use tokio::time::Instant;

/// How far back the history goes; a longer guard window is judged on this much at pre-flight.
pub(super) const SPAN: Duration = Duration::from_secs(60);
/// The width of one slot.
const SLOT: Duration = Duration::from_secs(1);

/// Recent SLIs by agent and route.
#[derive(Default)]
pub(super) struct History {
    routes: HashMap<String, HashMap<String, VecDeque<(Instant, SliSnapshot)>>>,
}

impl History {
    /// Adds an agent's report for `route`, received at `at`.
    pub(super) fn add(&mut self, agent: &str, route: &str, at: Instant, sli: &SliSnapshot) {
        let slots = match self.routes.get_mut(agent) {
            Some(r) => r,
            None => self.routes.entry(agent.to_owned()).or_default(),
        };
        let slots = match slots.get_mut(route) {
            Some(s) => s,
            None => slots.entry(route.to_owned()).or_default(),
        };
        while slots.front().is_some_and(|(t, _)| *t + SPAN < at) {
            slots.pop_front();
        }
        match slots.back_mut() {
            Some((start, sum)) if at >= *start && at < *start + SLOT => sum.merge(sli),
            _ => slots.push_back((at, sli.clone())),
        }
    }

    /// The slots of `agent`'s `route` that overlap the `span` before `now` (so a window shorter
    /// than a slot still sees the slot being filled).
    pub(super) fn since<'a>(
        &'a self,
        agent: &str,
        route: &str,
        now: Instant,
        span: Duration,
    ) -> impl Iterator<Item = (Instant, &'a SliSnapshot)> + 'a {
        let slots = self.routes.get(agent).and_then(|r| r.get(route));
        let keep_from = now.checked_sub(span + SLOT);
        slots
            .into_iter()
            .flatten()
            .filter(move |(t, _)| keep_from.is_none_or(|k| *t >= k))
            .map(|(t, s)| (*t, s))
    }

    /// Drops agents whose every report is older than the span.
    pub(super) fn sweep(&mut self, now: Instant) {
        self.routes.retain(|_, routes| {
            routes.retain(|_, slots| slots.back().is_some_and(|(t, _)| *t + SPAN >= now));
            !routes.is_empty()
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(n: u64) -> SliSnapshot {
        let mut s = SliSnapshot::default();
        s.requests.real[1] = n;
        s
    }

    #[test]
    fn reports_sum_into_slots_and_age_out() {
        let t0 = Instant::now();
        let mut h = History::default();
        h.add("a", "api", t0, &ok(1));
        h.add("a", "api", t0 + Duration::from_millis(500), &ok(2));
        h.add("a", "api", t0 + Duration::from_millis(1500), &ok(4));
        let all: u64 = h
            .since(
                "a",
                "api",
                t0 + Duration::from_secs(2),
                Duration::from_secs(10),
            )
            .map(|(_, s)| s.responses())
            .sum();
        assert_eq!(all, 7);
        let recent: Vec<u64> = h
            .since(
                "a",
                "api",
                t0 + Duration::from_millis(2000),
                Duration::from_millis(100),
            )
            .map(|(_, s)| s.responses())
            .collect();
        assert_eq!(recent, vec![4]);
        assert_eq!(h.since("b", "api", t0, Duration::from_secs(1)).count(), 0);
        h.sweep(t0 + SPAN + Duration::from_secs(2));
        assert!(h.routes.is_empty());
    }
}
