//! Lambda events in: which AWS front door sent the event, and the HTTP request it carries.
//!
//! proxyfn decodes events itself, with serde types that accept every shape AWS documents
//! (absent and `null` fields alike), and builds the `http::Request` here instead of through
//! lambda_http's conversion, which collapses REST `multiValueHeaders` to their last value,
//! strips a first path segment that merely equals the stage name, and panics on a `Host` or
//! `rawQueryString` that is not a valid URI part (lambda_http 1.3.2, `request.rs`).
//!
//! The rules, per front door:
//! - **REST API, payload 1.0**: `multiValueHeaders` and `multiValueQueryStringParameters`
//!   are the whole truth when present (`headers` holds only each last value). `path` never
//!   carries the stage (`requestContext.path` does): with `strip_stage` the route sees `path`,
//!   without it `requestContext.path`. Query values arrive decoded and are encoded again, so
//!   the order of parameters across different keys may change.
//! - **HTTP API, payload 2.0, and Function URLs**: `rawPath` and `rawQueryString` as received,
//!   `cookies` as one `Cookie` header. A named stage is in `rawPath` only on the
//!   `execute-api` domain; only there is it stripped (`/Prod` alone routes as `/`).
//! - **ALB**: `multiValueHeaders` when the target group has multi-value headers on, else
//!   `headers`; query values arrive as the client sent them (ALB does not decode them).
//!
//! Bytes a URI cannot carry (a space, `"`, `<`, ...) are percent-encoded, as the upstream
//! client would encode them anyway. An event that is HTTP-shaped but malformed (a body marked
//! base64 that is not, an invalid method, header name or value) still becomes a request, marked
//! ([`Converted::malformed`]), which the gateway answers with 400 problem+json. WebSocket, VPC Lattice
//! and batch (`Records`) events are recognised and refused as unsupported.

use std::net::IpAddr;

use base64::{Engine, engine::general_purpose::STANDARD as BASE64};
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri, Version, header};
use serde::{Deserialize, de::IgnoredAny};

use crate::{
    runtime::ClientInfo,
    upstream::headers::{X_FORWARDED_FOR, X_FORWARDED_PORT, X_FORWARDED_PROTO},
};

/// One invocation's payload, in any of the shapes an HTTP front door sends. Every field is
/// optional: which are present says which front door it is.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Event {
    version: Option<String>,
    /// REST and ALB.
    http_method: Option<String>,
    path: Option<String>,
    headers: Option<Fields<Option<String>>>,
    multi_value_headers: Option<Fields<Option<Vec<Option<String>>>>>,
    query_string_parameters: Option<Fields<Option<String>>>,
    multi_value_query_string_parameters: Option<Fields<Option<Vec<Option<String>>>>>,
    /// Payload 2.0.
    raw_path: Option<String>,
    raw_query_string: Option<String>,
    cookies: Option<Vec<String>>,
    body: Option<String>,
    is_base64_encoded: Option<bool>,
    request_context: Option<RequestContext>,
    /// Batch events of other sources (SQS, SNS, S3, Kinesis, DynamoDB streams).
    #[serde(rename = "Records")]
    records: Option<IgnoredAny>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct RequestContext {
    stage: Option<String>,
    /// REST: the path as the client requested it, with the stage or base path.
    path: Option<String>,
    domain_name: Option<String>,
    identity: Option<Identity>,
    http: Option<Http>,
    elb: Option<IgnoredAny>,
    /// WebSocket APIs.
    event_type: Option<String>,
    connection_id: Option<String>,
    /// VPC Lattice.
    service_network_arn: Option<IgnoredAny>,
    service_arn: Option<IgnoredAny>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct Identity {
    source_ip: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct Http {
    method: Option<String>,
    source_ip: Option<String>,
}

/// A JSON object's members in their order (header and query maps), so a request is rebuilt
/// in the order the event lists it.
#[derive(Debug, Default)]
pub struct Fields<V>(pub Vec<(String, V)>);

impl<'de, V: Deserialize<'de>> Deserialize<'de> for Fields<V> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor<V>(std::marker::PhantomData<V>);
        impl<'de, V: Deserialize<'de>> serde::de::Visitor<'de> for Visitor<V> {
            type Value = Fields<V>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Self::Value, A::Error> {
                let mut fields = Vec::with_capacity(map.size_hint().unwrap_or(8));
                while let Some(entry) = map.next_entry()? {
                    fields.push(entry);
                }
                Ok(Fields(fields))
            }
        }
        deserializer.deserialize_map(Visitor(std::marker::PhantomData))
    }
}

