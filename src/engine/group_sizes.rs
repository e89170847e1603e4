//! Group sizes: how many documents each WAL object carried, as a fixed
//! power-of-two histogram of atomic counters. Group commit is what makes
//! small writes cheap on object storage (one PUT for many acknowledged
//! writes); this shows whether it is happening. Recording is two relaxed
//! atomic adds per WAL object, which costs nothing next to the PUT itself.

use std::sync::atomic::{AtomicU64, Ordering};

/// Upper bounds (inclusive) of the buckets; a last bucket takes the rest.
pub const GROUP_SIZE_BOUNDS: [u64; 12] = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096];

#[derive(Debug, Default)]
pub(crate) struct GroupSizes {
    /// Per-bucket (not cumulative) counts; the extra slot is the overflow.
    buckets: [AtomicU64; GROUP_SIZE_BOUNDS.len() + 1],
    docs: AtomicU64,
}

/// A copy of the histogram at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupSizeHistogram {
    /// `(upper bound, cumulative count)` for each of `GROUP_SIZE_BOUNDS`.
    pub buckets: Vec<(u64, u64)>,
    /// WAL objects recorded (the implicit `+Inf` bucket).
    pub count: u64,
    /// Documents in them.
    pub sum: u64,
}

impl GroupSizes {
    pub fn record(&self, docs: u64) {
        let slot = GROUP_SIZE_BOUNDS
            .iter()
            .position(|&b| docs <= b)
            .unwrap_or(GROUP_SIZE_BOUNDS.len());
        self.buckets[slot].fetch_add(1, Ordering::Relaxed);
        self.docs.fetch_add(docs, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> GroupSizeHistogram {
        let mut cumulative = 0;
        let mut buckets = Vec::with_capacity(GROUP_SIZE_BOUNDS.len());
        for (bound, counter) in GROUP_SIZE_BOUNDS.iter().zip(&self.buckets) {
            cumulative += counter.load(Ordering::Relaxed);
            buckets.push((*bound, cumulative));
        }
        let overflow = self.buckets[GROUP_SIZE_BOUNDS.len()].load(Ordering::Relaxed);
        GroupSizeHistogram {
            buckets,
            count: cumulative + overflow,
            sum: self.docs.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative_and_overflow_counts() {
        let g = GroupSizes::default();
        for n in [1, 1, 3, 100, 5000] {
            g.record(n);
        }
        let h = g.snapshot();
        assert_eq!(h.count, 5);
        assert_eq!(h.sum, 5105);
        assert_eq!(h.buckets[0], (1, 2));
        assert_eq!(h.buckets[2], (4, 3));
        assert_eq!(h.buckets[7], (128, 4));
        assert_eq!(h.buckets.last(), Some(&(4096, 4)));
    }
}
