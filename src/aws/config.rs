//! `[aws]` (region, endpoint, retries, correlation ids) and the route keys that send a request
//! to an AWS service: `sqs`, `sns`, `s3`, `dynamodb`, `kinesis`, `eventbridge` and
//! `step_functions`, validated into an [`AwsAction`]. Names of queues, tables and buckets
//! cannot be checked offline; their shape (URLs, ARNs, names) and every template can.

use std::{collections::BTreeMap, time::Duration};

use http::{HeaderName, Method};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{
    config::{HumanDuration, Problems, units::millis, units::secs},
    template::Template,
};

/// `[aws]`
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct AwsConfig {
    /// The region of every call; default: the environment (`AWS_REGION`, the profile).
    pub region: Option<String>,
    /// One endpoint for every service (LocalStack, moto); default: AWS's own.
    pub endpoint_url: Option<String>,
    /// The SDK's standard retry mode: full-jitter exponential backoff on throttling,
    /// transient and 5xx errors.
    pub retry: AwsRetryConfig,
    /// Bound on each attempt, within the request's deadline.
    pub attempt_timeout: HumanDuration,
    /// Where a request's correlation id comes from, the first found: `header:NAME`,
    /// `query:NAME` or `body:/json/pointer`; else the request id.
    pub correlation_id: Vec<String>,
}

impl Default for AwsConfig {
    fn default() -> Self {
        Self {
            region: None,
            endpoint_url: None,
            retry: AwsRetryConfig::default(),
            attempt_timeout: secs(10),
            correlation_id: Vec::new(),
        }
    }
}

/// `[aws] retry = { attempts, initial_backoff, max_backoff }`
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct AwsRetryConfig {
    /// Attempts in all, the first included; 1 turns retries off.
    pub attempts: u32,
    pub initial_backoff: HumanDuration,
    pub max_backoff: HumanDuration,
}

impl Default for AwsRetryConfig {
    fn default() -> Self {
        Self {
            attempts: 3,
            initial_backoff: millis(50),
            max_backoff: secs(2),
        }
    }
}

/// `[aws]`, validated.
#[derive(Clone, Debug)]
pub struct AwsSettings {
    pub region: Option<String>,
    pub endpoint_url: Option<String>,
    pub attempts: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    pub attempt_timeout: Duration,
    pub correlation: Vec<CorrelationSource>,
}

/// One place a correlation id may come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CorrelationSource {
    Header(HeaderName),
    Query(String),
    /// A JSON pointer into the body.
    Body(String),
}

pub fn settings(config: &AwsConfig, problems: &mut Problems) -> AwsSettings {
    if let Some(region) = &config.region
        && (region.is_empty()
            || !region
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'))
    {
        problems.add(
            "aws.region",
            format!("not a region name such as \"eu-west-1\": {region:?}"),
        );
    }
    if let Some(endpoint) = &config.endpoint_url {
        match url::Url::parse(endpoint) {
            Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => {}
            _ => problems.add(
                "aws.endpoint_url",
                format!("not an http:// or https:// URL: {endpoint:?}"),
            ),
        }
    }
    let retry = &config.retry;
    if !(1..=10).contains(&retry.attempts) {
        problems.add("aws.retry.attempts", "must be between 1 and 10");
    }
    if retry.initial_backoff.0.is_zero() {
        problems.add("aws.retry.initial_backoff", "must be greater than zero");
    }
    if retry.max_backoff.0 < retry.initial_backoff.0 {
        problems.add("aws.retry.max_backoff", "must be at least initial_backoff");
    }
    if config.attempt_timeout.0.is_zero() {
        problems.add("aws.attempt_timeout", "must be greater than zero");
    }
    let correlation = config
        .correlation_id
        .iter()
        .enumerate()
        .filter_map(|(i, source)| {
            correlation_source(source)
                .map_err(|message| problems.add(format!("aws.correlation_id[{i}]"), message))
                .ok()
        })
        .collect();
    AwsSettings {
        region: config.region.clone(),
        endpoint_url: config.endpoint_url.clone(),
        attempts: retry.attempts,
        initial_backoff: retry.initial_backoff.0,
        max_backoff: retry.max_backoff.0,
        attempt_timeout: config.attempt_timeout.0,
        correlation,
    }
}

fn correlation_source(text: &str) -> Result<CorrelationSource, String> {
    let invalid = || format!("{text:?} is not `header:NAME`, `query:NAME` or `body:/json/pointer`");
    let (kind, name) = text.split_once(':').ok_or_else(invalid)?;
    match kind {
        "header" => HeaderName::try_from(name.to_ascii_lowercase())
            .map(CorrelationSource::Header)
            .map_err(|_| format!("not a header name: {name:?}")),
        "query" if !name.is_empty() => Ok(CorrelationSource::Query(name.to_owned())),
        "body" if name.starts_with('/') => Ok(CorrelationSource::Body(name.to_owned())),
        "body" => Err(format!(
            "a JSON pointer starts with '/', as in body:/{name}"
        )),
        _ => Err(invalid()),
    }
}

/// `sqs = { queue_url, message_group_id, deduplication_id, delay, attributes }`: SendMessage
/// with the request body.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SqsConfig {
    pub queue_url: String,
    /// Template; required by FIFO queues.
    pub message_group_id: Option<String>,
    /// Template; FIFO queues only (without it, the queue's content-based deduplication).
    pub deduplication_id: Option<String>,
    /// Delivery delay, up to 15 minutes; standard queues only.
    pub delay: Option<HumanDuration>,
    /// String message attributes: name -> template.
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
}

