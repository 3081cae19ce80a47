//! Typed configuration: the TOML contract of `proxyfn.toml`, how it is loaded (file, then
//! `PROXYFN_*` environment overrides) and how it is validated into a runtime [`Plan`].
//!
//! Every struct denies unknown fields: a typo such as `auht = [...]` must fail at start-up
//! instead of silently disabling a policy.

mod check;
pub mod json_schema;
mod load;
mod plan;
pub mod problems;
mod schema;
pub mod templates;
pub mod units;
mod versioning;

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use load::{ConfigSource, load, load_with};
pub use plan::{
    AggregateBackend, BUILTIN_PATHS, DOCS_PATH, FaultSettings, LambdaSettings, METRICS_PATH,
    MockResponse, OPENAPI_PATH, Plan, RouteAction, RoutePlan, ServerSettings, TargetPath,
    TemplatePart,
};
pub use problems::{
    ConfigError, ConfigProblem, Location, Problems, Secrets, parse_header_name, parse_method,
};
pub use schema::RequestSchema;
pub use units::{ByteSize, HumanDuration};
pub use versioning::{
    DeprecatedConfig, Deprecation, DeprecationDetails, VersioningConfig, VersioningSettings,
};

/// The whole configuration file.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub cors: Option<crate::cors::config::CorsConfig>,
    pub upstreams: BTreeMap<String, crate::upstream::config::UpstreamConfig>,
    pub auth: crate::auth::config::AuthConfig,
    pub rate_limit: crate::ratelimit::config::RateLimitConfig,
    pub rate_limits: BTreeMap<String, crate::ratelimit::config::RateLimitPolicyConfig>,
    pub routes: Vec<RouteConfig>,
    pub log: crate::observability::config::LogConfig,
    pub metrics: crate::observability::config::MetricsConfig,
    pub docs: crate::docs::config::DocsConfig,
    pub compression: crate::compression::CompressionConfig,
    pub versioning: VersioningConfig,
    pub cache: crate::cache::config::CacheConfig,
    pub lambda: LambdaConfig,
    /// The directory relative paths in the file (`request_schema`) start from: the config
    /// file's own, or the working directory.
    #[serde(skip)]
    pub base_dir: Option<std::path::PathBuf>,
}

/// `[lambda]`: how invocations are answered in Lambda mode.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct LambdaConfig {
    /// Largest invocation response (the JSON the Runtime API gets); Lambda refuses more than
    /// 6 MB.
    pub max_response: ByteSize,
}

impl Default for LambdaConfig {
    fn default() -> Self {
        Self {
            max_response: ByteSize(6 << 20),
        }
    }
}

/// One name or a list of names: `rate_limit = "a"` or `rate_limit = ["a", "b"]`.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub fn as_slice(&self) -> &[String] {
        match self {
            OneOrMany::One(name) => std::slice::from_ref(name),
            OneOrMany::Many(names) => names,
        }
    }
}

impl Config {
    /// Parses a TOML document without environment overrides (tests, `include_str!`).
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        load::from_toml(text)
    }

    /// The configuration as TOML, every default written out (`proxyfn config`), with the
    /// passwords of Redis URLs masked. Secrets themselves are never in a configuration, only
    /// the names of the variables holding them (`secret_env`).
    pub fn to_masked_toml(&self) -> Result<String, String> {
        let mut shown = self.clone();
        let mask = |url: &mut Option<String>| {
            if let Some(text) = url
                && let Ok(mut parsed) = url::Url::parse(text)
                && parsed.password().is_some()
                && parsed.set_password(Some("***")).is_ok()
            {
                *text = parsed.to_string();
            }
        };
        mask(&mut shown.rate_limit.redis_url);
        mask(&mut shown.cache.redis_url);
        for keys in shown.auth.api_keys.values_mut() {
            mask(&mut keys.redis_url);
        }
        toml::to_string(&shown).map_err(|e| e.to_string())
    }
}

