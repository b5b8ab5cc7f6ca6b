//! Soak: 10,000 captures through one daemon; the memory of the daemon and its Chromium processes
//! at the end must be within 10 % of where it settled after the first 1,000.
//!
//! **What runs.** A private `redis-server` (free loopback port, temp dir, append-only with
//! `fsync always`, as production and the tests run it), a fixture site on 127.0.0.1:0 served by
//! this bench process, and the **real daemon binary** (`target/release/shotfarm serve`, the
//! `CARGO_BIN_EXE_shotfarm` cargo builds for the bench) with the default fleet and policies
//! (`FarmConfig::default()`: 2 browsers × 2 tabs, recycle after 1,000 captures per browser, PSS
//! cap 2 GiB), plus only what a loopback bench needs: egress to 127.0.0.0/8, a rate limit raised
//! out of the way, a private profile directory. The daemon runs as its own process, not
//! in-process through `app::run`, so its memory is the daemon's alone: this bench's HTTP client,
//! fixture server, connection pools and runtime are not in it.
//!
//! One account (operator code path, `ops::Operator`) funded for every capture, one API key;
//! captures are `GET /api/v1/screenshot` with `x-api-key`, `SOAK_CONCURRENCY` (default 6) in
//! flight, cycling through ten variants over five fixture pages: a tiny page, the 50 KB landing
//! page (also full page, webp), a gallery of PNG/JPEG images with an external stylesheet (jpeg
//! q80, and png at device scale 2), a page that allocates in JS (200 k objects, 5 MB of strings,
//! a canvas, 1,500 DOM nodes; webp, and png with the `js`, `dark_mode` and `hide_selectors`
//! options), and tall pages captured full page (5,000 px png; 9,000 px jpeg, which is taller
//! than `max_tile_height` and so is tiled and stitched in the daemon). Every response must be
//! 200 with an image of the asked format (magic bytes) and size; anything else is counted as a
//! failure by kind and printed. At the end the account's ledger is audited: `spent` must equal
//! the images received, no hold left open.
//!
//! **What is measured.** Every process of the daemon: the daemon itself, every descendant of it,
//! and every process whose command line names its profile directory (as the integration tests
//! find them; it catches a helper that was reparented), grouped by kind (daemon; Chromium browser, zygote, renderer, gpu, utility by sub-type,
//! crashpad). For each, RSS (`VmRSS` of `/proc/<pid>/status`) and PSS (`Pss` of
//! `/proc/<pid>/smaps_rollup`).
//!
//! **The criterion uses the PSS sum.** Chromium's processes share most of their pages (the
//! binary, V8's snapshot, fonts, the zygote's pre-forked heap): summing RSS counts each shared
//! page once per process, so the RSS sum follows how many renderers happen to be alive more than
//! how much memory the fleet holds (1.74 GB RSS vs 0.41 GB PSS for one browser, per
//! `farm/proc_tree`). PSS divides every shared page among its sharers, so the sum over all the
//! processes is the fleet's real footprint; it is also what the daemon's own `max_browser_memory_mb`
//! policy measures. The RSS sum is printed alongside.
//!
//! **When it is measured.** Captures run in batches of `SOAK_EVERY` (default 1,000). After each
//! batch the bench stops issuing, waits until nothing is queued or in flight and every browser
//! is ready, then until the process set and its PSS have been still for 3 s (the daemon opens
//! its spare contexts while idle), and samples: every checkpoint is taken in the same idle
//! state, so checkpoints compare like with like. One more sample, "hot", is taken half-way
//! through each batch under load, for information. A baseline is sampled before the first
//! capture. The reference ("settled") is the first checkpoint (after 1,000 captures); the
//! verdict is PASS when the last checkpoint's PSS sum is ≤ 1.10 × the reference's. A fall below
//! 0.90 × is reported, not failed (it is not a leak). Browsers recycle every ~2,000 captures of
//! the fleet (1,000 each), so checkpoints alternate between mid-life and fresh browsers; the
//! table shows the restarts, and the daemon process alone (which never restarts) has its own
//! ratio printed.
//!
//! Knobs: `SOAK_CAPTURES` (default 10000), `SOAK_EVERY` (1000), `SOAK_CONCURRENCY` (6),
//! `SOAK_RECYCLE_AFTER` (unset: the daemon's default; `0` turns recycling off to see Chromium's
//! own growth). The daemon inherits this bench's environment, so allocator settings can be
//! tried on it (`MALLOC_ARENA_MAX=2 cargo bench --bench soak`). Output: ratios of one run,
//! absolute MB alongside. Other jobs on the machine (tests, builds) change timings, not the
//! daemon's memory, but the load average is printed with each sample.

#[allow(dead_code)]
mod common;
use common::env_usize;
use testkit::process::ServeProcess;
use testkit::procfs::{kb_field, load_average};
use testkit::redis::{Persistence, RedisServer};

use std::collections::{BTreeMap, HashMap};
use std::io::Cursor;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail};
use warp::Filter;

const DEFAULT_CAPTURES: usize = 10_000;
const DEFAULT_EVERY: usize = 1_000;
const DEFAULT_CONCURRENCY: usize = 6;
/// End PSS / settled PSS must not exceed this.
const LIMIT: f64 = 1.10;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(90);
/// Abort early when this share of the captures so far failed (after at least 50 failures):
/// the run would not say anything about memory.
const ABORT_FAILURE_SHARE: f64 = 0.05;

