//! Link-signing secrets of API keys (signed image links, verified by `api::signed_links`): at
//! most one per key, made or replaced and revoked by the key's own account, looked up by key id.
//!
//! `sf:signing:<key id>` → JSON `{account, secret, created_ms}`. Unlike API keys and session
//! tokens the secret is stored as it is, because checking an HMAC needs the key itself: whoever
//! reads Redis can sign links charged to the account until the secret is rotated or revoked.
//!
//! A secret is alive only while its API key is: the lookup also checks that the key is still in
//! its account's list, so a key revoked at any moment — even between a rotation's check and its
//! write — never lets a link through. Revoking a key deletes its secret first.

use std::collections::HashMap;

use redis::AsyncCommands;
use serde::{Deserialize, Serialize};

use super::secrets;
use super::store::{AccountError, Accounts};
use crate::ledger::keys::{self, AccountKeys};
use crate::ledger::LedgerError;

/// An API key's link-signing secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SigningSecret {
    pub account: String,
    pub secret: String,
    pub created_ms: i64,
}

/// The longest key id a lookup takes (ours are `key_` + 32 hex digits).
const MAX_KEY_ID: usize = 64;

fn plausible_key_id(key_id: &str) -> bool {
    !key_id.is_empty()
        && key_id.len() <= MAX_KEY_ID
        && key_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

impl Accounts {
    /// Whether `account` has the API key `key_id`.
    async fn has_key(&self, account: &str, key_id: &str) -> Result<bool, AccountError> {
        let mut conn = self.conn()?;
        Ok(conn
            .hexists(AccountKeys::new(account).api_keys(), key_id)
            .await?)
    }

    /// A new signing secret for the account's key `key_id`, replacing any it had (links signed
    /// with the old one stop verifying at once). The secret is returned this once.
    /// [`AccountError::NotFound`] when the account has no such key.
    pub async fn rotate_signing_secret(
        &self,
        account: &str,
        key_id: &str,
    ) -> Result<SigningSecret, AccountError> {
        if !plausible_key_id(key_id) || !self.has_key(account, key_id).await? {
            return Err(AccountError::NotFound);
        }
        let stored = SigningSecret {
            account: account.to_string(),
            secret: secrets::new_signing_secret(),
            created_ms: crate::timestamps::now_ms(),
        };
        let json = serde_json::to_string(&stored)
            .map_err(|e| AccountError::Ledger(LedgerError::Protocol(e.to_string())))?;
        let mut conn = self.conn()?;
        let _: () = conn.set(keys::signing_secret(key_id), json).await?;
        // The key revoked meanwhile: its revocation may have deleted the secret before this
        // write. The lookup would refuse it anyway; do not leave it behind.
        if !self.has_key(account, key_id).await? {
            let _: () = conn.del(keys::signing_secret(key_id)).await?;
            return Err(AccountError::NotFound);
        }
        Ok(stored)
    }

    /// Removes the signing secret of the account's key `key_id` (no-op when it has none).
    /// [`AccountError::NotFound`] when the account has no such key.
    pub async fn revoke_signing_secret(
        &self,
        account: &str,
        key_id: &str,
    ) -> Result<(), AccountError> {
        if !plausible_key_id(key_id) || !self.has_key(account, key_id).await? {
            return Err(AccountError::NotFound);
        }
        let mut conn = self.conn()?;
        // Another account's secret is never touched: key ids are unique, and it is ours.
        if let Some(stored) = self.stored_secret(key_id).await? {
            if stored.account == account {
                let _: () = conn.del(keys::signing_secret(key_id)).await?;
            }
        }
        Ok(())
    }

    /// The live signing secret of the key `key_id`: `None` for an unknown id, a key without a
    /// secret, or a revoked key.
    pub async fn signing_secret(
        &self,
        key_id: &str,
    ) -> Result<Option<SigningSecret>, AccountError> {
        if !plausible_key_id(key_id) {
            return Ok(None);
        }
        let Some(stored) = self.stored_secret(key_id).await? else {
            return Ok(None);
        };
        if !self.has_key(&stored.account, key_id).await? {
            return Ok(None);
        }
        Ok(Some(stored))
    }

    async fn stored_secret(&self, key_id: &str) -> Result<Option<SigningSecret>, AccountError> {
        let mut conn = self.conn()?;
        let raw: Option<String> = conn.get(keys::signing_secret(key_id)).await?;
        Ok(raw.and_then(|r| serde_json::from_str(&r).ok()))
    }

    /// When each of the account's keys got its signing secret, for those that have one. One
    /// single-key read per key (they live in no one slot of a Redis Cluster), sent together.
    pub(super) async fn signing_since(
        &self,
        account: &str,
        key_ids: &[String],
    ) -> Result<HashMap<String, i64>, AccountError> {
        let reads = key_ids.iter().map(|id| async move {
            self.stored_secret(id).await.map(|s| {
                s.filter(|s| s.account == account)
                    .map(|s| (id.clone(), s.created_ms))
            })
        });
        let found = futures::future::try_join_all(reads).await?;
        Ok(found.into_iter().flatten().collect())
    }

    /// Deletes the key's signing secret (its API key is being revoked).
    pub(super) async fn drop_signing_secret(&self, key_id: &str) -> Result<(), AccountError> {
        let mut conn = self.conn()?;
        let _: () = conn.del(keys::signing_secret(key_id)).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plausible_key_ids_are_looked_up() {
        assert!(plausible_key_id("key_0190f0c4a1b27c3e9d2f4a6b8c0d1e2f"));
        for bad in ["", "key id", "key:1", "key_\u{e9}", &"k".repeat(65)] {
            assert!(!plausible_key_id(bad), "{bad:?}");
        }
    }
}
