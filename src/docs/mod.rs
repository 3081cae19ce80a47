//! The OpenAPI 3.1 document of a configuration (utoipa), served at `GET /openapi.json` and
//! browsed with Swagger UI at `GET /docs`; `proxyfn openapi` prints it.
//!
//! It describes the gateway's own endpoints and every configured route: path parameters,
//! methods, the security its `auth` implies (bearer JWT, API key; any one suffices, so each is
//! a separate requirement), its `request_schema` as the request body, and the responses the
//! gateway itself can give (problem+json 400/401/403/413/415/429/502/503/504, with the
//! `RateLimit` headers on limited routes). What the upstream answers is the `default`
//! response: the gateway cannot know it.

use std::collections::BTreeMap;

use http::Method;
use serde_json::Value;
use utoipa::openapi::{
    ComponentsBuilder, ContentBuilder, HttpMethod, InfoBuilder, OpenApi, OpenApiBuilder, PathItem,
    PathsBuilder, Ref, RefOr, Required, ResponseBuilder, ServerBuilder,
    header::HeaderBuilder,
    path::{OperationBuilder, ParameterBuilder, ParameterIn},
    request_body::RequestBodyBuilder,
    schema::{ArrayBuilder, ObjectBuilder, Schema, Type},
    security::{
        ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
    },
};

pub mod config;

use crate::{
    auth::config::{KeyLocation, ProviderRef},
    config::Plan,
    routes::{
        builtin::{DOCS_PATH, METRICS_PATH, OPENAPI_PATH},
        config::{RouteAction, RoutePlan},
    },
};

use crate::routes::validate::carries_body;

const PROBLEM_JSON: &str = "application/problem+json";

/// The gateway's own refusals, as `components.responses` entries: (name, status, description).
const GATEWAY_RESPONSES: &[(&str, &str, &str)] = &[
    (
        "BadRequest",
        "400",
        "The request body is invalid (problem+json, with `errors`).",
    ),
    ("Unauthorized", "401", "Missing or invalid credentials."),
    ("Forbidden", "403", "The credentials lack a required scope."),
    (
        "PayloadTooLarge",
        "413",
        "The request body is larger than the gateway accepts.",
    ),
    (
        "UnsupportedMediaType",
        "415",
        "The route takes a JSON body.",
    ),
    (
        "TooManyRequests",
        "429",
        "Over the route's rate limit; see Retry-After.",
    ),
    (
        "BadGateway",
        "502",
        "The upstream failed or answered incompletely.",
    ),
    (
        "ServiceUnavailable",
        "503",
        "Circuit open, upstream saturated or unhealthy, or a store down.",
    ),
    (
        "GatewayTimeout",
        "504",
        "The upstream or the whole request ran out of time.",
    ),
];

/// Builds the document for `plan`, with `/` as its server.
pub fn openapi(plan: &Plan) -> Value {
    let document = build(plan);
    let mut value = serde_json::to_value(&document).unwrap_or(Value::Null);
    add_request_schemas(plan, &mut value);
    value
}

/// The document with its server URL set to `base` (an API Gateway stage such as `/prod`), so
/// "Try it out" calls go through the same stage.
pub fn with_server(document: &Value, base: &str) -> Value {
    let mut document = document.clone();
    document["servers"] = serde_json::json!([{ "url": base }]);
    document
}

