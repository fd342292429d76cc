//! The local guards of the applied desired state, and the faults the tripped ones switched off.
//!
//! A tripped guard keeps its faults off for as long as desired states name the guard (the
//! controller sends a state without them once it has processed the trip; until then a re-sent
//! state must not bring them back). A desired state without the guard forgets the trip; the
//! end of the lease forgets them all. Plain data: the route table holds it under its lock, so a
//! trip and a desired state are ordered one after the other, never interleaved.

use std::collections::{BTreeMap, BTreeSet};

use crate::guard::{FaultRef, GuardKey};

#[derive(Debug, Default)]
pub(crate) struct Trips {
    /// The guards of the applied desired state.
    applied: BTreeSet<GuardKey>,
    /// The tripped guards and the faults each switched off.
    tripped: BTreeMap<GuardKey, Vec<FaultRef>>,
}

impl Trips {
    /// A new desired state with these guards is applied: trips of guards it does not name are
    /// forgotten.
    pub(crate) fn applied(&mut self, guards: impl IntoIterator<Item = GuardKey>) {
        self.applied = guards.into_iter().collect();
        self.tripped.retain(|k, _| self.applied.contains(k));
    }

    /// Whether a tripped guard keeps the controller fault `name` on `route` off.
    pub(crate) fn keeps_off(&self, route: &str, name: &str) -> bool {
        self.tripped
            .values()
            .flatten()
            .any(|f| f.route == route && f.name == name)
    }

    pub(crate) fn is_tripped(&self, guard: &GuardKey) -> bool {
        self.tripped.contains_key(guard)
    }

    /// Records a trip; false (and nothing recorded) unless the guard is applied and has not
    /// tripped yet.
    pub(crate) fn trip(&mut self, guard: &GuardKey, faults: &[FaultRef]) -> bool {
        if !self.applied.contains(guard) || self.tripped.contains_key(guard) {
            return false;
        }
        self.tripped.insert(guard.clone(), faults.to_vec());
        true
    }

    /// The lease ended: no guard is applied any more.
    pub(crate) fn clear(&mut self) {
        self.applied.clear();
        self.tripped.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> GuardKey {
        GuardKey {
            experiment: "exp".into(),
            name: name.into(),
        }
    }

    fn fault(name: &str) -> FaultRef {
        FaultRef {
            route: "api".into(),
            name: name.into(),
        }
    }

    #[test]
    fn a_trip_lasts_while_its_guard_is_named() {
        let mut t = Trips::default();
        assert!(!t.trip(&key("g"), &[fault("abort")]), "not applied");
        t.applied([key("g"), key("h")]);
        assert!(t.trip(&key("g"), &[fault("abort")]));
        assert!(!t.trip(&key("g"), &[fault("abort")]), "trips once");
        assert!(t.keeps_off("api", "abort"));
        assert!(!t.keeps_off("api", "other"));
        assert!(!t.keeps_off("web", "abort"));
        t.applied([key("g")]);
        assert!(t.is_tripped(&key("g")), "still named");
        t.applied([key("h")]);
        assert!(!t.is_tripped(&key("g")), "forgotten");
        assert!(!t.keeps_off("api", "abort"));
        t.applied([key("g")]);
        assert!(t.trip(&key("g"), &[fault("abort")]));
        t.clear();
        assert!(!t.keeps_off("api", "abort"));
        assert!(!t.trip(&key("g"), &[]), "no lease, no guards");
    }
}
