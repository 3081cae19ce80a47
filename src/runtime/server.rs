//! Server mode: the router served by worker threads, with graceful shutdown on SIGTERM/SIGINT
//! that lets in-flight requests finish (bounded by `server.shutdown_timeout`).
//!
//! Thread per core, as nginx and Envoy run: `server.workers` threads, each with its own
//! single-threaded event loop, serve the connections the listener hands them in turn. A
//! connection, the requests on it and the upstream connections they use (one pool per worker,
//! see [`crate::runtime::worker`]) are all driven by one thread, so a proxied request never
//! waits for another thread to wake up. State that must be shared (rate limits, breakers,
//! caches) is shared by all workers as before. The accept loop, health checks and metrics
//! upkeep run on the caller's runtime.
//!
//! No client can hold the server's resources for nothing: every connection has the header and
//! idle timeouts of [`super::connection`]; its unfinished header section is bounded by
//! `server.header_limit` (hyper's read buffer); beyond `server.max_connections` open
//! connections, new ones are closed at once, so descriptors run out for nobody; and accept
//! errors back off instead of spinning.

use std::{
    convert::Infallible,
    future::Future,
    io,
    net::SocketAddr,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use axum::{Router, body::Body, extract::Request, response::Response};
use http::{HeaderMap, HeaderName, HeaderValue};
use http_body::Frame;
use hyper::body::Incoming;
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    service::TowerToHyperService,
};
use tokio::{
    net::{TcpListener, TcpStream},
    sync::{mpsc, oneshot, watch},
    task::JoinSet,
};
use tower::Service;

use super::{
    ClientInfo,
    connection::{Activity, InFlight, TimedIo},
    reload::Current,
};
use crate::{
    App,
    context::{Arrival, Entry},
    observability::{log_output, throttle::Throttle},
    runtime::config::ServerSettings,
    trust::TrustedProxies,
    upstream::{
        Upstream,
        headers::{X_FORWARDED_FOR, X_FORWARDED_HOST, X_FORWARDED_PORT, X_FORWARDED_PROTO},
    },
};

/// Stops the background tasks when serving ends.
struct AbortOnDrop(Vec<tokio::task::JoinHandle<()>>);

/// The health-check task of each upstream being served, by the upstream object it probes.
#[derive(Default)]
struct HealthChecks(Vec<(Upstream, AbortOnDrop)>);

impl HealthChecks {
    /// Probes `upstreams` from now on: kept upstreams keep their task, new ones get one, and
    /// the tasks of the others stop (dropping them aborts them).
    fn follow(&mut self, upstreams: &[Upstream]) {
        let mut previous = std::mem::take(&mut self.0);
        for upstream in upstreams {
            let kept = previous.iter().position(|(probed, _)| probed.is(upstream));
            match kept {
                Some(index) => self.0.push(previous.swap_remove(index)),
                None => {
                    if let Some(task) = upstream.spawn_health_checks() {
                        self.0.push((upstream.clone(), AbortOnDrop(vec![task])));
                    }
                }
            }
        }
    }
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

/// A connection accepted by the listener, on its way to a worker, with its place among the
/// open connections.
type Accepted = (std::net::TcpStream, SocketAddr, OpenConnection);

/// Counts an open connection until it is dropped (when its connection task ends).
struct OpenConnection(Arc<AtomicUsize>);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// How each connection is served, from `[server]`.
#[derive(Clone, Copy, Debug)]
struct ConnectionSettings {
    header_timeout: Duration,
    idle_timeout: Duration,
    /// hyper's read buffer: bounds the memory of an unfinished header section.
    max_buf_size: usize,
}

impl ConnectionSettings {
    fn new(server: &ServerSettings) -> Self {
        Self {
            header_timeout: server.header_timeout,
            idle_timeout: server.idle_timeout,
            // The header section within `header_limit` gets the gateway's own 431 problem;
            // the request line and the start of a body share the buffer. hyper needs 8 KiB.
            max_buf_size: server.header_limit.saturating_add(8 << 10).max(8 << 10),
        }
    }
}

/// Raises the soft descriptor limit to the hard one and returns the connections to allow:
/// as configured, else half the descriptor limit (the rest is for upstream connections, Redis
/// and files), so the process never runs out of descriptors to accept with.
fn max_connections(server: &ServerSettings) -> usize {
    let limit = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => limit,
        Err(error) => {
            tracing::warn!(%error, "cannot raise the descriptor limit");
            rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(1024, |(soft, _)| soft)
        }
    };
    let derived = usize::try_from(limit / 2).unwrap_or(usize::MAX).max(1);
    match server.max_connections {
        Some(configured) => {
            if configured as u64 >= limit {
                tracing::warn!(
                    configured,
                    descriptor_limit = limit,
                    "server.max_connections is not below the descriptor limit: accepting may fail with EMFILE"
                );
            }
            configured
        }
        None => derived,
    }
}

