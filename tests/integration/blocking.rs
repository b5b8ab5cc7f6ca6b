//! Request blocking as the site sees it: `block_resources` (by type) and `block_urls` (by
//! pattern) keep the page's requests from ever reaching the site, in the request log and in the
//! pixels; everything else still loads.

use std::sync::{Arc, Mutex};

use warp::Filter;

use crate::support::{assert_refused_options, captured_once_done, decode, rgb, serve_site};

const PAGE: &str = r#"<!doctype html><html><head>
<style>html,body{margin:0;background:rgb(255,255,255)}</style>
<link rel=stylesheet href="/style.css"></head><body>
<img src="/img/red.svg" width=100 height=100 style="position:absolute;left:0;top:0">
<script>
fetch('/tracker/ping').catch(() => null).finally(() => {
  const d = document.createElement('div'); d.id = 'done'; document.body.appendChild(d);
});
</script></body></html>"#;

/// A site serving the page and logging every path it is asked for.
fn site() -> (String, Arc<Mutex<Vec<String>>>) {
    let log = Arc::new(Mutex::new(Vec::new()));
    let seen = log.clone();
    let addr = serve_site("127.0.0.1:0", move |_| {
        warp::get()
            .and(warp::path::full())
            .map(move |path: warp::path::FullPath| {
                if let Ok(mut l) = seen.lock() {
                    l.push(path.as_str().to_string());
                }
                let (body, kind) = match path.as_str() {
                    "/page" => (PAGE.to_string(), "text/html"),
                    "/style.css" => ("html{background:rgb(0,0,255) !important}".into(), "text/css"),
                    "/img/red.svg" => (
                        "<svg xmlns='http://www.w3.org/2000/svg' width='100' height='100'><rect width='100' height='100' fill='rgb(255,0,0)'/></svg>".into(),
                        "image/svg+xml",
                    ),
                    _ => ("ok".into(), "text/plain"),
                };
                warp::reply::with_header(body, "content-type", kind)
            })
    });
    (format!("http://{addr}/page"), log)
}

/// Captures the page with `options`: what the site was asked for, and two pixels (the image's
/// corner, the page's background).
async fn capture(options: &str) -> (Vec<String>, [u8; 3], [u8; 3]) {
    let (url, log) = site();
    let image = decode(&captured_once_done(&url, options).await);
    let requested = log.lock().expect("log").clone();
    (requested, rgb(&image, 50, 50), rgb(&image, 600, 400))
}

#[tokio::test]
async fn blocked_resources_and_urls_never_reach_the_site_and_everything_else_loads() {
    let (requested, img, background) = capture("").await;
    for path in ["/page", "/style.css", "/img/red.svg", "/tracker/ping"] {
        assert!(
            requested.iter().any(|p| p == path),
            "{path} in {requested:?}"
        );
    }
    assert_eq!(
        (img, background),
        ([255, 0, 0], [0, 0, 255]),
        "image and stylesheet"
    );

    let (requested, img, background) =
        capture("&block_resources=image&block_resources=stylesheet").await;
    assert!(
        !requested
            .iter()
            .any(|p| p == "/img/red.svg" || p == "/style.css"),
        "{requested:?}"
    );
    assert!(
        requested.iter().any(|p| p == "/tracker/ping"),
        "{requested:?}"
    );
    assert_eq!(
        (img, background),
        ([255, 255, 255], [255, 255, 255]),
        "neither drawn"
    );

    let (requested, img, background) = capture("&block_urls=*%2Ftracker%2F*").await;
    assert!(
        !requested.iter().any(|p| p.starts_with("/tracker/")),
        "{requested:?}"
    );
    assert!(
        requested.iter().any(|p| p == "/img/red.svg"),
        "{requested:?}"
    );
    assert_eq!(
        (img, background),
        ([255, 0, 0], [0, 0, 255]),
        "the rest loads"
    );
}

#[tokio::test]
async fn bad_blocking_options_are_400s_naming_the_field() {
    let too_many: String = (0..51).map(|i| format!("&block_urls=*x{i}*")).collect();
    assert_refused_options(&[
        ("&block_resources=document".to_string(), "block_resources"),
        ("&block_resources=pictures".to_string(), "block_resources"),
        (too_many, "block_urls"),
    ])
    .await;
}
