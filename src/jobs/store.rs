//! The async jobs in Redis: the jobs stream and its consumer group, each job's record, the
//! open-job sets that cap the queue, and the workers' own connections (`deadpool-redis`) for
//! their blocking reads. The only file of `jobs` that speaks Redis.
//!
//! Keys (`ledger::keys`): the stream `sf:{jobs}:stream` (group `workers`) and the set of all open
//! jobs `sf:{jobs}:open` share one hash tag; a job's record `sf:{sNNN}:job:<account>:<id>` and
//! the account's open set `sf:{sNNN}:jobs:<account>` live in the account's shard. Every command
//! names one key (the record's one script too), so a Redis Cluster routes each by itself.

use std::time::Duration;

use deadpool_redis::Runtime;
use redis::aio::ConnectionLike;
use redis::streams::{StreamAutoClaimReply, StreamId, StreamInfoGroupsReply, StreamReadReply};
use redis::{AsyncCommands, Script};

use crate::config::RedisConfig;
use crate::ledger::keys::{self, AccountKeys, JOBS_GROUP};
use crate::ledger::{LedgerError, RedisHandle};

/// How long one blocking read waits for a new job before the worker looks for abandoned ones.
/// Under the pool connections' response timeout (single Redis: set below; Cluster: redis-rs's
/// 500 ms default).
const BLOCK_SINGLE: Duration = Duration::from_millis(2_000);
const BLOCK_CLUSTER: Duration = Duration::from_millis(400);

/// Sets fields of a job record only while the job is still open (no `final` field yet):
/// the one place two workers of the same job (a slow one and its successor) are told apart.
/// KEYS[1] the record; ARGV field, value, … Returns -1 when the record is gone (expired),
/// 0 when the job was already finished, 1 when the fields were set.
const UPDATE_OPEN: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
if redis.call('HEXISTS', KEYS[1], 'final') == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV))
-- A job that started late keeps its record at least an hour from now, so the record of a run
-- that is charged cannot expire before its outcome is written.
local left = redis.call('PTTL', KEYS[1])
if left >= 0 and left < 3600000 then redis.call('PEXPIRE', KEYS[1], 3600000) end
return 1
";

/// A job's state as its record says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobStatus {
    Queued,
    Running,
    Succeeded,
    Failed,
}

impl JobStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Queued => "queued",
            JobStatus::Running => "running",
            JobStatus::Succeeded => "succeeded",
            JobStatus::Failed => "failed",
        }
    }

    fn parse(s: &str) -> JobStatus {
        match s {
            "running" => JobStatus::Running,
            "succeeded" => JobStatus::Succeeded,
            "failed" => JobStatus::Failed,
            _ => JobStatus::Queued,
        }
    }
}

/// A job's record, without its image.
#[derive(Debug, Clone)]
pub struct JobRecord {
    pub id: String,
    pub account: String,
    pub status: JobStatus,
    /// ms since the epoch.
    pub created_ms: i64,
    pub finished_ms: Option<i64>,
    /// The capture options as received (JSON object).
    pub options: String,
    pub webhook_url: String,
    /// `code`, `message` of a failed job.
    pub error: Option<(String, String)>,
    pub format: Option<String>,
    pub width: Option<u32>,
    pub height: Option<u32>,
    /// Bytes of the stored image (0: none).
    pub image_bytes: usize,
    /// `pending`, `delivered` or `gave_up` once the job finished.
    pub delivery: Option<String>,
    /// The job has its outcome (succeeded or failed), whoever wrote it.
    pub finished: bool,
}

/// A job as submitted.
pub struct NewJob<'a> {
    pub id: &'a str,
    pub account: &'a str,
    pub options: &'a str,
    pub webhook_url: &'a str,
    pub request_id: &'a str,
    pub created_ms: i64,
}

/// Why a submission was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// The account has this many jobs open already.
    Account(u64),
    /// Every account together has this many open.
    Total(u64),
}

/// One entry of the stream handed to a worker.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The stream entry's id (what is acknowledged).
    pub stream_id: String,
    pub account: String,
    pub job: String,
    /// Taken over from a worker that stopped renewing its claim.
    pub reclaimed: bool,
}