/// `sns = { topic_arn, subject, attributes, message_group_id }`: Publish of the request body.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SnsConfig {
    pub topic_arn: String,
    /// Template.
    pub subject: Option<String>,
    /// String message attributes: name -> template.
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    /// Template; required by FIFO topics.
    pub message_group_id: Option<String>,
}

/// `s3 = { bucket, key }`: GET, HEAD, PUT and DELETE of one object.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct S3Config {
    pub bucket: String,
    /// Template of the object key.
    pub key: String,
}

/// `dynamodb = { table, key, action, limit, condition }`
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DynamoDbConfig {
    /// Table name or ARN.
    pub table: String,
    /// The key attributes: name -> template (a string), or name -> { number = template }.
    pub key: BTreeMap<String, DynamoKeyConfig>,
    /// `get`, `put`, `delete` or `query`; default: by method (GET get, PUT and POST put,
    /// DELETE delete).
    pub action: Option<String>,
    /// Items per page of a `query`.
    pub limit: Option<u32>,
    /// A ConditionExpression for `put` and `delete`; when it fails, 409.
    pub condition: Option<String>,
}

/// A key attribute's template, as a string (`S`) or a number (`N`).
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum DynamoKeyConfig {
    String(String),
    Number { number: String },
}

/// `kinesis = { stream, partition_key }`: PutRecord of the request body.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KinesisConfig {
    /// Stream name or ARN.
    pub stream: String,
    /// Template.
    pub partition_key: String,
}

/// `eventbridge = { event_bus, source, detail_type }`: PutEvents with the JSON body as detail.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EventBridgeConfig {
    /// Bus name or ARN; default `default`.
    #[serde(default = "default_bus")]
    pub event_bus: String,
    /// Template.
    pub source: String,
    /// Template.
    pub detail_type: String,
}

fn default_bus() -> String {
    "default".to_owned()
}

/// `step_functions = { state_machine_arn, name }`: StartExecution with the JSON body as input.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StepFunctionsConfig {
    pub state_machine_arn: String,
    /// Template of the execution name (unique per state machine for 90 days: a retried
    /// request with the same name starts no second execution).
    pub name: Option<String>,
}

/// A route's `fault` on an AWS route: injected into each attempt, below the SDK's retries.
#[derive(Clone, Debug, PartialEq)]
pub struct AwsFault {
    pub delay: Option<(Duration, f64)>,
    /// An error answer with this AWS error code (`ThrottlingException`).
    pub error: Option<(String, f64)>,
    /// An error answer with this status and the service's generic internal-error code.
    pub status: Option<(u16, f64)>,
    /// The connection fails before an answer.
    pub reset: Option<f64>,
}

/// The AWS keys of one route, as the file spells them.
#[derive(Clone, Copy, Debug, Default)]
pub struct AwsRouteKeys<'a> {
    pub sqs: Option<&'a SqsConfig>,
    pub sns: Option<&'a SnsConfig>,
    pub s3: Option<&'a S3Config>,
    pub dynamodb: Option<&'a DynamoDbConfig>,
    pub kinesis: Option<&'a KinesisConfig>,
    pub eventbridge: Option<&'a EventBridgeConfig>,
    pub step_functions: Option<&'a StepFunctionsConfig>,
}

