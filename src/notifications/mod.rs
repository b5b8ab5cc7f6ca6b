//! Signed Standard Webhooks messages, and the low-balance notifications that use them: when a
//! charge takes an account below its auto top-up threshold, one signed POST to the URL the
//! account configured, retried with backoff, off the capture's path.
//!
//! - [`Notifier`]: the sender. A message carries the headers `webhook-id` (the same on every
//!   attempt and host, so a receiver can drop repeats), `webhook-timestamp` and
//!   `webhook-signature` (`v1,` + base64 HMAC-SHA256 over `id.timestamp.body` with the
//!   account's `whsec_` secret). The URL is someone else's: each attempt is checked against the
//!   egress policy first and then sent through the egress proxy, which resolves once and
//!   connects only to what it checked — the same defence captures get. Async jobs' webhooks use
//!   [`Notifier::send`] too (their pending state lives with the job, `jobs`).
//! - [`store`]: pending low-balance notifications in Redis.
//! - [`low_balance`]: their delivery, by any daemon.
//!
//! **A restart or a crash delays a low-balance notification, never loses or doubles it.** The
//! pending notification is written by `commit.lua`, in the same script as the charge that
//! crossed (its record and its shard's due set carry the account's hash tag, so the script stays
//! in one Redis Cluster slot): a charge that crossed always has its notification, before the
//! capture is answered. Its `webhook-id` is `msg_<hold id>`: one crossing, one id, whoever sends
//! it. Any daemon claims a due one (a lease), makes one attempt and settles it (deleted once
//! delivered, refused or given up; else rescheduled after the retry wait); a daemon that died
//! mid-attempt settles nothing, and another claims it once the lease is over. So delivery is at
//! least once with one stable id (the Standard Webhooks contract): a message cut short by a crash
//! after the receiver took it is sent again under the same id. At most one is pending per
//! account: a newer crossing before the older was delivered replaces it (the newer balance,
//! its own id).

pub(crate) mod low_balance;
pub(crate) mod store;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use url::Url;

use crate::config::{Config, NotificationsConfig};
use crate::egress::EgressPolicy;

pub use low_balance::LowBalance;

/// Sends notifications; cheap to clone.
#[derive(Clone)]
pub struct Notifier {
    inner: Arc<Inner>,
}

struct Inner {
    client: reqwest::Client,
    egress: Arc<EgressPolicy>,
    config: NotificationsConfig,
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
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
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
            }),
        })
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

    /// One attempt at a signed message (the low-balance notifications schedule their retries
    /// in Redis): the egress check, the signature, the POST through the proxy, all within
    /// `timeout_ms` + 1 s (so it ends well inside `lease_ms`).
    pub async fn attempt_once(&self, message: &Signed<'_>) -> Attempt {
        let signer = match standardwebhooks::Webhook::new(message.secret) {
            Ok(signer) => signer,
            Err(e) => return Attempt::Refused(format!("secret: {e}")),
        };
        let limit = Duration::from_millis(self.inner.config.timeout_ms.saturating_add(1_000));
        match tokio::time::timeout(limit, self.inner.attempt(message, &signer)).await {
            Ok(attempt) => attempt,
            Err(_) => Attempt::Failed(format!("no answer within {limit:?}")),
        }
    }
}

impl Inner {
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
