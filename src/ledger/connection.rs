//! The process's Redis connection, shared by the ledger actor and the accounts store: one
//! multiplexed connection to a single Redis (redis-rs `ConnectionManager`, which reconnects by
//! itself), or a Redis Cluster connection (redis-rs `ClusterConnection`: a multiplexed
//! connection per node, routing each command by its key's slot and following the cluster's
//! topology changes). Every multi-key command and script of shotfarm stays in one slot (an
//! account's keys share its shard's hash tag), so both behave the same. The first connection is
//! made in the background so the daemon starts, and answers 503, while Redis is down.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Value};
use tokio::sync::{mpsc, oneshot, OnceCell};

use super::LedgerError;
use crate::config::RedisConfig;

/// A connection to the ledger's Redis, single or cluster; cheap to clone.
#[derive(Clone)]
pub enum RedisConn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for RedisConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            RedisConn::Single(c) => c.req_packed_command(cmd),
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
            RedisConn::Single(c) => c.req_packed_commands(cmd, offset, count),
            RedisConn::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            RedisConn::Single(c) => c.get_db(),
            RedisConn::Cluster(c) => c.get_db(),
        }
    }
}

#[derive(Clone)]
pub struct RedisHandle {
    inner: Arc<Inner>,
}

enum Client {
    Single {
        client: redis::Client,
        config: ConnectionManagerConfig,
    },
    Cluster(ClusterClient),
}

struct Inner {
    client: Client,
    connection: OnceCell<RedisConn>,
    /// Replicas each ledger mutation waits for (`ledger.replica_acks`), and for how long.
    replica_acks: Option<(u32, Duration)>,
    /// The group `WAIT`: callers whose writes are done, answered together by one `WAIT`.
    waits: std::sync::OnceLock<mpsc::UnboundedSender<oneshot::Sender<Result<(), LedgerError>>>>,
}

impl RedisHandle {
    /// Checks the URL (or the cluster's node URLs); connects nothing yet.
    pub fn new(config: &RedisConfig) -> Result<Self, LedgerError> {
        let connect = Duration::from_millis(config.connect_timeout_ms);
        let response = Duration::from_millis(config.response_timeout_ms);
        let client = if config.cluster_nodes.is_empty() {
            Client::Single {
                client: redis::Client::open(config.url.as_str())
                    .map_err(|e| LedgerError::Unavailable(format!("bad redis.url: {e}")))?,
                config: ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(connect))
                    .set_response_timeout(Some(response))
                    .set_number_of_retries(2)
                    .set_min_delay(Duration::from_millis(50))
                    .set_max_delay(Duration::from_millis(1_000)),
            }
        } else {
            Client::Cluster(
                ClusterClient::builder(config.cluster_nodes.iter().map(String::as_str))
                    .connection_timeout(connect)
                    .response_timeout(response)
                    .retries(3)
                    .build()
                    .map_err(|e| {
                        LedgerError::Unavailable(format!("bad redis.cluster_nodes: {e}"))
                    })?,
            )
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

    /// With `ledger.replica_acks`, waits until that many replicas hold every write this
    /// connection made so far (Redis `WAIT`): `Unavailable` when fewer did in time, so the
    /// caller is not told that an operation is durable when it is not. A no-op when off.
    ///
    /// A group commit: callers whose writes have been answered queue here, and one `WAIT`,
    /// sent after all of them, answers the whole group (a `WAIT` covers every earlier write of
    /// the connection); callers arriving meanwhile make the next group. So concurrent
    /// operations share replication round trips instead of queueing one `WAIT` each.
    pub async fn wait_for_replicas(&self, conn: &RedisConn) -> Result<(), LedgerError> {
        let Some((acks, timeout)) = self.inner.replica_acks else {
            return Ok(());
        };
        let queue = self.inner.waits.get_or_init(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            tokio::spawn(group_waits(conn.clone(), acks, timeout, rx));
            tx
        });
        let (reply, answer) = oneshot::channel();
        if queue.send(reply).is_err() {
            return Err(LedgerError::Unavailable("the replica wait stopped".into()));
        }
        answer
            .await
            .unwrap_or_else(|_| Err(LedgerError::Unavailable("the replica wait stopped".into())))
    }

    /// Whether this is a Redis Cluster connection.
    pub fn is_cluster(&self) -> bool {
        matches!(self.inner.client, Client::Cluster(_))
    }

    /// The connection, or `Unavailable` while the first connection has not been made.
    pub fn get(&self) -> Result<RedisConn, LedgerError> {
        self.inner
            .connection
            .get()
            .cloned()
            .ok_or_else(|| LedgerError::Unavailable("not connected to Redis yet".into()))
    }

    /// Connects now (once); later calls return the same connection.
    pub async fn connect(&self) -> Result<RedisConn, LedgerError> {
        let inner = &self.inner;
        inner
            .connection
            .get_or_try_init(|| async {
                let mut conn = match &inner.client {
                    Client::Single { client, config } => RedisConn::Single(
                        ConnectionManager::new_with_config(client.clone(), config.clone())
                            .await
                            .map_err(LedgerError::from)?,
                    ),
                    Client::Cluster(client) => RedisConn::Cluster(
                        client
                            .get_async_connection()
                            .await
                            .map_err(LedgerError::from)?,
                    ),
                };
                super::store::load_scripts(&mut conn).await?;
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

/// Answers queued callers in groups, one `WAIT acks timeout` per group; ends when the handle is
/// dropped.
async fn group_waits(
    mut conn: RedisConn,
    acks: u32,
    timeout: Duration,
    mut queue: mpsc::UnboundedReceiver<oneshot::Sender<Result<(), LedgerError>>>,
) {
    let ms = u64::try_from(timeout.as_millis())
        .unwrap_or(u64::MAX)
        .max(1);
    while let Some(first) = queue.recv().await {
        let mut group = vec![first];
        while let Ok(next) = queue.try_recv() {
            group.push(next);
        }
        let waited: Result<i64, _> = redis::cmd("WAIT")
            .arg(acks)
            .arg(ms)
            .query_async(&mut conn)
            .await;
        let result = match waited {
            Ok(got) if got >= i64::from(acks) => Ok(()),
            Ok(got) => Err(LedgerError::Unavailable(format!(
                "only {got} of the {acks} replicas ledger.replica_acks asks for acknowledged the write within {ms} ms"
            ))),
            Err(e) => Err(LedgerError::from(e)),
        };
        for caller in group {
            let _ = caller.send(result.clone());
        }
    }
}
