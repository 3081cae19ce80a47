//! Logs and correlation: request ids, W3C trace context, the access log, and the tracing
//! subscriber set-up.

mod access_log;
pub mod config;
mod json_lines;
pub mod log_output;
pub mod metrics;
#[cfg(feature = "otlp")]
pub mod otel;
mod request_id;
pub mod throttle;
pub mod trace_context;

pub use access_log::{AccessLogLayer, ColdStart, Notes};
pub use request_id::{RequestId, RequestIdLayer, X_REQUEST_ID};
pub use trace_context::{TraceContext, TraceContextLayer};

use std::io::IsTerminal;

use tracing_subscriber::{EnvFilter, fmt, prelude::*};

use config::{LogConfig, LogFormat};

/// The target of the auth decision events (one per authenticated route's request).
pub const AUDIT_TARGET: &str = "proxyfn::audit";

/// `RUST_LOG` when it is set to something (an empty `RUST_LOG` would mean errors only, so it
/// counts as unset), else the configured level, else `info`; a filter that does not parse is
/// passed over the same way.
fn level_filter(rust_log: Option<&str>, configured: Option<&str>) -> EnvFilter {
    [rust_log, configured]
        .into_iter()
        .flatten()
        .filter(|directives| !directives.trim().is_empty())
        .find_map(|directives| EnvFilter::try_new(directives).ok())
        .unwrap_or_else(|| EnvFilter::new("info"))
}

/// Installs the global tracing subscriber: JSON lines (CloudWatch-friendly) in Lambda or when
/// stdout is not a terminal, human-readable otherwise, unless `[log] format` says which. The
/// level comes from `RUST_LOG`, else `[log] level`, else `info`. Calling it twice is harmless.
pub fn init_logging(in_lambda: bool, log: &LogConfig) {
    let filter = level_filter(
        std::env::var("RUST_LOG").ok().as_deref(),
        log.level.as_deref(),
    );
    let json = match log.format {
        LogFormat::Json => true,
        LogFormat::Text => false,
        LogFormat::Auto => in_lambda || !std::io::stdout().is_terminal(),
    };
    let lines = if json {
        fmt::layer()
            .fmt_fields(fmt::format::JsonFields::new())
            .event_format(json_lines::JsonLines::new())
            .with_writer(log_output::LogOutput)
            .boxed()
    } else {
        fmt::layer().with_writer(log_output::LogOutput).boxed()
    };
    let registry = tracing_subscriber::registry();
    // Request spans go to the OTLP exporter whatever the log level.
    #[cfg(feature = "otlp")]
    let registry = registry.with(otel::layer());
    drop(registry.with(lines.with_filter(filter)).try_init());
}

#[cfg(test)]
mod tests {
    use tracing_subscriber::filter::LevelFilter;

    use super::level_filter;

    #[test]
    fn rust_log_wins_unless_it_is_empty() {
        let level = |rust_log, configured| level_filter(rust_log, configured).max_level_hint();
        assert_eq!(level(Some("warn"), Some("debug")), Some(LevelFilter::WARN));
        assert_eq!(level(Some(""), Some("debug")), Some(LevelFilter::DEBUG));
        assert_eq!(level(Some("  "), None), Some(LevelFilter::INFO));
        assert_eq!(level(None, Some("error")), Some(LevelFilter::ERROR));
        assert_eq!(level(None, None), Some(LevelFilter::INFO));
    }
}
