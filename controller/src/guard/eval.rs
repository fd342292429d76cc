//! The life of one guard: its readings become a state (ok, breached, no data), and a breach
//! that holds for the guard's `for` trips it.

use std::fmt;
use std::time::Duration;

use tokio::time::Instant;

use super::Reading;
use crate::spec::{Condition, NoData};

/// Where a guard stands after its last reading.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GuardState {
    /// Inside its objective.
    Ok,
    /// Outside its objective (or without data under `noData: trip`).
    Breached,
    /// Without enough data to say, under `noData: ignore`.
    NoData,
}

impl GuardState {
    pub fn as_str(self) -> &'static str {
        match self {
            GuardState::Ok => "ok",
            GuardState::Breached => "breached",
            GuardState::NoData => "no_data",
        }
    }
}

impl fmt::Display for GuardState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What one reading did to a guard.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Update {
    /// `(from, to)` when the state changed.
    pub changed: Option<(GuardState, GuardState)>,
    /// The breach has now held for the guard's `for`: the guard trips (once per breach).
    pub tripped: bool,
    /// The value read, if the reading had one.
    pub value: Option<f64>,
}

/// One guard's condition, `for` and no-data policy applied to its readings in order.
#[derive(Clone, Debug)]
pub struct Tracker {
    condition: Condition,
    hold: Duration,
    no_data: NoData,
    state: Option<GuardState>,
    breached_since: Option<Instant>,
    tripped: bool,
    last_value: Option<f64>,
}

impl Tracker {
    pub fn new(condition: Condition, hold: Duration, no_data: NoData) -> Self {
        Tracker {
            condition,
            hold,
            no_data,
            state: None,
            breached_since: None,
            tripped: false,
            last_value: None,
        }
    }

    /// The state after the last reading; `None` before the first.
    pub fn state(&self) -> Option<GuardState> {
        self.state
    }

    /// The last value read (kept through no-data readings).
    pub fn last_value(&self) -> Option<f64> {
        self.last_value
    }

    pub fn condition(&self) -> Condition {
        self.condition
    }

    /// When the current breach began.
    pub fn breached_since(&self) -> Option<Instant> {
        self.breached_since
    }

    /// Applies one reading taken at `at`.
    pub fn observe(&mut self, reading: &Reading, at: Instant) -> Update {
        let (state, value) = match reading {
            Reading::Value(v) if v.is_nan() => (self.no_data_state(), None),
            Reading::Value(v) if self.condition.breached(*v) => (GuardState::Breached, Some(*v)),
            Reading::Value(v) => (GuardState::Ok, Some(*v)),
            Reading::NoData { .. } => (self.no_data_state(), None),
            Reading::Broken { value, .. } => (GuardState::Breached, Some(*value)),
        };
        if value.is_some() {
            self.last_value = value;
        }
        let before = self.state.replace(state);
        if state == GuardState::Breached {
            self.breached_since.get_or_insert(at);
        } else {
            self.breached_since = None;
            self.tripped = false;
        }
        let changed = match before {
            Some(b) if b == state => None,
            // The first reading is a change from "unknown"; callers record it as from `ok`
            // only when it is not ok.
            Some(b) => Some((b, state)),
            None if state != GuardState::Ok => Some((GuardState::Ok, state)),
            None => None,
        };
        Update {
            changed,
            tripped: self.check_hold(at),
            value,
        }
    }

    /// Trips a breach that has now held long enough without a new reading (called on ticks).
    pub fn poll(&mut self, at: Instant) -> bool {
        self.check_hold(at)
    }

    /// Forgets the state, as if no reading had come (a new phase such as recovery begins).
    pub fn reset(&mut self) {
        self.state = None;
        self.breached_since = None;
        self.tripped = false;
    }

    fn check_hold(&mut self, at: Instant) -> bool {
        match self.breached_since {
            Some(since) if !self.tripped && at.saturating_duration_since(since) >= self.hold => {
                self.tripped = true;
                true
            }
            _ => false,
        }
    }

    fn no_data_state(&self) -> GuardState {
        match self.no_data {
            NoData::Ignore => GuardState::NoData,
            NoData::Trip => GuardState::Breached,
        }
    }
}

/// A number as reasons and events show it: at most four decimals, no trailing zeros.
pub fn show(v: f64) -> String {
    if !v.is_finite() {
        return v.to_string();
    }
    let s = format!("{v:.4}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" { "0".into() } else { s.into() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_breach_trips_after_holding_for_its_for() {
        let t0 = Instant::now();
        let mut g = Tracker::new(Condition::Above(0.05), ms(2000), NoData::Ignore);
        let u = g.observe(&Reading::Value(0.01), t0);
        assert_eq!(u.changed, None);
        assert!(!u.tripped);
        let u = g.observe(&Reading::Value(0.6), t0 + ms(100));
        assert_eq!(u.changed, Some((GuardState::Ok, GuardState::Breached)));
        assert!(!u.tripped);
        assert!(!g.poll(t0 + ms(2099)));
        assert!(g.poll(t0 + ms(2100)));
        // Once per breach.
        assert!(!g.observe(&Reading::Value(0.7), t0 + ms(2500)).tripped);
        // Back inside: a new breach trips again.
        let u = g.observe(&Reading::Value(0.0), t0 + ms(2600));
        assert_eq!(u.changed, Some((GuardState::Breached, GuardState::Ok)));
        g.observe(&Reading::Value(0.9), t0 + ms(2700));
        assert!(g.observe(&Reading::Value(0.9), t0 + ms(4700)).tripped);
    }

    #[test]
    fn a_breach_that_ends_before_its_for_does_not_trip() {
        let t0 = Instant::now();
        let mut g = Tracker::new(Condition::Below(100.0), ms(1000), NoData::Ignore);
        g.observe(&Reading::Value(150.0), t0);
        g.observe(&Reading::Value(50.0), t0 + ms(900));
        assert!(!g.observe(&Reading::Value(150.0), t0 + ms(1100)).tripped);
        assert!(!g.poll(t0 + ms(5000)));
    }

    #[test]
    fn no_data_follows_the_policy() {
        let t0 = Instant::now();
        let none = Reading::NoData {
            why: "3 requests < minRequests 20".into(),
        };
        let mut ignore = Tracker::new(Condition::Above(0.05), Duration::ZERO, NoData::Ignore);
        let u = ignore.observe(&none, t0);
        assert_eq!(u.changed, Some((GuardState::Ok, GuardState::NoData)));
        assert!(!u.tripped);
        let mut trip = Tracker::new(Condition::Above(0.05), Duration::ZERO, NoData::Trip);
        let u = trip.observe(&none, t0);
        assert_eq!(u.changed, Some((GuardState::Ok, GuardState::Breached)));
        assert!(u.tripped);
        // NaN is no data too.
        assert_eq!(ignore.observe(&Reading::Value(f64::NAN), t0).value, None);
    }

    #[test]
    fn a_broken_source_breaches_whatever_the_threshold() {
        let t0 = Instant::now();
        let mut g = Tracker::new(Condition::Above(1e9), Duration::ZERO, NoData::Ignore);
        let broken = Reading::Broken {
            value: 3.0,
            why: "3 consecutive query errors".into(),
        };
        assert!(g.observe(&broken, t0).tripped);
        assert_eq!(g.last_value(), Some(3.0));
    }

    #[test]
    fn numbers_show_short() {
        assert_eq!(show(0.6), "0.6");
        assert_eq!(show(0.05), "0.05");
        assert_eq!(show(2.0), "2");
        assert_eq!(show(0.123456), "0.1235");
    }
}
