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
    sync::{Arc, OnceLock},
    time::Duration,
};

use http::Method;
use metrics::{
    Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram,
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
pub fn flush_emf(aws_request_id: &str) {
    let Some(collector) = EMF.get() else {
        return;
    };
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
}

/// What a finished request contributes.
pub(crate) struct RequestSample<'a> {
    pub route: Option<&'a Arc<str>>,
    pub method: &'a Method,
    pub status: u16,
    pub latency: Duration,
    pub upstream: Option<(&'a Arc<str>, u32, Duration)>,
    pub rate_limit: Option<&'static str>,
    pub cold_start: bool,
}

pub(crate) fn record_request(sample: &RequestSample<'_>) {
    let route = route_label(sample.route);
    let status_class = status_class(sample.status);
    counter!(REQUESTS, "route" => route.clone(), "method" => method_label(sample.method), "status" => status_class)
        .increment(1);
    histogram!(REQUEST_DURATION, "route" => route.clone(), "status" => status_class)
        .record(sample.latency.as_secs_f64());
    if let Some((upstream, attempts, latency)) = sample.upstream {
        histogram!(UPSTREAM_DURATION, "upstream" => upstream.clone()).record(latency.as_secs_f64());
        if attempts > 1 {
            counter!(UPSTREAM_RETRIES, "upstream" => upstream.clone())
                .increment(u64::from(attempts - 1));
        }
    }
    if let Some(decision) = sample.rate_limit {
        counter!(RATE_LIMIT_DECISIONS, "route" => route, "decision" => decision).increment(1);
    }
    if sample.cold_start {
        counter!(COLD_STARTS).increment(1);
    }
}

/// `state`: 0 closed, 1 half-open, 2 open.
pub(crate) fn record_breaker_state(upstream: &Arc<str>, state: u8) {
    gauge!(BREAKER_STATE, "upstream" => upstream.clone()).set(f64::from(state));
}

pub(crate) fn record_auth_failure(provider: &str, reason: &'static str) {
    counter!(AUTH_FAILURES, "provider" => provider.to_owned(), "reason" => reason).increment(1);
}

pub(crate) fn record_cache(route: &Arc<str>, result: &'static str) {
    counter!(CACHE_LOOKUPS, "route" => route_label(Some(route)), "result" => result).increment(1);
}

pub(crate) fn record_rate_limit_store_error() {
    counter!(RATE_LIMIT_STORE_ERRORS).increment(1);
}

fn route_label(route: Option<&Arc<str>>) -> metrics::SharedString {
    match route {
        Some(template) => metrics::SharedString::from(template.clone()),
        None => metrics::SharedString::const_str("unrouted"),
    }
}

fn status_class(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

/// Extension methods would be unbounded label values; they count as `other`.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_stay_bounded() {
        assert_eq!(status_class(204), "2xx");
        assert_eq!(status_class(599), "5xx");
        assert_eq!(
            method_label(&Method::from_bytes(b"PURGE").unwrap()),
            "other"
        );
        assert_eq!(route_label(None).as_ref(), "unrouted");
    }
}
