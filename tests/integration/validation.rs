//! `request_schema`: bodies are checked before the upstream is called; refusals are problems
//! listing each error with its JSON pointer, and redacted fields never show their values.

use serde_json::json;

use crate::{
    app::{BOTH, Call, TestApp},
    helpers::*,
};

const ORDER_SCHEMA: &str = r#"{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "type": "object",
  "required": ["item", "quantity"],
  "properties": {
    "item": { "type": "string", "minLength": 1 },
    "quantity": { "type": "integer", "minimum": 1 },
    "card": {
      "type": "object",
      "properties": { "number": { "type": "string", "pattern": "^[0-9]{16}$" } }
    }
  },
  "additionalProperties": false
}"#;

struct Setup {
    upstream: Upstream,
    gateway: Gateway,
    _dir: tempfile::TempDir,
}

async fn setup() -> Setup {
    let upstream = Upstream::echo().await;
    let dir = tempfile::tempdir().unwrap();
    let schema = dir.path().join("order.json");
    std::fs::write(&schema, ORDER_SCHEMA).unwrap();
    let gateway = Gateway::start(&config_with_upstream(
        &upstream.url(),
        &format!(
            "[log]\nredact = [\"/card/number\"]\n\
             [[routes]]\npath = \"/orders\"\nupstream = \"backend\"\nrequest_schema = {:?}\n",
            schema.display().to_string()
        ),
    ))
    .await;
    Setup {
        upstream,
        gateway,
        _dir: dir,
    }
}

async fn post(gateway: &Gateway, content_type: &str, body: &str) -> reqwest::Response {
    client()
        .post(gateway.url("/orders"))
        .header("content-type", content_type)
        .header("x-request-id", "val-1")
        .body(body.to_owned())
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_valid_body_reaches_the_upstream_byte_for_byte() {
    let setup = setup().await;
    let body = "{ \"item\" : \"tea\",\n  \"quantity\": 2 }";
    let response = post(&setup.gateway, "application/json; charset=utf-8", body).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), body);
    assert_eq!(setup.upstream.last().body, body.as_bytes());
}

#[tokio::test]
async fn a_body_breaking_the_schema_is_400_with_a_pointer_per_error() {
    let setup = setup().await;
    let body = json!({ "item": "", "quantity": 0, "colour": "red" }).to_string();
    let response = post(&setup.gateway, "application/json", &body).await;
    let problem = expect_problem(response, 400, "validation-failed").await;
    assert_eq!(problem["request_id"], "val-1");
    let errors = problem["errors"].as_array().unwrap();
    let pointers: Vec<&str> = errors
        .iter()
        .map(|e| e["pointer"].as_str().unwrap())
        .collect();
    for expected in ["#/item", "#/quantity", "#"] {
        assert!(pointers.contains(&expected), "{pointers:?}");
    }
    assert!(
        errors
            .iter()
            .all(|e| !e["detail"].as_str().unwrap().is_empty())
    );
    assert!(
        setup.upstream.requests().is_empty(),
        "the upstream was not called"
    );
}

#[tokio::test]
async fn a_redacted_field_is_never_echoed_in_an_error() {
    let setup = setup().await;
    let body = json!({ "item": "tea", "quantity": 1, "card": { "number": "4111-secret-digits" } });
    let response = post(&setup.gateway, "application/json", &body.to_string()).await;
    let problem = expect_problem(response, 400, "validation-failed")
        .await
        .to_string();
    assert!(problem.contains("#/card/number"), "{problem}");
    assert!(!problem.contains("4111-secret-digits"), "{problem}");
}

#[tokio::test]
async fn invalid_json_is_400_and_a_non_json_type_is_415() {
    let setup = setup().await;
    let response = post(&setup.gateway, "application/json", "{\"item\": ").await;
    let problem = expect_problem(response, 400, "invalid-json").await;
    assert_eq!(problem["request_id"], "val-1");
    assert!(problem["detail"].as_str().unwrap().contains("line 1"));

    let response = post(&setup.gateway, "text/plain", "item=tea").await;
    let problem = expect_problem(response, 415, "unsupported-media-type").await;
    assert_eq!(problem["request_id"], "val-1");
    assert!(setup.upstream.requests().is_empty());
}

