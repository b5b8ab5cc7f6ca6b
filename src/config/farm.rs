//! `[farm]`: the browser fleet and its queue (engine, sizes, recycling, restart back-off, probes).

use serde::{Deserialize, Serialize};

use super::Engine;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct FarmConfig {
    /// The browser build: `headless-shell` (default) or `chromium` (full new-headless Chromium,
    /// for pages that need it).
    pub engine: Engine,
    /// Number of Chromium processes.
    pub browsers: usize,
    /// Concurrent captures per browser (each in its own browser context).
    pub tabs_per_browser: usize,
    /// Jobs that may wait for a browser; beyond this, requests get 429 `queue_full`.
    pub queue_capacity: usize,
    /// Restart a browser after this many captures (0 = never).
    pub recycle_after: u64,
    /// Restart a browser whose process tree uses more memory (PSS) than this, in MiB (0 = no limit).
    pub max_browser_memory_mb: u64,
    /// Consecutive deadline overruns after which a browser is recycled.
    pub max_overruns: u32,
    /// First restart delay after a failure, in milliseconds; doubles per consecutive failure.
    pub restart_backoff_min_ms: u64,
    /// Longest restart delay, in milliseconds.
    pub restart_backoff_max_ms: u64,
    /// Consecutive failed starts after which a browser is reported unhealthy.
    pub unhealthy_after: u32,
    /// Interval of the liveness probe and memory check, in milliseconds.
    pub probe_interval_ms: u64,
    /// A probe slower than this marks the browser unresponsive, in milliseconds.
    pub probe_timeout_ms: u64,
}

impl Default for FarmConfig {
    fn default() -> Self {
        Self {
            engine: Engine::default(),
            browsers: 2,
            tabs_per_browser: 2,
            queue_capacity: 64,
            recycle_after: 1000,
            max_browser_memory_mb: 2048,
            max_overruns: 3,
            restart_backoff_min_ms: 250,
            restart_backoff_max_ms: 30_000,
            unhealthy_after: 5,
            probe_interval_ms: 5_000,
            probe_timeout_ms: 3_000,
        }
    }
}
