//! The JSON log format, with a fast path for the two events written once per request.
//!
//! The access log (`proxyfn::access`) and the auth audit (`proxyfn::audit`) events make every
//! request pay for a log line; through tracing-subscriber's JSON formatter (a serde_json
//! serializer behind an adaptor that re-checks each write for UTF-8, and a timestamp `String`
//! per event) they took 16% of the full pipeline's CPU samples (BENCHMARKS.md). Those two
//! are written here straight into the line buffer, in the same shape:
//! `{"timestamp":…,"level":…,<fields, message first>,"target":…}`. Every other event goes
//! through tracing-subscriber's formatter, which also handles `log` records.

use std::fmt::{self, Write as _};

use tracing::{Event, Subscriber, field::Field};
use tracing_subscriber::{
    field::Visit,
    fmt::{
        FmtContext, FormatEvent, FormatFields,
        format::{Format, Json, Writer},
        time::{FormatTime, SystemTime},
    },
    registry::LookupSpan,
};

use super::{AUDIT_TARGET, access_log::ACCESS_TARGET};

pub(crate) struct JsonLines {
    other_events: Format<Json, SystemTime>,
}

impl JsonLines {
    pub(crate) fn new() -> Self {
        Self {
            other_events: tracing_json(),
        }
    }
}

/// tracing-subscriber's JSON: each event's fields at the top level, no spans. The shape both
/// paths write.
fn tracing_json() -> Format<Json, SystemTime> {
    tracing_subscriber::fmt::format()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_span_list(false)
}

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let metadata = event.metadata();
        let target = metadata.target();
        if target != ACCESS_TARGET && target != AUDIT_TARGET {
            return self.other_events.format_event(ctx, writer, event);
        }
        writer.write_str("{\"timestamp\":\"")?;
        SystemTime.format_time(&mut writer)?;
        write!(writer, "\",\"level\":\"{}\"", metadata.level())?;
        let mut fields = Fields {
            writer: &mut writer,
            result: Ok(()),
        };
        event.record(&mut fields);
        fields.result?;
        writer.write_str(",\"target\":")?;
        write_string(&mut writer, target)?;
        writer.write_str("}\n")
    }
}

/// Writes each field as `,"name":value`, as serde_json would write the value.
struct Fields<'w, 'a> {
    writer: &'w mut Writer<'a>,
    result: fmt::Result,
}

impl Fields<'_, '_> {
    fn entry(&mut self, field: &Field, value: impl FnOnce(&mut Writer<'_>) -> fmt::Result) {
        if self.result.is_ok() {
            self.result = (|| {
                self.writer.write_char(',')?;
                write_string(self.writer, field.name())?;
                self.writer.write_char(':')?;
                value(self.writer)
            })();
        }
    }
}

impl Visit for Fields<'_, '_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.entry(field, |w| write_string(w, value));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.entry(field, |w| {
            w.write_char('"')?;
            write!(Escaped(w), "{value:?}")?;
            w.write_char('"')
        });
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.entry(field, |w| write!(w, "{value}"));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.entry(field, |w| write!(w, "{value}"));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.entry(field, |w| w.write_str(if value { "true" } else { "false" }));
    }

    /// JSON has no NaN or infinity: serde_json writes `null` for them.
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.entry(field, |w| match serde_json::Number::from_f64(value) {
            Some(number) => write!(w, "{number}"),
            None => w.write_str("null"),
        });
    }
}

/// A JSON string (RFC 8259 §7), escaped as serde_json escapes it.
fn write_string(w: &mut impl fmt::Write, value: &str) -> fmt::Result {
    w.write_char('"')?;
    Escaped(&mut *w).write_str(value)?;
    w.write_char('"')
}

/// Escapes what it is given for the inside of a JSON string.
struct Escaped<'w, W: fmt::Write + ?Sized>(&'w mut W);

impl<W: fmt::Write + ?Sized> fmt::Write for Escaped<'_, W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut plain = 0;
        for (i, byte) in s.bytes().enumerate() {
            let escape = match byte {
                b'"' => "\\\"",
                b'\\' => "\\\\",
                b'\n' => "\\n",
                b'\r' => "\\r",
                b'\t' => "\\t",
                0x08 => "\\b",
                0x0c => "\\f",
                0x00..=0x1f => "",
                _ => continue,
            };
            self.0.write_str(&s[plain..i])?;
            if escape.is_empty() {
                write!(self.0, "\\u{byte:04x}")?;
            } else {
                self.0.write_str(escape)?;
            }
            plain = i + 1;
        }
        self.0.write_str(&s[plain..])
    }
}

