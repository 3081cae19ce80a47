//! CORS through tower-http's layer, answering only real preflights.
//!
//! tower-http answers every `OPTIONS` request itself. A CORS preflight is an `OPTIONS` request
//! with `Origin` and `Access-Control-Request-Method` (Fetch standard, "CORS-preflight
//! request"); any other `OPTIONS` is an ordinary request for the route, which may serve it,
//! authenticate it and limit it like any method. [`CorsLayer`] shows such a request to
//! tower-http as a `GET`, so it gets the CORS headers of an actual request, and gives the
//! route back its method.
//!
//! tower-http adds `Access-Control-Expose-Headers` and `-Allow-Credentials` (and on
//! preflights the allowed methods, headers and max age) whatever the `Origin`; the
//! [`PreflightsOnly`] service takes them off again unless the request's `Origin` is allowed, so
//! an answer to any other page (or to no page) tells nothing about the CORS policy. `Vary:
//! Origin` stays: the answer does depend on it.

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
};

use axum::{extract::Request, response::Response};
use http::{HeaderValue, Method, header};
use tower::{Layer, Service};

use config::{CorsHeaders, CorsOrigins, CorsSettings};

pub mod config;

/// CORS for the configured origins; built once from validated settings, so it cannot panic.
#[derive(Clone, Debug)]
pub struct CorsLayer {
    cors: tower_http::cors::CorsLayer,
    origins: Arc<CorsOrigins>,
}

impl CorsLayer {
    pub fn new(settings: &CorsSettings) -> Self {
        use tower_http::cors::{AllowHeaders, AllowOrigin};
        let mut cors = tower_http::cors::CorsLayer::new()
            .allow_origin(match &settings.origins {
                CorsOrigins::Any => AllowOrigin::any(),
                CorsOrigins::List(origins) => AllowOrigin::list(origins.iter().cloned()),
            })
            .allow_methods(settings.methods.clone())
            .allow_headers(match &settings.allow_headers {
                CorsHeaders::Any => AllowHeaders::any(),
                CorsHeaders::List(names) => AllowHeaders::list(names.iter().cloned()),
            })
            .expose_headers(settings.expose_headers.clone())
            .allow_credentials(settings.allow_credentials);
        if let Some(max_age) = settings.max_age {
            cors = cors.max_age(max_age);
        }
        Self {
            cors,
            origins: Arc::new(settings.origins.clone()),
        }
    }
}

impl<S> Layer<S> for CorsLayer {
    type Service = PreflightsOnly<tower_http::cors::Cors<RestoreMethod<S>>>;

    fn layer(&self, inner: S) -> Self::Service {
        PreflightsOnly {
            inner: self.cors.layer(RestoreMethod { inner }),
            origins: self.origins.clone(),
        }
    }
}

/// Whether `request` is a CORS preflight.
pub fn is_preflight(request: &Request) -> bool {
    request.method() == Method::OPTIONS
        && request.headers().contains_key(header::ORIGIN)
        && request
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
}

/// Marks an `OPTIONS` request shown to tower-http as a `GET`.
#[derive(Clone, Copy, Debug)]
struct MaskedOptions;

/// Whether `origin` (the request's `Origin`, when it has one) may read the answer.
fn is_allowed(origins: &CorsOrigins, origin: Option<&HeaderValue>) -> bool {
    match (origins, origin) {
        (_, None) => false,
        (CorsOrigins::Any, Some(_)) => true,
        (CorsOrigins::List(list), Some(origin)) => list.contains(origin),
    }
}

/// The CORS headers that describe the policy; taken off answers to origins it does not allow.
const POLICY_HEADERS: [header::HeaderName; 5] = [
    header::ACCESS_CONTROL_EXPOSE_HEADERS,
    header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
    header::ACCESS_CONTROL_ALLOW_METHODS,
    header::ACCESS_CONTROL_ALLOW_HEADERS,
    header::ACCESS_CONTROL_MAX_AGE,
];

#[derive(Clone, Debug)]
pub struct PreflightsOnly<S> {
    inner: S,
    origins: Arc<CorsOrigins>,
}

impl<S> Service<Request> for PreflightsOnly<S>
where
    S: Service<Request, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = ForAllowedOrigins<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request) -> Self::Future {
        if request.method() == Method::OPTIONS && !is_preflight(&request) {
            *request.method_mut() = Method::GET;
            request.extensions_mut().insert(MaskedOptions);
        }
        let allowed = is_allowed(&self.origins, request.headers().get(header::ORIGIN));
        ForAllowedOrigins {
            inner: self.inner.call(request),
            allowed,
        }
    }
}

pin_project_lite::pin_project! {
    /// The answer, without the policy headers unless the request's origin is allowed.
    pub struct ForAllowedOrigins<F> {
        #[pin]
        inner: F,
        allowed: bool,
    }
}

impl<F, E> Future for ForAllowedOrigins<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut response = ready!(this.inner.poll(cx))?;
        if !*this.allowed {
            let headers = response.headers_mut();
            for name in &POLICY_HEADERS {
                headers.remove(name);
            }
        }
        Poll::Ready(Ok(response))
    }
}

#[derive(Clone, Debug)]
pub struct RestoreMethod<S> {
    inner: S,
}

impl<S> Service<Request> for RestoreMethod<S>
where
    S: Service<Request>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request) -> Self::Future {
        if request.extensions_mut().remove::<MaskedOptions>().is_some() {
            *request.method_mut() = Method::OPTIONS;
        }
        self.inner.call(request)
    }
}
