//! The shared store: one Lua script (`redis_check.lua`), called with EVALSHA (reloaded on
//! NOSCRIPT by the redis crate), decides every policy of a request at once.
//!
//! Checks are batched per worker, as client-side auto-pipelining does: a worker's checks go
//! to a task that sends whatever has queued as one script call, and the checks that arrive
//! while that call is out go together in the next. An idle gateway's check is sent at once;
//! a busy one shares each call, and most of Redis's cost per call (the command, the script
//! set-up, `TIME`, the reply) with it. The script decides a batch's requests in order, each
//! atomically, so the answers are those of one call per request, back to back.
//!
//! Keys carry a hash tag (`proxyfn:rl:{POLICY:KEY}`) so a policy's state and its override
//! always share a Redis Cluster slot. In a cluster, the policies of one route generally live
//! in different slots, so each is checked by its own script call (sent together, so still
//! one round trip of latency), without batching; when one refuses, the others are refunded
//! in a second step.

use std::{
    sync::{LazyLock, Mutex, PoisonError},
    time::Duration,
};

use futures_util::future::try_join_all;
use redis::Script;
use tokio::sync::{mpsc, oneshot};

use super::gcra::{Outcome, Quota};
use crate::{
    auth::{digest, hex},
    redis_conn::Redis,
    runtime::worker_slot,
};

static CHECK: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("redis_check.lua")));

/// Gives back one request: moves a TAT back by one interval, keeping its expiry.
static REFUND: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "local tat = tonumber(redis.call('GET', KEYS[1])) \
         if tat then redis.call('SET', KEYS[1], string.format('%d', tat - tonumber(ARGV[1])), 'KEEPTTL') end",
    )
});

/// Requests decided by one script call at most: enough to share each call widely, few
/// enough that one call never holds Redis (which runs scripts one at a time) for long.
const MAX_BATCH: usize = 64;

/// Values the script returns per quota.
const VALUES_PER_QUOTA: usize = 7;

/// The decision for one quota, and the quota that applied (an override, or the configured).
#[derive(Clone, Copy, Debug)]
pub struct Checked {
    pub outcome: Outcome,
    pub quota: Quota,
}

pub struct RedisStore {
    redis: Redis,
    /// Standalone Redis: per worker, the queue of the task that sends that worker's checks
    /// (started on the worker's first check, and again if its runtime has gone).
    batches: Box<[Mutex<Option<mpsc::UnboundedSender<Queued>>>]>,
    /// Bound on one batched call, so a call that never returns cannot hold up the queue.
    timeout: Duration,
}

/// One request's checks, waiting for the worker's next script call.
struct Queued {
    checks: Vec<(String, Quota)>,
    reply: oneshot::Sender<redis::RedisResult<Vec<u64>>>,
}

impl RedisStore {
    /// Must be called inside the Tokio runtime; connects on first use, one connection per
    /// server worker (`pools`). `timeout` bounds each script call.
    pub fn new(url: &str, cluster: bool, pools: usize, timeout: Duration) -> Result<Self, String> {
        Ok(Self {
            redis: Redis::new(url, cluster, pools)?,
            batches: (0..pools.max(1)).map(|_| Mutex::new(None)).collect(),
            timeout,
        })
    }

    /// `Err` at once while Redis is known to be down (see [`Redis::available`]).
    pub fn available(&self) -> Result<(), crate::redis_conn::StoreDown> {
        self.redis.available()
    }

    /// Records whether a check got Redis's answer.
    pub fn record(&self, answered: bool) {
        self.redis.record(answered);
    }

