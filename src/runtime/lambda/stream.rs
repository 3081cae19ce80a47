//! Stream mode (`lambda.response_mode = "stream"`): the answer through the Runtime API's
//! streaming response, for Function URLs with invoke mode RESPONSE_STREAM and REST APIs with
//! `responseTransferMode: STREAM`.
//!
//! lambda_runtime writes the `application/vnd.awslambda.http-integration-response` prelude
//! (status, headers, cookies as JSON, then eight NUL bytes) and then each chunk this module's
//! [`BodyStream`] yields, as it arrives: an upstream's body, an S3 object or server-sent
//! events pass through with flat memory. A body that fails after the head was sent cannot
//! become a problem any more; the stream ends with the Runtime API's error trailer
//! (`Lambda-Runtime-Function-Error-Type: Runtime.StreamError`), which lambda_runtime writes
//! for an `Err` item, and the access log records the request as not completed. The
//! invocation's deadline (less `server.deadline_margin`) bounds the stream the same way.
//!
//! The prelude's `headers` hold one value per name (repeated fields joined with `, `, RFC 9110
//! §5.3) and `Set-Cookie` goes to `cookies`, as in payload 2.0. lambda_runtime serializes the
//! prelude through `http_serde`, which drops values that are not visible ASCII; such a field
//! is left out here, with a warning once, rather than sent empty.

use std::{
    fmt,
    pin::Pin,
    task::{Context, Poll, ready},
    time::Instant,
};

use axum::body::Body;
use bytes::Bytes;
use futures_util::Stream;
use http::{HeaderMap, HeaderValue, header, response::Parts};
use http_body::Body as _;
use lambda_http::lambda_runtime::{MetadataPrelude, StreamResponse};

use crate::observability::throttle::Throttle;

/// Why a streamed answer ended early; the error trailer's body (logged by Lambda, never
/// shown to the client, so it names no internal cause).
#[derive(Debug)]
pub enum StreamError {
    /// The body failed (an upstream reset, a broken S3 read) after the head was sent.
    Body,
    /// The invocation's deadline came while the body was still arriving.
    Deadline,
}

impl fmt::Display for StreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Body => "the response body failed after its head was sent",
            Self::Deadline => "the invocation deadline came while the response was streaming",
        })
    }
}

impl std::error::Error for StreamError {}

/// The router's answer as lambda_runtime streams it. `deadline` bounds the body;
/// `on_end` runs once when the stream ends or is dropped (the invocation's EMF metrics).
pub fn response(
    parts: Parts,
    body: Body,
    deadline: Option<Instant>,
    on_end: impl FnOnce() + Send + 'static,
) -> StreamResponse<BodyStream> {
    StreamResponse {
        metadata_prelude: prelude(&parts.headers, parts.status),
        stream: BodyStream {
            body,
            deadline: deadline.map(|at| Box::pin(tokio::time::sleep_until(at.into()))),
            ended: false,
            on_end: Some(Box::new(on_end)),
        },
    }
}

fn prelude(headers: &HeaderMap, status: http::StatusCode) -> MetadataPrelude {
    static DROPPED: Throttle = Throttle::new();
    let mut joined = HeaderMap::with_capacity(headers.keys_len());
    // Joined as for a buffered payload 2.0 answer; a value that is not visible ASCII then
    // fails `to_str`, which is what http_serde would drop silently.
    for (name, value) in super::response::joined(headers).0 {
        let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) else {
            continue;
        };
        if value.to_str().is_err() {
            if let Some(held_back) = DROPPED.admit() {
                tracing::warn!(
                    header = %name,
                    held_back,
                    "a response header value that is not ASCII cannot be sent in a streamed Lambda answer; it is left out"
                );
            }
            continue;
        }
        joined.insert(name, value);
    }
    let cookies = headers
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|cookie| cookie.to_str().ok().map(str::to_owned))
        .collect();
    MetadataPrelude {
        status_code: status,
        headers: joined,
        cookies,
    }
}

/// The body's data frames as a stream; trailers are not part of a Lambda answer.
pub struct BodyStream {
    body: Body,
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    ended: bool,
    on_end: Option<Box<dyn FnOnce() + Send>>,
}

impl BodyStream {
    fn end(
        &mut self,
        item: Option<Result<Bytes, StreamError>>,
    ) -> Poll<Option<<Self as Stream>::Item>> {
        self.ended = true;
        if let Some(Err(error)) = &item {
            tracing::warn!(%error, "the streamed response ends with an error trailer");
        }
        if let Some(on_end) = self.on_end.take() {
            on_end();
        }
        Poll::Ready(item)
    }
}

impl Stream for BodyStream {
    type Item = Result<Bytes, StreamError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.ended {
            return Poll::Ready(None);
        }
        loop {
            let frame = match Pin::new(&mut this.body).poll_frame(cx) {
                Poll::Ready(frame) => frame,
                Poll::Pending => {
                    if let Some(deadline) = &mut this.deadline {
                        ready!(deadline.as_mut().poll(cx));
                        return this.end(Some(Err(StreamError::Deadline)));
                    }
                    return Poll::Pending;
                }
            };
            match frame {
                None => return this.end(None),
                Some(Err(error)) => {
                    tracing::warn!(%error, "the response body failed while streaming");
                    return this.end(Some(Err(StreamError::Body)));
                }
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) if !data.is_empty() => return Poll::Ready(Some(Ok(data))),
                    _ => {}
                },
            }
        }
    }
}

impl Drop for BodyStream {
    fn drop(&mut self) {
        if let Some(on_end) = self.on_end.take() {
            on_end();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;

    #[test]
    fn the_prelude_joins_repeated_fields_and_moves_cookies() {
        let mut headers = HeaderMap::new();
        headers.append(header::VARY, HeaderValue::from_static("origin"));
        headers.append(header::VARY, HeaderValue::from_static("accept-encoding"));
        headers.append(header::SET_COOKIE, HeaderValue::from_static("a=1"));
        headers.append(header::SET_COOKIE, HeaderValue::from_static("b=2"));
        headers.append(
            header::CONTENT_DISPOSITION,
            HeaderValue::from_bytes(b"attachment; filename=\"caf\xe9.txt\"").unwrap(),
        );
        let prelude = prelude(&headers, http::StatusCode::CREATED);
        assert_eq!(prelude.status_code, 201);
        assert_eq!(prelude.headers[header::VARY], "origin, accept-encoding");
        assert!(!prelude.headers.contains_key(header::SET_COOKIE));
        assert!(!prelude.headers.contains_key(header::CONTENT_DISPOSITION));
        assert_eq!(prelude.cookies, ["a=1", "b=2"]);
    }

    #[tokio::test]
    async fn a_failing_body_ends_the_stream_with_one_error_and_runs_on_end_once() {
        let chunks: Vec<Result<Bytes, std::io::Error>> = vec![
            Ok(Bytes::from_static(b"first")),
            Err(std::io::Error::other("reset")),
            Ok(Bytes::from_static(b"never")),
        ];
        let body = Body::from_stream(futures_util::stream::iter(chunks));
        let ended = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = ended.clone();
        let parts = http::Response::new(()).into_parts().0;
        let mut stream = response(parts, body, None, move || {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        })
        .stream;
        assert_eq!(stream.next().await.unwrap().unwrap(), "first");
        assert!(matches!(stream.next().await, Some(Err(StreamError::Body))));
        assert!(stream.next().await.is_none());
        drop(stream);
        assert_eq!(ended.load(std::sync::atomic::Ordering::SeqCst), 1);
    }
}
