//! `[cors]`: which browser origins may call the API (the Fetch standard's CORS protocol).

use std::time::Duration;

use http::{HeaderName, HeaderValue, Method};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::config::{HumanDuration, Problems, parse_header_name, parse_method};

/// `[cors]`; absent, the gateway sends no CORS headers and browsers allow same-origin calls only.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CorsConfig {
    /// Exact origins (`https://app.example.com`), or `["*"]` for any.
    pub allow_origins: Vec<String>,
    #[serde(default = "default_methods")]
    pub allow_methods: Vec<String>,
    /// Request headers a page may send; `["*"]` for any.
    #[serde(default)]
    pub allow_headers: Vec<String>,
    /// Response headers a page may read beyond the CORS-safelisted ones.
    #[serde(default)]
    pub expose_headers: Vec<String>,
    /// Let pages send cookies or `Authorization` and read the answer.
    #[serde(default)]
    pub allow_credentials: bool,
    /// How long a browser may cache a preflight answer.
    pub max_age: Option<HumanDuration>,
}

fn default_methods() -> Vec<String> {
    ["GET", "HEAD", "POST"].map(String::from).to_vec()
}

/// An origin list, or any origin.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CorsOrigins {
    Any,
    List(Vec<HeaderValue>),
}

/// A header list, or any header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CorsHeaders {
    Any,
    List(Vec<HeaderName>),
}

#[derive(Clone, Debug)]
pub struct CorsSettings {
    pub origins: CorsOrigins,
    pub methods: Vec<Method>,
    pub allow_headers: CorsHeaders,
    pub expose_headers: Vec<HeaderName>,
    pub allow_credentials: bool,
    pub max_age: Option<Duration>,
}

/// Validates `[cors]`, when there is one.
pub fn settings(cors: Option<&CorsConfig>, problems: &mut Problems) -> Option<CorsSettings> {
    let cors = cors?;
    let origins = if cors.allow_origins.iter().any(|o| o == "*") {
        if cors.allow_origins.len() > 1 {
            problems.add(
                "cors.allow_origins",
                "\"*\" allows every origin: list nothing else",
            );
        }
        CorsOrigins::Any
    } else {
        if cors.allow_origins.is_empty() {
            problems.add("cors.allow_origins", "list at least one origin, or \"*\"");
        }
        CorsOrigins::List(
            cors.allow_origins
                .iter()
                .enumerate()
                .filter_map(|(i, origin)| {
                    check_origin(origin)
                        .map_err(|m| problems.add(format!("cors.allow_origins[{i}]"), m))
                        .ok()
                })
                .collect(),
        )
    };
    let methods = cors
        .allow_methods
        .iter()
        .enumerate()
        .filter_map(|(i, m)| parse_method(&format!("cors.allow_methods[{i}]"), m, problems))
        .collect();
    let allow_headers = if cors.allow_headers.iter().any(|h| h == "*") {
        CorsHeaders::Any
    } else {
        CorsHeaders::List(header_names(
            "cors.allow_headers",
            &cors.allow_headers,
            problems,
        ))
    };
    let expose_headers = header_names("cors.expose_headers", &cors.expose_headers, problems);
    // Fetch standard §3.2.5: with credentials, `*` is not a wildcard, so browsers would reject
    // every answer; tower-http refuses the combination too.
    if cors.allow_credentials {
        if origins == CorsOrigins::Any {
            problems.add(
                "cors.allow_credentials",
                "cannot be true with allow_origins = [\"*\"]: list the origins",
            );
        }
        if allow_headers == CorsHeaders::Any {
            problems.add(
                "cors.allow_credentials",
                "cannot be true with allow_headers = [\"*\"]: list the headers",
            );
        }
    }
    Some(CorsSettings {
        origins,
        methods,
        allow_headers,
        expose_headers,
        allow_credentials: cors.allow_credentials,
        max_age: cors.max_age.map(|m| m.0),
    })
}

/// An origin is `scheme://host[:port]`, nothing more (RFC 6454 §6.2).
fn check_origin(origin: &str) -> Result<HeaderValue, String> {
    let uri: http::Uri = origin
        .parse()
        .map_err(|_| format!("{origin:?} is not an origin such as \"https://app.example.com\""))?;
    let bare = uri.scheme().is_some()
        && uri.authority().is_some()
        && !origin.ends_with('/')
        && uri.path_and_query().is_none_or(|p| p.as_str() == "/");
    if !bare {
        return Err(format!(
            "{origin:?} is not an origin: scheme://host[:port], without a path or a trailing '/'"
        ));
    }
    HeaderValue::from_str(origin).map_err(|_| format!("{origin:?} is not a valid header value"))
}

fn header_names(key: &str, names: &[String], problems: &mut Problems) -> Vec<HeaderName> {
    names
        .iter()
        .enumerate()
        .filter_map(|(i, name)| parse_header_name(&format!("{key}[{i}]"), name, problems))
        .collect()
}
