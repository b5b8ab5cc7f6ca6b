//! Typed configuration: embedded defaults, an optional TOML file, and `SHOTFARM_…` environment
//! overrides (`SHOTFARM_FARM__BROWSERS=4` sets `farm.browsers`). Unknown keys and bad values are
//! collected and reported all at once, so an operator fixes a config in one pass.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::providers::{Env, Format, Serialized, Toml};
use figment::value::Value;
use figment::Figment;
use serde::{Deserialize, Serialize};

/// The whole configuration of one daemon.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Config {
    /// HTTP listeners and shutdown.
    pub server: ServerConfig,
    /// Logging.
    pub log: LogConfig,
    /// The Redis that holds accounts and the credit ledger.
    pub redis: RedisConfig,
    /// How Chromium processes are launched.
    pub chromium: ChromiumConfig,
    /// The browser fleet and its queue.
    pub farm: FarmConfig,
    /// Defaults and caps of capture options.
    pub capture: CaptureConfig,
    /// Holds, the sweeper and idempotency of the credit ledger.
    pub ledger: LedgerConfig,
    /// Accounts, sessions and sign-up.
    pub auth: AuthConfig,
    /// Credit packs on sale.
    pub credits: CreditsConfig,
    /// Which addresses captures may reach beyond the public internet.
    pub egress: EgressConfig,
    /// Per-caller rate limits.
    pub limits: LimitsConfig,
    /// Buying credits through Polar.
    pub payments: PaymentsConfig,
    /// Signed low-balance notifications to the URL an account configured.
    pub notifications: NotificationsConfig,
    /// The file this configuration was read from (what a reload reads again).
    #[serde(skip)]
    pub source: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct NotificationsConfig {
    /// Delivery attempts per notification: the first and its retries.
    pub attempts: u32,
    /// Wait before the first retry (ms), doubled after each, up to `max_retry_ms`.
    pub first_retry_ms: u64,
    /// Longest wait between two attempts (ms).
    pub max_retry_ms: u64,
    /// How long one attempt may take (ms).
    pub timeout_ms: u64,
    /// Most notifications being delivered (or waiting to retry) at once; more are dropped,
    /// logged and counted.
    pub max_pending: usize,
}

impl Default for NotificationsConfig {
    fn default() -> Self {
        Self {
            attempts: 8,
            first_retry_ms: 1_000,
            max_retry_ms: 300_000,
            timeout_ms: 5_000,
            max_pending: 1_000,
        }
    }
}

impl NotificationsConfig {
    /// The wait before attempt `n + 1` (n ≥ 1): doubling from `first_retry_ms`, capped.
    pub fn retry_after(&self, attempt: u32) -> Duration {
        let doubled = self
            .first_retry_ms
            .saturating_mul(1u64 << attempt.saturating_sub(1).min(32));
        Duration::from_millis(doubled.min(self.max_retry_ms))
    }
}

/// Which Polar API a checkout goes to.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum PolarServer {
    /// Payments are off: `POST /credits/purchase` answers 503 `payments_not_configured`.
    #[default]
    Off,
    Sandbox,
    Production,
}

/// How the webhook secret is written in config.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum WebhookSecretFormat {
    /// As Polar's dashboard shows it; its bytes are the HMAC key (what Polar's SDKs do).
    #[default]
    Polar,
    /// Standard Webhooks: `whsec_` followed by the base64 of the key.
    Standard,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct PaymentsConfig {
    /// `off`, `sandbox` (https://sandbox-api.polar.sh) or `production` (https://api.polar.sh).
    pub polar_server: PolarServer,
    /// Overrides the server's base URL (a proxy, or a stand-in in tests); empty = the server's.
    pub polar_api_url: String,
    /// An organization access token (secret: prefer `SHOTFARM_PAYMENTS__POLAR_ACCESS_TOKEN`).
    pub polar_access_token: String,
    /// The Polar webhook endpoint's secret (prefer `SHOTFARM_PAYMENTS__WEBHOOK_SECRET`); empty =
    /// `POST /api/v1/webhooks/polar` refuses every delivery.
    pub webhook_secret: String,
    pub webhook_secret_format: WebhookSecretFormat,
    /// Where Polar sends the customer after paying; empty = `{auth.public_url}/dashboard/credits?checkout=success`.
    pub success_url: String,
    /// How long a call to Polar's API may take, in milliseconds.
    pub timeout_ms: u64,
    /// Pack id → Polar product id, e.g. `pack_pro = "5f0c…"`.
    pub products: std::collections::BTreeMap<String, String>,
}

impl Default for PaymentsConfig {
    fn default() -> Self {
        Self {
            polar_server: PolarServer::Off,
            polar_api_url: String::new(),
            polar_access_token: String::new(),
            webhook_secret: String::new(),
            webhook_secret_format: WebhookSecretFormat::Polar,
            success_url: String::new(),
            timeout_ms: 10_000,
            products: std::collections::BTreeMap::new(),
        }
    }
}

