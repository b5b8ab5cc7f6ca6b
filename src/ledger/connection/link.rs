//! The connection to one Redis data node (a single Redis, or the primary the Sentinels name),
//! replaced only by this module and never silently: every connection made is a new [`Link`]
//! with a higher epoch, and a link that broke stays broken (a redis-rs multiplexed connection
//! does not reconnect by itself). So "this write and that `WAIT` went down the same
//! connection" is a comparison of two epochs — which redis-rs' `ConnectionManager`, reconnecting
//! underneath its callers, could not tell.
//!
//! A watcher task keeps the link current: woken by any command that failed in a way that can
//! mean the node is gone or demoted (I/O, timeout, `READONLY`, `MASTERDOWN`, `LOADING`), and
//! once a second anyway, it asks where the node is now (the fixed `redis.url`, or the
//! Sentinels' `SENTINEL get-master-addr-by-name`), checks the link (`PING`), and, when the
//! link is dead or the primary moved, connects to the node, checks it is a primary (`ROLE`),
//! loads the ledger's scripts there and swaps the link in. Commands meanwhile fail at once on
//! the dead link (503 `ledger_unavailable` for a capture, free) instead of queueing.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, ConnectionAddr, ConnectionInfo, IntoConnectionInfo};
use tokio::sync::{Mutex, Notify};

use super::super::LedgerError;

/// How often the watcher checks the link when nothing woke it.
const CHECK_EVERY: Duration = Duration::from_secs(1);
/// The least time between two checks (a burst of failed commands wakes it once).
const CHECK_SPACING: Duration = Duration::from_millis(50);

/// One connection to the data node, made once.
pub struct Link {
    /// Increases with every connection this process makes to the data node.
    pub epoch: u64,
    /// Where it is connected (`host:port`).
    pub node: String,
    pub(super) conn: MultiplexedConnection,
}

/// Where the data node is.
enum Locator {
    /// A single Redis at `redis.url`.
    Fixed(ConnectionInfo),
    /// The primary the Sentinels name; `template` holds the database, user and password.
    Sentinel {
        sentinels: Vec<Client>,
        master: String,
        template: ConnectionInfo,
        /// A connection to each Sentinel, made when first asked, and which one answered last
        /// (asked first next time, so a dead Sentinel costs one connect timeout, not one per
        /// check).
        asked: Mutex<(usize, Vec<Option<MultiplexedConnection>>)>,
    },
}

/// The current link and what replaces it.
pub struct Following {
    locator: Locator,
    config: AsyncConnectionConfig,
    response_timeout: Duration,
    current: RwLock<Option<Arc<Link>>>,
    epochs: AtomicU64,
    wake: Notify,
    /// Serializes connecting (the first connection and the watcher's replacements).
    connecting: Mutex<()>,
}

fn bad_config(what: &str, e: impl std::fmt::Display) -> LedgerError {
    LedgerError::Unavailable(format!("bad {what}: {e}"))
}

fn host_port(addr: &ConnectionAddr) -> String {
    match addr {
        ConnectionAddr::Tcp(host, port) | ConnectionAddr::TcpTls { host, port, .. }
            if host.contains(':') =>
        {
            format!("[{host}]:{port}")
        }
        ConnectionAddr::Tcp(host, port) | ConnectionAddr::TcpTls { host, port, .. } => {
            format!("{host}:{port}")
        }
        other => other.to_string(),
    }
}

impl Following {
    /// Checks the URLs; connects nothing yet.
    pub fn new(
        url: &str,
        sentinels: &[String],
        master: &str,
        connect_timeout: Duration,
        response_timeout: Duration,
    ) -> Result<Following, LedgerError> {
        let template = url
            .into_connection_info()
            .map_err(|e| bad_config("redis.url", e))?;
        let locator = if sentinels.is_empty() {
            Locator::Fixed(template)
        } else {
            let sentinels = sentinels
                .iter()
                .map(|s| Client::open(s.as_str()).map_err(|e| bad_config("redis.sentinels", e)))
                .collect::<Result<Vec<_>, _>>()?;
            Locator::Sentinel {
                asked: Mutex::new((0, vec![None; sentinels.len()])),
                sentinels,
                master: master.to_string(),
                template,
            }
        };
        Ok(Following {
            locator,
            config: AsyncConnectionConfig::new()
                .set_connection_timeout(Some(connect_timeout))
                .set_response_timeout(Some(response_timeout)),
            response_timeout,
            current: RwLock::new(None),
            epochs: AtomicU64::new(0),
            wake: Notify::new(),
            connecting: Mutex::new(()),
        })
    }

    /// The link in use, if a connection was made.
    pub fn link(&self) -> Option<Arc<Link>> {
        self.current.read().ok().and_then(|l| l.clone())
    }

    /// Asks the watcher to check the link now (a command failed in a way that can mean the
    /// node is gone or no longer the primary).
    pub fn suspect(&self, error: &redis::RedisError) {
        let moved = error.is_io_error()
            || error.is_timeout()
            || error.is_connection_dropped()
            || error.is_connection_refusal()
            || matches!(error.code(), Some("READONLY" | "MASTERDOWN" | "LOADING"));
        if moved {
            self.wake.notify_one();
        }
    }

