//! Does "Chromium's fast PNG + recompress in Rust" (`png_encoder = rust`) beat Chromium's default
//! PNG encoding on latency, bytes and throughput together?
//!
//! One warm Chromium with 2 tabs (each in its own browser context), pages served on loopback:
//! a ~50 KB landing page and a photo-like page (a canvas of gradients + grain drawn by inline JS,
//! at device resolution). Each page at 1280x800, device scale factor 1 and 2. The page is loaded
//! once per case; only the screenshot is timed.
//!
//! - (a) default: `captureScreenshot` PNG as Chromium encodes it by default.
//! - (b) fast:    `optimizeForSpeed: true`, as shipped by Chromium.
//! - (c) fast + `shotfarm::farm::encode::recompress_png` on `spawn_blocking` (what the daemon does with `png_encoder = rust`).
//!
//! Latency rounds interleave a/b/c on one tab; the throughput run uses 2 workers on 2 tabs.
//! Output: ratios of one run, absolute numbers alongside. `PNG_BENCH_SCALE=0.5` scales counts.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use base64::Engine as _;
use chromiumoxide::cdp::browser_protocol::emulation::SetDeviceMetricsOverrideParams;
use chromiumoxide::cdp::browser_protocol::page::{
    CaptureScreenshotFormat, CaptureScreenshotParams,
};
use chromiumoxide::cdp::browser_protocol::target::{
    CreateBrowserContextParams, CreateTargetParams,
};
use chromiumoxide::handler::HandlerConfig;
use chromiumoxide::{Browser, Page};
use futures::StreamExt;
use shotfarm::config::ChromiumConfig;
use shotfarm::farm::encode::recompress_png;
use shotfarm::farm::process::ChromiumProcess;
use warp::Filter;

const WIDTH: i64 = 1280;
const HEIGHT: i64 = 800;
const OP_TIMEOUT: Duration = Duration::from_secs(30);
const PNG_MAGIC: &[u8] = b"\x89PNG\r\n\x1a\n";

// ---------------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------------

