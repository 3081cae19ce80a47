//! Route `transform`: JSON and header rewrites of the request to the upstream and of the
//! response to the client, validated into [`TransformSettings`].

use std::collections::BTreeMap;

use http::{HeaderName, HeaderValue, header};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::config::{Problems, parse_header_name};

/// `transform = { request = {...}, response = {...} }`
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TransformConfig {
    pub request: Option<TransformSideConfig>,
    pub response: Option<TransformSideConfig>,
}

/// One direction's rewrites. JSON operations run in this order: `allow`, `deny`, `rename`,
/// `move`, `wrap`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct TransformSideConfig {
    /// JSON pointers (RFC 6901) of the only members kept.
    pub allow: Vec<String>,
    /// JSON pointers of members removed.
    pub deny: Vec<String>,
    /// `{ "/name" = "/full_name" }`: a member renamed in place (same parent object).
    pub rename: BTreeMap<String, String>,
    /// `{ "/a/b" = "/c" }`: a value moved anywhere, objects created on the way.
    #[serde(rename = "move")]
    pub moves: BTreeMap<String, String>,
    /// The whole body put under this member of a new object.
    pub wrap: Option<String>,
    pub headers: HeaderOpsConfig,
}

/// `headers = { add = {...}, remove = [...], rename = {...} }`, applied remove, rename, add.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct HeaderOpsConfig {
    /// Set these fields, replacing any value they had.
    pub add: BTreeMap<String, String>,
    pub remove: Vec<String>,
    /// `{ old = "new" }`: every value moves to the new name.
    pub rename: BTreeMap<String, String>,
}

/// A parsed JSON pointer: its reference tokens, unescaped (`~1` is `/`, `~0` is `~`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JsonPointer {
    pub text: String,
    pub tokens: Vec<String>,
}

impl JsonPointer {
    /// RFC 6901 §3/§4; the whole-document pointer `""` is refused: every operation names a
    /// member.
    pub fn parse(text: &str) -> Result<Self, String> {
        let Some(rest) = text.strip_prefix('/') else {
            return Err(format!(
                "{text:?} is not a JSON pointer (RFC 6901): start it with '/'"
            ));
        };
        let mut tokens = Vec::new();
        for raw in rest.split('/') {
            let mut token = String::with_capacity(raw.len());
            let mut chars = raw.chars();
            while let Some(c) = chars.next() {
                match (c, c == '~') {
                    (_, false) => token.push(c),
                    (_, true) => match chars.next() {
                        Some('0') => token.push('~'),
                        Some('1') => token.push('/'),
                        _ => return Err(format!("{text:?}: '~' must be followed by 0 or 1")),
                    },
                }
            }
            tokens.push(token);
        }
        Ok(Self {
            text: text.to_owned(),
            tokens,
        })
    }

    /// The pointer of the containing value.
    pub fn parent(&self) -> &[String] {
        &self.tokens[..self.tokens.len() - 1]
    }

    pub fn last(&self) -> &str {
        self.tokens.last().map(String::as_str).unwrap_or_default()
    }
}

/// The validated rewrites of one direction.
#[derive(Clone, Debug, Default)]
pub struct TransformSide {
    pub allow: Vec<JsonPointer>,
    pub deny: Vec<JsonPointer>,
    /// Member to rename, and its new name in the same object.
    pub rename: Vec<(JsonPointer, String)>,
    pub moves: Vec<(JsonPointer, JsonPointer)>,
    pub wrap: Option<String>,
    pub headers: HeaderOps,
}

impl TransformSide {
    /// Whether the body must be read: some JSON operation is configured.
    pub fn touches_body(&self) -> bool {
        !(self.allow.is_empty()
            && self.deny.is_empty()
            && self.rename.is_empty()
            && self.moves.is_empty()
            && self.wrap.is_none())
    }
}

#[derive(Clone, Debug, Default)]
pub struct HeaderOps {
    pub add: Vec<(HeaderName, HeaderValue)>,
    pub remove: Vec<HeaderName>,
    pub rename: Vec<(HeaderName, HeaderName)>,
}

#[derive(Clone, Debug, Default)]
pub struct TransformSettings {
    pub request: Option<TransformSide>,
    pub response: Option<TransformSide>,
}

