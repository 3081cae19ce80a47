//! Lambda mode: the real binary driven through a local Lambda Runtime API, with events in the
//! documented shapes of API Gateway REST (payload 1.0), HTTP API (payload 2.0), Function URLs
//! and ALB target groups.

use std::{
    process::Stdio,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{Router, body::Body, response::Response};
use base64::{Engine, engine::general_purpose::STANDARD as BASE64};
use serde_json::{Value, json};

use crate::{helpers::*, lambda_event::LambdaEvent, runtime_api::*};

/// The release-shaped binary running as a Lambda function against a local Runtime API.
pub(crate) struct Function {
    pub(crate) api: RuntimeApi,
    pub(crate) child: tokio::process::Child,
    /// What the function printed on stdout (its JSON log lines).
    pub(crate) lines: Arc<Mutex<Vec<String>>>,
    _dir: tempfile::TempDir,
}

impl Function {
    pub(crate) async fn start(config: &str) -> Self {
        Self::start_with_env(config, &[]).await
    }

    pub(crate) async fn start_with_env(config: &str, envs: &[(&str, &str)]) -> Self {
        let api = RuntimeApi::start().await;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("proxyfn.toml");
        std::fs::write(&path, config).unwrap();
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_proxyfn"))
            .current_dir(dir.path())
            .env("AWS_LAMBDA_RUNTIME_API", api.addr.to_string())
            .env("AWS_LAMBDA_FUNCTION_NAME", "proxyfn")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_LOG_STREAM_NAME", "2026/11/21/[$LATEST]test")
            .env("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/proxyfn")
            .env("PROXYFN_CONFIG", &path)
            .envs(envs.iter().copied())
            .env_remove("PORT")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut child = child;
        let lines = capture_lines(child.stdout.take().unwrap());
        Self {
            api,
            child,
            lines,
            _dir: dir,
        }
    }
}

impl Function {
    /// The function's peak resident set size so far (VmHWM, Linux).
    pub(crate) fn peak_rss_kib(&self) -> u64 {
        let pid = self.child.id().expect("running");
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM in /proc/PID/status")
    }

    /// Its JSON log lines that contain `needle`, parsed.
    pub(crate) fn json_lines_containing(&self, needle: &str) -> Vec<Value> {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(needle))
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    }

    /// How many lines the function printed that contain `needle`, once its stdout has caught
    /// up with at least `expected` of them (lines arrive asynchronously).
    pub(crate) async fn lines_containing(&self, needle: &str, expected: usize) -> usize {
        let count = || {
            self.lines
                .lock()
                .unwrap()
                .iter()
                .filter(|l| l.contains(needle))
                .count()
        };
        eventually(|| (count() >= expected).then_some(())).await;
        // Give a second, unexpected line the same chance to show.
        tokio::time::sleep(Duration::from_millis(100)).await;
        count()
    }
}

// ---- events in the documented shapes, through the one builder (lambda_event.rs) ----

/// `(name, values)` pairs as the builder takes them.
fn each_value<'a>(
    pairs: &'a [(&'a str, &'a [&'a str])],
) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
    pairs
        .iter()
        .flat_map(|(name, values)| values.iter().map(move |value| (*name, *value)))
}

/// A `{ name: [values] }` query object as pairs.
fn query_pairs(query: &Value) -> Vec<(String, String)> {
    query
        .as_object()
        .into_iter()
        .flatten()
        .flat_map(|(name, values)| {
            values
                .as_array()
                .unwrap()
                .iter()
                .map(move |v| (name.clone(), v.as_str().unwrap().to_owned()))
        })
        .collect()
}

fn with_body(event: LambdaEvent, body: Option<(&str, bool)>) -> LambdaEvent {
    match body {
        Some((text, base64)) => event.body_as_sent(text, base64),
        None => event,
    }
}

/// API Gateway REST API, payload format 1.0 (`path` excludes the stage).
pub(crate) fn rest_event(
    method: &str,
    path: &str,
    stage: &str,
    query: Value,
    headers: &[(&str, &[&str])],
    body: Option<(&str, bool)>,
) -> Value {
    let mut event = LambdaEvent::rest(method, path).stage(stage);
    for (name, value) in query_pairs(&query) {
        event = event.query(&name, &value);
    }
    for (name, value) in each_value(headers) {
        event = event.header(name, value);
    }
    with_body(event, body).build()
}

/// HTTP API payload format 2.0, with the `rawQueryString` and the `headers` object as given.
pub(crate) fn http_api_event(
    method: &str,
    raw_path: &str,
    raw_query: &str,
    stage: &str,
    headers: Value,
    cookies: &[&str],
    body: Option<(&str, bool)>,
) -> Value {
    let event = LambdaEvent::http_api(method, raw_path)
        .stage(stage)
        .raw_query(raw_query);
    v2_parts(event, headers, cookies, body)
}

fn v2_parts(
    mut event: LambdaEvent,
    headers: Value,
    cookies: &[&str],
    body: Option<(&str, bool)>,
) -> Value {
    for (name, value) in headers.as_object().into_iter().flatten() {
        event = event.header(name, value.as_str().unwrap());
    }
    for cookie in cookies {
        event = event.cookie(cookie);
    }
    with_body(event, body).build()
}

pub(crate) fn function_url_event(
    method: &str,
    raw_path: &str,
    raw_query: &str,
    headers: Value,
    cookies: &[&str],
    body: Option<(&str, bool)>,
) -> Value {
    let event = LambdaEvent::function_url(method, raw_path).raw_query(raw_query);
    v2_parts(event, headers, cookies, body)
}

/// ALB target group event with multi-value headers enabled.
pub(crate) fn alb_event(
    method: &str,
    path: &str,
    query: Value,
    headers: &[(&str, &[&str])],
    body: Option<(&str, bool)>,
) -> Value {
    let mut event = LambdaEvent::alb(method, path);
    for (name, value) in query_pairs(&query) {
        event = event.query(&name, &value);
    }
    for (name, value) in each_value(headers) {
        event = event.header(name, value);
    }
    with_body(event, body).build()
}

pub(crate) fn proxy_config(upstream: &Upstream, extra: &str) -> String {
    config_with_upstream(
        &upstream.url(),
        &format!(
            "{extra}\n[[routes]]\npath = \"/users/{{*rest}}\"\nupstream = \"backend\"\nstrip_prefix = \"/users\"\n"
        ),
    )
}

/// Header lookup in a `headers` or `multiValueHeaders` object, case-insensitive.
pub(crate) fn header_values(object: &Value, name: &str) -> Vec<String> {
    object
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(k, _)| k.eq_ignore_ascii_case(name))
        .flat_map(|(_, v)| match v {
            Value::Array(items) => items
                .iter()
                .map(|i| i.as_str().unwrap().to_owned())
                .collect(),
            other => vec![other.as_str().unwrap().to_owned()],
        })
        .collect()
}

