//! Reads of an account's ledger: its counters, pages of its transaction log (all, or one kind),
//! captures charged per day.

use redis::aio::ConnectionLike;

use crate::ledger::keys::{account_field, AccountKeys};
use crate::ledger::{Balance, LedgerError, Transaction, TxKind};

/// An account's counters (one `HMGET`).
pub async fn balance<C: ConnectionLike>(
    conn: &mut C,
    account: &str,
) -> Result<Option<Balance>, LedgerError> {
    let k = AccountKeys::new(account);
    let values: Vec<Option<i64>> = redis::cmd("HMGET")
        .arg(k.account())
        .arg(&[
            account_field::AVAILABLE,
            account_field::RESERVED,
            account_field::SPENT,
            account_field::GRANTED,
        ])
        .query_async(conn)
        .await?;
    Ok(balance_of(&values))
}

/// The counters `available`, `reserved`, `spent`, `granted` as read (`HMGET`) as a [`Balance`];
/// `None` when the account has none (no `available`).
pub(super) fn balance_of(counters: &[Option<i64>]) -> Option<Balance> {
    match counters {
        [Some(available), reserved, spent, granted] => Some(Balance {
            available: *available,
            reserved: reserved.unwrap_or(0),
            spent: spent.unwrap_or(0),
            granted: granted.unwrap_or(0),
        }),
        _ => None,
    }
}

/// One page of the transaction log, newest first, and the log's length; with `kind`, of that
/// kind only (and their count).
pub async fn transactions<C: ConnectionLike>(
    conn: &mut C,
    account: &str,
    offset: usize,
    limit: usize,
    kind: Option<TxKind>,
) -> Result<(Vec<Transaction>, usize), LedgerError> {
    let k = AccountKeys::new(account);
    let log = match kind {
        None => k.transactions(),
        Some(TxKind::Usage) => return usage_page(conn, &k, offset, limit).await,
        Some(kind) => k.transactions_of(kind),
    };
    let stop = offset.saturating_add(limit.max(1)) - 1;
    let (raw, total): (Vec<String>, usize) = redis::pipe()
        .cmd("LRANGE")
        .arg(&log)
        .arg(offset)
        .arg(stop)
        .cmd("LLEN")
        .arg(&log)
        .query_async(conn)
        .await?;
    let entries = raw
        .iter()
        .map(|r| parse_transaction(r))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((entries, total))
}

/// A page of `usage` entries: the log less its few other entries, read in chunks from the
/// newest; their count is `spent` (each capture is one −1 entry).
async fn usage_page<C: ConnectionLike>(
    conn: &mut C,
    k: &AccountKeys,
    offset: usize,
    limit: usize,
) -> Result<(Vec<Transaction>, usize), LedgerError> {
    const CHUNK: usize = 512;
    let log = k.transactions();
    let spent: Option<i64> = redis::cmd("HGET")
        .arg(k.account())
        .arg("spent")
        .query_async(conn)
        .await?;
    let total = usize::try_from(spent.unwrap_or(0)).unwrap_or(0);
    let mut page = Vec::new();
    let mut skipped = 0;
    let mut index = 0usize;
    while page.len() < limit {
        let raw: Vec<String> = redis::cmd("LRANGE")
            .arg(&log)
            .arg(index)
            .arg(index + CHUNK - 1)
            .query_async(conn)
            .await?;
        if raw.is_empty() {
            break;
        }
        index += raw.len();
        for r in &raw {
            let t = parse_transaction(r)?;
            if t.kind != TxKind::Usage {
                continue;
            }
            if skipped < offset {
                skipped += 1;
            } else if page.len() < limit {
                page.push(t);
            }
        }
    }
    Ok((page, total))
}

/// Captures charged on each of `days` (UTC, `YYYY-MM-DD`), in the same order.
pub async fn usage_by_day<C: ConnectionLike>(
    conn: &mut C,
    account: &str,
    days: &[String],
) -> Result<Vec<i64>, LedgerError> {
    per_day(conn, &AccountKeys::new(account).usage_by_day(), days).await
}

/// Cache hits on each of `days` (UTC, `YYYY-MM-DD`), in the same order.
pub async fn cache_hits_by_day<C: ConnectionLike>(
    conn: &mut C,
    account: &str,
    days: &[String],
) -> Result<Vec<i64>, LedgerError> {
    per_day(conn, &AccountKeys::new(account).cache_hits_by_day(), days).await
}

/// The counts of a day → count hash on each of `days` (0 where none), in the same order.
async fn per_day<C: ConnectionLike>(
    conn: &mut C,
    hash: &str,
    days: &[String],
) -> Result<Vec<i64>, LedgerError> {
    if days.is_empty() {
        return Ok(Vec::new());
    }
    let counts: Vec<Option<i64>> = redis::cmd("HMGET")
        .arg(hash)
        .arg(days)
        .query_async(conn)
        .await?;
    Ok(counts.into_iter().map(Option::unwrap_or_default).collect())
}

/// Counts one cache hit of `account` on `day` (UTC, `YYYY-MM-DD`). Not a credit mutation (a
/// hit moves no credit), so it is one command, not a script through the ledger actor.
pub async fn record_cache_hit<C: ConnectionLike>(
    conn: &mut C,
    account: &str,
    day: &str,
) -> Result<(), LedgerError> {
    let _: i64 = redis::cmd("HINCRBY")
        .arg(AccountKeys::new(account).cache_hits_by_day())
        .arg(day)
        .arg(1)
        .query_async(conn)
        .await?;
    Ok(())
}

/// The JSON a script writes to the log. Numbers come from Lua's cjson as floats.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct LoggedTransaction {
    id: String,
    #[serde(rename = "type")]
    kind: String,
    amount: f64,
    description: String,
    at: f64,
    balance_after: f64,
}

pub(super) fn parse_transaction(raw: &str) -> Result<Transaction, LedgerError> {
    let bad = |why: String| LedgerError::Protocol(format!("transaction {raw:?}: {why}"));
    let t: LoggedTransaction = serde_json::from_str(raw).map_err(|e| bad(e.to_string()))?;
    let kind = TxKind::parse(&t.kind).ok_or_else(|| bad("unknown type".into()))?;
    Ok(Transaction {
        id: t.id,
        kind,
        amount: t.amount as i64,
        description: t.description,
        at_ms: t.at as i64,
        balance_after: t.balance_after as i64,
    })
}
