//! When and how a failed upstream call is tried again.
//!
//! Only requests that are safe to repeat are retried: idempotent methods (RFC 9110 §9.2.2:
//! GET, HEAD, OPTIONS, PUT, DELETE, TRACE) or requests carrying an `Idempotency-Key`. Only
//! failures that say "try again" are retried: connect errors, 502, 503 and 504. Backoff is
//! exponential with full jitter (a random delay up to `backoff * 2^n`, capped at
//! `max_backoff`), so clients that failed together do not retry together, and an upstream's
//! `Retry-After` is honoured. A retry budget caps retries at a fraction of requests over a
//! window, so a struggling upstream is not buried under a retry storm.

use std::{
    sync::Mutex,
    time::{Duration, Instant, SystemTime},
};

use http::{HeaderMap, Method, StatusCode, header::RETRY_AFTER};

use super::config::RetrySettings;
use super::window::Window;

/// Retries the budget always allows per window, so a quiet upstream can still be retried.
const BUDGET_FLOOR: f64 = 10.0;

pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

pub fn is_repeatable(method: &Method, headers: &HeaderMap) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    ) || headers.contains_key(IDEMPOTENCY_KEY)
}

pub fn is_retryable_status(status: StatusCode) -> bool {
    matches!(
        status,
        StatusCode::BAD_GATEWAY | StatusCode::SERVICE_UNAVAILABLE | StatusCode::GATEWAY_TIMEOUT
    )
}

/// `Retry-After` as delay-seconds or an HTTP-date (RFC 9110 §10.2.3).
pub fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let date = httpdate::parse_http_date(value).ok()?;
    Some(date.duration_since(now).unwrap_or_default())
}

#[derive(Debug)]
pub struct RetryPolicy {
    pub settings: RetrySettings,
    /// Requests (`a`) and retries (`b`) over the budget window.
    budget: Mutex<Window>,
}

impl RetryPolicy {
    pub fn new(settings: RetrySettings, now: Instant) -> Self {
        let budget = Mutex::new(Window::new(settings.budget_window, now));
        Self { settings, budget }
    }

    /// The delay before retry number `retry` (1 for the first retry): full jitter.
    pub fn backoff(&self, retry: u32) -> Duration {
        let exponent = retry.saturating_sub(1).min(30);
        let ceiling = self
            .settings
            .backoff
            .saturating_mul(1 << exponent)
            .min(self.settings.max_backoff);
        ceiling.mul_f64(fastrand::f64())
    }

    pub fn record_request(&self, now: Instant) {
        self.lock().add(now, 1, 0);
    }

    /// Takes one retry from the budget, if the budget has one.
    pub fn try_spend(&self, now: Instant) -> bool {
        let mut window = self.lock();
        let (requests, retries) = window.totals(now);
        let allowed = BUDGET_FLOOR + self.settings.budget * requests as f64;
        if (retries as f64) < allowed {
            window.add(now, 0, 1);
            true
        } else {
            false
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Window> {
        self.budget
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn policy(budget: f64) -> RetryPolicy {
        RetryPolicy::new(
            RetrySettings {
                attempts: 3,
                backoff: Duration::from_millis(100),
                max_backoff: Duration::from_millis(250),
                budget,
                budget_window: Duration::from_secs(10),
                max_body: 1024,
            },
            Instant::now(),
        )
    }

    #[test]
    fn only_repeatable_requests_are_retried() {
        let none = HeaderMap::new();
        for method in [
            Method::GET,
            Method::HEAD,
            Method::OPTIONS,
            Method::PUT,
            Method::DELETE,
        ] {
            assert!(is_repeatable(&method, &none), "{method}");
        }
        assert!(!is_repeatable(&Method::POST, &none));
        assert!(!is_repeatable(&Method::PATCH, &none));
        let mut keyed = HeaderMap::new();
        keyed.insert(IDEMPOTENCY_KEY, HeaderValue::from_static("k-1"));
        assert!(is_repeatable(&Method::POST, &keyed));
    }

    #[test]
    fn only_gateway_errors_are_retryable_statuses() {
        assert!(is_retryable_status(StatusCode::BAD_GATEWAY));
        assert!(is_retryable_status(StatusCode::SERVICE_UNAVAILABLE));
        assert!(is_retryable_status(StatusCode::GATEWAY_TIMEOUT));
        assert!(!is_retryable_status(StatusCode::INTERNAL_SERVER_ERROR));
        assert!(!is_retryable_status(StatusCode::TOO_MANY_REQUESTS));
    }

    #[test]
    fn backoff_is_jittered_below_an_exponential_ceiling() {
        let policy = policy(0.2);
        for _ in 0..200 {
            assert!(policy.backoff(1) <= Duration::from_millis(100));
            assert!(policy.backoff(2) <= Duration::from_millis(200));
            assert!(
                policy.backoff(5) <= Duration::from_millis(250),
                "capped at max_backoff"
            );
        }
        let samples: Vec<_> = (0..50).map(|_| policy.backoff(2)).collect();
        assert!(samples.iter().any(|d| *d != samples[0]), "jittered");
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_248_000);
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_static("3"));
        assert_eq!(retry_after(&headers, now), Some(Duration::from_secs(3)));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(7));
        headers.insert(RETRY_AFTER, HeaderValue::from_str(&later).unwrap());
        assert_eq!(retry_after(&headers, now), Some(Duration::from_secs(7)));
        headers.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&headers, now), None);
    }

    #[test]
    fn the_budget_caps_retries_at_a_fraction_of_requests_above_a_floor() {
        let policy = policy(0.2);
        let now = Instant::now();
        for _ in 0..100 {
            policy.record_request(now);
        }
        let granted = (0..100).filter(|_| policy.try_spend(now)).count();
        assert_eq!(granted, 30, "10 floor + 20% of 100 requests");
    }
}
