//! Upstream services and the resilient call to them.
//!
//! One [`Upstream`] per `[upstreams.NAME]`, built once: a pooled HTTP client (its own connect
//! timeout), its targets, and optionally a retry policy, a circuit breaker and a concurrency
//! limit. [`Upstream::forward`] runs one request through all of them:
//!
//! 1. shed at once with 503 when `max_concurrency` requests are already in flight;
//! 2. per attempt: the breaker admits or answers 503 + Retry-After; a healthy target is picked
//!    round-robin; the upstream gets its `timeout` to answer from the moment it has the whole
//!    request body (the client's pace is not the upstream's silence), within the request's
//!    [deadline](crate::context::RequestContext::deadline), and then its `timeout` between chunks of its response body;
//! 3. a failed attempt is retried only when the request is repeatable, the failure says "try
//!    again", the budget allows, and the whole next attempt fits before the deadline.
//!
//! Bodies stream both ways: nothing is buffered, so a 100 MB download costs the gateway only a
//! few buffers, except that a small request body of known size is kept for replay when the
//! request may be retried. Redirects are never followed, and no environment proxy is used.

mod breaker;
mod client;
pub mod config;
pub mod headers;
mod retry;
mod targets;
pub mod tls;
mod window;

use std::{
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::{Duration, Instant, SystemTime},
};

use axum::{body::Body, extract::Request, response::Response};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, header::CONTENT_LENGTH};
use http_body::{Body as _, Frame, SizeHint};
use http_body_util::BodyExt;
use serde::Serialize;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub use breaker::BreakerState;

use crate::{
    config::ConfigError,
    context::RequestContext,
    error::{Error, caused_by},
    limits::{body_read_error, is_body_limit_error},
    observability::metrics::UpstreamMetrics,
    stall::{Side, StallTimeout},
};
use breaker::CircuitBreaker;
use client::{AttemptBody, Client, ResponseBody, SendError};
use config::{HealthCheckSettings, UpstreamSettings};
use retry::RetryPolicy;
use targets::Targets;

/// A configured backend service; cheap to clone.
#[derive(Clone, Debug)]
pub struct Upstream(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    name: Arc<str>,
    /// The upstream's identity in the access log and its metric handles.
    metrics: Arc<UpstreamMetrics>,
    targets: Targets,
    timeout: Duration,
    /// One pooled client per server worker ([`crate::runtime::worker`]): a connection is
    /// driven by the worker that opened it, so reusing it never wakes another thread.
    clients: Box<[Client]>,
    retry: Option<RetryPolicy>,
    breaker: Option<CircuitBreaker>,
    in_flight: Option<Arc<Semaphore>>,
    health_check: Option<HealthCheckSettings>,
}

/// The outbound request, with a body that can be sent once (streamed) or again (kept).
struct Outbound {
    method: Method,
    query: Option<String>,
    headers: HeaderMap,
    body: OutboundBody,
}

enum OutboundBody {
    Empty,
    Kept(Bytes),
    Stream(Option<Body>),
}

impl OutboundBody {
    fn replayable(&self) -> bool {
        !matches!(self, OutboundBody::Stream(_))
    }

    /// The body for one attempt, and for a streamed body what tells when it has all been sent.
    fn take(&mut self) -> (AttemptBody, Option<Arc<Sent>>) {
        match self {
            OutboundBody::Empty => (AttemptBody::Empty, None),
            OutboundBody::Kept(bytes) => (AttemptBody::Bytes(bytes.clone()), None),
            OutboundBody::Stream(body) => match body.take() {
                None => (AttemptBody::Empty, None),
                Some(body) => {
                    let sent = Arc::new(Sent::default());
                    let body = Tracked {
                        inner: body,
                        sent: Some(sent.clone()),
                    };
                    (AttemptBody::Stream(Body::new(body)), Some(sent))
                }
            },
        }
    }
}

/// Says when a streamed request body has all been handed to the upstream's connection (or
/// failed): from then on, waiting is the upstream's doing.
#[derive(Debug, Default)]
struct Sent {
    done: std::sync::atomic::AtomicBool,
    notify: tokio::sync::Notify,
}

