//! Aggregate routes: several real backends called in parallel, JSON merged, failures left
//! out and reported, required backends enforced.

use std::{sync::Arc, time::Duration};

use axum::{
    Json, Router,
    body::Body,
    extract::{Path, RawQuery},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::get,
};
use serde_json::{Value, json};
use tokio::sync::Barrier;

use crate::{
    app::{BOTH, Call, TestApp},
    helpers::*,
};

/// `users` answers at once; `orders` only once `users` has been called too (a barrier both
/// wait on), so a sequential gateway would time it out: parallelism shown by ordering, not by
/// a clock; `failing` answers 500; `slow` sleeps 5 s; `text` answers plain text.
struct Backends {
    users: Upstream,
    orders: Upstream,
    failing: Upstream,
    slow: Upstream,
    text: Upstream,
}

async fn backends() -> Backends {
    let barrier = Arc::new(Barrier::new(2));
    let users_barrier = barrier.clone();
    let users = Upstream::serve(Router::new().route(
        "/users/{id}",
        get(move |Path(id): Path<String>| {
            let barrier = users_barrier.clone();
            async move {
                barrier.wait().await;
                Json(json!({ "id": id, "name": "Ada", "plan": "pro" }))
            }
        }),
    ))
    .await;
    let orders = Upstream::serve(Router::new().route(
        "/orders",
        get(move |RawQuery(query): RawQuery| {
            let barrier = barrier.clone();
            async move {
                barrier.wait().await;
                Json(json!([{ "order": 1, "query": query }]))
            }
        }),
    ))
    .await;
    let failing = Upstream::serve(Router::new().fallback(|| async {
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({ "error": "db down" })),
        )
    }))
    .await;
    let slow = Upstream::serve(Router::new().fallback(|| async {
        tokio::time::sleep(Duration::from_secs(5)).await;
        Json(json!({ "late": true }))
    }))
    .await;
    let text = Upstream::serve(Router::new().fallback(|| async { "plain text" })).await;
    Backends {
        users,
        orders,
        failing,
        slow,
        text,
    }
}

fn upstreams(backends: &Backends) -> String {
    format!(
        "[upstreams.users]\nurl = \"{}\"\n[upstreams.orders]\nurl = \"{}\"\n\
         [upstreams.failing]\nurl = \"{}\"\n[upstreams.slow]\nurl = \"{}\"\n\
         [upstreams.text]\nurl = \"{}\"\n",
        backends.users.url(),
        backends.orders.url(),
        backends.failing.url(),
        backends.slow.url(),
        backends.text.url()
    )
}

async fn get_dash(gateway: &Gateway, path: &str) -> Response {
    let response = client()
        .get(gateway.url(path))
        .header("x-request-id", "agg-1")
        .send()
        .await
        .unwrap();
    let mut out = Response::builder().status(response.status().as_u16());
    for (name, value) in response.headers() {
        out = out.header(name.as_str(), value.as_bytes());
    }
    out.body(Body::from(response.bytes().await.unwrap()))
        .unwrap()
}

