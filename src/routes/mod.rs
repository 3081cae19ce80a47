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
mod mock;
pub mod normalize;
mod proxy;
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
    cache::{Lookup, ResponseCache, RouteCache},
    config::Plan,
    error::Error,
    observability::{Notes, metrics::RouteMetrics},
    ratelimit::{Decision, RateLimiter, RouteLimits, RoutePhases},
    transform::Transform,
    upstream::Upstream,
};

/// The template of the route that matched, as a request extension (for logs and metrics).
#[derive(Clone, Debug)]
pub struct MatchedRoute(pub Arc<str>);

/// Builds the router of built-in endpoints and configured routes.
pub fn router(
    plan: &Plan,
    upstreams: &BTreeMap<String, Upstream>,
    providers: &Providers,
    limiter: &RateLimiter,
    cache: &ResponseCache,
) -> Router {
    let table = Arc::new(RouteTable::new(plan, upstreams, providers, limiter, cache));
    // `/ready` reports the upstreams that routes depend on.
    let mut routed: Vec<Upstream> = Vec::new();
    for route in &plan.routes {
        let names: Vec<&str> = match &route.action {
            RouteAction::Proxy { upstream, .. } => vec![upstream],
            RouteAction::Aggregate { backends, .. } => {
                backends.iter().map(|b| b.upstream.as_str()).collect()
            }
            RouteAction::Mock(_) => vec![],
        };
        for name in names {
            if !routed.iter().any(|u| u.name() == name) {
                routed.push(upstreams[name].clone());
            }
        }
    }
    builtin::router(plan, routed)
        .fallback(dispatch)
        .with_state(table)
}

struct RouteTable {
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
    template: MatchedRoute,
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
    handler: Handler,
}

enum Handler {
    Proxy(proxy::ProxyRoute),
    Mock(mock::MockRoute),
    Aggregate(aggregate::AggregateRoute),
}

/// Where a matched request goes upstream, computed while the path parameters are at hand.
enum Targets {
    None,
    Proxy(String),
    Aggregate(Vec<String>),
}

impl Route {
    fn targets(&self, path: &str, params: &matchit::Params<'_, '_>) -> Targets {
        match &self.handler {
            Handler::Proxy(proxy) => Targets::Proxy(proxy.target_path(path, params)),
            Handler::Aggregate(aggregate) => Targets::Aggregate(aggregate.targets(params)),
            Handler::Mock(_) => Targets::None,
        }
    }

    /// GET routes also answer HEAD (RFC 9110 §9.3.2).
    fn accepts(&self, method: &Method) -> bool {
        match &self.methods {
            None => true,
            Some(methods) => {
                methods.contains(method)
                    || (method == Method::HEAD && methods.contains(&Method::GET))
            }
        }
    }
}

impl RouteTable {
    fn new(
        plan: &Plan,
        upstreams: &BTreeMap<String, Upstream>,
        providers: &Providers,
        limiter: &RateLimiter,
        cache: &ResponseCache,
    ) -> Self {
        let mut grouped: BTreeMap<&str, Vec<&RoutePlan>> = BTreeMap::new();
        for route in &plan.routes {
            grouped.entry(route.path.as_str()).or_default().push(route);
        }
        let mut matcher = matchit::Router::new();
        let mut paths = Vec::with_capacity(grouped.len());
        for (path, plans) in grouped {
            // The plan was validated: no conflicts remain, so insertion cannot fail.
            if matcher.insert(path, paths.len()).is_err() {
                tracing::error!(path, "route rejected by the matcher after validation");
                continue;
            }
            let routes: Vec<Route> = plans
                .into_iter()
                .map(|route| Route::new(route, plan, upstreams, providers, limiter, cache))
                .collect();
            let allow = allow_header(&routes);
            let mut versions: Vec<&str> =
                routes.iter().filter_map(|r| r.version.as_deref()).collect();
            versions.sort_unstable();
            versions.dedup();
            let versions = versions.join(", ");
            paths.push(PathRoutes {
                routes,
                allow,
                versions,
            });
        }
        let mut versions: Vec<Arc<str>> = plan
            .routes
            .iter()
            .filter_map(|r| r.version.as_deref().map(Arc::from))
            .collect();
        versions.sort_unstable();
        versions.dedup();
        Self {
            matcher,
            paths,
            versioning: version::Versioning::new(&plan.versioning),
            versions,
        }
    }