pub(crate) fn decoded_body(response: &Value) -> Vec<u8> {
    let body = response["body"].as_str().unwrap_or_default();
    if response["isBase64Encoded"] == true {
        BASE64.decode(body).unwrap()
    } else {
        body.as_bytes().to_vec()
    }
}

// ---- tests ----

#[tokio::test]
async fn a_rest_api_event_with_a_stage_routes_without_the_stage() {
    let upstream = Upstream::echo().await;
    let function = Function::start(&proxy_config(&upstream, "")).await;

    let event = rest_event(
        "GET",
        "/users/42",
        "prod",
        json!({ "a": ["1", "2"] }),
        &[("Host", &["wt6mne2s9k.execute-api.us-east-1.amazonaws.com"])],
        None,
    );
    let response = function.api.respond(event).await;

    assert_eq!(response["statusCode"], 200, "{response}");
    assert_eq!(upstream.last().target, "/42?a=1&a=2");
    assert_eq!(
        header_values(&response["multiValueHeaders"], "x-upstream"),
        ["yes"]
    );
    assert_eq!(
        header_values(&response["multiValueHeaders"], "x-request-id").len(),
        1
    );
}

#[tokio::test]
async fn with_strip_stage_off_routes_include_the_stage() {
    let function = Function::start("[server]\nstrip_stage = false\n[[routes]]\npath = \"/prod/ping\"\nresponse = { body = \"pong\" }\n").await;
    let response = function
        .api
        .respond(rest_event("GET", "/ping", "prod", json!({}), &[], None))
        .await;
    assert_eq!(response["statusCode"], 200, "{response}");
    assert_eq!(response["body"], "pong");
}

#[tokio::test]
async fn http_api_events_route_the_same_on_default_and_named_stages_with_the_raw_query() {
    let upstream = Upstream::echo().await;
    let function = Function::start(&proxy_config(&upstream, "")).await;
    let query = "x=1&x=2&y=%2F&z=a+b&e=";

    let event = http_api_event(
        "GET",
        "/users/7",
        query,
        "$default",
        json!({"host": "r3pmxmplak.execute-api.us-east-2.amazonaws.com"}),
        &[],
        None,
    );
    assert_eq!(function.api.respond(event).await["statusCode"], 200);
    assert_eq!(upstream.last().target, format!("/7?{query}"));

    let event = http_api_event("GET", "/v1/users/8", query, "v1", json!({}), &[], None);
    let response = function.api.respond(event).await;
    assert_eq!(response["statusCode"], 200, "{response}");
    assert_eq!(upstream.last().target, format!("/8?{query}"));
}

#[tokio::test]
async fn a_function_url_event_carries_cookies_both_ways() {
    let upstream = Upstream::recording(|captured| {
        Response::builder()
            .header("set-cookie", "session=abc; HttpOnly")
            .header("set-cookie", "theme=dark")
            .header("content-type", "text/plain")
            .body(Body::from(
                captured
                    .headers
                    .get("cookie")
                    .map(|c| c.to_str().unwrap().to_owned())
                    .unwrap_or_default(),
            ))
            .unwrap()
    })
    .await;
    let function = Function::start(&proxy_config(&upstream, "")).await;

    let event = function_url_event(
        "GET",
        "/users/me",
        "",
        json!({"host": "abcdefg.lambda-url.us-east-1.on.aws"}),
        &["a=1", "b=2"],
        None,
    );
    let response = function.api.respond(event).await;

    assert_eq!(response["statusCode"], 200, "{response}");
    assert_eq!(response["body"], "a=1; b=2");
    assert_eq!(
        response["cookies"],
        json!(["session=abc; HttpOnly", "theme=dark"])
    );
    assert!(header_values(&response["headers"], "set-cookie").is_empty());
}

#[tokio::test]
async fn an_alb_event_keeps_multi_value_headers_and_query() {
    let upstream = Upstream::recording(|_| {
        Response::builder()
            .header("set-cookie", "a=1")
            .header("set-cookie", "b=2")
            .body(Body::from("ok"))
            .unwrap()
    })
    .await;
    let function = Function::start(&proxy_config(&upstream, "")).await;

    let event = alb_event(
        "GET",
        "/users/list",
        json!({ "tag": ["red", "blue"] }),
        &[
            ("host", &["lb.example.com"]),
            ("x-multi", &["one", "two"]),
            ("x-forwarded-for", &["192.0.2.10"]),
        ],
        None,
    );
    let response = function.api.respond(event).await;

    assert_eq!(response["statusCode"], 200, "{response}");
    assert_eq!(response["statusDescription"], "200 OK");
    assert_eq!(
        header_values(&response["multiValueHeaders"], "set-cookie"),
        ["a=1", "b=2"]
    );
    let seen = upstream.last();
    assert_eq!(seen.target, "/list?tag=red&tag=blue");
    let multi: Vec<_> = seen.headers.get_all("x-multi").iter().collect();
    assert_eq!(multi, ["one", "two"]);
    assert_eq!(
        seen.headers["x-real-ip"], "192.0.2.10",
        "ALB's appended address is the client"
    );
}

#[tokio::test]
async fn rest_api_responses_keep_two_set_cookie_headers() {
    let function = Function::start(
        "[[routes]]\npath = \"/login\"\nresponse = { body = \"in\", headers = { \"set-cookie\" = \"a=1\" } }\n",
    )
    .await;
    // Mock headers are a map, so the second cookie comes from an upstream instead.
    let response = function
        .api
        .respond(rest_event("GET", "/login", "prod", json!({}), &[], None))
        .await;
    assert_eq!(
        header_values(&response["multiValueHeaders"], "set-cookie"),
        ["a=1"]
    );

    let upstream = Upstream::recording(|_| {
        Response::builder()
            .header("set-cookie", "a=1")
            .header("set-cookie", "b=2")
            .body(Body::empty())
            .unwrap()
    })
    .await;
    let function = Function::start(&proxy_config(&upstream, "")).await;
    let response = function
        .api
        .respond(rest_event(
            "POST",
            "/users/login",
            "prod",
            json!({}),
            &[],
            None,
        ))
        .await;
    assert_eq!(
        header_values(&response["multiValueHeaders"], "set-cookie"),
        ["a=1", "b=2"]
    );
}

#[tokio::test]
async fn the_root_path_is_served() {
    let function =
        Function::start("[[routes]]\npath = \"/\"\nresponse = { body = \"root\" }\n").await;
    let response = function
        .api
        .respond(http_api_event(
            "GET",
            "/",
            "",
            "$default",
            json!({}),
            &[],
            None,
        ))
        .await;
    assert_eq!(response["body"], "root", "{response}");
    let response = function
        .api
        .respond(rest_event("GET", "/", "prod", json!({}), &[], None))
        .await;
    assert_eq!(response["body"], "root", "{response}");
}

