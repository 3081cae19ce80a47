//! `[cache]` (where cached responses live) and the route key `cache` (what is cached, how long).

use std::time::Duration;

use http::{HeaderName, header};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::config::{ByteSize, HumanDuration, Problems, parse_header_name};

/// `[cache]`
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// `memory` (per instance, the default) or `redis` (shared by every instance).
    pub store: CacheStoreKind,
    pub redis_url: Option<String>,
    /// `redis_url` is a node of a Redis Cluster.
    pub cluster: bool,
    /// Bound on one Redis read or write; slower counts as a miss (or no store).
    pub timeout: HumanDuration,
    /// The memory store's bound on bodies and headers held; least recently used go first.
    pub max_bytes: ByteSize,
    /// Responses larger than this are not cached.
    pub max_entry: ByteSize,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            store: CacheStoreKind::Memory,
            redis_url: None,
            cluster: false,
            timeout: HumanDuration(Duration::from_millis(50)),
            max_bytes: ByteSize(64 << 20),
            max_entry: ByteSize(1 << 20),
        }
    }
}

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum CacheStoreKind {
    #[default]
    Memory,
    Redis,
}

/// Route `cache = { ttl, vary, per_principal }`.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RouteCacheConfig {
    /// How long a response is served from the cache (shortened by the upstream's max-age).
    pub ttl: HumanDuration,
    /// Request headers whose values select different cached responses.
    #[serde(default)]
    pub vary: Vec<String>,
    /// Cache answers to authenticated requests, one copy per principal.
    #[serde(default)]
    pub per_principal: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub enum CacheStore {
    Memory { max_bytes: u64 },
    Redis { url: String, cluster: bool },
}

/// The validated `[cache]`.
#[derive(Clone, Debug, PartialEq)]
pub struct CacheSettings {
    pub store: CacheStore,
    pub timeout: Duration,
    pub max_entry: u64,
}

#[derive(Clone, Debug)]
pub struct RouteCacheSettings {
    pub ttl: Duration,
    pub vary: Vec<HeaderName>,
    pub per_principal: bool,
}

/// Validates `[cache]`.
pub fn settings(cache: &CacheConfig, problems: &mut Problems) -> CacheSettings {
    let store = match (cache.store, &cache.redis_url) {
        (CacheStoreKind::Memory, _) => CacheStore::Memory {
            max_bytes: cache.max_bytes.0,
        },
        (CacheStoreKind::Redis, None) => {
            problems.add("cache.redis_url", "required when store = \"redis\"");
            CacheStore::Memory { max_bytes: 0 }
        }
        (CacheStoreKind::Redis, Some(url)) => {
            if let Err(error) = redis::Client::open(url.as_str()) {
                problems.add("cache.redis_url", format!("not a Redis URL: {error}"));
            }
            CacheStore::Redis {
                url: url.clone(),
                cluster: cache.cluster,
            }
        }
    };
    if cache.timeout.0.is_zero() {
        problems.add("cache.timeout", "must be longer than 0s");
    }
    if cache.max_entry.0 > cache.max_bytes.0 && cache.store == CacheStoreKind::Memory {
        problems.add("cache.max_entry", "cannot exceed cache.max_bytes");
    }
    CacheSettings {
        store,
        timeout: cache.timeout.0,
        max_entry: cache.max_entry.0,
    }
}

pub fn route_cache(
    key: &str,
    cache: &RouteCacheConfig,
    methods: Option<&[http::Method]>,
    problems: &mut Problems,
) -> Option<RouteCacheSettings> {
    let before = problems.count();
    if cache.ttl.0 < Duration::from_secs(1) {
        problems.add(format!("{key}.ttl"), "must be at least 1s");
    }
    if let Some(methods) = methods
        && !methods
            .iter()
            .any(|m| *m == http::Method::GET || *m == http::Method::HEAD)
    {
        problems.add(
            key,
            "only GET and HEAD answers are cached; this route serves neither",
        );
    }
    let vary = cache
        .vary
        .iter()
        .enumerate()
        .filter_map(|(i, name)| {
            let key = format!("{key}.vary[{i}]");
            let name = parse_header_name(&key, name, problems)?;
            if name == header::AUTHORIZATION || name == header::COOKIE {
                problems.add(
                    key,
                    "credentials never select a shared cache entry: use `per_principal`",
                );
                return None;
            }
            Some(name)
        })
        .collect();
    (problems.count() == before).then(|| RouteCacheSettings {
        ttl: cache.ttl.0,
        vary,
        per_principal: cache.per_principal,
    })
}