fn mb(kb: u64) -> f64 {
    kb as f64 / 1024.0
}

// ---------------------------------------------------------------------------------------------
// Children: redis-server and the daemon
// ---------------------------------------------------------------------------------------------

/// The daemon binary, SIGKILLed on drop if not stopped (its browsers die by their own death
/// signal then).
struct DaemonProcess {
    server: ServeProcess,
    api: SocketAddr,
    metrics: SocketAddr,
}

impl DaemonProcess {
    fn spawn(redis_url: &str, log_dir: &Path) -> anyhow::Result<DaemonProcess> {
        let binary = Path::new(env!("CARGO_BIN_EXE_shotfarm"));
        let server = ServeProcess::spawn(binary, "soak", &log_dir.join("daemon.log"), |cmd| {
            cmd.args(["--redis-url", redis_url]);
            if let Ok(n) = std::env::var("SOAK_RECYCLE_AFTER") {
                cmd.env("SHOTFARM_FARM__RECYCLE_AFTER", n.trim());
            }
        })?;
        Ok(DaemonProcess {
            api: server.api,
            metrics: server.metrics,
            server,
        })
    }

    fn profiles(&self) -> &Path {
        self.server.profiles.path()
    }

    fn pid(&self) -> u32 {
        self.server.pid()
    }

    fn log_tail(&self) -> String {
        self.server.process.log_tail(20)
    }

    /// SIGTERM, then wait for the graceful exit (drain, browsers killed as groups).
    fn stop(&mut self) -> anyhow::Result<std::process::ExitStatus> {
        self.server.process.sigterm();
        self.server.process.wait_exit(Duration::from_secs(60))
    }
}

/// A funded account with an API key, made through the operator code path (before any tokio
/// runtime exists on this thread: `ops::block_on` starts its own actix system).
fn provision(redis_url: &str, credits: i64) -> anyhow::Result<(String, String)> {
    let config = testkit::accounts::on_redis(redis_url);
    let funded =
        testkit::accounts::provision(&config, "soak@bench.example", None, credits, "soak")?;
    Ok((funded.account, funded.key))
}

// ---------------------------------------------------------------------------------------------
// Fixture site
// ---------------------------------------------------------------------------------------------

const TINY: &str = "<!doctype html><html><head><meta charset=utf-8><title>tiny</title></head>\
<body style=\"font:16px sans-serif;margin:40px\"><h1>Hello</h1><p>A tiny page.</p></body></html>";

const GALLERY_CSS: &str = "body{margin:0;font:15px/1.5 sans-serif;background:#fafafa}\
header{padding:24px 40px;background:linear-gradient(90deg,#1e3a8a,#0ea5e9);color:#fff}\
.grid{display:grid;grid-template-columns:repeat(4,1fr);gap:16px;padding:24px 40px}\
figure{margin:0;background:#fff;border-radius:10px;box-shadow:0 4px 14px rgba(0,0,0,.12);overflow:hidden}\
figure img{display:block;width:100%;height:auto}figcaption{padding:8px 12px;color:#475569}\
.ad{position:fixed;right:16px;bottom:16px;width:200px;height:120px;background:#f43f5e;color:#fff}";

