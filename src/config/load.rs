//! Where configuration comes from: `--config`, else `PROXYFN_CONFIG`, else `./proxyfn.toml`,
//! else the built-in default (built-in endpoints only). `PROXYFN_<SECTION>__<KEY>` environment
//! variables override file values, and `PORT` overrides the listen port (containers).

use std::path::{Path, PathBuf};

use figment::{
    Figment, Metadata, Profile, Provider,
    providers::Env,
    value::{Dict, Map},
};

use super::{Config, ConfigError, ConfigProblem, Location, Plan, Secrets, check};

/// Which file (if any) the configuration was read from, for start-up logs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigSource {
    File(PathBuf),
    BuiltInDefault,
}

impl ConfigSource {
    /// The file, when there is one.
    pub fn path(&self) -> Option<&Path> {
        match self {
            ConfigSource::File(path) => Some(path),
            ConfigSource::BuiltInDefault => None,
        }
    }
}

impl std::fmt::Display for ConfigSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConfigSource::File(path) => write!(f, "{}", path.display()),
            ConfigSource::BuiltInDefault => f.write_str("built-in default (no config file)"),
        }
    }
}

const DEFAULT_PATH: &str = "proxyfn.toml";
const ENV_PREFIX: &str = "PROXYFN_";

/// Loads the configuration from the process environment.
///
/// `explicit` is the `--config` argument. A path given explicitly (flag or `PROXYFN_CONFIG`)
/// must exist; only the implicit `./proxyfn.toml` may be absent.
pub fn load(explicit: Option<&Path>) -> Result<(Config, ConfigSource), ConfigError> {
    load_with(explicit, Secrets::Required)
}

/// [`load`], validating what a file that does not load would need, with `secrets`.
pub fn load_with(
    explicit: Option<&Path>,
    secrets: Secrets,
) -> Result<(Config, ConfigSource), ConfigError> {
    let from_env = std::env::var_os("PROXYFN_CONFIG").map(PathBuf::from);
    let source = match explicit.map(Path::to_path_buf).or(from_env) {
        Some(path) if path.is_file() => ConfigSource::File(path),
        Some(path) => {
            return Err(ConfigError::single(
                "",
                format!("config file {} does not exist", path.display()),
            ));
        }
        None if Path::new(DEFAULT_PATH).is_file() => ConfigSource::File(DEFAULT_PATH.into()),
        None => ConfigSource::BuiltInDefault,
    };

    let direct = match &source {
        ConfigSource::File(path) if !overridden_by_environment() => std::fs::read_to_string(path)
            .ok()
            .and_then(|text| toml::from_str::<Config>(&text).ok()),
        _ => None,
    };
    let mut config: Config = match direct {
        Some(config) => config,
        None => {
            let figment = figment_for(&source);
            match figment.extract() {
                Ok(config) => config,
                Err(error) => return Err(every_problem(&figment, &source, error, secrets)),
            }
        }
    };
    if let ConfigSource::File(path) = &source {
        config.base_dir = path.parent().map(Path::to_path_buf);
    }
    apply_port_override(&mut config, std::env::var("PORT").ok().as_deref())?;
    Ok((config, source))
}

/// Whether some `PROXYFN_*` variable (but `PROXYFN_CONFIG`) overrides the file. When none
/// does, a file is deserialized straight into [`Config`] in one pass, instead of through
/// figment (TOML into its value tree, merged, then extracted), which was most of the time
/// spent loading at a Lambda cold start (BENCHMARKS.md). A file that does not deserialize
/// takes figment's way too, which reports every problem with its key path.
fn overridden_by_environment() -> bool {
    std::env::vars_os().any(|(name, _)| {
        name.to_str().is_some_and(|name| {
            name.len() > ENV_PREFIX.len()
                && name.is_char_boundary(ENV_PREFIX.len())
                && name[..ENV_PREFIX.len()].eq_ignore_ascii_case(ENV_PREFIX)
                && !name[ENV_PREFIX.len()..].eq_ignore_ascii_case("config")
        })
    })
}

/// The file (if any), then the `PROXYFN_*` environment.
fn figment_for(source: &ConfigSource) -> Figment {
    let mut figment = Figment::new();
    if let ConfigSource::File(path) = source {
        figment = figment.merge(TomlSource::File(path.clone()));
    }
    figment.merge(
        Env::prefixed(ENV_PREFIX)
            .filter(|key| key != "config")
            .split("__"),
    )
}

pub(super) fn from_toml(text: &str) -> Result<Config, ConfigError> {
    if let Ok(config) = toml::from_str::<Config>(text) {
        return Ok(config);
    }
    let figment = Figment::from(TomlSource::Text(text.to_owned()));
    figment.extract().map_err(|error| {
        let mut problems = structural_and_semantic(&figment, error, None, Secrets::Required);
        check::locate(&mut problems, Some(("config", text)), &|_| None);
        ConfigError {
            problems,
            notes: Vec::new(),
        }
    })
}

