//! Forwarding: what the upstream receives and what the client gets back.

use axum::{Router, body::Body, extract::Request, response::Response, routing::any};
use futures_util::StreamExt;
use http_body_util::BodyExt;
use tokio::sync::{mpsc, oneshot};

use crate::helpers::*;

fn proxy_all(url: &str) -> String {
    config_with_upstream(
        url,
        "[[routes]]\npath = \"/{*rest}\"\nupstream = \"backend\"\n",
    )
}

#[tokio::test]
async fn method_path_query_headers_and_body_reach_the_upstream_unchanged() {
    let upstream = Upstream::echo().await;
    let gateway = Gateway::start(&proxy_all(&upstream.url())).await;
    let body: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();

    let response = client()
        .put(gateway.url("/api/items/a%20b?x=1&x=2&y=%2F&z=hello+world&empty=&%C3%A9=%e2%82%ac"))
        .header("x-multi", "one")
        .header("x-multi", "two")
        .header("content-type", "application/octet-stream")
        .body(body.clone())
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-upstream"], "yes");
    assert_eq!(
        response.bytes().await.unwrap().as_ref(),
        body.as_slice(),
        "response body"
    );
    let seen = upstream.last();
    assert_eq!(seen.method, "PUT");
    assert_eq!(
        seen.target,
        "/api/items/a%20b?x=1&x=2&y=%2F&z=hello+world&empty=&%C3%A9=%e2%82%ac"
    );
    let multi: Vec<_> = seen.headers.get_all("x-multi").iter().collect();
    assert_eq!(multi, ["one", "two"]);
    assert_eq!(seen.body.as_ref(), body.as_slice(), "request body");
}

#[tokio::test]
async fn hop_by_hop_headers_are_removed_in_both_directions() {
    let upstream = Upstream::recording(|_| {
        Response::builder()
            .header("x-resp-hop", "1")
            .header("connection", "x-resp-hop")
            .header("keep-alive", "timeout=5")
            .header("proxy-authenticate", "Basic realm=x")
            .header("x-end-to-end", "kept")
            .body(Body::from("ok"))
            .unwrap()
    })
    .await;
    let gateway = Gateway::start(&proxy_all(&upstream.url())).await;

    let response = raw_request(
        gateway.addr,
        "GET /hop HTTP/1.1\nhost: gw\nconnection: x-hop\nx-hop: secret\nkeep-alive: timeout=5\nte: trailers\n\
         proxy-authorization: Basic dXNlcjpwYXNz\nproxy-connection: keep-alive\nx-end-to-end: kept",
        b"",
    )
    .await;

    assert_eq!(response.status, 200);
    let seen = upstream.last();
    for name in [
        "x-hop",
        "keep-alive",
        "te",
        "proxy-authorization",
        "proxy-connection",
    ] {
        assert!(
            seen.headers.get(name).is_none(),
            "{name} reached the upstream"
        );
    }
    assert_eq!(seen.headers["x-end-to-end"], "kept");
    for name in ["x-resp-hop", "keep-alive", "proxy-authenticate"] {
        assert!(response.header(name).is_none(), "{name} reached the client");
    }
    assert_eq!(response.header("x-end-to-end"), Some("kept"));
}

#[tokio::test]
async fn forwarded_headers_describe_the_client_and_cannot_be_spoofed() {
    let upstream = Upstream::echo().await;
    let gateway = Gateway::start(&proxy_all(&upstream.url())).await;

    let response = client()
        .get(gateway.url("/who"))
        .header("x-forwarded-for", "9.9.9.9")
        .header("x-real-ip", "6.6.6.6")
        .header("x-forwarded-proto", "https")
        .header("x-forwarded-host", "evil.example")
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), 200);
    let seen = upstream.last();
    assert_eq!(seen.headers["x-forwarded-for"], "9.9.9.9, 127.0.0.1");
    assert_eq!(seen.headers["x-real-ip"], "127.0.0.1");
    assert_eq!(seen.headers["x-forwarded-proto"], "http");
    assert_eq!(seen.headers["x-forwarded-host"], gateway.addr.to_string());
    assert_eq!(seen.headers["host"], upstream.addr.to_string());
}

