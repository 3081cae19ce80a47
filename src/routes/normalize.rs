//! Path normalization, so that routing, authorization and forwarding all see one path.
//!
//! Rules (RFC 3986 §6.2.2): percent-encoded unreserved characters are decoded, other
//! escapes get upper-case hex, dot segments are removed (§5.2.4), and repeated slashes are
//! merged (as Envoy's `merge_slashes`), so `/a/./b/../c` and `//a/%63` are `/a/c`. Encoded
//! `/` (`%2F`) and `\` (`%5C`), a raw `\`, NUL and malformed escapes are rejected with 400:
//! each has been used to make a gateway and a backend disagree about the path.
//!
//! The query string is never touched.

use std::{
    borrow::Cow,
    task::{Context, Poll},
};

use axum::{extract::Request, response::IntoResponse, response::Response};
use futures_util::future::{Either, Ready, ready};
use http::{Uri, uri::PathAndQuery};
use tower::{Layer, Service};

use crate::error::Error;

/// Rewrites each request's path into its normalized form, or answers 400.
#[derive(Clone, Copy, Debug, Default)]
pub struct NormalizePathLayer;

impl<S> Layer<S> for NormalizePathLayer {
    type Service = NormalizePath<S>;
    fn layer(&self, inner: S) -> Self::Service {
        NormalizePath { inner }
    }
}

#[derive(Clone, Debug)]
pub struct NormalizePath<S> {
    inner: S,
}

impl<S, E> Service<Request> for NormalizePath<S>
where
    S: Service<Request, Response = Response, Error = E>,
{
    type Response = Response;
    type Error = E;
    type Future = Either<S::Future, Ready<Result<Response, E>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), E>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request) -> Self::Future {
        let uri = request.uri();
        match normalize(uri.path()) {
            Ok(Cow::Borrowed(_)) => {}
            Ok(Cow::Owned(path)) => match with_path(uri, &path) {
                Some(uri) => *request.uri_mut() = uri,
                None => {
                    return Either::Right(ready(Ok(
                        Error::InvalidPath("not a valid URI path").into_response()
                    )));
                }
            },
            Err(why) => return Either::Right(ready(Ok(Error::InvalidPath(why).into_response()))),
        }
        Either::Left(self.inner.call(request))
    }
}

fn with_path(uri: &Uri, path: &str) -> Option<Uri> {
    let path_and_query = match uri.query() {
        Some(query) => PathAndQuery::try_from(format!("{path}?{query}")),
        None => PathAndQuery::try_from(path),
    }
    .ok()?;
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(path_and_query);
    Uri::from_parts(parts).ok()
}

fn is_unreserved(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~')
}

fn hex_value(byte: u8) -> Option<u8> {
    (byte as char).to_digit(16).map(|d| d as u8)
}

/// Returns the normalized path, borrowing when it is already normal (the common case).
pub fn normalize(path: &str) -> Result<Cow<'_, str>, &'static str> {
    if !path.starts_with('/') {
        return Err("it must start with '/'");
    }
    if path.contains('\\') {
        return Err("'\\' is not allowed");
    }
    let needs_work = path.contains('%')
        || path.contains("//")
        || path.contains("/./")
        || path.contains("/../")
        || path.ends_with("/.")
        || path.ends_with("/..");
    if !needs_work {
        return Ok(Cow::Borrowed(path));
    }

    let decoded = decode_unreserved(path)?;
    Ok(Cow::Owned(remove_dot_segments(&decoded)))
}

fn decode_unreserved(path: &str) -> Result<String, &'static str> {
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'%' {
            out.push(bytes[i] as char);
            i += 1;
            continue;
        }
        let (Some(high), Some(low)) = (
            bytes.get(i + 1).copied().and_then(hex_value),
            bytes.get(i + 2).copied().and_then(hex_value),
        ) else {
            return Err("malformed percent-encoding");
        };
        let value = high << 4 | low;
        match value {
            b'/' | b'\\' => return Err("an encoded '/' or '\\' is not allowed"),
            0 => return Err("an encoded NUL is not allowed"),
            v if is_unreserved(v) => out.push(v as char),
            v => {
                out.push('%');
                out.push_str(&format!("{v:02X}"));
            }
        }
        i += 3;
    }
    Ok(out)
}

/// RFC 3986 §5.2.4, plus merging of empty segments.
fn remove_dot_segments(path: &str) -> String {
    let mut segments: Vec<&str> = Vec::new();
    let mut trailing_slash = false;
    for segment in path.split('/').skip(1) {
        trailing_slash = false;
        match segment {
            "" => trailing_slash = true,
            "." => trailing_slash = true,
            ".." => {
                segments.pop();
                trailing_slash = true;
            }
            s => segments.push(s),
        }
    }
    let mut out = String::with_capacity(path.len());
    for segment in &segments {
        out.push('/');
        out.push_str(segment);
    }
    if out.is_empty() || trailing_slash {
        out.push('/');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(path: &str) -> Result<String, &'static str> {
        normalize(path).map(Cow::into_owned)
    }

    #[test]
    fn normal_paths_are_borrowed_unchanged() {
        assert!(matches!(
            normalize("/users/42/orders"),
            Ok(Cow::Borrowed(_))
        ));
        assert!(matches!(normalize("/"), Ok(Cow::Borrowed(_))));
    }

    #[test]
    fn dot_segments_are_removed() {
        assert_eq!(norm("/a/./b/../c").unwrap(), "/a/c");
        assert_eq!(norm("/a/b/..").unwrap(), "/a/");
        assert_eq!(norm("/../../etc/passwd").unwrap(), "/etc/passwd");
        assert_eq!(norm("/a/.").unwrap(), "/a/");
    }

    #[test]
    fn encoded_dots_are_dot_segments_too() {
        assert_eq!(norm("/admin/%2e%2e/public").unwrap(), "/public");
        assert_eq!(norm("/public/%2E%2E/admin").unwrap(), "/admin");
    }

    #[test]
    fn repeated_slashes_merge() {
        assert_eq!(norm("//admin//x").unwrap(), "/admin/x");
        assert_eq!(norm("/a/").unwrap(), "/a/");
    }

    #[test]
    fn unreserved_escapes_decode_and_others_are_uppercased() {
        assert_eq!(norm("/%61%7e/x%2dy").unwrap(), "/a~/x-y");
        assert_eq!(norm("/a%20b/%c3%a9").unwrap(), "/a%20b/%C3%A9");
    }

    #[test]
    fn encoded_separators_and_malformed_escapes_are_rejected() {
        assert!(norm("/a%2Fb").is_err());
        assert!(norm("/a%2fb").is_err());
        assert!(norm("/a%5Cb").is_err());
        assert!(norm("/a\\b").is_err());
        assert!(norm("/a%00").is_err());
        assert!(norm("/a%zz").is_err());
        assert!(norm("/a%4").is_err());
        assert!(norm("*").is_err());
    }
}
