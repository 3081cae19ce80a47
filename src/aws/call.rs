//! One AWS call of a route: what it reads from the request (body, templates' values,
//! correlation id, deadline), the [`Guard`] that keeps its retries inside the deadline and
//! counts its attempts, how an SDK error becomes the client's problem, and its log line.

// A build with only some services leaves some of these helpers unused.
#![cfg_attr(
    not(all(
        feature = "sqs",
        feature = "sns",
        feature = "s3",
        feature = "dynamodb",
        feature = "kinesis",
        feature = "eventbridge",
        feature = "step-functions"
    )),
    allow(dead_code)
)]

use std::{
    sync::{
        Arc,
        atomic::{AtomicU32, Ordering},
    },
    time::{Duration, Instant},
};

use aws_smithy_runtime_api::client::{
    interceptors::{Intercept, context::BeforeTransmitInterceptorContextRef},
    orchestrator::HttpResponse,
    result::SdkError,
    retries::classifiers::{ClassifyRetry, RetryAction, RetryClassifierPriority, RetryReason},
    runtime_components::RuntimeComponents,
};
use aws_smithy_types::{
    config_bag::ConfigBag, error::metadata::ProvideErrorMetadata, timeout::TimeoutConfig,
};
use aws_types::request_id::RequestId as _;
use axum::{body::Body, extract::Request, response::Response};
use bytes::Bytes;
use http::request::Parts;

use super::config::{AwsSettings, CorrelationSource};
use crate::{
    auth::Principal,
    context::RequestContext,
    error::Error,
    observability::RequestId,
    template::{Missing, Template, Values},
};

/// Whether a call reads the request body whole before it starts, or streams it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyUse {
    Whole,
    Stream,
}

/// Error codes the AWS SDKs treat as throttling: after the retries, 503 with `Retry-After`.
pub(super) const THROTTLING: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottledException",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "TransactionInProgressException",
    "RequestLimitExceeded",
    "BandwidthLimitExceeded",
    "LimitExceededException",
    "RequestThrottled",
    "SlowDown",
    "PriorRequestNotComplete",
    "KMSThrottlingException",
];

/// Codes of a request the service refused as in conflict with the resource's state: 409.
const CONFLICT: &[&str] = &[
    "ConditionalCheckFailedException",
    "TransactionConflictException",
    "ExecutionAlreadyExists",
    "PreconditionFailed",
];

/// Codes of a configuration that cannot work: missing permissions or resources, bad
/// credentials. 502, and the log names the action and the resource.
const REFUSED: &[&str] = &[
    "AccessDenied",
    "AccessDeniedException",
    "AuthorizationError",
    "UnauthorizedOperation",
    "InvalidClientTokenId",
    "UnrecognizedClientException",
    "ExpiredToken",
    "ExpiredTokenException",
    "SignatureDoesNotMatch",
    "InvalidSignatureException",
    "MissingAuthenticationToken",
    "AWS.SimpleQueueService.NonExistentQueue",
    "QueueDoesNotExist",
    "ResourceNotFoundException",
    "NoSuchBucket",
    "StateMachineDoesNotExist",
    "StateMachineDeleting",
    "KMSAccessDeniedException",
    "KMSDisabledException",
    "KMSNotFoundException",
];

/// One call in progress.
pub struct Call {
    pub parts: Parts,
    /// The body, read whole ([`BodyUse::Whole`]).
    pub body: Bytes,
    /// The body still arriving ([`BodyUse::Stream`]).
    stream: Option<Body>,
    pub body_limit: u64,
    params: Vec<(String, String)>,
    request_id: String,
    pub correlation_id: String,
    deadline: Instant,
    attempt_timeout: Duration,
    pub guard: Guard,
    started: Instant,
    /// The service, as in the route key (`sqs`).
    service: &'static str,
    /// The SDK operation, for the log (`SendMessage`).
    pub action: &'static str,
    /// The resource it acts on, for the log (a queue URL, `bucket/key`).
    pub resource: String,
    aws_request_id: Option<String>,
    error_code: Option<String>,
}