impl PaymentsConfig {
    /// The base URL of Polar's API, or `None` when payments are off (whatever the URL says).
    pub fn api_base(&self) -> Option<String> {
        if self.polar_server == PolarServer::Off {
            return None;
        }
        if !self.polar_api_url.is_empty() {
            return Some(self.polar_api_url.trim_end_matches('/').to_string());
        }
        match self.polar_server {
            PolarServer::Off => None,
            PolarServer::Sandbox => Some("https://sandbox-api.polar.sh".into()),
            PolarServer::Production => Some("https://api.polar.sh".into()),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct LimitsConfig {
    /// Sustained capture requests per minute per API key (per account for session callers),
    /// counted across every host; 0 = no limit.
    pub requests_per_minute: u64,
    /// Requests a caller may make at once above the sustained rate.
    pub burst: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            requests_per_minute: 600,
            burst: 60,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct EgressConfig {
    /// CIDR ranges or addresses captures may reach although they are not public (loopback,
    /// private, link-local, …). Empty: public addresses only.
    pub allow: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct ServerConfig {
    /// Address of the public API.
    pub listen: SocketAddr,
    /// Address of the Prometheus exporter (`/metrics`, `/healthz`, `/readyz`).
    pub metrics_listen: SocketAddr,
    /// How long a graceful shutdown waits for in-flight captures, in milliseconds.
    pub shutdown_grace_ms: u64,
    /// Largest accepted request body, in bytes.
    pub max_body_bytes: u64,
    /// A request head (request line and headers) must arrive whole within this, in
    /// milliseconds: counted from a connection's opening for its first request, from the
    /// head's first byte for later ones. A request in progress is never cut by it.
    pub header_timeout_ms: u64,
    /// A keep-alive connection with no request in progress and no byte moving is closed after
    /// this, in milliseconds.
    pub idle_timeout_ms: u64,
    /// Connections the API listener keeps open at most; beyond, 503 `server_busy`.
    pub max_connections: usize,
    /// Connections one client address (IPv6: one /64) may have open; beyond, 429
    /// `too_many_connections`. Behind a reverse proxy every client shares its address: set it
    /// to `max_connections` there.
    pub max_connections_per_client: usize,
    /// Largest request head (request line and headers), in bytes; beyond, 414 `uri_too_long`
    /// or 431 `headers_too_large`.
    pub max_request_head_bytes: usize,
    /// This host's name in the fleet (`shotfarm_build_info{host}`); empty = the machine's host
    /// name.
    pub instance_name: String,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            metrics_listen: SocketAddr::from(([127, 0, 0, 1], 9464)),
            shutdown_grace_ms: 30_000,
            max_body_bytes: 1024 * 1024,
            header_timeout_ms: 10_000,
            idle_timeout_ms: 60_000,
            max_connections: 4096,
            max_connections_per_client: 64,
            max_request_head_bytes: 32 * 1024,
            instance_name: String::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct LogConfig {
    /// `text` or `json`.
    pub format: LogFormat,
    /// An `EnvFilter` directive; `RUST_LOG` wins when set.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            level: "info,chromiumoxide=off".to_string(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct RedisConfig {
    /// Connection URL of the ledger's Redis (ignored when `cluster_nodes` is set).
    pub url: String,
    /// Redis Cluster: URLs of some of its nodes (`redis://10.0.0.1:6379`, …); the rest of the
    /// topology is discovered. Empty = a single Redis at `url`.
    pub cluster_nodes: Vec<String>,
    /// How long connecting may take before Redis counts as unreachable, in milliseconds.
    pub connect_timeout_ms: u64,
    /// How long one command may wait for its reply, in milliseconds.
    pub response_timeout_ms: u64,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            url: "redis://127.0.0.1:6379/0".to_string(),
            cluster_nodes: Vec::new(),
            connect_timeout_ms: 2_000,
            response_timeout_ms: 2_000,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct LedgerConfig {
    /// A hold lives for the capture's timeout plus this, in milliseconds; after that, a hold whose
    /// daemon died is expired by the sweeper and its credit comes back.
    pub hold_grace_ms: u64,
    /// How often this daemon sweeps expired holds, in milliseconds.
    pub sweep_interval_ms: u64,
    /// Most captures one account may have in flight at once, across every host (0 = no cap), so
    /// one customer cannot fill the whole queue; beyond it, 429 `too_many_in_flight`.
    pub max_in_flight_per_account: i64,
    /// How long a succeeded capture's result is kept for `Idempotency-Key` retries, in seconds.
    pub idempotency_ttl_secs: u64,
    /// Largest image kept for `Idempotency-Key` replays, in bytes; a larger success is still
    /// never charged twice, but a retry gets 409 `idempotency_result_unavailable`.
    pub idempotency_max_bytes: usize,
}

impl Default for LedgerConfig {
    fn default() -> Self {
        Self {
            hold_grace_ms: 30_000,
            sweep_interval_ms: 1_000,
            max_in_flight_per_account: 16,
            idempotency_ttl_secs: 86_400,
            idempotency_max_bytes: 16 * 1024 * 1024,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct AuthConfig {
    /// How long a login session lasts, in seconds.
    pub session_ttl_secs: u64,
    /// Mark the `session` cookie `Secure` (always done when `public_url` is `https://…`).
    pub secure_cookies: bool,
    /// Free credits a new account receives, once (`signup_bonus`).
    pub signup_bonus: i64,
    /// Whether `POST /api/v1/auth/signup` is open; operators can still create accounts by CLI.
    pub signup_enabled: bool,
    /// The public base URL of this service, used in messages such as the 402 body; its origin
    /// is also accepted on state-changing browser requests (with the request's own host).
    pub public_url: String,
    /// Log-in attempts per email address per minute, counted across every host (0 = no limit).
    pub login_attempts_per_minute: u64,
    /// Log-in and sign-up attempts per client address per minute (0 = no limit). Behind a
    /// reverse proxy every client shares its address: raise it or set 0 there.
    pub attempts_per_address_per_minute: u64,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            session_ttl_secs: 30 * 86_400,
            secure_cookies: false,
            signup_bonus: 5,
            signup_enabled: true,
            public_url: "http://127.0.0.1:8080".to_string(),
            login_attempts_per_minute: 10,
            attempts_per_address_per_minute: 60,
        }
    }
}

/// One credit pack on sale.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PackConfig {
    pub id: String,
    pub name: String,
    pub credits: i64,
    pub price_cents: i64,
    #[serde(default)]
    pub popular: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct CreditsConfig {
    /// The packs, in the order `GET /api/v1/credits/packs` lists them.
    pub packs: Vec<PackConfig>,
}

impl Default for CreditsConfig {
    fn default() -> Self {
        let pack = |id: &str, name: &str, credits, price_cents, popular| PackConfig {
            id: id.to_string(),
            name: name.to_string(),
            credits,
            price_cents,
            popular,
        };
        Self {
            packs: vec![
                pack("pack_starter", "Starter", 100, 500, false),
                pack("pack_pro", "Pro", 1_000, 3_500, true),
                pack("pack_business", "Business", 5_000, 12_500, false),
                pack("pack_enterprise", "Enterprise", 25_000, 50_000, false),
            ],
        }
    }
}

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
    /// (the daemon fills `executable` from `farm.engine` before launching; see [`Config::browser`]).
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

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct FarmConfig {
    /// The browser build: `headless-shell` (default) or `chromium` (full new-headless Chromium,
    /// for pages that need it).
    pub engine: Engine,
    /// Number of Chromium processes.
    pub browsers: usize,
    /// Concurrent captures per browser (each in its own browser context).
    pub tabs_per_browser: usize,
    /// Jobs that may wait for a browser; beyond this, requests get 429 `queue_full`.
    pub queue_capacity: usize,
    /// Restart a browser after this many captures (0 = never).
    pub recycle_after: u64,
    /// Restart a browser whose process tree uses more memory (PSS) than this, in MiB (0 = no limit).
    pub max_browser_memory_mb: u64,
    /// Consecutive deadline overruns after which a browser is recycled.
    pub max_overruns: u32,
    /// First restart delay after a failure, in milliseconds; doubles per consecutive failure.
    pub restart_backoff_min_ms: u64,
    /// Longest restart delay, in milliseconds.
    pub restart_backoff_max_ms: u64,
    /// Consecutive failed starts after which a browser is reported unhealthy.
    pub unhealthy_after: u32,
    /// Interval of the liveness probe and memory check, in milliseconds.
    pub probe_interval_ms: u64,
    /// A probe slower than this marks the browser unresponsive, in milliseconds.
    pub probe_timeout_ms: u64,
}

impl Default for FarmConfig {
    fn default() -> Self {
        Self {
            engine: Engine::default(),
            browsers: 2,
            tabs_per_browser: 2,
            queue_capacity: 64,
            recycle_after: 1000,
            max_browser_memory_mb: 2048,
            max_overruns: 3,
            restart_backoff_min_ms: 250,
            restart_backoff_max_ms: 30_000,
            unhealthy_after: 5,
            probe_interval_ms: 5_000,
            probe_timeout_ms: 3_000,
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum PngEncoder {
    /// Chromium's own PNG encoder, inside the browser.
    Chromium,
    /// Chromium's fast encoding, recompressed in Rust on the bounded encoding pool.
    Rust,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct CaptureConfig {
    /// Capture timeout when the request gives none, in milliseconds.
    pub default_timeout_ms: u64,
    /// Largest `timeout` a request may ask for, in milliseconds.
    pub max_timeout_ms: u64,
    /// Largest `delay` a request may ask for, in milliseconds.
    pub max_delay_ms: u64,
    /// Viewport width when the request gives none, in CSS pixels.
    pub default_width: u32,
    /// Viewport height when the request gives none, in CSS pixels.
    pub default_height: u32,
    /// Largest viewport width, in CSS pixels.
    pub max_width: u32,
    /// Largest viewport height, in CSS pixels.
    pub max_height: u32,
    /// Full-page captures are cut at this height, in CSS pixels.
    pub max_full_page_height: u32,
    /// Tallest strip Chromium paints in one go, in device pixels; taller captures are tiled.
    pub max_tile_height: u32,
    /// How long `selector` waits for its element to appear, in milliseconds.
    pub element_wait_ms: u64,
    /// Who compresses PNGs: `rust` (default: Chromium's fast encoding, recompressed in Rust on a
    /// bounded pool, no larger than Chromium's own output at a fraction of its CPU) or
    /// `chromium` (Chromium's default encoder, on the browser's critical path).
    pub png_encoder: PngEncoder,
    /// Largest `css` or `js` option, in bytes.
    pub max_script_bytes: usize,
    /// Largest image a capture may return, in bytes; a larger one fails with
    /// `output_too_large` (and costs nothing).
    pub max_output_bytes: usize,
}

impl Default for CaptureConfig {
    fn default() -> Self {
        Self {
            default_timeout_ms: 30_000,
            max_timeout_ms: 60_000,
            max_delay_ms: 10_000,
            default_width: 1280,
            default_height: 800,
            max_width: 3840,
            max_height: 4320,
            max_full_page_height: 32_768,
            max_tile_height: 8_192,
            element_wait_ms: 5_000,
            png_encoder: PngEncoder::Rust,
            max_script_bytes: 64 * 1024,
            max_output_bytes: 64 * 1024 * 1024,
        }
    }
}

impl ServerConfig {
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_millis(self.shutdown_grace_ms)
    }
}

/// Every problem found in a configuration, reported together.
#[derive(Debug, thiserror::Error)]
#[error(
    "invalid configuration ({} {}):\n  - {}",
    .problems.len(),
    if .problems.len() == 1 { "problem" } else { "problems" },
    .problems.join("\n  - ")
)]
pub struct ConfigError {
    pub problems: Vec<String>,
}

impl Config {
    /// The browser launch settings with `executable` resolved from `farm.engine` when unset.
    pub fn browser(&self) -> ChromiumConfig {
        let mut chromium = self.chromium.clone();
        if chromium.executable.as_os_str().is_empty() {
            chromium.executable = self.farm.engine.binary().to_path_buf();
        }
        chromium
    }

    /// Loads defaults, then `file` (when given; it must exist), then `SHOTFARM_…` variables.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = file {
            if !path.exists() {
                return Err(ConfigError {
                    problems: vec![format!("config file {} does not exist", path.display())],
                });
            }
            figment = figment.merge(Toml::file(path));
        }
        figment = figment.merge(Env::prefixed("SHOTFARM_").split("__"));
        let mut config = Self::from_figment(&figment)?;
        config.source = file.map(Path::to_path_buf);
        Ok(config)
    }

    fn from_figment(figment: &Figment) -> Result<Config, ConfigError> {
        // Syntax errors (a file that is not TOML) stop here: there is nothing to check further.
        let mut tree: Value = figment.extract().map_err(|e| ConfigError {
            problems: e.into_iter().map(|e| e.to_string()).collect(),
        })?;
        let mut problems = Vec::new();
        // Paths whose value was wrong and was dropped (its default stands in), so later checks
        // do not report the stand-in again.
        let mut dropped: Vec<String> = Vec::new();
        let mut unknown = Vec::new();
        // One type error hides the rest of a serde pass: report it, drop the value, try again,
        // until the whole tree deserializes. Each pass drops one key, so this ends.
        let config = loop {
            unknown.clear();
            let mut record = |path: serde_ignored::Path<'_>| unknown.push(path.to_string());
            let attempt: Result<Config, serde_path_to_error::Error<figment::Error>> =
                serde_path_to_error::deserialize(serde_ignored::Deserializer::new(
                    &tree,
                    &mut record,
                ));
            match attempt {
                Ok(config) => break config,
                Err(e) => {
                    let path = key_path(e.path());
                    let dotted = path.join(".");
                    problems.push(format!(
                        "{}: {}",
                        label(figment, &dotted),
                        describe_error(&dotted, e.inner(), find(&tree, &path))
                    ));
                    if path.is_empty() || !remove(&mut tree, &path) || dropped.len() > 1000 {
                        return Err(ConfigError { problems });
                    }
                    dropped.push(dotted);
                }
            }
        };
        let known = serde_json::to_value(Config::default()).unwrap_or_default();
        for key in unknown {
            problems.push(unknown_key(figment, &known, &key));
        }
        let mut checks = Vec::new();
        config.validate_into(&mut checks);
        for problem in checks {
            // A value already reported (and replaced by its default) is not judged again.
            let subject = problem.split([':', ' ']).next().unwrap_or_default();
            if dropped.iter().any(|d| problem.contains(d.as_str())) {
                continue;
            }
            problems.push(match problem.strip_prefix(subject) {
                Some(rest) if subject.contains('.') => format!("{}{rest}", label(figment, subject)),
                _ => problem,
            });
        }
        if problems.is_empty() {
            Ok(config)
        } else {
            problems.sort();
            Err(ConfigError { problems })
        }
    }

    fn validate_into(&self, problems: &mut Vec<String>) {
        let values = serde_json::to_value(self).unwrap_or_default();
        for &(path, lo, hi) in BOUNDS {
            let found = path
                .split('.')
                .try_fold(&values, |v, key| v.get(key))
                .and_then(|v| v.as_i64().map(i128::from).or(v.as_u64().map(i128::from)));
            if let Some(n) = found {
                if n < lo || hi.is_some_and(|hi| n > hi) {
                    problems.push(format!(
                        "{path}: must be {}, got {n}",
                        whole_number(Some(lo), hi, Some(n))
                    ));
                }
            }
        }
        for pack in self.payments.products.keys() {
            if !self.credits.packs.iter().any(|p| &p.id == pack) {
                problems.push(format!(
                    "payments.products.{pack}: no such pack in credits.packs"
                ));
            }
        }
        if self.payments.webhook_secret_format == WebhookSecretFormat::Standard
            && !self.payments.webhook_secret.is_empty()
            // The same parse `payments::webhook::Verifier` makes of a Standard secret.
            && standardwebhooks::Webhook::new(&self.payments.webhook_secret).is_err()
        {
            problems.push("payments.webhook_secret: is not `whsec_` + base64".to_string());
        }
        let mut check = |ok: bool, msg: &str| {
            if !ok {
                problems.push(msg.to_string());
            }
        };
        let sv = &self.server;
        check(
            sv.header_timeout_ms >= 100 && sv.idle_timeout_ms >= 100,
            "server.header_timeout_ms and server.idle_timeout_ms must be at least 100",
        );
        check(
            sv.max_connections >= 1
                && (1..=sv.max_connections).contains(&sv.max_connections_per_client),
            "server.max_connections must be at least 1, and server.max_connections_per_client between 1 and server.max_connections",
        );
        check(
            (1024..=60 * 1024).contains(&sv.max_request_head_bytes),
            "server.max_request_head_bytes must be between 1024 and 61440 (hyper answers longer heads itself, without the JSON error)",
        );
        let f = &self.farm;
        let c = &self.capture;
        check(
            f.restart_backoff_min_ms >= 1 && f.restart_backoff_min_ms <= f.restart_backoff_max_ms,
            "farm.restart_backoff_min_ms: must be at least 1 and at most farm.restart_backoff_max_ms",
        );
        check(
            f.probe_timeout_ms >= 50 && f.probe_timeout_ms < f.probe_interval_ms.max(51),
            "farm.probe_timeout_ms: must be at least 50 and below farm.probe_interval_ms",
        );
        check(
            c.default_timeout_ms >= 100 && c.default_timeout_ms <= c.max_timeout_ms,
            "capture.default_timeout_ms: must be at least 100 and at most capture.max_timeout_ms",
        );
        check(
            c.default_width >= 1 && c.default_width <= c.max_width,
            "capture.default_width: must be between 1 and capture.max_width",
        );
        check(
            c.default_height >= 1 && c.default_height <= c.max_height,
            "capture.default_height: must be between 1 and capture.max_height",
        );
        check(
            self.server.listen != self.server.metrics_listen || self.server.listen.port() == 0,
            "server.listen and server.metrics_listen must differ",
        );
        check(
            tracing_subscriber::EnvFilter::try_new(&self.log.level).is_ok(),
            "log.level: is not a valid filter directive (e.g. \"info\" or \"info,shotfarm=debug\")",
        );
        check(
            self.redis.url.starts_with("redis://")
                || self.redis.url.starts_with("rediss://")
                || self.redis.url.starts_with("unix://"),
            "redis.url: must start with redis://, rediss:// or unix://",
        );
        let browser = self.browser();
        check(
            browser.executable.is_file(),
            &format!(
                "chromium.executable: {} does not exist (farm.engine = \"{}\": install Debian's {} package, e.g. with scripts/install-deps.sh, or set chromium.executable)",
                browser.executable.display(),
                self.farm.engine.name(),
                self.farm.engine.package(),
            ),
        );
        check(
            !(self.chromium.sandbox == SandboxMode::On && running_as_root()),
            "chromium.sandbox: \"on\" cannot work while the daemon runs as root (Chromium refuses it): use \"auto\" or run as another user",
        );
        let l = &self.ledger;
        check(
            l.hold_grace_ms >= self.redis.response_timeout_ms,
            "ledger.hold_grace_ms: must be at least redis.response_timeout_ms (a commit must land before its hold may expire)",
        );
        let a = &self.auth;
        check(
            a.public_url.starts_with("http://") || a.public_url.starts_with("https://"),
            "auth.public_url: must start with http:// or https://",
        );
        let packs = &self.credits.packs;
        check(
            !packs.is_empty(),
            "credits.packs: must list at least one pack",
        );
        for raw in &self.egress.allow {
            if let Err(e) = parse_allow_entry(raw) {
                problems.push(format!("egress.allow: {e}"));
                break;
            }
        }
        for (i, p) in packs.iter().enumerate() {
            if p.id.is_empty() || p.name.is_empty() || p.credits < 1 || p.price_cents < 0 {
                problems.push(format!(
                    "credits.packs[{i}]: needs an id, a name, credits >= 1 and price_cents >= 0"
                ));
            }
            if packs[..i].iter().any(|q| q.id == p.id) {
                problems.push(format!("credits.packs[{i}]: duplicate id `{}`", p.id));
            }
        }
    }

    /// Validates a configuration changed after loading (e.g. by command-line flags).
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        self.validate_into(&mut problems);
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError { problems })
        }
    }

    /// Parses a TOML text over the defaults (used by tests and `check-config`).
    pub fn from_toml_str(text: &str) -> Result<Config, ConfigError> {
        let figment =
            Figment::from(Serialized::defaults(Config::default())).merge(Toml::string(text));
        Self::from_figment(&figment)
    }
}

/// Whole-number keys and their bounds (least, greatest): checked after loading, and named in
/// the message when a value is not a whole number at all.
const BOUNDS: &[(&str, i128, Option<i128>)] = &[
    ("farm.browsers", 1, Some(64)),
    ("farm.tabs_per_browser", 1, Some(32)),
    ("farm.queue_capacity", 1, None),
    ("farm.max_overruns", 1, None),
    ("farm.unhealthy_after", 1, None),
    ("farm.probe_interval_ms", 100, None),
    ("capture.max_timeout_ms", 100, Some(600_000)),
    ("capture.max_width", 1, Some(16_384)),
    ("capture.max_height", 1, Some(16_384)),
    ("capture.max_full_page_height", 1, Some(200_000)),
    ("capture.max_tile_height", 256, Some(16_384)),
    ("capture.max_output_bytes", 1024, None),
    ("capture.max_script_bytes", 1, None),
    ("redis.connect_timeout_ms", 10, None),
    ("redis.response_timeout_ms", 10, None),
    ("ledger.sweep_interval_ms", 10, Some(60_000)),
    ("ledger.max_in_flight_per_account", 0, None),
    ("ledger.idempotency_ttl_secs", 1, None),
    ("auth.session_ttl_secs", 60, None),
    ("auth.signup_bonus", 0, Some(1_000_000)),
    ("payments.timeout_ms", 1, None),
    ("notifications.attempts", 1, None),
    ("notifications.timeout_ms", 1, None),
    ("notifications.max_pending", 1, None),
];

/// "a whole number of at least 1", "… between 1 and 32": the side `got` is on, else both.
fn whole_number(lo: Option<i128>, hi: Option<i128>, got: Option<i128>) -> String {
    match (lo, hi, got) {
        (Some(lo), _, Some(n)) if n < lo => format!("a whole number of at least {lo}"),
        (_, Some(hi), Some(n)) if n > hi => format!("a whole number of at most {hi}"),
        (Some(lo), Some(hi), _) => format!("a whole number between {lo} and {hi}"),
        (Some(lo), None, _) => format!("a whole number of at least {lo}"),
        (None, Some(hi), _) => format!("a whole number of at most {hi}"),
        (None, None, _) => "a whole number".to_string(),
    }
}

/// The key path of a deserialization error, cut before the first list index: a bad entry of a
/// list drops (and reports) the whole list.
fn key_path(path: &serde_path_to_error::Path) -> Vec<String> {
    let mut keys = Vec::new();
    for segment in path.iter() {
        match segment {
            serde_path_to_error::Segment::Map { key } => keys.push(key.clone()),
            _ => break,
        }
    }
    keys
}

fn find<'a>(tree: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(tree, |v, key| match v {
        Value::Dict(_, dict) => dict.get(key),
        _ => None,
    })
}

/// Removes the key at `path`; false when there is none.
fn remove(tree: &mut Value, path: &[String]) -> bool {
    let Some((last, parents)) = path.split_last() else {
        return false;
    };
    let mut node = tree;
    for key in parents {
        node = match node {
            Value::Dict(_, dict) => match dict.get_mut(key) {
                Some(child) => child,
                None => return false,
            },
            _ => return false,
        };
    }
    match node {
        Value::Dict(_, dict) => dict.remove(last).is_some(),
        _ => false,
    }
}

/// A value as the operator wrote it: `"fast"`, `-1`, `true`, `a list`.
fn shown(value: &Value) -> String {
    match value {
        Value::String(_, s) => format!("{s:?}"),
        Value::Char(_, c) => format!("{:?}", c.to_string()),
        Value::Bool(_, b) => b.to_string(),
        Value::Num(_, n) => n
            .to_i128()
            .map(|i| i.to_string())
            .or_else(|| n.to_f64().map(|f| f.to_string()))
            .unwrap_or_else(|| "a number".to_string()),
        Value::Empty(..) => "nothing".to_string(),
        Value::Dict(..) => "a table".to_string(),
        Value::Array(..) => "a list".to_string(),
    }
}

/// The environment variable that set `path`, when one did.
fn env_var(figment: &Figment, path: &str) -> Option<String> {
    let metadata = figment.find_metadata(path)?;
    metadata
        .name
        .contains("environment")
        .then(|| format!("SHOTFARM_{}", path.to_uppercase().replace('.', "__")))
}

/// `farm.browsers`, or `farm.browsers (set by SHOTFARM_FARM__BROWSERS)`.
fn label(figment: &Figment, path: &str) -> String {
    match env_var(figment, path) {
        Some(var) => format!("{path} (set by {var})"),
        None => path.to_string(),
    }
}

/// The closest of `candidates` to `name`, if it is close enough to be a typo.
fn closest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::damerau_levenshtein(name, c), c))
        .filter(|&(d, c)| d <= 2.max(c.len() / 4))
        .min_by_key(|&(d, _)| d)
        .map(|(_, c)| c)
}

