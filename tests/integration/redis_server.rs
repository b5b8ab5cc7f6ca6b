//! The run's private Redis and Redis Cluster (the kit's fixtures, started once per test run).

use std::sync::OnceLock;

pub use testkit::redis::{Persistence, RedisServer};

/// The run's shared Redis (append-only with fsync always, like production).
pub fn redis() -> &'static RedisServer {
    static SHARED: OnceLock<RedisServer> = OnceLock::new();
    SHARED.get_or_init(start_redis)
}

pub fn redis_url() -> String {
    redis().url.clone()
}

/// A Redis of the test's own, on a free port (it may kill and restart it).
pub fn start_redis() -> RedisServer {
    RedisServer::start(Persistence::AppendOnly).expect("a private redis-server")
}

/// The run's shared three-primary Redis Cluster.
pub fn cluster() -> &'static [RedisServer] {
    static CLUSTER: OnceLock<Vec<RedisServer>> = OnceLock::new();
    CLUSTER.get_or_init(|| testkit::redis::start_cluster(3).expect("a Redis Cluster"))
}

/// The cluster's node URLs, as `redis.cluster_nodes` takes them.
pub fn cluster_nodes() -> Vec<String> {
    testkit::redis::node_urls(cluster())
}

/// The cluster's node URLs as a TOML array (for `SHOTFARM_REDIS__CLUSTER_NODES`).
pub fn cluster_nodes_toml() -> String {
    let quoted: Vec<String> = cluster_nodes().iter().map(|n| format!("\"{n}\"")).collect();
    format!("[{}]", quoted.join(","))
}
