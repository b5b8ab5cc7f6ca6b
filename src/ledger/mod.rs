//! The credit ledger: every credit an account has, holds, spends or gets back.
//!
//! - [`keys`]: every Redis key name (shared with the accounts store).
//! - [`store`]: the Lua scripts and the one function that runs a ledger operation in Redis.
//! - [`actor`]: the ledger actor, the only code in a process that mutates credits. It keeps the
//!   order of the operations it receives and pipelines them on one multiplexed connection.
//! - [`sweeper`]: expires holds whose capture never settled (its daemon died).
//! - [`connection`]: the shared Redis connection, connected in the background.
//! - [`audit`]: reads an account's state and checks the ledger's invariants.
//! - [`hold`]: one credit held for a capture and settled exactly once ([`Hold`]): reserve, then
//!   commit or release, the retry of a commit whose reply was lost, release of a dropped hold.
//!
//! A capture is a two-phase transfer, driven by a [`Hold`]: [`Op::Reserve`] puts one credit on
//! hold with an expiry, then [`Op::Commit`] charges it (success) or [`Op::Release`] voids it
//! (failure). A hold
//! resolves exactly once; a hold whose holder died is expired by the sweeper and its credit
//! comes back. Every operation is one Lua script, atomic on the Redis every host shares.

pub(crate) mod actor;
pub mod audit;
pub mod connection;
pub(crate) mod hold;
pub mod keys;
pub mod store;
pub mod sweeper;

use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use actor::Ledger;
pub use connection::RedisHandle;
pub use hold::{Hold, HoldRequest, Reservation, Settled};

/// Why a ledger operation could not run. Callers never perform a capture without a hold.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LedgerError {
    /// Redis is unreachable, slow or refused the command.
    #[error("the credit ledger is unavailable: {0}")]
    Unavailable(String),
    /// Redis answered something the scripts never return.
    #[error("unexpected reply from the credit ledger: {0}")]
    Protocol(String),
}

impl From<redis::RedisError> for LedgerError {
    fn from(e: redis::RedisError) -> Self {
        LedgerError::Unavailable(e.to_string())
    }
}

/// The kind of a transaction, as the credits contract names them.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum TxKind {
    Purchase,
    AutoTopup,
    Usage,
    SignupBonus,
    Adjustment,
    /// Credits of a refunded purchase taken back (never more than is unspent).
    Refund,
}

impl TxKind {
    pub const ALL: [TxKind; 6] = [
        TxKind::Purchase,
        TxKind::AutoTopup,
        TxKind::Usage,
        TxKind::SignupBonus,
        TxKind::Adjustment,
        TxKind::Refund,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TxKind::Purchase => "purchase",
            TxKind::AutoTopup => "auto_topup",
            TxKind::Usage => "usage",
            TxKind::SignupBonus => "signup_bonus",
            TxKind::Adjustment => "adjustment",
            TxKind::Refund => "refund",
        }
    }

    pub fn parse(s: &str) -> Option<TxKind> {
        TxKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// One entry of an account's transaction log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transaction {
    pub id: String,
    pub kind: TxKind,
    /// Positive for credits in, negative for credits spent or taken back.
    pub amount: i64,
    pub description: String,
    /// Redis time, ms since the epoch.
    pub at_ms: i64,
    /// The account's available balance right after this transaction.
    pub balance_after: i64,
}

/// The counters of one account.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Balance {
    /// What the account can spend now (the `balance` of the API).
    pub available: i64,
    /// Held by captures in flight.
    pub reserved: i64,
    /// Charged for delivered captures.
    pub spent: i64,
    /// Net of every grant (bonus, purchases, adjustments).
    pub granted: i64,
}

/// An `Idempotency-Key` as the ledger sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Idempotency {
    /// SHA-256 (hex) of the key the client sent.
    pub key_hash: String,
    /// SHA-256 (hex) of the request's parameters; the same key with others is refused.
    pub fingerprint: String,
}