impl AwsRouteKeys<'_> {
    /// The keys set, by name.
    pub fn set(&self) -> Vec<&'static str> {
        [
            ("sqs", self.sqs.is_some()),
            ("sns", self.sns.is_some()),
            ("s3", self.s3.is_some()),
            ("dynamodb", self.dynamodb.is_some()),
            ("kinesis", self.kinesis.is_some()),
            ("eventbridge", self.eventbridge.is_some()),
            ("step_functions", self.step_functions.is_some()),
        ]
        .into_iter()
        .filter_map(|(name, set)| set.then_some(name))
        .collect()
    }
}

/// An AWS service call a route makes, validated.
#[derive(Clone, Debug)]
pub enum AwsAction {
    Sqs(SqsAction),
    Sns(SnsAction),
    S3(S3Action),
    DynamoDb(DynamoDbAction),
    Kinesis(KinesisAction),
    EventBridge(EventBridgeAction),
    StepFunctions(StepFunctionsAction),
}

#[derive(Clone, Debug)]
pub struct SqsAction {
    pub queue_url: String,
    /// `arn:aws:sqs:REGION:ACCOUNT:NAME`, from the URL.
    pub queue_arn: String,
    pub message_group_id: Option<Template>,
    pub deduplication_id: Option<Template>,
    pub delay: Option<Duration>,
    pub attributes: Vec<(String, Template)>,
}

#[derive(Clone, Debug)]
pub struct SnsAction {
    pub topic_arn: String,
    pub subject: Option<Template>,
    pub attributes: Vec<(String, Template)>,
    pub message_group_id: Option<Template>,
}

#[derive(Clone, Debug)]
pub struct S3Action {
    pub bucket: String,
    pub key: Template,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DynamoOperation {
    Get,
    Put,
    Delete,
    Query,
}

#[derive(Clone, Debug)]
pub struct DynamoKey {
    pub name: String,
    pub value: Template,
    pub number: bool,
}

#[derive(Clone, Debug)]
pub struct DynamoDbAction {
    pub table: String,
    pub key: Vec<DynamoKey>,
    /// `None`: chosen by the request's method.
    pub operation: Option<DynamoOperation>,
    pub limit: u32,
    pub condition: Option<String>,
}

impl DynamoDbAction {
    /// The operation a request of `method` runs.
    pub fn operation_for(&self, method: &Method) -> DynamoOperation {
        self.operation.unwrap_or(match *method {
            Method::PUT | Method::POST => DynamoOperation::Put,
            Method::DELETE => DynamoOperation::Delete,
            _ => DynamoOperation::Get,
        })
    }
}

#[derive(Clone, Debug)]
pub struct KinesisAction {
    /// A name, or an ARN (`arn:...:kinesis:...:stream/NAME`).
    pub stream: String,
    pub partition_key: Template,
}

#[derive(Clone, Debug)]
pub struct EventBridgeAction {
    pub event_bus: String,
    pub source: Template,
    pub detail_type: Template,
}

#[derive(Clone, Debug)]
pub struct StepFunctionsAction {
    pub state_machine_arn: String,
    pub name: Option<Template>,
}

impl AwsAction {
    /// The service's name, as in the route key and the cargo feature.
    pub fn service(&self) -> &'static str {
        match self {
            AwsAction::Sqs(_) => "sqs",
            AwsAction::Sns(_) => "sns",
            AwsAction::S3(_) => "s3",
            AwsAction::DynamoDb(_) => "dynamodb",
            AwsAction::Kinesis(_) => "kinesis",
            AwsAction::EventBridge(_) => "eventbridge",
            AwsAction::StepFunctions(_) => "step_functions",
        }
    }

    /// The methods the action serves, when the route does not list its own.
    pub fn methods(&self) -> Vec<Method> {
        match self {
            AwsAction::S3(_) => vec![Method::GET, Method::PUT, Method::DELETE],
            AwsAction::DynamoDb(action) => match action.operation {
                None => vec![Method::GET, Method::PUT, Method::POST, Method::DELETE],
                Some(DynamoOperation::Get | DynamoOperation::Query) => vec![Method::GET],
                Some(DynamoOperation::Put) => vec![Method::PUT, Method::POST],
                Some(DynamoOperation::Delete) => vec![Method::DELETE],
            },
            _ => vec![Method::POST],
        }
    }
}

