//! Request templates: text with placeholders that take their values from the request, such as
//! an SQS `message_group_id = "{body./customer_id}"` or a DynamoDB key `"{path.id}"`. Parsed
//! once at start-up (an unknown placeholder or a path parameter the route does not capture is
//! a config problem); rendered per request without parsing.
//!
//! | placeholder | value |
//! | --- | --- |
//! | `{path.NAME}` | the route's path parameter `NAME` |
//! | `{query.NAME}` | the first value of query parameter `NAME`, decoded |
//! | `{header.NAME}` | the first value of header `NAME` |
//! | `{body}` | the request body, as text |
//! | `{body./a/b}` | the member at JSON pointer `/a/b` (RFC 6901) of the JSON body: a string as it is, another value as JSON |
//! | `{request_id}` | the request's `X-Request-Id` |
//! | `{correlation_id}` | the request's correlation id (`[aws] correlation_id`) |
//! | `{claims.NAME}` | claim `NAME` of the verified token (`sub` and `scope` for API keys) |
//!
//! `{{` and `}}` stand for literal braces. A placeholder without a value in the request
//! (a query parameter not sent, a body member missing) makes the request a 400
//! `missing-value` naming the placeholder.

use std::{borrow::Cow, sync::OnceLock};

use http::{HeaderMap, HeaderName};
use serde_json::Value;

/// A parsed template.
#[derive(Clone, Debug, PartialEq)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Clone, Debug, PartialEq)]
enum Part {
    Literal(String),
    Path(String),
    Query(String),
    Header(HeaderName),
    Body,
    /// A JSON pointer into the body.
    BodyMember(String),
    RequestId,
    CorrelationId,
    Claim(String),
}

/// The request values a template may use, gathered once per request.
pub struct Values<'a> {
    pub params: &'a [(String, String)],
    pub query: Option<&'a str>,
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
    pub request_id: &'a str,
    pub correlation_id: &'a str,
    pub claims: Option<&'a serde_json::Map<String, Value>>,
    /// The body parsed as JSON, on first use.
    json: OnceLock<Option<Value>>,
}

impl<'a> Values<'a> {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        params: &'a [(String, String)],
        query: Option<&'a str>,
        headers: &'a HeaderMap,
        body: &'a [u8],
        request_id: &'a str,
        correlation_id: &'a str,
        claims: Option<&'a serde_json::Map<String, Value>>,
    ) -> Self {
        Self {
            params,
            query,
            headers,
            body,
            request_id,
            correlation_id,
            claims,
            json: OnceLock::new(),
        }
    }

    /// The body as JSON, if it is JSON.
    pub fn json(&self) -> Option<&Value> {
        self.json
            .get_or_init(|| serde_json::from_slice(self.body).ok())
            .as_ref()
    }
}

/// The placeholder a request had no value for, as written in the configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Missing(pub String);

impl Template {
    /// Parses `text`; `params` are the path parameters the route captures.
    pub fn parse(text: &str, params: &[String]) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut rest = text;
        while let Some(at) = rest.find(['{', '}']) {
            literal.push_str(&rest[..at]);
            let brace = &rest[at..];
            if let Some(after) = brace
                .strip_prefix("{{")
                .or_else(|| brace.strip_prefix("}}"))
            {
                literal.push_str(&brace[..1]);
                rest = after;
                continue;
            }
            if brace.starts_with('}') {
                return Err(format!(
                    "unmatched '}}' in {text:?}; write '}}}}' for a brace"
                ));
            }
            let Some(end) = brace.find('}') else {
                return Err(format!("unclosed '{{' in {text:?}"));
            };
            let placeholder = &brace[1..end];
            if !literal.is_empty() {
                parts.push(Part::Literal(std::mem::take(&mut literal)));
            }
            parts.push(Part::parse(placeholder, params)?);
            rest = &brace[end + 1..];
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            parts.push(Part::Literal(literal));
        }
        Ok(Self { parts })
    }

    /// The text of a template without placeholders.
    pub fn literal(&self) -> Option<&str> {
        match self.parts.as_slice() {
            [] => Some(""),
            [Part::Literal(text)] => Some(text),
            _ => None,
        }
    }

    /// The text before the first placeholder (for IAM resource prefixes).
    pub fn literal_prefix(&self) -> &str {
        match self.parts.first() {
            Some(Part::Literal(text)) => text,
            _ => "",
        }
    }

    /// Whether rendering reads the request body.
    pub fn reads_body(&self) -> bool {
        self.parts
            .iter()
            .any(|part| matches!(part, Part::Body | Part::BodyMember(_)))
    }

    pub fn render(&self, values: &Values<'_>) -> Result<String, Missing> {
        if let Some(text) = self.literal() {
            return Ok(text.to_owned());
        }
        let mut out = String::new();
        for part in &self.parts {
            out.push_str(&part.value(values)?);
        }
        Ok(out)
    }
}

