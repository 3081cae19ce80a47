//! Fault injection for chaos testing: a route's `fault` adds latency and/or answers with an
//! error status to a configured share of requests. Off unless configured; logged when it fires.

use std::time::Duration;

use axum::response::{IntoResponse, Response};
use http::StatusCode;

use super::config::FaultSettings;
use crate::error::Error;

pub struct Fault {
    delay: Option<(Duration, f64)>,
    abort: Option<(StatusCode, f64)>,
}

impl Fault {
    pub fn new(settings: &FaultSettings) -> Self {
        Self {
            delay: settings.delay.map(|d| (d, settings.delay_probability)),
            abort: settings
                .abort_status
                .map(|s| (s, settings.abort_probability)),
        }
    }

    /// Sleeps if the delay fires; returns the error response if the abort fires.
    pub async fn inject(&self, route: &str) -> Option<Response> {
        if let Some((delay, probability)) = self.delay
            && fastrand::f64() < probability
        {
            tracing::info!(
                route,
                delay_ms = delay.as_millis() as u64,
                "fault injected: delay"
            );
            tokio::time::sleep(delay).await;
        }
        if let Some((status, probability)) = self.abort
            && fastrand::f64() < probability
        {
            tracing::info!(route, status = status.as_u16(), "fault injected: abort");
            return Some(Error::FaultInjected { status }.into_response());
        }
        None
    }
}
