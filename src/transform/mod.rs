//! Route `transform`: rewrites of the request on its way to the upstream and of the response on
//! its way back: JSON members kept (`allow`), removed (`deny`), renamed, moved (all named by
//! JSON pointers, RFC 6901), the body wrapped under a key, and header fields set, removed and
//! renamed.
//!
//! JSON operations run `allow`, `deny`, `rename`, `move`, `wrap`. When the body is a JSON array,
//! the member operations apply to each element (a list of users loses every `password_hash`),
//! and `wrap` to the whole. A body that is not JSON (by `Content-Type`, or failing to parse),
//! compressed in a coding the gateway cannot decode, or larger than `server.body_limit`, passes
//! untouched, with a debug event saying why. Header operations run remove, rename, add, after
//! the body. Problem responses of the gateway itself only get the header operations.

use axum::{body::Body, extract::Request, response::Response};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use serde_json::{Map, Value};

pub mod config;

use self::config::{HeaderOps, TransformSettings, TransformSide};
use crate::{
    body::{Buffered, Coding, decode, is_json, read_up_to},
    error::{Error, Problem},
    limits::read_whole_body,
};

/// The rewrites of one route, built once at start-up.
pub struct Transform {
    request: Option<TransformSide>,
    response: Option<TransformSide>,
    /// Largest response body read for rewriting.
    body_cap: usize,
}

impl Transform {
    /// `None` when the route rewrites nothing.
    pub fn new(settings: &TransformSettings, body_cap: u64) -> Option<Self> {
        (settings.request.is_some() || settings.response.is_some()).then(|| Self {
            request: settings.request.clone(),
            response: settings.response.clone(),
            body_cap: usize::try_from(body_cap).unwrap_or(usize::MAX),
        })
    }

    /// Rewrites the request for the upstream. A rewritten JSON body is sent decoded, with its
    /// new length.
    pub async fn request(&self, request: Request) -> Result<Request, Error> {
        let mut request = request;
        if self
            .response
            .as_ref()
            .is_some_and(TransformSide::touches_body)
        {
            // The response is read here: ask for it uncompressed (RFC 9110 §12.5.3); a body
            // compressed anyway is decoded when the coding is known.
            request.headers_mut().insert(
                header::ACCEPT_ENCODING,
                HeaderValue::from_static("identity"),
            );
        }
        let Some(side) = &self.request else {
            return Ok(request);
        };
        if side.touches_body() && is_json(request.headers().get(header::CONTENT_TYPE)) {
            let (mut parts, body) = request.into_parts();
            let (bytes, limit) = read_whole_body(&parts, body).await?;
            let body = if bytes.is_empty() {
                bytes
            } else {
                let decoded = decode(
                    parts.headers.get(header::CONTENT_ENCODING),
                    bytes.clone(),
                    limit,
                )?;
                match rewrite_json(side, &decoded) {
                    Some(rewritten) => {
                        parts.headers.remove(header::CONTENT_ENCODING);
                        parts.headers.remove(header::CONTENT_LENGTH);
                        rewritten
                    }
                    None => bytes,
                }
            };
            request = Request::from_parts(parts, Body::from(body));
        }
        apply_headers(&side.headers, request.headers_mut());
        Ok(request)
    }

    /// Rewrites the response for the client.
    pub async fn response(&self, response: Response, method: &Method) -> Response {
        let Some(side) = &self.response else {
            return response;
        };
        let mut response = response;
        if side.touches_body() && has_json_body(&response, method) {
            response = self.rewrite_response_body(side, response).await;
        }
        apply_headers(&side.headers, response.headers_mut());
        response
    }

    async fn rewrite_response_body(&self, side: &TransformSide, response: Response) -> Response {
        let (mut parts, body) = response.into_parts();
        if Coding::of(parts.headers.get(header::CONTENT_ENCODING)).is_none() {
            tracing::debug!("response not transformed: unknown content coding");
            return Response::from_parts(parts, body);
        }
        let bytes = match read_up_to(body, self.body_cap).await {
            Ok(Buffered::Whole(bytes)) => bytes,
            Ok(Buffered::TooLarge(body)) => {
                tracing::debug!(
                    cap = self.body_cap,
                    "response not transformed: body too large"
                );
                return Response::from_parts(parts, body);
            }
            Err(error) => return axum::response::IntoResponse::into_response(error),
        };
        let decoded = decode(
            parts.headers.get(header::CONTENT_ENCODING),
            bytes.clone(),
            self.body_cap as u64,
        );
        match decoded
            .ok()
            .and_then(|decoded| rewrite_json(side, &decoded))
        {
            Some(rewritten) => {
                parts.headers.remove(header::CONTENT_ENCODING);
                parts
                    .headers
                    .insert(header::CONTENT_LENGTH, HeaderValue::from(rewritten.len()));
                Response::from_parts(parts, Body::from(rewritten))
            }
            None => Response::from_parts(parts, Body::from(bytes)),
        }
    }
}

