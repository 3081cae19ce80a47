//! The gateway's own cost per request, without sockets: header filtering at the proxy
//! boundary, the whole layer stack on a mock route, and Lambda's event -> request conversion
//! and whole invocation. No tracing subscriber or metrics recorder is installed, so log and
//! metric calls cost what a filtered-out event costs; scripts/bench measures them for real.
//!
//! `cargo bench --bench gateway`

use std::{
    hint::black_box,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use axum::{Router, body::Body};
use criterion::{Criterion, criterion_group, criterion_main};
use http::{HeaderMap, HeaderValue, Request};
use http_body_util::BodyExt;
use lambda_http::{
    LambdaEvent,
    lambda_runtime::{Context, FunctionResponse},
};
use proxyfn::runtime::lambda::Event;
use proxyfn::{
    App, Config, Runtime,
    context::{Arrival, RequestContext},
    runtime::{ClientInfo, lambda::Handler},
    upstream::headers::to_upstream,
};
use tower::ServiceExt;

/// A browser's request headers, as they reach the gateway.
fn browser_headers() -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, value) in [
        ("host", "api.example.com"),
        (
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
        ),
        ("accept", "application/json"),
        ("accept-language", "en-GB,en;q=0.5"),
        ("accept-encoding", "gzip, deflate, br, zstd"),
        ("referer", "https://app.example.com/orders"),
        ("origin", "https://app.example.com"),
        ("connection", "keep-alive"),
        ("cookie", "session=0123456789abcdef; theme=dark"),
        ("sec-fetch-dest", "empty"),
        ("sec-fetch-mode", "cors"),
        ("x-forwarded-for", "198.51.100.20"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    headers
}

fn header_filtering(c: &mut Criterion) {
    let headers = browser_headers();
    let plan = proxyfn::Plan::new(&Config::default()).unwrap();
    let mut context = http::Extensions::new();
    context.insert(client_context(&proxyfn::context::Entry::new(&plan.server)));
    c.bench_function("headers/to_upstream_12_fields", |b| {
        b.iter(|| to_upstream(black_box(headers.clone()), &context))
    });
}

const MOCK: &str = r#"
[[routes]]
path = "/hello"
methods = ["GET"]
response = { status = 200, body = "hello\n", headers = { "content-type" = "text/plain" } }
"#;

/// The mock route behind an API key, a per-key limit and CORS: every layer a request crosses
/// in production, with no upstream.
const FULL: &str = r#"
[cors]
allow_origins = ["https://app.example.com"]
[auth.api_keys.bench]
header = "x-api-key"
keys = [{ id = "bench", sha256 = "b0962662e937d44c699c8305d90cbf190b3150c59b13863d1380b5cc3c711bb7" }]  # of "bench-key"
[rate_limits.per_key]
key = "api_key"
limit = 1000000
per = "1s"
[[routes]]
path = "/hello"
methods = ["GET"]
auth = ["api_key:bench"]
rate_limit = "per_key"
response = { status = 200, body = "hello\n", headers = { "content-type" = "text/plain" } }
"#;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn app(runtime: &tokio::runtime::Runtime, toml: &str) -> App {
    let config = Config::from_toml(toml).unwrap();
    runtime
        .block_on(App::new(&config, Runtime::Server))
        .unwrap()
}

/// The context a server connection gives a request of this client.
fn client_context(entry: &proxyfn::context::Entry) -> RequestContext {
    entry.context(Arrival {
        client: ClientInfo::direct("203.0.113.7".parse().unwrap()),
        ..Arrival::default()
    })
}

/// Serves one request through `router` and reads the whole body, as a connection would.
async fn serve(router: &Router, request: Request<Body>) -> usize {
    let response = router.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), 200);
    response
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .len()
}

fn layer_stack(c: &mut Criterion) {
    let runtime = runtime();
    let mut group = c.benchmark_group("layer_stack");
    let App {
        router: mock,
        entry,
        ..
    } = app(&runtime, MOCK);
    group.bench_function("mock_route", |b| {
        b.iter(|| {
            let mut request = Request::get("/hello").body(Body::empty()).unwrap();
            *request.headers_mut() = browser_headers();
            request.extensions_mut().insert(client_context(&entry));
            runtime.block_on(serve(&mock, request))
        })
    });
    let App {
        router: full,
        entry,
        ..
    } = app(&runtime, FULL);
    group.bench_function("mock_route_api_key_limit_cors", |b| {
        b.iter(|| {
            let mut request = Request::get("/hello").body(Body::empty()).unwrap();
            *request.headers_mut() = browser_headers();
            request
                .headers_mut()
                .insert("x-api-key", HeaderValue::from_static("bench-key"));
            request.extensions_mut().insert(client_context(&entry));
            runtime.block_on(serve(&full, request))
        })
    });
    group.finish();
}

