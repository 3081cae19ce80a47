//! `[rate_limit]` (where the state lives) and `[rate_limits.NAME]` (the policies): their
//! configuration as the file spells it, its validation into [`RateLimitSettings`], and the
//! check of the policy names a route lists in `rate_limit`.

use std::{collections::BTreeMap, time::Duration};

use http::HeaderName;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{
    config::{HumanDuration, Problems, units::millis},
    routes::config::OneOrMany,
};

/// `[rate_limit]`: where rate-limit state lives, shared by every policy.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitConfig {
    /// `memory` (per instance, the default) or `redis` (shared by every instance).
    pub store: RateLimitStoreKind,
    pub redis_url: Option<String>,
    /// `redis_url` is a node of a Redis Cluster.
    pub cluster: bool,
    /// What a check does when Redis fails or is slower than `timeout`.
    pub on_store_error: OnStoreError,
    /// Bound on one Redis check.
    pub timeout: HumanDuration,
    /// Keys the in-memory store tracks per policy before new keys share one bucket.
    pub max_keys: usize,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            store: RateLimitStoreKind::Memory,
            redis_url: None,
            cluster: false,
            on_store_error: OnStoreError::Local,
            timeout: millis(50),
            max_keys: 100_000,
        }
    }
}

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RateLimitStoreKind {
    #[default]
    Memory,
    Redis,
}

/// `on_store_error`: fail open, fail closed (503), or limit per instance meanwhile.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum OnStoreError {
    Allow,
    Deny,
    #[default]
    Local,
}

/// `[rate_limits.NAME]`: `limit` requests per `per` for each `key`, up to `burst` at once.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimitPolicyConfig {
    /// `ip`, `user`, `api_key`, `header:NAME` or `global`.
    pub key: String,
    pub limit: u32,
    pub per: HumanDuration,
    /// Requests allowed at once after an idle period; defaults to `limit`.
    pub burst: Option<u32>,
}

/// The validated rate-limit configuration.
#[derive(Clone, Debug)]
pub struct RateLimitSettings {
    pub store: RateLimitStore,
    pub on_store_error: OnStoreError,
    pub timeout: Duration,
    pub max_keys: usize,
    pub policies: BTreeMap<String, PolicySettings>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RateLimitStore {
    Memory,
    Redis { url: String, cluster: bool },
}

/// One policy: `limit` requests per `per` for each value of `key`, up to `burst` at once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicySettings {
    pub name: String,
    pub key: LimitKey,
    pub limit: u32,
    pub per: Duration,
    pub burst: u32,
}

/// What a policy counts requests by.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LimitKey {
    /// The client address established by the runtime (never a client-set header).
    Ip,
    /// The authenticated principal's id, else the client address.
    User,
    /// The id of an API key principal, else the client address.
    ApiKey,
    /// A request header's value, else the client address.
    Header(HeaderName),
    /// One bucket for every request.
    Global,
}

impl LimitKey {
    fn parse(text: &str) -> Result<Self, String> {
        Ok(match text {
            "ip" => LimitKey::Ip,
            "user" => LimitKey::User,
            "api_key" => LimitKey::ApiKey,
            "global" => LimitKey::Global,
            other => match other.strip_prefix("header:") {
                Some(name) => LimitKey::Header(
                    HeaderName::from_bytes(name.as_bytes())
                        .map_err(|_| format!("{name:?} is not a valid header name"))?,
                ),
                None => {
                    return Err(format!(
                        "unknown key {other:?}; use ip, user, api_key, header:NAME or global"
                    ));
                }
            },
        })
    }
}

/// The longest `per` accepted: a day, which keeps every Redis TTL short and every number small.
const MAX_PERIOD: Duration = Duration::from_secs(86_400);

/// What is wrong with a quota of `limit` per `per`, `burst` at once, as (field, message)
/// pairs: the one rule for configured policies and for `proxyfn limits set`.
pub fn quota_problems(limit: u32, per: Duration, burst: u32) -> Vec<(&'static str, &'static str)> {
    let mut problems = vec![];
    if limit == 0 {
        problems.push(("limit", "must be at least 1"));
    }
    if per > MAX_PERIOD {
        problems.push(("per", "must be at most 1 day"));
    } else if per.as_micros() < u128::from(limit.max(1)) {
        problems.push((
            "per",
            "too short for the limit: at most one request per microsecond",
        ));
    }
    if burst == 0 {
        problems.push(("burst", "must be at least 1"));
    }
    problems
}