impl Part {
    fn parse(placeholder: &str, params: &[String]) -> Result<Self, String> {
        let (kind, name) = match placeholder.split_once('.') {
            Some((kind, name)) => (kind, Some(name)),
            None => (placeholder, None),
        };
        let named = |what: &str| {
            name.filter(|n| !n.is_empty())
                .map(str::to_owned)
                .ok_or_else(|| format!("{{{what}.NAME}} needs a name: {{{placeholder}}}"))
        };
        Ok(match kind {
            "path" => {
                let name = named("path")?;
                if !params.contains(&name) {
                    return Err(format!(
                        "{{path.{name}}}: the route path has no {{{name}}} parameter"
                    ));
                }
                Part::Path(name)
            }
            "query" => Part::Query(named("query")?),
            "header" => {
                let name = named("header")?;
                Part::Header(
                    HeaderName::try_from(name.to_ascii_lowercase())
                        .map_err(|_| format!("{{header.{name}}}: not a header name"))?,
                )
            }
            "claims" => Part::Claim(named("claims")?),
            "body" => match name {
                None => Part::Body,
                Some(pointer) if pointer.starts_with('/') => Part::BodyMember(pointer.to_owned()),
                Some(pointer) => {
                    return Err(format!(
                        "{{body.{pointer}}}: a JSON pointer starts with '/', as in {{body./{pointer}}}"
                    ));
                }
            },
            "request_id" if name.is_none() => Part::RequestId,
            "correlation_id" if name.is_none() => Part::CorrelationId,
            _ => {
                return Err(format!(
                    "unknown placeholder {{{placeholder}}}; known: {{path.NAME}}, {{query.NAME}}, \
                     {{header.NAME}}, {{body}}, {{body./json/pointer}}, {{request_id}}, \
                     {{correlation_id}}, {{claims.NAME}}"
                ));
            }
        })
    }

    fn value<'v>(&'v self, values: &'v Values<'_>) -> Result<Cow<'v, str>, Missing> {
        let missing = || Missing(self.to_string());
        Ok(match self {
            Part::Literal(text) => Cow::Borrowed(text),
            Part::Path(name) => values
                .params
                .iter()
                .find(|(param, _)| param == name)
                .map(|(_, value)| Cow::Borrowed(value.as_str()))
                .ok_or_else(missing)?,
            Part::Query(name) => values
                .query
                .and_then(|query| {
                    url::form_urlencoded::parse(query.as_bytes())
                        .find(|(key, _)| key == name)
                        .map(|(_, value)| Cow::Owned(value.into_owned()))
                })
                .ok_or_else(missing)?,
            Part::Header(name) => values
                .headers
                .get(name)
                .and_then(|value| value.to_str().ok())
                .map(Cow::Borrowed)
                .ok_or_else(missing)?,
            Part::Body => String::from_utf8_lossy(values.body),
            Part::BodyMember(pointer) => values
                .json()
                .and_then(|json| json.pointer(pointer))
                .filter(|value| !value.is_null())
                .map(json_text)
                .ok_or_else(missing)?,
            Part::RequestId => Cow::Borrowed(values.request_id),
            Part::CorrelationId => Cow::Borrowed(values.correlation_id),
            Part::Claim(name) => values
                .claims
                .and_then(|claims| claims.get(name))
                .filter(|value| !value.is_null())
                .map(json_text)
                .ok_or_else(missing)?,
        })
    }
}

