//! Aggregate routes: one request fans out to several upstreams in parallel, and their JSON
//! answers are merged into one object, each under its `key` or, without one, member by member
//! at the root (later backends win a clash).
//!
//! Each call goes through its upstream's retry, circuit breaker, concurrency limit and
//! timeout, bounded further by the backend's own `timeout` and the request's deadline. A
//! backend that fails (no answer, a non-2xx status, a body that is not JSON) is left out: the
//! answer says `X-Proxyfn-Completed: false` and, unless `aggregate_errors = false`, lists it in
//! `_errors`. A failed `required` backend, or every backend failing, is 502 problem+json.
//!
//! Backends receive the client's headers and the gateway's own (identity headers from `auth`
//! included) but not its body: aggregation composes reads.

use std::time::Duration;

use axum::{
    body::Body,
    extract::Request,
    response::{IntoResponse, Response},
};
use http::{HeaderValue, header, request::Parts};
use serde_json::{Map, Value, json};

use crate::{
    body::{Buffered, Coding, decode, is_json, read_up_to},
    error::Error,
    routes::config::AggregateBackend,
    upstream::Upstream,
};

/// Says whether every backend answered.
pub const X_PROXYFN_COMPLETED: &str = "x-proxyfn-completed";

pub struct AggregateRoute {
    backends: Vec<(AggregateBackend, Upstream)>,
    report_errors: bool,
    /// Largest backend body read.
    body_cap: usize,
}

impl AggregateRoute {
    pub fn new(
        backends: Vec<(AggregateBackend, Upstream)>,
        report_errors: bool,
        body_cap: u64,
    ) -> Self {
        Self {
            backends,
            report_errors,
            body_cap: usize::try_from(body_cap).unwrap_or(usize::MAX),
        }
    }

    /// Each backend's path and query, with the route's parameters substituted (still
    /// percent-encoded, as in the request path).
    pub fn targets(&self, params: &matchit::Params<'_, '_>) -> Vec<String> {
        self.backends
            .iter()
            .map(|(backend, _)| super::proxy::substitute(&backend.target, params))
            .collect()
    }

    pub async fn respond(&self, request: Request, targets: Vec<String>) -> Response {
        let (parts, _body) = request.into_parts();
        let calls = self
            .backends
            .iter()
            .zip(targets)
            .map(|((backend, upstream), target)| self.call(backend, upstream, &parts, target));
        let results = futures_util::future::join_all(calls).await;

        let mut merged = Map::new();
        let mut errors: Vec<Value> = Vec::new();
        let mut required_failure = None;
        for ((backend, upstream), result) in self.backends.iter().zip(results) {
            let result = result.and_then(|value| match (&backend.key, value) {
                (Some(key), value) => {
                    merged.insert(key.clone(), value);
                    Ok(())
                }
                (None, Value::Object(members)) => {
                    merged.extend(members);
                    Ok(())
                }
                (None, _) => {
                    Err("answered JSON that is not an object; give the backend a `key`".to_owned())
                }
            });
            if let Err(detail) = result {
                tracing::warn!(backend = backend.name(), upstream = upstream.name(), %detail, "aggregate backend left out");
                if backend.required && required_failure.is_none() {
                    required_failure = Some(format!(
                        "The required backend '{}' failed: {detail}",
                        backend.name()
                    ));
                }
                errors.push(json!({ "backend": backend.name(), "detail": detail }));
            }
        }
        if let Some(detail) = required_failure {
            return Error::AggregationFailed(detail).into_response();
        }
        if errors.len() == self.backends.len() {
            return Error::AggregationFailed("Every backend of this route failed.".to_owned())
                .into_response();
        }
        let completed = errors.is_empty();
        if self.report_errors && !completed {
            merged.insert("_errors".to_owned(), Value::Array(errors));
        }
        let body = serde_json::to_vec(&Value::Object(merged)).unwrap_or_default();
        let mut response = Response::new(Body::from(body));
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.insert(
            X_PROXYFN_COMPLETED,
            HeaderValue::from_static(if completed { "true" } else { "false" }),
        );
        response
    }

    /// One backend call; the error is a detail a client may see (no internals).
    async fn call(
        &self,
        backend: &AggregateBackend,
        upstream: &Upstream,
        client: &Parts,
        target: String,
    ) -> Result<Value, String> {
        let mut request = Request::new(Body::empty());
        *request.method_mut() = backend.method.clone();
        *request.uri_mut() = target
            .parse()
            .map_err(|_| "its path is not a valid URI after substitution".to_owned())?;
        let headers = request.headers_mut();
        headers.clone_from(&client.headers);
        for name in [
            header::CONTENT_LENGTH,
            header::CONTENT_TYPE,
            header::CONTENT_ENCODING,
            header::TRANSFER_ENCODING,
            header::EXPECT,
        ] {
            headers.remove(name);
        }
        headers.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        headers.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static("identity"),
        );
        // The client's context whole: who it is (address, principal and its identity
        // headers), its request id and trace, deadline and limits.
        *request.extensions_mut() = client.extensions.clone();

        let path = target.split('?').next().unwrap_or_default();
        let call = upstream.forward(request, path);
        let response = match backend.timeout {
            None => call.await,
            Some(timeout) => tokio::time::timeout(timeout, call).await.map_err(|_| {
                format!(
                    "no answer within {}",
                    humantime::format_duration(round(timeout))
                )
            })?,
        }
        .map_err(|error| {
            error.log();
            error.problem().detail
        })?;

        let status = response.status();
        if !status.is_success() {
            return Err(format!("answered {}", status.as_u16()));
        }
        let (parts, body) = response.into_parts();
        if !is_json(parts.headers.get(header::CONTENT_TYPE)) {
            return Err("answered a body that is not JSON".to_owned());
        }
        let encoding = parts.headers.get(header::CONTENT_ENCODING);
        if Coding::of(encoding).is_none() {
            return Err("answered in a content coding the gateway cannot decode".to_owned());
        }
        let bytes = match read_up_to(body, self.body_cap).await {
            Ok(Buffered::Whole(bytes)) => bytes,
            Ok(Buffered::TooLarge(_)) => {
                return Err(format!("answered more than {} bytes", self.body_cap));
            }
            Err(_) => return Err("its response failed before it was complete".to_owned()),
        };
        let bytes = decode(encoding, bytes, self.body_cap as u64)
            .map_err(|_| "answered a body that could not be decoded".to_owned())?;
        serde_json::from_slice(&bytes).map_err(|_| "answered invalid JSON".to_owned())
    }
}

/// Whole milliseconds, for messages.
fn round(duration: Duration) -> Duration {
    Duration::from_millis(duration.as_millis() as u64)
}
