//! `[limits]`: the per-caller capture rate limit.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct LimitsConfig {
    /// Sustained capture requests per minute per API key (per account for session callers),
    /// counted across every host; 0 = no limit.
    pub requests_per_minute: u64,
    /// Requests a caller may make at once above the sustained rate.
    pub burst: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            requests_per_minute: 600,
            burst: 60,
        }
    }
}