/// A JSON body to read: not a gateway problem, not a body-less status or HEAD answer.
fn has_json_body(response: &Response, method: &Method) -> bool {
    let status = response.status();
    response.extensions().get::<Problem>().is_none()
        && method != Method::HEAD
        && !(status.is_informational()
            || status == StatusCode::NO_CONTENT
            || status == StatusCode::NOT_MODIFIED)
        && is_json(response.headers().get(header::CONTENT_TYPE))
}

/// The body rewritten, or `None` (with a debug event) when it is not JSON.
fn rewrite_json(side: &TransformSide, bytes: &[u8]) -> Option<Bytes> {
    let document: Value = match serde_json::from_slice(bytes) {
        Ok(document) => document,
        Err(error) => {
            tracing::debug!(%error, "body not transformed: not valid JSON");
            return None;
        }
    };
    let rewritten = apply_json(side, document);
    serde_json::to_vec(&rewritten).ok().map(Bytes::from)
}

/// Runs the JSON operations on `document`.
pub fn apply_json(side: &TransformSide, document: Value) -> Value {
    let document = match document {
        Value::Array(items) => Value::Array(
            items
                .into_iter()
                .map(|item| apply_members(side, item))
                .collect(),
        ),
        other => apply_members(side, other),
    };
    match &side.wrap {
        Some(key) => Value::Object(Map::from_iter([(key.clone(), document)])),
        None => document,
    }
}

fn apply_members(side: &TransformSide, mut document: Value) -> Value {
    if !side.allow.is_empty() {
        let mut kept = Value::Object(Map::new());
        for pointer in &side.allow {
            if let Some(value) = get(&document, &pointer.tokens) {
                let _ = insert(&mut kept, &pointer.tokens, value.clone());
            }
        }
        document = kept;
    }
    for pointer in &side.deny {
        remove(&mut document, &pointer.tokens);
    }
    for (from, name) in &side.rename {
        if let Some(value) = remove(&mut document, &from.tokens)
            && let Some(Value::Object(parent)) = get_mut(&mut document, from.parent())
        {
            parent.insert(name.clone(), value);
        }
    }
    for (from, to) in &side.moves {
        if let Some(value) = remove(&mut document, &from.tokens)
            && let Err(value) = insert(&mut document, &to.tokens, value)
        {
            // The target cannot be made (a non-object is in the way): the value stays put.
            let _ = insert(&mut document, &from.tokens, value);
        }
    }
    document
}

fn get<'a>(document: &'a Value, tokens: &[String]) -> Option<&'a Value> {
    tokens
        .iter()
        .try_fold(document, |value, token| match value {
            Value::Object(map) => map.get(token),
            Value::Array(items) => token.parse::<usize>().ok().and_then(|i| items.get(i)),
            _ => None,
        })
}

fn get_mut<'a>(document: &'a mut Value, tokens: &[String]) -> Option<&'a mut Value> {
    tokens
        .iter()
        .try_fold(document, |value, token| match value {
            Value::Object(map) => map.get_mut(token),
            Value::Array(items) => token.parse::<usize>().ok().and_then(|i| items.get_mut(i)),
            _ => None,
        })
}

fn remove(document: &mut Value, tokens: &[String]) -> Option<Value> {
    let (last, parent) = tokens.split_last()?;
    match get_mut(document, parent)? {
        Value::Object(map) => map.remove(last),
        Value::Array(items) => {
            let index = last.parse::<usize>().ok().filter(|i| *i < items.len())?;
            Some(items.remove(index))
        }
        _ => None,
    }
}

