//! Child processes a test or bench starts: killed on drop and when this process dies, and the
//! `shotfarm serve` command line the daemon runs with in a test.

use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// A command whose process the kernel kills when the thread that spawns it dies
/// (PR_SET_PDEATHSIG follows the forking thread: spawn from the main thread, or from a thread
/// that lives as long as the process).
pub fn with_death_signal(cmd: &mut Command) -> &mut Command {
    // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        })
    }
}

/// Sends `signal` to `pid`; false when there is no such process.
pub fn signal(pid: u32, signal: libc::c_int) -> bool {
    // SAFETY: kill(2) has no memory-safety preconditions.
    unsafe { libc::kill(pid as libc::pid_t, signal) == 0 }
}

/// A child process that is SIGKILLed (and reaped) when dropped, so a failing test or bench
/// leaves nothing behind.
pub struct ChildGuard(pub Child);

impl std::ops::Deref for ChildGuard {
    type Target = Child;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for ChildGuard {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A spawned daemon with its log file: SIGTERM, a bounded wait for its exit, the end of its
/// log; SIGKILLed on drop if still running.
pub struct Spawned {
    pub child: ChildGuard,
    pub log: PathBuf,
}

impl Spawned {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The last `lines` lines of its log.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    pub fn sigterm(&self) {
        signal(self.pid(), libc::SIGTERM);
    }

    /// Waits for the process to exit, at most `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> anyhow::Result<ExitStatus> {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if start.elapsed() > limit {
                anyhow::bail!("pid {} did not exit within {limit:?}", self.pid());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// `shotfarm serve` (the binary at `binary`) on the given loopback ports, with its own profile
/// directory, loopback egress allowed, rate limits out of the way and plain log lines. The
/// caller adds the Redis, the drain and its other settings, and where the output goes.
pub fn serve(binary: &Path, api: SocketAddr, metrics: SocketAddr, profiles: &Path) -> Command {
    let mut cmd = Command::new(binary);
    cmd.args(["serve", "--listen", &api.to_string()])
        .args(["--metrics-listen", &metrics.to_string()])
        .args(["--allow-egress", "127.0.0.0/8"])
        .env("SHOTFARM_CHROMIUM__PROFILE_DIR", profiles)
        // One daemon per cache directory.
        .env("SHOTFARM_CACHE__DIR", profiles.join("cache"))
        // No async job workers unless the caller asks (a daemon on a shared Redis would take
        // other daemons' jobs).
        .env("SHOTFARM_JOBS__WORKERS", "0")
        .env("SHOTFARM_LIMITS__REQUESTS_PER_MINUTE", "6000000")
        .env("SHOTFARM_LIMITS__BURST", "100000")
        .env_remove("RUST_LOG")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null());
    cmd
}

/// [`serve`] with a 10 s drain and both output streams written to `log` (created anew), as
/// the benches run it.
pub fn serve_logged(
    binary: &Path,
    api: SocketAddr,
    metrics: SocketAddr,
    profiles: &Path,
    log: &Path,
) -> anyhow::Result<Command> {
    let out = std::fs::File::create(log)?;
    let mut cmd = serve(binary, api, metrics, profiles);
    cmd.env("SHOTFARM_SERVER__SHUTDOWN_GRACE_MS", "10000")
        .stdout(out.try_clone()?)
        .stderr(out);
    Ok(cmd)
}

/// Two free loopback addresses: the daemon's API and its metrics listener.
pub fn daemon_addresses() -> (SocketAddr, SocketAddr) {
    let at = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
    (at(crate::free_port()), at(crate::free_port()))
}

/// A `shotfarm serve` a bench started: its process and log, its two addresses and its own
/// profile directory (removed on drop, after the process is killed).
pub struct ServeProcess {
    pub process: Spawned,
    pub api: SocketAddr,
    pub metrics: SocketAddr,
    pub profiles: tempfile::TempDir,
}

impl ServeProcess {
    /// [`serve_logged`] on free ports, a fresh profile directory named after `name`, output to
    /// `log`; `configure` adds the Redis and the bench's settings. Call from the main thread:
    /// the death signal follows the thread that forks.
    pub fn spawn(
        binary: &Path,
        name: &str,
        log: &Path,
        configure: impl FnOnce(&mut Command),
    ) -> anyhow::Result<ServeProcess> {
        use anyhow::Context as _;
        if !binary.is_file() {
            anyhow::bail!(
                "{} is missing: build it with `cargo build --release`",
                binary.display()
            );
        }
        let profiles = tempfile::Builder::new()
            .prefix(&format!("{name}-profiles-"))
            .tempdir()?;
        let (api, metrics) = daemon_addresses();
        let mut cmd = serve_logged(binary, api, metrics, profiles.path(), log)?;
        configure(&mut cmd);
        let child = with_death_signal(&mut cmd)
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        Ok(ServeProcess {
            process: Spawned {
                child: ChildGuard(child),
                log: log.to_path_buf(),
            },
            api,
            metrics,
            profiles,
        })
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }
}
