//! `step_functions`: StartExecution with the JSON body as input (an object gets the
//! correlation id as `correlation_id`); 202 with the execution ARN.

use aws_sdk_sfn::Client;
use aws_smithy_runtime_api::client::http::SharedHttpClient;
use axum::response::Response;
use http::StatusCode;
use serde_json::json;

use super::{
    call::{Call, json_response, per_call, service_client},
    config::StepFunctionsAction,
};
use crate::error::Error;

/// An execution input's largest size (Step Functions quotas).
const MAX_INPUT: usize = 256 << 10;

pub struct SfnRoute {
    client: Client,
    action: StepFunctionsAction,
}

impl SfnRoute {
    pub fn new(
        base: &aws_types::SdkConfig,
        http: Option<SharedHttpClient>,
        action: &StepFunctionsAction,
    ) -> Self {
        Self {
            client: service_client!(aws_sdk_sfn, base, http),
            action: action.clone(),
        }
    }

    pub async fn call(&self, call: &mut Call) -> Result<Response, Error> {
        let action = &self.action;
        call.describe(
            "step_functions",
            "StartExecution",
            action.state_machine_arn.as_str(),
        );
        call.at_most(MAX_INPUT)?;
        let mut input = if call.body.is_empty() {
            json!({})
        } else {
            call.json_body()?
        };
        if let Some(members) = input.as_object_mut() {
            members
                .entry("correlation_id")
                .or_insert_with(|| json!(call.correlation_id));
        }
        let name = call.render_opt(action.name.as_ref())?;
        if let Some(name) = &name
            && (name.is_empty() || name.chars().count() > 80)
        {
            return Err(Error::InvalidBody(
                "an execution name must be 1 to 80 characters",
            ));
        }
        let output = call.settle(
            self.client
                .start_execution()
                .state_machine_arn(&action.state_machine_arn)
                .input(input.to_string())
                .set_name(name)
                .customize()
                .config_override(per_call!(aws_sdk_sfn, call))
                .send()
                .await,
        )?;
        let started = output
            .start_date()
            .fmt(aws_smithy_types::date_time::Format::DateTime)
            .ok();
        Ok(json_response(
            StatusCode::ACCEPTED,
            &json!({
                "execution_arn": output.execution_arn(),
                "start_date": started,
            }),
        ))
    }
}
