//! Upstream services: one pooled HTTP client per upstream (its own connect timeout), built
//! once at start-up, and the forwarding of a request to it.
//!
//! Bodies stream both ways: nothing is buffered, so a 100 MB download costs the gateway
//! only a few buffers. Redirects are never followed (the client sees the upstream's 3xx),
//! and no environment proxy is used implicitly.

pub mod headers;

use std::{sync::Arc, time::Duration};

use axum::{body::Body, extract::Request, response::Response};
use http::{HeaderValue, header::CONTENT_LENGTH};
use http_body::Body as _;

use crate::{
    config::{ConfigError, UpstreamSettings},
    error::Error,
    limits::{BodyLimit, is_body_limit_error},
    runtime::ClientInfo,
};

/// A configured backend service.
#[derive(Clone, Debug)]
pub struct Upstream {
    name: Arc<str>,
    base_url: Arc<str>,
    timeout: Duration,
    client: reqwest::Client,
}

impl Upstream {
    pub fn new(settings: &UpstreamSettings) -> Result<Self, ConfigError> {
        let client = reqwest::Client::builder()
            .connect_timeout(settings.connect_timeout)
            .read_timeout(settings.timeout)
            .pool_idle_timeout(Duration::from_secs(90))
            .tcp_nodelay(true)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .build()
            .map_err(|e| {
                ConfigError::single(
                    format!("upstreams.{}", settings.name),
                    format!("cannot build an HTTP client: {e}"),
                )
            })?;
        Ok(Self {
            name: settings.name.as_str().into(),
            base_url: settings.base_url.as_str().into(),
            timeout: settings.timeout,
            client,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Sends `request` to `path` on this upstream (the query string is kept as received) and
    /// returns the upstream's response with hop-by-hop headers removed.
    pub async fn forward(&self, request: Request, path: &str) -> Result<Response, Error> {
        let (parts, body) = request.into_parts();
        let client = parts
            .extensions
            .get::<ClientInfo>()
            .cloned()
            .unwrap_or_default();
        let body_limit = parts
            .extensions
            .get::<BodyLimit>()
            .map_or(u64::MAX, |l| l.0);

        let query = parts.uri.query();
        let mut url = String::with_capacity(
            self.base_url.len() + path.len() + query.map_or(0, |q| q.len() + 1),
        );
        url.push_str(&self.base_url);
        url.push_str(path);
        if let Some(query) = query {
            url.push('?');
            url.push_str(query);
        }
        let url = reqwest::Url::parse(&url)
            .map_err(|e| Error::Internal(format!("upstream URL {url:?}: {e}")))?;

        let mut headers = headers::to_upstream(parts.headers, &client);
        let size = body.size_hint();
        let mut outgoing = reqwest::Request::new(parts.method, url);
        if size.exact() != Some(0) {
            if let (Some(exact), false) = (size.exact(), headers.contains_key(CONTENT_LENGTH)) {
                headers.insert(CONTENT_LENGTH, HeaderValue::from(exact));
            }
            *outgoing.body_mut() = Some(reqwest::Body::wrap_stream(body.into_data_stream()));
        }
        *outgoing.headers_mut() = headers;

        let sent = tokio::time::timeout(self.timeout, self.client.execute(outgoing)).await;
        let upstream_response = match sent {
            Err(_elapsed) => return Err(self.timed_out()),
            Ok(Err(error)) => return Err(self.classify(error, body_limit)),
            Ok(Ok(response)) => response,
        };

        let mut response: http::Response<reqwest::Body> = upstream_response.into();
        headers::remove_hop_by_hop(response.headers_mut());
        Ok(response.map(Body::new))
    }

    fn timed_out(&self) -> Error {
        Error::UpstreamTimeout {
            upstream: self.name.clone(),
        }
    }

    fn classify(&self, error: reqwest::Error, body_limit: u64) -> Error {
        // The URL may carry secrets in its query string: keep it out of logs.
        let error = error.without_url();
        if is_body_limit_error(&error) {
            return Error::PayloadTooLarge { limit: body_limit };
        }
        if error.is_body()
            || (error.is_request() && !error.is_connect() && request_body_failed(&error))
        {
            return Error::BadRequestBody(Box::new(error));
        }
        // A connection that could not be made, even by timing out, is "unreachable" (502);
        // only an upstream that accepted the request and then ran out of time is 504.
        if error.is_timeout() && !error.is_connect() {
            return self.timed_out();
        }
        Error::UpstreamUnavailable {
            upstream: self.name.clone(),
            source: error,
        }
    }
}

/// Whether the client's body stream, not the upstream, failed (aborted upload).
fn request_body_failed(error: &reqwest::Error) -> bool {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = current {
        if e.is::<axum::Error>() {
            return true;
        }
        current = e.source();
    }
    false
}
