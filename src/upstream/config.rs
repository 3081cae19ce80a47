//! `[upstreams.NAME]`: the backend services routes forward to, their configuration as the
//! file spells it, its validation, and the settings an [`super::Upstream`] is built from.

use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::config::{
    ByteSize, HumanDuration, Problems,
    units::{millis, secs},
};

/// `[upstreams.NAME]`: a backend service.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// Base URL; a path part (`http://host/api`) is prefixed to every forwarded path.
    pub url: Option<String>,
    /// Several base URLs, balanced round-robin over the healthy ones.
    pub urls: Option<Vec<String>>,
    /// Time allowed for the upstream's response head.
    #[serde(default = "default_upstream_timeout")]
    pub timeout: HumanDuration,
    /// Time allowed to open a connection.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: HumanDuration,
    pub retry: Option<RetryConfig>,
    pub circuit_breaker: Option<CircuitBreakerConfig>,
    pub health_check: Option<HealthCheckConfig>,
    /// Requests in flight to this upstream beyond which new ones are shed with 503.
    pub max_concurrency: Option<usize>,
}

/// `retry = { attempts, backoff, max_backoff, ... }`
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    /// Total attempts, the first included.
    pub attempts: u32,
    #[serde(default = "default_backoff")]
    pub backoff: HumanDuration,
    #[serde(default = "default_max_backoff")]
    pub max_backoff: HumanDuration,
    /// Retries allowed as a fraction of requests over `budget_window`.
    #[serde(default = "default_budget")]
    pub budget: f64,
    #[serde(default = "default_budget_window")]
    pub budget_window: HumanDuration,
    /// Request bodies up to this size are kept so they can be replayed.
    #[serde(default = "default_max_replay_body")]
    pub max_body: ByteSize,
}

/// `circuit_breaker = { failure_ratio, min_requests, window, open_for, half_open_requests }`
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CircuitBreakerConfig {
    pub failure_ratio: f64,
    pub min_requests: u32,
    pub window: HumanDuration,
    pub open_for: HumanDuration,
    #[serde(default = "default_half_open_requests")]
    pub half_open_requests: u32,
}

/// `health_check = { path, interval, timeout }` (active probes, server mode)
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HealthCheckConfig {
    pub path: String,
    #[serde(default = "default_health_interval")]
    pub interval: HumanDuration,
    #[serde(default = "default_health_timeout")]
    pub timeout: HumanDuration,
}

fn default_backoff() -> HumanDuration {
    millis(25)
}

fn default_max_backoff() -> HumanDuration {
    secs(1)
}

fn default_budget() -> f64 {
    0.2
}

fn default_budget_window() -> HumanDuration {
    secs(10)
}

fn default_max_replay_body() -> ByteSize {
    ByteSize(64 << 10)
}

fn default_half_open_requests() -> u32 {
    3
}

fn default_health_interval() -> HumanDuration {
    secs(10)
}

fn default_health_timeout() -> HumanDuration {
    secs(2)
}

fn default_upstream_timeout() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(15))
}

fn default_connect_timeout() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(5))
}

