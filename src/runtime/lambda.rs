//! Lambda mode: the router behind API Gateway (REST payload 1.0, HTTP API payload 2.0), a
//! Function URL or an ALB, through the Lambda Runtime API.
//!
//! lambda_http parses the events; the response is built here rather than by lambda_http, so
//! that bodies are byte-exact (a body is sent as text only when it is valid UTF-8 of a textual
//! type, and base64 otherwise) and a failing upstream body becomes a 502 instead of a panic.
//! The client IP is the event's source IP (for ALB, the address ALB appended to
//! X-Forwarded-For), never a header the client controls.

use std::{
    convert::Infallible,
    net::IpAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use axum::{Router, body::Body, extract::Request, response::Response};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, header};
use http_body_util::BodyExt;
use lambda_http::{
    LambdaEvent,
    aws_lambda_events::{
        alb::AlbTargetGroupResponse,
        apigw::{ApiGatewayProxyResponse, ApiGatewayV2httpResponse},
        encodings::Body as EventBody,
    },
    lambda_runtime,
    request::{LambdaRequest, RequestContext, RequestOrigin},
};
use serde::Serialize;
use tower::ServiceExt;

use super::{ClientInfo, LAMBDA_RUNTIME_API, StagePrefix};
use crate::{
    config::ServerSettings,
    error::{Error, PROBLEM_JSON},
    limits::Deadline,
    observability::{ColdStart, X_REQUEST_ID},
    upstream::headers::{X_FORWARDED_FOR, X_FORWARDED_PORT, X_FORWARDED_PROTO},
};

/// Runs `router` as the Lambda function handler until the runtime stops.
///
/// `started` is when the process started, for the cold start's init time in the access log.
pub async fn run(
    router: Router,
    settings: &ServerSettings,
    started: Instant,
) -> Result<(), lambda_runtime::Error> {
    let handler = Handler::new(router, settings, started);
    lambda_runtime::run(lambda_runtime::service_fn(move |event| {
        let handler = handler.clone();
        async move { Ok::<_, Infallible>(handler.handle(event).await) }
    }))
    .await
}

/// One invocation's work: the event in, the router's answer out in the shape the event's
/// front door expects. Public for the benchmarks (`benches/gateway.rs`).
#[derive(Clone)]
pub struct Handler {
    router: Router,
    strip_stage: bool,
    deadline_margin: Duration,
    /// Taken by the first invocation.
    cold_start: Arc<Mutex<Option<ColdStart>>>,
}

/// The response shapes the three front doors expect.
#[derive(Serialize)]
#[serde(untagged)]
pub enum LambdaResponse {
    RestApi(ApiGatewayProxyResponse),
    HttpApi(ApiGatewayV2httpResponse),
    Alb(AlbTargetGroupResponse),
}

/// Whether the ALB target group has multi-value headers on: then it sends and expects
/// `multiValueHeaders`, otherwise plain `headers`.
fn alb_multi_value(event: &LambdaRequest) -> bool {
    matches!(event, LambdaRequest::Alb(alb) if !alb.multi_value_headers.is_empty())
}

impl Handler {
    /// `started` is when the process started: the first invocation reports the init time.
    pub fn new(router: Router, settings: &ServerSettings, started: Instant) -> Self {
        Self {
            router,
            strip_stage: settings.strip_stage,
            deadline_margin: settings.deadline_margin,
            cold_start: Arc::new(Mutex::new(Some(ColdStart {
                init: started.elapsed(),
            }))),
        }
    }

    pub async fn handle(self, event: LambdaEvent<LambdaRequest>) -> LambdaResponse {
        let LambdaEvent { payload, context } = event;
        let origin = payload.request_origin();
        let multi_value = alb_multi_value(&payload);
        let request: lambda_http::Request = payload.into();
        let aws_request_id = context.request_id.clone();
        let request = self.to_router_request(request, context);

        let response = match self.router.oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        };
        let (parts, body) = response.into_parts();
        // The access log and the request's metrics are written when the body ends.
        let collected = body.collect().await;
        crate::observability::metrics::flush_emf(&aws_request_id);
        #[cfg(feature = "otlp")]
        crate::observability::otel::flush();
        let body = match collected {
            Ok(collected) => collected.to_bytes(),
            Err(error) => {
                tracing::warn!(%error, "response body failed while buffering for Lambda");
                let request_id = parts.headers.get(X_REQUEST_ID).cloned();
                return into_lambda_response(&origin, multi_value, body_error_response(request_id));
            }
        };
        into_lambda_response(&origin, multi_value, Response::from_parts(parts, body))
    }

    /// The event's request as the router serves it: stage stripped, client address, deadline
    /// and Lambda context attached.
    pub fn to_router_request(
        &self,
        request: lambda_http::Request,
        context: lambda_runtime::Context,
    ) -> Request {
        let (mut parts, body) = request.into_parts();
        let body = match body {
            lambda_http::Body::Text(text) => Bytes::from(text),
            lambda_http::Body::Binary(bytes) => Bytes::from(bytes),
            _ => Bytes::new(),
        };
        let event_context = parts.extensions.get::<RequestContext>();
        let client = client_info(event_context, &parts.headers);
        if self.strip_stage
            && let Some(stage) = stage(event_context)
            && strip_stage_prefix(&mut parts.uri, &stage)
        {
            parts.extensions.insert(StagePrefix(format!("/{stage}")));
        }
        parts.extensions.insert(client);
        parts.extensions.insert(Deadline(invocation_deadline(
            context.deadline,
            self.deadline_margin,
        )));
        parts.extensions.insert(context);
        let cold_start = self
            .cold_start
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(cold_start) = cold_start {
            parts.extensions.insert(cold_start);
        }
        Request::from_parts(parts, Body::from(body))
    }
}

