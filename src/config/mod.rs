//! Typed configuration: the TOML contract of `proxyfn.toml`, how it is loaded (file, then
//! `PROXYFN_*` environment overrides) and how it is validated into a runtime [`Plan`].
//!
//! Every struct denies unknown fields: a typo such as `auht = [...]` must fail at start-up
//! instead of silently disabling a policy.

mod check;
pub mod json_schema;
mod load;
mod plan;
pub mod problems;
pub mod templates;
pub mod units;

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use load::{ConfigSource, load, load_with};
pub use plan::Plan;
pub use problems::{
    ConfigError, ConfigProblem, Location, Problems, Secrets, parse_header_name, parse_method,
};
pub use units::{ByteSize, HumanDuration};

/// The whole configuration file.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: crate::runtime::config::ServerConfig,
    pub cors: Option<crate::cors::config::CorsConfig>,
    pub upstreams: BTreeMap<String, crate::upstream::config::UpstreamConfig>,
    pub auth: crate::auth::config::AuthConfig,
    pub rate_limit: crate::ratelimit::config::RateLimitConfig,
    pub rate_limits: BTreeMap<String, crate::ratelimit::config::RateLimitPolicyConfig>,
    pub routes: Vec<crate::routes::config::RouteConfig>,
    pub log: crate::observability::config::LogConfig,
    pub metrics: crate::observability::config::MetricsConfig,
    pub docs: crate::docs::config::DocsConfig,
    pub endpoints: crate::routes::builtin::config::EndpointsConfig,
    pub compression: crate::compression::CompressionConfig,
    pub versioning: crate::routes::version::config::VersioningConfig,
    pub cache: crate::cache::config::CacheConfig,
    pub lambda: crate::runtime::config::LambdaConfig,
    pub aws: crate::aws::config::AwsConfig,
    /// The directory relative paths in the file (`request_schema`) start from: the config
    /// file's own, or the working directory.
    #[serde(skip)]
    pub base_dir: Option<std::path::PathBuf>,
}

impl Config {
    /// Parses a TOML document without environment overrides (tests, `include_str!`).
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        load::from_toml(text)
    }

    /// The configuration as TOML, every default written out (`proxyfn config`), with the
    /// passwords of Redis URLs masked. Secrets themselves are never in a configuration, only
    /// the names of the variables holding them (`secret_env`).
    pub fn to_masked_toml(&self) -> Result<String, String> {
        let mut shown = self.clone();
        let mask = |url: &mut Option<String>| {
            if let Some(text) = url
                && let Ok(mut parsed) = url::Url::parse(text)
                && parsed.password().is_some()
                && parsed.set_password(Some("***")).is_ok()
            {
                *text = parsed.to_string();
            }
        };
        mask(&mut shown.rate_limit.redis_url);
        mask(&mut shown.cache.redis_url);
        for keys in shown.auth.api_keys.values_mut() {
            mask(&mut keys.redis_url);
        }
        toml::to_string(&shown).map_err(|e| e.to_string())
    }
}

/// The problems validation finds in `toml`, as displayed: for the tests of every section.
#[cfg(test)]
pub(crate) fn problems_in(toml: &str) -> Vec<String> {
    let config = Config::from_toml(toml).expect("parses");
    match Plan::new(&config) {
        Ok(_) => vec![],
        Err(error) => error.problems.iter().map(ToString::to_string).collect(),
    }
}