/// Puts `value` at `tokens`, creating objects on the way; gives it back when a non-object is
/// in the way. In an array, an index inserts there and `-` appends (RFC 6902 §4.1).
fn insert(document: &mut Value, tokens: &[String], value: Value) -> Result<(), Value> {
    let Some((last, parent)) = tokens.split_last() else {
        return Err(value);
    };
    let mut current = document;
    for token in parent {
        current = match current {
            Value::Object(map) => map
                .entry(token.clone())
                .or_insert_with(|| Value::Object(Map::new())),
            Value::Array(items) => match token.parse::<usize>().ok().and_then(|i| items.get_mut(i))
            {
                Some(item) => item,
                None => return Err(value),
            },
            _ => return Err(value),
        };
    }
    match current {
        Value::Object(map) => {
            map.insert(last.clone(), value);
            Ok(())
        }
        Value::Array(items) if last == "-" => {
            items.push(value);
            Ok(())
        }
        Value::Array(items) => match last.parse::<usize>() {
            Ok(index) if index <= items.len() => {
                items.insert(index, value);
                Ok(())
            }
            _ => Err(value),
        },
        _ => Err(value),
    }
}

/// Header operations: remove, rename (every value moves), then add (set, replacing).
fn apply_headers(ops: &HeaderOps, headers: &mut HeaderMap) {
    for name in &ops.remove {
        headers.remove(name);
    }
    for (from, to) in &ops.rename {
        if let http::header::Entry::Occupied(entry) = headers.entry(from) {
            let (_, values) = entry.remove_entry_mult();
            let values: Vec<HeaderValue> = values.collect();
            headers.remove(to);
            for value in values {
                headers.append(to, value);
            }
        }
    }
    for (name, value) in &ops.add {
        headers.insert(name, value.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::config::JsonPointer;
    use super::*;
    use serde_json::json;

    fn pointer(text: &str) -> JsonPointer {
        JsonPointer::parse(text).unwrap()
    }

    #[test]
    fn operations_run_allow_deny_rename_move_wrap() {
        let side = TransformSide {
            allow: vec![
                pointer("/id"),
                pointer("/name"),
                pointer("/profile/city"),
                pointer("/secret"),
            ],
            deny: vec![pointer("/secret")],
            rename: vec![(pointer("/name"), "full_name".into())],
            moves: vec![(pointer("/profile/city"), pointer("/address/city"))],
            wrap: Some("data".into()),
            ..TransformSide::default()
        };
        let document = json!({
            "id": 7, "name": "Ada", "secret": "x", "extra": true,
            "profile": { "city": "London", "age": 36 }
        });
        assert_eq!(
            apply_json(&side, document),
            json!({ "data": { "id": 7, "full_name": "Ada", "profile": {}, "address": { "city": "London" } } })
        );
    }

    #[test]
    fn member_operations_apply_to_each_element_of_an_array() {
        let side = TransformSide {
            deny: vec![pointer("/password_hash")],
            ..TransformSide::default()
        };
        let document =
            json!([{ "id": 1, "password_hash": "a" }, { "id": 2, "password_hash": "b" }]);
        assert_eq!(
            apply_json(&side, document),
            json!([{ "id": 1 }, { "id": 2 }])
        );
    }

    #[test]
    fn a_move_blocked_by_a_scalar_leaves_the_value_where_it_was() {
        let side = TransformSide {
            moves: vec![(pointer("/a"), pointer("/b/c"))],
            ..TransformSide::default()
        };
        let document = json!({ "a": 1, "b": "scalar" });
        assert_eq!(apply_json(&side, document.clone()), document);
    }

    #[test]
    fn header_renames_keep_every_value() {
        let mut headers = HeaderMap::new();
        headers.append("x-old", HeaderValue::from_static("1"));
        headers.append("x-old", HeaderValue::from_static("2"));
        headers.append("x-debug", HeaderValue::from_static("on"));
        let ops = HeaderOps {
            add: vec![(
                "x-served-by".try_into().unwrap(),
                HeaderValue::from_static("proxyfn"),
            )],
            remove: vec!["x-debug".try_into().unwrap()],
            rename: vec![("x-old".try_into().unwrap(), "x-new".try_into().unwrap())],
        };
        apply_headers(&ops, &mut headers);
        let new: Vec<_> = headers.get_all("x-new").iter().collect();
        assert_eq!(new, ["1", "2"]);
        assert!(!headers.contains_key("x-old") && !headers.contains_key("x-debug"));
        assert_eq!(headers["x-served-by"], "proxyfn");
    }
}
