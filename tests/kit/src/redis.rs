//! A private `redis-server`, or a Redis Cluster, on free loopback ports: append-only with fsync
//! always (like production) unless asked otherwise, killed when dropped or when this process
//! dies.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

/// How a server persists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Persistence {
    /// Append-only file, fsync on every write (production's setting).
    AppendOnly,
    /// Nothing on disk.
    None,
}

/// A running redis-server.
pub struct RedisServer {
    pub port: u16,
    pub url: String,
    pub pid: u32,
    dir: Arc<tempfile::TempDir>,
    persistence: Persistence,
    extra: Vec<String>,
    exited: Arc<AtomicBool>,
}

impl RedisServer {
    /// A server on a free port, in a directory of its own.
    pub fn start(persistence: Persistence) -> anyhow::Result<RedisServer> {
        Self::start_with(persistence, &[])
    }

    /// Like [`RedisServer::start`], with more `redis-server` arguments (e.g. cluster mode).
    pub fn start_with(persistence: Persistence, extra: &[&str]) -> anyhow::Result<RedisServer> {
        let dir = Arc::new(tempfile::Builder::new().prefix("redis-").tempdir()?);
        let extra = extra.iter().map(|s| s.to_string()).collect();
        spawn(crate::free_port(), dir, persistence, extra)
    }

    /// Its data directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// SIGKILLs the server and waits until its port is closed.
    pub fn kill(&self) {
        if !self.exited.load(Ordering::SeqCst) {
            crate::process::signal(self.pid, libc::SIGKILL);
        }
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok()
            && start.elapsed() < Duration::from_secs(5)
        {
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts the server again on the same port and directory (its append-only file reloads).
    pub fn restart(&self) -> anyhow::Result<RedisServer> {
        self.restart_with(self.extra.clone())
    }

    /// [`RedisServer::restart`] with other extra arguments than it was first started with.
    pub fn restart_with(&self, extra: Vec<String>) -> anyhow::Result<RedisServer> {
        spawn(self.port, Arc::clone(&self.dir), self.persistence, extra)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if !self.exited.load(Ordering::SeqCst) {
            crate::process::signal(self.pid, libc::SIGKILL);
        }
    }
}

/// Starts the server from a thread that waits for it as long as it runs, so the death signal
/// (tied to the forking thread) fires only when this whole process dies, and the thread can
/// tell [`Drop`] that the pid is no longer the server's.
fn spawn(
    port: u16,
    dir: Arc<tempfile::TempDir>,
    persistence: Persistence,
    extra: Vec<String>,
) -> anyhow::Result<RedisServer> {
    let mut cmd = Command::new("redis-server");
    cmd.args([
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
    ]);
    match persistence {
        Persistence::AppendOnly => cmd.args(["--appendonly", "yes", "--appendfsync", "always"]),
        Persistence::None => cmd.args(["--appendonly", "no"]),
    };
    cmd.arg("--dir")
        .arg(dir.path())
        .args(&extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let (pid, exited) = launch(cmd, port)?;
    Ok(RedisServer {
        port,
        url: format!("redis://127.0.0.1:{port}/0"),
        pid,
        dir,
        persistence,
        extra,
        exited,
    })
}

/// Starts `cmd` (a server that listens on `port`) from a thread that waits for it as long as it
/// runs; returns its pid and the flag that thread sets when it exited, once the port answers.
pub(crate) fn launch(mut cmd: Command, port: u16) -> anyhow::Result<(u32, Arc<AtomicBool>)> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    crate::process::with_death_signal(&mut cmd);
    let exited = Arc::new(AtomicBool::new(false));
    let (tx, rx) = std::sync::mpsc::channel::<std::io::Result<u32>>();
    let flag = Arc::clone(&exited);
    std::thread::spawn(move || match cmd.spawn() {
        Ok(mut child) => {
            let _ = tx.send(Ok(child.id()));
            let _ = child.wait();
            flag.store(true, Ordering::SeqCst);
        }
        Err(e) => {
            let _ = tx.send(Err(e));
        }
    });
    let pid = rx
        .recv()
        .context("the redis-server thread")?
        .with_context(|| format!("cannot start {program} (`make test` installs it)"))?;
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if start.elapsed() > Duration::from_secs(10) {
            crate::process::signal(pid, libc::SIGKILL);
            bail!("redis on port {port} did not start");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok((pid, exited))
}

/// A Redis Cluster of `masters` primaries (no replicas), every slot assigned, made with
/// `redis-cli --cluster create`; returns once every node reports `cluster_state:ok`.
pub fn start_cluster(masters: usize) -> anyhow::Result<Vec<RedisServer>> {
    let nodes = (0..masters)
        .map(|_| {
            RedisServer::start_with(
                Persistence::AppendOnly,
                &["--cluster-enabled", "yes", "--cluster-node-timeout", "2000"],
            )
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut create = Command::new("redis-cli");
    create.args(["--cluster", "create"]);
    for node in &nodes {
        create.arg(format!("127.0.0.1:{}", node.port));
    }
    let out = create
        .args(["--cluster-replicas", "0", "--cluster-yes"])
        .output()
        .context("redis-cli (`make test` installs redis-tools)")?;
    if !out.status.success() {
        bail!(
            "redis-cli --cluster create: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    let start = Instant::now();
    for node in &nodes {
        loop {
            let info = Command::new("redis-cli")
                .args(["-p", &node.port.to_string(), "cluster", "info"])
                .output()?;
            if String::from_utf8_lossy(&info.stdout).contains("cluster_state:ok") {
                break;
            }
            if start.elapsed() > Duration::from_secs(30) {
                bail!("the cluster did not become ok");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    Ok(nodes)
}

/// The node URLs of a cluster, as `redis.cluster_nodes` takes them.
pub fn node_urls(nodes: &[RedisServer]) -> Vec<String> {
    nodes
        .iter()
        .map(|n| format!("redis://127.0.0.1:{}", n.port))
        .collect()
}