/// A succeeded capture kept for idempotent replays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResult {
    /// Response metadata (JSON written and read by the API layer).
    pub meta: String,
    pub body: Vec<u8>,
}

/// A ledger operation. Each is one Lua script; each is idempotent when retried with the same
/// hold id or reference, so a retry after a lost reply never applies twice.
#[derive(Debug, Clone)]
pub enum Op {
    Reserve {
        account: String,
        hold: String,
        amount: i64,
        ttl: Duration,
        idempotency: Option<Idempotency>,
        description: String,
        /// Most credits the account may hold at once (its captures in flight, on every host);
        /// 0 = no cap.
        max_held: i64,
    },
    Commit {
        account: String,
        hold: String,
        idempotency: Option<Idempotency>,
        /// `None` when the result is too large to keep: a retry then gets a 409.
        result: Option<StoredResult>,
        result_ttl: Duration,
    },
    Release {
        account: String,
        hold: String,
        idempotency: Option<Idempotency>,
    },
    /// The sweeper's release of a hold past its expiry (`member` is its sweep index entry).
    Expire {
        account: String,
        hold: String,
        idempotency_key_hash: String,
        member: String,
    },
    Grant {
        account: String,
        amount: i64,
        kind: TxKind,
        description: String,
        /// An external reference applied at most once (payment order id).
        reference: Option<String>,
    },
    /// Takes back the refunded share of a paid order: at most what is unspent, never below
    /// zero. `refunded` is the order's refunded share so far, in credits (Polar reports
    /// cumulative refunds); each call takes only what no earlier call took.
    Refund {
        account: String,
        /// The Polar order id; its grant must be recorded (`polar_order:<id>`).
        order: String,
        refunded: i64,
        description: String,
    },
    CreateAccount {
        account: String,
        email: String,
        password_hash: String,
        bonus: i64,
    },
}

impl Op {
    /// The grant of a paid order's credits: applied at most once per order, however often its
    /// webhook arrives or `payments reconcile` meets it (the order is the grant's reference).
    pub fn order_grant(
        account: &str,
        order_id: &str,
        amount: i64,
        kind: TxKind,
        description: String,
    ) -> Op {
        Op::Grant {
            account: account.to_string(),
            amount,
            kind,
            description,
            reference: Some(keys::order_reference(order_id)),
        }
    }

    /// Label for metrics and logs.
    pub fn name(&self) -> &'static str {
        match self {
            Op::Reserve { .. } => "reserve",
            Op::Commit { .. } => "commit",
            Op::Release { .. } => "release",
            Op::Expire { .. } => "expire",
            Op::Grant { .. } => "grant",
            Op::Refund { .. } => "refund",
            Op::CreateAccount { .. } => "create_account",
        }
    }

    /// Whether running the operation again after an unknown outcome is harmless.
    pub fn is_idempotent(&self) -> bool {
        !matches!(
            self,
            Op::Grant {
                reference: None,
                ..
            }
        )
    }
}

/// How a hold was resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldState {
    Committed,
    Released,
    Expired,
}

impl HoldState {
    fn parse(s: &str) -> Option<HoldState> {
        match s {
            "committed" => Some(HoldState::Committed),
            "released" => Some(HoldState::Released),
            "expired" => Some(HoldState::Expired),
            _ => None,
        }
    }
}