/// Every problem of a configuration that does not deserialize: all structural ones at once
/// (see [`check`]), and the semantic ones of what is left, each located.
fn every_problem(
    figment: &Figment,
    source: &ConfigSource,
    error: figment::Error,
    secrets: Secrets,
) -> ConfigError {
    let file = match source {
        ConfigSource::File(path) => std::fs::read_to_string(path)
            .ok()
            .map(|text| (path.display().to_string(), text)),
        ConfigSource::BuiltInDefault => None,
    };
    if let Some((name, text)) = &file {
        let syntax = syntax_problems(name, text);
        if !syntax.is_empty() {
            return ConfigError {
                problems: syntax,
                notes: Vec::new(),
            };
        }
    }
    let base_dir = match source {
        ConfigSource::File(path) => path.parent().map(Path::to_path_buf),
        ConfigSource::BuiltInDefault => None,
    };
    let mut problems = structural_and_semantic(figment, error, base_dir, secrets);
    let file = file
        .as_ref()
        .map(|(name, text)| (name.as_str(), text.as_str()));
    check::locate(&mut problems, file, &from_environment);
    ConfigError {
        problems,
        notes: Vec::new(),
    }
}

/// TOML syntax errors, each with its line; all of them, not only the first.
fn syntax_problems(name: &str, text: &str) -> Vec<ConfigProblem> {
    let (_, errors) = toml::de::DeTable::parse_recoverable(text);
    errors
        .into_iter()
        .map(|error| {
            let line = error.span().map_or(1, |span| {
                text[..span.start.min(text.len())].matches('\n').count() + 1
            });
            let mut problem =
                ConfigProblem::new("", format!("TOML syntax: {}", error.message().trim_end()));
            problem.location = Some(Location::File {
                file: name.to_owned(),
                line,
            });
            problem
        })
        .collect()
}

fn structural_and_semantic(
    figment: &Figment,
    error: figment::Error,
    base_dir: Option<PathBuf>,
    secrets: Secrets,
) -> Vec<ConfigProblem> {
    let Ok(document) = figment.extract::<serde_json::Value>() else {
        return from_figment(error).problems;
    };
    let structural = check::structural(&document);
    if structural.is_empty() {
        // The schema found nothing serde did: serde's words are all there is.
        return from_figment(error).problems;
    }
    let mut problems: Vec<ConfigProblem> = structural
        .iter()
        .map(|s| ConfigProblem::new(key_path(&s.path), s.message.clone()))
        .collect();
    if structural.iter().all(|s| s.removable) {
        let removed: Vec<Vec<String>> = structural.iter().map(|s| s.path.clone()).collect();
        let mended = check::without(document, &removed);
        if let Ok(mut config) = serde_json::from_value::<Config>(mended) {
            config.base_dir = base_dir;
            if let Err(semantic) = Plan::validate(&config, secrets) {
                let removed: Vec<String> = removed.iter().map(|p| key_path(p)).collect();
                problems.extend(semantic.problems.into_iter().filter(|p| {
                    !removed.iter().any(|r| {
                        p.key == *r
                            || p.key.starts_with(&format!("{r}."))
                            || p.key.starts_with(&format!("{r}["))
                    })
                }));
            }
        }
    }
    problems
}

/// The environment variable a key's value came from, if it came from one: the key's own
/// (`PROXYFN_SERVER__TIMEOUT`) or an ancestor's, or `PORT` for the listen address.
fn from_environment(key: &str) -> Option<String> {
    if key == "server.listen" && std::env::var_os("PORT").is_some() {
        return Some("PORT".to_owned());
    }
    std::env::vars_os().find_map(|(name, _)| {
        let name = name.into_string().ok()?;
        let rest = name.strip_prefix(ENV_PREFIX)?;
        if rest.eq_ignore_ascii_case("config") {
            return None;
        }
        let dotted = rest.to_ascii_lowercase().replace("__", ".");
        (key == dotted
            || key.starts_with(&format!("{dotted}."))
            || key.starts_with(&format!("{dotted}[")))
        .then_some(name)
    })
}

impl ConfigError {
    /// Says where each problem is (the file's line, or the environment variable) and which
    /// route it concerns. Problems found while loading already are; this is for the ones
    /// validation finds later.
    pub fn locate(mut self, source: &ConfigSource) -> Self {
        let file = match source {
            ConfigSource::File(path) => std::fs::read_to_string(path)
                .ok()
                .map(|text| (path.display().to_string(), text)),
            ConfigSource::BuiltInDefault => None,
        };
        let file = file
            .as_ref()
            .map(|(name, text)| (name.as_str(), text.as_str()));
        check::locate(&mut self.problems, file, &from_environment);
        self
    }
}

