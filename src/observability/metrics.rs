//! Metrics through the `metrics` facade, exported the way each runtime is watched:
//!
//! - server mode: Prometheus text at `GET /metrics` (metrics-exporter-prometheus, histograms with
//!   fixed buckets so they aggregate across instances);
//! - Lambda mode: CloudWatch Embedded Metric Format lines on stdout, flushed once per invocation
//!   (metrics_cloudwatch_embedded), which CloudWatch turns into metrics without an agent.
//!
//! The recorder is process-global, so it is installed once by `main` for the runtime it
//! starts; without one (library use, unit tests) every call here is a cheap no-op.
//!
//! Labels are bounded: route *templates* (never raw paths), upstream and policy names from the
//! configuration, status classes and fixed reason codes.

use std::{
    sync::{Arc, LazyLock, OnceLock},
    time::Duration,
};

use http::Method;
use metrics::{
    Counter, Histogram, SharedString, Unit, counter, describe_counter, describe_gauge,
    describe_histogram, gauge, histogram,
};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

pub const REQUESTS: &str = "proxyfn_requests_total";
pub const REQUEST_DURATION: &str = "proxyfn_request_duration_seconds";
pub const UPSTREAM_DURATION: &str = "proxyfn_upstream_duration_seconds";
pub const UPSTREAM_RETRIES: &str = "proxyfn_upstream_retries_total";
pub const BREAKER_STATE: &str = "proxyfn_circuit_breaker_state";
pub const RATE_LIMIT_DECISIONS: &str = "proxyfn_rate_limit_decisions_total";
pub const RATE_LIMIT_STORE_ERRORS: &str = "proxyfn_rate_limit_store_errors_total";
pub const AUTH_FAILURES: &str = "proxyfn_auth_failures_total";
pub const COLD_STARTS: &str = "proxyfn_cold_starts_total";
pub const CACHE_LOOKUPS: &str = "proxyfn_cache_requests_total";
pub const CONFIG_RELOADS: &str = "proxyfn_config_reloads_total";

/// Request and upstream latency buckets, in seconds: 1 ms to 30 s (API Gateway's limit).
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

static PROMETHEUS: OnceLock<PrometheusHandle> = OnceLock::new();
static EMF: OnceLock<&'static metrics_cloudwatch_embedded::Collector> = OnceLock::new();

/// Why a recorder could not be installed (another one already was).
#[derive(Debug, thiserror::Error)]
#[error("cannot install the metrics recorder: {0}")]
pub struct InstallError(String);

/// Installs the Prometheus recorder (server mode) and starts its upkeep, which drains
/// histogram samples so memory stays flat between scrapes. Must run inside a Tokio runtime.
pub fn install_prometheus() -> Result<(), InstallError> {
    let recorder = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
        .map_err(|e| InstallError(e.to_string()))?
        .build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).map_err(|e| InstallError(e.to_string()))?;
    describe();
    let upkeep = handle.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(5));
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            upkeep.run_upkeep();
        }
    });
    let _ = PROMETHEUS.set(handle);
    Ok(())
}

/// The Prometheus text exposition of every metric, when the server-mode recorder is installed.
pub fn render_prometheus() -> Option<String> {
    PROMETHEUS.get().map(PrometheusHandle::render)
}

/// Installs the CloudWatch EMF recorder (Lambda mode). Metrics go under `namespace`, with the
/// function name as a dimension when Lambda provides it.
pub fn install_emf(namespace: &str) -> Result<(), InstallError> {
    let mut builder =
        metrics_cloudwatch_embedded::Builder::new().cloudwatch_namespace(namespace.to_owned());
    if let Ok(function) = std::env::var("AWS_LAMBDA_FUNCTION_NAME") {
        builder = builder.with_dimension("function", function);
    }
    let collector = builder.init().map_err(|e| InstallError(e.to_string()))?;
    describe();
    let _ = EMF.set(collector);
    Ok(())
}

