//! The process's Redis connection, shared by the ledger actor and the accounts store: one
//! multiplexed connection to a single Redis or to the primary the Sentinels name ([`link`]:
//! replaced, never silently, when it breaks or the primary moves), or a Redis Cluster
//! connection (redis-rs `ClusterConnection`: a multiplexed connection per node, routing each
//! command by its key's slot and following the cluster's topology changes). Every multi-key
//! command and script of shotfarm stays in one slot (an account's keys share its shard's hash
//! tag), so all behave the same. The first connection is made in the background so the daemon
//! starts, and answers 503, while Redis is down.

mod link;
mod replicas;

use std::sync::Arc;
use std::time::Duration;

use redis::aio::ConnectionLike;
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Value};
use tokio::sync::OnceCell;

use link::Following;
pub use link::Link;

use super::LedgerError;
use crate::config::RedisConfig;

/// A connection to the ledger's Redis, single (or Sentinel-named) or cluster; cheap to clone.
#[derive(Clone)]
pub enum RedisConn {
    Node(NodeConn),
    Cluster(ClusterConnection),
}

/// Commands on the data node's current link, or on one link pinned by [`RedisConn::pinned`].
#[derive(Clone)]
pub struct NodeConn {
    following: Arc<Following>,
    pinned: Option<Arc<Link>>,
}

impl NodeConn {
    fn link(&self) -> Option<Arc<Link>> {
        self.pinned.clone().or_else(|| self.following.link())
    }
}

fn not_connected() -> redis::RedisError {
    redis::RedisError::from((redis::ErrorKind::Io, "not connected to Redis yet"))
}

impl ConnectionLike for NodeConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        let link = self.link();
        let following = &self.following;
        Box::pin(async move {
            let mut conn = link.ok_or_else(not_connected)?.conn.clone();
            let result = conn.req_packed_command(cmd).await;
            if let Err(e) = &result {
                following.suspect(e);
            }
            result
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        let link = self.link();
        let following = &self.following;
        Box::pin(async move {
            let mut conn = link.ok_or_else(not_connected)?.conn.clone();
            let result = conn.req_packed_commands(cmd, offset, count).await;
            if let Err(e) = &result {
                following.suspect(e);
            }
            result
        })
    }

    fn get_db(&self) -> i64 {
        self.link().map(|l| l.conn.get_db()).unwrap_or(0)
    }
}

impl ConnectionLike for RedisConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            RedisConn::Node(c) => c.req_packed_command(cmd),
            RedisConn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            RedisConn::Node(c) => c.req_packed_commands(cmd, offset, count),
            RedisConn::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            RedisConn::Node(c) => c.get_db(),
            RedisConn::Cluster(c) => c.get_db(),
        }
    }
}

impl RedisConn {
    /// This connection held to the data node's current link, so that everything sent through
    /// it goes down one connection (or fails): what a later `WAIT` must be able to vouch for.
    /// A cluster connection is returned as it is.
    pub fn pinned(&self) -> RedisConn {
        match self {
            RedisConn::Node(c) => RedisConn::Node(NodeConn {
                following: Arc::clone(&c.following),
                pinned: c.link(),
            }),
            RedisConn::Cluster(c) => RedisConn::Cluster(c.clone()),
        }
    }

    /// The epoch of the link a pinned connection holds (`None`: cluster, or not connected).
    fn epoch(&self) -> Option<u64> {
        match self {
            RedisConn::Node(c) => c.pinned.as_ref().map(|l| l.epoch),
            RedisConn::Cluster(_) => None,
        }
    }
}

#[derive(Clone)]
pub struct RedisHandle {
    inner: Arc<Inner>,
}

enum Client {
    Node(Arc<Following>),
    Cluster(Box<ClusterClient>),
}

struct Inner {
    client: Client,
    connection: OnceCell<RedisConn>,
    /// Replicas each ledger mutation waits for (`ledger.replica_acks`), and for how long.
    replica_acks: Option<(u32, Duration)>,
    /// The group `WAIT` ([`replicas`]), started with the first caller.
    waits: std::sync::OnceLock<replicas::Queue>,
}

impl RedisHandle {
    /// Checks the URL (or the cluster's node URLs, or the Sentinels'); connects nothing yet.
    pub fn new(config: &RedisConfig) -> Result<Self, LedgerError> {
        let connect = Duration::from_millis(config.connect_timeout_ms);
        let response = Duration::from_millis(config.response_timeout_ms);
        let client = if config.cluster_nodes.is_empty() {
            Client::Node(Arc::new(Following::new(
                &config.url,
                &config.sentinels,
                &config.sentinel_master,
                connect,
                response,
            )?))
        } else {
            Client::Cluster(Box::new(
                ClusterClient::builder(config.cluster_nodes.iter().map(String::as_str))
                    .connection_timeout(connect)
                    .response_timeout(response)
                    .retries(3)
                    .build()
                    .map_err(|e| {
                        LedgerError::Unavailable(format!("bad redis.cluster_nodes: {e}"))
                    })?,
            ))
        };
        Ok(RedisHandle {
            inner: Arc::new(Inner {
                client,
                connection: OnceCell::new(),
                replica_acks: None,
                waits: std::sync::OnceLock::new(),
            }),
        })
    }

