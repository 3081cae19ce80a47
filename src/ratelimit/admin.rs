//! `proxyfn limits set|get|clear POLICY KEY`: per-key quota overrides kept in Redis
//! (`[rate_limit] store = "redis"`), read by the next request of every instance.

use std::time::Duration;

use super::{
    config::{LimitKey, RateLimitStore, quota_problems},
    gcra::Quota,
    redis::{RedisStore, state_key},
};
use crate::{admin::AdminError, config::Plan};

/// What to do with KEY's quota under a policy. KEY is the value the policy counts by: a user
/// or API key id, `ip:ADDRESS`, a header's value, or `global`.
pub enum LimitsAction {
    /// Gives KEY its own quota, from the next request on (its count starts afresh).
    Set {
        key: String,
        limit: u32,
        per: Duration,
        burst: Option<u32>,
    },
    /// Shows KEY's override, or the configured quota.
    Get { key: String },
    /// Removes KEY's override; its count starts afresh under the configured quota.
    Clear { key: String },
}

/// Runs `action` under `policy`; returns what to print.
pub async fn run(
    plan: &Plan,
    policy_name: &str,
    action: LimitsAction,
) -> Result<String, AdminError> {
    let RateLimitStore::Redis { url, cluster } = &plan.rate_limit.store else {
        return Err(AdminError::Config(
            "overrides live in Redis; set [rate_limit] store = \"redis\"".into(),
        ));
    };
    let Some(policy) = plan.rate_limit.policies.get(policy_name) else {
        return Err(AdminError::Config(format!(
            "no policy [rate_limits.{policy_name}] in the configuration"
        )));
    };
    let sensitive = matches!(policy.key, LimitKey::Header(_));
    let store =
        RedisStore::new(url, *cluster, 1, plan.rate_limit.timeout).map_err(AdminError::Failed)?;
    let failed = |e: redis::RedisError| AdminError::Failed(e.to_string());
    match action {
        LimitsAction::Set {
            key,
            limit,
            per,
            burst,
        } => {
            let burst = burst.unwrap_or(limit);
            let problems = quota_problems(limit, per, burst);
            if !problems.is_empty() {
                let listed: Vec<String> = problems
                    .iter()
                    .map(|(field, message)| format!("--{field} {message}"))
                    .collect();
                return Err(AdminError::Failed(listed.join("; ")));
            }
            let quota = Quota::new(limit, per, burst);
            let state = state_key(policy_name, &key, sensitive);
            store.set_override(&state, quota).await.map_err(failed)?;
            Ok(format!("{policy_name} {key}: {}", describe(quota)))
        }
        LimitsAction::Get { key } => {
            let state = state_key(policy_name, &key, sensitive);
            Ok(match store.get_override(&state).await.map_err(failed)? {
                Some(quota) => format!("{policy_name} {key}: {} (override)", describe(quota)),
                None => format!(
                    "{policy_name} {key}: {}, as configured",
                    describe(Quota::new(policy.limit, policy.per, policy.burst))
                ),
            })
        }
        LimitsAction::Clear { key } => {
            let state = state_key(policy_name, &key, sensitive);
            Ok(if store.clear_override(&state).await.map_err(failed)? {
                format!("{policy_name} {key}: override removed")
            } else {
                format!("{policy_name} {key}: had no override")
            })
        }
    }
}

fn describe(quota: Quota) -> String {
    format!(
        "{} per {} (burst {})",
        quota.limit,
        humantime::format_duration(Duration::from_micros(quota.period_us)),
        quota.burst
    )
}
