//! Validation of a [`Config`] into the runtime [`Plan`]: parsed addresses, methods, header
//! values and path templates, so the request path never parses configuration.
//!
//! Validation collects every problem rather than stopping at the first, each with its key path.

use std::{collections::BTreeMap, net::SocketAddr, time::Duration};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};

use crate::{
    auth::config::{AuthSettings, ProviderRef},
    cache::config::{CacheSettings, RouteCacheSettings},
    compression::CompressionSettings,
    cors::CorsLayer,
    docs::config::DocsSettings,
    observability::config::{LogSettings, MetricsSettings},
    ratelimit::config::RateLimitSettings,
    transform::config::TransformSettings,
    upstream::config::UpstreamSettings,
};

use super::{
    Config, ConfigError, ConfigProblem, MockResponseConfig, Problems, RouteConfig, Secrets,
    parse_header_name, parse_method,
};

/// Paths the gateway serves itself; a configured route may not take them.
pub const BUILTIN_PATHS: &[&str] = &["/health", "/ready"];
/// Served when `[metrics] enabled` (server mode).
pub const METRICS_PATH: &str = "/metrics";
/// Served when `[docs] enabled`: the document, and Swagger UI under `/docs/`.
pub const OPENAPI_PATH: &str = "/openapi.json";
pub const DOCS_PATH: &str = "/docs";

/// Whether `path` (a route template) would be shadowed by an endpoint of the gateway itself.
fn is_builtin(path: &str, config: &Config) -> bool {
    BUILTIN_PATHS.contains(&path)
        || (config.metrics.enabled && path == METRICS_PATH)
        || (config.docs.enabled
            && (path == OPENAPI_PATH
                || path == DOCS_PATH
                || path
                    .strip_prefix(DOCS_PATH)
                    .is_some_and(|rest| rest.starts_with('/'))))
}

/// The validated configuration the gateway runs from.
#[derive(Clone, Debug)]
pub struct Plan {
    pub server: ServerSettings,
    pub upstreams: BTreeMap<String, UpstreamSettings>,
    pub auth: AuthSettings,
    pub rate_limit: RateLimitSettings,
    pub routes: Vec<RoutePlan>,
    pub log: LogSettings,
    pub metrics: MetricsSettings,
    pub docs: DocsSettings,
    /// `None`: responses are never compressed.
    pub compression: Option<CompressionSettings>,
    pub versioning: super::VersioningSettings,
    pub cache: CacheSettings,
    /// `None`: no CORS headers (same-origin browser calls only).
    pub cors: Option<CorsLayer>,
    pub lambda: LambdaSettings,
    /// What validation noted without refusing (secrets missing while linting).
    pub notes: Vec<ConfigProblem>,
}

#[derive(Clone, Debug)]
pub struct ServerSettings {
    pub listen: SocketAddr,
    pub body_limit: u64,
    pub header_limit: usize,
    pub timeout: Duration,
    pub trusted_proxies: crate::trust::TrustedProxies,
    /// Client-address headers passed on from trusted proxies.
    pub trusted_headers: Vec<HeaderName>,
    pub underscore_headers: crate::trust::UnderscoreHeaders,
    pub strip_stage: bool,
    pub shutdown_timeout: Duration,
    pub deadline_margin: Duration,
    /// Server mode's worker threads, when configured; see [`ServerSettings::workers`].
    pub configured_workers: Option<usize>,
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub body_timeout: Duration,
    /// When configured; else derived from the descriptor limit when the server starts.
    pub max_connections: Option<usize>,
}

/// `[lambda]`, validated.
#[derive(Clone, Copy, Debug)]
pub struct LambdaSettings {
    /// The largest invocation response, in bytes.
    pub max_response: usize,
}

impl ServerSettings {
    /// Server mode's worker threads: as configured, else one per CPU (read only when asked:
    /// finding the CPU quota reads cgroup files, which a Lambda cold start need not pay for).
    pub fn workers(&self) -> usize {
        self.configured_workers
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from))
    }
}

/// Injected faults; percentages are probabilities in 0.0..=1.0.
#[derive(Clone, Debug, PartialEq)]
pub struct FaultSettings {
    pub delay: Option<Duration>,
    pub delay_probability: f64,
    pub abort_status: Option<StatusCode>,
    pub abort_probability: f64,
}

#[derive(Clone, Debug)]
pub struct RoutePlan {
    /// The path template as written, e.g. `/users/{*rest}`; also the route's name in logs.
    pub path: String,
    /// `None` accepts every method.
    pub methods: Option<Vec<Method>>,
    pub action: RouteAction,
    pub fallback: Option<MockResponse>,
    pub fault: Option<FaultSettings>,
    /// Empty: a public route.
    pub auth: Vec<ProviderRef>,
    pub scopes: Vec<String>,
    /// Names of `[rate_limits.NAME]` policies, all of which must pass.
    pub rate_limits: Vec<String>,
    /// The JSON Schema the request body must match.
    pub request_schema: Option<std::sync::Arc<super::RequestSchema>>,
    pub transform: TransformSettings,
    /// The API version this route serves; `None` serves every version.
    pub version: Option<String>,
    pub deprecation: Option<super::Deprecation>,
    pub cache: Option<RouteCacheSettings>,
}

