//! Egress defence end to end, in real Chromium: what a captured page may and may not reach.
//!
//! The daemon here allows exactly `127.0.0.3/32`, where a small site lives. The "inside" is a
//! listener on `127.0.0.1` (what `localhost` resolves to) that counts every connection it
//! accepts: whatever a page or a URL tries, it must count zero. The same page captured by the
//! shared daemon (which allows all of loopback) does reach it — proof the page really tries.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use serde_json::Value;
use warp::Filter;

use super::support::{
    audited, client_with_key, credits_header, enc, metric_value, provision, serve_site, shared,
    Daemon,
};

/// A listener on an inward address that counts the connections it accepts and answers each
/// with a red page.
struct Inside {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
}

impl Inside {
    fn start(bind: &str) -> Inside {
        let listener = std::net::TcpListener::bind(bind).expect("bind the inside listener");
        let addr = listener.local_addr().expect("addr");
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                count.fetch_add(1, Ordering::SeqCst);
                std::thread::spawn(move || {
                    use std::io::{Read, Write};
                    let mut buf = [0u8; 4096];
                    let _ = stream.read(&mut buf);
                    let body = "<body style='background:red'>inside</body>";
                    let _ = write!(
                        stream,
                        "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\n\
                         Access-Control-Allow-Origin: *\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                });
            }
        });
        Inside { addr, accepted }
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

/// The allowed site on 127.0.0.3: pages that reach for the inside, redirects, and `/hit/…`
/// paths it records (the controls).
struct Site {
    addr: SocketAddr,
    hits: Arc<Mutex<Vec<String>>>,
}

impl Site {
    fn start() -> Site {
        let hits = Arc::new(Mutex::new(Vec::new()));
        let record = hits.clone();
        let addr = serve_site("127.0.0.3:0", move |addr| {
            let log = warp::path::full().map(move |p: warp::path::FullPath| {
                record
                    .lock()
                    .expect("hits lock")
                    .push(p.as_str().to_string());
            });
            let reach = warp::path!("reach" / u16)
                .map(move |inside: u16| warp::reply::html(reaching_page(addr, inside)));
            let redirect = warp::path!("redirect")
                .and(warp::query::<std::collections::HashMap<String, String>>())
                .map(|q: std::collections::HashMap<String, String>| {
                    let to = q.get("to").cloned().unwrap_or_default();
                    warp::http::Response::builder()
                        .status(302)
                        .header("location", to)
                        .body(String::new())
                        .expect("redirect response")
                });
            let hit = warp::path("hit").map(|| {
                warp::http::Response::builder()
                    .header("content-type", "image/svg+xml")
                    .header("access-control-allow-origin", "*")
                    .body(
                        "<svg xmlns='http://www.w3.org/2000/svg' width='4' height='4'/>"
                            .to_string(),
                    )
                    .expect("hit response")
            });
            log.untuple_one().and(reach.or(redirect).or(hit))
        });
        Site { addr, hits }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    fn hits(&self, prefix: &str) -> usize {
        self.hits
            .lock()
            .expect("hits lock")
            .iter()
            .filter(|p| p.starts_with(prefix))
            .count()
    }
}

/// A page that reaches for the inside every way a page can (image, iframe, `fetch`,
/// WebSocket, HTTPS, host-name and numeric spellings), plus the same kinds of request to its own
/// site as controls; `#done` appears once every attempt has settled.
fn reaching_page(site: SocketAddr, inside: u16) -> String {
    let site_host = site.ip();
    let site_port = site.port();
    format!(
        r#"<!doctype html><html><body style="margin:0;background:#fff">
<img src="http://127.0.0.1:{inside}/img">
<img src="http://localhost:{inside}/by-name">
<img src="http://localhost.:{inside}/trailing-dot">
<img src="http://2130706433:{inside}/decimal">
<img src="http://0x7f.0.0.1:{inside}/hex">
<img src="http://[::ffff:127.0.0.1]:{inside}/mapped">
<img src="https://127.0.0.1:{inside}/tls">
<iframe src="http://127.0.0.1:{inside}/frame" width="50" height="50"></iframe>
<img src="/hit/img">
<iframe src="/hit/frame" width="50" height="50"></iframe>
<script>
  const settle = (p) => p.then(() => 'ok', () => 'failed');
  const socket = (url) => new Promise((resolve) => {{
    try {{
      const ws = new WebSocket(url);
      ws.onopen = () => {{ ws.close(); resolve('open'); }};
      ws.onerror = () => resolve('error');
      ws.onclose = () => resolve('closed');
    }} catch (e) {{ resolve('threw'); }}
  }});
  const images = Promise.all([...document.images].map((img) => new Promise((resolve) => {{
    if (img.complete) return resolve();
    img.onload = img.onerror = () => resolve();
  }})));
  Promise.all([
    settle(fetch('http://127.0.0.1:{inside}/fetch', {{mode: 'no-cors'}})),
    settle(fetch('http://localhost:{inside}/fetch-by-name', {{mode: 'no-cors'}})),
    socket('ws://127.0.0.1:{inside}/ws'),
    socket('wss://localhost:{inside}/wss'),
    settle(fetch('/hit/fetch')),
    socket('ws://{site_host}:{site_port}/hit/ws'),
    images,
  ]).then(() => {{
    const done = document.createElement('div');
    done.id = 'done';
    document.body.appendChild(done);
  }});
</script>
</body></html>"#
    )
}

struct Fixture {
    daemon: Daemon,
    site: Site,
    inside: Inside,
}

/// One strict daemon, one site and one inside listener for every test in this file.
fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| Fixture {
        daemon: Daemon::start(|c| {
            c.farm.browsers = 1;
            c.egress.allow = vec!["127.0.0.3/32".to_string()];
        }),
        site: Site::start(),
        inside: Inside::start("127.0.0.1:0"),
    })
}

async fn json_of(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, body)
}

