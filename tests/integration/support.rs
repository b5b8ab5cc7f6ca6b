//! Test fixtures: a site served on 127.0.0.1:0, in-process daemons, a spawned daemon binary,
//! and helpers to find a daemon's Chromium processes by their profile directory.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use shotfarm::app::Bound;
use shotfarm::config::Config;
use warp::Filter;

pub use super::redis_server::redis_url;

pub use testkit::accounts::Funded;

/// A new account on the test Redis holding `credits` (after its 5-credit sign-up bonus, an
/// adjustment brings it to exactly `credits`), with an API key. Uses the operator code path.
pub fn provision(credits: i64) -> Funded {
    provision_on(&redis_url(), credits)
}

pub fn provision_on(url: &str, credits: i64) -> Funded {
    let email = format!("t{}@test.example", uuid::Uuid::new_v4().simple());
    provision_as(url, &email, credits)
}

/// Like [`provision_on`], with the account's email chosen by the caller (its password is
/// `password123`), so a test can also log in as it.
pub fn provision_as(url: &str, email: &str, credits: i64) -> Funded {
    let mut config = Config::default();
    config.redis.url = url.to_string();
    provision_in(config, email, credits)
}

/// Like [`provision_as`], on the Redis (single or cluster) `config` names.
pub fn provision_in(config: Config, email: &str, credits: i64) -> Funded {
    testkit::accounts::provision(&config, email, Some("password123"), credits, "test")
        .expect("provision a funded account on the test Redis")
}

/// A one-browser daemon's settings on a Redis of the test's own, giving up on Redis after
/// 500 ms (a test that stops its Redis wants fast failures).
pub fn on_own_redis(c: &mut Config, url: &str) {
    c.farm.browsers = 1;
    c.redis.url = url.to_string();
    c.redis.response_timeout_ms = 500;
    c.redis.connect_timeout_ms = 500;
}

/// The amounts of a snapshot's transactions of one kind, newest first.
pub fn amounts_of(
    s: &shotfarm::ledger::store::Snapshot,
    kind: shotfarm::ledger::TxKind,
) -> Vec<i64> {
    s.transactions
        .iter()
        .filter(|t| t.kind == kind)
        .map(|t| t.amount)
        .collect()
}

/// The image of `url` captured by a fresh one-credit account with `options`, once the page has
/// added its `#done` element (asserting a 200).
pub async fn captured_once_done(url: &str, options: &str) -> Vec<u8> {
    let daemon = ready_shared().await;
    let funded = provision(1);
    let r = client_with_key(&funded.key)
        .get(daemon.url(&format!(
            "/api/v1/screenshot?url={}&wait_for_selector=%23done{options}",
            enc(url)
        )))
        .send()
        .await
        .expect("capture");
    let status = r.status();
    let body = r.bytes().await.expect("body");
    assert_eq!(status, 200, "{options}: {}", String::from_utf8_lossy(&body));
    body.to_vec()
}

/// A capture POSTed to the shared daemon with `options` as its JSON body: status, credits
/// left, body.
pub async fn post_capture(
    key: &reqwest::Client,
    options: &serde_json::Value,
) -> (u16, Option<i64>, Vec<u8>) {
    let daemon = ready_shared().await;
    let r = key
        .post(daemon.url("/api/v1/screenshot"))
        .json(options)
        .send()
        .await
        .expect("capture");
    let (status, credits) = (r.status().as_u16(), credits_header(&r));
    (status, credits, r.bytes().await.expect("body").to_vec())
}

/// Asserts that each of `cases` (options appended to a capture of `/plain`, and the option the
/// 400 must name) is refused before any hold, naming that field.
pub async fn assert_refused_options(cases: &[(String, &str)]) {
    let daemon = ready_shared().await;
    let funded = provision(1);
    let key = client_with_key(&funded.key);
    for (query, field) in cases {
        let r = key
            .get(daemon.url(&format!(
                "/api/v1/screenshot?url={}{query}",
                enc(&page("/plain"))
            )))
            .send()
            .await
            .expect("capture");
        assert_eq!(r.status(), 400, "{query}");
        let body: serde_json::Value = r.json().await.expect("json");
        assert_eq!(body["error"]["field"], *field, "{query}: {body}");
    }
}

/// The account most tests capture with (plenty of credits).
pub fn shared_funded() -> &'static Funded {
    static FUNDED: OnceLock<Funded> = OnceLock::new();
    FUNDED.get_or_init(|| provision(1_000_000))
}

