//! Rate limiting: `[rate_limits.NAME]` policies checked on the routes that list them, in two
//! phases. Policies that count by where the request comes from (`ip`, `global`,
//! `header:NAME`) are checked before authentication, so failed attempts count too: 40 wrong
//! API keys from one address meet that address's limit. Policies that count by who it is
//! (`user`, `api_key`) are checked after it, when the principal is known. Both are checked
//! before anything reaches the upstream.
//!
//! The algorithm is GCRA ([`gcra`]): smooth, exact, one number per key. State lives in
//! process ([`memory`], the default) or in Redis ([`redis`], shared by every instance, one
//! script call per request, or per batch of the requests that arrive together). When Redis
//! fails or is slower than `timeout`, `on_store_error` decides: `allow` (fail open), `deny`
//! (503) or `local` (the in-memory limiter, per instance, until Redis answers again). From the
//! first failure on, the store is known to be down and checks decide at once, without
//! waiting on Redis, until a background probe gets an answer.
//!
//! Every response of a limited route carries `RateLimit-Policy` and `RateLimit`
//! (draft-ietf-httpapi-ratelimit-headers-10); a refused request is 429 with `Retry-After`.

pub mod admin;
pub mod config;
pub mod gcra;
pub mod memory;
pub mod redis;

use std::{
    borrow::Cow,
    collections::BTreeMap,
    fmt::Write as _,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use axum::extract::Request;
use http::{HeaderMap, HeaderName, HeaderValue};

use crate::{auth::Principal, config::ConfigError, context::RequestContext, error::Error};
pub use config::OnStoreError;
use config::{LimitKey, PolicySettings, RateLimitSettings, RateLimitStore};
use gcra::{Outcome, Quota};
use memory::MemoryStore;

/// `RateLimit-Policy` (draft-ietf-httpapi-ratelimit-headers-10 §3).
pub static RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
/// `RateLimit` (draft-ietf-httpapi-ratelimit-headers-10 §4).
pub static RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

/// Every policy, built once; routes take [`RouteLimits`] from it.
#[derive(Clone)]
pub struct RateLimiter {
    shared: Arc<Shared>,
    policies: BTreeMap<String, Arc<Policy>>,
}

struct Shared {
    redis: Option<redis::RedisStore>,
    on_store_error: OnStoreError,
    timeout: Duration,
    store_errors: AtomicU64,
    /// Whether the last Redis check failed; flips back (and logs) when Redis answers again.
    degraded: AtomicBool,
    /// Store errors are logged at most once a second.
    logged: crate::observability::throttle::Throttle,
    clock: memory::Clock,
}

struct Policy {
    name: Arc<str>,
    key: LimitKey,
    quota: Quota,
    /// The policy's own state in memory: the store, or the `local` fallback.
    memory: MemoryStore,
    /// This policy's `RateLimit-Policy` item, `"NAME";q=LIMIT;w=SECONDS`.
    item: String,
}

impl Policy {
    fn new(settings: &PolicySettings, max_keys: usize) -> Self {
        let quota = Quota::new(settings.limit, settings.per, settings.burst);
        Self {
            name: settings.name.as_str().into(),
            key: settings.key.clone(),
            quota,
            memory: MemoryStore::new(max_keys),
            item: policy_item(&settings.name, quota),
        }
    }

    /// The value this request is counted under. Requests without the principal or header a
    /// policy counts by fall back to the client address (`ip:ADDR`), never to a shared bucket.
    fn key_of<'r>(&self, request: &'r Request) -> Cow<'r, str> {
        let by_ip = || -> Cow<'r, str> {
            match RequestContext::of(request.extensions()).and_then(|c| c.client.ip) {
                Some(ip) => Cow::Owned(format!("ip:{ip}")),
                None => Cow::Borrowed("ip:unknown"),
            }
        };
        let principal = request.extensions().get::<Principal>();
        match &self.key {
            LimitKey::Global => Cow::Borrowed("global"),
            LimitKey::Ip => by_ip(),
            // A token without `sub` is nobody in particular: counted by address, never in one
            // bucket shared by every such token.
            LimitKey::User => match principal {
                Some(principal) if !principal.id.is_empty() => Cow::Borrowed(principal.id.as_str()),
                _ => by_ip(),
            },
            LimitKey::ApiKey => match principal {
                Some(p) if p.provider.starts_with("api_key:") => Cow::Borrowed(p.id.as_str()),
                _ => by_ip(),
            },
            LimitKey::Header(name) => match request.headers().get(name) {
                Some(value) if !value.is_empty() => String::from_utf8_lossy(value.as_bytes()),
                _ => by_ip(),
            },
        }
    }

    /// Header values may be credentials: they are hashed before they reach Redis.
    fn sensitive(&self) -> bool {
        matches!(self.key, LimitKey::Header(_))
    }

    /// Whether the policy counts by who the caller is, known only after authentication.
    fn needs_principal(&self) -> bool {
        matches!(self.key, LimitKey::User | LimitKey::ApiKey)
    }
}

