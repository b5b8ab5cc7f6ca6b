//! What systemd sees of the daemon (`Type=notify`): `READY=1` once every browser is warm and
//! Redis answers, `WATCHDOG=1` only while the fleet is healthy, `STOPPING=1` when shutdown
//! begins (and `RELOADING=1` … `READY=1` around a reload, in [`crate::reload`]). Without a
//! `NOTIFY_SOCKET` every call here is a no-op.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sd_notify::NotifyState;

use crate::farm::Farm;
use crate::ledger::RedisHandle;
use crate::telemetry::Metrics;

/// How long to wait for every browser before announcing readiness with the ones that are.
const WARM_LIMIT: Duration = Duration::from_secs(45);
const POLL: Duration = Duration::from_millis(200);

/// Waits until the fleet is warm (every browser ready, or at least one after [`WARM_LIMIT`])
/// and Redis answers, then sends `READY=1`.
pub async fn announce_ready(farm: &Farm, redis: &RedisHandle, browsers: usize) {
    let started = Instant::now();
    loop {
        let status = farm.status().await;
        let warm =
            status.ready >= browsers || (status.ready > 0 && started.elapsed() >= WARM_LIMIT);
        if warm && redis.ping().await {
            let line = format!("ready: {} of {browsers} browsers", status.ready);
            // Say "systemd notified" only when there is a systemd to notify.
            if std::env::var_os("NOTIFY_SOCKET").is_some_and(|s| !s.is_empty()) {
                let _ = sd_notify::notify(false, &[NotifyState::Ready, NotifyState::Status(&line)]);
                tracing::info!(browsers = status.ready, "ready (systemd notified)");
            } else {
                tracing::info!(browsers = status.ready, "ready");
            }
            return;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Sends `WATCHDOG=1` every half watchdog period while the supervisor answers and the fleet is
/// healthy (`shotfarm_fleet_healthy`); stops feeding otherwise, so systemd restarts a daemon
/// whose fleet is stuck. Returns at once when the unit has no watchdog.
pub async fn feed_watchdog(farm: &Farm, metrics: &Arc<Metrics>) {
    let Some(usec) = watchdog_usec() else {
        return;
    };
    let period = Duration::from_micros(usec / 2).max(Duration::from_millis(100));
    let mut fed = true;
    loop {
        // Asking the supervisor for its status proves its actor still answers.
        let answered = tokio::time::timeout(period, farm.status()).await.is_ok();
        let healthy = answered && metrics.fleet_healthy.get() == 1;
        if healthy {
            let _ = sd_notify::notify(false, &[NotifyState::Watchdog]);
        } else if fed {
            tracing::warn!(
                answered,
                "the fleet is not healthy: the systemd watchdog is not fed"
            );
        }
        fed = healthy;
        tokio::time::sleep(period).await;
    }
}

/// The watchdog period systemd asks for, as `sd_watchdog_enabled(3)` reads it: `WATCHDOG_USEC`,
/// unless `WATCHDOG_PID` names another process.
fn watchdog_usec() -> Option<u64> {
    let usec = std::env::var("WATCHDOG_USEC").ok()?.parse::<u64>().ok()?;
    let for_us = match std::env::var("WATCHDOG_PID") {
        Ok(pid) => pid.parse::<u32>().ok() == Some(std::process::id()),
        Err(_) => true,
    };
    (for_us && usec > 0).then_some(usec)
}

/// `STOPPING=1`: shutdown has begun.
pub fn stopping() {
    let _ = sd_notify::notify(false, &[NotifyState::Stopping]);
}
