//! Fixture pages the tests and the benches both serve.

/// Hosts the news page loads ads from (EasyList refuses `||adnxs.com^`).
pub const AD_HOSTS: &[&str] = &["ib.adnxs.com"];
/// Hosts the news page loads trackers from (EasyPrivacy refuses `||scorecardresearch.com^`
/// and `||hotjar.com^` from other sites).
pub const TRACKER_HOSTS: &[&str] = &["b.scorecardresearch.com", "static.hotjar.com"];

/// A news article with what news sites carry: an ad slot filled by an ad server's script and
/// image (red), a site-hosted ad box EasyList's element hiding names (`.ad-slot`, red), two
/// trackers (a pixel and a script), and a OneTrust-style consent dialog inline at the bottom
/// (green). Everything else is white and grey. `port` is the site's: the ad and tracker hosts
/// are meant to resolve to the site (`egress.hosts`). Adds `#done` once its scripts ran.
pub fn news_page(port: u16) -> String {
    let ad = AD_HOSTS[0];
    let (pixel, script) = (TRACKER_HOSTS[0], TRACKER_HOSTS[1]);
    let paragraphs: String = (0..12)
        .map(|i| {
            format!(
                "<p>Paragraph {i} of the story. Lorem ipsum dolor sit amet, consectetur \
                 adipiscing elit, sed do eiusmod tempor incididunt ut labore et dolore magna \
                 aliqua. Ut enim ad minim veniam, quis nostrud exercitation ullamco.</p>"
            )
        })
        .collect();
    format!(
        r#"<!doctype html><html><head><meta charset="utf-8"><title>Local news</title>
<style>
html, body {{ margin: 0; background: #fff; color: #333; font: 16px/1.5 sans-serif; }}
header {{ height: 60px; background: #eee; }}
#ad-banner {{ position: absolute; left: 0; top: 60px; width: 728px; height: 90px; }}
.ad-slot {{ position: absolute; left: 900px; top: 200px; width: 300px; height: 250px; background: rgb(255, 0, 0); }}
article {{ position: absolute; left: 20px; top: 200px; width: 800px; }}
#onetrust-consent-sdk {{ position: fixed; left: 0; bottom: 0; width: 100%; height: 120px; background: rgb(0, 160, 0); }}
</style>
<script src="http://{script}:{port}/c/hotjar-1.js"></script>
</head><body>
<header></header>
<div id="ad-banner"><img src="http://{ad}:{port}/ad/banner.svg" width="728" height="90"></div>
<div class="ad-slot"></div>
<article><h1>Something happened in town</h1>{paragraphs}</article>
<img src="http://{pixel}:{port}/p?c1=2" width="1" height="1">
<div id="onetrust-consent-sdk"><p>We use cookies. Accept?</p></div>
<script src="http://{ad}:{port}/ad/tag.js"></script>
<script>
window.addEventListener('load', () => {{
  const d = document.createElement('div'); d.id = 'done'; document.body.appendChild(d);
}});
</script>
</body></html>"#
    )
}

/// What the news page's ad and tracker hosts answer, by path: the ad banner (a red image),
/// the ad tag (a script that paints a red box at the top right), the tracker script and pixel.
pub fn news_asset(path: &str) -> (&'static str, &'static str) {
    match path {
        "/ad/banner.svg" => (
            "<svg xmlns='http://www.w3.org/2000/svg' width='728' height='90'><rect width='728' height='90' fill='rgb(255,0,0)'/></svg>",
            "image/svg+xml",
        ),
        "/ad/tag.js" => (
            "const a = document.createElement('div'); a.style.cssText = 'position:absolute;left:900px;top:60px;width:300px;height:100px;background:rgb(255,0,0)'; document.body.appendChild(a);",
            "application/javascript",
        ),
        "/c/hotjar-1.js" => ("window.hj = function () {};", "application/javascript"),
        _ => ("", "image/gif"),
    }
}