#[tokio::test]
async fn binary_bodies_are_byte_exact_both_ways() {
    let upstream = Upstream::recording(|captured| {
        Response::builder()
            .header("content-type", "application/octet-stream")
            .body(Body::from(captured.body.clone()))
            .unwrap()
    })
    .await;
    let function = Function::start(&proxy_config(&upstream, "")).await;
    let bytes: Vec<u8> = (0..=255u8).rev().chain(0..=255u8).collect();
    let encoded = BASE64.encode(&bytes);

    let event = http_api_event(
        "POST",
        "/users/blob",
        "",
        "$default",
        json!({"content-type": "application/octet-stream"}),
        &[],
        Some((&encoded, true)),
    );
    let response = function.api.respond(event).await;
    assert_eq!(
        upstream.last().body.as_ref(),
        bytes.as_slice(),
        "request body"
    );
    assert_eq!(response["isBase64Encoded"], true);
    assert_eq!(decoded_body(&response), bytes, "response body");

    let event = rest_event(
        "PUT",
        "/users/blob",
        "prod",
        json!({}),
        &[("content-type", &["application/octet-stream"])],
        Some((&encoded, true)),
    );
    let response = function.api.respond(event).await;
    assert_eq!(upstream.last().body.as_ref(), bytes.as_slice());
    assert_eq!(decoded_body(&response), bytes);
}

#[tokio::test]
async fn text_with_invalid_utf8_is_sent_as_base64_not_altered() {
    let upstream = Upstream::recording(|_| {
        Response::builder()
            .header("content-type", "text/plain; charset=iso-8859-1")
            .body(Body::from(b"caf\xe9".to_vec()))
            .unwrap()
    })
    .await;
    let function = Function::start(&proxy_config(&upstream, "")).await;
    let response = function
        .api
        .respond(http_api_event(
            "GET",
            "/users/latin1",
            "",
            "$default",
            json!({}),
            &[],
            None,
        ))
        .await;
    assert_eq!(decoded_body(&response), b"caf\xe9");
}

#[tokio::test]
async fn the_client_ip_is_the_event_source_ip_not_a_header() {
    let upstream = Upstream::echo().await;
    let function = Function::start(&proxy_config(&upstream, "")).await;

    let headers: &[(&str, &[&str])] = &[
        ("X-Forwarded-For", &["6.6.6.6, 198.51.100.7"]),
        ("X-Real-IP", &["6.6.6.6"]),
    ];
    function
        .api
        .respond(rest_event(
            "GET",
            "/users/ip",
            "prod",
            json!({}),
            headers,
            None,
        ))
        .await;
    let seen = upstream.last();
    assert_eq!(seen.headers["x-real-ip"], "198.51.100.7");
    assert_eq!(
        seen.headers["x-forwarded-for"], "6.6.6.6, 198.51.100.7",
        "API Gateway already appended the client"
    );
    assert_eq!(seen.headers["x-forwarded-proto"], "https");

    let event = http_api_event(
        "GET",
        "/users/ip",
        "",
        "$default",
        json!({"x-real-ip": "6.6.6.6"}),
        &[],
        None,
    );
    function.api.respond(event).await;
    assert_eq!(upstream.last().headers["x-real-ip"], "203.0.113.42");
}

#[tokio::test]
async fn a_failing_upstream_is_a_problem_response_and_the_runtime_keeps_serving() {
    let port = closed_port().await;
    let config = format!(
        "[upstreams.down]\nurl = \"http://127.0.0.1:{port}\"\n[[routes]]\npath = \"/down\"\nupstream = \"down\"\n\
         [[routes]]\npath = \"/up\"\nresponse = {{ body = \"still here\" }}\n"
    );
    let function = Function::start(&config).await;

    let response = function
        .api
        .respond(http_api_event(
            "GET",
            "/down",
            "",
            "$default",
            json!({}),
            &[],
            None,
        ))
        .await;
    assert_eq!(response["statusCode"], 502, "{response}");
    assert_eq!(
        header_values(&response["headers"], "content-type"),
        ["application/problem+json"]
    );
    let id = header_values(&response["headers"], "x-request-id")
        .pop()
        .unwrap();
    let problem: Value = serde_json::from_str(response["body"].as_str().unwrap()).unwrap();
    assert_problem_body(&problem, 502, "upstream-unavailable", &id);

    let response = function
        .api
        .respond(rest_event("GET", "/nope", "prod", json!({}), &[], None))
        .await;
    assert_eq!(response["statusCode"], 404);

    match function.api.invoke(json!({"not": "an http event"})).await {
        Outcome::Error(error) => assert!(error.is_object(), "{error}"),
        Outcome::Stream(streamed) => panic!("not streamed: {streamed:?}"),
        Outcome::Response(value) => {
            panic!("an unknown event shape should be a runtime error: {value}")
        }
    }

    let response = function
        .api
        .respond(http_api_event(
            "GET",
            "/up",
            "",
            "$default",
            json!({}),
            &[],
            None,
        ))
        .await;
    assert_eq!(
        response["body"], "still here",
        "the runtime survived both failures"
    );
}

#[tokio::test]
async fn lambda_errors_are_problems_with_the_request_id_too() {
    let function = Function::start("[server]\nbody_limit = \"16B\"\n[[routes]]\npath = \"/r\"\nmethods = [\"GET\"]\nresponse = {}\n").await;

    let response = function
        .api
        .respond(http_api_event(
            "POST",
            "/r",
            "",
            "$default",
            json!({"x-request-id": "lambda-1"}),
            &[],
            None,
        ))
        .await;
    assert_eq!(response["statusCode"], 405);
    assert_eq!(header_values(&response["headers"], "allow"), ["GET, HEAD"]);
    let problem: Value = serde_json::from_str(response["body"].as_str().unwrap()).unwrap();
    assert_problem_body(&problem, 405, "method-not-allowed", "lambda-1");

    let event = http_api_event(
        "GET",
        "/r",
        "",
        "$default",
        json!({"content-length": "100"}),
        &[],
        Some((&"x".repeat(100), false)),
    );
    let response = function.api.respond(event).await;
    assert_eq!(response["statusCode"], 413, "{response}");
    let event = http_api_event(
        "POST",
        "/r",
        "",
        "$default",
        json!({}),
        &[],
        Some((&"x".repeat(17), false)),
    );
    let response = function.api.respond(event).await;
    assert_eq!(
        response["statusCode"], 413,
        "no Content-Length, but the event's body size is known: {response}"
    );

    let response = function
        .api
        .respond(http_api_event(
            "GET",
            "/a%2Fb",
            "",
            "$default",
            json!({}),
            &[],
            None,
        ))
        .await;
    assert_eq!(response["statusCode"], 400, "{response}");
}