/// The queue as the metrics see it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Depth {
    /// Entries no worker has taken yet.
    pub waiting: u64,
    /// Entries a worker took and has not finished (running or being delivered).
    pub pending: u64,
    /// Age of the oldest waiting entry (ms), 0 when none waits.
    pub oldest_waiting_ms: u64,
}

/// The workers' own connections, one per blocking read in progress.
enum Pool {
    /// To the data node the shared connection writes to (a single Redis, or the primary the
    /// Sentinels name): made anew when that node moves, so blocking reads follow a failover.
    Node(Box<NodePool>),
    Cluster(deadpool_redis::cluster::Pool),
}

struct NodePool {
    /// `redis.url`, whose host and port are replaced by the data node's.
    url: url::Url,
    connection: redis::AsyncConnectionConfig,
    size: usize,
    /// The pool and the node (`host:port`) it connects to.
    current: std::sync::Mutex<Option<(String, deadpool_redis::Pool)>>,
}

impl NodePool {
    /// The pool for `node`, made when the node changed.
    fn for_node(&self, node: &str) -> Result<deadpool_redis::Pool, LedgerError> {
        let mut current = self
            .current
            .lock()
            .map_err(|_| unavailable("the jobs' pool lock is poisoned"))?;
        if let Some((at, pool)) = current.as_ref() {
            if at == node {
                return Ok(pool.clone());
            }
        }
        let (host, port) = node
            .rsplit_once(':')
            .and_then(|(h, p)| Some((h, p.parse::<u16>().ok()?)))
            .ok_or_else(|| unavailable(format!("not a host:port: {node}")))?;
        let mut url = self.url.clone();
        url.set_host(Some(host)).map_err(unavailable)?;
        url.set_port(Some(port))
            .map_err(|()| unavailable("redis.url cannot take a port"))?;
        let manager =
            deadpool_redis::Manager::new_with_config(url.as_str(), self.connection.clone())
                .map_err(unavailable)?;
        let pool = deadpool_redis::Pool::builder(manager)
            .max_size(self.size)
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(unavailable)?;
        *current = Some((node.to_string(), pool.clone()));
        Ok(pool)
    }
}

/// The jobs' Redis side; cheap to clone.
#[derive(Clone)]
pub struct JobStore {
    redis: RedisHandle,
    pool: std::sync::Arc<Pool>,
    update_open: Script,
}

fn unavailable(e: impl std::fmt::Display) -> LedgerError {
    LedgerError::Unavailable(e.to_string())
}

impl JobStore {
    /// `redis`: the shared multiplexed connection, for everything that does not block. The
    /// pool holds up to `workers + 1` connections of its own (made when first used).
    pub fn new(
        redis: RedisHandle,
        config: &RedisConfig,
        workers: usize,
    ) -> Result<JobStore, LedgerError> {
        let size = workers + 1;
        let pool = if config.cluster_nodes.is_empty() {
            let connection = redis::AsyncConnectionConfig::new()
                .set_connection_timeout(Some(Duration::from_millis(config.connect_timeout_ms)))
                .set_response_timeout(Some(
                    BLOCK_SINGLE + Duration::from_millis(config.response_timeout_ms),
                ));
            Pool::Node(Box::new(NodePool {
                url: url::Url::parse(&config.url).map_err(unavailable)?,
                connection,
                size,
                current: std::sync::Mutex::new(None),
            }))
        } else {
            let mut cluster =
                deadpool_redis::cluster::Config::from_urls(config.cluster_nodes.clone());
            cluster.pool = Some(deadpool_redis::PoolConfig::new(size));
            Pool::Cluster(
                cluster
                    .create_pool(Some(Runtime::Tokio1))
                    .map_err(unavailable)?,
            )
        };
        Ok(JobStore {
            redis,
            pool: std::sync::Arc::new(pool),
            update_open: Script::new(UPDATE_OPEN),
        })
    }

    fn conn(&self) -> Result<crate::ledger::connection::RedisConn, LedgerError> {
        self.redis.get()
    }

