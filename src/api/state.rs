//! What every handler may use ([`ApiState`]), and the rate limiters it builds from the live
//! configuration.

use std::sync::Arc;

use crate::accounts::Accounts;
use crate::cache::Cache;
use crate::config::Config;
use crate::egress::EgressPolicy;
use crate::farm::Farm;
use crate::jobs::JobStore;
use crate::ledger::Ledger;
use crate::limits::RateLimiter;
use crate::live::Live;
use crate::notifications::{LowBalance, Notifier};
use crate::payments::Payments;
use crate::storage::Storage;
use crate::telemetry::Metrics;

/// What every handler may use.
#[derive(Clone)]
pub struct ApiState {
    pub farm: Farm,
    pub ledger: Ledger,
    pub accounts: Accounts,
    pub egress: Arc<EgressPolicy>,
    pub metrics: Arc<Metrics>,
    /// The configuration; its packs, limits and log level change on a reload (SIGHUP).
    pub config: Live<Config>,
    pub payments: Arc<Payments>,
    pub notifier: Notifier,
    /// Delivers the low-balance notification a charge queued in Redis.
    pub low_balance: LowBalance,
    /// The capture cache; `None` when `cache.enabled` was off at start.
    pub cache: Option<Cache>,
    /// The bucket of `store=true` captures; `None` when `[storage]` names none.
    pub storage: Option<Storage>,
    /// Async capture jobs in Redis (`async=true`).
    pub jobs: JobStore,
}

impl ApiState {
    /// The capture rate limit per API key, as currently configured; `None` when off.
    pub fn capture_limiter(&self) -> Option<RateLimiter> {
        let limits = &self.config.get().limits;
        RateLimiter::new(
            self.ledger.redis().clone(),
            limits.requests_per_minute,
            limits.burst,
        )
    }

    /// Log-in attempts per email address; `None` when off.
    pub fn login_limiter(&self) -> Option<RateLimiter> {
        let n = self.config.get().auth.login_attempts_per_minute;
        RateLimiter::new(self.ledger.redis().clone(), n, n)
    }

    /// Log-in and sign-up attempts per client address; `None` when off.
    pub fn address_limiter(&self) -> Option<RateLimiter> {
        let n = self.config.get().auth.attempts_per_address_per_minute;
        RateLimiter::new(self.ledger.redis().clone(), n, n)
    }
}
