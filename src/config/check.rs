//! Every problem of a configuration in one run, each said in the configuration's own words.
//!
//! serde stops at a file's first structural problem (an unknown key, a wrong type, a bad
//! duration) and words it in Rust's terms (`expected usize`). When the file does not
//! deserialize, the merged document (file and environment) is checked against the
//! configuration's JSON Schema ([`super::json_schema`]) instead, which finds all of them; the
//! values at fault are then left out and the rest is validated as usual, so the semantic
//! problems of the same file are reported in the same run. Each problem is then located: the
//! file and line of its key, or the environment variable it came from, and for a route the
//! route's path next to its index (`routes[2] (/users/{id})`).
//!
//! A valid file never takes this path: start-up (a Lambda cold start) pays nothing for it.

use std::{collections::HashMap, sync::OnceLock};

use jsonschema::error::{TypeKind, ValidationErrorKind};
use serde_json::Value;

use super::{ConfigProblem, Location, units};

/// A structural problem: where (path segments), what, and whether leaving the value out
/// makes the rest checkable.
#[derive(Debug)]
pub(super) struct Structural {
    pub path: Vec<String>,
    pub message: String,
    /// Leaving this value out leaves a valid document, e.g. an unknown key or an optional
    /// value of the wrong type; a missing required key cannot be mended that way.
    pub removable: bool,
}

fn schema() -> &'static Value {
    static SCHEMA: OnceLock<Value> = OnceLock::new();
    SCHEMA.get_or_init(super::json_schema::document)
}

/// Every structural problem of `document`.
pub(super) fn structural(document: &Value) -> Vec<Structural> {
    let validator = match jsonschema::options()
        .with_format(units::DURATION_FORMAT, units::is_duration)
        .with_format(units::SIZE_FORMAT, units::is_size)
        .should_validate_formats(true)
        .build(schema())
    {
        Ok(validator) => validator,
        Err(error) => {
            return vec![Structural {
                path: vec![],
                message: format!("the configuration schema does not compile: {error}"),
                removable: false,
            }];
        }
    };
    let mut found: Vec<Structural> = Vec::new();
    for error in validator.iter_errors(document) {
        let path: Vec<String> = error
            .instance_path()
            .iter()
            .map(|segment| segment.to_string())
            .collect();
        let instance = error.instance();
        match error.kind() {
            ValidationErrorKind::AdditionalProperties { unexpected } => {
                let known = allowed_keys(&path);
                for key in unexpected {
                    let mut at = path.clone();
                    at.push(key.clone());
                    found.push(Structural {
                        path: at,
                        message: unknown_key(key, &known),
                        removable: true,
                    });
                }
            }
            ValidationErrorKind::Required { property } => {
                let mut at = path.clone();
                at.push(property.as_str().unwrap_or_default().to_owned());
                found.push(Structural {
                    path: at,
                    message: "is required".to_owned(),
                    removable: false,
                });
            }
            kind => {
                let message = describe(kind, instance, &path);
                found.push(Structural {
                    path,
                    message,
                    removable: true,
                });
            }
        }
    }
    found
}

