//! Where configuration comes from: `--config`, else `PROXYFN_CONFIG`, else `./proxyfn.toml`,
//! else the built-in default (built-in endpoints only). `PROXYFN_<SECTION>__<KEY>` environment
//! variables override file values, and `PORT` overrides the listen port (containers).

use std::path::{Path, PathBuf};

use figment::{
    Figment, Metadata, Profile, Provider,
    providers::Env,
    value::{Dict, Map},
};

use super::{Config, ConfigError, ConfigProblem};

/// Which file (if any) the configuration was read from, for start-up logs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigSource {
    File(PathBuf),
    BuiltInDefault,
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

    let mut figment = Figment::new();
    if let ConfigSource::File(path) = &source {
        figment = figment.merge(TomlSource::File(path.clone()));
    }
    figment = figment.merge(
        Env::prefixed(ENV_PREFIX)
            .filter(|key| key != "config")
            .split("__"),
    );
    let mut config: Config = figment.extract().map_err(from_figment)?;
    if let ConfigSource::File(path) = &source {
        config.base_dir = path.parent().map(Path::to_path_buf);
    }
    apply_port_override(&mut config, std::env::var("PORT").ok().as_deref())?;
    Ok((config, source))
}

pub(super) fn from_toml(text: &str) -> Result<Config, ConfigError> {
    Figment::from(TomlSource::Text(text.to_owned()))
        .extract()
        .map_err(from_figment)
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
            ConfigProblem {
                key: key_path(&e.path),
                message: format!("{}{origin}", e.kind),
            }
        })
        .collect();
    ConfigError { problems }
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
        assert!(problem.message.contains("unknown field"), "{problem}");
    }

    #[test]
    fn wrong_types_name_the_key() {
        let err = from_toml("[[routes]]\npath = \"/a\"\n[[routes]]\npath = 5\n").unwrap_err();
        assert_eq!(err.problems[0].key, "routes[1].path");
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
