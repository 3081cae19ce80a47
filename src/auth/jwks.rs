//! A JSON Web Key Set kept in memory.
//!
//! Keys are kept for the endpoint's `Cache-Control: max-age` (else `jwks_cache`). A token
//! with an unknown `kid` triggers one refetch: single-flight across concurrent requests, and
//! at most once per `jwks_min_refresh`, so key rotation works without a restart while a flood
//! of forged kids cannot hammer the identity provider. When the endpoint is down, the keys
//! already held keep working; with no keys at all the caller answers 503.

use std::{
    sync::{Arc, RwLock},
    time::{Duration, Instant},
};

use http::header::CACHE_CONTROL;
use jsonwebtoken::{
    Algorithm, DecodingKey,
    jwk::{AlgorithmParameters, JwkSet},
};

use super::Failure;

/// Whether a JWK can serve `alg`: the key's family decides, never the token.
fn jwk_fits(params: &AlgorithmParameters, alg: Algorithm) -> bool {
    use jsonwebtoken::AlgorithmFamily as F;
    matches!(
        (params, alg.family()),
        (AlgorithmParameters::RSA(_), F::Rsa)
            | (AlgorithmParameters::EllipticCurve(_), F::Ec)
            | (AlgorithmParameters::OctetKeyPair(_), F::Ed)
    )
}

/// Largest JWKS document accepted.
const MAX_JWKS_BYTES: usize = 1 << 20;
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

struct Key {
    kid: Option<String>,
    alg: Option<Algorithm>,
    params: AlgorithmParameters,
    key: Arc<DecodingKey>,
}

struct Loaded {
    keys: Vec<Key>,
    expires_at: Instant,
}

impl Loaded {
    fn find(&self, kid: Option<&str>, alg: Algorithm) -> Option<Arc<DecodingKey>> {
        let fits = |k: &&Key| jwk_fits(&k.params, alg) && k.alg.is_none_or(|a| a == alg);
        match kid {
            Some(kid) => self
                .keys
                .iter()
                .filter(fits)
                .find(|k| k.kid.as_deref() == Some(kid)),
            // No `kid`: only unambiguous when one key fits.
            None => {
                let mut fitting = self.keys.iter().filter(fits);
                match (fitting.next(), fitting.next()) {
                    (Some(only), None) => Some(only),
                    _ => None,
                }
            }
        }
        .map(|k| k.key.clone())
    }
}

pub struct Jwks {
    url: String,
    client: reqwest::Client,
    default_ttl: Duration,
    min_refresh: Duration,
    loaded: RwLock<Option<Arc<Loaded>>>,
    /// Held while fetching (single flight); remembers when the last fetch started.
    fetching: tokio::sync::Mutex<Option<Instant>>,
}

impl Jwks {
    pub fn new(
        url: String,
        client: reqwest::Client,
        default_ttl: Duration,
        min_refresh: Duration,
    ) -> Self {
        Self {
            url,
            client,
            default_ttl,
            min_refresh,
            loaded: RwLock::new(None),
            fetching: tokio::sync::Mutex::new(None),
        }
    }

    fn current(&self) -> Option<Arc<Loaded>> {
        self.loaded
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The key for a token's `kid` and `alg`, fetching the set when needed.
    pub async fn key(
        &self,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Result<Arc<DecodingKey>, Failure> {
        if let Some(loaded) = self.current()
            && loaded.expires_at > Instant::now()
            && let Some(key) = loaded.find(kid, alg)
        {
            return Ok(key);
        }
        self.refresh(kid, alg).await
    }

    async fn refresh(
        &self,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Result<Arc<DecodingKey>, Failure> {
        let mut last_fetch = self.fetching.lock().await;
        let now = Instant::now();
        // Another request may have fetched while this one waited.
        if let Some(loaded) = self.current()
            && loaded.expires_at > now
            && let Some(key) = loaded.find(kid, alg)
        {
            return Ok(key);
        }
        let too_soon = last_fetch.is_some_and(|at| now.duration_since(at) < self.min_refresh);
        if !too_soon {
            *last_fetch = Some(now);
            match self.fetch().await {
                Ok(loaded) => {
                    tracing::info!(jwks = %self.url, keys = loaded.keys.len(), "JWKS fetched");
                    *self.loaded.write().unwrap_or_else(|p| p.into_inner()) =
                        Some(Arc::new(loaded));
                }
                Err(error) => {
                    tracing::warn!(jwks = %self.url, %error, "JWKS fetch failed; keeping the keys held")
                }
            }
        }
        drop(last_fetch);
        // Expired keys still serve while the endpoint cannot give fresh ones.
        match self.current() {
            None => Err(Failure::Unavailable {
                retry_after: self.min_refresh,
            }),
            Some(loaded) => loaded
                .find(kid, alg)
                .ok_or(Failure::Rejected(super::Reason::UnknownKey)),
        }
    }

    async fn fetch(&self) -> Result<Loaded, String> {
        let response = self
            .client
            .get(&self.url)
            .timeout(FETCH_TIMEOUT)
            .send()
            .await
            .map_err(|e| e.without_url().to_string())?;
        if !response.status().is_success() {
            return Err(format!("status {}", response.status()));
        }
        let ttl = max_age(response.headers())
            .unwrap_or(self.default_ttl)
            .max(self.min_refresh);
        if response
            .content_length()
            .is_some_and(|n| n > MAX_JWKS_BYTES as u64)
        {
            return Err("JWKS document too large".into());
        }
        let body = response
            .bytes()
            .await
            .map_err(|e| e.without_url().to_string())?;
        if body.len() > MAX_JWKS_BYTES {
            return Err("JWKS document too large".into());
        }
        let set: JwkSet =
            serde_json::from_slice(&body).map_err(|e| format!("invalid JWKS: {e}"))?;
        let keys = set
            .keys
            .iter()
            .filter_map(|jwk| match DecodingKey::from_jwk(jwk) {
                Ok(key) => Some(Key {
                    kid: jwk.common.key_id.clone(),
                    alg: jwk
                        .common
                        .key_algorithm
                        .and_then(|a| a.to_string().parse().ok()),
                    params: jwk.algorithm.clone(),
                    key: Arc::new(key),
                }),
                Err(error) => {
                    tracing::warn!(kid = ?jwk.common.key_id, %error, "JWKS key skipped");
                    None
                }
            })
            .collect();
        Ok(Loaded {
            keys,
            expires_at: Instant::now() + ttl,
        })
    }
}

/// `Cache-Control: max-age=N` (RFC 9111 §5.2.2.1).
fn max_age(headers: &http::HeaderMap) -> Option<Duration> {
    headers
        .get_all(CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find_map(|directive| {
            let (name, value) = directive.trim().split_once('=')?;
            name.eq_ignore_ascii_case("max-age")
                .then(|| {
                    value
                        .trim_matches('"')
                        .parse()
                        .ok()
                        .map(Duration::from_secs)
                })
                .flatten()
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderMap, HeaderValue};

    #[test]
    fn max_age_is_read_from_cache_control() {
        let mut headers = HeaderMap::new();
        headers.insert(
            CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=600, must-revalidate"),
        );
        assert_eq!(max_age(&headers), Some(Duration::from_secs(600)));
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        assert_eq!(max_age(&headers), None);
    }
}
