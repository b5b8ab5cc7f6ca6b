//! The sweeper's scan: holds past their expiry, read shard by shard against Redis' own clock.

use redis::aio::ConnectionLike;

use crate::ledger::keys;
use crate::ledger::LedgerError;

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