impl Call {
    pub async fn begin(
        request: Request,
        params: Vec<(String, String)>,
        settings: &AwsSettings,
        body_use: BodyUse,
    ) -> Result<Self, Error> {
        let (parts, body) = request.into_parts();
        let context = RequestContext::of(&parts.extensions);
        let deadline = context.map_or_else(
            || Instant::now() + Duration::from_secs(29),
            |context| context.deadline,
        );
        let body_limit = context.map_or(u64::MAX, |context| context.body_limit);
        let (body, stream) = match body_use {
            BodyUse::Whole => (crate::limits::read_whole_body(&parts, body).await?.0, None),
            BodyUse::Stream => (Bytes::new(), Some(body)),
        };
        let request_id = parts
            .extensions
            .get::<RequestId>()
            .map(|id| id.as_str().to_owned())
            .unwrap_or_default();
        let json = std::sync::OnceLock::new();
        let correlation_id = correlation_id(
            &settings.correlation,
            &parts.headers,
            parts.uri.query(),
            |pointer| {
                json.get_or_init(|| serde_json::from_slice::<serde_json::Value>(&body).ok())
                    .as_ref()
                    .and_then(|json| json.pointer(pointer))
                    .and_then(|value| match value {
                        serde_json::Value::String(text) if !text.is_empty() => Some(text.clone()),
                        serde_json::Value::Number(number) => Some(number.to_string()),
                        _ => None,
                    })
            },
        )
        .unwrap_or_else(|| request_id.clone());
        Ok(Self {
            guard: Guard::new(deadline, settings),
            parts,
            body,
            stream,
            body_limit,
            params,
            request_id,
            correlation_id,
            deadline,
            attempt_timeout: settings.attempt_timeout,
            started: Instant::now(),
            service: "aws",
            action: "",
            resource: String::new(),
            aws_request_id: None,
            error_code: None,
        })
    }

    /// The body of a streaming call, once.
    pub fn take_stream(&mut self) -> Body {
        self.stream.take().unwrap_or_default()
    }

    /// Names the service, the operation and its resource, for the log.
    pub fn describe(
        &mut self,
        service: &'static str,
        action: &'static str,
        resource: impl Into<String>,
    ) {
        self.service = service;
        self.action = action;
        self.resource = resource.into();
    }

    /// `template` with this request's values.
    pub fn render(&self, template: &Template) -> Result<String, Error> {
        let principal = self.parts.extensions.get::<Principal>();
        let made;
        let claims = match principal {
            Some(Principal {
                claims: Some(claims),
                ..
            }) => Some(&**claims),
            Some(principal) => {
                made = api_key_claims(principal);
                Some(&made)
            }
            None => None,
        };
        let values = Values::new(
            &self.params,
            self.parts.uri.query(),
            &self.parts.headers,
            &self.body,
            &self.request_id,
            &self.correlation_id,
            claims,
        );
        template
            .render(&values)
            .map_err(|Missing(placeholder)| Error::MissingValue { placeholder })
    }

    pub fn render_opt(&self, template: Option<&Template>) -> Result<Option<String>, Error> {
        template.map(|t| self.render(t)).transpose()
    }

    /// The body as text: the messaging services carry text, not bytes.
    pub fn text_body(&self) -> Result<&str, Error> {
        std::str::from_utf8(&self.body)
            .map_err(|_| Error::InvalidBody("the message must be UTF-8 text"))
    }

    /// The body as JSON.
    pub fn json_body(&self) -> Result<serde_json::Value, Error> {
        serde_json::from_slice(&self.body).map_err(|error| {
            Error::InvalidJson(format!("line {}, column {}", error.line(), error.column()))
        })
    }

    /// Refuses a body larger than the service takes (413).
    pub fn at_most(&self, limit: usize) -> Result<(), Error> {
        if self.body.len() > limit {
            return Err(Error::PayloadTooLarge {
                limit: limit as u64,
            });
        }
        Ok(())
    }

