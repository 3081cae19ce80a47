//! Typed configuration: the TOML contract of `proxyfn.toml`, how it is loaded (file, then
//! `PROXYFN_*` environment overrides) and how it is validated into a runtime [`Plan`].
//!
//! Every struct denies unknown fields: a typo such as `auht = [...]` must fail at start-up
//! instead of silently disabling a policy.

mod cache;
mod check;
mod compression;
mod cors;
pub mod json_schema;
mod load;
mod observability;
mod plan;
mod rate_limit;
mod schema;
pub mod templates;
mod transform;
mod units;
mod versioning;

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use cache::{
    CacheConfig, CacheSettings, CacheStore, CacheStoreKind, RouteCacheConfig, RouteCacheSettings,
};
pub use compression::{CompressionConfig, CompressionSettings};
pub use cors::{CorsConfig, CorsHeaders, CorsOrigins, CorsSettings};
pub use load::{ConfigSource, load, load_with};
pub use observability::{
    DocsConfig, DocsSettings, LogBuffer, LogConfig, LogFormat, LogSettings, MetricsConfig,
    MetricsSettings, REDACTED, Redaction,
};
pub use plan::{
    AggregateBackend, ApiKeyEntry, ApiKeySettings, AuthSettings, BUILTIN_PATHS, BreakerSettings,
    DOCS_PATH, FaultSettings, HealthCheckSettings, JwtKeySource, JwtSettings, KeyLocation,
    LambdaSettings, METRICS_PATH, MockResponse, OPENAPI_PATH, Plan, ProviderRef, RetrySettings,
    RouteAction, RoutePlan, Secrets, ServerSettings, TargetPath, TemplatePart, UpstreamSettings,
    parse_digest,
};
pub use rate_limit::{LimitKey, PolicySettings, RateLimitSettings, RateLimitStore, quota_problems};
pub use schema::RequestSchema;
pub use transform::{
    HeaderOps, HeaderOpsConfig, JsonPointer, TransformConfig, TransformSettings, TransformSide,
    TransformSideConfig,
};
pub use units::{ByteSize, HumanDuration};
pub use versioning::{
    DeprecatedConfig, Deprecation, DeprecationDetails, VersioningConfig, VersioningSettings,
};

/// The whole configuration file.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub cors: Option<CorsConfig>,
    pub upstreams: BTreeMap<String, UpstreamConfig>,
    pub auth: AuthConfig,
    pub rate_limit: RateLimitConfig,
    pub rate_limits: BTreeMap<String, RateLimitPolicyConfig>,
    pub routes: Vec<RouteConfig>,
    pub log: LogConfig,
    pub metrics: MetricsConfig,
    pub docs: DocsConfig,
    pub compression: CompressionConfig,
    pub versioning: VersioningConfig,
    pub cache: CacheConfig,
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

/// `[auth]`: identity providers that routes name in `auth = ["jwt:NAME", "api_key:NAME"]`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    pub jwt: BTreeMap<String, JwtConfig>,
    pub api_keys: BTreeMap<String, ApiKeysConfig>,
}

/// `[auth.jwt.NAME]`: bearer tokens verified against one key source.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JwtConfig {
    /// Keys from a JSON Web Key Set endpoint.
    pub jwks_url: Option<String>,
    /// One public key (RSA, EC or Ed25519) in PEM.
    pub public_key_pem: Option<String>,
    /// The environment variable holding an HMAC secret.
    pub secret_env: Option<String>,
    pub issuer: Option<String>,
    #[serde(default)]
    pub audience: Vec<String>,
    /// Accepted `alg` values; the token's header never chooses outside this list.
    pub algorithms: Vec<String>,
    #[serde(default = "default_leeway")]
    pub leeway: HumanDuration,
    /// Claims copied into request headers for the upstream, e.g. `{ sub = "x-user-id" }`.
    #[serde(default)]
    pub forward_claims: BTreeMap<String, String>,
    /// Whether the upstream receives the token itself.
    #[serde(default = "default_true")]
    pub forward_token: bool,
    /// Header carrying the token; `authorization` means the `Bearer` scheme.
    #[serde(default = "default_token_header")]
    pub header: String,
    /// Read the token from this cookie instead of a header.
    pub cookie: Option<String>,
    /// How long JWKS keys are kept when the endpoint sends no `Cache-Control: max-age`.
    #[serde(default = "default_jwks_cache")]
    pub jwks_cache: HumanDuration,
    /// The shortest time between two JWKS fetches (unknown `kid` refetches included).
    #[serde(default = "default_jwks_min_refresh")]
    pub jwks_min_refresh: HumanDuration,
}

