//! Fault injection for chaos testing: a route's `fault` adds latency and/or answers with an
//! error status to a configured share of requests. Off unless configured; logged when it fires.

use std::time::Duration;

use axum::response::{IntoResponse, Response};
use http::StatusCode;

use crate::error::Error;

/// A route's `fault`, validated: each effect with the probability (0.0..=1.0) it fires.
#[derive(Clone, Debug, PartialEq)]
pub struct Fault {
    pub(super) delay: Option<(Duration, f64)>,
    pub(super) abort: Option<(StatusCode, f64)>,
}

impl Fault {
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
