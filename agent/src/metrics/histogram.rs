//! A lock-free latency histogram that snapshots to a compact, mergeable form.
//!
//! Two sets of counters are kept side by side, each an `AtomicU64`:
//!
//! - log-linear buckets over microseconds, HDR-style: every value below 16 µs has its own bucket,
//!   then each power of two `[2^e, 2^(e+1))` is cut into 16 equal sub-buckets, up to 2^31 µs
//!   (about 36 minutes). A bucket's width is at most 1/16 of its lower bound, so any quantile is
//!   known to within 1/16 (6.25%). Larger values are counted in the last bucket. These travel in
//!   a [`HistogramSnapshot`], which the controller sums over agents to compute p50/p90/p99.
//! - the fixed Prometheus `le` buckets ([`PROMETHEUS_LE`]), compared in nanoseconds, so the
//!   `/metrics` histogram is exact at its boundaries rather than interpolated from the above.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// log2 of the number of sub-buckets per power of two.
const SUB_BITS: u32 = 4;
/// Sub-buckets per power of two; also the number of exact buckets below it.
const SUB: u64 = 1 << SUB_BITS;
/// Values from `2^MAX_EXP` µs on are counted in the last bucket.
const MAX_EXP: u32 = 31;

/// Number of log-linear buckets: 16 exact ones, then 16 for each power of two from 2^4 to 2^30.
pub const BUCKETS: usize = (SUB + (MAX_EXP - SUB_BITS) as u64 * SUB) as usize;

/// The finite Prometheus bucket bounds, in nanoseconds and as rendered in the `le` label
/// (seconds); a last `+Inf` bucket follows them.
pub const PROMETHEUS_LE: [(u64, &str); 14] = [
    (500_000, "0.0005"),
    (1_000_000, "0.001"),
    (2_500_000, "0.0025"),
    (5_000_000, "0.005"),
    (10_000_000, "0.01"),
    (25_000_000, "0.025"),
    (50_000_000, "0.05"),
    (100_000_000, "0.1"),
    (250_000_000, "0.25"),
    (500_000_000, "0.5"),
    (1_000_000_000, "1"),
    (2_500_000_000, "2.5"),
    (5_000_000_000, "5"),
    (10_000_000_000, "10"),
];

/// The log-linear bucket a value in microseconds is counted in.
pub fn bucket_index(micros: u64) -> u32 {
    if micros < SUB {
        return micros as u32;
    }
    if micros >= 1 << MAX_EXP {
        return BUCKETS as u32 - 1;
    }
    let exp = 63 - micros.leading_zeros(); // SUB_BITS..MAX_EXP
    let shift = exp - SUB_BITS;
    let sub = (micros >> shift) - SUB; // 0..SUB
    (SUB + u64::from(shift) * SUB + sub) as u32
}

/// The `[lower, upper)` bounds in microseconds of a log-linear bucket, or `None` for an index
/// past the last bucket. The last bucket, `[31 * 2^26, 2^31)`, also holds every larger value.
pub fn bucket_bounds(index: u32) -> Option<(u64, u64)> {
    let i = u64::from(index);
    if i < SUB {
        return Some((i, i + 1));
    }
    if index as usize >= BUCKETS {
        return None;
    }
    let shift = (i - SUB) / SUB;
    let sub = (i - SUB) % SUB;
    let lower = (SUB + sub) << shift;
    Some((lower, lower + (1 << shift)))
}

/// Latencies of one route. Recording is three relaxed atomic adds and never blocks.
pub struct LatencyHistogram {
    buckets: [AtomicU64; BUCKETS],
    /// Non-cumulative: `le[i]` counts values in `(PROMETHEUS_LE[i-1], PROMETHEUS_LE[i]]`, the
    /// last one those above every finite bound. Cumulated when rendered.
    le: [AtomicU64; PROMETHEUS_LE.len() + 1],
    sum_micros: AtomicU64,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            le: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_micros: AtomicU64::new(0),
        }
    }
}

impl std::fmt::Debug for LatencyHistogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.snapshot();
        f.debug_struct("LatencyHistogram")
            .field("count", &s.count)
            .field("sum_micros", &s.sum_micros)
            .finish_non_exhaustive()
    }
}

