//! The experiment state machine: which states exist and which transitions are legal.
//!
//! ```text
//! pending ──> running ──> completed
//!    │           ├──────> aborted (reason)
//!    │           └──────> failed (reason)
//!    ├──────────────────> aborted (reason)   an operator aborts before the start
//!    └──────────────────> failed (reason)    the start itself fails (e.g. no agent matches)
//! ```
//!
//! `completed`, `aborted` and `failed` are final. A state never transitions to itself, so a
//! second abort of the same experiment is an error the caller can report, not a silent no-op.

use std::fmt;

/// The state of an experiment, with the reason where a state has one.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ExperimentState {
    Pending,
    Running,
    Completed,
    Aborted { reason: String },
    Failed { reason: String },
}

/// The state without its reason: for filters, errors and the transition table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StateKind {
    Pending,
    Running,
    Completed,
    Aborted,
    Failed,
}

/// The reason [`Store::recover_after_restart`](super::Store::recover_after_restart) writes.
pub const CONTROLLER_RESTARTED: &str = "controller restarted";

// === impl ExperimentState ===

impl ExperimentState {
    pub fn aborted(reason: impl Into<String>) -> Self {
        Self::Aborted {
            reason: reason.into(),
        }
    }

    pub fn failed(reason: impl Into<String>) -> Self {
        Self::Failed {
            reason: reason.into(),
        }
    }

    pub fn kind(&self) -> StateKind {
        match self {
            Self::Pending => StateKind::Pending,
            Self::Running => StateKind::Running,
            Self::Completed => StateKind::Completed,
            Self::Aborted { .. } => StateKind::Aborted,
            Self::Failed { .. } => StateKind::Failed,
        }
    }

    /// The reason of an aborted or failed experiment.
    pub fn reason(&self) -> Option<&str> {
        match self {
            Self::Aborted { reason } | Self::Failed { reason } => Some(reason),
            _ => None,
        }
    }

    pub fn is_finished(&self) -> bool {
        self.kind().is_finished()
    }

    /// Rebuilds a state from its stored columns; `None` if they do not fit together.
    pub(crate) fn from_columns(kind: &str, reason: Option<String>) -> Option<Self> {
        let kind = StateKind::from_str(kind)?;
        Some(match (kind, reason) {
            (StateKind::Pending, None) => Self::Pending,
            (StateKind::Running, None) => Self::Running,
            (StateKind::Completed, None) => Self::Completed,
            (StateKind::Aborted, Some(reason)) => Self::Aborted { reason },
            (StateKind::Failed, Some(reason)) => Self::Failed { reason },
            _ => return None,
        })
    }
}

/// `running`, or `aborted: controller restarted`: the form `describe` shows.
impl fmt::Display for ExperimentState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.reason() {
            Some(reason) => write!(f, "{}: {reason}", self.kind()),
            None => write!(f, "{}", self.kind()),
        }
    }
}

// === impl StateKind ===

impl StateKind {
    pub const ALL: [StateKind; 5] = [
        Self::Pending,
        Self::Running,
        Self::Completed,
        Self::Aborted,
        Self::Failed,
    ];

    /// The lowercase name, as stored and as shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Running => "running",
            Self::Completed => "completed",
            Self::Aborted => "aborted",
            Self::Failed => "failed",
        }
    }

    #[allow(clippy::should_implement_trait)] // an Option, not FromStr's Result: callers add context
    pub fn from_str(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    pub fn is_finished(self) -> bool {
        matches!(self, Self::Completed | Self::Aborted | Self::Failed)
    }

    /// Whether an experiment in this state may move to `to`.
    pub fn can_become(self, to: StateKind) -> bool {
        use StateKind::*;
        matches!(
            (self, to),
            (Pending, Running | Aborted | Failed) | (Running, Completed | Aborted | Failed)
        )
    }
}

impl fmt::Display for StateKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transition_table_is_exactly_the_documented_one() {
        use StateKind::*;
        let legal = [
            (Pending, Running),
            (Pending, Aborted),
            (Pending, Failed),
            (Running, Completed),
            (Running, Aborted),
            (Running, Failed),
        ];
        let mut checked = 0;
        for from in StateKind::ALL {
            for to in StateKind::ALL {
                assert_eq!(
                    from.can_become(to),
                    legal.contains(&(from, to)),
                    "{from} -> {to}"
                );
                checked += 1;
            }
        }
        assert_eq!(checked, 25);
    }

    #[test]
    fn finished_states_have_no_way_out() {
        for from in StateKind::ALL.into_iter().filter(|k| k.is_finished()) {
            assert!(StateKind::ALL.into_iter().all(|to| !from.can_become(to)));
        }
    }

    #[test]
    fn columns_round_trip_and_mismatches_are_rejected() {
        let states = [
            ExperimentState::Pending,
            ExperimentState::Running,
            ExperimentState::Completed,
            ExperimentState::aborted("operator"),
            ExperimentState::failed("no agent matched"),
        ];
        for state in states {
            let back = ExperimentState::from_columns(
                state.kind().as_str(),
                state.reason().map(str::to_owned),
            );
            assert_eq!(back.as_ref(), Some(&state));
        }
        assert_eq!(ExperimentState::from_columns("aborted", None), None);
        assert_eq!(
            ExperimentState::from_columns("running", Some("x".into())),
            None
        );
        assert_eq!(ExperimentState::from_columns("paused", None), None);
    }

    #[test]
    fn display_shows_the_reason() {
        assert_eq!(
            ExperimentState::aborted(CONTROLLER_RESTARTED).to_string(),
            "aborted: controller restarted"
        );
        assert_eq!(ExperimentState::Running.to_string(), "running");
    }
}