/// Validates `[rate_limit]` and every `[rate_limits.NAME]` policy.
pub fn settings(
    section: &RateLimitConfig,
    policies: &BTreeMap<String, RateLimitPolicyConfig>,
    problems: &mut Problems,
) -> RateLimitSettings {
    let store = match section.store {
        RateLimitStoreKind::Memory => RateLimitStore::Memory,
        RateLimitStoreKind::Redis => match &section.redis_url {
            None => {
                problems.add("rate_limit.redis_url", "required when store = \"redis\"");
                RateLimitStore::Memory
            }
            Some(url) => {
                if let Err(error) = redis::Client::open(url.as_str()) {
                    problems.add("rate_limit.redis_url", format!("not a Redis URL: {error}"));
                }
                RateLimitStore::Redis {
                    url: url.clone(),
                    cluster: section.cluster,
                }
            }
        },
    };
    if section.timeout.0.is_zero() {
        problems.add("rate_limit.timeout", "must be longer than 0s");
    }
    if section.max_keys == 0 {
        problems.add("rate_limit.max_keys", "must be at least 1");
    }
    let policies = policies
        .iter()
        .filter_map(|(name, policy)| {
            policy_settings(name, policy, problems).map(|p| (name.clone(), p))
        })
        .collect();
    RateLimitSettings {
        store,
        on_store_error: section.on_store_error,
        timeout: section.timeout.0,
        max_keys: section.max_keys,
        policies,
    }
}

fn policy_settings(
    name: &str,
    policy: &RateLimitPolicyConfig,
    problems: &mut Problems,
) -> Option<PolicySettings> {
    let key = format!("rate_limits.{name}");
    let before = problems.count();
    // The name travels in the RateLimit headers as a structured-field string and in Redis keys.
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b))
    {
        problems.add(&key, "policy names use letters, digits, '_', '-' and '.'");
    }
    let limit_key = LimitKey::parse(&policy.key)
        .map_err(|message| problems.add(format!("{key}.key"), message))
        .ok();
    let per = policy.per.0;
    let burst = policy.burst.unwrap_or(policy.limit);
    for (field, message) in quota_problems(policy.limit, per, burst) {
        problems.add(format!("{key}.{field}"), message);
    }
    (problems.count() == before).then_some(())?;
    Some(PolicySettings {
        name: name.to_owned(),
        key: limit_key?,
        limit: policy.limit,
        per,
        burst,
    })
}

/// The policy names of a route's `rate_limit`, each checked to exist.
pub fn route_policies(
    key: &str,
    listed: Option<&OneOrMany>,
    policies: &BTreeMap<String, RateLimitPolicyConfig>,
    problems: &mut Problems,
) -> Vec<String> {
    let Some(names) = listed else {
        return vec![];
    };
    let names = names.as_slice();
    if names.is_empty() {
        problems.add(
            format!("{key}.rate_limit"),
            "list at least one policy, or omit the key",
        );
    }
    let mut seen: Vec<String> = Vec::new();
    for (i, name) in names.iter().enumerate() {
        if !policies.contains_key(name) {
            let known: Vec<&str> = policies.keys().map(String::as_str).collect();
            let known = if known.is_empty() {
                "none defined".to_owned()
            } else {
                known.join(", ")
            };
            problems.add(
                format!("{key}.rate_limit[{i}]"),
                format!("unknown policy {name:?} (known: {known})"),
            );
        } else if seen.contains(name) {
            problems.add(format!("{key}.rate_limit[{i}]"), "listed twice");
        } else {
            seen.push(name.clone());
        }
    }
    seen
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, Plan, problems_in as problems};

    #[test]
    fn policies_are_validated_with_their_key_paths() {
        let found = problems(
            "[rate_limit]\nstore = \"redis\"\n\
             [rate_limits.a]\nkey = \"cookie\"\nlimit = 0\nper = \"2d\"\nburst = 0\n\
             [rate_limits.b]\nkey = \"header:bad header\"\nlimit = 5000000\nper = \"1s\"\n\
             [[routes]]\npath = \"/x\"\nresponse = {}\nrate_limit = [\"a\", \"nope\"]\n",
        );
        let expected = [
            "rate_limit.redis_url: required when store = \"redis\"",
            "rate_limits.a.key: unknown key \"cookie\"; use ip, user, api_key, header:NAME or global",
            "rate_limits.a.limit: must be at least 1",
            "rate_limits.a.per: must be at most 1 day",
            "rate_limits.a.burst: must be at least 1",
            "rate_limits.b.key: \"bad header\" is not a valid header name",
            "rate_limits.b.per: too short for the limit: at most one request per microsecond",
            "routes[0].rate_limit[1]: unknown policy \"nope\" (known: a, b)",
        ];
        for line in expected {
            assert!(
                found.iter().any(|p| p == line),
                "{line:?} not in {found:#?}"
            );
        }
    }

    #[test]
    fn burst_defaults_to_the_limit_and_one_name_or_a_list_is_accepted() {
        let plan = Plan::new(
            &Config::from_toml(
                "[rate_limits.a]\nkey = \"user\"\nlimit = 7\nper = \"1m\"\n\
                 [rate_limits.b]\nkey = \"global\"\nlimit = 1\nper = \"1s\"\nburst = 3\n\
                 [[routes]]\npath = \"/x\"\nresponse = {}\nrate_limit = \"a\"\n\
                 [[routes]]\npath = \"/y\"\nresponse = {}\nrate_limit = [\"a\", \"b\"]\n",
            )
            .unwrap(),
        )
        .unwrap();
        assert_eq!(plan.rate_limit.policies["a"].burst, 7);
        assert_eq!(plan.rate_limit.policies["b"].burst, 3);
        assert_eq!(plan.routes[0].rate_limits, ["a"]);
        assert_eq!(plan.routes[1].rate_limits, ["a", "b"]);
    }
}