    /// Checks one request against `(state key, quota)` pairs: all of them count it, or none.
    pub async fn check(
        &self,
        checks: Vec<(String, Quota)>,
    ) -> Result<Vec<Checked>, redis::RedisError> {
        let values = if self.redis.is_cluster() {
            self.check_in_cluster(&checks).await?
        } else {
            let (reply, answer) = oneshot::channel();
            self.enqueue(Queued { checks, reply });
            answer.await.map_err(|_| {
                redis::RedisError::from((redis::ErrorKind::Io, "the rate-limit batch task ended"))
            })??
        };
        Ok(values
            .chunks_exact(VALUES_PER_QUOTA)
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

    /// Hands `queued` to this worker's batch task, starting the task on the current runtime
    /// when there is none or its runtime has shut down.
    fn enqueue(&self, queued: Queued) {
        let slot = &self.batches[worker_slot(self.batches.len())];
        let mut sender = slot.lock().unwrap_or_else(PoisonError::into_inner);
        let queued = match sender.as_ref() {
            Some(queue) => match queue.send(queued) {
                Ok(()) => return,
                Err(mpsc::error::SendError(queued)) => queued,
            },
            None => queued,
        };
        let (queue, receiver) = mpsc::unbounded_channel();
        tokio::spawn(send_batches(receiver, self.redis.clone(), self.timeout));
        // The receiver is alive: the task holding it has not been polled yet.
        let _ = queue.send(queued);
        *sender = Some(queue);
    }

    /// Cluster: one script call per policy, as each may live in another slot.
    async fn check_in_cluster(&self, checks: &[(String, Quota)]) -> redis::RedisResult<Vec<u64>> {
        let connection = self.redis.connection().await?;
        let calls = checks.iter().map(|check| {
            let mut connection = connection.clone();
            async move { invoke(&[std::slice::from_ref(check)], &mut connection).await }
        });
        let values = try_join_all(calls).await?.concat();
        refund_if_refused(checks, &values, &connection).await?;
        Ok(values)
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

/// A worker's batch task: sends what has queued as one script call, waits for its answer,
/// and repeats; ends when the store is dropped.
async fn send_batches(mut queue: mpsc::UnboundedReceiver<Queued>, redis: Redis, timeout: Duration) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while queue.recv_many(&mut batch, MAX_BATCH).await > 0 {
        // A check whose request stopped waiting (timed out, or was cancelled) is not counted.
        batch.retain(|queued: &Queued| !queued.reply.is_closed());
        if batch.is_empty() {
            continue;
        }
        let answer = tokio::time::timeout(timeout, async {
            let mut connection = redis.connection().await?;
            let requests: Vec<&[(String, Quota)]> = batch
                .iter()
                .map(|queued| queued.checks.as_slice())
                .collect();
            invoke(&requests, &mut connection).await
        })
        .await
        .unwrap_or_else(|_| {
            Err(redis::RedisError::from((
                redis::ErrorKind::Io,
                "no answer within the rate-limit timeout",
            )))
        });
        answer_each(&mut batch, answer);
    }
}

/// Gives each request of a batch its own values of the script's reply, or the call's error.
fn answer_each(batch: &mut Vec<Queued>, answer: redis::RedisResult<Vec<u64>>) {
    let quotas: usize = batch.iter().map(|queued| queued.checks.len()).sum();
    let answer = answer.and_then(|values| {
        if values.len() == VALUES_PER_QUOTA * quotas {
            Ok(values)
        } else {
            Err(redis::RedisError::from((
                redis::ErrorKind::Parse,
                "the rate-limit script's reply has the wrong length",
            )))
        }
    });
    match answer {
        Ok(values) => {
            let mut values = values.into_iter();
            for queued in batch.drain(..) {
                let mine = values
                    .by_ref()
                    .take(VALUES_PER_QUOTA * queued.checks.len())
                    .collect();
                let _ = queued.reply.send(Ok(mine));
            }
        }
        Err(error) => {
            for queued in batch.drain(..) {
                let _ = queued.reply.send(Err(error.clone()));
            }
        }
    }
}

/// One script call deciding `requests` in order, each over its `(state key, quota)` pairs.
async fn invoke(
    requests: &[&[(String, Quota)]],
    connection: &mut crate::redis_conn::Connection,
) -> redis::RedisResult<Vec<u64>> {
    let mut invocation = CHECK.prepare_invoke();
    for checks in requests {
        invocation.arg(checks.len());
        for (state, quota) in *checks {
            invocation
                .key(state)
                .key(override_key(state))
                .arg(quota.limit)
                .arg(quota.period_us)
                .arg(quota.burst);
        }
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