#[derive(Clone, Debug)]
pub enum RouteAction {
    Proxy {
        upstream: String,
        target: TargetPath,
    },
    Mock(MockResponse),
    Aggregate {
        backends: Vec<AggregateBackend>,
        /// List the backends left out in an `_errors` member.
        report_errors: bool,
    },
}

/// One backend call of an aggregate route.
#[derive(Clone, Debug)]
pub struct AggregateBackend {
    pub upstream: String,
    /// Path and query, with the route's parameters to substitute.
    pub target: Vec<TemplatePart>,
    pub method: Method,
    pub key: Option<String>,
    pub timeout: Option<std::time::Duration>,
    pub required: bool,
}

impl AggregateBackend {
    /// How the backend is named in `_errors` and problems: its key, else its upstream.
    pub fn name(&self) -> &str {
        self.key.as_deref().unwrap_or(&self.upstream)
    }
}

/// How the normalized request path becomes the upstream path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TargetPath {
    Unchanged,
    StripPrefix(String),
    Rewrite(Vec<TemplatePart>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TemplatePart {
    Literal(String),
    Param(String),
}

#[derive(Clone, Debug)]
pub struct MockResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl RoutePlan {
    /// The path template clients use: a versioned route's is under its version prefix
    /// (`/v2/things/{*rest}`), the form that needs no version header.
    pub fn public_path(&self) -> String {
        match &self.version {
            Some(version) => format!("/{version}{}", self.path),
            None => self.path.clone(),
        }
    }
}

impl Plan {
    /// Validates `config`, reporting every problem found.
    pub fn new(config: &Config) -> Result<Self, ConfigError> {
        Self::validate(config, Secrets::Required)
    }

    /// Validates `config`; with [`Secrets::MayBeMissing`], a `secret_env` that is not set is
    /// a note in the plan ([`Plan::notes`]) rather than a problem.
    pub fn validate(config: &Config, secrets: Secrets) -> Result<Self, ConfigError> {
        let mut problems = Problems::new(secrets);
        let server = server_settings(config, &mut problems);
        let upstreams = config
            .upstreams
            .iter()
            .filter_map(|(name, upstream)| {
                crate::upstream::config::settings(name, upstream, &mut problems)
                    .map(|u| (name.clone(), u))
            })
            .collect();
        let auth = crate::auth::config::settings(&config.auth, &mut problems);
        let rate_limit = crate::ratelimit::config::settings(
            &config.rate_limit,
            &config.rate_limits,
            &mut problems,
        );
        let log = crate::observability::config::log_settings(&config.log, &mut problems);
        let metrics =
            crate::observability::config::metrics_settings(&config.metrics, &mut problems);
        let docs = crate::docs::config::settings(&config.docs);
        let compression = crate::compression::settings(&config.compression, &mut problems);
        let versioning = super::versioning::versioning_settings(config, &mut problems);
        let cache = crate::cache::config::settings(&config.cache, &mut problems);
        let cors = crate::cors::config::settings(config.cors.as_ref(), &mut problems)
            .map(|settings| CorsLayer::new(&settings));
        let lambda = lambda_settings(config, &mut problems);
        let routes: Vec<(usize, RoutePlan)> = config
            .routes
            .iter()
            .enumerate()
            .filter_map(|(index, route)| {
                route_plan(index, route, config, &mut problems).map(|plan| (index, plan))
            })
            .collect();
        check_route_table(&route_shapes(config), &mut problems);
        let routes = routes.into_iter().map(|(_, plan)| plan).collect();

        let notes = problems.take_notes();
        match (server, problems.is_empty()) {
            (Some(server), true) => Ok(Plan {
                server,
                upstreams,
                auth,
                rate_limit,
                routes,
                log,
                metrics,
                docs,
                compression,
                versioning,
                cache,
                cors,
                lambda,
                notes,
            }),
            _ => {
                let mut error = problems.into_error();
                error.notes = notes;
                Err(error)
            }
        }
    }
}

fn server_settings(config: &Config, problems: &mut Problems) -> Option<ServerSettings> {
    let server = &config.server;
    let listen = resolve_listen(&server.listen)
        .map_err(|message| problems.add("server.listen", message))
        .ok();
    if server.timeout.0.is_zero() {
        problems.add("server.timeout", "must be greater than zero");
    }
    if server.header_limit.0 < 1024 {
        problems.add("server.header_limit", "must be at least 1KB");
    }
    let header_limit = usize::try_from(server.header_limit.0).unwrap_or(usize::MAX);
    for (field, value) in [
        ("header_timeout", server.header_timeout.0),
        ("idle_timeout", server.idle_timeout.0),
        ("body_timeout", server.body_timeout.0),
    ] {
        if value.is_zero() {
            problems.add(format!("server.{field}"), "must be greater than zero");
        }
    }
    if server.max_connections == Some(0) {
        problems.add(
            "server.max_connections",
            "must be at least 1 (omit it for half the descriptor limit)",
        );
    }
    if server
        .workers
        .is_some_and(|n| !(1..=MAX_WORKERS).contains(&n))
    {
        problems.add(
            "server.workers",
            format!("must be between 1 and {MAX_WORKERS}"),
        );
    }
    let trusted_proxies = match &server.trusted_proxies {
        super::TrustedProxiesConfig::Count(n) => crate::trust::TrustedProxies::Count(*n),
        super::TrustedProxiesConfig::Networks(entries) => {
            if entries.is_empty() {
                problems.add(
                    "server.trusted_proxies",
                    "list at least one address or network, or use 0 to trust none",
                );
            }
            crate::trust::TrustedProxies::Networks(
                entries
                    .iter()
                    .enumerate()
                    .filter_map(|(i, entry)| {
                        crate::trust::parse_network(entry)
                            .map_err(|message| {
                                problems.add(format!("server.trusted_proxies[{i}]"), message)
                            })
                            .ok()
                    })
                    .collect(),
            )
        }
    };
    let trusted_headers = server
        .trusted_headers
        .iter()
        .enumerate()
        .filter_map(|(i, name)| {
            let key = format!("server.trusted_headers[{i}]");
            let name = parse_header_name(&key, name, problems)?;
            if !crate::trust::CLIENT_ADDRESS_HEADERS.contains(&name.as_str()) {
                problems.add(
                    key,
                    format!(
                        "{:?} is not a client-address header the gateway removes (those are: {})",
                        name.as_str(),
                        crate::trust::CLIENT_ADDRESS_HEADERS.join(", ")
                    ),
                );
                return None;
            }
            Some(name)
        })
        .collect();
    Some(ServerSettings {
        listen: listen?,
        body_limit: server.body_limit.0,
        header_limit,
        timeout: server.timeout.0,
        trusted_proxies,
        trusted_headers,
        underscore_headers: server.underscore_headers,
        strip_stage: server.strip_stage,
        shutdown_timeout: server.shutdown_timeout.0,
        deadline_margin: server.deadline_margin.0,
        configured_workers: server.workers,
        header_timeout: server.header_timeout.0,
        idle_timeout: server.idle_timeout.0,
        body_timeout: server.body_timeout.0,
        max_connections: server.max_connections,
    })
}

fn lambda_settings(config: &Config, problems: &mut Problems) -> LambdaSettings {
    let max_response = usize::try_from(config.lambda.max_response.0).unwrap_or(usize::MAX);
    if max_response < 1024 {
        problems.add("lambda.max_response", "must be at least 1KB");
    }
    LambdaSettings { max_response }
}

/// More worker threads than this would only add context switches and memory.
const MAX_WORKERS: usize = 1024;

fn resolve_listen(listen: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = listen.parse() {
        return Ok(addr);
    }
    use std::net::ToSocketAddrs;
    listen
        .to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .ok_or_else(|| format!("not a HOST:PORT address: {listen:?}"))
}

fn route_plan(
    index: usize,
    route: &RouteConfig,
    config: &Config,
    problems: &mut Problems,
) -> Option<RoutePlan> {
    let key = format!("routes[{index}]");
    let before = problems.count();

    let params = check_path_template(&route.path)
        .map_err(|message| problems.add(format!("{key}.path"), message))
        .unwrap_or_default();
    if is_builtin(&route.path, config) {
        problems.add(
            format!("{key}.path"),
            format!("{:?} is a built-in endpoint of the gateway", route.path),
        );
    }

    let methods = route.methods.as_ref().map(|methods| {
        if methods.is_empty() {
            problems.add(
                format!("{key}.methods"),
                "list at least one method, or omit the key for any",
            );
        }
        methods
            .iter()
            .enumerate()
            .filter_map(|(i, m)| parse_method(&format!("{key}.methods[{i}]"), m, problems))
            .collect::<Vec<_>>()
    });

    let action = match (&route.upstream, &route.response, &route.aggregate) {
        (None, None, Some(backends)) => {
            path_keys_need_an_upstream(&key, route, problems);
            aggregate_backends(&key, backends, &params, config, problems).map(|backends| {
                RouteAction::Aggregate {
                    backends,
                    report_errors: route.aggregate_errors.unwrap_or(true),
                }
            })
        }
        (None, None, None) => {
            problems.add(
                &key,
                "set `upstream` (proxy), `response` (mock) or `aggregate`",
            );
            None
        }
        (Some(_), Some(_), _) | (Some(_), _, Some(_)) | (_, Some(_), Some(_)) => {
            problems.add(
                &key,
                "set only one of `upstream`, `response` and `aggregate`",
            );
            None
        }
        (None, Some(response), None) => {
            path_keys_need_an_upstream(&key, route, problems);
            mock_response(&format!("{key}.response"), response, problems).map(RouteAction::Mock)
        }
        (Some(upstream), None, None) => {
            check_upstream(&format!("{key}.upstream"), upstream, config, problems);
            target_path(&key, route, &params, problems).map(|target| RouteAction::Proxy {
                upstream: upstream.clone(),
                target,
            })
        }
    };

    if route.aggregate_errors.is_some() && route.aggregate.is_none() {
        problems.add(
            format!("{key}.aggregate_errors"),
            "only applies to routes with `aggregate`",
        );
    }
    let fallback = route.fallback.as_ref().and_then(|fallback| {
        if route.upstream.is_none() {
            problems.add(
                format!("{key}.fallback"),
                "only applies to routes with an `upstream`",
            );
        }
        mock_response(&format!("{key}.fallback"), fallback, problems)
    });
    let fault = route
        .fault
        .as_ref()
        .map(|fault| fault_settings(&format!("{key}.fault"), fault, problems));
    let auth = route_auth(&key, route, config, problems);
    let rate_limits = crate::ratelimit::config::route_policies(
        &key,
        route.rate_limit.as_ref(),
        &config.rate_limits,
        problems,
    );
    let request_schema = route.request_schema.as_deref().and_then(|file| {
        super::schema::load_request_schema(
            &format!("{key}.request_schema"),
            file,
            config.base_dir.as_deref(),
            problems,
        )
    });

    let transform = route
        .transform
        .as_ref()
        .map(|t| crate::transform::config::settings(&key, t, problems))
        .unwrap_or_default();

    if let Some(version) = &route.version {
        super::versioning::check_version(&format!("{key}.version"), version, problems);
    }
    let deprecation = route.deprecated.as_ref().and_then(|deprecated| {
        super::versioning::deprecation(
            &format!("{key}.deprecated"),
            deprecated,
            std::time::SystemTime::now(),
            problems,
        )
    });

    let cache = route.cache.as_ref().and_then(|cache| {
        crate::cache::config::route_cache(
            &format!("{key}.cache"),
            cache,
            methods.as_deref(),
            problems,
        )
    });

    (problems.count() == before).then_some(())?;
    Some(RoutePlan {
        path: route.path.clone(),
        methods,
        action: action?,
        fallback,
        fault,
        auth,
        scopes: route.scopes.clone(),
        rate_limits,
        request_schema,
        transform,
        version: route.version.clone(),
        deprecation,
        cache,
    })
}

/// `strip_prefix` and `rewrite` shape the forwarded path: a mock or an aggregate has none.
fn path_keys_need_an_upstream(key: &str, route: &RouteConfig, problems: &mut Problems) {
    for (field, set) in [
        ("strip_prefix", route.strip_prefix.is_some()),
        ("rewrite", route.rewrite.is_some()),
    ] {
        if set {
            problems.add(
                format!("{key}.{field}"),
                "only applies to routes with an `upstream`",
            );
        }
    }
}

fn check_upstream(key: &str, upstream: &str, config: &Config, problems: &mut Problems) {
    if !config.upstreams.contains_key(upstream) {
        let known: Vec<&str> = config.upstreams.keys().map(String::as_str).collect();
        let known = if known.is_empty() {
            "none defined".to_owned()
        } else {
            known.join(", ")
        };
        problems.add(
            key,
            format!("unknown upstream {upstream:?} (known: {known})"),
        );
    }
}

fn aggregate_backends(
    key: &str,
    backends: &[super::AggregateBackendConfig],
    params: &[String],
    config: &Config,
    problems: &mut Problems,
) -> Option<Vec<AggregateBackend>> {
    let before = problems.count();
    if backends.is_empty() {
        problems.add(format!("{key}.aggregate"), "list at least one backend");
    }
    let mut names: Vec<&str> = Vec::new();
    let mut out = Vec::with_capacity(backends.len());
    for (i, backend) in backends.iter().enumerate() {
        let key = format!("{key}.aggregate[{i}]");
        check_upstream(
            &format!("{key}.upstream"),
            &backend.upstream,
            config,
            problems,
        );
        let target = parse_template(&backend.path, params)
            .map_err(|message| problems.add(format!("{key}.path"), message))
            .ok();
        let method = match &backend.method {
            None => Some(Method::GET),
            Some(m) => parse_method(&format!("{key}.method"), m, problems),
        };
        if let Some(member) = &backend.key {
            if member.is_empty() || member == "_errors" {
                problems.add(
                    format!("{key}.key"),
                    "must be a non-empty name other than `_errors`",
                );
            } else if names.contains(&member.as_str()) {
                problems.add(
                    format!("{key}.key"),
                    format!("{member:?} is used by another backend"),
                );
            }
            names.push(member);
        }
        if backend.timeout.is_some_and(|t| t.0.is_zero()) {
            problems.add(format!("{key}.timeout"), "must be more than zero");
        }
        if let (Some(target), Some(method)) = (target, method) {
            out.push(AggregateBackend {
                upstream: backend.upstream.clone(),
                target,
                method,
                key: backend.key.clone(),
                timeout: backend.timeout.map(|t| t.0),
                required: backend.required,
            });
        }
    }
    (problems.count() == before).then_some(out)
}

fn route_auth(
    key: &str,
    route: &RouteConfig,
    config: &Config,
    problems: &mut Problems,
) -> Vec<ProviderRef> {
    let Some(entries) = &route.auth else {
        if !route.scopes.is_empty() {
            problems.add(format!("{key}.scopes"), "scopes need `auth` on the route");
        }
        return vec![];
    };
    if entries.is_empty() {
        problems.add(
            format!("{key}.auth"),
            "list at least one provider, or omit the key for a public route",
        );
    }
    let known = || {
        let names: Vec<String> = config
            .auth
            .jwt
            .keys()
            .map(|n| format!("jwt:{n}"))
            .chain(config.auth.api_keys.keys().map(|n| format!("api_key:{n}")))
            .collect();
        if names.is_empty() {
            "none defined".to_owned()
        } else {
            names.join(", ")
        }
    };
    entries
        .iter()
        .enumerate()
        .filter_map(|(i, entry)| {
            let found = match entry.split_once(':') {
                Some(("jwt", name)) if config.auth.jwt.contains_key(name) => {
                    Some(ProviderRef::Jwt(name.to_owned()))
                }
                Some(("api_key", name)) if config.auth.api_keys.contains_key(name) => {
                    Some(ProviderRef::ApiKey(name.to_owned()))
                }
                _ => None,
            };
            if found.is_none() {
                problems.add(
                    format!("{key}.auth[{i}]"),
                    format!("unknown provider {entry:?} (known: {})", known()),
                );
            }
            found
        })
        .collect()
}

fn fault_settings(key: &str, fault: &super::FaultConfig, problems: &mut Problems) -> FaultSettings {
    for (field, value) in [
        ("delay_percent", fault.delay_percent),
        ("abort_percent", fault.abort_percent),
    ] {
        if !(0.0..=100.0).contains(&value) {
            problems.add(format!("{key}.{field}"), "a percentage from 0 to 100");
        }
    }
    if fault.delay.is_none() && fault.delay_percent > 0.0 {
        problems.add(format!("{key}.delay"), "required with delay_percent");
    }
    let abort_status = fault.abort_status.and_then(|status| {
        let parsed = StatusCode::from_u16(status)
            .ok()
            .filter(|s| (200..=599).contains(&s.as_u16()));
        if parsed.is_none() {
            problems.add(
                format!("{key}.abort_status"),
                format!("not a final HTTP status (200-599): {status}"),
            );
        }
        parsed
    });
    if fault.abort_status.is_none() && fault.abort_percent > 0.0 {
        problems.add(format!("{key}.abort_status"), "required with abort_percent");
    }
    FaultSettings {
        delay: fault.delay.map(|d| d.0),
        delay_probability: fault.delay_percent / 100.0,
        abort_status,
        abort_probability: fault.abort_percent / 100.0,
    }
}

/// Checks a route path and returns its parameter names.
///
/// Paths must already be in the normalized form requests are matched in (see
/// `routes::normalize`), or they could never match.
fn check_path_template(path: &str) -> Result<Vec<String>, String> {
    if !path.starts_with('/') {
        return Err(format!("must start with '/': {path:?}"));
    }
    if path.contains(['?', '#', '\\']) {
        return Err(format!("no '?', '#' or '\\' in a route path: {path:?}"));
    }
    if path.contains("//") {
        return Err(format!("empty segment ('//') in {path:?}"));
    }
    let mut params = Vec::new();
    let segments: Vec<&str> = path[1..].split('/').collect();
    for (i, segment) in segments.iter().enumerate() {
        if *segment == "." || *segment == ".." {
            return Err(format!("dot segment in {path:?}"));
        }
        if segment.starts_with(':') || (segment.starts_with('*') && segment.len() > 1) {
            return Err(format!(
                "{segment:?} is the old syntax; write {{{}}} or {{*{}}}",
                &segment[1..],
                &segment[1..]
            ));
        }
        if let Some(inner) = segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            let (name, wildcard) = match inner.strip_prefix('*') {
                Some(name) => (name, true),
                None => (inner, false),
            };
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!("invalid parameter name {name:?} in {path:?}"));
            }
            if wildcard && i + 1 != segments.len() {
                return Err(format!(
                    "a {{*{name}}} wildcard must be the last segment of {path:?}"
                ));
            }
            params.push(name.to_owned());
        } else if segment.contains(['{', '}']) {
            return Err(format!(
                "a parameter must be a whole segment: {segment:?} in {path:?}"
            ));
        }
    }
    Ok(params)
}

