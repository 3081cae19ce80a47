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
}

impl Default for DocsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            title: "proxyfn".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: None,
        }
    }
}

#[derive(Clone, Debug)]
pub struct DocsSettings {
    pub enabled: bool,
    pub title: String,
    pub version: String,
    pub description: Option<String>,
}

/// `[docs]`, whose every value is valid.
pub fn settings(docs: &DocsConfig) -> DocsSettings {
    DocsSettings {
        enabled: docs.enabled,
        title: docs.title.clone(),
        version: docs.version.clone(),
        description: docs.description.clone(),
    }
}
