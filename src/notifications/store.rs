//! Pending low-balance notifications in Redis: the only file of `notifications` that speaks
//! Redis.
//!
//! Keys (`ledger::keys`): an account's pending notification is the hash
//! `sf:{sNNN}:lowbal:<account>` (`id` = its `webhook-id`, `balance`, `threshold`, `at`,
//! `attempts`), and its shard's sorted set `sf:{sNNN}:lowbal_due` scores the account by when the
//! notification may next be attempted (ms, Redis time). Both are in the account's shard, so
//! `commit.lua` writes them in the same script as the charge that crossed, and each script here
//! touches one slot (single Redis and Redis Cluster alike).
//!
//! A daemon *claims* a due notification (its score moves to now + the lease and its attempt count
//! goes up, in one script), makes one attempt, then *settles* it: deleted (delivered, refused,
//! given up) or rescheduled after the retry wait — only while the record still carries the id it
//! claimed (a newer crossing may have replaced it meanwhile). A daemon that dies mid-attempt
//! settles nothing; once the lease is over, any daemon's claim succeeds again.

use std::time::Duration;

use redis::Script;

use crate::ledger::keys::{self, AccountKeys};
use crate::ledger::{LedgerError, RedisHandle};

/// Claims an account's due notification. KEYS[1] the notification, KEYS[2] the shard's due
/// set; ARGV[1] account, ARGV[2] lease (ms), ARGV[3] the record's lifetime from now (ms).
/// Returns nil when it is not due (or gone), else {id, balance, threshold, at, attempts}.
const CLAIM: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local score = redis.call('ZSCORE', KEYS[2], ARGV[1])
if not score or tonumber(score) > now then return false end
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('ZREM', KEYS[2], ARGV[1])
  return false
end
redis.call('HINCRBY', KEYS[1], 'attempts', 1)
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[2]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]))
return redis.call('HMGET', KEYS[1], 'id', 'balance', 'threshold', 'at', 'attempts')
";

/// Settles a claimed notification, only while the record still has the claimed id.
/// KEYS[1] the notification, KEYS[2] the shard's due set; ARGV[1] account, ARGV[2] id,
/// ARGV[3] wait before the next attempt (ms; '' = done: deleted), ARGV[4] the record's
/// lifetime from now (ms). Returns 1 when settled, 0 when the record is another's or gone.
const SETTLE: &str = r"
if redis.call('HGET', KEYS[1], 'id') ~= ARGV[2] then return 0 end
if ARGV[3] == '' then
  redis.call('DEL', KEYS[1])
  redis.call('ZREM', KEYS[2], ARGV[1])
  return 1
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[3]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[4]))
return 1
";

/// A notification this daemon claimed: one attempt is its to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimed {
    /// Its `webhook-id`, the same on every attempt and host.
    pub id: String,
    /// The balance right after the charge that crossed.
    pub balance: i64,
    pub threshold: i64,
    /// When the charge crossed (ms, Redis time): the message's `timestamp`, so every attempt
    /// sends the same body.
    pub at_ms: i64,
    /// This attempt's number (1 = the first), crashed attempts included.
    pub attempt: u32,
}

/// What a scan of the due sets found.
#[derive(Debug, Clone, Default)]
pub struct Due {
    /// Accounts whose notification has been due for the grace asked.
    pub accounts: Vec<String>,
    /// Pending notifications seen (due or not; at most `per_shard` per shard).
    pub pending: usize,
}

/// How a claimed notification ends its attempt.
pub enum Settle {
    /// Delivered, refused or given up: deleted.
    Done,
    /// Tried again after this wait (by whichever daemon claims it then).
    RetryAfter(Duration),
}

/// The pending notifications' Redis side; cheap to clone.
#[derive(Clone)]
pub struct NoticeStore {
    redis: RedisHandle,
    claim: Script,
    settle: Script,
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl NoticeStore {
    pub fn new(redis: RedisHandle) -> NoticeStore {
        NoticeStore {
            redis,
            claim: Script::new(CLAIM),
            settle: Script::new(SETTLE),
        }
    }

    /// Every shard's due set, up to `per_shard` members each, against Redis' own clock: due
    /// means due for at least `grace` (a notification whose own daemon is about to retry it is
    /// left to that daemon). The shards live in different cluster slots: one command each, all
    /// sent at once on the multiplexed connection (as the sweeper does).
    pub async fn due(&self, per_shard: usize, grace: Duration) -> Result<Due, LedgerError> {
        let mut conn = self.redis.get()?;
        let (secs, micros): (i64, i64) = redis::cmd("TIME").query_async(&mut conn).await?;
        let now_ms = secs * 1000 + micros / 1000;
        let before = now_ms.saturating_sub(i64::try_from(millis(grace)).unwrap_or(i64::MAX));
        let reads = (0..keys::SHARDS).map(|shard| {
            let mut conn = conn.clone();
            async move {
                redis::cmd("ZRANGE")
                    .arg(keys::low_balance_due(shard))
                    .arg(0)
                    .arg(per_shard.saturating_sub(1))
                    .arg("WITHSCORES")
                    .query_async::<Vec<(String, f64)>>(&mut conn)
                    .await
            }
        });
        let shards = futures::future::try_join_all(reads).await?;
        let mut due = Due::default();
        for (account, score) in shards.into_iter().flatten() {
            due.pending += 1;
            if score <= before as f64 {
                due.accounts.push(account);
            }
        }
        Ok(due)
    }

    /// Claims `account`'s notification if it is due; see [`CLAIM`].
    pub async fn claim(
        &self,
        account: &str,
        lease: Duration,
        ttl: Duration,
    ) -> Result<Option<Claimed>, LedgerError> {
        let mut conn = self.redis.get()?;
        let k = AccountKeys::new(account);
        let fields: Option<Vec<Option<String>>> = self
            .claim
            .key(k.low_balance())
            .key(k.low_balance_due())
            .arg(account)
            .arg(millis(lease))
            .arg(millis(ttl))
            .invoke_async(&mut conn)
            .await?;
        let Some(fields) = fields else {
            return Ok(None);
        };
        let field = |i: usize| fields.get(i).cloned().flatten();
        let number = |i: usize| field(i).and_then(|v| v.parse::<i64>().ok()).unwrap_or(0);
        let Some(id) = field(0).filter(|id| !id.is_empty()) else {
            return Ok(None);
        };
        Ok(Some(Claimed {
            id,
            balance: number(1),
            threshold: number(2),
            at_ms: number(3),
            attempt: u32::try_from(number(4)).unwrap_or(u32::MAX),
        }))
    }

    /// Settles the attempt this daemon claimed; false when the record was replaced by a newer
    /// crossing (or is gone) meanwhile. See [`SETTLE`].
    pub async fn settle(
        &self,
        account: &str,
        id: &str,
        how: Settle,
        ttl: Duration,
    ) -> Result<bool, LedgerError> {
        let mut conn = self.redis.get()?;
        let k = AccountKeys::new(account);
        let wait = match how {
            Settle::Done => String::new(),
            Settle::RetryAfter(wait) => millis(wait).to_string(),
        };
        let settled: i64 = self
            .settle
            .key(k.low_balance())
            .key(k.low_balance_due())
            .arg(account)
            .arg(id)
            .arg(wait)
            .arg(millis(ttl))
            .invoke_async(&mut conn)
            .await?;
        Ok(settled == 1)
    }
}
