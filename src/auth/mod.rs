//! Authentication and authorization at the gateway.
//!
//! A route's `auth = ["jwt:main", "api_key:partners"]` becomes a [`RoutePolicy`]: the
//! providers are tried in order and any one succeeding suffices; then every scope in the
//! route's `scopes` must be granted. This runs before any upstream is called, in both
//! runtimes. Failures are 401 with `WWW-Authenticate` (RFC 6750 §3), missing scopes 403
//! `insufficient_scope`. The identity headers a provider injects (JWT `forward_claims`,
//! API-key `forward_identity`) travel with the [`Principal`] and are written when the request
//! is sent upstream; copies a client sends itself are removed on every route by the trust
//! boundary ([`crate::trust`]), so they cannot be spoofed. Every decision is an audit event;
//! no token or key is ever logged.

pub mod admin;
pub mod api_keys;
pub mod config;
mod jwks;
pub mod jwt;

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use axum::extract::Request;
use http::{HeaderMap, HeaderName, HeaderValue, header};

use crate::error::Error;
use api_keys::ApiKeyProvider;
use config::{AuthSettings, KeyLocation, ProviderRef};
use jwt::JwtProvider;

/// Who the request is from, for later layers (rate limiting by user, logs).
#[derive(Clone, Debug)]
pub struct Principal {
    /// `jwt:NAME` or `api_key:NAME`.
    pub provider: Arc<str>,
    /// The token's `sub` (empty when the token has none), or the API key's `id`.
    pub id: String,
    pub scopes: Vec<String>,
    /// Identity headers for the upstream (`forward_claims`, `forward_identity`).
    pub forward: Vec<(HeaderName, HeaderValue)>,
    /// The verified token's claims, which `{claims.NAME}` templates read (AWS routes); an
    /// API key's are made of its id (`sub`) and scopes (`scope`) when a template asks.
    pub claims: Option<Arc<serde_json::Map<String, serde_json::Value>>>,
}

/// Why credentials were refused: the class a client may see, never the credential.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    Missing,
    Malformed,
    TooLarge,
    MultipleCredentials,
    Expired,
    NotYetValid,
    BadSignature,
    UnknownIssuer,
    WrongAudience,
    UnknownKey,
    AlgorithmNotAllowed,
    InvalidClaims,
    UnknownApiKey,
}

impl Reason {
    pub fn code(self) -> &'static str {
        match self {
            Reason::Missing => "missing",
            Reason::Malformed => "malformed",
            Reason::TooLarge => "too_large",
            Reason::MultipleCredentials => "multiple_credentials",
            Reason::Expired => "expired",
            Reason::NotYetValid => "not_yet_valid",
            Reason::BadSignature => "bad_signature",
            Reason::UnknownIssuer => "unknown_issuer",
            Reason::WrongAudience => "wrong_audience",
            Reason::UnknownKey => "unknown_key",
            Reason::AlgorithmNotAllowed => "algorithm_not_allowed",
            Reason::InvalidClaims => "invalid_claims",
            Reason::UnknownApiKey => "unknown_api_key",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Reason::Missing => "No credentials were presented.",
            Reason::Malformed => "The credentials are malformed.",
            Reason::TooLarge => "The token is too large.",
            Reason::MultipleCredentials => "More than one credential was presented.",
            Reason::Expired => "The token has expired.",
            Reason::NotYetValid => "The token is not valid yet.",
            Reason::BadSignature => "The token's signature is invalid.",
            Reason::UnknownIssuer => "The token's issuer is not accepted.",
            Reason::WrongAudience => "The token is not meant for this audience.",
            Reason::UnknownKey => "The token was signed with an unknown key.",
            Reason::AlgorithmNotAllowed => "The token's algorithm is not accepted.",
            Reason::InvalidClaims => "The token's claims are invalid.",
            Reason::UnknownApiKey => "The API key is not valid.",
        }
    }
}

/// A provider's verdict when it did not authenticate the request.
#[derive(Debug)]
pub enum Failure {
    Rejected(Reason),
    /// The provider cannot decide now (no JWKS keys at all, key store down): 503.
    Unavailable {
        retry_after: Duration,
    },
}

