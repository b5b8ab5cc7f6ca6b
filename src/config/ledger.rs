//! `[redis]` and `[ledger]`: the Redis that holds the credit ledger; holds, the sweeper and
//! idempotency.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct RedisConfig {
    /// Connection URL of the ledger's Redis (ignored when `cluster_nodes` is set).
    pub url: String,
    /// Redis Cluster: URLs of some of its nodes (`redis://10.0.0.1:6379`, …); the rest of the
    /// topology is discovered. Empty = a single Redis at `url`.
    pub cluster_nodes: Vec<String>,
    /// Redis Sentinel: addresses of the Sentinels watching the ledger's primary
    /// (`redis://10.0.0.1:26379`, …). The daemon asks them where the primary is, follows a
    /// failover without a restart, and takes the database, user and password for the primary
    /// from `url` (its host and port are ignored). Empty = no Sentinel.
    pub sentinels: Vec<String>,
    /// The name the Sentinels monitor the primary under (`sentinel monitor <name> …`).
    pub sentinel_master: String,
    /// How long connecting may take before Redis counts as unreachable, in milliseconds.
    pub connect_timeout_ms: u64,
    /// How long one command may wait for its reply, in milliseconds.
    pub response_timeout_ms: u64,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            url: "redis://127.0.0.1:6379/0".to_string(),
            cluster_nodes: Vec::new(),
            sentinels: Vec::new(),
            sentinel_master: String::new(),
            connect_timeout_ms: 2_000,
            response_timeout_ms: 2_000,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct LedgerConfig {
    /// A hold lives for the capture's timeout plus this, in milliseconds; after that, a hold whose
    /// daemon died is expired by the sweeper and its credit comes back.
    pub hold_grace_ms: u64,
    /// How often this daemon sweeps expired holds, in milliseconds.
    pub sweep_interval_ms: u64,
    /// Most captures one account may have in flight at once, across every host (0 = no cap), so
    /// one customer cannot fill the whole queue; beyond it, 429 `too_many_in_flight`.
    pub max_in_flight_per_account: i64,
    /// How long a succeeded capture's result is kept for `Idempotency-Key` retries, in seconds.
    pub idempotency_ttl_secs: u64,
    /// Largest image kept for `Idempotency-Key` replays, in bytes; a larger success is still
    /// never charged twice, but a retry gets 409 `idempotency_result_unavailable`.
    pub idempotency_max_bytes: usize,
    /// Replicas that must hold every credit mutation before its caller is answered (Redis
    /// `WAIT`), so an answered charge, refund or grant survives the loss of the primary; 0 =
    /// answer once the primary has it (replication is asynchronous). Not with Redis Cluster.
    pub replica_acks: u32,
    /// How long a mutation waits for `replica_acks` replicas, in milliseconds; fewer by then and
    /// the operation counts as failed (`ledger_unavailable`; every operation is safe to retry).
    pub replica_ack_timeout_ms: u64,
}

impl Default for LedgerConfig {
    fn default() -> Self {
        Self {
            hold_grace_ms: 30_000,
            sweep_interval_ms: 1_000,
            max_in_flight_per_account: 16,
            idempotency_ttl_secs: 86_400,
            idempotency_max_bytes: 16 * 1024 * 1024,
            replica_acks: 0,
            replica_ack_timeout_ms: 500,
        }
    }
}