/// Whether the cargo feature of `service` is built in.
// Not `matches!`: which arms are true depends on the build's features.
#[allow(clippy::match_like_matches_macro)]
pub(super) fn built_in(service: &str) -> bool {
    match service {
        "sqs" => cfg!(feature = "sqs"),
        "sns" => cfg!(feature = "sns"),
        "s3" => cfg!(feature = "s3"),
        "dynamodb" => cfg!(feature = "dynamodb"),
        "kinesis" => cfg!(feature = "kinesis"),
        "eventbridge" => cfg!(feature = "eventbridge"),
        "step_functions" => cfg!(feature = "step-functions"),
        _ => false,
    }
}

/// The cargo feature that builds `service` in.
fn feature_of(service: &str) -> &str {
    match service {
        "step_functions" => "step-functions",
        other => other,
    }
}

/// Validates the one AWS key a route sets (`key` is `routes[N]`); `params` are its path
/// parameters and `methods` the ones it lists.
pub fn action(
    key: &str,
    keys: AwsRouteKeys<'_>,
    params: &[String],
    methods: Option<&[Method]>,
    problems: &mut Problems,
) -> Option<AwsAction> {
    let before = problems.count();
    let template = |field: String, text: &str, problems: &mut Problems| {
        Template::parse(text, params)
            .map_err(|message| problems.add(field, message))
            .ok()
    };
    let service = *keys.set().first()?;
    let at = format!("{key}.{service}");
    if !built_in(service) {
        problems.add(
            &at,
            format!(
                "this proxyfn was built without AWS {service}: build it with the `{}` cargo feature",
                feature_of(service)
            ),
        );
        return None;
    }
    let action = if let Some(sqs) = keys.sqs {
        let queue_arn = sqs_queue_arn(&sqs.queue_url)
            .map_err(|message| problems.add(format!("{at}.queue_url"), message))
            .ok();
        let fifo = sqs.queue_url.ends_with(".fifo");
        if fifo && sqs.message_group_id.is_none() {
            problems.add(
                format!("{at}.message_group_id"),
                "required by a FIFO queue (a name ending in .fifo)",
            );
        }
        if !fifo && sqs.deduplication_id.is_some() {
            problems.add(
                format!("{at}.deduplication_id"),
                "only FIFO queues deduplicate",
            );
        }
        if let Some(delay) = sqs.delay {
            if fifo {
                problems.add(
                    format!("{at}.delay"),
                    "FIFO queues take no per-message delay (set the queue's delay instead)",
                );
            }
            if delay.0 > Duration::from_secs(900) {
                problems.add(format!("{at}.delay"), "at most 15 minutes");
            }
        }
        let attributes = attributes(&at, &sqs.attributes, params, problems);
        AwsAction::Sqs(SqsAction {
            queue_url: sqs.queue_url.clone(),
            queue_arn: queue_arn.unwrap_or_default(),
            message_group_id: sqs
                .message_group_id
                .as_ref()
                .and_then(|t| template(format!("{at}.message_group_id"), t, problems)),
            deduplication_id: sqs
                .deduplication_id
                .as_ref()
                .and_then(|t| template(format!("{at}.deduplication_id"), t, problems)),
            delay: sqs.delay.map(|d| d.0),
            attributes,
        })
    } else if let Some(sns) = keys.sns {
        if let Err(message) = check_arn(&sns.topic_arn, "sns", |resource| !resource.contains('/')) {
            problems.add(format!("{at}.topic_arn"), message);
        }
        if sns.topic_arn.ends_with(".fifo") && sns.message_group_id.is_none() {
            problems.add(
                format!("{at}.message_group_id"),
                "required by a FIFO topic (a name ending in .fifo)",
            );
        }
        AwsAction::Sns(SnsAction {
            topic_arn: sns.topic_arn.clone(),
            subject: sns
                .subject
                .as_ref()
                .and_then(|t| template(format!("{at}.subject"), t, problems)),
            attributes: attributes(&at, &sns.attributes, params, problems),
            message_group_id: sns
                .message_group_id
                .as_ref()
                .and_then(|t| template(format!("{at}.message_group_id"), t, problems)),
        })
    } else if let Some(s3) = keys.s3 {
        if let Err(message) = check_bucket(&s3.bucket) {
            problems.add(format!("{at}.bucket"), message);
        }
        if s3.key.is_empty() || s3.key.starts_with('/') {
            problems.add(
                format!("{at}.key"),
                "an object key, without a leading '/': \"uploads/{path.name}\"",
            );
        }
        let key = template(format!("{at}.key"), &s3.key, problems)?;
        if key.reads_body() {
            problems.add(
                format!("{at}.key"),
                "the key cannot come from the body, which is the object itself",
            );
        }
        AwsAction::S3(S3Action {
            bucket: s3.bucket.clone(),
            key,
        })
    } else if let Some(dynamodb) = keys.dynamodb {
        dynamo_action(&at, dynamodb, params, problems).map(AwsAction::DynamoDb)?
    } else if let Some(kinesis) = keys.kinesis {
        if let Err(message) = check_name_or_arn(&kinesis.stream, "kinesis", "stream/", 128) {
            problems.add(format!("{at}.stream"), message);
        }
        let partition_key = template(
            format!("{at}.partition_key"),
            &kinesis.partition_key,
            problems,
        );
        AwsAction::Kinesis(KinesisAction {
            stream: kinesis.stream.clone(),
            partition_key: partition_key?,
        })
    } else if let Some(events) = keys.eventbridge {
        if let Err(message) = check_name_or_arn(&events.event_bus, "events", "event-bus/", 256) {
            problems.add(format!("{at}.event_bus"), message);
        }
        for (field, text) in [
            ("source", &events.source),
            ("detail_type", &events.detail_type),
        ] {
            if text.is_empty() {
                problems.add(format!("{at}.{field}"), "must not be empty");
            }
        }
        let source = template(format!("{at}.source"), &events.source, problems);
        let detail_type = template(format!("{at}.detail_type"), &events.detail_type, problems);
        AwsAction::EventBridge(EventBridgeAction {
            event_bus: events.event_bus.clone(),
            source: source?,
            detail_type: detail_type?,
        })
    } else {
        let sfn = keys.step_functions?;
        if let Err(message) = check_arn(&sfn.state_machine_arn, "states", |resource| {
            resource.starts_with("stateMachine:") && resource.len() > "stateMachine:".len()
        }) {
            problems.add(format!("{at}.state_machine_arn"), message);
        }
        AwsAction::StepFunctions(StepFunctionsAction {
            state_machine_arn: sfn.state_machine_arn.clone(),
            name: sfn
                .name
                .as_ref()
                .and_then(|t| template(format!("{at}.name"), t, problems)),
        })
    };
    if let Some(methods) = methods {
        let served = action.methods();
        for (i, method) in methods.iter().enumerate() {
            let served = served.contains(method)
                || (method == Method::HEAD && served.contains(&Method::GET));
            if !served {
                problems.add(
                    format!("{key}.methods[{i}]"),
                    format!(
                        "{service} does not serve {method}; it serves {}",
                        action
                            .methods()
                            .iter()
                            .map(Method::as_str)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                );
            }
        }
    }
    (problems.count() == before).then_some(action)
}

/// String message attributes (SQS, SNS): at most 9 besides the correlation id, named as SQS
/// requires.
fn attributes(
    at: &str,
    attributes: &BTreeMap<String, String>,
    params: &[String],
    problems: &mut Problems,
) -> Vec<(String, Template)> {
    if attributes.len() > 9 {
        problems.add(
            format!("{at}.attributes"),
            "at most 9: a message carries 10 attributes, one of them correlation_id",
        );
    }
    attributes
        .iter()
        .filter_map(|(name, text)| {
            let valid = !name.is_empty()
                && name.len() <= 256
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
                && !name.starts_with('.')
                && !name.ends_with('.')
                && !name.contains("..")
                && !name.to_ascii_lowercase().starts_with("aws.")
                && !name.to_ascii_lowercase().starts_with("amazon.")
                && name != "correlation_id";
            if !valid {
                problems.add(
                    format!("{at}.attributes.{name}"),
                    "an attribute name of letters, digits, '_', '-' and '.', not starting with \
                     AWS. or Amazon., and not correlation_id (the gateway sets it)",
                );
            }
            Template::parse(text, params)
                .map_err(|message| problems.add(format!("{at}.attributes.{name}"), message))
                .ok()
                .map(|template| (name.clone(), template))
        })
        .collect()
}

fn dynamo_action(
    at: &str,
    config: &DynamoDbConfig,
    params: &[String],
    problems: &mut Problems,
) -> Option<DynamoDbAction> {
    if let Err(message) = check_name_or_arn(&config.table, "dynamodb", "table/", 255) {
        problems.add(format!("{at}.table"), message);
    }
    let operation = match config.action.as_deref() {
        None => None,
        Some("get") => Some(DynamoOperation::Get),
        Some("put") => Some(DynamoOperation::Put),
        Some("delete") => Some(DynamoOperation::Delete),
        Some("query") => Some(DynamoOperation::Query),
        Some(other) => {
            problems.add(
                format!("{at}.action"),
                format!("{other:?} is not get, put, delete or query"),
            );
            None
        }
    };
    let wanted = if operation == Some(DynamoOperation::Query) {
        1..=1
    } else {
        1..=2
    };
    if !wanted.contains(&config.key.len()) {
        problems.add(
            format!("{at}.key"),
            if operation == Some(DynamoOperation::Query) {
                "a query takes the partition key only: one attribute"
            } else {
                "the partition key, and the sort key if the table has one: one or two attributes"
            },
        );
    }
    let key = config
        .key
        .iter()
        .filter_map(|(name, value)| {
            let (text, number) = match value {
                DynamoKeyConfig::String(text) => (text, false),
                DynamoKeyConfig::Number { number } => (number, true),
            };
            Template::parse(text, params)
                .map_err(|message| problems.add(format!("{at}.key.{name}"), message))
                .ok()
                .map(|value| DynamoKey {
                    name: name.clone(),
                    value,
                    number,
                })
        })
        .collect();
    let limit = config.limit.unwrap_or(25);
    if config.limit.is_some() && operation != Some(DynamoOperation::Query) {
        problems.add(format!("{at}.limit"), "only applies to action = \"query\"");
    }
    if !(1..=1000).contains(&limit) {
        problems.add(format!("{at}.limit"), "between 1 and 1000");
    }
    if config.condition.is_some()
        && matches!(
            operation,
            Some(DynamoOperation::Get | DynamoOperation::Query)
        )
    {
        problems.add(format!("{at}.condition"), "only applies to put and delete");
    }
    if config.condition.as_deref() == Some("") {
        problems.add(format!("{at}.condition"), "must not be empty");
    }
    Some(DynamoDbAction {
        table: config.table.clone(),
        key,
        operation,
        limit,
        condition: config.condition.clone(),
    })
}

/// `https://sqs.REGION.amazonaws.com/ACCOUNT/NAME` -> `arn:aws:sqs:REGION:ACCOUNT:NAME`.
/// Other hosts (a local endpoint) name no region: `*`.
pub fn sqs_queue_arn(queue_url: &str) -> Result<String, String> {
    let invalid = || {
        format!(
            "not a queue URL such as \"https://sqs.eu-west-1.amazonaws.com/123456789012/orders\": {queue_url:?}"
        )
    };
    let url = url::Url::parse(queue_url).map_err(|_| invalid())?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid());
    }
    let segments: Vec<&str> = url.path_segments().ok_or_else(invalid)?.collect();
    let [account, name] = segments.as_slice() else {
        return Err(invalid());
    };
    if account.is_empty()
        || !account.chars().all(|c| c.is_ascii_digit())
        || name.is_empty()
        || name.len() > 80
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(invalid());
    }
    let host = url.host_str().unwrap_or_default();
    let region = host
        .strip_prefix("sqs.")
        .and_then(|rest| rest.split('.').next())
        .filter(|region| region.contains('-'))
        .unwrap_or("*");
    let partition = if host.ends_with(".amazonaws.com.cn") {
        "aws-cn"
    } else {
        "aws"
    };
    Ok(format!("arn:{partition}:sqs:{region}:{account}:{name}"))
}

