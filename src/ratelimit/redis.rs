//! The shared store: one Lua script per check (`redis_check.lua`), called with EVALSHA
//! (reloaded on NOSCRIPT by the redis crate), with every policy of the route in one call.
//!
//! Keys carry a hash tag (`proxyfn:rl:{POLICY:KEY}`) so a policy's state and its override
//! always share a Redis Cluster slot. In a cluster, the policies of one route generally live
//! in different slots, so each is checked by its own script call (sent together, so still
//! one round trip of latency); when one refuses, the others are refunded in a second step.

use std::sync::LazyLock;

use futures_util::future::try_join_all;
use redis::Script;

use super::gcra::{Outcome, Quota};
use crate::{
    auth::{digest, hex},
    redis_conn::Redis,
};

static CHECK: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("redis_check.lua")));

/// Gives back one request: moves a TAT back by one interval, keeping its expiry.
static REFUND: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "local tat = tonumber(redis.call('GET', KEYS[1])) \
         if tat then redis.call('SET', KEYS[1], string.format('%d', tat - tonumber(ARGV[1])), 'KEEPTTL') end",
    )
});

/// The decision for one quota, and the quota that applied (an override, or the configured).
#[derive(Clone, Copy, Debug)]
pub struct Checked {
    pub outcome: Outcome,
    pub quota: Quota,
}

pub struct RedisStore {
    redis: Redis,
}

impl RedisStore {
    /// Must be called inside the Tokio runtime; connects on first use, one connection per
    /// server worker (`pools`).
    pub fn new(url: &str, cluster: bool, pools: usize) -> Result<Self, String> {
        Ok(Self {
            redis: Redis::new(url, cluster, pools)?,
        })
    }

    /// Checks one request against `(state key, quota)` pairs in one round trip.
    pub async fn check(
        &self,
        checks: &[(String, Quota)],
    ) -> Result<Vec<Checked>, redis::RedisError> {
        let connection = self.redis.connection().await?;
        let values: Vec<u64> = if self.redis.is_cluster() && checks.len() > 1 {
            let calls = checks.iter().map(|check| {
                let mut connection = connection.clone();
                async move { invoke(std::slice::from_ref(check), &mut connection).await }
            });
            let values = try_join_all(calls).await?.concat();
            refund_if_refused(checks, &values, &connection).await?;
            values
        } else {
            invoke(checks, &mut connection.clone()).await?
        };
        Ok(values
            .chunks_exact(7)
            .map(|v| Checked {
                outcome: Outcome {
                    allowed: v[0] == 1,
                    remaining: u32::try_from(v[1]).unwrap_or(u32::MAX),
                    reset_us: v[2],
                    retry_after_us: v[3],
                    tat: 0,
                },
                quota: Quota {
                    limit: u32::try_from(v[4]).unwrap_or(u32::MAX),
                    period_us: v[5],
                    burst: u32::try_from(v[6]).unwrap_or(u32::MAX),
                },
            })
            .collect())
    }

    /// Sets a per-key override, read by the next check. The key's count starts afresh, so
    /// the new quota applies from the next request whatever the old one had used up.
    pub async fn set_override(&self, state: &str, quota: Quota) -> redis::RedisResult<()> {
        redis::pipe()
            .atomic()
            .hset_multiple(
                override_key(state),
                &[
                    ("limit", u64::from(quota.limit)),
                    ("period_us", quota.period_us),
                    ("burst", u64::from(quota.burst)),
                ],
            )
            .ignore()
            .del(state)
            .ignore()
            .query_async(&mut self.redis.connection().await?)
            .await
    }

    /// The override of `policy` for `key`, if any.
    pub async fn get_override(&self, state: &str) -> redis::RedisResult<Option<Quota>> {
        let (limit, period_us, burst): (Option<u32>, Option<u64>, Option<u32>) =
            redis::cmd("HMGET")
                .arg(override_key(state))
                .arg("limit")
                .arg("period_us")
                .arg("burst")
                .query_async(&mut self.redis.connection().await?)
                .await?;
        Ok(match (limit, period_us, burst) {
            (Some(limit), Some(period_us), Some(burst)) => Some(Quota {
                limit,
                period_us,
                burst,
            }),
            _ => None,
        })
    }

    /// Removes the override (and the key's state, so the new quota starts fresh); returns
    /// whether there was an override.
    pub async fn clear_override(&self, state: &str) -> redis::RedisResult<bool> {
        let removed: (u32, u32) = redis::pipe()
            .del(override_key(state))
            .del(state)
            .query_async(&mut self.redis.connection().await?)
            .await?;
        Ok(removed.0 > 0)
    }
}

/// Cluster only: when any policy refused the request, gives it back to those that allowed
/// it, so a refused request counts against none, as in one script call.
async fn refund_if_refused(
    checks: &[(String, Quota)],
    values: &[u64],
    connection: &crate::redis_conn::Connection,
) -> redis::RedisResult<()> {
    let allowed = |v: &[u64]| v[0] == 1;
    if values.chunks_exact(7).all(allowed) {
        return Ok(());
    }
    let refunds = checks
        .iter()
        .zip(values.chunks_exact(7))
        .filter(|(_, v)| allowed(v))
        .map(|((state, _), v)| {
            let interval = Quota {
                limit: u32::try_from(v[4]).unwrap_or(u32::MAX),
                period_us: v[5],
                burst: 1,
            }
            .interval();
            let mut connection = connection.clone();
            async move {
                REFUND
                    .key(state)
                    .arg(interval)
                    .invoke_async::<()>(&mut connection)
                    .await
            }
        });
    try_join_all(refunds).await.map(drop)
}

async fn invoke(
    checks: &[(String, Quota)],
    connection: &mut crate::redis_conn::Connection,
) -> redis::RedisResult<Vec<u64>> {
    let mut invocation = CHECK.prepare_invoke();
    for (state, quota) in checks {
        invocation
            .key(state)
            .key(override_key(state))
            .arg(quota.limit)
            .arg(quota.period_us)
            .arg(quota.burst);
    }
    invocation.invoke_async(connection).await
}

/// `proxyfn:rl:{POLICY:KEY}`. Sensitive keys (header values, which may be credentials) and
/// keys that are long, contain braces or are not printable ASCII are replaced by their
/// SHA-256, so no secret lands in Redis and no key can break out of its hash tag.
pub fn state_key(policy: &str, key: &str, sensitive: bool) -> String {
    let readable = !sensitive
        && key.len() <= 64
        && key
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'{' && b != b'}');
    if readable {
        format!("proxyfn:rl:{{{policy}:{key}}}")
    } else {
        format!(
            "proxyfn:rl:{{{policy}:sha256:{}}}",
            hex(&digest(key.as_bytes()))
        )
    }
}

fn override_key(state_key: &str) -> String {
    format!("{state_key}:override")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_keys_keep_one_hash_tag_whatever_the_key() {
        assert_eq!(
            state_key("per_ip", "10.0.0.1", false),
            "proxyfn:rl:{per_ip:10.0.0.1}"
        );
        let tricky = state_key("p", "a}b{c", false);
        assert!(tricky.starts_with("proxyfn:rl:{p:sha256:"), "{tricky}");
        assert_eq!(tricky.matches('{').count(), 1);
        let long = state_key("p", &"x".repeat(100), false);
        assert!(long.len() < 100);
        let secret = state_key("by_key", "pfk_secret", true);
        assert!(!secret.contains("pfk_secret"));
    }
}
