//! Endpoints the gateway serves itself: `GET /health` (liveness, with the version),
//! `GET /ready` (readiness: each routed upstream's breaker state and healthy targets; 503 when
//! one of them has no healthy target), and unless turned off `GET /metrics` (Prometheus),
//! `GET /openapi.json` and Swagger UI under `GET /docs/`.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, OnceLock},
    time::Instant,
};

use axum::{
    Extension, Json, Router,
    extract::{Path, State},
    response::{IntoResponse, Response},
    routing::get,
};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde_json::{Map, json};

use crate::{
    config::Plan,
    context::RequestContext,
    error::Error,
    observability::{Notes, metrics},
    upstream::Upstream,
};

pub const HEALTH_PATH: &str = "/health";
pub const READY_PATH: &str = "/ready";
/// Served when `[metrics] enabled` (server mode).
pub const METRICS_PATH: &str = "/metrics";
/// Served when `[docs] enabled`: the document, and Swagger UI under `/docs/`.
pub const OPENAPI_PATH: &str = "/openapi.json";
pub const DOCS_PATH: &str = "/docs";

/// The endpoints the gateway serves itself, as configured: one list for validation (no route
/// may take these paths), the router and the OpenAPI document.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Builtins {
    pub metrics: bool,
    pub docs: bool,
}

impl Builtins {
    /// The paths served, in the order the router takes them.
    pub fn paths(self) -> impl Iterator<Item = &'static str> {
        [HEALTH_PATH, READY_PATH]
            .into_iter()
            .chain(self.metrics.then_some(METRICS_PATH))
            .chain(self.docs.then_some(OPENAPI_PATH))
            .chain(self.docs.then_some(DOCS_PATH))
    }

    /// Whether a route template would be shadowed by one of them (`/docs` covers `/docs/...`).
    pub fn covers(self, template: &str) -> bool {
        self.paths().any(|path| template == path)
            || (self.docs
                && template
                    .strip_prefix(DOCS_PATH)
                    .is_some_and(|rest| rest.starts_with('/')))
    }
}

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
    if plan.docs.enabled {
        let docs = Arc::new(Docs::new(plan));
        let swagger_ui = labelled(DOCS_PATH);
        router = router
            .route(
                OPENAPI_PATH,
                get(openapi_json)
                    .fallback(method_not_allowed)
                    .with_state(docs.clone())
                    .layer(labelled(OPENAPI_PATH)),
            )
            .route(
                DOCS_PATH,
                get(docs_redirect)
                    .fallback(method_not_allowed)
                    .layer(swagger_ui.clone()),
            )
            .route(
                "/docs/",
                get(self::swagger_ui)
                    .fallback(method_not_allowed)
                    .with_state(docs.clone())
                    .layer(swagger_ui.clone()),
            )
            .route(
                "/docs/{*file}",
                get(self::swagger_ui)
                    .fallback(method_not_allowed)
                    .with_state(docs)
                    .layer(swagger_ui),
            );
    }
    if plan.metrics.enabled {
        router = router.route(
            METRICS_PATH,
            get(prometheus)
                .fallback(method_not_allowed)
                .layer(labelled(METRICS_PATH)),
        );
    }
    router
        .route(
            HEALTH_PATH,
            get(health)
                .fallback(method_not_allowed)
                .layer(labelled(HEALTH_PATH)),
        )
        .route(
            READY_PATH,
            get(ready)
                .fallback(method_not_allowed)
                .with_state(readiness)
                .layer(labelled(READY_PATH)),
        )
}

/// Counts and logs a built-in endpoint's requests under its own path, as a route's are under
/// its template (instead of `route="unrouted"`).
fn labelled(path: &str) -> Labelled {
    Labelled(Arc::new(metrics::RouteMetrics::new(path.into())))
}

#[derive(Clone)]
struct Labelled(Arc<metrics::RouteMetrics>);

impl<S> tower::Layer<S> for Labelled {
    type Service = LabelledService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        LabelledService {
            inner,
            route: self.0.clone(),
        }
    }
}

#[derive(Clone)]
struct LabelledService<S> {
    inner: S,
    route: Arc<metrics::RouteMetrics>,
}

impl<S: tower::Service<axum::extract::Request>> tower::Service<axum::extract::Request>
    for LabelledService<S>
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: axum::extract::Request) -> Self::Future {
        if let Some(notes) = Notes::of(request.extensions()) {
            notes.route(&self.route);
        }
        self.inner.call(request)
    }
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

/// The OpenAPI document, built and serialized on its first request and kept; and Swagger
/// UI's configuration. Building it takes about as long as the rest of start-up, and a Lambda
/// cold start should not pay for a document few invocations ask for. It cannot fail: the
/// plan it describes was validated.
struct Docs {
    plan: Plan,
    built: OnceLock<(serde_json::Value, Bytes)>,
    swagger: Arc<utoipa_swagger_ui::Config<'static>>,
    /// Swagger UI's files decompressed, for clients that do not accept gzip; each made on
    /// its first such request.
    identity: Mutex<HashMap<String, Bytes>>,
}

