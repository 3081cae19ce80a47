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

use axum::routing::MethodRouter;

use crate::{
    auth::{Providers, RoutePolicy},
    config::Plan,
    context::RequestContext,
    error::Error,
    observability::{Notes, metrics},
    upstream::Upstream,
};

pub use config::{Builtins, Endpoint};

pub mod config;

const HEALTH: &str = concat!(
    r#"{"status":"ok","version":""#,
    env!("CARGO_PKG_VERSION"),
    r#""}"#
);
const NO_STORE: HeaderValue = HeaderValue::from_static("no-store");

/// The built-in endpoints: those served with the routes (for the route table's router), and
/// with `server.admin_listen` the operational ones for the admin listener, which answers
/// 404 for everything else.
pub fn routers(
    plan: &Plan,
    routed_upstreams: Vec<Upstream>,
    providers: &Providers,
) -> (Router, Option<Router>) {
    let builtins = &plan.builtins;
    let readiness = Arc::new(routed_upstreams);
    let mut public = Router::new();
    let mut admin = Router::new();
    // The operational endpoints go to the admin listener when there is one.
    let operational = |public: Router, admin: Router, path: &str, served: MethodRouter| {
        if builtins.admin {
            (public, admin.route(path, served))
        } else {
            (public.route(path, served), admin)
        }
    };
    if let Some(endpoint) = &builtins.health {
        let route = guarded(
            endpoint,
            providers,
            get(health).fallback(method_not_allowed),
        );
        (public, admin) = operational(public, admin, &endpoint.path, route);
    }
    if let Some(endpoint) = &builtins.ready {
        let route = guarded(
            endpoint,
            providers,
            get(ready)
                .fallback(method_not_allowed)
                .with_state(readiness),
        );
        (public, admin) = operational(public, admin, &endpoint.path, route);
    }
    if let Some(endpoint) = &builtins.metrics {
        let route = guarded(
            endpoint,
            providers,
            get(prometheus).fallback(method_not_allowed),
        );
        (public, admin) = operational(public, admin, &endpoint.path, route);
    }
    if let (Some(openapi), Some(ui)) = (&builtins.openapi, &builtins.docs) {
        let docs = Arc::new(Docs::new(
            plan,
            &swagger_ui_document_url(&ui.path, &openapi.path),
        ));
        public = public.route(
            &openapi.path,
            guarded(
                openapi,
                providers,
                get(openapi_json)
                    .fallback(method_not_allowed)
                    .with_state(docs.clone()),
            ),
        );
        let redirect = HeaderValue::from_str(&format!(
            "{}/",
            ui.path.rsplit('/').next().unwrap_or_default()
        ))
        .unwrap_or(HeaderValue::from_static("docs/"));
        public = public
            .route(
                &ui.path,
                guarded(
                    ui,
                    providers,
                    get(move || docs_redirect(redirect.clone())).fallback(method_not_allowed),
                ),
            )
            .route(
                &format!("{}/", ui.path),
                guarded(
                    ui,
                    providers,
                    get(swagger_ui)
                        .fallback(method_not_allowed)
                        .with_state(docs.clone()),
                ),
            )
            .route(
                &format!("{}/{{*file}}", ui.path),
                guarded(
                    ui,
                    providers,
                    get(swagger_ui)
                        .fallback(method_not_allowed)
                        .with_state(docs),
                ),
            );
    }
    let admin = builtins.admin.then(|| {
        admin
            .route(
                "/reload",
                axum::routing::post(reload)
                    .fallback(method_not_allowed_post)
                    .layer(labelled("/reload")),
            )
            .fallback(|| async { Error::RouteNotFound })
    });
    (public, admin)
}

/// Swagger UI's page is `{ui}/`; the document's URL relative to it, so that it also resolves
/// under an API Gateway stage (`/prod/docs/` reads `/prod/openapi.json`).
fn swagger_ui_document_url(ui: &str, document: &str) -> String {
    let depth = ui.split('/').filter(|s| !s.is_empty()).count();
    format!(
        "{}{}",
        "../".repeat(depth),
        document.trim_start_matches('/')
    )
}

/// `served`, labelled with the endpoint's path for metrics and the access log, and behind
/// the endpoint's auth providers when it has some.
fn guarded(endpoint: &Endpoint, providers: &Providers, served: MethodRouter) -> MethodRouter {
    let served = match providers.policy(&endpoint.path, &endpoint.auth, &endpoint.scopes) {
        Some(policy) => served.layer(axum::middleware::from_fn_with_state(
            Arc::new(policy),
            authorize,
        )),
        None => served,
    };
    served.layer(labelled(&endpoint.path))
}

async fn authorize(
    State(policy): State<Arc<RoutePolicy>>,
    mut request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    match policy.authorize(&mut request).await {
        Ok(()) => next.run(request).await,
        Err(error) => error.into_response(),
    }
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
    /// `document_url` is the document's URL relative to Swagger UI's page.
    fn new(plan: &Plan, document_url: &str) -> Self {
        Self {
            plan: plan.clone(),
            built: OnceLock::new(),
            swagger: Arc::new(utoipa_swagger_ui::Config::new([document_url.to_owned()])),
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
async fn docs_redirect(location: HeaderValue) -> Response {
    (StatusCode::FOUND, [(header::LOCATION, location)]).into_response()
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

/// `POST /reload` (admin listener): re-reads the configuration and answers when it serves
/// (200 with its generation) or was refused (422 with every problem; the current one keeps
/// serving).
async fn reload() -> Response {
    match crate::runtime::reload::request().await {
        Some(Ok(generation)) => (
            StatusCode::OK,
            Json(json!({ "status": "reloaded", "generation": generation })),
        )
            .into_response(),
        Some(Err(problems)) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({ "status": "refused", "problems": problems })),
        )
            .into_response(),
        None => Error::Internal("no reloader runs in this process".into()).into_response(),
    }
}

async fn method_not_allowed_post() -> Error {
    Error::MethodNotAllowed {
        allow: HeaderValue::from_static("POST"),
    }
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