/// What a value got wrong, in TOML's words.
fn describe(kind: &ValidationErrorKind, instance: &Value, path: &[String]) -> String {
    match kind {
        ValidationErrorKind::Type { kind } => {
            let expected = match kind {
                TypeKind::Single(one) => one_type(&one.to_string()),
                TypeKind::Multiple(many) => many
                    .into_iter()
                    .map(|t| one_type(&t.to_string()))
                    .collect::<Vec<_>>()
                    .join(" or "),
            };
            format!("must be {expected}, not {}", what_is(instance))
        }
        ValidationErrorKind::Format { format } if format == units::DURATION_FORMAT => format!(
            "invalid duration {}; use e.g. \"250ms\", \"30s\", \"1m\"",
            shown(instance)
        ),
        ValidationErrorKind::Format { format } if format == units::SIZE_FORMAT => {
            match instance.as_str().map(units::ByteSize::parse) {
                Some(Err(why)) => why,
                _ => format!(
                    "invalid size {}; use e.g. \"32KB\", \"10MB\"",
                    shown(instance)
                ),
            }
        }
        ValidationErrorKind::Format { format } => format!("is not a valid {format}"),
        ValidationErrorKind::Minimum { limit } => format!("must be at least {limit}"),
        ValidationErrorKind::Maximum { limit } => format!("must be at most {limit}"),
        ValidationErrorKind::ExclusiveMinimum { limit } => format!("must be more than {limit}"),
        ValidationErrorKind::ExclusiveMaximum { limit } => format!("must be less than {limit}"),
        ValidationErrorKind::Enum { options } => {
            let options: Vec<String> = options
                .as_array()
                .into_iter()
                .flatten()
                .map(shown)
                .collect();
            let mut message = format!("must be one of {}", options.join(", "));
            if let Some(text) = instance.as_str() {
                let words: Vec<String> = options
                    .iter()
                    .map(|o| o.trim_matches('"').to_owned())
                    .collect();
                if let Some(close) = closest(text, &words) {
                    message = format!("{message}; did you mean \"{close}\"?");
                }
            }
            format!("{} {message}", shown(instance))
        }
        ValidationErrorKind::AnyOf { .. } | ValidationErrorKind::OneOfNotValid { .. } => {
            let forms = schema_at(path)
                .and_then(|s| s.get("anyOf").or_else(|| s.get("oneOf")))
                .and_then(Value::as_array)
                .map(|variants| {
                    variants
                        .iter()
                        .map(|v| form_of(resolve(v)))
                        .collect::<Vec<_>>()
                        .join(" or ")
                })
                .unwrap_or_else(|| "another form".to_owned());
            format!("must be {forms}, not {}", what_is(instance))
        }
        ValidationErrorKind::MinItems { limit } => format!("must list at least {limit}"),
        ValidationErrorKind::MaxItems { limit } => format!("must list at most {limit}"),
        ValidationErrorKind::MinLength { limit } => {
            format!("must be at least {limit} characters long")
        }
        ValidationErrorKind::Pattern { .. } => {
            format!("{} is not in the expected form", shown(instance))
        }
        _ => format!("{} is not acceptable here", shown(instance)),
    }
}

fn one_type(json_type: &str) -> String {
    match json_type {
        "object" => "a table",
        "array" => "a list",
        "string" => "a string",
        "integer" => "a whole number",
        "number" => "a number",
        "boolean" => "true or false",
        other => other,
    }
    .to_owned()
}

/// A schema's form in a few words: "a string", "a list", "a table".
fn form_of(schema: &Value) -> String {
    match schema.get("type") {
        Some(Value::String(one)) => one_type(one),
        Some(Value::Array(many)) => many
            .iter()
            .filter_map(Value::as_str)
            .map(one_type)
            .collect::<Vec<_>>()
            .join(" or "),
        _ => "another form".to_owned(),
    }
}

/// The kind of a value, as TOML calls it.
fn what_is(value: &Value) -> String {
    match value {
        Value::Object(_) => "a table".into(),
        Value::Array(_) => "a list".into(),
        Value::String(text) => format!("the string {text:?}"),
        Value::Number(n) => format!("the number {n}"),
        Value::Bool(b) => format!("{b}"),
        Value::Null => "nothing".into(),
    }
}

fn shown(value: &Value) -> String {
    match value {
        Value::String(text) => format!("{text:?}"),
        other => other.to_string(),
    }
}

/// `unknown key "timout"; did you mean "timeout"?`, or the keys allowed when none is close.
fn unknown_key(key: &str, known: &[String]) -> String {
    match closest(key, known) {
        Some(close) => format!("unknown key \"{key}\"; did you mean \"{close}\"?"),
        None if known.is_empty() => format!("unknown key \"{key}\""),
        None if known.len() <= 12 => {
            format!("unknown key \"{key}\" (allowed here: {})", known.join(", "))
        }
        None => format!("unknown key \"{key}\""),
    }
}

/// The candidate `word` was most likely meant as, if one is close enough.
pub(super) fn closest<'c>(word: &str, candidates: &'c [String]) -> Option<&'c str> {
    candidates
        .iter()
        .map(|c| (strsim::damerau_levenshtein(word, c), c))
        .filter(|(distance, c)| {
            *distance <= (word.len().max(c.len()) / 3).max(1) && *distance < c.len()
        })
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, c)| c.as_str())
}

/// A `$ref` resolved within the configuration schema.
fn resolve(schema: &Value) -> &Value {
    let mut current = schema;
    for _ in 0..8 {
        let Some(reference) = current.get("$ref").and_then(Value::as_str) else {
            break;
        };
        let Some(found) = reference
            .strip_prefix('#')
            .and_then(|pointer| self::schema().pointer(pointer))
        else {
            break;
        };
        current = found;
    }
    current
}

