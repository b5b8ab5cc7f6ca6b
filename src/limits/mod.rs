//! Rate limits shared by every host through Redis: one GCRA script per request. Captures are
//! keyed by the API key (or the account, for session callers), on the account's shard tag;
//! log-in attempts by email address, and log-in and sign-up by client address.

use std::sync::LazyLock;
use std::time::Duration;

use redis::Script;

use crate::ledger::keys::{self, AccountKeys};
use crate::ledger::{LedgerError, RedisHandle};

static SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("rate_limit.lua")));

/// The verdict for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateVerdict {
    pub allowed: bool,
    /// The sustained rate, requests per minute (`x-ratelimit-limit`).
    pub per_minute: u64,
    /// Requests allowed at once above it (`x-ratelimit-burst`).
    pub burst: u64,
    /// Requests that could still be made right now, at most `burst` (`x-ratelimit-remaining`).
    pub remaining: u64,
    /// When a refused request may be retried.
    pub retry_after: Duration,
    /// Until the full burst is available again (`x-ratelimit-reset`).
    pub reset: Duration,
}

#[derive(Clone)]
pub struct RateLimiter {
    redis: RedisHandle,
    per_minute: u64,
    interval_ms: u64,
    burst: u64,
}

impl RateLimiter {
    /// `None` when `per_minute` is 0 (no limit).
    pub fn new(redis: RedisHandle, per_minute: u64, burst: u64) -> Option<RateLimiter> {
        (per_minute > 0).then(|| RateLimiter {
            redis,
            per_minute,
            interval_ms: (60_000 / per_minute).max(1),
            burst: burst.max(1),
        })
    }

    /// Counts one request of `caller` (an API key id, or the account for sessions).
    pub async fn check(&self, account: &str, caller: &str) -> Result<RateVerdict, LedgerError> {
        self.count(AccountKeys::new(account).rate_limit(caller))
            .await
    }

    /// Counts one log-in attempt for `email` (compared lower-cased, stored as a digest).
    pub async fn check_login(&self, email: &str) -> Result<RateVerdict, LedgerError> {
        use sha2::Digest as _;
        let digest = sha2::Sha256::digest(email.trim().to_lowercase().as_bytes());
        self.count(keys::login_attempts(&hex::encode(digest))).await
    }

    /// Counts one log-in or sign-up attempt from a client address.
    pub async fn check_address(&self, address: &str) -> Result<RateVerdict, LedgerError> {
        self.count(keys::auth_attempts(address)).await
    }

    async fn count(&self, key: String) -> Result<RateVerdict, LedgerError> {
        let mut conn = self.redis.get()?;
        let (allowed, remaining, retry_ms, reset_ms): (i64, i64, i64, i64) = SCRIPT
            .key(key)
            .arg(self.interval_ms)
            .arg(self.burst)
            .invoke_async(&mut conn)
            .await?;
        let ms = |v: i64| Duration::from_millis(u64::try_from(v).unwrap_or(0));
        Ok(RateVerdict {
            allowed: allowed == 1,
            per_minute: self.per_minute,
            burst: self.burst,
            remaining: u64::try_from(remaining).unwrap_or(0),
            retry_after: ms(retry_ms),
            reset: ms(reset_ms),
        })
    }
}
