//! A private S3-compatible server: moto in server mode (PyPI, pinned; `scripts/install-deps.sh
//! --test` installs it into `/opt/shotfarm-moto`) on a free loopback port, killed when dropped or
//! when this process dies. Objects live in its memory. It takes any credentials (it checks none
//! by default), so a test hands the daemon made-up ones.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

/// Where `scripts/install-deps.sh --test` installs moto's server.
pub const INSTALLED: &str = "/opt/shotfarm-moto/bin/moto_server";

/// The credentials tests give a daemon that talks to moto (any are accepted).
pub const ACCESS_KEY_ID: &str = "AKIDSHOTFARMTEST";
pub const SECRET_ACCESS_KEY: &str = "shotfarm-test-secret-key";

/// A running `moto_server`.
pub struct MotoServer {
    pub port: u16,
    /// `http://127.0.0.1:<port>`: what `storage.endpoint` takes (path-style).
    pub endpoint: String,
    pub pid: u32,
    exited: Arc<AtomicBool>,
}

/// The moto server to run: `SHOTFARM_MOTO_SERVER`, else the one install-deps.sh installs.
fn binary() -> anyhow::Result<PathBuf> {
    let tool = std::env::var_os("SHOTFARM_MOTO_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(INSTALLED));
    if !tool.is_file() {
        bail!(
            "moto is missing ({}): run `make test` (scripts/install-deps.sh --test), which \
             installs it into /opt/shotfarm-moto, or set SHOTFARM_MOTO_SERVER to its path",
            tool.display()
        );
    }
    Ok(tool)
}

impl MotoServer {
    /// A server on a free loopback port, answering once it is up. Start it from a thread that
    /// lives as long as the test process, or from the test's own: the server dies with the
    /// thread that waits for it only when this whole process dies (see [`Drop`]).
    pub fn start() -> anyhow::Result<MotoServer> {
        let port = crate::free_port();
        let mut cmd = Command::new(binary()?);
        cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        crate::process::with_death_signal(&mut cmd);
        let exited = Arc::new(AtomicBool::new(false));
        let (tx, rx) = std::sync::mpsc::channel::<std::io::Result<u32>>();
        let flag = Arc::clone(&exited);
        // Spawned and waited for by a thread of its own, which lives as long as the server, so
        // the parent-death signal fires only when the server's waiter (and so this process)
        // goes, and `Drop` knows whether the pid is still the server's.
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
            .context("the moto_server thread")?
            .context("cannot start moto_server")?;
        let server = MotoServer {
            port,
            endpoint: format!("http://127.0.0.1:{port}"),
            pid,
            exited,
        };
        let start = Instant::now();
        // Up once it answers HTTP (importing moto takes a second or two).
        while server.request("GET", "/").is_err() {
            if server.exited.load(Ordering::SeqCst) {
                bail!("moto_server on port {port} exited at start");
            }
            if start.elapsed() > Duration::from_secs(30) {
                bail!("moto_server on port {port} did not start within 30 s");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(server)
    }

    /// Creates the bucket `name` (path-style `PUT /<name>`).
    pub fn create_bucket(&self, name: &str) -> anyhow::Result<()> {
        let status = self.request("PUT", &format!("/{name}"))?;
        if status != 200 {
            bail!("creating bucket {name} on moto: HTTP {status}");
        }
        Ok(())
    }

    /// SIGKILLs the server and waits until its port is closed.
    pub fn kill(&self) {
        if !self.exited.load(Ordering::SeqCst) {
            crate::process::signal(self.pid, libc::SIGKILL);
        }
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", self.port)).is_ok()
            && start.elapsed() < Duration::from_secs(5)
        {
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// One bodiless HTTP/1.1 request; its status code.
    fn request(&self, method: &str, path: &str) -> anyhow::Result<u16> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.port
        )?;
        let mut head = [0u8; 32];
        let n = stream.read(&mut head)?;
        let line = String::from_utf8_lossy(&head[..n]);
        line.split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .with_context(|| format!("not an HTTP answer: {line:?}"))
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        if !self.exited.load(Ordering::SeqCst) {
            crate::process::signal(self.pid, libc::SIGKILL);
        }
    }
}