/// Same generator as benches/capture_load.rs: a deterministic ~50 KB marketing-style page.
fn landing_page() -> String {
    const WORDS: &[&str] = &[
        "cloud",
        "render",
        "fleet",
        "browser",
        "capture",
        "pixel",
        "latency",
        "queue",
        "secure",
        "scale",
        "deploy",
        "team",
        "workflow",
        "insight",
        "metric",
        "archive",
        "preview",
        "social",
        "card",
        "thumbnail",
        "design",
        "quality",
        "reliable",
        "fast",
        "simple",
        "private",
        "api",
        "request",
        "response",
        "image",
        "format",
        "viewport",
        "screen",
        "daily",
        "monitor",
    ];
    let mut seed: u64 = 0x5eed_1234_abcd;
    let mut next = move || {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 33) as usize
    };
    let sentence = |n: usize, next: &mut dyn FnMut() -> usize| {
        let mut s = String::new();
        for i in 0..n {
            let w = WORDS[next() % WORDS.len()];
            if i == 0 {
                let mut c = w.chars();
                s.extend(c.next().map(|c| c.to_ascii_uppercase()));
                s.push_str(c.as_str());
            } else {
                s.push(' ');
                s.push_str(w);
            }
        }
        s.push('.');
        s
    };
    let mut html = String::with_capacity(56_000);
    html.push_str(
        r##"<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Acme Shots — screenshots at scale</title>
<style>
*{box-sizing:border-box}body{margin:0;font:16px/1.6 "DejaVu Sans",Arial,sans-serif;color:#1d2433;background:#f6f8fb}
header{display:flex;align-items:center;justify-content:space-between;padding:18px 48px;background:#fff;box-shadow:0 1px 4px rgba(0,0,0,.08)}
header nav a{margin-left:24px;color:#3b4a66;text-decoration:none;font-weight:600}
.hero{padding:72px 48px;background:linear-gradient(135deg,#4f46e5 0%,#06b6d4 60%,#22c55e 100%);color:#fff}
.hero h1{font-size:48px;line-height:1.1;margin:0 0 16px}.hero p{font-size:20px;max-width:720px;opacity:.92}
.btn{display:inline-block;padding:12px 22px;border-radius:8px;background:#fff;color:#4f46e5;font-weight:700;margin-right:12px}
.btn.ghost{background:transparent;color:#fff;border:2px solid rgba(255,255,255,.7)}
.cards{display:grid;grid-template-columns:repeat(3,1fr);gap:24px;padding:48px}
.card{background:#fff;border-radius:14px;padding:24px;box-shadow:0 6px 18px rgba(31,41,55,.08);border-top:4px solid var(--c)}
.card h3{margin:12px 0 8px}.card p{color:#526079;font-size:15px}
section{padding:32px 48px;max-width:1100px}section h2{font-size:30px;margin:0 0 12px;color:#111827}
section p{color:#39465e}.quote{border-left:4px solid #06b6d4;padding:12px 20px;background:#ecfeff;border-radius:0 10px 10px 0;font-style:italic}
table{border-collapse:collapse;width:100%;margin:16px 0;background:#fff}th,td{padding:10px 14px;border-bottom:1px solid #e5e7eb;text-align:left}
th{background:#f1f5f9}.badge{display:inline-block;padding:2px 10px;border-radius:999px;background:#eef2ff;color:#4338ca;font-size:13px}
footer{padding:40px 48px;background:#0f172a;color:#cbd5e1}footer a{color:#93c5fd}
</style></head><body>
<header><strong style="font-size:22px;color:#4f46e5">&#9673; Acme Shots</strong><nav><a href="#">Product</a><a href="#">Pricing</a><a href="#">Docs</a><a href="#">Blog</a><a href="#">Sign in</a></nav></header>
<div class="hero"><h1>Pixel-perfect screenshots of any page, at fleet scale</h1>
<p>"##,
    );
    html.push_str(&sentence(28, &mut next));
    html.push_str(r#"</p><p><span class="btn">Start free</span><span class="btn ghost">Read the docs</span></p></div>"#);
    let colors = [
        "#4f46e5", "#06b6d4", "#22c55e", "#f59e0b", "#ef4444", "#8b5cf6",
    ];
    html.push_str(r#"<div class="cards">"#);
    for (i, c) in colors.iter().enumerate() {
        html.push_str(&format!(
            r#"<div class="card" style="--c:{c}"><svg width="56" height="56" viewBox="0 0 56 56"><rect rx="12" width="56" height="56" fill="{c}" opacity=".15"/><circle cx="28" cy="28" r="{r}" fill="{c}"/><path d="M14 40 L28 16 L42 40 Z" fill="none" stroke="white" stroke-width="3"/></svg><h3>{title}</h3><p>{body}</p></div>"#,
            r = 10 + i * 2,
            title = sentence(3, &mut next),
            body = sentence(30, &mut next),
        ));
    }
    html.push_str("</div>");
    let mut section = 0;
    while html.len() < 48_000 {
        section += 1;
        html.push_str(&format!("<section><h2>{}</h2>", sentence(5, &mut next)));
        for _ in 0..3 {
            html.push_str(&format!("<p>{}</p>", sentence(60, &mut next)));
        }
        if section % 2 == 0 {
            html.push_str(&format!(
                r#"<p class="quote">{}</p>"#,
                sentence(24, &mut next)
            ));
        } else {
            html.push_str(
                "<table><tr><th>Plan</th><th>Captures / month</th><th>Price</th><th></th></tr>",
            );
            for (j, plan) in ["Hobby", "Team", "Business", "Enterprise"]
                .iter()
                .enumerate()
            {
                html.push_str(&format!(
                    r#"<tr><td>{plan}</td><td>{}</td><td>${}</td><td><span class="badge">{}</span></td></tr>"#,
                    (j + 1) * 10_000,
                    (j + 1) * 29,
                    sentence(2, &mut next)
                ));
            }
            html.push_str("</table>");
        }
        html.push_str(&format!(
            r#"<svg width="1000" height="80" viewBox="0 0 1000 80"><defs><linearGradient id="g{section}" x1="0" x2="1"><stop offset="0" stop-color="{}"/><stop offset="1" stop-color="{}"/></linearGradient></defs><rect width="1000" height="80" rx="10" fill="url(#g{section})"/><polyline points="0,60 120,30 260,50 400,12 560,44 700,20 860,52 1000,26" fill="none" stroke="white" stroke-width="3"/></svg>"#,
            colors[section % colors.len()],
            colors[(section + 2) % colors.len()]
        ));
        html.push_str("</section>");
    }
    html.push_str(r##"<footer><p>&copy; Acme Shots. <a href="#">Privacy</a> · <a href="#">Terms</a> · <a href="#">Status</a></p></footer></body></html>"##);
    html
}

/// A photo-like page: a full-viewport canvas at device resolution with smooth colour fields
/// (sky-like gradient, soft "hills", a vignette) plus seeded per-pixel grain, drawn
/// synchronously before `load`. Deterministic, so every capture encodes the same pixels.
const PHOTO_PAGE: &str = r#"<!doctype html><html><head><meta charset="utf-8"><title>photo</title>
<style>html,body{margin:0;height:100%;overflow:hidden;background:#000}canvas{display:block;width:100vw;height:100vh}</style>
</head><body><canvas id="c"></canvas><script>
(function () {
  const dpr = window.devicePixelRatio || 1;
  const W = Math.round(innerWidth * dpr), H = Math.round(innerHeight * dpr);
  const c = document.getElementById('c'); c.width = W; c.height = H;
  const ctx = c.getContext('2d');
  const img = ctx.createImageData(W, H); const d = img.data;
  let s = 0x9e3779b9 >>> 0;
  const rnd = () => { s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0; return s / 4294967296; };
  for (let y = 0; y < H; y++) {
    const v = y / H;
    const hill = 0.62 + 0.08 * Math.sin(v * 9.0);
    for (let x = 0; x < W; x++) {
      const u = x / W;
      const ridge = hill + 0.05 * Math.sin(u * 11.0 + 1.3) + 0.03 * Math.sin(u * 37.0);
      let r, g, b;
      if (v < ridge) { // sky
        r = 70 + 120 * v + 40 * u; g = 120 + 90 * v; b = 200 - 40 * v + 30 * Math.sin(u * 3.0);
        const sun = Math.exp(-((u - 0.72) ** 2 + (v - 0.25) ** 2) * 60); r += 120 * sun; g += 90 * sun; b += 30 * sun;
      } else { // land
        const t = (v - ridge) / (1 - ridge + 1e-6);
        r = 60 + 50 * t + 30 * Math.sin(u * 23.0 + v * 7.0); g = 90 + 40 * Math.sin(u * 5.0) - 30 * t; b = 40 + 20 * t;
      }
      const vig = 1 - 0.35 * ((u - 0.5) ** 2 + (v - 0.5) ** 2) * 2;
      const n = (rnd() - 0.5) * 18;
      const i = (y * W + x) * 4;
      d[i] = r * vig + n; d[i + 1] = g * vig + n; d[i + 2] = b * vig + n; d[i + 3] = 255;
    }
  }
  ctx.putImageData(img, 0, 0);
})();
</script></body></html>"#;

async fn serve_fixtures(landing: &'static str) -> anyhow::Result<std::net::SocketAddr> {
    let routes = warp::path!("landing")
        .map(move || warp::reply::html(landing))
        .or(warp::path!("photo").map(|| warp::reply::html(PHOTO_PAGE)));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(warp::serve(routes).incoming(listener).run());
    Ok(addr)
}

// ---------------------------------------------------------------------------------------------
// Chromium
// ---------------------------------------------------------------------------------------------

async fn open_tab(browser: &Browser) -> anyhow::Result<Page> {
    let context = browser
        .create_browser_context(CreateBrowserContextParams::default())
        .await?;
    let page = browser
        .new_page(CreateTargetParams {
            browser_context_id: Some(context),
            ..CreateTargetParams::new("about:blank")
        })
        .await?;
    Ok(page)
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    /// (a) Chromium's default PNG.
    Default,
    /// (b) Chromium's optimizeForSpeed PNG.
    Fast,
    /// (c) fast + recompress in Rust.
    FastRust,
}

struct Shot {
    bytes: Vec<u8>,
    /// The `captureScreenshot` call, base64 decoding included.
    capture: Duration,
    /// Rust recompression (zero for a and b).
    recompress: Duration,
}

impl Shot {
    fn total(&self) -> Duration {
        self.capture + self.recompress
    }
}

async fn chromium_png(page: &Page, fast: bool) -> anyhow::Result<Vec<u8>> {
    let params = CaptureScreenshotParams {
        format: Some(CaptureScreenshotFormat::Png),
        optimize_for_speed: fast.then_some(true),
        ..Default::default()
    };
    let data = page.execute(params).await?.result.data;
    let bytes = base64::engine::general_purpose::STANDARD.decode(AsRef::<str>::as_ref(&data))?;
    if !bytes.starts_with(PNG_MAGIC) {
        bail!("Chromium returned no PNG");
    }
    Ok(bytes)
}

async fn shoot(page: &Page, mode: Mode) -> anyhow::Result<Shot> {
    let op = async {
        let t = Instant::now();
        let bytes = chromium_png(page, mode != Mode::Default).await?;
        let capture = t.elapsed();
        if mode != Mode::FastRust {
            return Ok(Shot {
                bytes,
                capture,
                recompress: Duration::ZERO,
            });
        }
        let t = Instant::now();
        let bytes = tokio::task::spawn_blocking(move || recompress_png(&bytes)).await??;
        Ok(Shot {
            bytes,
            capture,
            recompress: t.elapsed(),
        })
    };
    tokio::time::timeout(OP_TIMEOUT, op)
        .await
        .context("a capture took longer than 30 s")?
}

// ---------------------------------------------------------------------------------------------
// Stats
// ---------------------------------------------------------------------------------------------

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[(v.len() - 1) / 2]
}

#[derive(Default)]
struct Samples {
    capture: Vec<Duration>,
    recompress: Vec<Duration>,
    total: Vec<Duration>,
    bytes: Vec<usize>,
}

impl Samples {
    fn push(&mut self, s: &Shot) {
        self.capture.push(s.capture);
        self.recompress.push(s.recompress);
        self.total.push(s.total());
        self.bytes.push(s.bytes.len());
    }
    fn p50(&self) -> Duration {
        median(self.total.clone())
    }
    fn mean_bytes(&self) -> f64 {
        self.bytes.iter().sum::<usize>() as f64 / self.bytes.len() as f64
    }
}

/// `count` captures by 2 workers on 2 tabs; captures per second.
async fn throughput(tabs: &[Arc<Page>], mode: Mode, count: usize) -> anyhow::Result<f64> {
    let remaining = Arc::new(AtomicUsize::new(count));
    let start = Instant::now();
    let mut workers = Vec::new();
    for tab in tabs {
        let (tab, remaining) = (tab.clone(), remaining.clone());
        workers.push(tokio::spawn(async move {
            while remaining
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
            {
                shoot(&tab, mode).await?;
            }
            Ok::<_, anyhow::Error>(())
        }));
    }
    for w in workers {
        w.await??;
    }
    Ok(count as f64 / start.elapsed().as_secs_f64())
}

fn scaled(n: usize) -> usize {
    let scale: f64 = std::env::var("PNG_BENCH_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0);
    ((n as f64 * scale).round() as usize).max(3)
}

struct CaseResult {
    name: String,
    lat: f64,
    bytes: f64,
    thr: f64,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    // `cargo bench` passes `--bench`. `cargo test --all-targets` runs bench binaries without it:
    // there, only check that the bench builds, and do not spend minutes measuring.
    if !std::env::args().any(|a| a == "--bench") {
        println!("benchmark skipped: run it with `cargo bench` (or `make bench`)");
        return Ok(());
    }
    let bench_start = Instant::now();
    let landing: &'static str = Box::leak(landing_page().into_boxed_str());
    let fixtures = serve_fixtures(landing).await?;
    let profiles = tempfile::tempdir()?;
    let chromium = ChromiumConfig {
        profile_dir: profiles.path().to_path_buf(),
        ..ChromiumConfig::default()
    };
    let process = ChromiumProcess::launch(&chromium, "pngbench").await?;
    let (browser, mut handler) = Browser::connect_with_config(
        process.ws_url.clone(),
        HandlerConfig {
            viewport: None,
            ..Default::default()
        },
    )
    .await?;
    let handler = tokio::spawn(async move { while handler.next().await.is_some() {} });
    let tabs = vec![
        Arc::new(open_tab(&browser).await?),
        Arc::new(open_tab(&browser).await?),
    ];

    let rounds = scaled(30);
    let thr_count = scaled(16);
    println!(
        "png_encoding: 1 Chromium, 2 tabs (own contexts); {rounds} interleaved latency rounds per case, throughput {thr_count} captures x 2 workers; cores: {}",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!("(a) = Chromium default PNG, (b) = Chromium optimizeForSpeed PNG, (c) = (b) + shotfarm recompress_png on spawn_blocking");
    println!("latency = captureScreenshot (+ recompress for c), p50 over the rounds; bytes = mean");

    let cases = [
        ("landing", 1.0),
        ("landing", 2.0),
        ("photo", 1.0),
        ("photo", 2.0),
    ];
    let mut results = Vec::new();
    let mut pixel_checks = Vec::new();
    for (page_name, dsf) in cases {
        let url = format!("http://{fixtures}/{page_name}");
        for tab in &tabs {
            tab.execute(SetDeviceMetricsOverrideParams::new(
                WIDTH, HEIGHT, dsf, false,
            ))
            .await?;
            tab.goto(url.as_str()).await?;
        }
        // Warm-up: every mode on every tab.
        for tab in &tabs {
            for mode in [Mode::Default, Mode::Fast, Mode::FastRust] {
                shoot(tab, mode).await?;
            }
        }
        // Pixels: recompressed must decode to exactly the fast PNG's pixels (and, for
        // information, to the default PNG's pixels too).
        let fast = chromium_png(&tabs[0], true).await?;
        let default = chromium_png(&tabs[0], false).await?;
        let recompressed = {
            let fast = fast.clone();
            tokio::task::spawn_blocking(move || recompress_png(&fast)).await??
        };
        let fast_px = image::load_from_memory(&fast)?.to_rgba8();
        let rec_px = image::load_from_memory(&recompressed)?.to_rgba8();
        let def_px = image::load_from_memory(&default)?.to_rgba8();
        pixel_checks.push(format!(
            "{page_name} dsf {dsf}: {}x{} recompressed == fast: {}; default == fast: {}",
            fast_px.width(),
            fast_px.height(),
            if rec_px == fast_px {
                "identical"
            } else {
                "DIFFERENT"
            },
            if def_px == fast_px {
                "identical"
            } else {
                "different"
            },
        ));

        let mut samples = [Samples::default(), Samples::default(), Samples::default()];
        let modes = [Mode::Default, Mode::Fast, Mode::FastRust];
        for round in 0..rounds {
            for k in 0..3 {
                let i = (round + k) % 3; // rotate the order to spread any drift
                let shot = shoot(&tabs[0], modes[i]).await?;
                samples[i].push(&shot);
            }
        }
        let thr_a = throughput(&tabs, Mode::Default, thr_count).await?;
        let thr_c = throughput(&tabs, Mode::FastRust, thr_count).await?;

        let name = format!("{page_name} 1280x800 dsf {dsf}");
        println!();
        println!("{name}");
        println!(
            "  {:<22} {:>9} {:>9} {:>9} {:>10} {:>9}",
            "mode", "p50 ms", "capt ms", "recmp ms", "bytes", "thr/s"
        );
        for (i, label) in ["(a) default", "(b) fast", "(c) fast + rust"]
            .iter()
            .enumerate()
        {
            let s = &samples[i];
            let thr = match i {
                0 => format!("{thr_a:.2}"),
                2 => format!("{thr_c:.2}"),
                _ => "-".into(),
            };
            println!(
                "  {:<22} {:>9.1} {:>9.1} {:>9.1} {:>10.0} {:>9}",
                label,
                ms(s.p50()),
                ms(median(s.capture.clone())),
                ms(median(s.recompress.clone())),
                s.mean_bytes(),
                thr
            );
        }
        let lat = ms(samples[2].p50()) / ms(samples[0].p50());
        let bytes = samples[2].mean_bytes() / samples[0].mean_bytes();
        let thr = thr_c / thr_a;
        println!(
            "  ratios (c)/(a): latency {lat:.3}  bytes {bytes:.3}  throughput {thr:.3}   [(b)/(a): latency {:.3} bytes {:.3}]",
            ms(samples[1].p50()) / ms(samples[0].p50()),
            samples[1].mean_bytes() / samples[0].mean_bytes()
        );
        println!("  verdict: {}", verdict(lat, bytes, thr));
        results.push(CaseResult {
            name,
            lat,
            bytes,
            thr,
        });
    }

    println!();
    println!("pixel checks (image::load_from_memory):");
    for line in &pixel_checks {
        println!("  {line}");
    }
    println!();
    println!("summary, (c)/(a) — rust wins when latency < 1, bytes <= 1, throughput > 1:");
    for r in &results {
        println!(
            "  {:<26} latency {:.3}  bytes {:.3}  throughput {:.3}  -> {}",
            r.name,
            r.lat,
            r.bytes,
            r.thr,
            verdict(r.lat, r.bytes, r.thr)
        );
    }
    let all = results
        .iter()
        .all(|r| r.lat < 1.0 && r.bytes <= 1.0 && r.thr > 1.0);
    println!(
        "overall: {}",
        if all {
            "rust wins on all three in every case".to_string()
        } else {
            let losing: Vec<&str> = results
                .iter()
                .filter(|r| !(r.lat < 1.0 && r.bytes <= 1.0 && r.thr > 1.0))
                .map(|r| r.name.as_str())
                .collect();
            format!("rust does NOT win on all three in: {}", losing.join(", "))
        }
    );

    drop(tabs);
    drop(browser);
    handler.abort();
    process.kill().await;
    println!(
        "total bench time: {:.1} s",
        bench_start.elapsed().as_secs_f64()
    );
    Ok(())
}

fn verdict(lat: f64, bytes: f64, thr: f64) -> String {
    let mut lost = Vec::new();
    if lat >= 1.0 {
        lost.push("latency");
    }
    if bytes > 1.0 {
        lost.push("bytes");
    }
    if thr <= 1.0 {
        lost.push("throughput");
    }
    if lost.is_empty() {
        "rust wins on all three".into()
    } else {
        format!("rust loses on {}", lost.join(" and "))
    }
}