/// `[auth.api_keys.NAME]`: static keys, stored as SHA-256 digests.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApiKeysConfig {
    /// Header carrying the key (default `x-api-key`).
    pub header: Option<String>,
    /// Query parameter carrying the key, instead of a header.
    pub query: Option<String>,
    #[serde(default)]
    pub keys: Vec<ApiKeyConfig>,
    /// `memory` (only `keys`) or `redis` (`keys` plus keys managed at runtime).
    #[serde(default)]
    pub store: KeyStoreKind,
    pub redis_url: Option<String>,
    /// Headers naming the matched key's `id` and `scopes` for the upstream.
    #[serde(default)]
    pub forward_identity: ForwardIdentityConfig,
}

/// `forward_identity = { id = "x-api-key-id", scopes = "x-api-key-scopes" }`; `""` turns
/// one off.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ForwardIdentityConfig {
    pub id: String,
    pub scopes: String,
}

impl Default for ForwardIdentityConfig {
    fn default() -> Self {
        Self {
            id: "x-api-key-id".into(),
            scopes: "x-api-key-scopes".into(),
        }
    }
}

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum KeyStoreKind {
    #[default]
    Memory,
    Redis,
}

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyConfig {
    /// The principal this key identifies.
    pub id: String,
    /// Lower-case hex SHA-256 of the key.
    pub sha256: String,
    #[serde(default)]
    pub scopes: Vec<String>,
}

fn default_true() -> bool {
    true
}
fn default_leeway() -> HumanDuration {
    secs(30)
}
fn default_token_header() -> String {
    "authorization".into()
}
fn default_jwks_cache() -> HumanDuration {
    secs(300)
}
fn default_jwks_min_refresh() -> HumanDuration {
    secs(30)
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

fn secs(n: u64) -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(n))
}
fn millis(n: u64) -> HumanDuration {
    HumanDuration(std::time::Duration::from_millis(n))
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
    pub transform: Option<TransformConfig>,
    /// Call several upstreams in parallel and merge their JSON answers.
    pub aggregate: Option<Vec<AggregateBackendConfig>>,
    /// Aggregates: name the backends left out in an `_errors` member of the body.
    pub aggregate_errors: Option<bool>,
    /// Serve GET/HEAD answers from the `[cache]` store: `{ ttl, vary, per_principal }`.
    pub cache: Option<RouteCacheConfig>,
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

/// Every problem found in a configuration, each with the key path it concerns.
#[derive(Debug, Default, thiserror::Error)]
#[error("invalid configuration:\n{}", self.problems.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
pub struct ConfigError {
    pub problems: Vec<ConfigProblem>,
    /// What validation noted without refusing (secrets missing while linting).
    pub notes: Vec<ConfigProblem>,
}

/// One problem: where (`routes[2].upstream`) and what.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ConfigProblem {
    pub key: String,
    pub message: String,
    /// Where the key is: a file's line, or an environment variable (filled in when the
    /// problems are reported, see [`ConfigError::locate`]).
    pub location: Option<Location>,
    /// For a problem of `routes[N]`, that route's `path`.
    pub route: Option<String>,
}

/// Where a configuration value came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    File { file: String, line: usize },
    Environment(String),
}

impl ConfigProblem {
    /// The problem for `proxyfn check --format json`.
    pub fn to_json(&self) -> serde_json::Value {
        let mut json = serde_json::json!({ "key": self.key, "message": self.message });
        if let Some(route) = &self.route {
            json["route"] = route.as_str().into();
        }
        match &self.location {
            Some(Location::File { file, line }) => {
                json["file"] = file.as_str().into();
                json["line"] = (*line).into();
            }
            Some(Location::Environment(variable)) => json["variable"] = variable.as_str().into(),
            None => {}
        }
        json
    }

    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            message: message.into(),
            ..Self::default()
        }
    }

    /// The key path with the route's path after its index: `routes[2] (/users/{id}).upstream`.
    pub fn display_key(&self) -> String {
        match (&self.route, self.key.find(']')) {
            (Some(route), Some(end)) if self.key.starts_with("routes[") => {
                format!("{} ({route}){}", &self.key[..=end], &self.key[end + 1..])
            }
            _ => self.key.clone(),
        }
    }
}

impl std::fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(Location::File { file, line }) = &self.location {
            write!(f, "{file}:{line}: ")?;
        }
        if self.key.is_empty() {
            f.write_str(&self.message)?;
        } else {
            write!(f, "{}: {}", self.display_key(), self.message)?;
        }
        if let Some(Location::Environment(variable)) = &self.location {
            write!(f, " (from {variable})")?;
        }
        Ok(())
    }
}

impl ConfigError {
    pub fn single(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            problems: vec![ConfigProblem::new(key, message)],
            notes: Vec::new(),
        }
    }
}
