//! proxyfn: an API gateway in one binary, run inside AWS Lambda or as an HTTP server.
//!
//! [`build`] turns a [`Config`] into the one [`axum::Router`] both runtimes serve. It reads
//! like the path a request takes through the gateway:
//!
//! 0. the request's [`context::RequestContext`], made by the runtime where the request
//!    entered (or here, for a router used without a runtime);
//! 1. response compression, negotiated with `Accept-Encoding`;
//! 2. request id: set or propagate `X-Request-Id`; render problem bodies with it; then W3C
//!    trace context (continue or start the trace) and the access log (one event per request);
//! 3. the trust boundary: ambiguous framing refused, client copies of the headers the gateway
//!    owns removed;
//! 4. CORS, when configured: preflights answered, CORS headers on every answer;
//! 5. panics become 500 problems, never a dead runtime;
//! 6. limits: header section (431), body (413), whole-request deadline (504);
//! 7. path normalization (400 for ambiguous paths);
//! 8. routing: built-in endpoints, then configured routes (chosen by path, method and API
//!    version): authentication and scopes, rate limits, the response cache, request
//!    validation and transforms, fault injection, then the mock, proxy or aggregate handler,
//!    whose answer is transformed, cached, and marked when the route is deprecated.
//!
//! ```no_run
//! # async fn run() -> Result<(), proxyfn::ConfigError> {
//! let config = proxyfn::Config::from_toml(r#"
//!     [[routes]]
//!     path = "/hello"
//!     response = { status = 200, body = "hello" }
//! "#)?;
//! let router = proxyfn::build(&config).await?;
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]

pub mod admin;
pub mod auth;
pub mod aws;
pub mod body;
pub mod cache;
pub mod compression;
pub mod config;
pub mod context;
pub mod cors;
pub mod docs;
pub mod error;
pub mod limits;
pub mod observability;
pub mod ratelimit;
mod redis_conn;
pub mod routes;
pub mod runtime;
pub mod stall;
pub mod template;
pub mod transform;
pub mod trust;
pub mod upstream;

use std::collections::BTreeMap;

use axum::{Router, response::IntoResponse};
use tower_http::catch_panic::CatchPanicLayer;

pub use config::{Config, ConfigError, Plan};
pub use error::Error;

use crate::{
    context::Entry,
    limits::LimitsLayer,
    observability::{AccessLogLayer, RequestIdLayer, TraceContextLayer},
    routes::normalize::NormalizePathLayer,
    trust::TrustBoundaryLayer,
    upstream::Upstream,
};

/// Which runtime serves an [`App`]: its resources are shaped for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Runtime {
    /// `server.workers` threads serving connections: a connection pool per worker.
    Server,
    /// One invocation at a time on one thread: one pool is enough.
    Lambda,
}

/// A validated configuration and what was built from it.
#[derive(Clone)]
pub struct App {
    pub plan: Plan,
    pub router: Router,
    /// With `server.admin_listen`: the operational endpoints, which then leave `router`.
    pub admin_router: Option<Router>,
    /// Makes each request's context where a runtime receives it.
    pub entry: Entry,
    /// The upstreams, for work outside requests (server-mode health checks).
    pub upstreams: Vec<Upstream>,
    /// Kept for a reload, which reuses their state where the configuration did not change.
    limiter: ratelimit::RateLimiter,
    cache: cache::ResponseCache,
    /// Which configuration this is: 1 at start, one more for each successful reload; the
    /// access log names it.
    pub generation: u64,
}

impl App {
    /// Validates `config` and builds everything the request path needs (clients, route
    /// table, header values), once.
    pub async fn new(config: &Config, runtime: Runtime) -> Result<Self, ConfigError> {
        Self::build(config, runtime, None).await
    }

    /// The app for `config` replacing this one (a reload): upstreams whose settings did not
    /// change keep their connection pools, breakers and health; rate-limit policies and the
    /// cache keep their state when their settings did not change. `[server]` is this one's:
    /// listeners, workers and connection limits change only with a restart.
    pub async fn reload(&self, config: &Config, runtime: Runtime) -> Result<Self, ConfigError> {
        Self::build(config, runtime, Some(self)).await
    }

    async fn build(
        config: &Config,
        runtime: Runtime,
        previous: Option<&App>,
    ) -> Result<Self, ConfigError> {
        let mut plan = Plan::new(config)?;
        if let Some(previous) = previous {
            // Which endpoints the public router serves depends on the admin listener, which
            // the running process has or has not.
            if plan.builtins.admin != previous.plan.builtins.admin {
                return Err(ConfigError::single(
                    "server.admin_listen",
                    "adding or removing the admin listener needs a restart",
                ));
            }
            if plan.server != previous.plan.server {
                tracing::warn!(
                    "[server] settings change only with a restart; the rest of the configuration is reloaded"
                );
            }
            plan.server = previous.plan.server.clone();
        }
        let tls = upstream::tls::client_config(upstream::tls::needs_trust_store(&plan))?;
        // Upstreams and Redis get a connection pool per worker thread.
        let pools = match runtime {
            Runtime::Server => plan.server.workers(),
            Runtime::Lambda => runtime::lambda::workers(),
        };
        let kept = |name: &str, settings: &upstream::config::UpstreamSettings| {
            let previous = previous?;
            (previous.plan.upstreams.get(name) == Some(settings))
                .then(|| {
                    previous
                        .upstreams
                        .iter()
                        .find(|u| u.name() == name)
                        .cloned()
                })
                .flatten()
        };
        let upstreams = plan
            .upstreams
            .iter()
            .map(|(name, settings)| {
                let upstream = match kept(name, settings) {
                    Some(upstream) => upstream,
                    None => Upstream::new(settings, &tls, pools)?,
                };
                Ok((name.clone(), upstream))
            })
            .collect::<Result<BTreeMap<_, _>, ConfigError>>()?;
        let providers = auth::Providers::new(&plan.auth, &internal_client(&tls)?);
        let limiter = ratelimit::RateLimiter::reusing(
            &plan.rate_limit,
            pools,
            previous.map(|p| (&p.limiter, &p.plan.rate_limit)),
        )?;
        let cache = match previous {
            Some(previous) if previous.plan.cache == plan.cache => previous.cache.clone(),
            _ => cache::ResponseCache::new(&plan.cache, pools)?,
        };
        let generation = previous.map_or(1, |p| p.generation + 1);
        let trust = TrustBoundaryLayer::new(
            plan.server.underscore_headers,
            providers.identity_headers(),
            &plan.server.trusted_headers,
        );
        let entry = Entry::new(&plan.server);
        let aws = aws::Aws::new(&plan.aws, plan.routes.iter()).await?;
        let routers = routes::router(
            &plan,
            &upstreams,
            &providers,
            &limiter,
            &cache,
            aws.as_ref(),
        )?;
        // The admin listener's requests pass through the same layers as the public ones.
        let admin_router = routers
            .admin
            .map(|admin| wrap(admin, &plan, &entry, trust.clone(), generation));
        let router = wrap(routers.public, &plan, &entry, trust, generation);
        Ok(Self {
            plan,
            router,
            admin_router,
            entry,
            upstreams: upstreams.into_values().collect(),
            limiter,
            cache,
            generation,
        })
    }
}

