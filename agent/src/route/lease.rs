//! The controller's lease and the desired state it covers.
//!
//! The controller pushes each agent the *whole* set of faults it wants, with a generation and a
//! lease. [`RouteTable::apply_desired`](super::RouteTable::apply_desired) swaps every
//! controller-issued fault for that set in one critical section; heartbeats renew the lease
//! ([`RouteTable::renew_lease`](super::RouteTable::renew_lease)); when it runs out the expiry task
//! clears those faults, and when the stream breaks the caller clears them
//! ([`RouteTable::clear_controller_faults`](super::RouteTable::clear_controller_faults)).
//! Admin-issued faults are never touched by any of this.
//!
//! Invariant: **controller-issued faults exist only while a lease is held.** `apply_desired` is
//! the only way to add one and grants the lease in the same critical section; `add_fault` refuses
//! them; every end of the lease removes them all in the critical section that ends it. So a
//! fault cannot outlive its lease whatever the caller does or forgets.
//!
//! A desired state also carries the local guards (see [`crate::guard`]): each guard's route must
//! be an `http` or `grpc` route of the agent, or the whole state is refused.
//!
//! This module holds the parts that need no lock: the messages, the lease's bookkeeping, the
//! validation of a desired set and the merge that keeps an unchanged fault's identity.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::table::{check_protocol, validate_name};
use super::{ActiveFault, Protocol, RouteError};
use crate::fault::{Fault, Origin};
use crate::guard::LocalGuard;
use crate::metrics::FaultCounters;

/// The controller's whole desired fault set for this agent.
#[derive(Clone, Debug)]
pub struct DesiredState {
    /// Orders desired states while a lease is held: one older than the applied one is stale.
    pub generation: u64,
    /// How long the faults live without word from the controller; must be more than zero.
    pub lease: Duration,
    /// Every controller-issued fault the agent should have, as `(route name, fault)`; each
    /// fault's origin is `Origin::Controller`. An empty set clears them all (and holds a lease).
    pub faults: Vec<(String, Fault)>,
    /// The local guards the agent evaluates itself (see [`crate::guard`]); each names a route
    /// of this agent and faults of `faults`.
    pub guards: Vec<LocalGuard>,
}

/// What an accepted desired state did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Applied {
    pub generation: u64,
    /// Controller-issued faults now active, across all routes: the desired ones less those a
    /// tripped local guard keeps off.
    pub faults: usize,
}

/// A held lease, as the heartbeat reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaseStatus {
    /// The generation of the desired state applied under this lease.
    pub generation: u64,
    /// The lease time last granted or renewed.
    pub term: Duration,
    /// When every controller-issued fault goes, unless renewed first.
    pub deadline: Instant,
}

/// Why a desired state was refused. A refused desired state changes nothing.
#[derive(Debug, thiserror::Error)]
pub enum DesiredError {
    #[error("generation: {got} is older than the applied generation {current} (a stale message)")]
    Stale { got: u64, current: u64 },
    #[error("lease: must be longer than zero")]
    ZeroLease,
    /// One entry of `faults` is wrong; `index` is its position in the message.
    #[error("faults[{index}] (route {route:?}, fault {fault:?}): {source}")]
    Entry {
        index: usize,
        route: String,
        fault: String,
        #[source]
        source: RouteError,
    },
    /// A local guard's route is not one this agent can judge.
    #[error("local_guards[{index}].route: {message}")]
    GuardRoute { index: usize, message: String },
}

/// Whether the controller issued this fault (and its lease bounds it).
pub(crate) fn issued_by_controller(fault: &Fault) -> bool {
    matches!(fault.origin, Origin::Controller { .. })
}

// === impl Lease ===

/// The lease as the route table holds it: absent, or held until a deadline.
#[derive(Debug, Default)]
pub(crate) struct Lease {
    held: Option<LeaseStatus>,
}

impl Lease {
    /// The lease, if held and not run out at `now`.
    pub(crate) fn status(&self, now: Instant) -> Option<LeaseStatus> {
        self.held.filter(|l| now < l.deadline)
    }