/// `"NAME";q=LIMIT;w=SECONDS`: the window is `per`, rounded up to whole seconds.
fn policy_item(name: &str, quota: Quota) -> String {
    format!(
        "\"{name}\";q={};w={}",
        quota.limit,
        quota.period_us.div_ceil(1_000_000).max(1)
    )
}

impl RateLimiter {
    /// `pools`: the number of server workers, each with its own Redis connection.
    pub fn new(settings: &RateLimitSettings, pools: usize) -> Result<Self, ConfigError> {
        Self::reusing(settings, pools, None)
    }

    /// A limiter for `settings` that keeps what `previous` (a configuration being replaced,
    /// with its settings) already has where nothing changed: the store and its connections
    /// when the store settings are the same, and the counted state of each policy whose
    /// settings are the same.
    pub fn reusing(
        settings: &RateLimitSettings,
        pools: usize,
        previous: Option<(&Self, &RateLimitSettings)>,
    ) -> Result<Self, ConfigError> {
        if let Some((limiter, old)) = previous {
            let same_store = old.store == settings.store
                && old.on_store_error == settings.on_store_error
                && old.timeout == settings.timeout;
            if same_store {
                let policies = settings
                    .policies
                    .iter()
                    .map(|(name, policy)| {
                        let kept = (old.max_keys == settings.max_keys
                            && old.policies.get(name) == Some(policy))
                        .then(|| limiter.policies.get(name).cloned())
                        .flatten();
                        let policy = kept
                            .unwrap_or_else(|| Arc::new(Policy::new(policy, settings.max_keys)));
                        (name.clone(), policy)
                    })
                    .collect();
                return Ok(Self {
                    shared: limiter.shared.clone(),
                    policies,
                });
            }
        }
        let redis = match &settings.store {
            RateLimitStore::Memory => None,
            RateLimitStore::Redis { url, cluster } => Some(
                redis::RedisStore::new(url, *cluster, pools, settings.timeout).map_err(|e| {
                    ConfigError::single("rate_limit.redis_url", format!("cannot use Redis: {e}"))
                })?,
            ),
        };
        Ok(Self {
            shared: Arc::new(Shared {
                redis,
                on_store_error: settings.on_store_error,
                timeout: settings.timeout,
                store_errors: AtomicU64::new(0),
                degraded: AtomicBool::new(false),
                logged: crate::observability::throttle::Throttle::new(),
                clock: memory::Clock::default(),
            }),
            policies: settings
                .policies
                .iter()
                .map(|(name, policy)| {
                    (
                        name.clone(),
                        Arc::new(Policy::new(policy, settings.max_keys)),
                    )
                })
                .collect(),
        })
    }

    /// The limits of a route that lists `names` (validated to exist), in the order they are
    /// checked: those checked before authentication, then those checked after it.
    pub fn route(&self, names: &[String]) -> RoutePhases {
        let (after, before): (Vec<Arc<Policy>>, Vec<Arc<Policy>>) = names
            .iter()
            .filter_map(|name| self.policies.get(name).cloned())
            .partition(|policy| policy.needs_principal());
        RoutePhases {
            before_auth: self.limits(before),
            after_auth: self.limits(after),
        }
    }

    fn limits(&self, policies: Vec<Arc<Policy>>) -> Option<RouteLimits> {
        if policies.is_empty() {
            return None;
        }
        let items: Vec<&str> = policies.iter().map(|p| p.item.as_str()).collect();
        Some(RouteLimits {
            shared: self.shared.clone(),
            policy_header: HeaderValue::from_str(&items.join(", ")).ok()?,
            policies,
        })
    }
}

/// A route's policies, split by when they are checked.
#[derive(Default)]
pub struct RoutePhases {
    /// `ip`, `global` and `header:NAME` policies: before authentication.
    pub before_auth: Option<RouteLimits>,
    /// `user` and `api_key` policies: after it.
    pub after_auth: Option<RouteLimits>,
}

/// The policies one route checks in one phase, with its `RateLimit-Policy` value computed
/// once.
pub struct RouteLimits {
    shared: Arc<Shared>,
    policies: Vec<Arc<Policy>>,
    policy_header: HeaderValue,
}