#[tokio::test]
async fn an_invalid_config_is_reported_as_an_init_error_and_exits_2() {
    let mut function = Function::start("[[routes]]\npath = \"/x\"\nupstream = \"missing\"\n").await;
    let status = tokio::time::timeout(Duration::from_secs(30), function.child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(2));
    let (kind, body) = function.api.init_error().expect("init/error was called");
    assert_eq!(kind, "Runtime.ConfigError");
    assert!(
        body["errorMessage"]
            .as_str()
            .unwrap()
            .contains("proxyfn.toml:3: routes[0] (/x).upstream"),
        "{body}"
    );
}

#[tokio::test]
async fn the_invocation_deadline_cuts_a_retry_loop_short() {
    // Each attempt takes 200ms and gets 503. The invocation allows 1.5s less the 200ms margin,
    // and a retry starts only when a whole attempt (timeout 1s) still fits: at 0.2s one more
    // fits, at 0.4s none does. So exactly two of the ten configured attempts run.
    let attempts = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = attempts.clone();
    let upstream = Upstream::serve(Router::new().fallback(axum::routing::any(move || {
        counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            (axum::http::StatusCode::SERVICE_UNAVAILABLE, "busy")
        }
    })))
    .await;
    let config = format!(
        "[upstreams.backend]\nurl = \"{}\"\ntimeout = \"1s\"\nretry = {{ attempts = 10, backoff = \"1ms\", max_backoff = \"1ms\" }}\n\
         [[routes]]\npath = \"/{{*rest}}\"\nupstream = \"backend\"\n",
        upstream.url()
    );
    let function = Function::start(&config).await;

    let event = http_api_event("GET", "/work", "", "$default", json!({}), &[], None);
    let response = match function
        .api
        .invoke_with_deadline(event, Duration::from_millis(1500))
        .await
    {
        Outcome::Response(value) => value,
        Outcome::Error(error) => panic!("the function failed: {error}"),
        Outcome::Stream(streamed) => panic!("not streamed: {streamed:?}"),
    };
    assert_eq!(response["statusCode"], 503, "{response}");
    assert_eq!(
        attempts.load(std::sync::atomic::Ordering::SeqCst),
        2,
        "no retry started that could not finish"
    );
}

#[tokio::test]
async fn in_lambda_a_keyed_post_is_retried_with_its_body() {
    let failures = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let upstream = Upstream::recording(move |captured| {
        let first = failures.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0;
        Response::builder()
            .status(if first { 502 } else { 201 })
            .body(Body::from(captured.body.clone()))
            .unwrap()
    })
    .await;
    let config = proxy_config(&upstream, "").replace(
        "[[routes]]",
        "retry = { attempts = 3, backoff = \"1ms\", max_backoff = \"1ms\" }\n[[routes]]",
    );
    let function = Function::start(&config).await;

    let headers = json!({"idempotency-key": "k-9", "content-type": "text/plain"});
    let event = http_api_event(
        "POST",
        "/users/new",
        "",
        "$default",
        headers,
        &[],
        Some(("payload", false)),
    );
    let response = function.api.respond(event).await;
    assert_eq!(response["statusCode"], 201, "{response}");
    let seen = upstream.requests();
    assert_eq!(seen.len(), 2);
    assert!(seen.iter().all(|r| r.body.as_ref() == b"payload"));
}

#[tokio::test]
async fn auth_works_the_same_in_lambda() {
    use crate::tokens::{Signer, claims, now};
    const SECRET: &str = "a-test-secret-that-is-long-enough-for-hs256";
    let upstream = Upstream::echo().await;
    let config = format!(
        "[upstreams.backend]\nurl = \"{}\"\n[auth.jwt.main]\nsecret_env = \"TEST_JWT_SECRET\"\nalgorithms = [\"HS256\"]\n\
         forward_claims = {{ sub = \"x-user-id\" }}\n\
         [[routes]]\npath = \"/{{*rest}}\"\nupstream = \"backend\"\nauth = [\"jwt:main\"]\nscopes = [\"orders:read\"]\n",
        upstream.url()
    );
    let function = Function::start_with_env(&config, &[("TEST_JWT_SECRET", SECRET)]).await;
    let signer = Signer::hmac(SECRET.as_bytes());
    let bearer = |token: String| json!({ "authorization": format!("Bearer {token}"), "x-user-id": "spoofed" });

    let event = http_api_event(
        "GET",
        "/orders",
        "",
        "$default",
        bearer(signer.sign(&claims("lambda-user"))),
        &[],
        None,
    );
    let response = function.api.respond(event).await;
    assert_eq!(response["statusCode"], 200, "{response}");
    assert_eq!(upstream.last().headers["x-user-id"], "lambda-user");

    let response = function
        .api
        .respond(rest_event("GET", "/orders", "prod", json!({}), &[], None))
        .await;
    assert_eq!(response["statusCode"], 401, "{response}");
    assert_eq!(
        header_values(&response["multiValueHeaders"], "www-authenticate"),
        ["Bearer realm=\"proxyfn\""]
    );

    let mut expired = claims("lambda-user");
    expired["exp"] = json!(now() - 120);
    let event = http_api_event(
        "GET",
        "/orders",
        "",
        "$default",
        bearer(signer.sign(&expired)),
        &[],
        None,
    );
    let response = function.api.respond(event).await;
    assert_eq!(response["statusCode"], 401);
    let problem: Value = serde_json::from_str(response["body"].as_str().unwrap()).unwrap();
    assert_eq!(problem["detail"], "The token has expired.");

    let mut narrow = claims("lambda-user");
    narrow["scope"] = json!("profile");
    let event = http_api_event(
        "GET",
        "/orders",
        "",
        "$default",
        bearer(signer.sign(&narrow)),
        &[],
        None,
    );
    assert_eq!(function.api.respond(event).await["statusCode"], 403);
    assert_eq!(upstream.requests().len(), 1);
}

#[tokio::test]
async fn in_lambda_ip_limits_count_the_events_source_ip_and_429s_carry_the_headers() {
    let upstream = Upstream::echo().await;
    let limited = proxy_config(&upstream, "").replace(
        "strip_prefix = \"/users\"\n",
        "strip_prefix = \"/users\"\nrate_limit = \"per_ip\"\n",
    );
    let function = Function::start(&format!(
        "[rate_limits.per_ip]\nkey = \"ip\"\nlimit = 2\nper = \"1h\"\n{limited}"
    ))
    .await;
    let from = |ip: &str| {
        let mut event = http_api_event("GET", "/users/1", "", "$default", json!({}), &[], None);
        event["requestContext"]["http"]["sourceIp"] = json!(ip);
        event
    };

    for _ in 0..2 {
        let ok = function.api.respond(from("203.0.113.42")).await;
        assert_eq!(ok["statusCode"], 200, "{ok}");
        assert_eq!(
            header_values(&ok["headers"], "ratelimit-policy"),
            ["\"per_ip\";q=2;w=3600"]
        );
    }
    let refused = function.api.respond(from("203.0.113.42")).await;
    assert_eq!(refused["statusCode"], 429, "{refused}");
    assert_eq!(header_values(&refused["headers"], "retry-after"), ["1800"]);
    assert_eq!(
        header_values(&refused["headers"], "ratelimit"),
        ["\"per_ip\";r=0;t=1800"]
    );
    let other = function.api.respond(from("198.51.100.9")).await;
    assert_eq!(
        other["statusCode"], 200,
        "another source IP, another bucket"
    );
    assert_eq!(upstream.requests().len(), 3);
}

