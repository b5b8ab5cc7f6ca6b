//! Typed configuration: embedded defaults, an optional TOML file, and `SHOTFARM_…` environment
//! overrides (`SHOTFARM_FARM__BROWSERS=4` sets `farm.browsers`). Unknown keys and bad values are
//! collected and reported all at once, so an operator fixes a config in one pass.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::providers::{Env, Format, Serialized, Toml};
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
    /// The Chromium executable.
    pub executable: PathBuf,
    /// Parent directory of the per-browser profiles; empty means the system temp directory.
    pub profile_dir: PathBuf,
    /// Extra command-line flags, written with their leading `--`.
    pub extra_args: Vec<String>,
    /// How long a launch may take before it counts as failed, in milliseconds.
    pub launch_timeout_ms: u64,
}

impl Default for ChromiumConfig {
    fn default() -> Self {
        Self {
            executable: PathBuf::from("/usr/bin/chromium"),
            profile_dir: PathBuf::new(),
            extra_args: Vec::new(),
            launch_timeout_ms: 20_000,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct FarmConfig {
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
    /// Chromium's own PNG encoder (smaller, slower).
    Chromium,
    /// Chromium's fast encoding, recompressed in Rust on the worker pool.
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
    /// Who compresses PNGs: `chromium` (default) or `rust` (Chromium's fast encoding recompressed
    /// in Rust: ~0.65x latency and ~2.5x throughput for ~8-24 % larger files, per the PNG bench).
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
            png_encoder: PngEncoder::Chromium,
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
#[error("invalid configuration:\n  - {}", .problems.join("\n  - "))]
pub struct ConfigError {
    pub problems: Vec<String>,
}

impl Config {
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
        let value: figment::value::Value = figment.extract().map_err(|e| ConfigError {
            problems: e.into_iter().map(|e| e.to_string()).collect(),
        })?;
        let mut problems = Vec::new();
        let mut unknown = Vec::new();
        let mut record = |path: serde_ignored::Path<'_>| unknown.push(path.to_string());
        let config: Result<Config, _> =
            serde_path_to_error::deserialize(serde_ignored::Deserializer::new(&value, &mut record));
        for key in unknown {
            problems.push(format!("unknown key `{key}`"));
        }
        match config {
            Ok(config) => {
                config.validate_into(&mut problems);
                if problems.is_empty() {
                    Ok(config)
                } else {
                    Err(ConfigError { problems })
                }
            }
            Err(e) => {
                problems.push(format!("`{}`: {}", e.path(), e.inner()));
                Err(ConfigError { problems })
            }
        }
    }

    fn validate_into(&self, problems: &mut Vec<String>) {
        for pack in self.payments.products.keys() {
            if !self.credits.packs.iter().any(|p| &p.id == pack) {
                problems.push(format!(
                    "payments.products.{pack}: no such pack in credits.packs"
                ));
            }
        }
        if self.payments.webhook_secret_format == WebhookSecretFormat::Standard
            && !self.payments.webhook_secret.is_empty()
            && crate::payments::webhook::Verifier::new(
                &self.payments.webhook_secret,
                WebhookSecretFormat::Standard,
            )
            .is_err()
        {
            problems.push("payments.webhook_secret is not `whsec_` + base64".to_string());
        }
        let n = &self.notifications;
        if n.attempts == 0 || n.timeout_ms == 0 || n.max_pending == 0 {
            problems.push(
                "notifications.attempts, timeout_ms and max_pending must be at least 1".to_string(),
            );
        }
        if self.payments.timeout_ms == 0 {
            problems.push("payments.timeout_ms must be at least 1".to_string());
        }
        let mut check = |ok: bool, msg: &str| {
            if !ok {
                problems.push(msg.to_string());
            }
        };
        let f = &self.farm;
        let c = &self.capture;
        check(
            (1..=64).contains(&f.browsers),
            "farm.browsers must be between 1 and 64",
        );
        check(
            (1..=32).contains(&f.tabs_per_browser),
            "farm.tabs_per_browser must be between 1 and 32",
        );
        check(
            f.queue_capacity >= 1,
            "farm.queue_capacity must be at least 1",
        );
        check(f.max_overruns >= 1, "farm.max_overruns must be at least 1");
        check(
            f.unhealthy_after >= 1,
            "farm.unhealthy_after must be at least 1",
        );
        check(
            f.restart_backoff_min_ms >= 1 && f.restart_backoff_min_ms <= f.restart_backoff_max_ms,
            "farm.restart_backoff_min_ms must be at least 1 and at most farm.restart_backoff_max_ms",
        );
        check(
            f.probe_interval_ms >= 100,
            "farm.probe_interval_ms must be at least 100",
        );
        check(
            f.probe_timeout_ms >= 50 && f.probe_timeout_ms < f.probe_interval_ms.max(51),
            "farm.probe_timeout_ms must be at least 50 and below farm.probe_interval_ms",
        );
        check(
            c.default_timeout_ms >= 100 && c.default_timeout_ms <= c.max_timeout_ms,
            "capture.default_timeout_ms must be at least 100 and at most capture.max_timeout_ms",
        );
        check(
            c.max_timeout_ms <= 600_000,
            "capture.max_timeout_ms must be at most 600000",
        );
        check(
            c.default_width >= 1 && c.default_width <= c.max_width,
            "capture.default_width must be between 1 and capture.max_width",
        );
        check(
            c.default_height >= 1 && c.default_height <= c.max_height,
            "capture.default_height must be between 1 and capture.max_height",
        );
        check(
            c.max_width <= 16_384 && c.max_height <= 16_384,
            "capture.max_width and capture.max_height must be at most 16384",
        );
        check(
            c.max_output_bytes >= 1024,
            "capture.max_output_bytes must be at least 1024",
        );
        check(
            c.max_full_page_height >= 1 && c.max_full_page_height <= 200_000,
            "capture.max_full_page_height must be between 1 and 200000",
        );
        check(
            (256..=16_384).contains(&c.max_tile_height),
            "capture.max_tile_height must be between 256 and 16384",
        );
        check(
            c.max_script_bytes >= 1,
            "capture.max_script_bytes must be at least 1",
        );
        check(
            self.server.listen != self.server.metrics_listen || self.server.listen.port() == 0,
            "server.listen and server.metrics_listen must differ",
        );
        check(
            tracing_subscriber::EnvFilter::try_new(&self.log.level).is_ok(),
            "log.level is not a valid filter directive",
        );
        check(
            self.redis.url.starts_with("redis://")
                || self.redis.url.starts_with("rediss://")
                || self.redis.url.starts_with("unix://"),
            "redis.url must start with redis://, rediss:// or unix://",
        );
        check(
            !self.chromium.executable.as_os_str().is_empty(),
            "chromium.executable must be set",
        );
        check(
            self.redis.connect_timeout_ms >= 10 && self.redis.response_timeout_ms >= 10,
            "redis.connect_timeout_ms and redis.response_timeout_ms must be at least 10",
        );
        let l = &self.ledger;
        check(
            l.hold_grace_ms >= self.redis.response_timeout_ms,
            "ledger.hold_grace_ms must be at least redis.response_timeout_ms (a commit must land before its hold may expire)",
        );
        check(
            (10..=60_000).contains(&l.sweep_interval_ms),
            "ledger.sweep_interval_ms must be between 10 and 60000",
        );
        check(
            l.max_in_flight_per_account >= 0,
            "ledger.max_in_flight_per_account must be 0 (no cap) or more",
        );
        check(
            l.idempotency_ttl_secs >= 1,
            "ledger.idempotency_ttl_secs must be at least 1",
        );
        let a = &self.auth;
        check(
            a.session_ttl_secs >= 60,
            "auth.session_ttl_secs must be at least 60",
        );
        check(
            (0..=1_000_000).contains(&a.signup_bonus),
            "auth.signup_bonus must be between 0 and 1000000",
        );
        check(
            a.public_url.starts_with("http://") || a.public_url.starts_with("https://"),
            "auth.public_url must start with http:// or https://",
        );
        let packs = &self.credits.packs;
        check(
            !packs.is_empty(),
            "credits.packs must list at least one pack",
        );
        if let Err(e) = crate::egress::EgressPolicy::new(&self.egress.allow) {
            problems.push(format!("egress.allow: {e}"));
        }
        for (i, p) in packs.iter().enumerate() {
            if p.id.is_empty() || p.name.is_empty() || p.credits < 1 || p.price_cents < 0 {
                problems.push(format!(
                    "credits.packs[{i}] needs an id, a name, credits >= 1 and price_cents >= 0"
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
        assert!(all.contains("farm.browsers"), "{all}");
        assert!(all.contains("farm.tabz_per_browser"), "{all}");
        assert!(all.contains("capture.max_tile_height"), "{all}");
        assert!(all.contains("`nope`"), "{all}");
        assert_eq!(err.problems.len(), 4, "{all}");
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
