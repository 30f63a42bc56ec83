//! A plugin's hook processing times: a lock-free histogram of log-scale
//! buckets from 1 µs to about 69 s, four buckets per power of two (each
//! bucket at most 25 % wider than the one below).
//!
//! Recording is one atomic add on the plugin's thread; readers take a
//! [`Snapshot`] (a copy of the counts), subtract an older one to look at a
//! window, and ask it for a quantile. The quantile is the midpoint of the
//! bucket it falls in, so it is within about 12 % of the true value.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Buckets per power of two.
const SUB: u32 = 4;
/// The power of two (in nanoseconds) below which everything shares the
/// first bucket: 2^10 ns ≈ 1 µs.
const LOW: u32 = 10;
/// The power of two (in nanoseconds) from which everything shares the last
/// bucket: 2^36 ns ≈ 69 s.
const HIGH: u32 = 36;
/// How many buckets: one below 1 µs, `SUB` per power of two, one above.
pub const BUCKETS: usize = ((HIGH - LOW) * SUB) as usize + 2;

/// The bucket a duration of `nanos` falls in.
pub fn bucket(nanos: u64) -> usize {
    if nanos < 1 << LOW {
        return 0;
    }
    let exp = 63 - nanos.leading_zeros();
    if exp >= HIGH {
        return BUCKETS - 1;
    }
    // The two bits after the leading one choose the quarter.
    let sub = ((nanos >> (exp - 2)) & u64::from(SUB - 1)) as u32;
    ((exp - LOW) * SUB + sub) as usize + 1
}

/// The range `[low, high)` of bucket `i`, in nanoseconds (the last bucket's
/// `high` is its `low` doubled, as if it were one more power of two).
pub fn bounds(i: usize) -> (u64, u64) {
    match i {
        0 => (0, 1 << LOW),
        i if i >= BUCKETS - 1 => (1 << HIGH, 1 << (HIGH + 1)),
        i => {
            let k = (i - 1) as u32;
            let exp = LOW + k / SUB;
            let sub = u64::from(k % SUB);
            let step = 1u64 << (exp - 2);
            ((4 + sub) * step, (5 + sub) * step)
        }
    }
}

/// Counts of hook calls per bucket, written by one plugin's thread.
#[derive(Debug)]
pub struct Histogram {
    counts: [AtomicU64; BUCKETS],
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

impl Histogram {
    /// Counts one call that took `elapsed`.
    #[inline]
    pub fn record(&self, elapsed: Duration) {
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.counts[bucket(nanos)].fetch_add(1, Ordering::Relaxed);
    }

    /// The counts now.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            counts: std::array::from_fn(|i| self.counts[i].load(Ordering::Relaxed)),
        }
    }
}

/// A copy of a [`Histogram`]'s counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    counts: [u64; BUCKETS],
}

impl Default for Snapshot {
    fn default() -> Self {
        Snapshot {
            counts: [0; BUCKETS],
        }
    }
}

impl Snapshot {
    /// A snapshot with these counts (bucket by bucket; missing ones are 0).
    #[cfg(test)]
    pub fn from_counts(counts: &[u64]) -> Snapshot {
        Snapshot {
            counts: std::array::from_fn(|i| counts.get(i).copied().unwrap_or(0)),
        }
    }

    /// The calls counted since `older` (a snapshot of the same histogram
    /// taken earlier).
    pub fn since(&self, older: &Snapshot) -> Snapshot {
        Snapshot {
            counts: std::array::from_fn(|i| self.counts[i].saturating_sub(older.counts[i])),
        }
    }

    /// How many calls were counted.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The `q` quantile (0 to 1) as the midpoint of its bucket; `None`
    /// when nothing was counted.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        let total = self.total();
        if total == 0 {
            return None;
        }
        // The rank of the call at `q`, 1-based: at least the first call.
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, &n) in self.counts.iter().enumerate() {
            seen += n;
            if seen >= rank {
                let (low, high) = bounds(i);
                return Some(Duration::from_nanos(low + (high - low) / 2));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_log_scale_and_ordered() {
        assert_eq!(bucket(0), 0);
        assert_eq!(bucket(1023), 0);
        assert_eq!(bucket(1024), 1);
        assert_eq!(bucket(1280), 2);
        assert_eq!(bucket(2047), 4);
        assert_eq!(bucket(2048), 5);
        assert_eq!(bucket(u64::MAX), BUCKETS - 1);
        assert_eq!(bucket(1 << 36), BUCKETS - 1);
        assert_eq!(bucket((1 << 36) - 1), BUCKETS - 2);
        // Every bucket's range maps back to it, and the ranges tile.
        for i in 0..BUCKETS {
            let (low, high) = bounds(i);
            assert_eq!(bucket(low), i, "low of {i}");
            assert_eq!(bucket(high - 1), i, "high of {i}");
            if i + 1 < BUCKETS {
                assert_eq!(bounds(i + 1).0, high, "{i} and the next tile");
            }
        }
    }

    #[test]
    fn a_quantile_is_within_its_bucket() {
        let h = Histogram::default();
        for _ in 0..98 {
            h.record(Duration::from_micros(100));
        }
        h.record(Duration::from_millis(5));
        h.record(Duration::from_millis(5));
        let s = h.snapshot();
        assert_eq!(s.total(), 100);
        let p50 = s.quantile(0.5).unwrap();
        assert!(
            p50 >= Duration::from_micros(88) && p50 <= Duration::from_micros(113),
            "{p50:?}"
        );
        let p99 = s.quantile(0.99).unwrap();
        assert!(
            p99 >= Duration::from_micros(4400) && p99 <= Duration::from_micros(5700),
            "{p99:?}"
        );
        assert_eq!(Snapshot::default().quantile(0.5), None);
    }

    #[test]
    fn the_difference_of_two_snapshots_is_the_window_between() {
        let h = Histogram::default();
        h.record(Duration::from_secs(2));
        let before = h.snapshot();
        h.record(Duration::from_micros(10));
        h.record(Duration::from_micros(10));
        let window = h.snapshot().since(&before);
        assert_eq!(window.total(), 2);
        let p99 = window.quantile(0.99).unwrap();
        assert!(p99 < Duration::from_micros(12), "{p99:?}");
        // An older snapshot larger than the newer one (never in practice)
        // saturates instead of wrapping.
        assert_eq!(before.since(&h.snapshot()).total(), 0);
        assert_eq!(
            Snapshot::from_counts(&[1, 2]).since(&Snapshot::from_counts(&[1])),
            Snapshot::from_counts(&[0, 2])
        );
    }
}