impl LatencyHistogram {
    // Relaxed throughout: each counter is independent and publishes no other memory. A reader
    // racing with `record` may see a value in one set of buckets and not yet in the other, or
    // not yet in the sum; the next scrape or heartbeat sees it.
    pub fn record(&self, latency: Duration) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.buckets[bucket_index(micros) as usize].fetch_add(1, Relaxed);
        let nanos = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        let le = PROMETHEUS_LE.partition_point(|&(bound, _)| bound < nanos);
        self.le[le].fetch_add(1, Relaxed);
        // Wrapping after 584,000 years of summed latency is not a concern.
        self.sum_micros.fetch_add(micros, Relaxed);
    }

    /// The non-zero log-linear buckets. `count` is their total, so it always agrees with them.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let buckets: Vec<(u32, u64)> = (0..BUCKETS as u32)
            .filter_map(|i| {
                let n = self.buckets[i as usize].load(Relaxed);
                (n > 0).then_some((i, n))
            })
            .collect();
        HistogramSnapshot {
            count: buckets.iter().map(|&(_, n)| n).sum(),
            buckets,
            sum_micros: self.sum_micros.load(Relaxed),
        }
    }

    /// Loads every log-linear bucket into `into`, without allocating (a local guard reads the
    /// histogram every few milliseconds).
    pub fn load_buckets(&self, into: &mut [u64; BUCKETS]) {
        for (to, from) in into.iter_mut().zip(&self.buckets) {
            *to = from.load(Relaxed);
        }
    }

    /// Cumulative counts for each of [`PROMETHEUS_LE`] then `+Inf`; the last is the total count.
    pub fn prometheus_buckets(&self) -> [u64; PROMETHEUS_LE.len() + 1] {
        let mut total = 0;
        std::array::from_fn(|i| {
            total += self.le[i].load(Relaxed);
            total
        })
    }

    pub fn sum_micros(&self) -> u64 {
        self.sum_micros.load(Relaxed)
    }
}

/// A histogram as sent to the controller: the non-zero log-linear buckets, sorted by index.
/// Snapshots from many agents (or many routes) [`merge`](Self::merge) into one.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistogramSnapshot {
    /// `(bucket index, count)`, only non-zero counts, by increasing index; see [`bucket_bounds`].
    pub buckets: Vec<(u32, u64)>,
    /// Number of recorded values.
    pub count: u64,
    /// Sum of the recorded values, in microseconds.
    pub sum_micros: u64,
}

impl HistogramSnapshot {
    /// Adds `other` into `self`, as if every value of both had been recorded in one histogram.
    /// Tolerates unsorted or repeated indices in either input (as might arrive off the wire);
    /// the result is sorted with each index once.
    pub fn merge(&mut self, other: &HistogramSnapshot) {
        self.buckets.extend_from_slice(&other.buckets);
        self.buckets.sort_unstable_by_key(|&(i, _)| i);
        self.buckets.dedup_by(|later, kept| {
            let same = later.0 == kept.0;
            if same {
                kept.1 = kept.1.saturating_add(later.1);
            }
            same
        });
        self.buckets.retain(|&(_, n)| n > 0);
        self.count = self.count.saturating_add(other.count);
        self.sum_micros = self.sum_micros.saturating_add(other.sum_micros);
    }

