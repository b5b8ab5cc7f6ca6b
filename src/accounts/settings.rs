//! Per-account settings kept on the account's ledger hash: auto top-up. The commit script reads
//! `topup_threshold` (0 = off) and `topup_pack` from the same hash, so a charge and the
//! low-balance check it triggers are one atomic step.

use redis::AsyncCommands;
use serde::Serialize;

use super::store::{AccountError, Accounts};
use crate::ledger::keys::AccountKeys;

/// `GET/PUT /api/v1/credits/auto-topup`: prompt to buy `pack_id` once the balance falls below
/// `threshold`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AutoTopup {
    pub enabled: bool,
    /// 0 until set.
    pub threshold: i64,
    /// Empty until set.
    pub pack_id: String,
}

impl Accounts {
    pub async fn auto_topup(&self, account: &str) -> Result<AutoTopup, AccountError> {
        let mut conn = self.conn()?;
        let (enabled, threshold, pack): (Option<String>, Option<i64>, Option<String>) =
            redis::cmd("HMGET")
                .arg(AccountKeys::new(account).account())
                .arg(&["topup_enabled", "topup_threshold_set", "topup_pack"])
                .query_async(&mut conn)
                .await?;
        Ok(AutoTopup {
            enabled: enabled.as_deref() == Some("1"),
            threshold: threshold.unwrap_or(0),
            pack_id: pack.unwrap_or_default(),
        })
    }

    /// Stores the settings (one `HSET`); the threshold the commit script sees is 0 when off.
    pub async fn set_auto_topup(
        &self,
        account: &str,
        settings: &AutoTopup,
    ) -> Result<(), AccountError> {
        let mut conn = self.conn()?;
        let effective = if settings.enabled {
            settings.threshold
        } else {
            0
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
                    ("topup_threshold", effective.to_string()),
                ],
            )
            .await?;
        Ok(())
    }
}
