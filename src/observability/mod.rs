//! Logs and correlation: request ids, W3C trace context, the access log, and the tracing
//! subscriber set-up.

mod access_log;
mod json_lines;
pub mod metrics;
#[cfg(feature = "otlp")]
pub mod otel;
mod request_id;
pub mod trace_context;

pub use access_log::{AccessLogLayer, ColdStart, Notes};
pub use request_id::{RequestId, RequestIdLayer, X_REQUEST_ID};
pub use trace_context::{TraceContext, TraceContextLayer};

/// The target of the auth decision events (one per authenticated route's request).
pub const AUDIT_TARGET: &str = "proxyfn::audit";

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
    let lines = if json {
        let other_events = fmt::format()
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false);
        fmt::layer()
            .fmt_fields(fmt::format::JsonFields::new())
            .event_format(json_lines::JsonLines::new(other_events))
            .boxed()
    } else {
        fmt::layer().boxed()
    };
    let registry = tracing_subscriber::registry();
    // Request spans go to the OTLP exporter whatever the log level.
    #[cfg(feature = "otlp")]
    let registry = registry.with(otel::layer());
    drop(registry.with(lines.with_filter(filter)).try_init());
}