/// The invocation deadline (milliseconds since the epoch, from the Runtime API) as an
/// `Instant`, less the margin needed to send the response.
fn invocation_deadline(deadline_ms: u64, margin: Duration) -> Instant {
    let deadline = UNIX_EPOCH + Duration::from_millis(deadline_ms);
    let remaining = deadline
        .duration_since(SystemTime::now())
        .unwrap_or_default();
    Instant::now() + remaining.saturating_sub(margin)
}

fn stage(context: Option<&RequestContext>) -> Option<String> {
    let stage = match context? {
        RequestContext::ApiGatewayV1(c) => c.stage.as_deref(),
        RequestContext::ApiGatewayV2(c) => c.stage.as_deref(),
        _ => None,
    }?;
    (stage != "$default" && !stage.is_empty()).then(|| stage.to_owned())
}

/// Removes `/{stage}` from the front of the path, on a segment boundary; true if it did.
fn strip_stage_prefix(uri: &mut http::Uri, stage: &str) -> bool {
    let path = uri.path();
    let Some(rest) = path.strip_prefix('/').and_then(|p| p.strip_prefix(stage)) else {
        return false;
    };
    if !(rest.is_empty() || rest.starts_with('/')) {
        return false;
    }
    let new_path = if rest.is_empty() { "/" } else { rest };
    let path_and_query = match uri.query() {
        Some(query) => format!("{new_path}?{query}"),
        None => new_path.to_owned(),
    };
    let mut parts = uri.clone().into_parts();
    let Ok(pq) = path_and_query.parse() else {
        return false;
    };
    parts.path_and_query = Some(pq);
    match http::Uri::from_parts(parts) {
        Ok(new_uri) => {
            *uri = new_uri;
            true
        }
        Err(_) => false,
    }
}

/// Who sent the event's request, from what the AWS front door established: the source IP
/// (for ALB, the address it appended to X-Forwarded-For), the scheme and port the front door
/// served (API Gateway and Function URLs: HTTPS only; ALB: the X-Forwarded-Proto/-Port it
/// sets), and `domainName` as the host when the event has no `Host`.
fn client_info(context: Option<&RequestContext>, headers: &HeaderMap) -> ClientInfo {
    let (source_ip, domain) = match context {
        Some(RequestContext::ApiGatewayV1(c)) => (
            c.identity
                .source_ip
                .as_deref()
                .and_then(|ip| ip.parse().ok()),
            c.domain_name.as_deref(),
        ),
        Some(RequestContext::ApiGatewayV2(c)) => (
            c.http.source_ip.as_deref().and_then(|ip| ip.parse().ok()),
            c.domain_name.as_deref(),
        ),
        // ALB appends the address it saw as the last X-Forwarded-For entry.
        _ => (last_forwarded_for(headers), None),
    };
    let alb = matches!(context, Some(RequestContext::Alb(_)));
    let (proto, port) = if alb {
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
        (proto, port)
    } else {
        (
            HeaderValue::from_static("https"),
            Some(HeaderValue::from_static("443")),
        )
    };
    let host = if headers.contains_key(header::HOST) {
        None
    } else {
        domain
            .filter(|d| crate::trust::is_valid_host(d.as_bytes()))
            .and_then(|d| HeaderValue::from_str(d).ok())
    };
    let forwarded_for = match headers.get_all(X_FORWARDED_FOR).iter().count() {
        0 => None,
        1 => headers.get(X_FORWARDED_FOR).cloned(),
        _ => {
            let joined: Vec<&str> = headers
                .get_all(X_FORWARDED_FOR)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .collect();
            HeaderValue::from_str(&joined.join(", ")).ok()
        }
    };
    ClientInfo {
        ip: source_ip,
        forwarded_for,
        append_to_forwarded_for: None,
        proto,
        port,
        host,
        trusted_peer: true,
        direct_http: false,
    }
}

