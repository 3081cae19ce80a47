//! The two ways the same router runs: inside AWS Lambda, or as a plain HTTP server.
//! Each runtime tells the router who the client is through [`ClientInfo`].

pub mod config;
mod connection;
pub mod lambda;
pub mod reload;
pub mod server;

use std::{
    cell::Cell,
    net::{IpAddr, SocketAddr},
    time::Instant,
};

pub use crate::Runtime;
use crate::{
    App,
    config::{Config, ConfigError, ConfigSource},
    observability::metrics,
};

use http::HeaderValue;

/// Set by `AWS_LAMBDA_RUNTIME_API` in Lambda; its presence selects Lambda mode.
pub const LAMBDA_RUNTIME_API: &str = "AWS_LAMBDA_RUNTIME_API";

/// Whether this process runs inside AWS Lambda.
pub fn in_lambda() -> bool {
    std::env::var_os(LAMBDA_RUNTIME_API).is_some()
}

/// The runtime the environment selects: Lambda when the Runtime API is announced.
pub fn selected() -> Runtime {
    if in_lambda() {
        Runtime::Lambda
    } else {
        Runtime::Server
    }
}

/// Why the gateway stopped, other than being told to.
#[derive(Debug)]
pub enum Stopped {
    /// The configuration cannot be served (exit status 2); in Lambda already reported to
    /// the Runtime API's init-error endpoint.
    ConfigInvalid(ConfigError),
    Failed(String),
}

/// Serves `config` in `runtime` until it stops: metrics set up for the runtime, the [`App`]
/// built for it, then handed to its loop.
///
/// One thread: Lambda runs one invocation at a time, and in server mode this thread only
/// accepts connections and runs background tasks, while `server.workers` threads, each with
/// an event loop of its own, serve the requests ([`server`]).
pub fn run(
    config: &Config,
    source: &ConfigSource,
    runtime: Runtime,
    started: Instant,
) -> Result<(), Stopped> {
    let executor = executor(runtime)
        .map_err(|error| Stopped::Failed(format!("cannot start the async runtime: {error}")))?;
    executor.block_on(async {
        // Before the app is built, so start-up state (breakers closed) is recorded too.
        if config.metrics.enabled {
            let installed = match runtime {
                Runtime::Lambda => metrics::install_emf(&config.metrics.namespace),
                Runtime::Server => metrics::install_prometheus(),
            };
            if let Err(error) = installed {
                tracing::warn!(%error, "metrics are off");
            }
        }
        let app = match App::new(config, runtime).await {
            Ok(app) => app,
            Err(error) => {
                let error = error.locate(source);
                if runtime == Runtime::Lambda {
                    lambda::report_init_error("Runtime.ConfigError", &error.to_string()).await;
                }
                return Err(Stopped::ConfigInvalid(error));
            }
        };
        tracing::info!(
            config = %source,
            routes = app.plan.routes.len(),
            lambda = runtime == Runtime::Lambda,
            "proxyfn starting"
        );
        let result = match runtime {
            Runtime::Lambda => lambda::run(app, started)
                .await
                .map_err(|error| error.to_string()),
            Runtime::Server => {
                let (listener, bound) = bind(app.plan.server.listen, "server.listen").await?;
                tracing::info!(listen = %bound, "listening");
                let admin = match admin_app(&app) {
                    Some(admin) => {
                        let (listener, bound) =
                            bind(admin.plan.server.listen, "server.admin_listen").await?;
                        tracing::info!(admin_listen = %bound, "admin endpoints listening");
                        Some((listener, admin))
                    }
                    None => None,
                };
                let (public_reloads, public_swaps) = tokio::sync::mpsc::unbounded_channel();
                let (admin_reloads, admin_swaps) = match admin {
                    Some(_) => {
                        let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
                        (Some(sender), Some(receiver))
                    }
                    None => (None, None),
                };
                let reloader = reload::Reloader::new(
                    source.clone(),
                    app.clone(),
                    public_reloads,
                    admin_reloads,
                );
                let _reloading = tokio::spawn(reloader.run());
                let public = server::serve_reloading(
                    listener,
                    app,
                    server::shutdown_signal(),
                    Some(public_swaps),
                );
                match admin {
                    Some((listener, admin)) => tokio::try_join!(
                        public,
                        server::serve_reloading(
                            listener,
                            admin,
                            server::shutdown_signal(),
                            admin_swaps
                        )
                    )
                    .map(|_| ()),
                    None => public.await,
                }
                .map_err(|error| error.to_string())
            }
        };
        #[cfg(feature = "otlp")]
        crate::observability::otel::flush();
        result.map_err(|error| {
            tracing::error!(%error, "proxyfn stopped with an error");
            Stopped::Failed(error)
        })
    })
}