    /// The timeouts of this call: the whole operation until the deadline, each attempt at
    /// most `[aws] attempt_timeout`. Past the deadline already: 504.
    pub fn timeouts(&self) -> Result<TimeoutConfig, Error> {
        let remaining = self
            .deadline
            .checked_duration_since(Instant::now())
            .filter(|left| !left.is_zero())
            .ok_or(Error::DeadlineExceeded)?;
        let attempt = self.attempt_timeout.min(remaining);
        Ok(TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(3).min(attempt))
            .operation_attempt_timeout(attempt)
            .operation_timeout(remaining)
            .build())
    }

    /// Records a successful answer's request id.
    pub fn succeeded(&mut self, output: &impl aws_types::request_id::RequestId) {
        self.aws_request_id = output.request_id().map(str::to_owned);
    }

    /// The output of a sent call, its request id recorded; or the client's problem.
    pub fn settle<O, E>(&mut self, result: Result<O, SdkError<E, HttpResponse>>) -> Result<O, Error>
    where
        O: aws_types::request_id::RequestId,
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        match result {
            Ok(output) => {
                self.succeeded(&output);
                Ok(output)
            }
            Err(error) => Err(self.failed(error)),
        }
    }

    /// The problem an SDK error is for the client; the cause is logged with the call.
    pub fn failed<E>(&mut self, error: SdkError<E, HttpResponse>) -> Error
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        self.aws_request_id = error.request_id().map(str::to_owned);
        let service = self.service;
        let status = error.raw_response().map(|r| r.status().as_u16());
        match &error {
            SdkError::TimeoutError(_) => {
                self.error_code = Some("timeout".into());
                return if Instant::now() >= self.deadline {
                    Error::DeadlineExceeded
                } else {
                    Error::AwsTimeout { service }
                };
            }
            SdkError::DispatchFailure(failure) => {
                self.error_code = Some(if failure.is_timeout() {
                    "timeout".into()
                } else {
                    "dispatch_failure".into()
                });
                tracing::warn!(service, action = self.action, resource = %self.resource, error = %aws_smithy_types::error::display::DisplayErrorContext(&error), "AWS call could not be sent");
                return if failure.is_timeout() {
                    Error::AwsTimeout { service }
                } else {
                    Error::AwsFailed { service }
                };
            }
            SdkError::ConstructionFailure(_) => {
                return Error::Internal(format!(
                    "cannot build the {service} request: {}",
                    aws_smithy_types::error::display::DisplayErrorContext(&error)
                ));
            }
            _ => {}
        }
        let code = error.code().unwrap_or("").to_owned();
        let message = error.message().unwrap_or("").to_owned();
        self.error_code = Some(if code.is_empty() {
            status.map_or_else(|| "unknown".to_owned(), |s| s.to_string())
        } else {
            code.clone()
        });
        let code = code.as_str();
        if THROTTLING.contains(&code) {
            Error::AwsThrottled { service }
        } else if CONFLICT.contains(&code) {
            Error::AwsConflict { service }
        } else if matches!(code, "EntityTooLarge" | "RequestEntityTooLarge") || status == Some(413)
        {
            Error::PayloadTooLarge {
                limit: self.body_limit,
            }
        } else if REFUSED.contains(&code) || code.starts_with("KMS") {
            tracing::error!(
                service,
                action = self.action,
                resource = %self.resource,
                code,
                message,
                "AWS refused the call: check the IAM policy (`proxyfn iam`) and that the resource exists"
            );
            Error::AwsFailed { service }
        } else {
            tracing::warn!(service, action = self.action, resource = %self.resource, code, message, status, "AWS call failed");
            Error::AwsFailed { service }
        }
    }

    /// Notes an error the service reported inside a successful answer (an EventBridge
    /// entry it refused), for the log line.
    pub fn note_error_code(&mut self, code: &str) {
        self.error_code = Some(code.to_owned());
    }

    /// Notes the service's own "not found" answer (an S3 `NoSuchKey`) as the client's 404.
    pub fn not_found(&mut self, what: &'static str) -> Error {
        self.error_code = Some("not_found".into());
        Error::NotFound { what }
    }

    /// The call's log line: service, action, resource, attempts, AWS request id, error code,
    /// latency and correlation id.
    pub fn finish(&self, route: &str, result: &Result<Response, Error>) {
        let latency_ms = self.started.elapsed().as_secs_f64() * 1000.0;
        let attempts = self.guard.attempts();
        let status = match result {
            Ok(response) => response.status().as_u16(),
            Err(error) => error.status().as_u16(),
        };
        tracing::info!(
            target: "proxyfn::aws",
            route,
            service = self.service,
            action = self.action,
            resource = %self.resource,
            attempts,
            aws_request_id = self.aws_request_id.as_deref(),
            error_code = self.error_code.as_deref(),
            status,
            latency_ms,
            correlation_id = %self.correlation_id,
            "aws call"
        );
    }
}

/// The first correlation id a request carries, from the configured places in order.
fn correlation_id(
    sources: &[CorrelationSource],
    headers: &http::HeaderMap,
    query: Option<&str>,
    json: impl Fn(&str) -> Option<String>,
) -> Option<String> {
    sources.iter().find_map(|source| match source {
        CorrelationSource::Header(name) => headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty())
            .map(str::to_owned),
        CorrelationSource::Query(name) => query.and_then(|query| {
            url::form_urlencoded::parse(query.as_bytes())
                .find(|(key, value)| key == name && !value.is_empty())
                .map(|(_, value)| value.into_owned())
        }),
        CorrelationSource::Body(pointer) => json(pointer),
    })
}

/// An API key's claims, for templates: its id as `sub`, its scopes as `scope`.
fn api_key_claims(principal: &Principal) -> serde_json::Map<String, serde_json::Value> {
    let mut claims = serde_json::Map::new();
    claims.insert("sub".into(), principal.id.clone().into());
    claims.insert("scope".into(), principal.scopes.join(" ").into());
    claims
}

