//! The OpenAPI 3.1 document of a configuration: built-in endpoints and every configured route
//! with its methods and path parameters. `proxyfn openapi` prints it.

use serde_json::{Map, Value, json};

use crate::config::{Plan, RouteAction};

const ANY_METHOD: [&str; 7] = ["get", "put", "post", "delete", "options", "head", "patch"];

/// Builds the document for `plan`.
pub fn openapi(plan: &Plan) -> Value {
    let mut paths = Map::new();
    for (path, summary) in [("/health", "Liveness and version"), ("/ready", "Readiness")] {
        paths.insert(
            path.into(),
            json!({ "get": { "summary": summary, "tags": ["gateway"], "responses": { "200": { "description": "OK" } } } }),
        );
    }
    for route in &plan.routes {
        let (openapi_path, parameters) = path_and_parameters(&route.path);
        let description = match &route.action {
            RouteAction::Proxy { upstream, .. } => format!("Forwarded to upstream `{upstream}`."),
            RouteAction::Mock(_) => "Answered by the gateway (mock).".to_owned(),
        };
        let methods: Vec<String> = match &route.methods {
            Some(methods) => methods
                .iter()
                .map(|m| m.as_str().to_ascii_lowercase())
                .collect(),
            None => ANY_METHOD.iter().map(|m| (*m).to_owned()).collect(),
        };
        let item = paths
            .entry(openapi_path)
            .or_insert_with(|| Value::Object(Map::new()));
        for method in methods {
            item[method] = json!({
                "description": description,
                "parameters": parameters,
                "responses": { "default": { "description": "The upstream's response, or a problem+json error from the gateway." } },
            });
        }
    }
    json!({
        "openapi": "3.1.0",
        "info": { "title": "proxyfn", "version": env!("CARGO_PKG_VERSION") },
        "paths": paths,
    })
}

/// `/files/{*rest}` becomes `/files/{rest}`: OpenAPI templates have no wildcard form.
fn path_and_parameters(path: &str) -> (String, Vec<Value>) {
    let mut parameters = Vec::new();
    let segments: Vec<String> = path
        .split('/')
        .map(|segment| match segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            Some(name) => {
                let name = name.trim_start_matches('*');
                parameters.push(json!({ "name": name, "in": "path", "required": true, "schema": { "type": "string" } }));
                format!("{{{name}}}")
            }
            None => segment.to_owned(),
        })
        .collect();
    (segments.join("/"), parameters)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_become_plain_path_parameters() {
        let (path, params) = path_and_parameters("/files/{id}/{*rest}");
        assert_eq!(path, "/files/{id}/{rest}");
        assert_eq!(params.len(), 2);
        assert_eq!(params[1]["name"], "rest");
    }
}
