//! One Chromium process: launch with its own profile directory, find its DevTools URL, watch
//! for its exit, kill its whole process group. Also the guarantee that no Chromium outlives the
//! daemon: every browser is forked from one long-lived launcher thread with the parent-death
//! signal set, so a SIGKILLed daemon takes its browsers with it.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::{oneshot, watch};

use crate::config::ChromiumConfig;
use crate::egress::netns::{Forward, Namespace};

/// Where a browser runs: its network namespace (if isolated) and whether it is sandboxed.
#[derive(Debug, Clone, Default)]
pub struct Placement {
    /// The browsers' own network namespace; `None` = the host's network.
    pub namespace: Option<Arc<Namespace>>,
    /// Chromium's renderer sandbox on.
    pub sandbox: bool,
}

/// Flags every browser gets, on both engines. Required on this platform: headless, no GPU, and
/// no background traffic (the network is closed; these calls would be refused at every start).
/// `--no-sandbox` is added only when the sandbox is off (`chromium.sandbox`). Features to turn
/// off are in [`DISABLED_FEATURES`], never here: Chromium honours only the last
/// `--disable-features=` it is given, so [`command_line`] merges them into one.
const BASE_FLAGS: &[&str] = &[
    "--headless",
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
    "--disable-breakpad",
    "--disable-crash-reporter",
    "--disable-renderer-backgrounding",
    "--disable-background-timer-throttling",
    "--disable-backgrounding-occluded-windows",
    "--disable-ipc-flooding-protection",
    "--disable-hang-monitor",
    "--disable-popup-blocking",
    "--disable-client-side-phishing-detection",
    "--disable-domain-reliability",
    "--metrics-recording-only",
    "--password-store=basic",
    "--hide-scrollbars",
    "--mute-audio",
    "--force-color-profile=srgb",
    "--font-render-hinting=none",
    // With `site-per-process` and `IsolateOrigins` below: a cross-site frame renders in its
    // page's own renderer, so the page's DevTools session sees (and the capture's Fetch
    // interception judges) its requests: blocking, the filter lists and the html origin apply
    // to frames too. New-headless Chromium otherwise puts such a frame in a process of its own,
    // out of the session's reach; the headless shell already runs this way. What shares a
    // renderer is one capture's page and its frames, in a browser context of their own.
    "--disable-site-isolation-trials",
];

/// Features every browser runs without: background fetches a closed network refuses at every
/// start (translation, optimization hints, media-router discovery), `Accept-CH` restarts of a
/// navigation, and out-of-process frames (see `--disable-site-isolation-trials`).
const DISABLED_FEATURES: &[&str] = &[
    "Translate",
    "MediaRouter",
    "DialMediaRouteProvider",
    "OptimizationHints",
    "AcceptCHFrame",
    "site-per-process",
    "IsolateOrigins",
];

const DISABLE_FEATURES: &str = "--disable-features=";

/// The flags after the executable: [`BASE_FLAGS`], then `extra` (the egress proxy's and the
/// operator's), with every `--disable-features=` of both merged into one list at the end.
pub fn command_line(extra: &[String]) -> Vec<String> {
    let mut features: Vec<String> = DISABLED_FEATURES.iter().map(|f| f.to_string()).collect();
    let mut flags: Vec<String> = Vec::with_capacity(BASE_FLAGS.len() + extra.len() + 1);
    flags.extend(BASE_FLAGS.iter().map(|f| f.to_string()));
    for flag in extra {
        match flag.strip_prefix(DISABLE_FEATURES) {
            Some(list) => {
                for feature in list.split(',').map(str::trim).filter(|f| !f.is_empty()) {
                    if !features.iter().any(|known| known == feature) {
                        features.push(feature.to_string());
                    }
                }
            }
            None => flags.push(flag.clone()),
        }
    }
    flags.push(format!("{DISABLE_FEATURES}{}", features.join(",")));
    flags
}

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
    /// The host-side port forwarded to DevTools inside the browsers' namespace.
    _devtools: Option<Forward>,
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
    #[error("cannot reach DevTools in the browsers' network: {0}")]
    DevTools(std::io::Error),
}

/// Forwards a host-side loopback port to the DevTools address in `ws_url` (inside the
/// namespace); returns the forward and the URL rewritten to it.
async fn forward_devtools(
    namespace: &Arc<Namespace>,
    ws_url: &str,
) -> std::io::Result<(Forward, String)> {
    let invalid =
        |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string());
    let mut url = url::Url::parse(ws_url).map_err(|_| invalid("bad DevTools URL"))?;
    let port = url
        .port()
        .ok_or_else(|| invalid("DevTools URL without a port"))?;
    let target = std::net::SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, port));
    let forward = namespace.forward(target).await?;
    url.set_port(Some(forward.addr.port()))
        .map_err(|()| invalid("cannot rewrite the DevTools URL"))?;
    Ok((forward, url.to_string()))
}