    /// The upper bound of the bucket holding the `q`-th value (`q` in `0.0..=1.0`, e.g. `0.99`):
    /// the value is below it, by at most 1/16 of it past 16 µs. `None` when empty or `q` is not
    /// in range. Indices past the last bucket count as the last bucket.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        if !(0.0..=1.0).contains(&q) {
            return None;
        }
        let total: u64 = self.buckets.iter().map(|&(_, n)| n).sum();
        if total == 0 {
            return None;
        }
        // The rank (1-based) of the q-th value; q = 0 is the smallest value. The small
        // subtraction keeps float noise (0.07 * 100 = 7.000000000000001) from skipping a rank.
        let rank = ((q * total as f64 - 1e-9).ceil() as u64).clamp(1, total);
        let mut seen = 0;
        let last = BUCKETS as u32 - 1;
        for &(i, n) in &self.buckets {
            seen += n;
            if seen >= rank {
                return bucket_bounds(i.min(last)).map(|(_, upper)| Duration::from_micros(upper));
            }
        }
        None // unreachable: `seen` ends at `total`
    }

    /// The mean recorded value, or `None` when empty.
    pub fn mean(&self) -> Option<Duration> {
        (self.count > 0).then(|| Duration::from_micros(self.sum_micros / self.count))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn us(n: u64) -> Duration {
        Duration::from_micros(n)
    }

    #[test]
    fn bucket_bounds_are_contiguous_from_zero_to_2_pow_31() {
        let mut next = 0;
        for i in 0..BUCKETS as u32 {
            let (lower, upper) = bucket_bounds(i).unwrap();
            assert_eq!(
                lower,
                next,
                "bucket {i} starts where {} ends",
                i.wrapping_sub(1)
            );
            assert!(upper > lower);
            next = upper;
        }
        assert_eq!(next, 1 << 31);
        assert_eq!(bucket_bounds(BUCKETS as u32), None);
        assert_eq!(BUCKETS, 448);
    }

    #[test]
    fn every_value_lands_in_the_bucket_that_bounds_it() {
        let probes = (0..5000u64).chain((0..=62).flat_map(|e| {
            let p = 1u64 << e;
            [p - 1, p, p + 1, p + p / 3]
        }));
        for v in probes {
            let i = bucket_index(v);
            let (lower, upper) = bucket_bounds(i).unwrap();
            if v < 1 << 31 {
                assert!(
                    lower <= v && v < upper,
                    "{v} in bucket {i} [{lower}, {upper})"
                );
            } else {
                assert_eq!(i as usize, BUCKETS - 1, "{v} clamps into the last bucket");
            }
        }
    }

    #[test]
    fn relative_error_is_at_most_one_sixteenth_past_16_micros() {
        for i in 0..BUCKETS as u32 {
            let (lower, upper) = bucket_bounds(i).unwrap();
            if lower < 16 {
                assert_eq!(upper - lower, 1, "values below 16 µs are exact");
            } else {
                assert!(
                    (upper - lower) * 16 <= lower,
                    "bucket {i} [{lower}, {upper})"
                );
            }
        }
    }

    #[test]
    fn merging_two_snapshots_equals_recording_both() {
        let (a, b, both) = (
            LatencyHistogram::default(),
            LatencyHistogram::default(),
            LatencyHistogram::default(),
        );
        for v in [3, 17, 17, 250, 40_000, 5_000_000_000] {
            a.record(us(v));
            both.record(us(v));
        }
        for v in [3, 18, 999, 40_001, 1_000_000] {
            b.record(us(v));
            both.record(us(v));
        }
        let mut merged = a.snapshot();
        merged.merge(&b.snapshot());
        assert_eq!(merged, both.snapshot());
        assert_eq!(merged.count, 11);
        assert_eq!(merged.sum_micros, both.sum_micros());
    }

    #[test]
    fn merge_accepts_unsorted_and_repeated_indices() {
        let mut a = HistogramSnapshot {
            buckets: vec![(5, 1), (2, 2)],
            count: 3,
            sum_micros: 9,
        };
        a.merge(&HistogramSnapshot {
            buckets: vec![(5, 4), (1, 1), (5, 1)],
            count: 6,
            sum_micros: 31,
        });
        assert_eq!(a.buckets, vec![(1, 1), (2, 2), (5, 6)]);
        assert_eq!((a.count, a.sum_micros), (9, 40));
    }

    #[test]
    fn quantiles_of_a_uniform_distribution() {
        let h = LatencyHistogram::default();
        for v in 1..=1000 {
            h.record(us(v)); // 1..=1000 µs, once each
        }
        let s = h.snapshot();
        // The 500th value is 500 µs, in [496, 512); the 900th is 900 µs, in [896, 928);
        // the 990th is 990 µs, in [960, 992).
        assert_eq!(s.quantile(0.5), Some(us(512)));
        assert_eq!(s.quantile(0.9), Some(us(928)));
        assert_eq!(s.quantile(0.99), Some(us(992)));
        assert_eq!(
            s.quantile(0.0),
            Some(us(2)),
            "the smallest value, 1 µs, is exact"
        );
        assert_eq!(s.quantile(1.0), Some(us(1024)), "1000 µs is in [992, 1024)");
        for q in [0.5, 0.9, 0.99] {
            let exact = q * 1000.0;
            let got = s.quantile(q).unwrap().as_micros() as f64;
            assert!(
                got >= exact && got <= exact * (1.0 + 1.0 / 16.0) + 1.0,
                "q{q}: {got}"
            );
        }
        assert_eq!(s.mean(), Some(us(500)));
    }

    #[test]
    fn quantiles_of_a_bimodal_distribution_and_edge_cases() {
        let h = LatencyHistogram::default();
        for _ in 0..95 {
            h.record(us(10));
        }
        for _ in 0..5 {
            h.record(Duration::from_secs(3600)); // past the range: the last bucket
        }
        let s = h.snapshot();
        assert_eq!(s.quantile(0.95), Some(us(11)));
        assert_eq!(s.quantile(0.96), Some(us(1 << 31)));
        assert_eq!(s.quantile(1.5), None);
        assert_eq!(s.quantile(f64::NAN), None);
        assert_eq!(HistogramSnapshot::default().quantile(0.5), None);
    }

    #[test]
    fn prometheus_buckets_are_exact_at_their_bounds_and_cumulative() {
        let h = LatencyHistogram::default();
        h.record(Duration::from_nanos(500_000)); // le="0.0005": bounds are inclusive
        h.record(Duration::from_nanos(500_001)); // le="0.001"
        h.record(Duration::from_secs(10)); // le="10"
        h.record(Duration::from_secs(11)); // +Inf only
        let b = h.prometheus_buckets();
        assert_eq!(b[0], 1);
        assert_eq!(b[1], 2);
        assert_eq!(b[12], 2);
        assert_eq!(b[13], 3);
        assert_eq!(b[14], 4);
    }

    #[test]
    fn snapshot_round_trips_through_json() {
        let h = LatencyHistogram::default();
        h.record(us(7));
        h.record(us(70));
        let s = h.snapshot();
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(
            json,
            r#"{"buckets":[[7,1],[49,1]],"count":2,"sum_micros":77}"#
        );
        assert_eq!(serde_json::from_str::<HistogramSnapshot>(&json).unwrap(), s);
    }
}
