//! Server-side caps: limits the controller's operator sets on every experiment, whoever
//! submits it. A spec beyond them is refused with an error naming the cap.
//!
//! In a caps file (YAML or JSON), every cap is optional:
//!
//! ```yaml
//! maxDuration: 30m          # longest spec.duration
//! maxPercentOfAgents: 50    # largest share of the matching agents one experiment may target
//! allowedSelectors:         # a spec's selector must be within one of these
//!   - matchLabels: {env: staging}
//!   - matchExpressions: [{key: track, operator: In, values: [canary]}]
//! ```
//!
//! With no `allowedSelectors` any selector is allowed; an empty entry (`{}`) allows any
//! selector explicitly, including `all: true`.

use std::time::Duration;

use super::document::{Document, Fields};
use super::error::{Cap, ErrorKind, FieldPath, SpecError};
use super::experiment::Experiment;
use super::guards::Source;
use super::selector::{self, Selector};
use super::targets::{Mode, Percent};

/// The caps; [`Caps::default`] has none (and the default heartbeat, 1 s).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caps {
    pub max_duration: Option<Duration>,
    /// Of the agents an experiment's selector matches.
    pub max_percent_of_agents: Option<Percent>,
    /// Empty: any selector.
    pub allowed_selectors: Vec<Selector>,
    /// The controller's heartbeat interval: agents send their SLIs once per heartbeat, so an
    /// agents guard's window must be at least this long. Not a cap and not in the caps file:
    /// the controller sets it from its `--heartbeat`, `faultline validate` from its own.
    pub heartbeat: Duration,
}

/// The controller's default `--heartbeat`.
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(1);

impl Default for Caps {
    fn default() -> Self {
        Caps {
            max_duration: None,
            max_percent_of_agents: None,
            allowed_selectors: Vec::new(),
            heartbeat: DEFAULT_HEARTBEAT,
        }
    }
}

impl Caps {
    /// Parses a caps file; errors are located in `text`.
    pub fn parse(text: &str) -> Result<Caps, SpecError> {
        let doc = Document::parse(text)?;
        if doc.root.is_null() {
            return Ok(Caps::default());
        }
        let f = Fields::open(
            &doc.root,
            &FieldPath::root(),
            &["maxDuration", "maxPercentOfAgents", "allowedSelectors"],
            &[],
        )?;
        let mut caps = Caps::default();
        if let Some(n) = f.get("maxDuration") {
            let path = f.path("maxDuration");
            let s = n.str(&path)?;
            let d = humantime::parse_duration(s.trim()).map_err(|e| {
                SpecError::invalid(
                    path.clone(),
                    n.field_loc(),
                    format!("{s:?} is not a duration such as \"30m\" ({e})"),
                )
            })?;
            caps.max_duration = Some(d);
        }
        if let Some(n) = f.get("maxPercentOfAgents") {
            let path = f.path("maxPercentOfAgents");
            let p = n.u64(&path)?;
            caps.max_percent_of_agents = Some(Percent::new(p).ok_or_else(|| {
                SpecError::invalid(
                    path,
                    n.field_loc(),
                    format!("must be a percentage from 1 to 100, got {p}"),
                )
            })?);
        }
        if let Some(n) = f.get("allowedSelectors") {
            let path = f.path("allowedSelectors");
            for (i, s) in n.seq(&path)?.iter().enumerate() {
                caps.allowed_selectors
                    .push(selector::parse(s, &path.index(i))?);
            }
        }
        Ok(caps)
    }

    /// At start time, for a `count` experiment (whose share depends on how many agents
    /// match): whether choosing `chosen` of `eligible` agents stays within
    /// `maxPercentOfAgents`.
    pub fn check_chosen(&self, chosen: usize, eligible: usize) -> Result<(), SpecError> {
        let Some(max) = self.max_percent_of_agents else {
            return Ok(());
        };
        if chosen * 100 > eligible * max.get() as usize {
            return Err(cap_error(
                Cap::MaxPercentOfAgents,
                FieldPath::keys(["spec", "targets", "value"]),
                format!(
                    "{chosen} of {eligible} matching agents is more than the cap \
                     maxPercentOfAgents ({max})"
                ),
            ));
        }
        Ok(())
    }
}

fn cap_error(cap: Cap, path: FieldPath, message: String) -> SpecError {
    SpecError::new(ErrorKind::Cap(cap), path, None, message)
}

