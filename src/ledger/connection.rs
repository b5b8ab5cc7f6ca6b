//! The process's Redis connection: one multiplexed connection (redis-rs `ConnectionManager`,
//! which reconnects by itself) shared by the ledger actor and the accounts store. The first
//! connection is made in the background so the daemon starts, and answers 503, while Redis is
//! down.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::OnceCell;

use super::LedgerError;
use crate::config::RedisConfig;

#[derive(Clone)]
pub struct RedisHandle {
    inner: Arc<Inner>,
}

struct Inner {
    client: redis::Client,
    manager_config: ConnectionManagerConfig,
    connection: OnceCell<ConnectionManager>,
}

impl RedisHandle {
    /// Checks the URL; connects nothing yet.
    pub fn new(config: &RedisConfig) -> Result<Self, LedgerError> {
        let client = redis::Client::open(config.url.as_str())
            .map_err(|e| LedgerError::Unavailable(format!("bad redis.url: {e}")))?;
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_millis(config.connect_timeout_ms)))
            .set_response_timeout(Some(Duration::from_millis(config.response_timeout_ms)))
            .set_number_of_retries(2)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_millis(1_000));
        Ok(RedisHandle {
            inner: Arc::new(Inner {
                client,
                manager_config,
                connection: OnceCell::new(),
            }),
        })
    }

    /// The connection, or `Unavailable` while the first connection has not been made.
    pub fn get(&self) -> Result<ConnectionManager, LedgerError> {
        self.inner
            .connection
            .get()
            .cloned()
            .ok_or_else(|| LedgerError::Unavailable("not connected to Redis yet".into()))
    }

    /// Connects now (once); later calls return the same connection.
    pub async fn connect(&self) -> Result<ConnectionManager, LedgerError> {
        let inner = &self.inner;
        inner
            .connection
            .get_or_try_init(|| async {
                let mut conn = ConnectionManager::new_with_config(
                    inner.client.clone(),
                    inner.manager_config.clone(),
                )
                .await
                .map_err(LedgerError::from)?;
                super::store::load_scripts(&mut conn).await?;
                Ok::<_, LedgerError>(conn)
            })
            .await
            .cloned()
    }

    /// Keeps trying to connect in the background until it succeeds.
    pub fn connect_in_background(&self) {
        let handle = self.clone();
        tokio::spawn(async move {
            let mut delay = Duration::from_millis(100);
            loop {
                match handle.connect().await {
                    Ok(_) => {
                        tracing::info!("connected to Redis");
                        return;
                    }
                    Err(e) => {
                        tracing::warn!("cannot reach Redis yet ({e}); retrying in {delay:?}");
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(Duration::from_secs(2));
                    }
                }
            }
        });
    }

    /// Whether Redis answers a `PING` now.
    pub async fn ping(&self) -> bool {
        match self.get() {
            Ok(mut conn) => redis::cmd("PING")
                .query_async::<String>(&mut conn)
                .await
                .is_ok(),
            Err(_) => false,
        }
    }
}
