//! Request limits enforced before any routing work: the header section size (431,
//! RFC 6585 §5), the body size (413, RFC 9110 §15.5.14) and the whole-request deadline (504).
//!
//! The body limit is checked up front against `Content-Length`, and enforced while streaming
//! for chunked bodies (the proxy answers 413 when the stream crosses the limit). A body that
//! stops arriving for `server.body_timeout` ends the request with 408 (the client's fault,
//! never counted against an upstream). The deadline covers the time until the response head
//! is ready; a long download that has started is not cut off by it.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll, ready},
    time::Duration,
};

use axum::{
    body::Body,
    extract::Request,
    response::{IntoResponse, Response},
};
use http::header::CONTENT_LENGTH;
use tower::{Layer, Service};

use crate::{
    context::RequestContext,
    error::Error,
    stall::{Side, StallTimeout},
};

#[derive(Clone, Copy, Debug)]
pub struct LimitsLayer {
    body_limit: u64,
    header_limit: usize,
    timeout: Duration,
    body_timeout: Duration,
}

impl LimitsLayer {
    pub fn new(
        body_limit: u64,
        header_limit: usize,
        timeout: Duration,
        body_timeout: Duration,
    ) -> Self {
        Self {
            body_limit,
            header_limit,
            timeout,
            body_timeout,
        }
    }
}

impl<S> Layer<S> for LimitsLayer {
    type Service = Limits<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Limits {
            inner,
            limits: *self,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Limits<S> {
    inner: S,
    limits: LimitsLayer,
}

/// Bytes of the header section as sent on the wire: `name: value\r\n` per field.
fn header_section_size(request: &Request) -> usize {
    request
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum()
}

impl<S> Service<Request> for Limits<S>
where
    S: Service<Request, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = LimitsFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let limits = self.limits;
        if header_section_size(&request) > limits.header_limit {
            return LimitsFuture::rejected(Error::HeadersTooLarge {
                limit: limits.header_limit,
            });
        }
        // Content-Length when sent; otherwise a body of known size (a Lambda event's).
        let declared = request
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .or_else(|| http_body::Body::size_hint(request.body()).exact());
        if declared.is_some_and(|length| length > limits.body_limit) {
            return LimitsFuture::rejected(Error::PayloadTooLarge {
                limit: limits.body_limit,
            });
        }
        let request = request.map(|body| {
            let limit = usize::try_from(limits.body_limit).unwrap_or(usize::MAX);
            Body::new(StallTimeout::new(
                http_body_util::Limited::new(body, limit),
                Side::Client,
                limits.body_timeout,
            ))
        });
        // The request's deadline ([`RequestContext::deadline`]); `server.timeout` from now
        // for a request that has no context (this layer used on its own).
        let deadline = RequestContext::of(request.extensions()).map_or_else(
            || std::time::Instant::now() + limits.timeout,
            |context| context.deadline,
        );
        LimitsFuture::Running {
            inner: tokio::time::timeout_at(deadline.into(), self.inner.call(request)),
        }
    }
}

pin_project_lite::pin_project! {
    #[project = LimitsProjection]
    pub enum LimitsFuture<F> {
        Rejected { response: Option<Response> },
        Running { #[pin] inner: tokio::time::Timeout<F> },
    }
}

impl<F> LimitsFuture<F> {
    fn rejected(error: Error) -> Self {
        LimitsFuture::Rejected {
            response: Some(error.into_response()),
        }
    }
}

impl<F, E> Future for LimitsFuture<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            LimitsProjection::Rejected { response } => {
                Poll::Ready(Ok(response.take().unwrap_or_else(|| {
                    Error::Internal("limits future polled after completion".into()).into_response()
                })))
            }
            LimitsProjection::Running { inner } => match ready!(inner.poll(cx)) {
                Ok(result) => Poll::Ready(result),
                Err(_elapsed) => Poll::Ready(Ok(Error::DeadlineExceeded.into_response())),
            },
        }
    }
}

/// Reads a request body whole, for the parts of the gateway that must see all of it (schema
/// validation, request transforms). The limits layer already bounds the body, so this is
/// safe; crossing the bound is 413. Returns the bytes and the body limit, which also bounds
/// what the body may decode to.
pub async fn read_whole_body(
    parts: &http::request::Parts,
    body: axum::body::Body,
) -> Result<(bytes::Bytes, u64), Error> {
    let limit = RequestContext::of(&parts.extensions).map_or(u64::MAX, |c| c.body_limit);
    let bytes = axum::body::to_bytes(body, usize::MAX)
        .await
        .map_err(|e| body_read_error(e, limit))?;
    Ok((bytes, limit))
}

/// What a request body that failed while being read comes to: 413 when it crossed the limit,
/// 408 when the client stopped sending it, else 400.
pub fn body_read_error(error: axum::Error, body_limit: u64) -> Error {
    let cause = error.into_inner();
    if is_body_limit_error(&*cause) {
        Error::PayloadTooLarge { limit: body_limit }
    } else if let Some(stalled) = crate::stall::stalled(&*cause) {
        Error::ClientBodyTimeout {
            timeout: stalled.timeout,
        }
    } else {
        Error::BadRequestBody(cause)
    }
}

/// True when `error`, or anything in its source chain, is the body limit being crossed.
pub fn is_body_limit_error(error: &(dyn std::error::Error + 'static)) -> bool {
    crate::error::caused_by::<http_body_util::LengthLimitError>(error)
}