/// What an allowed request's response carries.
#[derive(Clone, Debug)]
pub struct Decision {
    policy: HeaderValue,
    /// `None` when the store failed and `on_store_error = "allow"` let the request through.
    state: Option<HeaderValue>,
}

impl Decision {
    /// For the access log: `allowed`, or `store_error_allowed` when the store failed open.
    pub fn outcome(&self) -> &'static str {
        if self.state.is_some() {
            "allowed"
        } else {
            "store_error_allowed"
        }
    }

    /// This decision, then `later`'s: the header values list both phases' policies.
    fn then(self, later: Decision) -> Decision {
        Decision {
            policy: join(&self.policy, &later.policy),
            state: match (self.state, later.state) {
                (Some(a), Some(b)) => Some(join(&a, &b)),
                (a, b) => a.or(b),
            },
        }
    }

    /// The headers of a later phase's refusal, with this decision's policies listed first.
    fn then_headers(self, mut refusal: HeaderMap) -> HeaderMap {
        let later = Decision {
            policy: refusal
                .remove(&RATELIMIT_POLICY)
                .unwrap_or_else(|| self.policy.clone()),
            state: refusal.remove(&RATELIMIT),
        };
        self.then(later).apply(&mut refusal);
        refusal
    }

    /// Adds `RateLimit-Policy` and `RateLimit` to a response.
    pub fn apply(self, headers: &mut HeaderMap) {
        headers.insert(RATELIMIT_POLICY.clone(), self.policy);
        if let Some(state) = self.state {
            headers.insert(RATELIMIT.clone(), state);
        }
    }
}

/// Two structured-field lists as one (RFC 9651 §3.1).
fn join(a: &HeaderValue, b: &HeaderValue) -> HeaderValue {
    let mut bytes = Vec::with_capacity(a.len() + b.len() + 2);
    bytes.extend_from_slice(a.as_bytes());
    bytes.extend_from_slice(b", ");
    bytes.extend_from_slice(b.as_bytes());
    HeaderValue::from_bytes(&bytes).unwrap_or_else(|_| a.clone())
}

/// One policy's decision, with the quota that applied.
struct Checked<'p> {
    policy: &'p Policy,
    outcome: Outcome,
    quota: Quota,
}

