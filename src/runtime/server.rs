//! Server mode: the router on a TCP listener, with graceful shutdown on SIGTERM/SIGINT that
//! lets in-flight requests finish (bounded by `server.shutdown_timeout`).

use std::{future::Future, net::SocketAddr};

use axum::{extract::ConnectInfo, extract::Request, middleware};
use http::HeaderMap;
use tokio::net::TcpListener;

use super::ClientInfo;
use crate::{
    App,
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

/// Serves `app` on `listener` until `shutdown` completes, then drains in-flight requests
/// for at most `server.shutdown_timeout`. Active health checks run meanwhile.
pub async fn serve(
    listener: TcpListener,
    app: App,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let trusted_proxies = app.plan.server.trusted_proxies;
    let shutdown_timeout = app.plan.server.shutdown_timeout;
    let health_checks: Vec<_> = app
        .upstreams
        .iter()
        .filter_map(Upstream::spawn_health_checks)
        .collect();
    let _stop_health_checks = AbortOnDrop(health_checks);
    let app = app
        .router
        .layer(middleware::map_request(
            move |ConnectInfo(peer): ConnectInfo<SocketAddr>, mut request: Request| async move {
                let info = client_info(peer, request.headers(), trusted_proxies);
                request.extensions_mut().insert(info);
                request
            },
        ))
        .into_make_service_with_connect_info::<SocketAddr>();

    let (fired, on_fired) = tokio::sync::oneshot::channel::<()>();
    let server = axum::serve(listener, app).with_graceful_shutdown(async move {
        shutdown.await;
        tracing::info!("shutting down: draining in-flight requests");
        let _ = fired.send(());
    });
    let drain_deadline = async move {
        match on_fired.await {
            Ok(()) => tokio::time::sleep(shutdown_timeout).await,
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        result = server => result,
        () = drain_deadline => {
            tracing::warn!(timeout = ?shutdown_timeout, "in-flight requests still running at the shutdown deadline; closing them");
            Ok(())
        }
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
