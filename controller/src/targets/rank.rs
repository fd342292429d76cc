//! The order in which an experiment takes agents: each agent's rank is a hash of the
//! experiment's seed and the agent's id, and the lowest ranks are taken first (rendezvous, or
//! highest-random-weight, hashing).
//!
//! Why this gives stable, spread choices:
//! - An agent's rank depends on the seed and its own id only, never on the other agents nor
//!   on the order the registry lists them: the same seed and the same agents always give the
//!   same choice.
//! - Agents that come and go disturb only their own slots. Taking the first n ranked agents,
//!   an agent that arrives changes the choice only when it ranks among the first n (it then
//!   displaces the n-th); one that leaves frees only its own slot (the n+1-th moves up). A
//!   choice by position in a sorted list, or by a random draw over it, would reshuffle when
//!   one agent joins.
//! - Different seeds give unrelated orders, so successive experiments spread over the fleet
//!   instead of landing on the agents whose names happen to sort first.
//!
//! The hash is written out here rather than taken from `std`, whose `DefaultHasher` algorithm
//! is unspecified and may change between Rust releases: a recorded choice must mean the same
//! to a later controller, which compares a newcomer's rank with those of the agents chosen
//! when the experiment started. Changing [`rank`] changes which agents experiments choose.

use std::cmp::Ordering;

/// The rank of agent `id` under `seed`; lower ranks are chosen first.
///
/// FNV-1a over the id's bytes, starting from a state derived from the seed, then the
/// SplitMix64 finalizer so that every bit of the seed and the id moves every bit of the rank.
pub fn rank(seed: u64, id: &str) -> u64 {
    const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;
    const GOLDEN: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut h = mix(seed ^ GOLDEN);
    for b in id.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(FNV_PRIME);
    }
    mix(h ^ id.len() as u64)
}

/// Orders agent ids as they are chosen: by rank, ties (which need two ids with the same
/// 64-bit hash) broken by id so the order is total.
pub(super) fn by_rank(seed: u64, a: &str, b: &str) -> Ordering {
    rank(seed, a).cmp(&rank(seed, b)).then_with(|| a.cmp(b))
}

/// SplitMix64's finalizer: a bijection on `u64` with full avalanche.
fn mix(mut x: u64) -> u64 {
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Recorded choices depend on these values: a change here changes which agents every
    /// seeded experiment targets, and how a restarted controller judges newcomers.
    #[test]
    fn ranks_are_pinned() {
        assert_eq!(rank(0, ""), 0x4821_8226_ff3c_d4bf);
        assert_eq!(rank(42, "agent-1"), 0x78ef_585f_85f4_6710);
        assert_eq!(rank(42, "agent-2"), 0x47b6_f498_e8b2_4fb0);
        assert_eq!(rank(43, "agent-1"), 0xf30c_87b9_c1e6_9aa1);
    }

    #[test]
    fn one_bit_of_seed_or_id_moves_about_half_the_rank() {
        let mut flipped = 0u32;
        let mut trials = 0u32;
        for seed in 0..256u64 {
            let base = rank(seed, "agent-7");
            flipped += (base ^ rank(seed ^ 1, "agent-7")).count_ones();
            flipped += (base ^ rank(seed, "agent-6")).count_ones();
            trials += 2;
        }
        let mean = f64::from(flipped) / f64::from(trials);
        assert!((28.0..36.0).contains(&mean), "mean bits flipped {mean}");
    }

    #[test]
    fn ties_are_broken_by_id() {
        assert_eq!(by_rank(1, "a", "a"), Ordering::Equal);
        assert_eq!(by_rank(1, "a", "b"), by_rank(1, "b", "a").reverse());
    }
}
