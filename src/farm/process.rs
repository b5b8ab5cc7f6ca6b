//! One Chromium process: launch with its own profile directory, find its DevTools URL, watch
//! for its exit, kill its whole process group. Also the guarantee that no Chromium outlives the
//! daemon: every browser is forked from one long-lived launcher thread with the parent-death
//! signal set, so a SIGKILLed daemon takes its browsers with it.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::mpsc as std_mpsc;
use std::sync::OnceLock;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::{oneshot, watch};

use crate::config::ChromiumConfig;

/// Flags every browser gets. Required on this platform: headless, no sandbox (root), no GPU, and
/// no background traffic (the network is closed; these calls would be refused at every start).
const BASE_FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--remote-debugging-port=0",
    "--remote-debugging-address=127.0.0.1",
    "--disable-dev-shm-usage",
    "--disable-extensions",
    "--disable-default-apps",
    "--no-default-browser-check",
    "--disable-breakpad",
    "--disable-crash-reporter",
    "--disable-renderer-backgrounding",
    "--disable-background-timer-throttling",
    "--disable-backgrounding-occluded-windows",
    "--disable-ipc-flooding-protection",
    "--disable-hang-monitor",
    "--disable-popup-blocking",
    "--disable-prompt-on-repost",
    "--disable-client-side-phishing-detection",
    "--disable-domain-reliability",
    "--disable-features=Translate,MediaRouter,OptimizationHints,InterestFeedContentSuggestions,CalculateNativeWinOcclusion,AcceptCHFrame,DialMediaRouteProvider,OmniboxAimPopupWebUIContent,OmniboxFullPopupWebUIContent,OmniboxPopupWebUIBaseContent,OmniboxPopupWebUIContent,WebUIOmniboxPopup,PreloadTopChromeWebUI",
    "--metrics-recording-only",
    "--password-store=basic",
    "--use-mock-keychain",
    "--hide-scrollbars",
    "--mute-audio",
    "--force-color-profile=srgb",
    "--font-render-hinting=none",
];

/// A running Chromium process.
pub struct ChromiumProcess {
    /// PID of the browser process (also its process group id).
    pub pid: u32,
    /// The browser's DevTools WebSocket URL.
    pub ws_url: String,
    /// Becomes `true` once the process has exited.
    exited: watch::Receiver<bool>,
    /// Removed (with the profile) when the process handle is dropped.
    profile: Option<tempfile::TempDir>,
}

#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("could not create a profile directory in {dir}: {source}")]
    Profile {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("could not start {exe}: {source}")]
    Spawn {
        exe: PathBuf,
        source: std::io::Error,
    },
    #[error("Chromium exited before printing its DevTools address")]
    EarlyExit,
    #[error("Chromium did not print its DevTools address within {0:?}")]
    Timeout(Duration),
    #[error("the launcher thread is gone")]
    LauncherGone,
}

