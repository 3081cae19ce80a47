//! One access-log event per request (target `proxyfn::access`), written when the response body
//! has been sent (or the client went away), so `latency_ms` and `bytes_out` are the real ones.
//!
//! Inner parts of the gateway add what only they know (route, principal, upstream, attempts,
//! rate-limit decision) to the request's [`Notes`]. Nothing from headers is logged, so
//! credentials (Authorization, Cookie, API keys) cannot leak here; client-controlled text
//! that is logged (path, principal) has control characters escaped, so a request cannot
//! forge log lines on a terminal.

use std::{
    borrow::Cow,
    net::IpAddr,
    pin::Pin,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll, ready},
    time::{Duration, Instant},
};

use axum::{body::Body, extract::Request, response::Response};
use bytes::Bytes;
use http::{Extensions, HeaderValue, Method, Uri};
use http_body::{Body as HttpBody, Frame, SizeHint};
use tower::{Layer, Service};

use super::{
    RequestId,
    metrics::{RouteMetrics, UpstreamMetrics},
    trace_context::TraceContext,
};
use crate::context::RequestContext;

/// The target of the access-log events.
pub(crate) const ACCESS_TARGET: &str = "proxyfn::access";

/// What the inner layers learned about a request, for its access-log event.
#[derive(Debug, Default)]
pub struct Notes(Mutex<Noted>);

#[derive(Debug, Default, Clone)]
struct Noted {
    route: Option<Arc<RouteMetrics>>,
    principal: Option<String>,
    upstream: Option<Arc<UpstreamMetrics>>,
    upstream_latency: Option<Duration>,
    attempts: u32,
    rate_limit: Option<&'static str>,
}

impl Notes {
    fn update(&self, f: impl FnOnce(&mut Noted)) {
        f(&mut self.0.lock().unwrap_or_else(PoisonError::into_inner));
    }

    /// The note pad of the request whose extensions these are, if it is being logged.
    pub fn of(extensions: &Extensions) -> Option<&Self> {
        RequestContext::of(extensions).map(|c| &*c.notes)
    }

    pub fn route(&self, route: &Arc<RouteMetrics>) {
        self.update(|n| n.route = Some(route.clone()));
    }

    pub fn principal(&self, provider: &str, id: &str) {
        self.update(|n| n.principal = Some(format!("{provider}/{id}")));
    }

    /// An upstream call: `attempts` made, the last answering (or failing) after `latency`.
    pub fn upstream(&self, upstream: &Arc<UpstreamMetrics>, attempts: u32, latency: Duration) {
        self.update(|n| {
            n.upstream = Some(upstream.clone());
            n.attempts = attempts;
            n.upstream_latency = Some(latency);
        });
    }

    /// `allowed`, `limited`, or how a store failure was handled (`store_error_*`).
    pub fn rate_limit(&self, decision: &'static str) {
        self.update(|n| n.rate_limit = Some(decision));
    }
}

/// Marks the first invocation of a Lambda execution environment, with its init time.
#[derive(Clone, Copy, Debug)]
pub struct ColdStart {
    pub init: Duration,
}

/// Emits the access-log event of every request, naming the configuration generation that
/// served it (it changes with each reload).
#[derive(Clone, Copy, Debug)]
pub struct AccessLogLayer {
    generation: u64,
}

impl AccessLogLayer {
    pub fn new(generation: u64) -> Self {
        Self { generation }
    }
}

impl<S> Layer<S> for AccessLogLayer {
    type Service = AccessLogService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        AccessLogService {
            inner,
            generation: self.generation,
        }
    }
}

#[derive(Clone, Debug)]
pub struct AccessLogService<S> {
    inner: S,
    generation: u64,
}

/// Everything the event needs, gathered at the start and finished with the response. Kept
/// as it was found (cheap clones); text is only made if the event is written.
struct Record {
    start: Instant,
    method: Method,
    uri: Uri,
    request_id: Option<HeaderValue>,
    trace: Option<TraceContext>,
    client_ip: Option<IpAddr>,
    aws_request_id: Option<String>,
    xray_trace_id: Option<String>,
    cold_start: Option<ColdStart>,
    notes: Arc<Notes>,
    bytes_in: Arc<AtomicU64>,
    status: u16,
    generation: u64,
}

impl<S> Service<Request> for AccessLogService<S>
where
    S: Service<Request, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = AccessLogFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let bytes_in = Arc::new(AtomicU64::new(0));
        let extensions = request.extensions();
        let context = RequestContext::of(extensions);
        let invocation = context.and_then(|c| c.invocation.as_ref());
        let record = Record {
            start: Instant::now(),
            method: request.method().clone(),
            uri: request.uri().clone(),
            request_id: extensions.get::<RequestId>().map(|id| id.0.clone()),
            trace: extensions.get::<TraceContext>().copied(),
            client_ip: context.and_then(|c| c.client.ip),
            aws_request_id: invocation.map(|i| i.aws_request_id.clone()),
            xray_trace_id: invocation.and_then(|i| i.xray_trace_id.clone()),
            cold_start: invocation.and_then(|i| i.cold_start),
            // Outside a context (not the gateway's stack) there is nothing to note.
            notes: context.map(|c| c.notes.clone()).unwrap_or_default(),
            bytes_in: bytes_in.clone(),
            status: 0,
            generation: self.generation,
        };
        let request = request.map(|body| {
            Body::new(Counted {
                inner: body,
                count: bytes_in,
            })
        });
        AccessLogFuture {
            inner: self.inner.call(request),
            record: Some(Box::new(record)),
        }
    }
}