/// The schema that describes the value at `path`.
fn schema_at(path: &[String]) -> Option<&'static Value> {
    let mut current = resolve(schema());
    for segment in path {
        let next = current
            .get("properties")
            .and_then(|p| p.get(segment.as_str()))
            .or_else(|| current.get("items"))
            .or_else(|| {
                current
                    .get("additionalProperties")
                    .filter(|a| a.is_object())
            })
            .or_else(|| {
                // A key of one of the variants (untagged enums).
                current
                    .get("anyOf")
                    .or_else(|| current.get("oneOf"))
                    .and_then(Value::as_array)?
                    .iter()
                    .map(resolve)
                    .find_map(|v| v.get("properties")?.get(segment.as_str()))
            })?;
        current = resolve(next);
    }
    Some(current)
}

/// The keys the table at `path` may have.
fn allowed_keys(path: &[String]) -> Vec<String> {
    let Some(schema) = schema_at(path) else {
        return vec![];
    };
    let mut keys: Vec<String> = schema
        .get("properties")
        .and_then(Value::as_object)
        .map(|p| p.keys().cloned().collect())
        .unwrap_or_default();
    for variant in schema
        .get("anyOf")
        .or_else(|| schema.get("oneOf"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(p) = resolve(variant)
            .get("properties")
            .and_then(Value::as_object)
        {
            keys.extend(p.keys().cloned());
        }
    }
    keys.sort();
    keys.dedup();
    keys
}

/// `document` without the values at `paths` (deepest and last first, so array indices of
/// the others stay right).
pub(super) fn without(mut document: Value, paths: &[Vec<String>]) -> Value {
    let mut paths: Vec<&Vec<String>> = paths.iter().collect();
    paths.sort_by(|a, b| b.cmp(a));
    for path in paths {
        remove_at(&mut document, path);
    }
    document
}

fn remove_at(value: &mut Value, path: &[String]) {
    match path {
        [] => {}
        [last] => match value {
            Value::Object(map) => {
                map.remove(last);
            }
            Value::Array(items) => {
                if let Some(index) = last.parse::<usize>().ok().filter(|i| *i < items.len()) {
                    items.remove(index);
                }
            }
            _ => {}
        },
        [first, rest @ ..] => {
            let child = match value {
                Value::Object(map) => map.get_mut(first),
                Value::Array(items) => first.parse::<usize>().ok().and_then(|i| items.get_mut(i)),
                _ => None,
            };
            if let Some(child) = child {
                remove_at(child, rest);
            }
        }
    }
}

/// Where each key of a TOML file is: key path (`routes[2].upstream`) to 1-based line.
pub(super) struct Lines {
    lines: HashMap<String, usize>,
    routes: HashMap<usize, String>,
}

impl Lines {
    pub(super) fn of(text: &str) -> Self {
        let mut lines = HashMap::new();
        let mut routes = HashMap::new();
        let (table, _errors) = toml::de::DeTable::parse_recoverable(text);
        let line_of = |offset: usize| text[..offset.min(text.len())].matches('\n').count() + 1;
        walk(table.get_ref(), &mut Vec::new(), &mut lines, &line_of);
        if let Some(toml::de::DeValue::Array(items)) =
            table.get_ref().get("routes").map(|v| v.get_ref())
        {
            for (index, item) in items.iter().enumerate() {
                if let toml::de::DeValue::Table(route) = item.get_ref()
                    && let Some(path) = route.get("path").and_then(|p| p.get_ref().as_str())
                {
                    routes.insert(index, path.to_owned());
                }
            }
        }
        Self { lines, routes }
    }

    /// The line of `key`, or of its nearest ancestor the file has.
    fn line(&self, key: &str) -> Option<usize> {
        let mut key = key;
        loop {
            if let Some(line) = self.lines.get(key) {
                return Some(*line);
            }
            let cut = key.rfind(['.', '['])?;
            key = &key[..cut];
        }
    }
}

fn walk(
    table: &toml::de::DeTable<'_>,
    path: &mut Vec<String>,
    lines: &mut HashMap<String, usize>,
    line_of: &dyn Fn(usize) -> usize,
) {
    for (key, value) in table {
        path.push(key.get_ref().to_string());
        lines
            .entry(super::load::key_path(path))
            .or_insert_with(|| line_of(key.span().start));
        walk_value(value, path, lines, line_of);
        path.pop();
    }
}

fn walk_value(
    value: &toml::Spanned<toml::de::DeValue<'_>>,
    path: &mut Vec<String>,
    lines: &mut HashMap<String, usize>,
    line_of: &dyn Fn(usize) -> usize,
) {
    match value.get_ref() {
        toml::de::DeValue::Table(inner) => walk(inner, path, lines, line_of),
        toml::de::DeValue::Array(items) => {
            for (index, item) in items.iter().enumerate() {
                path.push(index.to_string());
                lines
                    .entry(super::load::key_path(path))
                    .or_insert_with(|| line_of(item.span().start));
                walk_value(item, path, lines, line_of);
                path.pop();
            }
        }
        _ => {}
    }
}

/// Says where each problem is: the file and line of its key, or the environment variable
/// it came from, and the path of the route it concerns.
pub(super) fn locate(
    problems: &mut [ConfigProblem],
    file: Option<(&str, &str)>,
    from_environment: &dyn Fn(&str) -> Option<String>,
) {
    let lines = file.map(|(_, text)| Lines::of(text));
    for problem in problems {
        if let Some(index) = problem
            .key
            .strip_prefix("routes[")
            .and_then(|rest| rest.split(']').next())
            .and_then(|i| i.parse::<usize>().ok())
            && let Some(lines) = &lines
        {
            problem.route = lines.routes.get(&index).cloned();
        }
        if problem.location.is_some() {
            continue;
        }
        if let Some(variable) = from_environment(&problem.key) {
            problem.location = Some(Location::Environment(variable));
        } else if let (Some((name, _)), Some(lines)) = (file, &lines)
            && let Some(line) = lines.line(&problem.key)
        {
            problem.location = Some(Location::File {
                file: name.to_owned(),
                line,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn messages(document: Value) -> Vec<String> {
        structural(&document)
            .into_iter()
            .map(|s| format!("{}: {}", super::super::load::key_path(&s.path), s.message))
            .collect()
    }

    #[test]
    fn every_structural_problem_is_found_in_its_own_words() {
        let found = messages(json!({
            "server": { "timout": "5s", "body_limit": "ten MB", "workers": "two" },
            "srever": {},
            "routes": [{ "path": 5, "response": {} }, { "path": "/b", "upstream": "x", "auht": [] }],
            "rate_limit": { "store": "redsi" },
        }));
        let expect = [
            r#"server.timout: unknown key "timout"; did you mean "timeout"?"#,
            r#"srever: unknown key "srever"; did you mean "server"?"#,
            r#"routes[1].auht: unknown key "auht"; did you mean "auth"?"#,
            "server.workers: must be a whole number, not the string \"two\"",
            "routes[0].path: must be a string, not the number 5",
        ];
        for expected in expect {
            assert!(
                found.iter().any(|f| f == expected),
                "{expected}\nin {found:#?}"
            );
        }
        assert!(
            found
                .iter()
                .any(|f| f.starts_with("server.body_limit: invalid size")),
            "{found:#?}"
        );
        assert!(
            found
                .iter()
                .any(|f| f.contains("rate_limit.store") && f.contains("did you mean \"redis\"")),
            "{found:#?}"
        );
        assert!(
            found
                .iter()
                .all(|f| !f.contains("expected") && !f.contains("usize")),
            "no Rust wording: {found:#?}"
        );
    }

    #[test]
    fn values_at_fault_can_be_left_out() {
        let document = json!({ "server": { "timout": "5s", "timeout": "1s" }, "routes": [{ "path": "/a", "methods": ["GET", 5] }] });
        let mended = without(
            document,
            &[
                vec!["server".into(), "timout".into()],
                vec!["routes".into(), "0".into(), "methods".into(), "1".into()],
            ],
        );
        assert_eq!(
            mended,
            json!({ "server": { "timeout": "1s" }, "routes": [{ "path": "/a", "methods": ["GET"] }] })
        );
    }

    #[test]
    fn keys_are_found_on_their_lines() {
        let lines = Lines::of(
            "[server]\ntimeout = \"1s\"\n\n[[routes]]\npath = \"/a\"\n[[routes]]\npath = \"/b\"\nupstream = \"u\"\n",
        );
        assert_eq!(lines.line("server.timeout"), Some(2));
        assert_eq!(lines.line("routes[1].upstream"), Some(8));
        assert_eq!(
            lines.line("routes[1].methods"),
            Some(6),
            "the route's own line"
        );
        assert_eq!(lines.routes[&1], "/b");
    }
}