#[tokio::test]
async fn inward_urls_in_every_spelling_are_refused_before_any_credit_is_held() {
    let f = fixture();
    let funded = provision(3);
    let key = client_with_key(&funded.key);
    let p = f.inside.addr.port();
    let before = f.inside.accepted();
    for target in [
        format!("http://127.0.0.1:{p}/"),
        format!("http://127.0.0.2:{p}/"), // the neighbour of the allowed /32
        format!("http://2130706433:{p}/"), // decimal
        format!("http://0177.0.0.1:{p}/"), // octal
        format!("http://0x7f.0.0.1:{p}/"), // hex
        format!("http://0x7f000001:{p}/"),
        format!("http://127.1:{p}/"),
        format!("http://127.0.0.1.:{p}/"), // trailing dot on an address
        format!("http://[::ffff:127.0.0.1]:{p}/"),
        format!("http://[::ffff:7f00:1]:{p}/"),
        format!("http://[::127.0.0.1]:{p}/"),
        format!("http://[64:ff9b::7f00:1]:{p}/"), // NAT64
        format!("http://[2002:7f00:1::]:{p}/"),   // 6to4
        format!("http://0.0.0.0:{p}/"),
        format!("http://[::]:{p}/"),
        format!("http://[::1]:{p}/"),
        format!("http://localhost:{p}/"), // a name that resolves to loopback
        format!("http://LOCALHOST.:{p}/"),
        format!("http://{}@127.0.0.1:{p}/", f.site.addr), // userinfo that looks like a host
        format!("http://user:pass@localhost:{p}/"),
        "http://169.254.169.254/latest/meta-data/".to_string(),
        "http://[fd00:ec2::254]/".to_string(),
        "http://10.0.0.1/".to_string(),
        "http://100.64.0.1/".to_string(),
    ] {
        let r = key
            .get(
                f.daemon
                    .url(&format!("/api/v1/screenshot?url={}", enc(&target))),
            )
            .send()
            .await
            .expect("capture");
        assert_eq!(credits_header(&r), Some(3), "{target}: balance unchanged");
        let (status, body) = json_of(r).await;
        assert_eq!(status, 400, "{target}: {body}");
        assert_eq!(body["error"]["code"], "url_not_allowed", "{target}: {body}");
        assert_eq!(body["error"]["field"], "url", "{target}: {body}");
        assert!(body["request_id"].is_string(), "{target}: {body}");
    }
    for target in [
        "file:///etc/passwd",
        "gopher://127.0.0.3/",
        "ftp://127.0.0.3/",
    ] {
        let r = key
            .get(
                f.daemon
                    .url(&format!("/api/v1/screenshot?url={}", enc(target))),
            )
            .send()
            .await
            .expect("capture");
        let (status, body) = json_of(r).await;
        assert_eq!(status, 400, "{target}: {body}");
        assert_eq!(body["error"]["field"], "url", "{target}: {body}");
    }
    // The allowed site itself is captured (and charged): the refusals above are the policy's.
    let r = key
        .get(f.daemon.url(&format!(
            "/api/v1/screenshot?url={}&width=200&height=100",
            enc(&f.site.url("/hit/ok"))
        )))
        .send()
        .await
        .expect("capture");
    assert_eq!(r.status(), 200);
    assert_eq!(credits_header(&r), Some(2));
    assert_eq!(f.inside.accepted(), before, "nothing reached the inside");
    let s = audited(&funded.account).await;
    assert_eq!((s.balance.available, s.holds.len()), (2, 0));
}