#[derive(Clone, Debug, PartialEq)]
pub struct UpstreamSettings {
    pub name: String,
    /// Base URLs (`scheme://authority[/base/path]`, no trailing slash); at least one.
    pub targets: Vec<String>,
    pub timeout: Duration,
    pub connect_timeout: Duration,
    pub retry: Option<RetrySettings>,
    pub circuit_breaker: Option<BreakerSettings>,
    pub health_check: Option<HealthCheckSettings>,
    pub max_concurrency: Option<usize>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct RetrySettings {
    pub attempts: u32,
    pub backoff: Duration,
    pub max_backoff: Duration,
    pub budget: f64,
    pub budget_window: Duration,
    pub max_body: u64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct BreakerSettings {
    pub failure_ratio: f64,
    pub min_requests: u32,
    pub window: Duration,
    pub open_for: Duration,
    pub half_open_requests: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthCheckSettings {
    pub path: String,
    pub interval: Duration,
    pub timeout: Duration,
}

pub fn settings(
    name: &str,
    upstream: &UpstreamConfig,
    problems: &mut Problems,
) -> Option<UpstreamSettings> {
    let key = format!("upstreams.{name}");
    let before = problems.count();
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        problems.add(&key, "upstream names use letters, digits, '_' and '-'");
    }
    if upstream.timeout.0.is_zero() {
        problems.add(format!("{key}.timeout"), "must be greater than zero");
    }
    if upstream.connect_timeout.0.is_zero() {
        problems.add(
            format!("{key}.connect_timeout"),
            "must be greater than zero",
        );
    }
    let targets: Vec<String> = match (&upstream.url, &upstream.urls) {
        (Some(url), None) => base_url(&format!("{key}.url"), url, problems)
            .into_iter()
            .collect(),
        (None, Some(urls)) if !urls.is_empty() => urls
            .iter()
            .enumerate()
            .filter_map(|(i, url)| base_url(&format!("{key}.urls[{i}]"), url, problems))
            .collect(),
        (None, Some(_)) => {
            problems.add(format!("{key}.urls"), "list at least one URL");
            vec![]
        }
        (Some(_), Some(_)) => {
            problems.add(&key, "set either `url` or `urls`, not both");
            vec![]
        }
        (None, None) => {
            problems.add(&key, "set `url` (or `urls` for several targets)");
            vec![]
        }
    };
    let retry = upstream.retry.as_ref().map(|retry| {
        let key = format!("{key}.retry");
        if retry.attempts == 0 {
            problems.add(
                format!("{key}.attempts"),
                "must be at least 1 (the first attempt)",
            );
        }
        if retry.backoff.0 > retry.max_backoff.0 {
            problems.add(format!("{key}.backoff"), "must not exceed max_backoff");
        }
        if !(0.0..=1.0).contains(&retry.budget) {
            problems.add(
                format!("{key}.budget"),
                "a fraction of requests, from 0.0 to 1.0",
            );
        }
        if retry.budget_window.0.is_zero() {
            problems.add(format!("{key}.budget_window"), "must be greater than zero");
        }
        RetrySettings {
            attempts: retry.attempts,
            backoff: retry.backoff.0,
            max_backoff: retry.max_backoff.0,
            budget: retry.budget,
            budget_window: retry.budget_window.0,
            max_body: retry.max_body.0,
        }
    });
    let circuit_breaker = upstream.circuit_breaker.as_ref().map(|breaker| {
        let key = format!("{key}.circuit_breaker");
        if !(breaker.failure_ratio > 0.0 && breaker.failure_ratio <= 1.0) {
            problems.add(
                format!("{key}.failure_ratio"),
                "a fraction above 0.0 and at most 1.0",
            );
        }
        if breaker.min_requests == 0 {
            problems.add(format!("{key}.min_requests"), "must be at least 1");
        }
        if breaker.half_open_requests == 0 {
            problems.add(format!("{key}.half_open_requests"), "must be at least 1");
        }
        for (field, value) in [
            ("window", breaker.window.0),
            ("open_for", breaker.open_for.0),
        ] {
            if value.is_zero() {
                problems.add(format!("{key}.{field}"), "must be greater than zero");
            }
        }
        BreakerSettings {
            failure_ratio: breaker.failure_ratio,
            min_requests: breaker.min_requests,
            window: breaker.window.0,
            open_for: breaker.open_for.0,
            half_open_requests: breaker.half_open_requests,
        }
    });
    let health_check = upstream.health_check.as_ref().map(|check| {
        let key = format!("{key}.health_check");
        if !check.path.starts_with('/') {
            problems.add(format!("{key}.path"), "must start with '/'");
        }
        if check.interval.0.is_zero() || check.timeout.0.is_zero() {
            problems.add(&key, "interval and timeout must be greater than zero");
        }
        HealthCheckSettings {
            path: check.path.clone(),
            interval: check.interval.0,
            timeout: check.timeout.0,
        }
    });
    if upstream.max_concurrency == Some(0) {
        problems.add(
            format!("{key}.max_concurrency"),
            "must be at least 1 (omit it for no limit)",
        );
    }
    (problems.count() == before).then(|| UpstreamSettings {
        name: name.to_owned(),
        targets,
        timeout: upstream.timeout.0,
        connect_timeout: upstream.connect_timeout.0,
        retry,
        circuit_breaker,
        health_check,
        max_concurrency: upstream.max_concurrency,
    })
}

/// Validates one base URL and returns it without a trailing slash.
fn base_url(key: &str, raw: &str, problems: &mut Problems) -> Option<String> {
    // Schemes are case-insensitive (RFC 3986 §3.1).
    let scheme = raw
        .split_once("://")
        .map(|(scheme, _)| scheme.to_ascii_lowercase());
    if !matches!(scheme.as_deref(), Some("http" | "https")) {
        // `localhost:9000` means http://localhost:9000; anything else is shown as it is.
        let message = if raw.contains(['/', '@']) || raw.is_empty() {
            "must start with http:// or https://".to_owned()
        } else {
            format!("must start with http:// or https://, as in \"http://{raw}\"")
        };
        problems.add(key, message);
        return None;
    }
    let url = match reqwest::Url::parse(raw) {
        Ok(url) => url,
        Err(error) => {
            // Never echo credentials back into logs.
            let shown = if raw.contains('@') {
                "the URL".to_owned()
            } else {
                format!("{raw:?}")
            };
            problems.add(key, format!("{}: {shown}", url_problem(error)));
            return None;
        }
    };
    // Never echo credentials back into logs: show the URL with its password masked.
    let mut shown = url.clone();
    if shown.password().is_some() {
        let _ = shown.set_password(Some("***"));
    }
    let mut valid = true;
    let mut complain = |message: &str| {
        problems.add(key, format!("{message} in {:?}", shown.as_str()));
        valid = false;
    };
    if url.host_str().is_none_or(str::is_empty) {
        complain("a host is required");
    }
    if url.query().is_some() || url.fragment().is_some() {
        complain("no query or fragment allowed");
    }
    if !url.username().is_empty() || url.password().is_some() {
        complain("credentials do not belong in the URL (pass them through the environment)");
    }
    valid.then(|| url.as_str().trim_end_matches('/').to_owned())
}

/// What is wrong with a URL, in words a configuration's reader knows.
pub(crate) fn url_problem(error: url::ParseError) -> &'static str {
    use url::ParseError as E;
    match error {
        E::EmptyHost => "the URL has no host",
        E::InvalidPort => "the URL's port is not a number from 1 to 65535",
        E::InvalidIpv4Address | E::InvalidIpv6Address => "the URL's IP address is not valid",
        E::InvalidDomainCharacter | E::IdnaError => "the URL's host name is not valid",
        E::RelativeUrlWithoutBase | E::RelativeUrlWithCannotBeABaseBase => {
            "not an absolute URL; write scheme://host[:port][/path]"
        }
        _ => "not a valid URL",
    }
}

#[cfg(test)]
mod tests {
    use crate::config::problems_in as problems;

    #[test]
    fn upstream_urls_carry_no_credentials() {
        let found = problems("[upstreams.u]\nurl = \"https://user:secret@example.com\"\n");
        assert!(found[0].contains("credentials"), "{found:?}");
        assert!(
            !found[0].contains("secret"),
            "the password leaked: {found:?}"
        );
    }
}