impl ChromiumProcess {
    /// Starts Chromium and waits for its DevTools address.
    pub async fn launch(
        config: &ChromiumConfig,
        placement: &Placement,
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
        // Who owns this profile, for `remove_stale_profiles` after a SIGKILL (the headless shell
        // leaves no SingletonLock to tell).
        std::fs::write(profile.path().join(OWNER_FILE), owner_mark()).map_err(|source| {
            LaunchError::Profile {
                dir: parent.clone(),
                source,
            }
        })?;

        let mut command = Command::new(config.program());
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
        if !placement.sandbox {
            command.arg("--no-sandbox");
        }
        if config.max_page_heap_mb > 0 {
            command.arg(format!(
                "--js-flags=--max-old-space-size={}",
                config.max_page_heap_mb
            ));
        }
        command
            .args(command_line(&config.extra_args))
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .args(start_url(config.program()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .process_group(0);
        let parent_pid = std::process::id();
        let netns = placement.namespace.as_ref().map(|n| n.fd());
        // SAFETY: the closure runs in the forked child before exec and calls only
        // async-signal-safe functions (prctl, getppid, setns, _exit); the namespace's descriptor
        // stays open as long as `placement` holds it, which outlives this spawn.
        unsafe {
            command.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // The parent may have died between fork and prctl.
                if libc::getppid() as u32 != parent_pid {
                    libc::_exit(1);
                }
                if let Some(fd) = netns {
                    if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        let mut child = spawn_on_launcher(command, config.program()).await?;
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
        let mut ws_url = match found {
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
        // Inside its own network the browser's DevTools port is out of the daemon's reach:
        // forward a host-side loopback port to it.
        let devtools = match &placement.namespace {
            Some(namespace) => match forward_devtools(namespace, &ws_url).await {
                Ok((forward, url)) => {
                    ws_url = url;
                    Some(forward)
                }
                Err(e) => {
                    kill_group(pid);
                    return Err(LaunchError::DevTools(e));
                }
            },
            None => None,
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
            _devtools: devtools,
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
/// A file in every profile directory naming the daemon that made it.
const OWNER_FILE: &str = "shotfarm-owner";

/// "<pid> <start time>" of this process.
fn owner_mark() -> String {
    let pid = std::process::id();
    let started = super::proc_tree::start_time(pid).unwrap_or(0);
    format!("{pid} {started}")
}

/// Whether the daemon named by a profile's owner file is still running.
fn owner_alive(mark: &str) -> bool {
    let mut parts = mark.split_whitespace();
    let pid = parts.next().and_then(|p| p.parse::<u32>().ok());
    let started = parts.next().and_then(|s| s.parse::<u64>().ok());
    match (pid, started) {
        (Some(pid), Some(started)) => super::proc_tree::start_time(pid) == Some(started),
        _ => false,
    }
}

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
        let alive = match std::fs::read_to_string(path.join(OWNER_FILE)) {
            Ok(mark) => owner_alive(&mark),
            // Made by an older daemon: Chromium's lock is a symlink to "<hostname>-<pid>".
            Err(_) => match std::fs::read_link(path.join("SingletonLock")) {
                Ok(target) => target
                    .to_string_lossy()
                    .rsplit('-')
                    .next()
                    .and_then(|p| p.parse::<u32>().ok())
                    .is_some_and(super::proc_tree::process_alive),
                Err(_) => continue,
            },
        };
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

/// The page a browser opens at start. The headless shell opens none when given none, and a page
/// nobody captures in would hold a renderer (about 10 MB of PSS) for the browser's whole life:
/// captures get pages of their own (`tab::prepare`). Full Chromium given no URL opens its
/// new-tab page (a WebUI renderer), so it gets `about:blank`, as does any other executable.
fn start_url(program: &Path) -> Option<&'static str> {
    let shell = program
        .file_name()
        .and_then(|name| name.to_str())
        .is_some_and(|name| name.contains("headless-shell"));
    (!shell).then_some("about:blank")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_headless_shell_starts_without_a_page() {
        assert_eq!(
            start_url(Path::new("/usr/lib/chromium/chromium-headless-shell")),
            None
        );
        assert_eq!(
            start_url(Path::new("/usr/bin/chromium")),
            Some("about:blank")
        );
        assert_eq!(
            start_url(Path::new("/opt/google/chrome/chrome")),
            Some("about:blank")
        );
    }

    #[test]
    fn a_profile_belongs_to_a_live_daemon_only_while_it_runs() {
        assert!(owner_alive(&owner_mark()));
        let pid = std::process::id();
        assert!(
            !owner_alive(&format!("{pid} 1")),
            "same pid, other start: reused"
        );
        assert!(!owner_alive("4194304 5"));
        assert!(!owner_alive("garbage"));
    }

    #[test]
    fn every_disabled_feature_ends_up_in_one_list() {
        let extra = vec![
            "--proxy-server=http://127.0.0.1:1".to_string(),
            "--disable-features=Translate,PaintHolding".to_string(),
            "--disable-features=BackForwardCache".to_string(),
        ];
        let flags = command_line(&extra);
        let lists: Vec<&String> = flags
            .iter()
            .filter(|f| f.starts_with(DISABLE_FEATURES))
            .collect();
        assert_eq!(lists.len(), 1, "{flags:?}");
        let features: Vec<&str> = lists[0][DISABLE_FEATURES.len()..].split(',').collect();
        for wanted in [
            "Translate",
            "MediaRouter",
            "PaintHolding",
            "BackForwardCache",
        ] {
            assert_eq!(
                features.iter().filter(|f| **f == wanted).count(),
                1,
                "{wanted} in {features:?}"
            );
        }
        assert!(flags.contains(&"--proxy-server=http://127.0.0.1:1".to_string()));
        assert!(flags.contains(&"--headless".to_string()));
    }
}
