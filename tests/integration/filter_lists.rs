//! The filter lists as a news site sees them: `block_ads` (EasyList), `block_trackers`
//! (EasyPrivacy) and `block_cookie_banners` (the built-in consent list and the operator's own)
//! keep the ad and tracker hosts' requests from ever reaching them, in the request log, and
//! hide what the lists name, in the pixels. The hosts are named as in the lists and pinned to
//! the fixture site on loopback (`egress.hosts`).

use std::sync::{Arc, Mutex, OnceLock};

use testkit::pages::{news_asset, news_page, AD_HOSTS, TRACKER_HOSTS};
use warp::Filter;

use crate::support::{
    assert_refused_options, client_with_key, decode, enc, near, provision, rgb, serve_site, Daemon,
};

/// Requests the site saw, as (host without port, path).
type Log = Arc<Mutex<Vec<(String, String)>>>;

const RED: [u8; 3] = [255, 0, 0];
const GREEN: [u8; 3] = [0, 160, 0];
const WHITE: [u8; 3] = [255, 255, 255];
const BLUE: [u8; 3] = [0, 0, 255];

/// The operator's own consent list, and a page only it knows.
const OWN_LIST: &str = "! the operator's list\n###house-consent-wall\n";
const HOUSE_PAGE: &str = r#"<!doctype html><html><body style="margin:0;background:#fff">
<div id="house-consent-wall" style="position:fixed;inset:0;background:rgb(0,0,255)"></div>
<div id="done"></div></body></html>"#;

/// The news site's own name. Served on loopback as `127.0.0.1` it would get no generic element
/// hiding at all: EasyList turns it off for local addresses (`@@://127.0.0.1$generichide`).
const SITE_HOST: &str = "news.example";
/// Another site, framed by the news site's `/framed` page.
const FRAME_HOST: &str = "frames.example";

/// A daemon whose egress pins the site's, the ad and the tracker hosts to loopback, with the
/// operator's own consent list added.
fn daemon() -> &'static Daemon {
    static DAEMON: OnceLock<(Daemon, tempfile::NamedTempFile)> = OnceLock::new();
    &DAEMON
        .get_or_init(|| {
            let own = tempfile::NamedTempFile::new().expect("list file");
            std::fs::write(own.path(), OWN_LIST).expect("write the list");
            let path = own.path().to_path_buf();
            let daemon = Daemon::start(move |c| {
                for host in AD_HOSTS
                    .iter()
                    .chain(TRACKER_HOSTS)
                    .chain([&SITE_HOST, &FRAME_HOST])
                {
                    c.egress
                        .hosts
                        .insert(host.to_string(), "127.0.0.1".parse().expect("ip"));
                }
                c.filters.cookie_banner_lists = vec![path];
            });
            (daemon, own)
        })
        .0
}

/// A news site of its own, logging every request it gets.
fn site() -> (String, Log) {
    let log: Log = Arc::default();
    let seen = log.clone();
    let addr = serve_site("127.0.0.1:0", move |addr| {
        let port = addr.port();
        warp::get()
            .and(warp::header::optional::<String>("host"))
            .and(warp::path::full())
            .map(move |host: Option<String>, path: warp::path::FullPath| {
                let host = host.unwrap_or_default();
                let host = host.split(':').next().unwrap_or_default().to_string();
                if let Ok(mut l) = seen.lock() {
                    l.push((host.clone(), path.as_str().to_string()));
                }
                let (body, kind) = match path.as_str() {
                    "/news" => (news_page(port), "text/html"),
                    "/house" => (HOUSE_PAGE.to_string(), "text/html"),
                    "/framed" => (
                        format!(
                            "<!doctype html><html><body><iframe src=\"http://{FRAME_HOST}:{port}/inner\" \
                             width=600 height=300></iframe><div id=done></div></body></html>"
                        ),
                        "text/html",
                    ),
                    "/inner" => (
                        format!(
                            "<!doctype html><html><body><script src=\"http://{}:{port}/ad/tag.js\">\
                             </script></body></html>",
                            AD_HOSTS[0]
                        ),
                        "text/html",
                    ),
                    other => {
                        let (body, kind) = news_asset(other);
                        (body.to_string(), kind)
                    }
                };
                warp::reply::with_header(body, "content-type", kind)
            })
    });
    (format!("http://{SITE_HOST}:{}", addr.port()), log)
}

/// Captures `path` of a fresh site with `options` on a one-credit account: the image, the hosts
/// the site was asked for, and the balance left.
async fn capture(path: &str, options: &str) -> (image::RgbaImage, Vec<String>, String) {
    let (base, log) = site();
    let funded = provision(1);
    let r = client_with_key(&funded.key)
        .get(daemon().url(&format!(
            "/api/v1/screenshot?url={}&wait_for_selector=%23done{options}",
            enc(&format!("{base}{path}"))
        )))
        .send()
        .await
        .expect("capture");
    let status = r.status();
    let left = r
        .headers()
        .get("x-credits-remaining")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let body = r.bytes().await.expect("body");
    assert_eq!(status, 200, "{options}: {}", String::from_utf8_lossy(&body));
    let hosts = log
        .lock()
        .expect("log")
        .iter()
        .map(|(host, _)| host.clone())
        .collect();
    (decode(&body), hosts, left)
}

