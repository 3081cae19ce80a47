//! Compression: responses are compressed when the client accepts it and the upstream did not
//! already; request bodies are decoded only where the gateway reads them.

use std::io::{Read, Write};

use axum::{body::Body, response::Response};

use crate::helpers::*;

/// A JSON body well over the 1KB default `min_size`.
fn large_json() -> String {
    let items: Vec<String> = (0..200)
        .map(|i| format!("{{\"id\":{i},\"name\":\"item {i}\"}}"))
        .collect();
    format!("[{}]", items.join(","))
}

pub fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(bytes)
        .read_to_end(&mut out)
        .unwrap();
    out
}

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

fn unbrotli(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    brotli_decompressor::Decompressor::new(bytes, 4096)
        .read_to_end(&mut out)
        .unwrap();
    out
}

async fn json_upstream(body: String) -> Upstream {
    Upstream::recording(move |_| {
        Response::builder()
            .header("content-type", "application/json")
            .body(Body::from(body.clone()))
            .unwrap()
    })
    .await
}

async fn get(gateway: &Gateway, path: &str, accept_encoding: Option<&str>) -> reqwest::Response {
    let mut request = client().get(gateway.url(path));
    if let Some(value) = accept_encoding {
        request = request.header("accept-encoding", value);
    }
    request.send().await.unwrap()
}

fn route(extra: &str) -> String {
    format!("{extra}\n[[routes]]\npath = \"/data\"\nupstream = \"backend\"\n")
}

#[tokio::test]
async fn responses_are_gzip_or_br_as_the_client_accepts_and_plain_otherwise() {
    let body = large_json();
    let upstream = json_upstream(body.clone()).await;
    let gateway = Gateway::start(&config_with_upstream(&upstream.url(), &route(""))).await;

    let gzipped = get(&gateway, "/data", Some("gzip")).await;
    assert_eq!(gzipped.headers()["content-encoding"], "gzip");
    assert!(
        gzipped.headers()["vary"]
            .to_str()
            .unwrap()
            .to_ascii_lowercase()
            .contains("accept-encoding")
    );
    let bytes = gzipped.bytes().await.unwrap();
    assert!(bytes.len() < body.len());
    assert_eq!(gunzip(&bytes), body.as_bytes());

    let brotli = get(&gateway, "/data", Some("gzip;q=0.5, br")).await;
    assert_eq!(brotli.headers()["content-encoding"], "br");
    assert_eq!(unbrotli(&brotli.bytes().await.unwrap()), body.as_bytes());

    for plain in [None, Some("identity"), Some("zstd")] {
        let response = get(&gateway, "/data", plain).await;
        assert!(
            response.headers().get("content-encoding").is_none(),
            "{plain:?}"
        );
        assert_eq!(response.text().await.unwrap(), body);
    }
}

#[tokio::test]
async fn a_body_the_upstream_compressed_is_passed_on_as_it_came() {
    let body = gzip(large_json().as_bytes());
    let sent = body.clone();
    let upstream = Upstream::recording(move |_| {
        Response::builder()
            .header("content-type", "application/json")
            .header("content-encoding", "gzip")
            .body(Body::from(sent.clone()))
            .unwrap()
    })
    .await;
    let gateway = Gateway::start(&config_with_upstream(&upstream.url(), &route(""))).await;
    let response = get(&gateway, "/data", Some("br, gzip")).await;
    assert_eq!(response.headers()["content-encoding"], "gzip");
    assert_eq!(response.bytes().await.unwrap(), body);
    assert_eq!(
        upstream.last().headers["accept-encoding"],
        "br, gzip",
        "the client's preference reaches the upstream"
    );
}

#[tokio::test]
async fn small_bodies_and_a_disabled_compression_send_bodies_plain() {
    let upstream = json_upstream("{\"small\":true}".into()).await;
    let gateway = Gateway::start(&config_with_upstream(&upstream.url(), &route(""))).await;
    let response = get(&gateway, "/data", Some("gzip")).await;
    assert!(response.headers().get("content-encoding").is_none());

    let upstream = json_upstream(large_json()).await;
    let gateway = Gateway::start(&config_with_upstream(
        &upstream.url(),
        &route("[compression]\nenabled = false"),
    ))
    .await;
    let response = get(&gateway, "/data", Some("gzip")).await;
    assert!(response.headers().get("content-encoding").is_none());
    assert_eq!(response.text().await.unwrap(), large_json());
}

#[tokio::test]
async fn problem_responses_are_compressed_whole_with_their_request_id() {
    let gateway =
        Gateway::start("[compression]\nmin_size = \"0\"\nalgorithms = [\"gzip\"]\n").await;
    let response = client()
        .get(gateway.url("/nowhere"))
        .header("accept-encoding", "gzip")
        .header("x-request-id", "cmp-1")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    assert_eq!(response.headers()["content-encoding"], "gzip");
    let problem: serde_json::Value =
        serde_json::from_slice(&gunzip(&response.bytes().await.unwrap())).unwrap();
    assert_problem_body(&problem, 404, "route-not-found", "cmp-1");
}

#[test]
fn unknown_algorithms_fail_the_config_check() {
    let file = ConfigFile::new("[compression]\nalgorithms = [\"gzip\", \"lz4\"]\n");
    let output = file.run(&["check"]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("compression.algorithms[1]"), "{stderr}");
}
