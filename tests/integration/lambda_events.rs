//! Every public Lambda event fixture in `../shared/lambda-events/` (written by other projects:
//! see its SOURCES.md) through the real binary and a local Runtime API, against a recording
//! upstream that answers with what trips adapters up: two `Set-Cookie`, a repeated header,
//! an obs-text header value and a binary body. The fixtures are read from there, never copied.
//! Set `PROXYFN_LAMBDA_EVENTS` to read them from elsewhere; without the folder the test says so
//! and passes.

use std::path::PathBuf;

use axum::{body::Body, response::Response};
use base64::{Engine, engine::general_purpose::STANDARD as BASE64};
use serde_json::Value;

use crate::{
    helpers::*,
    lambda::{Function, decoded_body, header_values},
    runtime_api::Outcome,
};

const BINARY: &[u8] = &[0, 159, 146, 150, 255, b'\n'];

fn fixtures_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("PROXYFN_LAMBDA_EVENTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/lambda-events")
        });
    dir.is_dir().then_some(dir)
}

/// What kind of event a fixture is, read the way AWS documents the shapes.
#[derive(Debug, PartialEq)]
enum Kind {
    Rest,
    V2,
    Alb { multi_value: bool },
    Unsupported,
}

fn kind(event: &Value) -> Kind {
    let context = &event["requestContext"];
    if event.get("Records").is_some()
        || context.get("connectionId").is_some()
        || context.get("eventType").is_some()
        || context.get("serviceArn").is_some()
    {
        Kind::Unsupported
    } else if context.get("elb").is_some() {
        Kind::Alb {
            multi_value: event.get("multiValueHeaders").is_some_and(|h| !h.is_null())
                || event
                    .get("multiValueQueryStringParameters")
                    .is_some_and(|q| !q.is_null()),
        }
    } else if event["version"] == "2.0" && event.get("rawPath").is_some() {
        Kind::V2
    } else if event.get("httpMethod").is_some() {
        Kind::Rest
    } else {
        Kind::Unsupported
    }
}

/// The event's request headers as (lower-case name, values), from the fields AWS says are
/// the truth for its kind.
fn event_headers(event: &Value, kind: &Kind) -> Vec<(String, Vec<String>)> {
    let multi = matches!(kind, Kind::Rest | Kind::Alb { multi_value: true })
        && event["multiValueHeaders"].is_object();
    let source = if multi {
        &event["multiValueHeaders"]
    } else {
        &event["headers"]
    };
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for (name, value) in source.as_object().into_iter().flatten() {
        let values: Vec<String> = match value {
            Value::Array(items) => items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
            Value::String(text) => vec![text.clone()],
            _ => vec![],
        };
        let name = name.to_ascii_lowercase();
        match out.iter_mut().find(|(n, _)| *n == name) {
            Some((_, existing)) => existing.extend(values),
            None => out.push((name, values)),
        }
    }
    out
}

/// Why proxyfn must refuse this fixture with 400, if it must.
fn expected_refusal(event: &Value, kind: &Kind) -> Option<&'static str> {
    let headers = event_headers(event, kind);
    let hosts: Vec<&String> = headers
        .iter()
        .filter(|(n, _)| n == "host")
        .flat_map(|(_, v)| v)
        .collect();
    if hosts.len() > 1
        || hosts
            .iter()
            .any(|h| !proxyfn::trust::is_valid_host(h.as_bytes()))
    {
        return Some("invalid-host");
    }
    if event["isBase64Encoded"] == true
        && let Some(body) = event["body"].as_str()
        && BASE64.decode(body.trim()).is_err()
    {
        return Some("malformed-event");
    }
    None
}

/// Headers the gateway owns, consumes or must not forward: their values upstream are the
/// gateway's, not the event's.
fn gateway_owned(name: &str) -> bool {
    name.contains('_')
        || proxyfn::trust::CLIENT_ADDRESS_HEADERS.contains(&name)
        || matches!(
            name,
            "host"
                | "connection"
                | "keep-alive"
                | "te"
                | "trailer"
                | "transfer-encoding"
                | "upgrade"
                | "proxy-connection"
                | "proxy-authorization"
                | "expect"
                | "content-length"
                | "x-forwarded-for"
                | "x-forwarded-proto"
                | "x-forwarded-host"
                | "x-forwarded-port"
                | "x-real-ip"
                | "x-request-id"
                | "traceparent"
                | "tracestate"
        )
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(byte) = text
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(byte);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The (key, value) pairs of a query string, decoded or as sent.
fn pairs(query: &str, decode: bool) -> Vec<(String, String)> {
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            if decode {
                (percent_decode(k), percent_decode(v))
            } else {
                (k.to_owned(), v.to_owned())
            }
        })
        .collect();
    pairs.sort();
    pairs
}

