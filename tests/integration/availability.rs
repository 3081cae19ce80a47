//! No single client can stall the gateway: connection timeouts and limits, slow clients that
//! are not blamed on upstreams, JWKS refreshes off the request path, a Redis that is down
//! skipped at once, bounded Lambda answers, and warnings that do not flood. Each test asserts
//! on what happened (a connection closed, an upstream not ejected, fetches counted), with short
//! timeouts in its configuration.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use axum::{body::Body, response::Response};
use bytes::Bytes;
use serde_json::{Value, json};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

use crate::{
    helpers::*,
    lambda::{Function, decoded_body, proxy_config, rest_event},
    runtime_api::Outcome,
    tokens::*,
};

/// Waits (at most `within`) for the server to close `stream`: a read that ends (EOF) or
/// fails. `true` when it closed.
async fn closed_by_server(stream: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            // A response (a 408 or 431, say) before the close: keep reading.
            Ok(Ok(_)) => {}
        }
    }
}

/// Reads one response off a keep-alive connection: its head, and a body of Content-Length.
async fn read_response(stream: &mut TcpStream) -> (u16, Vec<u8>) {
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&data[..end]).to_string();
            let status = head.split(' ').nth(1).unwrap().parse().unwrap();
            let length: usize = head
                .lines()
                .find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse().unwrap())
                })
                .unwrap_or(0);
            while data.len() < end + 4 + length {
                let n = stream.read(&mut buf).await.unwrap();
                assert!(n > 0, "the connection closed mid-response");
                data.extend_from_slice(&buf[..n]);
            }
            return (status, data[end + 4..end + 4 + length].to_vec());
        }
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0, "the connection closed before a response");
        data.extend_from_slice(&buf[..n]);
    }
}

const MOCK: &str = "[[routes]]\npath = \"/hello\"\nresponse = { body = \"hi\" }\n";

