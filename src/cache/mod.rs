//! The response cache: GET and HEAD answers of routes with `cache = { ttl, ... }`, kept in
//! memory (bounded bytes, least recently used evicted first) or in Redis (shared by every
//! instance, so Lambda functions warm each other).
//!
//! It behaves as a shared cache (RFC 9111 §1): an answer is stored only when its status is
//! cacheable by default (§4.2.2), it sets no cookie, its `Cache-Control` has none of
//! `no-store`, `private`, `no-cache` (§5.2.2), and `Vary` is not `*`. Its lifetime is the
//! route's `ttl`, shortened by `s-maxage` or `max-age`. A request with `no-store` neither
//! reads nor writes the cache; one with `no-cache` skips the read (it revalidates).
//!
//! The key hashes (SHA-256) the route, method, normalized path, query, the route's `vary`
//! headers, `Accept-Encoding` (the upstream may have encoded the body for it) and, with
//! `per_principal`, the authenticated principal. Answers to authenticated requests (a
//! principal, or an `Authorization` header) bypass the cache unless `per_principal` is set, so
//! one user's data is never served to another. Answers carry `X-Cache: HIT`, `MISS` or
//! `BYPASS`, and hits an `Age` (§5.1).

pub mod config;
mod entry;

use std::{
    sync::{Arc, Mutex},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use axum::{body::Body, extract::Request, response::Response};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use lru::LruCache;
use redis::AsyncCommands;

use self::config::{CacheSettings, CacheStore, RouteCacheSettings};
use crate::{
    auth::Principal,
    body::{Buffered, read_up_to},
    config::ConfigError,
    error::Problem,
    observability::metrics::{self, RouteMetrics},
    redis_conn::Redis,
};
pub use entry::Entry;

pub const X_CACHE: HeaderName = HeaderName::from_static("x-cache");
const HIT: HeaderValue = HeaderValue::from_static("HIT");
const MISS: HeaderValue = HeaderValue::from_static("MISS");
const BYPASS: HeaderValue = HeaderValue::from_static("BYPASS");

/// Where cached answers live; one per gateway, shared by its routes.
#[derive(Clone)]
pub struct ResponseCache(Arc<Inner>);

struct Inner {
    store: Store,
    timeout: Duration,
    max_entry: usize,
}

enum Store {
    Memory(Mutex<Memory>),
    Redis(Redis),
}

struct Memory {
    entries: LruCache<Key, Arc<Entry>>,
    bytes: u64,
    max_bytes: u64,
}

pub type Key = [u8; 32];

impl ResponseCache {
    /// `pools`: the number of server workers, each with its own Redis connection.
    pub fn new(settings: &CacheSettings, pools: usize) -> Result<Self, ConfigError> {
        let store = match &settings.store {
            CacheStore::Memory { max_bytes } => Store::Memory(Mutex::new(Memory {
                entries: LruCache::unbounded(),
                bytes: 0,
                max_bytes: *max_bytes,
            })),
            CacheStore::Redis { url, cluster } => Store::Redis(
                Redis::new(url, *cluster, pools)
                    .map_err(|e| ConfigError::single("cache.redis_url", e))?,
            ),
        };
        Ok(Self(Arc::new(Inner {
            store,
            timeout: settings.timeout,
            max_entry: usize::try_from(settings.max_entry).unwrap_or(usize::MAX),
        })))
    }

    async fn get(&self, key: &Key, now: u64) -> Option<Arc<Entry>> {
        match &self.0.store {
            Store::Memory(memory) => {
                let mut memory = memory.lock().unwrap_or_else(|e| e.into_inner());
                let entry = memory.entries.get(key)?.clone();
                if entry.expires_at_ms <= now {
                    memory.remove(key);
                    return None;
                }
                Some(entry)
            }
            Store::Redis(redis) => {
                // Down: answer from the upstream at once; a probe is reconnecting.
                redis.available().ok()?;
                let read = async {
                    let mut connection = redis.connection().await?;
                    connection.get::<_, Option<Vec<u8>>>(redis_key(key)).await
                };
                let result = tokio::time::timeout(self.0.timeout, read).await;
                redis.record(matches!(result, Ok(Ok(_))));
                let bytes = match result {
                    Ok(Ok(bytes)) => bytes?,
                    Ok(Err(error)) => {
                        if let Some(held_back) = READ_FAILED.admit() {
                            tracing::warn!(%error, held_back, "cache read failed; answering from the upstream");
                        }
                        return None;
                    }
                    Err(_) => {
                        if let Some(held_back) = READ_FAILED.admit() {
                            tracing::warn!(
                                held_back,
                                "cache read timed out; answering from the upstream"
                            );
                        }
                        return None;
                    }
                };
                Entry::decode(&bytes)
                    .filter(|entry| entry.expires_at_ms > now)
                    .map(Arc::new)
            }
        }
    }

    async fn put(&self, key: Key, entry: Entry, ttl: Duration) {
        match &self.0.store {
            Store::Memory(memory) => {
                let mut memory = memory.lock().unwrap_or_else(|e| e.into_inner());
                memory.insert(key, Arc::new(entry));
            }
            Store::Redis(redis) => {
                if redis.available().is_err() {
                    return;
                }
                let write = async {
                    let mut connection = redis.connection().await?;
                    let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
                    connection
                        .pset_ex::<_, _, ()>(redis_key(&key), entry.encode(), ttl_ms)
                        .await
                };
                let result = tokio::time::timeout(self.0.timeout, write).await;
                redis.record(matches!(result, Ok(Ok(()))));
                match result {
                    Ok(Ok(())) => {}
                    Ok(Err(error)) => {
                        if let Some(held_back) = WRITE_FAILED.admit() {
                            tracing::warn!(%error, held_back, "cache write failed");
                        }
                    }
                    Err(_) => {
                        if let Some(held_back) = WRITE_FAILED.admit() {
                            tracing::warn!(held_back, "cache write timed out");
                        }
                    }
                }
            }
        }
    }
}

impl Memory {
    fn insert(&mut self, key: Key, entry: Arc<Entry>) {
        let size = entry.size();
        if size > self.max_bytes {
            return;
        }
        self.remove(&key);
        while self.bytes + size > self.max_bytes {
            match self.entries.pop_lru() {
                Some((_, evicted)) => self.bytes -= evicted.size(),
                None => break,
            }
        }
        self.bytes += size;
        self.entries.put(key, entry);
    }

    fn remove(&mut self, key: &Key) {
        if let Some(entry) = self.entries.pop(key) {
            self.bytes -= entry.size();
        }
    }
}

/// Cache store failures repeat with every request while Redis is away: logged once a second.
static READ_FAILED: crate::observability::throttle::Throttle =
    crate::observability::throttle::Throttle::new();
static WRITE_FAILED: crate::observability::throttle::Throttle =
    crate::observability::throttle::Throttle::new();

fn redis_key(key: &Key) -> String {
    format!("proxyfn:cache:{}", crate::auth::hex(key))
}

/// What a cached route does with one request.
pub enum Lookup {
    /// The request cannot use the cache (method, `no-store`, credentials).
    Bypass,
    /// Answer from the cache if it holds the key (`read`), else store the answer under it.
    Use { key: Key, read: bool },
}

/// One route's caching, built at start-up.
pub struct RouteCache {
    cache: ResponseCache,
    settings: RouteCacheSettings,
    /// The route's template and version, part of every key.
    route: Arc<str>,
    /// Where hits, misses and bypasses are counted.
    metrics: Arc<RouteMetrics>,
}

impl RouteCache {
    pub fn new(
        cache: &ResponseCache,
        settings: &RouteCacheSettings,
        route: Arc<str>,
        metrics: Arc<RouteMetrics>,
    ) -> Self {
        Self {
            cache: cache.clone(),
            settings: settings.clone(),
            route,
            metrics,
        }
    }

    pub fn lookup(&self, request: &Request) -> Lookup {
        if !matches!(*request.method(), Method::GET | Method::HEAD) {
            return Lookup::Bypass;
        }
        let directives = CacheControl::of(request.headers());
        if directives.no_store {
            return Lookup::Bypass;
        }
        let principal = request.extensions().get::<Principal>();
        let authenticated =
            principal.is_some() || request.headers().contains_key(header::AUTHORIZATION);
        if authenticated && !self.settings.per_principal {
            return Lookup::Bypass;
        }
        // A token without `sub` names nobody: sharing its entries would serve one caller's
        // answer to another.
        if principal.is_some_and(|p| p.id.is_empty()) {
            return Lookup::Bypass;
        }
        let mut hash = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        let mut field = |bytes: &[u8]| {
            hash.update(&(bytes.len() as u64).to_be_bytes());
            hash.update(bytes);
        };
        field(self.route.as_bytes());
        field(request.method().as_str().as_bytes());
        field(request.uri().path().as_bytes());
        field(request.uri().query().unwrap_or_default().as_bytes());
        for name in self.settings.vary.iter().chain([&header::ACCEPT_ENCODING]) {
            for value in request.headers().get_all(name) {
                field(value.as_bytes());
            }
            field(b"\n");
        }
        if let Some(principal) = principal.filter(|_| self.settings.per_principal) {
            field(principal.provider.as_bytes());
            field(principal.id.as_bytes());
        } else if let Some(credentials) = request.headers().get(header::AUTHORIZATION) {
            // per_principal on a route without `auth`: the credentials are the principal.
            field(credentials.as_bytes());
        }
        let mut key = [0u8; 32];
        key.copy_from_slice(hash.finish().as_ref());
        Lookup::Use {
            key,
            read: !directives.no_cache,
        }
    }

    /// A stored answer, marked `HIT` with its `Age`.
    pub async fn get(&self, key: &Key) -> Option<Response> {
        let now = now_ms();
        let Some(entry) = self.cache.get(key, now).await else {
            metrics::record_cache(&self.metrics, "miss");
            return None;
        };
        metrics::record_cache(&self.metrics, "hit");
        let mut response = Response::new(Body::from(entry.body.clone()));
        *response.status_mut() = entry.status;
        *response.headers_mut() = entry.headers.clone();
        let age = now.saturating_sub(entry.stored_at_ms) / 1000;
        response
            .headers_mut()
            .insert(header::AGE, HeaderValue::from(age));
        response.headers_mut().insert(X_CACHE, HIT);
        Some(response)
    }

    /// Stores the answer when it may be (read whole, up to `max_entry`), and marks it `MISS`.
    pub async fn put(&self, key: Key, response: Response) -> Response {
        let Some(ttl) = self.lifetime(&response) else {
            return mark(response, MISS);
        };
        let (parts, body) = response.into_parts();
        let body = match read_up_to(body, self.cache.0.max_entry).await {
            Ok(Buffered::Whole(bytes)) => bytes,
            Ok(Buffered::TooLarge(body)) => {
                return mark(Response::from_parts(parts, body), MISS);
            }
            Err(error) => return axum::response::IntoResponse::into_response(error),
        };
        let now = now_ms();
        let entry = Entry {
            status: parts.status,
            headers: parts.headers.clone(),
            body: body.clone(),
            stored_at_ms: now,
            expires_at_ms: now + u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX / 2),
        };
        self.cache.put(key, entry, ttl).await;
        mark(Response::from_parts(parts, Body::from(body)), MISS)
    }

    pub fn bypass(&self, response: Response) -> Response {
        metrics::record_cache(&self.metrics, "bypass");
        mark(response, BYPASS)
    }

    /// How long `response` may be served from the cache; `None`: not at all.
    fn lifetime(&self, response: &Response) -> Option<Duration> {
        // RFC 9110 §15.1: the statuses heuristically cacheable, minus those a gateway should
        // not pin (405, 414, 501 describe the request or the server, not the resource).
        let cacheable = matches!(
            response.status(),
            StatusCode::OK
                | StatusCode::NON_AUTHORITATIVE_INFORMATION
                | StatusCode::NO_CONTENT
                | StatusCode::MULTIPLE_CHOICES
                | StatusCode::MOVED_PERMANENTLY
                | StatusCode::PERMANENT_REDIRECT
                | StatusCode::NOT_FOUND
                | StatusCode::GONE
        );
        let headers = response.headers();
        let directives = CacheControl::of(headers);
        let varies_on_everything = headers.get_all(header::VARY).iter().any(|v| {
            v.to_str()
                .is_ok_and(|v| v.split(',').any(|v| v.trim() == "*"))
        });
        if !cacheable
            || response.extensions().get::<Problem>().is_some()
            || directives.no_store
            || directives.private
            || directives.no_cache
            || varies_on_everything
            || headers.contains_key(header::SET_COOKIE)
        {
            return None;
        }
        let ttl = match directives.s_maxage.or(directives.max_age) {
            Some(max_age) => self.settings.ttl.min(Duration::from_secs(max_age)),
            None => self.settings.ttl,
        };
        (!ttl.is_zero()).then_some(ttl)
    }
}

