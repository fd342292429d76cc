//! `spec.phases`: a ramp. Each phase runs for a time with the faults at an intensity of its
//! own, given as changes to `spec.faults` entries by name: `percentage` (the share of requests
//! or connections) and `attributes` (a delay, a status, a rate), merged over the entry as
//! written. The changed entries go through the agent's rule parser again, so a phase's faults
//! are checked like the spec's own.
//!
//! ```yaml
//! faults:
//!   - {route: api, name: errors, type: http_abort, percentage: 1, attributes: {status: 503}}
//! phases:
//!   - {name: one-percent, duration: 30s}                          # the faults as written
//!   - {name: five-percent, duration: 30s, faults: {errors: {percentage: 5}}}
//!   - {duration: 30s, faults: {errors: {percentage: 25, attributes: {status: 500}}}}
//! stopAtBreakingPoint: true
//! ```
//!
//! With phases, `spec.duration` may be left out (it is their sum) or must equal their sum.
//! Each phase starts from `spec.faults` as written, not from the phase before it.

use std::time::Duration;

use faultline_agent::fault::Fault;

use super::document::{Fields, Node, Value};
use super::error::{FieldPath, SpecError};
use super::faults;

/// One validated phase.
#[derive(Clone, Debug, PartialEq)]
pub struct Phase {
    /// The phase's name: given, or `phase-N` (N from 1).
    pub name: String,
    pub duration: Duration,
    /// Every fault of the experiment at this phase's intensity, in `spec.faults` order.
    pub faults: Vec<(String, Fault)>,
}

/// What a phase may change in a fault.
const CHANGES: [&str; 2] = ["percentage", "attributes"];

/// Reads `spec.phases`, given `spec.faults` as written (`faults_node`) and as parsed.
pub(crate) fn parse(
    node: &Node,
    path: &FieldPath,
    faults_node: &Node,
    faults: &[(String, Fault)],
    experiment: &str,
) -> Result<Vec<Phase>, SpecError> {
    let items = node.seq(path)?;
    if items.is_empty() {
        return Err(SpecError::invalid(
            path.clone(),
            node.field_loc(),
            "a ramp needs at least one phase (or leave phases out)",
        ));
    }
    let entries = match &faults_node.value {
        Value::Seq(entries) => entries.as_slice(),
        _ => &[],
    };
    let mut phases: Vec<Phase> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let at = path.index(i);
        let f = Fields::open(item, &at, &["name", "duration", "faults"], &[])?;
        let name = match f.get("name") {
            Some(n) => {
                let s = n.str(&f.path("name"))?;
                super::experiment::check_name(s)
                    .map_err(|m| SpecError::invalid(f.path("name"), n.field_loc(), m))?;
                s.to_owned()
            }
            None => format!("phase-{}", i + 1),
        };
        if let Some(j) = phases.iter().position(|p| p.name == name) {
            return Err(SpecError::invalid(
                f.path("name"),
                item.field_loc(),
                format!("duplicate phase name {name:?} (also {})", path.index(j)),
            ));
        }
        let duration = f
            .required("duration")?
            .positive_duration(&f.path("duration"))?;
        let mut phase_faults = faults.to_vec();
        if let Some(changes) = f.get("faults") {
            let changes_path = f.path("faults");
            for entry in changes.entries(&changes_path)? {
                let change_path = changes_path.key(&entry.key);
                let k = find(&entry.key, faults).ok_or_else(|| {
                    SpecError::invalid(
                        change_path.clone(),
                        entry.value.key_loc.or(entry.value.loc),
                        format!(
                            "no fault named {:?} in spec.faults (names: {})",
                            entry.key,
                            faults
                                .iter()
                                .map(|(r, f)| format!("{r}/{}", f.name))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    )
                })?;
                let rule = merged(&entries[k], &entry.value, &change_path)?;
                let fault = faults::to_fault(rule, &entry.value, &change_path, experiment)?;
                phase_faults[k].1 = fault;
            }
        }
        phases.push(Phase {
            name,
            duration,
            faults: phase_faults,
        });
    }
    Ok(phases)
}

