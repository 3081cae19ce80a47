//! A local implementation of the Lambda Runtime API (2018-06-01): `/next` hands out queued
//! events, `/response` and `/error` complete them, `/init/error` records an init failure.
//! Shared by the Lambda tests and the Lambda-mode benchmark (`examples/lambda_bench.rs`).
//!
//! A streamed `/response` (`Lambda-Runtime-Function-Response-Mode: streaming`) is read as it
//! arrives: the prelude is split off at the eight NUL bytes, each chunk after it is recorded
//! with its arrival time (and handed to a watcher at once), and an error trailer is
//! understood in both forms lambda_runtime may send: real HTTP trailers, or the trailer text
//! in-band as the last chunk.

#![allow(dead_code)]

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, Mutex, OnceLock},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use axum::{
    Json, Router,
    body::{Body, Bytes},
    extract::{Path, State},
    http::HeaderMap,
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde_json::{Value, json};
use tokio::{
    net::TcpListener,
    sync::{mpsc, oneshot},
    task::JoinHandle,
};

const API: &str = "/2018-06-01/runtime";

#[derive(Debug)]
pub enum Outcome {
    Response(Value),
    Error(Value),
    Stream(Streamed),
}

/// A streamed invocation response, as it arrived.
#[derive(Debug, Default)]
pub struct Streamed {
    /// The prelude: `statusCode`, `headers`, `cookies`.
    pub prelude: Value,
    /// The body's chunks after the prelude, each with when it arrived.
    pub chunks: Vec<(Instant, Bytes)>,
    /// The error trailer, if the stream ended with one: its type, its body (base64-decoded
    /// when it is base64), and whether it came as real HTTP trailers.
    pub error: Option<StreamError>,
}

#[derive(Debug, Clone)]
pub struct StreamError {
    pub error_type: String,
    pub body: String,
    pub as_http_trailers: bool,
}

impl Streamed {
    pub fn status(&self) -> u64 {
        self.prelude["statusCode"].as_u64().unwrap_or_default()
    }

    pub fn body(&self) -> Vec<u8> {
        self.chunks
            .iter()
            .flat_map(|(_, c)| c.iter().copied())
            .collect()
    }

    pub fn body_len(&self) -> usize {
        self.chunks.iter().map(|(_, c)| c.len()).sum()
    }
}

/// Who waits for an invocation's outcome, and who wants its streamed chunks as they come.
struct Waiter {
    outcome: oneshot::Sender<Outcome>,
    chunks: Option<mpsc::UnboundedSender<Bytes>>,
}

#[derive(Clone)]
struct ApiState {
    next: Arc<tokio::sync::Mutex<mpsc::Receiver<Invocation>>>,
    waiting: Arc<Mutex<HashMap<String, Waiter>>>,
    init_error: Arc<Mutex<Option<(String, Value)>>>,
    first_poll: Arc<OnceLock<Instant>>,
    /// The largest buffered response taken: Lambda's 6 MB, unless a benchmark raises it.
    buffered_limit: usize,
}

/// An event waiting for the function: its id, payload and deadline.
type Invocation = (String, Value, Deadline);

/// What `Lambda-Runtime-Deadline-Ms` says.
#[derive(Clone, Copy, Debug)]
pub enum Deadline {
    /// This long from when the function picks the event up, as Lambda sends it.
    In(Duration),
    /// This exact header value (cargo-lambda 1.9 sends a relative `600000`).
    Raw(u64),
}

/// A local implementation of the Lambda Runtime API.
pub struct RuntimeApi {
    pub addr: SocketAddr,
    events: mpsc::Sender<Invocation>,
    state: ApiState,
    server: JoinHandle<()>,
}

impl Drop for RuntimeApi {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn next_invocation(State(state): State<ApiState>) -> Response {
    let _ = state.first_poll.set(Instant::now());
    let Some((id, event, deadline)) = state.next.lock().await.recv().await else {
        return (axum::http::StatusCode::GONE, "no more events").into_response();
    };
    let deadline = match deadline {
        Deadline::In(allowed) => (SystemTime::now() + allowed)
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis(),
        Deadline::Raw(value) => u128::from(value),
    };
    Response::builder()
        .header("lambda-runtime-aws-request-id", &id)
        .header("lambda-runtime-deadline-ms", deadline.to_string())
        .header(
            "lambda-runtime-invoked-function-arn",
            "arn:aws:lambda:us-east-1:123456789012:function:proxyfn",
        )
        .header("lambda-runtime-trace-id", trace_id_of(&id))
        .header("content-type", "application/json")
        .body(Body::from(event.to_string()))
        .unwrap()
}

/// The X-Ray trace header this API sends with invocation `id`: each invocation its own.
pub fn trace_id_of(id: &str) -> String {
    let hex: String = id
        .chars()
        .filter(char::is_ascii_hexdigit)
        .take(24)
        .collect();
    format!("Root=1-5759e988-{hex:0>24};Parent=53995c3f42cd8ad8;Sampled=1")
}

async fn invocation_response(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let streaming = headers
        .get("lambda-runtime-function-response-mode")
        .is_some_and(|mode| mode == "streaming");
    if streaming {
        let chunks = state
            .waiting
            .lock()
            .unwrap()
            .get_mut(&id)
            .and_then(|waiter| waiter.chunks.take());
        let streamed = read_stream(body, chunks).await;
        return complete(&state, &id, Outcome::Stream(streamed)).into_response();
    }
    match axum::body::to_bytes(body, state.buffered_limit).await {
        Ok(body) => complete(&state, &id, Outcome::Response(parse_json(&body))).into_response(),
        Err(_) => axum::http::StatusCode::PAYLOAD_TOO_LARGE.into_response(),
    }
}

const ERROR_TYPE: &str = "Lambda-Runtime-Function-Error-Type";
const ERROR_BODY: &str = "Lambda-Runtime-Function-Error-Body";

/// Reads a streamed response frame by frame.
async fn read_stream(mut body: Body, watcher: Option<mpsc::UnboundedSender<Bytes>>) -> Streamed {
    use http_body_util::BodyExt;
    let mut streamed = Streamed::default();
    let mut head = Vec::new();
    let mut in_prelude = true;
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else { break };
        let frame = match frame.into_data() {
            Ok(data) => data,
            Err(frame) => {
                if let Ok(trailers) = frame.into_trailers() {
                    let value = |name: &str| {
                        trailers
                            .get(name)
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_owned)
                    };
                    if let Some(error_type) = value(ERROR_TYPE) {
                        streamed.error = Some(StreamError {
                            error_type,
                            body: decoded(&value(ERROR_BODY).unwrap_or_default()),
                            as_http_trailers: true,
                        });
                    }
                }
                continue;
            }
        };
        let mut data = frame;
        if in_prelude {
            head.extend_from_slice(&data);
            let Some(at) = head.windows(8).position(|w| w == [0u8; 8]) else {
                continue;
            };
            streamed.prelude = serde_json::from_slice(&head[..at]).unwrap_or(Value::Null);
            data = Bytes::copy_from_slice(&head[at + 8..]);
            in_prelude = false;
        }
        let marker = format!("{ERROR_TYPE}: ");
        if let Some(at) = find(&data, marker.as_bytes()) {
            let text = String::from_utf8_lossy(&data[at..]).into_owned();
            let field = |name: &str| {
                text.split("\r\n")
                    .find_map(|line| line.strip_prefix(&format!("{name}: ")))
                    .unwrap_or_default()
                    .to_owned()
            };
            streamed.error = Some(StreamError {
                error_type: field(ERROR_TYPE),
                body: decoded(&field(ERROR_BODY)),
                as_http_trailers: false,
            });
            data = data.slice(..at);
        }
        if !data.is_empty() {
            if let Some(watcher) = &watcher {
                let _ = watcher.send(data.clone());
            }
            streamed.chunks.push((Instant::now(), data));
        }
    }
    streamed
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A trailer body: base64 as lambda_runtime sends it, else as it is.
fn decoded(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .unwrap_or_else(|| text.to_owned())
}

async fn invocation_error(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    body: Bytes,
) -> impl IntoResponse {
    complete(&state, &id, Outcome::Error(parse_json(&body)))
}

fn parse_json(body: &[u8]) -> Value {
    serde_json::from_slice(body).unwrap_or(Value::Null)
}

/// Hands the outcome to the waiting `invoke` and acknowledges as the Runtime API does (202).
fn complete(state: &ApiState, id: &str, outcome: Outcome) -> impl IntoResponse + use<> {
    if let Some(waiter) = state.waiting.lock().unwrap().remove(id) {
        let _ = waiter.outcome.send(outcome);
    }
    (
        axum::http::StatusCode::ACCEPTED,
        Json(json!({"status": "OK"})),
    )
}

async fn init_error(
    State(state): State<ApiState>,
    headers: HeaderMap,
    body: Bytes,
) -> impl IntoResponse {
    let kind = headers
        .get("lambda-runtime-function-error-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    *state.init_error.lock().unwrap() =
        Some((kind, serde_json::from_slice(&body).unwrap_or(Value::Null)));
    (
        axum::http::StatusCode::ACCEPTED,
        Json(json!({"status": "OK"})),
    )
}

impl RuntimeApi {
    pub async fn start() -> Self {
        // Lambda takes buffered invocation responses up to 6 MB.
        Self::start_with_buffered_limit(6 << 20).await
    }

    /// A Runtime API that takes buffered responses up to `limit` bytes.
    pub async fn start_with_buffered_limit(limit: usize) -> Self {
        let (events, rx) = mpsc::channel(16);
        let state = ApiState {
            next: Arc::new(tokio::sync::Mutex::new(rx)),
            waiting: Arc::default(),
            init_error: Arc::default(),
            first_poll: Arc::default(),
            buffered_limit: limit,
        };
        let router = Router::new()
            .route(&format!("{API}/invocation/next"), get(next_invocation))
            .route(
                &format!("{API}/invocation/{{id}}/response"),
                post(invocation_response),
            )
            .route(
                &format!("{API}/invocation/{{id}}/error"),
                post(invocation_error),
            )
            .route(&format!("{API}/init/error"), post(init_error))
            .with_state(state.clone());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            axum::serve(listener, router).await.unwrap();
        });
        Self {
            addr,
            events,
            state,
            server,
        }
    }

    pub async fn invoke(&self, event: Value) -> Outcome {
        self.invoke_with_deadline(event, Duration::from_secs(30))
            .await
    }

    /// Invokes with `allowed` until the invocation's deadline (Lambda-Runtime-Deadline-Ms).
    pub async fn invoke_with_deadline(&self, event: Value, allowed: Duration) -> Outcome {
        self.invoke_with(event, Deadline::In(allowed)).await
    }

    /// Invokes with `deadline` as the Lambda-Runtime-Deadline-Ms header.
    pub async fn invoke_with(&self, event: Value, deadline: Deadline) -> Outcome {
        let pending = self.start_invocation(event, deadline, None).await;
        tokio::time::timeout(Duration::from_secs(30), pending)
            .await
            .expect("the function answered within 30s")
            .unwrap()
    }

    /// Queues `event` and returns its outcome to come; `chunks` gets each streamed chunk as
    /// it arrives.
    async fn start_invocation(
        &self,
        event: Value,
        deadline: Deadline,
        chunks: Option<mpsc::UnboundedSender<Bytes>>,
    ) -> oneshot::Receiver<Outcome> {
        let id = uuid::Uuid::new_v4().to_string();
        let (outcome, rx) = oneshot::channel();
        self.state
            .waiting
            .lock()
            .unwrap()
            .insert(id.clone(), Waiter { outcome, chunks });
        self.events.send((id, event, deadline)).await.unwrap();
        rx
    }

    /// Invokes, handing each streamed chunk to the returned receiver as it arrives; the
    /// outcome comes when the stream ends.
    pub async fn invoke_watching(
        &self,
        event: Value,
    ) -> (oneshot::Receiver<Outcome>, mpsc::UnboundedReceiver<Bytes>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let outcome = self
            .start_invocation(event, Deadline::In(Duration::from_secs(30)), Some(tx))
            .await;
        (outcome, rx)
    }

    /// Invokes and expects a streamed response.
    pub async fn stream(&self, event: Value) -> Streamed {
        match self.invoke(event).await {
            Outcome::Stream(streamed) => streamed,
            other => panic!("expected a streamed response: {other:?}"),
        }
    }

    /// Invokes and expects a function response (not a runtime error).
    pub async fn respond(&self, event: Value) -> Value {
        match self.invoke(event).await {
            Outcome::Response(value) => value,
            Outcome::Error(error) => panic!("the invocation failed: {error}"),
            Outcome::Stream(streamed) => panic!("expected a buffered response: {streamed:?}"),
        }
    }

    /// When the function first asked for an event: the end of its init phase.
    pub fn first_poll(&self) -> Option<Instant> {
        self.state.first_poll.get().copied()
    }

    /// The error the function reported from its init phase: its type and body.
    pub fn init_error(&self) -> Option<(String, Value)> {
        self.state.init_error.lock().unwrap().clone()
    }
}
