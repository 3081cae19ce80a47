//! Lambda mode: the router behind API Gateway (REST payload 1.0, HTTP API payload 2.0), a
//! Function URL or an ALB, through the Lambda Runtime API.
//!
//! lambda_runtime runs the Runtime API loop; the events are decoded and the responses built by
//! proxyfn itself ([`event`], [`response`]): lambda_http's conversions lose repeated headers,
//! strip path segments that are not the stage and panic on values a URI cannot hold, and a
//! response it cannot serialize ends the process. Events that are not HTTP requests
//! (WebSocket, VPC Lattice, batches) are answered with an invocation error that names them;
//! the next invocation is served as usual.
//!
//! A buffered answer is bounded: its body is collected only until the request's deadline
//! (then 504 `gateway-timeout`), and an answer whose JSON would exceed `lambda.max_response`
//! (Lambda refuses more than 6 MB, and base64 makes binary bodies a third larger) is 502
//! `response-too-large` instead of an invocation Lambda rejects. In stream mode ([`stream`])
//! the answers of front doors that can stream (Function URLs, REST APIs) go out as they
//! arrive instead; HTTP APIs and ALB cannot stream and are always answered buffered.
//!
//! With `AWS_LAMBDA_MAX_CONCURRENCY` (Lambda Managed Instances) the process serves that many
//! invocations at once ([`run`]), on the same router.

pub mod event;
pub mod response;
pub mod stream;

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant, UNIX_EPOCH},
};

use axum::{Router, body::Body, extract::Request, response::Response};
use bytes::Bytes;
use http::{HeaderValue, header};
use http_body_util::BodyExt;
use lambda_http::{
    LambdaEvent,
    lambda_runtime::{self, Diagnostic, FunctionResponse},
};
use serde_json::value::RawValue;
use tower::ServiceExt;

use super::LAMBDA_RUNTIME_API;
use crate::{
    App,
    config::Plan,
    context::{Arrival, Entry, Invocation, RequestContext},
    error::{Error, PROBLEM_JSON},
    observability::{ColdStart, X_REQUEST_ID},
    runtime::config::ResponseMode,
};
pub use event::{Event, FrontDoor};
pub use response::LambdaResponse;

/// The error type of an invocation proxyfn cannot serve (`/invocation/{id}/error`).
pub const UNSUPPORTED_EVENT: &str = "UnsupportedEvent";

/// The environment variable with which Lambda Managed Instances say how many invocations
/// one process serves at once.
pub const MAX_CONCURRENCY: &str = "AWS_LAMBDA_MAX_CONCURRENCY";

/// How many invocations this process serves at once: `AWS_LAMBDA_MAX_CONCURRENCY` when it is
/// above 1, else one at a time.
pub fn max_concurrency() -> usize {
    std::env::var(MAX_CONCURRENCY)
        .ok()
        .and_then(|value| value.trim().parse::<usize>().ok())
        .unwrap_or(1)
        .max(1)
}

/// Worker threads (and so connection pools) for Lambda mode: one for a classic execution
/// environment, one per CPU (at most one per concurrent invocation) for Managed Instances.
pub fn workers() -> usize {
    match max_concurrency() {
        1 => 1,
        concurrency => std::thread::available_parallelism()
            .map_or(1, usize::from)
            .min(concurrency),
    }
}

/// Runs `app` as the Lambda function handler until the runtime stops: one invocation at a
/// time, or with `AWS_LAMBDA_MAX_CONCURRENCY` that many at once (lambda_runtime polls the
/// Runtime API from as many tasks).
///
/// `started` is when the process started, for the cold start's init time in the access log.
pub async fn run(app: App, started: Instant) -> Result<(), lambda_runtime::Error> {
    let handler = Handler::new(&app, started);
    lambda_runtime::run_concurrent(lambda_runtime::service_fn(move |event| {
        let handler = handler.clone();
        async move { handler.handle(event).await }
    }))
    .await
}

/// An invocation's answer: one JSON document, or a stream.
pub type Answer = FunctionResponse<Box<RawValue>, stream::BodyStream>;

