//! JWT bearer tokens (RFC 7519) verified against one provider's keys.
//!
//! The provider's `algorithms` allow-list decides which `alg` values are accepted, and the key
//! family must match: `none` and HS/RS key confusion are impossible. `iss` is checked before
//! any key is fetched; `exp` is required; `nbf`, `aud` and `leeway` are applied; claims of the
//! wrong JSON type are invalid, not absent. `jku`, `x5u` and `jwk` header fields are never
//! followed. A verified token is cached (by SHA-256 of the token) until it expires, so a hot
//! token is not verified again on every request.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{SystemTime, UNIX_EPOCH},
};

use http::{HeaderMap, HeaderName, HeaderValue, header};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, errors::ErrorKind};
use serde_json::{Map, Value};

use super::config::{JwtKeySource, JwtSettings, KeyLocation};
use super::{Authenticated, Failure, Reason, digest, single_value};

/// Longest token accepted; longer ones are rejected before any parsing.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// Verified tokens remembered at most.
const CACHE_CAPACITY: usize = 10_000;

pub type Claims = Map<String, Value>;

/// Verified tokens: SHA-256 of the token -> (claims, `exp`).
type VerifiedCache = HashMap<[u8; 32], (Arc<Claims>, u64)>;

enum Keys {
    Static(Arc<DecodingKey>),
    Jwks(super::jwks::Jwks),
}

pub struct JwtProvider {
    keys: Keys,
    issuer: Option<String>,
    /// One validation per allowed algorithm, built once.
    validations: HashMap<Algorithm, Validation>,
    pub forward_claims: Vec<(String, HeaderName)>,
    forward_token: bool,
    pub location: KeyLocation,
    verified: Mutex<VerifiedCache>,
}

impl JwtProvider {
    pub fn new(settings: &JwtSettings, client: reqwest::Client) -> Self {
        let validations = settings
            .algorithms
            .iter()
            .map(|&alg| {
                let mut validation = Validation::new(alg);
                validation.leeway = settings.leeway.as_secs();
                validation.validate_nbf = true;
                let mut required = vec!["exp"];
                if let Some(issuer) = &settings.issuer {
                    validation.set_issuer(&[issuer]);
                    required.push("iss");
                }
                if settings.audience.is_empty() {
                    validation.validate_aud = false;
                } else {
                    validation.set_audience(&settings.audience);
                    required.push("aud");
                }
                validation.set_required_spec_claims(&required);
                (alg, validation)
            })
            .collect();
        let keys = match &settings.keys {
            JwtKeySource::Static(key) => Keys::Static(Arc::new(key.clone())),
            JwtKeySource::Jwks(url) => Keys::Jwks(super::jwks::Jwks::new(
                url.clone(),
                client,
                settings.jwks_cache,
                settings.jwks_min_refresh,
            )),
        };
        Self {
            keys,
            issuer: settings.issuer.clone(),
            validations,
            forward_claims: settings.forward_claims.clone(),
            forward_token: settings.forward_token,
            location: settings.location.clone(),
            verified: Mutex::new(HashMap::new()),
        }
    }

    /// Finds and verifies the request's token.
    pub async fn authenticate(&self, headers: &HeaderMap) -> Result<Authenticated, Failure> {
        let token = self.token(headers)?;
        let claims = self.verify(&token).await?;
        let mut inject = Vec::with_capacity(self.forward_claims.len());
        for (claim, header) in &self.forward_claims {
            if let Some(value) = claims.get(claim).and_then(claim_header_value) {
                inject.push((header.clone(), value));
            }
        }
        let strip = match (&self.location, self.forward_token) {
            (_, true) | (KeyLocation::Cookie(_) | KeyLocation::Query(_), false) => None,
            (KeyLocation::Bearer, false) => Some(header::AUTHORIZATION),
            (KeyLocation::Header(name), false) => Some(name.clone()),
        };
        Ok(Authenticated {
            id: claims
                .get("sub")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            scopes: scopes(&claims),
            inject,
            strip,
            claims: Some(claims),
        })
    }

    fn token(&self, headers: &HeaderMap) -> Result<String, Failure> {
        let token = match &self.location {
            KeyLocation::Bearer => {
                let value = single_value(headers, &header::AUTHORIZATION)?;
                let (scheme, token) = value
                    .split_once(' ')
                    .ok_or(Failure::Rejected(Reason::Malformed))?;
                if !scheme.eq_ignore_ascii_case("bearer")
                    || token.trim().contains(' ')
                    || token.trim().is_empty()
                {
                    return Err(Failure::Rejected(Reason::Malformed));
                }
                token.trim().to_owned()
            }
            KeyLocation::Header(name) => single_value(headers, name)?.trim().to_owned(),
            KeyLocation::Cookie(name) => super::cookie(headers, name)?,
            KeyLocation::Query(_) => return Err(Failure::Rejected(Reason::Missing)),
        };
        if token.len() > MAX_TOKEN_BYTES {
            return Err(Failure::Rejected(Reason::TooLarge));
        }
        Ok(token)
    }