/// `arn:PARTITION:SERVICE:REGION:ACCOUNT:RESOURCE`, with `resource` checked by `valid`.
fn check_arn(arn: &str, service: &str, valid: impl Fn(&str) -> bool) -> Result<(), String> {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    match parts.as_slice() {
        ["arn", partition, found, region, account, resource]
            if partition.starts_with("aws")
                && *found == service
                && !region.is_empty()
                && account.len() == 12
                && account.chars().all(|c| c.is_ascii_digit())
                && !resource.is_empty()
                && valid(resource) =>
        {
            Ok(())
        }
        _ => Err(format!(
            "not an ARN of {service} (arn:aws:{service}:REGION:ACCOUNT:...): {arn:?}"
        )),
    }
}

/// A resource name (letters, digits, `_`, `-`, `.`), or its ARN with `prefix` before the name.
fn check_name_or_arn(text: &str, service: &str, prefix: &str, max: usize) -> Result<(), String> {
    if text.starts_with("arn:") {
        return check_arn(text, service, |resource| {
            resource
                .strip_prefix(prefix)
                .is_some_and(|name| valid_name(name, max))
        });
    }
    if valid_name(text, max) {
        Ok(())
    } else {
        Err(format!(
            "a name of letters, digits, '_', '-' and '.' (at most {max}), or an ARN: {text:?}"
        ))
    }
}

