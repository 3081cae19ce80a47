//! Server mode: graceful shutdown, the client address behind trusted proxies, PORT.

use std::{process::Stdio, time::Duration};

use axum::{Router, routing::any};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    sync::oneshot,
};

use crate::helpers::*;

/// An upstream that answers only once released, and says when the request arrived.
async fn held_upstream() -> (Upstream, oneshot::Receiver<()>, oneshot::Sender<()>) {
    let (arrived_tx, arrived_rx) = oneshot::channel::<()>();
    let (release_tx, release_rx) = oneshot::channel::<()>();
    let state = std::sync::Arc::new(std::sync::Mutex::new(Some((arrived_tx, release_rx))));
    let router = Router::new().fallback(any(move || {
        let taken = state.lock().unwrap().take();
        async move {
            if let Some((arrived, release)) = taken {
                let _ = arrived.send(());
                let _ = release.await;
            }
            "finished"
        }
    }));
    (Upstream::serve(router).await, arrived_rx, release_tx)
}

#[tokio::test]
async fn graceful_shutdown_lets_in_flight_requests_finish() {
    let (upstream, arrived, release) = held_upstream().await;
    let mut gateway = Gateway::start(&config_with_upstream(
        &upstream.url(),
        "[[routes]]\npath = \"/work\"\nupstream = \"backend\"\n",
    ))
    .await;

    let in_flight = tokio::spawn(client().get(gateway.url("/work")).send());
    arrived.await.unwrap();
    let server = gateway.begin_shutdown();
    tokio::task::yield_now().await;
    release.send(()).unwrap();

    let response = in_flight.await.unwrap().unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "finished");
    server.await.unwrap().unwrap();
    assert!(
        client().get(gateway.url("/work")).send().await.is_err(),
        "no new connections after shutdown"
    );
}

#[tokio::test]
async fn behind_trusted_proxies_the_client_is_read_from_forwarded_for() {
    let upstream = Upstream::echo().await;
    let gateway = Gateway::start(&config_with_upstream(
        &upstream.url(),
        "[server]\ntrusted_proxies = 1\n[[routes]]\npath = \"/r\"\nupstream = \"backend\"\n",
    ))
    .await;
    client()
        .get(gateway.url("/r"))
        .header("x-forwarded-for", "6.6.6.6, 203.0.113.9")
        .header("x-forwarded-proto", "https")
        .send()
        .await
        .unwrap();
    let seen = upstream.last();
    assert_eq!(seen.headers["x-real-ip"], "203.0.113.9");
    assert_eq!(
        seen.headers["x-forwarded-proto"], "https",
        "a trusted proxy's scheme is kept"
    );
    assert_eq!(
        seen.headers["x-forwarded-for"],
        "6.6.6.6, 203.0.113.9, 127.0.0.1"
    );
}

#[tokio::test]
async fn each_worker_keeps_its_own_upstream_connections() {
    // The upstream records the address of every connection a request came on.
    let peers = std::sync::Arc::new(std::sync::Mutex::new(Vec::<std::net::SocketAddr>::new()));
    let seen = peers.clone();
    let upstream = Router::new().fallback(any(
        move |axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<
            std::net::SocketAddr,
        >| {
            seen.lock().unwrap().push(peer);
            async { "ok" }
        },
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream_url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        axum::serve(
            listener,
            upstream.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .await
        .unwrap();
    });
    let gateway = Gateway::start(&config_with_upstream(
        &upstream_url,
        "[server]\nworkers = 2\n[[routes]]\npath = \"/r\"\nupstream = \"backend\"\n",
    ))
    .await;

    // Two client connections, handed to the two workers in turn; their requests take turns
    // and never overlap, so one shared pool would reuse a single upstream connection.
    let (first, second) = (client(), client());
    for _ in 0..3 {
        for connection in [&first, &second] {
            let response = connection.get(gateway.url("/r")).send().await.unwrap();
            assert_eq!(response.text().await.unwrap(), "ok");
        }
    }

    let mut used = peers.lock().unwrap().clone();
    assert_eq!(used.len(), 6);
    used.sort();
    used.dedup();
    assert_eq!(
        used.len(),
        2,
        "one upstream connection per worker: {used:?}"
    );
}

/// The real binary in server mode, with its address read from its "listening" log line.
struct Process {
    child: tokio::process::Child,
    addr: String,
}

async fn spawn_binary(config: &str, envs: &[(&str, &str)]) -> (Process, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("proxyfn.toml");
    std::fs::write(&path, config).unwrap();
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_proxyfn"));
    command
        .arg("serve")
        .arg("--config")
        .arg(&path)
        .env_remove("AWS_LAMBDA_RUNTIME_API")
        .env_remove("PORT")
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    for (k, v) in envs {
        command.env(k, v);
    }
    let mut child = command.spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let addr = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.unwrap_or(None) {
            let event: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
            if event["message"] == "listening" {
                return event["listen"].as_str().unwrap().to_owned();
            }
        }
        panic!("the binary exited before listening");
    })
    .await
    .expect("listening within 30s");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (Process { child, addr }, dir)
}

#[tokio::test]
async fn sigterm_drains_in_flight_requests_and_exits_cleanly() {
    let (upstream, arrived, release) = held_upstream().await;
    let config = config_with_upstream(
        &upstream.url(),
        "[server]\nlisten = \"127.0.0.1:0\"\n[[routes]]\npath = \"/work\"\nupstream = \"backend\"\n",
    );
    let (mut process, _dir) = spawn_binary(&config, &[]).await;

    let in_flight = tokio::spawn(client().get(format!("http://{}/work", process.addr)).send());
    arrived.await.unwrap();
    sigterm(&process.child);
    tokio::time::sleep(Duration::from_millis(100)).await;
    release.send(()).unwrap();

    let response = in_flight.await.unwrap().unwrap();
    assert_eq!(response.text().await.unwrap(), "finished");
    let exit = tokio::time::timeout(Duration::from_secs(30), process.child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(exit.success(), "{exit:?}");
}

#[tokio::test]
async fn port_overrides_the_configured_port() {
    let port = closed_port().await.to_string();
    let config = "[server]\nlisten = \"127.0.0.1:1\"\n[[routes]]\npath = \"/p\"\nresponse = { body = \"on PORT\" }\n";
    let (process, _dir) = spawn_binary(config, &[("PORT", &port)]).await;
    assert_eq!(process.addr, format!("127.0.0.1:{port}"));
    let body = client()
        .get(format!("http://{}/p", process.addr))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(body, "on PORT");
}