    /// Verifies `token`, answering from the verified-token cache when it can.
    pub async fn verify(&self, token: &str) -> Result<Arc<Claims>, Failure> {
        let fingerprint = digest(token.as_bytes());
        if let Some((claims, exp)) = self.lock().get(&fingerprint)
            && *exp > unix_now()
        {
            return Ok(claims.clone());
        }
        let claims = self.verify_uncached(token).await?;
        if let Some(exp) = claims.get("exp").and_then(Value::as_u64) {
            self.remember(fingerprint, claims.clone(), exp);
        }
        Ok(claims)
    }

    /// Full verification: algorithm, issuer, key, signature and claims.
    pub async fn verify_uncached(&self, token: &str) -> Result<Arc<Claims>, Failure> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|_| Failure::Rejected(Reason::Malformed))?;
        let validation = self
            .validations
            .get(&header.alg)
            .ok_or(Failure::Rejected(Reason::AlgorithmNotAllowed))?;
        // The issuer is checked before any key is looked up or fetched.
        if let Some(issuer) = &self.issuer {
            let claims: Claims = jsonwebtoken::dangerous::insecure_decode_claims(token)
                .map_err(|_| Failure::Rejected(Reason::Malformed))?;
            if claims.get("iss").and_then(Value::as_str) != Some(issuer.as_str()) {
                return Err(Failure::Rejected(Reason::UnknownIssuer));
            }
        }
        let key = match &self.keys {
            Keys::Static(key) => key.clone(),
            Keys::Jwks(jwks) => jwks.key(header.kid.as_deref(), header.alg).await?,
        };
        let data = jsonwebtoken::decode::<Claims>(token, &key, validation)
            .map_err(|e| Failure::Rejected(reason(e.kind())))?;
        Ok(Arc::new(data.claims))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VerifiedCache> {
        self.verified.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Bounded: when full, expired entries go; if it is still full, it starts over.
    fn remember(&self, fingerprint: [u8; 32], claims: Arc<Claims>, exp: u64) {
        let mut cache = self.lock();
        if cache.len() >= CACHE_CAPACITY {
            let now = unix_now();
            cache.retain(|_, (_, e)| *e > now);
            if cache.len() >= CACHE_CAPACITY {
                cache.clear();
            }
        }
        cache.insert(fingerprint, (claims, exp));
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn reason(kind: &ErrorKind) -> Reason {
    match kind {
        ErrorKind::ExpiredSignature => Reason::Expired,
        ErrorKind::ImmatureSignature => Reason::NotYetValid,
        ErrorKind::InvalidSignature => Reason::BadSignature,
        ErrorKind::InvalidIssuer => Reason::UnknownIssuer,
        ErrorKind::InvalidAudience => Reason::WrongAudience,
        ErrorKind::InvalidAlgorithm
        | ErrorKind::InvalidAlgorithmName
        | ErrorKind::UnsupportedAlgorithm => Reason::AlgorithmNotAllowed,
        ErrorKind::MissingRequiredClaim(_)
        | ErrorKind::InvalidClaimFormat(_)
        | ErrorKind::InvalidSubject => Reason::InvalidClaims,
        _ => Reason::Malformed,
    }
}

/// Scopes from `scope` (space-separated, RFC 8693 §4.2) or `scp` (string or array).
fn scopes(claims: &Claims) -> Vec<String> {
    match claims.get("scope").or_else(|| claims.get("scp")) {
        Some(Value::String(text)) => text.split_whitespace().map(str::to_owned).collect(),
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        _ => vec![],
    }
}

/// A claim as a header value: strings as they are, arrays space-joined, others as JSON.
fn claim_header_value(value: &Value) -> Option<HeaderValue> {
    let text = match value {
        Value::String(s) => s.clone(),
        Value::Array(items) => items
            .iter()
            .map(|i| i.as_str().map_or_else(|| i.to_string(), str::to_owned))
            .collect::<Vec<_>>()
            .join(" "),
        Value::Null => return None,
        other => other.to_string(),
    };
    HeaderValue::try_from(text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn scopes_come_from_scope_or_scp() {
        let claims = |v: Value| v.as_object().unwrap().clone();
        assert_eq!(scopes(&claims(json!({"scope": "a b"}))), ["a", "b"]);
        assert_eq!(scopes(&claims(json!({"scp": ["x", "y"]}))), ["x", "y"]);
        assert!(scopes(&claims(json!({"scope": 5}))).is_empty());
    }

    #[test]
    fn claims_become_header_values() {
        assert_eq!(claim_header_value(&json!("u-1")).unwrap(), "u-1");
        assert_eq!(claim_header_value(&json!(["a", "b"])).unwrap(), "a b");
        assert_eq!(claim_header_value(&json!(42)).unwrap(), "42");
        assert!(claim_header_value(&json!("bad\nvalue")).is_none());
    }
}
