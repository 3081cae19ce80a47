//! What the gateway tells operators: the access log of the real binary (server and Lambda),
//! with no credential in any line, and W3C trace context reaching the upstream.

use std::{
    process::Stdio,
    sync::{Arc, Mutex},
    time::Duration,
};

use serde_json::Value;

use crate::{helpers::*, signer::*};

const SECRET: &str = "an-observability-test-secret-of-32-bytes!";

/// The release-shaped binary in server mode, its stdout captured line by line.
struct Process {
    port: u16,
    lines: Arc<Mutex<Vec<String>>>,
    _child: tokio::process::Child,
    _dir: tempfile::TempDir,
}

impl Process {
    async fn start(config: &str) -> Self {
        let port = closed_port().await;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("proxyfn.toml");
        std::fs::write(
            &path,
            format!("[server]\nlisten = \"127.0.0.1:{port}\"\n{config}"),
        )
        .unwrap();
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_proxyfn"))
            .arg("--config")
            .arg(&path)
            .env_remove("AWS_LAMBDA_RUNTIME_API")
            .env_remove("PORT")
            .env("RUST_LOG", "info")
            .env("OBS_JWT_SECRET", SECRET)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let lines = capture_lines(child.stdout.take().unwrap());
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return Self {
                    port,
                    lines,
                    _child: child,
                    _dir: dir,
                };
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("the gateway did not listen");
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Waits for the access-log event of `request_id`.
    async fn access_event(&self, request_id: &str) -> Value {
        for _ in 0..200 {
            let found = self.lines.lock().unwrap().iter().find_map(|line| {
                let event: Value = serde_json::from_str(line).ok()?;
                (event["target"] == "proxyfn::access" && event["request_id"] == request_id)
                    .then_some(event)
            });
            if let Some(event) = found {
                return event;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!(
            "no access event for {request_id}: {:#?}",
            self.lines.lock().unwrap()
        );
    }

    fn output(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }
}

fn config(upstream: &Upstream) -> String {
    format!(
        "[upstreams.backend]\nurl = \"{}\"\n\
         [auth.jwt.main]\nsecret_env = \"OBS_JWT_SECRET\"\nissuer = \"{ISSUER}\"\naudience = [\"api\"]\nalgorithms = [\"HS256\"]\n\
         [auth.api_keys.partners]\nkeys = [{{ id = \"acme\", sha256 = \"{}\" }}]\n\
         [rate_limits.per_user]\nkey = \"user\"\nlimit = 100\nper = \"1m\"\n\
         [[routes]]\npath = \"/orders/{{id}}\"\nupstream = \"backend\"\nauth = [\"jwt:main\", \"api_key:partners\"]\nrate_limit = \"per_user\"\n",
        upstream.url(),
        sha256_hex("acme-secret-key")
    )
}

#[tokio::test]
async fn every_request_gets_one_access_event_with_its_fields_and_no_credential() {
    let upstream = Upstream::echo().await;
    let gateway = Process::start(&config(&upstream)).await;
    let token = Signer::hmac(SECRET.as_bytes()).sign(&claims("alice"));

    let response = client()
        .post(gateway.url("/orders/7?x=1"))
        .header("authorization", format!("Bearer {token}"))
        .header("cookie", "session=cookie-secret-value")
        .header("x-request-id", "obs-1")
        .header(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )
        .body("0123456789")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.bytes().await.unwrap().len(), 10, "the echo");

    let event = gateway.access_event("obs-1").await;
    assert_eq!(event["level"], "INFO");
    assert_eq!(event["method"], "POST");
    assert_eq!(event["route"], "/orders/{id}");
    assert_eq!(event["path"], "/orders/7");
    assert_eq!(event["status"], 200);
    assert_eq!(event["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(event["upstream"], "backend");
    assert_eq!(event["attempts"], 1);
    assert_eq!(event["client_ip"], "127.0.0.1");
    assert_eq!(event["principal"], "jwt:main/alice");
    assert_eq!(event["rate_limit"], "allowed");
    assert_eq!(event["bytes_in"], 10);
    assert_eq!(event["bytes_out"], 10);
    assert_eq!(event["completed"], true);
    assert!(
        event["latency_ms"].as_f64().unwrap() >= event["upstream_latency_ms"].as_f64().unwrap()
    );

    // An API key, and a refused one, leave no trace either.
    for key in ["acme-secret-key", "wrong-secret-key"] {
        client()
            .get(gateway.url("/orders/8"))
            .header("x-api-key", key)
            .header("x-request-id", format!("obs-{key}"))
            .send()
            .await
            .unwrap();
        gateway.access_event(&format!("obs-{key}")).await;
    }
    let denied = gateway.access_event("obs-wrong-secret-key").await;
    assert_eq!(denied["status"], 401);
    assert!(denied["principal"].is_null());

    let output = gateway.output();
    for secret in [
        token.as_str(),
        "cookie-secret-value",
        "acme-secret-key",
        "wrong-secret-key",
    ] {
        let needle = secret.split('.').nth(1).unwrap_or(secret); // a JWT's payload alone too
        // The request ids above embed the key names on purpose; look for the values only.
        let leaks = output
            .lines()
            .filter(|l| l.contains(needle) && !l.contains("\"request_id\":\"obs-"))
            .count();
        assert_eq!(leaks, 0, "{secret} appears in the log");
    }
    assert!(!output.contains(&token));
    assert!(!output.contains("cookie-secret-value"));
}

#[tokio::test]
async fn client_text_with_control_characters_is_escaped_in_the_log() {
    let upstream = Upstream::echo().await;
    let gateway = Process::start(&config(&upstream)).await;
    let forged = "mallory\n{\"level\":\"INFO\",\"target\":\"proxyfn::access\",\"status\":200}";
    let token = Signer::hmac(SECRET.as_bytes()).sign(&claims(forged));
    client()
        .get(gateway.url("/orders/1"))
        .header("authorization", format!("Bearer {token}"))
        .header("x-request-id", "obs-ctl")
        .send()
        .await
        .unwrap();
    let event = gateway.access_event("obs-ctl").await;
    let principal = event["principal"].as_str().unwrap();
    assert!(principal.starts_with("jwt:main/mallory\\n"), "{principal}");
    assert!(!principal.contains('\n'));
    for line in gateway.output().lines() {
        serde_json::from_str::<Value>(line)
            .unwrap_or_else(|_| panic!("not one JSON object: {line}"));
    }
}

#[tokio::test]
async fn traceparent_reaches_the_upstream_with_the_same_trace_and_a_new_span() {
    let upstream = Upstream::echo().await;
    let gateway = Gateway::start(&config_with_upstream(
        &upstream.url(),
        "[[routes]]\npath = \"/{*rest}\"\nupstream = \"backend\"\n",
    ))
    .await;
    let incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    client()
        .get(gateway.url("/a"))
        .header("traceparent", incoming)
        .header("tracestate", "vendor=opaque")
        .header(
            "x-amzn-trace-id",
            "Root=1-5759e988-bd862e3fe1be46a994272793",
        )
        .send()
        .await
        .unwrap();
    let seen = upstream.last();
    let sent = seen.headers["traceparent"].to_str().unwrap();
    let parts: Vec<&str> = sent.split('-').collect();
    assert_eq!(parts[0], "00");
    assert_eq!(parts[1], "4bf92f3577b34da6a3ce929d0e0e4736", "same trace");
    assert_ne!(parts[2], "00f067aa0ba902b7", "this hop's own span");
    assert_eq!(parts[3], "01", "flags kept");
    assert_eq!(seen.headers["tracestate"], "vendor=opaque");
    assert_eq!(
        seen.headers["x-amzn-trace-id"],
        "Root=1-5759e988-bd862e3fe1be46a994272793"
    );

    // No (or an invalid) traceparent: a new trace starts, and a lone tracestate is dropped.
    client()
        .get(gateway.url("/b"))
        .header("traceparent", "garbage")
        .header("tracestate", "vendor=orphan")
        .send()
        .await
        .unwrap();
    let seen = upstream.last();
    let started = seen.headers["traceparent"].to_str().unwrap();
    assert_eq!(started.len(), 55);
    assert!(started.starts_with("00-") && !started.contains("4bf92f35"));
    assert!(seen.headers.get("tracestate").is_none());
}
