//! The ledger in Redis: its Lua scripts and the functions that run them. Each mutation is one
//! script, passed every key it touches in `KEYS`, with every check before its first write.
//! Only the ledger actor calls [`execute`] in the daemon; benches and the audit use it directly.

use std::sync::LazyLock;

use redis::aio::ConnectionLike;
use redis::{Script, Value};

use super::keys::{self, AccountKeys};
use super::{Balance, HoldState, LedgerError, Op, Outcome, StoredResult, Transaction, TxKind};

struct Scripts {
    reserve: Script,
    commit: Script,
    release: Script,
    grant: Script,
    refund: Script,
    create_account: Script,
    snapshot: Script,
}

const RESERVE: &str = include_str!("scripts/reserve.lua");
const COMMIT: &str = include_str!("scripts/commit.lua");
const RELEASE: &str = include_str!("scripts/release.lua");
const GRANT: &str = include_str!("scripts/grant.lua");
const REFUND: &str = include_str!("scripts/refund.lua");
const CREATE_ACCOUNT: &str = include_str!("scripts/create_account.lua");
const SNAPSHOT: &str = include_str!("scripts/snapshot.lua");
const SOURCES: [&str; 7] = [
    RESERVE,
    COMMIT,
    RELEASE,
    GRANT,
    REFUND,
    CREATE_ACCOUNT,
    SNAPSHOT,
];

static SCRIPTS: LazyLock<Scripts> = LazyLock::new(|| Scripts {
    reserve: Script::new(RESERVE),
    commit: Script::new(COMMIT),
    release: Script::new(RELEASE),
    grant: Script::new(GRANT),
    refund: Script::new(REFUND),
    create_account: Script::new(CREATE_ACCOUNT),
    snapshot: Script::new(SNAPSHOT),
});

/// Loads every script into Redis' script cache (`SCRIPT LOAD`), so that operations sent right
/// after connecting run at once rather than being re-sent after a `NOSCRIPT` reply.
/// One command per script (not a pipeline): in a Redis Cluster each `SCRIPT LOAD` goes to
/// every primary. A node that still lacks a script (a failover, a new node) answers `NOSCRIPT`,
/// and the invocation loads it there and retries.
pub async fn load_scripts<C: ConnectionLike>(conn: &mut C) -> Result<(), LedgerError> {
    for source in SOURCES {
        let _: Value = redis::cmd("SCRIPT")
            .arg("LOAD")
            .arg(source)
            .query_async(conn)
            .await?;
    }
    Ok(())
}