impl RouteLimits {
    /// Counts the request against every policy of this phase: `Ok` with the headers for the
    /// response, or 429 (`Error::RateLimited`) when any policy refuses it. `earlier` is the
    /// decision of the phase before, whose policies the headers list first.
    ///
    /// The keys are taken from the request before the future starts, so the future does not
    /// borrow the request (whose body is not `Sync`).
    pub fn check<'a>(
        &'a self,
        request: &Request,
        earlier: Option<&'a Decision>,
    ) -> impl Future<Output = Result<Decision, Error>> + Send + 'a {
        let keys: Vec<String> = self
            .policies
            .iter()
            .map(|p| p.key_of(request).into_owned())
            .collect();
        async move {
            match self.check_keys(&keys).await {
                Ok(decision) => Ok(match earlier {
                    Some(earlier) => earlier.clone().then(decision),
                    None => decision,
                }),
                Err(Error::RateLimited {
                    retry_after,
                    headers,
                }) => Err(Error::RateLimited {
                    retry_after,
                    headers: match earlier {
                        Some(earlier) => Box::new(earlier.clone().then_headers(*headers)),
                        None => headers,
                    },
                }),
                Err(error) => Err(error),
            }
        }
    }

    async fn check_keys(&self, keys: &[String]) -> Result<Decision, Error> {
        let checked = match &self.shared.redis {
            None => self.check_memory(keys),
            Some(redis) => match self.check_redis(redis, keys).await {
                Ok(checked) => checked,
                Err(error) => {
                    self.shared.store_failed(&error);
                    match self.shared.on_store_error {
                        OnStoreError::Allow => {
                            return Ok(Decision {
                                policy: self.policy_header.clone(),
                                state: None,
                            });
                        }
                        OnStoreError::Deny => return Err(Error::RateLimitUnavailable),
                        OnStoreError::Local => self.check_memory(keys),
                    }
                }
            },
        };
        self.decide(&checked)
    }

    /// All-or-nothing in memory: a refusal by a later policy refunds the earlier ones.
    fn check_memory(&self, keys: &[String]) -> Vec<Checked<'_>> {
        let now = self.shared.clock.now();
        let mut checked: Vec<Checked<'_>> = Vec::with_capacity(self.policies.len());
        for (i, (policy, key)) in self.policies.iter().zip(keys).enumerate() {
            let outcome = policy.memory.check(key, policy.quota, now);
            checked.push(Checked {
                policy,
                outcome,
                quota: policy.quota,
            });
            if !outcome.allowed {
                for (earlier, key) in checked[..i].iter().zip(keys) {
                    earlier.policy.memory.refund(key, earlier.quota, now);
                }
                break;
            }
        }
        checked
    }

    async fn check_redis(
        &self,
        redis: &redis::RedisStore,
        keys: &[String],
    ) -> Result<Vec<Checked<'_>>, String> {
        let checks: Vec<(String, Quota)> = self
            .policies
            .iter()
            .zip(keys)
            .map(|(policy, key)| {
                (
                    redis::state_key(&policy.name, key, policy.sensitive()),
                    policy.quota,
                )
            })
            .collect();
        redis.available().map_err(|down| down.to_string())?;
        let results = match tokio::time::timeout(self.shared.timeout, redis.check(checks)).await {
            Ok(Ok(results)) => {
                redis.record(true);
                results
            }
            Ok(Err(error)) => {
                redis.record(false);
                return Err(error.to_string());
            }
            Err(_) => {
                redis.record(false);
                return Err(format!("no answer within {:?}", self.shared.timeout));
            }
        };
        if results.len() != self.policies.len() {
            return Err(format!(
                "unexpected script reply of {} items",
                results.len()
            ));
        }
        self.shared.store_recovered();
        Ok(self
            .policies
            .iter()
            .zip(results)
            .map(|(policy, result)| Checked {
                policy,
                outcome: result.outcome,
                quota: result.quota,
            })
            .collect())
    }

    fn decide(&self, checked: &[Checked<'_>]) -> Result<Decision, Error> {
        let overridden = checked.iter().any(|c| c.quota != c.policy.quota);
        let policy = if overridden {
            let items: Vec<String> = checked
                .iter()
                .map(|c| policy_item(&c.policy.name, c.quota))
                .collect();
            HeaderValue::from_str(&items.join(", ")).unwrap_or_else(|_| self.policy_header.clone())
        } else {
            self.policy_header.clone()
        };
        let mut state = String::new();
        for c in checked {
            if !state.is_empty() {
                state.push_str(", ");
            }
            let _ = write!(
                state,
                "\"{}\";r={};t={}",
                c.policy.name,
                c.outcome.remaining,
                seconds_until_reset(c.outcome, c.quota)
            );
        }
        let state = HeaderValue::from_str(&state).ok();
        let refused: Vec<&Checked<'_>> = checked.iter().filter(|c| !c.outcome.allowed).collect();
        match refused.iter().map(|c| c.outcome.retry_after_us).max() {
            None => Ok(Decision { policy, state }),
            Some(wait_us) => {
                let names: Vec<&str> = refused.iter().map(|c| &*c.policy.name).collect();
                // The access log records the refusal; this names the policies, for debugging.
                tracing::debug!(policies = ?names, "rate limited");
                let mut headers = HeaderMap::new();
                Decision { policy, state }.apply(&mut headers);
                Err(Error::RateLimited {
                    retry_after: Duration::from_micros(wait_us),
                    headers: Box::new(headers),
                })
            }
        }
    }
}

/// The `t` of `RateLimit`: seconds until the quota is whole again, or, when nothing remains,
/// until the next request is allowed (then equal to `Retry-After`).
fn seconds_until_reset(outcome: Outcome, quota: Quota) -> u64 {
    let wait_us = if outcome.remaining == 0 {
        let tolerance = quota.interval() * u64::from(quota.burst);
        (outcome.reset_us + quota.interval()).saturating_sub(tolerance)
    } else {
        outcome.reset_us
    };
    wait_us.div_ceil(1_000_000)
}

impl Shared {
    fn store_failed(&self, error: &str) {
        let total = self.store_errors.fetch_add(1, Ordering::Relaxed) + 1;
        crate::observability::metrics::record_rate_limit_store_error();
        self.degraded.store(true, Ordering::Relaxed);
        if let Some(held_back) = self.logged.admit() {
            tracing::warn!(
                %error,
                store_errors = total,
                held_back,
                on_store_error = ?self.on_store_error,
                "rate-limit store unavailable"
            );
        }
    }

    fn store_recovered(&self) {
        if self.degraded.swap(false, Ordering::Relaxed) {
            tracing::info!(
                store_errors = self.store_errors.load(Ordering::Relaxed),
                "rate-limit store available again"
            );
        }
    }
}

impl RateLimiter {
    /// Redis failures since start (for metrics).
    pub fn store_errors(&self) -> u64 {
        self.shared.store_errors.load(Ordering::Relaxed)
    }
}