pin_project_lite::pin_project! {
    pub struct AccessLogFuture<F> {
        #[pin]
        inner: F,
        record: Option<Box<Record>>,
    }
}

impl<F, E> std::future::Future for AccessLogFuture<F>
where
    F: std::future::Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let response = ready!(this.inner.poll(cx))?;
        let Some(mut record) = this.record.take() else {
            return Poll::Ready(Ok(response));
        };
        record.status = response.status().as_u16();
        Poll::Ready(Ok(response.map(|body| {
            Body::new(Logged {
                inner: body,
                bytes_out: 0,
                record: Some(record),
            })
        })))
    }
}

pin_project_lite::pin_project! {
    /// Counts the bytes of the request body as they are read.
    struct Counted {
        #[pin]
        inner: Body,
        count: Arc<AtomicU64>,
    }
}

impl HttpBody for Counted {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.project();
        let frame = ready!(this.inner.poll_frame(cx));
        let data = match &frame {
            Some(Ok(frame)) => frame.data_ref(),
            _ => None,
        };
        if let Some(data) = data {
            this.count.fetch_add(data.len() as u64, Ordering::Relaxed);
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

pin_project_lite::pin_project! {
    /// The response body; logs the request when it ends or is dropped.
    struct Logged {
        #[pin]
        inner: Body,
        bytes_out: u64,
        record: Option<Box<Record>>,
    }

    impl PinnedDrop for Logged {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(record) = this.record.take() {
                // HTTP/1 stops reading a body once Content-Length bytes are out.
                let complete = this.inner.is_end_stream()
                    || this.inner.size_hint().exact() == Some(*this.bytes_out);
                emit(&record, *this.bytes_out, complete);
            }
        }
    }
}

impl HttpBody for Logged {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let mut this = self.project();
        let frame = ready!(this.inner.as_mut().poll_frame(cx));
        match &frame {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    *this.bytes_out += data.len() as u64;
                }
                if this.inner.is_end_stream()
                    && let Some(record) = this.record.take()
                {
                    emit(&record, *this.bytes_out, true);
                }
            }
            // The end, or a failure that ends the body: either way the request is over.
            None | Some(Err(_)) => {
                if let Some(record) = this.record.take() {
                    emit(&record, *this.bytes_out, frame.is_none());
                }
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Client-controlled text as [`str::escape_debug`] writes it, so a request cannot forge log
/// lines on a terminal. Most paths and principals have nothing to escape: they are borrowed
/// as they are, instead of formatted one character at a time (and, for the principal,
/// copied into a new String).
fn terminal_safe(text: &str) -> Cow<'_, str> {
    let unchanged =
        |byte: u8| (b' '..=b'~').contains(&byte) && !matches!(byte, b'\\' | b'"' | b'\'');
    if text.bytes().all(unchanged) {
        Cow::Borrowed(text)
    } else {
        Cow::Owned(text.escape_debug().to_string())
    }
}

fn emit(record: &Record, bytes_out: u64, completed: bool) {
    let noted = record
        .notes
        .0
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    let latency = record.start.elapsed();
    super::metrics::record_request(&super::metrics::RequestSample {
        route: noted.route.as_deref(),
        method: &record.method,
        status: record.status,
        latency,
        upstream: noted.upstream.as_ref().map(|upstream| {
            (
                &**upstream,
                noted.attempts,
                noted.upstream_latency.unwrap_or_default(),
            )
        }),
        rate_limit: noted.rate_limit,
        cold_start: record.cold_start.is_some(),
    });
    let millis = |d: Duration| d.as_secs_f64() * 1e3;
    let principal = noted.principal.as_deref().map(terminal_safe);
    tracing::info!(
        target: ACCESS_TARGET,
        request_id = record.request_id.as_ref().map_or("", |id| id.to_str().unwrap_or_default()),
        trace_id = record.trace.map(|t| display(t.trace_id_hex())),
        method = %record.method,
        route = noted.route.as_ref().map(|route| &**route.template()),
        path = %terminal_safe(record.uri.path()),
        status = record.status,
        latency_ms = millis(latency),
        upstream = noted.upstream.as_ref().map(|upstream| &**upstream.name()),
        upstream_latency_ms = noted.upstream_latency.map(millis),
        attempts = (noted.attempts > 0).then_some(noted.attempts),
        client_ip = record.client_ip.map(display),
        principal = principal.as_deref(),
        rate_limit = noted.rate_limit,
        bytes_in = record.bytes_in.load(Ordering::Relaxed),
        bytes_out,
        completed,
        config_generation = record.generation,
        aws_request_id = record.aws_request_id.as_deref(),
        xray_trace_id = record.xray_trace_id.as_deref(),
        cold_start = record.aws_request_id.as_ref().map(|_| record.cold_start.is_some()),
        init_ms = record.cold_start.map(|c| millis(c.init)),
        "request"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_safe_text_reads_as_escape_debug_writes_it() {
        let samples = (0u8..=0x7f)
            .map(|byte| format!("/a{}b", char::from(byte)))
            .chain(
                ["/caf\u{e9}", "/\u{301}x", "/x\u{202e}y", "/orders/{id}?q=1"].map(String::from),
            );
        for text in samples {
            assert_eq!(
                terminal_safe(&text),
                text.escape_debug().to_string(),
                "{text:?}"
            );
        }
    }

    #[test]
    fn text_with_nothing_to_escape_is_borrowed() {
        assert!(matches!(
            terminal_safe("/v1/orders/42-a_b.json~x"),
            Cow::Borrowed(_)
        ));
        assert!(matches!(terminal_safe("/a\nb"), Cow::Owned(_)));
    }
}