async fn json_of(response: Response) -> Value {
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

#[tokio::test]
async fn backends_are_called_in_parallel_merged_and_failures_reported() {
    let backends = backends().await;
    let gateway = Gateway::start(&format!(
        r#"{}
[[routes]]
path = "/dash/{{id}}"
aggregate = [
  {{ upstream = "users", path = "/users/{{id}}", key = "user", required = true }},
  {{ upstream = "orders", path = "/orders?user={{id}}", key = "orders", timeout = "10s" }},
  {{ upstream = "failing", path = "/recommendations/{{id}}", key = "recommendations" }},
  {{ upstream = "slow", path = "/slow", key = "slow", timeout = "200ms" }},
  {{ upstream = "text", path = "/text", key = "text" }},
]
"#,
        upstreams(&backends)
    ))
    .await;
    let response = get_dash(&gateway, "/dash/42").await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-proxyfn-completed"], "false");
    assert_eq!(response.headers()["content-type"], "application/json");
    let body = json_of(response).await;
    assert_eq!(
        body["user"],
        json!({ "id": "42", "name": "Ada", "plan": "pro" })
    );
    assert_eq!(
        body["orders"],
        json!([{ "order": 1, "query": "user=42" }]),
        "the route parameter reaches the backend's query; both waited on each other, so the calls overlapped"
    );
    let errors = body["_errors"].as_array().unwrap();
    let named: Vec<(&str, &str)> = errors
        .iter()
        .map(|e| {
            (
                e["backend"].as_str().unwrap(),
                e["detail"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(named.len(), 3, "{named:?}");
    assert_eq!(named[0], ("recommendations", "answered 500"));
    assert_eq!(named[1], ("slow", "no answer within 200ms"));
    assert_eq!(named[2], ("text", "answered a body that is not JSON"));
    assert!(body.get("recommendations").is_none() && body.get("slow").is_none());
}

#[tokio::test]
async fn a_failing_required_backend_or_all_failing_is_a_502_problem() {
    let backends = backends().await;
    let gateway = Gateway::start(&format!(
        r#"{}
[[routes]]
path = "/required"
aggregate = [
  {{ upstream = "text", path = "/x", key = "x" }},
  {{ upstream = "failing", path = "/profile", key = "profile", required = true }},
]
[[routes]]
path = "/all"
aggregate = [
  {{ upstream = "failing", path = "/a", key = "a" }},
  {{ upstream = "text", path = "/b", key = "b" }},
]
"#,
        upstreams(&backends)
    ))
    .await;
    for (path, detail) in [
        (
            "/required",
            "The required backend 'profile' failed: answered 500",
        ),
        ("/all", "Every backend of this route failed."),
    ] {
        let response = client()
            .get(gateway.url(path))
            .header("x-request-id", "agg-2")
            .send()
            .await
            .unwrap();
        let problem = expect_problem(response, 502, "aggregation-failed").await;
        assert_eq!(problem["detail"], detail);
        assert_eq!(problem["request_id"], "agg-2");
    }
}

#[tokio::test]
async fn without_keys_objects_merge_at_the_root_and_errors_can_be_left_unlisted() {
    let users = Upstream::serve(
        Router::new().fallback(|| async { Json(json!({ "name": "Ada", "shared": "from users" })) }),
    )
    .await;
    let prefs = Upstream::serve(
        Router::new()
            .fallback(|| async { Json(json!({ "theme": "dark", "shared": "from prefs" })) }),
    )
    .await;
    let failing = Upstream::serve(
        Router::new().fallback(|| async { StatusCode::SERVICE_UNAVAILABLE.into_response() }),
    )
    .await;
    let gateway = Gateway::start(&format!(
        r#"
[upstreams.users]
url = "{}"
[upstreams.prefs]
url = "{}"
[upstreams.failing]
url = "{}"
[[routes]]
path = "/me"
aggregate_errors = false
aggregate = [
  {{ upstream = "users", path = "/me" }},
  {{ upstream = "prefs", path = "/prefs" }},
  {{ upstream = "failing", path = "/x" }},
]
"#,
        users.url(),
        prefs.url(),
        failing.url()
    ))
    .await;
    let response = get_dash(&gateway, "/me").await;
    assert_eq!(response.headers()["x-proxyfn-completed"], "false");
    assert_eq!(
        json_of(response).await,
        json!({ "name": "Ada", "theme": "dark", "shared": "from prefs" }),
        "later backends win a clash; no _errors when turned off"
    );
}

#[tokio::test]
async fn a_complete_aggregate_says_so_and_is_transformed_after_merging() {
    let backends = backends().await;
    let gateway = Gateway::start(&format!(
        r#"{}
[[routes]]
path = "/dash/{{id}}"
aggregate = [
  {{ upstream = "users", path = "/users/{{id}}", key = "user" }},
  {{ upstream = "orders", path = "/orders?user={{id}}", key = "orders" }},
]
transform.response.deny = ["/user/plan"]
transform.response.move = {{ "/orders" = "/user/orders" }}
"#,
        upstreams(&backends)
    ))
    .await;
    let response = get_dash(&gateway, "/dash/7").await;
    assert_eq!(response.headers()["x-proxyfn-completed"], "true");
    assert_eq!(
        json_of(response).await,
        json!({ "user": { "id": "7", "name": "Ada", "orders": [{ "order": 1, "query": "user=7" }] } })
    );
}

#[test]
fn invalid_aggregates_fail_the_config_check_with_their_keys() {
    let file = ConfigFile::new(
        r#"
[upstreams.a]
url = "http://127.0.0.1:1"
[[routes]]
path = "/x/{id}"
upstream = "a"
aggregate = [{ upstream = "a", path = "/a" }]
[[routes]]
path = "/y/{id}"
aggregate = [
  { upstream = "nope", path = "/a/{id}", key = "k" },
  { upstream = "a", path = "/b/{other}", key = "k", method = "G T" },
]
"#,
    );
    let output = file.run(&["check"]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    for expected in [
        "routes[0] (/x/{id}): set only one action; this route sets `upstream`, `aggregate`",
        "routes[1] (/y/{id}).aggregate[0].upstream",
        "routes[1] (/y/{id}).aggregate[1].path",
        "routes[1] (/y/{id}).aggregate[1].key",
        "routes[1] (/y/{id}).aggregate[1].method",
    ] {
        assert!(stderr.contains(expected), "{expected} in {stderr}");
    }
}

#[tokio::test]
async fn an_aggregate_merges_its_backends_and_reports_the_missing_one_in_both_runtimes() {
    for runtime in BOTH {
        let profile = Upstream::recording(|captured| {
            axum::response::Response::builder()
                .header("content-type", "application/json")
                .body(axum::body::Body::from(format!(
                    "{{\"path\":{:?}}}",
                    captured.target
                )))
                .unwrap()
        })
        .await;
        let failing = Upstream::recording(|_| {
            axum::response::Response::builder()
                .status(503)
                .body(axum::body::Body::empty())
                .unwrap()
        })
        .await;
        let gateway = TestApp::new()
            .with_upstream("profile", &profile)
            .with_upstream("failing", &failing)
            .route(
                "/dash/{id}",
                "aggregate = [\n\
                   { upstream = \"profile\", path = \"/users/{id}\", key = \"user\", required = true },\n\
                   { upstream = \"failing\", path = \"/x\", key = \"extra\" },\n]",
            )
            .start(runtime)
            .await;
        let response = gateway.send(Call::get("/dash/9")).await;
        assert_eq!(response.status, 200, "{runtime:?}");
        assert_eq!(response.header("x-proxyfn-completed"), ["false"]);
        let body = response.json();
        assert_eq!(body["user"], json!({ "path": "/users/9" }), "{runtime:?}");
        assert_eq!(
            body["_errors"],
            json!([{ "backend": "extra", "detail": "answered 503" }])
        );
    }
}

#[tokio::test]
async fn a_failing_required_backend_is_a_502_problem_with_the_request_id_in_both_runtimes() {
    for runtime in BOTH {
        let failing = Upstream::recording(|_| {
            axum::response::Response::builder()
                .status(500)
                .body(axum::body::Body::empty())
                .unwrap()
        })
        .await;
        let gateway = TestApp::new()
            .with_upstream("failing", &failing)
            .route(
                "/dash",
                "aggregate = [{ upstream = \"failing\", path = \"/x\", key = \"x\", required = true }]",
            )
            .start(runtime)
            .await;
        let response = gateway
            .send(Call::get("/dash").header("x-request-id", "agg-both"))
            .await;
        let problem = response.problem(502, "aggregation-failed");
        assert_eq!(problem["request_id"], "agg-both", "{runtime:?}");
    }
}
