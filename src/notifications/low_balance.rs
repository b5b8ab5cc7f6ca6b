//! Delivery of the pending low-balance notifications (`store`), by any daemon on the Redis.
//!
//! A charge that crossed nudges this daemon ([`LowBalance::nudge`]), which claims the account's
//! notification and makes its first attempt at once; a failed attempt is rescheduled in Redis
//! and tried again after its wait by the same task. Every `notifications.poll_ms` each daemon
//! also scans the shards' due sets and takes what has been due for a poll period (what its own
//! daemon did not claim in time): a dead daemon's notifications (once its lease ran out),
//! retries whose daemon stopped, crossings whose daemon stopped before its first attempt. Each
//! attempt is one claim in Redis, so two daemons never attempt the same notification at once,
//! and attempts cut short by a crash count towards `notifications.attempts`.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;

use super::store::{Claimed, NoticeStore, Settle};
use super::{Attempt, Notifier, Signed};
use crate::accounts::Accounts;
use crate::config::Config;
use crate::live::Live;
use crate::telemetry::events::{InternalEvent, LowBalanceNotification, NotificationOutcome};
use crate::telemetry::Metrics;

/// Most pending notifications one poll takes from a shard's due set.
const PER_SHARD: usize = 64;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Payload<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    timestamp: String,
    data: Data<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Data<'a> {
    account_id: &'a str,
    balance: i64,
    threshold: i64,
    suggested_pack: Option<Pack<'a>>,
    purchase_url: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Pack<'a> {
    id: &'a str,
    name: &'a str,
    credits: i64,
    price_cents: i64,
}

/// The low-balance notifications' delivery on this daemon; cheap to clone.
#[derive(Clone)]
pub struct LowBalance {
    inner: Arc<Inner>,
}

struct Inner {
    store: NoticeStore,
    notifier: Notifier,
    accounts: Accounts,
    config: Live<Config>,
    metrics: Arc<Metrics>,
    /// Accounts whose notification a task of this daemon is delivering (at most
    /// `notifications.max_pending`; the rest wait in Redis).
    in_flight: Mutex<HashSet<String>>,
}

impl LowBalance {
    pub fn new(
        store: NoticeStore,
        notifier: Notifier,
        accounts: Accounts,
        config: Live<Config>,
        metrics: Arc<Metrics>,
    ) -> LowBalance {
        LowBalance {
            inner: Arc::new(Inner {
                store,
                notifier,
                accounts,
                config,
                metrics,
                in_flight: Mutex::new(HashSet::new()),
            }),
        }
    }

    /// A charge of `account` crossed its threshold (its notification is in Redis already):
    /// deliver it now from here, off the caller's path.
    pub fn nudge(&self, account: &str) {
        self.inner.start(account);
    }

    /// Looks for due notifications every `notifications.poll_ms`; abort the handle to stop (what
    /// is pending stays in Redis for another daemon or this one restarted).
    pub fn spawn_poller(&self) -> tokio::task::JoinHandle<()> {
        let inner = self.inner.clone();
        tokio::spawn(async move {
            loop {
                let every = Duration::from_millis(inner.config.get().notifications.poll_ms);
                tokio::time::sleep(every).await;
                // Overdue by a poll period: its own daemon (retrying it, or nudged by the charge)
                // claims it first when alive.
                match inner.store.due(PER_SHARD, every).await {
                    Ok(due) => {
                        let pending = i64::try_from(due.pending).unwrap_or(i64::MAX);
                        inner.metrics.notifications_pending.set(pending);
                        for account in &due.accounts {
                            inner.start(account);
                        }
                    }
                    Err(e) => tracing::debug!("low-balance notifications not polled: {e}"),
                }
            }
        })
    }
}

/// Forgets an account's delivery task when it ends, however it ends.
struct InFlight {
    inner: Arc<Inner>,
    account: String,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Ok(mut set) = self.inner.in_flight.lock() {
            set.remove(&self.account);
        }
    }
}

impl Inner {
    /// Starts a delivery task for `account` unless one runs here or this daemon is at
    /// `max_pending` (then the notification waits in Redis for the next poll).
    fn start(self: &Arc<Self>, account: &str) {
        let max = self.config.get().notifications.max_pending;
        {
            let Ok(mut set) = self.in_flight.lock() else {
                return;
            };
            if set.contains(account) || set.len() >= max {
                return;
            }
            set.insert(account.to_string());
        }
        let guard = InFlight {
            inner: self.clone(),
            account: account.to_string(),
        };
        let span = tracing::info_span!("low_balance", account = %account);
        tokio::spawn(tracing::Instrument::instrument(
            async move {
                guard.inner.deliver(&guard.account).await;
                drop(guard);
            },
            span,
        ));
    }