#[tokio::test]
async fn a_lambda_function_and_a_server_share_one_limit_through_redis() {
    let redis = crate::redis_server::RedisServer::start().await;
    let upstream = Upstream::echo().await;
    let config = format!(
        "[rate_limit]\nstore = \"redis\"\nredis_url = \"{}\"\non_store_error = \"deny\"\n\
         [rate_limits.shared]\nkey = \"global\"\nlimit = 3\nper = \"1h\"\n{}",
        redis.url(),
        proxy_config(&upstream, "").replace(
            "strip_prefix = \"/users\"\n",
            "strip_prefix = \"/users\"\nrate_limit = \"shared\"\n",
        )
    );
    let function = Function::start(&config).await;
    let gateway = Gateway::start(&config).await;
    let event = || function_url_event("GET", "/users/1", "", json!({}), &[], None);

    assert_eq!(function.api.respond(event()).await["statusCode"], 200);
    assert_eq!(gateway.status("/users/1").await, 200);
    assert_eq!(function.api.respond(event()).await["statusCode"], 200);
    assert_eq!(
        gateway.status("/users/1").await,
        429,
        "three used between the two"
    );
    let refused = function.api.respond(event()).await;
    assert_eq!(refused["statusCode"], 429, "{refused}");
    assert_eq!(
        header_values(&refused["headers"], "content-type"),
        ["application/problem+json"]
    );
}

#[tokio::test]
async fn in_lambda_the_access_log_names_the_invocation_and_the_cold_start() {
    let function =
        Function::start("[[routes]]\npath = \"/ping\"\nresponse = { body = \"pong\" }\n").await;
    let event = || function_url_event("GET", "/ping", "", json!({}), &[], None);
    for _ in 0..2 {
        assert_eq!(function.api.respond(event()).await["statusCode"], 200);
    }
    let access_events = || -> Vec<Value> {
        function
            .lines
            .lock()
            .unwrap()
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|e| e["target"] == "proxyfn::access")
            .collect()
    };
    let events = eventually(|| Some(access_events()).filter(|events| events.len() == 2))
        .await
        .unwrap_or_else(access_events);
    assert_eq!(events.len(), 2, "one event per invocation");
    assert_eq!(events[0]["cold_start"], true);
    assert!(events[0]["init_ms"].as_f64().unwrap() > 0.0);
    assert_eq!(events[1]["cold_start"], false);
    assert!(events[1]["init_ms"].is_null());
    for event in &events {
        assert_eq!(event["status"], 200);
        assert_eq!(event["route"], "/ping");
        assert_eq!(event["client_ip"], "203.0.113.42");
        assert_eq!(event["bytes_out"], 4);
        assert!(uuid::Uuid::parse_str(event["aws_request_id"].as_str().unwrap()).is_ok());
    }
    assert_ne!(events[0]["aws_request_id"], events[1]["aws_request_id"]);
}

/// Checks one line against the CloudWatch Embedded Metric Format specification: `_aws` with a
/// millisecond `Timestamp` and `CloudWatchMetrics` directives whose dimension and metric names
/// are all members of the document (dimensions as strings, metrics as numbers or arrays).
fn assert_emf(document: &Value) {
    let aws = &document["_aws"];
    assert!(
        aws["Timestamp"].as_u64().unwrap() > 1_700_000_000_000,
        "{document}"
    );
    let directives = aws["CloudWatchMetrics"].as_array().unwrap();
    assert!(!directives.is_empty());
    for directive in directives {
        assert!(!directive["Namespace"].as_str().unwrap().is_empty());
        for set in directive["Dimensions"].as_array().unwrap() {
            let set = set.as_array().unwrap();
            assert!(set.len() <= 30);
            for name in set {
                assert!(document[name.as_str().unwrap()].is_string(), "{document}");
            }
        }
        for metric in directive["Metrics"].as_array().unwrap() {
            let value = &document[metric["Name"].as_str().unwrap()];
            assert!(
                value.is_number()
                    || value
                        .as_array()
                        .is_some_and(|a| a.iter().all(Value::is_number)),
                "{document}"
            );
        }
    }
}

#[tokio::test]
async fn in_lambda_metrics_are_emf_lines_flushed_once_per_invocation() {
    let function =
        Function::start("[[routes]]\npath = \"/ping\"\nresponse = { body = \"pong\" }\n").await;
    let event = || function_url_event("GET", "/ping", "", json!({}), &[], None);
    let emf = |function: &Function| -> Vec<Value> {
        function
            .lines
            .lock()
            .unwrap()
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|e| e.get("_aws").is_some())
            .collect()
    };
    let mut seen = vec![];
    for invocation in 1..=2 {
        assert_eq!(function.api.respond(event()).await["statusCode"], 200);
        // Flushed before the response is returned.
        seen = emf(&function);
        let requests: Vec<&Value> = seen
            .iter()
            .filter(|d| d.get("proxyfn_requests_total").is_some())
            .collect();
        assert_eq!(requests.len(), invocation, "{seen:#?}");
    }
    for document in &seen {
        assert_emf(document);
        assert_eq!(
            document["_aws"]["CloudWatchMetrics"][0]["Namespace"],
            "proxyfn"
        );
        assert_eq!(document["function"], "proxyfn");
        assert!(uuid::Uuid::parse_str(document["aws_request_id"].as_str().unwrap()).is_ok());
    }
    let requests: Vec<&Value> = seen
        .iter()
        .filter(|d| d.get("proxyfn_requests_total").is_some())
        .collect();
    for document in &requests {
        assert_eq!(
            document["proxyfn_requests_total"], 1,
            "a delta per invocation"
        );
        assert_eq!(document["route"], "/ping");
        assert_eq!(document["status"], "2xx");
    }
    assert_ne!(requests[0]["aws_request_id"], requests[1]["aws_request_id"]);
    let cold_starts: Vec<&Value> = seen
        .iter()
        .filter(|d| d.get("proxyfn_cold_starts_total").is_some())
        .collect();
    assert_eq!(cold_starts.len(), 1, "only the first invocation is cold");
    assert_eq!(
        cold_starts[0]["aws_request_id"],
        requests[0]["aws_request_id"]
    );
}

