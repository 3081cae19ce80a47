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
    task::{Context, Poll},
    time::Duration,
};

use axum::{
    Router,
    extract::Request,
    response::Response,
    serve::{IncomingStream, Listener, ListenerExt},
};
use http::HeaderMap;
use tokio::{
    net::{TcpListener, TcpStream},
    sync::{mpsc, oneshot, watch},
};
use tower::Service;

use super::ClientInfo;
use crate::{
    App,
    observability::log_output,
    upstream::{Upstream, headers::X_FORWARDED_FOR},
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
    let trusted_proxies = app.plan.server.trusted_proxies;
    let shutdown_timeout = app.plan.server.shutdown_timeout;
    let health_checks: Vec<_> = app
        .upstreams
        .iter()
        .filter_map(Upstream::spawn_health_checks)
        .collect();
    let _stop_health_checks = AbortOnDrop(health_checks);
    let connections = Connections {
        router: app.router,
        trusted_proxies,
    };
    let local = listener.local_addr()?;

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
    trusted_proxies: usize,
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
            trusted_proxies: self.trusted_proxies,
        }))
    }
}

/// One connection's service: puts the [`ClientInfo`] of its peer on every request.
#[derive(Clone)]
struct FromPeer {
    router: Router,
    peer: SocketAddr,
    trusted_proxies: usize,
}

impl Service<Request> for FromPeer {
    type Response = Response;
    type Error = Infallible;
    type Future = <Router as Service<Request>>::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Service::<Request>::poll_ready(&mut self.router, cx)
    }

    fn call(&mut self, mut request: Request) -> Self::Future {
        let info = client_info(self.peer, request.headers(), self.trusted_proxies);
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

/// The client of a connection from `peer`. With `trusted_proxies = n > 0` the peer is the
/// nearest of n trusted proxies, and the client is the X-Forwarded-For entry n hops from the
/// right: entries further left were written by the client and can be spoofed.
pub fn client_info(peer: SocketAddr, headers: &HeaderMap, trusted_proxies: usize) -> ClientInfo {
    let mut info = ClientInfo::direct(peer.ip());
    if trusted_proxies == 0 {
        return info;
    }
    info.trust_forwarded = true;
    let chain: Vec<&str> = headers
        .get_all(&X_FORWARDED_FOR)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    if let Some(entry) = chain
        .len()
        .checked_sub(trusted_proxies)
        .map(|i| chain[i])
        .or(chain.first().copied())
        && let Ok(ip) = entry.parse()
    {
        info.ip = Some(ip);
    }
    info
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(xff: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for value in xff {
            map.append(X_FORWARDED_FOR, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    const PEER: &str = "10.0.0.1:5000";

    #[test]
    fn with_no_trusted_proxy_the_peer_is_the_client_whatever_the_header_says() {
        let info = client_info(PEER.parse().unwrap(), &headers(&["6.6.6.6"]), 0);
        assert_eq!(info.ip.unwrap().to_string(), "10.0.0.1");
        assert!(!info.trust_forwarded);
    }

    #[test]
    fn trusted_hops_are_counted_from_the_right() {
        let h = headers(&["6.6.6.6, 1.2.3.4", "172.16.0.9"]);
        assert_eq!(
            client_info(PEER.parse().unwrap(), &h, 1)
                .ip
                .unwrap()
                .to_string(),
            "172.16.0.9"
        );
        assert_eq!(
            client_info(PEER.parse().unwrap(), &h, 2)
                .ip
                .unwrap()
                .to_string(),
            "1.2.3.4"
        );
    }

    #[test]
    fn a_garbage_entry_falls_back_to_the_peer() {
        let info = client_info(PEER.parse().unwrap(), &headers(&["not-an-ip"]), 1);
        assert_eq!(info.ip.unwrap().to_string(), "10.0.0.1");
    }
}
