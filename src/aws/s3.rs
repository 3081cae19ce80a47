//! `s3`: GET, HEAD, PUT and DELETE of one object. A GET streams the object (never buffered
//! whole in server mode) with its Content-Type, Content-Length, ETag and Last-Modified, and
//! answers `Range` with 206; `If-None-Match` and `If-Match` are passed on (304, 412). A PUT
//! streams the body when its length is declared, keeps its Content-Type, stores the
//! correlation id as object metadata and answers 201 with the ETag. A missing object is a
//! 404 problem; a DELETE is 204.

use aws_sdk_s3::{
    Client,
    config::{RequestChecksumCalculation, ResponseChecksumValidation},
    primitives::{ByteStream, DateTime, DateTimeFormat},
};
use aws_smithy_runtime_api::client::{http::SharedHttpClient, result::SdkError};
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use axum::{body::Body, response::Response};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};

use super::{
    call::{Call, per_call, service_client},
    config::{AwsSettings, S3Action},
};
use crate::{
    error::Error,
    stall::{Side, StallTimeout},
};

/// The object's headers of a GetObject or HeadObject output (the same for both, as HEAD
/// answers what GET would, RFC 9110 §9.3.2).
macro_rules! object_headers {
    ($out:expr, $output:expr) => {{
        let out: &mut HeaderMap = &mut *$out;
        let output = &$output;
        put(out, header::CONTENT_TYPE, output.content_type());
        let length = output.content_length().map(|n| n.to_string());
        put(out, header::CONTENT_LENGTH, length.as_deref());
        put(out, header::ETAG, output.e_tag());
        let modified = http_date(output.last_modified());
        put(out, header::LAST_MODIFIED, modified.as_deref());
        put(out, header::CACHE_CONTROL, output.cache_control());
        put(out, header::CONTENT_ENCODING, output.content_encoding());
        put(
            out,
            header::CONTENT_DISPOSITION,
            output.content_disposition(),
        );
        out.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    }};
}

pub struct S3Route {
    client: Client,
    action: S3Action,
    /// Between chunks of an object being read.
    stall_timeout: std::time::Duration,
}

impl S3Route {
    pub fn new(
        base: &aws_types::SdkConfig,
        http: Option<SharedHttpClient>,
        action: &S3Action,
        settings: &AwsSettings,
    ) -> Self {
        let local = settings.endpoint_url.is_some();
        let client = service_client!(
            aws_sdk_s3,
            base,
            http,
            |config: aws_sdk_s3::config::Builder| {
                config
                    // Checksums only where S3 requires them: a streamed upload stays a plain body.
                    .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
                    .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
                    // A local endpoint (LocalStack, moto) has no per-bucket host names.
                    .force_path_style(local)
            }
        );
        Self {
            client,
            action: action.clone(),
            stall_timeout: settings.attempt_timeout,
        }
    }

    pub async fn call(&self, call: &mut Call) -> Result<Response, Error> {
        let key = call.render(&self.action.key)?;
        if key.is_empty() {
            return Err(Error::InvalidBody("the object key must not be empty"));
        }
        let resource = format!("{}/{key}", self.action.bucket);
        match call.parts.method.clone() {
            Method::GET => {
                call.describe("s3", "GetObject", resource);
                self.get(call, key).await
            }
            Method::HEAD => {
                call.describe("s3", "HeadObject", resource);
                self.head(call, key).await
            }
            Method::PUT => {
                call.describe("s3", "PutObject", resource);
                self.put(call, key).await
            }
            Method::DELETE => {
                call.describe("s3", "DeleteObject", resource);
                self.delete(call, key).await
            }
            _ => Err(Error::MethodNotAllowed {
                allow: HeaderValue::from_static("GET, HEAD, PUT, DELETE"),
            }),
        }
    }

    async fn get(&self, call: &mut Call, key: String) -> Result<Response, Error> {
        let headers = &call.parts.headers;
        let result = self
            .client
            .get_object()
            .bucket(&self.action.bucket)
            .key(key)
            .set_range(text(headers, header::RANGE))
            .set_if_none_match(text(headers, header::IF_NONE_MATCH))
            .set_if_match(text(headers, header::IF_MATCH))
            .customize()
            .config_override(per_call!(aws_sdk_s3, call))
            .send()
            .await;
        if let Err(error) = &result
            && not_modified(error)
        {
            return Ok(not_modified_response(&call.parts.headers));
        }
        let mut output = self.settle(call, result)?;
        let status = if output.content_range().is_some() {
            StatusCode::PARTIAL_CONTENT
        } else {
            StatusCode::OK
        };
        let mut response = Response::new(Body::new(StallTimeout::new(
            std::mem::take(&mut output.body).into_inner(),
            Side::Upstream,
            self.stall_timeout,
        )));
        *response.status_mut() = status;
        let out = response.headers_mut();
        object_headers!(out, output);
        put(out, header::CONTENT_RANGE, output.content_range());
        Ok(response)
    }

