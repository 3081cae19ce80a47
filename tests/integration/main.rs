//! Integration tests: the real gateway against real upstream servers, the real binary for the
//! command line and for Lambda (driven through a local Lambda Runtime API).

mod app;
mod helpers;
mod lambda_event;
#[cfg(feature = "aws")]
mod moto;
mod redis_server;
mod runtime_api;
mod signer;
mod tokens;

mod aggregate;
mod auth;
mod availability;
#[cfg(all(
    feature = "sqs",
    feature = "sns",
    feature = "s3",
    feature = "dynamodb",
    feature = "kinesis",
    feature = "eventbridge",
    feature = "step-functions"
))]
mod aws;
mod cache;
mod cli;
mod compression;
mod cors;
mod docs;
mod endpoints;
mod lambda;
mod lambda_events;
mod lambda_stream;
mod limits;
mod observability;
mod proxy;
mod ratelimit;
mod reload;
mod resilience;
mod server;
mod transform;
mod trust;
mod validation;
mod versioning;
