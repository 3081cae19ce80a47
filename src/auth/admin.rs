//! `proxyfn keys add|revoke|list PROVIDER`: API keys kept in Redis, managed at runtime
//! (providers with `store = "redis"`).

use super::api_keys::{RedisKeys, StoredKey, generate_key};
use crate::{admin::AdminError, config::Plan};

/// What to do with a provider's keys.
pub enum KeysAction {
    /// Adds a key (`key`, else a new one) for `id`; the key is shown once, only its SHA-256
    /// is stored.
    Add {
        id: String,
        scopes: Vec<String>,
        key: Option<String>,
    },
    /// Removes every key of `id`.
    Revoke { id: String },
    /// The keys' principals and scopes, never the keys.
    List,
}

/// Runs `action` on `provider`'s keys; returns what to print.
pub async fn run(plan: &Plan, provider: &str, action: KeysAction) -> Result<String, AdminError> {
    let Some(redis_url) = plan
        .auth
        .api_keys
        .get(provider)
        .and_then(|p| p.redis_url.as_ref())
    else {
        return Err(AdminError::Config(format!(
            "auth.api_keys.{provider} is not configured with store = \"redis\""
        )));
    };
    let store = RedisKeys::new(redis_url, provider);
    match action {
        KeysAction::Add { id, scopes, key } => {
            let key = match key {
                Some(key) => key,
                None => generate_key().map_err(AdminError::Failed)?,
            };
            store
                .add(
                    &key,
                    &StoredKey {
                        id: id.clone(),
                        scopes,
                    },
                )
                .await
                .map_err(AdminError::Failed)?;
            eprintln!("added a key for {id:?}; it is shown only now");
            Ok(key)
        }
        KeysAction::Revoke { id } => {
            let removed = store.revoke(&id).await.map_err(AdminError::Failed)?;
            Ok(format!("revoked {removed} key(s) of {id:?}"))
        }
        KeysAction::List => {
            let lines: Vec<String> = store
                .list()
                .await
                .map_err(AdminError::Failed)?
                .into_iter()
                .map(|(digest, stored)| {
                    format!(
                        "{}  {}  {}",
                        &digest[..12],
                        stored.id,
                        stored.scopes.join(" ")
                    )
                })
                .collect();
            Ok(lines.join("\n"))
        }
    }
}
