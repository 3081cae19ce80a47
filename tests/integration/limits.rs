//! Every error the gateway itself answers is problem+json with the request id.

use std::time::Duration;

use axum::{Router, routing::any};
use tokio::sync::mpsc;

use crate::helpers::*;

#[tokio::test]
async fn an_unknown_path_is_404() {
    let gateway = Gateway::start("[[routes]]\npath = \"/known\"\nresponse = {}\n").await;
    let response = client().get(gateway.url("/unknown")).send().await.unwrap();
    expect_problem(response, 404, "route-not-found").await;
}

#[tokio::test]
async fn a_method_no_route_accepts_is_405_with_allow() {
    let gateway =
        Gateway::start("[[routes]]\npath = \"/r\"\nmethods = [\"GET\", \"POST\"]\nresponse = {}\n")
            .await;
    let response = client().delete(gateway.url("/r")).send().await.unwrap();
    assert_eq!(response.headers()["allow"], "GET, HEAD, POST");
    expect_problem(response, 405, "method-not-allowed").await;
}

#[tokio::test]
async fn a_declared_body_over_the_limit_is_413_before_the_upstream_is_called() {
    let upstream = Upstream::echo().await;
    let gateway = Gateway::start(&config_with_upstream(
        &upstream.url(),
        "[server]\nbody_limit = \"1KB\"\n[[routes]]\npath = \"/up\"\nupstream = \"backend\"\n",
    ))
    .await;

    let response = client()
        .post(gateway.url("/up"))
        .body(vec![b'x'; 1025])
        .send()
        .await
        .unwrap();
    let problem = expect_problem(response, 413, "payload-too-large").await;
    assert!(problem["detail"].as_str().unwrap().contains("1024"));
    assert!(upstream.requests().is_empty());

    let response = client()
        .post(gateway.url("/up"))
        .body(vec![b'x'; 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "exactly the limit is allowed");
}

#[tokio::test]
async fn a_chunked_body_crossing_the_limit_is_413() {
    let upstream = Upstream::echo().await;
    let gateway = Gateway::start(&config_with_upstream(
        &upstream.url(),
        "[server]\nbody_limit = \"1KB\"\n[[routes]]\npath = \"/up\"\nupstream = \"backend\"\n",
    ))
    .await;

    let (tx, rx) = mpsc::channel::<Result<Vec<u8>, std::io::Error>>(8);
    for _ in 0..4 {
        tx.send(Ok(vec![b'x'; 512])).await.unwrap();
    }
    drop(tx);
    let stream =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|i| (i, rx)) });
    let response = client()
        .post(gateway.url("/up"))
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    let problem = expect_problem(response, 413, "payload-too-large").await;
    assert!(
        problem["detail"].as_str().unwrap().contains("1024"),
        "{problem}"
    );
    assert!(
        upstream.requests().iter().all(|r| r.body.len() < 2048),
        "the upstream never received the whole oversized body"
    );
}

#[tokio::test]
async fn an_oversized_header_section_is_431() {
    let gateway = Gateway::start(
        "[server]\nheader_limit = \"8KB\"\n[[routes]]\npath = \"/r\"\nresponse = {}\n",
    )
    .await;
    let response = client()
        .get(gateway.url("/r"))
        .header("x-big", "a".repeat(9000))
        .send()
        .await
        .unwrap();
    expect_problem(response, 431, "headers-too-large").await;
    let response = client()
        .get(gateway.url("/r"))
        .header("x-big", "a".repeat(7000))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

/// An upstream that answers after `delay`.
async fn slow_upstream(delay: Duration) -> Upstream {
    Upstream::serve(Router::new().fallback(any(move || async move {
        tokio::time::sleep(delay).await;
        "late"
    })))
    .await
}

#[tokio::test]
async fn the_whole_request_deadline_is_504() {
    let upstream = slow_upstream(Duration::from_secs(30)).await;
    let gateway = Gateway::start(&config_with_upstream(
        &upstream.url(),
        "[server]\ntimeout = \"200ms\"\n[[routes]]\npath = \"/slow\"\nupstream = \"backend\"\n",
    ))
    .await;
    let response = client().get(gateway.url("/slow")).send().await.unwrap();
    expect_problem(response, 504, "gateway-timeout").await;
}

#[tokio::test]
async fn an_upstream_slower_than_its_timeout_is_504() {
    let upstream = slow_upstream(Duration::from_secs(30)).await;
    let config = format!(
        "[upstreams.backend]\nurl = \"{}\"\ntimeout = \"200ms\"\n[[routes]]\npath = \"/slow\"\nupstream = \"backend\"\n",
        upstream.url()
    );
    let gateway = Gateway::start(&config).await;
    let response = client().get(gateway.url("/slow")).send().await.unwrap();
    let problem = expect_problem(response, 504, "upstream-timeout").await;
    assert!(problem["detail"].as_str().unwrap().contains("backend"));
}

#[tokio::test]
async fn a_refused_upstream_is_502_and_leaks_no_internals() {
    let port = closed_port().await;
    let gateway = Gateway::start(&config_with_upstream(
        &format!("http://127.0.0.1:{port}"),
        "[[routes]]\npath = \"/down\"\nupstream = \"backend\"\n",
    ))
    .await;
    let response = client()
        .get(gateway.url("/down?token=s3cret"))
        .send()
        .await
        .unwrap();
    let problem = expect_problem(response, 502, "upstream-unavailable").await;
    let text = problem.to_string();
    assert!(
        !text.contains(&port.to_string()) && !text.contains("s3cret") && !text.contains("refused"),
        "{text}"
    );
}

#[tokio::test]
async fn malformed_paths_are_400() {
    let gateway = Gateway::start("[[routes]]\npath = \"/{*rest}\"\nresponse = {}\n").await;
    for target in ["/a%2Fb", "/a%5cb", "/a%00", "/a%zz"] {
        let response = raw_request(
            gateway.addr,
            &format!("GET {target} HTTP/1.1\nhost: gw"),
            b"",
        )
        .await;
        assert_eq!(response.status, 400, "{target}");
        let id = response.header("x-request-id").unwrap().to_owned();
        assert_problem_body(&response.json(), 400, "invalid-path", &id);
    }
}
