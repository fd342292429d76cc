//! Which agents an experiment targets, and which experiments collide. Pure functions of the
//! validated spec, the seed and the agents the registry knows: no network, no store.
//!
//! - [`choose`]: when an experiment starts, its eligible agents (matched by the selector, with
//!   every route its faults name, each route speaking a protocol its faults act on) and the
//!   share of them its mode asks for, taken in [`rank`] order.
//! - [`joins`]: whether an agent that connects while the experiment runs is targeted too.
//! - [`conflicts`]: two experiments putting faults on the same route of the same agent.
//!
//! Modules: `rank` (the seeded hash that orders agents, and why it gives stable, spread
//! choices), `eligibility` (routes and protocols), `conflicts`.

mod conflicts;
mod eligibility;
mod rank;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use faultline_agent::route::Protocol;

use crate::spec::{Caps, Experiment, Mode, Selector, SpecError};

pub use self::conflicts::{Conflict, conflicts};
pub use self::rank::rank;

/// What target selection needs to know of a connected agent; the registry fills it from the
/// agent's hello.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentInfo {
    pub id: String,
    pub labels: BTreeMap<String, String>,
    /// Route name -> what it speaks.
    pub routes: BTreeMap<String, Protocol>,
}

/// The agents an experiment targets, as [`choose`] found them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Choice {
    /// Agent ids in the order chosen (lowest [`rank`] first): what the store records.
    pub chosen: Vec<String>,
    /// How many agents were eligible (matched and able to take the faults); percentages and
    /// the `maxPercentOfAgents` cap are shares of this.
    pub eligible: usize,
    /// Agents the selector matched that cannot take the faults, with why, sorted by id.
    /// Agents the selector does not match are not listed.
    pub skipped: Vec<(String, String)>,
}

/// Why an experiment cannot start on the agents there are.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("{}", nothing_eligible(selector, *matched, skipped))]
    NothingEligible {
        selector: Selector,
        /// Agents the selector matched (all of them in `skipped`).
        matched: usize,
        skipped: Vec<(String, String)>,
    },
    #[error(
        "mode count asks for {count} agents, but only {eligible} eligible agent{} match {}",
        if *eligible == 1 { "" } else { "s" },
        describe(selector)
    )]
    CountExceedsEligible {
        count: u32,
        eligible: usize,
        selector: Selector,
    },
    /// The choice is beyond a server-side cap (`maxPercentOfAgents`).
    #[error(transparent)]
    Cap(#[from] SpecError),
    #[error("agent {0:?} is listed twice")]
    DuplicateAgent(String),
}

/// Chooses the agents `exp` targets out of `agents` (in any order), under `seed` (the spec's,
/// or the one the controller picked and recorded).
///
/// The eligible agents are those the selector matches that can take every fault (see
/// [`Choice::skipped`] for the others); `mode` then takes all of them, a count, or
/// [`Mode::count_of`] a percentage, lowest [`rank`] first. The same seed and the same agents
/// give the same choice whatever the order of `agents`.
///
/// Errors: nothing eligible; a count larger than the eligible agents; a choice beyond
/// `maxPercentOfAgents` ([`Caps::check_chosen`], for every mode: a small percentage of a few
/// agents rounds up to one agent, which may be a larger share than the cap allows).
pub fn choose(
    exp: &Experiment,
    seed: u64,
    agents: &[AgentInfo],
    caps: &Caps,
) -> Result<Choice, TargetError> {
    let mut ids = BTreeSet::new();
    if let Some(dup) = agents.iter().find(|a| !ids.insert(a.id.as_str())) {
        return Err(TargetError::DuplicateAgent(dup.id.clone()));
    }

    let selector = &exp.targets.selector;
    let mut matched = 0;
    let mut eligible: Vec<&str> = Vec::new();
    let mut skipped = Vec::new();
    for agent in agents.iter().filter(|a| selector.matches(&a.labels)) {
        matched += 1;
        match eligibility::unfit(exp, agent) {
            Some(why) => skipped.push((agent.id.clone(), why)),
            None => eligible.push(&agent.id),
        }
    }
    skipped.sort();

    if eligible.is_empty() {
        return Err(TargetError::NothingEligible {
            selector: selector.clone(),
            matched,
            skipped,
        });
    }
    if let Mode::Count(n) = exp.targets.mode
        && n.get() as usize > eligible.len()
    {
        return Err(TargetError::CountExceedsEligible {
            count: n.get(),
            eligible: eligible.len(),
            selector: selector.clone(),
        });
    }
    let n = exp.targets.mode.count_of(eligible.len());
    caps.check_chosen(n, eligible.len())?;

    // Ranks are computed once per agent, not once per comparison.
    let mut ranked: Vec<(u64, &str)> = eligible.iter().map(|id| (rank(seed, id), *id)).collect();
    ranked.sort_unstable();
    Ok(Choice {
        chosen: ranked[..n].iter().map(|(_, id)| id.to_string()).collect(),
        eligible: eligible.len(),
        skipped,
    })
}

