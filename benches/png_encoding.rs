//! Our PNG pipeline against Chromium's default PNG, per capture: bytes, CPU, latency,
//! throughput, and pixel identity.
//!
//! - **default**: `captureScreenshot` PNG as Chromium encodes it by default.
//! - **ours**: what the daemon does: `optimizeForSpeed: true`, then
//!   `shotfarm::farm::encode::recompress_png` on `spawn_blocking` (png crate, zlib-rs level 6,
//!   adaptive filters, a level-9 retry for outputs up to 16 KiB, opaque RGBA written as RGB).
//!
//! One warm Chromium (the headless shell, `Engine::HeadlessShell`, unless
//! `PNG_BENCH_ENGINE=chromium`), 2 tabs each in its own browser context, pages served on
//! loopback: a ~50 KB landing page, a photo-like page (gradients + grain drawn on a canvas at
//! device resolution) and a tiny page. Each at 1280x800, device scale factor 1 and 2. A page is
//! loaded once per case; only screenshots are measured.
//!
//! Each case runs rounds until its time budget (20 s x `PNG_BENCH_SCALE`, at least 2 rounds) is
//! spent. A round runs both modes, the first mode alternating from one round to the next so load
//! drift hits both alike; per mode: 3 sequential captures on one tab (latency), then a burst of
//! 2 captures on each of the 2 tabs at once (throughput).
//!
//! - **bytes**: mean PNG size, ours / default; must be <= 1.0 (PASS/FAIL per row).
//! - **CPU per capture**: Chromium's process-tree CPU (utime + stime + cutime + cstime of the
//!   browser and all its descendants and process-group members, `/proc/<pid>/stat`) read before
//!   and after each mode's share of a round, summed over the rounds, / captures. Ours adds the
//!   recompression's own CPU, read with `clock_gettime(CLOCK_THREAD_CPUTIME_ID)` on the blocking
//!   thread that runs it. This process's CDP receive and base64 decoding are left out of both.
//!   `/proc` counts in clock ticks (10 ms): the longer the budget, the smaller that error.
//! - **latency**: p50 of the sequential captures (ours = fast capture + recompression).
//! - **throughput**: captures per second of the 2-tab bursts.
//! - **pixels**: the last default PNG and the last output of ours (and the fast PNG it came
//!   from) decoded to RGBA8 with the `image` crate must be identical.
//!
//! The bench fails (non-zero exit, after the table) if any row's bytes ratio is above 1.0 or any
//! pixels differ. Run: `cargo bench --bench png_encoding` (about 2.5 minutes);
//! `PNG_BENCH_SCALE=0.25 cargo bench --bench png_encoding` for a quick check.

#[allow(dead_code)]
mod common;
use testkit::procfs::{clock_ticks, load_average};

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
use shotfarm::config::{ChromiumConfig, Engine};
use shotfarm::farm::encode::recompress_png;
use shotfarm::farm::process::ChromiumProcess;
use warp::Filter;

const WIDTH: i64 = 1280;
const HEIGHT: i64 = 800;
const OP_TIMEOUT: Duration = Duration::from_secs(30);
const PNG_MAGIC: &[u8] = b"\x89PNG\r\n\x1a\n";
/// Sequential captures per mode per round (latency samples).
const SEQUENTIAL: usize = 3;
/// Captures per tab per mode per round in the 2-tab burst (throughput).
const BURST_PER_TAB: usize = 2;
/// Measuring time per case at `PNG_BENCH_SCALE=1`.
const CASE_BUDGET: Duration = Duration::from_secs(20);
const MIN_ROUNDS: usize = 2;

// ---------------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------------

const TINY_PAGE: &str = r#"<!doctype html><html><head><meta charset=utf-8><title>tiny</title></head><body style="font:16px sans-serif;margin:40px"><h1>Hello</h1><p>A tiny page for the capture bench.</p></body></html>"#;

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
        .or(warp::path!("photo").map(|| warp::reply::html(PHOTO_PAGE)))
        .or(warp::path!("tiny").map(|| warp::reply::html(TINY_PAGE)));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(warp::serve(routes).incoming(listener).run());
    Ok(addr)
}

// ---------------------------------------------------------------------------------------------
// CPU accounting
// ---------------------------------------------------------------------------------------------

/// CPU seconds used so far by `root`, its descendants (by ppid links) and the members of its
/// process group (Chromium is launched as a group leader), zombies included.
fn tree_cpu_secs(root: u32) -> f64 {
    let all = testkit::procfs::process_table();
    let seeds: Vec<u32> = all
        .iter()
        .filter(|(pid, s)| **pid == root || s.pgrp == root)
        .map(|(pid, _)| *pid)
        .collect();
    let ticks: u64 = testkit::procfs::descendants(&all, seeds)
        .iter()
        .filter_map(|p| all.get(p))
        .map(|s| s.cpu_ticks + s.reaped_ticks)
        .sum();
    ticks as f64 / clock_ticks()
}

