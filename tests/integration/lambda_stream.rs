//! `lambda.response_mode = "stream"` and Lambda Managed Instances: the real binary against the
//! local Runtime API, which reads streamed responses as they arrive (runtime_api.rs).

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{body::Body, response::Response};
use bytes::Bytes;
use serde_json::{Value, json};
use tokio::sync::Notify;

use crate::{
    helpers::*,
    lambda::{Function, proxy_config},
    lambda_event::LambdaEvent,
    runtime_api::*,
};

const STREAM: &str = "[lambda]\nresponse_mode = \"stream\"\n";

/// A body that sends `chunks` from a channel the test feeds, so the test decides when each
/// part exists.
fn fed_body() -> (
    tokio::sync::mpsc::UnboundedSender<Result<Bytes, std::io::Error>>,
    Body,
) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    (tx, Body::from_stream(stream))
}

/// An upstream whose each answer's body the test feeds through the senders it hands out.
async fn fed_upstream() -> (
    Upstream,
    Arc<Mutex<Vec<tokio::sync::mpsc::UnboundedSender<Result<Bytes, std::io::Error>>>>>,
) {
    let feeds: Arc<Mutex<Vec<_>>> = Arc::default();
    let store = feeds.clone();
    let upstream = Upstream::recording(move |_| {
        let (tx, body) = fed_body();
        store.lock().unwrap().push(tx);
        Response::builder()
            .header("content-type", "text/event-stream")
            .body(body)
            .unwrap()
    })
    .await;
    (upstream, feeds)
}

async fn the_feed(
    feeds: &Mutex<Vec<tokio::sync::mpsc::UnboundedSender<Result<Bytes, std::io::Error>>>>,
) -> tokio::sync::mpsc::UnboundedSender<Result<Bytes, std::io::Error>> {
    eventually(|| feeds.lock().unwrap().first().cloned())
        .await
        .expect("the upstream was asked")
}

#[tokio::test]
async fn stream_mode_answers_function_urls_and_rest_apis_with_a_prelude_and_the_body() {
    let upstream = Upstream::recording(|captured| {
        Response::builder()
            .header("x-upstream", "yes")
            .header("vary", "origin")
            .header("vary", "accept-encoding")
            .header("set-cookie", "a=1; Path=/")
            .header("set-cookie", "b=2; Path=/")
            .body(Body::from(captured.body.clone()))
            .unwrap()
    })
    .await;
    let function = Function::start(&proxy_config(&upstream, STREAM)).await;

    for event in [
        LambdaEvent::function_url("POST", "/users/1"),
        LambdaEvent::rest("POST", "/users/1"),
    ] {
        let streamed = function
            .api
            .stream(event.body_as_sent("hello stream", false).build())
            .await;
        assert_eq!(streamed.status(), 200, "{streamed:?}");
        assert_eq!(streamed.body(), b"hello stream");
        let headers = &streamed.prelude["headers"];
        assert_eq!(headers["x-upstream"], "yes");
        assert_eq!(headers["vary"], "origin, accept-encoding");
        assert!(headers["x-request-id"].is_string());
        assert!(headers.get("set-cookie").is_none());
        assert_eq!(
            streamed.prelude["cookies"],
            json!(["a=1; Path=/", "b=2; Path=/"])
        );
        assert!(streamed.error.is_none());
    }
    assert_eq!(upstream.requests().len(), 2);
    assert!(upstream.requests().iter().all(|r| r.body == "hello stream"));
}

#[tokio::test]
async fn in_stream_mode_http_apis_and_alb_are_still_answered_buffered() {
    let function = Function::start(&format!(
        "{STREAM}[[routes]]\npath = \"/ping\"\nresponse = {{ body = \"pong\" }}\n"
    ))
    .await;
    for event in [
        LambdaEvent::http_api("GET", "/ping"),
        LambdaEvent::alb("GET", "/ping"),
    ] {
        let answer = function.api.respond(event.build()).await;
        assert_eq!(answer["statusCode"], 200, "{answer}");
        assert_eq!(answer["body"], "pong");
    }
}

