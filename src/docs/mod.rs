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
        builtin::Endpoint,
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
        "The path is not in normalized form (`invalid-path`: `//`, `.`, `..`, an encoded `/`), or the body does not match the route's schema (`invalid-body`, with `errors`).",
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
    let mut operation_ids = std::collections::HashSet::new();
    for route in plan.routes.iter() {
        let (path, parameters) = path_and_parameters(&route.public_path());
        let methods = methods(route);
        let item = items.entry(path.clone()).or_default();
        for method in &methods {
            if let Some(slot @ None) = item_operation(item, method) {
                let id = unique(
                    &mut operation_ids,
                    operation_id(route, method, methods.len(), &path),
                );
                *slot = Some(operation(plan, route, method, id, &parameters));
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

/// The built-in endpoints served with the routes, at their configured paths (those on the
/// admin listener are not part of the public API).
fn builtin_paths(plan: &Plan) -> Vec<(String, PathItem)> {
    let builtins = &plan.builtins;
    let get = |endpoint: &Endpoint, summary: &str, content_type: &str| {
        let mut operation = OperationBuilder::new()
            .summary(Some(summary))
            .tag("gateway")
            .response(
                "200",
                ResponseBuilder::new()
                    .description("OK")
                    .content(content_type, ContentBuilder::new().build())
                    .build(),
            );
        for provider in &endpoint.auth {
            operation = operation.security(SecurityRequirement::new(
                scheme_name(provider),
                endpoint.scopes.clone(),
            ));
        }
        if !endpoint.auth.is_empty() {
            operation = operation.response("401", Ref::from_response_name("Unauthorized"));
        }
        (
            endpoint.path.clone(),
            PathItem::new(HttpMethod::Get, operation),
        )
    };
    let mut paths = Vec::new();
    if !builtins.admin {
        if let Some(health) = &builtins.health {
            paths.push(get(health, "Liveness and version", "application/json"));
        }
        if let Some(ready) = &builtins.ready {
            let (path, mut item) = get(
                ready,
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
            paths.push((path, item));
        }
        if let Some(metrics) = &builtins.metrics {
            paths.push(get(
                metrics,
                "Prometheus metrics (server mode)",
                "text/plain",
            ));
        }
    }
    if let (Some(openapi), Some(docs)) = (&builtins.openapi, &builtins.docs) {
        paths.push(get(openapi, "This document", "application/json"));
        paths.push(get(docs, "Swagger UI", "text/html"));
    }
    paths
}

/// A route's operation for `method`. `operation_id` is unique in the document.
fn operation(
    plan: &Plan,
    route: &RoutePlan,
    method: &Method,
    operation_id: String,
    parameters: &[Parameter],
) -> utoipa::openapi::path::Operation {
    let show_upstreams = plan.docs.show_upstreams;
    let derived = match &route.action {
        RouteAction::Proxy { upstream, .. } if show_upstreams => {
            format!("Forwarded to upstream `{upstream}`.")
        }
        RouteAction::Proxy { .. } => "Forwarded to a backend service.".to_owned(),
        RouteAction::Mock(_) => "Answered by the gateway itself.".to_owned(),
        RouteAction::Aggregate { backends, .. } => format!(
            "Aggregates {} in parallel into one JSON object (`X-Proxyfn-Completed: false` when some were left out).",
            backends
                .iter()
                .map(|b| format!("`{}`", b.name()))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        RouteAction::Aws(aws) => aws_description(aws, method, show_upstreams),
    };
    let description = match &route.docs.description {
        Some(own) => format!("{own}\n\n{derived}"),
        None => derived,
    };
    let mut op = OperationBuilder::new()
        .operation_id(Some(operation_id))
        .summary(route.docs.summary.clone())
        .description(Some(description));
    if route.docs.tags.is_empty() {
        op = op.tag("routes");
    }
    for tag in &route.docs.tags {
        op = op.tag(tag.clone());
    }
    if route.deprecation.is_some() {
        op = op.deprecated(Some(utoipa::openapi::Deprecated::True));
    }
    for parameter in parameters {
        // What the gateway takes in one segment: not `.` or `..`, no `/` or `\` (even
        // encoded: 400 `invalid-path`), no NUL.
        let schema = ObjectBuilder::new()
            .schema_type(Type::String)
            .min_length(Some(1))
            .pattern(Some(SEGMENT_PATTERN));
        let mut builder = ParameterBuilder::new()
            .name(&parameter.name)
            .parameter_in(ParameterIn::Path)
            .required(Required::True);
        if parameter.catch_all {
            builder = builder.description(Some(CATCH_ALL));
        }
        op = op.parameter(builder.schema(Some(schema)));
    }
    // Every route can refuse a path that is not in normalized form (`invalid-path`).
    let mut refusals: Vec<(&str, &str)> = vec![("400", "BadRequest")];
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
    if let RouteAction::Mock(mock) = &route.action {
        // The answer is known: its status, content type and body.
        let mut answer = ResponseBuilder::new().description("The configured response.");
        // Without a configured `content-type` the answer has none: any media type.
        let content_type = mock.content_type().unwrap_or("*/*");
        let mut content = ContentBuilder::new();
        if !mock.body().is_empty() {
            let example = match std::str::from_utf8(mock.body()) {
                Ok(text) if content_type.contains("json") => {
                    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()))
                }
                Ok(text) => Value::String(text.to_owned()),
                Err(_) => Value::String(format!("({} bytes)", mock.body().len())),
            };
            content = content.example(Some(example));
        }
        answer = answer.content(content_type, content.build());
        if !route.rate_limits.is_empty() {
            answer = rate_limit_headers(answer);
        }
        op = op.response(mock.status().as_str(), answer.build());
    } else {
        let mut default = ResponseBuilder::new().description(match route.action {
            RouteAction::Proxy { .. } => "The upstream's response.",
            RouteAction::Mock(_) => "The configured response.",
            RouteAction::Aggregate { .. } => "The merged JSON of the backends.",
            RouteAction::Aws(_) => {
                "The AWS service's answer, as JSON (or the object, for S3 reads)."
            }
        });
        if !route.rate_limits.is_empty() {
            default = rate_limit_headers(default);
        }
        op = op.response("default", default.build());
    }
    for (status, name) in refusals {
        if let RouteAction::Mock(mock) = &route.action
            && mock.status().as_str() == status
        {
            continue;
        }
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
        None => crate::routes::UNLISTED_METHODS.to_vec(),
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
/// A path parameter; `catch_all` for `{*rest}`, which takes several segments.
struct Parameter {
    name: String,
    catch_all: bool,
}

/// A path segment the gateway serves (ECMA-262 regex, as JSON Schema takes it).
const SEGMENT_PATTERN: &str = r"^(?!\.\.?$)[^/\\\u0000]+$";

/// What a catch-all parameter's description says: the limits of sending several segments.
const CATCH_ALL: &str = "The rest of the path: one or more segments separated by `/`. A `/` \
    inside a segment cannot be sent encoded (`%2F` is refused with 400 `invalid-path`), and \
    Swagger UI's \"Try it out\" encodes every `/` in a value, so it can only send one segment \
    here; send longer paths with curl or your client as they are.";

fn path_and_parameters(path: &str) -> (String, Vec<Parameter>) {
    let mut parameters = Vec::new();
    let segments: Vec<String> = path
        .split('/')
        .map(
            |segment| match segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                Some(name) => {
                    let catch_all = name.starts_with('*');
                    let name = name.trim_start_matches('*');
                    parameters.push(Parameter {
                        name: name.to_owned(),
                        catch_all,
                    });
                    format!("{{{name}}}")
                }
                None => segment.to_owned(),
            },
        )
        .collect();
    (segments.join("/"), parameters)
}

/// The route's `name` (with the method when it serves several), else the method and the
/// path: `get_users_id` for `GET /users/{id}`. Neither depends on the route's place in the
/// file, so generated clients keep their method names when routes are reordered.
fn operation_id(route: &RoutePlan, method: &Method, methods: usize, path: &str) -> String {
    let method = method.as_str().to_ascii_lowercase();
    if let Some(name) = &route.docs.name {
        return if methods > 1 {
            format!("{name}_{method}")
        } else {
            name.clone()
        };
    }
    let mut id = method;
    for word in path
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|word| !word.is_empty())
    {
        id.push('_');
        id.push_str(word);
    }
    if path == "/" {
        id.push_str("_root");
    }
    id
}

/// `id`, or `id_2`, `id_3`... when taken (two paths that differ only in punctuation).
fn unique(taken: &mut std::collections::HashSet<String>, id: String) -> String {
    let mut candidate = id.clone();
    let mut n = 2;
    while !taken.insert(candidate.clone()) {
        candidate = format!("{id}_{n}");
        n += 1;
    }
    candidate
}

/// What an AWS route does, for its operation's description.
fn aws_description(
    action: &crate::aws::config::AwsAction,
    method: &Method,
    show_names: bool,
) -> String {
    use crate::aws::config::{AwsAction, DynamoOperation};
    // "SQS queue `orders`" with `docs.show_upstreams`, else "an SQS queue".
    let named = |article: &str, what: &str, name: &str| {
        if show_names {
            format!("{what} `{name}`")
        } else {
            format!("{article} {what}")
        }
    };
    match action {
        AwsAction::Sqs(sqs) => format!(
            "Sends the body to {}: 202 with `message_id`.",
            named("an", "SQS queue", &sqs.queue_url)
        ),
        AwsAction::Sns(sns) => format!(
            "Publishes the body to {}: 202 with `message_id`.",
            named("an", "SNS topic", &sns.topic_arn)
        ),
        AwsAction::S3(s3) => match *method {
            Method::PUT => format!(
                "Stores the body as an object of {}: 201 with its ETag.",
                named("an", "S3 bucket", &s3.bucket)
            ),
            Method::DELETE => format!(
                "Deletes an object of {}: 204.",
                named("an", "S3 bucket", &s3.bucket)
            ),
            _ => format!(
                "Reads an object of {} (`Range` gives 206); 404 when missing.",
                named("an", "S3 bucket", &s3.bucket)
            ),
        },
        AwsAction::DynamoDb(dynamodb) => match dynamodb.operation_for(method) {
            DynamoOperation::Get => format!(
                "Reads an item of {} as JSON; 404 when missing.",
                named("a", "DynamoDB table", &dynamodb.table)
            ),
            DynamoOperation::Put => format!(
                "Writes the JSON body as an item of {}: 201.",
                named("a", "DynamoDB table", &dynamodb.table)
            ),
            DynamoOperation::Delete => format!(
                "Deletes an item of {}: 204.",
                named("a", "DynamoDB table", &dynamodb.table)
            ),
            DynamoOperation::Query => format!(
                "Queries {} on its partition key: `items`, and a `cursor` for `?cursor=` when there are more.",
                named("a", "DynamoDB table", &dynamodb.table)
            ),
        },
        AwsAction::Kinesis(kinesis) => format!(
            "Puts the body on {}: 202 with `sequence_number` and `shard_id`.",
            named("a", "Kinesis stream", &kinesis.stream)
        ),
        AwsAction::EventBridge(events) => format!(
            "Puts an event with the JSON body as its detail on {}: 202 with `event_id`.",
            named("an", "EventBridge bus", &events.event_bus)
        ),
        AwsAction::StepFunctions(sfn) => format!(
            "Starts an execution of {} with the JSON body as input: 202 with `execution_arn`.",
            named("a", "Step Functions state machine", &sfn.state_machine_arn)
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
        let names: Vec<_> = params
            .iter()
            .map(|p| (p.name.as_str(), p.catch_all))
            .collect();
        assert_eq!(names, [("id", false), ("rest", true)]);
    }
}
