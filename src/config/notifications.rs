//! `[notifications]`: delivery of signed low-balance notifications (attempts, retry waits,
//! timeouts).

use std::time::Duration;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct NotificationsConfig {
    /// Delivery attempts per notification: the first and its retries.
    pub attempts: u32,
    /// Wait before the first retry (ms), doubled after each, up to `max_retry_ms`.
    pub first_retry_ms: u64,
    /// Longest wait between two attempts (ms).
    pub max_retry_ms: u64,
    /// How long one attempt may take (ms).
    pub timeout_ms: u64,
    /// Most notifications being delivered (or waiting to retry) at once; more are dropped,
    /// logged and counted.
    pub max_pending: usize,
}

impl Default for NotificationsConfig {
    fn default() -> Self {
        Self {
            attempts: 8,
            first_retry_ms: 1_000,
            max_retry_ms: 300_000,
            timeout_ms: 5_000,
            max_pending: 1_000,
        }
    }
}

impl NotificationsConfig {
    /// The wait before attempt `n + 1` (n ≥ 1): doubling from `first_retry_ms`, capped.
    pub fn retry_after(&self, attempt: u32) -> Duration {
        let doubled = self
            .first_retry_ms
            .saturating_mul(1u64 << attempt.saturating_sub(1).min(32));
        Duration::from_millis(doubled.min(self.max_retry_ms))
    }
}