#[tokio::test]
async fn a_page_cannot_reach_inside_through_subresources_frames_fetch_or_websockets() {
    let f = fixture();
    // Its own inside listener: the positive control below connects to it, which must not
    // show up in the counts of the other tests running at the same time.
    let inside = Inside::start("127.0.0.1:0");
    let funded = provision(2);
    let key = client_with_key(&funded.key);
    let page = f.site.url(&format!("/reach/{}", inside.addr.port()));
    let capture = |daemon: &'static Daemon| {
        key.get(daemon.url(&format!(
            "/api/v1/screenshot?url={}&wait_for_selector=%23done&width=400&height=300",
            enc(&page)
        )))
        .send()
    };

    let refused_before = metric_value(
        &f.daemon.metrics_text().await,
        "shotfarm_egress_requests_total{kind=\"http\",outcome=\"refused\"}",
    ) + metric_value(
        &f.daemon.metrics_text().await,
        "shotfarm_egress_requests_total{kind=\"tunnel\",outcome=\"refused\"}",
    );
    let controls_before = f.site.hits("/hit/");
    let inside_before = inside.accepted();
    let r = capture(&f.daemon).await.expect("capture");
    assert_eq!(r.status(), 200, "the page itself is captured");
    assert_eq!(credits_header(&r), Some(1), "and charged once");
    // The page did make its requests: every control on the allowed site arrived…
    for control in ["/hit/img", "/hit/frame", "/hit/fetch", "/hit/ws"] {
        assert!(
            f.site.hits(control) >= 1,
            "{control} never arrived: {:?}",
            f.site.hits.lock().expect("hits lock")
        );
    }
    assert!(f.site.hits("/hit/") >= controls_before + 4);
    // …the proxy refused the inward ones (6 images, 1 iframe, 2 fetches, 2 sockets, at least
    // once each), and nothing got inside.
    let text = f.daemon.metrics_text().await;
    let refused = metric_value(
        &text,
        "shotfarm_egress_requests_total{kind=\"http\",outcome=\"refused\"}",
    ) + metric_value(
        &text,
        "shotfarm_egress_requests_total{kind=\"tunnel\",outcome=\"refused\"}",
    );
    assert!(
        refused - refused_before >= 11.0,
        "refused {} requests",
        refused - refused_before
    );
    assert_eq!(
        inside.accepted(),
        inside_before,
        "nothing reached the inside"
    );

    // The same page on a daemon whose policy allows loopback does get inside: the page is a
    // real attempt, and the strict daemon's proxy is what stopped it.
    let r = capture(shared()).await.expect("capture");
    assert_eq!(r.status(), 200);
    assert!(
        inside.accepted() > inside_before,
        "with loopback allowed the page reaches the inside listener"
    );
    let s = audited(&funded.account).await;
    assert_eq!((s.balance.available, s.balance.spent), (0, 2));
}

