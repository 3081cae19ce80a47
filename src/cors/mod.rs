//! CORS through tower-http's layer, answering only real preflights.
//!
//! tower-http answers every `OPTIONS` request itself. A CORS preflight is an `OPTIONS` request
//! with `Origin` and `Access-Control-Request-Method` (Fetch standard, "CORS-preflight
//! request"); any other `OPTIONS` is an ordinary request for the route, which may serve it,
//! authenticate it and limit it like any method. [`CorsLayer`] shows such a request to
//! tower-http as a `GET`, so it gets the CORS headers of an actual request, and gives the
//! route back its method.

use std::task::{Context, Poll};

use axum::extract::Request;
use http::{Method, header};
use tower::{Layer, Service};

use config::{CorsHeaders, CorsOrigins, CorsSettings};

pub mod config;

/// CORS for the configured origins; built once from validated settings, so it cannot panic.
#[derive(Clone, Debug)]
pub struct CorsLayer {
    cors: tower_http::cors::CorsLayer,
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
        Self { cors }
    }
}

impl<S> Layer<S> for CorsLayer {
    type Service = PreflightsOnly<tower_http::cors::Cors<RestoreMethod<S>>>;

    fn layer(&self, inner: S) -> Self::Service {
        PreflightsOnly {
            inner: self.cors.layer(RestoreMethod { inner }),
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

#[derive(Clone, Debug)]
pub struct PreflightsOnly<S> {
    inner: S,
}

impl<S> Service<Request> for PreflightsOnly<S>
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
        if request.method() == Method::OPTIONS && !is_preflight(&request) {
            *request.method_mut() = Method::GET;
            request.extensions_mut().insert(MaskedOptions);
        }
        self.inner.call(request)
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
