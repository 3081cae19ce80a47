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

use std::{
    convert::Infallible,
    future::Future,
    io,
    net::SocketAddr,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use axum::{
    Router,
    extract::Request,
    response::Response,
    serve::{IncomingStream, Listener, ListenerExt},
};
use http::{HeaderMap, HeaderName, HeaderValue};
use tokio::{
    net::{TcpListener, TcpStream},
    sync::{mpsc, oneshot, watch},
};
use tower::Service;

use super::ClientInfo;
use crate::{
    App,
    observability::log_output,
    trust::TrustedProxies,
    upstream::{
        Upstream,
        headers::{X_FORWARDED_FOR, X_FORWARDED_HOST, X_FORWARDED_PORT, X_FORWARDED_PROTO},
    },
};

/// Stops the background tasks when serving ends.
struct AbortOnDrop(Vec<tokio::task::JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

/// A connection accepted by the listener, on its way to a worker.
type Accepted = (std::net::TcpStream, SocketAddr);

/// Serves `app` on `listener` until `shutdown` completes, then drains in-flight requests
/// for at most `server.shutdown_timeout`. Active health checks run meanwhile.
pub async fn serve(
    listener: TcpListener,
    app: App,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    // Until `serve` returns, when what is left is written out.
    let _buffering = app
        .plan
        .log
        .buffer
        .as_ref()
        .map(log_output::Buffering::start);
    let trusted_proxies = Arc::new(app.plan.server.trusted_proxies.clone());
    let shutdown_timeout = app.plan.server.shutdown_timeout;
    let health_checks: Vec<_> = app
        .upstreams
        .iter()
        .filter_map(Upstream::spawn_health_checks)
        .collect();
    let _stop_health_checks = AbortOnDrop(health_checks);
    let local = listener.local_addr()?;
    let connections = Connections {
        router: app.router,
        trusted_proxies,
        local_port: HeaderValue::from(local.port()),
    };

    // Dropping these (shutdown, or this future being dropped) stops the workers: first their
    // listeners, then, once every worker has drained, their event loops.
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
            listener: Handoff { incoming, local },
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

    accept_until(listener, &handoffs, shutdown).await;
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
/// listener is closed on return, so new connections are refused from then on.
async fn accept_until(
    listener: TcpListener,
    workers: &[mpsc::UnboundedSender<Accepted>],
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let mut next = 0;
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => return,
            accepted = listener.accept() => accepted,
        };
        match accepted.and_then(|(stream, peer)| Ok((stream.into_std()?, peer))) {
            Ok(connection) => {
                let _ = workers[next].send(connection);
                next = (next + 1) % workers.len();
            }
            Err(error) if is_connection_error(&error) => {}
            // Out of file descriptors and the like: wait instead of spinning on the error.
            Err(error) => {
                tracing::error!(%error, "cannot accept connections");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
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
    listener: Handoff,
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
            listener,
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
            // Responses are written whole: Nagle's algorithm would only delay them.
            let listener = listener.tap_io(|stream| {
                let _ = stream.set_nodelay(true);
            });
            let served = axum::serve(listener, connections)
                .with_graceful_shutdown(async move {
                    let _ = stopped.wait_for(|stop| *stop).await;
                })
                .await;
            let _ = done.send(served);
            // Tasks on this loop may serve other workers' requests too (a Redis connection
            // opened here): keep it running until every worker has drained.
            let _ = released.wait_for(|release| *release).await;
        });
    }
}

/// Makes the service of each accepted connection: the router, told who the client is.
#[derive(Clone)]
struct Connections {
    router: Router,
    trusted_proxies: Arc<TrustedProxies>,
    /// The listener's port, for `X-Forwarded-Port`.
    local_port: HeaderValue,
}

impl<L: Listener<Addr = SocketAddr>> Service<IncomingStream<'_, L>> for Connections {
    type Response = FromPeer;
    type Error = Infallible;
    type Future = std::future::Ready<Result<FromPeer, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, connection: IncomingStream<'_, L>) -> Self::Future {
        std::future::ready(Ok(FromPeer {
            router: self.router.clone(),
            peer: *connection.remote_addr(),
            trusted_proxies: self.trusted_proxies.clone(),
            local_port: self.local_port.clone(),
        }))
    }
}

/// One connection's service: puts the [`ClientInfo`] of its peer on every request.
#[derive(Clone)]
struct FromPeer {
    router: Router,
    peer: SocketAddr,
    trusted_proxies: Arc<TrustedProxies>,
    local_port: HeaderValue,
}

impl Service<Request> for FromPeer {
    type Response = Response;
    type Error = Infallible;
    type Future = <Router as Service<Request>>::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Service::<Request>::poll_ready(&mut self.router, cx)
    }

    fn call(&mut self, mut request: Request) -> Self::Future {
        let info = client_info(
            self.peer,
            request.headers(),
            &self.trusted_proxies,
            &self.local_port,
        );
        request.extensions_mut().insert(info);
        self.router.call(request)
    }
}

/// A worker's listener: the connections the accept loop hands it.
struct Handoff {
    incoming: mpsc::UnboundedReceiver<Accepted>,
    local: SocketAddr,
}

impl Listener for Handoff {
    type Io = TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (TcpStream, SocketAddr) {
        loop {
            let Some((stream, peer)) = self.incoming.recv().await else {
                // The accept loop has stopped: graceful shutdown ends this worker.
                return std::future::pending().await;
            };
            match TcpStream::from_std(stream) {
                Ok(stream) => return (stream, peer),
                Err(error) => tracing::warn!(%error, "cannot serve an accepted connection"),
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local)
    }
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
