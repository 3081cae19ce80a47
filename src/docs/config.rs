//! `[docs]`: the OpenAPI document and Swagger UI, as the file spells them.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// `[docs]`
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct DocsConfig {
    /// Serve `GET /openapi.json` and Swagger UI at `GET /docs`.
    pub enabled: bool,
    /// `info.title` of the OpenAPI document.
    pub title: String,
    /// `info.version` of the OpenAPI document (the API's version, not the gateway's).
    pub version: String,
    /// `info.description`.
    pub description: Option<String>,
    /// Name each proxied route's upstream in its description. Off by default: upstream names
    /// describe the inside of the system, which API consumers need not know.
    pub show_upstreams: bool,
}

impl Default for DocsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            title: "proxyfn".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: None,
            show_upstreams: false,
        }
    }
}

#[derive(Clone, Debug)]
pub struct DocsSettings {
    pub enabled: bool,
    pub title: String,
    pub version: String,
    pub description: Option<String>,
    pub show_upstreams: bool,
}

/// `[docs]`, whose every value is valid.
pub fn settings(docs: &DocsConfig) -> DocsSettings {
    DocsSettings {
        enabled: docs.enabled,
        title: docs.title.clone(),
        version: docs.version.clone(),
        description: docs.description.clone(),
        show_upstreams: docs.show_upstreams,
    }
}

/// A route's own words in the OpenAPI document: the route keys `name`, `summary`,
/// `description` and `tags`, validated.
#[derive(Clone, Debug, Default)]
pub struct RouteDocs {
    /// The stem of the route's operationIds, stable when routes are reordered.
    pub name: Option<String>,
    pub summary: Option<String>,
    pub description: Option<String>,
    pub tags: Vec<String>,
}

/// Validates a route's documentation keys (`key` is `routes[N]`). A name is what
/// operationIds and generated client methods are made of: letters, digits, `_`, `.`, `-`.
pub fn route_docs(
    key: &str,
    name: Option<&str>,
    summary: Option<&str>,
    description: Option<&str>,
    tags: &[String],
    problems: &mut crate::config::Problems,
) -> RouteDocs {
    if let Some(name) = name
        && (name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-')))
    {
        problems.add(
            format!("{key}.name"),
            "use letters, digits, `_`, `.` and `-` only (it becomes the operationId)",
        );
    }
    for (i, tag) in tags.iter().enumerate() {
        if tag.trim().is_empty() {
            problems.add(format!("{key}.tags[{i}]"), "must not be empty");
        }
    }
    RouteDocs {
        name: name.map(str::to_owned),
        summary: summary.map(str::to_owned),
        description: description.map(str::to_owned),
        tags: tags.to_vec(),
    }
}

/// Names used by more than one route, as problems on the later ones.
pub fn unique_names<'a>(
    names: impl Iterator<Item = (usize, Option<&'a str>)>,
    problems: &mut crate::config::Problems,
) {
    let mut seen: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for (index, name) in names {
        let Some(name) = name else { continue };
        if let Some(first) = seen.get(name) {
            problems.add(
                format!("routes[{index}].name"),
                format!(
                    "routes[{first}] already has the name {name:?}: operationIds must be unique"
                ),
            );
        } else {
            seen.insert(name, index);
        }
    }
}