fn valid_name(name: &str, max: usize) -> bool {
    !name.is_empty()
        && name.len() <= max
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// S3 bucket naming rules: 3 to 63 lowercase letters, digits, '.' and '-', starting and ending
/// with a letter or digit.
fn check_bucket(bucket: &str) -> Result<(), String> {
    let edge = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if (3..=63).contains(&bucket.len())
        && bucket
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '-'))
        && edge(bucket.chars().next())
        && edge(bucket.chars().last())
        && !bucket.contains("..")
    {
        Ok(())
    } else {
        Err(format!(
            "not a bucket name (3 to 63 lowercase letters, digits, '.' and '-'): {bucket:?}"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_queue_url_names_its_arn() {
        assert_eq!(
            sqs_queue_arn("https://sqs.eu-west-1.amazonaws.com/123456789012/orders.fifo").unwrap(),
            "arn:aws:sqs:eu-west-1:123456789012:orders.fifo"
        );
        assert_eq!(
            sqs_queue_arn("http://127.0.0.1:5000/123456789012/q").unwrap(),
            "arn:aws:sqs:*:123456789012:q"
        );
        for bad in [
            "sqs.eu-west-1.amazonaws.com/1/q",
            "https://sqs.eu-west-1.amazonaws.com/q",
            "https://sqs.eu-west-1.amazonaws.com/abc/q",
            "https://sqs.eu-west-1.amazonaws.com/1/q/more",
        ] {
            assert!(sqs_queue_arn(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn names_arns_and_buckets_are_checked_offline() {
        assert!(check_name_or_arn("users", "dynamodb", "table/", 255).is_ok());
        assert!(
            check_name_or_arn(
                "arn:aws:dynamodb:eu-west-1:123456789012:table/users",
                "dynamodb",
                "table/",
                255
            )
            .is_ok()
        );
        assert!(
            check_name_or_arn(
                "arn:aws:dynamodb:eu-west-1:123456789012:stream/users",
                "dynamodb",
                "table/",
                255
            )
            .is_err()
        );
        assert!(check_name_or_arn("no spaces", "kinesis", "stream/", 128).is_err());
        assert!(check_bucket("my-bucket.data").is_ok());
        for bad in ["ab", "Upper", "-edge", "a..b", "under_score"] {
            assert!(check_bucket(bad).is_err(), "{bad}");
        }
        assert!(
            check_arn(
                "arn:aws:states:eu-west-1:123456789012:stateMachine:orders",
                "states",
                |r| r.starts_with("stateMachine:")
            )
            .is_ok()
        );
    }

    #[test]
    fn correlation_sources_are_parsed() {
        assert_eq!(
            correlation_source("header:X-Correlation-Id").unwrap(),
            CorrelationSource::Header(HeaderName::from_static("x-correlation-id"))
        );
        assert_eq!(
            correlation_source("body:/meta/id").unwrap(),
            CorrelationSource::Body("/meta/id".into())
        );
        assert!(correlation_source("body:meta").is_err());
        assert!(correlation_source("cookie:x").is_err());
    }
}