#[tokio::test]
async fn in_lambda_the_openapi_document_names_the_stage_as_its_server() {
    let function =
        Function::start("[[routes]]\npath = \"/ping\"\nresponse = { body = \"pong\" }\n").await;
    let host: &[(&str, &[&str])] = &[("Host", &["wt6mne2s9k.execute-api.us-east-1.amazonaws.com"])];

    let response = function
        .api
        .respond(rest_event(
            "GET",
            "/openapi.json",
            "prod",
            json!({}),
            host,
            None,
        ))
        .await;
    assert_eq!(response["statusCode"], 200, "{response}");
    let document: Value = serde_json::from_str(response["body"].as_str().unwrap()).unwrap();
    crate::docs::assert_valid_openapi_31(&document);
    assert_eq!(document["servers"], json!([{ "url": "/prod" }]));
    assert!(document["paths"]["/ping"]["get"].is_object());

    // /prod/docs -> "docs/" resolves to /prod/docs/ in the browser.
    let redirect = function
        .api
        .respond(rest_event("GET", "/docs", "prod", json!({}), host, None))
        .await;
    assert_eq!(redirect["statusCode"], 302);
    assert_eq!(
        header_values(&redirect["multiValueHeaders"], "location"),
        ["docs/"]
    );

    // Nothing scrapes a function: /metrics is a 404 problem (metrics go out as EMF).
    let metrics = function
        .api
        .respond(function_url_event(
            "GET",
            "/metrics",
            "",
            json!({}),
            &[],
            None,
        ))
        .await;
    assert_eq!(metrics["statusCode"], 404, "{metrics}");
    let problem: Value = serde_json::from_str(metrics["body"].as_str().unwrap()).unwrap();
    assert_eq!(problem["type"], "urn:proxyfn:problem:route-not-found");
    assert_eq!(
        header_values(&metrics["headers"], "x-request-id"),
        [problem["request_id"].as_str().unwrap()]
    );

    // Function URLs have no stage.
    let response = function
        .api
        .respond(function_url_event(
            "GET",
            "/openapi.json",
            "",
            json!({}),
            &[],
            None,
        ))
        .await;
    let document: Value = serde_json::from_str(response["body"].as_str().unwrap()).unwrap();
    assert_eq!(document["servers"], json!([{ "url": "/" }]));
}

#[tokio::test]
async fn in_lambda_a_compressed_response_is_sent_base64_with_its_encoding() {
    let body = "{\"items\":[".to_owned() + &"\"some text\",".repeat(200) + "\"end\"]}";
    let sent = body.clone();
    let upstream = Upstream::recording(move |_| {
        axum::response::Response::builder()
            .header("content-type", "application/json")
            .body(axum::body::Body::from(sent.clone()))
            .unwrap()
    })
    .await;
    let function = Function::start(&proxy_config(&upstream, "")).await;
    let response = function
        .api
        .respond(http_api_event(
            "GET",
            "/users/list",
            "",
            "$default",
            json!({ "accept-encoding": "gzip" }),
            &[],
            None,
        ))
        .await;
    assert_eq!(response["statusCode"], 200, "{response}");
    assert_eq!(response["isBase64Encoded"], true);
    assert_eq!(
        header_values(&response["headers"], "content-encoding"),
        ["gzip"]
    );
    assert_eq!(
        crate::compression::gunzip(&decoded_body(&response)),
        body.as_bytes()
    );
}

#[tokio::test]
async fn in_lambda_versions_are_chosen_by_prefix_under_a_stage_and_by_header() {
    let upstream = Upstream::echo().await;
    let function = Function::start(&config_with_upstream(
        &upstream.url(),
        "[[routes]]\npath = \"/things/{*rest}\"\nversion = \"v2\"\nupstream = \"backend\"\n\
         deprecated = { sunset = \"2027-06-30\" }\n",
    ))
    .await;
    let prefixed = function
        .api
        .respond(rest_event(
            "GET",
            "/v2/things/a",
            "prod",
            json!({}),
            &[],
            None,
        ))
        .await;
    assert_eq!(prefixed["statusCode"], 200, "{prefixed}");
    assert_eq!(upstream.last().target, "/things/a");
    assert_eq!(
        header_values(&prefixed["multiValueHeaders"], "sunset"),
        ["Wed, 30 Jun 2027 00:00:00 GMT"]
    );
    let by_header = function
        .api
        .respond(function_url_event(
            "GET",
            "/things/b",
            "",
            json!({ "accept-version": "v2" }),
            &[],
            None,
        ))
        .await;
    assert_eq!(by_header["statusCode"], 200, "{by_header}");
    assert_eq!(upstream.last().target, "/things/b");
    let unknown = function
        .api
        .respond(function_url_event(
            "GET",
            "/things/b",
            "",
            json!({ "accept-version": "v1" }),
            &[],
            None,
        ))
        .await;
    assert_eq!(unknown["statusCode"], 404, "{unknown}");
    let problem: Value = serde_json::from_slice(&decoded_body(&unknown)).unwrap();
    assert_eq!(problem["type"], "urn:proxyfn:problem:unknown-version");
    assert!(!problem["request_id"].as_str().unwrap().is_empty());
}

#[tokio::test]
async fn in_lambda_a_cached_answer_is_served_from_memory_between_invocations() {
    let upstream = Upstream::echo().await;
    let function = Function::start(&config_with_upstream(
        &upstream.url(),
        "[[routes]]\npath = \"/catalog\"\nmethods = [\"GET\"]\nupstream = \"backend\"\ncache = { ttl = \"30s\" }\n",
    ))
    .await;
    let mut seen = Vec::new();
    for _ in 0..2 {
        let response = function
            .api
            .respond(function_url_event(
                "GET",
                "/catalog",
                "",
                json!({}),
                &[],
                None,
            ))
            .await;
        assert_eq!(response["statusCode"], 200, "{response}");
        seen.extend(header_values(&response["headers"], "x-cache"));
    }
    assert_eq!(seen, ["MISS", "HIT"]);
    assert_eq!(upstream.requests().len(), 1);
}

#[tokio::test]
async fn in_lambda_a_cors_preflight_is_answered_by_the_gateway() {
    let function = Function::start(
        "[cors]\nallow_origins = [\"https://app.example.com\"]\nallow_methods = [\"GET\", \"PUT\"]\n\
         [[routes]]\npath = \"/things\"\nresponse = { body = \"ok\" }\n",
    )
    .await;
    let response = function
        .api
        .respond(http_api_event(
            "OPTIONS",
            "/things",
            "",
            "$default",
            json!({ "origin": "https://app.example.com", "access-control-request-method": "PUT" }),
            &[],
            None,
        ))
        .await;
    assert_eq!(response["statusCode"], 200, "{response}");
    assert_eq!(
        header_values(&response["headers"], "access-control-allow-origin"),
        ["https://app.example.com"]
    );
    assert!(header_values(&response["headers"], "access-control-allow-methods")[0].contains("PUT"));
}