fn build(plan: &Plan) -> OpenApi {
    let mut info = InfoBuilder::new()
        .title(plan.docs.title.clone())
        .version(plan.docs.version.clone());
    if let Some(description) = &plan.docs.description {
        info = info.description(Some(description.clone()));
    }
    let mut paths = PathsBuilder::new();
    for (path, item) in builtin_paths(plan) {
        paths = paths.path(path, item);
    }
    let mut components = ComponentsBuilder::new().schema("Problem", problem_schema());
    for (name, status, description) in GATEWAY_RESPONSES {
        let mut response = ResponseBuilder::new().description(*description).content(
            PROBLEM_JSON,
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("Problem")))
                .build(),
        );
        if *status == "429" {
            response = response.header(
                "Retry-After",
                header(
                    "Seconds until a retry can succeed (RFC 9110 §10.2.3).",
                    Type::Integer,
                ),
            );
            response = rate_limit_headers(response);
        }
        components = components.response(*name, response.build());
    }
    for (name, jwt) in &plan.auth.jwt {
        let scheme = match &jwt.location {
            KeyLocation::Bearer => SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
            other => api_key_scheme(other),
        };
        components =
            components.security_scheme(scheme_name(&ProviderRef::Jwt(name.clone())), scheme);
    }
    for (name, keys) in &plan.auth.api_keys {
        components = components.security_scheme(
            scheme_name(&ProviderRef::ApiKey(name.clone())),
            api_key_scheme(&keys.location),
        );
    }

    // Routes sharing a path template become one path item; a versioned route is listed under
    // its version prefix (`/v2/things`), the form that needs no header.
    let mut items: BTreeMap<String, PathItem> = BTreeMap::new();
    for (index, route) in plan.routes.iter().enumerate() {
        let (path, parameters) = path_and_parameters(&route.public_path());
        let item = items.entry(path).or_default();
        for method in methods(route) {
            if let Some(slot @ None) = item_operation(item, &method) {
                *slot = Some(operation(index, route, &method, &parameters));
            }
        }
    }
    for (path, item) in items {
        paths = paths.path(path, item);
    }

    OpenApiBuilder::new()
        .info(info)
        .servers(Some([ServerBuilder::new().url("/").build()]))
        .paths(paths)
        .components(Some(components.build()))
        .build()
}

fn builtin_paths(plan: &Plan) -> Vec<(&'static str, PathItem)> {
    let get = |summary: &str, content_type: &str| {
        PathItem::new(
            HttpMethod::Get,
            OperationBuilder::new()
                .summary(Some(summary))
                .tag("gateway")
                .response(
                    "200",
                    ResponseBuilder::new()
                        .description("OK")
                        .content(content_type, ContentBuilder::new().build())
                        .build(),
                ),
        )
    };
    let mut paths = vec![
        ("/health", get("Liveness and version", "application/json")),
        ("/ready", {
            let mut item = get(
                "Readiness: each routed upstream's health",
                "application/json",
            );
            if let Some(op) = item.get.as_mut() {
                op.responses.responses.insert(
                    "503".into(),
                    RefOr::T(
                        ResponseBuilder::new()
                            .description("An upstream has no healthy target.")
                            .build(),
                    ),
                );
            }
            item
        }),
    ];
    if plan.metrics.enabled {
        paths.push((
            METRICS_PATH,
            get("Prometheus metrics (server mode)", "text/plain"),
        ));
    }
    if plan.docs.enabled {
        paths.push((OPENAPI_PATH, get("This document", "application/json")));
        paths.push((DOCS_PATH, get("Swagger UI", "text/html")));
    }
    paths
}

fn operation(
    index: usize,
    route: &RoutePlan,
    method: &Method,
    parameters: &[String],
) -> utoipa::openapi::path::Operation {
    let description = match &route.action {
        RouteAction::Proxy { upstream, .. } => format!("Forwarded to upstream `{upstream}`."),
        RouteAction::Mock(_) => "Answered by the gateway itself.".to_owned(),
        RouteAction::Aggregate { backends, .. } => format!(
            "Aggregates {} in parallel into one JSON object (`X-Proxyfn-Completed: false` when some were left out).",
            backends
                .iter()
                .map(|b| format!("`{}`", b.name()))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        RouteAction::Aws(aws) => aws_description(aws, method),
    };
    let mut op = OperationBuilder::new()
        .operation_id(Some(format!(
            "{}_route{index}",
            method.as_str().to_ascii_lowercase()
        )))
        .description(Some(description))
        .tag("routes");
    if route.deprecation.is_some() {
        op = op.deprecated(Some(utoipa::openapi::Deprecated::True));
    }
    for name in parameters {
        op = op.parameter(
            ParameterBuilder::new()
                .name(name)
                .parameter_in(ParameterIn::Path)
                .required(Required::True)
                .schema(Some(ObjectBuilder::new().schema_type(Type::String))),
        );
    }
    let mut refusals: Vec<(&str, &str)> = vec![];
    if let Some(schema) = &route.request_schema
        && carries_body(method)
    {
        op = op.request_body(Some(
            RequestBodyBuilder::new()
                .required(Some(Required::True))
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name(schema.name.clone())))
                        .build(),
                )
                .build(),
        ));
        refusals.push(("400", "BadRequest"));
        refusals.push(("415", "UnsupportedMediaType"));
    }
    if !route.auth.is_empty() {
        for provider in &route.auth {
            op = op.security(SecurityRequirement::new(
                scheme_name(provider),
                route.scopes.clone(),
            ));
        }
        refusals.push(("401", "Unauthorized"));
        if !route.scopes.is_empty() {
            refusals.push(("403", "Forbidden"));
        }
    }
    if carries_body(method) {
        refusals.push(("413", "PayloadTooLarge"));
    }
    if !route.rate_limits.is_empty() {
        refusals.push(("429", "TooManyRequests"));
    }
    match route.action {
        RouteAction::Proxy { .. } => {
            refusals.push(("502", "BadGateway"));
            refusals.push(("503", "ServiceUnavailable"));
        }
        RouteAction::Aggregate { .. } => refusals.push(("502", "BadGateway")),
        RouteAction::Mock(_) => {}
        RouteAction::Aws(_) => {
            refusals.push(("502", "BadGateway"));
            refusals.push(("503", "ServiceUnavailable"));
        }
    }
    refusals.push(("504", "GatewayTimeout"));
    let mut default = ResponseBuilder::new().description(match route.action {
        RouteAction::Proxy { .. } => "The upstream's response.",
        RouteAction::Mock(_) => "The configured response.",
        RouteAction::Aggregate { .. } => "The merged JSON of the backends.",
        RouteAction::Aws(_) => "The AWS service's answer, as JSON (or the object, for S3 reads).",
    });
    if !route.rate_limits.is_empty() {
        default = rate_limit_headers(default);
    }
    op = op.response("default", default.build());
    for (status, name) in refusals {
        op = op.response(status, Ref::from_response_name(name));
    }
    op.build()
}

