//! Typed configuration: embedded defaults, an optional TOML file, and `SHOTFARM_…` environment
//! overrides (`SHOTFARM_FARM__BROWSERS=4` sets `farm.browsers`). Unknown keys and bad values are
//! collected and reported all at once, so an operator fixes a config in one pass.

mod auth;
mod cache;
mod capture;
mod chromium;
mod credits;
mod egress;
mod farm;
mod filters;
mod jobs;
mod ledger;
mod limits;
mod notifications;
mod payments;
mod report;
mod server;
mod storage;
mod validate;

use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Serialized, Toml};
use figment::value::Value;
use figment::Figment;
use serde::{Deserialize, Serialize};

pub use auth::AuthConfig;
pub use cache::{CacheBackend, CacheConfig};
pub use capture::{CaptureConfig, PngEncoder};
pub use chromium::{running_as_root, ChromiumConfig, Engine, SandboxMode};
pub use credits::{CreditsConfig, PackConfig};
pub use egress::{parse_allow_entry, EgressConfig};
pub use farm::FarmConfig;
pub use filters::FiltersConfig;
pub use jobs::JobsConfig;
pub use ledger::{LedgerConfig, RedisConfig};
pub use limits::LimitsConfig;
pub use notifications::NotificationsConfig;
pub use payments::{PaymentsConfig, PolarServer, WebhookSecretFormat};
pub use report::ConfigError;
pub use server::{LogConfig, LogFormat, ServerConfig};
pub use storage::{is_object_name, StorageConfig, MAX_PRESIGN_TTL_SECS, OBJECT_NAME_PATTERN};

use report::{describe_error, find, key_path, label, remove, unknown_key};

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
    /// The capture cache (`cache=true`).
    pub cache: CacheConfig,
    /// Holds, the sweeper and idempotency of the credit ledger.
    pub ledger: LedgerConfig,
    /// Accounts, sessions and sign-up.
    pub auth: AuthConfig,
    /// Credit packs on sale.
    pub credits: CreditsConfig,
    /// Which addresses captures may reach beyond the public internet.
    pub egress: EgressConfig,
    /// The filter lists behind `block_ads`, `block_trackers` and `block_cookie_banners`.
    pub filters: FiltersConfig,
    /// Per-caller rate limits.
    pub limits: LimitsConfig,
    /// Buying credits through Polar.
    pub payments: PaymentsConfig,
    /// Signed low-balance notifications to the URL an account configured.
    pub notifications: NotificationsConfig,
    /// The S3-compatible bucket of `store=true` captures; off without a bucket.
    pub storage: StorageConfig,
    /// Async captures (`async=true`): workers on the Redis jobs stream.
    pub jobs: JobsConfig,
    /// The file this configuration was read from (what a reload reads again).
    #[serde(skip)]
    pub source: Option<PathBuf>,
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
        let text = include_str!("../../config/shotfarm.toml");
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

    #[test]
    fn sentinel_and_replica_acks_settings_are_checked_together() {
        let text = r#"
            [redis]
            sentinels = ["redis://127.0.0.1:26379"]
            cluster_nodes = ["redis://127.0.0.1:7000"]
            response_timeout_ms = 500
            [ledger]
            replica_acks = 1
            replica_ack_timeout_ms = 500
        "#;
        let err = Config::from_toml_str(text).expect_err("must fail");
        let all = err.problems.join("\n");
        for expected in [
            "redis.sentinels: Sentinel and Redis Cluster (redis.cluster_nodes) exclude each other",
            "redis.sentinel_master: the name the Sentinels monitor the primary under is required",
            "ledger.replica_acks: not supported with Redis Cluster",
            "ledger.replica_ack_timeout_ms: must be shorter than redis.response_timeout_ms",
        ] {
            assert!(all.contains(expected), "{expected} not in {all}");
        }
        let fine = r#"
            [redis]
            sentinels = ["redis://127.0.0.1:26379", "redis://127.0.0.1:26380"]
            sentinel_master = "shotfarm"
            [ledger]
            replica_acks = 1
        "#;
        let config = Config::from_toml_str(fine).expect("Sentinel with replica acks is valid");
        assert_eq!(config.redis.sentinels.len(), 2);
    }

    #[test]
    fn filter_lists_must_be_readable_and_pinned_names_host_names() {
        let text = r#"
            [egress.hosts]
            "intranet.example" = "10.20.0.7"
            "*.ads.example" = "127.0.0.1"
            "bücher.example" = "127.0.0.1"
            [filters]
            ad_lists = ["/nonexistent/easylist.txt"]
        "#;
        let err = Config::from_toml_str(text).expect_err("must fail");
        let all = err.problems.join("\n");
        assert!(
            all.contains("egress.hosts: `*.ads.example` is not a host name"),
            "{all}"
        );
        assert!(
            all.contains("egress.hosts: `bücher.example` is not a host name"),
            "{all}"
        );
        assert!(!all.contains("intranet.example"), "{all}");
        assert!(
            all.contains("filters.ad_lists: cannot read /nonexistent/easylist.txt"),
            "{all}"
        );
        assert_eq!(err.problems.len(), 3, "{all}");
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
