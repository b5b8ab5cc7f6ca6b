//! The shared cache: entries in the `[storage]` bucket (under `<prefix>/cache/`), their
//! lifetimes in Redis ([`CacheIndex`]). Every host sees every entry; a miss costs one Redis
//! read, a hit one Redis read and one bucket GET. The bucket is bounded by its own lifecycle
//! rules (an entry past its lifetime is never served, whatever the bucket still holds).

use std::time::Duration;

use bytes::Bytes;

use super::format;
use super::index::CacheIndex;
use super::key::CacheKey;
use crate::storage::Storage;

#[derive(Clone)]
pub struct BucketCache {
    storage: Storage,
    pub(super) index: CacheIndex,
}

impl BucketCache {
    pub fn new(storage: Storage, index: CacheIndex) -> Self {
        BucketCache { storage, index }
    }

    fn object(&self, key: &CacheKey) -> String {
        let prefix = self.storage.prefix().trim_end_matches('/');
        if prefix.is_empty() {
            format!("cache/{}", key.as_str())
        } else {
            format!("{prefix}/cache/{}", key.as_str())
        }
    }

    /// The live entry's metadata and body, or `None` (absent, expired, or unreadable).
    pub async fn read(&self, key: &CacheKey) -> anyhow::Result<Option<(Vec<u8>, Bytes)>> {
        if self.index.expiry(key.as_str()).await?.is_none() {
            return Ok(None);
        }
        let Some((bytes, _)) = self.storage.get(&self.object(key)).await? else {
            // Indexed but gone from the bucket (a lifecycle rule was quicker): forget it.
            self.index.forget(key.as_str()).await?;
            return Ok(None);
        };
        match format::decode(bytes.as_ref()) {
            Ok(entry) => Ok(Some(entry)),
            Err(e) => {
                self.index.forget(key.as_str()).await?;
                Err(anyhow::anyhow!(
                    "cache object {} unreadable: {e}",
                    self.object(key)
                ))
            }
        }
    }

    /// Uploads the entry, then publishes it (until `expires_ms`, for `ttl`).
    pub async fn write(
        &self,
        key: &CacheKey,
        meta: &[u8],
        body: &[u8],
        expires_ms: i64,
        ttl: Duration,
    ) -> anyhow::Result<()> {
        let bytes = Bytes::from(format::encode(meta, body)?);
        self.storage
            .put(&self.object(key), bytes, "application/octet-stream", &[])
            .await?;
        self.index.publish(key.as_str(), expires_ms, ttl).await?;
        Ok(())
    }

    /// Unpublishes an entry.
    pub async fn remove(&self, key: &CacheKey) -> anyhow::Result<()> {
        self.index.forget(key.as_str()).await?;
        Ok(())
    }
}