// ---- events and answers exactly as AWS sends and takes them ----

/// A problem body from an invocation response.
fn problem_of(response: &Value) -> Value {
    serde_json::from_slice(&decoded_body(response)).expect("a problem body")
}

#[tokio::test]
async fn an_obs_text_byte_in_an_upstream_header_is_latin_1_and_the_function_lives_on() {
    let upstream = Upstream::recording(|_| {
        Response::builder()
            .header(
                "content-disposition",
                http::HeaderValue::from_bytes(b"attachment; filename=\"caf\xe9.txt\"").unwrap(),
            )
            .body(Body::from("file"))
            .unwrap()
    })
    .await;
    let function = Function::start(&proxy_config(&upstream, "")).await;

    let event = http_api_event("GET", "/users/f", "", "$default", json!({}), &[], None);
    let response = function.api.respond(event).await;
    assert_eq!(response["statusCode"], 200, "{response}");
    assert_eq!(
        response["headers"]["content-disposition"],
        "attachment; filename=\"café.txt\""
    );
    let response = function
        .api
        .respond(rest_event("GET", "/users/f", "prod", json!({}), &[], None))
        .await;
    assert_eq!(
        header_values(&response["multiValueHeaders"], "content-disposition"),
        ["attachment; filename=\"café.txt\""]
    );
    assert_eq!(upstream.requests().len(), 2, "the process served both");
}

#[tokio::test]
async fn repeated_response_headers_are_joined_where_one_value_per_name_is_allowed() {
    let upstream = Upstream::recording(|_| {
        Response::builder()
            .header("x-multi", "one")
            .header("x-multi", "two")
            .header("link", "</a>; rel=\"next\"")
            .header("link", "</b>; rel=\"prev\"")
            .header("vary", "accept-language")
            .header("set-cookie", "a=1")
            .header("set-cookie", "b=2")
            .body(Body::from("ok"))
            .unwrap()
    })
    .await;
    // CORS adds the gateway's own Vary to the upstream's.
    let function = Function::start(&proxy_config(
        &upstream,
        "[cors]\nallow_origins = [\"https://app.example.com\"]\n",
    ))
    .await;
    let origin = json!({"origin": "https://app.example.com"});

    for event in [
        http_api_event("GET", "/users/x", "", "$default", origin.clone(), &[], None),
        function_url_event("GET", "/users/x", "", origin.clone(), &[], None),
    ] {
        let response = function.api.respond(event).await;
        let headers = &response["headers"];
        assert_eq!(headers["x-multi"], "one, two", "{response}");
        assert_eq!(headers["link"], "</a>; rel=\"next\", </b>; rel=\"prev\"");
        let vary = headers["vary"].as_str().unwrap();
        assert!(
            vary.contains("accept-language") && vary.contains("origin"),
            "{vary}"
        );
        assert_eq!(response["cookies"], json!(["a=1", "b=2"]));
    }

    let mut alb = alb_event(
        "GET",
        "/users/x",
        json!({}),
        &[("x-forwarded-for", &["192.0.2.10"])],
        None,
    );
    // Without multi-value headers on, ALB sends and takes `headers`.
    alb["headers"] = json!({"origin": "https://app.example.com", "x-forwarded-for": "192.0.2.10"});
    alb.as_object_mut().unwrap().remove("multiValueHeaders");
    alb.as_object_mut()
        .unwrap()
        .remove("multiValueQueryStringParameters");
    let response = function.api.respond(alb.clone()).await;
    assert_eq!(response["headers"]["x-multi"], "one, two", "{response}");
    assert_eq!(
        response["headers"]["set-cookie"], "a=1",
        "one cookie is all ALB carries"
    );
    assert!(response.get("multiValueHeaders").is_none());
    function.api.respond(alb).await;
    let warnings = function
        .lines_containing("multi-value headers on the target group", 1)
        .await;
    assert_eq!(warnings, 1, "warned once per process");
}

#[tokio::test]
async fn rest_multi_value_request_headers_all_reach_the_upstream() {
    let upstream = Upstream::echo().await;
    let function = Function::start(&proxy_config(&upstream, "")).await;
    let mut event = rest_event(
        "GET",
        "/users/1",
        "prod",
        json!({}),
        &[
            ("Header2", &["value1", "value2"]),
            ("Accept", &["a/b", "c/d"]),
        ],
        None,
    );
    // `headers` holds the last value of each, as API Gateway sends it.
    assert_eq!(event["headers"]["Header2"], "value2");
    event["headers"]["Accept"] = json!("c/d");

    assert_eq!(function.api.respond(event).await["statusCode"], 200);
    let seen = upstream.last();
    let values: Vec<_> = seen.headers.get_all("header2").iter().collect();
    assert_eq!(values, ["value1", "value2"]);
    let values: Vec<_> = seen.headers.get_all("accept").iter().collect();
    assert_eq!(values, ["a/b", "c/d"]);
}

#[tokio::test]
async fn only_a_stage_that_aws_put_in_the_path_is_stripped() {
    let upstream = Upstream::echo().await;
    let function = Function::start(&config_with_upstream(
        &upstream.url(),
        "[[routes]]\npath = \"/{*rest}\"\nupstream = \"backend\"\n\
         [[routes]]\npath = \"/\"\nupstream = \"backend\"\n",
    ))
    .await;

    // REST: `path` never carries the stage, so a first segment equal to it is the client's.
    let response = function
        .api
        .respond(rest_event(
            "GET",
            "/testStage/x",
            "testStage",
            json!({}),
            &[],
            None,
        ))
        .await;
    assert_eq!(response["statusCode"], 200, "{response}");
    assert_eq!(upstream.last().target, "/testStage/x");

    // HTTP API on its execute-api domain: the named stage leads rawPath; `/Prod` alone is `/`.
    let on_api = |path: &str| http_api_event("GET", path, "", "Prod", json!({}), &[], None);
    function.api.respond(on_api("/Prod/x")).await;
    assert_eq!(upstream.last().target, "/x");
    function.api.respond(on_api("/Prod")).await;
    assert_eq!(upstream.last().target, "/");

    // On a custom domain rawPath has neither the stage nor the mapping key.
    let mut custom = on_api("/Prod/x");
    custom["requestContext"]["domainName"] = json!("api.example.com");
    function.api.respond(custom).await;
    assert_eq!(upstream.last().target, "/Prod/x");
}