/// The fault a phase names: `NAME` when one fault has it, or `ROUTE/NAME`.
fn find(key: &str, faults: &[(String, Fault)]) -> Option<usize> {
    if let Some((route, name)) = key.split_once('/') {
        return faults
            .iter()
            .position(|(r, f)| r == route && f.name == name);
    }
    let mut named = faults
        .iter()
        .enumerate()
        .filter(|(_, (_, f))| f.name == key);
    match (named.next(), named.next()) {
        (Some((k, _)), None) => Some(k),
        _ => None,
    }
}

/// The entry's rule with the phase's changes over it.
fn merged(
    entry: &Node,
    change: &Node,
    path: &FieldPath,
) -> Result<serde_json::Map<String, serde_json::Value>, SpecError> {
    let f = Fields::open(change, path, &CHANGES, &[]).map_err(|mut e| {
        if e.message.starts_with("unknown field") {
            e.message = format!(
                "{}; a phase changes a fault's intensity: percentage and attributes",
                e.message
            );
        }
        e
    })?;
    let mut rule = faults::rule_of(entry);
    if let Some(p) = f.get("percentage") {
        rule.insert("percentage".into(), p.to_json());
    }
    if let Some(a) = f.get("attributes") {
        a.entries(&f.path("attributes"))?;
        let attrs = rule
            .entry("attributes")
            .or_insert_with(|| serde_json::Value::Object(Default::default()));
        if let (serde_json::Value::Object(into), serde_json::Value::Object(from)) =
            (attrs, a.to_json())
        {
            into.extend(from);
        }
    }
    Ok(rule)
}

#[cfg(test)]
mod tests {
    use faultline_agent::fault::FaultKind;

    use super::*;
    use crate::spec::Experiment;

    const SPEC: &str = "\
apiVersion: faultline.dev/v1alpha1
kind: Experiment
metadata: {name: ramp}
spec:
  targets: {all: true}
  faults:
    - {route: api, name: errors, type: http_abort, percentage: 1, attributes: {status: 503}}
    - {route: api, name: slow, type: http_delay, attributes: {delay: 10}}
  phases:
    - {name: one, duration: 2s}
    - {duration: 3s, faults: {errors: {percentage: 25}, api/slow: {attributes: {delay: 200}}}}
  stopAtBreakingPoint: true
";

    fn percentage(f: &Fault) -> f64 {
        f.toxicity.get()
    }

    #[test]
    fn phases_change_the_faults_as_written_and_sum_to_the_duration() {
        let e = Experiment::parse(SPEC).unwrap();
        assert_eq!(e.duration, Duration::from_secs(5));
        assert!(e.stop_at_breaking_point);
        assert_eq!(e.phases.len(), 2);
        let (one, two) = (&e.phases[0], &e.phases[1]);
        assert_eq!((one.name.as_str(), two.name.as_str()), ("one", "phase-2"));
        assert_eq!(one.faults, e.faults);
        assert!((percentage(&one.faults[0].1) - 0.01).abs() < 1e-9);
        assert!((percentage(&two.faults[0].1) - 0.25).abs() < 1e-9);
        match &two.faults[1].1.kind {
            FaultKind::HttpDelay(d) => assert_eq!(d.delay.latency, Duration::from_millis(200)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bad_phases_name_the_field() {
        let cases = [
            (
                "errors: {percentage: 25}",
                "nope: {percentage: 5}",
                "spec.phases[1].faults.nope",
            ),
            (
                "errors: {percentage: 25}",
                "errors: {percentage: 250}",
                "spec.phases[1].faults.errors.percentage",
            ),
            (
                "errors: {percentage: 25}",
                "errors: {type: down}",
                "spec.phases[1].faults.errors.type",
            ),
            (
                "errors: {percentage: 25}",
                "errors: {attributes: {status: 99}}",
                "spec.phases[1].faults.errors.attributes.status",
            ),
            ("duration: 3s", "duration: 0s", "spec.phases[1].duration"),
        ];
        for (from, to, field) in cases {
            let spec = SPEC.replace(from, to);
            let e = Experiment::parse(&spec).unwrap_err();
            assert_eq!(e.path.to_string(), field, "{e}");
            assert!(e.location.is_some(), "{e}");
        }
        let e =
            Experiment::parse(&SPEC.replace("  phases:", "  duration: 9s\n  phases:")).unwrap_err();
        assert_eq!(e.path.to_string(), "spec.duration");
        assert!(e.message.contains("5s"), "{e}");
    }
}
