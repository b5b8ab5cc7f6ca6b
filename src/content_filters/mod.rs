//! Content filter lists: which requests `block_ads`, `block_trackers` and `block_cookie_banners`
//! refuse and which page elements they hide, decided by Brave's `adblock` engine over lists in
//! Adblock Plus syntax (EasyList, EasyPrivacy, the built-in consent-dialog list and the
//! operator's own). The engines are built off the request path, once at start and again on a
//! reload; a capture that wants them before the first build ends waits for it. Knows nothing of
//! Chromium or HTTP.
//!
//! - [`engines`]: the three engines and their answers (block this request? hide what?);
//! - `cookie_banners.txt`: the built-in list of consent platforms' scripts and dialogs.

mod engines;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::watch;

use crate::config::FiltersConfig;
pub use engines::{FilterEngines, Wanted, MAX_NAMES};

/// The daemon's filter engines: cheap to clone, replaced whole by a reload.
#[derive(Clone)]
pub struct ContentFilters {
    current: watch::Receiver<Option<Arc<FilterEngines>>>,
    replace: Arc<watch::Sender<Option<Arc<FilterEngines>>>>,
    /// The newest build asked for: an older build that finishes later is not installed.
    newest: Arc<AtomicU64>,
}

impl ContentFilters {
    /// Starts building the engines from `config`'s lists on a blocking thread (a second or
    /// two for EasyList and EasyPrivacy): the daemon does not wait for them.
    pub fn start(config: &FiltersConfig) -> ContentFilters {
        let (replace, current) = watch::channel(None);
        let filters = ContentFilters {
            current,
            replace: Arc::new(replace),
            newest: Arc::default(),
        };
        filters.rebuild(config);
        filters
    }

    /// Builds new engines from `config` in the background; captures keep the current ones
    /// until the new ones are ready.
    pub fn rebuild(&self, config: &FiltersConfig) {
        let config = config.clone();
        let replace = self.replace.clone();
        let newest = self.newest.clone();
        let build = newest.fetch_add(1, Ordering::SeqCst) + 1;
        tokio::task::spawn_blocking(move || {
            // A build that panics leaves engines that refuse and hide nothing (logged), never
            // captures waiting for engines that will not come.
            let engines = std::panic::catch_unwind(|| FilterEngines::build(&config))
                .unwrap_or_else(|_| {
                    tracing::error!("building the filter engines failed: the lists apply nothing");
                    FilterEngines::empty()
                });
            replace.send_if_modified(|current| {
                // Installed when it is the newest build asked for (or nothing is installed yet).
                let install = newest.load(Ordering::SeqCst) == build || current.is_none();
                if install {
                    *current = Some(Arc::new(engines));
                }
                install
            });
        });
    }

    /// The current engines, once the first build is done (the caller's deadline bounds the wait).
    pub async fn ready(&self) -> Arc<FilterEngines> {
        let mut current = self.current.clone();
        loop {
            if let Some(engines) = current.borrow_and_update().clone() {
                return engines;
            }
            if current.changed().await.is_err() {
                // The sender lives as long as any handle: unreachable, but never a hang.
                return Arc::new(FilterEngines::empty());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_rebuild_replaces_the_engines_and_captures_keep_the_old_ones_until_then() {
        let dir = tempfile::tempdir().expect("dir");
        let list = dir.path().join("ads.txt");
        std::fs::write(&list, "||first.example^\n").expect("write");
        let config = FiltersConfig {
            ad_lists: vec![list.clone()],
            tracker_lists: Vec::new(),
            cookie_banner_lists: Vec::new(),
        };
        let ads = Wanted {
            ads: true,
            ..Wanted::default()
        };
        let page = "https://news.example/";
        let filters = ContentFilters::start(&config);
        let first = filters.ready().await;
        assert!(first.refuses(ads, "https://first.example/a.js", page, "script"));
        assert!(!first.refuses(ads, "https://second.example/a.js", page, "script"));

        std::fs::write(&list, "||second.example^\n").expect("write");
        filters.rebuild(&config);
        let mut rebuilt = false;
        for _ in 0..200 {
            let now = filters.ready().await;
            if now.refuses(ads, "https://second.example/a.js", page, "script") {
                assert!(!now.refuses(ads, "https://first.example/a.js", page, "script"));
                rebuilt = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert!(rebuilt, "the rebuilt engines replace the old ones");
        // A capture holding the old engines keeps judging by them.
        assert!(first.refuses(ads, "https://first.example/a.js", page, "script"));
    }
}
