//! One credit held for a piece of work and settled exactly once: the charging invariant in one
//! home, with no HTTP in sight.
//!
//! [`Hold::reserve`] puts one credit on hold (with an expiry) before the work starts. The holder
//! then either [`Hold::commit`]s it (the work was delivered: the charge) or [`Hold::release`]s it
//! (it failed: the credit comes back). Both take the hold by value, so a hold is settled at most
//! once by the type system; one dropped unsettled (an early return, a panic, a cancelled task)
//! is released in the background, and one whose process died is expired by any host's sweeper.
//!
//! Replies can be lost (Redis unreachable after the script ran). Every operation is idempotent
//! per hold id, so: a reserve whose reply was lost is voided in the background; a commit whose
//! reply was lost is retried with back-off until the hold would expire (after that the sweeper
//! gives the credit back and the work stays free); a release whose reply was lost is left to
//! the sweeper.

use std::time::{Duration, Instant};

use tracing::Instrument as _;

use super::{new_id, HoldState, Idempotency, Ledger, LedgerError, Op, Outcome, StoredResult};

/// What to hold: one credit of `account`.
#[derive(Debug, Clone)]
pub struct HoldRequest {
    pub account: String,
    /// How long the hold lives before a sweeper may expire it: the work's own deadline plus
    /// the time to settle.
    pub ttl: Duration,
    pub idempotency: Option<Idempotency>,
    /// The usage transaction's description, written when the hold is committed.
    pub description: String,
    /// Most credits the account may hold at once on every host; 0 = no cap.
    pub max_held: i64,
}

/// The answer to a reservation.
#[derive(Debug)]
pub enum Reservation {
    /// The credit is held; the work may start.
    Held(Hold),
    /// Nothing was held, with the ledger's reason: `Insufficient`, `IdempotencyReplay` (the
    /// earlier result, free), `TooManyInFlight`, `NoAccount`, an idempotency conflict.
    Refused(Outcome),
}

/// How a commit ended. Each carries the balance to report to the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settled {
    /// Charged. `low` and `crossed` are the commit's auto top-up signals (see
    /// [`Outcome::Committed`]); both are false for a hold charged by an earlier attempt.
    Charged {
        available: i64,
        low: bool,
        crossed: bool,
    },
    /// The commit's reply was lost; it is retried in the background until the hold would
    /// expire. `available` is the balance when the credit was held.
    Retrying { available: i64 },
    /// Not charged: the hold was already released or expired (a sweeper was first), so the
    /// credit went back and the work is free.
    Voided { available: Option<i64> },
}

impl Settled {
    pub fn available(&self) -> Option<i64> {
        match self {
            Settled::Charged { available, .. } | Settled::Retrying { available } => {
                Some(*available)
            }
            Settled::Voided { available } => *available,
        }
    }
}

/// One credit on hold. Settle it with [`Hold::commit`] or [`Hold::release`]; dropped unsettled,
/// it is released in the background.
pub struct Hold {
    ledger: Ledger,
    account: String,
    id: String,
    idempotency: Option<Idempotency>,
    ttl: Duration,
    /// The account's balance just after the credit was held.
    available: i64,
    settled: bool,
}

impl std::fmt::Debug for Hold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hold")
            .field("account", &self.account)
            .field("id", &self.id)
            .field("available", &self.available)
            .field("settled", &self.settled)
            .finish_non_exhaustive()
    }
}

impl Hold {
    /// Holds one credit of `request.account`. An error means nothing is held: a reserve whose
    /// reply was lost is voided in the background (or expires).
    pub async fn reserve(
        ledger: &Ledger,
        request: HoldRequest,
    ) -> Result<Reservation, LedgerError> {
        let id = new_id();
        let reserved = ledger
            .run(Op::Reserve {
                account: request.account.clone(),
                hold: id.clone(),
                amount: 1,
                ttl: request.ttl,
                idempotency: request.idempotency.clone(),
                description: request.description,
                max_held: request.max_held,
            })
            .await;
        match reserved {
            Ok(Outcome::Reserved { available }) => Ok(Reservation::Held(Hold {
                ledger: ledger.clone(),
                account: request.account,
                id,
                idempotency: request.idempotency,
                ttl: request.ttl,
                available,
                settled: false,
            })),
            Ok(refused) => Ok(Reservation::Refused(refused)),
            Err(e) => {
                // The script may have run with its reply lost: void it.
                spawn_release(ledger.clone(), request.account, id, request.idempotency);
                Err(e)
            }
        }
    }