    /// The deadline of a held lease, run out or not (the expiry task wakes on it).
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.held.map(|l| l.deadline)
    }

    /// True when a lease is held and its deadline has passed: it must end now.
    pub(crate) fn is_over(&self, now: Instant) -> bool {
        self.held.is_some_and(|l| l.deadline <= now)
    }

    /// Checks that a desired state may replace the applied one. Call after ending a lease that
    /// is over: a lease that ran out holds no generation.
    pub(crate) fn admits(&self, generation: u64, term: Duration) -> Result<(), DesiredError> {
        if term.is_zero() {
            return Err(DesiredError::ZeroLease);
        }
        match self.held {
            Some(cur) if generation < cur.generation => Err(DesiredError::Stale {
                got: generation,
                current: cur.generation,
            }),
            _ => Ok(()),
        }
    }

    /// Holds the lease for `generation` until `now + term`.
    pub(crate) fn grant(&mut self, generation: u64, term: Duration, now: Instant) -> LeaseStatus {
        let status = LeaseStatus {
            generation,
            term,
            deadline: now + term,
        };
        self.held = Some(status);
        status
    }

    /// Extends a held lease to `now + term`. Returns the new status and whether the deadline
    /// moved earlier (the expiry task must then be woken), or `None` when no lease is held:
    /// a renewal never brings an ended lease back.
    pub(crate) fn renew(&mut self, term: Duration, now: Instant) -> Option<(LeaseStatus, bool)> {
        let held = self.held.as_mut()?;
        let deadline = now + term;
        let earlier = deadline < held.deadline;
        held.term = term;
        held.deadline = deadline;
        Some((*held, earlier))
    }

    /// Ends the lease; returns what was held.
    pub(crate) fn end(&mut self) -> Option<LeaseStatus> {
        self.held.take()
    }
}

// === validation and merge ===

/// What validating a desired entry needs to know of its route.
pub(crate) struct RouteFacts<'a> {
    pub(crate) protocol: Protocol,
    pub(crate) faults: &'a [ActiveFault],
}

/// Validates every entry (origin, name, route, protocol, no clash with an admin fault or an
/// earlier entry) before anything changes, and groups the faults by route, in message order.
pub(crate) fn validate<'a>(
    faults: Vec<(String, Fault)>,
    route: impl Fn(&str) -> Option<RouteFacts<'a>>,
) -> Result<BTreeMap<String, Vec<Fault>>, DesiredError> {
    let mut first: HashMap<(&str, &str), usize> = HashMap::with_capacity(faults.len());
    for (index, (name, fault)) in faults.iter().enumerate() {
        let earlier = first.get(&(name.as_str(), fault.name.as_str())).copied();
        check_entry(name, fault, route(name), earlier).map_err(|source| DesiredError::Entry {
            index,
            route: name.clone(),
            fault: fault.name.clone(),
            source,
        })?;
        first.insert((name, &fault.name), index);
    }
    drop(first);
    let mut by_route: BTreeMap<String, Vec<Fault>> = BTreeMap::new();
    for (name, fault) in faults {
        by_route.entry(name).or_default().push(fault);
    }
    Ok(by_route)
}

/// Checks that every guard's route exists and counts requests (`http` or `grpc`); `protocol`
/// looks a route up.
pub(crate) fn validate_guards(
    guards: &[LocalGuard],
    protocol: impl Fn(&str) -> Option<Protocol>,
) -> Result<(), DesiredError> {
    for (index, g) in guards.iter().enumerate() {
        let message = match protocol(&g.route) {
            Some(p) if p.is_http() || p == Protocol::Auto => continue,
            Some(p) => format!(
                "route {:?} is a {p} route; a local guard needs the request counters of an http or grpc route",
                g.route
            ),
            None => format!("no route named {:?} on this agent", g.route),
        };
        return Err(DesiredError::GuardRoute { index, message });
    }
    Ok(())
}

