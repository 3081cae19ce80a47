//! A JSON Web Key Set kept in memory.
//!
//! Keys are fresh for the endpoint's `Cache-Control: max-age` (else `jwks_cache`). Past that,
//! requests keep being verified with the keys held while one background fetch refreshes them
//! (stale-while-revalidate, RFC 5861 §3): a slow or hanging identity provider never holds up
//! a request that has a key. A request waits for a fetch only when there are no keys yet, or
//! for a token whose `kid` is unknown (key rotation without a restart).
//!
//! There is one fetch at a time per provider, and the next starts no sooner than
//! `jwks_min_refresh` after the last one *ended*, so a fetch slower than that cannot chain into
//! several, and a flood of forged kids cannot hammer the identity provider. When the endpoint
//! is down, the keys already held keep working; with no keys at all the caller answers 503.

use std::{
    sync::{
        Arc, RwLock,
        atomic::{AtomicBool, Ordering},
    },
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

/// A provider's key set; cheap to clone (background refreshes hold a clone).
#[derive(Clone)]
pub struct Jwks(Arc<Shared>);

struct Shared {
    url: String,
    client: reqwest::Client,
    default_ttl: Duration,
    min_refresh: Duration,
    loaded: RwLock<Option<Arc<Loaded>>>,
    /// Held while fetching (single flight); remembers when the last fetch ended.
    fetching: tokio::sync::Mutex<Option<Instant>>,
    /// A background refresh is under way.
    refreshing: AtomicBool,
}

impl Jwks {
    pub fn new(
        url: String,
        client: reqwest::Client,
        default_ttl: Duration,
        min_refresh: Duration,
    ) -> Self {
        Self(Arc::new(Shared {
            url,
            client,
            default_ttl,
            min_refresh,
            loaded: RwLock::new(None),
            fetching: tokio::sync::Mutex::new(None),
            refreshing: AtomicBool::new(false),
        }))
    }

    fn current(&self) -> Option<Arc<Loaded>> {
        self.0
            .loaded
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The key for a token's `kid` and `alg`: from the keys held, refreshing them in the
    /// background once they are stale, or after a fetch when none fits.
    pub async fn key(
        &self,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Result<Arc<DecodingKey>, Failure> {
        if let Some(loaded) = self.current()
            && let Some(key) = loaded.find(kid, alg)
        {
            if loaded.expires_at <= Instant::now() {
                self.refresh_in_background();
            }
            return Ok(key);
        }
        self.refresh(kid, alg).await
    }

    /// Starts one refresh that no request waits for, unless one is under way.
    fn refresh_in_background(&self) {
        if self.0.refreshing.swap(true, Ordering::AcqRel) {
            return;
        }
        let jwks = self.clone();
        tokio::spawn(async move {
            let mut last_fetch = jwks.0.fetching.lock().await;
            let stale = jwks
                .current()
                .is_none_or(|loaded| loaded.expires_at <= Instant::now());
            if stale && !jwks.too_soon(*last_fetch) {
                jwks.fetch_and_keep(&mut last_fetch).await;
            }
            drop(last_fetch);
            jwks.0.refreshing.store(false, Ordering::Release);
        });
    }

    fn too_soon(&self, last_fetch: Option<Instant>) -> bool {
        last_fetch.is_some_and(|ended| ended.elapsed() < self.0.min_refresh)
    }

    /// Fetches the set and keeps it (or keeps what is held when the fetch fails), recording
    /// when the fetch ended.
    async fn fetch_and_keep(&self, last_fetch: &mut Option<Instant>) {
        let fetched = self.fetch().await;
        *last_fetch = Some(Instant::now());
        match fetched {
            Ok(loaded) => {
                tracing::info!(jwks = %self.0.url, keys = loaded.keys.len(), "JWKS fetched");
                *self.0.loaded.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(loaded));
            }
            Err(error) => {
                static FAILED: crate::observability::throttle::Throttle =
                    crate::observability::throttle::Throttle::new();
                if let Some(held_back) = FAILED.admit() {
                    tracing::warn!(jwks = %self.0.url, %error, held_back, "JWKS fetch failed; keeping the keys held");
                }
            }
        }
    }

    /// Waits for a fetch: no keys yet, or none that fits the token.
    async fn refresh(
        &self,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Result<Arc<DecodingKey>, Failure> {
        let mut last_fetch = self.0.fetching.lock().await;
        // Another request may have fetched while this one waited.
        if let Some(loaded) = self.current()
            && let Some(key) = loaded.find(kid, alg)
        {
            return Ok(key);
        }
        if !self.too_soon(*last_fetch) {
            self.fetch_and_keep(&mut last_fetch).await;
        }
        drop(last_fetch);
        // Expired keys still serve while the endpoint cannot give fresh ones.
        match self.current() {
            None => Err(Failure::Unavailable {
                retry_after: self.0.min_refresh,
            }),
            Some(loaded) => loaded
                .find(kid, alg)
                .ok_or(Failure::Rejected(super::Reason::UnknownKey)),
        }
    }

    async fn fetch(&self) -> Result<Loaded, String> {
        let response = self
            .0
            .client
            .get(&self.0.url)
            .timeout(FETCH_TIMEOUT)
            .send()
            .await
            .map_err(|e| e.without_url().to_string())?;
        if !response.status().is_success() {
            return Err(format!("status {}", response.status()));
        }
        let ttl = max_age(response.headers())
            .unwrap_or(self.0.default_ttl)
            .max(self.0.min_refresh);
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