#[tokio::test]
async fn problems_and_mock_answers_stream_as_one_chunk() {
    let function = Function::start(&format!(
        "{STREAM}[[routes]]\npath = \"/ping\"\nresponse = {{ status = 202, body = \"pong\", headers = {{ \"content-type\" = \"text/plain\" }} }}\n"
    ))
    .await;
    let mock = function
        .api
        .stream(LambdaEvent::function_url("GET", "/ping").build())
        .await;
    assert_eq!(mock.status(), 202);
    assert_eq!(mock.prelude["headers"]["content-type"], "text/plain");
    assert_eq!(mock.chunks.len(), 1);
    assert_eq!(mock.body(), b"pong");

    let missing = function
        .api
        .stream(LambdaEvent::function_url("GET", "/nowhere").build())
        .await;
    assert_eq!(missing.status(), 404);
    assert_eq!(
        missing.prelude["headers"]["content-type"],
        "application/problem+json"
    );
    assert_eq!(missing.chunks.len(), 1);
    let problem: Value = serde_json::from_slice(&missing.body()).unwrap();
    assert_eq!(problem["status"], 404);
    assert_eq!(
        problem["request_id"],
        missing.prelude["headers"]["x-request-id"]
    );
}

#[tokio::test]
async fn the_first_chunk_reaches_the_runtime_api_before_the_upstream_sends_its_last() {
    let (upstream, feeds) = fed_upstream().await;
    let function = Function::start(&proxy_config(&upstream, STREAM)).await;

    let (outcome, mut chunks) = function
        .api
        .invoke_watching(LambdaEvent::function_url("GET", "/users/events").build())
        .await;
    let feed = the_feed(&feeds).await;
    feed.send(Ok(Bytes::from_static(b"data: first\n\n")))
        .unwrap();
    // The upstream sends its last part only once the first has reached the Runtime API: a
    // buffered answer would wait here forever, and the test would time out.
    let first = tokio::time::timeout(Duration::from_secs(20), chunks.recv())
        .await
        .expect("the first chunk arrived while the upstream was still sending")
        .unwrap();
    assert_eq!(first, "data: first\n\n");
    feed.send(Ok(Bytes::from_static(b"data: last\n\n")))
        .unwrap();
    drop(feed);
    feeds.lock().unwrap().clear();

    let Outcome::Stream(streamed) = tokio::time::timeout(Duration::from_secs(20), outcome)
        .await
        .unwrap()
        .unwrap()
    else {
        panic!("a streamed outcome")
    };
    assert_eq!(
        streamed.prelude["headers"]["content-type"],
        "text/event-stream"
    );
    assert_eq!(streamed.body(), b"data: first\n\ndata: last\n\n");
    assert!(streamed.chunks.len() >= 2, "{:?}", streamed.chunks);
    assert!(streamed.error.is_none());
}

#[tokio::test]
async fn a_64_mb_body_streams_with_the_function_s_peak_memory_far_below_it() {
    const CHUNK: usize = 64 << 10;
    const TOTAL: usize = 64 << 20;
    let upstream = Upstream::recording(|_| {
        let chunk = Bytes::from(vec![b'x'; CHUNK]);
        let chunks = futures_util::stream::iter(
            (0..TOTAL / CHUNK).map(move |_| Ok::<_, std::io::Error>(chunk.clone())),
        );
        Response::builder()
            .header("content-type", "application/octet-stream")
            .header("content-length", TOTAL.to_string())
            .body(Body::from_stream(chunks))
            .unwrap()
    })
    .await;
    let function = Function::start(&proxy_config(&upstream, STREAM)).await;
    let small = function
        .api
        .stream(LambdaEvent::function_url("GET", "/ping").build())
        .await;
    assert_eq!(small.status(), 404);
    let before = function.peak_rss_kib();

    let streamed = function
        .api
        .stream(LambdaEvent::function_url("GET", "/users/big").build())
        .await;
    assert_eq!(streamed.status(), 200);
    assert_eq!(streamed.body_len(), TOTAL);
    assert!(streamed.error.is_none());
    let grew = function.peak_rss_kib().saturating_sub(before);
    assert!(
        grew < 16 << 10,
        "a streamed 64 MiB answer raised the peak RSS by {grew} KiB"
    );
}