/// Runs one ledger operation. Sends exactly one `EVALSHA` on its first poll (plus `SCRIPT LOAD`
/// and a second `EVALSHA` only if Redis lost the script).
pub async fn execute<C: ConnectionLike>(conn: &mut C, op: &Op) -> Result<Outcome, LedgerError> {
    let s = &*SCRIPTS;
    let reply: Value = match op {
        Op::Reserve {
            account,
            hold,
            amount,
            ttl,
            idempotency,
            description,
            max_held,
        } => {
            let k = AccountKeys::new(account);
            let mut inv = s.reserve.prepare_invoke();
            inv.key(k.account())
                .key(k.holds())
                .key(k.sweep())
                .key(k.hold_record(hold));
            if let Some(i) = idempotency {
                inv.key(k.idempotency(&i.key_hash));
            }
            let (fingerprint, key_hash) = idempotency
                .as_ref()
                .map_or(("", ""), |i| (i.fingerprint.as_str(), i.key_hash.as_str()));
            inv.arg(hold)
                .arg(account)
                .arg(*amount)
                .arg(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX))
                .arg(fingerprint)
                .arg(key_hash)
                .arg(description)
                .arg(*max_held);
            inv.invoke_async(conn).await?
        }
        Op::Commit {
            account,
            hold,
            idempotency,
            result,
            result_ttl,
        } => {
            let k = AccountKeys::new(account);
            let mut inv = s.commit.prepare_invoke();
            inv.key(k.account())
                .key(k.holds())
                .key(k.sweep())
                .key(k.hold_record(hold))
                .key(k.transactions())
                .key(k.usage_by_day());
            if let Some(i) = idempotency {
                inv.key(k.idempotency(&i.key_hash));
            }
            let (state, meta, body): (&str, &str, &[u8]) = match result {
                Some(r) => ("done", &r.meta, &r.body),
                None => ("done_large", "", &[]),
            };
            inv.arg(hold)
                .arg(account)
                .arg(u64::try_from(result_ttl.as_millis()).unwrap_or(u64::MAX))
                .arg(state)
                .arg(meta)
                .arg(body);
            inv.invoke_async(conn).await?
        }
        Op::Release {
            account,
            hold,
            idempotency,
        } => {
            let key_hash = idempotency.as_ref().map(|i| i.key_hash.as_str());
            release(conn, account, hold, key_hash, "released", "").await?
        }
        Op::Expire {
            account,
            hold,
            idempotency_key_hash,
            member,
        } => {
            let key_hash = Some(idempotency_key_hash.as_str()).filter(|h| !h.is_empty());
            release(conn, account, hold, key_hash, "expired", member).await?
        }
        Op::Grant {
            account,
            amount,
            kind,
            description,
            reference,
        } => {
            let k = AccountKeys::new(account);
            let mut inv = s.grant.prepare_invoke();
            inv.key(k.account())
                .key(k.refs())
                .key(k.transactions())
                .key(k.transactions_of(*kind))
                .arg(*amount)
                .arg(kind.as_str())
                .arg(description)
                .arg(reference.as_deref().unwrap_or(""))
                .arg(super::new_id());
            inv.invoke_async(conn).await?
        }
        Op::Refund {
            account,
            order,
            refunded,
            description,
        } => {
            let k = AccountKeys::new(account);
            let mut inv = s.refund.prepare_invoke();
            inv.key(k.account())
                .key(k.refs())
                .key(k.transactions())
                .key(k.refunds())
                .key(k.transactions_of(TxKind::Refund))
                .arg(keys::order_reference(order))
                .arg(order)
                .arg(*refunded)
                .arg(description)
                .arg(super::new_id());
            inv.invoke_async(conn).await?
        }
        Op::CreateAccount {
            account,
            email,
            password_hash,
            bonus,
        } => {
            let k = AccountKeys::new(account);
            let mut inv = s.create_account.prepare_invoke();
            inv.key(k.account())
                .key(k.refs())
                .key(k.transactions())
                .key(k.transactions_of(TxKind::SignupBonus))
                .arg(account)
                .arg(email)
                .arg(password_hash)
                .arg(*bonus)
                .arg(super::new_id())
                .arg("Free credits for signing up");
            inv.invoke_async(conn).await?
        }
    };
    parse_outcome(reply)
}

async fn release<C: ConnectionLike>(
    conn: &mut C,
    account: &str,
    hold: &str,
    idempotency_key_hash: Option<&str>,
    mode: &str,
    member: &str,
) -> Result<Value, LedgerError> {
    let k = AccountKeys::new(account);
    let mut inv = SCRIPTS.release.prepare_invoke();
    inv.key(k.account())
        .key(k.holds())
        .key(k.sweep())
        .key(k.hold_record(hold));
    if let Some(h) = idempotency_key_hash {
        inv.key(k.idempotency(h));
    }
    inv.arg(hold).arg(account).arg(mode).arg(member);
    Ok(inv.invoke_async(conn).await?)
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Int(i) => Some(i.to_string()),
        _ => None,
    }
}

fn int(v: &Value) -> Option<i64> {
    match v {
        Value::Int(i) => Some(*i),
        other => text(other).and_then(|s| s.parse().ok()),
    }
}

fn bytes(v: &Value) -> Vec<u8> {
    match v {
        Value::BulkString(b) => b.clone(),
        _ => Vec::new(),
    }
}