const JS_PAGE: &str = r#"<!doctype html><html><head><meta charset=utf-8><title>js</title>
<style>body{margin:0;font:14px sans-serif}#out{padding:16px 24px;font-size:22px}ul{columns:4;margin:0 24px}
.ad{position:absolute;top:8px;right:8px;width:160px;height:60px;background:#f59e0b}</style></head>
<body><div id="out">working</div><div class="ad">ad</div>
<script>
const objects = [];
for (let i = 0; i < 200000; i++) objects.push({ i, s: 'item-' + i, v: Math.sqrt(i) });
const strings = [];
for (let k = 0; k < 50; k++) strings.push('y'.repeat(100000) + k);
const canvas = document.createElement('canvas');
canvas.width = 1200; canvas.height = 500;
document.body.appendChild(canvas);
const g = canvas.getContext('2d');
for (let i = 0; i < 3000; i++) {
  g.fillStyle = 'hsl(' + (i % 360) + ',70%,50%)';
  g.fillRect((i * 37) % 1200, (i * 53) % 500, 40, 40);
}
const list = document.createElement('ul');
for (let i = 0; i < 1500; i++) {
  const li = document.createElement('li');
  li.textContent = objects[i * 7].s;
  list.appendChild(li);
}
document.body.appendChild(list);
window.__keep = [objects, strings];
document.getElementById('out').textContent =
  objects.length + ' objects, ' + strings.length + ' strings, ' + list.children.length + ' nodes';
</script></body></html>"#;

fn gallery_page() -> String {
    let mut html = String::from(
        "<!doctype html><html><head><meta charset=utf-8><title>gallery</title>\
         <link rel=stylesheet href=\"/gallery.css\"></head><body>\
         <header><h1>Gallery</h1></header><div class=grid>",
    );
    for i in 0..IMAGES {
        let ext = if i % 2 == 0 { "png" } else { "jpg" };
        html.push_str(&format!(
            "<figure><img src=\"/img/{i}.{ext}\" width=320 height=240><figcaption>Picture {i}</figcaption></figure>"
        ));
    }
    html.push_str("</div><div class=ad>advert</div></body></html>");
    html
}

fn tall_page(height: u32) -> String {
    let mut html = String::from(
        "<!doctype html><html><head><meta charset=utf-8><title>tall</title>\
         <style>body{margin:0;font:18px sans-serif}.band{height:500px;padding:24px;box-sizing:border-box}</style>\
         </head><body>",
    );
    for i in 0..height.div_ceil(500) {
        html.push_str(&format!(
            "<div class=band style=\"background:hsl({},60%,{}%)\"><h2>Band {i}</h2><p>{}</p></div>",
            (i * 47) % 360,
            40 + (i % 4) * 10,
            "Lorem ipsum dolor sit amet, consectetur adipiscing elit. ".repeat(6)
        ));
    }
    html.push_str("</body></html>");
    html
}

const IMAGES: usize = 8;

/// Noisy 320×240 pictures (so they do not compress to nothing), PNG for even indexes and JPEG
/// for odd ones.
fn gallery_images() -> anyhow::Result<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    let mut seed: u32 = 0x1234_5678;
    for i in 0..IMAGES {
        let img = image::RgbImage::from_fn(320, 240, |x, y| {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            let noise = (seed & 0x3f) as u8;
            image::Rgb([
                ((x * 255 / 320) as u8).wrapping_add(noise),
                ((y * 255 / 240) as u8).wrapping_add(noise / 2),
                ((i * 31) as u8).wrapping_add(noise),
            ])
        });
        let format = if i % 2 == 0 {
            image::ImageFormat::Png
        } else {
            image::ImageFormat::Jpeg
        };
        let mut bytes = Cursor::new(Vec::new());
        img.write_to(&mut bytes, format)?;
        out.push(bytes.into_inner());
    }
    Ok(out)
}

/// Serves the fixtures on 127.0.0.1:0 with `Cache-Control: no-store`.
async fn serve_fixtures() -> anyhow::Result<SocketAddr> {
    let landing: &'static str = Box::leak(common::landing_page().into_boxed_str());
    let gallery: &'static str = Box::leak(gallery_page().into_boxed_str());
    let images: &'static [Vec<u8>] = Box::leak(gallery_images()?.into_boxed_slice());
    let no_store =
        |body: warp::reply::Response| warp::reply::with_header(body, "cache-control", "no-store");
    use warp::Reply as _;
    let html = move |body: String| no_store(warp::reply::html(body).into_response());
    let routes = warp::path!("tiny")
        .map(move || html(TINY.to_string()))
        .or(warp::path!("landing").map(move || html(landing.to_string())))
        .unify()
        .or(warp::path!("gallery").map(move || html(gallery.to_string())))
        .unify()
        .or(warp::path!("js").map(move || html(JS_PAGE.to_string())))
        .unify()
        .or(warp::path!("tall")
            .and(warp::query::<HashMap<String, u32>>())
            .map(move |q: HashMap<String, u32>| {
                html(tall_page(q.get("h").copied().unwrap_or(5000).min(20_000)))
            }))
        .unify()
        .or(warp::path!("gallery.css").map(move || {
            no_store(
                warp::reply::with_header(GALLERY_CSS, "content-type", "text/css").into_response(),
            )
        }))
        .unify()
        .or(warp::path!("img" / String).map(move |name: String| {
            let index: Option<usize> = name.split('.').next().and_then(|n| n.parse().ok());
            match index.and_then(|i| images.get(i).map(|b| (i, b))) {
                Some((i, bytes)) => no_store(
                    warp::reply::with_header(
                        bytes.clone(),
                        "content-type",
                        if i % 2 == 0 {
                            "image/png"
                        } else {
                            "image/jpeg"
                        },
                    )
                    .into_response(),
                ),
                None => no_store(
                    warp::reply::with_status("no such image", warp::http::StatusCode::NOT_FOUND)
                        .into_response(),
                ),
            }
        }))
        .unify();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(warp::serve(routes).incoming(listener).run());
    Ok(addr)
}

// ---------------------------------------------------------------------------------------------
// The capture mix
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Format {
    Png,
    Jpeg,
    Webp,
}

struct Variant {
    name: &'static str,
    path: &'static str,
    params: &'static [(&'static str, &'static str)],
    format: Format,
    /// Expected image width; height at least this.
    width: u32,
    min_height: u32,
}

