//! The counters of an experiment's faults, summed over its agents. An agent reports totals
//! since it applied a fault; a new phase (or a reconnect) re-applies the fault and its
//! counters start again from zero, so what was counted before is carried, not lost.

use std::collections::BTreeMap;

use faultline_proto::v1;

/// `[matched, injected, passed]`.
pub(super) type Triple = [u64; 3];

/// Per agent, route and fault: what earlier counter runs counted, and the current run.
#[derive(Debug, Default)]
pub(super) struct Counts {
    per: BTreeMap<(String, String, String), (Triple, Triple)>,
}

impl Counts {
    /// An agent's latest report.
    pub(super) fn report(&mut self, agent: &str, counts: &[v1::RuleCount]) {
        for c in counts {
            let key = (agent.to_owned(), c.route.clone(), c.fault.clone());
            let (carried, last) = self.per.entry(key).or_default();
            let now = [c.matched, c.injected, c.passed];
            if now.iter().zip(last.iter()).any(|(n, l)| n < l) {
                // The agent's counters started again: keep what the last run counted.
                for (c, l) in carried.iter_mut().zip(last.iter()) {
                    *c += l;
                }
            }
            *last = now;
        }
    }

    /// Totals per `(route, fault)`, over every agent and counter run.
    pub(super) fn totals(&self) -> BTreeMap<(String, String), Triple> {
        let mut out: BTreeMap<(String, String), Triple> = BTreeMap::new();
        for ((_, route, fault), (carried, last)) in &self.per {
            let t = out.entry((route.clone(), fault.clone())).or_default();
            for i in 0..3 {
                t[i] += carried[i] + last[i];
            }
        }
        out
    }

    /// How many agents reported.
    pub(super) fn agents(&self) -> usize {
        let mut agents: Vec<&str> = self.per.keys().map(|(a, _, _)| a.as_str()).collect();
        agents.dedup();
        agents.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(fault: &str, matched: u64, injected: u64) -> v1::RuleCount {
        v1::RuleCount {
            route: "api".into(),
            fault: fault.into(),
            matched,
            injected,
            passed: matched - injected,
        }
    }

    #[test]
    fn restarted_counters_are_carried_and_agents_add_up() {
        let mut c = Counts::default();
        c.report("a", &[count("abort", 10, 1)]);
        c.report("a", &[count("abort", 100, 5)]);
        // A new phase re-applied the fault: its counters start again.
        c.report("a", &[count("abort", 20, 6)]);
        c.report("b", &[count("abort", 7, 7)]);
        let t = c.totals();
        assert_eq!(t[&("api".into(), "abort".into())], [127, 18, 109]);
        assert_eq!(c.agents(), 2);
    }
}
