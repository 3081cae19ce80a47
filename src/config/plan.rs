//! Validation of a [`Config`] into the runtime [`Plan`]: parsed addresses, methods, header
//! values and path templates, so the request path never parses configuration.
//!
//! Validation collects every problem rather than stopping at the first, each with its key path.

use std::collections::BTreeMap;

use crate::{
    auth::config::AuthSettings,
    cache::config::CacheSettings,
    compression::CompressionSettings,
    cors::CorsLayer,
    docs::config::DocsSettings,
    observability::config::{LogSettings, MetricsSettings},
    ratelimit::config::RateLimitSettings,
    routes::{
        builtin::Builtins,
        config::{Names, Routes},
        version::config::VersioningSettings,
    },
    runtime::config::{LambdaSettings, ServerSettings},
    upstream::config::UpstreamSettings,
};

use super::{Config, ConfigError, ConfigProblem, Problems, Secrets};

/// The validated configuration the gateway runs from.
#[derive(Clone, Debug)]
pub struct Plan {
    pub server: ServerSettings,
    pub upstreams: BTreeMap<String, UpstreamSettings>,
    pub auth: AuthSettings,
    pub rate_limit: RateLimitSettings,
    pub routes: Routes,
    /// The built-in endpoints that are on (`/health` and `/ready` always are).
    pub builtins: Builtins,
    pub log: LogSettings,
    pub metrics: MetricsSettings,
    pub docs: DocsSettings,
    /// `None`: responses are never compressed.
    pub compression: Option<CompressionSettings>,
    pub versioning: VersioningSettings,
    pub cache: CacheSettings,
    /// `None`: no CORS headers (same-origin browser calls only).
    pub cors: Option<CorsLayer>,
    pub lambda: LambdaSettings,
    pub aws: crate::aws::config::AwsSettings,
    /// What validation noted without refusing (secrets missing while linting).
    pub notes: Vec<ConfigProblem>,
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
        let server = crate::runtime::config::server_settings(&config.server, &mut problems);
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
        let cache = crate::cache::config::settings(&config.cache, &mut problems);
        let cors = crate::cors::config::settings(config.cors.as_ref(), &mut problems)
            .map(|settings| CorsLayer::new(&settings));
        let lambda = crate::runtime::config::lambda_settings(&config.lambda, &mut problems);
        let aws = crate::aws::config::settings(&config.aws, &mut problems);
        let jwt: Vec<&str> = config.auth.jwt.keys().map(String::as_str).collect();
        let api_keys: Vec<&str> = config.auth.api_keys.keys().map(String::as_str).collect();
        let builtins = crate::routes::builtin::config::settings(
            &config.endpoints,
            &crate::routes::builtin::config::Context {
                metrics_enabled: config.metrics.enabled,
                docs_enabled: config.docs.enabled,
                admin: server.as_ref().is_some_and(|s| s.admin_listen.is_some()),
                jwt: &jwt,
                api_keys: &api_keys,
            },
            &mut problems,
        );
        let names = Names {
            upstreams: config.upstreams.keys().map(String::as_str).collect(),
            jwt: jwt.clone(),
            api_keys: api_keys.clone(),
            policies: &config.rate_limits,
            builtins: &builtins,
            base_dir: config.base_dir.as_deref(),
        };
        let routes = crate::routes::config::routes(&config.routes, &names, &mut problems);
        let versions: Vec<&str> = config
            .routes
            .iter()
            .filter_map(|route| route.version.as_deref())
            .collect();
        let versioning =
            crate::routes::version::config::settings(&config.versioning, &versions, &mut problems);

        let notes = problems.take_notes();
        match (server, problems.is_empty()) {
            (Some(server), true) => Ok(Plan {
                server,
                upstreams,
                auth,
                rate_limit,
                routes,
                builtins,
                log,
                metrics,
                docs,
                compression,
                versioning,
                cache,
                cors,
                lambda,
                aws,
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

#[cfg(test)]
mod tests {
    use crate::config::problems_in as problems;

    #[test]
    fn the_empty_config_is_valid() {
        assert!(problems("").is_empty());
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
}
