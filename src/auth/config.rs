//! `[auth.jwt.NAME]` and `[auth.api_keys.NAME]`: the identity providers routes name in
//! `auth`, their configuration as the file spells it, its validation, and the settings the
//! providers are built from (decoding keys, digests, identity headers).

use std::{collections::BTreeMap, time::Duration};

use http::HeaderName;
use jsonwebtoken::{Algorithm, DecodingKey};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::config::{HumanDuration, Problems, Secrets, parse_header_name, units::secs};

/// `[auth]`: identity providers that routes name in `auth = ["jwt:NAME", "api_key:NAME"]`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    pub jwt: BTreeMap<String, JwtConfig>,
    pub api_keys: BTreeMap<String, ApiKeysConfig>,
}

/// `[auth.jwt.NAME]`: bearer tokens verified against one key source.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JwtConfig {
    /// Keys from a JSON Web Key Set endpoint.
    pub jwks_url: Option<String>,
    /// One public key (RSA, EC or Ed25519) in PEM.
    pub public_key_pem: Option<String>,
    /// The environment variable holding an HMAC secret.
    pub secret_env: Option<String>,
    pub issuer: Option<String>,
    #[serde(default)]
    pub audience: Vec<String>,
    /// Accepted `alg` values; the token's header never chooses outside this list.
    pub algorithms: Vec<String>,
    #[serde(default = "default_leeway")]
    pub leeway: HumanDuration,
    /// Claims copied into request headers for the upstream, e.g. `{ sub = "x-user-id" }`.
    #[serde(default)]
    pub forward_claims: BTreeMap<String, String>,
    /// Whether the upstream receives the token itself.
    #[serde(default = "default_true")]
    pub forward_token: bool,
    /// Header carrying the token; `authorization` means the `Bearer` scheme.
    #[serde(default = "default_token_header")]
    pub header: String,
    /// Read the token from this cookie instead of a header.
    pub cookie: Option<String>,
    /// How long JWKS keys are kept when the endpoint sends no `Cache-Control: max-age`.
    #[serde(default = "default_jwks_cache")]
    pub jwks_cache: HumanDuration,
    /// The shortest time between two JWKS fetches (unknown `kid` refetches included).
    #[serde(default = "default_jwks_min_refresh")]
    pub jwks_min_refresh: HumanDuration,
}

/// `[auth.api_keys.NAME]`: static keys, stored as SHA-256 digests.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApiKeysConfig {
    /// Header carrying the key (default `x-api-key`).
    pub header: Option<String>,
    /// Query parameter carrying the key, instead of a header.
    pub query: Option<String>,
    #[serde(default)]
    pub keys: Vec<ApiKeyConfig>,
    /// `memory` (only `keys`) or `redis` (`keys` plus keys managed at runtime).
    #[serde(default)]
    pub store: KeyStoreKind,
    pub redis_url: Option<String>,
    /// Headers naming the matched key's `id` and `scopes` for the upstream.
    #[serde(default)]
    pub forward_identity: ForwardIdentityConfig,
}

/// `forward_identity = { id = "x-api-key-id", scopes = "x-api-key-scopes" }`; `""` turns
/// one off.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ForwardIdentityConfig {
    pub id: String,
    pub scopes: String,
}

impl Default for ForwardIdentityConfig {
    fn default() -> Self {
        Self {
            id: "x-api-key-id".into(),
            scopes: "x-api-key-scopes".into(),
        }
    }
}

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum KeyStoreKind {
    #[default]
    Memory,
    Redis,
}

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyConfig {
    /// The principal this key identifies.
    pub id: String,
    /// Lower-case hex SHA-256 of the key.
    pub sha256: String,
    #[serde(default)]
    pub scopes: Vec<String>,
}

fn default_true() -> bool {
    true
}

fn default_leeway() -> HumanDuration {
    secs(30)
}

fn default_token_header() -> String {
    "authorization".into()
}

fn default_jwks_cache() -> HumanDuration {
    secs(300)
}

fn default_jwks_min_refresh() -> HumanDuration {
    secs(30)
}

#[derive(Clone, Debug, Default)]
pub struct AuthSettings {
    pub jwt: BTreeMap<String, JwtSettings>,
    pub api_keys: BTreeMap<String, ApiKeySettings>,
}