/// One request of each, in turn.
const MIX: &[Variant] = &[
    Variant {
        name: "tiny png",
        path: "/tiny",
        params: &[],
        format: Format::Png,
        width: 1280,
        min_height: 800,
    },
    Variant {
        name: "landing png",
        path: "/landing",
        params: &[],
        format: Format::Png,
        width: 1280,
        min_height: 800,
    },
    Variant {
        name: "gallery jpeg q80",
        path: "/gallery",
        params: &[("format", "jpeg"), ("quality", "80")],
        format: Format::Jpeg,
        width: 1280,
        min_height: 800,
    },
    Variant {
        name: "js webp",
        path: "/js",
        params: &[("format", "webp")],
        format: Format::Webp,
        width: 1280,
        min_height: 800,
    },
    Variant {
        name: "tiny jpeg 800x600",
        path: "/tiny",
        params: &[("format", "jpeg"), ("width", "800"), ("height", "600")],
        format: Format::Jpeg,
        width: 800,
        min_height: 600,
    },
    Variant {
        name: "landing full-page webp",
        path: "/landing",
        params: &[("format", "webp"), ("full_page", "true")],
        format: Format::Webp,
        width: 1280,
        min_height: 1600,
    },
    Variant {
        name: "tall 5000 full-page png",
        path: "/tall?h=5000",
        params: &[("full_page", "true")],
        format: Format::Png,
        width: 1280,
        min_height: 5000,
    },
    Variant {
        name: "gallery png @2x",
        path: "/gallery",
        params: &[("device_scale_factor", "2")],
        format: Format::Png,
        width: 2560,
        min_height: 1600,
    },
    Variant {
        name: "js png + js/dark/hide",
        path: "/js",
        params: &[
            ("dark_mode", "true"),
            ("hide_selectors", ".ad"),
            (
                "js",
                "window.__more = Array.from({length: 100000}, (_, i) => ({i})); \
                 document.body.appendChild(document.createTextNode(window.__more.length));",
            ),
        ],
        format: Format::Png,
        width: 1280,
        min_height: 800,
    },
    Variant {
        name: "tall 9000 full-page jpeg (tiled)",
        path: "/tall?h=9000",
        params: &[("full_page", "true"), ("format", "jpeg")],
        format: Format::Jpeg,
        width: 1280,
        min_height: 9000,
    },
];

fn format_ok(format: Format, bytes: &[u8]) -> bool {
    match format {
        Format::Png => bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
        Format::Jpeg => bytes.starts_with(&[0xff, 0xd8, 0xff]),
        Format::Webp => bytes.len() > 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP",
    }
}

#[derive(Default)]
struct Tally {
    ok: AtomicUsize,
    failed: AtomicUsize,
    /// Failures by kind, and the first few messages.
    kinds: Mutex<BTreeMap<String, usize>>,
    examples: Mutex<Vec<String>>,
    /// Per variant: successes, and their summed and longest client latency in seconds.
    per_variant: Mutex<BTreeMap<&'static str, (usize, f64, f64)>>,
}

impl Tally {
    fn fail(&self, kind: String, detail: String) {
        self.failed.fetch_add(1, Ordering::SeqCst);
        *self.kinds.lock().unwrap().entry(kind).or_default() += 1;
        let mut examples = self.examples.lock().unwrap();
        if examples.len() < 8 {
            examples.push(detail);
        }
    }
    fn done(&self) -> usize {
        self.ok.load(Ordering::SeqCst) + self.failed.load(Ordering::SeqCst)
    }
}

async fn capture(
    client: &reqwest::Client,
    api: SocketAddr,
    site: SocketAddr,
    index: usize,
    tally: &Tally,
) {
    let v = &MIX[index % MIX.len()];
    let page = format!("http://{site}{}", v.path);
    let mut params: Vec<(&str, &str)> = vec![("url", &page)];
    params.extend_from_slice(v.params);
    let url = match url::Url::parse_with_params(&format!("http://{api}/api/v1/screenshot"), &params)
    {
        Ok(url) => url,
        Err(e) => return tally.fail("bench url".into(), format!("#{index}: {e}")),
    };
    let started = Instant::now();
    let response = match client.get(url).send().await {
        Ok(r) => r,
        Err(e) => return tally.fail("transport".into(), format!("#{index} {}: {e}", v.name)),
    };
    let status = response.status();
    let header =
        |name: &str| -> Option<u32> { response.headers().get(name)?.to_str().ok()?.parse().ok() };
    let (width, height) = (header("x-image-width"), header("x-image-height"));
    let body = match response.bytes().await {
        Ok(b) => b,
        Err(e) => return tally.fail("transport".into(), format!("#{index} {}: {e}", v.name)),
    };
    if status != reqwest::StatusCode::OK {
        let code = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|j| j["error"]["code"].as_str().map(str::to_string))
            .unwrap_or_default();
        return tally.fail(
            format!("{} {code}", status.as_u16()),
            format!(
                "#{index} {}: {status} {}",
                v.name,
                String::from_utf8_lossy(&body[..body.len().min(300)])
            ),
        );
    }
    if !format_ok(v.format, &body) {
        return tally.fail(
            "wrong format".into(),
            format!(
                "#{index} {}: not {:?} ({} bytes)",
                v.name,
                v.format,
                body.len()
            ),
        );
    }
    if width != Some(v.width) || height.is_none_or(|h| h < v.min_height) {
        return tally.fail(
            "wrong size".into(),
            format!(
                "#{index} {}: {width:?}x{height:?}, expected {}x(>= {})",
                v.name, v.width, v.min_height
            ),
        );
    }
    tally.ok.fetch_add(1, Ordering::SeqCst);
    let seconds = started.elapsed().as_secs_f64();
    let mut per_variant = tally.per_variant.lock().unwrap();
    let entry = per_variant.entry(v.name).or_default();
    entry.0 += 1;
    entry.1 += seconds;
    entry.2 = entry.2.max(seconds);
}

