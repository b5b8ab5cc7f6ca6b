//! Low-balance notifications: when a charge takes an account below its auto top-up threshold,
//! one signed POST to the URL the account configured, retried with backoff, off the capture's
//! path (the capture answers at once; delivery happens on its own task).
//!
//! A notification is a Standard Webhooks message: headers `webhook-id` (the same on every retry,
//! so a receiver can drop repeats), `webhook-timestamp` and `webhook-signature` (`v1,` + base64
//! HMAC-SHA256 over `id.timestamp.body` with the account's `whsec_` secret), and a JSON body
//! `{"type": "credits.low", "timestamp", "data": {…}}`.
//!
//! The URL is someone else's: each attempt is checked against the egress policy first and then
//! sent through the egress proxy, which resolves once and connects only to what it checked —
//! the same defence captures get, so a notification URL cannot reach the operator's network.
//! Pending notifications live in memory: a daemon that stops loses its undelivered ones.

use crate::telemetry::events::{InternalEvent, LowBalanceNotification, NotificationOutcome};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use url::Url;

use crate::config::{Config, NotificationsConfig, PackConfig};
use crate::egress::EgressPolicy;
use crate::telemetry::Metrics;

/// One fall below the threshold, to be told to `url`.
#[derive(Debug, Clone)]
pub struct LowBalance {
    pub account: String,
    pub url: String,
    /// `whsec_…`
    pub secret: String,
    /// The balance right after the charge that crossed.
    pub balance: i64,
    pub threshold: i64,
    pub pack: Option<PackConfig>,
}

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

/// Sends notifications; cheap to clone.
#[derive(Clone)]
pub struct Notifier {
    inner: Arc<Inner>,
}

struct Inner {
    client: reqwest::Client,
    egress: Arc<EgressPolicy>,
    config: NotificationsConfig,
    pending: AtomicUsize,
    metrics: Arc<Metrics>,
    purchase_url: String,
}

/// How one attempt ended.
enum Attempt {
    Delivered,
    /// Worth another try (network error, timeout, non-2xx answer).
    Failed(String),
    /// The URL points somewhere notifications may not go: no retry.
    Refused(String),
}

impl Notifier {
    /// `proxy`: the egress proxy's address, which every notification goes through.
    pub fn new(
        config: &Config,
        proxy: SocketAddr,
        egress: Arc<EgressPolicy>,
        metrics: Arc<Metrics>,
    ) -> Result<Notifier, String> {
        let n = &config.notifications;
        let client = reqwest::Client::builder()
            .proxy(reqwest::Proxy::all(format!("http://{proxy}")).map_err(|e| e.to_string())?)
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_millis(n.timeout_ms))
            .user_agent(concat!(
                "shotfarm-notifications/",
                env!("CARGO_PKG_VERSION")
            ))
            .build()
            .map_err(|e| format!("notification client: {e}"))?;
        Ok(Notifier {
            inner: Arc::new(Inner {
                client,
                egress,
                config: n.clone(),
                pending: AtomicUsize::new(0),
                metrics,
                purchase_url: format!(
                    "{}/dashboard/credits",
                    config.auth.public_url.trim_end_matches('/')
                ),
            }),
        })
    }

    /// Queues one notification and returns at once. Dropped (logged, counted) when
    /// `max_pending` are already under way.
    pub fn low_balance(&self, event: LowBalance) {
        let inner = self.inner.clone();
        let taken = inner
            .pending
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < inner.config.max_pending).then_some(n + 1)
            });
        if taken.is_err() {
            let why = format!("{} already pending", inner.config.max_pending);
            inner.report(NotificationOutcome::Dropped, &event, "", 0, &why, None);
            return;
        }
        tokio::spawn(async move {
            inner.deliver(&event).await;
            inner.pending.fetch_sub(1, Ordering::AcqRel);
        });
    }
}

impl Inner {
    fn report(
        &self,
        outcome: NotificationOutcome,
        event: &LowBalance,
        webhook_id: &str,
        attempt: u32,
        why: &str,
        wait: Option<Duration>,
    ) {
        LowBalanceNotification {
            outcome,
            account: &event.account,
            webhook_id,
            attempt,
            why,
            wait,
        }
        .emit(&self.metrics);
    }

