//! The three filter engines (ads, trackers, consent dialogs) and their answers: whether a
//! request is refused, and the CSS that hides the elements the lists name.

use std::collections::HashSet;
use std::path::Path;
use std::time::Instant;

use adblock::lists::ParseOptions;
use adblock::request::Request;
use adblock::Engine;

use crate::config::FiltersConfig;

/// The built-in consent-dialog list: the common consent platforms' scripts and dialogs.
const COOKIE_BANNERS: &str = include_str!("cookie_banners.txt");

/// Scrolling that consent platforms lock while their dialog shows, unlocked when it is hidden.
const SCROLL_UNLOCK: &str =
    "html.sp-message-open, body.didomi-popup-open, body.qc-cmp-ui-showing, \
    body.cmplz-banner-active, html.tc-modal-open, body.tc-modal-open \
    { overflow: auto !important; }\n";

/// Most class names, and most ids, a page reports for generic element hiding.
pub const MAX_NAMES: usize = 5000;

/// Which lists a capture applies.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Wanted {
    pub ads: bool,
    pub trackers: bool,
    pub cookie_banners: bool,
}

impl Wanted {
    pub fn any(self) -> bool {
        self.ads || self.trackers || self.cookie_banners
    }
}

/// One engine per choice a capture can make.
pub struct FilterEngines {
    ads: Engine,
    trackers: Engine,
    cookie_banners: Engine,
}

impl FilterEngines {
    /// Engines that refuse nothing and hide nothing.
    pub fn empty() -> FilterEngines {
        FilterEngines {
            ads: Engine::default(),
            trackers: Engine::default(),
            cookie_banners: Engine::default(),
        }
    }

    /// Builds the engines from the configured lists. A list that cannot be read is logged and
    /// left out (the configuration's validation refuses one that is missing at start).
    pub fn build(config: &FiltersConfig) -> FilterEngines {
        let started = Instant::now();
        let ads = engine("filters.ad_lists", &config.ad_lists, None);
        let trackers = engine("filters.tracker_lists", &config.tracker_lists, None);
        let cookie_banners = engine(
            "filters.cookie_banner_lists",
            &config.cookie_banner_lists,
            Some(COOKIE_BANNERS),
        );
        tracing::info!(
            elapsed_ms = started.elapsed().as_millis() as u64,
            "content filter engines built"
        );
        FilterEngines {
            ads,
            trackers,
            cookie_banners,
        }
    }

    fn chosen(&self, wanted: Wanted) -> impl Iterator<Item = &Engine> {
        [
            (wanted.ads, &self.ads),
            (wanted.trackers, &self.trackers),
            (wanted.cookie_banners, &self.cookie_banners),
        ]
        .into_iter()
        .filter_map(|(on, engine)| on.then_some(engine))
    }

    /// Whether a request for `url`, made by a page at `page_url`, is refused. `kind` is the
    /// request type in the lists' words (`script`, `image`, `subdocument`, `xmlhttprequest`, …).
    pub fn refuses(&self, wanted: Wanted, url: &str, page_url: &str, kind: &str) -> bool {
        let Ok(request) = Request::new(url, page_url, kind) else {
            return false;
        };
        self.chosen(wanted)
            .any(|engine| engine.check_network_request(&request).matched)
    }

    /// The CSS that hides what the lists name on a page at `page_url` whose elements carry
    /// `classes` and `ids`: one rule per selector, so a selector Chromium does not understand
    /// voids only itself.
    pub fn hiding_css(
        &self,
        wanted: Wanted,
        page_url: &str,
        classes: &[String],
        ids: &[String],
    ) -> String {
        let mut selectors: HashSet<String> = HashSet::new();
        for engine in self.chosen(wanted) {
            let resources = engine.url_cosmetic_resources(page_url);
            if !resources.generichide {
                selectors.extend(engine.hidden_class_id_selectors(
                    classes.iter().take(MAX_NAMES),
                    ids.iter().take(MAX_NAMES),
                    &resources.exceptions,
                ));
            }
            selectors.extend(resources.hide_selectors);
        }
        let mut selectors: Vec<String> = selectors.into_iter().collect();
        selectors.sort();
        let mut css = String::new();
        for selector in selectors {
            css.push_str(&selector);
            css.push_str(" { display: none !important; }\n");
        }
        if wanted.cookie_banners {
            css.push_str(SCROLL_UNLOCK);
        }
        css
    }
}

