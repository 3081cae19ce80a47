//! `eventbridge`: PutEvents with the JSON body as the event's detail (the correlation id
//! added to it as `correlation_id`); 202 with the event id. A failed entry is a failure.

use aws_sdk_eventbridge::{Client, types::PutEventsRequestEntry};
use aws_smithy_runtime_api::client::http::SharedHttpClient;
use axum::response::Response;
use http::StatusCode;
use serde_json::json;

use super::{
    call::{Call, json_response, per_call, service_client},
    config::EventBridgeAction,
};
use crate::error::Error;

/// An entry's largest size (EventBridge quotas).
const MAX_ENTRY: usize = 256 << 10;

pub struct EventBridgeRoute {
    client: Client,
    action: EventBridgeAction,
}

impl EventBridgeRoute {
    pub fn new(
        base: &aws_types::SdkConfig,
        http: Option<SharedHttpClient>,
        action: &EventBridgeAction,
    ) -> Self {
        Self {
            client: service_client!(aws_sdk_eventbridge, base, http),
            action: action.clone(),
        }
    }

    pub async fn call(&self, call: &mut Call) -> Result<Response, Error> {
        let action = &self.action;
        call.describe("eventbridge", "PutEvents", action.event_bus.as_str());
        call.at_most(MAX_ENTRY)?;
        let mut detail = call.json_body()?;
        let Some(members) = detail.as_object_mut() else {
            return Err(Error::InvalidBody(
                "an event's detail must be a JSON object",
            ));
        };
        members
            .entry("correlation_id")
            .or_insert_with(|| json!(call.correlation_id));
        let entry = PutEventsRequestEntry::builder()
            .event_bus_name(&action.event_bus)
            .source(call.render(&action.source)?)
            .detail_type(call.render(&action.detail_type)?)
            .detail(detail.to_string())
            .build();
        let result = self
            .client
            .put_events()
            .entries(entry)
            .customize()
            .config_override(per_call!(aws_sdk_eventbridge, call))
            .send()
            .await;
        let output = call.settle(result)?;
        let entry = output.entries().first();
        if output.failed_entry_count() > 0 || entry.and_then(|e| e.error_code()).is_some() {
            let code = entry.and_then(|e| e.error_code()).unwrap_or("unknown");
            let message = entry.and_then(|e| e.error_message()).unwrap_or("");
            tracing::warn!(bus = %action.event_bus, code, message, "EventBridge refused the event");
            call.note_error_code(code);
            return Err(if code.contains("Throttl") {
                Error::AwsThrottled {
                    service: "eventbridge",
                }
            } else {
                Error::AwsFailed {
                    service: "eventbridge",
                }
            });
        }
        Ok(json_response(
            StatusCode::ACCEPTED,
            &json!({ "event_id": entry.and_then(|e| e.event_id()) }),
        ))
    }
}
