//! W3C Trace Context (<https://www.w3.org/TR/trace-context/>): the gateway is one hop of the
//! trace. A valid incoming `traceparent` keeps its trace id and flags and gets a new parent
//! id (this hop's span); otherwise a new trace starts, and an orphaned `tracestate` is dropped
//! (§3.3: it must not travel without a valid `traceparent`). `X-Amzn-Trace-Id` passes through
//! untouched like any end-to-end header.

use std::{
    fmt,
    task::{Context, Poll},
};

use axum::{extract::Request, response::Response};
use http::{HeaderName, HeaderValue};
use tower::{Layer, Service};

pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
pub const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

/// This hop's place in the trace, as a request extension (for logs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceContext {
    pub trace_id: u128,
    /// The span id this hop sends upstream as the parent.
    pub span_id: u64,
    pub flags: u8,
    /// The caller's span id, when the trace was continued.
    pub parent_id: Option<u64>,
}

impl TraceContext {
    /// Parses a version-00 `traceparent` (§3.2); `None` when invalid.
    pub fn parse(value: &[u8]) -> Option<Self> {
        // 00-<32 hex>-<16 hex>-<2 hex>; later versions may append fields after a '-'.
        if value.len() < 55 || (value.len() > 55 && value[55] != b'-') {
            return None;
        }
        let text = std::str::from_utf8(value).ok()?;
        let version = &text[0..2];
        if version == "ff" || (version == "00" && value.len() != 55) {
            return None;
        }
        let lower_hex = |s: &str| {
            s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        };
        let (trace, parent, flags) = (&text[3..35], &text[36..52], &text[53..55]);
        if ![version, trace, parent, flags].iter().all(|s| lower_hex(s))
            || [2, 35, 52].iter().any(|&i| value[i] != b'-')
        {
            return None;
        }
        let trace_id = u128::from_str_radix(trace, 16).ok()?;
        let parent_id = u64::from_str_radix(parent, 16).ok()?;
        if trace_id == 0 || parent_id == 0 {
            return None;
        }
        Some(Self {
            trace_id,
            span_id: parent_id,
            flags: u8::from_str_radix(flags, 16).ok()?,
            parent_id: None,
        })
    }

    /// The next hop: same trace, a new span id.
    fn child(self) -> Self {
        Self {
            span_id: nonzero_u64(),
            parent_id: Some(self.span_id),
            ..self
        }
    }

    fn start() -> Self {
        Self {
            trace_id: loop {
                let id = fastrand::u128(..);
                if id != 0 {
                    break id;
                }
            },
            span_id: nonzero_u64(),
            flags: 0,
            parent_id: None,
        }
    }

    /// The trace id as §3.2.2.3 writes it (32 lower-case hex digits), formatted only when
    /// displayed.
    pub fn trace_id_hex(&self) -> impl fmt::Display + use<> {
        TraceIdHex(self.trace_id)
    }
}

impl TraceContext {
    /// This hop's `traceparent` value, formatted on the stack (the request path makes one per
    /// request).
    pub fn header_value(&self) -> Option<HeaderValue> {
        use std::io::Write;
        let mut text = [0u8; 55];
        write!(&mut text[..], "{self}").ok()?;
        HeaderValue::from_bytes(&text).ok()
    }
}

struct TraceIdHex(u128);

impl fmt::Display for TraceIdHex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

fn nonzero_u64() -> u64 {
    fastrand::u64(1..)
}

impl fmt::Display for TraceContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "00-{:032x}-{:016x}-{:02x}",
            self.trace_id, self.span_id, self.flags
        )
    }
}

/// Continues or starts the trace and rewrites `traceparent` for the upstream.
#[derive(Clone, Copy, Debug, Default)]
pub struct TraceContextLayer;

impl<S> Layer<S> for TraceContextLayer {
    type Service = TraceContextService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        TraceContextService { inner }
    }
}

#[derive(Clone, Debug)]
pub struct TraceContextService<S> {
    inner: S,
}

impl<S> Service<Request> for TraceContextService<S>
where
    S: Service<Request, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request) -> Self::Future {
        let headers = request.headers_mut();
        let mut traceparents = headers.get_all(&TRACEPARENT).iter();
        let incoming = match (traceparents.next(), traceparents.next()) {
            (Some(one), None) => TraceContext::parse(one.as_bytes()),
            _ => None,
        };
        let context = match incoming {
            Some(parent) => parent.child(),
            None => {
                headers.remove(&TRACESTATE);
                TraceContext::start()
            }
        };
        if let Some(value) = context.header_value() {
            headers.insert(TRACEPARENT, value);
        }
        request.extensions_mut().insert(context);
        self.inner.call(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn the_spec_example_parses_and_its_child_keeps_trace_and_flags() {
        let parent = TraceContext::parse(EXAMPLE.as_bytes()).unwrap();
        assert_eq!(
            parent.trace_id_hex().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(parent.to_string(), EXAMPLE);
        assert_eq!(parent.header_value().unwrap(), EXAMPLE);
        let child = parent.child();
        assert_eq!(child.trace_id, parent.trace_id);
        assert_eq!(child.flags, 1);
        assert_ne!(child.span_id, parent.span_id);
    }

    #[test]
    fn invalid_traceparents_are_refused() {
        for bad in [
            "",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert_eq!(TraceContext::parse(bad.as_bytes()), None, "{bad:?}");
        }
        // A future version may append fields.
        assert!(
            TraceContext::parse(format!("{}-more", EXAMPLE.replacen("00", "01", 1)).as_bytes())
                .is_some()
        );
    }
}
