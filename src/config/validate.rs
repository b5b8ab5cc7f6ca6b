//! The checks a loaded configuration must pass: the whole-number bounds (`BOUNDS`) and the rules
//! that relate settings to each other.

use super::{parse_allow_entry, running_as_root, Config, SandboxMode, WebhookSecretFormat};

/// Whole-number keys and their bounds (least, greatest): checked after loading, and named in
/// the message when a value is not a whole number at all.
pub(super) const BOUNDS: &[(&str, i128, Option<i128>)] = &[
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
    ("capture.max_pdf_pages", 1, Some(10_000)),
    ("capture.max_html_bytes", 1, None),
    ("cache.max_bytes", 65_536, None),
    ("cache.max_entry_bytes", 1_024, None),
    ("cache.default_ttl_secs", 1, None),
    ("cache.max_ttl_secs", 1, Some(31_536_000)),
    ("redis.connect_timeout_ms", 10, None),
    ("redis.response_timeout_ms", 10, None),
    ("ledger.sweep_interval_ms", 10, Some(60_000)),
    ("ledger.max_in_flight_per_account", 0, None),
    ("ledger.idempotency_ttl_secs", 1, None),
    ("ledger.replica_acks", 0, Some(16)),
    ("ledger.replica_ack_timeout_ms", 1, Some(60_000)),
    ("auth.session_ttl_secs", 60, None),
    ("auth.signup_bonus", 0, Some(1_000_000)),
    ("payments.timeout_ms", 1, None),
    ("notifications.attempts", 1, None),
    ("notifications.timeout_ms", 1, None),
    ("notifications.max_pending", 1, None),
    ("notifications.lease_ms", 100, None),
    ("notifications.poll_ms", 10, Some(60_000)),
    ("jobs.workers", 0, Some(256)),
    ("jobs.claim_idle_ms", 300, None),
    ("jobs.result_ttl_secs", 60, None),
    ("jobs.max_queued_per_account", 1, None),
    ("jobs.max_queued", 1, None),
    ("jobs.max_image_bytes", 1_024, None),
];

/// "a whole number of at least 1", "… between 1 and 32": the side `got` is on, else both.
pub(super) fn whole_number(lo: Option<i128>, hi: Option<i128>, got: Option<i128>) -> String {
    match (lo, hi, got) {
        (Some(lo), _, Some(n)) if n < lo => format!("a whole number of at least {lo}"),
        (_, Some(hi), Some(n)) if n > hi => format!("a whole number of at most {hi}"),
        (Some(lo), Some(hi), _) => format!("a whole number between {lo} and {hi}"),
        (Some(lo), None, _) => format!("a whole number of at least {lo}"),
        (None, Some(hi), _) => format!("a whole number of at most {hi}"),
        (None, None, _) => "a whole number".to_string(),
    }
}

impl Config {
    /// Every problem of this configuration, in words, appended to `problems`.
    pub(super) fn validate_into(&self, problems: &mut Vec<String>) {
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
        let r = &self.redis;
        check(
            r.sentinels.is_empty() || r.cluster_nodes.is_empty(),
            "redis.sentinels: Sentinel and Redis Cluster (redis.cluster_nodes) exclude each other; set one",
        );
        check(
            r.sentinels.is_empty() || !r.sentinel_master.trim().is_empty(),
            "redis.sentinel_master: the name the Sentinels monitor the primary under is required with redis.sentinels",
        );
        let l = &self.ledger;
        check(
            l.hold_grace_ms >= self.redis.response_timeout_ms,
            "ledger.hold_grace_ms: must be at least redis.response_timeout_ms (a commit must land before its hold may expire)",
        );
        check(
            l.replica_acks == 0 || self.redis.cluster_nodes.is_empty(),
            "ledger.replica_acks: not supported with Redis Cluster (redis.cluster_nodes); use 0",
        );
        check(
            l.replica_acks == 0 || l.replica_ack_timeout_ms < self.redis.response_timeout_ms,
            "ledger.replica_ack_timeout_ms: must be shorter than redis.response_timeout_ms (the WAIT must answer before the client gives up on it)",
        );
        let n = &self.notifications;
        check(
            n.lease_ms >= n.timeout_ms.saturating_add(2_000),
            "notifications.lease_ms: must be at least notifications.timeout_ms + 2000 (an attempt in progress must not be taken over)",
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
        let c = &self.cache;
        check(
            c.default_ttl_secs <= c.max_ttl_secs,
            "cache.default_ttl_secs: must not exceed cache.max_ttl_secs",
        );
        check(
            c.max_entry_bytes <= c.max_bytes,
            "cache.max_entry_bytes: must not exceed cache.max_bytes",
        );
        check(
            c.backend != super::CacheBackend::Bucket || self.storage.enabled(),
            "cache.backend: \"bucket\" needs a bucket in [storage]",
        );
        for (setting, path) in self.filters.lists() {
            if let Err(e) = std::fs::File::open(path) {
                problems.push(format!(
                    "{setting}: cannot read {}: {e} (EasyList and EasyPrivacy come with Debian's \
                     webext-ublock-origin-chromium package; or list other files, or none)",
                    path.display()
                ));
            }
        }
        for name in self.egress.hosts.keys() {
            let labels_ok = name.trim_end_matches('.').split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
            if name.len() > 253 || !labels_ok {
                problems.push(format!(
                    "egress.hosts: `{name}` is not a host name (letters, digits and hyphens in \
                     dot-separated labels, no wildcards; an internationalized name in its xn-- form)"
                ));
            }
        }
        for raw in &self.egress.allow {
            if let Err(e) = parse_allow_entry(raw) {
                problems.push(format!("egress.allow: {e}"));
                break;
            }
        }
        problems.extend(self.storage.problems());
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
}
