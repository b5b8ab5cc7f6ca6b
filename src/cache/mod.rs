//! The capture cache: a capture asked for again within its lifetime (`cache=true`) is answered
//! from here, free; the capture that filled the entry was charged once.
//!
//! - [`key`]: what an entry is keyed by (the account and every option that changes the image).
//! - [`disk`]: the entries on this host's disk, bounded in bytes, least recently used first
//!   out, safe across restarts (`cache.backend = "disk"`, the default).
//! - [`bucket`]: the entries in the `[storage]` bucket, shared by every host
//!   (`cache.backend = "bucket"`), with [`index`]: their lifetimes and fill claims in Redis.
//! - [`format`]: an entry as bytes (the same on disk and in the bucket).
//!
//! A burst of one missing capture on one daemon is captured once: the first request claims the
//! key ([`Cache::claim`]), the others wait for it and are then served from the entry.
//!
//! Invariant: an entry is stored only after its capture was charged ([`Cache::store`] is called
//! after a commit that charged), so every hit is backed by exactly one charge.

pub mod bucket;
pub mod disk;
pub mod format;
pub mod index;
pub mod key;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::config::{CacheBackend, CacheConfig};
use crate::farm::{CaptureOutput, PageInfo};
use crate::ledger::RedisHandle;
use crate::storage::Storage;
use crate::telemetry::events::{
    CacheEvicted, CacheLookup, CacheStore, InternalEvent, LookupResult, StoreResult,
};
use crate::telemetry::Metrics;
use crate::timestamps::now_ms;

/// How often a host waiting for another host's capture of the same entry looks again.
const SHARED_POLL: Duration = Duration::from_millis(100);

pub use bucket::BucketCache;
pub use disk::DiskCache;
pub use index::CacheIndex;
pub use key::CacheKey;

/// What is kept beside an entry's image.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EntryMeta {
    /// `png`, `jpeg`, `webp` or `pdf`.
    pub format: String,
    pub width: u32,
    pub height: u32,
    pub truncated: bool,
    #[serde(default)]
    pub page: Option<PageInfo>,
    /// When the capture was made and when the entry stops being served (ms since the epoch).
    pub created_ms: i64,
    pub expires_ms: i64,
    /// The request whose capture filled the entry (and was charged for it).
    pub request_id: String,
}

/// A cached capture.
#[derive(Debug, Clone)]
pub struct Entry {
    pub meta: EntryMeta,
    pub image: Bytes,
}

impl Entry {
    /// The entry of a capture made now, served for `ttl`.
    pub fn of(output: &CaptureOutput, ttl: Duration, request_id: &str) -> Entry {
        let created_ms = now_ms();
        Entry {
            meta: EntryMeta {
                format: output.format.as_str().to_string(),
                width: output.width,
                height: output.height,
                truncated: output.truncated,
                page: output.page.clone(),
                created_ms,
                expires_ms: created_ms
                    .saturating_add(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX)),
                request_id: request_id.to_string(),
            },
            image: output.image.clone(),
        }
    }
}

/// Where the entries are.
#[derive(Clone)]
enum Backend {
    Disk(DiskCache),
    Bucket(BucketCache),
}

/// The cache of one daemon (cheap to clone).
#[derive(Clone)]
pub struct Cache {
    backend: Backend,
    max_entry_bytes: u64,
    metrics: Arc<Metrics>,
    /// Keys being captured now, each with the channel its waiters watch (closed when the
    /// capture ends, stored or not).
    filling: Arc<Mutex<HashMap<CacheKey, watch::Receiver<()>>>>,
}

/// Who captures a missing entry when several requests want it at once.
pub enum Claim {
    /// This request captures it; the others wait until the guard is dropped.
    Fill(FillGuard),
    /// Another request of this daemon is capturing it: wait for it, then look again.
    Wait(watch::Receiver<()>),
}

/// Held by the one request capturing a key; dropping it (the entry stored, or the capture
/// failed) wakes the waiters.
pub struct FillGuard {
    filling: Arc<Mutex<HashMap<CacheKey, watch::Receiver<()>>>>,
    key: CacheKey,
    _done: watch::Sender<()>,
    /// The claim in Redis (shared cache): ended on drop, so other hosts stop waiting.
    shared: Option<(CacheIndex, String)>,
}