#[derive(Clone)]
pub struct JwtSettings {
    pub name: String,
    pub keys: JwtKeySource,
    pub issuer: Option<String>,
    pub audience: Vec<String>,
    pub algorithms: Vec<Algorithm>,
    pub leeway: Duration,
    /// (claim, header) pairs.
    pub forward_claims: Vec<(String, HeaderName)>,
    pub forward_token: bool,
    pub location: KeyLocation,
    pub jwks_cache: Duration,
    pub jwks_min_refresh: Duration,
}

impl std::fmt::Debug for JwtSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtSettings")
            .field("name", &self.name)
            .field("issuer", &self.issuer)
            .field("algorithms", &self.algorithms)
            .finish_non_exhaustive()
    }
}

/// Where a provider's verification keys come from.
#[derive(Clone)]
pub enum JwtKeySource {
    Jwks(String),
    /// One key (PEM public key, or an HMAC secret from the environment).
    Static(DecodingKey),
}

/// Where a credential is read from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyLocation {
    /// `Authorization: Bearer <token>`.
    Bearer,
    Header(HeaderName),
    Cookie(String),
    Query(String),
}

#[derive(Clone, Debug)]
pub struct ApiKeySettings {
    pub name: String,
    pub location: KeyLocation,
    pub keys: Vec<ApiKeyEntry>,
    /// `Some(url)` when keys are also looked up in Redis.
    pub redis_url: Option<String>,
    /// The header carrying the matched key's `id` to the upstream, unless turned off.
    pub forward_id: Option<HeaderName>,
    /// The header carrying its `scopes`, space-separated.
    pub forward_scopes: Option<HeaderName>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiKeyEntry {
    pub id: String,
    pub digest: [u8; 32],
    pub scopes: Vec<String>,
}

/// A provider named by a route's `auth` list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProviderRef {
    Jwt(String),
    ApiKey(String),
}

