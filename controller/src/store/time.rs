//! Timestamps as stored: whole microseconds since the Unix epoch in an `INTEGER` column.
//!
//! Microseconds keep the columns sortable and readable with the `sqlite3` shell
//! (`datetime(at_us / 1e6, 'unixepoch')`); a `SystemTime` read back is the one written,
//! truncated to the microsecond.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::StoreError;

pub(crate) fn to_micros(what: &'static str, at: SystemTime) -> Result<i64, StoreError> {
    at.duration_since(UNIX_EPOCH)
        .ok()
        .and_then(|d| i64::try_from(d.as_micros()).ok())
        .ok_or(StoreError::TimeOutOfRange { what, at })
}

pub(crate) fn from_micros(what: &'static str, us: i64) -> Result<SystemTime, StoreError> {
    u64::try_from(us)
        .ok()
        .and_then(|us| UNIX_EPOCH.checked_add(Duration::from_micros(us)))
        .ok_or_else(|| StoreError::Corrupt {
            what,
            detail: format!("timestamp {us} µs is not after the Unix epoch"),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_to_the_microsecond() {
        let at = UNIX_EPOCH + Duration::new(1_800_000_000, 123_456_789);
        let us = to_micros("t", at).unwrap();
        assert_eq!(us, 1_800_000_000_123_456);
        assert_eq!(
            from_micros("t", us).unwrap(),
            UNIX_EPOCH + Duration::new(1_800_000_000, 123_456_000)
        );
    }

    #[test]
    fn rejects_times_before_the_epoch() {
        let err = to_micros("event time", UNIX_EPOCH - Duration::from_secs(1)).unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::TimeOutOfRange {
                    what: "event time",
                    ..
                }
            ),
            "{err}"
        );
        assert!(from_micros("t", -1).is_err());
    }
}
