//! `[log]` and `[metrics]`: what the gateway tells operators, as the file spells it, and
//! validated.

use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tracing_subscriber::EnvFilter;

use crate::config::{ByteSize, HumanDuration, Problems};

/// `[log]`
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// A tracing filter (`info`, `proxyfn=debug,warn`); `RUST_LOG` wins when set.
    pub level: Option<String>,
    /// `auto` (JSON unless stdout is a terminal; always JSON in Lambda), `json` or `text`.
    pub format: LogFormat,
    /// JSON body fields never written to a log nor echoed in an error: a bare name matches the
    /// member at any depth, a JSON pointer (`/card/number`) one place.
    pub redact: Vec<String>,
    /// Server mode: hold log lines in a buffer of this size, written out when full, after
    /// `flush_interval` and at shutdown, instead of one write per line (default 64KB; 0 is
    /// off). Lambda writes each line at once.
    pub buffer: Option<ByteSize>,
    /// How long a buffered line may wait (default 1s).
    pub flush_interval: Option<HumanDuration>,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Auto,
    Json,
    Text,
}

/// `[metrics]`
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Record metrics: Prometheus text at `GET /metrics` in server mode, CloudWatch EMF lines
    /// in Lambda.
    pub enabled: bool,
    /// The CloudWatch namespace of the EMF metrics.
    pub namespace: String,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            namespace: "proxyfn".into(),
        }
    }
}

/// The validated `[log]`.
#[derive(Clone, Debug, Default)]
pub struct LogSettings {
    pub level: Option<String>,
    pub format: LogFormat,
    pub redact: Redaction,
    /// Buffered log writes in server mode, unless `[log] buffer = 0`.
    pub buffer: Option<LogBuffer>,
}

/// The validated `[log] buffer` and `flush_interval`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogBuffer {
    pub bytes: usize,
    pub flush_interval: Duration,
}

/// A larger buffer would only hold more lines back; nginx's own example uses 32k.
const MAX_LOG_BUFFER: u64 = 16 << 20;
/// The default: a few hundred access lines per write, as Envoy's access-log buffering does by
/// default (64KB, flushed every second).
const DEFAULT_LOG_BUFFER: u64 = 64 << 10;
/// A line held longer than this would be late for anyone reading the log as it is written.
const MAX_FLUSH_INTERVAL: Duration = Duration::from_secs(60);

/// Which JSON body members are secret.
#[derive(Clone, Debug, Default)]
pub struct Redaction {
    names: Vec<String>,
    pointers: Vec<String>,
}

/// What redacted values are replaced with.
pub const REDACTED: &str = "[REDACTED]";

impl Redaction {
    pub fn new(fields: &[String]) -> Self {
        let (pointers, names) = fields.iter().cloned().partition(|f| f.starts_with('/'));
        Self { names, pointers }
    }

    /// Whether the value at `pointer` (RFC 6901) is, or lies inside, a redacted member.
    pub fn covers(&self, pointer: &str) -> bool {
        if self.pointers.iter().any(|p| {
            pointer == p || (pointer.starts_with(p.as_str()) && pointer[p.len()..].starts_with('/'))
        }) {
            return true;
        }
        pointer
            .split('/')
            .skip(1)
            .map(|token| token.replace("~1", "/").replace("~0", "~"))
            .any(|token| self.names.contains(&token))
    }

    /// A copy of `value` with every redacted member's value replaced by [`REDACTED`].
    pub fn apply(&self, value: &serde_json::Value) -> serde_json::Value {
        let mut copy = value.clone();
        if !self.names.is_empty() || !self.pointers.is_empty() {
            self.redact_at(&mut copy, &mut String::new());
        }
        copy
    }

    fn redact_at(&self, value: &mut serde_json::Value, pointer: &mut String) {
        let len = pointer.len();
        match value {
            serde_json::Value::Object(members) => {
                for (name, member) in members.iter_mut() {
                    pointer.push('/');
                    pointer.push_str(&name.replace('~', "~0").replace('/', "~1"));
                    if self.covers(pointer) {
                        *member = serde_json::Value::String(REDACTED.into());
                    } else {
                        self.redact_at(member, pointer);
                    }
                    pointer.truncate(len);
                }
            }
            serde_json::Value::Array(items) => {
                for (index, item) in items.iter_mut().enumerate() {
                    pointer.push('/');
                    pointer.push_str(&index.to_string());
                    self.redact_at(item, pointer);
                    pointer.truncate(len);
                }
            }
            _ => {}
        }
    }
}

#[derive(Clone, Debug)]
pub struct MetricsSettings {
    pub enabled: bool,
    pub namespace: String,
}