/// The event's query parameters, from the map AWS says is the truth.
fn event_query(event: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let multi = &event["multiValueQueryStringParameters"];
    if let Some(map) = multi.as_object() {
        for (key, values) in map {
            for value in values.as_array().into_iter().flatten() {
                out.push((key.clone(), value.as_str().unwrap_or_default().to_owned()));
            }
        }
    } else if let Some(map) = event["queryStringParameters"].as_object() {
        for (key, value) in map {
            if let Some(value) = value.as_str() {
                out.push((key.clone(), value.to_owned()));
            }
        }
    }
    out.sort();
    out
}

/// The path the route sees: REST `path`; payload 2.0 `rawPath` without a named stage on the
/// execute-api domain; ALB `path`. As a URI, with a space as `%20`.
fn expected_path(event: &Value, kind: &Kind) -> String {
    let path = match kind {
        Kind::V2 => {
            let raw = event["rawPath"].as_str().unwrap_or("/");
            let context = &event["requestContext"];
            let stage = context["stage"].as_str().unwrap_or_default();
            let on_api = context["domainName"]
                .as_str()
                .is_none_or(|d| d.contains(".execute-api."));
            let prefix = format!("/{stage}");
            match raw.strip_prefix(prefix.as_str()) {
                Some("") if on_api && !stage.is_empty() && stage != "$default" => "/".to_owned(),
                Some(rest)
                    if on_api
                        && !stage.is_empty()
                        && stage != "$default"
                        && rest.starts_with('/') =>
                {
                    rest.to_owned()
                }
                _ => raw.to_owned(),
            }
        }
        _ => event["path"].as_str().unwrap_or("/").to_owned(),
    };
    path.replace(' ', "%20")
}

fn event_method(event: &Value, kind: &Kind) -> String {
    match kind {
        Kind::V2 => event["requestContext"]["http"]["method"].as_str(),
        _ => event["httpMethod"].as_str(),
    }
    .unwrap_or_default()
    .to_owned()
}

fn event_body(event: &Value) -> Vec<u8> {
    let body = event["body"].as_str().unwrap_or_default();
    if event["isBase64Encoded"] == true {
        BASE64.decode(body.trim()).unwrap()
    } else {
        body.as_bytes().to_vec()
    }
}

