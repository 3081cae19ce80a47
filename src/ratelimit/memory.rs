//! The in-process store: one TAT per key in a sharded map, bounded in size.
//!
//! A key whose TAT lies in the past is indistinguishable from a fresh one, so it can be
//! dropped at any time: that is how idle keys expire. When a shard is full of live keys, a
//! new key shares the shard's overflow bucket until a sweep frees room, so neither memory
//! nor an attacker rotating keys (IPv6 addresses, header values) can grow the map unbounded.

use std::{
    collections::HashMap,
    sync::{Mutex, PoisonError},
    time::Instant,
};

use super::gcra::{self, Outcome, Quota};

const SHARDS: usize = 16;
/// The shortest time between two sweeps of a full shard, in µs.
const SWEEP_EVERY_US: u64 = 1_000_000;

pub struct MemoryStore {
    shards: Box<[Mutex<Shard>]>,
    keys_per_shard: usize,
    hasher: std::collections::hash_map::RandomState,
}

/// Microseconds on a monotonic clock, starting at 1 so that a TAT of 0 means "never seen".
pub struct Clock(Instant);

impl Default for Clock {
    fn default() -> Self {
        Self(Instant::now())
    }
}

impl Clock {
    pub fn now(&self) -> u64 {
        u64::try_from(self.0.elapsed().as_micros()).unwrap_or(u64::MAX) + 1
    }
}

#[derive(Default)]
struct Shard {
    tats: HashMap<Box<str>, u64>,
    overflow: u64,
    next_sweep: u64,
}

impl MemoryStore {
    /// A store that tracks up to about `max_keys` keys.
    pub fn new(max_keys: usize) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            keys_per_shard: max_keys.div_ceil(SHARDS).max(1),
            hasher: Default::default(),
        }
    }

    /// Checks one request for `key` at `now`, recording it when allowed.
    pub fn check(&self, key: &str, quota: Quota, now: u64) -> Outcome {
        self.update(key, now, |tat| {
            let outcome = gcra::check(tat, now, quota);
            (outcome.tat, outcome)
        })
    }

    /// Gives back one request that was allowed for `key`.
    pub fn refund(&self, key: &str, quota: Quota, now: u64) {
        self.update(key, now, |tat| (gcra::refund(tat, quota), ()));
    }

    /// How many keys are tracked (live or not yet swept).
    pub fn tracked_keys(&self) -> usize {
        self.shards.iter().map(|s| lock(s).tats.len()).sum()
    }

    /// Runs `step` on the key's TAT (0 when unknown) and stores the TAT it returns: in the
    /// key's slot, in the shard's overflow bucket when the shard is full of live keys, or
    /// nowhere when the new TAT is already in the past (a fresh key).
    fn update<T>(&self, key: &str, now: u64, step: impl FnOnce(u64) -> (u64, T)) -> T {
        use std::hash::BuildHasher;
        let index = (self.hasher.hash_one(key) as usize) % SHARDS;
        let mut shard = lock(&self.shards[index]);
        if let Some(tat) = shard.tats.get_mut(key) {
            let (next, result) = step(*tat);
            *tat = next;
            return result;
        }
        if shard.tats.len() >= self.keys_per_shard && now >= shard.next_sweep {
            shard.tats.retain(|_, tat| *tat > now);
            shard.next_sweep = now + SWEEP_EVERY_US;
        }
        if shard.tats.len() >= self.keys_per_shard {
            let (next, result) = step(shard.overflow);
            shard.overflow = next;
            return result;
        }
        let (next, result) = step(0);
        if next > now {
            shard.tats.insert(key.into(), next);
        }
        result
    }
}

/// A panic while a shard was locked cannot leave a TAT half-written: keep going.
fn lock(shard: &Mutex<Shard>) -> std::sync::MutexGuard<'_, Shard> {
    shard.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    const Q: Quota = Quota {
        limit: 2,
        period_us: 1_000_000,
        burst: 2,
    };

    #[test]
    fn keys_are_limited_independently() {
        let store = MemoryStore::new(100);
        let now = 10;
        assert!(store.check("a", Q, now).allowed);
        assert!(store.check("a", Q, now).allowed);
        assert!(!store.check("a", Q, now).allowed);
        assert!(store.check("b", Q, now).allowed);
    }

    #[test]
    fn idle_keys_are_swept_when_the_store_is_full() {
        let store = MemoryStore::new(SHARDS); // one key per shard
        for i in 0..200 {
            store.check(&format!("k{i}"), Q, 10);
        }
        assert!(
            store.tracked_keys() <= SHARDS,
            "bounded: {}",
            store.tracked_keys()
        );
        // Two seconds later every key is idle; new keys replace them.
        let later = 2_000_010;
        for i in 0..200 {
            store.check(&format!("n{i}"), Q, later);
        }
        assert!(store.tracked_keys() <= SHARDS);
        let old_keys = store
            .shards
            .iter()
            .flat_map(|s| lock(s).tats.keys().cloned().collect::<Vec<_>>())
            .filter(|k| k.starts_with('k'))
            .count();
        assert_eq!(old_keys, 0, "idle keys were dropped");
    }

    #[test]
    fn keys_beyond_the_bound_share_an_overflow_bucket() {
        let store = MemoryStore::new(SHARDS);
        let allowed = (0..1000)
            .filter(|i| store.check(&format!("k{i}"), Q, 10).allowed)
            .count();
        // Each shard: its one tracked key (2) plus the overflow bucket (2).
        assert!(allowed <= SHARDS * 4, "{allowed}");
    }

    #[test]
    fn a_refund_restores_one_request() {
        let store = MemoryStore::new(100);
        store.check("a", Q, 10);
        store.check("a", Q, 10);
        assert!(!store.check("a", Q, 10).allowed);
        store.refund("a", Q, 10);
        assert!(store.check("a", Q, 10).allowed);
    }
}