    async fn head(&self, call: &mut Call, key: String) -> Result<Response, Error> {
        let headers = &call.parts.headers;
        let result = self
            .client
            .head_object()
            .bucket(&self.action.bucket)
            .key(key)
            .set_if_none_match(text(headers, header::IF_NONE_MATCH))
            .set_if_match(text(headers, header::IF_MATCH))
            .customize()
            .config_override(per_call!(aws_sdk_s3, call))
            .send()
            .await;
        if let Err(error) = &result
            && not_modified(error)
        {
            return Ok(not_modified_response(&call.parts.headers));
        }
        let output = self.settle(call, result)?;
        let mut response = Response::default();
        let out = response.headers_mut();
        object_headers!(out, output);
        Ok(response)
    }

    async fn put(&self, call: &mut Call, key: String) -> Result<Response, Error> {
        let declared = call
            .parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<i64>().ok());
        let stream = call.take_stream();
        // A body of declared length is streamed to S3; one without (chunked) is read whole
        // first, within the body limit, since S3 needs the length up front.
        let (body, length) = match declared {
            Some(length) if length as u64 > call.body_limit => {
                return Err(Error::PayloadTooLarge {
                    limit: call.body_limit,
                });
            }
            Some(length) => (ByteStream::from_body_1_x(SyncBody::new(stream)), length),
            None => {
                let (bytes, _) = crate::limits::read_whole_body(&call.parts, stream).await?;
                let length = bytes.len() as i64;
                (ByteStream::from(bytes), length)
            }
        };
        let headers = &call.parts.headers;
        let result = self
            .client
            .put_object()
            .bucket(&self.action.bucket)
            .key(key)
            .body(body)
            .content_length(length)
            .set_content_type(text(headers, header::CONTENT_TYPE))
            .set_cache_control(text(headers, header::CACHE_CONTROL))
            .set_content_disposition(text(headers, header::CONTENT_DISPOSITION))
            .set_content_encoding(text(headers, header::CONTENT_ENCODING))
            .metadata("correlation-id", &call.correlation_id)
            .customize()
            .config_override(per_call!(aws_sdk_s3, call))
            .send()
            .await;
        let output = self.settle(call, result)?;
        let mut response = Response::default();
        *response.status_mut() = StatusCode::CREATED;
        put(response.headers_mut(), header::ETAG, output.e_tag());
        Ok(response)
    }

    async fn delete(&self, call: &mut Call, key: String) -> Result<Response, Error> {
        let result = self
            .client
            .delete_object()
            .bucket(&self.action.bucket)
            .key(key)
            .customize()
            .config_override(per_call!(aws_sdk_s3, call))
            .send()
            .await;
        self.settle(call, result)?;
        let mut response = Response::default();
        *response.status_mut() = StatusCode::NO_CONTENT;
        Ok(response)
    }

    /// [`Call::settle`], with S3's own answers that are the client's: a missing object, an
    /// unsatisfiable range, a failed precondition.
    fn settle<O, E>(
        &self,
        call: &mut Call,
        result: Result<O, SdkError<E, aws_smithy_runtime_api::client::orchestrator::HttpResponse>>,
    ) -> Result<O, Error>
    where
        O: aws_types::request_id::RequestId,
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let Err(error) = &result else {
            return call.settle(result);
        };
        let status = error.raw_response().map(|r| r.status().as_u16());
        match (status, error.code().unwrap_or_default()) {
            (_, "NoSuchKey") | (Some(404), "NotFound" | "") => Err(call.not_found("object")),
            (Some(412), _) | (_, "PreconditionFailed") => Err(Error::PreconditionFailed),
            (Some(416), _) | (_, "InvalidRange") => Err(Error::RangeNotSatisfiable),
            _ => call.settle(result),
        }
    }
}

/// S3 answered 304 to a conditional request.
fn not_modified<E>(
    error: &SdkError<E, aws_smithy_runtime_api::client::orchestrator::HttpResponse>,
) -> bool {
    error.raw_response().map(|r| r.status().as_u16()) == Some(304)
}

/// 304 Not Modified, with no body (RFC 9110 §15.4.5), naming the ETag the client holds.
fn not_modified_response(request: &HeaderMap) -> Response {
    let mut response = Response::default();
    *response.status_mut() = StatusCode::NOT_MODIFIED;
    if let Some(tag) = request.get(header::IF_NONE_MATCH) {
        response.headers_mut().insert(header::ETAG, tag.clone());
    }
    response
}

/// A request header's value as text.
fn text(headers: &HeaderMap, name: HeaderName) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

fn put(headers: &mut HeaderMap, name: HeaderName, value: Option<&str>) {
    if let Some(value) = value.and_then(|v| HeaderValue::from_str(v).ok()) {
        headers.insert(name, value);
    }
}

/// An IMF-fixdate (RFC 9110 §5.6.7).
fn http_date(time: Option<&DateTime>) -> Option<String> {
    time.and_then(|t| t.fmt(DateTimeFormat::HttpDate).ok())
}

/// A request body the SDK can hold: `Sync` because it is only ever polled through `&mut`.
struct SyncBody(sync_wrapper::SyncWrapper<Body>);

impl SyncBody {
    fn new(body: Body) -> Self {
        Self(sync_wrapper::SyncWrapper::new(body))
    }
}

impl http_body::Body for SyncBody {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let body = std::pin::Pin::new(self.get_mut().0.get_mut());
        body.poll_frame(cx)
    }

    fn size_hint(&self) -> http_body::SizeHint {
        // Only `&mut` reaches the body; the declared length is passed to S3 separately.
        http_body::SizeHint::default()
    }
}