/// The AWS service that sent the event, which decides the response's shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrontDoor {
    /// API Gateway REST API (payload 1.0).
    RestApi,
    /// API Gateway HTTP API (payload 2.0).
    HttpApi,
    /// A Lambda Function URL (payload 2.0).
    FunctionUrl,
    /// An ALB target group; `multi_value` when it has multi-value headers on.
    Alb { multi_value: bool },
}

impl FrontDoor {
    /// Whether this front door can take a streamed answer: Function URLs (invoke mode
    /// RESPONSE_STREAM) and REST APIs (`responseTransferMode: STREAM`) can; HTTP APIs and ALB
    /// invoke synchronously and take only a buffered one.
    pub fn can_stream(self) -> bool {
        matches!(self, Self::FunctionUrl | Self::RestApi)
    }
}

/// An event that is not an HTTP request proxyfn can serve; the message names what it is.
#[derive(Debug)]
pub struct Unsupported(pub String);

/// The request an event carries, ready for the router.
pub struct Converted {
    pub front_door: FrontDoor,
    pub request: http::Request<Bytes>,
    /// The path prefix the front door added and routing left out (`/prod`), for links the
    /// gateway writes (the OpenAPI server URL).
    pub stage_prefix: Option<String>,
    /// Who sent the request, as the front door says.
    pub client: ClientInfo,
    /// Why the event is not one AWS would send as it is, if it is not.
    pub malformed: Option<&'static str>,
}

impl Event {
    /// Which front door sent this event.
    pub fn front_door(&self) -> Result<FrontDoor, Unsupported> {
        let context = self.request_context.as_ref();
        if self.records.is_some() {
            return Err(Unsupported(
                "a batch event of another event source (Records: SQS, SNS, S3, Kinesis, ...)"
                    .into(),
            ));
        }
        if let Some(context) = context {
            if context.event_type.is_some() || context.connection_id.is_some() {
                let kind = context.event_type.as_deref().unwrap_or("MESSAGE");
                return Err(Unsupported(format!(
                    "an API Gateway WebSocket {kind} event"
                )));
            }
            if context.service_network_arn.is_some() || context.service_arn.is_some() {
                return Err(Unsupported("a VPC Lattice event".into()));
            }
            if context.elb.is_some() {
                return Ok(FrontDoor::Alb {
                    multi_value: self.multi_value_headers.is_some()
                        || self.multi_value_query_string_parameters.is_some(),
                });
            }
        }
        if self.version.as_deref() == Some("2.0") && self.raw_path.is_some() {
            let domain = context
                .and_then(|c| c.domain_name.as_deref())
                .unwrap_or_default();
            return Ok(if domain.contains(".lambda-url.") {
                FrontDoor::FunctionUrl
            } else {
                FrontDoor::HttpApi
            });
        }
        if self.http_method.is_some() {
            return Ok(FrontDoor::RestApi);
        }
        Err(Unsupported(
            "not an HTTP event of API Gateway, a Function URL or ALB".into(),
        ))
    }

    /// The request this event carries. `strip_stage` is `server.strip_stage`.
    pub fn into_request(self, strip_stage: bool) -> Result<Converted, Unsupported> {
        let front_door = self.front_door()?;
        let mut defect: Option<&'static str> = None;
        let mut flag = |why: &'static str| {
            defect.get_or_insert(why);
        };
        let context = self.request_context.unwrap_or_default();

