//! The one error type of the request path, answered as RFC 9457 `application/problem+json`.
//!
//! [`Error::into_response`] attaches a [`Problem`] to the response; the request-id layer
//! (the outermost layer of every router [`crate::build`] makes) renders it into the body
//! together with the request's id. Internal causes are logged here and never reach the client.

use std::{sync::Arc, time::Duration};

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use serde::Serialize;

/// Content type of every error the gateway itself produces (RFC 9457 §3).
pub const PROBLEM_JSON: HeaderValue = HeaderValue::from_static("application/problem+json");

/// Everything that can go wrong while the gateway handles a request.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no route matches the request path")]
    RouteNotFound,
    #[error("method not allowed")]
    MethodNotAllowed { allow: HeaderValue },
    #[error("invalid request path: {0}")]
    InvalidPath(&'static str),
    #[error("invalid Host: {0}")]
    InvalidHost(&'static str),
    #[error("ambiguous message framing: {0}")]
    AmbiguousFraming(&'static str),
    #[error("malformed Lambda event: {0}")]
    MalformedEvent(&'static str),
    #[error("a request header name contains '_'")]
    InvalidHeaderName,
    #[error("a transfer coding other than chunked")]
    UnsupportedTransferCoding,
    #[error("request body larger than {limit} bytes")]
    PayloadTooLarge { limit: u64 },
    #[error("request header section larger than {limit} bytes")]
    HeadersTooLarge { limit: usize },
    #[error("could not read the request body")]
    BadRequestBody(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("the client sent no more of its request body for {timeout:?}")]
    ClientBodyTimeout { timeout: Duration },
    #[error("the response is larger than the {limit} bytes an invocation may answer")]
    ResponseTooLarge { limit: usize },
    #[error("the request took longer than the gateway's deadline")]
    DeadlineExceeded,
    #[error("upstream {upstream} did not answer in time")]
    UpstreamTimeout { upstream: Arc<str> },
    #[error("upstream {upstream} is unreachable")]
    UpstreamUnavailable {
        upstream: Arc<str>,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("the response body failed before it was complete")]
    IncompleteResponse,
    #[error("upstream {upstream} is at its concurrency limit")]
    Overloaded { upstream: Arc<str> },
    #[error("the circuit breaker of upstream {upstream} is open")]
    CircuitOpen {
        upstream: Arc<str>,
        retry_after: Duration,
    },
    #[error("upstream {upstream} has no healthy target")]
    NoHealthyTarget { upstream: Arc<str> },
    #[error("fault injected with status {status}")]
    FaultInjected { status: StatusCode },
    #[error("not authenticated: {}", reason.code())]
    Unauthorized {
        reason: crate::auth::Reason,
        challenge: HeaderValue,
    },
    #[error("missing scopes: {missing}")]
    Forbidden {
        missing: String,
        challenge: HeaderValue,
    },
    #[error("the identity provider is unavailable")]
    AuthUnavailable { retry_after: Duration },
    #[error("rate limit exceeded")]
    RateLimited {
        retry_after: Duration,
        /// `RateLimit-Policy` and `RateLimit` for the refused request.
        headers: Box<http::HeaderMap>,
    },
    #[error("the rate-limit store is unavailable")]
    RateLimitUnavailable,
    #[error("request body is not {expected}")]
    UnsupportedMediaType { expected: &'static str },
    #[error("request body content coding is not supported")]
    UnsupportedContentEncoding,
    #[error("no route serves API version {requested:?} on this path")]
    UnknownVersion {
        requested: Option<String>,
        known: String,
    },
    #[error("aggregation failed: {0}")]
    AggregationFailed(String),
    #[error("request body is not valid JSON: {0}")]
    InvalidJson(String),
    #[error("request body does not match the route's schema ({} errors)", .0.len())]
    ValidationFailed(Vec<FieldError>),
    #[error("the request has no value for {placeholder}")]
    MissingValue { placeholder: String },
    #[error("request body not acceptable: {0}")]
    InvalidBody(&'static str),
    #[error("no such {what}")]
    NotFound { what: &'static str },
    #[error("a precondition of the request failed")]
    PreconditionFailed,
    #[error("the requested range is not satisfiable")]
    RangeNotSatisfiable,
    #[error("AWS {service} throttled the call, after retries")]
    AwsThrottled { service: &'static str },
    #[error("AWS {service} refused the call as a conflict")]
    AwsConflict { service: &'static str },
    #[error("AWS {service} failed the call")]
    AwsFailed { service: &'static str },
    #[error("AWS {service} did not answer in time")]
    AwsTimeout { service: &'static str },
    #[error("internal error: {0}")]
    Internal(String),
}

/// One reason a request body was refused: where (a JSON pointer, RFC 6901, in the URI
/// fragment form RFC 9457 §3 shows) and why.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct FieldError {
    pub pointer: String,
    pub detail: String,
}

/// The problem details object (RFC 9457 §3.1), minus `request_id` which is added on render.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub title: &'static str,
    pub status: u16,
    pub detail: String,
    /// RFC 9457 §3.2 extension member: each field a request body got wrong.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<FieldError>>,
}

#[derive(Serialize)]
struct RenderedProblem<'a> {
    #[serde(flatten)]
    problem: &'a Problem,
    request_id: &'a str,
}

impl Problem {
    /// Serializes the problem with the request's id.
    pub fn to_json(&self, request_id: &str) -> Vec<u8> {
        serde_json::to_vec(&RenderedProblem {
            problem: self,
            request_id,
        })
        .unwrap_or_else(|_| b"{}".to_vec())
    }
}

impl Error {
    /// Failures of the upstream (not of the client's request): a route's `fallback` answers
    /// in their place.
    pub fn is_upstream_failure(&self) -> bool {
        matches!(
            self,
            Error::UpstreamTimeout { .. }
                | Error::UpstreamUnavailable { .. }
                | Error::IncompleteResponse
                | Error::Overloaded { .. }
                | Error::CircuitOpen { .. }
                | Error::NoHealthyTarget { .. }
                | Error::DeadlineExceeded
                | Error::AwsThrottled { .. }
                | Error::AwsFailed { .. }
                | Error::AwsTimeout { .. }
        )
    }

    pub fn status(&self) -> StatusCode {
        self.class().1
    }

    /// The problem type (RFC 9457 §3.1.1: a stable identifier clients may switch on) and the
    /// status of every error, in one place, so a new variant cannot go without either.
    fn class(&self) -> (&'static str, StatusCode) {
        macro_rules! urn {
            ($slug:literal) => {
                concat!("urn:proxyfn:problem:", $slug)
            };
        }
        match self {
            Error::RouteNotFound => (urn!("route-not-found"), StatusCode::NOT_FOUND),
            Error::MethodNotAllowed { .. } => {
                (urn!("method-not-allowed"), StatusCode::METHOD_NOT_ALLOWED)
            }
            Error::InvalidPath(_) => (urn!("invalid-path"), StatusCode::BAD_REQUEST),
            Error::InvalidHost(_) => (urn!("invalid-host"), StatusCode::BAD_REQUEST),
            Error::AmbiguousFraming(_) => (urn!("ambiguous-framing"), StatusCode::BAD_REQUEST),
            Error::MalformedEvent(_) => (urn!("malformed-event"), StatusCode::BAD_REQUEST),
            Error::InvalidHeaderName => (urn!("invalid-header"), StatusCode::BAD_REQUEST),
            Error::UnsupportedTransferCoding => (
                urn!("unsupported-transfer-coding"),
                StatusCode::NOT_IMPLEMENTED,
            ),
            Error::PayloadTooLarge { .. } => {
                (urn!("payload-too-large"), StatusCode::PAYLOAD_TOO_LARGE)
            }
            Error::HeadersTooLarge { .. } => (
                urn!("headers-too-large"),
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ),
            Error::BadRequestBody(_) => (urn!("bad-request-body"), StatusCode::BAD_REQUEST),
            Error::ClientBodyTimeout { .. } => {
                (urn!("client-body-timeout"), StatusCode::REQUEST_TIMEOUT)
            }
            Error::ResponseTooLarge { .. } => (urn!("response-too-large"), StatusCode::BAD_GATEWAY),
            Error::DeadlineExceeded => (urn!("gateway-timeout"), StatusCode::GATEWAY_TIMEOUT),
            Error::UpstreamTimeout { .. } => {
                (urn!("upstream-timeout"), StatusCode::GATEWAY_TIMEOUT)
            }
            Error::UpstreamUnavailable { .. } => {
                (urn!("upstream-unavailable"), StatusCode::BAD_GATEWAY)
            }
            Error::IncompleteResponse => (
                urn!("upstream-response-incomplete"),
                StatusCode::BAD_GATEWAY,
            ),
            Error::Overloaded { .. } => {
                (urn!("upstream-overloaded"), StatusCode::SERVICE_UNAVAILABLE)
            }
            Error::CircuitOpen { .. } => (urn!("circuit-open"), StatusCode::SERVICE_UNAVAILABLE),
            Error::NoHealthyTarget { .. } => {
                (urn!("no-healthy-upstream"), StatusCode::SERVICE_UNAVAILABLE)
            }
            Error::FaultInjected { status } => (urn!("fault-injected"), *status),
            Error::Unauthorized { .. } => (urn!("unauthorized"), StatusCode::UNAUTHORIZED),
            Error::Forbidden { .. } => (urn!("insufficient-scope"), StatusCode::FORBIDDEN),
            Error::AuthUnavailable { .. } => {
                (urn!("auth-unavailable"), StatusCode::SERVICE_UNAVAILABLE)
            }
            Error::RateLimited { .. } => (urn!("rate-limited"), StatusCode::TOO_MANY_REQUESTS),
            Error::RateLimitUnavailable => (
                urn!("rate-limit-unavailable"),
                StatusCode::SERVICE_UNAVAILABLE,
            ),
            Error::UnsupportedMediaType { .. } => (
                urn!("unsupported-media-type"),
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ),
            Error::UnsupportedContentEncoding => (
                urn!("unsupported-content-encoding"),
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ),
            Error::UnknownVersion { .. } => (urn!("unknown-version"), StatusCode::NOT_FOUND),
            Error::AggregationFailed(_) => (urn!("aggregation-failed"), StatusCode::BAD_GATEWAY),
            Error::InvalidJson(_) => (urn!("invalid-json"), StatusCode::BAD_REQUEST),
            Error::ValidationFailed(_) => (urn!("validation-failed"), StatusCode::BAD_REQUEST),
            Error::MissingValue { .. } => (urn!("missing-value"), StatusCode::BAD_REQUEST),
            Error::InvalidBody(_) => (urn!("invalid-body"), StatusCode::BAD_REQUEST),
            Error::NotFound { .. } => (urn!("not-found"), StatusCode::NOT_FOUND),
            Error::PreconditionFailed => {
                (urn!("precondition-failed"), StatusCode::PRECONDITION_FAILED)
            }
            Error::RangeNotSatisfiable => (
                urn!("range-not-satisfiable"),
                StatusCode::RANGE_NOT_SATISFIABLE,
            ),
            Error::AwsThrottled { .. } => (urn!("aws-throttled"), StatusCode::SERVICE_UNAVAILABLE),
            Error::AwsConflict { .. } => (urn!("aws-conflict"), StatusCode::CONFLICT),
            Error::AwsFailed { .. } => (urn!("aws-failed"), StatusCode::BAD_GATEWAY),
            Error::AwsTimeout { .. } => (urn!("aws-timeout"), StatusCode::GATEWAY_TIMEOUT),
            Error::Internal(_) => (urn!("internal"), StatusCode::INTERNAL_SERVER_ERROR),
        }
    }

    /// The problem a client sees: a stable `type`, and a detail that names no internals.
    pub fn problem(&self) -> Problem {
        let (kind, status) = self.class();
        Problem {
            kind,
            title: title(status),
            status: status.as_u16(),
            detail: self.detail(),
            errors: match self {
                Error::ValidationFailed(errors) => Some(errors.clone()),
                _ => None,
            },
        }
    }

    fn detail(&self) -> String {
        match self {
            Error::RouteNotFound => "No route matches this path.".to_owned(),
            Error::MethodNotAllowed { allow } => format!(
                    "This route accepts: {}.",
                    allow.to_str().unwrap_or_default()
                ),
            Error::InvalidPath(why) => format!("The request path is not acceptable: {why}."),
            Error::InvalidHost(why) => format!("The request's Host is not acceptable: {why}."),
            Error::AmbiguousFraming(why) => format!("The request's length is ambiguous: {why}."),
            Error::MalformedEvent(why) => format!("The Lambda event does not describe a valid HTTP request: {why}."),
            Error::InvalidHeaderName => "Header names with '_' are not accepted; use '-'.".to_owned(),
            Error::UnsupportedTransferCoding => "The only transfer coding accepted is chunked; send other codings as Content-Encoding."
                    .to_owned(),
            Error::PayloadTooLarge { limit } => format!("The request body exceeds the limit of {limit} bytes."),
            Error::HeadersTooLarge { limit } => format!("The request headers exceed the limit of {limit} bytes."),
            Error::BadRequestBody(_) => "The request body could not be read.".to_owned(),
            Error::ClientBodyTimeout { timeout } => format!(
                    "The request body stopped arriving: nothing came for {}.",
                    humantime::format_duration(*timeout)
                ),
            Error::ResponseTooLarge { limit } => format!(
                    "The response is larger than the {limit} bytes a Lambda invocation may answer."
                ),
            Error::DeadlineExceeded => "The request did not complete within the gateway's deadline.".to_owned(),
            Error::UpstreamTimeout { upstream } => format!("The upstream service '{upstream}' did not answer in time."),
            Error::UpstreamUnavailable { upstream, .. } => format!("The upstream service '{upstream}' could not be reached."),
            Error::IncompleteResponse => "The upstream response failed before it was complete.".to_owned(),
            Error::Overloaded { upstream } => format!(
                    "The upstream service '{upstream}' is at its concurrency limit; retry shortly."
                ),
            Error::CircuitOpen { upstream, .. } => format!("The upstream service '{upstream}' is failing; calls are paused."),
            Error::NoHealthyTarget { upstream } => format!("The upstream service '{upstream}' has no healthy target."),
            Error::FaultInjected { .. } => "This error was injected by the route's fault configuration.".to_owned(),
            Error::Unauthorized { reason, .. } => reason.describe().to_owned(),
            Error::Forbidden { missing, .. } => format!("The credentials lack the scopes this route requires: {missing}."),
            Error::AuthUnavailable { .. } => "Credentials cannot be verified right now; retry shortly.".to_owned(),
            Error::RateLimited { retry_after, .. } => format!(
                    "This client has exceeded the route's rate limit; retry in {} s.",
                    retry_after_seconds(*retry_after)
                ),
            Error::RateLimitUnavailable => "Rate limits cannot be checked right now; retry shortly.".to_owned(),
            Error::UnsupportedMediaType { expected } => format!("This route takes a body of type {expected}."),
            Error::UnsupportedContentEncoding => "This route reads the request body: send it uncompressed, or as gzip or br."
                    .to_owned(),
            Error::UnknownVersion { requested, known } => match requested {
                    Some(requested) => format!(
                        "API version {requested:?} is not served on this path; known versions: {known}."
                    ),
                    None => format!(
                        "This path is versioned and the request names no version; known versions: {known}."
                    ),
                },
            Error::AggregationFailed(detail) => detail.clone(),
            Error::InvalidJson(position) => format!("The request body is not valid JSON ({position})."),
            Error::ValidationFailed(errors) => format!(
                    "The request body does not match the route's schema: {} error(s), listed in `errors`.",
                    errors.len()
                ),
            Error::MissingValue { placeholder } => {
                format!("The request lacks {placeholder}, which this route needs.")
            }
            Error::InvalidBody(why) => format!("The request body is not acceptable: {why}."),
            Error::NotFound { what } => format!("There is no such {what}."),
            Error::PreconditionFailed => {
                "A precondition of the request (If-Match) does not hold.".to_owned()
            }
            Error::RangeNotSatisfiable => {
                "The requested range lies outside the object.".to_owned()
            }
            Error::AwsThrottled { service } => format!(
                "The AWS service '{service}' is throttling calls; retry shortly."
            ),
            Error::AwsConflict { service } => format!(
                "The request conflicts with the current state of the resource in AWS '{service}'."
            ),
            Error::AwsFailed { service } => {
                format!("The AWS service '{service}' failed to handle the request.")
            }
            Error::AwsTimeout { service } => {
                format!("The AWS service '{service}' did not answer in time.")
            }
            Error::Internal(_) => "The gateway failed to handle the request.".to_owned(),
        }
    }

    /// Logs the internal cause at a level that fits it (client-side errors are not logged).
    /// Failures of the gateway's dependencies repeat with every request while they last, so
    /// each kind is logged at most once a second, with the number held back.
    pub(crate) fn log(&self) {
        use crate::observability::throttle::Throttle;
        static UNREACHABLE: Throttle = Throttle::new();
        static TIMED_OUT: Throttle = Throttle::new();
        static DEADLINE: Throttle = Throttle::new();
        static SHED: Throttle = Throttle::new();
        static OPEN: Throttle = Throttle::new();
        static NO_TARGET: Throttle = Throttle::new();
        match self {
            Error::Internal(cause) => tracing::error!(error = %cause, "internal error"),
            Error::UpstreamUnavailable { upstream, source } => {
                if let Some(held_back) = UNREACHABLE.admit() {
                    let cause = causes(&**source)
                        .skip(1)
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(": ");
                    tracing::warn!(%upstream, error = %source, %cause, held_back, "upstream unreachable");
                }
            }
            Error::UpstreamTimeout { upstream } => {
                if let Some(held_back) = TIMED_OUT.admit() {
                    tracing::warn!(%upstream, held_back, "upstream timed out");
                }
            }
            Error::BadRequestBody(cause) => {
                tracing::info!(error = %cause, "request body read failed")
            }
            Error::ClientBodyTimeout { .. } => {
                tracing::info!("the client stopped sending its request body: the client's fault")
            }
            Error::DeadlineExceeded => {
                if let Some(held_back) = DEADLINE.admit() {
                    tracing::warn!(held_back, "request deadline exceeded");
                }
            }
            Error::Overloaded { upstream } => {
                if let Some(held_back) = SHED.admit() {
                    tracing::warn!(%upstream, held_back, "request shed: upstream at max_concurrency");
                }
            }
            Error::CircuitOpen { upstream, .. } => {
                if let Some(held_back) = OPEN.admit() {
                    tracing::info!(%upstream, held_back, "rejected: circuit breaker open");
                }
            }
            Error::NoHealthyTarget { upstream } => {
                if let Some(held_back) = NO_TARGET.admit() {
                    tracing::warn!(%upstream, held_back, "no healthy upstream target");
                }
            }
            _ => {}
        }
    }
}

/// Whole seconds for `Retry-After` (RFC 9110 §10.2.3), rounded up and at least 1, so a
/// client that waits as told is not refused again.
pub fn retry_after_seconds(wait: Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}

/// `error` and its sources, outermost first.
pub fn causes<'a>(
    error: &'a (dyn std::error::Error + 'static),
) -> impl Iterator<Item = &'a (dyn std::error::Error + 'static)> {
    std::iter::successors(Some(error), |e| e.source())
}

/// Whether `error`, or anything in its source chain, is a `T`.
pub fn caused_by<T: std::error::Error + 'static>(
    error: &(dyn std::error::Error + 'static),
) -> bool {
    causes(error).any(|e| e.is::<T>())
}

/// The title of a problem: its status's reason phrase (RFC 9457 §3.1.3), as RFC 9110 names it.
fn title(status: StatusCode) -> &'static str {
    match status {
        StatusCode::PAYLOAD_TOO_LARGE => "Content Too Large",
        _ => status.canonical_reason().unwrap_or("Unknown Status"),
    }
}

/// Writes the [`Problem`] an error left on `response` into its body, with the request's id.
/// A response without a problem is left alone.
pub fn render_problem(response: &mut Response, request_id: &HeaderValue) {
    if let Some(problem) = response.extensions_mut().remove::<Problem>() {
        let body = problem.to_json(request_id.to_str().unwrap_or_default());
        response
            .headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
        *response.body_mut() = axum::body::Body::from(body);
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        self.log();
        let mut response = self.status().into_response();
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, PROBLEM_JSON);
        match &self {
            Error::MethodNotAllowed { allow } => {
                response.headers_mut().insert(header::ALLOW, allow.clone());
            }
            // RFC 9110 §12.5.3: a 415 for a content coding lists the codings understood.
            Error::UnsupportedContentEncoding => {
                response.headers_mut().insert(
                    header::ACCEPT_ENCODING,
                    HeaderValue::from_static("gzip, br"),
                );
            }
            Error::AwsThrottled { .. } => {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            // RFC 9110 §10.2.3: tell clients when trying again makes sense.
            Error::CircuitOpen { retry_after, .. } => {
                response.headers_mut().insert(
                    header::RETRY_AFTER,
                    HeaderValue::from(retry_after_seconds(*retry_after)),
                );
            }
            Error::RateLimited {
                retry_after,
                headers,
            } => {
                response.headers_mut().extend(
                    headers
                        .iter()
                        .map(|(name, value)| (name.clone(), value.clone())),
                );
                response.headers_mut().insert(
                    header::RETRY_AFTER,
                    HeaderValue::from(retry_after_seconds(*retry_after)),
                );
            }
            Error::Overloaded { .. }
            | Error::NoHealthyTarget { .. }
            | Error::RateLimitUnavailable => {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            // RFC 9110 §15.5.9: the connection is closed; the rest of the body never comes.
            Error::ClientBodyTimeout { .. } => {
                response
                    .headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            Error::Unauthorized { challenge, .. } | Error::Forbidden { challenge, .. } => {
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, challenge.clone());
            }
            Error::AuthUnavailable { retry_after } => {
                let seconds = retry_after.as_secs().max(1);
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
            }
            _ => {}
        }
        response.extensions_mut().insert(self.problem());
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problems_render_with_the_request_id() {
        let json: serde_json::Value =
            serde_json::from_slice(&Error::RouteNotFound.problem().to_json("abc")).unwrap();
        assert_eq!(json["type"], "urn:proxyfn:problem:route-not-found");
        assert_eq!(json["status"], 404);
        assert_eq!(json["title"], "Not Found");
        assert_eq!(json["request_id"], "abc");
        assert!(json["detail"].as_str().unwrap().contains("No route"));
    }

    #[test]
    fn internal_causes_stay_out_of_the_detail() {
        let problem = Error::Internal("db password=hunter2".into()).problem();
        assert!(!problem.detail.contains("hunter2"));
        assert_eq!(problem.status, 500);
    }

    #[test]
    fn every_error_has_a_typed_problem_and_a_title() {
        let errors = [
            Error::RouteNotFound,
            Error::MethodNotAllowed {
                allow: HeaderValue::from_static("GET"),
            },
            Error::InvalidPath("x"),
            Error::InvalidHost("x"),
            Error::AmbiguousFraming("x"),
            Error::MalformedEvent("x"),
            Error::InvalidHeaderName,
            Error::UnsupportedTransferCoding,
            Error::PayloadTooLarge { limit: 1 },
            Error::HeadersTooLarge { limit: 1 },
            Error::BadRequestBody("x".into()),
            Error::ClientBodyTimeout {
                timeout: Duration::from_secs(30),
            },
            Error::ResponseTooLarge { limit: 1 },
            Error::DeadlineExceeded,
            Error::UpstreamTimeout {
                upstream: "u".into(),
            },
            Error::IncompleteResponse,
            Error::Overloaded {
                upstream: "u".into(),
            },
            Error::CircuitOpen {
                upstream: "u".into(),
                retry_after: Duration::from_millis(1500),
            },
            Error::NoHealthyTarget {
                upstream: "u".into(),
            },
            Error::FaultInjected {
                status: StatusCode::IM_A_TEAPOT,
            },
            Error::Unauthorized {
                reason: crate::auth::Reason::Expired,
                challenge: HeaderValue::from_static("Bearer"),
            },
            Error::Forbidden {
                missing: "a".into(),
                challenge: HeaderValue::from_static("Bearer"),
            },
            Error::AuthUnavailable {
                retry_after: Duration::from_secs(30),
            },
            Error::RateLimited {
                retry_after: Duration::from_millis(1200),
                headers: Default::default(),
            },
            Error::RateLimitUnavailable,
            Error::Internal("x".into()),
        ];
        for error in errors {
            let problem = error.problem();
            assert!(
                problem.kind.starts_with("urn:proxyfn:problem:"),
                "{error:?}"
            );
            assert_ne!(problem.title, "Unknown Status", "{error:?}");
        }
    }
}