fn mark(mut response: Response, value: HeaderValue) -> Response {
    response.headers_mut().insert(X_CACHE, value);
    response
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The `Cache-Control` directives the cache obeys (RFC 9111 §5.2).
#[derive(Debug, Default, PartialEq, Eq)]
struct CacheControl {
    no_store: bool,
    no_cache: bool,
    private: bool,
    max_age: Option<u64>,
    s_maxage: Option<u64>,
}

impl CacheControl {
    fn of(headers: &HeaderMap) -> Self {
        let mut directives = Self::default();
        for value in headers.get_all(header::CACHE_CONTROL) {
            let Ok(value) = value.to_str() else { continue };
            for directive in value.split(',') {
                let (name, argument) = match directive.split_once('=') {
                    Some((name, argument)) => {
                        (name.trim(), Some(argument.trim().trim_matches('"')))
                    }
                    None => (directive.trim(), None),
                };
                let seconds = || argument.and_then(|a| a.parse::<u64>().ok());
                match name.to_ascii_lowercase().as_str() {
                    "no-store" => directives.no_store = true,
                    "no-cache" => directives.no_cache = true,
                    "private" => directives.private = true,
                    // A malformed age is treated as stale (RFC 9111 §4.2.1): zero.
                    "max-age" => directives.max_age = Some(seconds().unwrap_or(0)),
                    "s-maxage" => directives.s_maxage = Some(seconds().unwrap_or(0)),
                    _ => {}
                }
            }
        }
        directives
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(body: &'static [u8]) -> Arc<Entry> {
        Arc::new(Entry {
            status: StatusCode::OK,
            headers: HeaderMap::new(),
            body: bytes::Bytes::from_static(body),
            stored_at_ms: 0,
            expires_at_ms: u64::MAX,
        })
    }

    #[test]
    fn the_memory_store_evicts_least_recently_used_within_its_bytes() {
        let one = entry(&[0; 100]);
        let size = one.size();
        let mut memory = Memory {
            entries: LruCache::unbounded(),
            bytes: 0,
            max_bytes: size * 2,
        };
        memory.insert([1; 32], one.clone());
        memory.insert([2; 32], entry(&[0; 100]));
        assert!(
            memory.entries.get(&[1; 32]).is_some(),
            "1 is now the most recent"
        );
        memory.insert([3; 32], entry(&[0; 100]));
        assert!(memory.entries.contains(&[1; 32]) && memory.entries.contains(&[3; 32]));
        assert!(
            !memory.entries.contains(&[2; 32]),
            "2 was least recently used"
        );
        assert_eq!(memory.bytes, size * 2);
    }

    #[test]
    fn cache_control_directives_are_read_case_insensitively() {
        let mut headers = HeaderMap::new();
        headers.append(
            header::CACHE_CONTROL,
            HeaderValue::from_static("Public, MAX-AGE=60"),
        );
        headers.append(
            header::CACHE_CONTROL,
            HeaderValue::from_static("s-maxage=\"10\", private"),
        );
        assert_eq!(
            CacheControl::of(&headers),
            CacheControl {
                private: true,
                max_age: Some(60),
                s_maxage: Some(10),
                ..CacheControl::default()
            }
        );
    }
}
