//! AWS service routes: a route whose action is `sqs`, `sns`, `s3`, `dynamodb`, `kinesis`,
//! `eventbridge` or `step_functions` calls that service with the AWS SDK for Rust, adding
//! what a Lambda in the middle would:
//!
//! - **retries** in the SDK's standard mode (full-jitter exponential backoff on throttling,
//!   transient and 5xx errors), each attempt and the whole call inside the request's
//!   deadline: a retry that could not finish before it does not start ([`call::Guard`]);
//! - a **correlation id** from the request (`[aws] correlation_id`, else the request id),
//!   logged with every call and sent along with what is sent (message attributes, S3
//!   metadata, EventBridge detail, Step Functions input);
//! - **errors** as problems: throttling after retries 503 with `Retry-After`, a failed
//!   condition 409, a missing object or item 404, too large 413, a service failure 502, a
//!   timeout 504; the AWS message goes to the log, never to the client;
//! - the route's **fallback** when the call fails after its retries, and its **fault**
//!   injected per attempt below the SDK's retry loop ([`fault`]), so retries really run.
//!
//! The SDK's base configuration is made at start-up, only when a route calls AWS; a route's
//! service client on its first call. Region and credentials come from the default chain
//! (Lambda's environment, ECS, IMDS, a profile), credentials lazily, so start-up makes no
//! network call.

#[cfg(feature = "aws")]
pub(crate) mod call;
pub mod config;
#[cfg(feature = "aws")]
mod fault;
pub mod iam;
#[cfg(feature = "aws")]
mod route;

#[cfg(feature = "dynamodb")]
mod dynamodb;
#[cfg(feature = "eventbridge")]
mod eventbridge;
#[cfg(feature = "kinesis")]
mod kinesis;
#[cfg(feature = "s3")]
mod s3;
#[cfg(feature = "step-functions")]
mod sfn;
#[cfg(feature = "sns")]
mod sns;
#[cfg(feature = "sqs")]
mod sqs;

#[cfg(feature = "aws")]
pub use route::{Aws, AwsRoute};

#[cfg(not(feature = "aws"))]
pub use absent::{Aws, AwsRoute};

/// A build without AWS services: validation refuses every AWS route, so none is made.
#[cfg(not(feature = "aws"))]
mod absent {
    use std::sync::Arc;

    use axum::{extract::Request, response::Response};

    use super::config::{AwsAction, AwsFault, AwsSettings};
    use crate::{config::ConfigError, routes::config::RoutePlan, routes::mock::MockRoute};

    #[derive(Clone, Debug)]
    pub struct Aws;

    impl Aws {
        pub async fn new(
            _settings: &AwsSettings,
            _routes: impl Iterator<Item = &RoutePlan>,
        ) -> Result<Option<Self>, ConfigError> {
            Ok(None)
        }
    }

    pub enum AwsRoute {}

    impl AwsRoute {
        pub fn new(
            _aws: &Aws,
            _action: &AwsAction,
            _route: Arc<str>,
            _fault: Option<AwsFault>,
            _fallback: Option<MockRoute>,
        ) -> Option<Self> {
            None
        }

        pub async fn respond(&self, _request: Request, _params: Vec<(String, String)>) -> Response {
            match *self {}
        }
    }
}
