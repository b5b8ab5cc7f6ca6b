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

#[allow(dead_code)]
mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use base64::Engine as _;
use chromiumoxide::cdp::browser_protocol::emulation::SetDeviceMetricsOverrideParams;
use chromiumoxide::cdp::browser_protocol::page::{
    CaptureScreenshotFormat, CaptureScreenshotParams,
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

/// A page in its own browser context (the daemon's `tab::prepare`).
async fn open_tab(browser: &Browser) -> anyhow::Result<Page> {
    Ok(shotfarm::farm::tab::prepare(browser).await?.page)
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
    if !common::invoked_by_cargo_bench() {
        return Ok(());
    }
    let bench_start = Instant::now();
    let landing: &'static str = Box::leak(common::landing_page().into_boxed_str());
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