/// A client that sends `key` as `x-api-key` on every request.
pub fn client_with_key(key: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        "x-api-key",
        reqwest::header::HeaderValue::from_str(key).expect("key header"),
    );
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .expect("client")
}

/// A client authenticated as the shared funded account. A new one per call: a client's pooled
/// connections belong to the runtime of the test that opened them, and die with it.
pub fn client() -> reqwest::Client {
    client_with_key(&shared_funded().key)
}

/// `GET url` as the shared funded account.
pub async fn get(url: impl reqwest::IntoUrl) -> reqwest::Result<reqwest::Response> {
    client().get(url).send().await
}

/// Serves the routes `make` builds (given the bound address) on `bind`, from a thread and a
/// runtime of their own, which outlive every test's.
pub fn serve_site<F>(
    bind: &'static str,
    make: impl FnOnce(SocketAddr) -> F + Send + 'static,
) -> SocketAddr
where
    F: warp::Filter<Error = warp::Rejection> + Clone + Send + Sync + 'static,
    F::Extract: warp::Reply,
{
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("site runtime");
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind(bind)
                .await
                .expect("bind the site");
            let addr = listener.local_addr().expect("addr");
            tx.send(addr).expect("send addr");
            warp::serve(make(addr)).incoming(listener).run().await;
        });
    });
    rx.recv().expect("site started")
}

/// The fixture site, shared by all tests.
pub fn site() -> SocketAddr {
    static SITE: OnceLock<SocketAddr> = OnceLock::new();
    *SITE.get_or_init(|| serve_site("127.0.0.1:0", |_| fixture_routes()))
}

pub fn page(path: &str) -> String {
    format!("http://{}{}", site(), path)
}

fn html(body: String) -> warp::reply::Response {
    use warp::Reply;
    warp::reply::html(body).into_response()
}

const RESET: &str = "<style>html,body{margin:0;padding:0}</style>";