#[tokio::test]
async fn a_request_id_is_generated_forwarded_and_returned() {
    let upstream = Upstream::echo().await;
    let gateway = Gateway::start(&proxy_all(&upstream.url())).await;

    let response = client().get(gateway.url("/x")).send().await.unwrap();
    let returned = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(upstream.last().headers["x-request-id"], returned.as_str());
    assert_eq!(returned.len(), 36, "a UUID: {returned}");

    let response = client()
        .get(gateway.url("/x"))
        .header("x-request-id", "client-chosen-42")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "client-chosen-42");
    assert_eq!(upstream.last().headers["x-request-id"], "client-chosen-42");

    let response = client()
        .get(gateway.url("/x"))
        .header("x-request-id", "bad id\"}")
        .send()
        .await
        .unwrap();
    assert_ne!(response.headers()["x-request-id"], "bad id\"}");
}

#[tokio::test]
async fn strip_prefix_rewrite_and_base_path_shape_the_upstream_path() {
    let upstream = Upstream::echo().await;
    let config = format!(
        r#"
        [upstreams.plain]
        url = "{url}"
        [upstreams.based]
        url = "{url}/base/"
        [[routes]]
        path = "/users/{{*rest}}"
        upstream = "plain"
        strip_prefix = "/users"
        [[routes]]
        path = "/people/{{id}}/orders/{{order}}"
        upstream = "plain"
        rewrite = "/v2/orders/{{order}}/by/{{id}}"
        [[routes]]
        path = "/b/{{*rest}}"
        upstream = "based"
        "#,
        url = upstream.url()
    );
    let gateway = Gateway::start(&config).await;

    client()
        .get(gateway.url("/users/42/profile?full=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(upstream.last().target, "/42/profile?full=1");

    client()
        .get(gateway.url("/people/ann%20lee/orders/7?x=y"))
        .send()
        .await
        .unwrap();
    assert_eq!(upstream.last().target, "/v2/orders/7/by/ann%20lee?x=y");

    client().get(gateway.url("/b/c")).send().await.unwrap();
    assert_eq!(upstream.last().target, "/base/b/c");
}

#[tokio::test]
async fn routing_and_forwarding_use_the_same_normalized_path() {
    let upstream = Upstream::echo().await;
    let config = config_with_upstream(
        &upstream.url(),
        r#"
        [[routes]]
        path = "/public/{*rest}"
        upstream = "backend"
        [[routes]]
        path = "/admin/{*rest}"
        response = { status = 200, body = "admin mock" }
        "#,
    );
    let gateway = Gateway::start(&config).await;

    let response = raw_request(
        gateway.addr,
        "GET /public/a/../b/./c?q=%2e%2e HTTP/1.1\nhost: gw",
        b"",
    )
    .await;
    assert_eq!(response.status, 200);
    assert_eq!(
        upstream.last().target,
        "/public/b/c?q=%2e%2e",
        "query is never normalized"
    );

    let response = raw_request(
        gateway.addr,
        "GET //public//%7euser HTTP/1.1\nhost: gw",
        b"",
    )
    .await;
    assert_eq!(response.status, 200);
    assert_eq!(upstream.last().target, "/public/~user");

    let before = upstream.requests().len();
    let response = raw_request(
        gateway.addr,
        "GET /public/%2e%2e/admin/x HTTP/1.1\nhost: gw",
        b"",
    )
    .await;
    assert_eq!(
        response.body, b"admin mock",
        "the escaped route is judged by where it really goes"
    );
    assert_eq!(
        upstream.requests().len(),
        before,
        "the public upstream was not called"
    );

    let response = raw_request(gateway.addr, "GET /public/a%2Fb HTTP/1.1\nhost: gw", b"").await;
    assert_eq!(response.status, 400);
    let id = response.header("x-request-id").unwrap().to_owned();
    assert_problem_body(&response.json(), 400, "invalid-path", &id);
    assert_eq!(upstream.requests().len(), before);
}

#[tokio::test]
async fn redirects_from_the_upstream_are_returned_not_followed() {
    let upstream = Upstream::recording(|_| {
        Response::builder()
            .status(302)
            .header("location", "/elsewhere")
            .body(Body::empty())
            .unwrap()
    })
    .await;
    let gateway = Gateway::start(&proxy_all(&upstream.url())).await;

    let response = client().get(gateway.url("/moved")).send().await.unwrap();
    assert_eq!(response.status(), 302);
    assert_eq!(response.headers()["location"], "/elsewhere");
    assert_eq!(upstream.requests().len(), 1);
}

#[tokio::test]
async fn two_set_cookie_headers_from_the_upstream_survive() {
    let upstream = Upstream::recording(|_| {
        Response::builder()
            .header("set-cookie", "a=1; Path=/")
            .header("set-cookie", "b=2; HttpOnly")
            .body(Body::empty())
            .unwrap()
    })
    .await;
    let gateway = Gateway::start(&proxy_all(&upstream.url())).await;

    let response = client().get(gateway.url("/login")).send().await.unwrap();
    let cookies: Vec<_> = response.headers().get_all("set-cookie").iter().collect();
    assert_eq!(cookies, ["a=1; Path=/", "b=2; HttpOnly"]);
}

#[tokio::test]
async fn downloads_stream_to_the_client_before_the_upstream_finishes() {
    let (release_tx, release_rx) = oneshot::channel::<()>();
    let release = std::sync::Arc::new(std::sync::Mutex::new(Some(release_rx)));
    let router = Router::new().route(
        "/download",
        any(move || {
            let release = release.lock().unwrap().take().expect("one download");
            async move {
                let (tx, rx) = mpsc::channel::<Result<Vec<u8>, std::io::Error>>(1);
                tokio::spawn(async move {
                    tx.send(Ok(b"first chunk".to_vec())).await.unwrap();
                    let _ = release.await;
                    tx.send(Ok(b" and the rest".to_vec())).await.unwrap();
                });
                Body::from_stream(tokio_stream(rx))
            }
        }),
    );
    let upstream = Upstream::serve(router).await;
    let gateway = Gateway::start(&proxy_all(&upstream.url())).await;

    let mut response = client().get(gateway.url("/download")).send().await.unwrap();
    let first = response.chunk().await.unwrap().unwrap();
    assert_eq!(
        first.as_ref(),
        b"first chunk",
        "the first chunk arrived while the upstream was still holding the rest"
    );
    release_tx.send(()).unwrap();
    let rest = response.bytes().await.unwrap();
    assert_eq!(rest.as_ref(), b" and the rest");
}

#[tokio::test]
async fn a_100_mb_download_passes_through_intact() {
    const SIZE: usize = 100 * 1024 * 1024;
    let router = Router::new().route(
        "/big",
        any(|| async {
            let chunk = bytes::Bytes::from(vec![7u8; 64 * 1024]);
            let stream = futures_util::stream::iter(
                (0..SIZE / chunk.len()).map(move |_| Ok::<_, std::io::Error>(chunk.clone())),
            );
            Body::from_stream(stream)
        }),
    );
    let upstream = Upstream::serve(router).await;
    let gateway = Gateway::start(&proxy_all(&upstream.url())).await;

    let response = client().get(gateway.url("/big")).send().await.unwrap();
    let mut stream = response.bytes_stream();
    let mut total = 0;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap();
        assert!(chunk.iter().all(|b| *b == 7));
        total += chunk.len();
    }
    assert_eq!(total, SIZE);
}

#[tokio::test]
async fn uploads_stream_to_the_upstream_before_the_client_finishes() {
    let (first_seen_tx, first_seen_rx) = oneshot::channel::<Vec<u8>>();
    let first_seen = std::sync::Arc::new(std::sync::Mutex::new(Some(first_seen_tx)));
    let router = Router::new().route(
        "/upload",
        any(move |request: Request| {
            let notify = first_seen.lock().unwrap().take().expect("one upload");
            async move {
                let mut body = request.into_body();
                let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
                notify.send(first.to_vec()).unwrap();
                let rest = body.collect().await.unwrap().to_bytes();
                format!("{} bytes after the first", rest.len())
            }
        }),
    );
    let upstream = Upstream::serve(router).await;
    let gateway = Gateway::start(&proxy_all(&upstream.url())).await;

    let (body_tx, body_rx) = mpsc::channel::<Result<Vec<u8>, std::io::Error>>(1);
    let send = tokio::spawn(
        client()
            .post(gateway.url("/upload"))
            .body(reqwest::Body::wrap_stream(tokio_stream(body_rx)))
            .send(),
    );
    body_tx.send(Ok(b"part one".to_vec())).await.unwrap();
    let first = first_seen_rx.await.unwrap();
    assert_eq!(
        first, b"part one",
        "the upstream had the first part while the client still held the rest"
    );
    body_tx.send(Ok(b"part two".to_vec())).await.unwrap();
    drop(body_tx);
    let response = send.await.unwrap().unwrap();
    assert_eq!(response.text().await.unwrap(), "8 bytes after the first");
}

#[tokio::test]
async fn mock_routes_answer_and_get_routes_also_answer_head() {
    let gateway = Gateway::start(
        r#"
        [[routes]]
        path = "/hello"
        methods = ["GET"]
        response = { status = 201, body = "hi", headers = { "content-type" = "text/plain", "x-mock" = "1" } }
        "#,
    )
    .await;

    let response = client().get(gateway.url("/hello")).send().await.unwrap();
    assert_eq!(response.status(), 201);
    assert_eq!(response.headers()["x-mock"], "1");
    assert!(response.headers().contains_key("x-request-id"));
    assert_eq!(response.text().await.unwrap(), "hi");

    let response = client().head(gateway.url("/hello")).send().await.unwrap();
    assert_eq!(response.status(), 201);
}

#[tokio::test]
async fn one_path_can_send_different_methods_to_different_targets() {
    let upstream = Upstream::echo().await;
    let config = config_with_upstream(
        &upstream.url(),
        r#"
        [[routes]]
        path = "/orders"
        methods = ["GET"]
        response = { body = "cached list" }
        [[routes]]
        path = "/orders"
        methods = ["POST"]
        upstream = "backend"
        "#,
    );
    let gateway = Gateway::start(&config).await;

    assert_eq!(gateway.text("/orders").await, "cached list");
    let response = client()
        .post(gateway.url("/orders"))
        .body("new")
        .send()
        .await
        .unwrap();
    assert_eq!(response.text().await.unwrap(), "new");
    let response = client()
        .delete(gateway.url("/orders"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["allow"], "GET, HEAD, POST");
    expect_problem(response, 405, "method-not-allowed").await;
}

#[tokio::test]
async fn a_route_without_methods_serves_only_the_methods_its_document_lists() {
    let upstream = Upstream::echo().await;
    let config = format!(
        "[upstreams.backend]\nurl = \"{}\"\n\
         [[routes]]\npath = \"/any/{{*rest}}\"\nupstream = \"backend\"\n\
         [[routes]]\npath = \"/trace\"\nmethods = [\"TRACE\"]\nupstream = \"backend\"\n",
        upstream.url()
    );
    let gateway = Gateway::start(&config).await;

    let trace = client()
        .request(reqwest::Method::TRACE, gateway.url("/any/x"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        trace.headers()["allow"],
        "DELETE, GET, HEAD, OPTIONS, PATCH, POST, PUT"
    );
    expect_problem(trace, 405, "method-not-allowed").await;
    // In server mode a CONNECT in origin form is already refused as a bad request target.
    let connect = client()
        .request(reqwest::Method::CONNECT, gateway.url("/any/x"))
        .send()
        .await
        .unwrap();
    assert!(connect.status().is_client_error(), "{}", connect.status());
    let propfind = client()
        .request(
            reqwest::Method::from_bytes(b"PROPFIND").unwrap(),
            gateway.url("/any/x"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        propfind.headers()["allow"],
        "DELETE, GET, HEAD, OPTIONS, PATCH, POST, PUT"
    );
    expect_problem(propfind, 405, "method-not-allowed").await;
    let listed = client()
        .request(reqwest::Method::TRACE, gateway.url("/trace"))
        .send()
        .await
        .unwrap();
    assert_eq!(listed.status(), 200);
    let methods: Vec<_> = upstream
        .requests()
        .iter()
        .map(|r| r.method.clone())
        .collect();
    assert_eq!(methods, ["TRACE"], "the upstream saw only what was served");
}

#[tokio::test]
async fn the_root_path_is_routable() {
    let gateway =
        Gateway::start("[[routes]]\npath = \"/\"\nresponse = { body = \"root\" }\n").await;
    assert_eq!(gateway.text("/").await, "root");
}

#[tokio::test]
async fn built_in_endpoints_report_health_and_readiness() {
    let gateway = Gateway::start("").await;
    let health = client()
        .get(gateway.url("/health"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let health: serde_json::Value = serde_json::from_slice(&health).unwrap();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["version"], env!("CARGO_PKG_VERSION"));
    let ready = client().get(gateway.url("/ready")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    let response = client().post(gateway.url("/health")).send().await.unwrap();
    expect_problem(response, 405, "method-not-allowed").await;
}

/// An mpsc receiver as a stream, without another dependency.
fn tokio_stream<T: Send + 'static>(
    rx: mpsc::Receiver<T>,
) -> impl futures_util::Stream<Item = T> + Send + 'static {
    futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    })
}

/// The binary serving `config`, trusting only `ca`'s certificates.
async fn gateway_trusting(ca: &TestCa, config: &str) -> Process {
    let cert_file = ca.cert_file();
    Process::start_with(
        config,
        Some("info"),
        &[("SSL_CERT_FILE", cert_file.to_str().unwrap())],
    )
    .await
}

/// An upstream with an HTTPS target is called through reqwest, a plain one through
/// hyper-util's client: the request each receives must be the same.
#[tokio::test]
async fn an_https_upstream_receives_the_same_request_as_a_plain_one() {
    let ca = TestCa::new();
    let plain = Upstream::echo().await;
    let secure = Upstream::echo_tls(&ca).await;
    let config = format!(
        "[upstreams.plain]\nurl = \"{}\"\n[upstreams.secure]\nurl = \"https://{}\"\n\
         [[routes]]\npath = \"/plain/{{*rest}}\"\nupstream = \"plain\"\n\
         [[routes]]\npath = \"/secure/{{*rest}}\"\nupstream = \"secure\"\n",
        plain.url(),
        secure.addr,
    );
    let gateway = gateway_trusting(&ca, &config).await;
    let body: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();

    for prefix in ["/plain", "/secure"] {
        let response = client()
            .put(gateway.url(&format!("{prefix}/items/a%20b?x=1&x=2")))
            .header("x-multi", "one")
            .header("x-multi", "two")
            .header("content-type", "application/octet-stream")
            .header("connection", "x-multi-hidden")
            .header("x-multi-hidden", "dropped")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{prefix}");
        assert_eq!(response.headers()["x-upstream"], "yes");
        assert_eq!(response.bytes().await.unwrap(), body, "{prefix}");
    }

    let (plain_seen, secure_seen) = (plain.last(), secure.last());
    assert_eq!(secure_seen.method, "PUT");
    assert_eq!(secure_seen.target, "/secure/items/a%20b?x=1&x=2");
    assert_eq!(plain_seen.target, "/plain/items/a%20b?x=1&x=2");
    assert_eq!(secure_seen.body, body);
    assert_eq!(secure_seen.headers["host"], secure.addr.to_string());
    assert!(!secure_seen.headers.contains_key("x-multi-hidden"));
    // Every field but those naming the request or its upstream is the same.
    let comparable = |mut headers: http::HeaderMap| {
        for name in ["host", "x-request-id", "traceparent"] {
            headers.remove(name);
        }
        headers
    };
    assert_eq!(
        comparable(secure_seen.headers),
        comparable(plain_seen.headers)
    );
}

#[tokio::test]
async fn an_https_upstream_whose_certificate_is_not_trusted_is_unreachable() {
    let (ca, other) = (TestCa::new(), TestCa::new());
    let secure = Upstream::echo_tls(&ca).await;
    let config = format!(
        "[upstreams.secure]\nurl = \"https://{}\"\n\
         [[routes]]\npath = \"/{{*rest}}\"\nupstream = \"secure\"\n",
        secure.addr,
    );
    let gateway = gateway_trusting(&other, &config).await;

    let response = client().get(gateway.url("/x")).send().await.unwrap();
    assert_eq!(response.status(), 502);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    assert!(secure.requests().is_empty());
}
