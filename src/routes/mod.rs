//! The route table: built-in endpoints as axum routes, and every configured `[[routes]]`
//! entry behind one dispatcher that matches the normalized path, picks the API version and
//! the method, and runs the route's pipeline: auth, rate limits, cache, validation,
//! transforms, then its handler (proxy, mock or aggregate).
//!
//! Routes are grouped by path so one path can send GET to one place and POST to another;
//! a method no route on the path accepts is 405 with `Allow` (RFC 9110 §15.5.6).

mod aggregate;
pub mod builtin;
pub mod config;
mod fault;
pub mod mock;
pub mod normalize;
mod proxy;

pub use proxy::X_PROXYFN_FALLBACK;
pub mod schema;
pub(crate) mod validate;
pub mod version;

use std::{collections::BTreeMap, sync::Arc};

use axum::{
    Router,
    extract::{Request, State},
    response::{IntoResponse, Response},
};
use http::{HeaderValue, Method};

use config::{RouteAction, RoutePlan};

use crate::{
    auth::{Providers, RoutePolicy},
    aws::{Aws, AwsRoute},
    cache::{Lookup, ResponseCache, RouteCache},
    config::ConfigError,
    config::Plan,
    context::RequestContext,
    error::Error,
    observability::{Notes, metrics::RouteMetrics},
    ratelimit::{Decision, RateLimiter, RouteLimits, RoutePhases},
    transform::Transform,
    upstream::Upstream,
};

/// Builds the routers of built-in endpoints and configured routes.
pub fn router(
    plan: &Plan,
    upstreams: &BTreeMap<String, Upstream>,
    providers: &Providers,
    limiter: &RateLimiter,
    cache: &ResponseCache,
    aws: Option<&Aws>,
) -> Result<Routers, ConfigError> {
    let services = Services {
        upstreams,
        providers,
        limiter,
        cache,
        aws,
    };
    let table = Arc::new(RouteTable::new(plan, &services)?);
    // `/ready` reports the upstreams that routes depend on.
    let mut routed: Vec<Upstream> = Vec::new();
    for route in plan.routes.iter() {
        let names: Vec<&str> = match &route.action {
            RouteAction::Proxy { upstream, .. } => vec![upstream.as_str()],
            RouteAction::Aggregate { backends, .. } => {
                backends.iter().map(|b| b.upstream.as_str()).collect()
            }
            RouteAction::Mock(_) | RouteAction::Aws(_) => vec![],
        };
        for name in names {
            if !routed.iter().any(|u| u.name() == name) {
                routed.push(upstreams[name].clone());
            }
        }
    }
    let (builtins, admin) = builtin::routers(plan, routed, providers);
    Ok(Routers {
        public: builtins
            .with_state::<Arc<RouteTable>>(())
            .fallback(dispatch)
            .with_state(table),
        admin,
    })
}

/// The router of the routes and the public built-ins, and with `server.admin_listen` the
/// admin listener's.
pub struct Routers {
    pub public: Router,
    pub admin: Option<Router>,
}

/// What routes are built with: the clients and stores of the app.
struct Services<'a> {
    upstreams: &'a BTreeMap<String, Upstream>,
    providers: &'a Providers,
    limiter: &'a RateLimiter,
    cache: &'a ResponseCache,
    aws: Option<&'a Aws>,
}

struct RouteTable {
    /// Finds the index into `paths` of a request path; filled once, by validation.
    matcher: matchit::Router<usize>,
    paths: Vec<PathRoutes>,
    versioning: version::Versioning,
    /// Every route `version`, for recognizing a version prefix.
    versions: Vec<Arc<str>>,
}

/// The routes sharing one path template.
struct PathRoutes {
    routes: Vec<Route>,
    /// The `Allow` value for 405 answers, computed once.
    allow: HeaderValue,
    /// The versions of this path's routes, listed in unknown-version answers; empty when no
    /// route here is versioned.
    versions: String,
}

struct Route {
    /// The path template clients use; the route's name in logs.
    template: Arc<str>,
    /// The route's identity in the access log and its metric handles.
    metrics: Arc<RouteMetrics>,
    version: Option<Arc<str>>,
    deprecation: Option<version::config::Deprecation>,
    methods: Option<Vec<Method>>,
    auth: Option<RoutePolicy>,
    limits: RoutePhases,
    fault: Option<fault::Fault>,
    validator: Option<validate::RequestValidator>,
    transform: Option<Transform>,
    cache: Option<RouteCache>,
    action: Action,
}

/// What answers a route's requests.
enum Action {
    Proxy(proxy::ProxyRoute),
    Mock(mock::MockRoute),
    Aggregate(aggregate::AggregateRoute),
    Aws(Box<AwsRoute>),
}