    /// Claims the account's notification while it is due, one attempt per claim, waiting out
    /// the retries here; ends when it is settled for good or another daemon holds it.
    async fn deliver(&self, account: &str) {
        loop {
            let n = self.config.get().notifications.clone();
            let lease = Duration::from_millis(n.lease_ms);
            let claimed = match self.store.claim(account, lease, n.record_ttl()).await {
                Ok(Some(claimed)) => claimed,
                Ok(None) => return,
                Err(e) => {
                    tracing::warn!("cannot claim a low-balance notification ({e}); left for later");
                    return;
                }
            };
            let how = self.attempt(account, &claimed).await;
            let wait = match how {
                Settle::Done => None,
                Settle::RetryAfter(wait) => Some(wait),
            };
            match self
                .store
                .settle(account, &claimed.id, how, n.record_ttl())
                .await
            {
                Ok(true) => {}
                Ok(false) => {
                    // A newer crossing replaced it: the newer one is due now.
                    tracing::info!(webhook_id = %claimed.id, "superseded by a newer crossing");
                    continue;
                }
                Err(e) => {
                    // Unsettled: claimed again once the lease is over (by any daemon).
                    tracing::warn!("cannot settle a low-balance notification ({e})");
                    return;
                }
            }
            match wait {
                None => return,
                Some(wait) => tokio::time::sleep(wait).await,
            }
        }
    }

    fn report(
        &self,
        outcome: NotificationOutcome,
        account: &str,
        claimed: &Claimed,
        why: &str,
        wait: Option<Duration>,
    ) {
        LowBalanceNotification {
            outcome,
            account,
            webhook_id: &claimed.id,
            attempt: claimed.attempt,
            why,
            wait,
        }
        .emit(&self.metrics);
    }

    /// One attempt at a claimed notification, reported; how it settles.
    async fn attempt(&self, account: &str, claimed: &Claimed) -> Settle {
        let config = self.config.get();
        let n = &config.notifications;
        let attempts = n.attempts.max(1);
        let retry = |attempt: u32, why: &str| {
            let wait = n.retry_after(attempt);
            self.report(
                NotificationOutcome::Retried,
                account,
                claimed,
                why,
                Some(wait),
            );
            Settle::RetryAfter(wait)
        };
        if claimed.attempt > attempts {
            let why = format!("{attempts} attempts made (some cut short by a stop)");
            self.report(NotificationOutcome::GaveUp, account, claimed, &why, None);
            return Settle::Done;
        }
        let settings = match self.accounts.auto_topup(account).await {
            Ok(settings) => settings,
            Err(e) if claimed.attempt < attempts => {
                return retry(claimed.attempt, &format!("settings: {e}"))
            }
            Err(e) => {
                let why = format!("settings: {e}");
                self.report(NotificationOutcome::GaveUp, account, claimed, &why, None);
                return Settle::Done;
            }
        };
        let (Some(url), Some(secret)) = (settings.notification_url, settings.notification_secret)
        else {
            let why = "the account has no notification URL any more";
            self.report(NotificationOutcome::Dropped, account, claimed, why, None);
            return Settle::Done;
        };
        let pack = config
            .credits
            .packs
            .iter()
            .find(|p| p.id == settings.pack_id);
        let body = serde_json::to_string(&Payload {
            kind: "credits.low",
            timestamp: crate::timestamps::iso_time(claimed.at_ms),
            data: Data {
                account_id: account,
                balance: claimed.balance,
                threshold: claimed.threshold,
                suggested_pack: pack.map(|p| Pack {
                    id: &p.id,
                    name: &p.name,
                    credits: p.credits,
                    price_cents: p.price_cents,
                }),
                purchase_url: format!(
                    "{}/dashboard/credits",
                    config.auth.public_url.trim_end_matches('/')
                ),
            },
        });
        let body = match body {
            Ok(body) => body,
            Err(e) => {
                let why = format!("payload: {e}");
                self.report(NotificationOutcome::GaveUp, account, claimed, &why, None);
                return Settle::Done;
            }
        };
        let message = Signed {
            url: &url,
            secret: &secret,
            id: &claimed.id,
            body: &body,
        };
        match self.notifier.attempt_once(&message).await {
            Attempt::Delivered => {
                self.report(NotificationOutcome::Delivered, account, claimed, "", None);
                Settle::Done
            }
            Attempt::Refused(why) => {
                self.report(NotificationOutcome::Refused, account, claimed, &why, None);
                Settle::Done
            }
            Attempt::Failed(why) if claimed.attempt < attempts => retry(claimed.attempt, &why),
            Attempt::Failed(why) => {
                self.report(NotificationOutcome::GaveUp, account, claimed, &why, None);
                Settle::Done
            }
        }
    }
}
