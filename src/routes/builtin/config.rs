//! `[endpoints.NAME]`: where the gateway's own endpoints are served, whether at all, and
//! behind which auth providers. `server.admin_listen` moves the operational ones (`health`,
//! `ready`, `metrics`) off the public listener.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{auth::config::ProviderRef, config::Problems};

/// `[endpoints]`: one table per built-in endpoint.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct EndpointsConfig {
    /// `GET /health`: liveness and the gateway's version.
    pub health: EndpointConfig,
    /// `GET /ready`: each routed upstream's health.
    pub ready: EndpointConfig,
    /// `GET /metrics`: Prometheus text (server mode, while `[metrics] enabled`).
    pub metrics: EndpointConfig,
    /// `GET /openapi.json`: the OpenAPI document (while `[docs] enabled`).
    pub openapi: EndpointConfig,
    /// `GET /docs/`: Swagger UI (while `[docs] enabled`).
    pub docs: EndpointConfig,
}

/// `[endpoints.NAME]`
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct EndpointConfig {
    /// Serve the endpoint.
    pub enabled: bool,
    /// Where; omitted, its usual path (`/health`, `/ready`, `/metrics`, `/openapi.json`,
    /// `/docs`).
    pub path: Option<String>,
    /// Providers that may authenticate a request for it, any one sufficing.
    pub auth: Option<Vec<String>>,
    /// Scopes the principal must all hold.
    pub scopes: Vec<String>,
}

impl Default for EndpointConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            path: None,
            auth: None,
            scopes: Vec::new(),
        }
    }
}

/// A built-in endpoint as it is served.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub path: String,
    /// Empty: open to anyone who can reach it.
    pub auth: Vec<ProviderRef>,
    pub scopes: Vec<String>,
}

/// The built-in endpoints, as configured; `None` for one that is off. One list for
/// validation (no route may take their paths), the routers and the OpenAPI document.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Builtins {
    pub health: Option<Endpoint>,
    pub ready: Option<Endpoint>,
    pub metrics: Option<Endpoint>,
    pub openapi: Option<Endpoint>,
    pub docs: Option<Endpoint>,
    /// `server.admin_listen` is set: health, ready and metrics are served there, not on the
    /// public listener (nor in Lambda, which has no second listener).
    pub admin: bool,
}

impl Builtins {
    /// The endpoints served with the routes (the public listener, Lambda events).
    pub fn public(&self) -> impl Iterator<Item = &Endpoint> {
        let operational = (!self.admin).then_some([&self.health, &self.ready, &self.metrics]);
        operational
            .into_iter()
            .flatten()
            .chain([&self.openapi, &self.docs])
            .flatten()
    }

    /// Whether a route template would be shadowed by a public built-in (Swagger UI's path
    /// covers everything under it).
    pub fn covers(&self, template: &str) -> bool {
        self.public().any(|endpoint| template == endpoint.path)
            || self.docs.as_ref().is_some_and(|docs| {
                template
                    .strip_prefix(docs.path.as_str())
                    .is_some_and(|rest| rest.starts_with('/'))
            })
    }
}

/// What validation needs beyond `[endpoints]`.
pub struct Context<'a> {
    pub metrics_enabled: bool,
    pub docs_enabled: bool,
    pub admin: bool,
    pub jwt: &'a [&'a str],
    pub api_keys: &'a [&'a str],
}

/// Validates `[endpoints]`.
pub fn settings(
    endpoints: &EndpointsConfig,
    context: &Context<'_>,
    problems: &mut Problems,
) -> Builtins {
    if context.docs_enabled && endpoints.docs.enabled && !endpoints.openapi.enabled {
        problems.add(
            "endpoints.openapi.enabled",
            "Swagger UI (endpoints.docs) reads this document: turn it off too, or keep this on",
        );
    }
    let mut endpoint = |name: &str, usual: &str, config: &EndpointConfig, on: bool| {
        let key = format!("endpoints.{name}");
        let path = config.path.clone().unwrap_or_else(|| usual.to_owned());
        if config.path.is_some()
            && let Err(message) = check_path(&path)
        {
            problems.add(format!("{key}.path"), message);
        }
        let auth = match &config.auth {
            Some(entries) if entries.is_empty() => {
                problems.add(
                    format!("{key}.auth"),
                    "list at least one provider, or omit the key",
                );
                vec![]
            }
            Some(entries) => crate::routes::config::provider_refs(
                &key,
                entries,
                context.jwt,
                context.api_keys,
                problems,
            ),
            None => vec![],
        };
        if config.auth.is_none() && !config.scopes.is_empty() {
            problems.add(
                format!("{key}.scopes"),
                "scopes need `auth` on the endpoint",
            );
        }
        (config.enabled && on).then(|| Endpoint {
            path,
            auth,
            scopes: config.scopes.clone(),
        })
    };
    let builtins = Builtins {
        health: endpoint("health", "/health", &endpoints.health, true),
        ready: endpoint("ready", "/ready", &endpoints.ready, true),
        metrics: endpoint(
            "metrics",
            "/metrics",
            &endpoints.metrics,
            context.metrics_enabled,
        ),
        openapi: endpoint(
            "openapi",
            "/openapi.json",
            &endpoints.openapi,
            context.docs_enabled,
        ),
        docs: endpoint("docs", "/docs", &endpoints.docs, context.docs_enabled),
        admin: context.admin,
    };
    let all = [
        ("health", &builtins.health),
        ("ready", &builtins.ready),
        ("metrics", &builtins.metrics),
        ("openapi", &builtins.openapi),
        ("docs", &builtins.docs),
    ];
    let under = |path: &str, prefix: &str| {
        path.strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('/'))
    };
    for (i, (name, endpoint)) in all.iter().enumerate() {
        let Some(endpoint) = endpoint else { continue };
        let taken = all[..i].iter().find(|(other_name, other)| {
            other.as_ref().is_some_and(|other| {
                other.path == endpoint.path
                    || (*name == "docs" && under(&other.path, &endpoint.path))
                    || (*other_name == "docs" && under(&endpoint.path, &other.path))
            })
        });
        if let Some((other, _)) = taken {
            problems.add(
                format!("endpoints.{name}.path"),
                format!(
                    "endpoints.{other} is already served at or under {:?}",
                    endpoint.path
                ),
            );
        }
    }
    builtins
}

/// A built-in's path: absolute, literal, in normalized form, not `/`.
fn check_path(path: &str) -> Result<(), String> {
    if !path.starts_with('/') || path == "/" || path.ends_with('/') {
        return Err(
            "an absolute path such as \"/internal/health\", not `/` and without a trailing `/`"
                .into(),
        );
    }
    if path.contains(['{', '}', '?', '#', '%', '\\']) {
        return Err("a literal path: no parameters, query, fragment or escapes".into());
    }
    if path
        .split('/')
        .skip(1)
        .any(|segment| segment.is_empty() || segment == "." || segment == "..")
    {
        return Err("must be in normalized form (no `//`, `.`, `..`)".into());
    }
    Ok(())
}