/// An HTTP API (payload 2.0) GET in the documented shape.
const HTTP_API_EVENT: &str = r#"{
  "version": "2.0", "routeKey": "$default", "rawPath": "/hello", "rawQueryString": "a=1&b=2",
  "headers": { "accept": "*/*", "host": "r3pmxmplak.execute-api.us-east-2.amazonaws.com",
    "user-agent": "curl/8.0", "x-forwarded-for": "203.0.113.42", "x-forwarded-proto": "https" },
  "requestContext": { "accountId": "123456789012", "apiId": "r3pmxmplak",
    "domainName": "r3pmxmplak.execute-api.us-east-2.amazonaws.com", "domainPrefix": "r3pmxmplak",
    "http": { "method": "GET", "path": "/hello", "protocol": "HTTP/1.1", "sourceIp": "203.0.113.42", "userAgent": "curl/8.0" },
    "requestId": "JKJaXmPLvHcESHA=", "routeKey": "$default", "stage": "$default",
    "time": "21/Nov/2026:08:00:00 +0000", "timeEpoch": 1795248000000 },
  "isBase64Encoded": false
}"#;

/// An API Gateway REST API (payload 1.0) GET under the `prod` stage.
const REST_EVENT: &str = r#"{
  "resource": "/{proxy+}", "path": "/hello", "httpMethod": "GET",
  "headers": { "Accept": "*/*", "Host": "wt6mne2s9k.execute-api.us-east-1.amazonaws.com", "User-Agent": "curl/8.0" },
  "multiValueHeaders": { "Accept": ["*/*"], "Host": ["wt6mne2s9k.execute-api.us-east-1.amazonaws.com"], "User-Agent": ["curl/8.0"] },
  "queryStringParameters": { "a": "1" }, "multiValueQueryStringParameters": { "a": ["1"] },
  "pathParameters": { "proxy": "hello" }, "stageVariables": null,
  "requestContext": { "accountId": "123456789012", "resourceId": "us4z18", "stage": "prod",
    "requestId": "41b45ea3-70b5-11e6-b7bd-69b5aaebc7d9",
    "identity": { "sourceIp": "198.51.100.7", "userAgent": "curl/8.0" },
    "resourcePath": "/{proxy+}", "httpMethod": "GET", "apiId": "wt6mne2s9k", "path": "/prod/hello",
    "protocol": "HTTP/1.1", "domainName": "wt6mne2s9k.execute-api.us-east-1.amazonaws.com" },
  "body": null, "isBase64Encoded": false
}"#;

fn context() -> Context {
    let mut context = Context::default();
    context.request_id = "8476a536-e9f4-11e8-9739-2dfe598c3fcd".into();
    let in_a_minute = SystemTime::now() + Duration::from_secs(60);
    context.deadline = in_a_minute.duration_since(UNIX_EPOCH).unwrap().as_millis() as u64;
    context
}

fn lambda(c: &mut Criterion) {
    let runtime = runtime();
    let config = Config::from_toml(MOCK).unwrap();
    let app = runtime
        .block_on(App::new(&config, Runtime::Lambda))
        .unwrap();
    let handler = Handler::new(&app, Instant::now());
    let context = context();
    let mut group = c.benchmark_group("lambda");
    let invoke = |event: &str| {
        let payload: Event = serde_json::from_str(event).unwrap();
        let invocation = handler
            .clone()
            .handle(LambdaEvent::new(payload, context.clone()));
        match runtime.block_on(invocation).unwrap() {
            FunctionResponse::BufferedResponse(json) => json.get().as_bytes().to_vec(),
            FunctionResponse::StreamingResponse(_) => unreachable!("buffered by default"),
        }
    };
    for (name, event) in [("http_api", HTTP_API_EVENT), ("rest", REST_EVENT)] {
        let answer: serde_json::Value = serde_json::from_slice(&invoke(event)).unwrap();
        assert_eq!(answer["statusCode"], 200, "{name}: {answer}");
        group.bench_function(format!("{name}_event_to_request"), |b| {
            b.iter(|| {
                let payload: Event = serde_json::from_str(black_box(event)).unwrap();
                handler.to_router_request(payload, context.clone())
            })
        });
        group.bench_function(format!("{name}_invocation_mock_route"), |b| {
            b.iter(|| invoke(black_box(event)))
        });
    }
    group.finish();
}

criterion_group!(benches, header_filtering, layer_stack, lambda);
criterion_main!(benches);
