//! The cache's entries on this host's disk: one file per entry, bounded in bytes, least
//! recently used first out.
//!
//! An entry file holds one entry as [`format`] writes it. It is written to a temporary file and renamed into place, so a reader
//! (or a daemon restarted after a crash) sees a whole entry or none; a file that does not parse
//! is removed and counts as a miss. The index of sizes and use order lives in memory, rebuilt
//! from the directory at start (file modification times keep the use order across restarts),
//! so the bound holds across restarts too.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use bytes::Bytes;
use lru::LruCache;

use super::format;
use super::key::CacheKey;

const ENTRY_SUFFIX: &str = ".entry";
const TEMP_SUFFIX: &str = ".tmp";

/// What an eviction pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub evicted: usize,
    pub bytes: u64,
    pub entries: usize,
}

struct Index {
    /// Each entry's size, least recently used first.
    lru: LruCache<CacheKey, u64>,
    bytes: u64,
}

#[derive(Clone)]
pub struct DiskCache {
    dir: Arc<PathBuf>,
    max_bytes: u64,
    index: Arc<Mutex<Index>>,
}

impl DiskCache {
    /// Opens (creating) `dir`: removes what a crash left half-written, indexes the entries
    /// in their order of last use, and evicts down to `max_bytes`. Blocking.
    pub fn open(dir: &Path, max_bytes: u64) -> io::Result<(DiskCache, Usage)> {
        fs::create_dir_all(dir)?;
        let mut found: Vec<(SystemTime, CacheKey, u64)> = Vec::new();
        for item in fs::read_dir(dir)? {
            let item = item?;
            let name = item.file_name();
            let name = name.to_string_lossy();
            if name.ends_with(TEMP_SUFFIX) {
                let _ = fs::remove_file(item.path());
                continue;
            }
            let Some(key) = name.strip_suffix(ENTRY_SUFFIX).and_then(CacheKey::parse) else {
                continue;
            };
            let Ok(meta) = item.metadata() else { continue };
            if meta.is_file() {
                let used = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
                found.push((used, key, meta.len()));
            }
        }
        found.sort_by_key(|a| a.0);
        let mut index = Index {
            lru: LruCache::unbounded(),
            bytes: 0,
        };
        for (_, key, size) in found {
            index.bytes += size;
            index.lru.push(key, size);
        }
        let cache = DiskCache {
            dir: Arc::new(dir.to_path_buf()),
            max_bytes,
            index: Arc::new(Mutex::new(index)),
        };
        let usage = cache.evict();
        Ok((cache, usage))
    }

