//! `[cache]`: the capture cache (`cache=true`): where its entries live, how many bytes they may
//! take, and the lifetimes a request may ask for.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Where the cache's entries live.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum CacheBackend {
    /// This host's disk (`dir`, bounded by `max_bytes`): each host has its own cache.
    #[default]
    Disk,
    /// The `[storage]` bucket, indexed in Redis: every host shares one cache. The bucket's own
    /// lifecycle rules bound it (`max_bytes` does not apply).
    Bucket,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct CacheConfig {
    /// Off: `cache=true` is a 400 and nothing is stored.
    pub enabled: bool,
    /// `disk` (each host its own) or `bucket` (the `[storage]` bucket, shared by every host).
    pub backend: CacheBackend,
    /// Whether a capture that does not say `cache` is cached (the operator's default).
    pub default_on: bool,
    /// Directory of the entries on this host; "" = `$CACHE_DIRECTORY` (systemd's
    /// `CacheDirectory=`) when set, else `shotfarm_cache` in the system temp directory. One
    /// daemon per directory.
    pub dir: PathBuf,
    /// Most bytes the entries may take on disk; the least recently used go first.
    pub max_bytes: u64,
    /// Largest single entry stored (bytes); a larger capture is answered, not kept.
    pub max_entry_bytes: u64,
    /// Lifetime of an entry when the request gives no `cache_ttl` (seconds).
    pub default_ttl_secs: u64,
    /// Longest `cache_ttl` a request may ask for (seconds).
    pub max_ttl_secs: u64,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            backend: CacheBackend::Disk,
            default_on: false,
            dir: PathBuf::new(),
            max_bytes: 1 << 30,
            max_entry_bytes: 32 << 20,
            default_ttl_secs: 14_400,
            max_ttl_secs: 2_592_000,
        }
    }
}

impl CacheConfig {
    /// The directory the entries live in, `dir` resolved.
    pub fn directory(&self) -> PathBuf {
        if !self.dir.as_os_str().is_empty() {
            return self.dir.clone();
        }
        match std::env::var_os("CACHE_DIRECTORY") {
            // systemd may list several, separated by ':'; ours is the first.
            Some(dirs) if !dirs.is_empty() => {
                let dirs = dirs.to_string_lossy().into_owned();
                PathBuf::from(dirs.split(':').next().unwrap_or_default()).join("captures")
            }
            // Not `shotfarm-…`: that is what browser profiles in the temp directory are named.
            _ => std::env::temp_dir().join("shotfarm_cache"),
        }
    }
}