/// A matched route's action with the upstream paths it calls, resolved while the matched
/// parameters still borrow the request path.
enum Call<'r> {
    Proxy {
        proxy: &'r proxy::ProxyRoute,
        target: String,
    },
    Aggregate {
        aggregate: &'r aggregate::AggregateRoute,
        targets: Vec<String>,
    },
    Mock(&'r mock::MockRoute),
    Aws {
        aws: &'r AwsRoute,
        /// The path parameters, percent-decoded, for the call's templates.
        params: Vec<(String, String)>,
    },
}

impl Action {
    fn call(&self, path: &str, params: &matchit::Params<'_, '_>) -> Call<'_> {
        match self {
            Action::Proxy(proxy) => Call::Proxy {
                proxy,
                target: proxy.target_path(path, params),
            },
            Action::Aggregate(aggregate) => Call::Aggregate {
                aggregate,
                targets: aggregate.targets(params),
            },
            Action::Mock(mock) => Call::Mock(mock),
            Action::Aws(aws) => Call::Aws {
                aws,
                params: params
                    .iter()
                    .map(|(name, value)| {
                        let value = percent_encoding::percent_decode_str(value).decode_utf8_lossy();
                        (name.to_owned(), value.into_owned())
                    })
                    .collect(),
            },
        }
    }
}

impl Call<'_> {
    async fn run(self, request: Request) -> Response {
        match self {
            Call::Proxy { proxy, target } => proxy.forward(request, &target).await,
            Call::Aggregate { aggregate, targets } => aggregate.respond(request, targets).await,
            Call::Mock(mock) => mock.response(),
            Call::Aws { aws, params } => aws.respond(request, params).await,
        }
    }
}

impl Route {
    /// GET routes also answer HEAD (RFC 9110 §9.3.2). A route without `methods` serves the
    /// methods its OpenAPI operations list ([`UNLISTED_METHODS`]); any other (TRACE, which
    /// echoes the request back for cross-site tracing, CONNECT, extension methods) only
    /// when listed, so the document says exactly what is served.
    fn accepts(&self, method: &Method) -> bool {
        match &self.methods {
            None => UNLISTED_METHODS.contains(method),
            Some(methods) => {
                methods.contains(method)
                    || (method == Method::HEAD && methods.contains(&Method::GET))
            }
        }
    }
}

impl RouteTable {
    fn new(plan: &Plan, services: &Services<'_>) -> Result<Self, ConfigError> {
        let paths = plan
            .routes
            .paths()
            .map(|routes| {
                Ok(PathRoutes::new(
                    routes
                        .map(|route| Route::new(route, plan, services))
                        .collect::<Result<_, ConfigError>>()?,
                ))
            })
            .collect::<Result<_, ConfigError>>()?;
        let mut versions: Vec<Arc<str>> = plan
            .routes
            .iter()
            .filter_map(|r| r.version.as_deref().map(Arc::from))
            .collect();
        versions.sort_unstable();
        versions.dedup();
        Ok(Self {
            matcher: plan.routes.matcher().clone(),
            paths,
            versioning: version::Versioning::new(&plan.versioning),
            versions,
        })
    }

    /// The route a request goes to, and what it calls (resolved here, while the matched
    /// parameters borrow the path).
    fn resolve(&self, request: &Request) -> Result<Matched<'_>, Error> {
        let path = request.uri().path();
        if !self.versions.is_empty()
            && let Some((segment, rest)) = version::split_prefix(path)
            && let Ok(found) = self.matcher.at(rest)
        {
            let entry = &self.paths[*found.value];
            if !entry.versions.is_empty() {
                if self.versions.iter().any(|v| &**v == segment) {
                    let route = entry.pick(Some(segment), request.method())?;
                    return Ok(Matched {
                        call: route.action.call(rest, &found.params),
                        route,
                        version_in_path: true,
                    });
                }
                if self.matcher.at(path).is_err() {
                    return Err(Error::UnknownVersion {
                        requested: Some(segment.to_owned()),
                        known: entry.versions.clone(),
                    });
                }
            }
        }
        let found = self.matcher.at(path).map_err(|_| Error::RouteNotFound)?;
        let entry = &self.paths[*found.value];
        let requested = if entry.versions.is_empty() {
            None
        } else {
            self.versioning
                .requested(request.headers(), request.uri().query())
        };
        let route = entry.pick(requested, request.method())?;
        Ok(Matched {
            call: route.action.call(path, &found.params),
            route,
            version_in_path: false,
        })
    }
}

/// A request's route, and what the route calls for it.
struct Matched<'t> {
    route: &'t Route,
    call: Call<'t>,
    /// The version came from the path, so the answer does not vary with the version header.
    version_in_path: bool,
}

