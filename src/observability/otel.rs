//! OpenTelemetry export (cargo feature `otlp`): one span per request, sent over OTLP/HTTP
//! (protobuf) when `OTEL_EXPORTER_OTLP_ENDPOINT` is set. The standard `OTEL_*` variables
//! apply (`OTEL_SERVICE_NAME`, default `proxyfn`; `OTEL_BSP_SCHEDULE_DELAY`, ...).
//!
//! The span continues the caller's W3C trace, and its span id is the parent id the upstream
//! receives in `traceparent`, so the gateway's hop links the caller's trace to the backend's.
//! Spans are exported by a batch processor on its own thread; in Lambda they are flushed at the
//! end of every invocation, before the environment can be frozen.

use std::{
    future::Future,
    pin::Pin,
    sync::OnceLock,
    task::{Context, Poll},
};

use axum::{extract::Request, response::Response};
use http::HeaderValue;
use opentelemetry::trace::{
    SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState, TracerProvider as _,
};
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::{Resource, trace::SdkTracerProvider};
use tower::{Layer, Service};
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::trace_context::{TRACEPARENT, TraceContext};

/// The target of request spans; only these go to the exporter.
pub const SPAN_TARGET: &str = "proxyfn::otel";

static PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();

/// The tracing layer exporting request spans, when `OTEL_EXPORTER_OTLP_ENDPOINT` is set.
pub fn layer<S>() -> Option<impl tracing_subscriber::Layer<S>>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    use tracing_subscriber::Layer as _;
    std::env::var_os("OTEL_EXPORTER_OTLP_ENDPOINT")?;
    let exporter = match opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .build()
    {
        Ok(exporter) => exporter,
        Err(error) => {
            eprintln!("proxyfn: OTLP export is off: {error}");
            return None;
        }
    };
    let mut resource = Resource::builder();
    if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
        resource = resource.with_service_name("proxyfn");
    }
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource.build())
        .build();
    let tracer = provider.tracer("proxyfn");
    let _ = PROVIDER.set(provider);
    Some(
        tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_filter(
                tracing_subscriber::filter::Targets::new()
                    .with_target(SPAN_TARGET, tracing::Level::INFO),
            ),
    )
}

/// Sends the spans ended so far (Lambda: at the end of each invocation). Blocks until the
/// exporter is done, which is what a function about to be frozen needs.
pub fn flush() {
    if let Some(provider) = PROVIDER.get()
        && let Err(error) = provider.force_flush()
    {
        tracing::warn!(%error, "OTLP flush failed");
    }
}

/// Opens the request's span, continuing its trace, and makes it this hop's `traceparent`.
#[derive(Clone, Copy, Debug, Default)]
pub struct OtelSpanLayer;

impl<S> Layer<S> for OtelSpanLayer {
    type Service = OtelSpan<S>;
    fn layer(&self, inner: S) -> Self::Service {
        OtelSpan { inner }
    }
}

#[derive(Clone, Debug)]
pub struct OtelSpan<S> {
    inner: S,
}

impl<S> Service<Request> for OtelSpan<S>
where
    S: Service<Request, Response = Response>,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request) -> Self::Future {
        if PROVIDER.get().is_none() {
            return Box::pin(self.inner.call(request));
        }
        let span = tracing::info_span!(
            target: SPAN_TARGET,
            "request",
            otel.name = %format!("{} {}", request.method(), request.uri().path()),
            otel.kind = "server",
            http.request.method = %request.method(),
            url.path = %request.uri().path(),
            http.response.status_code = tracing::field::Empty,
        );
        let hop = request.extensions().get::<TraceContext>().copied();
        if let Some(hop) = hop {
            if let Some(parent) = hop.parent_id {
                let caller = SpanContext::new(
                    TraceId::from(hop.trace_id),
                    SpanId::from(parent),
                    TraceFlags::new(hop.flags),
                    true,
                    TraceState::default(),
                );
                let _ =
                    span.set_parent(opentelemetry::Context::new().with_remote_span_context(caller));
            }
            // This hop is the exported span: the upstream's parent id must be its id.
            let context = span.context();
            let exported = context.span().span_context().clone();
            if exported.is_valid() {
                let ours = TraceContext {
                    trace_id: u128::from_be_bytes(exported.trace_id().to_bytes()),
                    span_id: u64::from_be_bytes(exported.span_id().to_bytes()),
                    flags: exported.trace_flags().to_u8(),
                    parent_id: hop.parent_id,
                };
                if let Ok(value) = HeaderValue::from_str(&ours.to_string()) {
                    request.headers_mut().insert(TRACEPARENT, value);
                }
                request.extensions_mut().insert(ours);
            }
        }
        let future = self.inner.call(request);
        Box::pin(
            async move {
                let result = future.await;
                if let Ok(response) = &result {
                    tracing::Span::current()
                        .record("http.response.status_code", response.status().as_u16());
                }
                result
            }
            .instrument(span),
        )
    }
}
