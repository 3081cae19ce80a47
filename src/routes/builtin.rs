//! Endpoints the gateway serves itself: `GET /health` (liveness, with the version) and
//! `GET /ready` (readiness: configuration loaded and clients built).

use axum::{
    Router,
    response::{IntoResponse, Response},
    routing::get,
};
use http::{HeaderValue, header};

use crate::error::Error;

/// Keep in step with [`crate::config::BUILTIN_PATHS`], which reserves these paths.
const HEALTH: &str = concat!(
    r#"{"status":"ok","version":""#,
    env!("CARGO_PKG_VERSION"),
    r#""}"#
);
const READY: &str = r#"{"status":"ready"}"#;

pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route(
            "/health",
            get(|| async { json(HEALTH) }).fallback(method_not_allowed),
        )
        .route(
            "/ready",
            get(|| async { json(READY) }).fallback(method_not_allowed),
        )
}

fn json(body: &'static str) -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        body,
    )
        .into_response()
}

async fn method_not_allowed() -> Error {
    Error::MethodNotAllowed {
        allow: HeaderValue::from_static("GET, HEAD"),
    }
}