impl PathRoutes {
    fn new(routes: Vec<Route>) -> Self {
        let allow = allow_header(&routes);
        let mut versions: Vec<&str> = routes.iter().filter_map(|r| r.version.as_deref()).collect();
        versions.sort_unstable();
        versions.dedup();
        let versions = versions.join(", ");
        Self {
            routes,
            allow,
            versions,
        }
    }

    /// The route serving `method` in `version`: one of that version, else an unversioned one.
    fn pick(&self, version: Option<&str>, method: &Method) -> Result<&Route, Error> {
        let in_version = |route: &&Route| route.version.as_deref() == version;
        if !self.versions.is_empty()
            && !self
                .routes
                .iter()
                .any(|r| r.version.is_none() || in_version(&r))
        {
            return Err(Error::UnknownVersion {
                requested: version.map(str::to_owned),
                known: self.versions.clone(),
            });
        }
        self.routes
            .iter()
            .filter(in_version)
            .chain(self.routes.iter().filter(|r| r.version.is_none()))
            .find(|r| r.accepts(method))
            .ok_or_else(|| Error::MethodNotAllowed {
                allow: self.allow.clone(),
            })
    }
}

impl Route {
    fn new(route: &RoutePlan, plan: &Plan, services: &Services<'_>) -> Result<Self, ConfigError> {
        let Services {
            upstreams,
            providers,
            limiter,
            cache,
            aws,
        } = services;
        let template: Arc<str> = route.public_path().into();
        let action = match &route.action {
            RouteAction::Mock(response) => Action::Mock(response.clone()),
            RouteAction::Proxy { upstream, target } => Action::Proxy(proxy::ProxyRoute {
                upstream: upstreams[upstream].clone(),
                target: target.clone(),
                fallback: route.fallback.clone(),
            }),
            RouteAction::Aggregate {
                backends,
                report_errors,
            } => Action::Aggregate(aggregate::AggregateRoute::new(
                backends
                    .iter()
                    .map(|b| (b.clone(), upstreams[&b.upstream].clone()))
                    .collect(),
                *report_errors,
                plan.server.body_limit,
            )),
            RouteAction::Aws(action) => {
                let built = aws.and_then(|aws| {
                    AwsRoute::new(
                        aws,
                        action,
                        template.clone(),
                        route.aws_fault.clone(),
                        route.fallback.clone(),
                    )
                });
                let Some(built) = built else {
                    return Err(ConfigError::single(
                        "routes",
                        format!(
                            "{}: AWS {} is not available in this build",
                            route.path,
                            action.service()
                        ),
                    ));
                };
                Action::Aws(Box::new(built))
            }
        };
        let metrics = Arc::new(RouteMetrics::new(template.clone()));
        Ok(Route {
            cache: route.cache.as_ref().map(|settings| {
                RouteCache::new(cache, settings, template.clone(), metrics.clone())
            }),
            metrics,
            template,
            version: route.version.as_deref().map(Arc::from),
            deprecation: route.deprecation.clone(),
            methods: route.methods.clone(),
            fault: route.fault.clone(),
            auth: providers.policy(&route.path, &route.auth, &route.scopes),
            limits: limiter.route(&route.rate_limits),
            validator: route
                .request_schema
                .clone()
                .map(|schema| validate::RequestValidator::new(schema, plan.log.redact.clone())),
            transform: Transform::new(&route.transform, plan.server.body_limit),
            action,
        })
    }
}

/// What a route without `methods` serves.
pub const UNLISTED_METHODS: [Method; 7] = [
    Method::DELETE,
    Method::GET,
    Method::HEAD,
    Method::OPTIONS,
    Method::PATCH,
    Method::POST,
    Method::PUT,
];

fn allow_header(routes: &[Route]) -> HeaderValue {
    let mut methods: Vec<&str> = Vec::new();
    for route in routes {
        if route.methods.is_none() {
            methods.extend(UNLISTED_METHODS.iter().map(Method::as_str));
        }
        for method in route.methods.iter().flatten() {
            methods.push(method.as_str());
            if method == Method::GET {
                methods.push("HEAD");
            }
        }
    }
    methods.sort_unstable();
    methods.dedup();
    HeaderValue::from_str(&methods.join(", ")).unwrap_or(HeaderValue::from_static(""))
}

async fn dispatch(State(table): State<Arc<RouteTable>>, request: Request) -> Response {
    match table.resolve(&request) {
        Ok(matched) => serve(&table, matched, request).await,
        Err(error) => error.into_response(),
    }
}

