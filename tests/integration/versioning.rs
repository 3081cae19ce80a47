//! API versions by path prefix, header, query parameter and default; unknown versions; and
//! deprecation headers (RFC 9745, RFC 8594) with the OpenAPI document marking the route.

use axum::{body::Body, response::Response};
use serde_json::Value;

use crate::helpers::*;

/// Answers `NAME PATH` so a test sees which upstream served which path.
async fn named(name: &'static str) -> Upstream {
    Upstream::recording(move |captured| {
        Response::builder()
            .header("content-type", "text/plain")
            .body(Body::from(format!("{name} {}", captured.target)))
            .unwrap()
    })
    .await
}

struct Setup {
    gateway: Gateway,
    _v1: Upstream,
    _v2: Upstream,
}

async fn start(versioning: &str) -> Setup {
    let v1 = named("one").await;
    let v2 = named("two").await;
    let gateway = Gateway::start(&format!(
        r#"
{versioning}
[upstreams.things_v1]
url = "{}"
[upstreams.things_v2]
url = "{}"

[[routes]]
path = "/things/{{*rest}}"
version = "v1"
upstream = "things_v1"
deprecated = {{ since = "2026-01-31", sunset = "2027-06-30", link = "https://example.com/migrate" }}

[[routes]]
path = "/things/{{*rest}}"
version = "v2"
upstream = "things_v2"

[[routes]]
path = "/plain"
response = {{ body = "unversioned" }}
"#,
        v1.url(),
        v2.url()
    ))
    .await;
    Setup {
        gateway,
        _v1: v1,
        _v2: v2,
    }
}

const VERSIONING: &str =
    "[versioning]\ndefault = \"v1\"\nheader = \"accept-version\"\nquery = \"version\"";

async fn get(gateway: &Gateway, path: &str, version_header: Option<&str>) -> reqwest::Response {
    let mut request = client()
        .get(gateway.url(path))
        .header("x-request-id", "ver-1");
    if let Some(version) = version_header {
        request = request.header("accept-version", version);
    }
    request.send().await.unwrap()
}

#[tokio::test]
async fn the_version_is_chosen_by_prefix_header_query_then_default() {
    let setup = start(VERSIONING).await;
    let gateway = &setup.gateway;
    for (path, header, served) in [
        ("/v2/things/a", None, "two /things/a"),
        ("/v1/things/a", Some("v2"), "one /things/a"),
        ("/things/a", Some("v2"), "two /things/a"),
        ("/things/a?version=v2", None, "two /things/a?version=v2"),
        (
            "/things/a?version=v2",
            Some("v1"),
            "one /things/a?version=v2",
        ),
        ("/things/a", None, "one /things/a"),
    ] {
        let response = get(gateway, path, header).await;
        assert_eq!(response.status(), 200, "{path} {header:?}");
        let vary = response
            .headers()
            .get("vary")
            .map(|v| v.to_str().unwrap().to_owned());
        assert_eq!(response.text().await.unwrap(), served, "{path} {header:?}");
        if path.starts_with("/things") {
            assert_eq!(vary.as_deref(), Some("accept-version"), "{path}");
        } else {
            assert_eq!(vary, None, "a prefixed path does not vary with the header");
        }
    }
    assert_eq!(gateway.text("/plain").await, "unversioned");
}

#[tokio::test]
async fn an_unknown_version_is_a_404_problem_listing_the_known_ones() {
    let setup = start(VERSIONING).await;
    for (path, header) in [("/things/a", Some("v9")), ("/v9/things/a", None)] {
        let response = get(&setup.gateway, path, header).await;
        let problem = expect_problem(response, 404, "unknown-version").await;
        let detail = problem["detail"].as_str().unwrap();
        assert!(
            detail.contains("\"v9\"") && detail.contains("v1, v2"),
            "{detail}"
        );
        assert_eq!(problem["request_id"], "ver-1");
    }
    let response = get(&setup.gateway, "/v9/elsewhere/a", None).await;
    expect_problem(response, 404, "route-not-found").await;

    let unversioned_default = start("").await;
    let response = get(&unversioned_default.gateway, "/things/a", None).await;
    let problem = expect_problem(response, 404, "unknown-version").await;
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("names no version")
    );
}

#[tokio::test]
async fn a_deprecated_route_says_so_in_headers_and_in_the_openapi_document() {
    let setup = start(VERSIONING).await;
    let response = get(&setup.gateway, "/things/a", Some("v1")).await;
    let headers = response.headers();
    assert_eq!(headers["deprecation"], "@1769817600");
    assert_eq!(headers["sunset"], "Wed, 30 Jun 2027 00:00:00 GMT");
    assert_eq!(
        headers["link"],
        "<https://example.com/migrate>; rel=\"deprecation\"; type=\"text/html\""
    );
    let current = get(&setup.gateway, "/v2/things/a", None).await;
    assert!(current.headers().get("deprecation").is_none());
    let refused = get(&setup.gateway, "/v1/things/a", None).await;
    assert!(refused.headers().contains_key("deprecation"));

    let document: Value = serde_json::from_str(&setup.gateway.text("/openapi.json").await).unwrap();
    let paths = &document["paths"];
    assert_eq!(paths["/v1/things/{rest}"]["get"]["deprecated"], true);
    assert!(
        paths["/v2/things/{rest}"]["get"]
            .get("deprecated")
            .is_none()
    );
    crate::docs::assert_valid_openapi_31(&document);
}

#[test]
fn versioning_mistakes_fail_the_config_check() {
    let file = ConfigFile::new(
        r#"
[versioning]
default = "v3"
[[routes]]
path = "/a"
version = "v/1"
response = { body = "a" }
[[routes]]
path = "/b"
version = "v1"
response = { body = "b" }
[[routes]]
path = "/b"
version = "v1"
response = { body = "b again" }
[[routes]]
path = "/c"
response = { body = "c" }
deprecated = { sunset = "soon", link = "/relative" }
"#,
    );
    let output = file.run(&["check"]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    for key in [
        "versioning.default",
        "routes[0] (/a).version",
        "routes[2] (/b).methods",
        "routes[3] (/c).deprecated.sunset",
        "routes[3] (/c).deprecated.link",
    ] {
        assert!(stderr.contains(key), "{key} in {stderr}");
    }
}
