//! The sweeper: gives back the credit of holds whose capture never settled (its daemon was
//! killed, or lost Redis at the wrong moment). Every daemon runs one; they may overlap safely,
//! because expiring is a ledger operation that re-checks the hold's expiry against Redis' clock
//! and resolves a hold at most once.

use std::time::Duration;

use super::{store, Ledger, Op, Outcome};

/// Most due holds taken from one shard per pass.
const PER_SHARD: usize = 100;

/// Runs one pass: expires every hold found due. Returns how many were expired by this pass.
pub async fn sweep_once(ledger: &Ledger) -> Result<usize, super::LedgerError> {
    let mut conn = ledger.redis().get()?;
    let due = store::due_holds(&mut conn, PER_SHARD).await?;
    let mut expired = 0;
    for hold in due {
        // One hold that fails must not stop the others from coming back.
        let outcome = match ledger
            .run(Op::Expire {
                account: hold.account.clone(),
                hold: hold.hold.clone(),
                idempotency_key_hash: hold.idempotency_key_hash.clone(),
                member: hold.member.clone(),
            })
            .await
        {
            Ok(outcome) => outcome,
            Err(e) => {
                tracing::warn!(account = %hold.account, hold = %hold.hold, "expiry failed: {e}");
                continue;
            }
        };
        if let Outcome::Expired { available } = outcome {
            expired += 1;
            tracing::warn!(
                account = %hold.account,
                hold = %hold.hold,
                available,
                "expired a hold whose capture never settled; its credit is back"
            );
        }
    }
    Ok(expired)
}

/// Sweeps every `interval` until the task is dropped.
pub fn spawn(ledger: Ledger, interval: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            if let Err(e) = sweep_once(&ledger).await {
                tracing::debug!("sweep skipped: {e}");
            }
        }
    })
}
