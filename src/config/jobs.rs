//! `[jobs]`: async captures (`async=true`): the workers every daemon runs on the Redis jobs
//! stream, how soon a silent worker's job is taken over, how long results are kept, and how
//! many jobs may wait.

use std::time::Duration;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct JobsConfig {
    /// Workers on this daemon, each reading the stream on its own Redis connection (0 = this
    /// daemon takes no async jobs, but still accepts them).
    pub workers: usize,
    /// A job whose worker has not renewed its claim for this long (ms) is taken over by another
    /// worker (its host died). Running workers renew every third of it.
    pub claim_idle_ms: u64,
    /// How long a finished job (its status and image) is kept, in seconds.
    pub result_ttl_secs: u64,
    /// Most jobs one account may have queued, running or being delivered at once; more → 429.
    pub max_queued_per_account: u64,
    /// Most jobs of all accounts at once; more → 429.
    pub max_queued: u64,
    /// Largest image a job keeps in Redis for its webhook and status URL (bytes); a larger
    /// capture fails the job as `output_too_large`, free (Redis holds the ledger too).
    pub max_image_bytes: u64,
}

impl Default for JobsConfig {
    fn default() -> Self {
        Self {
            workers: 4,
            claim_idle_ms: 30_000,
            result_ttl_secs: 86_400,
            max_queued_per_account: 100,
            max_queued: 10_000,
            max_image_bytes: 16 << 20,
        }
    }
}

impl JobsConfig {
    /// How often a running worker renews its claim.
    pub fn heartbeat(&self) -> Duration {
        Duration::from_millis((self.claim_idle_ms / 3).max(100))
    }
}
