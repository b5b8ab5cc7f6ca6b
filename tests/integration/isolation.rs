//! Nothing one capture leaves in the browser reaches the next: cookies, local and session
//! storage, IndexedDB, the Cache API, service workers and the HTTP cache. One browser with one
//! tab, so both captures certainly run in the same Chromium; the planting capture checks that
//! every kind of state really was written (else the test would prove nothing).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use warp::Filter;

use super::support::{client_with_key, decode, enc, near, provision, rgb, serve_site, Daemon};

/// The kinds of state checked, one horizontal stripe each (in this order).
const KINDS: [&str; 7] = [
    "cookie",
    "localStorage",
    "sessionStorage",
    "indexedDB",
    "cacheStorage",
    "serviceWorker",
    "httpCache",
];
const STRIPE: u32 = 20;

/// Shared by the page scripts: `mark(i, ok)` paints stripe `i` green (ok) or red.
const MARK: &str = r#"
function mark(i, ok) {
  const d = document.createElement('div');
  d.style.cssText = `position:absolute;left:0;top:${i * 20}px;width:100%;height:20px;background:${ok ? '#0f0' : '#f00'}`;
  document.body.appendChild(d);
}
function within(promise, ms) {
  return Promise.race([promise, new Promise((resolve) => setTimeout(resolve, ms))]);
}
function loadScript(src) {
  return new Promise((resolve) => {
    const s = document.createElement('script');
    s.src = src; s.onload = resolve; s.onerror = resolve;
    document.head.appendChild(s);
  });
}
"#;

/// Writes every kind of state, then reads each back (green = written).
const PLANT: &str = r#"
(async () => {
  const written = [];
  document.cookie = 'planted=1; max-age=3600; path=/';
  written.push(document.cookie.includes('planted=1'));
  localStorage.setItem('planted', '1');
  written.push(localStorage.getItem('planted') === '1');
  sessionStorage.setItem('planted', '1');
  written.push(sessionStorage.getItem('planted') === '1');
  await within(new Promise((resolve) => {
    const open = indexedDB.open('planted', 1);
    open.onupgradeneeded = () => open.result.createObjectStore('s');
    open.onsuccess = () => { open.result.close(); resolve(); };
    open.onerror = resolve;
  }), 3000);
  written.push((await indexedDB.databases()).some((d) => d.name === 'planted'));
  const cache = await caches.open('planted');
  await cache.put('/planted', new Response('x'));
  written.push((await caches.keys()).includes('planted'));
  try {
    await within(navigator.serviceWorker.register('/sw.js'), 3000);
    await within(navigator.serviceWorker.ready, 3000);
  } catch (e) {}
  written.push((await navigator.serviceWorker.getRegistrations()).length > 0);
  // Twice: the second load must come from the HTTP cache (the server counts fetches).
  await loadScript('/cached.js');
  await loadScript('/cached.js');
  written.push(window.cachedLoads === 2);
  written.forEach((ok, i) => mark(i, ok));
  const done = document.createElement('div'); done.id = 'done'; document.body.appendChild(done);
})();
"#;

/// Looks for every kind of state (green = absent).
const PROBE: &str = r#"
(async () => {
  const clean = [];
  clean.push(!document.cookie.includes('planted'));
  clean.push(localStorage.getItem('planted') === null);
  clean.push(sessionStorage.getItem('planted') === null);
  clean.push(!(await indexedDB.databases()).some((d) => d.name === 'planted'));
  clean.push(!(await caches.keys()).includes('planted'));
  clean.push((await navigator.serviceWorker.getRegistrations()).length === 0);
  await loadScript('/cached.js');
  clean.push(true); // the HTTP cache is judged by the server's fetch count
  clean.forEach((ok, i) => mark(i, ok));
  const done = document.createElement('div'); done.id = 'done'; document.body.appendChild(done);
})();
"#;

/// Fetches of `/cached.js` the site has served.
fn site() -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    static SITE: OnceLock<(std::net::SocketAddr, Arc<AtomicUsize>)> = OnceLock::new();
    SITE.get_or_init(|| {
        let fetches = Arc::new(AtomicUsize::new(0));
        let counter = fetches.clone();
        let addr = serve_site("127.0.0.1:0", move |_| {
            let html = |script: &'static str| {
                warp::reply::html(format!(
                    "<!doctype html><html><head><script>{MARK}</script></head>\
                     <body style=\"margin:0;background:#fff\"><script>{script}</script></body></html>"
                ))
            };
            let plant = warp::path!("plant").map(move || html(PLANT));
            let probe = warp::path!("probe").map(move || html(PROBE));
            let sw = warp::path!("sw.js").map(|| {
                warp::reply::with_header(
                    "self.addEventListener('fetch', () => {});",
                    "content-type",
                    "text/javascript",
                )
            });
            let cached = warp::path!("cached.js").map(move || {
                counter.fetch_add(1, Ordering::SeqCst);
                warp::reply::with_header(
                    warp::reply::with_header(
                        "window.cachedLoads = (window.cachedLoads || 0) + 1;",
                        "content-type",
                        "text/javascript",
                    ),
                    "cache-control",
                    "public, max-age=3600",
                )
            });
            plant.or(probe).or(sw).or(cached)
        });
        (addr, fetches)
    })
    .clone()
}

/// The stripes of a capture: `(kind, green)`.
fn stripes(bytes: &[u8]) -> Vec<(&'static str, bool)> {
    let img = decode(bytes);
    KINDS
        .iter()
        .enumerate()
        .map(|(i, kind)| {
            let y = i as u32 * STRIPE + STRIPE / 2;
            let pixel = rgb(&img, 50, y);
            assert!(
                near(pixel, [0, 255, 0], 8) || near(pixel, [255, 0, 0], 8),
                "{kind}: stripe not drawn ({pixel:?})"
            );
            (*kind, near(pixel, [0, 255, 0], 8))
        })
        .collect()
}

#[tokio::test]
async fn no_state_of_one_capture_reaches_the_next() {
    let (addr, fetches) = site();
    let daemon = Daemon::start(|c| {
        c.farm.browsers = 1;
        c.farm.tabs_per_browser = 1;
    });
    daemon.wait_ready(1).await;
    let funded = provision(10);
    let key = client_with_key(&funded.key);
    let shot = |path: &str| {
        let url = format!("http://{addr}{path}");
        key.get(daemon.url(&format!(
            "/api/v1/screenshot?url={}&width=200&height=160&wait_for_selector=%23done&timeout=30000",
            enc(&url)
        )))
        .send()
    };

    let planted = shot("/plant").await.expect("plant");
    if planted.status() != 200 {
        panic!("plant: {}", planted.text().await.unwrap_or_default());
    }
    let written = stripes(&planted.bytes().await.expect("body"));
    let missing: Vec<_> = written.iter().filter(|(_, ok)| !ok).collect();
    assert!(missing.is_empty(), "state not written: {missing:?}");
    assert_eq!(
        fetches.load(Ordering::SeqCst),
        1,
        "the second load was cached"
    );

    for round in 0..3 {
        let probed = shot("/probe").await.expect("probe");
        if probed.status() != 200 {
            panic!("probe {round}: {}", probed.text().await.unwrap_or_default());
        }
        let seen = stripes(&probed.bytes().await.expect("body"));
        let leaked: Vec<_> = seen.iter().filter(|(_, clean)| !clean).collect();
        assert!(leaked.is_empty(), "round {round}: leaked {leaked:?}");
        assert_eq!(
            fetches.load(Ordering::SeqCst),
            2 + round,
            "round {round}: /cached.js came from an earlier capture's HTTP cache"
        );
    }
    daemon.stop();
}