#[tokio::test]
async fn an_upstream_failure_mid_stream_ends_with_the_error_trailer_and_is_logged() {
    let (upstream, feeds) = fed_upstream().await;
    let function = Function::start(&proxy_config(&upstream, STREAM)).await;

    let (outcome, mut chunks) = function
        .api
        .invoke_watching(LambdaEvent::function_url("GET", "/users/events").build())
        .await;
    let feed = the_feed(&feeds).await;
    feed.send(Ok(Bytes::from_static(b"partial"))).unwrap();
    assert_eq!(chunks.recv().await.unwrap(), "partial");
    feed.send(Err(std::io::Error::other("the backend crashed")))
        .unwrap();

    let Outcome::Stream(streamed) = tokio::time::timeout(Duration::from_secs(20), outcome)
        .await
        .unwrap()
        .unwrap()
    else {
        panic!("a streamed outcome")
    };
    assert_eq!(streamed.status(), 200, "the head was already sent");
    assert_eq!(streamed.body(), b"partial");
    let error = streamed.error.expect("an error trailer");
    assert_eq!(error.error_type, "Runtime.StreamError");
    assert!(
        error.body.contains("after its head was sent"),
        "{}",
        error.body
    );
    assert!(
        !error.body.contains("127.0.0.1"),
        "no internal cause: {}",
        error.body
    );

    function.lines_containing("\"proxyfn::access\"", 1).await;
    let access = function.json_lines_containing("\"proxyfn::access\"");
    assert_eq!(access.len(), 1, "{access:?}");
    assert_eq!(access[0]["completed"], false);
    assert_eq!(access[0]["bytes_out"], 7);
}

#[tokio::test]
async fn the_invocation_deadline_ends_a_stalled_stream_with_the_error_trailer() {
    let (upstream, feeds) = fed_upstream().await;
    let function = Function::start(&proxy_config(&upstream, STREAM)).await;
    let event = LambdaEvent::function_url("GET", "/users/events").build();
    let pending = function
        .api
        .invoke_with_deadline(event, Duration::from_secs(2));
    let feeding = async {
        let feed = the_feed(&feeds).await;
        feed.send(Ok(Bytes::from_static(b"first"))).unwrap();
        feed
    };
    let (outcome, _feed) = tokio::join!(pending, feeding);
    let Outcome::Stream(streamed) = outcome else {
        panic!("a streamed outcome: {outcome:?}")
    };
    assert_eq!(streamed.body(), b"first");
    let error = streamed.error.expect("an error trailer");
    assert_eq!(error.error_type, "Runtime.StreamError");
    assert!(error.body.contains("deadline"), "{}", error.body);
}

#[tokio::test]
async fn with_max_concurrency_four_invocations_are_served_at_once() {
    // Each answer waits until all four requests have arrived: served one at a time, the
    // first would wait forever.
    let arrived = Arc::new(Mutex::new(0usize));
    let all_here = Arc::new(Notify::new());
    let upstream = {
        let arrived = arrived.clone();
        let all_here = all_here.clone();
        Upstream::recording(move |captured| {
            let count = {
                let mut arrived = arrived.lock().unwrap();
                *arrived += 1;
                *arrived
            };
            if count == 4 {
                all_here.notify_waiters();
            }
            let all_here = all_here.clone();
            let arrived = arrived.clone();
            let body = captured.target.clone();
            let wait = async move {
                loop {
                    let notified = all_here.notified();
                    if *arrived.lock().unwrap() >= 4 {
                        break;
                    }
                    notified.await;
                }
                Ok::<_, std::io::Error>(Bytes::from(body))
            };
            Response::new(Body::from_stream(futures_util::stream::once(wait)))
        })
        .await
    };
    let function = Function::start_with_env(
        &proxy_config(&upstream, "[metrics]\nenabled = true\n"),
        &[("AWS_LAMBDA_MAX_CONCURRENCY", "4")],
    )
    .await;

    let invocations = (0..4).map(|i| {
        let event = LambdaEvent::http_api("GET", &format!("/users/{i}")).build();
        function.api.respond(event)
    });
    let answers = futures_util::future::join_all(invocations).await;
    for (i, answer) in answers.iter().enumerate() {
        assert_eq!(answer["statusCode"], 200, "{answer}");
        assert_eq!(answer["body"], format!("/{i}"));
    }

    function.lines_containing("\"proxyfn::access\"", 4).await;
    let access = function.json_lines_containing("\"proxyfn::access\"");
    assert_eq!(access.len(), 4);
    for event in &access {
        let id = event["aws_request_id"].as_str().unwrap();
        assert_eq!(
            event["xray_trace_id"],
            trace_id_of(id),
            "each invocation's own trace id"
        );
    }
    // Every stdout line is one whole JSON document: EMF documents never interleave.
    let lines = function.lines.lock().unwrap().clone();
    let emf: Vec<Value> = lines
        .iter()
        .map(|l| serde_json::from_str::<Value>(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .filter(|d| d.get("_aws").is_some())
        .collect();
    // Each request is counted once, whichever invocation's flush wrote it.
    let counted: f64 = emf
        .iter()
        .filter_map(|d| d["proxyfn_requests_total"].as_f64())
        .sum();
    assert_eq!(counted, 4.0, "{emf:?}");
}

#[test]
fn check_names_lambda_response_mode_when_it_is_neither_mode() {
    let file = ConfigFile::new("[lambda]\nresponse_mode = \"streamed\"\n");
    let output = file.run(&["check"]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("lambda.response_mode") && stderr.contains("\"stream\""),
        "{stderr}"
    );
}

#[tokio::test]
async fn an_s3_object_larger_than_a_buffered_answer_streams_whole() {
    const SIZE: usize = 8 << 20;
    let moto = crate::moto::Moto::start().await;
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&moto.sdk())
            .force_path_style(true)
            .build(),
    );
    s3.create_bucket().bucket("streamed").send().await.unwrap();
    let object: Vec<u8> = (0..SIZE).map(|i| (i % 251) as u8).collect();
    s3.put_object()
        .bucket("streamed")
        .key("blob.bin")
        .content_type("application/octet-stream")
        .body(object.clone().into())
        .send()
        .await
        .unwrap();
    let config = format!(
        "{STREAM}{}\n[[routes]]\npath = \"/files/{{name}}\"\ns3 = {{ bucket = \"streamed\", key = \"{{path.name}}\" }}\n",
        crate::moto::Moto::section(&moto.url(), "")
    );
    let function = Function::start_with_env(&config, &crate::moto::Moto::env()).await;

    let streamed = function
        .api
        .stream(LambdaEvent::function_url("GET", "/files/blob.bin").build())
        .await;
    assert_eq!(streamed.status(), 200, "{:?}", streamed.prelude);
    assert_eq!(
        streamed.prelude["headers"]["content-type"],
        "application/octet-stream"
    );
    assert_eq!(
        streamed.prelude["headers"]["content-length"],
        SIZE.to_string()
    );
    assert!(streamed.error.is_none());
    assert!(
        streamed.body() == object,
        "the object arrived byte for byte"
    );
    assert!(streamed.chunks.len() > 1, "in more than one chunk");
}

