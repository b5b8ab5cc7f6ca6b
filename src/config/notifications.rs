//! `[notifications]`: delivery of signed low-balance notifications (attempts, retry waits,
//! timeouts, and how pending ones kept in Redis are shared between daemons).

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
    /// Most notifications this daemon delivers (or waits to retry) at once; more wait in
    /// Redis for a free slot here or on another daemon.
    pub max_pending: usize,
    /// A notification whose attempt has not settled for this long (ms) may be taken over by
    /// another daemon (its daemon died mid-attempt). Longer than `timeout_ms`.
    pub lease_ms: u64,
    /// How often each daemon looks in Redis for notifications due (ms): those of a dead
    /// daemon, retries whose wait is over, crossings charged by async jobs.
    pub poll_ms: u64,
}

impl Default for NotificationsConfig {
    fn default() -> Self {
        Self {
            attempts: 8,
            first_retry_ms: 1_000,
            max_retry_ms: 300_000,
            timeout_ms: 5_000,
            max_pending: 1_000,
            lease_ms: 30_000,
            poll_ms: 1_000,
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

    /// How long a pending notification's record lives after a claim or a rescheduled retry:
    /// its lease or longest wait, and an hour's margin (it is deleted once settled).
    pub fn record_ttl(&self) -> Duration {
        Duration::from_millis(
            self.lease_ms
                .max(self.max_retry_ms)
                .saturating_add(3_600_000),
        )
    }
}
