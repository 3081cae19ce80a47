//! Mock routes: a fixed response from the gateway itself, like API Gateway's mock integration.

use axum::{body::Body, response::Response};
use bytes::Bytes;
use http::{HeaderMap, StatusCode};

/// A fixed response, validated from `response = {...}` or `fallback = {...}`.
#[derive(Clone, Debug)]
pub struct MockRoute {
    pub(super) status: StatusCode,
    pub(super) headers: HeaderMap,
    pub(super) body: Bytes,
}

impl MockRoute {
    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// The configured `content-type`, when it has one.
    pub fn content_type(&self) -> Option<&str> {
        self.headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
    }

    /// The configured response; the body is shared, not copied.
    pub fn response(&self) -> Response {
        let mut response = Response::new(Body::from(self.body.clone()));
        *response.status_mut() = self.status;
        *response.headers_mut() = self.headers.clone();
        response
    }
}
