//! The ledger in Redis: its Lua scripts and the functions that run them. Each mutation is one
//! script, passed every key it touches in `KEYS`, with every check before its first write.
//! Only the ledger actor calls [`execute`] in the daemon; benches and the audit use it directly.
//!
//! - `scripts`: the scripts, loaded into Redis, and [`execute`] of one [`Op`](super::Op);
//! - `outcome`: a script's reply read as an [`Outcome`](super::Outcome);
//! - `reads`: balance, pages of the transaction log, usage and cache hits per day (and the
//!   count of a cache hit, which moves no credit);
//! - `snapshot`: an account's whole ledger state, read atomically;
//! - `sweep`: the holds past their expiry, for the sweeper.

mod outcome;
mod reads;
mod scripts;
mod snapshot;
mod sweep;

pub use reads::{balance, cache_hits_by_day, record_cache_hit, transactions, usage_by_day};
pub use scripts::{execute, load_scripts};
pub use snapshot::{snapshot, OpenHold, Snapshot, KINDS_WITH_OWN_LOG};
pub use sweep::{due_holds, DueHold};