    /// This handle with ledger mutations made durable on `acks` replicas (0: off), waiting at
    /// most `timeout` for them ([`RedisHandle::wait_for_replicas`]). Call before cloning.
    pub fn with_replica_acks(self, acks: u32, timeout: Duration) -> Self {
        let replica_acks = (acks > 0).then_some((acks, timeout));
        match Arc::try_unwrap(self.inner) {
            Ok(inner) => RedisHandle {
                inner: Arc::new(Inner {
                    replica_acks,
                    ..inner
                }),
            },
            Err(shared) => {
                tracing::error!("replica_acks set on a handle already shared: ignored");
                RedisHandle { inner: shared }
            }
        }
    }

    /// With `ledger.replica_acks`, waits until that many replicas hold every write made
    /// through `conn` (a connection from [`RedisConn::pinned`]), with Redis `WAIT`:
    /// `Unavailable` when fewer did in time, or when the link `conn` held is no longer the
    /// current one (a `WAIT` on another connection would prove nothing about these writes).
    /// A no-op when off. Group commit: see [`replicas`].
    pub async fn wait_for_replicas(&self, conn: &RedisConn) -> Result<(), LedgerError> {
        let Some((acks, timeout)) = self.inner.replica_acks else {
            return Ok(());
        };
        let Client::Node(following) = &self.inner.client else {
            return Err(LedgerError::Unavailable(
                "ledger.replica_acks is not supported with Redis Cluster".into(),
            ));
        };
        let Some(epoch) = conn.epoch() else {
            return Err(LedgerError::Unavailable(
                "no Redis connection the write could be checked on".into(),
            ));
        };
        let queue = self
            .inner
            .waits
            .get_or_init(|| replicas::start(Arc::clone(following), acks, timeout));
        replicas::wait(queue, epoch).await
    }

    /// Whether this is a Redis Cluster connection.
    pub fn is_cluster(&self) -> bool {
        matches!(self.inner.client, Client::Cluster(_))
    }

    /// Where the data node this process writes to is now (`host:port`), and the epoch of its
    /// link; `None` for a cluster or before the first connection.
    pub fn data_node(&self) -> Option<(u64, String)> {
        match &self.inner.client {
            Client::Node(following) => following.link().map(|l| (l.epoch, l.node.clone())),
            Client::Cluster(_) => None,
        }
    }

    /// The connection, or `Unavailable` while the first connection has not been made.
    pub fn get(&self) -> Result<RedisConn, LedgerError> {
        self.inner
            .connection
            .get()
            .cloned()
            .ok_or_else(|| LedgerError::Unavailable("not connected to Redis yet".into()))
    }

    /// Connects now (once); later calls return the same connection. A single or Sentinel
    /// connection then keeps itself current in the background ([`link`]).
    pub async fn connect(&self) -> Result<RedisConn, LedgerError> {
        let inner = &self.inner;
        inner
            .connection
            .get_or_try_init(|| async {
                let conn = match &inner.client {
                    Client::Node(following) => {
                        following.connect().await?;
                        tokio::spawn(Arc::clone(following).watch());
                        RedisConn::Node(NodeConn {
                            following: Arc::clone(following),
                            pinned: None,
                        })
                    }
                    Client::Cluster(client) => {
                        let mut conn = RedisConn::Cluster(
                            client
                                .get_async_connection()
                                .await
                                .map_err(LedgerError::from)?,
                        );
                        super::store::load_scripts(&mut conn).await?;
                        conn
                    }
                };
                Ok::<_, LedgerError>(conn)
            })
            .await
            .cloned()
    }

    /// Keeps trying to connect in the background until it succeeds.
    pub fn connect_in_background(&self) {
        let handle = self.clone();
        tokio::spawn(async move {
            let mut delay = Duration::from_millis(100);
            loop {
                match handle.connect().await {
                    Ok(_) => {
                        tracing::info!("connected to Redis");
                        return;
                    }
                    Err(e) => {
                        tracing::warn!("cannot reach Redis yet ({e}); retrying in {delay:?}");
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(Duration::from_secs(2));
                    }
                }
            }
        });
    }

    /// Whether Redis answers a `PING` now.
    pub async fn ping(&self) -> bool {
        match self.get() {
            Ok(mut conn) => redis::cmd("PING")
                .query_async::<String>(&mut conn)
                .await
                .is_ok(),
            Err(_) => false,
        }
    }
}