fn jwt_settings(name: &str, jwt: &JwtConfig, problems: &mut Problems) -> Option<JwtSettings> {
    let key = format!("auth.jwt.{name}");
    let before = problems.count();
    let algorithms: Vec<Algorithm> = jwt
        .algorithms
        .iter()
        .enumerate()
        .filter_map(|(i, alg)| {
            alg.parse::<Algorithm>()
                .map_err(|_| {
                    problems.add(
                        format!("{key}.algorithms[{i}]"),
                        format!("unknown algorithm {alg:?}"),
                    )
                })
                .ok()
        })
        .collect();
    if jwt.algorithms.is_empty() {
        problems.add(
            format!("{key}.algorithms"),
            "list the accepted algorithms, e.g. [\"RS256\"]",
        );
    }
    let keys = match (&jwt.jwks_url, &jwt.public_key_pem, &jwt.secret_env) {
        (Some(url), None, None) => match reqwest::Url::parse(url) {
            Ok(parsed) if matches!(parsed.scheme(), "http" | "https") => {
                Some(JwtKeySource::Jwks(url.clone()))
            }
            _ => {
                problems.add(
                    format!("{key}.jwks_url"),
                    format!("not an http(s) URL: {url:?}"),
                );
                None
            }
        },
        (None, Some(pem), None) => match pem_key(pem.as_bytes()) {
            Some(key) => Some(JwtKeySource::Static(key)),
            None => {
                problems.add(
                    format!("{key}.public_key_pem"),
                    "not an RSA, EC or Ed25519 public key in PEM",
                );
                None
            }
        },
        (None, None, Some(var)) => match std::env::var(var) {
            Ok(secret) if secret.len() >= 32 => Some(JwtKeySource::Static(
                DecodingKey::from_secret(secret.as_bytes()),
            )),
            Ok(_) => {
                problems.add(
                    format!("{key}.secret_env"),
                    format!("the secret in ${var} is shorter than 32 bytes"),
                );
                None
            }
            Err(_) if problems.secrets() == Secrets::MayBeMissing => {
                problems.note(
                    format!("{key}.secret_env"),
                    format!("${var} is not set: fine for this check, required to serve"),
                );
                Some(JwtKeySource::Static(DecodingKey::from_secret(&[0; 32])))
            }
            Err(_) => {
                problems.add(
                    format!("{key}.secret_env"),
                    format!("environment variable ${var} is not set"),
                );
                None
            }
        },
        _ => {
            problems.add(
                &key,
                "set exactly one of `jwks_url`, `public_key_pem` and `secret_env`",
            );
            None
        }
    };
    // The key decides the algorithm family, never the token: an RSA public key must not be
    // usable as an HMAC secret (key confusion), and JWKS keys are public keys only.
    if let Some(keys) = &keys {
        for alg in &algorithms {
            let allowed = match keys {
                JwtKeySource::Jwks(_) => alg.family() != jsonwebtoken::AlgorithmFamily::Hmac,
                JwtKeySource::Static(key) => key.family() == alg.family(),
            };
            if !allowed {
                problems.add(
                    format!("{key}.algorithms"),
                    format!("{alg:?} does not fit the configured key"),
                );
            }
        }
    }
    // Zero would let every unknown `kid` refetch the key set: the flood protection, off.
    if jwt.jwks_min_refresh.0.is_zero() {
        problems.add(
            format!("{key}.jwks_min_refresh"),
            "must be greater than zero",
        );
    }
    let forward_claims = jwt
        .forward_claims
        .iter()
        .filter_map(|(claim, header)| {
            identity_header(&format!("{key}.forward_claims.{claim}"), header, problems)
                .map(|name| (claim.clone(), name))
        })
        .collect();
    let location = match (&jwt.cookie, jwt.header.to_ascii_lowercase().as_str()) {
        (Some(cookie), _) => KeyLocation::Cookie(cookie.clone()),
        (None, "authorization") => KeyLocation::Bearer,
        (None, header) => match HeaderName::try_from(header) {
            Ok(name) => KeyLocation::Header(name),
            Err(_) => {
                problems.add(
                    format!("{key}.header"),
                    format!("invalid header name {header:?}"),
                );
                KeyLocation::Bearer
            }
        },
    };
    (problems.count() == before).then(|| JwtSettings {
        name: name.to_owned(),
        keys: keys.expect("checked above"),
        issuer: jwt.issuer.clone(),
        audience: jwt.audience.clone(),
        algorithms,
        leeway: jwt.leeway.0,
        forward_claims,
        forward_token: jwt.forward_token,
        location,
        jwks_cache: jwt.jwks_cache.0,
        jwks_min_refresh: jwt.jwks_min_refresh.0,
    })
}

/// A header a provider injects: a valid name that the gateway does not already own or drop.
fn identity_header(key: &str, text: &str, problems: &mut Problems) -> Option<HeaderName> {
    let name = parse_header_name(key, text, problems)?;
    const GATEWAY_OWNED: &[&str] = &[
        "host",
        "connection",
        "keep-alive",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "proxy-connection",
        "proxy-authorization",
        "content-length",
        "authorization",
        "cookie",
        "x-forwarded-for",
        "x-forwarded-host",
        "x-forwarded-proto",
        "x-forwarded-port",
        "forwarded",
        "x-real-ip",
        "x-request-id",
        "traceparent",
        "tracestate",
    ];
    if GATEWAY_OWNED.contains(&name.as_str()) {
        problems.add(
            key,
            format!(
                "{:?} is a header the gateway or HTTP itself sets; pick another name",
                name.as_str()
            ),
        );
        return None;
    }
    Some(name)
}

/// Parses a PEM public key of whichever family it is.
fn pem_key(pem: &[u8]) -> Option<DecodingKey> {
    DecodingKey::from_rsa_pem(pem)
        .or_else(|_| DecodingKey::from_ec_pem(pem))
        .or_else(|_| DecodingKey::from_ed_pem(pem))
        .ok()
}

