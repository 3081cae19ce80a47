//! `sns`: Publish of the request body; 202 with the message id.

use aws_sdk_sns::{Client, types::MessageAttributeValue};
use aws_smithy_runtime_api::client::http::SharedHttpClient;
use axum::response::Response;
use http::StatusCode;
use serde_json::json;

use super::{
    call::{Call, json_response, per_call, service_client},
    config::SnsAction,
};
use crate::error::Error;

/// A message's largest size (SNS quotas).
const MAX_MESSAGE: usize = 256 << 10;

pub struct SnsRoute {
    client: Client,
    action: SnsAction,
}

impl SnsRoute {
    pub fn new(
        base: &aws_types::SdkConfig,
        http: Option<SharedHttpClient>,
        action: &SnsAction,
    ) -> Self {
        Self {
            client: service_client!(aws_sdk_sns, base, http),
            action: action.clone(),
        }
    }

    pub async fn call(&self, call: &mut Call) -> Result<Response, Error> {
        let action = &self.action;
        call.describe("sns", "Publish", action.topic_arn.as_str());
        call.at_most(MAX_MESSAGE)?;
        let body = call.text_body()?;
        if body.is_empty() {
            return Err(Error::InvalidBody("a message must not be empty"));
        }
        let mut request = self
            .client
            .publish()
            .topic_arn(&action.topic_arn)
            .message(body)
            .message_attributes("correlation_id", attribute(&call.correlation_id)?);
        for (name, template) in &action.attributes {
            let value = call.render(template)?;
            if !value.is_empty() {
                request = request.message_attributes(name, attribute(&value)?);
            }
        }
        let request = request
            .set_subject(call.render_opt(action.subject.as_ref())?)
            .set_message_group_id(call.render_opt(action.message_group_id.as_ref())?);
        let output = call.settle(
            request
                .customize()
                .config_override(per_call!(aws_sdk_sns, call))
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
        .map_err(|e| Error::Internal(format!("SNS message attribute: {e}")))
}