fn rate_limit_headers(response: ResponseBuilder) -> ResponseBuilder {
    response
        .header(
            "RateLimit-Policy",
            header(
                "The route's quotas: \"name\";q=LIMIT;w=SECONDS (draft-ietf-httpapi-ratelimit-headers).",
                Type::String,
            ),
        )
        .header(
            "RateLimit",
            header(
                "What is left: \"name\";r=REMAINING;t=SECONDS.",
                Type::String,
            ),
        )
}

fn header(description: &str, kind: Type) -> utoipa::openapi::header::Header {
    HeaderBuilder::new()
        .description(Some(description))
        .schema(Some(ObjectBuilder::new().schema_type(kind)))
        .build()
}

fn problem_schema() -> Schema {
    let string = || ObjectBuilder::new().schema_type(Type::String);
    let field_error = ObjectBuilder::new()
        .property(
            "pointer",
            string().description(Some("JSON pointer (RFC 6901) as a URI fragment")),
        )
        .property("detail", string())
        .required("pointer")
        .required("detail");
    ObjectBuilder::new()
        .description(Some("RFC 9457 problem details"))
        .property(
            "type",
            string().description(Some("urn:proxyfn:problem:<slug>")),
        )
        .property("title", string())
        .property("status", ObjectBuilder::new().schema_type(Type::Integer))
        .property("detail", string())
        .property(
            "request_id",
            string().description(Some("Also the X-Request-Id response header")),
        )
        .property("errors", ArrayBuilder::new().items(field_error))
        .required("type")
        .required("title")
        .required("status")
        .required("detail")
        .required("request_id")
        .into()
}

fn api_key_scheme(location: &KeyLocation) -> SecurityScheme {
    SecurityScheme::ApiKey(match location {
        KeyLocation::Header(name) => ApiKey::Header(ApiKeyValue::new(name.as_str())),
        KeyLocation::Query(name) => ApiKey::Query(ApiKeyValue::new(name)),
        KeyLocation::Cookie(name) => ApiKey::Cookie(ApiKeyValue::new(name)),
        KeyLocation::Bearer => ApiKey::Header(ApiKeyValue::new("authorization")),
    })
}

/// `jwt:main` becomes `jwt_main`: component names allow `[a-zA-Z0-9._-]` only.
fn scheme_name(provider: &ProviderRef) -> String {
    match provider {
        ProviderRef::Jwt(name) => format!("jwt_{name}"),
        ProviderRef::ApiKey(name) => format!("api_key_{name}"),
    }
}

/// The methods a route lists, or every method OpenAPI has an operation for. HEAD on a GET
/// route is implied, as in HTTP, and not listed.
fn methods(route: &RoutePlan) -> Vec<Method> {
    match &route.methods {
        Some(methods) => methods.clone(),
        None => vec![
            Method::GET,
            Method::PUT,
            Method::POST,
            Method::DELETE,
            Method::OPTIONS,
            Method::HEAD,
            Method::PATCH,
        ],
    }
}