// ---------------------------------------------------------------------------------------------
// Memory of the daemon's processes
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Default, Debug)]
struct Mem {
    count: usize,
    rss_kb: u64,
    pss_kb: u64,
}

impl Mem {
    fn add(&mut self, other: Mem) {
        self.count += other.count;
        self.rss_kb += other.rss_kb;
        self.pss_kb += other.pss_kb;
    }
}

#[derive(Clone, Debug)]
struct Sample {
    captures: usize,
    by_kind: BTreeMap<String, Mem>,
    /// Browser restarts so far, by reason (from the daemon's /metrics).
    restarts: BTreeMap<String, f64>,
    load: String,
    /// The daemon process's threads, anonymous and file-backed resident memory (kB).
    daemon_detail: (u64, u64, u64),
}

impl Sample {
    fn total(&self) -> Mem {
        let mut m = Mem::default();
        for v in self.by_kind.values() {
            m.add(*v);
        }
        m
    }
    fn daemon(&self) -> Mem {
        self.by_kind.get("daemon").copied().unwrap_or_default()
    }
    fn chromium(&self) -> Mem {
        let mut m = Mem::default();
        for (k, v) in &self.by_kind {
            if k != "daemon" {
                m.add(*v);
            }
        }
        m
    }
    fn restarts_total(&self) -> f64 {
        self.restarts.values().fold(0.0, |a, b| a + b)
    }
}

/// The arguments of a command line. Chromium's helpers rewrite theirs (one string, spaces
/// between the arguments, no NULs), so split on both.
fn args_of(cmdline: &str) -> impl Iterator<Item = &str> {
    cmdline.split(['\0', ' ']).filter(|a| !a.is_empty())
}

fn arg_value<'a>(cmdline: &'a str, flag: &str) -> Option<&'a str> {
    args_of(cmdline).find_map(|arg| arg.strip_prefix(flag))
}

fn kind_of(pid: u32, daemon: u32, cmdline: &str) -> String {
    if pid == daemon {
        return "daemon".into();
    }
    let exe = args_of(cmdline).next().unwrap_or_default();
    let name = exe.rsplit('/').next().unwrap_or(exe);
    if name.contains("crashpad") {
        return "crashpad".into();
    }
    if !name.contains("chrom") {
        return format!("other ({name})");
    }
    match arg_value(cmdline, "--type=") {
        None => "browser".into(),
        Some("gpu-process") => "gpu".into(),
        Some("utility") => {
            let sub = arg_value(cmdline, "--utility-sub-type=").unwrap_or("?");
            format!("utility:{}", sub.split('.').next().unwrap_or(sub))
        }
        Some(other) => other.to_string(),
    }
}

/// The daemon, its descendants, and every process naming its profile directory, by kind.
fn scan(daemon: u32, profile_dir: &Path) -> BTreeMap<String, Mem> {
    let needle = profile_dir.to_string_lossy();
    let mut out: BTreeMap<String, Mem> = BTreeMap::new();
    for (pid, stat) in testkit::procfs::tree(&[daemon], Some(&needle)) {
        if stat.zombie {
            continue;
        }
        let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
            continue;
        };
        let Some(rss_kb) = kb_field(&status, "VmRSS:") else {
            continue; // exited between the reads, or a kernel thread
        };
        let Some(pss_kb) = testkit::procfs::pss_kb(pid) else {
            continue;
        };
        let cmdline = testkit::procfs::cmdline(pid).unwrap_or_default();
        out.entry(kind_of(pid, daemon, &cmdline))
            .or_default()
            .add(Mem {
                count: 1,
                rss_kb,
                pss_kb,
            });
    }
    out
}

fn daemon_detail(pid: u32) -> (u64, u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let threads = status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    (
        threads,
        kb_field(&status, "RssAnon:").unwrap_or(0),
        kb_field(&status, "RssFile:").unwrap_or(0),
    )
}

async fn restarts(client: &reqwest::Client, metrics: SocketAddr) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    let Ok(text) = async {
        client
            .get(format!("http://{metrics}/metrics"))
            .send()
            .await?
            .text()
            .await
    }
    .await
    else {
        return out;
    };
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("shotfarm_browser_restarts_total{") else {
            continue;
        };
        let reason = rest
            .split("reason=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap_or("?")
            .to_string();
        if let Some(v) = line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) {
            *out.entry(reason).or_default() += v;
        }
    }
    out
}

async fn readyz(client: &reqwest::Client, api: SocketAddr) -> anyhow::Result<serde_json::Value> {
    Ok(client
        .get(format!("http://{api}/readyz"))
        .send()
        .await?
        .json()
        .await?)
}

