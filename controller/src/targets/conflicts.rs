//! Two running experiments may not put faults on the same route of the same agent, unless the
//! one starting second says it may (`allowOverlap: true`): the rule keeps one experiment's
//! results from being the other's faults.

use std::collections::BTreeSet;
use std::fmt;

use super::Choice;
use super::eligibility::fault_routes;
use crate::spec::Experiment;

/// A route of an agent that a new experiment would fault while another already does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conflict {
    pub agent: String,
    pub route: String,
    pub other_experiment: String,
}

impl fmt::Display for Conflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "route {:?} of agent {:?} already has faults of running experiment {:?}",
            self.route, self.agent, self.other_experiment
        )
    }
}

/// Where the experiment `new` (with its choice of agents) would put faults on a route of an
/// agent that one of the `running` experiments already faults. Empty when `new` allows
/// overlap. An entry of `running` with the new experiment's own name is not a conflict, so
/// callers may pass every running experiment.
///
/// Ordered by `running`, then by the new experiment's chosen agents, then by route.
pub fn conflicts(new: (&Experiment, &Choice), running: &[(&Experiment, &Choice)]) -> Vec<Conflict> {
    let (exp, choice) = new;
    if exp.allow_overlap {
        return Vec::new();
    }
    let routes: BTreeSet<&str> = fault_routes(exp).into_iter().collect();
    let mut found = Vec::new();
    for (other, other_choice) in running {
        if other.name == exp.name {
            continue;
        }
        let their_routes: BTreeSet<&str> = fault_routes(other).into_iter().collect();
        let shared: Vec<&str> = routes.intersection(&their_routes).copied().collect();
        if shared.is_empty() {
            continue;
        }
        let theirs: BTreeSet<&str> = other_choice.chosen.iter().map(String::as_str).collect();
        for agent in choice.chosen.iter().filter(|a| theirs.contains(a.as_str())) {
            for route in &shared {
                found.push(Conflict {
                    agent: agent.clone(),
                    route: route.to_string(),
                    other_experiment: other.name.clone(),
                });
            }
        }
    }
    found
}