        let method_text = match front_door {
            FrontDoor::HttpApi | FrontDoor::FunctionUrl => {
                context.http.as_ref().and_then(|h| h.method.as_deref())
            }
            _ => self.http_method.as_deref(),
        };
        let method = match method_text.map(|m| Method::from_bytes(m.as_bytes())) {
            Some(Ok(method)) => method,
            _ => {
                flag("the event's HTTP method is missing or not valid");
                Method::GET
            }
        };

        let (path, stage_prefix) = match front_door {
            FrontDoor::RestApi => rest_path(self.path, &context, strip_stage),
            FrontDoor::HttpApi => http_api_path(self.raw_path, &context, strip_stage),
            FrontDoor::FunctionUrl | FrontDoor::Alb { .. } => (
                self.raw_path.or(self.path).unwrap_or_else(|| "/".into()),
                None,
            ),
        };
        if !path.starts_with('/') {
            flag("the event's path does not start with '/'");
        }

        let query = match front_door {
            FrontDoor::HttpApi | FrontDoor::FunctionUrl => {
                self.raw_query_string.unwrap_or_default()
            }
            FrontDoor::RestApi => query_of(
                self.multi_value_query_string_parameters,
                self.query_string_parameters,
                encode_component,
            ),
            // ALB passes query values as the client sent them, still encoded.
            FrontDoor::Alb { .. } => query_of(
                self.multi_value_query_string_parameters,
                self.query_string_parameters,
                |text, out| out.push_str(text),
            ),
        };
        let mut target = String::with_capacity(path.len() + query.len() + 1);
        encode_invalid(
            if path.starts_with('/') { &path } else { "/" },
            &mut target,
            false,
        );
        if !query.is_empty() {
            target.push('?');
            encode_invalid(&query, &mut target, true);
        }
        let uri = Uri::try_from(target).unwrap_or_else(|_| {
            flag("the event's path or query cannot form a URI");
            Uri::from_static("/")
        });

        let mut headers = HeaderMap::new();
        let mut add = |name: &str, value: &str| match (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            (Ok(name), Ok(value)) => {
                headers.append(name, value);
            }
            (Err(_), _) => flag("a header name in the event is not valid"),
            (_, Err(_)) => flag("a header value in the event is not valid"),
        };
        let multi_value = match front_door {
            FrontDoor::RestApi | FrontDoor::Alb { multi_value: true } => self.multi_value_headers,
            _ => None,
        };
        match multi_value {
            Some(Fields(fields)) => {
                for (name, values) in fields {
                    for value in values.into_iter().flatten().flatten() {
                        add(&name, &value);
                    }
                }
            }
            None => {
                for (name, value) in self.headers.map(|f| f.0).unwrap_or_default() {
                    if let Some(value) = value {
                        add(&name, &value);
                    }
                }
            }
        }
        // Payload 2.0 moves the Cookie header into `cookies`; where an event has both, they
        // are the same cookies, and `cookies` is the one AWS documents.
        let cookies = self.cookies.filter(|c| !c.is_empty());
        if cookies.is_some() {
            headers.remove(header::COOKIE);
        }
        if let Some(cookies) = cookies {
            match HeaderValue::from_str(&cookies.join("; ")) {
                Ok(value) => {
                    headers.insert(header::COOKIE, value);
                }
                Err(_) => flag("a cookie in the event is not valid"),
            }
        }

        let body = match (self.body, self.is_base64_encoded.unwrap_or(false)) {
            (None, _) => Bytes::new(),
            (Some(text), false) => Bytes::from(text),
            (Some(encoded), true) => match BASE64.decode(encoded.trim()) {
                Ok(bytes) => Bytes::from(bytes),
                Err(_) => {
                    flag("the body is marked base64 but is not base64");
                    Bytes::new()
                }
            },
        };