/// CPU time of the calling thread.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

// ---------------------------------------------------------------------------------------------
// Captures
// ---------------------------------------------------------------------------------------------

/// A page in its own browser context (the daemon's `tab::prepare`).
async fn open_tab(browser: &Browser) -> anyhow::Result<Page> {
    Ok(shotfarm::farm::tab::prepare(browser).await?.page)
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    /// Chromium's default PNG.
    Default,
    /// Chromium's optimizeForSpeed PNG + `recompress_png`.
    Ours,
}

struct Shot {
    bytes: Vec<u8>,
    /// Ours: the fast PNG the output was made from.
    source: Option<Vec<u8>>,
    /// `captureScreenshot` (base64 decoding included) + recompression for ours.
    wall: Duration,
    /// Thread CPU of the recompression (zero for default).
    recompress_cpu: Duration,
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
        let png = chromium_png(page, mode == Mode::Ours).await?;
        if mode == Mode::Default {
            return Ok(Shot {
                bytes: png,
                source: None,
                wall: t.elapsed(),
                recompress_cpu: Duration::ZERO,
            });
        }
        let (bytes, cpu, source) = tokio::task::spawn_blocking(move || {
            let before = thread_cpu();
            let out = recompress_png(&png);
            (out, thread_cpu().saturating_sub(before), png)
        })
        .await?;
        Ok(Shot {
            bytes: bytes?,
            source: Some(source),
            wall: t.elapsed(),
            recompress_cpu: cpu,
        })
    };
    tokio::time::timeout(OP_TIMEOUT, op)
        .await
        .context("a capture took longer than 30 s")?
}

/// One mode's measurements in one case.
#[derive(Default)]
struct Tally {
    latency: Vec<Duration>,
    captures: usize,
    bytes: u64,
    source_bytes: u64,
    chromium_cpu: f64,
    recompress_cpu: Duration,
    burst_captures: usize,
    burst_wall: Duration,
    /// The last sequential shot, for the pixel check.
    last: Option<Shot>,
}

impl Tally {
    fn add(&mut self, shot: &Shot) {
        self.captures += 1;
        self.bytes += shot.bytes.len() as u64;
        self.source_bytes += shot.source.as_ref().map_or(0, |s| s.len() as u64);
        self.recompress_cpu += shot.recompress_cpu;
    }
    fn mean_bytes(&self) -> f64 {
        self.bytes as f64 / self.captures as f64
    }
    fn mean_source_bytes(&self) -> f64 {
        self.source_bytes as f64 / self.captures as f64
    }
    /// (Chromium's, ours) CPU seconds per capture.
    fn cpu_split(&self) -> (f64, f64) {
        let n = self.captures as f64;
        (self.chromium_cpu / n, self.recompress_cpu.as_secs_f64() / n)
    }
    fn cpu(&self) -> f64 {
        let (chromium, own) = self.cpu_split();
        chromium + own
    }
    fn p50(&self) -> Duration {
        let mut v = self.latency.clone();
        v.sort();
        v[(v.len() - 1) / 2]
    }
    fn throughput(&self) -> f64 {
        self.burst_captures as f64 / self.burst_wall.as_secs_f64()
    }
}