/// A JSON value as template text: a string without its quotes, anything else as JSON.
fn json_text(value: &Value) -> Cow<'_, str> {
    match value {
        Value::String(text) => Cow::Borrowed(text),
        other => Cow::Owned(other.to_string()),
    }
}

impl std::fmt::Display for Part {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Part::Literal(text) => f.write_str(text),
            Part::Path(name) => write!(f, "{{path.{name}}}"),
            Part::Query(name) => write!(f, "{{query.{name}}}"),
            Part::Header(name) => write!(f, "{{header.{name}}}"),
            Part::Body => f.write_str("{body}"),
            Part::BodyMember(pointer) => write!(f, "{{body.{pointer}}}"),
            Part::RequestId => f.write_str("{request_id}"),
            Part::CorrelationId => f.write_str("{correlation_id}"),
            Part::Claim(name) => write!(f, "{{claims.{name}}}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn render(template: &str, body: &[u8], query: Option<&str>) -> Result<String, Missing> {
        let params = vec![("id".to_owned(), "42".to_owned())];
        let mut headers = HeaderMap::new();
        headers.insert("x-tenant", "acme".parse().unwrap());
        let claims = json!({ "sub": "ada", "n": 7 });
        let values = Values::new(
            &params,
            query,
            &headers,
            body,
            "req-1",
            "corr-1",
            claims.as_object(),
        );
        Template::parse(template, &["id".to_owned()])
            .unwrap()
            .render(&values)
    }

    #[test]
    fn every_placeholder_takes_its_value_from_the_request() {
        let body = br#"{"customer":{"id":"c-9"},"n":3}"#;
        assert_eq!(
            render(
                "{path.id}/{query.q}/{header.X-Tenant}/{body./customer/id}/{body./n}/{request_id}/{correlation_id}/{claims.sub}/{claims.n}",
                body,
                Some("q=a%20b&q=2")
            )
            .unwrap(),
            "42/a b/acme/c-9/3/req-1/corr-1/ada/7"
        );
        assert_eq!(render("{body}", b"raw", None).unwrap(), "raw");
        assert_eq!(
            render("{{literal}} {path.id}", b"", None).unwrap(),
            "{literal} 42"
        );
    }

    #[test]
    fn a_missing_value_names_its_placeholder() {
        assert_eq!(
            render("x-{query.q}", b"", None),
            Err(Missing("{query.q}".into()))
        );
        assert_eq!(
            render("{body./a}", b"not json", None),
            Err(Missing("{body./a}".into()))
        );
        assert_eq!(
            render("{body./a}", br#"{"a":null}"#, None),
            Err(Missing("{body./a}".into()))
        );
    }

    #[test]
    fn bad_templates_are_refused_at_start_up() {
        let params = ["id".to_owned()];
        for (template, problem) in [
            ("{path.other}", "no {other} parameter"),
            ("{nope}", "unknown placeholder {nope}"),
            ("{body.customer}", "starts with '/'"),
            ("{query.}", "needs a name"),
            ("a}b", "unmatched '}'"),
            ("a{b", "unclosed '{'"),
            ("{header.bad header}", "not a header name"),
        ] {
            let error = Template::parse(template, &params).unwrap_err();
            assert!(error.contains(problem), "{template}: {error}");
        }
    }

    #[test]
    fn a_template_knows_its_literal_prefix_and_whether_it_reads_the_body() {
        let template = Template::parse("uploads/{path.id}.json", &["id".into()]).unwrap();
        assert_eq!(template.literal_prefix(), "uploads/");
        assert!(!template.reads_body());
        assert!(Template::parse("{body./a}", &[]).unwrap().reads_body());
        assert_eq!(
            Template::parse("plain", &[]).unwrap().literal(),
            Some("plain")
        );
    }
}
