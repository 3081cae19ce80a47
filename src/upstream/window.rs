//! A sliding window of counters in ten buckets: cheap to update, and old events age out
//! without a timer. Callers pass `now`, so tests control time.

use std::time::{Duration, Instant};

const BUCKETS: usize = 10;

#[derive(Clone, Copy, Debug, Default)]
struct Bucket {
    /// Which slice of time this bucket counts (`elapsed / bucket_len`).
    slot: u64,
    a: u64,
    b: u64,
}

/// Two counters (`a`, `b`) over the last `window`.
#[derive(Debug)]
pub struct Window {
    origin: Instant,
    bucket_len: Duration,
    buckets: [Bucket; BUCKETS],
}

impl Window {
    pub fn new(window: Duration, origin: Instant) -> Self {
        let bucket_len = (window / BUCKETS as u32).max(Duration::from_millis(1));
        Self {
            origin,
            bucket_len,
            buckets: [Bucket::default(); BUCKETS],
        }
    }

    fn slot(&self, now: Instant) -> u64 {
        (now.saturating_duration_since(self.origin).as_nanos() / self.bucket_len.as_nanos()) as u64
    }

    pub fn add(&mut self, now: Instant, a: u64, b: u64) {
        let slot = self.slot(now);
        let bucket = &mut self.buckets[(slot % BUCKETS as u64) as usize];
        if bucket.slot != slot {
            *bucket = Bucket { slot, a: 0, b: 0 };
        }
        bucket.a += a;
        bucket.b += b;
    }

    /// Sums of `a` and `b` over the buckets still inside the window.
    pub fn totals(&self, now: Instant) -> (u64, u64) {
        let current = self.slot(now);
        self.buckets
            .iter()
            .filter(|b| {
                current.saturating_sub(b.slot) < BUCKETS as u64
                    && b.slot <= current
                    && (b.a > 0 || b.b > 0)
            })
            .fold((0, 0), |(a, b), bucket| (a + bucket.a, b + bucket.b))
    }

    pub fn reset(&mut self) {
        self.buckets = [Bucket::default(); BUCKETS];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_age_out_after_the_window() {
        let start = Instant::now();
        let mut window = Window::new(Duration::from_secs(10), start);
        window.add(start, 1, 0);
        window.add(start + Duration::from_secs(5), 0, 2);
        assert_eq!(window.totals(start + Duration::from_secs(9)), (1, 2));
        assert_eq!(window.totals(start + Duration::from_secs(11)), (0, 2));
        assert_eq!(window.totals(start + Duration::from_secs(16)), (0, 0));
    }
}
