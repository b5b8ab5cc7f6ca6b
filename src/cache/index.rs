//! The shared cache's bookkeeping in Redis, which every host agrees on: which entries live
//! (a key per entry that expires with it, so a miss costs one Redis read and no bucket request)
//! and which host is capturing a missing entry now (so a burst across hosts is charged once).
//! The cache's store: its only Redis commands; key names are in `ledger::keys`.

use std::time::Duration;

use redis::Script;

use crate::ledger::keys;
use crate::ledger::{LedgerError, RedisHandle};

/// Deletes the fill claim only if it is still this host's (it may have expired and been taken).
const END_FILL: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
";

#[derive(Clone)]
pub struct CacheIndex {
    redis: RedisHandle,
}

impl CacheIndex {
    pub fn new(redis: RedisHandle) -> Self {
        CacheIndex { redis }
    }

    /// When the live entry `key` expires (ms since the epoch), or `None` when there is none.
    pub async fn expiry(&self, key: &str) -> Result<Option<i64>, LedgerError> {
        let mut conn = self.redis.get()?;
        let at: Option<i64> = redis::cmd("GET")
            .arg(keys::cache_entry(key))
            .query_async(&mut conn)
            .await?;
        Ok(at)
    }

    /// Marks `key` live until `expires_ms`, for `ttl`.
    pub async fn publish(
        &self,
        key: &str,
        expires_ms: i64,
        ttl: Duration,
    ) -> Result<(), LedgerError> {
        let mut conn = self.redis.get()?;
        let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let _: () = redis::cmd("SET")
            .arg(keys::cache_entry(key))
            .arg(expires_ms)
            .arg("PX")
            .arg(ms)
            .query_async(&mut conn)
            .await?;
        Ok(())
    }

    /// Forgets `key` (its object could not be read).
    pub async fn forget(&self, key: &str) -> Result<(), LedgerError> {
        let mut conn = self.redis.get()?;
        let _: i64 = redis::cmd("DEL")
            .arg(keys::cache_entry(key))
            .query_async(&mut conn)
            .await?;
        Ok(())
    }

    /// Claims the capture of missing `key` for `hold` (true), unless another host holds it.
    pub async fn claim_fill(
        &self,
        key: &str,
        token: &str,
        hold: Duration,
    ) -> Result<bool, LedgerError> {
        let mut conn = self.redis.get()?;
        let ms = u64::try_from(hold.as_millis()).unwrap_or(u64::MAX).max(1);
        let set: Option<String> = redis::cmd("SET")
            .arg(keys::cache_fill(key))
            .arg(token)
            .arg("NX")
            .arg("PX")
            .arg(ms)
            .query_async(&mut conn)
            .await?;
        Ok(set.is_some())
    }

    /// Whether some host is capturing `key` now.
    pub async fn filling(&self, key: &str) -> Result<bool, LedgerError> {
        let mut conn = self.redis.get()?;
        let n: i64 = redis::cmd("EXISTS")
            .arg(keys::cache_fill(key))
            .query_async(&mut conn)
            .await?;
        Ok(n > 0)
    }

    /// Ends this host's claim on `key` (stored or failed: others stop waiting).
    pub async fn end_fill(&self, key: &str, token: &str) -> Result<(), LedgerError> {
        let mut conn = self.redis.get()?;
        let _: i64 = Script::new(END_FILL)
            .key(keys::cache_fill(key))
            .arg(token)
            .invoke_async(&mut conn)
            .await?;
        Ok(())
    }
}
