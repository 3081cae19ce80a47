//! Logs and correlation: request ids, W3C trace context, the access log, and the tracing
//! subscriber set-up.

mod access_log;
pub mod metrics;
mod request_id;
pub mod trace_context;

pub use access_log::{AccessLogLayer, ColdStart, Notes};
pub use request_id::{RequestId, RequestIdLayer, X_REQUEST_ID};
pub use trace_context::{TraceContext, TraceContextLayer};

use std::io::IsTerminal;

use tracing_subscriber::{EnvFilter, fmt, prelude::*};

use crate::config::{LogConfig, LogFormat};

/// Installs the global tracing subscriber: JSON lines (CloudWatch-friendly) in Lambda or when
/// stdout is not a terminal, human-readable otherwise, unless `[log] format` says which. The
/// level comes from `RUST_LOG`, else `[log] level`, else `info`. Calling it twice is harmless.
pub fn init_logging(in_lambda: bool, log: &LogConfig) {
    let filter = EnvFilter::try_from_default_env()
        .ok()
        .or_else(|| {
            log.level
                .as_deref()
                .and_then(|l| EnvFilter::try_new(l).ok())
        })
        .unwrap_or_else(|| EnvFilter::new("info"));
    let json = match log.format {
        LogFormat::Json => true,
        LogFormat::Text => false,
        LogFormat::Auto => in_lambda || !std::io::stdout().is_terminal(),
    };
    let registry = tracing_subscriber::registry().with(filter);
    let result = if json {
        registry
            .with(
                fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(false),
            )
            .try_init()
    } else {
        registry.with(fmt::layer()).try_init()
    };
    drop(result);
}