    /// Creates the consumer group (and the stream) unless it exists. Entries added before it
    /// existed are read too (`0`).
    pub async fn ensure_group(&self) -> Result<(), LedgerError> {
        let mut conn = self.conn()?;
        let made: redis::RedisResult<()> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(keys::jobs_stream())
            .arg(JOBS_GROUP)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut conn)
            .await;
        match made {
            Ok(()) => Ok(()),
            Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Opens a job: counted against both caps, its record written (expiring after `ttl`),
    /// then appended to the stream. A refusal leaves nothing behind.
    pub async fn submit(
        &self,
        job: &NewJob<'_>,
        max_per_account: u64,
        max_total: u64,
        ttl: Duration,
    ) -> Result<Result<(), Refused>, LedgerError> {
        let mut conn = self.conn()?;
        let account = AccountKeys::new(job.account);
        let member = format!("{}|{}", job.account, job.id);
        // The record first: a submission in progress is never taken for a gone one by another
        // submission pruning the open sets at the cap (which would let both past it).
        let record = account.job(job.id);
        let _: () = redis::pipe()
            .hset_multiple(
                &record,
                &[
                    ("account", job.account.to_string()),
                    ("status", "queued".to_string()),
                    ("created_ms", job.created_ms.to_string()),
                    ("options", job.options.to_string()),
                    ("webhook_url", job.webhook_url.to_string()),
                    ("request_id", job.request_id.to_string()),
                ],
            )
            .ignore()
            .expire(&record, ttl.as_secs() as i64)
            .ignore()
            .query_async(&mut conn)
            .await?;
        let _: () = conn.sadd(account.jobs_open(), job.id).await?;
        let mut open: u64 = conn.scard(account.jobs_open()).await?;
        if open > max_per_account {
            // At the cap: first forget jobs whose record is gone (expired before a worker
            // closed them, or a submission cut short by a lost connection).
            let members: Vec<String> = conn.smembers(account.jobs_open()).await?;
            for id in members.into_iter().filter(|id| id != job.id) {
                let exists: bool = conn.exists(account.job(&id)).await?;
                if !exists {
                    let _: () = conn.srem(account.jobs_open(), &id).await?;
                    let _: () = conn
                        .srem(keys::jobs_open(), format!("{}|{id}", job.account))
                        .await?;
                }
            }
            open = conn.scard(account.jobs_open()).await?;
        }
        if open > max_per_account {
            let _: () = conn.srem(account.jobs_open(), job.id).await?;
            let _: () = conn.del(&record).await?;
            return Ok(Err(Refused::Account(max_per_account)));
        }
        let _: () = conn.sadd(keys::jobs_open(), &member).await?;
        let mut all: u64 = conn.scard(keys::jobs_open()).await?;
        if all > max_total {
            // At the cap: forget a sample of gone jobs (the whole set may be large).
            let sample: Vec<String> = redis::cmd("SRANDMEMBER")
                .arg(keys::jobs_open())
                .arg(64)
                .query_async(&mut conn)
                .await?;
            for entry in sample.into_iter().filter(|e| *e != member) {
                let Some((owner, id)) = entry.split_once('|') else {
                    continue;
                };
                let exists: bool = conn.exists(AccountKeys::new(owner).job(id)).await?;
                if !exists {
                    let _: () = conn.srem(keys::jobs_open(), &entry).await?;
                }
            }
            all = conn.scard(keys::jobs_open()).await?;
        }
        if all > max_total {
            let _: () = conn.srem(keys::jobs_open(), &member).await?;
            let _: () = conn.srem(account.jobs_open(), job.id).await?;
            let _: () = conn.del(&record).await?;
            return Ok(Err(Refused::Total(max_total)));
        }
        let _: String = redis::cmd("XADD")
            .arg(keys::jobs_stream())
            .arg("*")
            .arg("account")
            .arg(job.account)
            .arg("job")
            .arg(job.id)
            .query_async(&mut conn)
            .await?;
        Ok(Ok(()))
    }

    /// A job's record (without its image), `None` when there is none for this account.
    pub async fn get(&self, account: &str, id: &str) -> Result<Option<JobRecord>, LedgerError> {
        const FIELDS: [&str; 12] = [
            "account",
            "status",
            "created_ms",
            "finished_ms",
            "options",
            "webhook_url",
            "error_code",
            "error_message",
            "format",
            "width",
            "height",
            "delivery",
        ];
        let mut conn = self.conn()?;
        let record = AccountKeys::new(account).job(id);
        let (values, image_bytes, finished): (Vec<Option<String>>, usize, bool) = redis::pipe()
            .cmd("HMGET")
            .arg(&record)
            .arg(&FIELDS)
            .cmd("HSTRLEN")
            .arg(&record)
            .arg("image")
            .cmd("HEXISTS")
            .arg(&record)
            .arg("final")
            .query_async(&mut conn)
            .await?;
        let field = |i: usize| values.get(i).cloned().flatten();
        let Some(owner) = field(0) else {
            return Ok(None);
        };
        if owner != account {
            return Ok(None);
        }
        let error = match (field(6), field(7)) {
            (Some(code), message) => Some((code, message.unwrap_or_default())),
            _ => None,
        };
        Ok(Some(JobRecord {
            id: id.to_string(),
            account: owner,
            status: JobStatus::parse(&field(1).unwrap_or_default()),
            created_ms: field(2).and_then(|v| v.parse().ok()).unwrap_or(0),
            finished_ms: field(3).and_then(|v| v.parse().ok()),
            options: field(4).unwrap_or_default(),
            webhook_url: field(5).unwrap_or_default(),
            error,
            format: field(8),
            width: field(9).and_then(|v| v.parse().ok()),
            height: field(10).and_then(|v| v.parse().ok()),
            image_bytes,
            delivery: field(11),
            finished,
        }))
    }

    /// The stored image of a job.
    pub async fn image(&self, account: &str, id: &str) -> Result<Option<Vec<u8>>, LedgerError> {
        let mut conn = self.conn()?;
        let image: Option<Vec<u8>> = conn
            .hget(AccountKeys::new(account).job(id), "image")
            .await?;
        Ok(image.filter(|i| !i.is_empty()))
    }

    /// Sets `fields` on the record while the job is open; see [`UPDATE_OPEN`].
    pub async fn update_open(
        &self,
        account: &str,
        id: &str,
        fields: &[(&str, &[u8])],
    ) -> Result<i64, LedgerError> {
        let mut conn = self.conn()?;
        let mut invocation = self.update_open.key(AccountKeys::new(account).job(id));
        for (name, value) in fields {
            invocation.arg(*name).arg(*value);
        }
        Ok(invocation.invoke_async(&mut conn).await?)
    }

    /// Sets fields whoever finished the job (the delivery state) and renews the record's
    /// lifetime; nothing when the record is gone.
    pub async fn set(
        &self,
        account: &str,
        id: &str,
        fields: &[(&str, String)],
        ttl: Duration,
    ) -> Result<(), LedgerError> {
        let mut conn = self.conn()?;
        let record = AccountKeys::new(account).job(id);
        let exists: bool = conn.exists(&record).await?;
        if exists {
            let mut pipe = redis::pipe();
            if !fields.is_empty() {
                pipe.hset_multiple(&record, fields).ignore();
            }
            let _: () = pipe
                .expire(&record, ttl.as_secs() as i64)
                .ignore()
                .query_async(&mut conn)
                .await?;
        }
        Ok(())
    }

    /// The next entry for `consumer`: first one abandoned by another worker for
    /// `claim_idle` or longer (taken over), else a new one (waiting on a connection of the
    /// pool for up to a couple of seconds). `None`: nothing to do right now.
    ///
    /// `cursor` is where the worker's scan of the pending entries goes on (`XAUTOCLAIM` looks
    /// at a bounded number of them per call, so a long list of live entries cannot hide a stale
    /// one behind it); it starts at, and wraps back to, `0-0`.
    pub async fn next(
        &self,
        consumer: &str,
        claim_idle: Duration,
        cursor: &mut String,
    ) -> Result<Option<Entry>, LedgerError> {
        let mut conn = self.conn()?;
        let claimed: StreamAutoClaimReply = redis::cmd("XAUTOCLAIM")
            .arg(keys::jobs_stream())
            .arg(JOBS_GROUP)
            .arg(consumer)
            .arg(claim_idle.as_millis() as u64)
            .arg(cursor.as_str())
            .arg("COUNT")
            .arg(1)
            .query_async(&mut conn)
            .await?;
        *cursor = claimed.next_stream_id;
        if let Some(entry) = claimed.claimed.into_iter().find_map(|e| entry_of(e, true)) {
            return Ok(Some(entry));
        }
        if cursor.as_str() != "0-0" {
            // More pending entries to look at: no blocking read before the scan has wrapped.
            return Ok(None);
        }
        match &*self.pool {
            Pool::Node(pool) => {
                let (_, node) = self
                    .redis
                    .data_node()
                    .ok_or_else(|| unavailable("not connected to Redis yet"))?;
                let mut conn = pool.for_node(&node)?.get().await.map_err(unavailable)?;
                read_new(&mut *conn, consumer, BLOCK_SINGLE).await
            }
            Pool::Cluster(pool) => {
                let mut conn = pool.get().await.map_err(unavailable)?;
                read_new(&mut *conn, consumer, BLOCK_CLUSTER).await
            }
        }
    }

    /// Renews `consumer`'s claim on an entry (its idle time back to 0), so no other worker
    /// takes it over while it runs or is delivered.
    pub async fn heartbeat(&self, consumer: &str, stream_id: &str) -> Result<(), LedgerError> {
        let mut conn = self.conn()?;
        let _: redis::Value = redis::cmd("XCLAIM")
            .arg(keys::jobs_stream())
            .arg(JOBS_GROUP)
            .arg(consumer)
            .arg(0)
            .arg(stream_id)
            .arg("JUSTID")
            .query_async(&mut conn)
            .await?;
        Ok(())
    }

    /// Done with an entry: acknowledged and removed from the stream, and the job no longer
    /// counts against the caps.
    pub async fn close(&self, entry: &Entry) -> Result<(), LedgerError> {
        let mut conn = self.conn()?;
        let stream = keys::jobs_stream();
        let _: () = redis::cmd("XACK")
            .arg(&stream)
            .arg(JOBS_GROUP)
            .arg(&entry.stream_id)
            .query_async(&mut conn)
            .await?;
        let _: () = conn.xdel(&stream, &[&entry.stream_id]).await?;
        let _: () = conn
            .srem(AccountKeys::new(&entry.account).jobs_open(), &entry.job)
            .await?;
        let _: () = conn
            .srem(
                keys::jobs_open(),
                format!("{}|{}", entry.account, entry.job),
            )
            .await?;
        Ok(())
    }

    /// Waiting and pending entries, and the age of the oldest waiting one (Redis time).
    pub async fn depth(&self) -> Result<Depth, LedgerError> {
        let mut conn = self.conn()?;
        let stream = keys::jobs_stream();
        let groups: StreamInfoGroupsReply = redis::cmd("XINFO")
            .arg("GROUPS")
            .arg(&stream)
            .query_async(&mut conn)
            .await?;
        let Some(group) = groups.groups.into_iter().find(|g| g.name == JOBS_GROUP) else {
            return Ok(Depth::default());
        };
        let length: u64 = conn.xlen(&stream).await?;
        let pending = group.pending as u64;
        let waiting = length.saturating_sub(pending);
        let mut oldest_waiting_ms = 0;
        if waiting > 0 {
            let next: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
                .arg(&stream)
                .arg(format!("({}", group.last_delivered_id))
                .arg("+")
                .arg("COUNT")
                .arg(1)
                .query_async(&mut conn)
                .await?;
            let (now_s, now_us): (u64, u64) = redis::cmd("TIME").query_async(&mut conn).await?;
            let now_ms = now_s * 1_000 + now_us / 1_000;
            if let Some(first) = next.ids.first() {
                let at: u64 = first
                    .id
                    .split('-')
                    .next()
                    .and_then(|ms| ms.parse().ok())
                    .unwrap_or(now_ms);
                oldest_waiting_ms = now_ms.saturating_sub(at);
            }
        }
        Ok(Depth {
            waiting,
            pending,
            oldest_waiting_ms,
        })
    }
}

async fn read_new(
    conn: &mut impl ConnectionLike,
    consumer: &str,
    block: Duration,
) -> Result<Option<Entry>, LedgerError> {
    let read: Option<StreamReadReply> = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg(JOBS_GROUP)
        .arg(consumer)
        .arg("COUNT")
        .arg(1)
        .arg("BLOCK")
        .arg(block.as_millis() as u64)
        .arg("STREAMS")
        .arg(keys::jobs_stream())
        .arg(">")
        .query_async(conn)
        .await?;
    Ok(read
        .into_iter()
        .flat_map(|r| r.keys)
        .flat_map(|k| k.ids)
        .find_map(|e| entry_of(e, false)))
}

fn entry_of(e: StreamId, reclaimed: bool) -> Option<Entry> {
    Some(Entry {
        account: e.get("account")?,
        job: e.get("job")?,
        stream_id: e.id,
        reclaimed,
    })
}
