//! A private `redis-server` for this test run: its own free port and directory, started once,
//! killed when the test process dies (parent-death signal on a thread that never ends).

use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// A running redis-server.
pub struct RedisServer {
    pub port: u16,
    pub url: String,
    pub dir: std::path::PathBuf,
    pub pid: u32,
}

impl RedisServer {
    /// SIGKILLs the server and waits until its port is closed.
    pub fn kill(&self) {
        // SAFETY: plain kill(2) on the pid this test started.
        unsafe {
            libc::kill(self.pid as i32, libc::SIGKILL);
        }
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok()
            && start.elapsed() < Duration::from_secs(5)
        {
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts the server again on the same port and directory (its append-only file reloads).
    pub fn restart(&self) -> RedisServer {
        start_redis_in(self.port, self.dir.clone())
    }
}

/// The run's shared Redis (append-only with fsync always, like production).
pub fn redis() -> &'static RedisServer {
    static SHARED: OnceLock<RedisServer> = OnceLock::new();
    SHARED.get_or_init(|| start_redis(super::support::free_port()))
}

pub fn redis_url() -> String {
    redis().url.clone()
}

/// Starts a redis-server on `port` from a thread that lives as long as the test process, so
/// the server dies with it (PR_SET_PDEATHSIG is tied to the thread that forked).
pub fn start_redis(port: u16) -> RedisServer {
    start_redis_in(port, tempfile::tempdir().expect("redis dir").keep())
}

fn start_redis_in(port: u16, dir: std::path::PathBuf) -> RedisServer {
    start_server(port, dir, &[])
}

/// A local Redis Cluster of `masters` primaries (no replicas) on free loopback ports, made with
/// `redis-cli --cluster create`; returns once every node reports `cluster_state:ok`.
pub fn start_cluster(masters: usize) -> Vec<RedisServer> {
    let nodes: Vec<RedisServer> = (0..masters)
        .map(|_| {
            start_server(
                super::support::free_port(),
                tempfile::tempdir().expect("redis dir").keep(),
                &["--cluster-enabled", "yes", "--cluster-node-timeout", "2000"],
            )
        })
        .collect();
    let mut create = Command::new("redis-cli");
    create.arg("--cluster").arg("create");
    for node in &nodes {
        create.arg(format!("127.0.0.1:{}", node.port));
    }
    let out = create
        .args(["--cluster-replicas", "0", "--cluster-yes"])
        .output()
        .expect("redis-cli (make test installs redis-tools)");
    assert!(
        out.status.success(),
        "redis-cli --cluster create: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let start = Instant::now();
    for node in &nodes {
        loop {
            let info = Command::new("redis-cli")
                .args(["-p", &node.port.to_string(), "cluster", "info"])
                .output()
                .expect("redis-cli");
            if String::from_utf8_lossy(&info.stdout).contains("cluster_state:ok") {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "the cluster did not become ok"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    nodes
}

/// The run's shared three-primary Redis Cluster.
pub fn cluster() -> &'static [RedisServer] {
    static CLUSTER: OnceLock<Vec<RedisServer>> = OnceLock::new();
    CLUSTER.get_or_init(|| start_cluster(3))
}

/// The cluster's node URLs, as `redis.cluster_nodes` takes them.
pub fn cluster_nodes() -> Vec<String> {
    cluster()
        .iter()
        .map(|n| format!("redis://127.0.0.1:{}", n.port))
        .collect()
}

fn start_server(port: u16, dir: std::path::PathBuf, extra: &'static [&'static str]) -> RedisServer {
    let (tx, rx) = std::sync::mpsc::channel::<Result<u32, String>>();
    let dir_for_thread = dir.clone();
    std::thread::spawn(move || {
        let child = spawn_server(port, &dir_for_thread, extra);
        match child {
            Ok(mut child) => {
                let _ = tx.send(Ok(child.id()));
                let _ = child.wait();
            }
            Err(e) => {
                let _ = tx.send(Err(e));
            }
        }
    });
    let pid = match rx.recv().expect("redis thread") {
        Ok(pid) => pid,
        Err(e) => panic!("{e}"),
    };
    wait_for_port(port);
    RedisServer {
        port,
        url: format!("redis://127.0.0.1:{port}/0"),
        dir,
        pid,
    }
}

fn spawn_server(port: u16, dir: &std::path::Path, extra: &[&str]) -> Result<Child, String> {
    let mut cmd = Command::new("redis-server");
    cmd.args([
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "yes",
        "--appendfsync",
        "always",
        "--dir",
    ])
    .arg(dir)
    .args(extra)
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    cmd.spawn()
        .map_err(|e| format!("cannot start redis-server (run `make test`, which installs it): {e}"))
}

fn wait_for_port(port: u16) {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(10) {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("redis-server on port {port} did not start");
}