/// A provider's verdict when it did.
pub struct Authenticated {
    pub id: String,
    pub scopes: Vec<String>,
    /// Headers for the upstream (`forward_claims`, `forward_identity`).
    pub inject: Vec<(HeaderName, HeaderValue)>,
    /// A credential header to remove before forwarding (`forward_token = false`).
    pub strip: Option<HeaderName>,
    /// The verified token's claims (JWT only).
    pub claims: Option<Arc<serde_json::Map<String, serde_json::Value>>>,
}

/// All configured providers, built once.
pub struct Providers {
    jwt: BTreeMap<String, Arc<JwtProvider>>,
    api_keys: BTreeMap<String, Arc<ApiKeyProvider>>,
}

impl Providers {
    /// `client` is the gateway's shared client for its own calls (JWKS).
    pub fn new(settings: &AuthSettings, client: &reqwest::Client) -> Self {
        Self {
            jwt: settings
                .jwt
                .iter()
                .map(|(name, s)| (name.clone(), Arc::new(JwtProvider::new(s, client.clone()))))
                .collect(),
            api_keys: settings
                .api_keys
                .iter()
                .map(|(name, s)| (name.clone(), Arc::new(ApiKeyProvider::new(s))))
                .collect(),
        }
    }

    /// Every header a provider may inject: the trust boundary removes client copies of them
    /// from every request.
    pub fn identity_headers(&self) -> Vec<HeaderName> {
        let jwt = self
            .jwt
            .values()
            .flat_map(|jwt| jwt.forward_claims.iter().map(|(_, header)| header.clone()));
        let api_keys = self
            .api_keys
            .values()
            .flat_map(|keys| keys.identity_headers());
        jwt.chain(api_keys).collect()
    }

    /// The policy for a route; `None` for a public route.
    pub fn policy(
        &self,
        route: &str,
        refs: &[ProviderRef],
        scopes: &[String],
    ) -> Option<RoutePolicy> {
        if refs.is_empty() {
            return None;
        }
        let providers: Vec<Provider> = refs
            .iter()
            .map(|r| match r {
                ProviderRef::Jwt(name) => Provider {
                    label: format!("jwt:{name}").into(),
                    kind: Kind::Jwt(self.jwt[name].clone()),
                },
                ProviderRef::ApiKey(name) => Provider {
                    label: format!("api_key:{name}").into(),
                    kind: Kind::ApiKey(self.api_keys[name].clone()),
                },
            })
            .collect();
        let bearer = providers
            .iter()
            .any(|p| matches!(&p.kind, Kind::Jwt(j) if j.location == KeyLocation::Bearer));
        Some(RoutePolicy {
            route: route.into(),
            providers,
            scopes: scopes.to_vec(),
            scheme: if bearer { "Bearer" } else { "ApiKey" },
        })
    }
}

/// A provider as a route names it; the label (`jwt:NAME`) is built once, not per request.
struct Provider {
    label: Arc<str>,
    kind: Kind,
}

enum Kind {
    Jwt(Arc<JwtProvider>),
    ApiKey(Arc<ApiKeyProvider>),
}

/// One route's authentication and authorization.
pub struct RoutePolicy {
    route: Arc<str>,
    providers: Vec<Provider>,
    scopes: Vec<String>,
    /// The `WWW-Authenticate` scheme of the challenge.
    scheme: &'static str,
}

