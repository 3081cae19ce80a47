//! `[[routes]]`: a path template and what serves it, as the file spells it, validated into
//! [`RoutePlan`]s against the names a route may refer to ([`Names`]), and the route table's
//! own checks (no two routes claim the same requests).

use std::{collections::BTreeMap, path::Path};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{builtin::Builtins, fault::Fault, mock::MockRoute, version::config::DeprecatedConfig};
use crate::{
    auth::config::ProviderRef,
    aws::config as aws,
    cache::config::{RouteCacheConfig, RouteCacheSettings},
    config::{HumanDuration, Problems, parse_method},
    ratelimit::config::RateLimitPolicyConfig,
    transform::config::{TransformConfig, TransformSettings},
};

/// What a route may refer to, from the rest of the configuration.
pub struct Names<'a> {
    pub upstreams: Vec<&'a str>,
    pub jwt: Vec<&'a str>,
    pub api_keys: Vec<&'a str>,
    pub policies: &'a BTreeMap<String, RateLimitPolicyConfig>,
    pub builtins: &'a Builtins,
    /// Where relative paths (`request_schema`) start.
    pub base_dir: Option<&'a Path>,
}

/// The validated route table: every route in file order, grouped by path template, and the
/// matcher that finds a group, filled once here, where a conflict is still a config problem.
#[derive(Clone, Debug, Default)]
pub struct Routes {
    list: Vec<RoutePlan>,
    /// The routes of each path template, as indices into `list`.
    paths: Vec<Vec<usize>>,
    /// Finds the index into `paths` of a request path.
    matcher: matchit::Router<usize>,
}

impl Routes {
    pub fn iter(&self) -> std::slice::Iter<'_, RoutePlan> {
        self.list.iter()
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The routes of each path, in the order `matcher` numbers them.
    pub fn paths(&self) -> impl Iterator<Item = impl Iterator<Item = &RoutePlan>> {
        self.paths
            .iter()
            .map(|indices| indices.iter().map(|&index| &self.list[index]))
    }

    /// The matcher over path templates; its values index [`Routes::paths`].
    pub fn matcher(&self) -> &matchit::Router<usize> {
        &self.matcher
    }
}

impl std::ops::Index<usize> for Routes {
    type Output = RoutePlan;

    fn index(&self, index: usize) -> &RoutePlan {
        &self.list[index]
    }
}

/// Validates every route and the table they make together. Routes on one path may split
/// methods or versions between them, but never claim the same method of the same version
/// twice, and no two paths may be ambiguous for the router. Every route whose path is valid
/// takes part in those checks, whatever else is wrong with it, so that a file's overlaps are
/// reported together with its other problems.
pub fn routes(routes: &[RouteConfig], names: &Names<'_>, problems: &mut Problems) -> Routes {
    let plans: Vec<Option<RoutePlan>> = routes
        .iter()
        .enumerate()
        .map(|(index, route)| plan(index, route, names, problems))
        .collect();
    crate::docs::config::unique_names(
        routes.iter().map(|r| r.name.as_deref()).enumerate(),
        problems,
    );
    let mut ignored = Problems::default();
    let methods: Vec<Option<Vec<Method>>> = routes
        .iter()
        .zip(&plans)
        .map(|(route, plan)| match plan {
            Some(plan) => plan.methods.clone(),
            None => route.methods.as_ref().map(|methods| {
                methods
                    .iter()
                    .filter_map(|m| parse_method("", m, &mut ignored))
                    .collect()
            }),
        })
        .collect();
    let mut by_path: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (index, route) in routes.iter().enumerate() {
        if check_path_template(&route.path).is_ok() {
            by_path.entry(&route.path).or_default().push(index);
        }
    }
    let mut matcher = matchit::Router::new();
    let mut paths = Vec::with_capacity(by_path.len());
    for (path, indices) in &by_path {
        match matcher.insert(*path, paths.len()) {
            Ok(()) => paths.push(indices.clone()),
            Err(error) => {
                let message = match error {
                    matchit::InsertError::Conflict { with } => {
                        let other = by_path
                            .get(with.as_str())
                            .map_or(String::new(), |e| format!("routes[{}] ", e[0]));
                        format!(
                            "overlaps {other}({with:?}): both would match the same requests; name \
                             the parameters at the same place alike, or make one of the segments literal"
                        )
                    }
                    other => format!("not a path the router can take: {other}"),
                };
                problems.add(format!("routes[{}].path", indices[0]), message);
            }
        }
        check_methods(path, indices, routes, &methods, problems);
    }
    match plans.into_iter().collect::<Option<Vec<RoutePlan>>>() {
        Some(list) => Routes {
            list,
            paths,
            matcher,
        },
        // Some route is wrong, and the problems say which: there is no table to run.
        None => Routes::default(),
    }
}