fn target_path(
    key: &str,
    route: &RouteConfig,
    params: &[String],
    problems: &mut Problems,
) -> Option<TargetPath> {
    match (&route.strip_prefix, &route.rewrite) {
        (Some(_), Some(_)) => {
            problems.add(key, "set either `strip_prefix` or `rewrite`, not both");
            None
        }
        (None, None) => Some(TargetPath::Unchanged),
        (Some(prefix), None) => {
            let static_part = route.path.split('{').next().unwrap_or_default();
            if !prefix.starts_with('/') || (prefix.len() > 1 && prefix.ends_with('/')) {
                problems.add(
                    format!("{key}.strip_prefix"),
                    "must start with '/' and not end with '/'",
                );
                None
            } else if !static_part.starts_with(prefix.as_str())
                || !(static_part.len() == prefix.len()
                    || static_part[prefix.len()..].starts_with('/'))
            {
                problems.add(
                    format!("{key}.strip_prefix"),
                    format!(
                        "{prefix:?} is not a leading part of the path {:?}",
                        route.path
                    ),
                );
                None
            } else {
                Some(TargetPath::StripPrefix(prefix.clone()))
            }
        }
        (None, Some(rewrite)) => match parse_template(rewrite, params) {
            Ok(parts) => Some(TargetPath::Rewrite(parts)),
            Err(message) => {
                problems.add(format!("{key}.rewrite"), message);
                None
            }
        },
    }
}