/// Serves `app` on `listener` until `shutdown` completes, then drains in-flight requests
/// for at most `server.shutdown_timeout`. Active health checks run meanwhile.
pub async fn serve(
    listener: TcpListener,
    app: App,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    serve_reloading(listener, app, shutdown, None).await
}

/// [`serve`], swapping in each app `reloads` delivers ([`super::reload`]): new requests get
/// its router, requests in flight finish on theirs, and upstreams it kept keep their health
/// checks, while those it replaced or dropped have theirs stopped.
pub async fn serve_reloading(
    listener: TcpListener,
    app: App,
    shutdown: impl Future<Output = ()> + Send + 'static,
    reloads: Option<mpsc::UnboundedReceiver<App>>,
) -> io::Result<()> {
    // Until `serve` returns, when what is left is written out.
    let _buffering = app
        .plan
        .log
        .buffer
        .as_ref()
        .map(log_output::Buffering::start);
    let server = &app.plan.server;
    let shutdown_timeout = server.shutdown_timeout;
    let max_connections = max_connections(server);
    let settings = ConnectionSettings::new(server);
    let mut health_checks = HealthChecks::default();
    health_checks.follow(&app.upstreams);
    let current = Arc::new(Current::new(app.router.clone(), app.generation));
    // Until `serve` returns: the health checks, or the task that swaps apps and owns them.
    let _health_checks_or_swapping = match reloads {
        None => (Some(health_checks), None),
        Some(mut reloads) => {
            let current = current.clone();
            let swapping = tokio::spawn(async move {
                while let Some(app) = reloads.recv().await {
                    health_checks.follow(&app.upstreams);
                    current.swap(app.router, app.generation);
                }
            });
            (None, Some(AbortOnDrop(vec![swapping])))
        }
    };
    let local = listener.local_addr()?;
    let connections = Connections {
        current,
        entry: app.entry,
        trusted_proxies: Arc::new(server.trusted_proxies.clone()),
        local_port: HeaderValue::from(local.port()),
    };

    // Dropping these (shutdown, or this future being dropped) stops the workers: first their
    // accepting, then, once every worker has drained, their event loops.
    let (stop, stopped) = watch::channel(false);
    let (release, released) = watch::channel(false);
    let workers = app.plan.server.workers();
    let mut handoffs = Vec::with_capacity(workers);
    let mut drained = Vec::with_capacity(workers);
    for index in 0..workers {
        let (handoff, incoming) = mpsc::unbounded_channel();
        let (started, on_started) = oneshot::channel();
        let (done, on_done) = oneshot::channel();
        let worker = Worker {
            index,
            started,
            connections: connections.clone(),
            settings,
            incoming,
            stopped: stopped.clone(),
            released: released.clone(),
            done,
        };
        std::thread::Builder::new()
            .name(format!("proxyfn-worker-{index}"))
            .spawn(move || worker.run())?;
        // A worker that cannot start fails `serve`, instead of silently dropping its share
        // of the connections.
        on_started
            .await
            .unwrap_or_else(|_| Err(io::Error::other("a worker thread ended at start")))?;
        handoffs.push(handoff);
        drained.push(on_done);
    }

    accept_until(listener, &handoffs, max_connections, shutdown).await;
    tracing::info!("shutting down: draining in-flight requests");
    let _ = stop.send(true);
    drop(handoffs);
    let all_drained = async {
        let mut result = Ok(());
        for worker in drained {
            if let Ok(Err(error)) = worker.await {
                result = Err(error);
            }
        }
        result
    };
    let result = match tokio::time::timeout(shutdown_timeout, all_drained).await {
        Ok(result) => result,
        Err(_) => {
            tracing::warn!(timeout = ?shutdown_timeout, "in-flight requests still running at the shutdown deadline; closing them");
            Ok(())
        }
    };
    let _ = release.send(true);
    result
}