/// One engine from the lists of one setting (and a built-in list).
fn engine(setting: &str, lists: &[impl AsRef<Path>], built_in: Option<&str>) -> Engine {
    let mut rules: Vec<String> = built_in
        .map(|text| text.lines().map(str::to_string).collect())
        .unwrap_or_default();
    for path in lists {
        let path = path.as_ref();
        match std::fs::read_to_string(path) {
            Ok(text) => rules.extend(text.lines().map(str::to_string)),
            Err(e) => tracing::error!(
                setting,
                list = %path.display(),
                "filter list left out: cannot read it: {e}"
            ),
        }
    }
    Engine::from_rules(&rules, ParseOptions::default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn engines(ads: &str, trackers: &str) -> FilterEngines {
        FilterEngines {
            ads: Engine::from_rules(ads.lines(), ParseOptions::default()),
            trackers: Engine::from_rules(trackers.lines(), ParseOptions::default()),
            cookie_banners: Engine::from_rules(COOKIE_BANNERS.lines(), ParseOptions::default()),
        }
    }

    const ADS: Wanted = Wanted {
        ads: true,
        trackers: false,
        cookie_banners: false,
    };

    #[test]
    fn each_choice_applies_only_its_own_lists() {
        let e = engines(
            "||ads.example^\n##.ad-slot\n",
            "||track.example^$third-party\n",
        );
        let page = "https://news.example/";
        assert!(e.refuses(ADS, "https://ads.example/a.js", page, "script"));
        assert!(!e.refuses(ADS, "https://track.example/p.gif", page, "image"));
        let trackers = Wanted {
            trackers: true,
            ..Wanted::default()
        };
        assert!(e.refuses(trackers, "https://track.example/p.gif", page, "image"));
        assert!(!e.refuses(trackers, "https://ads.example/a.js", page, "script"));
        // `$third-party`: the tracker's own pages are not refused their own requests.
        assert!(!e.refuses(
            trackers,
            "https://track.example/p.gif",
            "https://track.example/",
            "image"
        ));
        assert!(!e.refuses(
            Wanted::default(),
            "https://ads.example/a.js",
            page,
            "script"
        ));
    }

    #[test]
    fn generic_and_site_hiding_become_one_rule_per_selector() {
        let e = engines(
            "##.ad-slot\nnews.example###top-ad\nother.example##.promo\n",
            "",
        );
        let css = e.hiding_css(
            ADS,
            "https://news.example/",
            &["ad-slot".into(), "story".into()],
            &["main".into()],
        );
        assert!(
            css.contains(".ad-slot { display: none !important; }"),
            "{css}"
        );
        assert!(
            css.contains("#top-ad { display: none !important; }"),
            "{css}"
        );
        assert!(!css.contains(".promo"), "{css}");
        assert!(!css.contains("story"), "{css}");
        assert!(e
            .hiding_css(
                Wanted::default(),
                "https://news.example/",
                &["ad-slot".into()],
                &[]
            )
            .is_empty());
    }

    #[test]
    fn the_built_in_list_knows_the_common_consent_platforms() {
        let e = engines("", "");
        let banners = Wanted {
            cookie_banners: true,
            ..Wanted::default()
        };
        let page = "https://shop.example/";
        for script in [
            "https://cdn.cookielaw.org/scripttemplates/otSDKStub.js",
            "https://consent.cookiebot.com/uc.js",
            "https://cmp.quantcast.com/choice/x/shop.example/choice.js",
            "https://app.usercentrics.eu/browser-ui/latest/loader.js",
            "https://sdk.privacy-center.org/loader.js",
        ] {
            assert!(e.refuses(banners, script, page, "script"), "{script}");
        }
        let css = e.hiding_css(
            banners,
            page,
            &[],
            &["onetrust-consent-sdk".into(), "CybotCookiebotDialog".into()],
        );
        assert!(css.contains("#onetrust-consent-sdk"), "{css}");
        assert!(css.contains("#CybotCookiebotDialog"), "{css}");
        assert!(css.contains("overflow: auto"), "{css}");
    }
}
