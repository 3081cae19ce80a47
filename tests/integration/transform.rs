//! Route `transform`: JSON members kept, removed, renamed, moved and wrapped, and headers
//! set, removed and renamed, on the request to the upstream and on the response.

use axum::{body::Body, response::Response};
use serde_json::{Value, json};

use crate::{
    app::{BOTH, Call, TestApp},
    helpers::*,
};

fn user() -> Value {
    json!({
        "id": 7,
        "name": "Ada",
        "password_hash": "$argon2id$secret",
        "profile": { "city": "London", "age": 36 }
    })
}

/// Answers every request with `body` as JSON, plus `x-internal` and `x-old` headers.
async fn json_upstream(body: Value) -> Upstream {
    Upstream::recording(move |_| {
        Response::builder()
            .header("content-type", "application/json")
            .header("x-internal", "db-3")
            .header("x-old", "kept value")
            .body(Body::from(body.to_string()))
            .unwrap()
    })
    .await
}

async fn get_json(gateway: &Gateway, path: &str) -> (reqwest::header::HeaderMap, Value) {
    let response = client().get(gateway.url(path)).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let headers = response.headers().clone();
    let body: Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
    (headers, body)
}

#[tokio::test]
async fn response_members_are_denied_renamed_and_moved_and_headers_rewritten() {
    let upstream = json_upstream(user()).await;
    let gateway = Gateway::start(&config_with_upstream(
        &upstream.url(),
        r#"
[[routes]]
path = "/profile/{id}"
upstream = "backend"
rewrite = "/users/{id}"
transform.response.deny = ["/password_hash"]
transform.response.rename = { "/name" = "/full_name" }
transform.response.move = { "/profile/city" = "/address/city" }
transform.response.headers.add = { "x-served-by" = "proxyfn" }
transform.response.headers.remove = ["x-internal"]
transform.response.headers.rename = { "x-old" = "x-new" }
"#,
    ))
    .await;
    let (headers, body) = get_json(&gateway, "/profile/7").await;
    assert_eq!(
        body,
        json!({ "id": 7, "full_name": "Ada", "profile": { "age": 36 }, "address": { "city": "London" } })
    );
    assert_eq!(headers["x-served-by"], "proxyfn");
    assert_eq!(headers["x-new"], "kept value");
    assert!(headers.get("x-internal").is_none() && headers.get("x-old").is_none());
    assert_eq!(
        headers["content-length"],
        body.to_string().len().to_string().as_str()
    );
    let seen = upstream.last();
    assert_eq!(seen.target, "/users/7");
    assert_eq!(
        seen.headers["accept-encoding"], "identity",
        "a body the gateway rewrites is asked for uncompressed"
    );
}

#[tokio::test]
async fn allow_keeps_only_the_named_members_and_wrap_nests_the_body() {
    let upstream =
        json_upstream(json!([user(), { "id": 8, "name": "Alan", "password_hash": "x" }])).await;
    let gateway = Gateway::start(&config_with_upstream(
        &upstream.url(),
        r#"
[[routes]]
path = "/users"
upstream = "backend"
transform.response.allow = ["/id", "/profile/city"]
transform.response.wrap = "data"
"#,
    ))
    .await;
    let (_, body) = get_json(&gateway, "/users").await;
    assert_eq!(
        body,
        json!({ "data": [{ "id": 7, "profile": { "city": "London" } }, { "id": 8 }] })
    );
}