/// Waits until the daemon is idle (nothing queued or in flight, every browser ready), then until
/// its process set and PSS are still for 3 s; samples.
async fn settle(
    client: &reqwest::Client,
    daemon: &DaemonProcess,
    captures: usize,
) -> anyhow::Result<Sample> {
    let start = Instant::now();
    loop {
        let r = readyz(client, daemon.api).await;
        if let Ok(r) = &r {
            let total = r["browsers_total"].as_u64().unwrap_or(0);
            if total > 0
                && r["browsers_ready"].as_u64() == Some(total)
                && r["in_flight"].as_u64() == Some(0)
                && r["queue_depth"].as_u64() == Some(0)
            {
                break;
            }
        }
        if start.elapsed() > Duration::from_secs(120) {
            bail!("the daemon did not become idle and ready within 120 s (last: {r:?})");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let quiet_since = Instant::now();
    let mut still = 0;
    let mut previous: Option<Mem> = None;
    let by_kind = loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let by_kind = scan(daemon.pid(), daemon.profiles());
        let mut total = Mem::default();
        for v in by_kind.values() {
            total.add(*v);
        }
        let steady = previous.is_some_and(|p| {
            p.count == total.count
                && (p.pss_kb as f64 - total.pss_kb as f64).abs() <= 0.005 * p.pss_kb as f64
        });
        still = if steady { still + 1 } else { 0 };
        previous = Some(total);
        if still >= 3 || quiet_since.elapsed() > Duration::from_secs(30) {
            break by_kind;
        }
    };
    Ok(Sample {
        captures,
        by_kind,
        restarts: restarts(client, daemon.metrics).await,
        load: load_average(),
        daemon_detail: daemon_detail(daemon.pid()),
    })
}

// ---------------------------------------------------------------------------------------------
// Main
// ---------------------------------------------------------------------------------------------

struct BatchResult {
    hot: Sample,
    seconds: f64,
}

/// Captures `[from, to)` with `concurrency` in flight; samples memory under load half-way.
#[allow(clippy::too_many_arguments)]
async fn batch(
    client: &reqwest::Client,
    daemon: &DaemonProcess,
    site: SocketAddr,
    tally: &Arc<Tally>,
    from: usize,
    to: usize,
    concurrency: usize,
) -> anyhow::Result<BatchResult> {
    let start = Instant::now();
    let next = Arc::new(AtomicUsize::new(from));
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (client, next, tally) = (client.clone(), next.clone(), tally.clone());
        let api = daemon.api;
        workers.push(tokio::spawn(async move {
            loop {
                let index = next.fetch_add(1, Ordering::SeqCst);
                if index >= to {
                    break;
                }
                capture(&client, api, site, index, &tally).await;
            }
        }));
    }
    let half = from + (to - from) / 2;
    let mut hot = None;
    loop {
        let done = tally.done();
        if hot.is_none() && done >= half {
            hot = Some(Sample {
                captures: done,
                by_kind: scan(daemon.pid(), daemon.profiles()),
                restarts: BTreeMap::new(),
                load: load_average(),
                daemon_detail: daemon_detail(daemon.pid()),
            });
        }
        let failed = tally.failed.load(Ordering::SeqCst);
        if failed >= 50 && failed as f64 > ABORT_FAILURE_SHARE * done as f64 {
            for w in &workers {
                w.abort();
            }
            bail!(
                "{failed} of {done} captures failed: {:?}; e.g. {:?}",
                tally.kinds.lock().unwrap(),
                tally.examples.lock().unwrap()
            );
        }
        if done >= to {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for w in workers {
        w.await?;
    }
    let seconds = start.elapsed().as_secs_f64();
    let hot = match hot {
        Some(h) => h,
        None => Sample {
            captures: to,
            by_kind: scan(daemon.pid(), daemon.profiles()),
            restarts: BTreeMap::new(),
            load: load_average(),
            daemon_detail: daemon_detail(daemon.pid()),
        },
    };
    Ok(BatchResult { hot, seconds })
}

fn print_row(s: &Sample, reference: Option<&Sample>, hot: Option<&Sample>, rate: Option<f64>) {
    let (t, d, c) = (s.total(), s.daemon(), s.chromium());
    let ratio = reference.map_or("—".to_string(), |r| {
        format!("{:.3}", t.pss_kb as f64 / r.total().pss_kb as f64)
    });
    let daemon_ratio = reference.map_or("—".to_string(), |r| {
        format!("{:.3}", d.pss_kb as f64 / r.daemon().pss_kb as f64)
    });
    println!(
        "| {:>6} | {:>5} | {:>6.1} / {:>6.1} | {:>7.1} / {:>6.1} | {:>7.1} / {:>6.1} | {:>9} | {:>9} | {:>8} | {:>11} | {:>5} | {:>14} |",
        s.captures,
        t.count,
        mb(d.rss_kb),
        mb(d.pss_kb),
        mb(c.rss_kb),
        mb(c.pss_kb),
        mb(t.rss_kb),
        mb(t.pss_kb),
        ratio,
        daemon_ratio,
        s.restarts_total(),
        hot.map_or("—".to_string(), |h| format!("{:.1}", mb(h.total().pss_kb))),
        rate.map_or("—".to_string(), |r| format!("{r:.2}")),
        s.load,
    );
}

fn print_breakdown(samples: &[(&str, &Sample)]) {
    let mut kinds: Vec<String> = Vec::new();
    for (_, s) in samples {
        for k in s.by_kind.keys() {
            if !kinds.contains(k) {
                kinds.push(k.clone());
            }
        }
    }
    kinds.sort();
    let mut header = String::from("| kind |");
    let mut rule = String::from("|---|");
    for (name, s) in samples {
        header.push_str(&format!(" {name} @{} n / RSS / PSS MB |", s.captures));
        rule.push_str("---|");
    }
    header.push_str(" PSS last − first MB |");
    rule.push_str("---|");
    println!("{header}");
    println!("{rule}");
    for k in kinds {
        let mut row = format!("| {k} |");
        for (_, s) in samples {
            let m = s.by_kind.get(&k).copied().unwrap_or_default();
            row.push_str(&format!(
                " {} / {:.1} / {:.1} |",
                m.count,
                mb(m.rss_kb),
                mb(m.pss_kb)
            ));
        }
        let pss = |s: &Sample| s.by_kind.get(&k).map_or(0, |m| m.pss_kb) as f64;
        if let (Some((_, first)), Some((_, last))) = (samples.first(), samples.last()) {
            row.push_str(&format!(" {:+.1} |", (pss(last) - pss(first)) / 1024.0));
        }
        println!("{row}");
    }
}

fn main() -> anyhow::Result<()> {
    if !common::invoked_by_cargo_bench() {
        return Ok(());
    }
    let captures = env_usize("SOAK_CAPTURES", DEFAULT_CAPTURES)?;
    let every = env_usize("SOAK_EVERY", DEFAULT_EVERY)?.max(1);
    let concurrency = env_usize("SOAK_CONCURRENCY", DEFAULT_CONCURRENCY)?.max(1);
    if captures < every {
        bail!("SOAK_CAPTURES ({captures}) must be at least SOAK_EVERY ({every})");
    }
    let bench_start = Instant::now();
    let logs = tempfile::Builder::new().prefix("soak-logs-").tempdir()?;
    // Children are forked from the main thread: their death signal follows it.
    let redis = RedisServer::start(Persistence::AppendOnly)?;
    let (account, key) = provision(&redis.url, captures as i64 + 100)?;
    let mut daemon = DaemonProcess::spawn(&redis.url, logs.path())?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let result = runtime.block_on(run(
        &daemon,
        &redis,
        &account,
        &key,
        captures,
        every,
        concurrency,
    ));
    if result.is_err() {
        eprintln!("daemon log (last lines):\n{}", daemon.log_tail());
    }
    let stopped = daemon.stop();
    let leftovers = scan(0, daemon.profiles());
    match stopped {
        Ok(status) => println!(
            "daemon stopped on SIGTERM: {status}; Chromium processes left: {}",
            leftovers.values().map(|m| m.count).sum::<usize>()
        ),
        Err(e) => println!("warning: {e:#}"),
    }
    println!(
        "total bench time: {:.1} min",
        bench_start.elapsed().as_secs_f64() / 60.0
    );
    result
}

async fn run(
    daemon: &DaemonProcess,
    redis_server: &RedisServer,
    account: &str,
    key: &str,
    captures: usize,
    every: usize,
    concurrency: usize,
) -> anyhow::Result<()> {
    let site = serve_fixtures().await?;
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert("x-api-key", reqwest::header::HeaderValue::from_str(key)?);
    let client = reqwest::Client::builder()
        .no_proxy()
        .default_headers(headers)
        .pool_max_idle_per_host(concurrency * 2)
        .timeout(REQUEST_TIMEOUT)
        .build()?;
    let start = Instant::now();
    loop {
        if let Ok(r) = readyz(&client, daemon.api).await {
            let total = r["browsers_total"].as_u64().unwrap_or(0);
            if total > 0 && r["browsers_ready"].as_u64() == Some(total) {
                break;
            }
        }
        if start.elapsed() > Duration::from_secs(60) {
            bail!("the daemon's browsers were not all ready within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!(
        "soak: {captures} captures, checkpoint every {every}, {concurrency} in flight; daemon pid {} ({}), fixtures on {site}; cores: {}; recycle_after: {}",
        daemon.pid(),
        env!("CARGO_BIN_EXE_shotfarm"),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        std::env::var("SOAK_RECYCLE_AFTER").unwrap_or_else(|_| format!(
            "{} (default)",
            shotfarm::config::FarmConfig::default().recycle_after
        )),
    );
    println!(
        "mix ({} variants, in turn): {}",
        MIX.len(),
        MIX.iter().map(|v| v.name).collect::<Vec<_>>().join(", ")
    );

    let tally = Arc::new(Tally::default());
    let baseline = settle(&client, daemon, 0).await?;
    eprintln!(
        "  baseline: {:.1} MB PSS in {} processes",
        mb(baseline.total().pss_kb),
        baseline.total().count
    );
    let mut checkpoints: Vec<Sample> = Vec::new();
    let mut hots: Vec<Sample> = Vec::new();
    let mut rates: Vec<f64> = Vec::new();
    let mut from = 0;
    while from < captures {
        let to = (from + every).min(captures);
        let result = batch(&client, daemon, site, &tally, from, to, concurrency).await?;
        let sample = settle(&client, daemon, to).await?;
        let rate = (to - from) as f64 / result.seconds;
        eprintln!(
            "  {to:>6}: {:.1} MB PSS ({:.1} MB RSS) in {} processes; under load {:.1} MB PSS; {:.2} captures/s; failed so far {}; restarts {}",
            mb(sample.total().pss_kb),
            mb(sample.total().rss_kb),
            sample.total().count,
            mb(result.hot.total().pss_kb),
            rate,
            tally.failed.load(Ordering::SeqCst),
            sample.restarts_total(),
        );
        checkpoints.push(sample);
        hots.push(result.hot);
        rates.push(rate);
        from = to;
    }

    // ---- ledger audit ---------------------------------------------------------------------
    let ok = tally.ok.load(Ordering::SeqCst);
    let failed = tally.failed.load(Ordering::SeqCst);
    let mut conn = redis::Client::open(redis_server.url.as_str())?
        .get_multiplexed_async_connection()
        .await?;
    let snapshot = shotfarm::ledger::store::snapshot(&mut conn, account)
        .await?
        .ok_or_else(|| anyhow!("no ledger for {account}"))?;
    let violations = shotfarm::ledger::audit::violations(&snapshot);

    // ---- report ---------------------------------------------------------------------------
    let reference = &checkpoints[0];
    let last = checkpoints.last().unwrap_or(reference);
    println!();
    println!(
        "memory of the daemon + its Chromium processes, sampled idle after each checkpoint (MB; PSS/ref = total PSS / total PSS after {}):",
        reference.captures
    );
    println!(
        "| {:>6} | {:>5} | {:>15} | {:>16} | {:>16} | {:>9} | {:>9} | {:>8} | {:>11} | {:>5} | {:>14} |",
        "after",
        "procs",
        "daemon RSS/PSS",
        "chromium RSS/PSS",
        "total RSS/PSS",
        "PSS/ref",
        "daemon/ref",
        "restarts",
        "hot PSS",
        "cap/s",
        "load avg"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    print_row(&baseline, None, None, None);
    for (i, s) in checkpoints.iter().enumerate() {
        print_row(s, Some(reference), Some(&hots[i]), Some(rates[i]));
    }
    println!();
    println!(
        "the daemon process (idle samples): threads, RssAnon MB (heap), RssFile MB (mapped files)"
    );
    for smp in std::iter::once(&baseline).chain(checkpoints.iter()) {
        let (threads, anon, file) = smp.daemon_detail;
        println!(
            "  after {:>6}: {threads:>3} threads, RssAnon {:>7.1}, RssFile {:>6.1}",
            smp.captures,
            mb(anon),
            mb(file)
        );
    }
    println!();
    println!("per process kind (count / RSS MB / PSS MB), idle samples:");
    let max = checkpoints
        .iter()
        .max_by_key(|s| s.total().pss_kb)
        .unwrap_or(reference);
    let mut columns: Vec<(&str, &Sample)> = vec![("baseline", &baseline), ("ref", reference)];
    if max.captures != reference.captures && max.captures != last.captures {
        columns.push(("max", max));
    }
    if last.captures != reference.captures {
        columns.push(("end", last));
    }
    print_breakdown(&columns);
    println!();
    println!("restarts by reason at the end: {:?}", last.restarts);
    println!(
        "captures: {ok} ok, {failed} failed{}",
        if failed == 0 { "" } else { " (see below)" }
    );
    for (kind, n) in tally.kinds.lock().unwrap().iter() {
        println!("  failure {kind}: {n}");
    }
    for e in tally.examples.lock().unwrap().iter() {
        println!("  e.g. {e}");
    }
    println!("per variant: ok, mean / max client latency (s, with {concurrency} in flight):");
    for (name, (n, sum, max)) in tally.per_variant.lock().unwrap().iter() {
        println!(
            "  {name:<34} {n:>6}  {:>6.2} / {max:>6.2}",
            sum / (*n).max(1) as f64
        );
    }
    let b = &snapshot.balance;
    let ledger_ok = violations.is_empty() && b.spent == ok as i64 && b.reserved == 0;
    println!(
        "ledger: spent {} (images received {ok}), reserved {}, available {}, {} open holds; invariants: {} -> {}",
        b.spent,
        b.reserved,
        b.available,
        snapshot.holds.len(),
        if violations.is_empty() {
            "hold".to_string()
        } else {
            format!("{violations:?}")
        },
        if ledger_ok { "PASS" } else { "FAIL" }
    );
    let ratio = last.total().pss_kb as f64 / reference.total().pss_kb as f64;
    let rss_ratio = last.total().rss_kb as f64 / reference.total().rss_kb as f64;
    let daemon_ratio = last.daemon().pss_kb as f64 / reference.daemon().pss_kb as f64;
    println!();
    println!(
        "daemon alone (never restarts): PSS end/ref {daemon_ratio:.3} ({:.1} -> {:.1} MB)",
        mb(reference.daemon().pss_kb),
        mb(last.daemon().pss_kb)
    );
    println!(
        "RSS sum end/ref (for information; counts shared pages once per process): {rss_ratio:.3}"
    );
    println!(
        "goal: PSS of daemon + Chromium after {} within {:.0} % of after {}: {:.1} -> {:.1} MB, end/ref {ratio:.3} -> {}{}",
        last.captures,
        (LIMIT - 1.0) * 100.0,
        reference.captures,
        mb(reference.total().pss_kb),
        mb(last.total().pss_kb),
        if ratio <= LIMIT { "PASS" } else { "FAIL" },
        if ratio < 2.0 - LIMIT {
            " (below the band: memory fell, not a leak)"
        } else {
            ""
        }
    );
    if failed > 0 {
        println!("note: {failed} captures failed; the goal wants ~0");
    }
    Ok(())
}