impl Docs {
    fn new(plan: &Plan) -> Self {
        Self {
            plan: plan.clone(),
            built: OnceLock::new(),
            // Relative to /docs/, so it also resolves under an API Gateway stage (/prod/docs/).
            swagger: Arc::new(utoipa_swagger_ui::Config::new(["../openapi.json"])),
            identity: Mutex::new(HashMap::new()),
        }
    }

    /// The document, and its serialization.
    fn document(&self) -> &(serde_json::Value, Bytes) {
        self.built.get_or_init(|| {
            let document = crate::docs::openapi(&self.plan);
            let json = Bytes::from(serde_json::to_vec(&document).unwrap_or_default());
            (document, json)
        })
    }
}

async fn openapi_json(
    State(docs): State<Arc<Docs>>,
    context: Option<Extension<RequestContext>>,
) -> Response {
    let (document, json) = docs.document();
    let body = match context.as_ref().and_then(|c| c.stage.as_deref()) {
        Some(prefix) => Bytes::from(
            serde_json::to_vec(&crate::docs::with_server(document, prefix)).unwrap_or_default(),
        ),
        None => json.clone(),
    };
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

/// `/docs` to `/docs/`, with a relative `Location` (RFC 9110 §10.2.2) that keeps any stage.
async fn docs_redirect() -> Response {
    (
        StatusCode::FOUND,
        [(header::LOCATION, HeaderValue::from_static("docs/"))],
    )
        .into_response()
}

/// Swagger UI's files, embedded in the binary (utoipa-swagger-ui's vendored assets): the
/// page works with no network access. They are embedded gzip-compressed (4.3 MB become about
/// 1 MB of binary) and sent that way to clients that accept gzip; the others (RFC 9110
/// §12.5.3: `Accept-Encoding: identity`, or `gzip;q=0`) get them decompressed.
async fn swagger_ui(
    State(docs): State<Arc<Docs>>,
    file: Option<Path<String>>,
    headers: HeaderMap,
) -> Response {
    let file = file.map(|Path(file)| file).unwrap_or_default();
    let found = match utoipa_swagger_ui::serve(&file, docs.swagger.clone()) {
        Ok(Some(found)) => found,
        Ok(None) => return Error::RouteNotFound.into_response(),
        Err(error) => return Error::Internal(format!("swagger ui: {error}")).into_response(),
    };
    let gzipped = found.gzpipped && accepts_gzip(&headers);
    let body = if found.gzpipped && !gzipped {
        match docs.decompressed(&file, &found.bytes) {
            Ok(body) => body,
            Err(error) => {
                return Error::Internal(format!("swagger ui {file}: {error}")).into_response();
            }
        }
    } else {
        Bytes::from(found.bytes.into_owned())
    };
    let mut response = (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_str(&found.content_type)
                    .unwrap_or(HeaderValue::from_static("application/octet-stream")),
            ),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=3600"),
            ),
        ],
        body,
    )
        .into_response();
    let response_headers = response.headers_mut();
    if found.gzpipped {
        response_headers.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    }
    if gzipped {
        response_headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    response
}

impl Docs {
    fn decompressed(&self, file: &str, gzipped: &[u8]) -> std::io::Result<Bytes> {
        let mut cache = self.identity.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(body) = cache.get(file) {
            return Ok(body.clone());
        }
        let mut plain = Vec::with_capacity(gzipped.len() * 4);
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(gzipped), &mut plain)?;
        let body = Bytes::from(plain);
        cache.insert(file.to_owned(), body.clone());
        Ok(body)
    }
}

/// Whether the request's `Accept-Encoding` allows gzip (RFC 9110 §12.5.3): no header allows
/// any coding; otherwise `gzip` (or `x-gzip`, or `*`) with a weight above zero.
fn accepts_gzip(headers: &HeaderMap) -> bool {
    let mut values = headers.get_all(header::ACCEPT_ENCODING).iter().peekable();
    if values.peek().is_none() {
        return true;
    }
    let mut wildcard = None;
    for item in values
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
    {
        let mut parts = item.split(';');
        let coding = parts.next().unwrap_or_default().trim();
        let weight = parts
            .filter_map(|p| p.trim().strip_prefix("q=").or(p.trim().strip_prefix("Q=")))
            .find_map(|q| q.trim().parse::<f32>().ok())
            .unwrap_or(1.0);
        if coding.eq_ignore_ascii_case("gzip") || coding.eq_ignore_ascii_case("x-gzip") {
            return weight > 0.0;
        }
        if coding == "*" {
            wildcard = Some(weight > 0.0);
        }
    }
    wildcard.unwrap_or(false)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(value: &str) -> bool {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_str(value).unwrap(),
        );
        accepts_gzip(&headers)
    }

    #[test]
    fn gzip_is_sent_only_where_accept_encoding_allows_it() {
        assert!(accepts_gzip(&HeaderMap::new()), "no header: any coding");
        assert!(accept("gzip, deflate, br"));
        assert!(accept("br;q=1.0, gzip;q=0.5"));
        assert!(accept("*"));
        assert!(!accept("identity"));
        assert!(!accept("gzip;q=0"));
        assert!(!accept("br"));
        assert!(!accept("*;q=0"));
        assert!(!accept(""));
    }
}