/// What an operation did. `available` is always the account's balance after the operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The hold is open (or was already open under this id).
    Reserved {
        available: i64,
    },
    Insufficient {
        available: i64,
    },
    /// The account already holds its cap of credits in flight.
    TooManyInFlight {
        available: i64,
    },
    NoAccount,
    /// The same `Idempotency-Key` is held by a capture in flight.
    IdempotencyInFlight {
        available: i64,
    },
    /// The same `Idempotency-Key` was used with other parameters.
    IdempotencyMismatch {
        available: i64,
    },
    /// The same `Idempotency-Key` already succeeded: here is its result, at no charge.
    IdempotencyReplay {
        available: i64,
        result: StoredResult,
    },
    /// It succeeded, but its result was too large to keep.
    IdempotencyResultUnavailable {
        available: i64,
    },
    Committed {
        available: i64,
        /// The account's auto top-up threshold is set and `available` is below it.
        low: bool,
        /// This commit took the account's balance (available + reserved) from at or above the
        /// threshold to below it: true for exactly one commit per crossing.
        crossed: bool,
    },
    Released {
        available: i64,
    },
    Expired {
        available: i64,
    },
    /// The sweeper looked too early (the hold's expiry is later).
    NotDue {
        available: i64,
    },
    /// The hold was resolved before (a retry, or the sweeper was first).
    AlreadyResolved {
        available: i64,
        state: HoldState,
    },
    /// No such hold, and no record of it.
    UnknownHold {
        available: i64,
    },
    Granted {
        available: i64,
    },
    /// The reference was applied before; nothing changed.
    Duplicate {
        available: i64,
    },
    /// A refund took back `taken` credits (possibly 0, when all were spent).
    Refunded {
        available: i64,
        taken: i64,
    },
    /// A refund of an order whose payment is not recorded yet; nothing changed.
    NotCredited {
        available: i64,
    },
    Created {
        bonus: i64,
    },
    AccountExists,
}

impl Outcome {
    /// Label for metrics and logs.
    pub fn name(&self) -> &'static str {
        match self {
            Outcome::Reserved { .. } => "reserved",
            Outcome::Insufficient { .. } => "insufficient",
            Outcome::TooManyInFlight { .. } => "too_many_in_flight",
            Outcome::NoAccount => "no_account",
            Outcome::IdempotencyInFlight { .. } => "idempotency_in_flight",
            Outcome::IdempotencyMismatch { .. } => "idempotency_mismatch",
            Outcome::IdempotencyReplay { .. } => "idempotency_replay",
            Outcome::IdempotencyResultUnavailable { .. } => "idempotency_result_unavailable",
            Outcome::Committed { .. } => "committed",
            Outcome::Released { .. } => "released",
            Outcome::Expired { .. } => "expired",
            Outcome::NotDue { .. } => "not_due",
            Outcome::AlreadyResolved { .. } => "already_resolved",
            Outcome::UnknownHold { .. } => "unknown_hold",
            Outcome::Granted { .. } => "granted",
            Outcome::Duplicate { .. } => "duplicate",
            Outcome::Refunded { .. } => "refunded",
            Outcome::NotCredited { .. } => "not_credited",
            Outcome::Created { .. } => "created",
            Outcome::AccountExists => "account_exists",
        }
    }

    /// The balance after the operation, when the account exists.
    pub fn available(&self) -> Option<i64> {
        match self {
            Outcome::Reserved { available }
            | Outcome::Insufficient { available }
            | Outcome::TooManyInFlight { available }
            | Outcome::IdempotencyInFlight { available }
            | Outcome::IdempotencyMismatch { available }
            | Outcome::IdempotencyReplay { available, .. }
            | Outcome::IdempotencyResultUnavailable { available }
            | Outcome::Committed { available, .. }
            | Outcome::Released { available }
            | Outcome::Expired { available }
            | Outcome::NotDue { available }
            | Outcome::AlreadyResolved { available, .. }
            | Outcome::UnknownHold { available }
            | Outcome::Granted { available }
            | Outcome::Duplicate { available }
            | Outcome::Refunded { available, .. }
            | Outcome::NotCredited { available } => Some(*available),
            Outcome::Created { bonus } => Some(*bonus),
            Outcome::NoAccount | Outcome::AccountExists => None,
        }
    }
}

/// A fresh hold or transaction id (UUIDv7: unique across hosts, sortable by time).
pub fn new_id() -> String {
    uuid::Uuid::now_v7().simple().to_string()
}
