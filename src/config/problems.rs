//! The problems a configuration can have, shared by every section's validator: each with
//! the key path it concerns (`routes[2].upstream`), where it is (a file's line, an
//! environment variable) and, for a route, the route's path. Validation collects every
//! problem rather than stopping at the first; the parse helpers here word theirs the same way
//! in every section.

use http::{HeaderName, Method};

#[derive(Default)]
pub struct Problems {
    found: Vec<ConfigProblem>,
    /// What is fine for this validation but would not be for serving.
    notes: Vec<ConfigProblem>,
    secrets: Secrets,
}

/// Whether validation needs the secrets the configuration names (`secret_env`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Secrets {
    /// Serving: a missing secret is a problem.
    #[default]
    Required,
    /// Linting without production secrets (`proxyfn check --without-secrets`): a missing
    /// secret is a note, and a stand-in key takes its place.
    MayBeMissing,
}

impl Problems {
    pub fn new(secrets: Secrets) -> Self {
        Self {
            secrets,
            ..Self::default()
        }
    }

    pub fn add(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.found.push(ConfigProblem::new(key, message));
    }

    /// Something fine for this validation but not for serving.
    pub fn note(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.notes.push(ConfigProblem::new(key, message));
    }

    /// How many problems have been found: a validator compares the count before and after
    /// its own checks to know whether its section is sound.
    pub fn count(&self) -> usize {
        self.found.len()
    }

    pub fn is_empty(&self) -> bool {
        self.found.is_empty()
    }

    pub fn secrets(&self) -> Secrets {
        self.secrets
    }

    pub fn found(&self) -> &[ConfigProblem] {
        &self.found
    }

    /// The notes, taken out (a valid plan keeps them).
    pub fn take_notes(&mut self) -> Vec<ConfigProblem> {
        std::mem::take(&mut self.notes)
    }

    pub fn into_error(self) -> ConfigError {
        ConfigError {
            problems: self.found,
            notes: self.notes,
        }
    }
}

/// An HTTP method, in any case (`get` is `GET`).
pub fn parse_method(key: &str, text: &str, problems: &mut Problems) -> Option<Method> {
    Method::from_bytes(text.to_ascii_uppercase().as_bytes())
        .map_err(|_| problems.add(key, format!("not an HTTP method: {text:?}")))
        .ok()
}

/// A header field name (RFC 9110 §5.1).
pub fn parse_header_name(key: &str, text: &str, problems: &mut Problems) -> Option<HeaderName> {
    HeaderName::try_from(text)
        .map_err(|_| problems.add(key, format!("invalid header name {text:?}")))
        .ok()
}

/// Every problem found in a configuration, each with the key path it concerns.
#[derive(Debug, Default, thiserror::Error)]
#[error("invalid configuration:\n{}", self.problems.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
pub struct ConfigError {
    pub problems: Vec<ConfigProblem>,
    /// What validation noted without refusing (secrets missing while linting).
    pub notes: Vec<ConfigProblem>,
}

/// One problem: where (`routes[2].upstream`) and what.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ConfigProblem {
    pub key: String,
    pub message: String,
    /// Where the key is: a file's line, or an environment variable (filled in when the
    /// problems are reported, see [`ConfigError::locate`]).
    pub location: Option<Location>,
    /// For a problem of `routes[N]`, that route's `path`.
    pub route: Option<String>,
}

/// Where a configuration value came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    File { file: String, line: usize },
    Environment(String),
}

impl ConfigProblem {
    /// The problem for `proxyfn check --format json`.
    pub fn to_json(&self) -> serde_json::Value {
        let mut json = serde_json::json!({ "key": self.key, "message": self.message });
        if let Some(route) = &self.route {
            json["route"] = route.as_str().into();
        }
        match &self.location {
            Some(Location::File { file, line }) => {
                json["file"] = file.as_str().into();
                json["line"] = (*line).into();
            }
            Some(Location::Environment(variable)) => json["variable"] = variable.as_str().into(),
            None => {}
        }
        json
    }

    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            message: message.into(),
            ..Self::default()
        }
    }

    /// The key path with the route's path after its index: `routes[2] (/users/{id}).upstream`.
    pub fn display_key(&self) -> String {
        match (&self.route, self.key.find(']')) {
            (Some(route), Some(end)) if self.key.starts_with("routes[") => {
                format!("{} ({route}){}", &self.key[..=end], &self.key[end + 1..])
            }
            _ => self.key.clone(),
        }
    }
}

impl std::fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(Location::File { file, line }) = &self.location {
            write!(f, "{file}:{line}: ")?;
        }
        if self.key.is_empty() {
            f.write_str(&self.message)?;
        } else {
            write!(f, "{}: {}", self.display_key(), self.message)?;
        }
        if let Some(Location::Environment(variable)) = &self.location {
            write!(f, " (from {variable})")?;
        }
        Ok(())
    }
}

impl ConfigError {
    pub fn single(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            problems: vec![ConfigProblem::new(key, message)],
            notes: Vec::new(),
        }
    }
}
