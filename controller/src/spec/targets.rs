//! `spec.targets`: which agents an experiment acts on (a label selector), which of their
//! routes, how many of the matching agents (all, a count or a percentage), and whether agents
//! that join while it runs are included.

use std::fmt;
use std::num::NonZeroU32;

use super::document::{Fields, Node};
use super::error::{FieldPath, SpecError};
use super::selector::{self, Selector};

/// Validated `spec.targets`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Targets {
    /// Agents whose labels match. [`Selector::everything`] only when the spec said `all: true`.
    pub selector: Selector,
    /// The routes the experiment acts on; agents without any of them are not targeted. When
    /// the spec leaves `routes` out, these are the routes its faults name.
    pub routes: Vec<String>,
    pub mode: Mode,
    /// Agents that join while the experiment runs and match are targeted too (default true).
    pub include_new_agents: bool,
}

/// How many of the matching agents are targeted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    All,
    Count(NonZeroU32),
    Percent(Percent),
}

/// A whole percentage in `1..=100`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Percent(u8);

impl Percent {
    pub const ALL: Percent = Percent(100);

    pub fn new(p: u64) -> Option<Percent> {
        (1..=100).contains(&p).then_some(Percent(p as u8))
    }

    pub fn get(self) -> u8 {
        self.0
    }
}

impl fmt::Display for Percent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}%", self.0)
    }
}

impl Mode {
    /// How many agents to choose out of `eligible` matching ones: a count is capped at what
    /// there is; a percentage rounds down but chooses at least one agent when there is one.
    pub fn count_of(self, eligible: usize) -> usize {
        match self {
            Mode::All => eligible,
            Mode::Count(n) => eligible.min(n.get() as usize),
            Mode::Percent(p) if eligible > 0 => (eligible * p.get() as usize / 100).max(1),
            Mode::Percent(_) => 0,
        }
    }

    /// The largest share of the matching agents this mode can target, when known from the
    /// spec alone (a count depends on how many agents match).
    pub fn max_percent(self) -> Option<Percent> {
        match self {
            Mode::All => Some(Percent::ALL),
            Mode::Count(_) => None,
            Mode::Percent(p) => Some(p),
        }
    }
}

impl fmt::Display for Targets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.mode {
            Mode::All => f.write_str("all agents")?,
            Mode::Count(n) if n.get() == 1 => f.write_str("1 agent")?,
            Mode::Count(n) => write!(f, "{n} agents")?,
            Mode::Percent(p) => write!(f, "{p} of agents")?,
        }
        if !self.selector.is_everything() {
            write!(f, " matching {}", self.selector)?;
        }
        let plural = if self.routes.len() == 1 { "" } else { "s" };
        write!(f, " on route{plural} {}", self.routes.join(", "))
    }
}

/// Reads `spec.targets`. `routes` is left as written (possibly empty): the experiment fills
/// it in from the faults.
pub(crate) fn parse(node: &Node, path: &FieldPath) -> Result<Targets, SpecError> {
    let f = Fields::open(
        node,
        path,
        &[
            "selector",
            "all",
            "routes",
            "mode",
            "value",
            "includeNewAgents",
        ],
        &[],
    )?;

    let all = match f.get("all") {
        Some(n) => n.bool(&f.path("all"))?,
        None => false,
    };
    let selector = match f.get("selector") {
        Some(n) => selector::parse(n, &f.path("selector"))?,
        None => Selector::everything(),
    };
    match (selector.is_everything(), all) {
        (true, false) => {
            let loc = f
                .get("selector")
                .and_then(|n| n.key_loc)
                .or(node.key_loc)
                .or(node.loc);
            return Err(SpecError::invalid(
                f.path("selector"),
                loc,
                "an empty selector would select every agent; give matchLabels or \
                 matchExpressions, or set all: true to target every agent",
            ));
        }
        (false, true) => {
            return Err(SpecError::invalid(
                f.path("all"),
                f.get("all").and_then(Node::field_loc),
                "all: true targets every agent, but a selector is given too; keep one",
            ));
        }
        _ => {}
    }

    let mut routes = Vec::new();
    if let Some(list) = f.get("routes") {
        let path = f.path("routes");
        let items = list.seq(&path)?;
        if items.is_empty() {
            return Err(SpecError::invalid(
                path,
                list.field_loc(),
                "must name at least one route (or leave routes out to use the faults' routes)",
            ));
        }
        for (i, item) in items.iter().enumerate() {
            let at = path.index(i);
            let name = item.str(&at)?;
            if name.is_empty() {
                return Err(SpecError::invalid(
                    at,
                    item.field_loc(),
                    "must not be empty",
                ));
            }
            if routes.iter().any(|r| r == name) {
                return Err(SpecError::invalid(
                    at,
                    item.field_loc(),
                    format!("route {name:?} is listed twice"),
                ));
            }
            routes.push(name.to_owned());
        }
    }

    let mode = parse_mode(&f)?;
    let include_new_agents = match f.get("includeNewAgents") {
        Some(n) => n.bool(&f.path("includeNewAgents"))?,
        None => true,
    };
    Ok(Targets {
        selector,
        routes,
        mode,
        include_new_agents,
    })
}

