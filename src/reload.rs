//! Reloading the configuration on SIGHUP (systemd's `ExecReload`). What can change in place
//! without a restart: the credit packs, the rate limits, the log level, the filter lists (read
//! again and rebuilt into new engines in the background) and the cache's per-request settings
//! (`default_on`, `default_ttl_secs`, `max_ttl_secs`). Everything else (listeners, Redis, the
//! fleet, Chromium, egress, payments credentials, storage, where the cache's entries live and
//! its bound) is read once at start;
//! a reload that changes it logs which sections need a restart and keeps the running values.
//! A new configuration that does not validate is refused whole: the running one stays.

use crate::config::Config;
use crate::content_filters::ContentFilters;
use crate::live::Live;

/// The running configuration with the reloadable parts of `new` applied, and the sections of
/// `new` that differ but need a restart.
pub fn merge(running: &Config, new: &Config) -> (Config, Vec<&'static str>) {
    let mut applied = running.clone();
    applied.credits = new.credits.clone();
    applied.limits = new.limits.clone();
    applied.auth.login_attempts_per_minute = new.auth.login_attempts_per_minute;
    applied.auth.attempts_per_address_per_minute = new.auth.attempts_per_address_per_minute;
    applied.log.level = new.log.level.clone();
    applied.filters = new.filters.clone();
    // The cache's per-request settings; where its entries live and its bound need a restart.
    applied.cache.default_on = new.cache.default_on;
    applied.cache.default_ttl_secs = new.cache.default_ttl_secs;
    applied.cache.max_ttl_secs = new.cache.max_ttl_secs;
    let (now, wanted) = (section_values(&applied), section_values(new));
    let restart = now
        .iter()
        .zip(&wanted)
        .filter(|(a, b)| a.1 != b.1)
        .map(|(a, _)| a.0)
        .collect();
    (applied, restart)
}

/// Each top-level section as JSON, to compare.
fn section_values(c: &Config) -> Vec<(&'static str, serde_json::Value)> {
    fn v<T: serde::Serialize>(section: &T) -> serde_json::Value {
        serde_json::to_value(section).unwrap_or_default()
    }
    vec![
        ("server", v(&c.server)),
        ("log", v(&c.log)),
        ("redis", v(&c.redis)),
        ("chromium", v(&c.chromium)),
        ("farm", v(&c.farm)),
        ("capture", v(&c.capture)),
        ("ledger", v(&c.ledger)),
        ("auth", v(&c.auth)),
        ("credits", v(&c.credits)),
        ("egress", v(&c.egress)),
        ("filters", v(&c.filters)),
        ("limits", v(&c.limits)),
        ("payments", v(&c.payments)),
        ("notifications", v(&c.notifications)),
        ("storage", v(&c.storage)),
        ("cache", v(&c.cache)),
    ]
}

/// Reloads from the file the daemon started with (and the environment), applies what can be
/// applied, and tells systemd (`RELOADING=1` … `READY=1`).
pub fn reload(live: &Live<Config>) {
    let mut notices = vec![sd_notify::NotifyState::Reloading];
    if let Ok(now) = sd_notify::NotifyState::monotonic_usec_now() {
        notices.push(now);
    }
    let _ = sd_notify::notify(false, &notices);
    let running = live.get();
    let status = match Config::load(running.source.as_deref()) {
        Ok(new) => {
            let (applied, restart) = merge(&running, &new);
            if let Err(e) = crate::telemetry::logging::set_level(&applied.log.level) {
                tracing::warn!("log level not changed: {e}");
            }
            // The packs' one home is the live configuration: payments read them from it.
            live.replace(applied);
            if restart.is_empty() {
                tracing::info!("configuration reloaded");
            } else {
                tracing::warn!(
                    needs_restart = ?restart,
                    "configuration reloaded; changes in these sections take effect only after a restart"
                );
            }
            "configuration reloaded".to_string()
        }
        Err(e) => {
            tracing::error!("configuration reload refused, the running configuration stays:\n{e}");
            "configuration reload refused; see the log".to_string()
        }
    };
    let _ = sd_notify::notify(
        false,
        &[
            sd_notify::NotifyState::Ready,
            sd_notify::NotifyState::Status(&status),
        ],
    );
}

/// Reloads on every SIGHUP until the daemon stops.
pub async fn on_sighup(live: Live<Config>, filters: ContentFilters) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        tracing::warn!("cannot listen for SIGHUP; reloads need a restart");
        return;
    };
    while hup.recv().await.is_some() {
        tracing::info!("SIGHUP received: reloading the configuration");
        reload(&live);
        // The lists are read again (their files may have changed, e.g. a package upgrade):
        // new engines, built off the request path; captures keep the old ones until then.
        filters.rebuild(&live.get().filters);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packs_limits_and_log_level_apply_the_rest_waits_for_a_restart() {
        let running = Config::default();
        let mut new = Config::default();
        new.credits.packs[0].price_cents = 700;
        new.limits.requests_per_minute = 5;
        new.log.level = "debug".into();
        new.auth.login_attempts_per_minute = 3;
        new.filters.ad_lists.clear();
        new.cache.default_on = true;
        new.cache.max_ttl_secs = 60;
        new.cache.default_ttl_secs = 60;
        let (applied, restart) = merge(&running, &new);
        assert!(applied.cache.default_on && applied.cache.max_ttl_secs == 60);
        assert!(
            applied.filters.ad_lists.is_empty(),
            "the filter lists apply"
        );
        assert_eq!(applied.credits.packs[0].price_cents, 700);
        assert_eq!(applied.limits.requests_per_minute, 5);
        assert_eq!(applied.log.level, "debug");
        assert_eq!(applied.auth.login_attempts_per_minute, 3);
        assert!(restart.is_empty(), "{restart:?}");

        new.farm.browsers += 1;
        new.redis.url = "redis://10.0.0.9:6379/0".into();
        new.auth.signup_bonus = 50;
        new.cache.max_bytes = 1 << 20;
        let (applied, restart) = merge(&running, &new);
        assert_eq!(restart, ["redis", "farm", "auth", "cache"]);
        assert_eq!(applied.cache.max_bytes, running.cache.max_bytes);
        assert_eq!(
            applied.farm.browsers, running.farm.browsers,
            "kept until restart"
        );
        assert_eq!(applied.redis.url, running.redis.url);
        assert_eq!(applied.auth.signup_bonus, running.auth.signup_bonus);
        assert_eq!(applied.limits.requests_per_minute, 5);
    }
}