fn last_forwarded_for(headers: &HeaderMap) -> Option<IpAddr> {
    headers
        .get_all(X_FORWARDED_FOR)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .next_back()
        .and_then(|ip| ip.trim().parse().ok())
}

/// A 502 problem for an upstream body that broke while it was being buffered (this happens
/// after the router returned, so the request-id layer cannot render it).
fn body_error_response(request_id: Option<HeaderValue>) -> Response<Bytes> {
    let error = Error::IncompleteResponse;
    let id = request_id.unwrap_or(HeaderValue::from_static(""));
    let body = error.problem().to_json(id.to_str().unwrap_or_default());
    let mut response = Response::new(Bytes::from(body));
    *response.status_mut() = error.status();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, PROBLEM_JSON);
    response.headers_mut().insert(X_REQUEST_ID, id);
    response
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
fn event_body(headers: &HeaderMap, body: Bytes) -> (Option<EventBody>, bool) {
    if body.is_empty() {
        return (None, false);
    }
    let textual = !headers.contains_key(header::CONTENT_ENCODING)
        && headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_none_or(is_textual);
    if textual && let Ok(text) = std::str::from_utf8(&body) {
        return (Some(EventBody::Text(text.to_owned())), false);
    }
    (Some(EventBody::Binary(body.to_vec())), true)
}

fn into_lambda_response(
    origin: &RequestOrigin,
    alb_multi_value: bool,
    response: Response<Bytes>,
) -> LambdaResponse {
    let (parts, body) = response.into_parts();
    let (body, is_base64_encoded) = event_body(&parts.headers, body);
    let status_code = i64::from(parts.status.as_u16());
    let mut headers = parts.headers;
    match origin {
        RequestOrigin::ApiGatewayV2 => {
            // Payload 2.0 carries Set-Cookie in `cookies`; one header field cannot hold two.
            let cookies = headers
                .get_all(header::SET_COOKIE)
                .iter()
                .filter_map(|v| v.to_str().ok().map(str::to_owned))
                .collect();
            headers.remove(header::SET_COOKIE);
            let mut out = ApiGatewayV2httpResponse::default();
            out.status_code = status_code;
            out.headers = headers;
            out.cookies = cookies;
            out.body = body;
            out.is_base64_encoded = is_base64_encoded;
            LambdaResponse::HttpApi(out)
        }
        RequestOrigin::Alb => {
            let mut out = AlbTargetGroupResponse::default();
            out.status_code = status_code;
            out.status_description = Some(format!(
                "{} {}",
                parts.status.as_u16(),
                parts.status.canonical_reason().unwrap_or_default()
            ));
            if alb_multi_value {
                out.multi_value_headers = headers;
            } else {
                out.headers = headers;
            }
            out.body = body;
            out.is_base64_encoded = is_base64_encoded;
            LambdaResponse::Alb(out)
        }
        _ => {
            // REST API (payload 1.0): multiValueHeaders keeps repeated fields such as Set-Cookie.
            let mut out = ApiGatewayProxyResponse::default();
            out.status_code = status_code;
            out.multi_value_headers = headers;
            out.body = body;
            out.is_base64_encoded = is_base64_encoded;
            LambdaResponse::RestApi(out)
        }
    }
}

/// Tells the Lambda service why initialization failed (`/runtime/init/error`), so the failure
/// shows in the invocation result rather than only as an exit code.
pub async fn report_init_error(error_type: &str, message: &str) {
    let Ok(api) = std::env::var(LAMBDA_RUNTIME_API) else {
        return;
    };
    let url = format!("http://{api}/2018-06-01/runtime/init/error");
    let body =
        serde_json::json!({ "errorMessage": message, "errorType": error_type, "stackTrace": [] });
    let result = reqwest::Client::new()
        .post(url)
        .header("Lambda-Runtime-Function-Error-Type", error_type)
        .header(header::CONTENT_TYPE, "application/json")
        .body(body.to_string())
        .send()
        .await;
    if let Err(error) = result {
        tracing::error!(%error, "could not report the init error to the Lambda Runtime API");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stage_is_stripped_only_on_a_segment_boundary() {
        let mut uri: http::Uri = "https://h/prod/users/1?a=1".parse().unwrap();
        assert!(strip_stage_prefix(&mut uri, "prod"));
        assert_eq!(uri.path_and_query().unwrap().as_str(), "/users/1?a=1");

        let mut root: http::Uri = "/prod".parse().unwrap();
        assert!(strip_stage_prefix(&mut root, "prod"));
        assert_eq!(root.path(), "/");

        let mut other: http::Uri = "/production/x".parse().unwrap();
        assert!(!strip_stage_prefix(&mut other, "prod"));
        assert_eq!(other.path(), "/production/x");
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
