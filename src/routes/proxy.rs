//! Proxy routes: compute the upstream path (unchanged, prefix stripped, or rewritten with the
//! captured parameters) and forward.
//!
//! Parameters are substituted exactly as they appear in the normalized request path, still
//! percent-encoded, so a rewrite never decodes or re-encodes what the client sent.

use axum::{
    extract::Request,
    response::{IntoResponse, Response},
};

use crate::{
    config::{TargetPath, TemplatePart},
    upstream::Upstream,
};

pub struct ProxyRoute {
    pub upstream: Upstream,
    pub target: TargetPath,
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
            TargetPath::Rewrite(parts) => {
                let mut out = String::with_capacity(path.len() + 16);
                for part in parts {
                    match part {
                        TemplatePart::Literal(text) => out.push_str(text),
                        TemplatePart::Param(name) => {
                            out.push_str(params.get(name).unwrap_or_default())
                        }
                    }
                }
                out
            }
        }
    }

    pub async fn forward(&self, request: Request, target: &str) -> Response {
        self.upstream
            .forward(request, target)
            .await
            .unwrap_or_else(IntoResponse::into_response)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::UpstreamSettings;

    fn route(target: TargetPath) -> ProxyRoute {
        let settings = UpstreamSettings {
            name: "u".into(),
            base_url: "http://127.0.0.1:1".into(),
            timeout: std::time::Duration::from_secs(1),
            connect_timeout: std::time::Duration::from_secs(1),
        };
        ProxyRoute {
            upstream: Upstream::new(&settings).unwrap(),
            target,
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
