//! What the gateway tells operators: the access log of the real binary (server and Lambda),
//! with no credential in any line, and W3C trace context reaching the upstream.

use std::time::Duration;

use serde_json::Value;

use crate::{helpers::*, signer::*};

pub const SECRET: &str = "an-observability-test-secret-of-32-bytes!";

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

/// One sample line of the Prometheus text format.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: Vec<(String, String)>,
    value: f64,
}

/// A strict reader of the Prometheus text exposition format 0.0.4: every line is blank, a
/// `# HELP`/`# TYPE` comment, or `name{label="value",...} value`, with `\\`, `\"` and `\n`
/// escapes in label values; every sample belongs to a family declared by `# TYPE`.
fn parse_prometheus(text: &str) -> Vec<Sample> {
    let is_name = |s: &str| {
        !s.is_empty()
            && !s.starts_with(|c: char| c.is_ascii_digit())
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    };
    let mut families: Vec<(String, String)> = vec![];
    let mut samples = vec![];
    for line in text.lines() {
        if line.is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix("# ") {
            let mut words = comment.splitn(3, ' ');
            match (words.next(), words.next(), words.next()) {
                (Some("TYPE"), Some(name), Some(kind)) => {
                    assert!(is_name(name), "{line}");
                    assert!(
                        ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                        "{line}"
                    );
                    families.push((name.to_owned(), kind.to_owned()));
                }
                (Some("HELP"), Some(name), _) => assert!(is_name(name), "{line}"),
                _ => {}
            }
            continue;
        }
        let name_end = line
            .find(['{', ' '])
            .unwrap_or_else(|| panic!("bad line: {line}"));
        let name = &line[..name_end];
        assert!(is_name(name), "bad metric name: {line}");
        let mut rest = &line[name_end..];
        let mut labels = vec![];
        if let Some(mut inner) = rest.strip_prefix('{') {
            loop {
                if let Some(after) = inner.strip_prefix('}') {
                    rest = after;
                    break;
                }
                let eq = inner
                    .find("=\"")
                    .unwrap_or_else(|| panic!("bad labels: {line}"));
                let label = &inner[..eq];
                assert!(is_name(label), "bad label name: {line}");
                let mut value = String::new();
                let mut chars = inner[eq + 2..].char_indices();
                let end = loop {
                    match chars.next() {
                        Some((i, '"')) => break eq + 2 + i + 1,
                        Some((_, '\\')) => match chars.next() {
                            Some((_, 'n')) => value.push('\n'),
                            Some((_, c @ ('\\' | '"'))) => value.push(c),
                            _ => panic!("bad escape: {line}"),
                        },
                        Some((_, c)) => value.push(c),
                        None => panic!("unterminated label value: {line}"),
                    }
                };
                labels.push((label.to_owned(), value));
                inner = inner[end..].strip_prefix(',').unwrap_or(&inner[end..]);
            }
        }
        let value = rest.trim_start().split(' ').next().unwrap();
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            other => other
                .parse()
                .unwrap_or_else(|_| panic!("bad value: {line}")),
        };
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix))
            .filter(|base| families.iter().any(|(f, k)| f == base && k == "histogram"))
            .unwrap_or(name);
        assert!(
            families.iter().any(|(f, _)| f == family),
            "no # TYPE for {name}"
        );
        samples.push(Sample {
            name: name.to_owned(),
            labels,
            value,
        });
    }
    samples
}

/// The sum of the samples named `name` that carry all of `labels`.
fn sample_sum(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == name)
        .filter(|s| {
            labels
                .iter()
                .all(|(k, v)| s.labels.iter().any(|(lk, lv)| lk == k && lv == v))
        })
        .map(|s| s.value)
        .sum()
}

