//! slicer: cut data into small slices (average size ± variation) with a delay between them,
//! as a slow or fragmenting network would. Slices never split or merge the byte order.

use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slicer {
    /// Average slice size in bytes (>= 1).
    pub average_size: usize,
    /// Slices vary uniformly by up to this many bytes (< average_size).
    pub size_variation: usize,
    /// Pause between slices (Toxiproxy gives it in microseconds).
    pub delay: Duration,
}

impl Slicer {
    /// The length of the next slice, given a uniform random `draw`, never more than `remaining`.
    pub fn next_len(&self, draw: u64, remaining: usize) -> usize {
        let len = if self.size_variation == 0 {
            self.average_size
        } else {
            let span = (self.size_variation * 2 + 1) as u64;
            (self.average_size + (draw % span) as usize).saturating_sub(self.size_variation)
        };
        len.clamp(1, remaining.max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_cover_the_data_exactly_and_vary_within_bounds() {
        let s = Slicer {
            average_size: 10,
            size_variation: 4,
            delay: Duration::ZERO,
        };
        let mut remaining = 1000usize;
        let mut draw = 1u64;
        while remaining > 0 {
            let n = s.next_len(draw, remaining);
            assert!(n >= 1 && n <= remaining);
            if remaining > 14 {
                assert!((6..=14).contains(&n), "{n}");
            }
            remaining -= n;
            draw = draw
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
        }
    }
}
