//! API keys: read from a header (default `x-api-key`) or a query parameter, hashed with
//! SHA-256 and compared in constant time with the configured digests, so neither the config
//! nor a timing side channel gives a key away. With `store = "redis"`, keys can also live in
//! Redis (one hash per provider, digest -> `{"id", "scopes"}`), where `proxyfn keys add|revoke|list`
//! manages them at runtime without a redeploy.
//!
//! A matched key's `id` and `scopes` reach the upstream as identity headers (`forward_identity`,
//! by default `X-Api-Key-Id` and `X-Api-Key-Scopes`), so upstreams can tell callers apart.

use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue, Uri};
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};

use super::config::{ApiKeyEntry, ApiKeySettings, KeyLocation};
use super::{Authenticated, Failure, Reason, digest, hex, single_value};

/// Bound on one Redis lookup; past it the provider answers "unavailable".
const REDIS_TIMEOUT: Duration = Duration::from_millis(500);

pub struct ApiKeyProvider {
    pub name: std::sync::Arc<str>,
    location: KeyLocation,
    keys: Vec<ApiKeyEntry>,
    redis: Option<RedisKeys>,
    forward_id: Option<HeaderName>,
    forward_scopes: Option<HeaderName>,
}

/// What Redis holds for one key.
#[derive(Debug, Serialize, Deserialize)]
pub struct StoredKey {
    pub id: String,
    #[serde(default)]
    pub scopes: Vec<String>,
}

impl ApiKeyProvider {
    pub fn new(settings: &ApiKeySettings) -> Self {
        Self {
            name: settings.name.as_str().into(),
            location: settings.location.clone(),
            keys: settings.keys.clone(),
            redis: settings
                .redis_url
                .as_ref()
                .map(|url| RedisKeys::new(url, &settings.name)),
            forward_id: settings.forward_id.clone(),
            forward_scopes: settings.forward_scopes.clone(),
        }
    }

    /// The headers this provider injects.
    pub fn identity_headers(&self) -> impl Iterator<Item = HeaderName> + '_ {
        self.forward_id.iter().chain(&self.forward_scopes).cloned()
    }

    /// What the upstream learns of a matched key.
    fn authenticated(&self, id: String, scopes: Vec<String>) -> Authenticated {
        let mut inject = Vec::with_capacity(2);
        if let Some(name) = &self.forward_id
            && let Ok(value) = HeaderValue::try_from(id.as_str())
        {
            inject.push((name.clone(), value));
        }
        if let Some(name) = &self.forward_scopes
            && !scopes.is_empty()
            && let Ok(value) = HeaderValue::try_from(scopes.join(" "))
        {
            inject.push((name.clone(), value));
        }
        Authenticated {
            id,
            scopes,
            inject,
            strip: None,
            claims: None,
        }
    }

    pub async fn authenticate(
        &self,
        headers: &HeaderMap,
        uri: &Uri,
    ) -> Result<Authenticated, Failure> {
        let key = match &self.location {
            KeyLocation::Header(name) => single_value(headers, name)?.trim().to_owned(),
            KeyLocation::Query(param) => query_value(uri, param)?,
            _ => return Err(Failure::Rejected(Reason::Missing)),
        };
        if key.is_empty() || key.len() > super::jwt::MAX_TOKEN_BYTES {
            return Err(Failure::Rejected(Reason::Malformed));
        }
        let presented = digest(key.as_bytes());
        // Compare with every configured key, in constant time each.
        let mut matched: Option<&ApiKeyEntry> = None;
        for entry in &self.keys {
            if aws_lc_rs::constant_time::verify_slices_are_equal(&entry.digest, &presented).is_ok()
            {
                matched = Some(entry);
            }
        }
        if let Some(entry) = matched {
            return Ok(self.authenticated(entry.id.clone(), entry.scopes.clone()));
        }
        let Some(redis) = &self.redis else {
            return Err(Failure::Rejected(Reason::UnknownApiKey));
        };
        match redis.lookup(&presented).await {
            Ok(Some(stored)) => Ok(self.authenticated(stored.id, stored.scopes)),
            Ok(None) => Err(Failure::Rejected(Reason::UnknownApiKey)),
            Err(error) => {
                static UNAVAILABLE: crate::observability::throttle::Throttle =
                    crate::observability::throttle::Throttle::new();
                if let Some(held_back) = UNAVAILABLE.admit() {
                    tracing::warn!(provider = %self.name, %error, held_back, "API key store unavailable");
                }
                Err(Failure::Unavailable {
                    retry_after: Duration::from_secs(1),
                })
            }
        }
    }
}

