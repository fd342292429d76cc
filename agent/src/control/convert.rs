//! The boundary between the control plane's wire types (`faultline_proto::v1`) and the agent's
//! domain types. Protobuf stops here: every message is converted once, with `TryFrom`, into a
//! validated value, and every error names the field path in the message
//! (`faults[2].http_abort.status: must be an HTTP status 200..599, got 99`).
//!
//! - [`faults`]: `v1::FaultSpec` <-> [`RouteFault`] (a [`Fault`](crate::fault::Fault) and its
//!   route). Into the domain it runs the admin API's own parsing, so both boundaries enforce
//!   the same rules.
//! - [`guards`]: `v1::LocalGuard` <-> [`LocalGuard`](crate::guard::LocalGuard) (each fault it
//!   names must be in the same desired state) and the domain trip out as `v1::LocalGuardTrip`.
//! - [`sli`]: `v1::SliSnapshot` / `v1::HistogramSnapshot` <-> the mergeable
//!   [`SliSnapshot`](crate::metrics::http::SliSnapshot) and
//!   [`HistogramSnapshot`](crate::metrics::histogram::HistogramSnapshot).
//! - here: `v1::DesiredState` <-> [`route::DesiredState`](DesiredState) (the lease is required
//!   and positive) and the [`ConvertError`] every conversion returns.
//!
//! The controller builds its messages with the `From` directions of the same functions, so the
//! two ends cannot drift apart.

pub mod faults;
pub mod guards;
pub mod sli;

use std::time::Duration;

use faultline_proto::prost_types;
use faultline_proto::v1;

use crate::route::DesiredState;

pub use self::faults::{RouteFault, fault_spec};

/// A wire message that does not convert into a domain value: the path of the offending field
/// in the message (`faults[2].http_abort.status`, `lease`, `requests.real`) and what is wrong
/// with it. A gRPC handler maps it to `InvalidArgument`; an agent puts it in its `Ack.error`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct ConvertError {
    /// The field path, in the `.proto` field names, from the converted message.
    pub path: String,
    pub message: String,
}

impl ConvertError {
    pub fn new(path: impl Into<String>, message: impl std::fmt::Display) -> Self {
        ConvertError {
            path: path.into(),
            message: message.to_string(),
        }
    }

    /// The same error seen from an enclosing message: `prefix` is the field that holds the
    /// converted one (`faults[2]`, `latency`).
    pub fn within(mut self, prefix: &str) -> Self {
        self.path = if self.path.is_empty() {
            prefix.to_owned()
        } else {
            format!("{prefix}.{}", self.path)
        };
        self
    }
}

// === impl DesiredState ===

impl TryFrom<v1::DesiredState> for DesiredState {
    type Error = ConvertError;