/// One invocation's work: the event in, the router's answer out in the shape the event's
/// front door expects. Public for the benchmarks (`benches/gateway.rs`).
#[derive(Clone)]
pub struct Handler {
    router: Router,
    entry: Entry,
    strip_stage: bool,
    /// `lambda.max_response`.
    max_response: usize,
    response_mode: ResponseMode,
    deadline_margin: Duration,
    /// Taken by the first invocation.
    cold_start: Arc<Mutex<Option<ColdStart>>>,
}

impl Handler {
    /// `started` is when the process started: the first invocation reports the init time.
    pub fn new(app: &App, started: Instant) -> Self {
        let plan: &Plan = &app.plan;
        Self {
            router: app.router.clone(),
            entry: app.entry.clone(),
            strip_stage: plan.server.strip_stage,
            max_response: plan.lambda.max_response,
            response_mode: plan.lambda.response_mode,
            deadline_margin: plan.server.deadline_margin,
            cold_start: Arc::new(Mutex::new(Some(ColdStart {
                init: started.elapsed(),
            }))),
        }
    }

    /// Serves one invocation: its answer streamed, or as the JSON the Runtime API takes,
    /// serialized once here so its size can be checked.
    pub async fn handle(self, event: LambdaEvent<Event>) -> Result<Answer, Diagnostic> {
        let LambdaEvent { payload, context } = event;
        let aws_request_id = context.request_id.clone();
        let (front_door, request) = match self.to_router_request(payload, context) {
            Ok(converted) => converted,
            Err(event::Unsupported(what)) => {
                tracing::warn!(aws_request_id, event = %what, "unsupported event");
                return Err(Diagnostic {
                    error_type: UNSUPPORTED_EVENT.into(),
                    error_message: format!(
                        "proxyfn serves HTTP requests from API Gateway (REST and HTTP APIs), Function URLs and ALB; this is {what}"
                    ),
                });
            }
        };
        let deadline = RequestContext::of(request.extensions())
            .map_or_else(Instant::now, |context| context.deadline);
        let invocation_end = invocation_end(&request, self.deadline_margin);

        let response = match self.router.clone().oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        };
        let (parts, body) = response.into_parts();
        if self.response_mode == ResponseMode::Stream && front_door.can_stream() {
            return Ok(FunctionResponse::StreamingResponse(stream::response(
                parts,
                body,
                invocation_end,
                move || flush_invocation(&aws_request_id),
            )));
        }
        // Raw bytes beyond the bound cannot fit, whatever the encoding.
        let bounded = http_body_util::Limited::new(body, self.max_response).collect();
        // The access log and the request's metrics are written when the body ends.
        let collected = tokio::time::timeout_at(deadline.into(), bounded).await;
        let request_id = parts.headers.get(X_REQUEST_ID).cloned();
        let response = match collected {
            Ok(Ok(collected)) => Response::from_parts(parts, collected.to_bytes()),
            Err(_elapsed) => {
                tracing::warn!("the response body was still arriving at the invocation deadline");
                problem_response(Error::DeadlineExceeded, request_id)
            }
            Ok(Err(error)) if crate::limits::is_body_limit_error(&*error) => {
                self.too_large(request_id)
            }
            Ok(Err(error)) => {
                tracing::warn!(%error, "response body failed while buffering for Lambda");
                problem_response(Error::IncompleteResponse, request_id.clone())
            }
        };
        flush_invocation(&aws_request_id);
        let request_id = response.headers().get(X_REQUEST_ID).cloned();
        let json = serialize(&response::to_lambda(front_door, response));
        if json.get().len() <= self.max_response {
            return Ok(FunctionResponse::BufferedResponse(json));
        }
        Ok(FunctionResponse::BufferedResponse(serialize(
            &response::to_lambda(front_door, self.too_large(request_id)),
        )))
    }

    /// The 502 for an answer larger than an invocation may be.
    fn too_large(&self, request_id: Option<HeaderValue>) -> Response<Bytes> {
        static LOGGED: crate::observability::throttle::Throttle =
            crate::observability::throttle::Throttle::new();
        if let Some(held_back) = LOGGED.admit() {
            tracing::warn!(
                max_response = self.max_response,
                held_back,
                "the response is too large for a Lambda invocation (lambda.max_response)"
            );
        }
        problem_response(
            Error::ResponseTooLarge {
                limit: self.max_response,
            },
            request_id,
        )
    }

    /// The event's request as the router serves it, with the client, deadline and Lambda
    /// context attached, and the front door whose shape the answer takes.
    pub fn to_router_request(
        &self,
        event: Event,
        context: lambda_runtime::Context,
    ) -> Result<(FrontDoor, Request), event::Unsupported> {
        let converted = event.into_request(self.strip_stage)?;
        let (mut parts, body) = converted.request.into_parts();
        let cold_start = self
            .cold_start
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        parts.extensions.insert(self.entry.context(Arrival {
            client: converted.client,
            stage: converted.stage_prefix,
            invocation: Some(Invocation {
                xray_trace_id: context.xray_trace_id,
                aws_request_id: context.request_id,
                deadline: UNIX_EPOCH + Duration::from_millis(context.deadline),
                cold_start,
            }),
            malformed_event: converted.malformed,
        }));
        Ok((
            converted.front_door,
            Request::from_parts(parts, Body::from(body)),
        ))
    }
}