/// The gateway's router for `config`, as a server would run it; the requests it is given
/// have a context of an unknown client unless they bring their own.
pub async fn build(config: &Config) -> Result<Router, ConfigError> {
    Ok(App::new(config, Runtime::Server).await?.router)
}

/// The client for the gateway's own calls (JWKS): shared, pooled, never following redirects.
fn internal_client(tls: &rustls::ClientConfig) -> Result<reqwest::Client, ConfigError> {
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls.clone())
        .connect_timeout(std::time::Duration::from_secs(3))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| ConfigError::single("", format!("cannot build the HTTP client: {e}")))
}

/// Marks credential-carrying headers sensitive on both sides (tower-http), so no `Debug`
/// print of a request or response, in any log, shows their values.
fn sensitive_headers(plan: &Plan) -> tower_http::sensitive_headers::SetSensitiveHeadersLayer {
    use http::header::{AUTHORIZATION, COOKIE, PROXY_AUTHORIZATION, SET_COOKIE};
    let mut names = vec![AUTHORIZATION, PROXY_AUTHORIZATION, COOKIE, SET_COOKIE];
    for jwt in plan.auth.jwt.values() {
        if let auth::config::KeyLocation::Header(name) = &jwt.location {
            names.push(name.clone());
        }
    }
    for keys in plan.auth.api_keys.values() {
        if let auth::config::KeyLocation::Header(name) = &keys.location {
            names.push(name.clone());
        }
    }
    tower_http::sensitive_headers::SetSensitiveHeadersLayer::new(names)
}

/// The layers every request passes through before routing, outermost first.
///
/// One `ServiceBuilder` stack, boxed once by the outer `Router`: each `Router::layer` would box
/// its layer again and clone every box below it on each request.
fn wrap(
    routes: Router,
    plan: &Plan,
    entry: &Entry,
    trust: TrustBoundaryLayer,
    generation: u64,
) -> Router {
    use tower::ServiceBuilder;
    #[cfg(feature = "otlp")]
    let otel = observability::otel::OtelSpanLayer;
    #[cfg(not(feature = "otlp"))]
    let otel = tower::layer::util::Identity::new();
    let server = &plan.server;
    let stack = ServiceBuilder::new()
        .layer(entry.clone())
        .layer(sensitive_headers(plan))
        .option_layer(plan.compression.map(|settings| {
            ServiceBuilder::new()
                .map_response(IntoResponse::into_response)
                .layer(compression::layer(settings))
        }))
        .layer(RequestIdLayer)
        .layer(TraceContextLayer)
        .layer(otel)
        .layer(AccessLogLayer::new(generation))
        .layer(trust)
        // CORS: preflights are answered here, before auth and rate limits (browsers send them
        // without credentials); other answers, problems included, get the CORS headers so a
        // page can read them.
        .option_layer(plan.cors.clone())
        .map_response(IntoResponse::into_response)
        .layer(CatchPanicLayer::custom(|_panic| {
            Error::Internal("a request handler panicked".into()).into_response()
        }))
        .layer(LimitsLayer::new(
            server.body_limit,
            server.header_limit,
            server.timeout,
            server.body_timeout,
        ))
        .layer(NormalizePathLayer)
        .service(routes);
    Router::new().fallback_service(stack)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::{body::Body, routing::get};
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    #[tokio::test]
    async fn a_panicking_handler_becomes_a_500_problem_with_the_request_id() {
        let plan = Plan::new(&Config::default()).unwrap();
        async fn boom() -> &'static str {
            panic!("handler bug")
        }
        let panicking = Router::new().route("/boom", get(boom));
        let request = http::Request::get("/boom")
            .header("x-request-id", "req-7")
            .body(Body::empty())
            .unwrap();

        let trust = TrustBoundaryLayer::new(Default::default(), [], &[]);
        let response = wrap(panicking, &plan, &Entry::new(&plan.server), trust, 1)
            .oneshot(request)
            .await
            .unwrap();

        assert_eq!(response.status(), 500);
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let problem: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(problem["type"], "urn:proxyfn:problem:internal");
        assert_eq!(problem["request_id"], "req-7");
        assert!(
            !problem.to_string().contains("handler bug"),
            "the panic message stays internal"
        );
    }
}
