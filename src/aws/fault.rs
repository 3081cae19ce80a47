//! A route's `fault` on an AWS route, injected per attempt inside the SDK's HTTP client, below
//! its retry loop: an injected `ThrottlingException` is classified, backed off and retried by
//! the SDK exactly as a real one would be. The answers are in the service's own protocol
//! (JSON, query or REST-XML errors), so the SDK parses their codes.

use aws_smithy_runtime_api::{
    client::{
        http::{
            HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings,
            SharedHttpClient, SharedHttpConnector,
        },
        orchestrator::{HttpRequest, HttpResponse},
        result::ConnectorError,
        runtime_components::RuntimeComponents,
    },
    http::StatusCode,
};
use aws_smithy_types::body::SdkBody;

use super::config::{AwsAction, AwsFault};

/// The wire protocol of a service's errors.
#[derive(Clone, Copy, Debug)]
enum Protocol {
    /// awsJson 1.0/1.1: DynamoDB, Kinesis, EventBridge, Step Functions, SQS.
    Json,
    /// awsQuery: SNS.
    Query,
    /// REST-XML: S3.
    RestXml,
}

#[derive(Clone, Debug)]
pub struct FaultClient {
    inner: SharedHttpClient,
    fault: std::sync::Arc<AwsFault>,
    protocol: Protocol,
}

impl FaultClient {
    /// Wraps `inner`, the gateway's AWS HTTP client.
    pub fn wrapping(
        inner: SharedHttpClient,
        fault: AwsFault,
        action: &AwsAction,
    ) -> SharedHttpClient {
        let protocol = match action {
            AwsAction::Sns(_) => Protocol::Query,
            AwsAction::S3(_) => Protocol::RestXml,
            _ => Protocol::Json,
        };
        SharedHttpClient::new(Self {
            inner,
            fault: std::sync::Arc::new(fault),
            protocol,
        })
    }
}

impl HttpClient for FaultClient {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        SharedHttpConnector::new(FaultConnector {
            inner: self.inner.http_connector(settings, components),
            fault: self.fault.clone(),
            protocol: self.protocol,
        })
    }
}

#[derive(Debug)]
struct FaultConnector {
    inner: SharedHttpConnector,
    fault: std::sync::Arc<AwsFault>,
    protocol: Protocol,
}

fn fires(probability: f64) -> bool {
    fastrand::f64() < probability
}

impl HttpConnector for FaultConnector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let fault = self.fault.clone();
        let inner = self.inner.clone();
        let protocol = self.protocol;
        HttpConnectorFuture::new(async move {
            if let Some((delay, probability)) = fault.delay
                && fires(probability)
            {
                tracing::info!(
                    delay_ms = delay.as_millis() as u64,
                    "fault injected into an AWS attempt: delay"
                );
                tokio::time::sleep(delay).await;
            }
            if let Some(probability) = fault.reset
                && fires(probability)
            {
                tracing::info!("fault injected into an AWS attempt: connection reset");
                return Err(ConnectorError::io(
                    std::io::Error::new(
                        std::io::ErrorKind::ConnectionReset,
                        "connection reset (fault injected by proxyfn)",
                    )
                    .into(),
                ));
            }
            if let Some((code, probability)) = &fault.error
                && fires(*probability)
            {
                tracing::info!(code, "fault injected into an AWS attempt: error");
                return Ok(error_response(protocol, status_of(protocol, code), code));
            }
            if let Some((status, probability)) = fault.status
                && fires(probability)
            {
                tracing::info!(status, "fault injected into an AWS attempt: status");
                let code = match protocol {
                    Protocol::RestXml => "InternalError",
                    _ => "InternalFailure",
                };
                return Ok(error_response(protocol, status, code));
            }
            inner.call(request).await
        })
    }
}

/// The status a service answers `code` with: server-side failures 5xx (so the SDK retries
/// them as transient), throttling as the protocol does (S3's SlowDown is a 503), the rest 400.
fn status_of(protocol: Protocol, code: &str) -> u16 {
    if code.contains("Internal") {
        500
    } else if code.contains("Unavailable")
        || (matches!(protocol, Protocol::RestXml) && super::call::THROTTLING.contains(&code))
    {
        503
    } else {
        400
    }
}

/// An error answer as the service would send it.
fn error_response(protocol: Protocol, status: u16, code: &str) -> HttpResponse {
    const MESSAGE: &str = "fault injected by proxyfn";
    let (content_type, body) = match protocol {
        Protocol::Json => (
            "application/x-amz-json-1.1",
            serde_json::json!({ "__type": code, "message": MESSAGE }).to_string(),
        ),
        Protocol::Query => (
            "text/xml",
            format!(
                "<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code><Message>{MESSAGE}</Message></Error><RequestId>proxyfn-fault</RequestId></ErrorResponse>"
            ),
        ),
        Protocol::RestXml => (
            "application/xml",
            format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{code}</Code><Message>{MESSAGE}</Message><RequestId>proxyfn-fault</RequestId></Error>"
            ),
        ),
    };
    let status = StatusCode::try_from(status)
        .unwrap_or_else(|_| StatusCode::try_from(500).expect("500 is a status code"));
    let mut response = HttpResponse::new(status, SdkBody::from(body));
    response.headers_mut().insert("content-type", content_type);
    if let Protocol::Json = protocol {
        response
            .headers_mut()
            .insert("x-amzn-errortype", code.to_owned());
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_injected_error_has_the_status_the_service_would_answer_it_with() {
        assert_eq!(status_of(Protocol::Json, "ThrottlingException"), 400);
        assert_eq!(status_of(Protocol::Json, "InternalServerError"), 500);
        assert_eq!(status_of(Protocol::Query, "ServiceUnavailable"), 503);
        assert_eq!(status_of(Protocol::RestXml, "SlowDown"), 503);
        assert_eq!(status_of(Protocol::RestXml, "AccessDenied"), 400);
    }

    #[test]
    fn an_injected_json_error_names_its_code_where_the_sdk_reads_it() {
        let response = error_response(Protocol::Json, 400, "ThrottlingException");
        assert_eq!(
            response.headers().get("x-amzn-errortype"),
            Some("ThrottlingException")
        );
        let body = std::str::from_utf8(response.body().bytes().unwrap()).unwrap();
        assert!(
            body.contains("\"__type\":\"ThrottlingException\""),
            "{body}"
        );
    }
}