/// The matched route's phases: [`admit`] (rate limits around auth), [`handle`] (the route's
/// own work) and [`respond`] (what every answer of the route carries, refusals included).
async fn serve(table: &RouteTable, matched: Matched<'_>, request: Request) -> Response {
    let Matched {
        route,
        call,
        version_in_path,
    } = matched;
    if let Some(notes) = Notes::of(request.extensions()) {
        notes.route(&route.metrics);
    }
    let (response, decision) = match admit(route, request).await {
        Ok(Admitted { request, decision }) => (handle(route, request, call).await, decision),
        Err(Refused { response, decision }) => (response, decision),
    };
    // The version came from a header, so the answer varies with it.
    let vary = route.version.is_some() && !version_in_path;
    respond(route, vary.then_some(&table.versioning), response, decision)
}

/// A request the route's limits and auth let through, with the limits' decision.
struct Admitted {
    request: Request,
    decision: Option<Decision>,
}

/// The answer to a request admission turned away. A refusing limit's answer carries its own
/// `RateLimit` headers, so it has no `decision` to apply.
struct Refused {
    response: Response,
    decision: Option<Decision>,
}

impl From<Response> for Refused {
    fn from(response: Response) -> Self {
        Refused {
            response,
            decision: None,
        }
    }
}

/// Address-keyed rate limits, then auth, then principal-keyed rate limits.
async fn admit(route: &Route, mut request: Request) -> Result<Admitted, Refused> {
    let mut decision = None;
    if let Some(limits) = &route.limits.before_auth {
        decision = Some(limit(limits, &request, None).await?);
    }
    if let Some(policy) = &route.auth
        && let Err(error) = policy.authorize(&mut request).await
    {
        return Err(Refused {
            response: error.into_response(),
            decision,
        });
    }
    if let Some(limits) = &route.limits.after_auth {
        decision = Some(limit(limits, &request, decision.as_ref()).await?);
    }
    Ok(Admitted { request, decision })
}

/// One phase of the route's rate limits, noted for the access log; a refusal is the answer.
/// (Not an `async fn`: the future must not hold the request, whose body is not `Sync`.)
fn limit<'a>(
    limits: &'a RouteLimits,
    request: &Request,
    earlier: Option<&'a Decision>,
) -> impl Future<Output = Result<Decision, Response>> + Send + 'a {
    let check = limits.check(request, earlier);
    let notes = RequestContext::of(request.extensions()).map(|c| c.notes.clone());
    async move {
        let checked = check.await;
        if let Some(notes) = notes {
            notes.rate_limit(match &checked {
                Ok(decision) => decision.outcome(),
                Err(Error::RateLimited { .. }) => "limited",
                Err(_) => "store_error_denied",
            });
        }
        checked.map_err(IntoResponse::into_response)
    }
}

/// The route's own work: a cache read, validation and the request transform, an injected
/// fault or the action, the response transform and a cache write.
async fn handle(route: &Route, request: Request, call: Call<'_>) -> Response {
    let lookup = route.cache.as_ref().map(|cache| cache.lookup(&request));
    if let (Some(cache), Some(Lookup::Use { key, read: true })) = (&route.cache, &lookup)
        && let Some(hit) = cache.get(key).await
    {
        return hit;
    }
    let request = match prepare(route, request).await {
        Ok(request) => request,
        Err(error) => return error.into_response(),
    };
    let method = request.method().clone();
    let injected = match &route.fault {
        Some(fault) => fault.inject(&route.template).await,
        None => None,
    };
    let response = match injected {
        Some(response) => response,
        None => call.run(request).await,
    };
    let response = match &route.transform {
        None => response,
        Some(transform) => transform.response(response, &method).await,
    };
    match (&route.cache, lookup) {
        (Some(cache), Some(Lookup::Use { key, .. })) => cache.put(key, response).await,
        (Some(cache), _) => cache.bypass(response),
        _ => response,
    }
}

/// Body validation, then the request transform.
async fn prepare(route: &Route, request: Request) -> Result<Request, Error> {
    let request = match &route.validator {
        None => request,
        Some(validator) => validator.validate(request).await?,
    };
    match &route.transform {
        None => Ok(request),
        Some(transform) => transform.request(request).await,
    }
}

/// Headers every answer of the route carries: its `RateLimit` state, `Vary` when the version
/// came from a header, and its deprecation.
fn respond(
    route: &Route,
    vary: Option<&version::Versioning>,
    mut response: Response,
    decision: Option<Decision>,
) -> Response {
    if let Some(decision) = decision {
        decision.apply(response.headers_mut());
    }
    if let Some(versioning) = vary {
        versioning.vary(response.headers_mut());
    }
    if let Some(deprecation) = &route.deprecation {
        version::mark_deprecated(deprecation, response.headers_mut());
    }
    response
}