/// Accepts connections and hands them to the workers in turn until `shutdown` completes; the
/// listener is closed on return, so new connections are refused from then on. Past
/// `max_connections` open ones, a new connection is closed at once.
async fn accept_until(
    listener: TcpListener,
    workers: &[mpsc::UnboundedSender<Accepted>],
    max_connections: usize,
    shutdown: impl Future<Output = ()>,
) {
    static OVER_LIMIT: Throttle = Throttle::new();
    static ACCEPT_FAILED: Throttle = Throttle::new();
    const MAX_BACKOFF: Duration = Duration::from_secs(1);
    tokio::pin!(shutdown);
    let open = Arc::new(AtomicUsize::new(0));
    let mut next = 0;
    let mut backoff = Duration::from_millis(5);
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => return,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(connection) => connection,
            Err(error) if is_connection_error(&error) => continue,
            // Out of file descriptors and the like: wait, longer each time, instead of spinning.
            Err(error) => {
                if let Some(held_back) = ACCEPT_FAILED.admit() {
                    tracing::error!(%error, held_back, backoff_ms = backoff.as_millis() as u64, "cannot accept connections");
                }
                tokio::select! {
                    () = &mut shutdown => return,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        backoff = Duration::from_millis(5);
        if open.load(Ordering::Relaxed) >= max_connections {
            if let Some(held_back) = OVER_LIMIT.admit() {
                tracing::warn!(
                    max_connections,
                    held_back,
                    "closing new connections: server.max_connections are open"
                );
            }
            drop(stream);
            continue;
        }
        open.fetch_add(1, Ordering::Relaxed);
        let slot = OpenConnection(open.clone());
        match stream.into_std() {
            Ok(stream) => {
                let _ = workers[next].send((stream, peer, slot));
                next = (next + 1) % workers.len();
            }
            Err(error) => tracing::warn!(%error, "cannot hand an accepted connection over"),
        }
    }
}

/// An error of one connection (it went away before it was accepted), not of the listener.
fn is_connection_error(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// One worker thread: its event loop serves the connections handed to it.
struct Worker {
    index: usize,
    started: oneshot::Sender<io::Result<()>>,
    connections: Connections,
    settings: ConnectionSettings,
    incoming: mpsc::UnboundedReceiver<Accepted>,
    stopped: watch::Receiver<bool>,
    released: watch::Receiver<bool>,
    done: oneshot::Sender<io::Result<()>>,
}

impl Worker {
    fn run(self) {
        let Self {
            index,
            started,
            connections,
            settings,
            mut incoming,
            mut stopped,
            mut released,
            done,
        } = self;
        super::set_worker(index);
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime,
            Err(error) => {
                let _ = started.send(Err(error));
                return;
            }
        };
        let _ = started.send(Ok(()));
        runtime.block_on(async move {
            let mut open = JoinSet::new();
            loop {
                tokio::select! {
                    accepted = incoming.recv() => {
                        let Some((stream, peer, slot)) = accepted else { break };
                        match TcpStream::from_std(stream) {
                            Ok(stream) => {
                                open.spawn(serve_connection(
                                    stream,
                                    peer,
                                    connections.clone(),
                                    settings,
                                    stopped.clone(),
                                    slot,
                                ));
                            }
                            Err(error) => tracing::warn!(%error, "cannot serve an accepted connection"),
                        }
                    }
                    () = stop_requested(&mut stopped) => break,
                    // Reap finished connections as they go.
                    Some(_) = open.join_next(), if !open.is_empty() => {}
                }
            }
            // Each connection sees `stopped` and finishes its request in flight, if any.
            while open.join_next().await.is_some() {}
            let _ = done.send(Ok(()));
            // Tasks on this loop may serve other workers' requests too (a Redis connection
            // opened here): keep it running until every worker has drained.
            let _ = released.wait_for(|release| *release).await;
        });
    }
}

/// Serves one connection until the client closes it, a timeout ends it, or shutdown asks it
/// to finish its request in flight and close.
async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    connections: Connections,
    settings: ConnectionSettings,
    mut stopped: watch::Receiver<bool>,
    _slot: OpenConnection,
) {
    // Responses are written whole: Nagle's algorithm would only delay them.
    let _ = stream.set_nodelay(true);
    let activity = Activity::new();
    let io = TimedIo::new(
        stream,
        activity.clone(),
        settings.header_timeout,
        settings.idle_timeout,
    );
    let service = FromPeer {
        generation: connections.current.generation(),
        router: connections.current.router(),
        current: connections.current,
        entry: connections.entry,
        peer,
        trusted_proxies: connections.trusted_proxies,
        local_port: connections.local_port,
        activity,
    };
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        // The header and idle timeouts are TimedIo's: hyper's would count idle time too.
        .header_read_timeout(None)
        .max_buf_size(settings.max_buf_size);
    let connection = builder.serve_connection(TokioIo::new(io), TowerToHyperService::new(service));
    tokio::pin!(connection);
    let served = tokio::select! {
        served = connection.as_mut() => served,
        () = stop_requested(&mut stopped) => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(error) = served {
        tracing::debug!(%error, %peer, "connection ended with an error");
    }
}

/// Resolves once shutdown has begun (the `watch` guard is not held past it).
async fn stop_requested(stopped: &mut watch::Receiver<bool>) {
    let _ = stopped.wait_for(|stop| *stop).await;
}

/// What every connection's service is made from.
#[derive(Clone)]
struct Connections {
    /// The router new requests get; a reload swaps it.
    current: Arc<Current>,
    entry: Entry,
    trusted_proxies: Arc<TrustedProxies>,
    /// The listener's port, for `X-Forwarded-Port`.
    local_port: HeaderValue,
}

/// One connection's service: gives every request its [`crate::context::RequestContext`], with the
/// [`ClientInfo`] of the peer, and keeps the connection's [`Activity`] busy until the
/// response body is done.
#[derive(Clone)]
struct FromPeer {
    current: Arc<Current>,
    /// The router of `generation`, this connection's until a reload makes another current.
    router: Router,
    generation: u64,
    entry: Entry,
    peer: SocketAddr,
    trusted_proxies: Arc<TrustedProxies>,
    local_port: HeaderValue,
    activity: Arc<Activity>,
}

impl Service<http::Request<Incoming>> for FromPeer {
    type Response = Response;
    type Error = Infallible;
    type Future = Served<<Router as Service<Request>>::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Service::<Request>::poll_ready(&mut self.router, cx)
    }

    fn call(&mut self, request: http::Request<Incoming>) -> Self::Future {
        let generation = self.current.generation();
        if generation != self.generation {
            self.router = self.current.router();
            self.generation = generation;
        }
        let in_flight = self.activity.begin();
        let mut request = request.map(Body::new);
        let info = client_info(
            self.peer,
            request.headers(),
            &self.trusted_proxies,
            &self.local_port,
        );
        let context = self.entry.context(Arrival {
            client: info,
            ..Arrival::default()
        });
        request.extensions_mut().insert(context);
        Served {
            inner: self.router.call(request),
            in_flight: Some(in_flight),
        }
    }
}