/// TOML for figment, read with the `toml` crate's own parser instead of figment's `Toml`
/// provider, which goes through the format-preserving `toml_edit`: on a Lambda cold start
/// that parse of proxyfn.toml was about a tenth of the time before the first poll (perf).
/// Errors name the file, as figment's provider does.
enum TomlSource {
    File(PathBuf),
    Text(String),
}

impl Provider for TomlSource {
    fn metadata(&self) -> Metadata {
        match self {
            TomlSource::File(path) => Metadata::from("TOML file", path.as_path()),
            TomlSource::Text(_) => Metadata::named("TOML source string"),
        }
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        let read;
        let text = match self {
            TomlSource::File(path) => {
                read = std::fs::read_to_string(path)
                    .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
                &read
            }
            TomlSource::Text(text) => text,
        };
        let dict: Dict = toml::from_str(text).map_err(|e| e.to_string())?;
        Ok(Profile::Default.collect(dict))
    }
}

/// `PORT=9000` replaces the port of `server.listen`, as container platforms expect.
fn apply_port_override(config: &mut Config, port: Option<&str>) -> Result<(), ConfigError> {
    let Some(port) = port.filter(|p| !p.is_empty()) else {
        return Ok(());
    };
    let port: u16 = port
        .parse()
        .map_err(|_| ConfigError::single("PORT", format!("not a port number: {port:?}")))?;
    let host = match config.server.listen.rsplit_once(':') {
        Some((host, _)) => host.to_owned(),
        None => config.server.listen.clone(),
    };
    config.server.listen = format!("{host}:{port}");
    Ok(())
}

/// Turns figment's error chain into key-path problems: `routes[2].upstream: ...`.
fn from_figment(error: figment::Error) -> ConfigError {
    let problems = error
        .into_iter()
        .map(|e| {
            // A file names itself; otherwise the value came from an environment variable.
            let origin = match e.metadata.as_ref().map(|m| &m.source) {
                Some(Some(source)) => format!(" (in {source})"),
                Some(None) => format!(" (from {})", env_var_name(&e.path)),
                None => String::new(),
            };
            ConfigProblem::new(key_path(&e.path), format!("{}{origin}", e.kind))
        })
        .collect();
    ConfigError {
        problems,
        notes: Vec::new(),
    }
}

/// `["server", "timeout"]` -> `PROXYFN_SERVER__TIMEOUT`.
fn env_var_name(path: &[String]) -> String {
    format!("{ENV_PREFIX}{}", path.join("__").to_ascii_uppercase())
}

/// `["routes", "2", "upstream"]` -> `routes[2].upstream`.
pub(crate) fn key_path(parts: &[String]) -> String {
    let mut out = String::new();
    for part in parts {
        if part.chars().all(|c| c.is_ascii_digit()) && !part.is_empty() {
            out.push_str(&format!("[{part}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(part);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_syntax_errors_say_where() {
        let err = from_toml("[server]\nlisten = \n").unwrap_err();
        let message = err.problems[0].to_string();
        assert!(message.contains("line 2"), "{message}");
    }

    #[test]
    fn key_paths_use_index_brackets() {
        let parts = ["routes", "2", "upstream"].map(String::from);
        assert_eq!(key_path(&parts), "routes[2].upstream");
    }

    #[test]
    fn unknown_keys_are_errors_with_their_path() {
        let err =
            from_toml("[server]\nlisten = \"127.0.0.1:1\"\nbody_limt = \"1MB\"\n").unwrap_err();
        let problem = &err.problems[0];
        assert_eq!(problem.key, "server.body_limt");
        assert_eq!(
            problem.message,
            r#"unknown key "body_limt"; did you mean "body_limit"?"#
        );
        assert_eq!(
            problem.location,
            Some(Location::File {
                file: "config".into(),
                line: 3
            })
        );
    }

    #[test]
    fn wrong_types_name_the_key() {
        let err = from_toml("[[routes]]\npath = \"/a\"\n[[routes]]\npath = 5\n").unwrap_err();
        assert_eq!(err.problems[0].key, "routes[1].path");
    }

    #[test]
    fn a_file_deserialized_directly_equals_what_figment_extracts() {
        let example = include_str!("../../proxyfn.toml");
        let texts = super::super::templates::TEMPLATES.iter().map(|t| t.text);
        for text in texts.chain([example]) {
            let direct: Config = toml::from_str(text).expect("deserializes directly");
            let figment: Config = Figment::from(TomlSource::Text(text.to_owned()))
                .extract()
                .expect("figment extracts");
            assert_eq!(format!("{direct:?}"), format!("{figment:?}"), "{text}");
        }
    }

    #[test]
    fn port_overrides_only_the_port() {
        let mut config = Config::default();
        config.server.listen = "0.0.0.0:8080".into();
        apply_port_override(&mut config, Some("9000")).unwrap();
        assert_eq!(config.server.listen, "0.0.0.0:9000");
        assert_eq!(
            apply_port_override(&mut config, Some("http"))
                .unwrap_err()
                .problems[0]
                .key,
            "PORT"
        );
    }
}
