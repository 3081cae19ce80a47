//! `sqs`: SendMessage of the request body; 202 with the message id.

use aws_sdk_sqs::{Client, types::MessageAttributeValue};
use aws_smithy_runtime_api::client::http::SharedHttpClient;
use axum::response::Response;
use http::StatusCode;
use serde_json::json;

use super::{
    call::{Call, json_response, per_call, service_client},
    config::SqsAction,
};
use crate::error::Error;

/// A message's largest size, body and attributes together (SQS quotas).
const MAX_MESSAGE: usize = 1 << 20;

pub struct SqsRoute {
    client: Client,
    action: SqsAction,
}

impl SqsRoute {
    pub fn new(
        base: &aws_types::SdkConfig,
        http: Option<SharedHttpClient>,
        action: &SqsAction,
    ) -> Self {
        Self {
            client: service_client!(aws_sdk_sqs, base, http),
            action: action.clone(),
        }
    }

    pub async fn call(&self, call: &mut Call) -> Result<Response, Error> {
        let action = &self.action;
        call.describe("sqs", "SendMessage", action.queue_url.as_str());
        call.at_most(MAX_MESSAGE)?;
        let body = call.text_body()?;
        if body.is_empty() {
            return Err(Error::InvalidBody("a message must not be empty"));
        }
        let mut request = self
            .client
            .send_message()
            .queue_url(&action.queue_url)
            .message_body(body)
            .message_attributes("correlation_id", attribute(&call.correlation_id)?);
        for (name, template) in &action.attributes {
            let value = call.render(template)?;
            // SQS refuses empty attribute values: an empty one is left out.
            if !value.is_empty() {
                request = request.message_attributes(name, attribute(&value)?);
            }
        }
        let request = request
            .set_message_group_id(call.render_opt(action.message_group_id.as_ref())?)
            .set_message_deduplication_id(call.render_opt(action.deduplication_id.as_ref())?)
            .set_delay_seconds(action.delay.map(|d| d.as_secs() as i32));
        let output = call.settle(
            request
                .customize()
                .config_override(per_call!(aws_sdk_sqs, call))
                .send()
                .await,
        )?;
        let mut body = json!({ "message_id": output.message_id() });
        if let Some(sequence) = output.sequence_number() {
            body["sequence_number"] = json!(sequence);
        }
        Ok(json_response(StatusCode::ACCEPTED, &body))
    }
}

fn attribute(value: &str) -> Result<MessageAttributeValue, Error> {
    MessageAttributeValue::builder()
        .data_type("String")
        .string_value(value)
        .build()
        .map_err(|e| Error::Internal(format!("SQS message attribute: {e}")))
}