/// What the invocation's answer must be sent by: Lambda's deadline less the margin kept to
/// send it. `None` when that deadline cannot be real (already past on arrival; see
/// [`Entry`]): then nothing but Lambda bounds the stream.
fn invocation_end(request: &Request, margin: Duration) -> Option<Instant> {
    let invocation = RequestContext::of(request.extensions())?
        .invocation
        .as_ref()?;
    let remaining = invocation
        .deadline
        .duration_since(std::time::SystemTime::now())
        .ok()?;
    Some(Instant::now() + remaining.saturating_sub(margin))
}

/// Writes what the invocation measured: its EMF metrics and, with OTLP, its spans.
fn flush_invocation(aws_request_id: &str) {
    crate::observability::metrics::flush_emf(aws_request_id);
    #[cfg(feature = "otlp")]
    crate::observability::otel::flush();
}

/// JSON of an answer. Nothing in it can fail to serialize; were it to, the answer is a 500.
fn serialize(response: &LambdaResponse) -> Box<RawValue> {
    serde_json::value::to_raw_value(response).unwrap_or_else(|error| {
        tracing::error!(%error, "cannot serialize the invocation response");
        RawValue::from_string(
            r#"{"statusCode":500,"headers":{"content-type":"application/problem+json"},"body":"{\"type\":\"urn:proxyfn:problem:internal\",\"status\":500}","isBase64Encoded":false}"#
                .to_owned(),
        )
        .unwrap_or_default()
    })
}

/// The problem for a failure found after the router returned (while buffering its body),
/// which the request-id layer can no longer render.
fn problem_response(error: Error, request_id: Option<HeaderValue>) -> Response<Bytes> {
    let id = request_id.unwrap_or(HeaderValue::from_static(""));
    let body = error.problem().to_json(id.to_str().unwrap_or_default());
    let mut response = Response::new(Bytes::from(body));
    *response.status_mut() = error.status();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, PROBLEM_JSON);
    response.headers_mut().insert(X_REQUEST_ID, id);
    response
}

/// Tells the Lambda service why initialization failed (`/runtime/init/error`), so the failure
/// shows in the invocation result rather than only as an exit code.
pub async fn report_init_error(error_type: &str, message: &str) {
    let Ok(api) = std::env::var(LAMBDA_RUNTIME_API) else {
        return;
    };
    let url = format!("http://{api}/2018-06-01/runtime/init/error");
    let body =
        serde_json::json!({ "errorMessage": message, "errorType": error_type, "stackTrace": [] });
    let result = reqwest::Client::new()
        .post(url)
        .header("Lambda-Runtime-Function-Error-Type", error_type)
        .header(header::CONTENT_TYPE, "application/json")
        .body(body.to_string())
        .send()
        .await;
    if let Err(error) = result {
        tracing::error!(%error, "could not report the init error to the Lambda Runtime API");
    }
}
