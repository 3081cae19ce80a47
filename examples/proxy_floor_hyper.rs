//! The lower floor for scripts/bench: a bare hyper HTTP/1 server and hyper-util's pooled client,
//! on Tokio's multi-threaded runtime (one worker per core it may run on), with no router, no
//! layers and no reqwest. Measured beside `proxy_floor` (axum + reqwest), it shows how much of
//! a pass-through's CPU the client and server stack themselves cost (#25's upstream-client
//! decision).
//!
//!     cargo run --release --example proxy_floor_hyper -- 127.0.0.1:8082 http://127.0.0.1:9000

use std::convert::Infallible;

use http::{Request, Response, Uri};
use http_body_util::{BodyExt, Empty, combinators::BoxBody};
use hyper::body::{Bytes, Incoming};
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use hyper_util::rt::{TokioExecutor, TokioIo};

type Body = BoxBody<Bytes, hyper::Error>;

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(listen), Some(upstream)) = (args.next(), args.next()) else {
        eprintln!("usage: proxy_floor_hyper LISTEN UPSTREAM_URL");
        std::process::exit(2);
    };
    let upstream: Uri = upstream.parse().expect("upstream URL");
    let authority = upstream.authority().expect("upstream host").clone();
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: Client<HttpConnector, Incoming> =
        Client::builder(TokioExecutor::new()).build(connector);

    let listener = tokio::net::TcpListener::bind(&listen).await.expect("bind");
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let client = client.clone();
        let authority = authority.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                let client = client.clone();
                let authority = authority.clone();
                async move { Ok::<_, Infallible>(forward(&client, authority, request).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn forward(
    client: &Client<HttpConnector, Incoming>,
    authority: http::uri::Authority,
    request: Request<Incoming>,
) -> Response<Body> {
    let (mut parts, body) = request.into_parts();
    let mut uri = parts.uri.into_parts();
    uri.scheme = Some(http::uri::Scheme::HTTP);
    uri.authority = Some(authority);
    parts.uri = Uri::from_parts(uri).expect("absolute URI");
    match client.request(Request::from_parts(parts, body)).await {
        Ok(response) => response.map(BodyExt::boxed),
        Err(_) => Response::builder()
            .status(502)
            .body(Empty::new().map_err(|never| match never {}).boxed())
            .expect("static response"),
    }
}