#[tokio::test]
async fn a_redirect_chain_into_the_inside_fails_and_costs_nothing() {
    let f = fixture();
    let funded = provision(2);
    let key = client_with_key(&funded.key);
    let p = f.inside.addr.port();
    let inside_before = f.inside.accepted();
    for last_hop in [
        format!("http://127.0.0.1:{p}/"),
        format!("https://localhost:{p}/"),
        format!("http://[::ffff:127.0.0.1]:{p}/"),
        "http://169.254.169.254/latest/meta-data/".to_string(),
    ] {
        let hop2 = f.site.url(&format!("/redirect?to={}", enc(&last_hop)));
        let hop1 = f.site.url(&format!("/redirect?to={}", enc(&hop2)));
        let redirects_before = f.site.hits("/redirect");
        let r = key
            .get(
                f.daemon
                    .url(&format!("/api/v1/screenshot?url={}", enc(&hop1))),
            )
            .send()
            .await
            .expect("capture");
        assert_eq!(credits_header(&r), Some(2), "{last_hop}: nothing charged");
        let (status, body) = json_of(r).await;
        assert_eq!(status, 502, "{last_hop}: {body}");
        assert_eq!(
            body["error"]["code"], "navigation_failed",
            "{last_hop}: {body}"
        );
        assert_eq!(
            f.site.hits("/redirect") - redirects_before,
            2,
            "{last_hop}: both hops on the allowed site were followed"
        );
    }
    assert_eq!(
        f.inside.accepted(),
        inside_before,
        "nothing reached the inside"
    );
    let s = audited(&funded.account).await;
    assert_eq!((s.balance.available, s.holds.len()), (2, 0));
}

#[tokio::test]
async fn supplied_html_reaches_only_what_the_policy_allows() {
    let f = fixture();
    let inside = Inside::start("127.0.0.1:0");
    let funded = provision(2);
    let key = client_with_key(&funded.key);
    let p = inside.addr.port();
    // Inward subresources, one allowed control, and a relative one (the markup's own origin,
    // answered inside the browser); `#done` once every image settled.
    let html = format!(
        r#"<!doctype html><html><body style="margin:0;background:rgb(0,128,255)">
<img src="http://127.0.0.1:{p}/img"><img src="http://localhost:{p}/by-name">
<iframe src="http://127.0.0.1:{p}/frame"></iframe>
<img src="{control}"><img src="/relative.png">
<script>
  Promise.all([...document.images].map((img) => new Promise((resolve) => {{
    if (img.complete) return resolve();
    img.onload = img.onerror = () => resolve();
  }}))).then(() => fetch('http://127.0.0.1:{p}/fetch', {{mode: 'no-cors'}}).catch(() => {{}}))
   .then(() => {{
    const done = document.createElement('div');
    done.id = 'done';
    document.body.appendChild(done);
  }});
</script></body></html>"#,
        control = f.site.url("/hit/html-img"),
    );
    let controls_before = f.site.hits("/hit/html-img");
    let r = key
        .post(f.daemon.url("/api/v1/screenshot"))
        .json(&serde_json::json!({
            "html": html, "wait_for_selector": "#done", "width": 400, "height": 300,
        }))
        .send()
        .await
        .expect("capture");
    assert_eq!(credits_header(&r), Some(1), "charged once");
    let status = r.status();
    let body = r.bytes().await.expect("body");
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let image = super::support::decode(&body);
    assert_eq!(super::support::rgb(&image, 390, 290), [0, 128, 255]);
    assert!(
        f.site.hits("/hit/html-img") > controls_before,
        "the allowed subresource was fetched"
    );
    assert_eq!(inside.accepted(), 0, "nothing reached the inside");

    // The same markup on the shared daemon, whose policy allows loopback, does get inside.
    let r = key
        .post(shared().url("/api/v1/screenshot"))
        .json(&serde_json::json!({"html": html, "wait_for_selector": "#done"}))
        .send()
        .await
        .expect("capture");
    assert_eq!(r.status(), 200);
    assert!(
        inside.accepted() > 0,
        "with loopback allowed the markup reaches inside"
    );
    let s = audited(&funded.account).await;
    assert_eq!((s.balance.available, s.balance.spent), (0, 2));
}