/// Writes this invocation's metrics as EMF lines (one per label set) and resets them. Holds
/// stdout's lock throughout, so no log line lands inside a metrics document.
///
/// With concurrent invocations (Lambda Managed Instances) the metrics of the others that
/// ended since the last flush are in the same documents; the lock keeps each document whole
/// and its `aws_request_id` that of the invocation that wrote it.
pub fn flush_emf(aws_request_id: &str) {
    static FLUSHING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let Some(collector) = EMF.get() else {
        return;
    };
    let _one_at_a_time = FLUSHING
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    collector.set_property("aws_request_id", aws_request_id.to_owned());
    if let Err(error) = collector.flush(std::io::stdout().lock()) {
        tracing::warn!(%error, "could not write the EMF metrics");
    }
}

fn describe() {
    describe_counter!(
        REQUESTS,
        Unit::Count,
        "Requests answered, by route and status class"
    );
    describe_histogram!(
        REQUEST_DURATION,
        Unit::Seconds,
        "Time from the request's arrival to the end of its response body"
    );
    describe_histogram!(
        UPSTREAM_DURATION,
        Unit::Seconds,
        "Time of the last upstream attempt, to the response head"
    );
    describe_counter!(
        UPSTREAM_RETRIES,
        Unit::Count,
        "Upstream attempts after the first"
    );
    describe_gauge!(
        BREAKER_STATE,
        "Circuit breaker state per upstream: 0 closed, 1 half-open, 2 open"
    );
    describe_counter!(
        RATE_LIMIT_DECISIONS,
        Unit::Count,
        "Rate-limit checks by route and decision"
    );
    describe_counter!(
        RATE_LIMIT_STORE_ERRORS,
        Unit::Count,
        "Rate-limit store (Redis) failures and timeouts"
    );
    describe_counter!(
        CACHE_LOOKUPS,
        Unit::Count,
        "Cached routes' requests by route and result: hit, miss, bypass"
    );
    describe_counter!(
        AUTH_FAILURES,
        Unit::Count,
        "Refused credentials, by provider and reason"
    );
    describe_counter!(COLD_STARTS, Unit::Count, "Lambda cold starts");
    describe_counter!(
        CONFIG_RELOADS,
        Unit::Count,
        "Configuration reloads, by result (ok, failed)"
    );
}

/// A route's request metrics, their handles registered on first use and reused after.
///
/// `counter!` and `histogram!` with labels build a key and look it up in the recorder's
/// registry on every call, three or four times per request; reusing the handles took a
/// rate-limited pass-through from 26.7 to 25.4 µs of CPU per request (BENCHMARKS.md).
/// Handles are registered lazily, so only label sets that occur are exported; `main`
/// installs the recorder before the app is built, so none is registered without it.
#[derive(Debug)]
pub struct RouteMetrics {
    template: Arc<str>,
    requests: [[OnceLock<Counter>; STATUS_CLASSES.len()]; METHODS.len()],
    durations: [OnceLock<Histogram>; STATUS_CLASSES.len()],
    decisions: [OnceLock<Counter>; DECISIONS.len()],
    cache_results: [OnceLock<Counter>; CACHE_RESULTS.len()],
}

impl RouteMetrics {
    pub fn new(template: Arc<str>) -> Self {
        Self {
            template,
            requests: [const { [const { OnceLock::new() }; STATUS_CLASSES.len()] }; METHODS.len()],
            durations: [const { OnceLock::new() }; STATUS_CLASSES.len()],
            decisions: [const { OnceLock::new() }; DECISIONS.len()],
            cache_results: [const { OnceLock::new() }; CACHE_RESULTS.len()],
        }
    }

    /// The route's path template, its `route` label.
    pub fn template(&self) -> &Arc<str> {
        &self.template
    }

    fn label(&self) -> SharedString {
        SharedString::from(self.template.clone())
    }
}

/// Requests no route matched (404, 405) count under one `route="unrouted"` label.
static UNROUTED: LazyLock<RouteMetrics> = LazyLock::new(|| RouteMetrics::new("unrouted".into()));