/// The path item's slot for `method`; `None` for methods OpenAPI has no field for.
fn item_operation<'a>(
    item: &'a mut PathItem,
    method: &Method,
) -> Option<&'a mut Option<utoipa::openapi::path::Operation>> {
    Some(match *method {
        Method::GET => &mut item.get,
        Method::PUT => &mut item.put,
        Method::POST => &mut item.post,
        Method::DELETE => &mut item.delete,
        Method::OPTIONS => &mut item.options,
        Method::HEAD => &mut item.head,
        Method::PATCH => &mut item.patch,
        Method::TRACE => &mut item.trace,
        _ => return None,
    })
}

/// Each route's `request_schema` document, as written, under `components.schemas` (utoipa's
/// typed schema cannot hold every JSON Schema keyword; OpenAPI 3.1 takes them all).
fn add_request_schemas(plan: &Plan, document: &mut Value) {
    for schema in plan.routes.iter().filter_map(|r| r.request_schema.as_ref()) {
        document["components"]["schemas"][&schema.name] = schema.document.clone();
    }
}

/// `/files/{*rest}` becomes `/files/{rest}`: OpenAPI templates have no wildcard form.
fn path_and_parameters(path: &str) -> (String, Vec<String>) {
    let mut parameters = Vec::new();
    let segments: Vec<String> = path
        .split('/')
        .map(
            |segment| match segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                Some(name) => {
                    let name = name.trim_start_matches('*');
                    parameters.push(name.to_owned());
                    format!("{{{name}}}")
                }
                None => segment.to_owned(),
            },
        )
        .collect();
    (segments.join("/"), parameters)
}

/// What an AWS route does, for its operation's description.
fn aws_description(action: &crate::aws::config::AwsAction, method: &Method) -> String {
    use crate::aws::config::{AwsAction, DynamoOperation};
    match action {
        AwsAction::Sqs(sqs) => format!(
            "Sends the body to SQS queue `{}`: 202 with `message_id`.",
            sqs.queue_url
        ),
        AwsAction::Sns(sns) => format!(
            "Publishes the body to SNS topic `{}`: 202 with `message_id`.",
            sns.topic_arn
        ),
        AwsAction::S3(s3) => match *method {
            Method::PUT => format!(
                "Stores the body as an object of S3 bucket `{}`: 201 with its ETag.",
                s3.bucket
            ),
            Method::DELETE => format!("Deletes an object of S3 bucket `{}`: 204.", s3.bucket),
            _ => format!(
                "Reads an object of S3 bucket `{}` (`Range` gives 206); 404 when missing.",
                s3.bucket
            ),
        },
        AwsAction::DynamoDb(dynamodb) => match dynamodb.operation_for(method) {
            DynamoOperation::Get => format!(
                "Reads an item of DynamoDB table `{}` as JSON; 404 when missing.",
                dynamodb.table
            ),
            DynamoOperation::Put => format!(
                "Writes the JSON body as an item of DynamoDB table `{}`: 201.",
                dynamodb.table
            ),
            DynamoOperation::Delete => format!(
                "Deletes an item of DynamoDB table `{}`: 204.",
                dynamodb.table
            ),
            DynamoOperation::Query => format!(
                "Queries DynamoDB table `{}` on its partition key: `items`, and a `cursor` for `?cursor=` when there are more.",
                dynamodb.table
            ),
        },
        AwsAction::Kinesis(kinesis) => format!(
            "Puts the body on Kinesis stream `{}`: 202 with `sequence_number` and `shard_id`.",
            kinesis.stream
        ),
        AwsAction::EventBridge(events) => format!(
            "Puts an event with the JSON body as its detail on EventBridge bus `{}`: 202 with `event_id`.",
            events.event_bus
        ),
        AwsAction::StepFunctions(sfn) => format!(
            "Starts an execution of state machine `{}` with the JSON body as input: 202 with `execution_arn`.",
            sfn.state_machine_arn
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_become_plain_path_parameters() {
        let (path, params) = path_and_parameters("/files/{id}/{*rest}");
        assert_eq!(path, "/files/{id}/{rest}");
        assert_eq!(params, ["id", "rest"]);
    }
}
