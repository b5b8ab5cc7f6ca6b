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
//! Pending low-balance notifications live in memory: a daemon that stops loses its undelivered
//! ones. The same sender ([`Notifier::send`]) delivers async jobs' results, whose pending state
//! lives in Redis with the job (`jobs`), so another daemon resumes them.

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

/// One Standard Webhooks message to send: the same `id` on every attempt (and, for an async
/// job, on every host that sends it), so a receiver can drop repeats.
pub struct Signed<'a> {
    pub url: &'a str,
    /// `whsec_…`
    pub secret: &'a str,
    pub id: &'a str,
    pub body: &'a str,
}

/// How the delivery of a [`Signed`] message ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// Answered 2xx at this attempt.
    Delivered { attempt: u32 },
    /// The URL points somewhere messages may not go (egress policy, not http(s)): no retry.
    Refused { attempt: u32, why: String },
    /// Every attempt failed (or none could be made: a bad secret).
    GaveUp { attempts: u32, why: String },
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

    /// Delivers one signed message on the caller's task (an async job's result): the same
    /// signing, retries with doubling waits, egress checks and proxy as the low-balance
    /// notifications; `on_retry(attempt, why, wait)` hears each failed attempt that is retried.
    pub async fn send(
        &self,
        message: &Signed<'_>,
        on_retry: impl FnMut(u32, &str, Duration),
    ) -> Delivery {
        self.inner.send_signed(message, on_retry).await
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
        let body = match self.body(event) {
            Ok(body) => body,
            Err(e) => return self.give_up(event, &id, &format!("payload: {e}")),
        };
        let message = Signed {
            url: &event.url,
            secret: &event.secret,
            id: &id,
            body: &body,
        };
        let outcome = self
            .send_signed(&message, |attempt, why, wait| {
                let outcome = NotificationOutcome::Retried;
                self.report(outcome, event, &id, attempt, why, Some(wait));
            })
            .await;
        match outcome {
            Delivery::Delivered { attempt } => self.report(
                NotificationOutcome::Delivered,
                event,
                &id,
                attempt,
                "",
                None,
            ),
            Delivery::Refused { attempt, why } => self.report(
                NotificationOutcome::Refused,
                event,
                &id,
                attempt,
                &why,
                None,
            ),
            Delivery::GaveUp { why, .. } => self.give_up(event, &id, &why),
        }
    }

    fn give_up(&self, event: &LowBalance, id: &str, why: &str) {
        self.report(NotificationOutcome::GaveUp, event, id, 0, why, None);
    }

    /// Delivers one signed message: up to `notifications.attempts` tries, doubling waits
    /// between them (`on_retry(attempt, why, wait)` before each wait), no retry once refused.
    async fn send_signed(
        &self,
        message: &Signed<'_>,
        mut on_retry: impl FnMut(u32, &str, Duration),
    ) -> Delivery {
        let signer = match standardwebhooks::Webhook::new(message.secret) {
            Ok(signer) => signer,
            Err(e) => {
                return Delivery::GaveUp {
                    attempts: 0,
                    why: format!("secret: {e}"),
                }
            }
        };
        let attempts = self.config.attempts.max(1);
        let mut last = String::new();
        for attempt in 1..=attempts {
            match self.attempt(message, &signer).await {
                Attempt::Delivered => return Delivery::Delivered { attempt },
                Attempt::Refused(why) => return Delivery::Refused { attempt, why },
                Attempt::Failed(why) if attempt < attempts => {
                    let wait = self.config.retry_after(attempt);
                    on_retry(attempt, &why, wait);
                    tokio::time::sleep(wait).await;
                    last = why;
                }
                Attempt::Failed(why) => {
                    return Delivery::GaveUp {
                        attempts: attempt,
                        why,
                    }
                }
            }
        }
        Delivery::GaveUp {
            attempts,
            why: last,
        }
    }

    async fn attempt(&self, message: &Signed<'_>, signer: &standardwebhooks::Webhook) -> Attempt {
        let url = match Url::parse(message.url) {
            Ok(url) if matches!(url.scheme(), "http" | "https") => url,
            _ => return Attempt::Refused(format!("{} is not an http(s) URL", message.url)),
        };
        // The URL was checked when it was set; names can move since, so check again (the
        // proxy checks once more at connect time).
        if let Err(blocked) = self.egress.check_url(&url).await {
            return Attempt::Refused(blocked.to_string());
        }
        let timestamp = time::OffsetDateTime::now_utc().unix_timestamp();
        let signature = match signer.sign(message.id, timestamp, message.body.as_bytes()) {
            Ok(s) => s,
            Err(e) => return Attempt::Refused(format!("cannot sign: {e}")),
        };
        let sent = self
            .client
            .post(url)
            .header("content-type", "application/json")
            .header("webhook-id", message.id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(message.body.to_string())
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