/// Checks a parsed experiment against the caps. The error names the cap and the spec's
/// field, but has no location: [`super::validate`] locates it in the spec's text.
///
/// A `count` experiment's share of agents is only known when it starts; the controller then
/// calls [`Caps::check_chosen`].
///
/// It also checks what depends on the controller's settings rather than on a cap: an agents
/// guard's window must hold at least one heartbeat ([`Caps::heartbeat`]).
pub fn check(exp: &Experiment, caps: &Caps) -> Result<(), SpecError> {
    if let Some(max) = caps.max_duration.filter(|max| exp.duration > *max) {
        return Err(cap_error(
            Cap::MaxDuration,
            FieldPath::keys(["spec", "duration"]),
            format!(
                "{} is longer than the cap maxDuration ({})",
                humantime::format_duration(exp.duration),
                humantime::format_duration(max)
            ),
        ));
    }
    if let Some(max) = caps.max_percent_of_agents {
        match exp.targets.mode.max_percent() {
            Some(p) if p > max => {
                let (field, what) = match exp.targets.mode {
                    Mode::All => ("mode", "mode all (100% of the matching agents)".to_string()),
                    _ => ("value", format!("{p} of the matching agents")),
                };
                return Err(cap_error(
                    Cap::MaxPercentOfAgents,
                    FieldPath::keys(["spec", "targets", field]),
                    format!("{what} is more than the cap maxPercentOfAgents ({max})"),
                ));
            }
            _ => {}
        }
    }
    if !caps.allowed_selectors.is_empty()
        && !caps
            .allowed_selectors
            .iter()
            .any(|allowed| exp.targets.selector.is_within(allowed))
    {
        let sel = &exp.targets.selector;
        let (field, what) = if sel.is_everything() {
            ("all", "all: true (every agent)".to_string())
        } else {
            ("selector", format!("selector {sel}"))
        };
        let allowed: Vec<String> = caps
            .allowed_selectors
            .iter()
            .map(ToString::to_string)
            .collect();
        return Err(cap_error(
            Cap::AllowedSelectors,
            FieldPath::keys(["spec", "targets", field]),
            format!(
                "{what} is not within the cap allowedSelectors (allowed: {})",
                allowed.join("; ")
            ),
        ));
    }
    check_windows(exp, caps.heartbeat)
}

/// Agents send their SLIs once per heartbeat: a shorter window is always empty.
fn check_windows(exp: &Experiment, heartbeat: Duration) -> Result<(), SpecError> {
    let short = exp
        .guards
        .iter()
        .enumerate()
        .find(|(_, g)| matches!(g.source, Source::Agents(_)) && g.window < heartbeat);
    match short {
        Some((i, g)) => Err(SpecError::invalid(
            FieldPath::keys(["spec", "guards"]).index(i).key("window"),
            None,
            format!(
                "{} is shorter than the controller's heartbeat interval ({}): the window would \
                 hold no heartbeat",
                humantime::format_duration(g.window),
                humantime::format_duration(heartbeat)
            ),
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exp(targets: &str, duration: &str) -> Experiment {
        Experiment::parse(&format!(
            "apiVersion: faultline.dev/v1alpha1\nkind: Experiment\nmetadata: {{name: x}}\n\
             spec:\n  targets: {targets}\n  faults: [{{route: r, type: down}}]\n  duration: {duration}\n"
        ))
        .unwrap()
    }

    #[test]
    fn caps_file_parses_and_refuses_unknown_fields() {
        let caps = Caps::parse(
            "maxDuration: 10m\nmaxPercentOfAgents: 25\nallowedSelectors:\n  - matchLabels: {env: staging}\n",
        )
        .unwrap();
        assert_eq!(caps.max_duration, Some(Duration::from_secs(600)));
        assert_eq!(caps.max_percent_of_agents, Percent::new(25));
        assert_eq!(caps.allowed_selectors.len(), 1);
        let e = Caps::parse("maxDurations: 10m\n").unwrap_err();
        assert_eq!(e.path.to_string(), "maxDurations");
        let e = Caps::parse("maxPercentOfAgents: 0\n").unwrap_err();
        assert_eq!(e.path.to_string(), "maxPercentOfAgents");
        assert_eq!(Caps::parse("").unwrap(), Caps::default());
    }

    #[test]
    fn each_cap_is_named() {
        let caps = Caps {
            max_duration: Some(Duration::from_secs(60)),
            max_percent_of_agents: Percent::new(50),
            allowed_selectors: vec![],
            ..Caps::default()
        };
        let sel = "{selector: {matchLabels: {a: b}}, mode: percent, value: 50}";
        assert!(check(&exp(sel, "1m"), &caps).is_ok());

        let e = check(&exp(sel, "2m"), &caps).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Cap(Cap::MaxDuration));
        assert_eq!(e.path.to_string(), "spec.duration");
        assert_eq!(e.message, "2m is longer than the cap maxDuration (1m)");

        let e = check(&exp(&sel.replace("50}", "51}"), "1m"), &caps).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Cap(Cap::MaxPercentOfAgents));
        assert_eq!(e.path.to_string(), "spec.targets.value");

        let e = check(&exp("{selector: {matchLabels: {a: b}}}", "1m"), &caps).unwrap_err();
        assert_eq!(e.path.to_string(), "spec.targets.mode");

        // A count is only judged at start time.
        assert!(check(&exp("{all: true, mode: count, value: 9}", "1m"), &caps).is_ok());
        assert!(caps.check_chosen(5, 10).is_ok());
        assert!(caps.check_chosen(6, 10).is_err());
    }

    #[test]
    fn selectors_must_be_within_an_allowed_one() {
        let caps = Caps {
            allowed_selectors: vec![Selector {
                match_labels: [("env".to_string(), "staging".to_string())].into(),
                ..Selector::default()
            }],
            ..Caps::default()
        };
        assert!(
            check(
                &exp("{selector: {matchLabels: {env: staging, app: a}}}", "1m"),
                &caps
            )
            .is_ok()
        );
        let e = check(&exp("{selector: {matchLabels: {env: prod}}}", "1m"), &caps).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Cap(Cap::AllowedSelectors));
        assert_eq!(e.path.to_string(), "spec.targets.selector");
        assert_eq!(
            e.message,
            "selector env=prod is not within the cap allowedSelectors (allowed: env=staging)"
        );
        let e = check(&exp("{all: true}", "1m"), &caps).unwrap_err();
        assert_eq!(e.path.to_string(), "spec.targets.all");
    }
}