/// Binds the listener `key` configures; also where it listens (port 0 picks one).
async fn bind(
    listen: SocketAddr,
    key: &str,
) -> Result<(tokio::net::TcpListener, SocketAddr), Stopped> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|error| Stopped::Failed(format!("cannot listen on {listen} ({key}): {error}")))?;
    let bound = listener.local_addr().map_or(listen, |addr| addr);
    Ok((listener, bound))
}

/// The admin listener's app (`server.admin_listen`): the operational endpoints on one
/// worker, with no health checks or log buffer of its own (the public server runs those).
pub(crate) fn admin_app(app: &App) -> Option<App> {
    let router = app.admin_router.clone()?;
    let mut plan = app.plan.clone();
    plan.server.listen = plan.server.admin_listen?;
    plan.server.configured_workers = Some(1);
    plan.log.buffer = None;
    Some(App {
        plan,
        router,
        admin_router: None,
        upstreams: Vec::new(),
        ..app.clone()
    })
}

/// The async runtime `run` drives: one thread, or for Lambda Managed Instances one thread
/// per [`lambda::workers`], each numbered as server mode numbers its workers, so that each
/// keeps its own connection pools.
fn executor(runtime: Runtime) -> std::io::Result<tokio::runtime::Runtime> {
    let workers = match runtime {
        Runtime::Lambda => lambda::workers(),
        Runtime::Server => 1,
    };
    if workers == 1 {
        return tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build();
    }
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .on_thread_start(move || {
            set_worker(next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % workers);
        })
        .enable_all()
        .build()
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

/// Who sent the request and how it reached the gateway, as established by the runtime and
/// never by a header the client controls. The forwarding headers sent upstream are written
/// from it ([`crate::upstream::headers`]).
#[derive(Clone, Debug)]
pub struct ClientInfo {
    /// The client's address: the Lambda event's source IP, or in server mode the peer (or,
    /// through trusted proxies, the `X-Forwarded-For` entry they vouch for).
    pub ip: Option<IpAddr>,
    /// The `X-Forwarded-For` the request arrived with, as one value: in Lambda the AWS front
    /// door's (which appended the address it saw), in server mode the peer's.
    pub forwarded_for: Option<HeaderValue>,
    /// The address to append to `X-Forwarded-For` upstream: the TCP peer in server mode.
    /// `None` in Lambda, where API Gateway, Function URLs and ALB have already appended it.
    pub append_to_forwarded_for: Option<IpAddr>,
    /// The scheme the client used (`X-Forwarded-Proto`).
    pub proto: HeaderValue,
    /// The port the client connected to (`X-Forwarded-Port`), when known.
    pub port: Option<HeaderValue>,
    /// The host the client asked for, when it is not the request's `Host`: a trusted proxy's
    /// `X-Forwarded-Host` (server mode), or the event's `domainName` (Lambda, no `Host`).
    pub host: Option<HeaderValue>,
    /// The request came through a trusted proxy or an AWS front door, so the client-address
    /// headers in `server.trusted_headers` are passed on.
    pub trusted_peer: bool,
    /// The request arrived on an HTTP connection the gateway accepted itself (server mode),
    /// so the client framed it and HTTP/1.1's rules apply (RFC 9112 §3.2: `Host` required).
    pub direct_http: bool,
}

impl Default for ClientInfo {
    fn default() -> Self {
        Self {
            ip: None,
            forwarded_for: None,
            append_to_forwarded_for: None,
            proto: HeaderValue::from_static("http"),
            port: None,
            host: None,
            trusted_peer: false,
            direct_http: false,
        }
    }
}

impl ClientInfo {
    /// A client connected directly over plain HTTP.
    pub fn direct(ip: IpAddr) -> Self {
        Self {
            ip: Some(ip),
            append_to_forwarded_for: Some(ip),
            direct_http: true,
            ..Self::default()
        }
    }
}
