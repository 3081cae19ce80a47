//! GCRA, the generic cell rate algorithm (ITU-T I.371): a token bucket kept as one number
//! per key, the "theoretical arrival time" (TAT) at which the bucket is full again.
//!
//! A quota of `limit` requests per `period` spaces requests `interval = period / limit` apart
//! and lets `burst` of them arrive at once: a request at `now` is allowed when, after adding
//! its `interval`, the TAT is no more than `burst * interval` ahead of `now`. Every number is
//! an integer count of microseconds, the same arithmetic as the Redis script
//! (`redis_check.lua`), so the memory store and Redis agree on every decision.

/// A quota in the units GCRA works with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quota {
    pub limit: u32,
    pub period_us: u64,
    pub burst: u32,
}

impl Quota {
    /// `limit` requests per `per`, `burst` at once (validated by `config::quota_problems`).
    pub fn new(limit: u32, per: std::time::Duration, burst: u32) -> Self {
        Self {
            limit,
            period_us: u64::try_from(per.as_micros()).unwrap_or(u64::MAX),
            burst,
        }
    }

    /// The time one request "costs": period / limit, at least 1 µs.
    pub fn interval(&self) -> u64 {
        (self.period_us / u64::from(self.limit.max(1))).max(1)
    }

    /// How far ahead of now the TAT may run: room for `burst` requests.
    fn tolerance(&self) -> u64 {
        self.interval() * u64::from(self.burst)
    }
}

/// One decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub allowed: bool,
    /// Requests still allowed right now after this one.
    pub remaining: u32,
    /// Microseconds until the bucket is full again.
    pub reset_us: u64,
    /// Microseconds until a refused request would be allowed (0 when allowed).
    pub retry_after_us: u64,
    /// The TAT to store: advanced when allowed, unchanged when refused.
    pub tat: u64,
}

/// Decides one request at `now` against a key whose stored TAT is `tat` (0 when unknown).
pub fn check(tat: u64, now: u64, quota: Quota) -> Outcome {
    let interval = quota.interval();
    let tolerance = quota.tolerance();
    let start = tat.max(now);
    let until_full = start + interval - now;
    if until_full > tolerance {
        Outcome {
            allowed: false,
            remaining: 0,
            reset_us: start - now,
            retry_after_us: until_full - tolerance,
            tat,
        }
    } else {
        Outcome {
            allowed: true,
            remaining: u32::try_from((tolerance - until_full) / interval).unwrap_or(u32::MAX),
            reset_us: until_full,
            retry_after_us: 0,
            tat: start + interval,
        }
    }
}

/// Gives back one allowed request, when a later policy refused it.
pub fn refund(tat: u64, quota: Quota) -> u64 {
    tat.saturating_sub(quota.interval())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: u64 = 1_000_000;

    fn quota(limit: u32, period_us: u64, burst: u32) -> Quota {
        Quota {
            limit,
            period_us,
            burst,
        }
    }

    /// Runs requests at the given times against one key; returns the allowed times.
    fn run(quota: Quota, times: &[u64]) -> Vec<u64> {
        let mut tat = 0;
        let mut allowed = vec![];
        for &now in times {
            let outcome = check(tat, now, quota);
            tat = outcome.tat;
            if outcome.allowed {
                allowed.push(now);
            }
        }
        allowed
    }

    #[test]
    fn a_fresh_key_allows_the_burst_then_refuses() {
        let q = quota(10, SECOND, 3);
        let now = 5 * SECOND;
        let mut tat = 0;
        let mut remaining = vec![];
        for _ in 0..3 {
            let outcome = check(tat, now, q);
            assert!(outcome.allowed);
            remaining.push(outcome.remaining);
            tat = outcome.tat;
        }
        assert_eq!(remaining, [2, 1, 0]);
        let refused = check(tat, now, q);
        assert!(!refused.allowed);
        assert_eq!(refused.tat, tat, "a refusal costs nothing");
        assert_eq!(refused.retry_after_us, 100_000, "one interval");
        assert_eq!(refused.reset_us, 300_000, "three intervals until full");
    }

    #[test]
    fn the_retry_after_time_is_exactly_when_the_next_request_passes() {
        let q = quota(4, SECOND, 1);
        let first = check(0, SECOND, q);
        let refused = check(first.tat, SECOND + 1, q);
        assert!(!refused.allowed);
        let at = SECOND + 1 + refused.retry_after_us;
        assert!(check(first.tat, at, q).allowed);
        assert!(!check(first.tat, at - 1, q).allowed);
    }

    #[test]
    fn a_refund_gives_back_exactly_one_request() {
        let q = quota(10, SECOND, 2);
        let a = check(0, SECOND, q);
        let b = check(a.tat, SECOND, q);
        assert!(!check(b.tat, SECOND, q).allowed);
        assert!(check(refund(b.tat, q), SECOND, q).allowed);
    }

    /// Property: in any window of length `period`, no more than limit + burst requests pass,
    /// whatever the arrival pattern.
    #[test]
    fn no_window_of_one_period_admits_more_than_limit_plus_burst() {
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..300 {
            let q = quota(rng.u32(1..50), rng.u64(1_000..5 * SECOND), rng.u32(1..60));
            let mut now = rng.u64(0..SECOND);
            let mut times = vec![];
            for _ in 0..rng.usize(1..400) {
                // Clusters of simultaneous arrivals and gaps of every size.
                now += match rng.u8(0..4) {
                    0 => 0,
                    1 => rng.u64(0..q.interval()),
                    2 => rng.u64(0..q.period_us),
                    _ => rng.u64(0..3 * q.period_us),
                };
                times.push(now);
            }
            let allowed = run(q, &times);
            let bound = (q.limit + q.burst) as usize;
            for (i, &start) in allowed.iter().enumerate() {
                let in_window = allowed[i..]
                    .iter()
                    .take_while(|&&t| t < start + q.period_us)
                    .count();
                assert!(in_window <= bound, "{q:?}: {in_window} > {bound}");
            }
        }
    }

    /// Property: after an idle time of k intervals, exactly min(k, burst) requests pass at
    /// once, and a steady stream at the quota's rate is never refused.
    #[test]
    fn capacity_refills_exactly_one_request_per_interval() {
        let mut rng = fastrand::Rng::with_seed(11);
        for _ in 0..300 {
            let q = quota(rng.u32(1..100), rng.u64(1_000..10 * SECOND), rng.u32(1..30));
            let interval = q.interval();
            // Drain the bucket.
            let start = 10 * SECOND;
            let mut tat = 0;
            while let Outcome {
                allowed: true,
                tat: next,
                ..
            } = check(tat, start, q)
            {
                tat = next;
            }
            let idle = rng.u32(0..40);
            let later = start + u64::from(idle) * interval;
            let mut passed = 0;
            let mut t = tat;
            while let Outcome {
                allowed: true,
                tat: next,
                ..
            } = check(t, later, q)
            {
                t = next;
                passed += 1;
            }
            assert_eq!(passed, idle.min(q.burst), "{q:?} after {idle} intervals");

            let steady: Vec<u64> = (1..200).map(|k| later + k * interval).collect();
            let mut t2 = t;
            for &now in &steady {
                let outcome = check(t2, now, q);
                assert!(outcome.allowed, "{q:?}: steady request at {now} refused");
                t2 = outcome.tat;
            }
        }
    }
}
