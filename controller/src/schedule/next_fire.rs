//! When a schedule fires next: pure functions of the schedule and a wall-clock instant.
//!
//! A cron expression is read in its time zone (chrono-tz), so `0 9 * * *` in
//! `Europe/Berlin` is 09:00 Berlin time in winter and in summer. Across a daylight-saving
//! change croner follows Vixie cron: in the spring gap a fixed time (`30 2 * * *`) runs at the
//! first minute after the gap, an interval (`*/15 * * * *`) skips the missing minutes; in the
//! autumn overlap a fixed time runs once (the first pass), an interval runs in both passes.

use std::time::SystemTime;

use chrono::{DateTime, Utc};

use crate::spec::{CronSchedule, Schedule};

/// The first fire of a schedule armed at `armed_at`: `startAt` itself (which may have passed:
/// the scheduler then fires at once), or the cron's first instant after `armed_at`.
pub fn first_fire(schedule: &Schedule, armed_at: SystemTime) -> Option<SystemTime> {
    match schedule {
        Schedule::Once(at) => Some(*at),
        Schedule::Cron(c) => cron_after(c, armed_at),
    }
}

/// The fire after one handled at `now` (fired or skipped): none for `startAt`; for a cron,
/// its first instant strictly after `now`. Fires missed while the controller was down are not
/// made up one by one: the late fire stands for them all.
pub fn fire_after(schedule: &Schedule, now: SystemTime) -> Option<SystemTime> {
    match schedule {
        Schedule::Once(_) => None,
        Schedule::Cron(c) => cron_after(c, now),
    }
}

/// The cron's first instant strictly after `after`, or none (an expression that never matches
/// again, such as February 30th).
pub fn cron_after(c: &CronSchedule, after: SystemTime) -> Option<SystemTime> {
    let local = DateTime::<Utc>::from(after).with_timezone(&c.time_zone);
    c.cron
        .find_next_occurrence(&local, false)
        .ok()
        .map(|t| SystemTime::from(t.with_timezone(&Utc)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Experiment;

    fn cron(expression: &str, zone: &str) -> Schedule {
        let text = format!(
            "apiVersion: faultline.dev/v1alpha1\nkind: Experiment\nmetadata: {{name: n}}\n\
             spec:\n  targets: {{all: true}}\n  faults: [{{route: r, type: down}}]\n  \
             duration: 1m\n  schedule: {{cron: \"{expression}\", timeZone: {zone}}}\n"
        );
        Experiment::parse(&text).unwrap().schedule.unwrap()
    }

    fn t(rfc3339: &str) -> SystemTime {
        SystemTime::from(DateTime::parse_from_rfc3339(rfc3339).unwrap())
    }

    /// The next `n` fires after `from`, in UTC.
    fn fires(s: &Schedule, from: &str, n: usize) -> Vec<String> {
        let mut at = t(from);
        (0..n)
            .map(|_| {
                at = fire_after(s, at).unwrap();
                DateTime::<Utc>::from(at).to_rfc3339()
            })
            .collect()
    }

    #[test]
    fn every_five_minutes_fires_on_the_fives_strictly_after() {
        let s = cron("*/5 * * * *", "UTC");
        assert_eq!(
            fires(&s, "2026-03-02T08:58:30Z", 3),
            [
                "2026-03-02T09:00:00+00:00",
                "2026-03-02T09:05:00+00:00",
                "2026-03-02T09:10:00+00:00"
            ]
        );
        // Exactly on a fire: the next one, not the same one again.
        assert_eq!(
            fires(&s, "2026-03-02T09:05:00Z", 1),
            ["2026-03-02T09:10:00+00:00"]
        );
    }

    #[test]
    fn a_fixed_time_follows_the_zone_across_daylight_saving() {
        // Berlin springs forward on 2026-03-29 (CET +01 -> CEST +02): 09:00 local moves
        // from 08:00 to 07:00 UTC.
        let s = cron("0 9 * * *", "Europe/Berlin");
        assert_eq!(
            fires(&s, "2026-03-27T12:00:00Z", 3),
            [
                "2026-03-28T08:00:00+00:00",
                "2026-03-29T07:00:00+00:00",
                "2026-03-30T07:00:00+00:00"
            ]
        );
        // 02:30 does not exist on the day of the change: it runs at 03:00 CEST (01:00 UTC).
        let s = cron("30 2 * * *", "Europe/Berlin");
        assert_eq!(
            fires(&s, "2026-03-28T12:00:00Z", 2),
            ["2026-03-29T01:00:00+00:00", "2026-03-30T00:30:00+00:00"]
        );
        // Autumn (2026-10-25, 03:00 CEST -> 02:00 CET): 02:30 happens twice, runs once.
        assert_eq!(
            fires(&s, "2026-10-24T12:00:00Z", 2),
            ["2026-10-25T00:30:00+00:00", "2026-10-26T01:30:00+00:00"]
        );
    }

    #[test]
    fn start_at_fires_once() {
        let at = t("2026-12-01T09:00:00Z");
        let s = Schedule::Once(at);
        assert_eq!(first_fire(&s, t("2027-01-01T00:00:00Z")), Some(at));
        assert_eq!(fire_after(&s, at), None);
    }
}
