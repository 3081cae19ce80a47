//! A 64 MiB answer in Lambda mode, buffered against streamed: time to first byte at the
//! Runtime API and the function's peak RSS. The release binary runs as a function against the
//! local Runtime API the Lambda tests use, proxying an in-process upstream that sends the body
//! in 64 KiB chunks. The buffered run raises `lambda.max_response` (and the local API's limit)
//! above Lambda's 6 MB so that there is something to compare. By hand:
//!
//! ```sh
//! cargo build --release --locked --bin proxyfn --example lambda_stream_bench
//! target/release/examples/lambda_stream_bench --gateway target/release/proxyfn
//! ```

#[path = "../tests/integration/runtime_api.rs"]
mod runtime_api;

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, Instant},
};

use axum::{Router, body::Body, response::Response};
use bytes::Bytes;
use clap::Parser;
use runtime_api::{Outcome, RuntimeApi};
use serde_json::{Value, json};

const CHUNK: usize = 64 << 10;

#[derive(Parser)]
struct Args {
    /// The gateway binary (release build).
    #[arg(long)]
    gateway: PathBuf,
    /// Fresh processes of each mode, interleaved.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// The answer's size in MiB.
    #[arg(long, default_value_t = 64)]
    mib: usize,
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let total = args.mib << 20;
    let upstream = upstream(total).await;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let config = |mode: &str, max_response: &str| {
        format!(
            "[lambda]\nresponse_mode = \"{mode}\"\nmax_response = \"{max_response}\"\n\
             [upstreams.backend]\nurl = \"http://{upstream}\"\ntimeout = \"60s\"\n\
             [server]\ntimeout = \"60s\"\n\
             [[routes]]\npath = \"/big\"\nupstream = \"backend\"\n"
        )
    };
    let buffered = dir.path().join("buffered.toml");
    let streamed = dir.path().join("stream.toml");
    std::fs::write(&buffered, config("buffered", "200MB")).unwrap();
    std::fs::write(&streamed, config("stream", "6MB")).unwrap();

    println!(
        "lambda mode, GET of a {} MiB answer (Function URL event), {} rounds interleaved",
        args.mib, args.rounds
    );
    println!(
        "{:<10}{:>16}{:>16}{:>16}",
        "mode", "first byte ms", "complete ms", "peak RSS kB"
    );
    for _ in 0..args.rounds {
        for (mode, path) in [("buffered", &buffered), ("stream", &streamed)] {
            let (first, complete, rss) = run(&args.gateway, path, total).await;
            println!(
                "{mode:<10}{:>16.1}{:>16.1}{:>16}",
                first.as_secs_f64() * 1e3,
                complete.as_secs_f64() * 1e3,
                rss
            );
        }
    }
}

/// An upstream answering `total` bytes of `x` in 64 KiB chunks.
async fn upstream(total: usize) -> std::net::SocketAddr {
    let router = Router::new().fallback(move || async move {
        let chunk = Bytes::from(vec![b'x'; CHUNK]);
        let chunks = futures_util::stream::iter(
            (0..total / CHUNK).map(move |_| Ok::<_, std::io::Error>(chunk.clone())),
        );
        Response::builder()
            .header("content-type", "application/octet-stream")
            .header("content-length", total.to_string())
            .body(Body::from_stream(chunks))
            .unwrap()
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    addr
}

/// One fresh function process, one invocation: when its first byte and its last reached the
/// Runtime API, and its peak RSS after.
async fn run(binary: &Path, config: &Path, total: usize) -> (Duration, Duration, u64) {
    let api = RuntimeApi::start_with_buffered_limit(256 << 20).await;
    let mut child = tokio::process::Command::new(binary)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("AWS_LAMBDA_RUNTIME_API", api.addr.to_string())
        .env("AWS_LAMBDA_FUNCTION_NAME", "bench")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "1024")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "2026/12/02/[$LATEST]bench")
        .env("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/bench")
        .env("PROXYFN_CONFIG", config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("the function starts");
    let pid = child.id().expect("a running child has a pid");
    while api.first_poll().is_none() {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let started = Instant::now();
    let (outcome, mut chunks) = api.invoke_watching(event()).await;
    // Streamed: the first chunk. Buffered: none comes, and the channel closes with the answer.
    let first = chunks.recv().await.map(|_| started.elapsed());
    drop(chunks);
    let outcome = outcome.await.expect("the function answered");
    let complete = started.elapsed();
    let received = match &outcome {
        Outcome::Stream(streamed) => streamed.body_len(),
        Outcome::Response(answer) => {
            let body = answer["body"].as_str().unwrap_or_default();
            use base64::Engine;
            base64::engine::general_purpose::STANDARD
                .decode(body)
                .map_or(0, |b| b.len())
        }
        Outcome::Error(error) => panic!("the invocation failed: {error}"),
    };
    assert_eq!(received, total, "the whole answer arrived");
    let rss = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0);
    child.kill().await.expect("the function stops");
    // A buffered answer's first byte is its last.
    (first.unwrap_or(complete), complete, rss)
}

fn event() -> Value {
    json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": "/big",
        "rawQueryString": "",
        "headers": { "host": "abc.lambda-url.us-east-1.on.aws" },
        "requestContext": {
            "accountId": "anonymous",
            "apiId": "abc",
            "domainName": "abc.lambda-url.us-east-1.on.aws",
            "domainPrefix": "abc",
            "http": { "method": "GET", "path": "/big", "protocol": "HTTP/1.1",
                      "sourceIp": "203.0.113.42", "userAgent": "bench" },
            "requestId": "bench",
            "routeKey": "$default",
            "stage": "$default",
            "time": "02/Dec/2026:05:00:00 +0000",
            "timeEpoch": 1_796_187_600_000u64
        },
        "isBase64Encoded": false
    })
}
