//! The two ways the same router runs: inside AWS Lambda, or as a plain HTTP server.
//! Each runtime tells the router who the client is through [`ClientInfo`].

pub mod lambda;
pub mod server;

use std::{cell::Cell, net::IpAddr};

use http::HeaderValue;

/// Set by `AWS_LAMBDA_RUNTIME_API` in Lambda; its presence selects Lambda mode.
pub const LAMBDA_RUNTIME_API: &str = "AWS_LAMBDA_RUNTIME_API";

/// Whether this process runs inside AWS Lambda.
pub fn in_lambda() -> bool {
    std::env::var_os(LAMBDA_RUNTIME_API).is_some()
}

thread_local! {
    static WORKER: Cell<usize> = const { Cell::new(0) };
}

/// The index of the server worker thread this code runs on; 0 outside the workers (Lambda,
/// start-up, background tasks, tests). Upstreams keep one connection pool per worker, so a
/// request and its upstream connection are driven by the same thread.
pub fn worker() -> usize {
    WORKER.with(Cell::get)
}

/// Which of `slots` per-worker resources (a connection pool, a Redis connection) this
/// thread uses.
pub(crate) fn worker_slot(slots: usize) -> usize {
    worker() % slots.max(1)
}

/// Marks the current thread as server worker `index`.
pub(crate) fn set_worker(index: usize) {
    WORKER.with(|worker| worker.set(index));
}

/// The API Gateway stage prefix (`/prod`) removed from the path before routing; the
/// OpenAPI document served under it names it as its server URL.
#[derive(Clone, Debug)]
pub struct StagePrefix(pub String);

/// Who sent the request, as established by the runtime and never by a spoofable header.
#[derive(Clone, Debug)]
pub struct ClientInfo {
    /// The client's address: the Lambda event's source IP, or in server mode the peer (or the
    /// X-Forwarded-For entry `trusted_proxies` hops from the right).
    pub ip: Option<IpAddr>,
    /// The address to append to `X-Forwarded-For` upstream: the TCP peer in server mode.
    /// `None` in Lambda, where API Gateway, Function URLs and ALB have already appended it.
    pub append_to_forwarded_for: Option<IpAddr>,
    /// Whether incoming `X-Forwarded-Proto`/`-Host` were set by a trusted proxy.
    pub trust_forwarded: bool,
    /// The scheme the client used, for `X-Forwarded-Proto` when not trusted from a header.
    pub proto: HeaderValue,
}

impl Default for ClientInfo {
    fn default() -> Self {
        Self {
            ip: None,
            append_to_forwarded_for: None,
            trust_forwarded: false,
            proto: HeaderValue::from_static("http"),
        }
    }
}

impl ClientInfo {
    /// A client connected directly over plain HTTP.
    pub fn direct(ip: IpAddr) -> Self {
        Self {
            ip: Some(ip),
            append_to_forwarded_for: Some(ip),
            ..Self::default()
        }
    }
}
