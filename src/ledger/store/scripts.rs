//! The ledger's Lua scripts (`ledger/scripts/*.lua`): loading them into Redis, and running one
//! operation ([`execute`]) as one script invocation.

use std::sync::LazyLock;

use redis::aio::ConnectionLike;
use redis::{Script, Value};

use super::outcome::parse_outcome;
use crate::ledger::keys::{self, AccountKeys};
use crate::ledger::{LedgerError, Op, Outcome, TxKind};

pub(super) struct Scripts {
    reserve: Script,
    commit: Script,
    release: Script,
    grant: Script,
    refund: Script,
    create_account: Script,
    pub(super) snapshot: Script,
}

const RESERVE: &str = include_str!("../scripts/reserve.lua");
const COMMIT: &str = include_str!("../scripts/commit.lua");
const RELEASE: &str = include_str!("../scripts/release.lua");
const GRANT: &str = include_str!("../scripts/grant.lua");
const REFUND: &str = include_str!("../scripts/refund.lua");
const CREATE_ACCOUNT: &str = include_str!("../scripts/create_account.lua");
const SNAPSHOT: &str = include_str!("../scripts/snapshot.lua");
const SOURCES: [&str; 7] = [
    RESERVE,
    COMMIT,
    RELEASE,
    GRANT,
    REFUND,
    CREATE_ACCOUNT,
    SNAPSHOT,
];

pub(super) static SCRIPTS: LazyLock<Scripts> = LazyLock::new(|| Scripts {
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
                .key(k.usage_by_day())
                .key(k.low_balance())
                .key(k.low_balance_due());
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
                .arg(body)
                .arg(keys::LOW_BALANCE_FIRST_TTL_MS);
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
                .arg(crate::ledger::new_id());
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
                .arg(crate::ledger::new_id());
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
                .arg(crate::ledger::new_id())
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