        let client = client_info(front_door, &context, &headers);
        let mut request = http::Request::new(body);
        *request.method_mut() = method;
        *request.uri_mut() = uri;
        *request.version_mut() = Version::HTTP_11;
        *request.headers_mut() = headers;
        Ok(Converted {
            front_door,
            request,
            stage_prefix,
            client,
            malformed: defect,
        })
    }
}

/// REST: `path` is the route's path without the stage; `requestContext.path` is what the
/// client requested (with the stage on the execute-api domain, or a base path mapping on a
/// custom domain), and what is routed with `strip_stage = false`.
fn rest_path(
    path: Option<String>,
    context: &RequestContext,
    strip_stage: bool,
) -> (String, Option<String>) {
    let path = path.unwrap_or_else(|| "/".into());
    let requested = context.path.as_deref().filter(|p| p.starts_with('/'));
    if !strip_stage {
        return (requested.map_or(path, str::to_owned), None);
    }
    let prefix = requested
        .and_then(|requested| requested.strip_suffix(path.as_str()))
        .filter(|prefix| prefix.starts_with('/') && !prefix.ends_with('/'))
        .map(str::to_owned);
    (path, prefix)
}

/// HTTP API: a named stage is the first segment of `rawPath` when the API is invoked on its
/// execute-api domain; a custom domain's paths carry neither the stage nor the mapping key.
fn http_api_path(
    raw_path: Option<String>,
    context: &RequestContext,
    strip_stage: bool,
) -> (String, Option<String>) {
    let path = raw_path.unwrap_or_else(|| "/".into());
    let stage = context
        .stage
        .as_deref()
        .filter(|s| !s.is_empty() && *s != "$default");
    let on_execute_api = context
        .domain_name
        .as_deref()
        .is_none_or(|domain| domain.contains(".execute-api."));
    let (Some(stage), true, true) = (stage, on_execute_api, strip_stage) else {
        return (path, None);
    };
    match path.strip_prefix('/').and_then(|p| p.strip_prefix(stage)) {
        Some("") => ("/".into(), Some(format!("/{stage}"))),
        Some(rest) if rest.starts_with('/') => (rest.to_owned(), Some(format!("/{stage}"))),
        _ => (path, None),
    }
}

/// A query string from a parameter map: the multi-value one when the event has it.
fn query_of(
    multi: Option<Fields<Option<Vec<Option<String>>>>>,
    single: Option<Fields<Option<String>>>,
    encode: impl Fn(&str, &mut String),
) -> String {
    let mut query = String::new();
    let mut pair = |key: &str, value: &str| {
        if !query.is_empty() {
            query.push('&');
        }
        encode(key, &mut query);
        query.push('=');
        encode(value, &mut query);
    };
    match multi {
        Some(Fields(fields)) => {
            for (key, values) in fields {
                for value in values.into_iter().flatten().flatten() {
                    pair(&key, &value);
                }
            }
        }
        None => {
            for (key, value) in single.map(|f| f.0).unwrap_or_default() {
                if let Some(value) = value {
                    pair(&key, &value);
                }
            }
        }
    }
    query
}

/// Percent-encodes a decoded query key or value: everything but unreserved characters
/// (RFC 3986 §2.3), so `+`, `&`, `=` and `%` in a value survive as data.
fn encode_component(text: &str, out: &mut String) {
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            push_escape(byte, out);
        }
    }
}

/// Copies `text`, percent-encoding only the bytes a URI path (or, with `query`, a query)
/// cannot hold (RFC 3986 §3.3, §3.4); `%` escapes already there are kept.
fn encode_invalid(text: &str, out: &mut String, query: bool) {
    for byte in text.bytes() {
        let allowed = byte.is_ascii_alphanumeric()
            || b"-._~!$&'()*+,;=:@/%".contains(&byte)
            || (query && byte == b'?');
        if allowed {
            out.push(byte as char);
        } else {
            push_escape(byte, out);
        }
    }
}

