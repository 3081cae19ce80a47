//! Typed configuration: the TOML contract of `proxyfn.toml`, how it is loaded (file, then
//! `PROXYFN_*` environment overrides) and how it is validated into a runtime [`Plan`].
//!
//! Every struct denies unknown fields: a typo such as `auht = [...]` must fail at start-up
//! instead of silently disabling a policy.

mod load;
mod plan;
mod units;

use std::collections::BTreeMap;

use serde::Deserialize;

pub use load::{ConfigSource, load};
pub use plan::{
    BUILTIN_PATHS, MockResponse, Plan, RouteAction, RoutePlan, ServerSettings, TargetPath,
    TemplatePart, UpstreamSettings,
};
pub use units::{ByteSize, HumanDuration};

/// The whole configuration file.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub upstreams: BTreeMap<String, UpstreamConfig>,
    pub routes: Vec<RouteConfig>,
}

impl Config {
    /// Parses a TOML document without environment overrides (tests, `include_str!`).
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        load::from_toml(text)
    }
}

/// `[server]`: how the gateway listens and the limits every request obeys.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to listen on in server mode. `PORT` overrides the port.
    pub listen: String,
    /// Requests with a larger body get 413.
    pub body_limit: ByteSize,
    /// Requests whose header section (names + values) is larger get 431.
    pub header_limit: ByteSize,
    /// Deadline for the whole request, until the response head is ready.
    pub timeout: HumanDuration,
    /// How many X-Forwarded-For hops (from the right) are trusted in server mode.
    pub trusted_proxies: usize,
    /// Remove an API Gateway stage prefix (`/prod`) before routing (Lambda mode).
    pub strip_stage: bool,
    /// How long graceful shutdown waits for in-flight requests.
    pub shutdown_timeout: HumanDuration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        use std::time::Duration;
        Self {
            listen: "127.0.0.1:8080".into(),
            body_limit: ByteSize(10 << 20),
            header_limit: ByteSize(32 << 10),
            timeout: HumanDuration(Duration::from_secs(29)),
            trusted_proxies: 0,
            strip_stage: true,
            shutdown_timeout: HumanDuration(Duration::from_secs(30)),
        }
    }
}

/// `[upstreams.NAME]`: a backend service.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// Base URL; a path part (`http://host/api`) is prefixed to every forwarded path.
    pub url: String,
    /// Time allowed for the upstream's response head.
    #[serde(default = "default_upstream_timeout")]
    pub timeout: HumanDuration,
    /// Time allowed to open a connection.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: HumanDuration,
}

fn default_upstream_timeout() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(15))
}

fn default_connect_timeout() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(5))
}

/// `[[routes]]`: a path template and what serves it.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// axum path syntax: `/users/{id}`, `/files/{*rest}`.
    pub path: String,
    /// Allowed methods; omitted means any. GET implies HEAD.
    pub methods: Option<Vec<String>>,
    /// Name of an `[upstreams.NAME]` to forward to.
    pub upstream: Option<String>,
    /// Remove this prefix from the path before forwarding.
    pub strip_prefix: Option<String>,
    /// Replace the forwarded path; `{param}` placeholders take the captured values.
    pub rewrite: Option<String>,
    /// Answer from the gateway itself (API Gateway's mock integration).
    pub response: Option<MockResponseConfig>,
}

/// A fixed response served by the gateway.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MockResponseConfig {
    #[serde(default = "default_mock_status")]
    pub status: u16,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub body: String,
}

fn default_mock_status() -> u16 {
    200
}

/// Every problem found in a configuration, each with the key path it concerns.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration:\n{}", self.problems.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
pub struct ConfigError {
    pub problems: Vec<ConfigProblem>,
}

/// One problem: where (`routes[2].upstream`) and what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigProblem {
    pub key: String,
    pub message: String,
}

impl std::fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.key.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.key, self.message)
        }
    }
}

impl ConfigError {
    pub fn single(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            problems: vec![ConfigProblem {
                key: key.into(),
                message: message.into(),
            }],
        }
    }
}
