//! Warnings on the request path, written at most once a second with the number held back in
//! between, so a failing dependency cannot flood the log with one line per request.
//!
//! ```
//! use proxyfn::observability::throttle::Throttle;
//! static UNREACHABLE: Throttle = Throttle::new();
//! if let Some(held_back) = UNREACHABLE.admit() {
//!     tracing::warn!(held_back, "upstream unreachable");
//! }
//! ```

use std::{
    sync::{
        OnceLock,
        atomic::{AtomicU64, Ordering},
    },
    time::Instant,
};

/// Admits one event a second.
#[derive(Debug, Default)]
pub struct Throttle {
    /// Milliseconds since the process clock's start (plus one) of the last admitted event.
    last: AtomicU64,
    held_back: AtomicU64,
}

impl Throttle {
    pub const fn new() -> Self {
        Self {
            last: AtomicU64::new(0),
            held_back: AtomicU64::new(0),
        }
    }

    /// `Some(n)`: write this one, with `n` held back since the last; `None`: hold it back.
    pub fn admit(&self) -> Option<u64> {
        self.admit_at(now_ms())
    }

    fn admit_at(&self, now: u64) -> Option<u64> {
        let last = self.last.load(Ordering::Relaxed);
        let due = last == 0 || now.saturating_sub(last) >= 1000;
        if due
            && self
                .last
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            return Some(self.held_back.swap(0, Ordering::Relaxed));
        }
        self.held_back.fetch_add(1, Ordering::Relaxed);
        None
    }
}

fn now_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    let elapsed = START.get_or_init(Instant::now).elapsed();
    u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX - 1) + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_event_a_second_is_admitted_with_the_count_held_back() {
        let throttle = Throttle::new();
        assert_eq!(throttle.admit_at(1), Some(0));
        assert_eq!(throttle.admit_at(500), None);
        assert_eq!(throttle.admit_at(999), None);
        assert_eq!(throttle.admit_at(1001), Some(2));
        assert_eq!(throttle.admit_at(1002), None);
        assert_eq!(throttle.admit_at(5000), Some(1));
    }
}