/// Turns a script's `{outcome, available, …}` reply into an [`Outcome`].
fn parse_outcome(reply: Value) -> Result<Outcome, LedgerError> {
    let bad = || LedgerError::Protocol(format!("{reply:?}"));
    let Value::Array(items) = &reply else {
        return Err(bad());
    };
    let name = items.first().and_then(text).ok_or_else(bad)?;
    let available = items.get(1).and_then(int).ok_or_else(bad)?;
    let state = || {
        items
            .get(2)
            .and_then(text)
            .as_deref()
            .and_then(HoldState::parse)
            .ok_or_else(bad)
    };
    Ok(match name.as_str() {
        "ok" | "held" => Outcome::Reserved { available },
        "insufficient" => Outcome::Insufficient { available },
        "busy" => Outcome::TooManyInFlight { available },
        "no_account" => Outcome::NoAccount,
        "idem_inflight" => Outcome::IdempotencyInFlight { available },
        "idem_mismatch" => Outcome::IdempotencyMismatch { available },
        "idem_unavailable" => Outcome::IdempotencyResultUnavailable { available },
        "idem_done" => Outcome::IdempotencyReplay {
            available,
            result: StoredResult {
                meta: items.get(2).and_then(text).unwrap_or_default(),
                body: items.get(3).map(bytes).unwrap_or_default(),
            },
        },
        "committed" => Outcome::Committed {
            available,
            low: items.get(2).and_then(int) == Some(1),
            crossed: items.get(3).and_then(int) == Some(1),
        },
        "released" => Outcome::Released { available },
        "expired" => Outcome::Expired { available },
        "not_due" => Outcome::NotDue { available },
        "resolved" => Outcome::AlreadyResolved {
            available,
            state: state()?,
        },
        "unknown" => Outcome::UnknownHold { available },
        "granted" => Outcome::Granted { available },
        "duplicate" => Outcome::Duplicate { available },
        "refunded" => Outcome::Refunded {
            available,
            taken: items.get(2).and_then(int).ok_or_else(bad)?,
        },
        "not_credited" => Outcome::NotCredited { available },
        "created" => Outcome::Created { bonus: available },
        "exists" => Outcome::AccountExists,
        _ => return Err(bad()),
    })
}

/// An account's counters (one `HMGET`).
pub async fn balance<C: ConnectionLike>(
    conn: &mut C,
    account: &str,
) -> Result<Option<Balance>, LedgerError> {
    let k = AccountKeys::new(account);
    let values: Vec<Option<i64>> = redis::cmd("HMGET")
        .arg(k.account())
        .arg(&["available", "reserved", "spent", "granted"])
        .query_async(conn)
        .await?;
    Ok(match values.as_slice() {
        [Some(available), reserved, spent, granted] => Some(Balance {
            available: *available,
            reserved: reserved.unwrap_or(0),
            spent: spent.unwrap_or(0),
            granted: granted.unwrap_or(0),
        }),
        _ => None,
    })
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
    if days.is_empty() {
        return Ok(Vec::new());
    }
    let counts: Vec<Option<i64>> = redis::cmd("HMGET")
        .arg(AccountKeys::new(account).usage_by_day())
        .arg(days)
        .query_async(conn)
        .await?;
    Ok(counts.into_iter().map(Option::unwrap_or_default).collect())
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

fn parse_transaction(raw: &str) -> Result<Transaction, LedgerError> {
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

/// An open hold as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenHold {
    pub id: String,
    pub amount: i64,
    pub expires_ms: i64,
    pub idempotency_key_hash: String,
    pub description: String,
}

/// An account's whole ledger state, read atomically.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub balance: Balance,
    pub holds: Vec<OpenHold>,
    /// Newest first.
    pub transactions: Vec<Transaction>,
    /// The per-type logs of every kind but `usage`, newest first.
    pub by_kind: Vec<(TxKind, Vec<Transaction>)>,
    /// Captures charged per UTC day (`YYYY-MM-DD`).
    pub usage_by_day: Vec<(String, i64)>,
}

/// The kinds with a per-type log (`usage` is the log itself, less the few others).
pub const KINDS_WITH_OWN_LOG: [TxKind; 5] = [
    TxKind::Purchase,
    TxKind::AutoTopup,
    TxKind::SignupBonus,
    TxKind::Adjustment,
    TxKind::Refund,
];