#[tokio::test]
async fn a_gzip_body_is_checked_decoded_and_forwarded_as_sent() {
    let setup = setup().await;
    let send = |body: Vec<u8>, encoding: &'static str| {
        client()
            .post(setup.gateway.url("/orders"))
            .header("content-type", "application/json")
            .header("content-encoding", encoding)
            .header("x-request-id", "val-1")
            .body(body)
            .send()
    };
    let valid = crate::compression::gzip(br#"{"item":"tea","quantity":2}"#);
    let response = send(valid.clone(), "gzip").await.unwrap();
    assert_eq!(response.status(), 200);
    let forwarded = setup.upstream.last();
    assert_eq!(forwarded.body, valid, "still compressed, byte for byte");
    assert_eq!(forwarded.headers["content-encoding"], "gzip");

    let invalid = crate::compression::gzip(br#"{"item":"tea","quantity":0}"#);
    let response = send(invalid, "gzip").await.unwrap();
    let problem = expect_problem(response, 400, "validation-failed").await;
    assert_eq!(problem["errors"][0]["pointer"], "#/quantity");

    let response = send(b"(zstd)".to_vec(), "zstd").await.unwrap();
    assert_eq!(response.headers()["accept-encoding"], "gzip, br");
    expect_problem(response, 415, "unsupported-content-encoding").await;
    assert_eq!(setup.upstream.requests().len(), 1);
}

#[tokio::test]
async fn get_requests_are_not_validated() {
    let setup = setup().await;
    let response = client()
        .get(setup.gateway.url("/orders"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[test]
fn an_unreadable_or_invalid_schema_fails_the_config_check() {
    let file = ConfigFile::new(
        "[[routes]]\npath = \"/a\"\nresponse = { body = \"a\" }\nrequest_schema = \"missing.json\"\n\
         [[routes]]\npath = \"/b\"\nresponse = { body = \"b\" }\nrequest_schema = \"bad.json\"\n",
    );
    std::fs::write(file.dir().join("bad.json"), r#"{"type": "no-such-type"}"#).unwrap();
    let output = file.run(&["check"]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("routes[0] (/a).request_schema: cannot read"),
        "{stderr}"
    );
    assert!(
        stderr.contains("routes[1] (/b).request_schema:"),
        "{stderr}"
    );
    assert!(stderr.contains("not a usable JSON Schema"), "{stderr}");
}

#[tokio::test]
async fn a_body_breaking_the_request_schema_is_a_400_problem_in_both_runtimes() {
    let dir = tempfile::tempdir().unwrap();
    let schema = dir.path().join("thing.json");
    std::fs::write(&schema, r#"{"type":"object","required":["name"]}"#).unwrap();
    for runtime in BOTH {
        let upstream = Upstream::echo().await;
        let gateway = TestApp::new()
            .with_upstream("backend", &upstream)
            .route(
                "/things",
                &format!(
                    "upstream = \"backend\"\nrequest_schema = {:?}",
                    schema.display().to_string()
                ),
            )
            .start(runtime)
            .await;
        let json_post =
            |body: &str| Call::post("/things", body).header("content-type", "application/json");

        let refused = gateway.send(json_post("{}")).await;
        let problem = refused.problem(400, "validation-failed");
        assert_eq!(problem["errors"][0]["pointer"], "#", "{runtime:?}");
        assert!(upstream.requests().is_empty(), "{runtime:?}");

        let accepted = gateway.send(json_post("{\"name\":\"x\"}")).await;
        assert_eq!(accepted.status, 200, "{runtime:?}");
        assert_eq!(upstream.last().body, "{\"name\":\"x\"}".as_bytes());

        let zstd = gateway
            .send(json_post("{}").header("content-encoding", "zstd"))
            .await;
        zstd.problem(415, "unsupported-content-encoding");
    }
}