#[tokio::test]
async fn a_request_body_and_headers_are_rewritten_for_the_upstream() {
    let upstream = Upstream::echo().await;
    let gateway = Gateway::start(&config_with_upstream(
        &upstream.url(),
        r#"
[[routes]]
path = "/signup"
upstream = "backend"
transform.request.deny = ["/is_admin"]
transform.request.rename = { "/user" = "/username" }
transform.request.wrap = "account"
transform.request.headers.remove = ["x-debug"]
transform.request.headers.rename = { "x-client" = "x-client-name" }
transform.request.headers.add = { "x-gateway" = "proxyfn" }
"#,
    ))
    .await;
    let sent = json!({ "user": "ada", "is_admin": true });
    let response = client()
        .post(gateway.url("/signup"))
        .header("content-type", "application/json")
        .header("x-debug", "1")
        .header("x-client", "cli/2")
        .body(sent.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let seen = upstream.last();
    let forwarded: Value = serde_json::from_slice(&seen.body).unwrap();
    assert_eq!(forwarded, json!({ "account": { "username": "ada" } }));
    assert_eq!(
        seen.headers["content-length"],
        seen.body.len().to_string().as_str()
    );
    assert!(seen.headers.get("x-debug").is_none());
    assert_eq!(seen.headers["x-client-name"], "cli/2");
    assert_eq!(seen.headers["x-gateway"], "proxyfn");
}

#[tokio::test]
async fn a_gzip_request_body_is_rewritten_decoded() {
    let upstream = Upstream::echo().await;
    let gateway = Gateway::start(&config_with_upstream(
        &upstream.url(),
        "[[routes]]\npath = \"/in\"\nupstream = \"backend\"\ntransform.request.deny = [\"/drop\"]\n",
    ))
    .await;
    let response = client()
        .post(gateway.url("/in"))
        .header("content-type", "application/json")
        .header("content-encoding", "gzip")
        .body(crate::compression::gzip(br#"{"keep":1,"drop":2}"#))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let seen = upstream.last();
    assert_eq!(seen.body, r#"{"keep":1}"#.as_bytes());
    assert!(seen.headers.get("content-encoding").is_none());
}

#[tokio::test]
async fn bodies_that_are_not_json_pass_untouched_and_compressed_json_is_decoded() {
    let text = "password_hash: not json";
    let gzipped = crate::compression::gzip(user().to_string().as_bytes());
    let upstream = Upstream::recording(move |captured| {
        let builder = Response::builder();
        if captured.target == "/text" {
            builder
                .header("content-type", "text/plain")
                .body(Body::from(text))
                .unwrap()
        } else if captured.target == "/broken" {
            builder
                .header("content-type", "application/json")
                .body(Body::from("{\"password_hash\": "))
                .unwrap()
        } else {
            builder
                .header("content-type", "application/json")
                .header("content-encoding", "gzip")
                .body(Body::from(gzipped.clone()))
                .unwrap()
        }
    })
    .await;
    let gateway = Gateway::start(&config_with_upstream(
        &upstream.url(),
        "[[routes]]\npath = \"/{*any}\"\nupstream = \"backend\"\ntransform.response.deny = [\"/password_hash\", \"/profile\"]\n",
    ))
    .await;
    assert_eq!(gateway.text("/text").await, text);
    assert_eq!(gateway.text("/broken").await, "{\"password_hash\": ");
    let (headers, body) = get_json(&gateway, "/gzipped").await;
    assert_eq!(body, json!({ "id": 7, "name": "Ada" }));
    assert!(headers.get("content-encoding").is_none());
}

#[test]
fn invalid_transforms_fail_the_config_check_with_their_keys() {
    let file = ConfigFile::new(
        r#"
[[routes]]
path = "/a"
response = { body = "{}" }
transform.response.rename = { "/a/b" = "/c" }
transform.response.deny = ["no-slash"]
transform.request.headers.add = { "content-length" = "5" }
"#,
    );
    let output = file.run(&["check"]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    for key in [
        "routes[0] (/a).transform.response.rename.\"/a/b\"",
        "routes[0] (/a).transform.response.deny[0]",
        "routes[0] (/a).transform.request.headers.add.content-length",
    ] {
        assert!(stderr.contains(key), "{key} in {stderr}");
    }
}

#[tokio::test]
async fn responses_are_transformed_the_same_in_both_runtimes() {
    for runtime in BOTH {
        let upstream = Upstream::recording(|_| {
            axum::response::Response::builder()
                .header("content-type", "application/json")
                .body(axum::body::Body::from(
                    r#"{"id":1,"name":"Ada","password_hash":"x"}"#,
                ))
                .unwrap()
        })
        .await;
        let gateway = TestApp::new()
            .with_upstream("backend", &upstream)
            .route(
                "/me",
                "upstream = \"backend\"\n\
                 transform.response.deny = [\"/password_hash\"]\n\
                 transform.response.headers.add = { \"x-served-by\" = \"proxyfn\" }",
            )
            .start(runtime)
            .await;
        let response = gateway.send(Call::get("/me")).await;
        assert_eq!(response.status, 200, "{runtime:?}");
        assert_eq!(response.header("x-served-by"), ["proxyfn"], "{runtime:?}");
        assert_eq!(
            response.json(),
            json!({ "id": 1, "name": "Ada" }),
            "{runtime:?}"
        );
    }
}