/// What an operator reads for a key the configuration does not have.
fn unknown_key(figment: &Figment, known: &serde_json::Value, key: &str) -> String {
    let (parent, name) = key.rsplit_once('.').unwrap_or(("", key));
    let siblings = if parent.is_empty() {
        Some(known)
    } else {
        parent.split('.').try_fold(known, |v, k| v.get(k))
    };
    let names: Vec<&str> = siblings
        .and_then(|v| v.as_object())
        .map(|o| o.keys().map(String::as_str).collect())
        .unwrap_or_default();
    let what = if parent.is_empty() {
        "unknown section"
    } else {
        "unknown key"
    };
    let suggestion = match closest(name, names) {
        Some(good) => {
            let path = if parent.is_empty() {
                good.to_string()
            } else {
                format!("{parent}.{good}")
            };
            match env_var(figment, key) {
                Some(_) => format!(
                    " (did you mean `SHOTFARM_{}`?)",
                    path.to_uppercase().replace('.', "__")
                ),
                None => format!(" (did you mean `{good}`?)"),
            }
        }
        // A setting written outside its section: name the section it belongs to.
        None if parent.is_empty() => known
            .as_object()
            .and_then(|sections| {
                sections
                    .iter()
                    .find(|(_, keys)| keys.get(name).is_some())
                    .map(|(section, _)| format!(" (`{name}` belongs in [{section}])"))
            })
            .unwrap_or_default(),
        None => String::new(),
    };
    format!("{}: {what}{suggestion}", label(figment, key))
}