fn parse_template(template: &str, params: &[String]) -> Result<Vec<TemplatePart>, String> {
    if !template.starts_with('/') {
        return Err(format!("must start with '/': {template:?}"));
    }
    let mut parts = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        if open > 0 {
            parts.push(TemplatePart::Literal(rest[..open].to_owned()));
        }
        let close = rest[open..]
            .find('}')
            .ok_or_else(|| format!("unclosed '{{' in {template:?}"))?;
        let name = rest[open + 1..open + close].trim_start_matches('*');
        if !params.iter().any(|p| p == name) {
            return Err(format!(
                "{{{name}}} is not a parameter of the route path (parameters: {})",
                if params.is_empty() {
                    "none".to_owned()
                } else {
                    params.join(", ")
                }
            ));
        }
        parts.push(TemplatePart::Param(name.to_owned()));
        rest = &rest[open + close + 1..];
    }
    if rest.contains('}') {
        return Err(format!("unmatched '}}' in {template:?}"));
    }
    if !rest.is_empty() {
        parts.push(TemplatePart::Literal(rest.to_owned()));
    }
    Ok(parts)
}

fn mock_response(
    key: &str,
    response: &MockResponseConfig,
    problems: &mut Problems,
) -> Option<MockResponse> {
    let before = problems.count();
    let status = StatusCode::from_u16(response.status)
        .ok()
        .filter(|s| (200..=599).contains(&s.as_u16()));
    if status.is_none() {
        problems.add(
            format!("{key}.status"),
            format!("not a final HTTP status (200-599): {}", response.status),
        );
    }
    let mut headers = HeaderMap::new();
    for (name, value) in &response.headers {
        match (
            HeaderName::try_from(name.as_str()),
            HeaderValue::try_from(value.as_str()),
        ) {
            (Ok(name), Ok(value)) => {
                headers.append(name, value);
            }
            (Err(_), _) => problems.add(
                format!("{key}.headers"),
                format!("invalid header name {name:?}"),
            ),
            (_, Err(_)) => problems.add(format!("{key}.headers.{name}"), "invalid header value"),
        }
    }
    (problems.count() == before).then(|| MockResponse {
        status: status.unwrap_or(StatusCode::OK),
        headers,
        body: Bytes::from(response.body.clone()),
    })
}

