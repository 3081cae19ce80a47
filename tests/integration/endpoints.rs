//! `[endpoints.NAME]` and `server.admin_listen`: the gateway's own endpoints moved, turned
//! off, put behind auth, or served on a listener of their own.

use serde_json::Value;

use crate::helpers::*;

const OPS_KEY: &str = "ops-key-0123456789";

fn ops_keys() -> String {
    format!(
        "[auth.api_keys.ops]\nheader = \"x-ops-key\"\nkeys = [{{ id = \"ops\", sha256 = \"{}\" }}]\n",
        sha256_hex(OPS_KEY)
    )
}

fn sha256_hex(text: &str) -> String {
    proxyfn::auth::hex(&proxyfn::auth::digest(text.as_bytes()))
}

#[tokio::test]
async fn built_in_endpoints_can_be_moved_turned_off_and_put_behind_auth() {
    let config = format!(
        "{}\
         [endpoints.health]\npath = \"/internal/health\"\n\
         [endpoints.ready]\nenabled = false\n\
         [endpoints.metrics]\nauth = [\"api_key:ops\"]\n\
         [endpoints.openapi]\npath = \"/api/openapi.json\"\n\
         [endpoints.docs]\npath = \"/api/docs\"\n\
         [[routes]]\npath = \"/health\"\nresponse = {{ body = \"a route now\" }}\n",
        ops_keys()
    );
    let gateway = Process::start(&config).await;
    let get = |path: &'static str| client().get(gateway.url(path)).send();

    assert_eq!(get("/internal/health").await.unwrap().status(), 200);
    let moved = get("/health").await.unwrap();
    assert_eq!(
        moved.text().await.unwrap(),
        "a route now",
        "the path is free"
    );
    expect_problem(get("/ready").await.unwrap(), 404, "route-not-found").await;

    expect_problem(get("/metrics").await.unwrap(), 401, "unauthorized").await;
    let metrics = client()
        .get(gateway.url("/metrics"))
        .header("x-ops-key", OPS_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(metrics.status(), 200);
    assert!(
        metrics
            .text()
            .await
            .unwrap()
            .contains("proxyfn_requests_total")
    );

    let document = get("/api/openapi.json")
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let document: Value = serde_json::from_slice(&document).unwrap();
    crate::docs::assert_valid_openapi_31(&document);
    let paths = document["paths"].as_object().unwrap();
    for path in [
        "/internal/health",
        "/metrics",
        "/api/openapi.json",
        "/api/docs",
        "/health",
    ] {
        assert!(paths.contains_key(path), "{path} in {:?}", paths.keys());
    }
    assert!(!paths.contains_key("/ready"));
    assert_eq!(
        document["paths"]["/metrics"]["get"]["security"][0]["api_key_ops"],
        serde_json::json!([])
    );
    let redirect = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(gateway.url("/api/docs"))
        .send()
        .await
        .unwrap();
    assert_eq!(redirect.status(), 302);
    assert_eq!(redirect.headers()["location"], "docs/");
    let ui_config = get("/api/docs/swagger-initializer.js")
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        ui_config.contains("../../api/openapi.json"),
        "Swagger UI reads the moved document: {ui_config}"
    );
}

#[tokio::test]
async fn the_admin_listener_serves_the_operational_endpoints_and_the_public_one_does_not() {
    let admin_port = closed_port().await;
    let admin = format!("127.0.0.1:{admin_port}");
    let gateway = Process::start_with(
        "[[routes]]\npath = \"/hello\"\nresponse = { body = \"hi\" }\n",
        Some("info"),
        &[("PROXYFN_SERVER__ADMIN_LISTEN", admin.as_str())],
    )
    .await;
    let admin_url = |path: &str| format!("http://{admin}{path}");
    // Both listeners are bound before either serves, so the admin one is up already.
    let ready = client().get(admin_url("/ready")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    for path in ["/health", "/metrics"] {
        let response = client().get(admin_url(path)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path} on the admin listener");
    }
    let routed = client().get(admin_url("/hello")).send().await.unwrap();
    expect_problem(routed, 404, "route-not-found").await;

    for path in ["/health", "/ready", "/metrics"] {
        let response = client().get(gateway.url(path)).send().await.unwrap();
        expect_problem(response, 404, "route-not-found").await;
    }
    let hello = client().get(gateway.url("/hello")).send().await.unwrap();
    assert_eq!(hello.text().await.unwrap(), "hi");
    assert_eq!(
        client()
            .get(gateway.url("/openapi.json"))
            .send()
            .await
            .unwrap()
            .status(),
        200,
        "the docs stay public"
    );
    // The admin listener's requests are logged like the public ones.
    let admin_ready = client()
        .get(admin_url("/ready"))
        .header("x-request-id", "admin-ready")
        .send()
        .await
        .unwrap();
    assert_eq!(admin_ready.status(), 200);
    assert_eq!(gateway.access_event("admin-ready").await["route"], "/ready");
}

#[test]
fn check_names_each_bad_endpoint_setting_with_its_key() {
    let file = ConfigFile::new(
        "[server]\nlisten = \"127.0.0.1:8080\"\nadmin_listen = \"127.0.0.1:8080\"\n\
         [endpoints.health]\npath = \"/ready\"\n\
         [endpoints.metrics]\npath = \"/a/{id}\"\nauth = [\"jwt:nobody\"]\n\
         [endpoints.openapi]\nenabled = false\n",
    );
    let output = file.run(&["check"]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    for key in [
        "server.admin_listen",
        "endpoints.metrics.path",
        "endpoints.metrics.auth[0]",
        "endpoints.openapi.enabled",
        "endpoints.ready.path",
    ] {
        assert!(stderr.contains(key), "{key}: {stderr}");
    }
}