fn api_key_settings(
    name: &str,
    config: &ApiKeysConfig,
    problems: &mut Problems,
) -> Option<ApiKeySettings> {
    let key = format!("auth.api_keys.{name}");
    let before = problems.count();
    let location = match (&config.header, &config.query) {
        (Some(_), Some(_)) => {
            problems.add(&key, "set either `header` or `query`, not both");
            KeyLocation::Query(String::new())
        }
        (None, Some(param)) => KeyLocation::Query(param.clone()),
        (header, None) => match HeaderName::try_from(header.as_deref().unwrap_or("x-api-key")) {
            Ok(name) => KeyLocation::Header(name),
            Err(_) => {
                problems.add(format!("{key}.header"), "invalid header name");
                KeyLocation::Query(String::new())
            }
        },
    };
    let keys = config
        .keys
        .iter()
        .enumerate()
        .filter_map(|(i, entry)| match parse_digest(&entry.sha256) {
            Some(digest) => Some(ApiKeyEntry {
                id: entry.id.clone(),
                digest,
                scopes: entry.scopes.clone(),
            }),
            None => {
                problems.add(
                    format!("{key}.keys[{i}].sha256"),
                    "not 64 hex digits (the SHA-256 of the key)",
                );
                None
            }
        })
        .collect();
    let redis_url = match (config.store, &config.redis_url) {
        (KeyStoreKind::Redis, Some(url)) => Some(url.clone()),
        (KeyStoreKind::Redis, None) => {
            problems.add(
                format!("{key}.redis_url"),
                "required with store = \"redis\"",
            );
            None
        }
        (KeyStoreKind::Memory, Some(_)) => {
            problems.add(
                format!("{key}.redis_url"),
                "only applies with store = \"redis\"",
            );
            None
        }
        (KeyStoreKind::Memory, None) => None,
    };
    let forward = |field: &str, header: &str, problems: &mut Problems| {
        (!header.is_empty())
            .then(|| identity_header(&format!("{key}.forward_identity.{field}"), header, problems))
            .flatten()
    };
    let forward_id = forward("id", &config.forward_identity.id, problems);
    let forward_scopes = forward("scopes", &config.forward_identity.scopes, problems);
    (problems.count() == before).then(|| ApiKeySettings {
        name: name.to_owned(),
        location,
        keys,
        redis_url,
        forward_id,
        forward_scopes,
    })
}

/// 64 hex digits into 32 bytes.
pub fn parse_digest(hex: &str) -> Option<[u8; 32]> {
    let hex = hex.trim();
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in hex.as_bytes().chunks(2).enumerate() {
        let text = std::str::from_utf8(pair).ok()?;
        out[i] = u8::from_str_radix(text, 16).ok()?;
    }
    Some(out)
}

/// Validates `[auth]`: every JWT and API-key provider.
pub fn settings(auth: &AuthConfig, problems: &mut Problems) -> AuthSettings {
    AuthSettings {
        jwt: auth
            .jwt
            .iter()
            .filter_map(|(name, jwt)| jwt_settings(name, jwt, problems).map(|s| (name.clone(), s)))
            .collect(),
        api_keys: auth
            .api_keys
            .iter()
            .filter_map(|(name, keys)| {
                api_key_settings(name, keys, problems).map(|s| (name.clone(), s))
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, Plan, problems_in as problems};

    #[test]
    fn a_zero_jwks_min_refresh_is_rejected() {
        let found = problems(
            "[auth.jwt.main]\njwks_url = \"https://idp.test/jwks.json\"\nalgorithms = [\"RS256\"]\njwks_min_refresh = \"0s\"\n",
        );
        assert_eq!(
            found,
            vec!["auth.jwt.main.jwks_min_refresh: must be greater than zero"]
        );
    }

    #[test]
    fn identity_headers_cannot_be_headers_the_gateway_owns() {
        let found = problems(
            "[auth.api_keys.p]\nforward_identity = { id = \"x-forwarded-for\", scopes = \"\" }\n\
             [auth.jwt.j]\njwks_url = \"https://idp.test/jwks\"\nalgorithms = [\"RS256\"]\n\
             forward_claims = { sub = \"X-Request-Id\" }\n",
        );
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found[0].starts_with(
            "auth.jwt.j.forward_claims.sub: \"x-request-id\" is a header the gateway"
        ));
        assert!(found[1].starts_with("auth.api_keys.p.forward_identity.id: \"x-forwarded-for\""));
        let plan = Plan::new(&Config::from_toml("[auth.api_keys.p]\n").unwrap()).unwrap();
        let keys = &plan.auth.api_keys["p"];
        assert_eq!(keys.forward_id.as_ref().unwrap(), "x-api-key-id");
        assert_eq!(keys.forward_scopes.as_ref().unwrap(), "x-api-key-scopes");
    }
}