impl Sent {
    fn finish(&self) {
        if !self.done.swap(true, std::sync::atomic::Ordering::Relaxed) {
            self.notify.notify_one();
        }
    }

    fn is_done(&self) -> bool {
        self.done.load(std::sync::atomic::Ordering::Relaxed)
    }

    async fn wait(&self) {
        if !self.is_done() {
            self.notify.notified().await;
        }
    }
}

pin_project_lite::pin_project! {
    /// A request body that reports to [`Sent`] when it ends.
    struct Tracked<B> {
        #[pin]
        inner: B,
        sent: Option<Arc<Sent>>,
    }
}

impl<B: http_body::Body> http_body::Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let mut this = self.project();
        let frame = std::task::ready!(this.inner.as_mut().poll_frame(cx));
        let finished = match &frame {
            None | Some(Err(_)) => true,
            Some(Ok(_)) => this.inner.is_end_stream(),
        };
        if finished && let Some(sent) = this.sent.take() {
            sent.finish();
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// For the access log: how many attempts a call took, and how long the last one took.
#[derive(Default)]
struct CallStats {
    attempts: u32,
    last_latency: Duration,
}

/// What one attempt came to.
enum Attempt {
    Answered(http::Response<ResponseBody>),
    Failed(Error),
}

impl Upstream {
    /// `tls` is the process's shared client TLS configuration ([`tls::client_config`]);
    /// `pools` is the number of server workers, each of which gets its own connection pool.
    pub fn new(
        settings: &UpstreamSettings,
        tls: &rustls::ClientConfig,
        pools: usize,
    ) -> Result<Self, ConfigError> {
        let now = Instant::now();
        let name: Arc<str> = settings.name.as_str().into();
        let clients = (0..pools.max(1))
            .map(|_| Client::new(settings, tls))
            .collect::<Result<_, _>>()
            .map_err(|e| {
                ConfigError::single(
                    format!("upstreams.{name}"),
                    format!("cannot build an HTTP client: {e}"),
                )
            })?;
        Ok(Self(Arc::new(Inner {
            targets: Targets::new(&settings.targets, now)
                .map_err(|e| ConfigError::single(format!("upstreams.{name}"), e))?,
            timeout: settings.timeout,
            clients,
            retry: settings.retry.clone().map(|r| RetryPolicy::new(r, now)),
            breaker: settings
                .circuit_breaker
                .clone()
                .map(|b| CircuitBreaker::new(name.clone(), b, now)),
            in_flight: settings
                .max_concurrency
                .map(|n| Arc::new(Semaphore::new(n))),
            health_check: settings.health_check.clone(),
            metrics: Arc::new(UpstreamMetrics::new(name.clone())),
            name,
        })))
    }

    pub fn name(&self) -> &str {
        &self.0.name
    }

    /// Whether both are the same upstream object (a reload kept it), not just equal.
    pub fn is(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }

    /// The connection pool of the worker thread this runs on.
    fn client(&self) -> &Client {
        let clients = &self.0.clients;
        &clients[crate::runtime::worker_slot(clients.len())]
    }

    /// Sends `request` to `path` on this upstream (the query string is kept as received) and
    /// returns the upstream's response with hop-by-hop headers removed.
    pub async fn forward(&self, request: Request, path: &str) -> Result<Response, Error> {
        let inner = &*self.0;
        let permit = match &inner.in_flight {
            None => None,
            Some(semaphore) => {
                Some(
                    semaphore
                        .clone()
                        .try_acquire_owned()
                        .map_err(|_| Error::Overloaded {
                            upstream: inner.name.clone(),
                        })?,
                )
            }
        };

        let (parts, body) = request.into_parts();
        let context = RequestContext::of(&parts.extensions);
        let body_limit = context.map_or(u64::MAX, |c| c.body_limit);
        let deadline = context.map(|c| c.deadline);
        let notes = context.map(|c| c.notes.clone());
        let headers = headers::to_upstream(parts.headers, &parts.extensions);
        let may_retry = inner.retry.as_ref().is_some_and(|r| {
            r.settings.attempts > 1 && retry::is_repeatable(&parts.method, &headers)
        });
        let max_kept = if may_retry {
            inner.retry.as_ref().map_or(0, |r| r.settings.max_body)
        } else {
            0
        };
        let mut outbound = Outbound {
            body: outbound_body(body, max_kept, body_limit).await?,
            method: parts.method,
            query: parts.uri.query().map(str::to_owned),
            headers,
        };
        if let (Some(exact), false) = (
            known_length(&outbound.body),
            outbound.headers.contains_key(CONTENT_LENGTH),
        ) {
            outbound
                .headers
                .insert(CONTENT_LENGTH, HeaderValue::from(exact));
        }

        let mut stats = CallStats::default();
        let result = self
            .call_with_retries(
                &mut outbound,
                path,
                deadline,
                may_retry,
                body_limit,
                &mut stats,
            )
            .await;
        if let Some(notes) = notes {
            notes.upstream(&inner.metrics, stats.attempts, stats.last_latency);
        }
        let mut response = result?;
        headers::remove_hop_by_hop(response.headers_mut());
        let response = response.map(|body| StallTimeout::new(body, Side::Upstream, inner.timeout));
        Ok(response.map(|body| match permit {
            Some(permit) => Body::new(WithPermit {
                inner: body,
                _permit: permit,
            }),
            None => Body::new(body),
        }))
    }

    async fn call_with_retries(
        &self,
        outbound: &mut Outbound,
        path: &str,
        deadline: Option<Instant>,
        may_retry: bool,
        body_limit: u64,
        stats: &mut CallStats,
    ) -> Result<http::Response<ResponseBody>, Error> {
        let inner = &*self.0;
        let attempts = inner.retry.as_ref().map_or(1, |r| r.settings.attempts);
        if let Some(policy) = &inner.retry {
            policy.record_request(Instant::now());
        }
        let mut attempt = 1;
        loop {
            let started = Instant::now();
            stats.attempts = attempt;
            // Only an attempt that may be followed by another needs the request kept.
            let last = !(may_retry && attempt < attempts && outbound.body.replayable());
            let outcome = self
                .attempt(outbound, path, deadline, body_limit, last)
                .await;
            stats.last_latency = started.elapsed();
            let outcome = outcome?;
            let retryable = match &outcome {
                Attempt::Answered(response) => retry::is_retryable_status(response.status()),
                Attempt::Failed(Error::UpstreamUnavailable { .. }) => true,
                Attempt::Failed(_) => false,
            };
            let Some(policy) = inner.retry.as_ref().filter(|_| {
                retryable && may_retry && attempt < attempts && outbound.body.replayable()
            }) else {
                return finish(outcome);
            };

            let mut delay = policy.backoff(attempt);
            if let Attempt::Answered(response) = &outcome
                && let Some(asked) = retry::retry_after(response.headers(), SystemTime::now())
            {
                if asked > policy.settings.max_backoff {
                    return finish(outcome);
                }
                delay = delay.max(asked);
            }
            // Start a retry only if the whole attempt fits before the deadline (in Lambda:
            // the invocation's, so a retry never starts that Lambda would cut off).
            let now = Instant::now();
            if deadline.is_some_and(|d| now + delay + inner.timeout > d) {
                tracing::info!(upstream = %inner.name, attempt, "no retry: it could not finish before the deadline");
                return finish(outcome);
            }
            if !policy.try_spend(now) {
                tracing::warn!(upstream = %inner.name, attempt, "no retry: retry budget exhausted");
                return finish(outcome);
            }
            tracing::info!(upstream = %inner.name, attempt, delay_ms = delay.as_millis() as u64, "retrying");
            drop(outcome);
            tokio::time::sleep(delay).await;
            attempt += 1;
        }
    }

    /// One attempt: breaker, target, timeout cut to the deadline, send, record the outcome.
    /// The `last` attempt takes the outbound headers instead of copying them.
    async fn attempt(
        &self,
        outbound: &mut Outbound,
        path: &str,
        deadline: Option<Instant>,
        body_limit: u64,
        last: bool,
    ) -> Result<Attempt, Error> {
        let inner = &*self.0;
        let now = Instant::now();
        let ticket = match &inner.breaker {
            Some(breaker) => {
                Some(
                    breaker
                        .admit(now)
                        .map_err(|retry_after| Error::CircuitOpen {
                            upstream: inner.name.clone(),
                            retry_after,
                        })?,
                )
            }
            None => None,
        };
        let Some(index) = inner.targets.pick(now) else {
            return Err(Error::NoHealthyTarget {
                upstream: inner.name.clone(),
            });
        };
        if deadline.is_some_and(|deadline| deadline <= now) {
            return Err(Error::DeadlineExceeded);
        }

        let target = inner.targets.get(index);
        let url = target.url_for(path, outbound.query.as_deref());
        let headers = if last {
            std::mem::take(&mut outbound.headers)
        } else {
            outbound.headers.clone()
        };
        let (body, sent) = outbound.body.take();
        let request = self
            .client()
            .send(outbound.method.clone(), url, headers, body);

        // The upstream's `timeout` starts once it has the whole request: a client uploading
        // slowly is not an upstream that does not answer.
        let upstream_silence = async {
            if let Some(sent) = &sent {
                sent.wait().await;
            }
            tokio::time::sleep(inner.timeout).await;
        };
        let until_deadline = async {
            match deadline {
                Some(deadline) => tokio::time::sleep_until(deadline.into()).await,
                None => std::future::pending().await,
            }
        };
        // A connection that broke while the client's body was still arriving (an upstream
        // giving up on a trickling client) is not held against the upstream; one that could
        // not be made is.
        let mut mid_upload = false;
        // The request's deadline came while the upstream had the whole request: it did not
        // answer in the time there was, which counts against it.
        let mut out_of_time_waiting = false;
        let outcome = tokio::select! {
            result = request => match result {
                Ok(response) => Attempt::Answered(response),
                Err(error) => {
                    mid_upload = !error.is_connect() && sent.as_ref().is_some_and(|s| !s.is_done());
                    Attempt::Failed(self.classify(error, body_limit))
                }
            },
            () = upstream_silence => Attempt::Failed(Error::UpstreamTimeout {
                upstream: inner.name.clone(),
            }),
            // Out of time with the request still arriving: the client's doing.
            () = until_deadline => {
                out_of_time_waiting = sent.as_ref().is_none_or(|s| s.is_done());
                Attempt::Failed(Error::DeadlineExceeded)
            }
        };
        let finished = Instant::now();
        let (success, connection_failed) = match &outcome {
            Attempt::Answered(response) => (!response.status().is_server_error(), false),
            Attempt::Failed(Error::UpstreamUnavailable { .. }) if mid_upload => {
                return Ok(outcome);
            }
            Attempt::Failed(Error::UpstreamTimeout { .. } | Error::UpstreamUnavailable { .. }) => {
                (false, true)
            }
            Attempt::Failed(Error::DeadlineExceeded) if out_of_time_waiting => (false, true),
            // The client's fault (body too large, stalled or aborted, or the request out of
            // time while its body was still arriving): says nothing about the upstream.
            Attempt::Failed(_) => return Ok(outcome),
        };
        if let Some(ticket) = ticket {
            ticket.record(success, finished);
        }
        inner.targets.report(index, connection_failed, finished);
        Ok(outcome)
    }

    fn classify(&self, error: SendError, body_limit: u64) -> Error {
        if is_body_limit_error(&error) {
            return Error::PayloadTooLarge { limit: body_limit };
        }
        if let Some(stalled) = crate::stall::stalled(&error)
            && stalled.side == Side::Client
        {
            return Error::ClientBodyTimeout {
                timeout: stalled.timeout,
            };
        }
        // The client's own body stream failed (an aborted upload): its fault, not the upstream's.
        if error.is_body() || (!error.is_connect() && caused_by::<axum::Error>(&error)) {
            return Error::BadRequestBody(Box::new(error));
        }
        // A connection that could not be made, even by timing out, is "unreachable" (502);
        // only an upstream that accepted the request and then ran out of time is 504.
        if error.is_timeout() && !error.is_connect() {
            return Error::UpstreamTimeout {
                upstream: self.0.name.clone(),
            };
        }
        Error::UpstreamUnavailable {
            upstream: self.0.name.clone(),
            source: Box::new(error),
        }
    }

    /// State for `/ready`.
    pub fn status(&self, now: Instant) -> UpstreamStatus {
        let inner = &*self.0;
        let targets = inner
            .targets
            .iter()
            .enumerate()
            .map(|(index, _)| TargetStatus {
                healthy: inner.targets.is_healthy(index, now),
            })
            .collect();
        UpstreamStatus {
            circuit_breaker: inner.breaker.as_ref().map(|b| b.state(now).as_str()),
            healthy_targets: inner.targets.healthy_count(now),
            targets,
        }
    }

    /// Probes every target on `health_check.path` every `interval`, forever. Server mode only:
    /// Lambda freezes the process between invocations.
    pub fn spawn_health_checks(&self) -> Option<tokio::task::JoinHandle<()>> {
        let check = self.0.health_check.clone()?;
        let upstream = self.clone();
        Some(tokio::spawn(async move {
            let mut ticker = tokio::time::interval(check.interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                upstream.probe_all(&check).await;
            }
        }))
    }

    /// One health-check request: the status it got, or why it got none.
    async fn probe(&self, url: &str, timeout: Duration) -> Result<http::StatusCode, String> {
        let url = reqwest::Url::parse(url).map_err(|error| error.to_string())?;
        let send = self
            .client()
            .send(Method::GET, url, HeaderMap::new(), AttemptBody::Empty);
        match tokio::time::timeout(timeout, send).await {
            Ok(Ok(response)) => Ok(response.status()),
            Ok(Err(error)) => Err(crate::error::causes(&error)
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(": ")),
            Err(_) => Err(format!("no answer in {timeout:?}")),
        }
    }

    async fn probe_all(&self, check: &HealthCheckSettings) {
        let inner = &*self.0;
        for (index, target) in inner.targets.iter().enumerate() {
            let url = format!("{}{}", target.url, check.path);
            let result = self.probe(&url, check.timeout).await;
            let healthy =
                matches!(&result, Ok(status) if status.is_success() || status.is_redirection());
            if inner.targets.set_probe_result(index, healthy) {
                match result {
                    Ok(status) if !healthy => {
                        tracing::warn!(upstream = %inner.name, target = %target.url, status = status.as_u16(), "health check failed")
                    }
                    Err(error) => {
                        tracing::warn!(upstream = %inner.name, target = %target.url, %error, "health check failed")
                    }
                    _ => {
                        tracing::info!(upstream = %inner.name, target = %target.url, "health check passed again")
                    }
                }
            }
        }
    }
}

fn finish(outcome: Attempt) -> Result<http::Response<ResponseBody>, Error> {
    match outcome {
        Attempt::Answered(response) => Ok(response),
        Attempt::Failed(error) => Err(error),
    }
}

/// Keeps a small body of known size for replay; streams everything else.
async fn outbound_body(body: Body, max_kept: u64, body_limit: u64) -> Result<OutboundBody, Error> {
    let size = body.size_hint();
    if size.exact() == Some(0) {
        return Ok(OutboundBody::Empty);
    }
    match size.exact() {
        Some(length) if length <= max_kept => match body.collect().await {
            Ok(collected) => Ok(OutboundBody::Kept(collected.to_bytes())),
            Err(error) => Err(body_read_error(error, body_limit)),
        },
        _ => Ok(OutboundBody::Stream(Some(body))),
    }
}

fn known_length(body: &OutboundBody) -> Option<u64> {
    match body {
        OutboundBody::Kept(bytes) => Some(bytes.len() as u64),
        OutboundBody::Stream(Some(body)) => body.size_hint().exact(),
        _ => None,
    }
}

#[derive(Debug, Serialize)]
pub struct UpstreamStatus {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub circuit_breaker: Option<&'static str>,
    pub healthy_targets: usize,
    pub targets: Vec<TargetStatus>,
}

/// A target by its place in the upstream's `urls`: `/ready` is public, and URLs name internal
/// hosts, so they go to the log only.
#[derive(Debug, Serialize)]
pub struct TargetStatus {
    pub healthy: bool,
}

pin_project_lite::pin_project! {
    /// A response body that holds a concurrency permit until it is finished or dropped.
    struct WithPermit<B> {
        #[pin]
        inner: B,
        _permit: OwnedSemaphorePermit,
    }
}

impl<B: http_body::Body> http_body::Body for WithPermit<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        self.project().inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
