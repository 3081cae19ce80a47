//! A local implementation of the Lambda Runtime API (2018-06-01): `/next` hands out queued
//! events, `/response` and `/error` complete them, `/init/error` records an init failure.
//! Shared by the Lambda tests and the Lambda-mode benchmark (`examples/lambda_bench.rs`).

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
}

#[derive(Clone)]
struct ApiState {
    next: Arc<tokio::sync::Mutex<mpsc::Receiver<Invocation>>>,
    waiting: Arc<Mutex<HashMap<String, oneshot::Sender<Outcome>>>>,
    init_error: Arc<Mutex<Option<(String, Value)>>>,
    first_poll: Arc<OnceLock<Instant>>,
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
        .header(
            "lambda-runtime-trace-id",
            "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1",
        )
        .header("content-type", "application/json")
        .body(Body::from(event.to_string()))
        .unwrap()
}

async fn invocation_response(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    body: Bytes,
) -> impl IntoResponse {
    complete(&state, &id, Outcome::Response(parse_json(&body)))
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
    if let Some(tx) = state.waiting.lock().unwrap().remove(id) {
        let _ = tx.send(outcome);
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
        let (events, rx) = mpsc::channel(16);
        let state = ApiState {
            next: Arc::new(tokio::sync::Mutex::new(rx)),
            waiting: Arc::default(),
            init_error: Arc::default(),
            first_poll: Arc::default(),
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
            // Lambda takes invocation responses up to 6 MB.
            .layer(axum::extract::DefaultBodyLimit::max(6 << 20))
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
        let id = uuid::Uuid::new_v4().to_string();
        let (tx, rx) = oneshot::channel();
        self.state.waiting.lock().unwrap().insert(id.clone(), tx);
        self.events.send((id, event, deadline)).await.unwrap();
        tokio::time::timeout(Duration::from_secs(30), rx)
            .await
            .expect("the function answered within 30s")
            .unwrap()
    }

    /// Invokes and expects a function response (not a runtime error).
    pub async fn respond(&self, event: Value) -> Value {
        match self.invoke(event).await {
            Outcome::Response(value) => value,
            Outcome::Error(error) => panic!("the invocation failed: {error}"),
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
