//! Every Redis key name of shotfarm, and the account hash fields the Lua scripts share, in one
//! place. Only the stores (ledger, accounts, limits) use them (`tests/boundaries.rs` checks).
//!
//! Accounts are spread over [`SHARDS`] Redis Cluster hash tags (`{s042}`). All keys of one account
//! carry its shard's tag, and so does the shard's sweep index, so a Lua script that moves credits
//! and updates the index touches one slot only. The shard of an account follows from its id and
//! never changes (changing [`SHARDS`] would orphan existing data).

use super::TxKind;

/// Number of hash-tag shards.
pub const SHARDS: u32 = 256;

/// The shard of an account id (FNV-1a, stable across versions and hosts).
pub fn shard_of(account_id: &str) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in account_id.bytes() {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash % SHARDS
}

fn tag(shard: u32) -> String {
    format!("{{s{shard:03}}}")
}

/// The sweep index of a shard: a sorted set of `account|hold|idempotency` members scored by the
/// hold's expiry (ms since the epoch, Redis time).
pub fn sweep(shard: u32) -> String {
    format!("sf:{}:sweep", tag(shard))
}

/// The low-balance notifications due in a shard: a sorted set of account ids scored by when
/// the account's pending notification ([`AccountKeys::low_balance`]) may next be attempted (ms
/// since the epoch, Redis time). In the shard's slot, so `commit.lua` writes it with the charge
/// that crossed; every daemon scans the shards' sets, like the sweep indexes.
pub fn low_balance_due(shard: u32) -> String {
    format!("sf:{}:lowbal_due", tag(shard))
}

/// How long a pending low-balance notification lives before any daemon claimed it (ms): a
/// fleet that delivers nothing for a day loses it. Each claim sets a lifetime of its own
/// (`notifications::store`), so a claimed one expires once its retries are long over.
pub const LOW_BALANCE_FIRST_TTL_MS: u64 = 86_400_000;

/// A counter `ledger.replica_acks`' group `WAIT` increments first, on the same connection, so
/// the `WAIT` covers every write the primary holds at that moment, whichever connection made it
/// (a `WAIT` alone counts from its own connection's last write: none, after a retry that found
/// its operation already applied).
pub fn replica_wait_tick() -> String {
    "sf:replica_wait_tick".to_string()
}

/// The async jobs stream (every job's `account` and `job` id, in order of submission), read by
/// every daemon's workers through the consumer group [`JOBS_GROUP`]. One key with its own hash
/// tag: on a Redis Cluster it lives in one slot, and every command on it names only it.
pub fn jobs_stream() -> String {
    "sf:{jobs}:stream".to_string()
}

/// The consumer group of the jobs stream: each entry goes to one worker of one daemon, and
/// stays pending until that worker acknowledges it (done and delivered).
pub const JOBS_GROUP: &str = "workers";

/// Set: every open job (queued, running or being delivered) of every account,
/// `account|job id`; its size is what `jobs.max_queued` caps.
pub fn jobs_open() -> String {
    "sf:{jobs}:open".to_string()
}

/// The applied-reference entry of a paid Polar order (its grant's `reference`).
pub fn order_reference(order_id: &str) -> String {
    format!("polar_order:{order_id}")
}

/// The keys of one account.
#[derive(Debug, Clone)]
pub struct AccountKeys {
    pub id: String,
    pub shard: u32,
    prefix: String,
}

impl AccountKeys {
    pub fn new(account_id: &str) -> Self {
        let shard = shard_of(account_id);
        AccountKeys {
            id: account_id.to_string(),
            shard,
            prefix: format!("sf:{}:", tag(shard)),
        }
    }

    /// Hash: profile (email, password hash, created) and the counters available, reserved,
    /// spent and granted.
    pub fn account(&self) -> String {
        format!("{}acct:{}", self.prefix, self.id)
    }

    /// Hash: open holds, `hold id → amount|expires_ms|idempotency|description`.
    pub fn holds(&self) -> String {
        format!("{}holds:{}", self.prefix, self.id)
    }

    /// String: how a hold was resolved (`committed`, `released`, `expired`), kept for an hour
    /// so that a retried call learns the outcome instead of applying twice.
    pub fn hold_record(&self, hold_id: &str) -> String {
        format!("{}hold:{}:{}", self.prefix, self.id, hold_id)
    }