impl ChromiumProcess {
    /// Starts Chromium and waits for its DevTools address.
    pub async fn launch(
        config: &ChromiumConfig,
        label: &str,
    ) -> Result<ChromiumProcess, LaunchError> {
        let parent = profile_parent(config);
        let _ = std::fs::create_dir_all(&parent);
        let profile = tempfile::Builder::new()
            .prefix(&format!("shotfarm-{label}-"))
            .tempdir_in(&parent)
            .map_err(|source| LaunchError::Profile {
                dir: parent.clone(),
                source,
            })?;

        let mut command = Command::new(&config.executable);
        // Pages never need the daemon's secrets (payment tokens come as SHOTFARM_… variables)
        // nor its systemd sockets: the browser gets the environment without them.
        for (name, _) in std::env::vars_os() {
            let private = name.to_str().is_some_and(|n| {
                n.starts_with("SHOTFARM_")
                    || matches!(n, "NOTIFY_SOCKET" | "WATCHDOG_USEC" | "WATCHDOG_PID")
                    || n.starts_with("LISTEN_")
                    || n == "CREDENTIALS_DIRECTORY"
            });
            if private {
                command.env_remove(name);
            }
        }
        command
            .args(BASE_FLAGS)
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .args(&config.extra_args)
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .process_group(0);
        let parent_pid = std::process::id();
        // SAFETY: the closure runs in the forked child before exec and calls only
        // async-signal-safe functions (prctl, getppid, _exit).
        unsafe {
            command.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // The parent may have died between fork and prctl.
                if libc::getppid() as u32 != parent_pid {
                    libc::_exit(1);
                }
                Ok(())
            });
        }
        let mut child = spawn_on_launcher(command, &config.executable).await?;
        let pid = child.id().unwrap_or(0);
        let Some(stderr) = child.stderr.take() else {
            return Err(LaunchError::EarlyExit);
        };
        let mut lines = BufReader::new(stderr).lines();
        let timeout = Duration::from_millis(config.launch_timeout_ms);
        let found = tokio::time::timeout(timeout, async {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(url) = line.strip_prefix("DevTools listening on ") {
                    return Some(url.trim().to_string());
                }
                tracing::trace!(target: "chromium", pid, "{line}");
            }
            None
        })
        .await;
        let ws_url = match found {
            Ok(Some(url)) => url,
            Ok(None) => {
                kill_group(pid);
                return Err(LaunchError::EarlyExit);
            }
            Err(_) => {
                kill_group(pid);
                return Err(LaunchError::Timeout(timeout));
            }
        };
        // Keep draining stderr so Chromium never blocks on a full pipe.
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                tracing::trace!(target: "chromium", pid, "{line}");
            }
        });
        let (exit_tx, exited) = watch::channel(false);
        tokio::spawn(async move {
            let status = child.wait().await;
            tracing::debug!(pid, ?status, "chromium process exited");
            // Renderers and helpers share the group; take them down with the browser.
            kill_group(pid);
            let _ = exit_tx.send(true);
        });
        Ok(ChromiumProcess {
            pid,
            ws_url,
            exited,
            profile: Some(profile),
        })
    }

    /// Resolves when the process has exited.
    pub fn exited(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut rx = self.exited.clone();
        async move {
            let _ = rx.wait_for(|gone| *gone).await;
        }
    }

    pub fn has_exited(&self) -> bool {
        *self.exited.borrow()
    }

    /// Kills the browser and every process of its group, then waits (bounded) for the exit.
    pub async fn kill(mut self) {
        if !self.has_exited() {
            kill_group(self.pid);
            let _ = tokio::time::timeout(Duration::from_secs(5), self.exited()).await;
        }
        // The browser's helpers got the same SIGKILL; wait (bounded) until none is running, so
        // "stopped" means no process of this browser is left.
        let pid = self.pid;
        let _ = tokio::time::timeout(Duration::from_secs(2), async move {
            while super::proc_tree::group_alive(pid) {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
        if let Some(profile) = self.profile.take() {
            let path = profile.path().to_path_buf();
            // Deleting a profile touches many files: keep it off the async workers.
            let _ = tokio::task::spawn_blocking(move || {
                if let Err(e) = profile.close() {
                    tracing::debug!(path = %path.display(), "profile cleanup: {e}");
                }
            })
            .await;
        }
    }

    /// The profile directory of this browser.
    pub fn profile_dir(&self) -> Option<&Path> {
        self.profile.as_ref().map(|p| p.path())
    }
}

impl Drop for ChromiumProcess {
    fn drop(&mut self) {
        if !self.has_exited() {
            kill_group(self.pid);
        }
    }
}

/// The directory holding every browser's profile directory.
fn profile_parent(config: &ChromiumConfig) -> PathBuf {
    if config.profile_dir.as_os_str().is_empty() {
        std::env::temp_dir()
    } else {
        config.profile_dir.clone()
    }
}

/// Removes profile directories left by browsers of a daemon that was killed (SIGKILL skips the
/// cleanup). A directory counts as stale when Chromium's `SingletonLock` names a process that no
/// longer exists; directories of live browsers (of this or another daemon) are left alone.
pub fn remove_stale_profiles(config: &ChromiumConfig) -> usize {
    let Ok(entries) = std::fs::read_dir(profile_parent(config)) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        if !name.to_string_lossy().starts_with("shotfarm-") {
            continue;
        }
        let path = entry.path();
        // The lock is a symlink to "<hostname>-<pid>".
        let Ok(target) = std::fs::read_link(path.join("SingletonLock")) else {
            continue;
        };
        let pid = target
            .to_string_lossy()
            .rsplit('-')
            .next()
            .and_then(|p| p.parse::<u32>().ok());
        let alive = pid.is_some_and(super::proc_tree::process_alive);
        if !alive && std::fs::remove_dir_all(&path).is_ok() {
            removed += 1;
        }
    }
    removed
}

/// SIGKILL to the process group led by `pid` (every browser is its own group leader).
pub fn kill_group(pid: u32) {
    if pid > 1 {
        // SAFETY: plain syscall; a stale group id at worst yields ESRCH.
        unsafe {
            libc::killpg(pid as libc::pid_t, libc::SIGKILL);
        }
    }
}

type SpawnRequest = (
    tokio::runtime::Handle,
    Command,
    oneshot::Sender<std::io::Result<Child>>,
);

/// The parent-death signal follows the *thread* that forked the child, so every browser is forked
/// by this one thread, which lives as long as the process.
fn launcher() -> &'static std_mpsc::Sender<SpawnRequest> {
    static LAUNCHER: OnceLock<std_mpsc::Sender<SpawnRequest>> = OnceLock::new();
    LAUNCHER.get_or_init(|| {
        let (tx, rx) = std_mpsc::channel::<SpawnRequest>();
        let spawned = std::thread::Builder::new()
            .name("chromium-launcher".into())
            .spawn(move || {
                while let Ok((handle, mut command, reply)) = rx.recv() {
                    // tokio's Command registers the child with the current runtime.
                    let _guard = handle.enter();
                    let _ = reply.send(command.spawn());
                }
            });
        if let Err(e) = spawned {
            tracing::error!("could not start the chromium launcher thread: {e}");
        }
        tx
    })
}

async fn spawn_on_launcher(command: Command, exe: &Path) -> Result<Child, LaunchError> {
    let (tx, rx) = oneshot::channel();
    launcher()
        .send((tokio::runtime::Handle::current(), command, tx))
        .map_err(|_| LaunchError::LauncherGone)?;
    match rx.await {
        Ok(Ok(child)) => Ok(child),
        Ok(Err(source)) => Err(LaunchError::Spawn {
            exe: exe.to_path_buf(),
            source,
        }),
        Err(_) => Err(LaunchError::LauncherGone),
    }
}
