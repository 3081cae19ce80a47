//! `proxyfn iam`: the IAM policy the configured AWS routes need, and nothing more: each
//! route's actions on its own resources (a queue, a topic, a table, a bucket's key prefix).

use std::collections::{BTreeMap, BTreeSet};

use http::Method;
use serde_json::{Value, json};

use super::config::{AwsAction, DynamoOperation};
use crate::config::Plan;

/// The policy document (IAM JSON, version 2012-10-17).
pub fn policy(plan: &Plan) -> Value {
    let region = plan.aws.region.as_deref().unwrap_or("*");
    // resource -> actions; S3 list permissions carry a prefix condition, kept apart.
    let mut grants: BTreeMap<String, BTreeSet<&'static str>> = BTreeMap::new();
    let mut listings: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for route in plan.routes.iter() {
        let Some(action) = route.aws() else { continue };
        let methods = route.methods.clone().unwrap_or_else(|| action.methods());
        let mut grant = |resource: String, name: &'static str| {
            grants.entry(resource).or_default().insert(name);
        };
        match action {
            AwsAction::Sqs(sqs) => grant(sqs.queue_arn.clone(), "sqs:SendMessage"),
            AwsAction::Sns(sns) => grant(sns.topic_arn.clone(), "sns:Publish"),
            AwsAction::S3(s3) => {
                let prefix = s3.key.literal_prefix();
                let objects = match s3.key.literal() {
                    Some(key) => format!("arn:aws:s3:::{}/{key}", s3.bucket),
                    None => format!("arn:aws:s3:::{}/{prefix}*", s3.bucket),
                };
                for method in &methods {
                    match *method {
                        Method::GET | Method::HEAD => {
                            grant(objects.clone(), "s3:GetObject");
                            // Without it, S3 answers 403 instead of 404 for a missing key.
                            listings
                                .entry(format!("arn:aws:s3:::{}", s3.bucket))
                                .or_default()
                                .insert(format!("{prefix}*"));
                        }
                        Method::PUT => grant(objects.clone(), "s3:PutObject"),
                        Method::DELETE => grant(objects.clone(), "s3:DeleteObject"),
                        _ => {}
                    }
                }
            }
            AwsAction::DynamoDb(dynamodb) => {
                let table = arn_or(&dynamodb.table, |name| {
                    format!("arn:aws:dynamodb:{region}:*:table/{name}")
                });
                for method in &methods {
                    grant(
                        table.clone(),
                        match dynamodb.operation_for(method) {
                            DynamoOperation::Get => "dynamodb:GetItem",
                            DynamoOperation::Put => "dynamodb:PutItem",
                            DynamoOperation::Delete => "dynamodb:DeleteItem",
                            DynamoOperation::Query => "dynamodb:Query",
                        },
                    );
                }
            }
            AwsAction::Kinesis(kinesis) => grant(
                arn_or(&kinesis.stream, |name| {
                    format!("arn:aws:kinesis:{region}:*:stream/{name}")
                }),
                "kinesis:PutRecord",
            ),
            AwsAction::EventBridge(events) => grant(
                arn_or(&events.event_bus, |name| {
                    format!("arn:aws:events:{region}:*:event-bus/{name}")
                }),
                "events:PutEvents",
            ),
            AwsAction::StepFunctions(sfn) => {
                grant(sfn.state_machine_arn.clone(), "states:StartExecution")
            }
        }
    }
    let mut statements: Vec<Value> = grants
        .into_iter()
        .map(|(resource, actions)| {
            json!({
                "Effect": "Allow",
                "Action": actions.into_iter().collect::<Vec<_>>(),
                "Resource": resource,
            })
        })
        .collect();
    statements.extend(listings.into_iter().map(|(bucket, prefixes)| {
        json!({
            "Effect": "Allow",
            "Action": ["s3:ListBucket"],
            "Resource": bucket,
            "Condition": { "StringLike": { "s3:prefix": prefixes.into_iter().collect::<Vec<_>>() } },
        })
    }));
    json!({ "Version": "2012-10-17", "Statement": statements })
}

/// `name_or_arn` if it is an ARN, else the ARN `arn` makes of the name.
fn arn_or(name_or_arn: &str, arn: impl Fn(&str) -> String) -> String {
    if name_or_arn.starts_with("arn:") {
        name_or_arn.to_owned()
    } else {
        arn(name_or_arn)
    }
}