#[tokio::test]
async fn every_public_event_fixture_is_served_or_refused_cleanly() {
    let Some(dir) = fixtures_dir() else {
        eprintln!("no ../shared/lambda-events folder here: the fixture corpus was not run");
        return;
    };
    let upstream = Upstream::recording(|_| {
        Response::builder()
            .header("set-cookie", "a=1; Path=/")
            .header("set-cookie", "b=2")
            .header("x-multi", "one")
            .header("x-multi", "two")
            .header(
                "content-disposition",
                http::HeaderValue::from_bytes(b"attachment; filename=\"caf\xe9.bin\"").unwrap(),
            )
            .header("content-type", "application/octet-stream")
            .body(Body::from(BINARY))
            .unwrap()
    })
    .await;
    // Catch-all routes: the fixtures' paths are whatever their authors chose.
    let function = Function::start(&config_with_upstream(
        &upstream.url(),
        "[[routes]]\npath = \"/\"\nupstream = \"backend\"\n\
         [[routes]]\npath = \"/{*rest}\"\nupstream = \"backend\"\n",
    ))
    .await;

    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(files.len() >= 70, "the corpus has {} fixtures", files.len());
    let mut served = 0;
    let mut refused = 0;
    let mut unsupported = 0;
    for file in &files {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let event: Value = serde_json::from_slice(&std::fs::read(file).unwrap())
            .unwrap_or_else(|e| panic!("{name}: not JSON: {e}"));
        let kind = kind(&event);
        let before = upstream.requests().len();
        let outcome = function.api.invoke(event.clone()).await;

        if kind == Kind::Unsupported {
            let Outcome::Error(error) = outcome else {
                panic!("{name}: an unsupported event was answered: {outcome:?}");
            };
            assert_eq!(error["errorType"], "UnsupportedEvent", "{name}: {error}");
            assert!(
                error["errorMessage"].as_str().unwrap().contains("this is"),
                "{name}"
            );
            assert_eq!(
                upstream.requests().len(),
                before,
                "{name} reached the upstream"
            );
            unsupported += 1;
            continue;
        }
        let Outcome::Response(response) = outcome else {
            panic!("{name}: the invocation failed: {outcome:?}");
        };
        if let Some(problem) = expected_refusal(&event, &kind) {
            assert_eq!(response["statusCode"], 400, "{name}: {response}");
            let body: Value = serde_json::from_slice(&decoded_body(&response)).unwrap();
            assert_eq!(
                body["type"],
                format!("urn:proxyfn:problem:{problem}"),
                "{name}"
            );
            assert!(
                body["request_id"].as_str().is_some_and(|id| !id.is_empty()),
                "{name}"
            );
            assert_eq!(
                upstream.requests().len(),
                before,
                "{name} reached the upstream"
            );
            refused += 1;
            continue;
        }

        // What the upstream got.
        assert_eq!(response["statusCode"], 200, "{name}: {response}");
        assert_eq!(upstream.requests().len(), before + 1, "{name}");
        let seen = upstream.last();
        assert_eq!(seen.method, event_method(&event, &kind), "{name}");
        let (path, query) = seen.target.split_once('?').unwrap_or((&seen.target, ""));
        assert_eq!(path, expected_path(&event, &kind), "{name}");
        match kind {
            Kind::V2 => assert_eq!(
                pairs(query, false),
                pairs(event["rawQueryString"].as_str().unwrap_or_default(), false),
                "{name}"
            ),
            Kind::Rest => assert_eq!(pairs(query, true), event_query(&event), "{name}"),
            Kind::Alb { .. } => assert_eq!(pairs(query, false), event_query(&event), "{name}"),
            Kind::Unsupported => unreachable!(),
        }
        for (header, values) in event_headers(&event, &kind) {
            if gateway_owned(&header) {
                continue;
            }
            let got: Vec<String> = seen
                .headers
                .get_all(header.as_str())
                .iter()
                .map(|v| String::from_utf8(v.as_bytes().to_vec()).unwrap())
                .collect();
            assert_eq!(got, values, "{name}: header {header}");
        }
        if kind == Kind::V2
            && let Some(cookies) = event["cookies"].as_array().filter(|c| !c.is_empty())
        {
            let joined: Vec<&str> = cookies.iter().map(|c| c.as_str().unwrap()).collect();
            assert_eq!(seen.headers["cookie"], joined.join("; ").as_str(), "{name}");
        }
        assert_eq!(
            seen.body.as_ref(),
            event_body(&event).as_slice(),
            "{name}: body"
        );
        assert!(seen.headers.get("x-request-id").is_some(), "{name}");

        // What the invocation returned.
        assert_eq!(response["isBase64Encoded"], true, "{name}");
        assert_eq!(decoded_body(&response), BINARY, "{name}");
        let disposition = "attachment; filename=\"café.bin\"";
        match kind {
            Kind::Rest | Kind::Alb { multi_value: true } => {
                let headers = &response["multiValueHeaders"];
                assert_eq!(
                    header_values(headers, "set-cookie"),
                    ["a=1; Path=/", "b=2"],
                    "{name}"
                );
                assert_eq!(header_values(headers, "x-multi"), ["one", "two"], "{name}");
                assert_eq!(
                    header_values(headers, "content-disposition"),
                    [disposition],
                    "{name}"
                );
            }
            Kind::V2 => {
                let headers = &response["headers"];
                assert_eq!(
                    response["cookies"],
                    serde_json::json!(["a=1; Path=/", "b=2"]),
                    "{name}"
                );
                assert!(header_values(headers, "set-cookie").is_empty(), "{name}");
                assert_eq!(header_values(headers, "x-multi"), ["one, two"], "{name}");
                assert_eq!(
                    header_values(headers, "content-disposition"),
                    [disposition],
                    "{name}"
                );
            }
            Kind::Alb { multi_value: false } => {
                let headers = &response["headers"];
                assert_eq!(
                    header_values(headers, "set-cookie"),
                    ["a=1; Path=/"],
                    "{name}"
                );
                assert_eq!(header_values(headers, "x-multi"), ["one, two"], "{name}");
                assert_eq!(
                    header_values(headers, "content-disposition"),
                    [disposition],
                    "{name}"
                );
            }
            Kind::Unsupported => unreachable!(),
        }
        if let Kind::Alb { .. } = kind {
            assert_eq!(response["statusDescription"], "200 OK", "{name}");
        }
        served += 1;
    }
    eprintln!(
        "{} fixtures: {served} served, {refused} refused with 400, {unsupported} unsupported",
        files.len()
    );
    assert!(served >= 50, "only {served} fixtures were served");
}