/// The four places of the news page: the ad server's banner, its tag's box, the site's own ad
/// slot, the consent dialog.
fn places(img: &image::RgbaImage) -> [[u8; 3]; 4] {
    [
        rgb(img, 300, 100),
        rgb(img, 1000, 100),
        rgb(img, 1000, 300),
        rgb(img, 640, 760),
    ]
}

fn asked(hosts: &[String], names: &[&str]) -> bool {
    hosts.iter().any(|h| names.contains(&h.as_str()))
}

#[tokio::test]
async fn ads_and_trackers_never_reach_their_hosts_and_what_the_lists_name_is_hidden() {
    daemon().wait_ready(2).await;
    let (img, hosts, left) = capture("/news", "").await;
    assert!(asked(&hosts, AD_HOSTS), "{hosts:?}");
    assert!(asked(&hosts, TRACKER_HOSTS), "{hosts:?}");
    assert_eq!(places(&img), [RED, RED, RED, GREEN], "the page as it is");
    assert_eq!(left, "0", "one credit");

    let (img, hosts, left) = capture("/news", "&block_ads=true").await;
    assert!(!asked(&hosts, AD_HOSTS), "{hosts:?}");
    assert!(
        asked(&hosts, TRACKER_HOSTS),
        "trackers are not ads: {hosts:?}"
    );
    assert_eq!(
        places(&img),
        [WHITE, WHITE, WHITE, GREEN],
        "the banner and the tag's box never came, the ad slot is hidden"
    );
    assert_eq!(left, "0", "one credit");

    let (img, hosts, _) = capture("/news", "&block_trackers=true").await;
    assert!(!asked(&hosts, TRACKER_HOSTS), "{hosts:?}");
    assert!(asked(&hosts, AD_HOSTS), "ads are not trackers: {hosts:?}");
    assert_eq!(places(&img), [RED, RED, RED, GREEN]);

    let (img, hosts, _) = capture(
        "/news",
        "&block_ads=1&block_trackers=1&block_cookie_banners=1",
    )
    .await;
    assert!(
        !asked(&hosts, AD_HOSTS) && !asked(&hosts, TRACKER_HOSTS),
        "{hosts:?}"
    );
    assert_eq!(places(&img), [WHITE, WHITE, WHITE, WHITE], "a clean page");
    // The article itself is still there: dark text somewhere on its first lines.
    let text = (20..800)
        .flat_map(|x| (200..320).map(move |y| (x, y)))
        .any(|(x, y)| rgb(&img, x, y)[0] < 120);
    assert!(text, "the story is drawn");
}

#[tokio::test]
async fn consent_dialogs_go_with_the_built_in_list_and_the_operators_own() {
    daemon().wait_ready(2).await;
    let (img, _, _) = capture("/news", "&block_cookie_banners=true").await;
    assert_eq!(
        places(&img),
        [RED, RED, RED, WHITE],
        "only the consent dialog goes"
    );
    let (img, _, _) = capture("/house", "").await;
    assert!(near(rgb(&img, 640, 400), BLUE, 8));
    let (img, _, _) = capture("/house", "&block_cookie_banners=true").await;
    assert!(
        near(rgb(&img, 640, 400), WHITE, 8),
        "the operator's list applies"
    );
}

#[tokio::test]
async fn filter_options_are_booleans() {
    assert_refused_options(&[
        ("&block_ads=maybe".to_string(), "block_ads"),
        ("&block_trackers=2".to_string(), "block_trackers"),
        (
            "&block_cookie_banners=yes%20please".to_string(),
            "block_cookie_banners",
        ),
    ])
    .await;
}

#[tokio::test]
async fn requests_of_a_cross_site_frame_are_judged_too() {
    daemon().wait_ready(2).await;
    // `/framed` on the news site holds a frame of another site (its own renderer under site
    // isolation), which loads the ad server's tag.
    let (_, hosts, _) = capture("/framed", "").await;
    assert!(asked(&hosts, &[FRAME_HOST]), "{hosts:?}");
    assert!(
        asked(&hosts, AD_HOSTS),
        "the frame's ad loads without lists: {hosts:?}"
    );
    let (_, hosts, _) = capture("/framed", "&block_ads=true").await;
    assert!(asked(&hosts, &[FRAME_HOST]), "{hosts:?}");
    assert!(
        !asked(&hosts, AD_HOSTS),
        "the frame's ad request is refused too: {hosts:?}"
    );
}
