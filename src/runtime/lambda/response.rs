//! Lambda responses out: the router's answer in the JSON shape its front door expects, built
//! here so that every response an upstream can send produces one.
//!
//! - **Header values** that are not ASCII are sent as UTF-8 when they are valid UTF-8, and
//!   otherwise decoded as ISO-8859-1 (RFC 9110 §5.5: obs-text was historically Latin-1), so
//!   `filename="caf\xe9.txt"` reaches the client as `café.txt`. JSON strings cannot hold raw
//!   bytes; lambda_runtime fails to serialize such a response, which ends the process.
//! - **REST APIs** (payload 1.0) and **multi-value ALB** get `multiValueHeaders`, every field
//!   in order.
//! - **HTTP APIs and Function URLs** (payload 2.0) get `headers` with repeated fields joined by
//!   `, ` (RFC 9110 §5.3), as AWS joins them, and `Set-Cookie` in `cookies`.
//! - **Single-value ALB** gets `headers` joined the same way; it can carry only one
//!   `Set-Cookie`, so the first is kept and the process warns once.
//! - **Bodies** are text when they are valid UTF-8 of a textual type without
//!   `Content-Encoding`, and base64 otherwise, so every byte arrives as it was sent.

use std::sync::atomic::{AtomicBool, Ordering};

use base64::{Engine, engine::general_purpose::STANDARD as BASE64};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Response, StatusCode, header};
use serde::{Serialize, Serializer, ser::SerializeMap};

use super::event::FrontDoor;

/// A response as the Runtime API takes it; serializing it cannot fail.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LambdaResponse {
    status_code: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    status_description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    headers: Option<Pairs<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    multi_value_headers: Option<Pairs<Vec<String>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cookies: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    body: Option<String>,
    is_base64_encoded: bool,
}

impl LambdaResponse {
    pub fn status(&self) -> u16 {
        self.status_code
    }
}

/// Header fields in order, serialized as a JSON object.
#[derive(Debug, Default)]
pub(super) struct Pairs<V>(pub(super) Vec<(String, V)>);

impl<V: Serialize> Serialize for Pairs<V> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (name, value) in &self.0 {
            map.serialize_entry(name, value)?;
        }
        map.end()
    }
}

/// Warns once per process that a single-value ALB target group dropped a cookie.
static ALB_COOKIE_WARNED: AtomicBool = AtomicBool::new(false);

/// The router's answer in the shape `front_door` expects.
pub fn to_lambda(front_door: FrontDoor, response: Response<Bytes>) -> LambdaResponse {
    let (parts, body) = response.into_parts();
    let (body, is_base64_encoded) = event_body(&parts.headers, body);
    let mut out = LambdaResponse {
        status_code: parts.status.as_u16(),
        status_description: None,
        headers: None,
        multi_value_headers: None,
        cookies: None,
        body,
        is_base64_encoded,
    };
    let headers = parts.headers;
    match front_door {
        FrontDoor::RestApi | FrontDoor::Alb { multi_value: true } => {
            out.multi_value_headers = Some(multi_valued(&headers));
        }
        FrontDoor::HttpApi | FrontDoor::FunctionUrl => {
            let cookies: Vec<String> = headers
                .get_all(header::SET_COOKIE)
                .iter()
                .map(text)
                .collect();
            out.headers = Some(joined(&headers));
            out.cookies = (!cookies.is_empty()).then_some(cookies);
        }
        FrontDoor::Alb { multi_value: false } => {
            let mut cookies = headers.get_all(header::SET_COOKIE).iter();
            let first = cookies.next();
            if cookies.next().is_some() && !ALB_COOKIE_WARNED.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    "a response set several cookies, but an ALB target group without multi-value headers carries one: the first is sent (turn on multi-value headers on the target group); warned once"
                );
            }
            let mut fields = joined(&headers);
            if let Some(cookie) = first {
                fields.0.push(("set-cookie".to_owned(), text(cookie)));
            }
            out.headers = Some(fields);
        }
    }
    if let FrontDoor::Alb { .. } = front_door {
        out.status_description = Some(status_description(parts.status));
    }
    out
}

/// `"200 OK"`, or `"599 Unknown"` for a code without a reason phrase.
fn status_description(status: StatusCode) -> String {
    format!(
        "{} {}",
        status.as_u16(),
        status.canonical_reason().unwrap_or("Unknown")
    )
}

/// Every field, each name with its values in order.
fn multi_valued(headers: &HeaderMap) -> Pairs<Vec<String>> {
    Pairs(
        headers
            .keys()
            .map(|name| {
                let values = headers.get_all(name).iter().map(text).collect();
                (name.as_str().to_owned(), values)
            })
            .collect(),
    )
}