/// One mode's share of a round: sequential captures on the first tab, then a burst on all tabs,
/// with Chromium's tree CPU read around the whole.
async fn run_mode(
    browser_pid: u32,
    tabs: &[Page],
    mode: Mode,
    tally: &mut Tally,
) -> anyhow::Result<()> {
    let cpu_before = tree_cpu_secs(browser_pid);
    for _ in 0..SEQUENTIAL {
        let shot = shoot(&tabs[0], mode).await?;
        tally.latency.push(shot.wall);
        tally.add(&shot);
        tally.last = Some(shot);
    }
    let start = Instant::now();
    let bursts = tabs.iter().map(|tab| async move {
        let mut shots = Vec::with_capacity(BURST_PER_TAB);
        for _ in 0..BURST_PER_TAB {
            shots.push(shoot(tab, mode).await?);
        }
        Ok::<_, anyhow::Error>(shots)
    });
    let results = futures::future::try_join_all(bursts).await?;
    tally.burst_wall += start.elapsed();
    tally.chromium_cpu += tree_cpu_secs(browser_pid) - cpu_before;
    for shot in results.iter().flatten() {
        tally.burst_captures += 1;
        tally.add(shot);
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Pixels
// ---------------------------------------------------------------------------------------------

fn rgba(png: &[u8]) -> anyhow::Result<image::RgbaImage> {
    Ok(image::load_from_memory_with_format(png, image::ImageFormat::Png)?.to_rgba8())
}

/// `None` when identical, else what differs.
fn pixel_difference(a: &image::RgbaImage, b: &image::RgbaImage) -> Option<String> {
    if a.dimensions() != b.dimensions() {
        return Some(format!("{:?} vs {:?}", a.dimensions(), b.dimensions()));
    }
    let differing = a.pixels().zip(b.pixels()).filter(|(p, q)| p != q).count();
    (differing > 0).then(|| format!("{differing} pixels differ"))
}

/// Checks the last outputs of both modes: ours == default and ours == the fast PNG it came from.
fn check_pixels(default: &Tally, ours: &Tally) -> anyhow::Result<Result<(), String>> {
    let (Some(d), Some(o)) = (&default.last, &ours.last) else {
        bail!("no capture to check");
    };
    let d_px = rgba(&d.bytes)?;
    let o_px = rgba(&o.bytes)?;
    let f_px = rgba(o.source.as_deref().context("ours without its source")?)?;
    let mut problems = Vec::new();
    if let Some(diff) = pixel_difference(&o_px, &d_px) {
        problems.push(format!("ours vs default: {diff}"));
    }
    if let Some(diff) = pixel_difference(&o_px, &f_px) {
        problems.push(format!("ours vs fast source: {diff}"));
    }
    Ok(if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    })
}

// ---------------------------------------------------------------------------------------------
// Main
// ---------------------------------------------------------------------------------------------

fn scale() -> f64 {
    std::env::var("PNG_BENCH_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|s: &f64| *s > 0.0)
        .unwrap_or(1.0)
}

struct Row {
    page: &'static str,
    dsf: f64,
    rounds: usize,
    default: Tally,
    ours: Tally,
    pixels: Result<(), String>,
}

impl Row {
    fn bytes_ratio(&self) -> f64 {
        self.ours.mean_bytes() / self.default.mean_bytes()
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    if !common::invoked_by_cargo_bench() {
        return Ok(());
    }
    let bench_start = Instant::now();
    let load_start = load_average();
    let budget = CASE_BUDGET.mul_f64(scale());
    let engine = match std::env::var("PNG_BENCH_ENGINE").as_deref() {
        Ok("chromium") => Engine::Chromium,
        Ok("headless-shell") | Err(_) => Engine::HeadlessShell,
        Ok(other) => bail!("PNG_BENCH_ENGINE={other}: expected headless-shell or chromium"),
    };
    let landing: &'static str = Box::leak(common::landing_page().into_boxed_str());
    let fixtures = serve_fixtures(landing).await?;
    let profiles = tempfile::tempdir()?;
    let chromium = ChromiumConfig {
        executable: engine.binary().to_path_buf(),
        profile_dir: profiles.path().to_path_buf(),
        ..ChromiumConfig::default()
    };
    let process = ChromiumProcess::launch(&chromium, &Default::default(), "pngbench").await?;
    let (browser, mut handler) = Browser::connect_with_config(
        process.ws_url.clone(),
        HandlerConfig {
            viewport: None,
            ..Default::default()
        },
    )
    .await?;
    let handler = tokio::spawn(async move { while handler.next().await.is_some() {} });
    let version = browser
        .version()
        .await
        .map(|v| v.product)
        .unwrap_or_else(|_| "?".into());
    let tabs = vec![open_tab(&browser).await?, open_tab(&browser).await?];

    println!(
        "png_encoding: {} ({version}), 2 tabs in own contexts; {} cores; load average at start {load_start}",
        engine.binary().display(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
    );
    println!(
        "per case: rounds for {:.0} s (min {MIN_ROUNDS}), each mode per round: {SEQUENTIAL} sequential + {} burst captures on 2 tabs; first mode alternates",
        budget.as_secs_f64(),
        BURST_PER_TAB * tabs.len(),
    );
    println!("default = Chromium's default PNG; ours = optimizeForSpeed PNG + recompress_png on spawn_blocking");

    let cases: [(&'static str, f64); 6] = [
        ("landing", 1.0),
        ("landing", 2.0),
        ("photo", 1.0),
        ("photo", 2.0),
        ("tiny", 1.0),
        ("tiny", 2.0),
    ];
    let mut rows = Vec::new();
    for (page, dsf) in cases {
        let url = format!("http://{fixtures}/{page}");
        for tab in &tabs {
            tab.execute(SetDeviceMetricsOverrideParams::new(
                WIDTH, HEIGHT, dsf, false,
            ))
            .await?;
            tab.goto(url.as_str()).await?;
        }
        // Warm-up: both modes on every tab.
        for tab in &tabs {
            for mode in [Mode::Default, Mode::Ours] {
                shoot(tab, mode).await?;
            }
        }
        let (mut default, mut ours) = (Tally::default(), Tally::default());
        let start = Instant::now();
        let mut rounds = 0;
        while rounds < MIN_ROUNDS || start.elapsed() < budget {
            if rounds % 2 == 0 {
                run_mode(process.pid, &tabs, Mode::Default, &mut default).await?;
                run_mode(process.pid, &tabs, Mode::Ours, &mut ours).await?;
            } else {
                run_mode(process.pid, &tabs, Mode::Ours, &mut ours).await?;
                run_mode(process.pid, &tabs, Mode::Default, &mut default).await?;
            }
            rounds += 1;
        }
        let pixels = check_pixels(&default, &ours)?;
        let row = Row {
            page,
            dsf,
            rounds,
            default,
            ours,
            pixels,
        };
        println!(
            "  {page} @{dsf}: {rounds} rounds in {:.1} s, bytes {:.3}, pixels {}",
            start.elapsed().as_secs_f64(),
            row.bytes_ratio(),
            if row.pixels.is_ok() {
                "identical"
            } else {
                "DIFFERENT"
            },
        );
        rows.push(row);
    }
    let load_end = load_average();

    println!();
    println!(
        "{:<8} {:>5} {:>19} {:>11} {:>15} {:>18} {:>16}",
        "page",
        "scale",
        "bytes ours/default",
        "CPU ours/def",
        "latency ours/def",
        "throughput ours/def",
        "pixels identical"
    );
    let mut failures = Vec::new();
    for r in &rows {
        let bytes = r.bytes_ratio();
        let pass = bytes <= 1.0;
        if !pass {
            failures.push(format!("{} @{}: bytes {bytes:.3} > 1.0", r.page, r.dsf));
        }
        if let Err(e) = &r.pixels {
            failures.push(format!("{} @{}: pixels: {e}", r.page, r.dsf));
        }
        println!(
            "{:<8} {:>5} {:>14.3} {:<4} {:>11.3} {:>15.3} {:>18.3} {:>16}",
            r.page,
            r.dsf,
            bytes,
            if pass { "PASS" } else { "FAIL" },
            r.ours.cpu() / r.default.cpu(),
            r.ours.p50().as_secs_f64() / r.default.p50().as_secs_f64(),
            r.ours.throughput() / r.default.throughput(),
            if r.pixels.is_ok() { "yes" } else { "NO" },
        );
    }

    println!();
    println!("absolute (per capture; CPU ms of ours = Chromium's fast capture + recompression):");
    println!(
        "{:<8} {:>5} {:>6} {:>8} {:>8} {:>10} {:>8} {:>8} | {:>8} {:>8} {:>17} {:>8} {:>8}",
        "page",
        "scale",
        "rounds",
        "n/mode",
        "def KB",
        "def CPUms",
        "def p50",
        "def /s",
        "ours KB",
        "fast KB",
        "ours CPU ms",
        "ours p50",
        "ours /s"
    );
    for r in &rows {
        let (chromium, own) = r.ours.cpu_split();
        println!(
            "{:<8} {:>5} {:>6} {:>8} {:>8.1} {:>10.1} {:>8.1} {:>8.2} | {:>8.1} {:>8.1} {:>17} {:>8.1} {:>8.2}",
            r.page,
            r.dsf,
            r.rounds,
            r.default.captures,
            r.default.mean_bytes() / 1024.0,
            r.default.cpu() * 1e3,
            r.default.p50().as_secs_f64() * 1e3,
            r.default.throughput(),
            r.ours.mean_bytes() / 1024.0,
            r.ours.mean_source_bytes() / 1024.0,
            format!("{:.1}+{:.1}={:.1}", chromium * 1e3, own * 1e3, (chromium + own) * 1e3),
            r.ours.p50().as_secs_f64() * 1e3,
            r.ours.throughput(),
        );
    }
    println!();
    println!(
        "pixels identical: {} (last default PNG vs last output of ours and its fast source, RGBA8 via the image crate)",
        if rows.iter().all(|r| r.pixels.is_ok()) { "yes" } else { "NO" }
    );
    println!("load average: start {load_start}, end {load_end}");

    drop(tabs);
    drop(browser);
    handler.abort();
    process.kill().await;
    println!(
        "total bench time: {:.1} s",
        bench_start.elapsed().as_secs_f64()
    );
    if !failures.is_empty() {
        bail!("png_encoding failed: {}", failures.join("; "));
    }
    Ok(())
}