fn fixture_routes(
) -> impl Filter<Extract = (warp::reply::Response,), Error = warp::Rejection> + Clone {
    // White page with a red box at (10,10) 300x150 and a blue `.ad` square at (400,10) 100x100;
    // the background turns black under prefers-color-scheme: dark.
    let plain = warp::path!("plain").map(|| {
        html(format!(
            "<!doctype html><html><head>{RESET}<style>
               body {{ background: rgb(255,255,255); }}
               @media (prefers-color-scheme: dark) {{ body {{ background: rgb(0,0,0); }} }}
               #box {{ position:absolute; left:10px; top:10px; width:300px; height:150px; background: rgb(255,0,0); }}
               .ad {{ position:absolute; left:400px; top:10px; width:100px; height:100px; background: rgb(0,0,255); }}
             </style></head><body><div id=box></div><div class=ad></div></body></html>"
        ))
    });
    // A page exactly `h` px tall: red first 1000 px, blue last 1000 px, green between.
    let tall = warp::path!("tall" / u32).map(|h: u32| {
        let mid = h.saturating_sub(2000);
        html(format!(
            "<!doctype html><html><head>{RESET}</head><body>
               <div style='height:1000px;background:rgb(255,0,0)'></div>
               <div style='height:{mid}px;background:rgb(0,255,0)'></div>
               <div style='height:1000px;background:rgb(0,0,255)'></div></body></html>"
        ))
    });
    // An element 321x123 far below the fold.
    let element = warp::path!("element").map(|| {
        html(format!(
            "<!doctype html><html><head>{RESET}</head><body style='height:3000px'>
               <div id=target style='position:absolute;left:50px;top:1500px;width:321px;height:123px;background:rgb(0,128,0)'></div>
             </body></html>"
        ))
    });
    // An element that appears after `ms` milliseconds.
    let late = warp::path!("late" / u64).map(|ms: u64| {
        html(format!(
            "<!doctype html><html><head>{RESET}</head><body>
               <script>setTimeout(() => {{ const d = document.createElement('div'); d.id = 'late';
                 d.style.cssText = 'width:77px;height:33px;background:rgb(0,0,255)'; document.body.appendChild(d); }}, {ms});</script>
             </body></html>"
        ))
    });
    // A page whose load event never fires: its image never answers.
    let hang = warp::path!("hang").map(|| {
        html(format!(
            "<!doctype html><html><head>{RESET}</head><body><img src='/never'></body></html>"
        ))
    });
    let never = warp::path!("never").then(|| async {
        tokio::time::sleep(Duration::from_secs(600)).await;
        html(String::new())
    });
    // A page served after `ms` milliseconds.
    let slow = warp::path!("slow" / u64).then(|ms: u64| async move {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        html(format!("<!doctype html><html><head>{RESET}</head><body style='background:rgb(0,255,0)'></body></html>"))
    });
    // Green when the request carried cookie `k=v`, header `x-test: yes`, or the user agent
    // `shotfarm-test`; red otherwise.
    let echo = warp::path!("echo")
        .and(warp::header::optional::<String>("cookie"))
        .and(warp::header::optional::<String>("x-test"))
        .and(warp::header::optional::<String>("user-agent"))
        .map(
            |cookie: Option<String>, xtest: Option<String>, ua: Option<String>| {
                let ok = |b: bool| if b { "rgb(0,255,0)" } else { "rgb(255,0,0)" };
                let c = ok(cookie.is_some_and(|c| c.contains("k=v")));
                let h = ok(xtest.as_deref() == Some("yes"));
                let u = ok(ua.as_deref() == Some("shotfarm-test"));
                html(format!(
                    "<!doctype html><html><head>{RESET}</head><body>
                   <div style='height:100px;background:{c}'></div>
                   <div style='height:100px;background:{h}'></div>
                   <div style='height:100px;background:{u}'></div></body></html>"
                ))
            },
        );
    // No background at all (for omit_background).
    let bare = warp::path!("bare").map(|| {
        html(format!(
            "<!doctype html><html><head>{RESET}</head><body><div style='width:50px;height:50px;background:rgb(255,0,0)'></div></body></html>"
        ))
    });
    // Turns its marker red only once the page has been scrolled far down (lazy content).
    let lazy = warp::path!("lazy").map(|| {
        html(format!(
            "<!doctype html><html><head>{RESET}</head><body style='height:4000px;background:rgb(255,255,255)'>
               <div id=mark style='position:absolute;top:3500px;width:100px;height:100px;background:rgb(255,255,255)'></div>
               <script>addEventListener('scroll', () => {{ if (scrollY > 2000) document.getElementById('mark').style.background = 'rgb(255,0,0)'; }});</script>
             </body></html>"
        ))
    });
    // A styled page answered with HTTP status `code`: an error page with a body.
    let status = warp::path!("status" / u16).map(|code: u16| {
        let mut response = html(format!(
            "<!doctype html><html><head>{RESET}</head><body style='background:rgb(255,0,0)'><h1>Error {code}</h1></body></html>"
        ));
        *response.status_mut() = warp::http::StatusCode::from_u16(code)
            .unwrap_or(warp::http::StatusCode::IM_A_TEAPOT);
        response
    });
    // 200 with an empty body.
    let empty = warp::path!("empty").map(|| html(String::new()));
    // Red until #go is clicked (then green), and #more, once clicked, turns the box blue: two
    // clicks in order make it blue; the other order leaves it green.
    // A page with a title and Open Graph / Twitter card metadata, and a redirect to it.
    let meta = warp::path!("meta").map(|| {
        html(format!(
            "<!doctype html><html><head>{RESET}<title>Meta page</title>
               <meta property='og:title' content='The OG title'>
               <meta property='og:image' content='https://example.com/card.png'>
               <meta name='twitter:card' content='summary_large_image'>
               <meta name='description' content='not reported'>
             </head><body><h1>meta</h1></body></html>"
        ))
    });
    let to_meta = warp::path!("to-meta").map(|| {
        use warp::Reply;
        warp::redirect::found(warp::http::Uri::from_static("/meta")).into_response()
    });
    let clickme = warp::path!("clickme").map(|| {
        html(format!(
            "<!doctype html><html><head>{RESET}</head><body style='background:rgb(255,0,0)'>
               <button id=go onclick=\"document.body.style.background='rgb(0,255,0)'; this.dataset.done=1\">go</button>
               <button id=more onclick=\"if (document.getElementById('go').dataset.done) document.body.style.background='rgb(0,0,255)'\">more</button>
             </body></html>"
        ))
    });
    plain
        .or(tall)
        .unify()
        .or(status)
        .unify()
        .or(empty)
        .unify()
        .or(clickme)
        .unify()
        .or(meta)
        .unify()
        .or(to_meta)
        .unify()
        .or(element)
        .unify()
        .or(late)
        .unify()
        .or(hang)
        .unify()
        .or(never)
        .unify()
        .or(slow)
        .unify()
        .or(echo)
        .unify()
        .or(bare)
        .unify()
        .or(lazy)
        .unify()
}