/// Routes on one path may split methods or versions between them, but never claim the same
/// method of the same version twice, and no two paths may be ambiguous for the router.
/// A route's config index, its methods (`None`: any) and its version.
type IndexedMethods<'a> = (usize, &'a Option<Vec<Method>>, &'a Option<String>);

/// What the route table needs of a route: its index, path, methods and version. Every route
/// whose path is valid counts, whatever else is wrong with it, so that a file's overlaps are
/// reported together with its other problems.
struct RouteShape {
    index: usize,
    path: String,
    methods: Option<Vec<Method>>,
    version: Option<String>,
}

fn route_shapes(config: &Config) -> Vec<RouteShape> {
    let mut ignored = Problems::new(Secrets::Required);
    config
        .routes
        .iter()
        .enumerate()
        .filter(|(_, route)| check_path_template(&route.path).is_ok())
        .map(|(index, route)| RouteShape {
            index,
            path: route.path.clone(),
            methods: route.methods.as_ref().map(|methods| {
                methods
                    .iter()
                    .filter_map(|m| parse_method("", m, &mut ignored))
                    .collect()
            }),
            version: route.version.clone(),
        })
        .collect()
}

fn check_route_table(routes: &[RouteShape], problems: &mut Problems) {
    let mut by_path: BTreeMap<&str, Vec<IndexedMethods<'_>>> = BTreeMap::new();
    for route in routes {
        by_path
            .entry(&route.path)
            .or_default()
            .push((route.index, &route.methods, &route.version));
    }
    let mut router = matchit::Router::new();
    for (path, entries) in &by_path {
        if let Err(e) = router.insert(*path, ()) {
            let index = entries[0].0;
            let message = match e {
                matchit::InsertError::Conflict { with } => {
                    let other = by_path
                        .get(with.as_str())
                        .map_or(String::new(), |e| format!("routes[{}] ", e[0].0));
                    format!(
                        "overlaps {other}({with:?}): both would match the same requests; name \
                         the parameters at the same place alike, or make one of the segments literal"
                    )
                }
                other => format!("not a path the router can take: {other}"),
            };
            problems.add(format!("routes[{index}].path"), message);
        }
        for (a, (index_a, methods_a, version_a)) in entries.iter().enumerate() {
            for (index_b, methods_b, version_b) in &entries[a + 1..] {
                if version_a != version_b {
                    continue;
                }
                let overlap = match (methods_a, methods_b) {
                    (None, _) | (_, None) => true,
                    (Some(x), Some(y)) => x.iter().any(|m| y.contains(m)),
                };
                if overlap {
                    problems.add(
                        format!("routes[{index_b}].methods"),
                        format!("routes[{index_a}] already serves {path:?} for the same method(s)"),
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(toml: &str) -> Vec<String> {
        let config = Config::from_toml(toml).expect("parses");
        match Plan::new(&config) {
            Ok(_) => vec![],
            Err(e) => e.problems.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn the_empty_config_is_valid() {
        assert!(problems("").is_empty());
    }

    #[test]
    fn an_unknown_upstream_names_the_route_and_the_known_ones() {
        let found = problems(
            r#"
            [upstreams.users]
            url = "http://127.0.0.1:9001"
            [upstreams.orders]
            url = "http://127.0.0.1:9002"
            [[routes]]
            path = "/a"
            upstream = "users"
            [[routes]]
            path = "/b"
            upstream = "users"
            [[routes]]
            path = "/c"
            upstream = "userz"
            "#,
        );
        assert_eq!(
            found,
            vec![r#"routes[2].upstream: unknown upstream "userz" (known: orders, users)"#]
        );
    }

    #[test]
    fn every_problem_is_reported_not_just_the_first() {
        let found = problems(
            r#"
            [server]
            listen = "nowhere"
            timeout = "0s"
            [upstreams.bad]
            url = "ftp://example.com"
            [[routes]]
            path = "users"
            upstream = "bad"
            [[routes]]
            path = "/health"
            response = { status = 99 }
            "#,
        );
        let keys: Vec<&str> = found.iter().map(|p| p.split(':').next().unwrap()).collect();
        assert_eq!(
            keys,
            vec![
                "server.listen",
                "server.timeout",
                "upstreams.bad.url",
                "routes[0].path",
                "routes[1].path",
                "routes[1].response.status"
            ],
            "{found:#?}"
        );
    }

    #[test]
    fn workers_default_to_one_per_cpu_and_zero_is_refused() {
        let plan = Plan::new(&Config::default()).unwrap();
        assert_eq!(
            plan.server.workers(),
            std::thread::available_parallelism().map_or(1, usize::from)
        );
        let found = problems("[server]\nworkers = 0\n");
        assert_eq!(found, ["server.workers: must be between 1 and 1024"]);
    }

    #[test]
    fn old_axum_syntax_gets_a_hint() {
        let found = problems("[[routes]]\npath = \"/users/:id\"\nresponse = {}\n");
        assert!(found[0].contains("write {id}"), "{found:?}");
    }

    #[test]
    fn rewrite_placeholders_must_be_route_params() {
        let found = problems(
            "[upstreams.u]\nurl = \"http://127.0.0.1:1\"\n[[routes]]\npath = \"/a/{id}\"\nupstream = \"u\"\nrewrite = \"/b/{name}\"\n",
        );
        assert!(
            found[0].starts_with("routes[0].rewrite: {name} is not a parameter"),
            "{found:?}"
        );
    }

    #[test]
    fn rewrite_templates_split_into_literals_and_params() {
        let parts =
            parse_template("/v2/users/{id}/x/{*rest}", &["id".into(), "rest".into()]).unwrap();
        assert_eq!(
            parts,
            vec![
                TemplatePart::Literal("/v2/users/".into()),
                TemplatePart::Param("id".into()),
                TemplatePart::Literal("/x/".into()),
                TemplatePart::Param("rest".into()),
            ]
        );
    }

    #[test]
    fn strip_prefix_must_lead_the_path_on_a_segment_boundary() {
        let base = "[upstreams.u]\nurl = \"http://127.0.0.1:1\"\n[[routes]]\nupstream = \"u\"\n";
        assert!(
            problems(&format!(
                "{base}path = \"/users/{{*rest}}\"\nstrip_prefix = \"/users\"\n"
            ))
            .is_empty()
        );
        assert!(
            !problems(&format!(
                "{base}path = \"/users/{{*rest}}\"\nstrip_prefix = \"/use\"\n"
            ))
            .is_empty()
        );
        assert!(
            !problems(&format!(
                "{base}path = \"/users/{{*rest}}\"\nstrip_prefix = \"/orders\"\n"
            ))
            .is_empty()
        );
    }

    #[test]
    fn one_path_may_split_methods_but_not_share_them() {
        let base = "[[routes]]\npath = \"/a\"\nmethods = [\"GET\"]\nresponse = {}\n";
        assert!(
            problems(&format!(
                "{base}[[routes]]\npath = \"/a\"\nmethods = [\"post\"]\nresponse = {{}}\n"
            ))
            .is_empty()
        );
        let found = problems(&format!(
            "{base}[[routes]]\npath = \"/a\"\nresponse = {{}}\n"
        ));
        assert_eq!(found.len(), 1);
        assert!(
            found[0].starts_with("routes[1].methods: routes[0] already serves"),
            "{found:?}"
        );
    }

    #[test]
    fn a_wildcard_needs_at_least_one_character() {
        let mut matcher = matchit::Router::new();
        matcher.insert("/files/{*rest}", ()).unwrap();
        assert!(matcher.at("/files/a/b").is_ok());
        assert!(matcher.at("/files").is_err());
        assert!(
            matcher.at("/files/").is_err(),
            "documented in docs/configuration.md"
        );
    }

    #[test]
    fn a_zero_jwks_min_refresh_is_rejected() {
        let found = problems(
            "[auth.jwt.main]\njwks_url = \"https://idp.test/jwks.json\"\nalgorithms = [\"RS256\"]\njwks_min_refresh = \"0s\"\n",
        );
        assert_eq!(
            found,
            vec!["auth.jwt.main.jwks_min_refresh: must be greater than zero"]
        );
    }

    #[test]
    fn ambiguous_paths_are_rejected() {
        let found = problems(
            "[[routes]]\npath = \"/a/{x}\"\nresponse = {}\n[[routes]]\npath = \"/a/{y}\"\nresponse = {}\n",
        );
        assert_eq!(
            found,
            [
                r#"routes[1].path: overlaps routes[0] ("/a/{x}"): both would match the same requests; name the parameters at the same place alike, or make one of the segments literal"#
            ]
        );
    }

    #[test]
    fn trust_boundary_keys_are_validated_with_their_key_paths() {
        let found = problems(
            "[server]\ntrusted_proxies = [\"10.0.0.0/8\", \"proxy.internal\", \"10.0.0.0/40\"]\n\
             trusted_headers = [\"cf-connecting-ip\", \"x-user-id\"]\n",
        );
        assert_eq!(
            found,
            [
                r#"server.trusted_proxies[1]: not an IP address or CIDR network: "proxy.internal""#,
                r#"server.trusted_proxies[2]: not an IP address or CIDR network: "10.0.0.0/40""#,
            ]
            .into_iter()
            .chain([found[2].as_str()])
            .collect::<Vec<_>>()
        );
        assert!(
            found[2].starts_with(
                r#"server.trusted_headers[1]: "x-user-id" is not a client-address header"#
            ),
            "{found:?}"
        );
        assert_eq!(
            problems("[server]\ntrusted_proxies = []\n"),
            [
                "server.trusted_proxies: list at least one address or network, or use 0 to trust none"
            ]
        );
        let plan = Plan::new(
            &Config::from_toml("[server]\ntrusted_proxies = [\"192.168.1.5\", \"10.1.2.3/8\"]\n")
                .unwrap(),
        )
        .unwrap();
        assert_eq!(
            plan.server.trusted_proxies,
            crate::trust::TrustedProxies::Networks(vec![
                "192.168.1.5/32".parse().unwrap(),
                "10.0.0.0/8".parse().unwrap()
            ])
        );
    }

    #[test]
    fn identity_headers_cannot_be_headers_the_gateway_owns() {
        let found = problems(
            "[auth.api_keys.p]\nforward_identity = { id = \"x-forwarded-for\", scopes = \"\" }\n\
             [auth.jwt.j]\njwks_url = \"https://idp.test/jwks\"\nalgorithms = [\"RS256\"]\n\
             forward_claims = { sub = \"X-Request-Id\" }\n",
        );
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found[0].starts_with(
            "auth.jwt.j.forward_claims.sub: \"x-request-id\" is a header the gateway"
        ));
        assert!(found[1].starts_with("auth.api_keys.p.forward_identity.id: \"x-forwarded-for\""));
        let plan = Plan::new(&Config::from_toml("[auth.api_keys.p]\n").unwrap()).unwrap();
        let keys = &plan.auth.api_keys["p"];
        assert_eq!(keys.forward_id.as_ref().unwrap(), "x-api-key-id");
        assert_eq!(keys.forward_scopes.as_ref().unwrap(), "x-api-key-scopes");
    }

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
