//! Sticky cohorts: decide a request's fate by hashing a header value (a user id, say) with the
//! seed, so the same key gets the same decision on every request and on every agent.

use http::HeaderName;

use crate::fault::Probability;
use crate::tcp::plan::mix;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cohort {
    /// The request header holding the key.
    pub header: HeaderName,
    pub seed: u64,
}

impl Cohort {
    /// The decision for `key` at probability `p`. Stable across processes: FNV-1a over the key,
    /// mixed with the seed.
    pub fn admits(&self, key: &[u8], p: Probability) -> bool {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in key {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        p.admits(mix(h ^ self.seed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_key_always_gets_the_same_answer_and_keys_spread() {
        let c = Cohort {
            header: HeaderName::from_static("x-user"),
            seed: 42,
        };
        let p = Probability::new(0.3).unwrap();
        let first = c.admits(b"user-17", p);
        assert!((0..1000).all(|_| c.admits(b"user-17", p) == first));
        let hits = (0..10_000)
            .filter(|i| c.admits(format!("user-{i}").as_bytes(), p))
            .count();
        assert!((2700..3300).contains(&hits), "{hits}");
        // Another seed is another cohort.
        let d = Cohort {
            seed: 43,
            ..c.clone()
        };
        let same = (0..1000)
            .filter(|i| {
                let k = format!("user-{i}");
                c.admits(k.as_bytes(), p) == d.admits(k.as_bytes(), p)
            })
            .count();
        assert!(same < 900, "{same}");
    }
}
