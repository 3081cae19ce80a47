//! Mock routes: a fixed response from the gateway itself, like API Gateway's mock integration.

use axum::{body::Body, response::Response};
use bytes::Bytes;
use http::{HeaderMap, StatusCode};

use super::config::MockResponse;

pub struct MockRoute {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl MockRoute {
    pub fn new(response: &MockResponse) -> Self {
        Self {
            status: response.status,
            headers: response.headers.clone(),
            body: response.body.clone(),
        }
    }

    /// The configured response; the body is shared, not copied.
    pub fn response(&self) -> Response {
        let mut response = Response::new(Body::from(self.body.clone()));
        *response.status_mut() = self.status;
        *response.headers_mut() = self.headers.clone();
        response
    }
}
