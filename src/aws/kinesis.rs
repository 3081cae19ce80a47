//! `kinesis`: PutRecord of the request body; 202 with the sequence number and shard.

use aws_sdk_kinesis::{Client, primitives::Blob};
use aws_smithy_runtime_api::client::http::SharedHttpClient;
use axum::response::Response;
use http::StatusCode;
use serde_json::json;

use super::{
    call::{Call, json_response, per_call, service_client},
    config::KinesisAction,
};
use crate::error::Error;

/// A record's largest size, data and partition key together (Kinesis quotas).
const MAX_RECORD: usize = 1 << 20;

pub struct KinesisRoute {
    client: Client,
    action: KinesisAction,
}

impl KinesisRoute {
    pub fn new(
        base: &aws_types::SdkConfig,
        http: Option<SharedHttpClient>,
        action: &KinesisAction,
    ) -> Self {
        Self {
            client: service_client!(aws_sdk_kinesis, base, http),
            action: action.clone(),
        }
    }

    pub async fn call(&self, call: &mut Call) -> Result<Response, Error> {
        let action = &self.action;
        call.describe("kinesis", "PutRecord", action.stream.as_str());
        let partition_key = call.render(&action.partition_key)?;
        if partition_key.is_empty() || partition_key.chars().count() > 256 {
            return Err(Error::InvalidBody(
                "the partition key must be 1 to 256 characters",
            ));
        }
        call.at_most(MAX_RECORD.saturating_sub(partition_key.len()))?;
        let request = self.client.put_record();
        let request = if action.stream.starts_with("arn:") {
            request.stream_arn(&action.stream)
        } else {
            request.stream_name(&action.stream)
        };
        let output = call.settle(
            request
                .data(Blob::new(call.body.to_vec()))
                .partition_key(partition_key)
                .customize()
                .config_override(per_call!(aws_sdk_kinesis, call))
                .send()
                .await,
        )?;
        Ok(json_response(
            StatusCode::ACCEPTED,
            &json!({
                "sequence_number": output.sequence_number(),
                "shard_id": output.shard_id(),
            }),
        ))
    }
}
