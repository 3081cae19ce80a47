//! Proxy routes: compute the upstream path (unchanged, prefix stripped, or rewritten with the
//! captured parameters) and forward.
//!
//! Parameters are substituted exactly as they appear in the normalized request path, still
//! percent-encoded, so a rewrite never decodes or re-encodes what the client sent.

use axum::{
    extract::Request,
    response::{IntoResponse, Response},
};

use http::HeaderValue;

use super::mock::MockRoute;
use crate::{
    routes::config::{TargetPath, TemplatePart},
    upstream::Upstream,
};

/// Marks a response served by a route's `fallback` instead of its upstream.
pub const X_PROXYFN_FALLBACK: &str = "x-proxyfn-fallback";

pub struct ProxyRoute {
    pub upstream: Upstream,
    pub target: TargetPath,
    /// Served when the upstream fails (5xx or no answer), times out, is open or is shedding.
    pub fallback: Option<MockRoute>,
}

impl ProxyRoute {
    pub fn target_path(&self, path: &str, params: &matchit::Params<'_, '_>) -> String {
        match &self.target {
            TargetPath::Unchanged => path.to_owned(),
            TargetPath::StripPrefix(prefix) => match path.strip_prefix(prefix.as_str()) {
                Some("") => "/".to_owned(),
                Some(rest) if rest.starts_with('/') => rest.to_owned(),
                _ => path.to_owned(),
            },
            TargetPath::Rewrite(parts) => substitute(parts, params),
        }
    }

    pub async fn forward(&self, request: Request, target: &str) -> Response {
        let result = self.upstream.forward(request, target).await;
        let Some(fallback) = &self.fallback else {
            return result.unwrap_or_else(IntoResponse::into_response);
        };
        let why = match result {
            Ok(response) if !response.status().is_server_error() => return response,
            Ok(response) => format!("upstream answered {}", response.status().as_u16()),
            Err(error) if error.is_upstream_failure() => {
                error.log();
                error.to_string()
            }
            Err(error) => return error.into_response(),
        };
        tracing::info!(upstream = self.upstream.name(), reason = %why, "serving the route's fallback");
        let mut response = fallback.response();
        response
            .headers_mut()
            .insert(X_PROXYFN_FALLBACK, HeaderValue::from_static("true"));
        response
    }
}

/// A path template with the route's captured parameters put in, as they appear in the
/// normalized request path (still percent-encoded).
pub(super) fn substitute(parts: &[TemplatePart], params: &matchit::Params<'_, '_>) -> String {
    let mut out = String::with_capacity(64);
    for part in parts {
        match part {
            TemplatePart::Literal(text) => out.push_str(text),
            TemplatePart::Param(name) => out.push_str(params.get(name).unwrap_or_default()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::config::UpstreamSettings;

    fn route(target: TargetPath) -> ProxyRoute {
        let settings = UpstreamSettings {
            name: "u".into(),
            targets: vec!["http://127.0.0.1:1".into()],
            timeout: std::time::Duration::from_secs(1),
            connect_timeout: std::time::Duration::from_secs(1),
            retry: None,
            circuit_breaker: None,
            health_check: None,
            max_concurrency: None,
        };
        ProxyRoute {
            upstream: Upstream::new(
                &settings,
                &crate::upstream::tls::client_config(false).unwrap(),
                1,
            )
            .unwrap(),
            target,
            fallback: None,
        }
    }

    fn target(template: &str, target: TargetPath, path: &str) -> String {
        let mut matcher = matchit::Router::new();
        matcher.insert(template, ()).unwrap();
        let found = matcher.at(path).unwrap();
        route(target).target_path(path, &found.params)
    }

    #[test]
    fn strip_prefix_leaves_a_rooted_path() {
        let strip = || TargetPath::StripPrefix("/users".into());
        assert_eq!(target("/users/{*rest}", strip(), "/users/42/x"), "/42/x");
        assert_eq!(target("/users", strip(), "/users"), "/");
    }

    #[test]
    fn rewrite_substitutes_params_still_encoded() {
        let rewrite = TargetPath::Rewrite(vec![
            TemplatePart::Literal("/v2/people/".into()),
            TemplatePart::Param("id".into()),
            TemplatePart::Literal("/".into()),
            TemplatePart::Param("rest".into()),
        ]);
        assert_eq!(
            target("/users/{id}/{*rest}", rewrite, "/users/a%20b/c/d"),
            "/v2/people/a%20b/c/d"
        );
    }
}
