//! `[cors]`: preflights answered before auth, CORS headers on answers (errors included) for
//! listed origins only, and configurations browsers would reject refused at start-up.

use crate::helpers::*;

const CORS: &str = r#"
[cors]
allow_origins = ["https://app.example.com"]
allow_methods = ["GET", "POST"]
allow_headers = ["authorization", "content-type"]
expose_headers = ["x-request-id"]
allow_credentials = true
max_age = "10m"

[auth.api_keys.partners]
keys = []

[[routes]]
path = "/private"
auth = ["api_key:partners"]
response = { body = "secret" }

[[routes]]
path = "/public"
response = { body = "hello" }
"#;

#[tokio::test]
async fn a_preflight_is_answered_before_auth_for_a_listed_origin() {
    let gateway = Gateway::start(CORS).await;
    let response = client()
        .request(reqwest::Method::OPTIONS, gateway.url("/private"))
        .header("origin", "https://app.example.com")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization, content-type",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let headers = response.headers();
    assert_eq!(
        headers["access-control-allow-origin"],
        "https://app.example.com"
    );
    assert_eq!(headers["access-control-allow-credentials"], "true");
    assert_eq!(headers["access-control-max-age"], "600");
    let methods = headers["access-control-allow-methods"].to_str().unwrap();
    assert!(
        methods.contains("GET") && methods.contains("POST"),
        "{methods}"
    );
    let allowed = headers["access-control-allow-headers"].to_str().unwrap();
    assert!(allowed.contains("authorization") && allowed.contains("content-type"));
    assert!(headers["vary"].to_str().unwrap().contains("origin"));
}

#[tokio::test]
async fn answers_and_problems_carry_cors_headers_only_for_listed_origins() {
    let gateway = Gateway::start(CORS).await;
    let get = |path: &'static str, origin: &'static str| {
        client()
            .get(gateway.url(path))
            .header("origin", origin)
            .send()
    };
    let ok = get("/public", "https://app.example.com").await.unwrap();
    assert_eq!(
        ok.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );
    assert_eq!(
        ok.headers()["access-control-expose-headers"],
        "x-request-id"
    );

    let refused = get("/private", "https://app.example.com").await.unwrap();
    assert_eq!(
        refused.headers()["access-control-allow-origin"],
        "https://app.example.com",
        "a page can read why it was refused"
    );
    expect_problem(refused, 401, "unauthorized").await;

    let other = get("/public", "https://evil.example").await.unwrap();
    assert_eq!(
        other.status(),
        200,
        "CORS is enforced by browsers, not by refusing"
    );
    assert!(other.headers().get("access-control-allow-origin").is_none());
    for name in [
        "access-control-expose-headers",
        "access-control-allow-credentials",
    ] {
        assert!(
            other.headers().get(name).is_none(),
            "{name} for another page"
        );
    }
    assert!(other.headers()["vary"].to_str().unwrap().contains("origin"));

    let no_origin = client().get(gateway.url("/public")).send().await.unwrap();
    let names: Vec<_> = no_origin
        .headers()
        .keys()
        .filter(|name| name.as_str().starts_with("access-control-"))
        .collect();
    assert!(names.is_empty(), "no Origin, no CORS headers: {names:?}");
}

#[tokio::test]
async fn a_preflight_from_an_unlisted_origin_learns_nothing_of_the_policy() {
    let gateway = Gateway::start(CORS).await;
    let response = client()
        .request(reqwest::Method::OPTIONS, gateway.url("/private"))
        .header("origin", "https://evil.example")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    let names: Vec<_> = response
        .headers()
        .keys()
        .filter(|name| name.as_str().starts_with("access-control-"))
        .collect();
    assert!(names.is_empty(), "{names:?}");
}

#[tokio::test]
async fn without_a_cors_section_no_cors_headers_are_sent() {
    let gateway = Gateway::start("[[routes]]\npath = \"/a\"\nresponse = { body = \"a\" }\n").await;
    let response = client()
        .get(gateway.url("/a"))
        .header("origin", "https://app.example.com")
        .send()
        .await
        .unwrap();
    assert!(
        response
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
}

#[test]
fn credentials_with_a_wildcard_and_bad_origins_fail_the_config_check() {
    let file = ConfigFile::new(
        "[cors]\nallow_origins = [\"*\"]\nallow_credentials = true\n\n\
         [[routes]]\npath = \"/a\"\nresponse = { body = \"a\" }\n",
    );
    let output = file.run(&["check"]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("cors.allow_credentials"), "{stderr}");

    let file = ConfigFile::new(
        "[cors]\nallow_origins = [\"https://app.example.com/\", \"app.example.com\"]\n",
    );
    let stderr = String::from_utf8_lossy(&file.run(&["check"]).stderr).into_owned();
    assert!(
        stderr.contains("cors.allow_origins[0]") && stderr.contains("cors.allow_origins[1]"),
        "{stderr}"
    );
}