/// The local Runtime API also understands the other form of the error trailer: real HTTP
/// trailers after the last chunk, as the Runtime API documents them.
#[tokio::test]
async fn the_local_runtime_api_reads_an_error_sent_as_http_trailers() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let api = RuntimeApi::start().await;
    let (outcome, _chunks) = api.invoke_watching(json!({"any": "event"})).await;
    let next = client()
        .get(format!(
            "http://{}/2018-06-01/runtime/invocation/next",
            api.addr
        ))
        .send()
        .await
        .unwrap();
    let id = next.headers()["lambda-runtime-aws-request-id"]
        .to_str()
        .unwrap()
        .to_owned();

    let prelude = r#"{"statusCode":200,"headers":{},"cookies":[]}"#;
    let mut chunk = prelude.as_bytes().to_vec();
    chunk.extend_from_slice(&[0; 8]);
    chunk.extend_from_slice(b"partial");
    let mut request = format!(
        "POST /2018-06-01/runtime/invocation/{id}/response HTTP/1.1\r\nhost: {}\r\n\
         lambda-runtime-function-response-mode: streaming\r\ntransfer-encoding: chunked\r\n\
         trailer: Lambda-Runtime-Function-Error-Type, Lambda-Runtime-Function-Error-Body\r\n\r\n{:x}\r\n",
        api.addr,
        chunk.len()
    )
    .into_bytes();
    request.extend_from_slice(&chunk);
    request.extend_from_slice(
        b"\r\n0\r\nLambda-Runtime-Function-Error-Type: Function.Broken\r\n\
          Lambda-Runtime-Function-Error-Body: dGhlIGJvZHkgYnJva2U=\r\n\r\n",
    );
    let mut stream = tokio::net::TcpStream::connect(api.addr).await.unwrap();
    stream.write_all(&request).await.unwrap();
    let mut answer = [0u8; 12];
    stream.read_exact(&mut answer).await.unwrap();
    assert_eq!(&answer, b"HTTP/1.1 202");

    let Outcome::Stream(streamed) = outcome.await.unwrap() else {
        panic!("a streamed outcome")
    };
    assert_eq!(streamed.body(), b"partial");
    let error = streamed.error.expect("the trailer was read");
    assert!(error.as_http_trailers);
    assert_eq!(error.error_type, "Function.Broken");
    assert_eq!(error.body, "the body broke");
}