/// An upstream's metrics, registered on first use like [`RouteMetrics`].
#[derive(Debug)]
pub struct UpstreamMetrics {
    name: Arc<str>,
    duration: OnceLock<Histogram>,
    retries: OnceLock<Counter>,
}

impl UpstreamMetrics {
    pub fn new(name: Arc<str>) -> Self {
        Self {
            name,
            duration: OnceLock::new(),
            retries: OnceLock::new(),
        }
    }

    /// The upstream's configured name, its `upstream` label.
    pub fn name(&self) -> &Arc<str> {
        &self.name
    }

    fn label(&self) -> SharedString {
        SharedString::from(self.name.clone())
    }
}

/// What a finished request contributes.
pub(crate) struct RequestSample<'a> {
    pub route: Option<&'a RouteMetrics>,
    pub method: &'a Method,
    pub status: u16,
    pub latency: Duration,
    pub upstream: Option<(&'a UpstreamMetrics, u32, Duration)>,
    pub rate_limit: Option<&'static str>,
    pub cold_start: bool,
}

pub(crate) fn record_request(sample: &RequestSample<'_>) {
    let route = sample.route.unwrap_or(&UNROUTED);
    let method = method_index(sample.method);
    let status = status_index(sample.status);
    route.requests[method][status]
        .get_or_init(|| {
            counter!(REQUESTS, "route" => route.label(), "method" => METHODS[method], "status" => STATUS_CLASSES[status])
        })
        .increment(1);
    route.durations[status]
        .get_or_init(|| {
            histogram!(REQUEST_DURATION, "route" => route.label(), "status" => STATUS_CLASSES[status])
        })
        .record(sample.latency.as_secs_f64());
    if let Some((upstream, attempts, latency)) = sample.upstream {
        upstream
            .duration
            .get_or_init(|| histogram!(UPSTREAM_DURATION, "upstream" => upstream.label()))
            .record(latency.as_secs_f64());
        if attempts > 1 {
            upstream
                .retries
                .get_or_init(|| counter!(UPSTREAM_RETRIES, "upstream" => upstream.label()))
                .increment(u64::from(attempts - 1));
        }
    }
    if let Some(decision) = sample.rate_limit {
        increment_labelled(
            &route.decisions,
            &DECISIONS,
            decision,
            |decision| counter!(RATE_LIMIT_DECISIONS, "route" => route.label(), "decision" => decision),
        );
    }
    if sample.cold_start {
        counter!(COLD_STARTS).increment(1);
    }
}

/// `state`: 0 closed, 1 half-open, 2 open.
pub(crate) fn record_breaker_state(upstream: &Arc<str>, state: u8) {
    gauge!(BREAKER_STATE, "upstream" => upstream.clone()).set(f64::from(state));
}

pub(crate) fn record_reload(ok: bool) {
    counter!(CONFIG_RELOADS, "result" => if ok { "ok" } else { "failed" }).increment(1);
}

pub(crate) fn record_auth_failure(provider: &str, reason: &'static str) {
    counter!(AUTH_FAILURES, "provider" => provider.to_owned(), "reason" => reason).increment(1);
}

/// `result`: `hit`, `miss` or `bypass`.
pub(crate) fn record_cache(route: &RouteMetrics, result: &'static str) {
    increment_labelled(
        &route.cache_results,
        &CACHE_RESULTS,
        result,
        |result| counter!(CACHE_LOOKUPS, "route" => route.label(), "result" => result),
    );
}

