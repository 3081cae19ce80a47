//! The HTTP client of one worker's connection pool to an upstream.
//!
//! An upstream whose targets are all plain HTTP is called through hyper-util's pooled client
//! directly; one with an HTTPS target through reqwest, with the process's rustls
//! configuration. reqwest is built on that same hyper-util client; what it adds to every
//! request (its default headers merged into a copy of the request's, the URL turned into a
//! URI, a redirect layer that runs even with redirects off, its own request and response
//! types) costs a pass-through measurably more CPU per request (BENCHMARKS.md), and a
//! pass-through needs none of it. Both send the same request: the same headers (reqwest's
//! one default, `Accept: */*`, included), connection settings and pool.

use std::{
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use axum::body::Body;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, header::ACCEPT};
use http_body::{Frame, SizeHint};
use hyper_util::{
    client::legacy::{self, connect::HttpConnector},
    rt::{TokioExecutor, TokioTimer},
};

use super::config::UpstreamSettings;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How long an idle pooled connection is kept.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// TCP keep-alive probes on upstream connections, as reqwest sets them by default.
const TCP_KEEPALIVE: Duration = Duration::from_secs(15);
const TCP_KEEPALIVE_RETRIES: u32 = 3;

/// One connection pool: a plain-HTTP client, or reqwest for an upstream with TLS.
// One per worker, kept in a slice for the upstream's life: boxing the larger variant would
// only add a pointer to follow per request.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
pub(super) enum Client {
    Plain(legacy::Client<HttpConnector, Body>),
    Tls(reqwest::Client),
}

/// The body of one attempt.
pub(super) enum AttemptBody {
    Empty,
    Bytes(Bytes),
    Stream(Body),
}

impl Client {
    /// A pool with the upstream's connect timeout, no redirects and no environment proxy;
    /// `tls` is needed only if some target is HTTPS.
    pub(super) fn new(
        settings: &UpstreamSettings,
        tls: &rustls::ClientConfig,
    ) -> Result<Self, reqwest::Error> {
        if settings.targets.iter().any(|url| super::tls::is_https(url)) {
            return tls_client(settings, tls).map(Client::Tls);
        }
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(settings.connect_timeout));
        connector.set_keepalive(Some(TCP_KEEPALIVE));
        connector.set_keepalive_interval(Some(TCP_KEEPALIVE));
        connector.set_keepalive_retries(Some(TCP_KEEPALIVE_RETRIES));
        let client = legacy::Client::builder(TokioExecutor::new())
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .build(connector);
        Ok(Client::Plain(client))
    }

    /// Sends one request to `url` (the target's URL with the request's path and query).
    pub(super) async fn send(
        &self,
        method: Method,
        url: reqwest::Url,
        mut headers: HeaderMap,
        body: AttemptBody,
    ) -> Result<http::Response<ResponseBody>, SendError> {
        match self {
            Client::Plain(client) => {
                let uri = http::Uri::try_from(url.as_str()).map_err(SendError::Uri)?;
                if !headers.contains_key(ACCEPT) {
                    headers.insert(ACCEPT, HeaderValue::from_static("*/*"));
                }
                let body = match body {
                    AttemptBody::Empty => Body::empty(),
                    AttemptBody::Bytes(bytes) => Body::from(bytes),
                    AttemptBody::Stream(body) => body,
                };
                let mut request = http::Request::new(body);
                *request.method_mut() = method;
                *request.uri_mut() = uri;
                *request.headers_mut() = headers;
                let response = client.request(request).await.map_err(SendError::Plain)?;
                Ok(response.map(|body| ResponseBody::Plain { body }))
            }
            Client::Tls(client) => {
                let mut request = reqwest::Request::new(method, url);
                *request.headers_mut() = headers;
                *request.body_mut() = match body {
                    AttemptBody::Empty => None,
                    AttemptBody::Bytes(bytes) => Some(reqwest::Body::from(bytes)),
                    AttemptBody::Stream(body) => {
                        Some(reqwest::Body::wrap_stream(body.into_data_stream()))
                    }
                };
                let response = client
                    .execute(request)
                    .await
                    // The URL may carry secrets in its query string: keep it out of logs.
                    .map_err(|error| SendError::Tls(error.without_url()))?;
                let response: http::Response<reqwest::Body> = response.into();
                Ok(response.map(|body| ResponseBody::Tls { body }))
            }
        }
    }
}

fn tls_client(
    settings: &UpstreamSettings,
    tls: &rustls::ClientConfig,
) -> Result<reqwest::Client, reqwest::Error> {
    // No read timeout here: it would also run while the request body is still being sent,
    // blaming the upstream for a slow client. `Upstream::attempt` and the response body's
    // `StallTimeout` time the upstream's own silence instead.
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls.clone())
        .connect_timeout(settings.connect_timeout)
        .pool_idle_timeout(POOL_IDLE_TIMEOUT)
        .tcp_nodelay(true)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
}

/// Why a request got no response.
#[derive(Debug, thiserror::Error)]
pub(super) enum SendError {
    #[error(transparent)]
    Plain(legacy::Error),
    #[error(transparent)]
    Tls(reqwest::Error),
    #[error("the forwarded URL is not a valid request target")]
    Uri(#[source] http::uri::InvalidUri),
}

impl SendError {
    /// No connection could be made (refused, unresolvable, timed out connecting).
    pub(super) fn is_connect(&self) -> bool {
        match self {
            SendError::Plain(error) => error.is_connect(),
            SendError::Tls(error) => error.is_connect(),
            SendError::Uri(_) => false,
        }
    }

    /// The upstream accepted the request, then ran out of time. Only reqwest has timers of
    /// its own, and of those only the connect timeout is set, so this is a safeguard.
    pub(super) fn is_timeout(&self) -> bool {
        matches!(self, SendError::Tls(error) if error.is_timeout())
    }

    /// A failure of the response body reqwest reports as its own kind.
    pub(super) fn is_body(&self) -> bool {
        matches!(self, SendError::Tls(error) if error.is_body())
    }
}

pin_project_lite::pin_project! {
    /// An upstream's response body, from either client.
    #[project = ResponseBodyProj]
    pub(super) enum ResponseBody {
        Plain { #[pin] body: hyper::body::Incoming },
        Tls { #[pin] body: reqwest::Body },
    }
}

impl http_body::Body for ResponseBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.project() {
            ResponseBodyProj::Plain { body } => body.poll_frame(cx).map_err(Into::into),
            ResponseBodyProj::Tls { body } => body.poll_frame(cx).map_err(Into::into),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ResponseBody::Plain { body } => body.is_end_stream(),
            ResponseBody::Tls { body } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ResponseBody::Plain { body } => body.size_hint(),
            ResponseBody::Tls { body } => body.size_hint(),
        }
    }
}
