//! The capture cache: lookups, stores and evictions.

use super::{labels, InternalEvent, Label};
use crate::telemetry::Metrics;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LookupResult {
    Hit,
    Miss,
    /// An entry was found past its lifetime (and removed): a miss.
    Expired,
}
labels!(LookupResult {
    Hit => "hit",
    Miss => "miss",
    Expired => "expired",
});

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreResult {
    Stored,
    /// Larger than `cache.max_entry_bytes`: answered, not kept.
    TooLarge,
    /// The disk refused it (full, unwritable): answered, not kept.
    Failed,
}
labels!(StoreResult {
    Stored => "stored",
    TooLarge => "too_large",
    Failed => "failed",
});

/// One lookup of a capture in the cache.
pub struct CacheLookup {
    pub result: LookupResult,
}

impl CacheLookup {
    /// Every lookup and store series, at zero.
    pub fn register(metrics: &Metrics) {
        for r in LookupResult::ALL {
            metrics.cache_lookups_total.with_label_values(&[r.label()]);
        }
        for r in StoreResult::ALL {
            metrics.cache_stores_total.with_label_values(&[r.label()]);
        }
    }
}

impl InternalEvent for CacheLookup {
    fn emit(self, metrics: &Metrics) {
        metrics
            .cache_lookups_total
            .with_label_values(&[self.result.label()])
            .inc();
        tracing::debug!(result = self.result.label(), "cache lookup");
    }
}

/// One capture offered to the cache.
pub struct CacheStore<'a> {
    pub result: StoreResult,
    pub bytes: usize,
    /// Why it was not stored.
    pub why: &'a str,
}

impl InternalEvent for CacheStore<'_> {
    fn emit(self, metrics: &Metrics) {
        metrics
            .cache_stores_total
            .with_label_values(&[self.result.label()])
            .inc();
        match self.result {
            StoreResult::Stored => tracing::debug!(bytes = self.bytes, "capture cached"),
            StoreResult::TooLarge => {
                tracing::debug!(bytes = self.bytes, "capture too large to cache")
            }
            StoreResult::Failed => {
                tracing::warn!(bytes = self.bytes, "capture not cached: {}", self.why)
            }
        }
    }
}

/// Entries removed to stay under the byte bound, and the cache's size after.
pub struct CacheEvicted {
    pub entries: usize,
    pub total_bytes: u64,
    pub total_entries: usize,
}

impl InternalEvent for CacheEvicted {
    fn emit(self, metrics: &Metrics) {
        metrics.cache_evictions_total.inc_by(self.entries as u64);
        metrics
            .cache_bytes
            .set(i64::try_from(self.total_bytes).unwrap_or(i64::MAX));
        metrics
            .cache_entries
            .set(i64::try_from(self.total_entries).unwrap_or(i64::MAX));
        if self.entries > 0 {
            tracing::debug!(evicted = self.entries, "cache entries evicted");
        }
    }
}