    /// The hold's id (the sweeper and the audit know holds by it).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The account's balance just after the credit was held.
    pub fn available(&self) -> i64 {
        self.available
    }

    /// Charges the held credit: the work was delivered. `result` is kept for idempotent
    /// replays when the reservation carried an `Idempotency-Key` (`None`: too large to keep).
    pub async fn commit(mut self, result: Option<StoredResult>, result_ttl: Duration) -> Settled {
        self.settled = true;
        let commit = Op::Commit {
            account: std::mem::take(&mut self.account),
            hold: std::mem::take(&mut self.id),
            idempotency: self.idempotency.take(),
            result,
            result_ttl,
        };
        match self.ledger.run(commit.clone()).await {
            Ok(Outcome::Committed {
                available,
                low,
                crossed,
            }) => Settled::Charged {
                available,
                low,
                crossed,
            },
            Ok(Outcome::AlreadyResolved {
                available,
                state: HoldState::Committed,
            }) => Settled::Charged {
                available,
                low: false,
                crossed: false,
            },
            Ok(other) => {
                // Expired by a sweeper first: the credit went back, the work is free.
                tracing::warn!("commit did not apply ({other:?}); the work goes uncharged");
                Settled::Voided {
                    available: other.available(),
                }
            }
            Err(e) => {
                tracing::warn!("commit failed ({e}); retrying in the background");
                commit_later(self.ledger.clone(), commit, self.ttl);
                Settled::Retrying {
                    available: self.available,
                }
            }
        }
    }

    /// Gives the held credit back: the work failed. Returns the balance to report (the one at
    /// reservation when the release's reply was lost: the hold then expires instead).
    pub async fn release(mut self) -> Option<i64> {
        self.settled = true;
        let released = self
            .ledger
            .run(Op::Release {
                account: std::mem::take(&mut self.account),
                hold: std::mem::take(&mut self.id),
                idempotency: self.idempotency.take(),
            })
            .await;
        match released {
            Ok(outcome) => outcome.available(),
            Err(e) => {
                tracing::warn!("release failed ({e}); the hold will expire instead");
                Some(self.available)
            }
        }
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        tracing::warn!(hold = %self.id, "a hold was dropped unsettled; releasing it");
        spawn_release(
            self.ledger.clone(),
            std::mem::take(&mut self.account),
            std::mem::take(&mut self.id),
            self.idempotency.take(),
        );
    }
}

/// Releases a hold off the caller's path. Without a runtime (a drop at shutdown) the sweeper
/// expires the hold instead.
fn spawn_release(ledger: Ledger, account: String, hold: String, idempotency: Option<Idempotency>) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    runtime.spawn(async move {
        let _ = ledger
            .run(Op::Release {
                account,
                hold,
                idempotency,
            })
            .await;
    });
}

/// Keeps retrying a commit whose reply never came (Redis unreachable) until `within` has
/// passed; after that the sweeper expires the hold and the work stays free. A commit applies at
/// most once per hold, so a retry never charges twice.
fn commit_later(ledger: Ledger, commit: Op, within: Duration) {
    // The caller's span goes along, so later log lines carry its request id.
    let span = tracing::Span::current();
    let retry = async move {
        let give_up = Instant::now() + within;
        let mut delay = Duration::from_millis(500);
        while Instant::now() + delay < give_up {
            tokio::time::sleep(delay).await;
            match ledger.run(commit.clone()).await {
                Ok(outcome) => {
                    tracing::info!(outcome = outcome.name(), "late commit settled");
                    return;
                }
                Err(e) => tracing::warn!("late commit failed again: {e}"),
            }
            delay = (delay * 2).min(Duration::from_secs(5));
        }
        tracing::warn!("gave up on a commit; the hold will expire and the work stays free");
    };
    tokio::spawn(retry.instrument(span));
}
