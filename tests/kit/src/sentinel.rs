//! A Redis deployed the usual highly-available way, on free loopback ports: a primary, its
//! replicas and three (or more) Sentinels from Debian's `redis-sentinel`, which a test can
//! fail over by killing the primary. Every process is killed when dropped or when this process
//! dies.

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

use crate::redis::{launch, Persistence, RedisServer};

/// The name the Sentinels monitor the primary under.
pub const MASTER: &str = "shotfarm";
/// How long a silent primary takes to count as down for a Sentinel (ms).
pub const DOWN_AFTER_MS: u64 = 1_000;

/// One `redis-sentinel` process.
pub struct Sentinel {
    pub port: u16,
    pub pid: u32,
    _dir: tempfile::TempDir,
    exited: Arc<AtomicBool>,
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        if !self.exited.load(Ordering::SeqCst) {
            crate::process::signal(self.pid, libc::SIGKILL);
        }
    }
}

/// A primary, replicas and Sentinels.
pub struct SentinelGroup {
    /// The data nodes; the first started as the primary. A restarted node takes its slot.
    pub servers: Vec<RedisServer>,
    pub sentinels: Vec<Sentinel>,
}

fn redis_cli(port: u16, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .context("redis-cli (`make test` installs redis-tools)")?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

impl SentinelGroup {
    /// A primary (append-only, fsync always), `replicas` replicas of it, and `sentinels`
    /// Sentinels (quorum: a majority) that all see the replicas; returns once the replicas are
    /// in step and every Sentinel knows them.
    pub fn start(replicas: usize, sentinels: usize) -> anyhow::Result<SentinelGroup> {
        let primary = RedisServer::start(Persistence::AppendOnly)?;
        let primary_port = primary.port.to_string();
        let mut servers = vec![primary];
        for _ in 0..replicas {
            servers.push(RedisServer::start_with(
                Persistence::AppendOnly,
                &["--replicaof", "127.0.0.1", &primary_port],
            )?);
        }
        let quorum = sentinels / 2 + 1;
        let sentinels = (0..sentinels)
            .map(|_| start_sentinel(&primary_port, quorum))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let group = SentinelGroup { servers, sentinels };
        group.wait_in_step(Duration::from_secs(20))?;
        Ok(group)
    }

    /// The Sentinels' URLs, as `redis.sentinels` takes them.
    pub fn sentinel_urls(&self) -> Vec<String> {
        self.sentinels
            .iter()
            .map(|s| format!("redis://127.0.0.1:{}", s.port))
            .collect()
    }

    /// The port of the primary as the first answering Sentinel names it.
    pub fn primary_port(&self) -> anyhow::Result<u16> {
        for sentinel in &self.sentinels {
            let out = redis_cli(
                sentinel.port,
                &["SENTINEL", "get-master-addr-by-name", MASTER],
            )?;
            if let Some(port) = out.lines().nth(1).and_then(|p| p.trim().parse().ok()) {
                return Ok(port);
            }
        }
        bail!("no Sentinel names the primary")
    }

    /// The data node on `port`.
    pub fn server(&self, port: u16) -> anyhow::Result<&RedisServer> {
        self.servers
            .iter()
            .find(|s| s.port == port)
            .with_context(|| format!("no data node on port {port}"))
    }

    /// Until every Sentinel names a primary other than `old` that says it is one, and every
    /// other live node replicates from it with its link up; returns the new primary's port.
    pub fn wait_failover(&self, old: u16, limit: Duration) -> anyhow::Result<u16> {
        let start = Instant::now();
        loop {
            let named: Vec<Option<u16>> = self
                .sentinels
                .iter()
                .map(|s| {
                    redis_cli(s.port, &["SENTINEL", "get-master-addr-by-name", MASTER])
                        .ok()
                        .and_then(|out| out.lines().nth(1).and_then(|p| p.trim().parse().ok()))
                })
                .collect();
            if let Some(Some(new)) = named.first() {
                let agreed = named.iter().all(|n| *n == Some(*new));
                let is_primary = redis_cli(*new, &["ROLE"])
                    .map(|r| r.starts_with("master"))
                    .unwrap_or(false);
                if *new != old && agreed && is_primary {
                    return Ok(*new);
                }
            }
            if start.elapsed() > limit {
                bail!("no failover from {old} within {limit:?}: the Sentinels name {named:?}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Starts the killed node on `port` again (its append-only file reloads): as a replica of
    /// the primary the Sentinels name now (not of the one it first replicated: its role may have
    /// changed since), or as the primary when it still is the one they name. Returns once every
    /// replica is in step.
    pub fn restart(&mut self, port: u16) -> anyhow::Result<()> {
        let slot = self
            .servers
            .iter()
            .position(|s| s.port == port)
            .with_context(|| format!("no data node on port {port}"))?;
        let primary = self.primary_port()?;
        let extra = if primary == port {
            Vec::new()
        } else {
            ["--replicaof", "127.0.0.1", &primary.to_string()]
                .map(String::from)
                .to_vec()
        };
        let again = self.servers[slot].restart_with(extra)?;
        self.servers[slot] = again;
        self.wait_in_step(Duration::from_secs(30))
    }

    /// Until every live replica's link to the primary is up and every Sentinel counts all of
    /// them.
    fn wait_in_step(&self, limit: Duration) -> anyhow::Result<()> {
        let start = Instant::now();
        loop {
            let primary = self.primary_port().ok();
            let replicas_up = primary.is_some_and(|p| {
                self.servers.iter().filter(|s| s.port != p).all(|s| {
                    redis_cli(s.port, &["INFO", "replication"])
                        .map(|i| {
                            i.contains("master_link_status:up")
                                && i.contains(&format!("master_port:{p}"))
                        })
                        .unwrap_or(false)
                })
            });
            let known = self.servers.len() - 1;
            let sentinels_know = self.sentinels.iter().all(|s| {
                redis_cli(s.port, &["SENTINEL", "replicas", MASTER])
                    .map(|out| {
                        out.lines().filter(|l| l.trim() == "name").count() >= known
                            && !out.contains("s_down")
                    })
                    .unwrap_or(false)
            });
            if replicas_up && sentinels_know {
                return Ok(());
            }
            if start.elapsed() > limit {
                bail!("the replicas and Sentinels were not in step within {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn start_sentinel(primary_port: &str, quorum: usize) -> anyhow::Result<Sentinel> {
    let port = crate::free_port();
    let dir = tempfile::Builder::new().prefix("sentinel-").tempdir()?;
    let conf = dir.path().join("sentinel.conf");
    let mut file = std::fs::File::create(&conf)?;
    // Sentinel rewrites its own config file as it learns the topology.
    write!(
        file,
        "port {port}\nbind 127.0.0.1\ndir {dir}\nsentinel resolve-hostnames no\n\
         sentinel monitor {MASTER} 127.0.0.1 {primary_port} {quorum}\n\
         sentinel down-after-milliseconds {MASTER} {DOWN_AFTER_MS}\n\
         sentinel failover-timeout {MASTER} 5000\n\
         sentinel parallel-syncs {MASTER} 1\n",
        dir = dir.path().display(),
    )?;
    drop(file);
    let mut cmd = Command::new("redis-sentinel");
    cmd.arg(&conf).stdout(Stdio::null()).stderr(Stdio::null());
    let (pid, exited) = launch(cmd, port)?;
    Ok(Sentinel {
        port,
        pid,
        _dir: dir,
        exited,
    })
}
