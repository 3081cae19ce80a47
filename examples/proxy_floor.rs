//! The floor for scripts/bench: the least an axum + reqwest pass-through proxy does, with none
//! of the gateway's layers (no request id, logs, limits, routing table or header rules).
//! Measured next to proxyfn, it separates what the stack it is built on costs on this machine
//! from what the gateway adds.
//!
//!     cargo run --release --example proxy_floor -- 127.0.0.1:8081 http://127.0.0.1:9000

use axum::{body::Body, extract::Request, response::Response};

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(listen), Some(upstream)) = (args.next(), args.next()) else {
        eprintln!("usage: proxy_floor LISTEN UPSTREAM_URL");
        std::process::exit(2);
    };
    let client = reqwest::Client::builder()
        .tcp_nodelay(true)
        .no_proxy()
        .build()
        .expect("client");
    let forward = move |request: Request| {
        let client = client.clone();
        let url = format!(
            "{upstream}{}",
            request.uri().path_and_query().map_or("/", |p| p.as_str())
        );
        async move {
            let (parts, body) = request.into_parts();
            let mut outbound = client.request(parts.method, url).headers(parts.headers);
            if http_body::Body::size_hint(&body).exact() != Some(0) {
                outbound = outbound.body(reqwest::Body::wrap_stream(body.into_data_stream()));
            }
            let sent = outbound.send().await;
            match sent {
                Ok(response) => http::Response::from(response).map(Body::new),
                Err(_) => Response::builder()
                    .status(502)
                    .body(Body::empty())
                    .unwrap_or_default(),
            }
        }
    };
    let listener = tokio::net::TcpListener::bind(&listen).await.expect("bind");
    axum::serve(listener, axum::Router::new().fallback(forward))
        .await
        .expect("serve");
}
