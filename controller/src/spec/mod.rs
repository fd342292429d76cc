//! Experiment specs: the YAML or JSON an operator writes, validated offline into an
//! [`Experiment`] the controller can run.
//!
//! A spec is shaped like a Kubernetes object:
//!
//! ```yaml
//! apiVersion: faultline.dev/v1alpha1
//! kind: Experiment
//! metadata: {name: redis-latency, labels: {team: storage}}
//! spec:
//!   targets:
//!     selector: {matchLabels: {app: redis}}   # or all: true
//!     routes: [redis]                          # optional: the faults' routes
//!     mode: percent                            # all (default) | count | percent
//!     value: 50
//!     includeNewAgents: true                   # default
//!   faults:                                    # the agent's rule shape, plus route
//!     - {route: redis, type: latency, attributes: {latency: 100}}
//!   duration: 5m
//!   allowOverlap: false                        # default
//!   seed: 42                                   # optional
//! ```
//!
//! Unknown fields are errors everywhere; every error names the field path and, where the
//! document says, the line and column.
//!
//! - `document`: text -> a tree whose nodes know their location (serde-saphyr).
//! - `experiment`: the document -> [`Experiment`] (`metadata`, `spec`, durations, routes).
//! - `targets`: `spec.targets` -> [`Targets`] (mode, routes, new agents).
//! - `selector`: label selectors with Kubernetes semantics.
//! - `faults`: `spec.faults` through the agent's own rule parser.
//! - `caps`: the controller's server-side limits and [`check`].
//! - `error`: [`SpecError`], its [`FieldPath`] and [`Location`].

mod caps;
mod document;
mod error;
mod experiment;
mod faults;
mod guards;
mod selector;
mod targets;

pub use self::caps::{Caps, check};
pub use self::error::{Cap, ErrorKind, FieldPath, Location, Segment, SpecError};
pub use self::guards::{
    AgentsSource, BodyCheck, Condition, Guard, GrpcCodes, Metric, NoData, ProbeSource,
    PrometheusSource, Recovery, Source,
};
pub use self::experiment::{API_VERSION, Experiment, KIND};
pub use self::selector::{Operator, Requirement, Selector};
pub use self::targets::{Mode, Percent, Targets};

/// Parses a spec and checks it against `caps`: what the controller's Validate and Create do,
/// and `faultline validate` offline. Every error, caps included, is located in `text`.
pub fn validate(text: &str, caps: &Caps) -> Result<Experiment, SpecError> {
    let doc = document::Document::parse(text)?;
    let exp = experiment::from_document(&doc)?;
    check(&exp, caps).map_err(|mut e| {
        e.location = e.location.or_else(|| doc.locate(&e.path));
        e
    })?;
    Ok(exp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cap_errors_are_located_in_the_spec() {
        let spec = "\
apiVersion: faultline.dev/v1alpha1
kind: Experiment
metadata: {name: x}
spec:
  targets: {all: true}
  faults: [{route: r, type: down}]
  duration: 2h
";
        let caps = Caps::parse("maxDuration: 1h\n").unwrap();
        let e = validate(spec, &caps).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Cap(Cap::MaxDuration));
        assert_eq!(
            e.location,
            Some(Location {
                line: 7,
                column: 13
            })
        );
        assert!(validate(spec, &Caps::default()).is_ok());
    }
}