    /// Set: external references already applied (`signup_bonus`, payment order ids).
    pub fn refs(&self) -> String {
        format!("{}refs:{}", self.prefix, self.id)
    }

    /// Hash: Polar order id → credits of that order refunded so far (refunds are cumulative).
    pub fn refunds(&self) -> String {
        format!("{}refunds:{}", self.prefix, self.id)
    }

    /// Hash: UTC day (`YYYY-MM-DD`) → captures charged that day (the dashboard's usage chart).
    pub fn usage_by_day(&self) -> String {
        format!("{}usage:{}", self.prefix, self.id)
    }

    /// Hash: UTC day (`YYYY-MM-DD`) → captures answered from the cache that day, free (so
    /// usage stays explainable: charged captures plus cache hits are every image delivered).
    pub fn cache_hits_by_day(&self) -> String {
        format!("{}cache_hits:{}", self.prefix, self.id)
    }

    /// List: the log's entries of one kind other than `usage`, newest first (the same JSON),
    /// so the history can be filtered by type without reading every capture.
    pub fn transactions_of(&self, kind: TxKind) -> String {
        format!("{}tx:{}:{}", self.prefix, self.id, kind.as_str())
    }

    /// List: the transaction log, newest first (JSON entries).
    pub fn transactions(&self) -> String {
        format!("{}tx:{}", self.prefix, self.id)
    }

    /// Hash: the account's API keys, `key id → JSON metadata`.
    pub fn api_keys(&self) -> String {
        format!("{}keys:{}", self.prefix, self.id)
    }

    /// Hash: when each API key was last used, `key id → ms`.
    pub fn api_keys_used(&self) -> String {
        format!("{}keyused:{}", self.prefix, self.id)
    }

    /// Hash: one `Idempotency-Key` (by its SHA-256): state, fingerprint, hold, and the result.
    pub fn idempotency(&self, key_hash: &str) -> String {
        format!("{}idem:{}:{}", self.prefix, self.id, key_hash)
    }

    /// Hash: one async job of this account: its status, options, webhook URL, outcome, image
    /// and delivery state (`jobs::store`). Kept `jobs.result_ttl_secs`; another account's job
    /// id names another key, so a lookup cannot cross accounts.
    pub fn job(&self, job_id: &str) -> String {
        format!("{}job:{}:{}", self.prefix, self.id, job_id)
    }

    /// Set: this account's open jobs (queued, running or being delivered), by id; its size is
    /// what `jobs.max_queued_per_account` caps.
    pub fn jobs_open(&self) -> String {
        format!("{}jobs:{}", self.prefix, self.id)
    }

    /// String: the rate limiter state (GCRA arrival time) of one caller of this account.
    pub fn rate_limit(&self, caller: &str) -> String {
        format!("{}rl:{}:{}", self.prefix, self.id, caller)
    }

    /// The sweep index of this account's shard.
    pub fn sweep(&self) -> String {
        sweep(self.shard)
    }

    /// Hash: the account's pending low-balance notification (at most one: a newer crossing
    /// replaces it), written by `commit.lua` with the charge that crossed: `id` (its
    /// `webhook-id`, `msg_<hold id>`), `balance`, `threshold`, `at` (ms, Redis time) and
    /// `attempts` so far. Deleted once delivered, refused or given up; expires besides.
    pub fn low_balance(&self) -> String {
        format!("{}lowbal:{}", self.prefix, self.id)
    }

    /// The low-balance notifications due in this account's shard.
    pub fn low_balance_due(&self) -> String {
        low_balance_due(self.shard)
    }
}

/// String: a shared cache entry's expiry (ms since the epoch), living exactly as long as the
/// entry is served (`PX`); its image is in the bucket. `key` is the entry's hex name.
pub fn cache_entry(key: &str) -> String {
    format!("sf:cache:{key}")
}

/// String: the host capturing a missing shared cache entry now (a random token), so a burst
/// of one capture across hosts is charged once; expires with the capture's deadline.
pub fn cache_fill(key: &str) -> String {
    format!("sf:cache_fill:{key}")
}

/// String (GCRA state): log-in attempts for one email address (SHA-256 hex of it, lower-cased).
pub fn login_attempts(email_hash: &str) -> String {
    format!("sf:rl:login:{email_hash}")
}

/// String (GCRA state): log-in and sign-up attempts from one client address.
pub fn auth_attempts(address: &str) -> String {
    format!("sf:rl:auth:{address}")
}