/// A deserialization error in an operator's words.
fn describe_error(path: &str, error: &figment::Error, got: Option<&Value>) -> String {
    use figment::error::{Actual, Kind};
    let got_text = |actual: &Actual| match got {
        Some(v) => shown(v),
        None => match actual {
            Actual::Str(s) => format!("{s:?}"),
            Actual::Signed(n) => n.to_string(),
            Actual::Unsigned(n) => n.to_string(),
            Actual::Float(n) => n.to_string(),
            Actual::Bool(b) => b.to_string(),
            other => other.to_string(),
        },
    };
    match &error.kind {
        Kind::UnknownVariant(v, expected) => {
            let choices: Vec<String> = expected.iter().map(|e| format!("{e:?}")).collect();
            format!("must be one of {}, got {v:?}", choices.join(", "))
        }
        Kind::InvalidType(actual, expected) | Kind::InvalidValue(actual, expected) => {
            let number = match actual {
                Actual::Signed(n) => Some(*n),
                Actual::Unsigned(n) => i128::try_from(*n).ok(),
                _ => got.and_then(|v| match v {
                    Value::Num(_, n) => n.to_i128(),
                    _ => None,
                }),
            };
            let wanted = match expected.as_str() {
                "u8" | "u16" | "u32" | "u64" | "u128" | "usize" | "i8" | "i16" | "i32" | "i64"
                | "i128" | "isize" => {
                    let (type_lo, type_hi) = match expected.as_str() {
                        "u8" => (Some(0), Some(i128::from(u8::MAX))),
                        "u16" => (Some(0), Some(i128::from(u16::MAX))),
                        "u32" => (Some(0), Some(i128::from(u32::MAX))),
                        e if e.starts_with('u') => (Some(0), None),
                        _ => (None, None),
                    };
                    let (lo, hi) = match BOUNDS.iter().find(|(p, _, _)| *p == path) {
                        Some(&(_, lo, hi)) => (Some(lo), hi.or(type_hi)),
                        None => (type_lo, type_hi),
                    };
                    whole_number(lo, hi, number)
                }
                "f32" | "f64" => "a number".to_string(),
                "a boolean" => "true or false".to_string(),
                "a string" => "text in quotes".to_string(),
                e if e.contains("sequence") => "a list, like [\"a\", \"b\"]".to_string(),
                e if e.contains("map") || e.starts_with("struct") => "a table of keys".to_string(),
                e => e.to_string(),
            };
            format!("must be {wanted}, got {}", got_text(actual))
        }
        Kind::Message(m) if m.contains("socket address") => format!(
            "`{}` is not an address:port (like 127.0.0.1:8080; the port must be at most 65535)",
            got.map(|v| match v {
                Value::String(_, s) => s.clone(),
                other => shown(other),
            })
            .unwrap_or_default()
        ),
        Kind::UnknownField(name, expected) => {
            let hint = closest(name, expected.iter().copied())
                .map(|good| format!(" (did you mean `{good}`?)"))
                .unwrap_or_default();
            format!("unknown key `{name}`{hint}")
        }
        Kind::MissingField(name) => format!("needs `{name}`"),
        other => other.to_string(),
    }
}