/// Keeps a call's retries inside its deadline and counts its attempts. As a retry
/// classifier it runs after the SDK's own: when they would retry but the next attempt
/// (its longest backoff, then a whole attempt) could not finish before the deadline, it
/// forbids the retry, so the client gets the last answer instead of a timeout.
#[derive(Clone, Debug)]
pub struct Guard(Arc<GuardState>);

#[derive(Debug)]
struct GuardState {
    deadline: Instant,
    attempt_timeout: Duration,
    initial_backoff: Duration,
    max_backoff: Duration,
    attempts: AtomicU32,
}

impl Guard {
    fn new(deadline: Instant, settings: &AwsSettings) -> Self {
        Self(Arc::new(GuardState {
            deadline,
            attempt_timeout: settings.attempt_timeout,
            initial_backoff: settings.initial_backoff,
            max_backoff: settings.max_backoff,
            attempts: AtomicU32::new(0),
        }))
    }

    pub fn attempts(&self) -> u32 {
        self.0.attempts.load(Ordering::Relaxed)
    }

    /// The longest the SDK waits before retry `attempt + 1` (full jitter: a random delay up
    /// to this), or the service's own `retry_after`.
    fn longest_backoff(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        if let Some(asked) = retry_after {
            return asked;
        }
        let exponent = attempt.saturating_sub(1).min(16);
        self.0
            .initial_backoff
            .saturating_mul(1 << exponent)
            .min(self.0.max_backoff)
    }
}

impl ClassifyRetry for Guard {
    fn classify_retry(
        &self,
        _ctx: &aws_smithy_runtime_api::client::interceptors::context::InterceptorContext,
    ) -> RetryAction {
        RetryAction::NoActionIndicated
    }

    fn classify_retry_v2(
        &self,
        _ctx: &aws_smithy_runtime_api::client::interceptors::context::InterceptorContext,
        previous: &RetryAction,
    ) -> RetryAction {
        let RetryAction::RetryIndicated(reason) = previous else {
            return RetryAction::NoActionIndicated;
        };
        let retry_after = match reason {
            RetryReason::RetryableError { retry_after, .. } => *retry_after,
            _ => None,
        };
        let state = &self.0;
        let next = Instant::now()
            + self.longest_backoff(self.attempts(), retry_after)
            + state.attempt_timeout;
        if next > state.deadline {
            tracing::info!(
                attempts = self.attempts(),
                "no AWS retry: it could not finish before the request's deadline"
            );
            return RetryAction::RetryForbidden;
        }
        RetryAction::NoActionIndicated
    }

    fn name(&self) -> &'static str {
        "proxyfn-deadline"
    }

    fn priority(&self) -> RetryClassifierPriority {
        // After the SDK's classifiers, whose verdict it may only forbid.
        RetryClassifierPriority::run_after(RetryClassifierPriority::run_after(
            RetryClassifierPriority::transient_error_classifier(),
        ))
    }
}

impl Intercept for Guard {
    fn name(&self) -> &'static str {
        "proxyfn-attempts"
    }

    fn read_before_attempt(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), aws_smithy_runtime_api::box_error::BoxError> {
        self.0.attempts.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// The per-call configuration of a service client: the call's timeouts, its [`Guard`] as
/// retry classifier and attempt counter. `$service` is the SDK crate.
macro_rules! per_call {
    ($service:ident, $call:expr) => {
        $service::config::Builder::new()
            .timeout_config($call.timeouts()?)
            .retry_classifier($call.guard.clone())
            .interceptor($call.guard.clone())
    };
}
pub(crate) use per_call;

/// A route's service client: the shared base configuration, `configure`d (S3's addressing),
/// with the route's fault-injecting HTTP client when it has one. `$service` is the SDK crate.
macro_rules! service_client {
    ($service:ident, $base:expr, $http:expr) => {
        $crate::aws::call::service_client!($service, $base, $http, |config| config)
    };
    ($service:ident, $base:expr, $http:expr, $configure:expr) => {{
        let mut config = ($configure)($service::config::Builder::from($base));
        if let Some(http) = $http {
            config = config.http_client(http);
        }
        $service::Client::from_conf(config.build())
    }};
}
pub(crate) use service_client;

/// A JSON answer of `status`.
pub fn json_response(status: http::StatusCode, body: &serde_json::Value) -> Response {
    let mut response = Response::new(Body::from(serde_json::to_vec(body).unwrap_or_default()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}