impl Drop for FillGuard {
    fn drop(&mut self) {
        self.filling
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.key);
        if let (Some((index, token)), Ok(runtime)) =
            (self.shared.take(), tokio::runtime::Handle::try_current())
        {
            let key = self.key.as_str().to_string();
            runtime.spawn(async move {
                if let Err(e) = index.end_fill(&key, &token).await {
                    tracing::debug!("cache fill claim not ended (it expires): {e}");
                }
            });
        }
    }
}

impl Cache {
    /// Opens the configured backend: the directory (`cache.dir`, scanned: blocking, at start)
    /// or the bucket (`storage`, with its index on `redis`).
    pub fn open(
        config: &CacheConfig,
        storage: Option<Storage>,
        redis: RedisHandle,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Cache> {
        let backend = match config.backend {
            CacheBackend::Disk => {
                let dir = config.directory();
                let (disk, usage) = DiskCache::open(&dir, config.max_bytes)
                    .map_err(|e| anyhow::anyhow!("cache.dir: cannot use {}: {e}", dir.display()))?;
                CacheEvicted {
                    entries: usage.evicted,
                    total_bytes: usage.bytes,
                    total_entries: usage.entries,
                }
                .emit(&metrics);
                tracing::info!(dir = %dir.display(), entries = usage.entries, bytes = usage.bytes, "capture cache on disk");
                Backend::Disk(disk)
            }
            CacheBackend::Bucket => {
                let storage = storage.ok_or_else(|| {
                    anyhow::anyhow!("cache.backend: \"bucket\" needs a bucket in [storage]")
                })?;
                tracing::info!(
                    bucket = storage.bucket(),
                    "capture cache in the bucket, shared"
                );
                Backend::Bucket(BucketCache::new(storage, CacheIndex::new(redis)))
            }
        };
        Ok(Cache {
            backend,
            max_entry_bytes: config.max_entry_bytes,
            metrics,
            filling: Arc::default(),
        })
    }

    /// Claims the capture of a missing entry: the first request for a key fills it, the ones
    /// that come while it runs wait for it (so a burst of the same capture is charged once).
    pub fn claim(&self, key: &CacheKey) -> Claim {
        let mut filling = self.filling.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(rx) = filling.get(key) {
            return Claim::Wait(rx.clone());
        }
        let (tx, rx) = watch::channel(());
        filling.insert(key.clone(), rx);
        Claim::Fill(FillGuard {
            filling: self.filling.clone(),
            key: key.clone(),
            _done: tx,
            shared: None,
        })
    }

    /// With the shared cache, claims the capture of `key` across hosts for `hold` (until the
    /// capture's deadline). `Ok(true)`: this host captures it (or Redis failed: capture
    /// anyway); `Ok(false)`: another host is capturing it, wait with [`Cache::wait_for_fill`].
    pub async fn claim_shared(&self, guard: &mut FillGuard, hold: Duration) -> bool {
        let Backend::Bucket(bucket) = &self.backend else {
            return true;
        };
        let token = uuid::Uuid::new_v4().simple().to_string();
        match bucket
            .index
            .claim_fill(guard.key.as_str(), &token, hold)
            .await
        {
            Ok(true) => {
                guard.shared = Some((bucket.index.clone(), token));
                true
            }
            Ok(false) => false,
            Err(e) => {
                tracing::warn!("cache fill claim failed, capturing anyway: {e}");
                true
            }
        }
    }

    /// Waits (until `deadline`) while another host captures `key`: until its entry is
    /// published or its claim ends.
    pub async fn wait_for_fill(&self, key: &CacheKey, deadline: std::time::Instant) {
        let Backend::Bucket(bucket) = &self.backend else {
            return;
        };
        while std::time::Instant::now() < deadline {
            tokio::time::sleep(SHARED_POLL).await;
            let published = bucket.index.expiry(key.as_str()).await;
            let filling = bucket.index.filling(key.as_str()).await;
            match (published, filling) {
                (Ok(Some(_)), _) | (_, Ok(false)) | (Err(_), _) | (_, Err(_)) => return,
                (Ok(None), Ok(true)) => {}
            }
        }
    }

    /// The live entry for `key`, if any. An expired one is removed and is a miss; a backend
    /// that fails (the bucket or Redis down) is logged and is a miss.
    pub async fn lookup(&self, key: &CacheKey) -> Option<Entry> {
        let read = match &self.backend {
            Backend::Disk(disk) => {
                let disk = disk.clone();
                let owned = key.clone();
                tokio::task::spawn_blocking(move || disk.read(&owned))
                    .await
                    .ok()
                    .flatten()
            }
            Backend::Bucket(bucket) => match bucket.read(key).await {
                Ok(read) => read,
                Err(e) => {
                    tracing::warn!("shared cache lookup failed, capturing instead: {e:#}");
                    None
                }
            },
        };
        let entry = read.and_then(|(meta, image)| match serde_json::from_slice(&meta) {
            Ok(meta) => Some(Entry { meta, image }),
            Err(e) => {
                tracing::warn!("cache entry {} has bad metadata: {e}", key.as_str());
                None
            }
        });
        let result = match &entry {
            None => LookupResult::Miss,
            Some(e) if e.meta.expires_ms <= now_ms() => LookupResult::Expired,
            Some(_) => LookupResult::Hit,
        };
        CacheLookup { result }.emit(&self.metrics);
        match result {
            LookupResult::Hit => entry,
            LookupResult::Expired => {
                self.remove(key).await;
                None
            }
            LookupResult::Miss => None,
        }
    }

    /// Removes an entry (expired, or not to be served).
    pub async fn remove(&self, key: &CacheKey) {
        match &self.backend {
            Backend::Disk(disk) => {
                let disk = disk.clone();
                let key = key.clone();
                let _ = tokio::task::spawn_blocking(move || disk.remove(&key)).await;
            }
            Backend::Bucket(bucket) => {
                if let Err(e) = bucket.remove(key).await {
                    tracing::warn!("shared cache entry not removed: {e:#}");
                }
            }
        }
    }

    /// Keeps a charged capture. A failure (a full disk) is logged and counted; the capture was
    /// answered anyway.
    pub async fn store(&self, key: &CacheKey, entry: Entry) {
        let bytes = entry.image.len();
        if bytes as u64 > self.max_entry_bytes {
            CacheStore {
                result: StoreResult::TooLarge,
                bytes,
                why: "",
            }
            .emit(&self.metrics);
            return;
        }
        let meta = match serde_json::to_vec(&entry.meta) {
            Ok(meta) => meta,
            Err(e) => {
                tracing::error!("cache metadata not serializable: {e}");
                return;
            }
        };
        let failed = |why: String| {
            CacheStore {
                result: StoreResult::Failed,
                bytes,
                why: &why,
            }
            .emit(&self.metrics)
        };
        match &self.backend {
            Backend::Disk(disk) => {
                let disk = disk.clone();
                let owned = key.clone();
                let written =
                    tokio::task::spawn_blocking(move || disk.write(&owned, &meta, &entry.image))
                        .await;
                match written {
                    Ok(Ok(usage)) => {
                        self.stored(bytes);
                        CacheEvicted {
                            entries: usage.evicted,
                            total_bytes: usage.bytes,
                            total_entries: usage.entries,
                        }
                        .emit(&self.metrics);
                    }
                    Ok(Err(e)) => failed(e.to_string()),
                    Err(e) => failed(e.to_string()),
                }
            }
            Backend::Bucket(bucket) => {
                let left = entry.meta.expires_ms - now_ms();
                let ttl = Duration::from_millis(u64::try_from(left).unwrap_or(0));
                if ttl.is_zero() {
                    return;
                }
                match bucket
                    .write(key, &meta, &entry.image, entry.meta.expires_ms, ttl)
                    .await
                {
                    Ok(()) => self.stored(bytes),
                    Err(e) => failed(format!("{e:#}")),
                }
            }
        }
    }

    fn stored(&self, bytes: usize) {
        CacheStore {
            result: StoreResult::Stored,
            bytes,
            why: "",
        }
        .emit(&self.metrics);
    }
}
