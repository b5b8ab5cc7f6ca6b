//! `[chromium]`: how a browser is launched (executable, profiles, flags, sandbox, network
//! isolation, page heap), and which engine (`Engine`) renders captures.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct ChromiumConfig {
    /// The browser executable; empty = the binary of `farm.engine` (see [`Engine::binary`]).
    pub executable: PathBuf,
    /// Parent directory of the per-browser profiles; empty means the system temp directory.
    pub profile_dir: PathBuf,
    /// Extra command-line flags, written with their leading `--`.
    pub extra_args: Vec<String>,
    /// How long a launch may take before it counts as failed, in milliseconds.
    pub launch_timeout_ms: u64,
    /// Run every browser in a network namespace of its own whose only way out is the egress
    /// proxy (no UDP, no direct TCP). Off only where namespaces cannot be made, knowingly.
    pub network_isolation: bool,
    /// Chromium's own sandbox for its renderers: `auto` (on unless the daemon runs as root,
    /// where Chromium cannot use it), `on` or `off`.
    pub sandbox: SandboxMode,
    /// Largest JavaScript heap of one page, in MiB (0 = Chromium's default). A page that
    /// exceeds it crashes its own renderer, and the capture fails fast with `page_crashed`.
    pub max_page_heap_mb: u64,
}

/// Whether Chromium sandboxes its renderers.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SandboxMode {
    /// On unless the daemon runs as root.
    Auto,
    On,
    Off,
}

impl SandboxMode {
    /// Whether browsers started by this process use the sandbox.
    pub fn enabled(self) -> bool {
        match self {
            SandboxMode::On => true,
            SandboxMode::Off => false,
            SandboxMode::Auto => !running_as_root(),
        }
    }
}

/// Whether this process runs as root (Chromium then refuses its sandbox).
pub fn running_as_root() -> bool {
    // SAFETY: a getter with no preconditions.
    unsafe { libc::geteuid() == 0 }
}

impl ChromiumConfig {
    /// The program to launch: `executable`, or the default engine's binary when it is empty
    /// (the daemon fills `executable` from `farm.engine` before launching; see
    /// [`Config::browser`](super::Config::browser)).
    pub fn program(&self) -> &Path {
        if self.executable.as_os_str().is_empty() {
            Engine::default().binary()
        } else {
            &self.executable
        }
    }
}

/// Which Chromium build renders captures.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Engine {
    /// The old headless shell (Debian `chromium-headless-shell`): no browser UI, so a fresh
    /// context is a bare page; the lighter and faster engine.
    #[default]
    HeadlessShell,
    /// Full Chromium in new headless mode (Debian `chromium`): a browser window per context.
    Chromium,
}

impl Engine {
    /// The engine's binary as Debian installs it. The shell is launched directly, not through
    /// `/usr/bin/chromium-headless-shell` (a wrapper script that does not `exec`: signals would
    /// reach the script, not the browser).
    pub fn binary(self) -> &'static Path {
        match self {
            Engine::HeadlessShell => Path::new("/usr/lib/chromium/chromium-headless-shell"),
            Engine::Chromium => Path::new("/usr/bin/chromium"),
        }
    }

    /// The name used in configuration, logs and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Engine::HeadlessShell => "headless-shell",
            Engine::Chromium => "chromium",
        }
    }

    /// The Debian package that provides [`Engine::binary`].
    pub fn package(self) -> &'static str {
        match self {
            Engine::HeadlessShell => "chromium-headless-shell",
            Engine::Chromium => "chromium",
        }
    }
}

impl Default for ChromiumConfig {
    fn default() -> Self {
        Self {
            executable: PathBuf::new(),
            profile_dir: PathBuf::new(),
            extra_args: Vec::new(),
            launch_timeout_ms: 20_000,
            network_isolation: true,
            sandbox: SandboxMode::Auto,
            max_page_heap_mb: 512,
        }
    }
}
