//! The reference point for proxyfn's Lambda-mode benchmark: the smallest useful lambda_http +
//! axum function, answering every GET with "hello". `scripts/bench` builds it with the same
//! release profile as proxyfn and measures both in the same run (`examples/lambda_bench.rs`).

use axum::{Router, routing::get};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    let app = Router::new().fallback(get(|| async { "hello\n" }));
    lambda_http::run(app).await
}