impl RoutePolicy {
    /// Authenticates `request`, or returns the 401/403/503 to answer with. On success the
    /// request carries its [`Principal`] and the identity headers for the upstream.
    pub async fn authorize(&self, request: &mut Request) -> Result<(), Error> {
        let mut refusal: Option<Reason> = None;
        let mut unavailable: Option<Duration> = None;
        for provider in &self.providers {
            let verdict = match &provider.kind {
                Kind::Jwt(jwt) => jwt.authenticate(request.headers()).await,
                Kind::ApiKey(keys) => keys.authenticate(request.headers(), request.uri()).await,
            };
            match verdict {
                Ok(authenticated) => return self.admit(request, provider, authenticated),
                Err(Failure::Rejected(reason)) => {
                    self.audit(&provider.label, "", "deny", reason.code());
                    crate::observability::metrics::record_auth_failure(
                        &provider.label,
                        reason.code(),
                    );
                    // The most telling reason wins: anything beats "missing".
                    if refusal.is_none_or(|r| r == Reason::Missing) {
                        refusal = Some(reason);
                    }
                }
                Err(Failure::Unavailable { retry_after }) => {
                    self.audit(&provider.label, "", "unavailable", "provider_unavailable");
                    unavailable = Some(retry_after);
                }
            }
        }
        if let Some(retry_after) = unavailable {
            return Err(Error::AuthUnavailable { retry_after });
        }
        let reason = refusal.unwrap_or(Reason::Missing);
        Err(Error::Unauthorized {
            reason,
            challenge: self.challenge(reason),
        })
    }

    fn admit(
        &self,
        request: &mut Request,
        provider: &Provider,
        authenticated: Authenticated,
    ) -> Result<(), Error> {
        let label = &provider.label;
        let missing: Vec<&str> = self
            .scopes
            .iter()
            .filter(|s| !authenticated.scopes.contains(s))
            .map(String::as_str)
            .collect();
        if !missing.is_empty() {
            self.audit(label, &authenticated.id, "deny", "insufficient_scope");
            crate::observability::metrics::record_auth_failure(label, "insufficient_scope");
            let wanted = self.scopes.join(" ");
            let challenge = HeaderValue::try_from(format!(
                r#"{} realm="proxyfn", error="insufficient_scope", scope="{wanted}""#,
                self.scheme
            ))
            .unwrap_or(HeaderValue::from_static(
                "Bearer error=\"insufficient_scope\"",
            ));
            return Err(Error::Forbidden {
                missing: missing.join(" "),
                challenge,
            });
        }
        self.audit(label, &authenticated.id, "allow", "ok");
        if let Some(name) = &authenticated.strip {
            request.headers_mut().remove(name);
        }
        if let Some(notes) = crate::observability::Notes::of(request.extensions()) {
            notes.principal(label, &authenticated.id);
        }
        request.extensions_mut().insert(Principal {
            provider: label.clone(),
            id: authenticated.id,
            scopes: authenticated.scopes,
            forward: authenticated.inject,
            claims: authenticated.claims,
        });
        Ok(())
    }

    fn challenge(&self, reason: Reason) -> HeaderValue {
        let text = if reason == Reason::Missing {
            // RFC 6750 §3.1: no error code when the request carried no credentials.
            format!(r#"{} realm="proxyfn""#, self.scheme)
        } else {
            format!(
                r#"{} realm="proxyfn", error="invalid_token", error_description="{}""#,
                self.scheme,
                reason.code()
            )
        };
        HeaderValue::try_from(text).unwrap_or(HeaderValue::from_static("Bearer"))
    }

    fn audit(&self, provider: &str, principal: &str, outcome: &str, reason: &str) {
        tracing::info!(target: crate::observability::AUDIT_TARGET, route = %self.route, provider, principal, outcome, reason, "auth decision");
    }
}

/// SHA-256, for token fingerprints and API key digests.
pub fn digest(bytes: &[u8]) -> [u8; 32] {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The one value of `name`: absent is `Missing`, repeated is `MultipleCredentials`.
fn single_value<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Result<&'a str, Failure> {
    let mut values = headers.get_all(name).iter();
    let value = values.next().ok_or(Failure::Rejected(Reason::Missing))?;
    if values.next().is_some() {
        return Err(Failure::Rejected(Reason::MultipleCredentials));
    }
    value
        .to_str()
        .map_err(|_| Failure::Rejected(Reason::Malformed))
}

/// The one cookie called `name` across all `Cookie` headers.
fn cookie(headers: &HeaderMap, name: &str) -> Result<String, Failure> {
    let mut found = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .filter(|(n, _)| *n == name)
        .map(|(_, value)| value.trim().to_owned());
    let value = found.next().ok_or(Failure::Rejected(Reason::Missing))?;
    if found.next().is_some() {
        return Err(Failure::Rejected(Reason::MultipleCredentials));
    }
    Ok(value)
}
