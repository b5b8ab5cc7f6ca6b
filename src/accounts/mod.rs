//! Accounts, login sessions and API keys.
//!
//! - [`store`]: accounts, sessions and keys in Redis (the only place that knows their keys).
//! - [`secrets`]: password hashing (Argon2id), random tokens, and how secrets are stored.
//! - [`signing`]: the link-signing secret of each API key (signed image links).
//!
//! Creating an account is also a credit mutation (the sign-up bonus), so it goes through the
//! ledger actor; everything else here touches no credit.

pub mod secrets;
pub(crate) mod settings;
pub(crate) mod signing;
pub(crate) mod store;

pub use settings::AutoTopup;
pub use signing::SigningSecret;
pub use store::{Account, AccountError, Accounts, ApiKeyInfo, Principal};