    fn path(&self, key: &CacheKey) -> PathBuf {
        self.dir.join(format!("{}{ENTRY_SUFFIX}", key.as_str()))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Index> {
        // A panic while holding the lock leaves sizes that are still sizes: carry on.
        self.index.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The entry's metadata and body, or `None` (absent, or unreadable: then removed).
    /// Blocking.
    pub fn read(&self, key: &CacheKey) -> Option<(Vec<u8>, Bytes)> {
        // Unknown to the index: not ours (or evicted). Known: now the most recently used.
        self.lock().lru.get(key)?;
        let path = self.path(key);
        match read_entry(&path) {
            Ok(entry) => {
                // The use order survives a restart through the file's time.
                if let Ok(f) = fs::File::options().write(true).open(&path) {
                    let _ = f.set_modified(SystemTime::now());
                }
                Some(entry)
            }
            Err(e) => {
                if e.kind() != io::ErrorKind::NotFound {
                    tracing::warn!("cache entry {} unreadable, removed: {e}", key.as_str());
                }
                self.remove(key);
                None
            }
        }
    }

    /// Writes the entry (replacing one of the same key), then evicts the least recently used
    /// entries until the bound holds again. Blocking.
    pub fn write(&self, key: &CacheKey, meta: &[u8], body: &[u8]) -> io::Result<Usage> {
        let meta_len = format::meta_len(meta)?;
        let temp = self.dir.join(format!(
            "{}.{}{TEMP_SUFFIX}",
            key.as_str(),
            uuid::Uuid::new_v4().simple()
        ));
        let written = (|| {
            let mut f = fs::File::create(&temp)?;
            f.write_all(&format::head(meta_len))?;
            f.write_all(meta)?;
            f.write_all(body)?;
            f.flush()?;
            fs::rename(&temp, self.path(key))
        })();
        if let Err(e) = written {
            // A full disk leaves no half entry behind.
            let _ = fs::remove_file(&temp);
            return Err(e);
        }
        let size = (format::HEAD + meta.len() + body.len()) as u64;
        {
            let mut index = self.lock();
            if let Some(old) = index.lru.put(key.clone(), size) {
                index.bytes -= old.min(index.bytes);
            }
            index.bytes += size;
        }
        Ok(self.evict())
    }

    /// Removes one entry. Blocking.
    pub fn remove(&self, key: &CacheKey) {
        let mut index = self.lock();
        if let Some(size) = index.lru.pop(key) {
            index.bytes -= size.min(index.bytes);
        }
        drop(index);
        let _ = fs::remove_file(self.path(key));
    }

    /// Evicts least recently used entries until the bound holds. Blocking.
    fn evict(&self) -> Usage {
        let mut evicted = Vec::new();
        let (bytes, entries) = {
            let mut index = self.lock();
            while index.bytes > self.max_bytes {
                let Some((key, size)) = index.lru.pop_lru() else {
                    break;
                };
                index.bytes -= size.min(index.bytes);
                evicted.push(key);
            }
            (index.bytes, index.lru.len())
        };
        for key in &evicted {
            let _ = fs::remove_file(self.path(key));
        }
        Usage {
            evicted: evicted.len(),
            bytes,
            entries,
        }
    }
}

fn read_entry(path: &Path) -> io::Result<(Vec<u8>, Bytes)> {
    format::decode(io::BufReader::new(fs::File::open(path)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> CacheKey {
        CacheKey::parse(&format!("{n:02x}").repeat(32)).expect("key")
    }

    fn dir_bytes(dir: &Path) -> u64 {
        fs::read_dir(dir)
            .expect("dir")
            .map(|e| e.expect("entry").metadata().expect("meta").len())
            .sum()
    }

    #[test]
    fn stays_under_its_bound_and_drops_the_least_recently_used() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (cache, _) = DiskCache::open(dir.path(), 3_500).expect("open");
        let body = vec![7u8; 1_000];
        for n in 0..3 {
            cache.write(&key(n), b"{}", &body).expect("write");
        }
        // Entry 0 used again: entry 1 is now the least recently used.
        assert!(cache.read(&key(0)).is_some());
        let usage = cache.write(&key(3), b"{}", &body).expect("write");
        assert_eq!(usage.evicted, 1);
        assert!(
            cache.read(&key(1)).is_none(),
            "the least recently used went"
        );
        for n in [0, 2, 3] {
            let (meta, got) = cache.read(&key(n)).expect("kept");
            assert_eq!((meta.as_slice(), got.as_ref()), (&b"{}"[..], &body[..]));
        }
        assert!(dir_bytes(dir.path()) <= 3_500);
        assert_eq!(usage.bytes, dir_bytes(dir.path()));
    }

    #[test]
    fn a_restart_keeps_entries_and_drops_debris() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let (cache, _) = DiskCache::open(dir.path(), 1 << 20).expect("open");
            cache.write(&key(1), b"m", b"body").expect("write");
        }
        // What a crash mid-write leaves, a torn entry and a stranger's file.
        fs::write(
            dir.path().join(format!("{}.x.tmp", key(2).as_str())),
            b"half",
        )
        .expect("tmp");
        fs::write(
            dir.path().join(format!("{}.entry", key(3).as_str())),
            b"SFC1\xff",
        )
        .expect("torn");
        fs::write(dir.path().join("README"), b"not ours").expect("other");
        let (cache, usage) = DiskCache::open(dir.path(), 1 << 20).expect("reopen");
        assert_eq!(usage.entries, 2);
        let (meta, body) = cache.read(&key(1)).expect("kept across the restart");
        assert_eq!((meta.as_slice(), body.as_ref()), (&b"m"[..], &b"body"[..]));
        assert!(cache.read(&key(3)).is_none(), "a torn entry is a miss");
        assert!(!dir
            .path()
            .join(format!("{}.entry", key(3).as_str()))
            .exists());
        assert!(!dir
            .path()
            .join(format!("{}.x.tmp", key(2).as_str()))
            .exists());
        assert!(
            dir.path().join("README").exists(),
            "other files are left alone"
        );
    }

    #[test]
    fn a_restart_with_a_smaller_bound_evicts_the_oldest_first() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let (cache, _) = DiskCache::open(dir.path(), 1 << 20).expect("open");
            for n in 0..4 {
                cache.write(&key(n), b"", &[0u8; 992]).expect("write");
                // Distinct modification times, oldest first.
                let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000 + n as u64);
                let f = fs::File::options()
                    .write(true)
                    .open(cache.path(&key(n)))
                    .expect("open entry");
                f.set_modified(t).expect("mtime");
            }
        }
        let (cache, usage) = DiskCache::open(dir.path(), 2_000).expect("reopen");
        assert_eq!((usage.evicted, usage.entries), (2, 2));
        assert!(cache.read(&key(0)).is_none() && cache.read(&key(1)).is_none());
        assert!(cache.read(&key(2)).is_some() && cache.read(&key(3)).is_some());
    }

    #[test]
    fn a_failed_write_leaves_nothing_behind() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (cache, _) = DiskCache::open(dir.path(), 1 << 20).expect("open");
        // The directory vanishes under the cache (as a full or failed disk would refuse).
        fs::remove_dir_all(dir.path()).expect("rm");
        assert!(cache.write(&key(1), b"{}", b"body").is_err());
        assert!(cache.read(&key(1)).is_none());
    }
}