fn check_entry(
    route: &str,
    fault: &Fault,
    facts: Option<RouteFacts<'_>>,
    earlier: Option<usize>,
) -> Result<(), RouteError> {
    if !issued_by_controller(fault) {
        return Err(RouteError::Invalid {
            field: "origin",
            message: "a desired fault must be controller-issued".into(),
        });
    }
    validate_name("name", &fault.name)?;
    let facts = facts.ok_or_else(|| RouteError::RouteNotFound(route.into()))?;
    check_protocol(facts.protocol, fault)?;
    if facts
        .faults
        .iter()
        .any(|f| !issued_by_controller(&f.fault) && f.fault.name == fault.name)
    {
        return Err(RouteError::FaultExists {
            route: route.into(),
            fault: fault.name.clone(),
        });
    }
    if let Some(i) = earlier {
        return Err(RouteError::Invalid {
            field: "name",
            message: format!("faults[{i}] already puts a fault of this name on this route"),
        });
    }
    Ok(())
}

/// A route's fault list with its controller-issued faults replaced by `desired`, or `None` when
/// nothing would change.
///
/// Admin faults stay as they are, where they are. A desired fault equal (name and whole
/// definition) to a current controller fault keeps that fault's key, `since` and counters, so
/// a re-sent desired state re-rolls no connection's decision; any other desired fault is new
/// (a fresh key from `next_key`, active from `now`).
pub(crate) fn merge(
    current: &[ActiveFault],
    desired: Vec<Fault>,
    now: Instant,
    next_key: &mut u64,
) -> Option<Vec<ActiveFault>> {
    let mut old: Vec<&ActiveFault> = current
        .iter()
        .filter(|f| issued_by_controller(&f.fault))
        .collect();
    let mut created = false;
    let mut controller = Vec::with_capacity(desired.len());
    for fault in desired {
        match old.iter().position(|a| a.fault == fault) {
            Some(i) => controller.push(old.swap_remove(i).clone()),
            None => {
                created = true;
                controller.push(ActiveFault {
                    key: *next_key,
                    since: now,
                    fault,
                    counters: Arc::new(FaultCounters::default()),
                });
                *next_key += 1;
            }
        }
    }
    if !created && old.is_empty() {
        return None;
    }
    let mut faults: Vec<ActiveFault> = current
        .iter()
        .filter(|f| !issued_by_controller(&f.fault))
        .cloned()
        .collect();
    faults.extend(controller);
    Some(faults)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fault::{Direction, FaultKind, Latency, Probability};

    fn fault(name: &str, ms: u64, origin: Origin) -> Fault {
        Fault {
            name: name.into(),
            kind: FaultKind::Latency(Latency {
                latency: Duration::from_millis(ms),
                jitter: Duration::ZERO,
            }),
            direction: Direction::Downstream,
            toxicity: Probability::ALWAYS,
            matcher: None,
            cohort: None,
            expires_at: None,
            origin,
        }
    }

    fn ctl(name: &str, ms: u64) -> Fault {
        fault(
            name,
            ms,
            Origin::Controller {
                experiment: "exp".into(),
            },
        )
    }

    fn active(key: u64, f: Fault) -> ActiveFault {
        ActiveFault {
            key,
            since: Instant::now(),
            fault: f,
            counters: Arc::default(),
        }
    }

    #[test]
    fn a_lease_ends_at_its_deadline_and_renewal_moves_it() {
        let t0 = Instant::now();
        let mut lease = Lease::default();
        assert_eq!(lease.status(t0), None);
        lease.grant(7, Duration::from_secs(3), t0);
        assert_eq!(lease.status(t0).unwrap().generation, 7);
        assert!(!lease.is_over(t0 + Duration::from_millis(2999)));
        assert!(lease.is_over(t0 + Duration::from_secs(3)));
        assert_eq!(lease.status(t0 + Duration::from_secs(3)), None);

        let (renewed, earlier) = lease
            .renew(Duration::from_secs(3), t0 + Duration::from_secs(2))
            .unwrap();
        assert_eq!(renewed.deadline, t0 + Duration::from_secs(5));
        assert!(!earlier);
        let (_, earlier) = lease
            .renew(Duration::from_secs(1), t0 + Duration::from_secs(2))
            .unwrap();
        assert!(earlier, "a shorter term moves the deadline earlier");

        assert_eq!(lease.end().unwrap().generation, 7);
        assert_eq!(lease.renew(Duration::from_secs(3), t0), None);
        assert_eq!(lease.deadline(), None);
    }

    #[test]
    fn an_older_generation_is_stale_while_a_lease_is_held() {
        let mut lease = Lease::default();
        let term = Duration::from_secs(3);
        assert!(lease.admits(0, term).is_ok());
        lease.grant(5, term, Instant::now());
        assert!(matches!(
            lease.admits(4, term),
            Err(DesiredError::Stale { got: 4, current: 5 })
        ));
        assert!(
            lease.admits(5, term).is_ok(),
            "a re-send of the same generation"
        );
        assert!(lease.admits(6, term).is_ok());
        assert!(matches!(
            lease.admits(6, Duration::ZERO),
            Err(DesiredError::ZeroLease)
        ));
        lease.end();
        assert!(
            lease.admits(1, term).is_ok(),
            "an ended lease holds no generation"
        );
    }

    #[test]
    fn validation_names_the_first_bad_entry() {
        let admin = [active(1, fault("mine", 5, Origin::Admin))];
        let lookup = |name: &str| {
            (name == "r").then(|| RouteFacts {
                protocol: Protocol::Tcp,
                faults: &admin[..],
            })
        };
        let entry = |route: &str, f: Fault| (route.to_string(), f);

        let grouped = validate(
            vec![entry("r", ctl("a", 1)), entry("r", ctl("b", 2))],
            lookup,
        )
        .expect("valid");
        assert_eq!(grouped["r"].len(), 2);
        assert_eq!(grouped["r"][0].name, "a");

        // (the faults, the index of the bad entry, what the error says)
        type Case = (Vec<(String, Fault)>, usize, &'static str);
        let cases: [Case; 5] = [
            (
                vec![entry("r", ctl("a", 1)), entry("nope", ctl("b", 1))],
                1,
                "no route named \"nope\"",
            ),
            (
                vec![entry("r", ctl("a", 1)), entry("r", ctl("a", 2))],
                1,
                "faults[0] already",
            ),
            (vec![entry("r", ctl("mine", 1))], 0, "already has a fault"),
            (vec![entry("r", fault("x", 1, Origin::Admin))], 0, "origin"),
            (vec![entry("r", ctl("", 1))], 0, "name"),
        ];
        for (faults, want, text) in cases {
            let err = validate(faults, lookup).unwrap_err();
            match &err {
                DesiredError::Entry { index, .. } => assert_eq!(*index, want, "{err}"),
                other => panic!("expected an entry error, got {other}"),
            }
            let msg = err.to_string();
            assert!(msg.starts_with(&format!("faults[{want}]")), "{msg}");
            assert!(msg.contains(text), "{msg} should mention {text:?}");
        }
    }

    #[test]
    fn merge_keeps_unchanged_faults_and_renews_changed_ones() {
        let now = Instant::now();
        let current = vec![
            active(1, ctl("a", 10)),
            active(2, fault("admin", 5, Origin::Admin)),
            active(3, ctl("b", 20)),
        ];
        let mut next = 10;

        // The same set, in another order: nothing changes.
        assert!(merge(&current, vec![ctl("b", 20), ctl("a", 10)], now, &mut next).is_none());
        assert_eq!(next, 10);

        // `a` unchanged, `b` changed, `c` new; the admin fault stays.
        let merged = merge(
            &current,
            vec![ctl("a", 10), ctl("b", 25), ctl("c", 1)],
            now,
            &mut next,
        )
        .unwrap();
        let keys: Vec<(u64, &str)> = merged
            .iter()
            .map(|f| (f.key, f.fault.name.as_str()))
            .collect();
        assert_eq!(keys, [(2, "admin"), (1, "a"), (10, "b"), (11, "c")]);
        assert!(Arc::ptr_eq(&merged[1].counters, &current[0].counters));
        assert_eq!(merged[1].since, current[0].since);
        assert_eq!(merged[2].since, now);
        assert_eq!(next, 12);

        // The empty set removes every controller fault and only those.
        let merged = merge(&current, vec![], now, &mut next).unwrap();
        assert_eq!(merged.len(), 1);
        assert_eq!(merged[0].key, 2);
        assert!(merge(&merged, vec![], now, &mut next).is_none());
    }
}