/// `[server]`: how the gateway listens and the limits every request obeys.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
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
    /// Server mode: which proxies in front of the gateway may speak for the client in
    /// `X-Forwarded-*`: a hop count, or a list of addresses and CIDR networks.
    pub trusted_proxies: TrustedProxiesConfig,
    /// Client-address headers (`cf-connecting-ip`, ...) passed on from trusted proxies
    /// instead of being removed.
    pub trusted_headers: Vec<String>,
    /// What happens to request header names with `_`: `drop`, `reject` or `allow`.
    pub underscore_headers: crate::trust::UnderscoreHeaders,
    /// Remove an API Gateway stage prefix (`/prod`) before routing (Lambda mode).
    pub strip_stage: bool,
    /// How long graceful shutdown waits for in-flight requests.
    pub shutdown_timeout: HumanDuration,
    /// Lambda: time kept free before the invocation deadline to send the response.
    pub deadline_margin: HumanDuration,
    /// Server mode: threads serving connections, each with its own event loop and upstream
    /// connection pools. Omitted: one per CPU.
    pub workers: Option<usize>,
    /// Server mode: time a client has to send a request's header section, from its first byte
    /// (or from connecting).
    pub header_timeout: HumanDuration,
    /// Server mode: how long a keep-alive connection may wait for its next request.
    pub idle_timeout: HumanDuration,
    /// Longest pause while the gateway waits for more of a request body; then 408.
    pub body_timeout: HumanDuration,
    /// Server mode: open connections beyond which new ones are closed at once. Omitted: half
    /// the process's descriptor limit.
    pub max_connections: Option<usize>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        use std::time::Duration;
        Self {
            listen: "127.0.0.1:8080".into(),
            body_limit: ByteSize(10 << 20),
            header_limit: ByteSize(32 << 10),
            timeout: HumanDuration(Duration::from_secs(29)),
            trusted_proxies: TrustedProxiesConfig::Count(0),
            trusted_headers: Vec::new(),
            underscore_headers: crate::trust::UnderscoreHeaders::Drop,
            strip_stage: true,
            shutdown_timeout: HumanDuration(Duration::from_secs(30)),
            deadline_margin: HumanDuration(Duration::from_millis(200)),
            workers: None,
            header_timeout: HumanDuration(Duration::from_secs(30)),
            idle_timeout: HumanDuration(Duration::from_secs(60)),
            body_timeout: HumanDuration(Duration::from_secs(30)),
            max_connections: None,
        }
    }
}

/// `trusted_proxies = 2` or `trusted_proxies = ["10.0.0.0/8", "192.168.1.5"]`.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum TrustedProxiesConfig {
    Count(usize),
    Networks(Vec<String>),
}

/// `[[routes]]`: a path template and what serves it.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
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
    /// Served instead of an error when the upstream fails, times out or is open.
    pub fallback: Option<MockResponseConfig>,
    /// Injected latency and errors, for chaos testing.
    pub fault: Option<FaultConfig>,
    /// Providers that may authenticate the request, any one sufficing: `["jwt:main"]`.
    pub auth: Option<Vec<String>>,
    /// Scopes the principal must all hold.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// `[rate_limits.NAME]` policies the request must pass, all of them.
    pub rate_limit: Option<OneOrMany>,
    /// A JSON Schema file (relative to the config file) the request body must match.
    pub request_schema: Option<String>,
    /// JSON and header rewrites of the request and the response.
    pub transform: Option<crate::transform::config::TransformConfig>,
    /// Call several upstreams in parallel and merge their JSON answers.
    pub aggregate: Option<Vec<AggregateBackendConfig>>,
    /// Aggregates: name the backends left out in an `_errors` member of the body.
    pub aggregate_errors: Option<bool>,
    /// Serve GET/HEAD answers from the `[cache]` store: `{ ttl, vary, per_principal }`.
    pub cache: Option<crate::cache::config::RouteCacheConfig>,
    /// The API version this route serves (`/v2/...`, or chosen by `[versioning]`).
    pub version: Option<String>,
    /// `Deprecation`/`Sunset`/`Link` headers on every response, and `deprecated` in OpenAPI.
    pub deprecated: Option<DeprecatedConfig>,
}

/// One backend of an `aggregate` route.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AggregateBackendConfig {
    pub upstream: String,
    /// Path and query on the upstream; `{param}` takes the route's captured values.
    pub path: String,
    /// Default `GET`.
    pub method: Option<String>,
    /// Member of the merged body this backend's JSON goes under; without it, the backend's
    /// object members are merged at the root.
    pub key: Option<String>,
    /// Bound on this backend's call, on top of the upstream's own timeout.
    pub timeout: Option<HumanDuration>,
    /// When this backend fails, the whole answer is 502.
    #[serde(default)]
    pub required: bool,
}

/// `fault = { delay, delay_percent, abort_status, abort_percent }`
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FaultConfig {
    pub delay: Option<HumanDuration>,
    #[serde(default)]
    pub delay_percent: f64,
    pub abort_status: Option<u16>,
    #[serde(default)]
    pub abort_percent: f64,
}

/// A fixed response served by the gateway.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
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