/// Reads an account's counters, open holds and whole log in one script (audits and tests).
pub async fn snapshot<C: ConnectionLike>(
    conn: &mut C,
    account: &str,
) -> Result<Option<Snapshot>, LedgerError> {
    let k = AccountKeys::new(account);
    let mut invocation = SCRIPTS.snapshot.prepare_invoke();
    invocation
        .key(k.account())
        .key(k.holds())
        .key(k.transactions())
        .key(k.usage_by_day());
    for kind in KINDS_WITH_OWN_LOG {
        invocation.key(k.transactions_of(kind));
    }
    #[allow(clippy::type_complexity)]
    let (counters, holds, log, daily, by_kind): (
        Vec<Option<i64>>,
        Vec<String>,
        Vec<String>,
        Vec<(String, i64)>,
        Vec<Vec<String>>,
    ) = invocation.invoke_async(conn).await?;
    let balance = match counters.as_slice() {
        [Some(available), reserved, spent, granted] => Balance {
            available: *available,
            reserved: reserved.unwrap_or(0),
            spent: spent.unwrap_or(0),
            granted: granted.unwrap_or(0),
        },
        _ => return Ok(None),
    };
    let holds = holds
        .chunks(2)
        .map(|pair| match pair {
            [id, entry] => parse_hold(id, entry),
            _ => Err(LedgerError::Protocol("odd HGETALL reply".into())),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let parse_all = |raw: &[String]| {
        raw.iter()
            .map(|r| parse_transaction(r))
            .collect::<Result<Vec<_>, _>>()
    };
    let transactions = parse_all(&log)?;
    let by_kind = KINDS_WITH_OWN_LOG
        .into_iter()
        .zip(by_kind.iter())
        .map(|(kind, raw)| parse_all(raw).map(|list| (kind, list)))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Some(Snapshot {
        balance,
        holds,
        transactions,
        by_kind,
        usage_by_day: daily,
    }))
}

fn parse_hold(id: &str, entry: &str) -> Result<OpenHold, LedgerError> {
    let mut parts = entry.splitn(4, '|');
    let mut next = || parts.next().unwrap_or_default();
    let (amount, expires, idem, description) = (next(), next(), next(), next());
    match (amount.parse(), expires.parse()) {
        (Ok(amount), Ok(expires_ms)) => Ok(OpenHold {
            id: id.to_string(),
            amount,
            expires_ms,
            idempotency_key_hash: idem.to_string(),
            description: description.to_string(),
        }),
        _ => Err(LedgerError::Protocol(format!("hold entry {entry:?}"))),
    }
}

/// A hold the sweeper found past its expiry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueHold {
    pub account: String,
    pub hold: String,
    pub idempotency_key_hash: String,
    /// The sweep index member, as stored.
    pub member: String,
}

/// Up to `per_shard` due holds of every shard. Due means expiring before Redis' own clock, so
/// hosts with skewed clocks agree. The shards live in different cluster slots, so each is read
/// by a command of its own, all sent at once on the multiplexed connection.
pub async fn due_holds<C: ConnectionLike + Clone>(
    conn: &mut C,
    per_shard: usize,
) -> Result<Vec<DueHold>, LedgerError> {
    let (secs, micros): (i64, i64) = redis::cmd("TIME").query_async(conn).await?;
    let now_ms = secs * 1000 + micros / 1000;
    let reads = (0..keys::SHARDS).map(|shard| {
        let mut conn = conn.clone();
        async move {
            redis::cmd("ZRANGEBYSCORE")
                .arg(keys::sweep(shard))
                .arg("-inf")
                .arg(now_ms)
                .arg("LIMIT")
                .arg(0)
                .arg(per_shard)
                .query_async::<Vec<String>>(&mut conn)
                .await
        }
    });
    let shards = futures::future::try_join_all(reads).await?;
    Ok(shards
        .into_iter()
        .flatten()
        .filter_map(|member| {
            let mut parts = member.splitn(3, '|');
            let account = parts.next()?.to_string();
            let hold = parts.next()?.to_string();
            let idempotency_key_hash = parts.next().unwrap_or_default().to_string();
            Some(DueHold {
                account,
                hold,
                idempotency_key_hash,
                member,
            })
        })
        .collect())
}
