//! The one way the gateway connects to Redis (API keys, rate limits): a multiplexed,
//! auto-reconnecting connection built at start-up and connected on first use, so a cold
//! start never waits on Redis and a Redis restart heals without restarting the gateway.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

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