/// Counts `value` with the handle kept for it in `handles` (one per label value in `known`),
/// registered by `register` on first use; a value not in `known` is registered each time.
fn increment_labelled(
    handles: &[OnceLock<Counter>],
    known: &[&'static str],
    value: &'static str,
    register: impl Fn(&'static str) -> Counter,
) {
    match known.iter().position(|label| *label == value) {
        Some(index) => handles[index]
            .get_or_init(|| register(known[index]))
            .increment(1),
        None => register(value).increment(1),
    }
}

pub(crate) fn record_rate_limit_store_error() {
    counter!(RATE_LIMIT_STORE_ERRORS).increment(1);
}

/// The `method` label's values: extension methods would be unbounded, so they count as
/// `other`.
const METHODS: [&str; 10] = [
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE", "other",
];

fn method_index(method: &Method) -> usize {
    match *method {
        Method::GET => 0,
        Method::HEAD => 1,
        Method::POST => 2,
        Method::PUT => 3,
        Method::PATCH => 4,
        Method::DELETE => 5,
        Method::OPTIONS => 6,
        Method::CONNECT => 7,
        Method::TRACE => 8,
        _ => 9,
    }
}

/// The `status` label's values.
const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

fn status_index(status: u16) -> usize {
    match status {
        100..=199 => 0,
        200..=299 => 1,
        300..=399 => 2,
        400..=499 => 3,
        _ => 4,
    }
}

/// The rate-limit decisions ([`crate::observability::Notes::rate_limit`]) whose counters are
/// kept per route.
const DECISIONS: [&str; 4] = [
    "allowed",
    "limited",
    "store_error_allowed",
    "store_error_denied",
];

/// The response cache's results ([`record_cache`]) whose counters are kept per route.
const CACHE_RESULTS: [&str; 3] = ["hit", "miss", "bypass"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_stay_bounded() {
        assert_eq!(STATUS_CLASSES[status_index(204)], "2xx");
        assert_eq!(STATUS_CLASSES[status_index(599)], "5xx");
        assert_eq!(
            METHODS[method_index(&Method::from_bytes(b"PURGE").unwrap())],
            "other"
        );
        assert_eq!(UNROUTED.template().as_ref(), "unrouted");
    }

    #[test]
    fn reused_handles_keep_counting_per_label_set() {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        let route = RouteMetrics::new("/orders/{id}".into());
        let upstream = UpstreamMetrics::new("orders".into());
        let sample = |method: &'static Method, status, attempts| RequestSample {
            route: Some(&route),
            method,
            status,
            latency: Duration::from_millis(3),
            upstream: Some((&upstream, attempts, Duration::from_millis(2))),
            rate_limit: Some("allowed"),
            cold_start: false,
        };
        metrics::with_local_recorder(&recorder, || {
            record_request(&sample(&Method::GET, 200, 1));
            record_request(&sample(&Method::GET, 204, 3));
            record_request(&sample(&Method::POST, 503, 2));
            for result in ["miss", "hit", "hit"] {
                record_cache(&route, result);
            }
        });

        let text = handle.render();
        let line = |prefix: &str| {
            text.lines()
                .find(|line| line.starts_with(prefix))
                .unwrap_or_else(|| panic!("no {prefix} in\n{text}"))
                .rsplit(' ')
                .next()
                .unwrap()
                .to_owned()
        };
        let requests = |method: &str, status: &str| {
            line(&format!(
                "{REQUESTS}{{route=\"/orders/{{id}}\",method=\"{method}\",status=\"{status}\"}}"
            ))
        };
        assert_eq!(requests("GET", "2xx"), "2");
        assert_eq!(requests("POST", "5xx"), "1");
        assert_eq!(
            line(&format!(
                "{REQUEST_DURATION}_count{{route=\"/orders/{{id}}\",status=\"2xx\"}}"
            )),
            "2"
        );
        assert_eq!(
            line(&format!("{UPSTREAM_RETRIES}{{upstream=\"orders\"}}")),
            "3"
        );
        assert_eq!(
            line(&format!("{UPSTREAM_DURATION}_count{{upstream=\"orders\"}}")),
            "3"
        );
        assert_eq!(
            line(&format!(
                "{RATE_LIMIT_DECISIONS}{{route=\"/orders/{{id}}\",decision=\"allowed\"}}"
            )),
            "3"
        );
        assert_eq!(
            line(&format!(
                "{CACHE_LOOKUPS}{{route=\"/orders/{{id}}\",result=\"hit\"}}"
            )),
            "2"
        );
        assert_eq!(
            line(&format!(
                "{CACHE_LOOKUPS}{{route=\"/orders/{{id}}\",result=\"miss\"}}"
            )),
            "1"
        );
    }
}
