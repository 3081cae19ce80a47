//! `request_schema`: a route's JSON Schema, read and compiled once at start-up.

use std::{path::Path, sync::Arc};

use serde_json::Value;

use crate::config::Problems;

/// A compiled request-body schema and the document it came from (for the OpenAPI document).
pub struct RequestSchema {
    /// The path as configured.
    pub file: String,
    /// Its name among the OpenAPI document's schemas: the file stem.
    pub name: String,
    pub document: Value,
    pub validator: jsonschema::Validator,
}

impl std::fmt::Debug for RequestSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestSchema")
            .field("file", &self.file)
            .finish_non_exhaustive()
    }
}

/// Reads `file` (relative to `base_dir`) and compiles it, reporting what is wrong under `key`.
/// The schema must be self-contained: `$ref`s to other files or URLs are not fetched.
pub fn load_request_schema(
    key: &str,
    file: &str,
    base_dir: Option<&Path>,
    problems: &mut Problems,
) -> Option<Arc<RequestSchema>> {
    let path = match base_dir {
        Some(dir) => dir.join(file),
        None => Path::new(file).to_path_buf(),
    };
    let text = std::fs::read_to_string(&path)
        .map_err(|e| problems.add(key, format!("cannot read {}: {e}", path.display())))
        .ok()?;
    let document: Value = serde_json::from_str(&text)
        .map_err(|e| problems.add(key, format!("{} is not JSON: {e}", path.display())))
        .ok()?;
    let validator = jsonschema::validator_for(&document)
        .map_err(|e| {
            problems.add(
                key,
                format!("{} is not a usable JSON Schema: {e}", path.display()),
            )
        })
        .ok()?;
    let stem = Path::new(file)
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("request");
    // OpenAPI component names: ^[a-zA-Z0-9.\-_]+$
    let name: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || ".-_".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    Some(Arc::new(RequestSchema {
        file: file.to_owned(),
        name,
        document,
        validator,
    }))
}