/// One `egress.allow` entry: a CIDR range, or a single IP address (its /32 or /128).
pub fn parse_allow_entry(raw: &str) -> Result<ipnet::IpNet, String> {
    let raw = raw.trim();
    raw.parse::<ipnet::IpNet>()
        .or_else(|_| raw.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| format!("`{raw}` is not a CIDR range or an IP address"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        let config = Config::from_toml_str("").expect("defaults must validate");
        assert_eq!(config.farm.browsers, 2);
    }

    #[test]
    fn shipped_config_file_is_valid_and_matches_defaults() {
        let text = include_str!("../config/shotfarm.toml");
        let config = Config::from_toml_str(text).expect("config/shotfarm.toml must validate");
        let defaults = Config::default();
        assert_eq!(
            serde_json::to_value(&config).ok(),
            serde_json::to_value(&defaults).ok(),
            "config/shotfarm.toml documents the defaults; keep them equal"
        );
    }

    #[test]
    fn all_problems_are_reported_at_once() {
        let text = r#"
            [farm]
            browsers = 0
            tabz_per_browser = 3
            [capture]
            max_tile_height = 10
            [nope]
            x = 1
        "#;
        let err = Config::from_toml_str(text).expect_err("must fail");
        let all = err.problems.join("\n");
        assert!(
            all.contains("farm.browsers: must be a whole number of at least 1, got 0"),
            "{all}"
        );
        assert!(
            all.contains("farm.tabz_per_browser: unknown key (did you mean `tabs_per_browser`?)"),
            "{all}"
        );
        assert!(
            all.contains("capture.max_tile_height: must be a whole number of at least 256, got 10"),
            "{all}"
        );
        assert!(all.contains("nope: unknown section"), "{all}");
        assert_eq!(err.problems.len(), 4, "{all}");
    }

    /// The file a new operator wrote: four mistakes, four problems, in words, none hidden by
    /// another, no doubled quoting.
    #[test]
    fn four_mistakes_are_four_problems_in_words() {
        let text = r#"
            [farm]
            browsrs = 2
            tabs_per_browser = -1
            [server]
            listen = "127.0.0.1:80800"
            [capture]
            png_encoder = "fast"
        "#;
        let err = Config::from_toml_str(text).expect_err("must fail");
        let all = err.problems.join("\n");
        for want in [
            "farm.browsrs: unknown key (did you mean `browsers`?)",
            "farm.tabs_per_browser: must be a whole number of at least 1, got -1",
            "server.listen: `127.0.0.1:80800` is not an address:port",
            "capture.png_encoder: must be one of \"chromium\", \"rust\", got \"fast\"",
        ] {
            assert!(all.contains(want), "missing {want:?} in:\n{all}");
        }
        assert_eq!(err.problems.len(), 4, "{all}");
        for noise in ["``", "expected usize", "invalid value", "unknown variant"] {
            assert!(!all.contains(noise), "{noise:?} in:\n{all}");
        }
    }

    #[test]
    fn type_errors_name_the_range_and_what_was_written() {
        let text = r#"
            [farm]
            browsers = "many"
            queue_capacity = 1.5
            [auth]
            secure_cookies = "yes"
            [egress]
            allow = "10.0.0.0/8"
            browsers = 2
        "#;
        let err = Config::from_toml_str(text).expect_err("must fail");
        let all = err.problems.join("\n");
        for want in [
            "farm.browsers: must be a whole number between 1 and 64, got \"many\"",
            "farm.queue_capacity: must be a whole number of at least 1, got 1.5",
            "auth.secure_cookies: must be true or false, got \"yes\"",
            "egress.allow: must be a list",
            "egress.browsers: unknown key",
        ] {
            assert!(all.contains(want), "missing {want:?} in:\n{all}");
        }
        assert_eq!(err.problems.len(), 5, "{all}");
        // A setting outside any section is pointed at its section.
        let err = Config::from_toml_str("browsers = 2").expect_err("must fail");
        assert_eq!(
            err.problems,
            vec!["browsers: unknown section (`browsers` belongs in [farm])".to_string()]
        );
    }

    #[test]
    fn wrong_types_are_reported() {
        let err = Config::from_toml_str("[farm]\nbrowsers = \"many\"").expect_err("must fail");
        assert!(
            err.problems.join("\n").contains("browsers"),
            "{:?}",
            err.problems
        );
    }
}