#[tokio::test]
async fn metrics_parse_as_prometheus_text_and_count_what_happened() {
    let upstream = Upstream::echo().await;
    let config = config(&upstream).replace(
        "[auth.jwt.main]",
        "circuit_breaker = { failure_ratio = 0.5, min_requests = 20, window = \"10s\", open_for = \"30s\" }\n[auth.jwt.main]",
    );
    let gateway = Process::start(&config).await;
    let token = Signer::hmac(SECRET.as_bytes()).sign(&claims("alice"));
    for _ in 0..2 {
        let response = client()
            .get(gateway.url("/orders/7"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    let forged = Signer::hmac(b"another-secret-of-at-least-32-bytes!!").sign(&claims("eve"));
    let refused = client()
        .get(gateway.url("/orders/8"))
        .bearer_auth(&forged)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    // The access event (and the metrics) are written when the body ends; wait for them.
    gateway.access_event_count(3).await;

    let response = client().get(gateway.url("/metrics")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let text = response.text().await.unwrap();
    let samples = parse_prometheus(&text);

    let route = ("route", "/orders/{id}");
    let ok = [route, ("status", "2xx"), ("method", "GET")];
    assert_eq!(
        sample_sum(&samples, "proxyfn_requests_total", &ok),
        2.0,
        "{text}"
    );
    let unauthorized = [route, ("status", "4xx")];
    assert_eq!(
        sample_sum(&samples, "proxyfn_requests_total", &unauthorized),
        1.0
    );
    let forged = [("provider", "jwt:main"), ("reason", "bad_signature")];
    assert_eq!(
        sample_sum(&samples, "proxyfn_auth_failures_total", &forged),
        1.0
    );
    let allowed = [route, ("decision", "allowed")];
    assert_eq!(
        sample_sum(&samples, "proxyfn_rate_limit_decisions_total", &allowed),
        2.0
    );
    // Histograms with buckets: both upstream calls are in the +Inf bucket.
    let everything = [("upstream", "backend"), ("le", "+Inf")];
    assert_eq!(
        sample_sum(
            &samples,
            "proxyfn_upstream_duration_seconds_bucket",
            &everything
        ),
        2.0
    );
    let fastest = [route, ("status", "2xx"), ("le", "0.001")];
    assert!(samples.iter().any(|s| {
        s.name == "proxyfn_request_duration_seconds_bucket"
            && fastest
                .iter()
                .all(|(k, v)| s.labels.contains(&((*k).into(), (*v).into())))
    }));
    let closed = [("upstream", "backend")];
    assert_eq!(
        samples
            .iter()
            .filter(|s| s.name == "proxyfn_circuit_breaker_state")
            .count(),
        1,
        "{text}"
    );
    assert_eq!(
        sample_sum(&samples, "proxyfn_circuit_breaker_state", &closed),
        0.0
    );
    assert!(!text.contains("/orders/7"), "raw paths are never labels");
}

#[tokio::test]
async fn built_in_endpoints_are_counted_and_logged_under_their_own_paths() {
    let gateway = Process::start("").await;
    for path in ["/health", "/ready", "/health"] {
        let response = client()
            .get(gateway.url(path))
            .header("x-request-id", format!("builtin-{path}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    gateway.access_event_count(3).await;
    assert_eq!(
        gateway.access_event("builtin-/ready").await["route"],
        "/ready"
    );
    let text = client()
        .get(gateway.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let samples = parse_prometheus(&text);
    let count = |route: &str| {
        sample_sum(
            &samples,
            "proxyfn_requests_total",
            &[("route", route), ("status", "2xx")],
        )
    };
    assert_eq!(count("/health"), 2.0, "{text}");
    assert_eq!(count("/ready"), 1.0, "{text}");
    assert_eq!(count("unrouted"), 0.0, "{text}");
}

#[tokio::test]
async fn log_level_comes_from_the_config_and_redacted_fields_never_reach_the_log() {
    let upstream = Upstream::echo().await;
    let dir = tempfile::tempdir().unwrap();
    let schema = dir.path().join("login.json");
    std::fs::write(
        &schema,
        r#"{"type":"object","properties":{"user":{"type":"string"},"password":{"type":"string","minLength":20}}}"#,
    )
    .unwrap();
    let gateway = Process::start_with(
        &format!(
            "[log]\nlevel = \"proxyfn=debug,warn\"\nredact = [\"password\"]\n\
             [upstreams.backend]\nurl = \"{}\"\n\
             [[routes]]\npath = \"/login\"\nupstream = \"backend\"\nrequest_schema = {:?}\n",
            upstream.url(),
            schema.display().to_string()
        ),
        None,
        &[],
    )
    .await;
    let response = client()
        .post(gateway.url("/login"))
        .header("content-type", "application/json")
        .header("x-request-id", "redact-1")
        .body(r#"{"user":"ann","password":"short-secret"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let problem = response.text().await.unwrap();
    assert!(!problem.contains("short-secret"), "{problem}");
    gateway.access_event("redact-1").await;

    let output = gateway.output();
    let refusal = output
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|e| e["message"] == "request body refused by its schema")
        .unwrap_or_else(|| panic!("debug events are on with [log] level: {output}"));
    assert_eq!(refusal["level"], "DEBUG");
    let body: Value = serde_json::from_str(refusal["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["user"], "ann");
    assert_eq!(body["password"], "[REDACTED]");
    assert!(!output.contains("short-secret"), "{output}");
}

fn buffered(upstream: &Upstream) -> String {
    config_with_upstream(
        &upstream.url(),
        "[[routes]]\npath = \"/items\"\nupstream = \"backend\"\n",
    )
}

/// The gateway serving `config` with its log lines flushed every `flush_interval` (the test
/// helper's default is 10ms).
async fn flushing_every(config: &str, flush_interval: &str) -> Process {
    Process::start_with(
        config,
        Some("info"),
        &[("PROXYFN_LOG__FLUSH_INTERVAL", flush_interval)],
    )
    .await
}

#[tokio::test]
async fn buffered_log_lines_are_written_within_the_flush_interval() {
    let upstream = Upstream::echo().await;
    // One line is far from filling 64KB: only the flush interval writes it.
    let gateway = flushing_every(&buffered(&upstream), "100ms").await;
    let response = client()
        .get(gateway.url("/items"))
        .header("x-request-id", "buffered-1")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let event = gateway.access_event("buffered-1").await;
    assert_eq!(event["status"], 200);
}

#[tokio::test]
async fn server_mode_buffers_log_lines_by_default_and_writes_them_all_at_graceful_shutdown() {
    let upstream = Upstream::echo().await;
    // No `[log] buffer` in the file, and a flush interval longer than the test: the lines can
    // only come out at shutdown.
    let mut gateway = flushing_every(&buffered(&upstream), "1m").await;
    for n in 0..20 {
        let response = client()
            .get(gateway.url("/items"))
            .header("x-request-id", format!("buffered-{n}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        gateway.lines_containing("buffered-").is_empty(),
        "written before shutdown: {}",
        gateway.output()
    );
    gateway.terminate().await;
    gateway.access_event_count(20).await;
    for n in 0..20 {
        gateway.access_event(&format!("buffered-{n}")).await;
    }
}

#[tokio::test]
async fn a_zero_log_buffer_writes_each_line_at_once() {
    let upstream = Upstream::echo().await;
    let config = format!("[log]\nbuffer = 0\n{}", buffered(&upstream));
    let gateway = flushing_every(&config, "1m").await;
    client()
        .get(gateway.url("/items"))
        .header("x-request-id", "unbuffered-1")
        .send()
        .await
        .unwrap();
    gateway.access_event("unbuffered-1").await;
}

/// With the `otlp` feature and OTEL_EXPORTER_OTLP_ENDPOINT set, each request is a span sent to
/// the collector over OTLP/HTTP, in the caller's trace, and its id is the upstream's parent id.
#[cfg(feature = "otlp")]
#[tokio::test]
async fn request_spans_are_exported_over_otlp_and_link_caller_and_upstream() {
    use std::sync::{Arc, Mutex};

    use axum::routing::post;

    /// (content type, body) of each export request.
    type Exports = Arc<Mutex<Vec<(String, Vec<u8>)>>>;
    let received: Exports = Arc::default();
    let store = received.clone();
    let collector = Upstream::serve(axum::Router::new().route(
        "/v1/traces",
        post(
            move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let store = store.clone();
                async move {
                    let kind = headers
                        .get("content-type")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_owned();
                    store.lock().unwrap().push((kind, body.to_vec()));
                    (
                        [("content-type", "application/x-protobuf")],
                        Vec::<u8>::new(),
                    )
                }
            },
        ),
    ))
    .await;
    let upstream = Upstream::echo().await;
    let endpoint = format!("http://{}", collector.addr);
    let gateway = Process::start_with(
        &format!(
            "[upstreams.backend]\nurl = \"{}\"\n[[routes]]\npath = \"/traced\"\nupstream = \"backend\"\n",
            upstream.url()
        ),
        Some("warn"),
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_BSP_SCHEDULE_DELAY", "50"),
        ],
    )
    .await;
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let response = client()
        .get(gateway.url("/traced"))
        .header("traceparent", format!("00-{trace_id}-00f067aa0ba902b7-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    let sent = upstream.last().headers["traceparent"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(sent.starts_with(&format!("00-{trace_id}-")), "{sent}");
    let hop_id = &sent[36..52];
    assert_ne!(hop_id, "00f067aa0ba902b7", "a new span id for this hop");

    let unhex = |hex: &str| -> Vec<u8> {
        (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect()
    };
    let contains = |body: &[u8], needle: &[u8]| body.windows(needle.len()).any(|w| w == needle);
    let exported = eventually(|| {
        let exports = received.lock().unwrap();
        exports
            .iter()
            .any(|(kind, body)| {
                kind == "application/x-protobuf"
                    && contains(body, &unhex(trace_id))
                    && contains(body, &unhex(hop_id))
                    && contains(body, &unhex("00f067aa0ba902b7"))
                    && contains(body, b"proxyfn")
            })
            .then_some(())
    })
    .await;
    assert!(
        exported.is_some(),
        "no OTLP export with the trace id, the hop's span id and its parent: {} requests",
        received.lock().unwrap().len()
    );
}