fn push_escape(byte: u8, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.push('%');
    out.push(HEX[usize::from(byte >> 4)] as char);
    out.push(HEX[usize::from(byte & 0xf)] as char);
}

/// Who sent the request, from what the front door established: the source IP (for ALB, the
/// address it appended to X-Forwarded-For), the scheme and port it served (API Gateway and
/// Function URLs: HTTPS only; ALB: the X-Forwarded-Proto/-Port it sets), and `domainName` as
/// the host when the event has no `Host`.
fn client_info(front_door: FrontDoor, context: &RequestContext, headers: &HeaderMap) -> ClientInfo {
    let parse = |ip: Option<&str>| ip.and_then(|ip| ip.parse::<IpAddr>().ok());
    let forwarded_for = joined(headers, &X_FORWARDED_FOR);
    let (ip, proto, port) = match front_door {
        FrontDoor::Alb { .. } => {
            let last = forwarded_for
                .as_ref()
                .and_then(|v| v.to_str().ok())
                .and_then(|chain| chain.rsplit(',').next())
                .and_then(|ip| ip.trim().parse().ok());
            let proto = headers
                .get(X_FORWARDED_PROTO)
                .filter(|p| *p == "http" || *p == "https")
                .cloned()
                .unwrap_or(HeaderValue::from_static("https"));
            let port = headers
                .get(X_FORWARDED_PORT)
                .filter(|p| {
                    p.to_str()
                        .is_ok_and(|p| p.parse::<u16>().is_ok_and(|p| p > 0))
                })
                .cloned();
            (last, proto, port)
        }
        FrontDoor::RestApi => (
            parse(
                context
                    .identity
                    .as_ref()
                    .and_then(|i| i.source_ip.as_deref()),
            ),
            HeaderValue::from_static("https"),
            Some(HeaderValue::from_static("443")),
        ),
        FrontDoor::HttpApi | FrontDoor::FunctionUrl => (
            parse(context.http.as_ref().and_then(|h| h.source_ip.as_deref())),
            HeaderValue::from_static("https"),
            Some(HeaderValue::from_static("443")),
        ),
    };
    let host = if headers.contains_key(header::HOST) {
        None
    } else {
        context
            .domain_name
            .as_deref()
            .filter(|d| crate::trust::is_valid_host(d.as_bytes()))
            .and_then(|d| HeaderValue::from_str(d).ok())
    };
    ClientInfo {
        ip,
        forwarded_for,
        append_to_forwarded_for: None,
        proto,
        port,
        host,
        trusted_peer: true,
        direct_http: false,
    }
}