/// A daemon running in this process on its own thread.
pub struct Daemon {
    pub bound: Bound,
    pub profile_dir: PathBuf,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    _profiles: tempfile::TempDir,
}

impl Daemon {
    pub fn start(tweak: impl FnOnce(&mut Config)) -> Daemon {
        let profiles = tempfile::tempdir().expect("profile dir");
        if let Ok(filter) = std::env::var("TEST_DAEMON_LOG") {
            // The in-process daemons' logs, for debugging a test: TEST_DAEMON_LOG=shotfarm=debug.
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
                .with_test_writer()
                .try_init();
        }
        let mut config = Config::default();
        config.farm.engine = test_engine();
        config.server.listen = "127.0.0.1:0".parse().expect("addr");
        config.server.metrics_listen = "127.0.0.1:0".parse().expect("addr");
        config.server.shutdown_grace_ms = 5_000;
        config.chromium.profile_dir = profiles.path().to_path_buf();
        // Each daemon its own cache directory (one daemon per directory).
        config.cache.dir = profiles.path().join("cache");
        // No async job workers: every daemon on the shared test Redis would take any test's
        // jobs (with its own egress policy). The jobs tests turn them on for their daemons.
        config.jobs.workers = 0;
        config.capture.default_timeout_ms = 20_000;
        config.redis.url = redis_url();
        config.ledger.sweep_interval_ms = 200;
        // The fixture site lives on loopback, which the shipped policy refuses.
        config.egress.allow = vec!["127.0.0.0/8".to_string()];
        // Bursts of 100 captures on one key are part of the tests; the limiter stays on.
        config.limits.requests_per_minute = 6_000_000;
        config.limits.burst = 100_000;
        // Every test signs up and logs in from 127.0.0.1: no per-address limit here (a test of
        // its own turns it on).
        config.auth.attempts_per_address_per_minute = 0;
        // Likewise for connections: bursts of 100 concurrent captures come from 127.0.0.1
        // (`hardening_http` sets its own caps).
        config.server.max_connections_per_client = config.server.max_connections;
        // Low-balance notifications retry quickly: 0.1 s, then 0.2 s, then every 0.4 s.
        config.notifications.first_retry_ms = 100;
        config.notifications.max_retry_ms = 400;
        tweak(&mut config);
        config.validate().expect("test config must be valid");
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let result = shotfarm::app::run(
                config,
                async move {
                    let _ = stop_rx.await;
                },
                move |bound| {
                    let _ = ready_tx.send(bound);
                },
            );
            if let Err(e) = result {
                eprintln!("daemon failed: {e:#}");
            }
        });
        let bound = ready_rx
            .recv_timeout(Duration::from_secs(30))
            .expect("daemon must start");
        Daemon {
            bound,
            profile_dir: profiles.path().to_path_buf(),
            stop: Some(stop_tx),
            thread: Some(thread),
            _profiles: profiles,
        }
    }

    pub fn url(&self, path_and_query: &str) -> String {
        format!("http://{}{}", self.bound.api, path_and_query)
    }

    pub fn metrics_url(&self) -> String {
        format!("http://{}/metrics", self.bound.metrics)
    }

    /// The daemon's metrics in Prometheus text format.
    pub async fn metrics_text(&self) -> String {
        reqwest::get(self.metrics_url())
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics text")
    }

    /// Waits until `/readyz` reports `n` ready browsers.
    pub async fn wait_ready(&self, n: usize) {
        wait_ready_at(&format!("http://{}", self.bound.api), n as u64).await;
    }

    /// Graceful stop; returns when the daemon's thread has ended.
    pub fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The daemon most tests share: 2 browsers × 2 tabs.
pub fn shared() -> &'static Daemon {
    static SHARED: OnceLock<Daemon> = OnceLock::new();
    SHARED.get_or_init(|| Daemon::start(|_| {}))
}

/// The shared daemon, once both its browsers can take work.
pub async fn ready_shared() -> &'static Daemon {
    let daemon = shared();
    daemon.wait_ready(2).await;
    daemon
}

pub use testkit::procfs::{browser_pids, processes_under};