    /// The route a request goes to, and its upstream targets (computed here, while the
    /// matched parameters borrow the path).
    fn resolve(&self, request: &Request) -> Result<Resolved<'_>, Error> {
        let path = request.uri().path();
        if !self.versions.is_empty()
            && let Some((segment, rest)) = version::split_prefix(path)
            && let Ok(found) = self.matcher.at(rest)
        {
            let entry = &self.paths[*found.value];
            if !entry.versions.is_empty() {
                if self.versions.iter().any(|v| &**v == segment) {
                    let route = entry.pick(Some(segment), request.method())?;
                    return Ok(Resolved {
                        targets: route.targets(rest, &found.params),
                        route,
                        by_prefix: true,
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
        Ok(Resolved {
            targets: route.targets(path, &found.params),
            route,
            by_prefix: false,
        })
    }
}

struct Resolved<'t> {
    route: &'t Route,
    targets: Targets,
    /// The version came from the path, so the answer does not vary with the version header.
    by_prefix: bool,
}

impl PathRoutes {
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
    fn new(
        route: &RoutePlan,
        plan: &Plan,
        upstreams: &BTreeMap<String, Upstream>,
        providers: &Providers,
        limiter: &RateLimiter,
        cache: &ResponseCache,
    ) -> Self {
        let handler = match &route.action {
            RouteAction::Mock(response) => Handler::Mock(mock::MockRoute::new(response)),
            RouteAction::Proxy { upstream, target } => Handler::Proxy(proxy::ProxyRoute {
                upstream: upstreams[upstream].clone(),
                target: target.clone(),
                fallback: route.fallback.as_ref().map(mock::MockRoute::new),
            }),
            RouteAction::Aggregate {
                backends,
                report_errors,
            } => Handler::Aggregate(aggregate::AggregateRoute::new(
                backends
                    .iter()
                    .map(|b| (b.clone(), upstreams[&b.upstream].clone()))
                    .collect(),
                *report_errors,
                plan.server.body_limit,
            )),
        };
        let template: Arc<str> = route.public_path().into();
        let metrics = Arc::new(RouteMetrics::new(template.clone()));
        Route {
            cache: route.cache.as_ref().map(|settings| {
                RouteCache::new(cache, settings, template.clone(), metrics.clone())
            }),
            metrics,
            template: MatchedRoute(template),
            version: route.version.as_deref().map(Arc::from),
            deprecation: route.deprecation.clone(),
            methods: route.methods.clone(),
            fault: route.fault.as_ref().map(fault::Fault::new),
            auth: providers.policy(&route.path, &route.auth, &route.scopes),
            limits: limiter.route(&route.rate_limits),
            validator: route
                .request_schema
                .clone()
                .map(|schema| validate::RequestValidator::new(schema, plan.log.redact.clone())),
            transform: Transform::new(&route.transform, plan.server.body_limit),
            handler,
        }
    }
}

fn allow_header(routes: &[Route]) -> HeaderValue {
    let mut methods: Vec<&str> = Vec::new();
    for route in routes {
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
    let Resolved {
        route,
        targets,
        by_prefix,
    } = match table.resolve(&request) {
        Ok(resolved) => resolved,
        Err(error) => return error.into_response(),
    };
    let mut response = serve(route, request, targets).await;
    if route.version.is_some() && !by_prefix {
        table.versioning.vary(response.headers_mut());
    }
    if let Some(deprecation) = &route.deprecation {
        version::mark_deprecated(deprecation, response.headers_mut());
    }
    response
}

/// The matched route's pipeline: address-keyed rate limits, auth, principal-keyed rate
/// limits, a cache read, validation, the request transform, the handler, the response
/// transform and a cache write.
async fn serve(route: &Route, mut request: Request, targets: Targets) -> Response {
    request.extensions_mut().insert(route.template.clone());
    if let Some(notes) = Notes::of(request.extensions()) {
        notes.route(&route.metrics);
    }
    let mut decision = None;
    if let Some(limits) = &route.limits.before_auth {
        match limit(limits, &request, None).await {
            Ok(allowed) => decision = Some(allowed),
            Err(refused) => return refused,
        }
    }
    if let Some(policy) = &route.auth
        && let Err(error) = policy.authorize(&mut request).await
    {
        return with_rate_limit_headers(error.into_response(), decision);
    }
    if let Some(limits) = &route.limits.after_auth {
        match limit(limits, &request, decision.as_ref()).await {
            Ok(allowed) => decision = Some(allowed),
            Err(refused) => return refused,
        }
    }
    let lookup = route.cache.as_ref().map(|cache| cache.lookup(&request));
    if let (Some(cache), Some(Lookup::Use { key, read: true })) = (&route.cache, &lookup)
        && let Some(hit) = cache.get(key).await
    {
        return with_rate_limit_headers(hit, decision);
    }
    let request = match &route.validator {
        None => request,
        Some(validator) => match validator.validate(request).await {
            Ok(request) => request,
            Err(error) => return with_rate_limit_headers(error.into_response(), decision),
        },
    };
    let request = match &route.transform {
        None => request,
        Some(transform) => match transform.request(request).await {
            Ok(request) => request,
            Err(error) => return with_rate_limit_headers(error.into_response(), decision),
        },
    };
    let method = request.method().clone();
    let response = handle(route, request, targets).await;
    let response = match &route.transform {
        None => response,
        Some(transform) => transform.response(response, &method).await,
    };
    let response = match (&route.cache, lookup) {
        (Some(cache), Some(Lookup::Use { key, .. })) => cache.put(key, response).await,
        (Some(cache), _) => cache.bypass(response),
        _ => response,
    };
    with_rate_limit_headers(response, decision)
}

/// One phase of the route's rate limits, noted for the access log; a refusal is the answer.
/// (Not an `async fn`: the future must not hold the request, whose body is not `Sync`.)
fn limit<'a>(
    limits: &'a RouteLimits,
    request: &Request,
    earlier: Option<&'a Decision>,
) -> impl Future<Output = Result<Decision, Response>> + Send + 'a {
    let check = limits.check(request, earlier);
    let notes = request.extensions().get::<Arc<Notes>>().cloned();
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

/// Responses of a limited route carry its `RateLimit` headers.
fn with_rate_limit_headers(
    mut response: Response,
    decision: Option<crate::ratelimit::Decision>,
) -> Response {
    if let Some(decision) = decision {
        decision.apply(response.headers_mut());
    }
    response
}

async fn handle(route: &Route, request: Request, targets: Targets) -> Response {
    if let Some(fault) = &route.fault
        && let Some(response) = fault.inject(&route.template.0).await
    {
        return response;
    }
    match (&route.handler, targets) {
        (Handler::Proxy(proxy), Targets::Proxy(target)) => proxy.forward(request, &target).await,
        (Handler::Aggregate(aggregate), Targets::Aggregate(targets)) => {
            aggregate.respond(request, targets).await
        }
        (Handler::Mock(mock), _) => mock.response(),
        _ => Error::Internal("route targets do not match the handler".into()).into_response(),
    }
}