#[cfg(test)]
mod tests {
    use std::{
        io,
        sync::{Arc, Mutex},
    };

    use tracing_subscriber::{fmt::MakeWriter, prelude::*};

    use super::*;

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Captured {
        type Writer = Captured;
        fn make_writer(&'a self) -> Captured {
            self.clone()
        }
    }

    /// The lines `emit` writes through tracing-subscriber's JSON formatter and through
    /// [`JsonLines`], with the timestamps cut off.
    fn both(emit: fn()) -> (String, String) {
        let reference = Captured::default();
        let subscriber = tracing_subscriber::registry().with(
            tracing_subscriber::fmt::layer()
                .fmt_fields(tracing_subscriber::fmt::format::JsonFields::new())
                .event_format(tracing_json())
                .with_writer(reference.clone()),
        );
        tracing::subscriber::with_default(subscriber, emit);
        let ours = Captured::default();
        let subscriber = tracing_subscriber::registry().with(
            tracing_subscriber::fmt::layer()
                .fmt_fields(tracing_subscriber::fmt::format::JsonFields::new())
                .event_format(JsonLines::new())
                .with_writer(ours.clone()),
        );
        tracing::subscriber::with_default(subscriber, emit);
        let untimed = |captured: Captured| {
            let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
            text.lines()
                .map(|line| line.split_once("Z\",").expect("a timestamp").1.to_owned())
                .collect::<Vec<_>>()
                .join("\n")
        };
        (untimed(reference), untimed(ours))
    }

    #[test]
    fn per_request_events_are_the_lines_tracing_subscriber_writes() {
        let (reference, ours) = both(|| {
            let none: Option<&str> = None;
            tracing::info!(
                target: ACCESS_TARGET,
                request_id = "id-1",
                raw = "tab\t, bell \u{7}, nul \0",
                method = %http::Method::GET,
                path = %"/a\"b\\c\u{1}".escape_debug(),
                status = 200u16,
                latency_ms = 5.157_499_000_000_000_5,
                whole_ms = 2.0,
                attempts = Some(2u32),
                skipped = none,
                client_ip = %std::net::IpAddr::from([127, 0, 0, 1]),
                debugged = ?vec!["x\ny"],
                completed = true,
                negative = -3i64,
                "request"
            );
            tracing::warn!(target: AUDIT_TARGET, principal = "ünïcode \"quoted\"", "auth decision");
        });
        assert_eq!(ours, reference);
        assert!(ours.contains("\"message\":\"request\""), "{ours}");
    }

    #[test]
    fn other_events_keep_tracing_subscribers_format() {
        let (reference, ours) =
            both(|| tracing::info!(target: "proxyfn", listen = "127.0.0.1:8080", "listening"));
        assert_eq!(ours, reference);
    }

    fn escaped(value: &str) -> String {
        let mut out = String::new();
        write_string(&mut out, value).unwrap();
        out
    }

    #[test]
    fn strings_are_escaped_exactly_as_serde_json_escapes_them() {
        for value in [
            "plain",
            "",
            "quote \" and backslash \\",
            "new\nline, tab\t, return\r, bell \u{7}, escape \u{1b}, nul \0",
            "\u{8}\u{c}\u{1f}\u{7f}",
            "unicode: é, ✓, 😀",
            "/b%22\\\"ench",
        ] {
            assert_eq!(
                escaped(value),
                serde_json::to_string(value).unwrap(),
                "{value:?}"
            );
        }
    }

    #[test]
    fn numbers_are_written_as_serde_json_writes_them() {
        for value in [5.157_499_000_000_000_5, 0.0, 1.0, 1e-7, 1e21, -2.5] {
            let mut out = String::new();
            write!(out, "{}", serde_json::Number::from_f64(value).unwrap()).unwrap();
            assert_eq!(out, serde_json::to_string(&value).unwrap());
        }
        assert!(serde_json::Number::from_f64(f64::NAN).is_none());
    }
}
