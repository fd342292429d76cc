//! SLIs on the wire (`v1::SliSnapshot`, `v1::HistogramSnapshot`) to and from the agent's
//! mergeable [`SliSnapshot`] and [`HistogramSnapshot`].
//!
//! Into the domain the shapes are checked, so that [`SliSnapshot::merge`] and
//! [`HistogramSnapshot::quantile`] only ever see well-formed values: at most 5 status classes
//! and 17 gRPC codes (missing trailing entries are 0, as `sli.proto` says; absent messages are
//! all 0), and histogram buckets with an index below [`BUCKETS`], by increasing index, each
//! non-zero, adding up to `count`.

use faultline_proto::v1;

use super::ConvertError;
use crate::metrics::histogram::{BUCKETS, HistogramSnapshot};
use crate::metrics::http::{ByOrigin, GRPC_CODES, STATUS_CLASSES, SliSnapshot};

// === domain -> wire ===

impl From<&SliSnapshot> for v1::SliSnapshot {
    fn from(s: &SliSnapshot) -> Self {
        v1::SliSnapshot {
            requests: Some(counts(&s.requests)),
            grpc: Some(counts(&s.grpc)),
            upstream_errors: s.upstream_errors,
            resets: Some(v1::CountByOrigin {
                real: s.resets.real,
                injected: s.resets.injected,
            }),
            latency: Some(v1::HistogramSnapshot::from(&s.latency)),
        }
    }
}

fn counts<const N: usize>(c: &ByOrigin<[u64; N]>) -> v1::CountsByOrigin {
    v1::CountsByOrigin {
        real: c.real.to_vec(),
        injected: c.injected.to_vec(),
    }
}

impl From<&HistogramSnapshot> for v1::HistogramSnapshot {
    fn from(h: &HistogramSnapshot) -> Self {
        v1::HistogramSnapshot {
            buckets: h
                .buckets
                .iter()
                .map(|&(index, count)| v1::Bucket { index, count })
                .collect(),
            count: h.count,
            sum_micros: h.sum_micros,
        }
    }
}

// === wire -> domain ===

impl TryFrom<v1::SliSnapshot> for SliSnapshot {
    type Error = ConvertError;

    fn try_from(s: v1::SliSnapshot) -> Result<Self, ConvertError> {
        let resets = s.resets.unwrap_or_default();
        Ok(SliSnapshot {
            requests: by_origin(s.requests, "requests", "status classes (1xx..5xx)")?,
            grpc: by_origin(s.grpc, "grpc", "gRPC codes (0..16)")?,
            upstream_errors: s.upstream_errors,
            resets: ByOrigin {
                real: resets.real,
                injected: resets.injected,
            },
            latency: s
                .latency
                .map(HistogramSnapshot::try_from)
                .transpose()
                .map_err(|e| e.within("latency"))?
                .unwrap_or_default(),
        })
    }
}

// The arrays' lengths are the domain's own constants; checked here so they cannot drift.
const _: () = assert!(STATUS_CLASSES.len() == 5 && GRPC_CODES == 17);

fn by_origin<const N: usize>(
    c: Option<v1::CountsByOrigin>,
    path: &str,
    what: &str,
) -> Result<ByOrigin<[u64; N]>, ConvertError> {
    let c = c.unwrap_or_default();
    Ok(ByOrigin {
        real: array(c.real, &format!("{path}.real"), what)?,
        injected: array(c.injected, &format!("{path}.injected"), what)?,
    })
}

/// At most `N` entries; missing trailing ones are 0.
fn array<const N: usize>(v: Vec<u64>, path: &str, what: &str) -> Result<[u64; N], ConvertError> {
    if v.len() > N {
        return Err(ConvertError::new(
            path,
            format!("at most {N} entries ({what}), got {}", v.len()),
        ));
    }
    let mut out = [0; N];
    out[..v.len()].copy_from_slice(&v);
    Ok(out)
}

impl TryFrom<v1::HistogramSnapshot> for HistogramSnapshot {
    type Error = ConvertError;

    fn try_from(h: v1::HistogramSnapshot) -> Result<Self, ConvertError> {
        let mut total: u64 = 0;
        let mut previous: Option<u32> = None;
        let mut buckets = Vec::with_capacity(h.buckets.len());
        for (i, b) in h.buckets.into_iter().enumerate() {
            let path = |field: &str| format!("buckets[{i}].{field}");
            if b.index as usize >= BUCKETS {
                return Err(ConvertError::new(
                    path("index"),
                    format!("must be below {BUCKETS}, got {}", b.index),
                ));
            }
            if let Some(p) = previous.filter(|&p| b.index <= p) {
                return Err(ConvertError::new(
                    path("index"),
                    format!(
                        "{} follows {p}: buckets go by increasing index, each once",
                        b.index
                    ),
                ));
            }
            if b.count == 0 {
                return Err(ConvertError::new(
                    path("count"),
                    "must not be 0 (only non-zero buckets are sent)",
                ));
            }
            total = total.checked_add(b.count).ok_or_else(|| {
                ConvertError::new(path("count"), "the buckets' counts overflow a u64")
            })?;
            previous = Some(b.index);
            buckets.push((b.index, b.count));
        }
        if total != h.count {
            return Err(ConvertError::new(
                "count",
                format!(
                    "must be the sum of the buckets' counts ({total}), got {}",
                    h.count
                ),
            ));
        }
        Ok(HistogramSnapshot {
            buckets,
            count: h.count,
            sum_micros: h.sum_micros,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hist(buckets: &[(u32, u64)], count: u64) -> v1::HistogramSnapshot {
        v1::HistogramSnapshot {
            buckets: buckets
                .iter()
                .map(|&(index, count)| v1::Bucket { index, count })
                .collect(),
            count,
            sum_micros: 1,
        }
    }

    #[test]
    fn short_arrays_are_padded_and_absent_messages_are_zero() {
        let s = SliSnapshot::try_from(v1::SliSnapshot {
            requests: Some(v1::CountsByOrigin {
                real: vec![0, 4],
                injected: vec![],
            }),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(s.requests.real, [0, 4, 0, 0, 0]);
        assert_eq!(s.grpc, ByOrigin::default());
        assert_eq!(s.latency, HistogramSnapshot::default());
    }

    #[test]
    fn malformed_histograms_name_the_bucket() {
        let cases = [
            (hist(&[(448, 1)], 1), "buckets[0].index"),
            (hist(&[(3, 1), (3, 1)], 2), "buckets[1].index"),
            (hist(&[(5, 1), (3, 1)], 2), "buckets[1].index"),
            (hist(&[(3, 0)], 0), "buckets[0].count"),
            (hist(&[(3, 2)], 3), "count"),
            (hist(&[(1, u64::MAX), (2, 1)], 0), "buckets[1].count"),
        ];
        for (h, path) in cases {
            let err = HistogramSnapshot::try_from(h.clone()).unwrap_err();
            assert_eq!(err.path, path, "{h:?}: {err}");
        }
        let ok = HistogramSnapshot::try_from(hist(&[(0, 1), (447, 2)], 3)).unwrap();
        assert_eq!(ok.buckets, vec![(0, 1), (447, 2)]);
    }
}