#[tokio::test]
async fn a_header_sent_one_byte_at_a_time_is_cut_off_at_the_header_timeout() {
    let gateway = Gateway::start(&format!("[server]\nheader_timeout = \"1s\"\n{MOCK}")).await;
    let mut stream = TcpStream::connect(gateway.addr).await.unwrap();
    let (mut reader, mut writer) = stream.split();
    // 60 bytes at one every 200 ms would take 12 s.
    let header = b"GET /hello HTTP/1.1\r\nhost: gw\r\nx-slow: aaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    let sent = Arc::new(AtomicUsize::new(0));
    let trickle = async {
        for byte in header {
            if writer.write_all(&[*byte]).await.is_err() {
                break;
            }
            sent.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        std::future::pending::<()>().await;
    };
    let mut buf = [0u8; 1024];
    let closed = tokio::select! {
        () = trickle => unreachable!(),
        read = tokio::time::timeout(Duration::from_secs(20), reader.read(&mut buf)) => read,
    };
    assert!(
        matches!(closed, Ok(Ok(0) | Err(_))),
        "the server closed the connection: {closed:?}"
    );
    assert!(
        sent.load(Ordering::SeqCst) < header.len(),
        "closed before the header was complete"
    );
    drop(stream);
    assert_eq!(
        gateway.status("/hello").await,
        200,
        "others are still served"
    );
}

#[tokio::test]
async fn idle_keep_alive_connections_are_closed_at_the_idle_timeout_not_the_header_timeout() {
    let gateway = Gateway::start(&format!(
        "[server]\nheader_timeout = \"1s\"\nidle_timeout = \"3s\"\n{MOCK}"
    ))
    .await;
    let mut stream = TcpStream::connect(gateway.addr).await.unwrap();
    let request = b"GET /hello HTTP/1.1\r\nhost: gw\r\n\r\n";
    stream.write_all(request).await.unwrap();
    assert_eq!(read_response(&mut stream).await.0, 200);

    // Idle for longer than the header timeout: still open, the idle timeout applies.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stream.write_all(request).await.unwrap();
    assert_eq!(read_response(&mut stream).await.0, 200);

    // Left idle, it is closed by the server.
    assert!(closed_by_server(&mut stream, Duration::from_secs(15)).await);
}

#[tokio::test]
async fn past_max_connections_new_connections_are_closed_at_once() {
    let gateway = Gateway::start(&format!("[server]\nmax_connections = 3\n{MOCK}")).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut stream = TcpStream::connect(gateway.addr).await.unwrap();
        stream
            .write_all(b"GET /hello HTTP/1.1\r\nhost: gw\r\n\r\n")
            .await
            .unwrap();
        assert_eq!(read_response(&mut stream).await.0, 200);
        held.push(stream);
    }
    let mut extra = TcpStream::connect(gateway.addr).await.unwrap();
    let _ = extra
        .write_all(b"GET /hello HTTP/1.1\r\nhost: gw\r\n\r\n")
        .await;
    assert!(
        closed_by_server(&mut extra, Duration::from_secs(10)).await,
        "the fourth connection was closed"
    );

    drop(held);
    let mut retry = 0;
    loop {
        let mut stream = TcpStream::connect(gateway.addr).await.unwrap();
        stream
            .write_all(b"GET /hello HTTP/1.1\r\nhost: gw\r\nconnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer).await;
        if answer.starts_with(b"HTTP/1.1 200") {
            break;
        }
        retry += 1;
        assert!(
            retry < 100,
            "connections were not served again after others closed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn unfinished_header_blocks_cost_at_most_the_header_limit_each() {
    let gateway = Process::start(MOCK).await;
    // Warm up: the first requests allocate what any request needs.
    for _ in 0..5 {
        assert_eq!(
            client()
                .get(gateway.url("/hello"))
                .send()
                .await
                .unwrap()
                .status(),
            200
        );
    }
    let before = gateway.rss_kib();
    let mut streams = Vec::new();
    let chunk = vec![b'a'; 16 << 10];
    for _ in 0..100 {
        let mut stream = TcpStream::connect(("127.0.0.1", gateway.port))
            .await
            .unwrap();
        stream
            .write_all(b"GET /hello HTTP/1.1\r\nhost: gw\r\nx-big: ")
            .await
            .unwrap();
        // 300 KB of one header, never finished; the server stops reading (431) long before.
        for _ in 0..(300 / 16) {
            if tokio::time::timeout(Duration::from_millis(200), stream.write_all(&chunk))
                .await
                .map_or(true, |written| written.is_err())
            {
                break;
            }
        }
        streams.push(stream);
    }
    let after = gateway.rss_kib();
    let grown_mib = after.saturating_sub(before) as f64 / 1024.0;
    assert!(
        grown_mib < 8.0,
        "100 unfinished 300 KB headers grew RSS by {grown_mib:.1} MiB ({before} -> {after} KiB)"
    );
    drop(streams);
    assert_eq!(
        client()
            .get(gateway.url("/hello"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

/// Starts a POST of `length` bytes, sends `sent` of them, then waits for the answer.
async fn stalled_upload(gateway: &Gateway, length: usize, sent: usize) -> RawResponse {
    let mut stream = TcpStream::connect(gateway.addr).await.unwrap();
    let head = format!(
        "POST /up HTTP/1.1\r\nhost: gw\r\ncontent-length: {length}\r\ncontent-type: text/plain\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&vec![b'x'; sent]).await.unwrap();
    let mut bytes = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut bytes))
        .await
        .expect("an answer within 20s")
        .unwrap();
    parse_raw(&bytes)
}

fn parse_raw(bytes: &[u8]) -> RawResponse {
    let split = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a head");
    let head = std::str::from_utf8(&bytes[..split]).unwrap();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    RawResponse {
        status,
        headers,
        body: bytes[split + 4..].to_vec(),
    }
}

#[tokio::test]
async fn stalled_uploads_are_408_and_never_eject_a_healthy_upstream() {
    let upstream = Upstream::echo().await;
    // The upstream timeout is shorter than the body timeout: only a gateway that waits for
    // the body before timing the upstream gets this right.
    let gateway = Gateway::start(&format!(
        "[server]\nbody_timeout = \"500ms\"\n\
         [upstreams.backend]\nurl = \"{}\"\ntimeout = \"200ms\"\n\
         circuit_breaker = {{ failure_ratio = 0.5, min_requests = 2, window = \"10s\", open_for = \"30s\" }}\n\
         [[routes]]\npath = \"/up\"\nupstream = \"backend\"\n\
         [[routes]]\npath = \"/ok\"\nupstream = \"backend\"\n",
        upstream.url()
    ))
    .await;

    for _ in 0..4 {
        let response = stalled_upload(&gateway, 100, 10).await;
        assert_eq!(
            response.status,
            408,
            "{:?}",
            String::from_utf8_lossy(&response.body)
        );
        assert_problem_body(
            &response.json(),
            408,
            "client-body-timeout",
            response.header("x-request-id").unwrap(),
        );
    }
    // Neither passive ejection (3 failures) nor the breaker counted the client's stalls.
    assert_eq!(gateway.status("/ok").await, 200);
    let ready: Value = serde_json::from_str(&gateway.text("/ready").await).unwrap();
    assert_eq!(ready["status"], "ready", "{ready}");
    assert_eq!(ready["upstreams"]["backend"]["circuit_breaker"], "closed");
}

#[tokio::test]
async fn a_slow_but_steady_upload_is_not_an_upstream_timeout() {
    let upstream = Upstream::echo().await;
    let gateway = Gateway::start(&format!(
        "[server]\nbody_timeout = \"2s\"\n\
         [upstreams.backend]\nurl = \"{}\"\ntimeout = \"300ms\"\n\
         [[routes]]\npath = \"/up\"\nupstream = \"backend\"\n",
        upstream.url()
    ))
    .await;
    let mut stream = TcpStream::connect(gateway.addr).await.unwrap();
    stream
        .write_all(
            b"POST /up HTTP/1.1\r\nhost: gw\r\ncontent-length: 60\r\nconnection: close\r\n\r\n",
        )
        .await
        .unwrap();
    // Ten chunks, 150 ms apart: 1.5 s of upload, five times the upstream's timeout.
    for _ in 0..10 {
        stream.write_all(b"abcdef").await.unwrap();
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    let mut bytes = Vec::new();
    stream.read_to_end(&mut bytes).await.unwrap();
    let response = parse_raw(&bytes);
    assert_eq!(
        response.status,
        200,
        "{}",
        String::from_utf8_lossy(&response.body)
    );
    assert_eq!(upstream.last().body.len(), 60);
}

fn jwks_config(upstream: &Upstream, jwks: &JwksServer, min_refresh: &str) -> String {
    format!(
        "[upstreams.backend]\nurl = \"{}\"\n\
         [auth.jwt.main]\njwks_url = \"{}\"\nissuer = \"{ISSUER}\"\naudience = [\"api\"]\n\
         algorithms = [\"ES256\"]\njwks_min_refresh = \"{min_refresh}\"\n\
         [[routes]]\npath = \"/orders\"\nupstream = \"backend\"\nauth = [\"jwt:main\"]\n",
        upstream.url(),
        jwks.url()
    )
}

#[tokio::test]
async fn stale_keys_keep_verifying_while_one_background_fetch_refreshes_them() {
    let signer = Signer::ec("ec-1");
    // max-age 1 s: the keys go stale a second after each fetch.
    let jwks = JwksServer::start(&[&signer], 1).await;
    let upstream = Upstream::echo().await;
    let gateway = Process::start(&jwks_config(&upstream, &jwks, "1s")).await;
    // A new token each time: a verified token is cached and would not need the keys.
    let user = AtomicUsize::new(0);
    let get = || {
        let token = signer.sign(&claims(&format!(
            "user-{}",
            user.fetch_add(1, Ordering::SeqCst)
        )));
        client()
            .get(gateway.url("/orders"))
            .bearer_auth(token)
            .send()
    };
    assert_eq!(get().await.unwrap().status(), 200);
    assert_eq!(jwks.fetch_count(), 1);

    // The identity provider hangs; the keys go stale.
    jwks.set_hanging(true);
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let burst = futures_util::future::join_all((0..4).map(|_| get())).await;
    for response in burst {
        assert_eq!(response.unwrap().status(), 200);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        jwks.fetch_count(),
        2,
        "one background fetch for the whole burst"
    );
    assert!(
        gateway.lines_containing("JWKS fetch failed").is_empty(),
        "the requests were answered while the fetch was still hanging: {}",
        gateway.output()
    );
}

#[tokio::test]
async fn a_fetch_slower_than_min_refresh_does_not_chain_into_several() {
    let known = Signer::ec("ec-1");
    let unknown = Signer::ec("ec-unknown");
    // Each fetch takes 1.5 s, longer than jwks_min_refresh (1 s): counted from the start of
    // the last fetch, every request queued behind one would find it "long ago" and fetch again.
    let jwks = JwksServer::start(&[&known], 300).await;
    jwks.set_delay(Duration::from_millis(1500));
    let upstream = Upstream::echo().await;
    let gateway = Gateway::start(&jwks_config(&upstream, &jwks, "1s")).await;
    let get = |token: String| {
        client()
            .get(gateway.url("/orders"))
            .bearer_auth(token)
            .send()
    };

    assert_eq!(get(known.sign(&claims("u"))).await.unwrap().status(), 200);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    // Five tokens with a kid the set does not have: one refetch, whose end is what
    // jwks_min_refresh counts from, so the four queued behind it do not fetch again.
    let burst =
        futures_util::future::join_all((0..5).map(|_| get(unknown.sign(&claims("u"))))).await;
    for response in burst {
        assert_eq!(response.unwrap().status(), 401);
    }
    assert_eq!(jwks.fetch_count(), 2);
}

/// A TCP server that accepts connections and closes them at once, counting them: a Redis
/// that is gone.
async fn refusing_redis() -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            drop(stream);
        }
    });
    (port, accepted)
}

#[tokio::test]
async fn a_store_that_is_down_is_skipped_until_a_probe_finds_it_again() {
    let (port, connections) = refusing_redis().await;
    let upstream = Upstream::echo().await;
    let gateway = Gateway::start(&config_with_upstream(
        &upstream.url(),
        &format!(
            "[rate_limit]\nstore = \"redis\"\nredis_url = \"redis://127.0.0.1:{port}\"\n\
             on_store_error = \"allow\"\ntimeout = \"2s\"\n\
             [rate_limits.per_ip]\nkey = \"ip\"\nlimit = 100\nper = \"1m\"\n\
             [[routes]]\npath = \"/a\"\nupstream = \"backend\"\nrate_limit = \"per_ip\"\n"
        ),
    ))
    .await;
    assert_eq!(gateway.status("/a").await, 200, "on_store_error = allow");
    let after_first = connections.load(Ordering::SeqCst);
    assert!(after_first >= 1);

    // Known to be down: the next requests do not try Redis, only the probes do (one every
    // 500 ms, each reconnect trying at most twice). Without that, every request would try.
    let client = client();
    let burst = (0..20).map(|_| client.get(gateway.url("/a")).send());
    for response in futures_util::future::join_all(burst).await {
        assert_eq!(response.unwrap().status(), 200);
    }
    let tried = connections.load(Ordering::SeqCst) - after_first;
    assert!(tried < 10, "{tried} connection attempts for 20 requests");
}

#[tokio::test]
async fn a_buffered_lambda_answer_stops_at_the_invocation_deadline() {
    // An upstream whose body never ends.
    let upstream = Upstream::recording(|_| {
        let chunks = futures_util::stream::unfold((), |()| async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            Some((Ok::<_, std::io::Error>(Bytes::from_static(b"more ")), ()))
        });
        Response::builder().body(Body::from_stream(chunks)).unwrap()
    })
    .await;
    let function = Function::start(&proxy_config(&upstream, "")).await;
    let outcome = function
        .api
        .invoke_with_deadline(
            rest_event("GET", "/users/endless", "prod", json!({}), &[], None),
            Duration::from_secs(2),
        )
        .await;
    let Outcome::Response(response) = outcome else {
        panic!("the invocation failed: {outcome:?}");
    };
    assert_eq!(response["statusCode"], 504, "{response}");
    let problem: Value = serde_json::from_slice(&decoded_body(&response)).unwrap();
    assert_eq!(problem["type"], "urn:proxyfn:problem:gateway-timeout");
}

#[tokio::test]
async fn an_answer_too_large_for_an_invocation_is_a_502_problem() {
    let size = Arc::new(AtomicUsize::new(0));
    let asked = size.clone();
    let upstream = Upstream::recording(move |_| {
        Response::builder()
            .header("content-type", "application/octet-stream")
            .body(Body::from(vec![0xff; asked.load(Ordering::SeqCst)]))
            .unwrap()
    })
    .await;
    let function = Function::start(&proxy_config(&upstream, "")).await;
    let fetch = |bytes: usize| {
        size.store(bytes, Ordering::SeqCst);
        function.api.respond(rest_event(
            "GET",
            "/users/big",
            "prod",
            json!({}),
            &[],
            None,
        ))
    };

    // 5 MB of binary is 6.7 MB of base64: more than Lambda's 6 MB.
    let response = fetch(5 << 20).await;
    assert_eq!(response["statusCode"], 502);
    let problem: Value = serde_json::from_slice(&decoded_body(&response)).unwrap();
    assert_eq!(problem["type"], "urn:proxyfn:problem:response-too-large");
    assert!(
        problem["detail"].as_str().unwrap().contains("6291456"),
        "{problem}"
    );
    // What fits is sent.
    let response = fetch(4 << 20).await;
    assert_eq!(response["statusCode"], 200);
    assert_eq!(decoded_body(&response).len(), 4 << 20);
}

#[tokio::test]
async fn lambda_max_response_bounds_the_invocation_json() {
    let upstream = Upstream::recording(|_| {
        Response::builder()
            .header("content-type", "application/octet-stream")
            .body(Body::from(vec![0xff; 60 << 10]))
            .unwrap()
    })
    .await;
    let function = Function::start(&proxy_config(
        &upstream,
        "[lambda]\nmax_response = \"64KB\"\n",
    ))
    .await;
    let response = function
        .api
        .respond(rest_event("GET", "/users/x", "prod", json!({}), &[], None))
        .await;
    assert_eq!(response["statusCode"], 502, "60 KiB is 80 KiB of base64");
    let problem: Value = serde_json::from_slice(&decoded_body(&response)).unwrap();
    assert!(
        problem["detail"].as_str().unwrap().contains("65536"),
        "{problem}"
    );
}

#[tokio::test]
async fn repeated_upstream_warnings_are_logged_once_a_second_with_a_count() {
    let port = closed_port().await;
    let gateway = Process::start(&config_with_upstream(
        &format!("http://127.0.0.1:{port}"),
        "[[routes]]\npath = \"/a\"\nupstream = \"backend\"\n",
    ))
    .await;
    let client = client();
    for _ in 0..30 {
        let status = client.get(gateway.url("/a")).send().await.unwrap().status();
        assert!(status == 502 || status == 503, "{status}");
    }
    gateway.access_event_count(30).await;
    let warnings = gateway.lines_containing("upstream unreachable").len()
        + gateway.lines_containing("no healthy upstream target").len();
    assert!(
        (1..10).contains(&warnings),
        "{warnings} warning lines for 30 failing requests"
    );
}