fn parse_mode(f: &Fields<'_>) -> Result<Mode, SpecError> {
    let mode_path = f.path("mode");
    let mode = match f.get("mode") {
        Some(n) => n.str(&mode_path)?,
        None => "all",
    };
    let value_path = f.path("value");
    let value = f.get("value");
    match mode {
        "all" => {
            if let Some(v) = value {
                return Err(SpecError::invalid(
                    value_path,
                    v.field_loc(),
                    "mode all takes no value (use mode count or percent)",
                ));
            }
            Ok(Mode::All)
        }
        "count" => {
            let v = value.ok_or_else(|| f.missing("value"))?;
            let n = v.u64(&value_path)?;
            let n = u32::try_from(n)
                .ok()
                .and_then(NonZeroU32::new)
                .ok_or_else(|| {
                    SpecError::invalid(
                        value_path.clone(),
                        v.field_loc(),
                        format!("mode count needs a count of at least 1, got {n}"),
                    )
                })?;
            Ok(Mode::Count(n))
        }
        "percent" => {
            let v = value.ok_or_else(|| f.missing("value"))?;
            let n = v.u64(&value_path)?;
            let p = Percent::new(n).ok_or_else(|| {
                SpecError::invalid(
                    value_path.clone(),
                    v.field_loc(),
                    format!("mode percent needs a percentage from 1 to 100, got {n}"),
                )
            })?;
            Ok(Mode::Percent(p))
        }
        other => Err(SpecError::invalid(
            mode_path,
            f.get("mode").and_then(Node::field_loc),
            format!("unknown mode {other:?} (expected all, count or percent)"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::document::Document;

    fn targets(yaml: &str) -> Result<Targets, SpecError> {
        let doc = Document::parse(yaml).unwrap();
        parse(&doc.root, &FieldPath::keys(["spec", "targets"]))
    }

    #[test]
    fn defaults_are_mode_all_and_new_agents_included() {
        let t = targets("selector: {matchLabels: {app: api}}\n").unwrap();
        assert_eq!(t.mode, Mode::All);
        assert!(t.include_new_agents);
        assert!(t.routes.is_empty());
        let t = targets("all: true\nmode: count\nvalue: 3\nincludeNewAgents: false\n").unwrap();
        assert!(t.selector.is_everything());
        assert_eq!(t.mode, Mode::Count(NonZeroU32::new(3).unwrap()));
        assert!(!t.include_new_agents);
    }

    #[test]
    fn empty_selector_needs_all() {
        let e = targets("selector: {}\n").unwrap_err();
        assert_eq!(e.path.to_string(), "spec.targets.selector");
        assert_eq!(e.location.unwrap().line, 1);
        let e = targets("mode: all\n").unwrap_err();
        assert_eq!(e.path.to_string(), "spec.targets.selector");
        let e = targets("all: true\nselector: {matchLabels: {a: b}}\n").unwrap_err();
        assert_eq!(e.path.to_string(), "spec.targets.all");
    }

    #[test]
    fn mode_values_are_range_checked() {
        let base = "selector: {matchLabels: {a: b}}\n";
        let e = targets(&format!("{base}mode: percent\nvalue: 101\n")).unwrap_err();
        assert_eq!(e.path.to_string(), "spec.targets.value");
        assert_eq!(e.location.unwrap().line, 3);
        let e = targets(&format!("{base}mode: count\nvalue: 0\n")).unwrap_err();
        assert_eq!(e.message, "mode count needs a count of at least 1, got 0");
        let e = targets(&format!("{base}mode: count\n")).unwrap_err();
        assert_eq!(e.path.to_string(), "spec.targets.value");
        assert_eq!(e.message, "missing required field");
        let e = targets(&format!("{base}mode: some\n")).unwrap_err();
        assert_eq!(e.path.to_string(), "spec.targets.mode");
        let e = targets(&format!("{base}value: 5\n")).unwrap_err();
        assert_eq!(e.path.to_string(), "spec.targets.value");
    }

    #[test]
    fn count_of_rounds_percentages_down_to_at_least_one() {
        let p = |n| Mode::Percent(Percent::new(n).unwrap());
        assert_eq!(p(20).count_of(10), 2);
        assert_eq!(p(20).count_of(4), 1);
        assert_eq!(p(20).count_of(0), 0);
        assert_eq!(p(100).count_of(7), 7);
        assert_eq!(Mode::Count(NonZeroU32::new(5).unwrap()).count_of(3), 3);
        assert_eq!(Mode::All.count_of(9), 9);
    }
}
