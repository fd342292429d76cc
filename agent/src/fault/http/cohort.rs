//! Sticky cohorts: decide a request's fate by hashing a header value (a user id, say) with the
//! seed, so the same key gets the same decision on every request and on every agent.
//!
//! The hash also splits keys into the two arms of an experiment (in the spirit of Netflix's
//! ChAP), so that guards can compare them: with probability `p`, a key whose draw (the hash
//! mapped onto `[0, 1)`) is below `p` is in the **treatment** (the fault may apply to it), a
//! key whose draw lands in the equal-size band right above, `[p, 2p)`, is in the **control**
//! (the fault never applies to it), and every other key is in **neither**. When `p > 0.5` the
//! band is cut at 1, `[p, 1)`, so the control is smaller than the treatment; at `p = 1` it is
//! empty.

use http::HeaderName;

use crate::fault::{Probability, to_unit};
use crate::tcp::plan::mix;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cohort {
    /// The request header holding the key.
    pub header: HeaderName,
    pub seed: u64,
}

/// The arm of an experiment a request is in, by its cohort key.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Arm {
    /// The key's draw is below `p`: the fault may apply.
    Treatment,
    /// The key's draw is in `[p, min(2p, 1))`: the fault never applies; the baseline.
    Control,
    /// Any other key, a request without a key, or a route without a cohort fault.
    #[default]
    Neither,
}

impl Cohort {
    /// The decision for `key` at probability `p`. Stable across processes: FNV-1a over the key,
    /// mixed with the seed. The same as `self.arm(key, p) == Arm::Treatment`.
    pub fn admits(&self, key: &[u8], p: Probability) -> bool {
        p.admits(self.draw(key))
    }

    /// The arm `key` is in at probability `p` (see the module docs); the treatment is exactly
    /// the keys [`admits`](Self::admits) lets through.
    pub fn arm(&self, key: &[u8], p: Probability) -> Arm {
        let draw = self.draw(key);
        if p.admits(draw) {
            Arm::Treatment
        } else if to_unit(draw) < (2.0 * p.get()).min(1.0) {
            Arm::Control
        } else {
            Arm::Neither
        }
    }

    fn draw(&self, key: &[u8]) -> u64 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in key {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        mix(h ^ self.seed)
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

    fn cohort() -> Cohort {
        Cohort {
            header: HeaderName::from_static("x-user"),
            seed: 42,
        }
    }

    /// Arms of `n` keys `user-0..n` at `p`: (treatment, control, neither).
    fn shares(c: &Cohort, p: f64, n: usize) -> (usize, usize, usize) {
        let p = Probability::new(p).unwrap();
        let mut counts = (0, 0, 0);
        for i in 0..n {
            match c.arm(format!("user-{i}").as_bytes(), p) {
                Arm::Treatment => counts.0 += 1,
                Arm::Control => counts.1 += 1,
                Arm::Neither => counts.2 += 1,
            }
        }
        counts
    }

    #[test]
    fn a_key_stays_in_its_arm_and_the_treatment_is_what_admits_lets_through() {
        let c = cohort();
        let p = Probability::new(0.2).unwrap();
        for i in 0..2_000 {
            let key = format!("user-{i}");
            let arm = c.arm(key.as_bytes(), p);
            assert!((0..5).all(|_| c.arm(key.as_bytes(), p) == arm));
            assert_eq!(arm == Arm::Treatment, c.admits(key.as_bytes(), p), "{key}");
        }
    }

    #[test]
    fn at_twenty_percent_treatment_and_control_each_get_a_fifth_of_the_keys() {
        let (treatment, control, neither) = shares(&cohort(), 0.2, 10_000);
        assert!((1800..2200).contains(&treatment), "{treatment}");
        assert!((1800..2200).contains(&control), "{control}");
        assert_eq!(treatment + control + neither, 10_000);
    }

    #[test]
    fn above_one_half_the_control_is_the_rest_of_the_keys() {
        let c = cohort();
        let (treatment, control, neither) = shares(&c, 0.7, 10_000);
        assert!((6700..7300).contains(&treatment), "{treatment}");
        assert_eq!(neither, 0, "[0.7, 1) is the control");
        assert_eq!(treatment + control, 10_000);
        // The control keys are exactly the ones whose draw is at or above 0.7.
        let p = Probability::new(0.7).unwrap();
        for i in 0..1_000 {
            let key = format!("user-{i}");
            let unit = to_unit(c.draw(key.as_bytes()));
            assert_eq!(c.arm(key.as_bytes(), p) == Arm::Control, unit >= 0.7);
        }
        // The edges: always (no control), never (no treatment, no control).
        assert_eq!(shares(&c, 1.0, 1_000), (1_000, 0, 0));
        assert_eq!(shares(&c, 0.0, 1_000), (0, 0, 1_000));
    }
}
