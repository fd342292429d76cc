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
//!   guards:                                    # optional: stop early when the service bends
//!     - name: errors                           # in-band, from the agents' heartbeats
//!       agents: {route: redis, metric: errorRate, minRequests: 20}
//!       above: 0.05
//!       window: 10s                            # at least the controller's heartbeat
//!       for: 2s
//!     - name: p99                              # a PromQL query
//!       prometheus: {url: "http://prometheus:9090", query: "..."}
//!       above: 0.25
//!     - name: health                           # an HTTP(S) probe; trips after `failures`
//!       probe: {url: "http://redis-exporter:9121/health", failures: 3}
//!   recovery: {stable: 5s, timeout: 5m}        # defaults
//!   requireTraffic: false                      # default
//!   schedule:                                  # optional: a template run by the controller
//!     cron: "0 9 * * 1-5"                      # or startAt: "2026-12-01T09:00:00Z"
//!     timeZone: Europe/Berlin                  # default UTC
//!     concurrencyPolicy: Forbid                # default; or Allow
//!     historyLimit: 10                         # default: finished runs kept
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
//! - `guards`: `spec.guards` and `spec.recovery` -> [`Guard`]s (agents, Prometheus or probe
//!   sources) and [`Recovery`]; every field and default is documented there.
//! - `schedule`: `spec.schedule` -> [`Schedule`] (`startAt`, or `cron` in a time zone).
//! - `caps`: the controller's server-side limits and [`check`] (which also holds an agents
//!   guard's window to the controller's heartbeat, [`Caps::heartbeat`]).
//! - `error`: [`SpecError`], its [`FieldPath`] and [`Location`].

mod caps;
mod document;
mod error;
mod experiment;
mod faults;
mod guards;
mod phases;
mod schedule;
mod selector;
mod targets;

pub use self::caps::{Caps, DEFAULT_HEARTBEAT, check};
pub use self::error::{Cap, ErrorKind, FieldPath, Location, Segment, SpecError};
pub use self::experiment::{API_VERSION, Experiment, KIND};
pub use self::guards::{
    AgentsSource, BodyCheck, Condition, DEFAULT_EXPECT_STATUS, DEFAULT_FAILURES, DEFAULT_INTERVAL,
    DEFAULT_MIN_REQUESTS, DEFAULT_PROBE_TIMEOUT, DEFAULT_PROMETHEUS_TIMEOUT,
    DEFAULT_RECOVERY_TIMEOUT, DEFAULT_STABLE, DEFAULT_TRIP_AFTER_ERRORS, GrpcCodes, Guard,
    MIN_INTERVAL, Metric, NoData, ProbeSource, PrometheusSource, Recovery, Source, Versus,
};
pub use self::phases::Phase;
pub use self::schedule::{ConcurrencyPolicy, CronSchedule, DEFAULT_HISTORY_LIMIT, Schedule};
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