/// Fields that describe the message framing or connection, which the gateway owns: a
/// transform that changed them would corrupt the message (RFC 9112 §6, RFC 9110 §7.6.1).
const RESERVED: [HeaderName; 6] = [
    header::CONTENT_LENGTH,
    header::TRANSFER_ENCODING,
    header::CONTENT_ENCODING,
    header::CONNECTION,
    header::HOST,
    header::TE,
];

pub fn settings(
    key: &str,
    transform: &TransformConfig,
    problems: &mut Problems,
) -> TransformSettings {
    let mut side = |name: &str, config: &Option<TransformSideConfig>| {
        config
            .as_ref()
            .map(|config| side_settings(&format!("{key}.transform.{name}"), config, problems))
    };
    TransformSettings {
        request: side("request", &transform.request),
        response: side("response", &transform.response),
    }
}

fn side_settings(
    key: &str,
    config: &TransformSideConfig,
    problems: &mut Problems,
) -> TransformSide {
    let allow = (config.allow.iter().enumerate())
        .filter_map(|(i, p)| pointer(problems, format!("{key}.allow[{i}]"), p))
        .collect();
    let deny = (config.deny.iter().enumerate())
        .filter_map(|(i, p)| pointer(problems, format!("{key}.deny[{i}]"), p))
        .collect();
    let mut rename = Vec::new();
    for (from, to) in &config.rename {
        let field = format!("{key}.rename.{from:?}");
        let (Some(from), Some(to)) = (
            pointer(problems, field.clone(), from),
            pointer(problems, field.clone(), to),
        ) else {
            continue;
        };
        if from.parent() != to.parent() {
            problems.add(
                field,
                format!(
                    "{:?} and {:?} have different parents: use `move` to relocate a value",
                    from.text, to.text
                ),
            );
            continue;
        }
        let name = to.last().to_owned();
        rename.push((from, name));
    }
    let mut moves = Vec::new();
    for (from, to) in &config.moves {
        let field = format!("{key}.move.{from:?}");
        if let (Some(from), Some(to)) = (
            pointer(problems, field.clone(), from),
            pointer(problems, field.clone(), to),
        ) {
            if to.tokens.starts_with(&from.tokens) {
                problems.add(field, "cannot move a value inside itself");
                continue;
            }
            moves.push((from, to));
        }
    }
    if config.wrap.as_deref() == Some("") {
        problems.add(format!("{key}.wrap"), "name the member the body goes under");
    }
    TransformSide {
        allow,
        deny,
        rename,
        moves,
        wrap: config.wrap.clone().filter(|w| !w.is_empty()),
        headers: header_ops(&format!("{key}.headers"), &config.headers, problems),
    }
}

fn pointer(problems: &mut Problems, field: String, text: &str) -> Option<JsonPointer> {
    JsonPointer::parse(text)
        .map_err(|message| problems.add(field, message))
        .ok()
}

fn header_name(problems: &mut Problems, field: String, text: &str) -> Option<HeaderName> {
    let name = parse_header_name(&field, text, problems)?;
    if RESERVED.contains(&name) {
        problems.add(
            field,
            format!("{name} is managed by the gateway and cannot be transformed"),
        );
        return None;
    }
    Some(name)
}

fn header_ops(key: &str, config: &HeaderOpsConfig, problems: &mut Problems) -> HeaderOps {
    let mut ops = HeaderOps::default();
    for (header, value) in &config.add {
        let field = format!("{key}.add.{header}");
        let header = header_name(problems, field.clone(), header);
        match HeaderValue::try_from(value.as_str()) {
            Ok(value) => ops.add.extend(header.map(|h| (h, value))),
            Err(_) => problems.add(field, "invalid header value"),
        }
    }
    for (i, header) in config.remove.iter().enumerate() {
        ops.remove
            .extend(header_name(problems, format!("{key}.remove[{i}]"), header));
    }
    for (from, to) in &config.rename {
        let field = format!("{key}.rename.{from}");
        if let (Some(from), Some(to)) = (
            header_name(problems, field.clone(), from),
            header_name(problems, field, to),
        ) {
            ops.rename.push((from, to));
        }
    }
    ops
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pointers_unescape_tilde_and_slash() {
        let pointer = JsonPointer::parse("/a~1b/c~0d/0").unwrap();
        assert_eq!(pointer.tokens, ["a/b", "c~d", "0"]);
        assert!(JsonPointer::parse("name").is_err());
        assert!(JsonPointer::parse("/bad~2").is_err());
    }
}