/// Validates `[log]`.
pub fn log_settings(log: &LogConfig, problems: &mut Problems) -> LogSettings {
    if let Some(level) = &log.level
        && let Err(error) = EnvFilter::try_new(level)
    {
        problems.add("log.level", format!("not a tracing filter: {error}"));
    }
    for (index, field) in log.redact.iter().enumerate() {
        if field.is_empty() || field == "/" {
            problems.add(
                format!("log.redact[{index}]"),
                "name a member, or a JSON pointer such as \"/card/number\"",
            );
        }
    }
    let flush_interval = log
        .flush_interval
        .map_or(Duration::from_secs(1), |interval| interval.0);
    if log.flush_interval.is_some()
        && (flush_interval < Duration::from_millis(1) || flush_interval > MAX_FLUSH_INTERVAL)
    {
        problems.add("log.flush_interval", "must be between 1ms and 1m");
    }
    let buffer = match log.buffer {
        Some(ByteSize(bytes)) if bytes > MAX_LOG_BUFFER => {
            problems.add("log.buffer", "must be at most 16MB");
            None
        }
        Some(ByteSize(0)) => None,
        size => Some(LogBuffer {
            bytes: size.map_or(DEFAULT_LOG_BUFFER, |size| size.0) as usize,
            flush_interval,
        }),
    };
    LogSettings {
        level: log.level.clone(),
        format: log.format,
        redact: Redaction::new(&log.redact),
        buffer,
    }
}

/// Validates `[metrics]`.
pub fn metrics_settings(metrics: &MetricsConfig, problems: &mut Problems) -> MetricsSettings {
    let namespace = metrics.namespace.trim();
    // CloudWatch: 1-255 characters, no colon-only oddities; keep to the documented set.
    if namespace.is_empty()
        || namespace.len() > 255
        || namespace.starts_with(':')
        || !namespace
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-/#:".contains(c) || c == ' ')
    {
        problems.add(
            "metrics.namespace",
            "1 to 255 characters of letters, digits and . _ - / # : or space",
        );
    }
    MetricsSettings {
        enabled: metrics.enabled,
        namespace: namespace.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn redaction_matches_names_anywhere_and_pointers_in_one_place() {
        let redaction = Redaction::new(&["password".into(), "/card/number".into()]);
        let body = json!({
            "user": { "password": "hunter2", "name": "ann" },
            "card": { "number": "4111", "expiry": "12/30" },
            "items": [{ "number": 3 }],
        });
        let redacted = redaction.apply(&body);
        assert_eq!(redacted["user"]["password"], REDACTED);
        assert_eq!(redacted["user"]["name"], "ann");
        assert_eq!(redacted["card"]["number"], REDACTED);
        assert_eq!(
            redacted["items"][0]["number"], 3,
            "the pointer is one place"
        );
        assert!(redaction.covers("/user/password"));
        assert!(redaction.covers("/card/number/0"));
        assert!(!redaction.covers("/card/numbers"));
    }

    fn log_of(toml: &str) -> Result<LogSettings, Vec<String>> {
        let config = crate::config::Config::from_toml(toml).expect("parses");
        let mut problems = Problems::default();
        let settings = log_settings(&config.log, &mut problems);
        let found: Vec<String> = problems.found().iter().map(ToString::to_string).collect();
        if found.is_empty() {
            Ok(settings)
        } else {
            Err(found)
        }
    }

    #[test]
    fn log_lines_are_buffered_in_64kb_unless_the_buffer_is_zero() {
        assert_eq!(
            log_of("").unwrap().buffer,
            Some(LogBuffer {
                bytes: 64 << 10,
                flush_interval: Duration::from_secs(1),
            })
        );
        assert_eq!(log_of("[log]\nbuffer = 0").unwrap().buffer, None);
        assert_eq!(
            log_of("[log]\nbuffer = \"32KB\"").unwrap().buffer,
            Some(LogBuffer {
                bytes: 32 << 10,
                flush_interval: Duration::from_secs(1),
            })
        );
        assert_eq!(
            log_of("[log]\nbuffer = \"64KB\"\nflush_interval = \"250ms\"")
                .unwrap()
                .buffer
                .map(|b| b.flush_interval),
            Some(Duration::from_millis(250))
        );
    }

    #[test]
    fn a_log_buffer_too_large_or_a_flush_interval_out_of_range_is_refused() {
        let refused = |toml| log_of(toml).unwrap_err().join("\n");
        assert!(refused("[log]\nbuffer = \"17MB\"").contains("log.buffer"));
        assert!(
            refused("[log]\nbuffer = \"1MB\"\nflush_interval = \"0s\"")
                .contains("log.flush_interval")
        );
        assert!(refused("[log]\nflush_interval = \"2m\"").contains("log.flush_interval"));
    }
}
