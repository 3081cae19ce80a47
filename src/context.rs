//! One typed context per request: what the gateway knows of a request beyond its HTTP
//! message. A runtime makes it where the request enters (a server connection, a Lambda
//! event) through [`Entry`], and it travels as one request extension to whatever needs it:
//! the trust boundary and the forwarding headers (the client), the limits and the upstream
//! calls (the deadline, the body limit), the access log (the notes, the invocation).

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll},
    time::{Duration, Instant, SystemTime},
};

use axum::extract::Request;
use http::Extensions;
use tower::{Layer, Service};

use crate::{
    observability::{ColdStart, Notes},
    runtime::{ClientInfo, config::ServerSettings},
};

/// What the gateway knows of a request beyond its HTTP message.
#[derive(Clone, Debug)]
pub struct RequestContext {
    /// Who sent the request and how it reached the gateway.
    pub client: ClientInfo,
    /// The API Gateway stage prefix (`/prod`) removed from the path before routing; the
    /// OpenAPI document served under it names it in its server URL.
    pub stage: Option<String>,
    /// When the request must be answered by: `server.timeout` from arrival, or in Lambda the
    /// invocation deadline less `server.deadline_margin` when that is earlier. Upstream
    /// attempts are cut to it, and no retry starts that could not finish before it.
    pub deadline: Instant,
    /// `server.body_limit`, for whoever reads the body (the proxy turns a limit crossed
    /// mid-stream into 413).
    pub body_limit: u64,
    /// The Lambda invocation the request came in, if any.
    pub invocation: Option<Invocation>,
    /// Why a request built from a Lambda event is not one AWS would send as it is (a body
    /// marked base64 that is not, an invalid method or header): the gateway answers 400.
    pub malformed_event: Option<&'static str>,
    /// What the request's handling noted for its access-log event.
    pub notes: Arc<Notes>,
}

impl RequestContext {
    /// The context of the request whose extensions these are.
    pub fn of(extensions: &Extensions) -> Option<&Self> {
        extensions.get::<Self>()
    }
}

/// The Lambda invocation a request came in.
#[derive(Clone, Debug)]
pub struct Invocation {
    /// The invocation's id (`Lambda-Runtime-Aws-Request-Id`), for the access log.
    pub aws_request_id: String,
    /// `Lambda-Runtime-Deadline-Ms`: when Lambda stops the invocation.
    pub deadline: SystemTime,
    /// `Lambda-Runtime-Trace-Id`: this invocation's X-Ray trace header, from its own context
    /// (with concurrent invocations, `_X_AMZN_TRACE_ID` in the environment is not set).
    pub xray_trace_id: Option<String>,
    /// Set on the first invocation of the process.
    pub cold_start: Option<ColdStart>,
}

/// What a runtime knows of an arriving request, which [`Entry::context`] completes.
#[derive(Clone, Debug, Default)]
pub struct Arrival {
    pub client: ClientInfo,
    pub stage: Option<String>,
    pub invocation: Option<Invocation>,
    pub malformed_event: Option<&'static str>,
}

/// Where requests enter the gateway: makes each one's [`RequestContext`], the deadline
/// computed here alone for both runtimes. As a layer, it gives a request that reached the
/// router without a runtime (a test, an embedding app) a context of an unknown client.
#[derive(Clone, Debug)]
pub struct Entry {
    timeout: Duration,
    deadline_margin: Duration,
    body_limit: u64,
}

impl Entry {
    pub fn new(server: &ServerSettings) -> Self {
        Self {
            timeout: server.timeout,
            deadline_margin: server.deadline_margin,
            body_limit: server.body_limit,
        }
    }

    /// The context of a request arriving now.
    pub fn context(&self, arrival: Arrival) -> RequestContext {
        RequestContext {
            deadline: self.deadline(Instant::now(), arrival.invocation.as_ref()),
            client: arrival.client,
            stage: arrival.stage,
            body_limit: self.body_limit,
            invocation: arrival.invocation,
            malformed_event: arrival.malformed_event,
            notes: Arc::default(),
        }
    }

    /// `server.timeout` from `now`, or the invocation deadline less the margin needed to send
    /// the response when that is earlier. An invocation deadline already past when the
    /// request arrives cannot be real (cargo-lambda 1.9 sends a relative 600000): the gateway
    /// warns once and uses `server.timeout`.
    fn deadline(&self, now: Instant, invocation: Option<&Invocation>) -> Instant {
        let Some(invocation) = invocation else {
            return now + self.timeout;
        };
        let Ok(remaining) = invocation.deadline.duration_since(SystemTime::now()) else {
            static WARNED: AtomicBool = AtomicBool::new(false);
            if !WARNED.swap(true, Ordering::Relaxed) {
                let deadline_ms = invocation
                    .deadline
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis());
                tracing::warn!(
                    deadline_ms,
                    "the invocation's deadline (Lambda-Runtime-Deadline-Ms) had passed when it arrived; using server.timeout instead (warned once)"
                );
            }
            return now + self.timeout;
        };
        now + remaining
            .saturating_sub(self.deadline_margin)
            .min(self.timeout)
    }
}

impl<S> Layer<S> for Entry {
    type Service = WithContext<S>;

    fn layer(&self, inner: S) -> Self::Service {
        WithContext {
            inner,
            entry: self.clone(),
        }
    }
}

/// See [`Entry`].
#[derive(Clone, Debug)]
pub struct WithContext<S> {
    inner: S,
    entry: Entry,
}

impl<S: Service<Request>> Service<Request> for WithContext<S> {
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request) -> Self::Future {
        if RequestContext::of(request.extensions()).is_none() {
            let context = self.entry.context(Arrival::default());
            request.extensions_mut().insert(context);
        }
        self.inner.call(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> Entry {
        Entry {
            timeout: Duration::from_secs(30),
            deadline_margin: Duration::from_millis(500),
            body_limit: 1024,
        }
    }

    fn invocation(deadline: SystemTime) -> Invocation {
        Invocation {
            aws_request_id: "id".into(),
            deadline,
            xray_trace_id: None,
            cold_start: None,
        }
    }

    #[test]
    fn a_server_request_is_due_after_the_server_timeout() {
        let now = Instant::now();
        assert_eq!(entry().deadline(now, None), now + Duration::from_secs(30));
    }

    #[test]
    fn an_invocation_is_due_before_lambda_stops_it_less_the_margin() {
        let now = Instant::now();
        let soon = invocation(SystemTime::now() + Duration::from_secs(3));
        let deadline = entry().deadline(now, Some(&soon));
        assert!(
            deadline <= now + Duration::from_millis(2500),
            "{deadline:?}"
        );
        assert!(deadline > now + Duration::from_secs(2), "{deadline:?}");
        let late = invocation(SystemTime::now() + Duration::from_secs(900));
        assert_eq!(
            entry().deadline(now, Some(&late)),
            now + Duration::from_secs(30),
            "server.timeout bounds a long invocation too"
        );
    }

    #[test]
    fn an_invocation_deadline_in_the_past_falls_back_to_the_server_timeout() {
        let now = Instant::now();
        let past = invocation(SystemTime::UNIX_EPOCH + Duration::from_millis(600_000));
        assert_eq!(
            entry().deadline(now, Some(&past)),
            now + Duration::from_secs(30)
        );
    }
}