/// Whether `agent`, connecting while `exp` runs with `choice` so far, is targeted.
///
/// It must be matched by the selector and able to take the faults, as at start. Then:
/// - an agent already chosen (it reconnected or restarted) is targeted again, whatever
///   `includeNewAgents` says: it gets the experiment's desired state back;
/// - otherwise only when `includeNewAgents` is set, and by mode:
///   - all: it joins;
///   - count: it joins when it would have been chosen had it been there, that is when fewer
///     than `count` of the agents chosen so far rank ahead of it (the [`rank`] rule of
///     [`choose`], so the answer for an agent is the same on every reconnect, and after a
///     controller restart, as long as the choice is). The agent it would have displaced
///     keeps its faults: the experiment then targets more than `count`;
///   - percent: it joins when the experiment would otherwise fall below its percentage of
///     the eligible agents, this one included ([`Mode::count_of`] of `eligible + 1`);
/// - and never beyond `maxPercentOfAgents` (`chosen + 1` of `eligible + 1`).
///
/// The caller keeps `choice` current: it counts an eligible newcomer once in
/// `choice.eligible`, and pushes it onto `choice.chosen` when this returns true.
pub fn joins(exp: &Experiment, seed: u64, choice: &Choice, agent: &AgentInfo, caps: &Caps) -> bool {
    if !exp.targets.selector.matches(&agent.labels) || eligibility::unfit(exp, agent).is_some() {
        return false;
    }
    if choice.chosen.contains(&agent.id) {
        return true;
    }
    if !exp.targets.include_new_agents {
        return false;
    }
    let wins = match exp.targets.mode {
        Mode::All => true,
        Mode::Count(n) => {
            let ahead = choice
                .chosen
                .iter()
                .filter(|c| rank::by_rank(seed, c, &agent.id).is_lt())
                .count();
            ahead < n.get() as usize
        }
        Mode::Percent(_) => choice.chosen.len() < exp.targets.mode.count_of(choice.eligible + 1),
    };
    wins && caps
        .check_chosen(choice.chosen.len() + 1, choice.eligible + 1)
        .is_ok()
}

/// `selector app=api`, or `all: true` for the selector that matches everything.
fn describe(selector: &Selector) -> String {
    if selector.is_everything() {
        "all: true".to_string()
    } else {
        format!("selector {selector}")
    }
}

/// Names the selector and, when it matched agents, why the first few of them were skipped.
fn nothing_eligible(selector: &Selector, matched: usize, skipped: &[(String, String)]) -> String {
    const SHOWN: usize = 3;
    if matched == 0 {
        return format!("no agent matches {}", describe(selector));
    }
    let mut msg = if matched == 1 {
        format!("1 agent matches {} but cannot", describe(selector))
    } else {
        format!("{matched} agents match {} but none can", describe(selector))
    };
    msg.push_str(" take the experiment's faults: ");
    for (i, (id, why)) in skipped.iter().take(SHOWN).enumerate() {
        if i > 0 {
            msg.push_str("; ");
        }
        let _ = write!(msg, "{id} {why}");
    }
    if skipped.len() > SHOWN {
        let _ = write!(msg, "; and {} more", skipped.len() - SHOWN);
    }
    msg
}