/// The one value of query parameter `name`, percent-decoded.
fn query_value(uri: &Uri, name: &str) -> Result<String, Failure> {
    let mut found = uri
        .query()
        .unwrap_or_default()
        .split('&')
        .filter_map(|pair| pair.split_once('=').or(Some((pair, ""))))
        .filter(|(k, _)| *k == name)
        .map(|(_, v)| v);
    let value = found.next().ok_or(Failure::Rejected(Reason::Missing))?;
    if found.next().is_some() {
        return Err(Failure::Rejected(Reason::MultipleCredentials));
    }
    let plus_decoded = value.replace('+', " ");
    percent_decode(&plus_decoded).ok_or(Failure::Rejected(Reason::Malformed))
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Keys in Redis: hash `proxyfn:api_keys:{NAME}`, field = hex SHA-256 of the key.
pub struct RedisKeys {
    redis: Result<crate::redis_conn::Redis, String>,
    hash: String,
}

impl RedisKeys {
    /// Must be called inside the Tokio runtime; connects on first use.
    pub fn new(url: &str, provider: &str) -> Self {
        Self {
            redis: crate::redis_conn::Redis::new(url, false, 1),
            hash: format!("proxyfn:api_keys:{{{provider}}}"),
        }
    }

    async fn connection(&self) -> Result<crate::redis_conn::Connection, String> {
        let redis = self.redis.as_ref().map_err(Clone::clone)?;
        redis.connection().await.map_err(|e| e.to_string())
    }

    /// A key's record; `Err` at once while the store is known to be down.
    async fn lookup(&self, digest: &[u8; 32]) -> Result<Option<StoredKey>, String> {
        let redis = self.redis.as_ref().map_err(Clone::clone)?;
        redis.available().map_err(|down| down.to_string())?;
        let lookup = async {
            let mut connection = redis.connection().await?;
            connection
                .hget::<_, _, Option<String>>(&self.hash, hex(digest))
                .await
        };
        let result = tokio::time::timeout(REDIS_TIMEOUT, lookup).await;
        redis.record(matches!(result, Ok(Ok(_))));
        let raw = result
            .map_err(|_| "Redis lookup timed out".to_owned())?
            .map_err(|e| e.to_string())?;
        raw.map(|json| serde_json::from_str(&json).map_err(|e| format!("bad stored key: {e}")))
            .transpose()
    }

    /// Stores `key` (never itself, only its digest) for `id`.
    pub async fn add(&self, key: &str, stored: &StoredKey) -> Result<(), String> {
        let mut connection = self.connection().await?;
        let json = serde_json::to_string(stored).map_err(|e| e.to_string())?;
        connection
            .hset::<_, _, _, ()>(&self.hash, hex(&digest(key.as_bytes())), json)
            .await
            .map_err(|e| e.to_string())
    }

    /// Removes every key of `id`; returns how many.
    pub async fn revoke(&self, id: &str) -> Result<usize, String> {
        let mut connection = self.connection().await?;
        let digests: Vec<String> = self
            .list()
            .await?
            .into_iter()
            .filter(|(_, stored)| stored.id == id)
            .map(|(digest, _)| digest)
            .collect();
        if digests.is_empty() {
            return Ok(0);
        }
        connection
            .hdel::<_, _, usize>(&self.hash, &digests)
            .await
            .map_err(|e| e.to_string())
    }

    /// (hex digest, key) pairs.
    pub async fn list(&self) -> Result<Vec<(String, StoredKey)>, String> {
        let mut connection = self.connection().await?;
        let all: Vec<(String, String)> = connection
            .hgetall(&self.hash)
            .await
            .map_err(|e| e.to_string())?;
        Ok(all
            .into_iter()
            .filter_map(|(digest, json)| serde_json::from_str(&json).ok().map(|k| (digest, k)))
            .collect())
    }
}

/// A new random key: 32 bytes from the OS generator, base64url, with a recognisable prefix.
pub fn generate_key() -> Result<String, String> {
    use base64::Engine;
    let mut bytes = [0u8; 32];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| "no randomness available".to_owned())?;
    Ok(format!(
        "pfk_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_keys_are_decoded_and_must_be_single() {
        let uri: Uri = "/x?a=1&api_key=ab%2Bc+d".parse().unwrap();
        assert_eq!(query_value(&uri, "api_key").unwrap(), "ab+c d");
        let twice: Uri = "/x?api_key=1&api_key=2".parse().unwrap();
        assert!(matches!(
            query_value(&twice, "api_key"),
            Err(Failure::Rejected(Reason::MultipleCredentials))
        ));
        let none: Uri = "/x?a=1".parse().unwrap();
        assert!(matches!(
            query_value(&none, "api_key"),
            Err(Failure::Rejected(Reason::Missing))
        ));
    }

    #[test]
    fn generated_keys_are_long_and_distinct() {
        let a = generate_key().unwrap();
        assert!(a.starts_with("pfk_") && a.len() > 40);
        assert_ne!(a, generate_key().unwrap());
    }
}
