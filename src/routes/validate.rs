//! `request_schema`: the request body is checked against the route's JSON Schema before the
//! upstream is called, so backends only ever see bodies of the documented shape.
//!
//! GET, HEAD and OPTIONS carry no body to check. Other methods need a JSON body
//! (`application/json` or a `+json` type, else 415); invalid JSON is 400 `invalid-json`; a body
//! that breaks the schema is 400 `validation-failed` listing every error with its JSON pointer
//! (RFC 6901). The body forwarded is the one received, byte for byte: a gzip or br body is
//! checked decoded and forwarded still encoded.
//!
//! Values of `[log] redact` fields never appear in an error message nor in the debug log of a
//! refused body.

use std::sync::Arc;

use axum::{body::Body, extract::Request};
use http::{Method, header};

use crate::{
    body::is_json,
    error::{Error, FieldError},
    limits::read_whole_body,
    observability::config::Redaction,
    routes::schema::RequestSchema,
};

/// At most this many errors are listed; a huge body cannot make a huge problem.
const MAX_ERRORS: usize = 20;

pub struct RequestValidator {
    schema: Arc<RequestSchema>,
    redaction: Redaction,
}

impl RequestValidator {
    pub fn new(schema: Arc<RequestSchema>, redaction: Redaction) -> Self {
        Self { schema, redaction }
    }

    /// Returns the request with its body intact, or the problem to answer with.
    pub async fn validate(&self, request: Request) -> Result<Request, Error> {
        if !carries_body(request.method()) {
            return Ok(request);
        }
        if !is_json(request.headers().get(header::CONTENT_TYPE)) {
            return Err(Error::UnsupportedMediaType {
                expected: "application/json",
            });
        }
        let (parts, body) = request.into_parts();
        let (bytes, limit) = read_whole_body(&parts, body).await?;
        // A compressed body is checked decoded and forwarded as it came.
        let decoded = crate::body::decode(
            parts.headers.get(header::CONTENT_ENCODING),
            bytes.clone(),
            limit,
        )?;
        let instance: serde_json::Value = serde_json::from_slice(&decoded).map_err(|e| {
            // serde_json's message names the position and what was expected, never the input.
            Error::InvalidJson(format!("line {}, column {}", e.line(), e.column()))
        })?;
        let errors: Vec<FieldError> = self
            .schema
            .validator
            .iter_errors(&instance)
            .take(MAX_ERRORS)
            .map(|error| {
                let pointer = error.instance_path().as_str().to_owned();
                let detail = if self.redaction.covers(&pointer) {
                    error.masked().to_string()
                } else {
                    error.to_string()
                };
                FieldError {
                    pointer: format!("#{pointer}"),
                    detail,
                }
            })
            .collect();
        if !errors.is_empty() {
            tracing::debug!(
                schema = %self.schema.file,
                body = %self.redaction.apply(&instance),
                "request body refused by its schema"
            );
            return Err(Error::ValidationFailed(errors));
        }
        Ok(Request::from_parts(parts, Body::from(bytes)))
    }
}

/// Whether requests with `method` carry a body the gateway checks (and documents): GET, HEAD
/// and OPTIONS do not.
pub(crate) fn carries_body(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}