pin_project_lite::pin_project! {
    /// The router's answer, whose body keeps the request in flight until it is done.
    struct Served<F> {
        #[pin]
        inner: F,
        in_flight: Option<InFlight>,
    }
}

impl<F> Future for Served<F>
where
    F: Future<Output = Result<Response, Infallible>>,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let response = std::task::ready!(this.inner.poll(cx))?;
        let in_flight = this.in_flight.take();
        Poll::Ready(Ok(response.map(|body| {
            Body::new(UntilDone {
                inner: body,
                _in_flight: in_flight,
            })
        })))
    }
}

pin_project_lite::pin_project! {
    /// A response body holding its request in flight until it is finished or dropped.
    struct UntilDone<B> {
        #[pin]
        inner: B,
        _in_flight: Option<InFlight>,
    }
}

impl<B: http_body::Body> http_body::Body for UntilDone<B> {
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

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// `proxyfn health`: asks the gateway listening on `listen` for `GET /health`, as a container
/// `HEALTHCHECK` would with curl (the distroless image has neither a shell nor curl). An
/// unspecified address (`0.0.0.0`, `[::]`) is asked on loopback. `Ok` when it answers 200.
pub async fn probe_health(listen: SocketAddr, path: &str, timeout: Duration) -> Result<(), String> {
    match request(listen, "GET", path, timeout).await? {
        (200, _) => Ok(()),
        (status, _) => Err(format!("GET {path} answered {status}")),
    }
}

/// One HTTP/1.1 request to the gateway at `listen` (an unspecified address means this host):
/// the answer's status and body. For the CLI (`health`, `reload`), with no client library.
pub async fn request(
    listen: SocketAddr,
    method: &str,
    path: &str,
    timeout: Duration,
) -> Result<(u16, String), String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut target = listen;
    if target.ip().is_unspecified() {
        target.set_ip(match target {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    let exchange = async {
        let mut stream = TcpStream::connect(target)
            .await
            .map_err(|e| format!("cannot connect to {target}: {e}"))?;
        let head = format!(
            "{method} {path} HTTP/1.1\r\nhost: localhost\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
        );
        stream
            .write_all(head.as_bytes())
            .await
            .map_err(|e| format!("cannot send the request: {e}"))?;
        let mut answer = Vec::new();
        stream
            .take(1 << 20)
            .read_to_end(&mut answer)
            .await
            .map_err(|e| format!("no answer: {e}"))?;
        let answer = String::from_utf8_lossy(&answer);
        let status = answer
            .split(' ')
            .nth(1)
            .and_then(|status| status.parse().ok())
            .ok_or_else(|| format!("{method} {path} got no HTTP answer"))?;
        let body = answer
            .split_once("\r\n\r\n")
            .map(|(_, body)| body.to_owned())
            .unwrap_or_default();
        Ok((status, body))
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| format!("no answer within {timeout:?}"))?
}

/// Resolves when the process receives SIGTERM (containers, Kubernetes) or SIGINT (Ctrl-C).
pub async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {},
        () = terminate => {},
    }
}

/// The client of a connection from `peer`, and what it asked for. The peer is the client
/// unless it is a trusted proxy: then the client is the `X-Forwarded-For` entry the trusted
/// hops vouch for (entries further left were written by the client and can be spoofed), and
/// the proxy's `X-Forwarded-Proto`/`-Host`/`-Port` say what the client asked for.
pub fn client_info(
    peer: SocketAddr,
    headers: &HeaderMap,
    trusted: &TrustedProxies,
    local_port: &HeaderValue,
) -> ClientInfo {
    let mut info = ClientInfo::direct(peer.ip());
    info.port = Some(local_port.clone());
    info.forwarded_for = received_chain(headers);
    if !trusted.trusts_peer(peer.ip()) {
        return info;
    }
    info.trusted_peer = true;
    if let Some(received) = info.forwarded_for.as_ref().and_then(|v| v.to_str().ok()) {
        let chain: Vec<&str> = received
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        info.ip = Some(trusted.client_address(peer.ip(), &chain));
    }
    if let Some(proto) = first_entry(headers, &X_FORWARDED_PROTO)
        .filter(|p| p.eq_ignore_ascii_case("http") || p.eq_ignore_ascii_case("https"))
    {
        info.proto = HeaderValue::from_static(if proto.eq_ignore_ascii_case("https") {
            "https"
        } else {
            "http"
        });
    }
    if let Some(host) = first_entry(headers, &X_FORWARDED_HOST)
        .filter(|h| crate::trust::is_valid_host(h.as_bytes()))
        .and_then(|h| HeaderValue::from_str(h).ok())
    {
        info.host = Some(host);
    }
    if let Some(port) = first_entry(headers, &X_FORWARDED_PORT)
        .filter(|p| p.parse::<u16>().is_ok_and(|p| p > 0))
        .and_then(|p| HeaderValue::from_str(p).ok())
    {
        info.port = Some(port);
    }
    info
}

/// Every `X-Forwarded-For` field received, as one comma-separated value.
fn received_chain(headers: &HeaderMap) -> Option<HeaderValue> {
    let mut fields = headers.get_all(&X_FORWARDED_FOR).iter();
    let first = fields.next()?;
    let Some(second) = fields.next() else {
        return Some(first.clone());
    };
    let mut joined = first.as_bytes().to_vec();
    for field in std::iter::once(second).chain(fields) {
        joined.extend_from_slice(b", ");
        joined.extend_from_slice(field.as_bytes());
    }
    HeaderValue::from_bytes(&joined).ok()
}

/// The first comma-separated entry of `name`: the value the outermost proxy wrote.
fn first_entry<'h>(headers: &'h HeaderMap, name: &HeaderName) -> Option<&'h str> {
    headers
        .get(name)?
        .to_str()
        .ok()?
        .split(',')
        .map(str::trim)
        .find(|entry| !entry.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    const PEER: &str = "10.0.0.1:5000";

    fn info(pairs: &[(&'static str, &'static str)], trusted: TrustedProxies) -> ClientInfo {
        client_info(
            PEER.parse().unwrap(),
            &headers(pairs),
            &trusted,
            &HeaderValue::from_static("8080"),
        )
    }

    #[test]
    fn with_no_trusted_proxy_the_peer_is_the_client_whatever_the_headers_say() {
        let info = info(
            &[
                ("x-forwarded-for", "6.6.6.6"),
                ("x-forwarded-proto", "https"),
                ("x-forwarded-host", "evil.example"),
            ],
            TrustedProxies::Count(0),
        );
        assert_eq!(info.ip.unwrap().to_string(), "10.0.0.1");
        assert!(!info.trusted_peer);
        assert_eq!(info.proto, "http");
        assert!(info.host.is_none());
        assert_eq!(info.port.unwrap(), "8080");
        assert_eq!(info.forwarded_for.unwrap(), "6.6.6.6");
    }

    #[test]
    fn trusted_hops_are_counted_from_the_right_across_fields() {
        let pairs = [
            ("x-forwarded-for", "6.6.6.6, 1.2.3.4"),
            ("x-forwarded-for", "172.16.0.9"),
        ];
        assert_eq!(
            info(&pairs, TrustedProxies::Count(1))
                .ip
                .unwrap()
                .to_string(),
            "172.16.0.9"
        );
        assert_eq!(
            info(&pairs, TrustedProxies::Count(2))
                .ip
                .unwrap()
                .to_string(),
            "1.2.3.4"
        );
        assert_eq!(
            info(&pairs, TrustedProxies::Count(2))
                .forwarded_for
                .unwrap(),
            "6.6.6.6, 1.2.3.4, 172.16.0.9"
        );
    }

    #[test]
    fn a_trusted_proxy_says_what_the_client_asked_for() {
        let info = info(
            &[
                ("x-forwarded-proto", "https"),
                ("x-forwarded-host", "api.example.com"),
                ("x-forwarded-port", "443"),
            ],
            TrustedProxies::Count(1),
        );
        assert_eq!(info.proto, "https");
        assert_eq!(info.host.unwrap(), "api.example.com");
        assert_eq!(info.port.unwrap(), "443");
        let garbage = self::info(
            &[
                ("x-forwarded-proto", "gopher"),
                ("x-forwarded-host", "evil/../x@y"),
                ("x-forwarded-port", "99999"),
            ],
            TrustedProxies::Count(1),
        );
        assert_eq!(garbage.proto, "http");
        assert!(garbage.host.is_none());
        assert_eq!(garbage.port.unwrap(), "8080");
    }

    #[test]
    fn a_garbage_entry_falls_back_to_the_peer() {
        let info = info(
            &[("x-forwarded-for", "not-an-ip")],
            TrustedProxies::Count(1),
        );
        assert_eq!(info.ip.unwrap().to_string(), "10.0.0.1");
    }
}
