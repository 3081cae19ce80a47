//! The one way the gateway connects to Redis (API keys, rate limits): a multiplexed,
//! auto-reconnecting connection built at start-up and connected on first use, so a cold
//! start never waits on Redis and a Redis restart heals without restarting the gateway.
//! [`Redis`] also speaks to a Redis Cluster, where commands are routed by key slot.
//!
//! In server mode each worker thread gets its own connection (see [`crate::runtime::worker`]),
//! so a command is sent and its reply read by the thread that asked, as with upstream pools.
//!
//! A store that fails is marked down ([`Redis::available`]): until it answers again, callers
//! decide at once (rate limits by `on_store_error`, the cache by answering from the upstream,
//! API keys with 503) instead of each waiting out its timeout, and one probe at a time, at most
//! every [`PROBE_INTERVAL`], pings it in the background. Its first answer marks it up.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use redis::{
    Cmd, Pipeline, RedisFuture, Value,
    aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig},
    cluster::ClusterClient,
    cluster_async::ClusterConnection,
};
use tokio::sync::OnceCell;

use crate::runtime::worker_slot;

/// A connection manager for `url` that has not connected yet.
///
/// Connection attempts are short and retried once; a failed attempt is retried on the next
/// command rather than in a background loop, so an absent Redis costs nothing while idle.
/// Callers bound each command with their own timeout.
pub fn connect_lazily(url: &str) -> Result<ConnectionManager, String> {
    let client = redis::Client::open(url).map_err(|e| e.to_string())?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(1)))
        .set_number_of_retries(1)
        .set_min_delay(Duration::from_millis(20))
        .set_max_delay(Duration::from_millis(200));
    ConnectionManager::new_lazy_with_config(client, config).map_err(|e| e.to_string())
}

/// How often a store that is down is probed.
pub const PROBE_INTERVAL: Duration = Duration::from_millis(500);

/// A standalone server (through a [`ConnectionManager`]) or a cluster, connected lazily;
/// one connection per worker thread, and whether the store is up.
#[derive(Clone)]
pub struct Redis {
    connections: Connections,
    health: Arc<Health>,
}

#[derive(Clone)]
enum Connections {
    Single(Arc<[ConnectionManager]>),
    Cluster(Arc<Cluster>),
}

/// The store is down: a probe is reconnecting, and nothing waits for it meanwhile.
#[derive(Debug, thiserror::Error)]
#[error("the Redis store is down (a probe is reconnecting)")]
pub struct StoreDown;

/// Whether the store answers, and the probe that finds out when it does not.
#[derive(Debug)]
struct Health {
    down: AtomicBool,
    probing: AtomicBool,
    /// Milliseconds since `epoch` of the last probe's start.
    last_probe: AtomicU64,
    epoch: Instant,
}

impl Health {
    fn new() -> Self {
        Self {
            down: AtomicBool::new(false),
            probing: AtomicBool::new(false),
            last_probe: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

pub struct Cluster {
    client: ClusterClient,
    connections: Box<[OnceCell<ClusterConnection>]>,
}

impl Redis {
    /// `url` is the server, or with `cluster` any node of the cluster (the others are found
    /// from it); `pools` is the number of server workers, each of which gets a connection.
    pub fn new(url: &str, cluster: bool, pools: usize) -> Result<Self, String> {
        let connections = if cluster {
            let client = ClusterClient::builder([url])
                .connection_timeout(Duration::from_secs(1))
                .retries(1)
                .build()
                .map_err(|e| e.to_string())?;
            Connections::Cluster(Arc::new(Cluster {
                client,
                connections: (0..pools.max(1)).map(|_| OnceCell::new()).collect(),
            }))
        } else {
            Connections::Single(
                (0..pools.max(1))
                    .map(|_| connect_lazily(url))
                    .collect::<Result<_, _>>()?,
            )
        };
        Ok(Self {
            connections,
            health: Arc::new(Health::new()),
        })
    }

    pub fn is_cluster(&self) -> bool {
        matches!(self.connections, Connections::Cluster(_))
    }

    /// `Err(StoreDown)` at once while the store is known to be down (starting a probe when
    /// one is due); `Ok` when a command is worth sending.
    pub fn available(&self) -> Result<(), StoreDown> {
        let health = &*self.health;
        if !health.down.load(Ordering::Relaxed) {
            return Ok(());
        }
        let now = health.now_ms();
        let last = health.last_probe.load(Ordering::Relaxed);
        let due = now.saturating_sub(last) >= PROBE_INTERVAL.as_millis() as u64;
        if due && !health.probing.swap(true, Ordering::Relaxed) {
            health.last_probe.store(now, Ordering::Relaxed);
            let redis = self.clone();
            tokio::spawn(async move {
                let ping = async {
                    let mut connection = redis.connection().await?;
                    redis::cmd("PING")
                        .query_async::<String>(&mut connection)
                        .await
                };
                if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_secs(1), ping).await {
                    redis.record(true);
                }
                redis.health.probing.store(false, Ordering::Relaxed);
            });
        }
        Err(StoreDown)
    }

    /// Records how a command fared: a failure (or timeout) marks the store down, an answer up.
    pub fn record(&self, answered: bool) {
        let was_down = self.health.down.swap(!answered, Ordering::Relaxed);
        match (was_down, answered) {
            (false, false) => tracing::warn!(
                "Redis store down: requests decide without it until a probe (every {PROBE_INTERVAL:?}) gets an answer"
            ),
            (true, true) => tracing::info!("Redis store available again"),
            _ => {}
        }
    }

    /// A connection to send commands on. For a cluster, the first call connects in a task of
    /// its own, so a caller's timeout never abandons a half-made connection.
    pub async fn connection(&self) -> redis::RedisResult<Connection> {
        match &self.connections {
            Connections::Single(managers) => Ok(Connection::Single(
                managers[worker_slot(managers.len())].clone(),
            )),
            Connections::Cluster(cluster) => {
                let slot = worker_slot(cluster.connections.len());
                if let Some(ready) = cluster.connections[slot].get() {
                    return Ok(Connection::Cluster(ready.clone()));
                }
                let cluster = cluster.clone();
                let connecting = tokio::spawn(async move {
                    cluster.connections[slot]
                        .get_or_try_init(|| cluster.client.get_async_connection())
                        .await
                        .cloned()
                });
                match connecting.await {
                    Ok(result) => result.map(Connection::Cluster),
                    Err(_) => Err(redis::RedisError::from((
                        redis::ErrorKind::Io,
                        "the cluster connection task failed",
                    ))),
                }
            }
        }
    }
}

/// One of the two connection kinds, usable wherever the redis crate takes a connection.
#[derive(Clone)]
pub enum Connection {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Connection::Single(c) => c.req_packed_command(cmd),
            Connection::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Connection::Single(c) => c.req_packed_commands(cmd, offset, count),
            Connection::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Connection::Single(c) => c.get_db(),
            Connection::Cluster(c) => c.get_db(),
        }
    }
}