    /// The first connection (or the current one when it was already made).
    pub async fn connect(&self) -> Result<Arc<Link>, LedgerError> {
        if let Some(link) = self.link() {
            return Ok(link);
        }
        let _one = self.connecting.lock().await;
        if let Some(link) = self.link() {
            return Ok(link);
        }
        let info = self.locate().await?;
        self.open(info).await
    }

    /// Keeps the link current for as long as the process runs.
    pub async fn watch(self: Arc<Self>) {
        let mut failing_since: Option<std::time::Instant> = None;
        loop {
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(CHECK_EVERY) => {}
            }
            match self.check().await {
                Ok(()) => {
                    if let Some(since) = failing_since.take() {
                        tracing::info!(
                            "the ledger's Redis answers again after {:?}",
                            since.elapsed()
                        );
                    }
                }
                Err(e) => {
                    if failing_since.is_none() {
                        tracing::warn!("the ledger's Redis connection is down: {e}");
                        failing_since = Some(std::time::Instant::now());
                    }
                    // Check again soon without waiting for a command to fail.
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    self.wake.notify_one();
                }
            }
            tokio::time::sleep(CHECK_SPACING).await;
        }
    }

    /// One check: the link stays when it answers and points where the node is; otherwise a
    /// new link replaces it.
    async fn check(&self) -> Result<(), LedgerError> {
        let info = self.locate().await?;
        let target = host_port(info.addr());
        if let Some(link) = self.link() {
            if link.node == target && self.answers(&link).await {
                return Ok(());
            }
        }
        let _one = self.connecting.lock().await;
        self.open(info).await.map(|_| ())
    }

    async fn answers(&self, link: &Link) -> bool {
        let mut conn = link.conn.clone();
        let ping = redis::cmd("PING");
        matches!(
            tokio::time::timeout(self.response_timeout, ping.query_async::<String>(&mut conn))
                .await,
            Ok(Ok(_))
        )
    }

    /// Connects to `info`, checks it is a primary, loads the scripts, and makes it the link.
    async fn open(&self, info: ConnectionInfo) -> Result<Arc<Link>, LedgerError> {
        let node = host_port(info.addr());
        let client = Client::open(info).map_err(LedgerError::from)?;
        let mut conn = client
            .get_multiplexed_async_connection_with_config(&self.config)
            .await?;
        if matches!(self.locator, Locator::Sentinel { .. }) {
            let role: Vec<redis::Value> = redis::cmd("ROLE").query_async(&mut conn).await?;
            let is_primary = matches!(
                role.first(),
                Some(redis::Value::BulkString(r)) if r.as_slice() == b"master"
            );
            if !is_primary {
                return Err(LedgerError::Unavailable(format!(
                    "{node}, named by the Sentinels, is not a primary (yet)"
                )));
            }
        }
        super::super::store::load_scripts(&mut conn).await?;
        let epoch = self.epochs.fetch_add(1, Ordering::SeqCst) + 1;
        let link = Arc::new(Link { epoch, node, conn });
        let previous = match self.current.write() {
            Ok(mut current) => current.replace(Arc::clone(&link)),
            Err(_) => {
                return Err(LedgerError::Unavailable(
                    "the Redis link is poisoned".into(),
                ))
            }
        };
        match previous {
            Some(old) if old.node != link.node => tracing::warn!(
                from = %old.node,
                to = %link.node,
                "the ledger's Redis primary moved: following it"
            ),
            Some(_) => tracing::info!(node = %link.node, "reconnected to the ledger's Redis"),
            None => {}
        }
        Ok(link)
    }

    /// Where the data node is now.
    async fn locate(&self) -> Result<ConnectionInfo, LedgerError> {
        match &self.locator {
            Locator::Fixed(info) => Ok(info.clone()),
            Locator::Sentinel {
                sentinels,
                master,
                template,
                asked,
            } => {
                let mut guard = asked.lock().await;
                let (first, cached) = &mut *guard;
                let mut last = String::from("no Sentinel configured");
                let n = sentinels.len();
                for i in (0..n).map(|k| (*first + k) % n) {
                    match self.ask(&sentinels[i], &mut cached[i], master).await {
                        Ok(Some((host, port))) => {
                            *first = i;
                            return Ok(template.clone().set_addr(ConnectionAddr::Tcp(host, port)));
                        }
                        Ok(None) => last = format!("the Sentinels do not know {master:?}"),
                        Err(e) => {
                            cached[i] = None;
                            last = e.to_string();
                        }
                    }
                }
                Err(LedgerError::Unavailable(format!(
                    "no Sentinel named the primary: {last}"
                )))
            }
        }
    }

    async fn ask(
        &self,
        sentinel: &Client,
        cached: &mut Option<MultiplexedConnection>,
        master: &str,
    ) -> Result<Option<(String, u16)>, redis::RedisError> {
        let mut conn = match cached {
            Some(conn) => conn.clone(),
            None => {
                let conn = sentinel
                    .get_multiplexed_async_connection_with_config(&self.config)
                    .await?;
                *cached = Some(conn.clone());
                conn
            }
        };
        let addr: Option<(String, u16)> = redis::cmd("SENTINEL")
            .arg("get-master-addr-by-name")
            .arg(master)
            .query_async(&mut conn)
            .await?;
        Ok(addr)
    }
}
