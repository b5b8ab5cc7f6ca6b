//! An account's whole ledger state (counters, open holds, every log), read atomically by one
//! script: what audits and tests check.

use redis::aio::ConnectionLike;

use super::reads::{balance_of, parse_transaction};
use super::scripts::SCRIPTS;
use crate::ledger::keys::AccountKeys;
use crate::ledger::{Balance, LedgerError, Transaction, TxKind};

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
    let Some(balance) = balance_of(&counters) else {
        return Ok(None);
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
