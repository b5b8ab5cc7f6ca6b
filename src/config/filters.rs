//! `[filters]`: the filter lists behind `block_ads`, `block_trackers` and
//! `block_cookie_banners` (Adblock Plus syntax, as EasyList writes it).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Where Debian's `webext-ublock-origin-chromium` package keeps EasyList and EasyPrivacy.
const DEBIAN_LISTS: &str =
    "/usr/share/chromium/extensions/ublock-origin/assets/thirdparties/easylist";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct FiltersConfig {
    /// Lists `block_ads` applies: network rules and element hiding.
    pub ad_lists: Vec<PathBuf>,
    /// Lists `block_trackers` applies.
    pub tracker_lists: Vec<PathBuf>,
    /// The operator's own lists for `block_cookie_banners`, on top of the built-in one (the
    /// common consent platforms' dialogs and scripts).
    pub cookie_banner_lists: Vec<PathBuf>,
}

impl Default for FiltersConfig {
    fn default() -> Self {
        Self {
            ad_lists: vec![PathBuf::from(format!("{DEBIAN_LISTS}/easylist.txt"))],
            tracker_lists: vec![PathBuf::from(format!("{DEBIAN_LISTS}/easyprivacy.txt"))],
            cookie_banner_lists: Vec::new(),
        }
    }
}

impl FiltersConfig {
    /// Every configured list with the name of its setting.
    pub fn lists(&self) -> impl Iterator<Item = (&'static str, &PathBuf)> {
        self.ad_lists
            .iter()
            .map(|p| ("filters.ad_lists", p))
            .chain(
                self.tracker_lists
                    .iter()
                    .map(|p| ("filters.tracker_lists", p)),
            )
            .chain(
                self.cookie_banner_lists
                    .iter()
                    .map(|p| ("filters.cookie_banner_lists", p)),
            )
    }
}