/// One value per name, repeated fields joined with `, `; `Set-Cookie` is left out.
pub(super) fn joined(headers: &HeaderMap) -> Pairs<String> {
    Pairs(
        headers
            .keys()
            .filter(|name| **name != header::SET_COOKIE)
            .map(|name| {
                let mut values = headers.get_all(name).iter();
                let mut joined = values.next().map(text).unwrap_or_default();
                for value in values {
                    joined.push_str(", ");
                    joined.push_str(&text(value));
                }
                (name.as_str().to_owned(), joined)
            })
            .collect(),
    )
}

/// A header value as JSON text: UTF-8 when it is, else each byte as ISO-8859-1.
fn text(value: &HeaderValue) -> String {
    match std::str::from_utf8(value.as_bytes()) {
        Ok(text) => text.to_owned(),
        Err(_) => value
            .as_bytes()
            .iter()
            .map(|&byte| char::from(byte))
            .collect(),
    }
}

/// Textual media types API Gateway can carry as a plain string.
fn is_textual(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence.starts_with("text/")
        || matches!(
            essence.as_str(),
            "application/json"
                | "application/problem+json"
                | "application/javascript"
                | "application/xml"
                | "application/yaml"
        )
        || essence.ends_with("+json")
        || essence.ends_with("+xml")
        || essence.ends_with("+yaml")
}

/// Text when that loses nothing; base64 otherwise.
fn event_body(headers: &HeaderMap, body: Bytes) -> (Option<String>, bool) {
    if body.is_empty() {
        return (None, false);
    }
    let textual = !headers.contains_key(header::CONTENT_ENCODING)
        && headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_none_or(is_textual);
    if textual && let Ok(text) = std::str::from_utf8(&body) {
        return (Some(text.to_owned()), false);
    }
    (Some(BASE64.encode(&body)), true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(pairs: &[(&str, &[u8])]) -> Response<Bytes> {
        let mut response = Response::new(Bytes::new());
        for (name, value) in pairs {
            response.headers_mut().append(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_bytes(value).unwrap(),
            );
        }
        response
    }

    fn json(front_door: FrontDoor, pairs: &[(&str, &[u8])]) -> serde_json::Value {
        serde_json::to_value(to_lambda(front_door, response(pairs))).unwrap()
    }

    #[test]
    fn obs_text_is_latin_1_and_utf_8_stays_utf_8() {
        let out = json(
            FrontDoor::HttpApi,
            &[
                (
                    "content-disposition",
                    b"attachment; filename=\"caf\xe9.txt\"",
                ),
                ("set-cookie", "city=Zürich".as_bytes()),
            ],
        );
        assert_eq!(
            out["headers"]["content-disposition"],
            "attachment; filename=\"café.txt\""
        );
        assert_eq!(out["cookies"], serde_json::json!(["city=Zürich"]));
    }

    #[test]
    fn repeated_fields_are_joined_for_payload_2_and_single_value_alb() {
        let pairs: &[(&str, &[u8])] = &[
            ("vary", b"origin"),
            ("vary", b"accept-encoding"),
            ("set-cookie", b"a=1"),
            ("set-cookie", b"b=2"),
        ];
        let v2 = json(FrontDoor::FunctionUrl, pairs);
        assert_eq!(v2["headers"]["vary"], "origin, accept-encoding");
        assert_eq!(v2["cookies"], serde_json::json!(["a=1", "b=2"]));
        assert!(v2["headers"].get("set-cookie").is_none());
        let alb = json(FrontDoor::Alb { multi_value: false }, pairs);
        assert_eq!(alb["headers"]["vary"], "origin, accept-encoding");
        assert_eq!(alb["headers"]["set-cookie"], "a=1");
        let rest = json(FrontDoor::RestApi, pairs);
        assert_eq!(
            rest["multiValueHeaders"]["set-cookie"],
            serde_json::json!(["a=1", "b=2"])
        );
    }

    #[test]
    fn alb_status_descriptions_have_a_reason_even_for_unknown_codes() {
        assert_eq!(status_description(StatusCode::OK), "200 OK");
        assert_eq!(
            status_description(StatusCode::from_u16(599).unwrap()),
            "599 Unknown"
        );
    }

    #[test]
    fn bodies_are_text_only_when_nothing_is_lost() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        assert!(!event_body(&headers, Bytes::from_static(b"{}")).1);
        assert!(
            event_body(&headers, Bytes::from_static(b"\xff\xfe")).1,
            "invalid UTF-8 must be base64"
        );
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("image/png"));
        assert!(event_body(&headers, Bytes::from_static(b"abc")).1);
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        assert!(
            event_body(&headers, Bytes::from_static(b"abc")).1,
            "compressed text is binary"
        );
    }
}
