//! Endpoints the gateway serves itself: `GET /health` (liveness, with the version) and
//! `GET /ready` (readiness: each routed upstream's breaker state and healthy targets; 503 when
//! one of them has no healthy target).

use std::{sync::Arc, time::Instant};

use axum::{
    Json, Router,
    extract::State,
    response::{IntoResponse, Response},
    routing::get,
};
use http::{HeaderValue, StatusCode, header};
use serde_json::{Map, json};

use crate::{
    config::{METRICS_PATH, Plan},
    error::Error,
    observability::metrics,
    upstream::Upstream,
};

/// Keep in step with [`crate::config::BUILTIN_PATHS`], which reserves these paths.
const HEALTH: &str = concat!(
    r#"{"status":"ok","version":""#,
    env!("CARGO_PKG_VERSION"),
    r#""}"#
);
const NO_STORE: HeaderValue = HeaderValue::from_static("no-store");

pub fn router<S: Clone + Send + Sync + 'static>(
    plan: &Plan,
    routed_upstreams: Vec<Upstream>,
) -> Router<S> {
    let readiness = Arc::new(routed_upstreams);
    let mut router = Router::new();
    if plan.metrics.enabled {
        router = router.route(METRICS_PATH, get(prometheus).fallback(method_not_allowed));
    }
    router
        .route("/health", get(health).fallback(method_not_allowed))
        .route(
            "/ready",
            get(ready)
                .fallback(method_not_allowed)
                .with_state(readiness),
        )
}

async fn health() -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (header::CACHE_CONTROL, NO_STORE),
        ],
        HEALTH,
    )
        .into_response()
}

/// Prometheus text exposition format 0.0.4; 404 where nothing is scraped (Lambda, which
/// writes EMF instead).
async fn prometheus() -> Response {
    match metrics::render_prometheus() {
        Some(text) => (
            [
                (
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
                ),
                (header::CACHE_CONTROL, NO_STORE),
            ],
            text,
        )
            .into_response(),
        None => Error::RouteNotFound.into_response(),
    }
}

async fn ready(State(upstreams): State<Arc<Vec<Upstream>>>) -> Response {
    let now = Instant::now();
    let mut report = Map::new();
    let mut ready = true;
    for upstream in upstreams.iter() {
        let status = upstream.status(now);
        ready &= status.healthy_targets > 0;
        report.insert(upstream.name().to_owned(), json!(status));
    }
    let (status, word) = if ready {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
    };
    (
        status,
        [(header::CACHE_CONTROL, NO_STORE)],
        Json(json!({ "status": word, "upstreams": report })),
    )
        .into_response()
}

async fn method_not_allowed() -> Error {
    Error::MethodNotAllowed {
        allow: HeaderValue::from_static("GET, HEAD"),
    }
}