/// Every field of `name`, as one comma-separated value.
fn joined(headers: &HeaderMap, name: &HeaderName) -> Option<HeaderValue> {
    let mut values = headers.get_all(name).iter();
    let first = values.next()?;
    let Some(second) = values.next() else {
        return Some(first.clone());
    };
    let mut bytes = first.as_bytes().to_vec();
    for value in std::iter::once(second).chain(values) {
        bytes.extend_from_slice(b", ");
        bytes.extend_from_slice(value.as_bytes());
    }
    HeaderValue::from_bytes(&bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn convert(event: serde_json::Value, strip_stage: bool) -> Converted {
        serde_json::from_value::<Event>(event)
            .unwrap()
            .into_request(strip_stage)
            .unwrap()
    }

    #[test]
    fn rest_paths_never_lose_a_segment_that_equals_the_stage() {
        let event = json!({
            "httpMethod": "GET", "path": "/testStage/x",
            "requestContext": { "stage": "testStage", "path": "/testStage/testStage/x" }
        });
        let converted = convert(event, true);
        assert_eq!(converted.request.uri(), "/testStage/x");
        assert_eq!(converted.stage_prefix.as_deref(), Some("/testStage"));
    }

    #[test]
    fn http_api_stages_are_stripped_only_where_aws_puts_them() {
        let event = |path: &str, domain: &str| {
            json!({
                "version": "2.0", "rawPath": path, "rawQueryString": "",
                "requestContext": { "stage": "Prod", "domainName": domain, "http": { "method": "GET" } }
            })
        };
        let on_api = "abc.execute-api.us-east-1.amazonaws.com";
        assert_eq!(convert(event("/Prod", on_api), true).request.uri(), "/");
        assert_eq!(convert(event("/Prod/x", on_api), true).request.uri(), "/x");
        assert_eq!(
            convert(event("/Production", on_api), true).request.uri(),
            "/Production"
        );
        assert_eq!(
            convert(event("/Prod/x", "api.example.com"), true)
                .request
                .uri(),
            "/Prod/x"
        );
        assert_eq!(
            convert(event("/Prod/x", on_api), false).request.uri(),
            "/Prod/x"
        );
    }

    #[test]
    fn bytes_a_uri_cannot_hold_are_percent_encoded() {
        let event = json!({
            "version": "2.0", "rawPath": "/my/path with space", "rawQueryString": "q=\"a b\"<c>&d=%2F",
            "requestContext": { "http": { "method": "GET" } }
        });
        assert_eq!(
            convert(event, true).request.uri(),
            "/my/path%20with%20space?q=%22a%20b%22%3Cc%3E&d=%2F"
        );
    }

    #[test]
    fn rest_query_values_are_encoded_again_and_alb_ones_kept() {
        let rest = json!({
            "httpMethod": "GET", "path": "/",
            "multiValueQueryStringParameters": { "q": ["a b", "c+d&e=f"], "x": ["1"] },
            "queryStringParameters": { "q": "c+d&e=f", "x": "1" }
        });
        assert_eq!(
            convert(rest, true).request.uri(),
            "/?q=a%20b&q=c%2Bd%26e%3Df&x=1"
        );
        let alb = json!({
            "httpMethod": "GET", "path": "/", "requestContext": { "elb": {} },
            "queryStringParameters": { "myKey": "%3FshowAll%3Dtrue" }
        });
        assert_eq!(
            convert(alb, true).request.uri(),
            "/?myKey=%3FshowAll%3Dtrue"
        );
    }

    #[test]
    fn rest_multi_value_headers_are_the_whole_truth() {
        let event = json!({
            "httpMethod": "GET", "path": "/",
            "headers": { "Header2": "value2" },
            "multiValueHeaders": { "Header2": ["value1", "value2"] }
        });
        let converted = convert(event, true);
        let values: Vec<_> = converted
            .request
            .headers()
            .get_all("header2")
            .iter()
            .collect();
        assert_eq!(values, ["value1", "value2"]);
    }

    #[test]
    fn malformed_events_become_marked_requests() {
        let event = json!({
            "httpMethod": "GET", "path": "/", "body": "not base64!", "isBase64Encoded": true
        });
        let converted = convert(event, true);
        assert!(converted.malformed.is_some());
        let event = json!({ "httpMethod": "G E T", "path": "/" });
        assert!(convert(event, true).malformed.is_some());
    }

    #[test]
    fn websocket_lattice_and_batch_events_are_named() {
        let kind = |event: serde_json::Value| {
            serde_json::from_value::<Event>(event)
                .unwrap()
                .front_door()
                .unwrap_err()
                .0
        };
        assert!(
            kind(json!({"requestContext": {"eventType": "CONNECT", "connectionId": "x"}}))
                .contains("WebSocket CONNECT")
        );
        assert!(
            kind(
                json!({"version": "2.0", "method": "GET", "requestContext": {"serviceArn": "arn"}})
            )
            .contains("VPC Lattice")
        );
        assert!(kind(json!({"Records": []})).contains("Records"));
        assert!(kind(json!({})).contains("not an HTTP event"));
    }
}