    fn body(&self, event: &LowBalance) -> Result<String, serde_json::Error> {
        serde_json::to_string(&Payload {
            kind: "credits.low",
            timestamp: now_rfc3339(),
            data: Data {
                account_id: &event.account,
                balance: event.balance,
                threshold: event.threshold,
                suggested_pack: event.pack.as_ref().map(|p| Pack {
                    id: &p.id,
                    name: &p.name,
                    credits: p.credits,
                    price_cents: p.price_cents,
                }),
                purchase_url: self.purchase_url.clone(),
            },
        })
    }

    async fn deliver(&self, event: &LowBalance) {
        let id = format!("msg_{}", uuid::Uuid::now_v7().simple());
        let (body, signer) = match (
            self.body(event),
            standardwebhooks::Webhook::new(&event.secret),
        ) {
            (Ok(body), Ok(signer)) => (body, signer),
            (Err(e), _) => return self.give_up(event, &id, &format!("payload: {e}")),
            (_, Err(e)) => return self.give_up(event, &id, &format!("secret: {e}")),
        };
        let attempts = self.config.attempts.max(1);
        for attempt in 1..=attempts {
            match self.attempt(event, &id, &body, &signer).await {
                Attempt::Delivered => {
                    self.report(
                        NotificationOutcome::Delivered,
                        event,
                        &id,
                        attempt,
                        "",
                        None,
                    );
                    return;
                }
                Attempt::Refused(why) => {
                    self.report(
                        NotificationOutcome::Refused,
                        event,
                        &id,
                        attempt,
                        &why,
                        None,
                    );
                    return;
                }
                Attempt::Failed(why) if attempt < attempts => {
                    let wait = self.config.retry_after(attempt);
                    let outcome = NotificationOutcome::Retried;
                    self.report(outcome, event, &id, attempt, &why, Some(wait));
                    tokio::time::sleep(wait).await;
                }
                Attempt::Failed(why) => return self.give_up(event, &id, &why),
            }
        }
    }

    fn give_up(&self, event: &LowBalance, id: &str, why: &str) {
        self.report(NotificationOutcome::GaveUp, event, id, 0, why, None);
    }

    async fn attempt(
        &self,
        event: &LowBalance,
        id: &str,
        body: &str,
        signer: &standardwebhooks::Webhook,
    ) -> Attempt {
        let url = match Url::parse(&event.url) {
            Ok(url) if matches!(url.scheme(), "http" | "https") => url,
            _ => return Attempt::Refused(format!("{} is not an http(s) URL", event.url)),
        };
        // The URL was checked when it was set; names can move since, so check again (the
        // proxy checks once more at connect time).
        if let Err(blocked) = self.egress.check_url(&url).await {
            return Attempt::Refused(blocked.to_string());
        }
        let timestamp = time::OffsetDateTime::now_utc().unix_timestamp();
        let signature = match signer.sign(id, timestamp, body.as_bytes()) {
            Ok(s) => s,
            Err(e) => return Attempt::Refused(format!("cannot sign: {e}")),
        };
        let sent = self
            .client
            .post(url)
            .header("content-type", "application/json")
            .header("webhook-id", id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(body.to_string())
            .send()
            .await;
        match sent {
            Ok(r) if r.status().is_success() => Attempt::Delivered,
            Ok(r) => Attempt::Failed(format!("answered {}", r.status())),
            Err(e) => Attempt::Failed(e.to_string()),
        }
    }
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use crate::config::NotificationsConfig;
    use std::time::Duration;

    #[test]
    fn retries_double_from_the_first_wait_up_to_the_cap() {
        let c = NotificationsConfig {
            first_retry_ms: 1_000,
            max_retry_ms: 10_000,
            ..NotificationsConfig::default()
        };
        let waits: Vec<u64> = (1..=6)
            .map(|n| c.retry_after(n).as_millis() as u64)
            .collect();
        assert_eq!(waits, [1_000, 2_000, 4_000, 8_000, 10_000, 10_000]);
        assert_eq!(c.retry_after(200), Duration::from_millis(10_000));
    }
}