/// Two routes of one path may not serve the same method of the same version.
/// `methods` are each route's (by config index): as validated, or as written when the route
/// is wrong in some other way.
fn check_methods(
    path: &str,
    indices: &[usize],
    routes: &[RouteConfig],
    methods: &[Option<Vec<Method>>],
    problems: &mut Problems,
) {
    for (a, &index_a) in indices.iter().enumerate() {
        for &index_b in indices.iter().skip(a + 1) {
            if routes[index_a].version != routes[index_b].version {
                continue;
            }
            let overlap = match (&methods[index_a], &methods[index_b]) {
                (None, _) | (_, None) => true,
                (Some(x), Some(y)) => x.iter().any(|m| y.contains(m)),
            };
            if overlap {
                problems.add(
                    format!("routes[{index_b}].methods"),
                    format!("routes[{index_a}] already serves {path:?} for the same method(s)"),
                );
            }
        }
    }
}

/// `[[routes]]`: a path template and what serves it.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// axum path syntax: `/users/{id}`, `/files/{*rest}`.
    pub path: String,
    /// The route's name in the OpenAPI document: its operationId (with the method appended
    /// when it serves several), stable when routes are reordered.
    pub name: Option<String>,
    /// The operation's summary in the OpenAPI document.
    pub summary: Option<String>,
    /// The operation's description in the OpenAPI document (Markdown).
    pub description: Option<String>,
    /// The operation's tags in the OpenAPI document (Swagger UI groups by them).
    #[serde(default)]
    pub tags: Vec<String>,
    /// Allowed methods; omitted: GET, HEAD, POST, PUT, PATCH, DELETE and OPTIONS. GET implies
    /// HEAD.
    pub methods: Option<Vec<String>>,
    /// Name of an `[upstreams.NAME]` to forward to.
    pub upstream: Option<String>,
    /// Remove this prefix from the path before forwarding.
    pub strip_prefix: Option<String>,
    /// Replace the forwarded path; `{param}` placeholders take the captured values.
    pub rewrite: Option<String>,
    /// Answer from the gateway itself (API Gateway's mock integration).
    pub response: Option<MockResponseConfig>,
    /// Served instead of an error when the upstream fails, times out or is open.
    pub fallback: Option<MockResponseConfig>,
    /// Injected latency and errors, for chaos testing.
    pub fault: Option<FaultConfig>,
    /// Providers that may authenticate the request, any one sufficing: `["jwt:main"]`.
    pub auth: Option<Vec<String>>,
    /// Scopes the principal must all hold.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// `[rate_limits.NAME]` policies the request must pass, all of them.
    pub rate_limit: Option<OneOrMany>,
    /// A JSON Schema file (relative to the config file) the request body must match.
    pub request_schema: Option<String>,
    /// JSON and header rewrites of the request and the response.
    pub transform: Option<TransformConfig>,
    /// Call several upstreams in parallel and merge their JSON answers.
    pub aggregate: Option<Vec<AggregateBackendConfig>>,
    /// Aggregates: name the backends left out in an `_errors` member of the body.
    pub aggregate_errors: Option<bool>,
    /// Serve GET/HEAD answers from the `[cache]` store: `{ ttl, vary, per_principal }`.
    pub cache: Option<RouteCacheConfig>,
    /// The API version this route serves (`/v2/...`, or chosen by `[versioning]`).
    pub version: Option<String>,
    /// `Deprecation`/`Sunset`/`Link` headers on every response, and `deprecated` in OpenAPI.
    pub deprecated: Option<DeprecatedConfig>,
    /// Send the body to an SQS queue.
    pub sqs: Option<aws::SqsConfig>,
    /// Publish the body to an SNS topic.
    pub sns: Option<aws::SnsConfig>,
    /// Read, write and delete one S3 object.
    pub s3: Option<aws::S3Config>,
    /// Read, write, delete or query DynamoDB items.
    pub dynamodb: Option<aws::DynamoDbConfig>,
    /// Put the body on a Kinesis stream.
    pub kinesis: Option<aws::KinesisConfig>,
    /// Put an event with the JSON body as its detail on an EventBridge bus.
    pub eventbridge: Option<aws::EventBridgeConfig>,
    /// Start a Step Functions execution with the JSON body as its input.
    pub step_functions: Option<aws::StepFunctionsConfig>,
}