#[tokio::test]
async fn a_host_that_is_not_an_authority_is_a_400_problem_and_the_next_event_is_served() {
    let upstream = Upstream::echo().await;
    let function = Function::start(&proxy_config(&upstream, "")).await;

    for host in [
        "<url-id>.lambda-url.us-east-1.on.aws",
        "example.com:99999",
        "evil/../admin@x",
    ] {
        let event = function_url_event("GET", "/users/1", "", json!({ "host": host }), &[], None);
        let response = function.api.respond(event).await;
        assert_eq!(response["statusCode"], 400, "{host}: {response}");
        assert_eq!(
            problem_of(&response)["type"],
            "urn:proxyfn:problem:invalid-host",
            "{host}"
        );
    }
    // Two Host fields through a REST API's multiValueHeaders.
    let response = function
        .api
        .respond(rest_event(
            "GET",
            "/users/1",
            "prod",
            json!({}),
            &[("Host", &["api.example.com", "evil.example"])],
            None,
        ))
        .await;
    assert_eq!(response["statusCode"], 400, "{response}");
    assert!(upstream.requests().is_empty());

    // A client-chosen but valid Host through ALB routes on the path.
    let response = function
        .api
        .respond(alb_event(
            "GET",
            "/users/2",
            json!({}),
            &[
                ("host", &["xn--a.example.com"]),
                ("x-forwarded-for", &["192.0.2.1"]),
            ],
            None,
        ))
        .await;
    assert_eq!(response["statusCode"], 200, "{response}");
    assert_eq!(
        upstream.last().headers["x-forwarded-host"],
        "xn--a.example.com"
    );
}

#[tokio::test]
async fn a_non_ascii_set_cookie_is_kept_in_payload_2_cookies() {
    let upstream = Upstream::recording(|_| {
        Response::builder()
            .header(
                "set-cookie",
                http::HeaderValue::from_bytes("city=Zürich; Path=/".as_bytes()).unwrap(),
            )
            .body(Body::empty())
            .unwrap()
    })
    .await;
    let function = Function::start(&proxy_config(&upstream, "")).await;
    let response = function
        .api
        .respond(function_url_event(
            "GET",
            "/users/c",
            "",
            json!({}),
            &[],
            None,
        ))
        .await;
    assert_eq!(
        response["cookies"],
        json!(["city=Zürich; Path=/"]),
        "{response}"
    );
}

#[tokio::test]
async fn malformed_events_are_400_problems_and_odd_queries_are_encoded() {
    let upstream = Upstream::echo().await;
    let function = Function::start(&proxy_config(&upstream, "")).await;

    let response = function
        .api
        .respond(http_api_event(
            "POST",
            "/users/1",
            "",
            "$default",
            json!({}),
            &[],
            Some(("this is not base64!", true)),
        ))
        .await;
    assert_eq!(response["statusCode"], 400, "{response}");
    let problem = problem_of(&response);
    assert_eq!(problem["type"], "urn:proxyfn:problem:malformed-event");
    assert!(
        problem["request_id"]
            .as_str()
            .is_some_and(|id| !id.is_empty())
    );
    assert!(upstream.requests().is_empty());

    // Bytes a URI cannot hold, as a client may send them raw: encoded, never a panic.
    let response = function
        .api
        .respond(http_api_event(
            "GET",
            "/users/q",
            "q=\"a b\"&r=<x>",
            "$default",
            json!({}),
            &[],
            None,
        ))
        .await;
    assert_eq!(response["statusCode"], 200, "{response}");
    assert_eq!(upstream.last().target, "/q?q=%22a%20b%22&r=%3Cx%3E");
}

#[tokio::test]
async fn websocket_events_are_refused_with_an_invocation_error_that_names_them() {
    let upstream = Upstream::echo().await;
    let function = Function::start(&proxy_config(&upstream, "")).await;
    let event = json!({
        "requestContext": {
            "routeKey": "$connect", "eventType": "CONNECT", "connectionId": "abc=",
            "stage": "prod", "requestId": "x", "domainName": "ws.execute-api.us-east-1.amazonaws.com"
        },
        "headers": { "Host": "ws.execute-api.us-east-1.amazonaws.com" },
        "isBase64Encoded": false
    });
    let Outcome::Error(error) = function.api.invoke(event).await else {
        panic!("a WebSocket event was answered as HTTP");
    };
    assert_eq!(error["errorType"], "UnsupportedEvent");
    assert!(
        error["errorMessage"]
            .as_str()
            .unwrap()
            .contains("an API Gateway WebSocket CONNECT event"),
        "{error}"
    );
    assert!(upstream.requests().is_empty());
    // The next invocation is served.
    let response = function
        .api
        .respond(rest_event("GET", "/users/1", "prod", json!({}), &[], None))
        .await;
    assert_eq!(response["statusCode"], 200);
}

#[tokio::test]
async fn alb_status_descriptions_name_unknown_codes_too() {
    let function = Function::start(
        "[[routes]]\npath = \"/odd\"\nresponse = { status = 599, body = \"odd\" }\n",
    )
    .await;
    let response = function
        .api
        .respond(alb_event("GET", "/odd", json!({}), &[], None))
        .await;
    assert_eq!(response["statusCode"], 599);
    assert_eq!(response["statusDescription"], "599 Unknown");
}

#[tokio::test]
async fn a_deadline_already_past_on_arrival_falls_back_to_the_server_timeout() {
    // cargo-lambda 1.9 sends Lambda-Runtime-Deadline-Ms as a relative 600000: 1970.
    let upstream = Upstream::echo().await;
    let function = Function::start(&proxy_config(&upstream, "")).await;
    let event = || rest_event("GET", "/users/1", "prod", json!({}), &[], None);
    for _ in 0..2 {
        let Outcome::Response(response) = function
            .api
            .invoke_with(event(), crate::runtime_api::Deadline::Raw(600_000))
            .await
        else {
            panic!("the invocation failed");
        };
        assert_eq!(response["statusCode"], 200, "{response}");
    }
    assert_eq!(upstream.requests().len(), 2);
    let warnings = function
        .lines_containing("Lambda-Runtime-Deadline-Ms", 1)
        .await;
    assert_eq!(warnings, 1, "warned once");
}

#[tokio::test]
async fn the_lambda_init_template_serves_a_rest_api_with_a_stage() {
    let template = proxyfn::config::templates::template("lambda").unwrap();
    let function = Function::start(template.text).await;
    let response = function
        .api
        .respond(rest_event("GET", "/hello", "prod", json!({}), &[], None))
        .await;
    assert_eq!(response["statusCode"], 200, "{response}");
    assert_eq!(response["body"], "hello from proxyfn");
}

#[tokio::test]
async fn trace_and_connect_events_get_405_on_a_route_without_methods() {
    let upstream = Upstream::echo().await;
    let function = Function::start(&proxy_config(&upstream, "")).await;
    for method in ["TRACE", "CONNECT"] {
        let event = LambdaEvent::http_api(method, "/users/42").build();
        let response = function.api.respond(event).await;
        assert_eq!(response["statusCode"], 405, "{method}: {response}");
    }
    assert!(upstream.requests().is_empty(), "nothing was forwarded");
}
