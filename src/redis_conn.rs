//! The one way the gateway connects to Redis (API keys, rate limits): a multiplexed,
//! auto-reconnecting connection built at start-up and connected on first use, so a cold
//! start never waits on Redis and a Redis restart heals without restarting the gateway.
//! [`Redis`] also speaks to a Redis Cluster, where commands are routed by key slot.
//!
//! In server mode each worker thread gets its own connection (see [`crate::runtime::worker`]),
//! so a command is sent and its reply read by the thread that asked, as with upstream pools.

use std::{sync::Arc, time::Duration};

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

/// A standalone server (through a [`ConnectionManager`]) or a cluster, connected lazily;
/// one connection per worker thread.
#[derive(Clone)]
pub enum Redis {
    Single(Arc<[ConnectionManager]>),
    Cluster(Arc<Cluster>),
}

pub struct Cluster {
    client: ClusterClient,
    connections: Box<[OnceCell<ClusterConnection>]>,
}

impl Redis {
    /// `url` is the server, or with `cluster` any node of the cluster (the others are found
    /// from it); `pools` is the number of server workers, each of which gets a connection.
    pub fn new(url: &str, cluster: bool, pools: usize) -> Result<Self, String> {
        if !cluster {
            return (0..pools.max(1))
                .map(|_| connect_lazily(url))
                .collect::<Result<_, _>>()
                .map(Redis::Single);
        }
        let client = ClusterClient::builder([url])
            .connection_timeout(Duration::from_secs(1))
            .retries(1)
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Redis::Cluster(Arc::new(Cluster {
            client,
            connections: (0..pools.max(1)).map(|_| OnceCell::new()).collect(),
        })))
    }

    pub fn is_cluster(&self) -> bool {
        matches!(self, Redis::Cluster(_))
    }

    /// A connection to send commands on. For a cluster, the first call connects in a task of
    /// its own, so a caller's timeout never abandons a half-made connection.
    pub async fn connection(&self) -> redis::RedisResult<Connection> {
        match self {
            Redis::Single(managers) => Ok(Connection::Single(
                managers[worker_slot(managers.len())].clone(),
            )),
            Redis::Cluster(cluster) => {
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