impl RouteConfig {
    fn aws_keys(&self) -> aws::AwsRouteKeys<'_> {
        aws::AwsRouteKeys {
            sqs: self.sqs.as_ref(),
            sns: self.sns.as_ref(),
            s3: self.s3.as_ref(),
            dynamodb: self.dynamodb.as_ref(),
            kinesis: self.kinesis.as_ref(),
            eventbridge: self.eventbridge.as_ref(),
            step_functions: self.step_functions.as_ref(),
        }
    }
}

/// One backend of an `aggregate` route.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AggregateBackendConfig {
    pub upstream: String,
    /// Path and query on the upstream; `{param}` takes the route's captured values.
    pub path: String,
    /// Default `GET`.
    pub method: Option<String>,
    /// Member of the merged body this backend's JSON goes under; without it, the backend's
    /// object members are merged at the root.
    pub key: Option<String>,
    /// Bound on this backend's call, on top of the upstream's own timeout.
    pub timeout: Option<HumanDuration>,
    /// When this backend fails, the whole answer is 502.
    #[serde(default)]
    pub required: bool,
}

/// `fault = { delay, delay_percent, abort_status, abort_percent }`
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FaultConfig {
    pub delay: Option<HumanDuration>,
    #[serde(default)]
    pub delay_percent: f64,
    pub abort_status: Option<u16>,
    #[serde(default)]
    pub abort_percent: f64,
    /// AWS routes: an error answer with this AWS code (`ThrottlingException`) per attempt.
    pub aws_error: Option<String>,
    #[serde(default)]
    pub aws_error_percent: f64,
    /// AWS routes: the connection fails, per attempt.
    #[serde(default)]
    pub reset_percent: f64,
}

/// A fixed response served by the gateway.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MockResponseConfig {
    #[serde(default = "default_mock_status")]
    pub status: u16,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub body: String,
}

fn default_mock_status() -> u16 {
    200
}

/// One name or a list of names: `rate_limit = "a"` or `rate_limit = ["a", "b"]`.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub fn as_slice(&self) -> &[String] {
        match self {
            OneOrMany::One(name) => std::slice::from_ref(name),
            OneOrMany::Many(names) => names,
        }
    }
}

#[derive(Clone, Debug)]
pub struct RoutePlan {
    /// The path template as written, e.g. `/users/{*rest}`; also the route's name in logs.
    pub path: String,
    /// `None` accepts every method.
    pub methods: Option<Vec<Method>>,
    pub action: RouteAction,
    pub fallback: Option<MockRoute>,
    /// The gateway's own fault injection, before the action; on AWS routes it is in
    /// [`RoutePlan::aws_fault`] instead.
    pub fault: Option<Fault>,
    /// An AWS route's fault, injected into each attempt below the SDK's retries.
    pub aws_fault: Option<aws::AwsFault>,
    /// Empty: a public route.
    pub auth: Vec<ProviderRef>,
    pub scopes: Vec<String>,
    /// Names of `[rate_limits.NAME]` policies, all of which must pass.
    pub rate_limits: Vec<String>,
    /// The JSON Schema the request body must match.
    pub request_schema: Option<std::sync::Arc<super::schema::RequestSchema>>,
    pub transform: TransformSettings,
    /// The API version this route serves; `None` serves every version.
    pub version: Option<String>,
    pub deprecation: Option<super::version::config::Deprecation>,
    pub cache: Option<RouteCacheSettings>,
    /// What the OpenAPI document says of it beyond what the gateway derives.
    pub docs: crate::docs::config::RouteDocs,
}

#[derive(Clone, Debug)]
pub enum RouteAction {
    Proxy {
        upstream: String,
        target: TargetPath,
    },
    Mock(MockRoute),
    Aws(aws::AwsAction),
    Aggregate {
        backends: Vec<AggregateBackend>,
        /// List the backends left out in an `_errors` member.
        report_errors: bool,
    },
}

/// One backend call of an aggregate route.
#[derive(Clone, Debug)]
pub struct AggregateBackend {
    pub upstream: String,
    /// Path and query, with the route's parameters to substitute.
    pub target: Vec<TemplatePart>,
    pub method: Method,
    pub key: Option<String>,
    pub timeout: Option<std::time::Duration>,
    pub required: bool,
}

impl AggregateBackend {
    /// How the backend is named in `_errors` and problems: its key, else its upstream.
    pub fn name(&self) -> &str {
        self.key.as_deref().unwrap_or(&self.upstream)
    }
}

