//! Accounts, sessions and API keys in Redis.
//!
//! - An email is claimed with `SET NX` on `sf:email:<email>`, then the account is created by the
//!   ledger (one script: profile, zeroed counters, and the sign-up bonus applied at most once).
//!   A claim whose account was never created (its sign-up died in between) is finished by the
//!   next sign-up for that email.
//! - A session is `sf:session:<sha256(token)>` → account id, with the session's expiry.
//! - An API key is `sf:apikey:<sha256(secret)>` → `account|key id`, plus metadata in the
//!   account's own hash; the secret itself is never stored. A key's link-signing secret is in
//!   `accounts::signing`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis::AsyncCommands;
use serde::{Deserialize, Serialize};

use super::secrets;
use crate::ledger::keys::{self, account_field, AccountKeys};
use crate::ledger::{Ledger, LedgerError, Op, Outcome};
use crate::timestamps::now_ms;

/// A verified caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub account: String,
    /// The API key used, when the caller came with one (not with a session).
    pub key_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub id: String,
    pub email: String,
    pub created_ms: i64,
}

/// An API key as listed (never the secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKeyInfo {
    pub id: String,
    pub name: String,
    /// The first characters of the secret, to recognise it.
    pub prefix: String,
    pub created_ms: i64,
    #[serde(default)]
    pub last_used_ms: Option<i64>,
    /// Since when the key has a link-signing secret (filled in by the listing, not stored here).
    #[serde(skip)]
    pub signing_secret_since_ms: Option<i64>,
    /// SHA-256 of the secret (to delete its lookup entry on revocation).
    #[serde(default)]
    hash: String,
}

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("an account with this email already exists")]
    EmailTaken,
    #[error("{0}")]
    Invalid(&'static str),
    #[error("wrong email or password")]
    BadCredentials,
    #[error("no such account")]
    NotFound,
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

impl From<redis::RedisError> for AccountError {
    fn from(e: redis::RedisError) -> Self {
        AccountError::Ledger(LedgerError::from(e))
    }
}

/// How many characters of a key identify it in listings.
const SHOWN_PREFIX: usize = 11;
/// `last used` is written at most this often per key.
const LAST_USED_EVERY: Duration = Duration::from_secs(60);

#[derive(Clone)]
pub struct Accounts {
    ledger: Ledger,
    session_ttl: Duration,
    signup_bonus: i64,
    last_used_written: Arc<Mutex<HashMap<String, Instant>>>,
}

/// A normalised email, or why it is not one.
pub fn normalize_email(raw: &str) -> Result<String, AccountError> {
    let email = raw.trim().to_lowercase();
    let valid = email.len() <= 254
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
        && matches!(email.split_once('@'), Some((local, domain))
            if !local.is_empty() && domain.contains('.') && !domain.contains('@')
                && !domain.starts_with('.') && !domain.ends_with('.'));
    if valid {
        Ok(email)
    } else {
        Err(AccountError::Invalid("email is not a valid address"))
    }
}

fn check_password(password: &str) -> Result<(), AccountError> {
    let chars = password.chars().count();
    if chars < 8 {
        return Err(AccountError::Invalid(
            "password must be at least 8 characters",
        ));
    }
    if password.len() > 1024 {
        return Err(AccountError::Invalid("password must be at most 1024 bytes"));
    }
    Ok(())
}

/// Runs a password hash on the blocking pool, at most one per core at a time: Argon2 takes
/// ~19 MiB and tens of milliseconds each, and a flood of logins must not starve the captures.
async fn hashing<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    static PERMITS: std::sync::LazyLock<tokio::sync::Semaphore> = std::sync::LazyLock::new(|| {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        tokio::sync::Semaphore::new(cores)
    });
    // The semaphore is never closed, so acquiring cannot fail; without a permit, hash anyway.
    let _permit = PERMITS.acquire().await.ok();
    match tokio::task::spawn_blocking(f).await {
        Ok(v) => v,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

impl Accounts {
    pub fn new(ledger: Ledger, session_ttl: Duration, signup_bonus: i64) -> Self {
        Accounts {
            ledger,
            session_ttl,
            signup_bonus,
            last_used_written: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    pub(super) fn conn(&self) -> Result<crate::ledger::connection::RedisConn, AccountError> {
        Ok(self.ledger.redis().get()?)
    }

    /// Creates an account with its sign-up bonus. `password` may be `None` for accounts an
    /// operator creates (they can only use API keys until a password is set).
    pub async fn create(
        &self,
        email: &str,
        password: Option<&str>,
    ) -> Result<Account, AccountError> {
        let email = normalize_email(email)?;
        let password_hash = match password {
            Some(p) => {
                check_password(p)?;
                let p = p.to_string();
                hashing(move || secrets::hash_password(&p))
                    .await
                    .map_err(|_| AccountError::Invalid("password cannot be hashed"))?
            }
            None => String::new(),
        };
        let mut conn = self.conn()?;
        let fresh = format!("acc_{}", crate::ledger::new_id());
        let claimed: Option<String> = redis::cmd("SET")
            .arg(keys::email(&email))
            .arg(&fresh)
            .arg("NX")
            .arg("GET")
            .query_async(&mut conn)
            .await?;
        let id = match claimed {
            None => fresh,
            // Claimed before: taken, unless that sign-up died between its claim and the
            // account's creation; then this one finishes it under the claimed id.
            Some(existing) => {
                if self.get(&existing).await?.is_some() {
                    return Err(AccountError::EmailTaken);
                }
                existing
            }
        };
        let outcome = self
            .ledger
            .run(Op::CreateAccount {
                account: id.clone(),
                email: email.clone(),
                password_hash: password_hash.clone(),
                bonus: self.signup_bonus,
            })
            .await?;
        match outcome {
            Outcome::Created { .. } => {}
            Outcome::AccountExists => {
                // Ours, when a retry after a lost reply found it (same salted hash); else a
                // concurrent sign-up for the same email created it first.
                let stored: Option<String> = conn
                    .hget(AccountKeys::new(&id).account(), account_field::PASSWORD)
                    .await?;
                if stored.as_deref() != Some(password_hash.as_str()) || password_hash.is_empty() {
                    return Err(AccountError::EmailTaken);
                }
            }
            other => {
                return Err(AccountError::Ledger(LedgerError::Protocol(format!(
                    "account creation answered {other:?}"
                ))))
            }
        }
        let _: () = conn.sadd(keys::ACCOUNTS, &id).await?;
        self.get(&id).await?.ok_or(AccountError::NotFound)
    }

    /// Sets (or replaces) the password of an existing account, so it can log in to the
    /// dashboard. Sessions already open stay open.
    pub async fn set_password(&self, id: &str, password: &str) -> Result<(), AccountError> {
        check_password(password)?;
        if self.get(id).await?.is_none() {
            return Err(AccountError::NotFound);
        }
        let p = password.to_string();
        let hash = hashing(move || secrets::hash_password(&p))
            .await
            .map_err(|_| AccountError::Invalid("password cannot be hashed"))?;
        let mut conn = self.conn()?;
        let _: () = conn
            .hset(
                AccountKeys::new(id).account(),
                account_field::PASSWORD,
                hash,
            )
            .await?;
        Ok(())
    }

    pub async fn get(&self, id: &str) -> Result<Option<Account>, AccountError> {
        let mut conn = self.conn()?;
        let (email, created): (Option<String>, Option<i64>) = redis::cmd("HMGET")
            .arg(AccountKeys::new(id).account())
            .arg(account_field::EMAIL)
            .arg(account_field::CREATED)
            .query_async(&mut conn)
            .await?;
        Ok(email.map(|email| Account {
            id: id.to_string(),
            email,
            created_ms: created.unwrap_or(0),
        }))
    }

    pub async fn find_by_email(&self, email: &str) -> Result<Option<Account>, AccountError> {
        let Ok(email) = normalize_email(email) else {
            return Ok(None);
        };
        let mut conn = self.conn()?;
        let id: Option<String> = conn.get(keys::email(&email)).await?;
        match id {
            Some(id) => self.get(&id).await,
            None => Ok(None),
        }
    }

    /// Checks an email and password. Unknown emails cost the same time as wrong passwords.
    pub async fn login(&self, email: &str, password: &str) -> Result<Account, AccountError> {
        static DUMMY: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
            secrets::hash_password("timing equaliser").unwrap_or_default()
        });
        let account = self.find_by_email(email).await?;
        let stored: Option<String> = match &account {
            Some(a) => {
                let mut conn = self.conn()?;
                conn.hget(AccountKeys::new(&a.id).account(), account_field::PASSWORD)
                    .await?
            }
            None => None,
        };
        let stored = stored.filter(|s| !s.is_empty());
        let known = stored.is_some();
        let stored = stored.unwrap_or_else(|| DUMMY.clone());
        let password = password.to_string();
        let ok = hashing(move || secrets::verify_password(&password, &stored)).await;
        match account {
            Some(a) if ok && known => Ok(a),
            _ => Err(AccountError::BadCredentials),
        }
    }

    /// A new session for the account; returns the token for the cookie.
    pub async fn create_session(&self, account: &str) -> Result<String, AccountError> {
        let token = secrets::new_session_token();
        let mut conn = self.conn()?;
        let _: () = conn
            .set_ex(
                keys::session(&secrets::sha256_hex(token.as_bytes())),
                account,
                self.session_ttl.as_secs(),
            )
            .await?;
        Ok(token)
    }

    /// The account of a live session.
    pub async fn session_account(&self, token: &str) -> Result<Option<String>, AccountError> {
        if token.is_empty() || token.len() > 256 {
            return Ok(None);
        }
        let mut conn = self.conn()?;
        Ok(conn
            .get(keys::session(&secrets::sha256_hex(token.as_bytes())))
            .await?)
    }

    pub async fn revoke_session(&self, token: &str) -> Result<(), AccountError> {
        let mut conn = self.conn()?;
        let _: () = conn
            .del(keys::session(&secrets::sha256_hex(token.as_bytes())))
            .await?;
        Ok(())
    }

    /// A new API key. The secret is returned once and never stored.
    pub async fn create_key(
        &self,
        account: &str,
        name: &str,
    ) -> Result<(ApiKeyInfo, String), AccountError> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 100 {
            return Err(AccountError::Invalid("name must be 1 to 100 characters"));
        }
        if self.get(account).await?.is_none() {
            return Err(AccountError::NotFound);
        }
        let secret = secrets::new_api_key();
        let hash = secrets::sha256_hex(secret.as_bytes());
        let now_ms = now_ms();
        let info = ApiKeyInfo {
            id: format!("key_{}", crate::ledger::new_id()),
            name: name.to_string(),
            prefix: secret.chars().take(SHOWN_PREFIX).collect(),
            created_ms: now_ms,
            last_used_ms: None,
            signing_secret_since_ms: None,
            hash: hash.clone(),
        };
        let meta = serde_json::to_string(&info)
            .map_err(|e| AccountError::Ledger(LedgerError::Protocol(e.to_string())))?;
        let mut conn = self.conn()?;
        let k = AccountKeys::new(account);
        // Metadata first: a key whose lookup entry is missing is unusable, never unlisted.
        let _: () = conn.hset(k.api_keys(), &info.id, meta).await?;
        let _: () = conn
            .set(keys::api_key(&hash), format!("{account}|{}", info.id))
            .await?;
        Ok((info, secret))
    }

    pub async fn list_keys(&self, account: &str) -> Result<Vec<ApiKeyInfo>, AccountError> {
        let mut conn = self.conn()?;
        let k = AccountKeys::new(account);
        let (metas, used): (HashMap<String, String>, HashMap<String, i64>) = redis::pipe()
            .hgetall(k.api_keys())
            .hgetall(k.api_keys_used())
            .query_async(&mut conn)
            .await?;
        let mut keys: Vec<ApiKeyInfo> = metas
            .values()
            .filter_map(|m| serde_json::from_str::<ApiKeyInfo>(m).ok())
            .map(|mut info| {
                info.last_used_ms = used.get(&info.id).copied();
                info
            })
            .collect();
        keys.sort_by(|a, b| (a.created_ms, &a.id).cmp(&(b.created_ms, &b.id)));
        let ids: Vec<String> = keys.iter().map(|k| k.id.clone()).collect();
        let since = self.signing_since(account, &ids).await?;
        for key in &mut keys {
            key.signing_secret_since_ms = since.get(&key.id).copied();
        }
        Ok(keys)
    }

    /// Revokes a key of the account. `false` when the account has no such key.
    pub async fn revoke_key(&self, account: &str, key_id: &str) -> Result<bool, AccountError> {
        let mut conn = self.conn()?;
        let k = AccountKeys::new(account);
        let meta: Option<String> = conn.hget(k.api_keys(), key_id).await?;
        let Some(info) = meta.and_then(|m| serde_json::from_str::<ApiKeyInfo>(&m).ok()) else {
            return Ok(false);
        };
        // Its signing secret and the lookup entry go first: from then on the key authenticates
        // nothing, by itself or by a signed link.
        self.drop_signing_secret(key_id).await?;
        let _: () = conn.del(keys::api_key(&info.hash)).await?;
        let _: () = redis::pipe()
            .hdel(k.api_keys(), key_id)
            .hdel(k.api_keys_used(), key_id)
            .query_async(&mut conn)
            .await?;
        Ok(true)
    }

    /// The caller behind an API key secret, recording when the key was last used.
    pub async fn authenticate_key(&self, secret: &str) -> Result<Option<Principal>, AccountError> {
        if !secret.starts_with(secrets::API_KEY_PREFIX) || secret.len() > 256 {
            return Ok(None);
        }
        let mut conn = self.conn()?;
        let entry: Option<String> = conn
            .get(keys::api_key(&secrets::sha256_hex(secret.as_bytes())))
            .await?;
        let Some((account, key_id)) = entry.as_deref().and_then(|e| e.split_once('|')) else {
            return Ok(None);
        };
        let principal = Principal {
            account: account.to_string(),
            key_id: Some(key_id.to_string()),
        };
        if self.should_write_last_used(key_id) {
            let k = AccountKeys::new(account);
            let _: Result<(), _> = conn.hset(k.api_keys_used(), key_id, now_ms()).await;
        }
        Ok(Some(principal))
    }

    fn should_write_last_used(&self, key_id: &str) -> bool {
        let Ok(mut written) = self.last_used_written.lock() else {
            return true;
        };
        let now = Instant::now();
        if written.len() > 100_000 {
            written.retain(|_, at| now.duration_since(*at) < LAST_USED_EVERY);
        }
        match written.get(key_id) {
            Some(at) if now.duration_since(*at) < LAST_USED_EVERY => false,
            _ => {
                written.insert(key_id.to_string(), now);
                true
            }
        }
    }

    /// Every account id (operator listing).
    pub async fn all_ids(&self) -> Result<Vec<String>, AccountError> {
        let mut conn = self.conn()?;
        let mut ids: Vec<String> = conn.smembers(keys::ACCOUNTS).await?;
        ids.sort();
        Ok(ids)
    }

    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_normalised_or_refused() {
        assert_eq!(
            normalize_email("  Alice@Example.COM ").ok().as_deref(),
            Some("alice@example.com")
        );
        for bad in [
            "",
            "alice",
            "@example.com",
            "a@b",
            "a b@c.d",
            "a@@b.c",
            "a@.b.c",
            "a@b.c.",
        ] {
            assert!(normalize_email(bad).is_err(), "{bad:?} accepted");
        }
    }
}