    /// Converts every fault (errors name `faults[i]...`), every local guard (errors name
    /// `local_guards[i]...`; each guard's faults must be among this state's faults) and the
    /// lease, which is required and
    /// must be positive: no fault may outlive the control that asked for it, so a missing lease
    /// is an error, never "forever". `heartbeat_interval` is not part of the route table's
    /// desired state; read it with [`heartbeat_interval`] before converting.
    fn try_from(msg: v1::DesiredState) -> Result<Self, ConvertError> {
        let lease = msg.lease.ok_or_else(|| {
            ConvertError::new(
                "lease",
                "missing required field (a desired state without a lease is rejected)",
            )
        })?;
        let lease = positive_duration(lease, "lease")?;
        let faults = msg
            .faults
            .into_iter()
            .enumerate()
            .map(|(i, spec)| {
                RouteFault::try_from(spec)
                    .map(|rf| (rf.route, rf.fault))
                    .map_err(|e| e.within(&format!("faults[{i}]")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let guards = guards::local_guards(msg.local_guards, &faults)?;
        Ok(DesiredState {
            generation: msg.generation,
            lease,
            faults,
            guards,
        })
    }
}

impl From<&DesiredState> for v1::DesiredState {
    /// The message the controller sends; `heartbeat_interval` is left absent (the agent's
    /// default): set it on the result if needed.
    fn from(d: &DesiredState) -> Self {
        v1::DesiredState {
            generation: d.generation,
            lease: Some(duration_to_proto(d.lease)),
            faults: d
                .faults
                .iter()
                .map(|(route, fault)| fault_spec(route, fault))
                .collect(),
            heartbeat_interval: None,
            local_guards: d.guards.iter().map(v1::LocalGuard::from).collect(),
        }
    }
}

/// The heartbeat interval a desired state asks for: `None` when absent (use the agent's
/// default); a zero or negative interval is an error.
pub fn heartbeat_interval(msg: &v1::DesiredState) -> Result<Option<Duration>, ConvertError> {
    msg.heartbeat_interval
        .map(|d| positive_duration(d, "heartbeat_interval"))
        .transpose()
}

/// A `google.protobuf.Duration` that must be longer than zero.
fn positive_duration(d: prost_types::Duration, path: &str) -> Result<Duration, ConvertError> {
    let shown = format!("{}s {}ns", d.seconds, d.nanos);
    let d = Duration::try_from(d)
        .map_err(|_| ConvertError::new(path, format!("must be positive, got {shown}")))?;
    if d.is_zero() {
        return Err(ConvertError::new(path, "must be longer than zero"));
    }
    Ok(d)
}

/// A `std::time::Duration` on the wire (saturating at `i64::MAX` seconds).
pub fn duration_to_proto(d: Duration) -> prost_types::Duration {
    prost_types::Duration {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: d.subsec_nanos() as i32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desired(
        lease: Option<prost_types::Duration>,
        faults: Vec<v1::FaultSpec>,
    ) -> v1::DesiredState {
        v1::DesiredState {
            generation: 7,
            lease,
            faults,
            heartbeat_interval: None,
            local_guards: Vec::new(),
        }
    }

    fn secs(seconds: i64, nanos: i32) -> Option<prost_types::Duration> {
        Some(prost_types::Duration { seconds, nanos })
    }

    #[test]
    fn a_lease_is_required_and_positive() {
        let err = DesiredState::try_from(desired(None, vec![])).unwrap_err();
        assert_eq!(err.path, "lease");
        for bad in [secs(0, 0), secs(-1, 0), secs(0, -5)] {
            let err = DesiredState::try_from(desired(bad, vec![])).unwrap_err();
            assert_eq!(err.path, "lease", "{bad:?}: {err}");
        }
        let ok = DesiredState::try_from(desired(secs(1, 500_000_000), vec![])).unwrap();
        assert_eq!(ok.lease, Duration::from_millis(1500));
        assert_eq!(ok.generation, 7);
        assert!(ok.faults.is_empty());
    }

    #[test]
    fn fault_errors_name_their_index() {
        let good = fault_spec(
            "web",
            &crate::fault::Fault {
                name: "down".into(),
                kind: crate::fault::FaultKind::Down(crate::fault::Down),
                direction: crate::fault::Direction::Both,
                toxicity: crate::fault::Probability::ALWAYS,
                matcher: None,
                cohort: None,
                expires_at: None,
                origin: crate::fault::Origin::Controller {
                    experiment: "exp".into(),
                },
            },
        );
        let mut bad = good.clone();
        bad.probability = Some(2.0);
        let err = DesiredState::try_from(desired(secs(5, 0), vec![good, bad])).unwrap_err();
        assert_eq!(err.path, "faults[1].probability");
        assert_eq!(
            err.to_string(),
            "faults[1].probability: must be between 0 and 1, got 2"
        );
    }

    #[test]
    fn heartbeat_interval_is_optional_but_positive() {
        let mut msg = desired(secs(5, 0), vec![]);
        assert_eq!(heartbeat_interval(&msg), Ok(None));
        msg.heartbeat_interval = secs(2, 0);
        assert_eq!(heartbeat_interval(&msg), Ok(Some(Duration::from_secs(2))));
        msg.heartbeat_interval = secs(0, 0);
        assert_eq!(
            heartbeat_interval(&msg).unwrap_err().path,
            "heartbeat_interval"
        );
    }
}