/// Set: every account id (operator listing).
pub const ACCOUNTS: &str = "sf:accounts";

/// String: a lower-cased email → its account id.
pub fn email(email: &str) -> String {
    format!("sf:email:{email}")
}

/// String: SHA-256 of an API key secret → `account id|key id`.
pub fn api_key(secret_hash: &str) -> String {
    format!("sf:apikey:{secret_hash}")
}

/// String: the link-signing secret of one API key (signed image links), JSON
/// `{account, secret, created_ms}`. Kept as it is, not hashed: checking an HMAC needs the key.
/// Outside the account's shard (a signed link names only the key), so read and written by
/// single-key commands.
pub fn signing_secret(key_id: &str) -> String {
    format!("sf:signing:{key_id}")
}

/// String with expiry: SHA-256 of a session token → account id.
pub fn session(token_hash: &str) -> String {
    format!("sf:session:{token_hash}")
}

/// The fields of an account's hash ([`AccountKeys::account`]) that Rust code and the Lua
/// scripts share. The scripts name them as literals: the test
/// `shared_fields_are_the_ones_the_scripts_name` fails when one side is renamed alone.
pub mod account_field {
    /// Credits free to spend (scripts: every one that moves credits).
    pub const AVAILABLE: &str = "available";
    pub const RESERVED: &str = "reserved";
    pub const SPENT: &str = "spent";
    pub const GRANTED: &str = "granted";
    /// Written by `create_account.lua`, read by the accounts store.
    pub const EMAIL: &str = "email";
    pub const CREATED: &str = "created";
    /// The argon2 hash of the dashboard password ('' = none): `create_account.lua` writes it,
    /// the accounts store checks and replaces it.
    pub const PASSWORD: &str = "password";
    /// The low-balance threshold `commit.lua` compares with (0 = off); the accounts settings
    /// write it.
    pub const TOPUP_THRESHOLD: &str = "topup_threshold";
    /// The account's notification URL ('' = none): the accounts settings write it,
    /// `commit.lua` queues a low-balance notification only when it is set.
    pub const NOTIFY_URL: &str = "notify_url";

    /// Every shared field and the script that names it.
    #[cfg(test)]
    pub(super) const IN_SCRIPTS: &[(&str, &str)] = &[
        (AVAILABLE, include_str!("scripts/commit.lua")),
        (RESERVED, include_str!("scripts/reserve.lua")),
        (SPENT, include_str!("scripts/commit.lua")),
        (GRANTED, include_str!("scripts/grant.lua")),
        (EMAIL, include_str!("scripts/create_account.lua")),
        (CREATED, include_str!("scripts/create_account.lua")),
        (PASSWORD, include_str!("scripts/create_account.lua")),
        (TOPUP_THRESHOLD, include_str!("scripts/commit.lua")),
        (NOTIFY_URL, include_str!("scripts/commit.lua")),
    ];
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_of_an_account_shares_its_shard_tag() {
        let k = AccountKeys::new("acc_0190f0c4a1b27c3e9d2f4a6b8c0d1e2f");
        let tag = format!("{{s{:03}}}", k.shard);
        for key in [
            k.account(),
            k.holds(),
            k.hold_record("h"),
            k.refs(),
            k.refunds(),
            k.usage_by_day(),
            k.transactions(),
            k.transactions_of(TxKind::Purchase),
            k.api_keys(),
            k.api_keys_used(),
            k.idempotency("x"),
            k.rate_limit("key_1"),
            k.sweep(),
            // commit.lua queues the low-balance notification with the charge: one slot.
            k.low_balance(),
            k.low_balance_due(),
        ] {
            assert!(key.contains(&tag), "{key} lacks {tag}");
            assert_eq!(key.matches('{').count(), 1, "{key}: one hash tag only");
        }
    }

    #[test]
    fn shards_spread_and_stay_in_range() {
        let mut seen = std::collections::HashSet::new();
        for i in 0..2000 {
            let s = shard_of(&format!("acc_{i}"));
            assert!(s < SHARDS);
            seen.insert(s);
        }
        assert!(seen.len() > 200, "only {} shards used", seen.len());
    }

    #[test]
    fn shared_fields_are_the_ones_the_scripts_name() {
        for (field, script) in account_field::IN_SCRIPTS {
            assert!(
                script.contains(&format!("'{field}'")),
                "no script literal '{field}' where the Rust side expects it"
            );
        }
    }
}
