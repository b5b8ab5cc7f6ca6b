//! Per-account settings kept on the account's ledger hash: auto top-up and its notification
//! URL. The commit script reads `topup_threshold` (0 = off) and `topup_pack` from the same hash,
//! so a charge and the low-balance check it triggers are one atomic step.

use redis::AsyncCommands;
use serde::Serialize;

use super::secrets::new_webhook_secret;
use super::store::{AccountError, Accounts};
use crate::ledger::keys::{account_field, AccountKeys};

/// `GET/PUT /api/v1/credits/auto-topup`: prompt to buy `pack_id` once the balance falls below
/// `threshold`, and optionally tell `notification_url`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AutoTopup {
    pub enabled: bool,
    /// 0 until set.
    pub threshold: i64,
    /// Empty until set.
    pub pack_id: String,
    /// Where a signed notification goes each time the balance falls below the threshold.
    pub notification_url: Option<String>,
    /// The Standard Webhooks secret (`whsec_…`) those notifications are signed with; made when
    /// a URL is first set, kept while one is set. Shown only by the auto top-up endpoint.
    #[serde(skip_serializing)]
    pub notification_secret: Option<String>,
}

const FIELDS: [&str; 5] = [
    "topup_enabled",
    "topup_threshold_set",
    "topup_pack",
    account_field::NOTIFY_URL,
    "notify_secret",
];

/// The stored fields, in the order of [`FIELDS`].
type Fields = (
    Option<String>,
    Option<i64>,
    Option<String>,
    Option<String>,
    Option<String>,
);

impl Accounts {
    pub async fn auto_topup(&self, account: &str) -> Result<AutoTopup, AccountError> {
        let mut conn = self.conn()?;
        let (enabled, threshold, pack, url, secret): Fields = redis::cmd("HMGET")
            .arg(AccountKeys::new(account).account())
            .arg(&FIELDS)
            .query_async(&mut conn)
            .await?;
        Ok(AutoTopup {
            enabled: enabled.as_deref() == Some("1"),
            threshold: threshold.unwrap_or(0),
            pack_id: pack.unwrap_or_default(),
            notification_url: url.filter(|u| !u.is_empty()),
            notification_secret: secret.filter(|s| !s.is_empty()),
        })
    }

    /// Stores the settings (one `HSET`); the threshold the commit script sees is 0 when off.
    /// A notification URL without a secret gets a new one; no URL drops the secret.
    pub async fn set_auto_topup(
        &self,
        account: &str,
        settings: &mut AutoTopup,
    ) -> Result<(), AccountError> {
        let mut conn = self.conn()?;
        let effective = if settings.enabled {
            settings.threshold
        } else {
            0
        };
        settings.notification_secret = match &settings.notification_url {
            Some(_) => Some(
                settings
                    .notification_secret
                    .take()
                    .unwrap_or_else(new_webhook_secret),
            ),
            None => None,
        };
        let _: () = conn
            .hset_multiple(
                AccountKeys::new(account).account(),
                &[
                    (
                        "topup_enabled",
                        if settings.enabled { "1" } else { "0" }.to_string(),
                    ),
                    ("topup_threshold_set", settings.threshold.to_string()),
                    ("topup_pack", settings.pack_id.clone()),
                    (account_field::TOPUP_THRESHOLD, effective.to_string()),
                    (
                        account_field::NOTIFY_URL,
                        settings.notification_url.clone().unwrap_or_default(),
                    ),
                    (
                        "notify_secret",
                        settings.notification_secret.clone().unwrap_or_default(),
                    ),
                ],
            )
            .await?;
        Ok(())
    }

    /// The Standard Webhooks secret (`whsec_…`) the account's messages are signed with — its
    /// notification secret, which async jobs' webhooks use too — made now if it has none (so a
    /// customer can read it, as `notificationSecret` of the auto top-up settings, before the
    /// first delivery). Concurrent callers keep the same one (`HSETNX`).
    pub async fn webhook_secret(&self, account: &str) -> Result<String, AccountError> {
        let mut conn = self.conn()?;
        let key = AccountKeys::new(account).account();
        let current: Option<String> = conn.hget(&key, "notify_secret").await?;
        if let Some(secret) = current.filter(|s| !s.is_empty()) {
            return Ok(secret);
        }
        // A cleared notification URL leaves the field empty: only then is it replaced.
        let fresh = new_webhook_secret();
        let script = redis::Script::new(
            r"local v = redis.call('HGET', KEYS[1], 'notify_secret')
if v and v ~= '' then return v end
redis.call('HSET', KEYS[1], 'notify_secret', ARGV[1])
return ARGV[1]",
        );
        Ok(script.key(&key).arg(&fresh).invoke_async(&mut conn).await?)
    }
}