/// How the normalized request path becomes the upstream path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TargetPath {
    Unchanged,
    StripPrefix(String),
    Rewrite(Vec<TemplatePart>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TemplatePart {
    Literal(String),
    Param(String),
}

impl RoutePlan {
    /// The AWS call of an AWS route.
    pub fn aws(&self) -> Option<&aws::AwsAction> {
        match &self.action {
            RouteAction::Aws(action) => Some(action),
            _ => None,
        }
    }

    /// The path template clients use: a versioned route's is under its version prefix
    /// (`/v2/things/{*rest}`), the form that needs no version header.
    pub fn public_path(&self) -> String {
        match &self.version {
            Some(version) => format!("/{version}{}", self.path),
            None => self.path.clone(),
        }
    }
}

/// Validates `routes[index]` against what it may refer to.
fn plan(
    index: usize,
    route: &RouteConfig,
    names: &Names<'_>,
    problems: &mut Problems,
) -> Option<RoutePlan> {
    let key = format!("routes[{index}]");
    let before = problems.count();

    let params = check_path_template(&route.path)
        .map_err(|message| problems.add(format!("{key}.path"), message))
        .unwrap_or_default();
    if names.builtins.covers(&route.path) {
        problems.add(
            format!("{key}.path"),
            format!("{:?} is a built-in endpoint of the gateway", route.path),
        );
    }

    let methods = route.methods.as_ref().map(|methods| {
        if methods.is_empty() {
            problems.add(
                format!("{key}.methods"),
                "list at least one method, or omit the key for any",
            );
        }
        methods
            .iter()
            .enumerate()
            .filter_map(|(i, m)| parse_method(&format!("{key}.methods[{i}]"), m, problems))
            .collect::<Vec<_>>()
    });

    let aws_keys = route.aws_keys();
    let mut actions: Vec<&str> = [
        ("upstream", route.upstream.is_some()),
        ("response", route.response.is_some()),
        ("aggregate", route.aggregate.is_some()),
    ]
    .into_iter()
    .filter_map(|(name, set)| set.then_some(name))
    .collect();
    actions.extend(aws_keys.set());
    let action = if actions.len() > 1 {
        problems.add(
            &key,
            format!(
                "set only one action; this route sets {}",
                actions
                    .iter()
                    .map(|name| format!("`{name}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        );
        None
    } else if let Some(backends) = &route.aggregate {
        path_keys_need_an_upstream(&key, route, problems);
        aggregate_backends(&key, backends, &params, names, problems).map(|backends| {
            RouteAction::Aggregate {
                backends,
                report_errors: route.aggregate_errors.unwrap_or(true),
            }
        })
    } else if let Some(response) = &route.response {
        path_keys_need_an_upstream(&key, route, problems);
        mock_response(&format!("{key}.response"), response, problems).map(RouteAction::Mock)
    } else if let Some(upstream) = &route.upstream {
        check_upstream(&format!("{key}.upstream"), upstream, names, problems);
        target_path(&key, route, &params, problems).map(|target| RouteAction::Proxy {
            upstream: upstream.clone(),
            target,
        })
    } else if !aws_keys.set().is_empty() {
        path_keys_need_an_upstream(&key, route, problems);
        aws::action(&key, aws_keys, &params, methods.as_deref(), problems).map(RouteAction::Aws)
    } else {
        problems.add(
            &key,
            "set an action: `upstream` (proxy), `response` (mock), `aggregate`, or an AWS \
             service (`sqs`, `sns`, `s3`, `dynamodb`, `kinesis`, `eventbridge`, `step_functions`)",
        );
        None
    };
    // An AWS route serves its action's methods unless it lists its own.
    let methods = match (&methods, &action) {
        (None, Some(RouteAction::Aws(aws))) => Some(aws.methods()),
        _ => methods,
    };

    if route.aggregate_errors.is_some() && route.aggregate.is_none() {
        problems.add(
            format!("{key}.aggregate_errors"),
            "only applies to routes with `aggregate`",
        );
    }
    let is_aws = !aws_keys.set().is_empty();
    let fallback = route.fallback.as_ref().and_then(|fallback| {
        if route.upstream.is_none() && !is_aws {
            problems.add(
                format!("{key}.fallback"),
                "only applies to routes with an `upstream` or an AWS service",
            );
        }
        mock_response(&format!("{key}.fallback"), fallback, problems)
    });
    let fault = route
        .fault
        .as_ref()
        .map(|config| fault(&format!("{key}.fault"), config, is_aws, problems));
    // On an AWS route the fault is injected into each attempt, below the SDK's retries.
    let (fault, aws_fault) = match fault {
        Some(fault) if is_aws => (None, Some(fault.into_aws())),
        fault => (fault.map(|f| f.gateway), None),
    };
    let auth = route_auth(&key, route, names, problems);
    let rate_limits = crate::ratelimit::config::route_policies(
        &key,
        route.rate_limit.as_ref(),
        names.policies,
        problems,
    );
    let request_schema = route.request_schema.as_deref().and_then(|file| {
        super::schema::load_request_schema(
            &format!("{key}.request_schema"),
            file,
            names.base_dir,
            problems,
        )
    });

    let transform = route
        .transform
        .as_ref()
        .map(|t| crate::transform::config::settings(&key, t, problems))
        .unwrap_or_default();

    if let Some(version) = &route.version {
        super::version::config::check_version(&format!("{key}.version"), version, problems);
    }
    let deprecation = route.deprecated.as_ref().and_then(|deprecated| {
        super::version::config::deprecation(
            &format!("{key}.deprecated"),
            deprecated,
            std::time::SystemTime::now(),
            problems,
        )
    });

    let cache = route.cache.as_ref().and_then(|cache| {
        crate::cache::config::route_cache(
            &format!("{key}.cache"),
            cache,
            methods.as_deref(),
            problems,
        )
    });

    let docs = crate::docs::config::route_docs(
        &key,
        route.name.as_deref(),
        route.summary.as_deref(),
        route.description.as_deref(),
        &route.tags,
        problems,
    );

    (problems.count() == before).then_some(())?;
    Some(RoutePlan {
        path: route.path.clone(),
        methods,
        action: action?,
        fallback,
        fault,
        aws_fault,
        auth,
        scopes: route.scopes.clone(),
        rate_limits,
        request_schema,
        transform,
        version: route.version.clone(),
        deprecation,
        cache,
        docs,
    })
}

/// `strip_prefix` and `rewrite` shape the forwarded path: a mock or an aggregate has none.
fn path_keys_need_an_upstream(key: &str, route: &RouteConfig, problems: &mut Problems) {
    for (field, set) in [
        ("strip_prefix", route.strip_prefix.is_some()),
        ("rewrite", route.rewrite.is_some()),
    ] {
        if set {
            problems.add(
                format!("{key}.{field}"),
                "only applies to routes with an `upstream`",
            );
        }
    }
}

fn check_upstream(key: &str, upstream: &str, names: &Names<'_>, problems: &mut Problems) {
    if !names.upstreams.contains(&upstream) {
        let known = &names.upstreams;
        let known = if known.is_empty() {
            "none defined".to_owned()
        } else {
            known.join(", ")
        };
        problems.add(
            key,
            format!("unknown upstream {upstream:?} (known: {known})"),
        );
    }
}

fn aggregate_backends(
    key: &str,
    backends: &[AggregateBackendConfig],
    params: &[String],
    names: &Names<'_>,
    problems: &mut Problems,
) -> Option<Vec<AggregateBackend>> {
    let before = problems.count();
    if backends.is_empty() {
        problems.add(format!("{key}.aggregate"), "list at least one backend");
    }
    let mut members: Vec<&str> = Vec::new();
    let mut out = Vec::with_capacity(backends.len());
    for (i, backend) in backends.iter().enumerate() {
        let key = format!("{key}.aggregate[{i}]");
        check_upstream(
            &format!("{key}.upstream"),
            &backend.upstream,
            names,
            problems,
        );
        let target = parse_template(&backend.path, params)
            .map_err(|message| problems.add(format!("{key}.path"), message))
            .ok();
        let method = match &backend.method {
            None => Some(Method::GET),
            Some(m) => parse_method(&format!("{key}.method"), m, problems),
        };
        if let Some(member) = &backend.key {
            if member.is_empty() || member == "_errors" {
                problems.add(
                    format!("{key}.key"),
                    "must be a non-empty name other than `_errors`",
                );
            } else if members.contains(&member.as_str()) {
                problems.add(
                    format!("{key}.key"),
                    format!("{member:?} is used by another backend"),
                );
            }
            members.push(member);
        }
        if backend.timeout.is_some_and(|t| t.0.is_zero()) {
            problems.add(format!("{key}.timeout"), "must be more than zero");
        }
        if let (Some(target), Some(method)) = (target, method) {
            out.push(AggregateBackend {
                upstream: backend.upstream.clone(),
                target,
                method,
                key: backend.key.clone(),
                timeout: backend.timeout.map(|t| t.0),
                required: backend.required,
            });
        }
    }
    (problems.count() == before).then_some(out)
}

fn route_auth(
    key: &str,
    route: &RouteConfig,
    names: &Names<'_>,
    problems: &mut Problems,
) -> Vec<ProviderRef> {
    let Some(entries) = &route.auth else {
        if !route.scopes.is_empty() {
            problems.add(format!("{key}.scopes"), "scopes need `auth` on the route");
        }
        return vec![];
    };
    if entries.is_empty() {
        problems.add(
            format!("{key}.auth"),
            "list at least one provider, or omit the key for a public route",
        );
    }
    provider_refs(key, entries, &names.jwt, &names.api_keys, problems)
}

/// `auth` entries (`jwt:NAME`, `api_key:NAME`) naming configured providers; `key` is the
/// table holding the `auth` key (a route, a built-in endpoint).
pub(crate) fn provider_refs(
    key: &str,
    entries: &[String],
    jwt: &[&str],
    api_keys: &[&str],
    problems: &mut Problems,
) -> Vec<ProviderRef> {
    let known = || {
        let known: Vec<String> = jwt
            .iter()
            .map(|n| format!("jwt:{n}"))
            .chain(api_keys.iter().map(|n| format!("api_key:{n}")))
            .collect();
        if known.is_empty() {
            "none defined".to_owned()
        } else {
            known.join(", ")
        }
    };
    entries
        .iter()
        .enumerate()
        .filter_map(|(i, entry)| {
            let found = match entry.split_once(':') {
                Some(("jwt", name)) if jwt.contains(&name) => {
                    Some(ProviderRef::Jwt(name.to_owned()))
                }
                Some(("api_key", name)) if api_keys.contains(&name) => {
                    Some(ProviderRef::ApiKey(name.to_owned()))
                }
                _ => None,
            };
            if found.is_none() {
                problems.add(
                    format!("{key}.auth[{i}]"),
                    format!("unknown provider {entry:?} (known: {})", known()),
                );
            }
            found
        })
        .collect()
}

/// A validated `fault`: the gateway's own part, and on AWS routes the per-attempt part.
struct FaultPlan {
    gateway: Fault,
    aws_error: Option<(String, f64)>,
    reset: Option<f64>,
}

impl FaultPlan {
    fn into_aws(self) -> aws::AwsFault {
        aws::AwsFault {
            delay: self.gateway.delay,
            error: self.aws_error,
            status: self
                .gateway
                .abort
                .map(|(status, probability)| (status.as_u16(), probability)),
            reset: self.reset,
        }
    }
}

fn fault(key: &str, fault: &FaultConfig, is_aws: bool, problems: &mut Problems) -> FaultPlan {
    for (field, value) in [
        ("delay_percent", fault.delay_percent),
        ("abort_percent", fault.abort_percent),
        ("aws_error_percent", fault.aws_error_percent),
        ("reset_percent", fault.reset_percent),
    ] {
        if !(0.0..=100.0).contains(&value) {
            problems.add(format!("{key}.{field}"), "a percentage from 0 to 100");
        }
    }
    if fault.delay.is_none() && fault.delay_percent > 0.0 {
        problems.add(format!("{key}.delay"), "required with delay_percent");
    }
    let abort_status = fault.abort_status.and_then(|status| {
        let parsed = StatusCode::from_u16(status)
            .ok()
            .filter(|s| (200..=599).contains(&s.as_u16()));
        if parsed.is_none() {
            problems.add(
                format!("{key}.abort_status"),
                format!("not a final HTTP status (200-599): {status}"),
            );
        }
        parsed
    });
    if fault.abort_status.is_none() && fault.abort_percent > 0.0 {
        problems.add(format!("{key}.abort_status"), "required with abort_percent");
    }
    if !is_aws {
        for (field, set) in [
            (
                "aws_error",
                fault.aws_error.is_some() || fault.aws_error_percent > 0.0,
            ),
            ("reset_percent", fault.reset_percent > 0.0),
        ] {
            if set {
                problems.add(
                    format!("{key}.{field}"),
                    "only applies to routes that call an AWS service",
                );
            }
        }
    }
    if let Some(code) = &fault.aws_error
        && (code.is_empty() || !code.chars().all(|c| c.is_ascii_alphanumeric() || c == '.'))
    {
        problems.add(
            format!("{key}.aws_error"),
            format!("not an AWS error code such as \"ThrottlingException\": {code:?}"),
        );
    }
    if fault.aws_error.is_none() && fault.aws_error_percent > 0.0 {
        problems.add(
            format!("{key}.aws_error"),
            "required with aws_error_percent",
        );
    }
    FaultPlan {
        gateway: Fault {
            delay: fault.delay.map(|d| (d.0, fault.delay_percent / 100.0)),
            abort: abort_status.map(|status| (status, fault.abort_percent / 100.0)),
        },
        aws_error: fault
            .aws_error
            .clone()
            .map(|code| (code, fault.aws_error_percent / 100.0)),
        reset: (fault.reset_percent > 0.0).then_some(fault.reset_percent / 100.0),
    }
}

/// Checks a route path and returns its parameter names.
///
/// Paths must already be in the normalized form requests are matched in (see
/// `routes::normalize`), or they could never match.
fn check_path_template(path: &str) -> Result<Vec<String>, String> {
    if !path.starts_with('/') {
        return Err(format!("must start with '/': {path:?}"));
    }
    if path.contains(['?', '#', '\\']) {
        return Err(format!("no '?', '#' or '\\' in a route path: {path:?}"));
    }
    if path.contains("//") {
        return Err(format!("empty segment ('//') in {path:?}"));
    }
    let mut params = Vec::new();
    let segments: Vec<&str> = path[1..].split('/').collect();
    for (i, segment) in segments.iter().enumerate() {
        if *segment == "." || *segment == ".." {
            return Err(format!("dot segment in {path:?}"));
        }
        if segment.starts_with(':') || (segment.starts_with('*') && segment.len() > 1) {
            return Err(format!(
                "{segment:?} is the old syntax; write {{{}}} or {{*{}}}",
                &segment[1..],
                &segment[1..]
            ));
        }
        if let Some(inner) = segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            let (name, wildcard) = match inner.strip_prefix('*') {
                Some(name) => (name, true),
                None => (inner, false),
            };
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!("invalid parameter name {name:?} in {path:?}"));
            }
            if wildcard && i + 1 != segments.len() {
                return Err(format!(
                    "a {{*{name}}} wildcard must be the last segment of {path:?}"
                ));
            }
            params.push(name.to_owned());
        } else if segment.contains(['{', '}']) {
            return Err(format!(
                "a parameter must be a whole segment: {segment:?} in {path:?}"
            ));
        }
    }
    Ok(params)
}

fn target_path(
    key: &str,
    route: &RouteConfig,
    params: &[String],
    problems: &mut Problems,
) -> Option<TargetPath> {
    match (&route.strip_prefix, &route.rewrite) {
        (Some(_), Some(_)) => {
            problems.add(key, "set either `strip_prefix` or `rewrite`, not both");
            None
        }
        (None, None) => Some(TargetPath::Unchanged),
        (Some(prefix), None) => {
            let static_part = route.path.split('{').next().unwrap_or_default();
            if !prefix.starts_with('/') || (prefix.len() > 1 && prefix.ends_with('/')) {
                problems.add(
                    format!("{key}.strip_prefix"),
                    "must start with '/' and not end with '/'",
                );
                None
            } else if !static_part.starts_with(prefix.as_str())
                || !(static_part.len() == prefix.len()
                    || static_part[prefix.len()..].starts_with('/'))
            {
                problems.add(
                    format!("{key}.strip_prefix"),
                    format!(
                        "{prefix:?} is not a leading part of the path {:?}",
                        route.path
                    ),
                );
                None
            } else {
                Some(TargetPath::StripPrefix(prefix.clone()))
            }
        }
        (None, Some(rewrite)) => match parse_template(rewrite, params) {
            Ok(parts) => Some(TargetPath::Rewrite(parts)),
            Err(message) => {
                problems.add(format!("{key}.rewrite"), message);
                None
            }
        },
    }
}

fn parse_template(template: &str, params: &[String]) -> Result<Vec<TemplatePart>, String> {
    if !template.starts_with('/') {
        return Err(format!("must start with '/': {template:?}"));
    }
    let mut parts = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        if open > 0 {
            parts.push(TemplatePart::Literal(rest[..open].to_owned()));
        }
        let close = rest[open..]
            .find('}')
            .ok_or_else(|| format!("unclosed '{{' in {template:?}"))?;
        let name = rest[open + 1..open + close].trim_start_matches('*');
        if !params.iter().any(|p| p == name) {
            return Err(format!(
                "{{{name}}} is not a parameter of the route path (parameters: {})",
                if params.is_empty() {
                    "none".to_owned()
                } else {
                    params.join(", ")
                }
            ));
        }
        parts.push(TemplatePart::Param(name.to_owned()));
        rest = &rest[open + close + 1..];
    }
    if rest.contains('}') {
        return Err(format!("unmatched '}}' in {template:?}"));
    }
    if !rest.is_empty() {
        parts.push(TemplatePart::Literal(rest.to_owned()));
    }
    Ok(parts)
}

fn mock_response(
    key: &str,
    response: &MockResponseConfig,
    problems: &mut Problems,
) -> Option<MockRoute> {
    let before = problems.count();
    let status = StatusCode::from_u16(response.status)
        .ok()
        .filter(|s| (200..=599).contains(&s.as_u16()));
    if status.is_none() {
        problems.add(
            format!("{key}.status"),
            format!("not a final HTTP status (200-599): {}", response.status),
        );
    }
    let mut headers = HeaderMap::new();
    for (name, value) in &response.headers {
        match (
            HeaderName::try_from(name.as_str()),
            HeaderValue::try_from(value.as_str()),
        ) {
            (Ok(name), Ok(value)) => {
                headers.append(name, value);
            }
            (Err(_), _) => problems.add(
                format!("{key}.headers"),
                format!("invalid header name {name:?}"),
            ),
            (_, Err(_)) => problems.add(format!("{key}.headers.{name}"), "invalid header value"),
        }
    }
    (problems.count() == before).then(|| MockRoute {
        status: status.unwrap_or(StatusCode::OK),
        headers,
        body: Bytes::from(response.body.clone()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::problems_in as problems;

    #[test]
    fn an_unknown_upstream_names_the_route_and_the_known_ones() {
        let found = problems(
            r#"
            [upstreams.users]
            url = "http://127.0.0.1:9001"
            [upstreams.orders]
            url = "http://127.0.0.1:9002"
            [[routes]]
            path = "/a"
            upstream = "users"
            [[routes]]
            path = "/b"
            upstream = "users"
            [[routes]]
            path = "/c"
            upstream = "userz"
            "#,
        );
        assert_eq!(
            found,
            vec![r#"routes[2].upstream: unknown upstream "userz" (known: orders, users)"#]
        );
    }

    #[test]
    fn old_axum_syntax_gets_a_hint() {
        let found = problems("[[routes]]\npath = \"/users/:id\"\nresponse = {}\n");
        assert!(found[0].contains("write {id}"), "{found:?}");
    }

    #[test]
    fn rewrite_placeholders_must_be_route_params() {
        let found = problems(
            "[upstreams.u]\nurl = \"http://127.0.0.1:1\"\n[[routes]]\npath = \"/a/{id}\"\nupstream = \"u\"\nrewrite = \"/b/{name}\"\n",
        );
        assert!(
            found[0].starts_with("routes[0].rewrite: {name} is not a parameter"),
            "{found:?}"
        );
    }

    #[test]
    fn rewrite_templates_split_into_literals_and_params() {
        let parts =
            parse_template("/v2/users/{id}/x/{*rest}", &["id".into(), "rest".into()]).unwrap();
        assert_eq!(
            parts,
            vec![
                TemplatePart::Literal("/v2/users/".into()),
                TemplatePart::Param("id".into()),
                TemplatePart::Literal("/x/".into()),
                TemplatePart::Param("rest".into()),
            ]
        );
    }

    #[test]
    fn strip_prefix_must_lead_the_path_on_a_segment_boundary() {
        let base = "[upstreams.u]\nurl = \"http://127.0.0.1:1\"\n[[routes]]\nupstream = \"u\"\n";
        assert!(
            problems(&format!(
                "{base}path = \"/users/{{*rest}}\"\nstrip_prefix = \"/users\"\n"
            ))
            .is_empty()
        );
        assert!(
            !problems(&format!(
                "{base}path = \"/users/{{*rest}}\"\nstrip_prefix = \"/use\"\n"
            ))
            .is_empty()
        );
        assert!(
            !problems(&format!(
                "{base}path = \"/users/{{*rest}}\"\nstrip_prefix = \"/orders\"\n"
            ))
            .is_empty()
        );
    }

    #[test]
    fn one_path_may_split_methods_but_not_share_them() {
        let base = "[[routes]]\npath = \"/a\"\nmethods = [\"GET\"]\nresponse = {}\n";
        assert!(
            problems(&format!(
                "{base}[[routes]]\npath = \"/a\"\nmethods = [\"post\"]\nresponse = {{}}\n"
            ))
            .is_empty()
        );
        let found = problems(&format!(
            "{base}[[routes]]\npath = \"/a\"\nresponse = {{}}\n"
        ));
        assert_eq!(found.len(), 1);
        assert!(
            found[0].starts_with("routes[1].methods: routes[0] already serves"),
            "{found:?}"
        );
    }

    #[test]
    fn a_wildcard_needs_at_least_one_character() {
        let mut matcher = matchit::Router::new();
        matcher.insert("/files/{*rest}", ()).unwrap();
        assert!(matcher.at("/files/a/b").is_ok());
        assert!(matcher.at("/files").is_err());
        assert!(
            matcher.at("/files/").is_err(),
            "documented in docs/configuration.md"
        );
    }

    #[test]
    fn ambiguous_paths_are_rejected() {
        let found = problems(
            "[[routes]]\npath = \"/a/{x}\"\nresponse = {}\n[[routes]]\npath = \"/a/{y}\"\nresponse = {}\n",
        );
        assert_eq!(
            found,
            [
                r#"routes[1].path: overlaps routes[0] ("/a/{x}"): both would match the same requests; name the parameters at the same place alike, or make one of the segments literal"#
            ]
        );
    }
}