/// Polls `check` for up to `limit`.
pub async fn eventually(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let start = std::time::Instant::now();
    while start.elapsed() < limit {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    check()
}

pub use testkit::free_port;

/// Reads a counter's value from Prometheus text.
pub fn metric_value(text: &str, name_and_labels: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name_and_labels))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Decodes an image response body.
pub fn decode(bytes: &[u8]) -> image::RgbaImage {
    image::load_from_memory(bytes)
        .expect("decodable image")
        .to_rgba8()
}

/// The pixel at (x, y) as RGB.
pub fn rgb(img: &image::RgbaImage, x: u32, y: u32) -> [u8; 3] {
    let p = img.get_pixel(x, y).0;
    [p[0], p[1], p[2]]
}

/// True when every channel is within `tol` of `want`.
pub fn near(got: [u8; 3], want: [u8; 3], tol: u8) -> bool {
    got.iter().zip(want).all(|(g, w)| g.abs_diff(w) <= tol)
}

/// A value percent-encoded for a query string.
pub fn enc(value: &str) -> String {
    form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

/// Waits (up to 30 s) until the daemon at `base` reports `n` ready browsers.
pub async fn wait_ready_at(base: &str, n: u64) {
    for _ in 0..300 {
        if let Ok(r) = reqwest::get(format!("{base}/readyz")).await {
            if let Ok(v) = r.json::<serde_json::Value>().await {
                if v["browsers_ready"].as_u64() == Some(n) {
                    return;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the daemon at {base} never had {n} ready browsers");
}

/// An account's ledger state on the Redis at `url`, read atomically.
pub async fn snapshot_on(url: &str, account: &str) -> shotfarm::ledger::store::Snapshot {
    let client = redis::Client::open(url).expect("redis url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("redis connection");
    shotfarm::ledger::store::snapshot(&mut conn, account)
        .await
        .expect("snapshot")
        .expect("account exists")
}

/// The account's ledger on the test Redis, asserting every invariant holds.
pub async fn audited(account: &str) -> shotfarm::ledger::store::Snapshot {
    audited_on(&redis_url(), account).await
}

/// An account's snapshot, after checking every invariant, read through the daemon's own
/// connection code from the Redis (single or cluster) `redis` names.
pub async fn audited_in(
    redis: &shotfarm::config::RedisConfig,
    account: &str,
) -> shotfarm::ledger::store::Snapshot {
    let handle = shotfarm::ledger::RedisHandle::new(redis).expect("redis config");
    let mut conn = handle.connect().await.expect("redis connection");
    let snapshot = shotfarm::ledger::store::snapshot(&mut conn, account)
        .await
        .expect("snapshot")
        .expect("account exists");
    let problems = shotfarm::ledger::audit::violations(&snapshot);
    assert!(
        problems.is_empty(),
        "ledger invariants broken: {problems:?}"
    );
    snapshot
}

pub async fn audited_on(url: &str, account: &str) -> shotfarm::ledger::store::Snapshot {
    let snapshot = snapshot_on(url, account).await;
    let problems = shotfarm::ledger::audit::violations(&snapshot);
    assert!(
        problems.is_empty(),
        "ledger invariants broken: {problems:?}"
    );
    snapshot
}

/// `x-credits-remaining` of a response.
pub fn credits_header(response: &reqwest::Response) -> Option<i64> {
    response
        .headers()
        .get("x-credits-remaining")?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

pub use testkit::process::ChildGuard;

/// Starts the real binary on the test Redis, 2 browsers, 5 s grace, plus `env` overrides
/// (`SHOTFARM_…`); returns the child and its API base URL.
pub fn spawn_binary(profiles: &std::path::Path, env: &[(&str, &str)]) -> (ChildGuard, String) {
    spawn_binary_on(profiles, &redis_url(), env, None)
}

/// Like [`spawn_binary`], but on the Redis at `redis_url`, with the daemon's log (stderr, no
/// colours) appended to `log`, when given, so a test can keep it as evidence.
pub fn spawn_binary_on(
    profiles: &std::path::Path,
    redis_url: &str,
    env: &[(&str, &str)],
    log: Option<&std::path::Path>,
) -> (ChildGuard, String) {
    spawn_binary_with(profiles, redis_url, env, log, &[])
}

/// Like [`spawn_binary_on`], with more arguments for `serve` (e.g. `--config FILE`).
pub fn spawn_binary_with(
    profiles: &std::path::Path,
    redis_url: &str,
    env: &[(&str, &str)],
    log: Option<&std::path::Path>,
    args: &[&str],
) -> (ChildGuard, String) {
    let (api, metrics) = testkit::process::daemon_addresses();
    let stderr = match log {
        Some(path) => std::process::Stdio::from(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .expect("daemon log file"),
        ),
        // TEST_DAEMON_LOG: the daemons' logs on the test's stderr, for debugging a test.
        None if std::env::var_os("TEST_DAEMON_LOG").is_some() => std::process::Stdio::inherit(),
        None => std::process::Stdio::null(),
    };
    let binary = Path::new(env!("CARGO_BIN_EXE_shotfarm"));
    let child = testkit::process::serve(binary, api, metrics, profiles)
        .args(args)
        .env("SHOTFARM_REDIS__URL", redis_url)
        .env("SHOTFARM_FARM__BROWSERS", "2")
        .env("SHOTFARM_SERVER__SHUTDOWN_GRACE_MS", "5000")
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("spawn shotfarm");
    (ChildGuard(child), format!("http://{api}"))
}

/// splitmix64: a small seeded generator, so a randomized test's choices can be replayed.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    pub fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next() % (hi - lo + 1) as u64) as i64
    }

    pub fn percent(&mut self, p: u64) -> bool {
        self.next() % 100 < p
    }

    pub fn pick<T: Clone>(&mut self, items: &[T]) -> Option<T> {
        (!items.is_empty()).then(|| items[self.below(items.len())].clone())
    }
}

/// The engine the daemons of this test run use: `SHOTFARM_FARM__ENGINE` (which the binary reads
/// too), else the default. `make test` runs the capture, isolation and lifecycle tests once more
/// with `chromium`.
pub fn test_engine() -> shotfarm::config::Engine {
    match std::env::var("SHOTFARM_FARM__ENGINE").as_deref() {
        Ok("chromium") => shotfarm::config::Engine::Chromium,
        Ok("headless-shell") | Err(_) => shotfarm::config::Engine::HeadlessShell,
        Ok(other) => panic!("SHOTFARM_FARM__ENGINE={other}: not an engine"),
    }
}

/// Real Chromium for a test that drives a browser itself (the dashboard, the contract's
/// JavaScript): its own profile directory, a DevTools connection and the handler's pump.
pub struct TestBrowser {
    pub browser: chromiumoxide::Browser,
    process: shotfarm::farm::process::ChromiumProcess,
    pump: tokio::task::JoinHandle<()>,
    _profiles: tempfile::TempDir,
}

impl TestBrowser {
    pub async fn launch(name: &str) -> TestBrowser {
        use futures::StreamExt as _;
        let profiles = tempfile::tempdir().expect("tmp");
        let chromium = shotfarm::config::ChromiumConfig {
            profile_dir: profiles.path().to_path_buf(),
            executable: test_engine().binary().to_path_buf(),
            ..Default::default()
        };
        let process =
            shotfarm::farm::process::ChromiumProcess::launch(&chromium, &Default::default(), name)
                .await
                .expect("chromium");
        let (browser, mut handler) = chromiumoxide::Browser::connect_with_config(
            process.ws_url.clone(),
            chromiumoxide::handler::HandlerConfig {
                viewport: None,
                ..Default::default()
            },
        )
        .await
        .expect("devtools");
        let pump = tokio::spawn(async move { while handler.next().await.is_some() {} });
        TestBrowser {
            browser,
            process,
            pump,
            _profiles: profiles,
        }
    }

    /// Opens a page at `url`, within 30 s.
    pub async fn page(&self, url: &str) -> chromiumoxide::Page {
        tokio::time::timeout(Duration::from_secs(30), self.browser.new_page(url))
            .await
            .expect("a page opens in time")
            .expect("a page")
    }

    pub async fn close(self) {
        drop(self.browser);
        self.pump.abort();
        self.process.kill().await;
    }
}

/// Until the spawned daemon at `base` (its log `daemon.log` in `dir`) has its browser ready,
/// for up to 90 s; its log's end on failure.
pub async fn ready(base: &str, dir: &tempfile::TempDir) {
    let start = std::time::Instant::now();
    while start.elapsed() < Duration::from_secs(90) {
        if let Ok(r) = reqwest::get(format!("{base}/readyz")).await {
            if let Ok(v) = r.json::<serde_json::Value>().await {
                if v["browsers_ready"].as_u64() == Some(1) {
                    return;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let log = std::fs::read_to_string(dir.path().join("daemon.log")).unwrap_or_default();
    let tail: Vec<&str> = log.lines().rev().take(40).collect();
    panic!(
        "the daemon at {base} never had its browser ready; its log ends:\n{}",
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    );
}
