//! Load benchmark: the daemon against raw Chromium and a naive baseline, all in one run.
//!
//! For a tiny page and the ~50 KB landing page (both served on loopback, `no-store`), at
//! c = 1, 2, 4 and 8 captures in flight, five ways to get a 1280×800 PNG:
//!
//! - **ours**: the daemon binary `cargo bench` builds (`target/release/shotfarm serve`) as a
//!   separate process with its default configuration (engine, fleet size, encoder: whatever
//!   `Config::default()` says), a private redis-server as its ledger, and only what a loopback
//!   bench needs on top (ports, profile directory, loopback egress allowed, rate limits out of
//!   the way), driven over HTTP (`GET /api/v1/screenshot` with an API key). Every capture is
//!   authenticated, reserved, charged and rendered in a fresh browser context.
//!   `CAPTURE_LOAD_OURS_ENV="K=V,K=V"` passes more `SHOTFARM_…` overrides for experiments
//!   (`farm.engine`, `farm.browsers` and `farm.tabs_per_browser` set there are followed by the
//!   raw fleets too). `SHOTFARM_…` variables of the calling shell are not passed on.
//! - **raw warm tabs on new-headless Chromium** (`/usr/bin/chromium`, what most users run):
//!   chromiumoxide alone, the daemon's fleet (browsers × tabs per browser), each tab a page kept
//!   for every capture (its own browser context, made once, so each tab has a window of its own
//!   in new headless; viewport set once), `goto` + `Page.captureScreenshot` as PNG with
//!   Chromium's default encoding — a user's script. No isolation between captures, no HTTP,
//!   no ledger.
//! - **raw warm tabs on the same engine as ours** (the headless shell by default).
//! - **raw fresh context per capture on the same engine as ours**: the isolation floor. The
//!   same fleet size, each capture a fresh browser context and page (set up as lean as ours),
//!   viewport, `goto`, an `optimizeForSpeed` PNG, then the context disposed — isolation as ours
//!   has it, without HTTP, ledger, egress proxy or ours' PNG recompression.
//! - **naive**: a fresh browser per capture on our engine (launch, page, viewport, navigate,
//!   capture; the kill after is not timed), sequential, c=1 only.
//!
//! Phases run one fleet at a time, in this order: ours, raw new-headless, raw same engine (skipped
//! when ours runs `chromium`: the same fleet), raw fresh contexts, naive. Each fleet is warmed up
//! with one capture per tab on each page before measuring. Latency counts from issuing a capture
//! until the PNG bytes are in hand (queueing for a tab included, raw as ours).
//!
//! **CPU per capture**, from `/proc`, sampled at the start and the end of each cell: the sum
//! over a process tree (the roots and every descendant by ppid, plus any process naming the
//! fleet's profile directory) of utime + stime + cutime + cstime, ÷ captures.
//! - ours: the tree of the daemon process — daemon + its Chromium processes (Redis is not
//!   counted); the "own" column is the daemon process alone (HTTP, ledger client, queue, encoder).
//! - raw: the browsers' trees plus this bench's own CPU (utime + stime, minus the threads serving
//!   the fixture pages and sampling memory) — the CDP driving cost, comparable to the daemon's;
//!   the "own" column is that driver part.
//! - naive: each launched browser's tree (read just before it is killed) plus the bench's own.
//!
//! **Peak PSS** at c=8: the sum of `Pss` of `/proc/<pid>/smaps_rollup` over the same trees,
//! sampled every 200 ms by a thread of its own; for raw fleets, the Chromium processes only.
//!
//! Counts: 16 captures at c=1 and 24 at c=2/4/8 per page and fleet, 5 naive per page (scale
//! them with `CAPTURE_LOAD_SCALE=0.5`). Ratios are of this one
//! run; absolute numbers are printed alongside (1.5–2 minutes on 2 cores, plus the build). Goals (from the issue), on both pages: ours c=8
//! throughput ≥ 1.0× raw warm tabs on new-headless Chromium, ours c=1 p50 ≤ 1.0× of it; ours ÷
//! raw on the same engine is reported too (aim ≥ 0.7×); ours' peak PSS at c=8 ≤ ~405 MB (an
//! isolated puppeteer server).

#[allow(dead_code)]
mod common;
use testkit::process::ServeProcess;
use testkit::procfs::{clock_ticks, load_average, read_stat_file, Stat};
use testkit::redis::{Persistence, RedisServer};

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};
use base64::Engine as _;
use chromiumoxide::cdp::browser_protocol::emulation::SetDeviceMetricsOverrideParams;
use chromiumoxide::cdp::browser_protocol::page::{
    CaptureScreenshotFormat, CaptureScreenshotParams,
};
use chromiumoxide::handler::HandlerConfig;
use chromiumoxide::{Browser, Page};
use futures::StreamExt;
use shotfarm::config::{ChromiumConfig, Config, Engine};
use shotfarm::farm::process::{ChromiumProcess, Placement};
use shotfarm::farm::tab;
use tokio::sync::mpsc;
use warp::Filter;

const WIDTH: i64 = 1280;
const HEIGHT: i64 = 800;
const LEVELS: [usize; 4] = [1, 2, 4, 8];
/// The level at which peak memory is sampled.
const PSS_LEVEL: usize = 8;
/// Bound on any single capture; a capture slower than this fails the bench.
const OP_TIMEOUT: Duration = Duration::from_secs(30);
const PNG_MAGIC: &[u8] = b"\x89PNG\r\n\x1a\n";
/// The reference: an isolated puppeteer server's peak PSS at 8 in flight.
const PSS_GOAL_MB: f64 = 405.0;
/// Server-Timing phases printed for ours at c=1.
const PHASES: [&str; 9] = [
    "queue", "context", "emulate", "navigate", "page", "capture", "encode", "render", "total",
];

// ---------------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------------

const TINY_PAGE: &str = "<!doctype html><html><head><meta charset=utf-8><title>tiny</title></head>\
<body style=\"font:16px sans-serif;margin:40px\"><h1>Hello</h1><p>A tiny page for the capture bench.</p></body></html>";

/// The id of the calling thread (for `/proc/self/task/<tid>/stat`).
fn gettid() -> i64 {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::syscall(libc::SYS_gettid) }
}

/// The fixture site: `/landing` and `/tiny` on 127.0.0.1:0 with `Cache-Control: no-store` (raw
/// tabs keep their context, the daemon's are fresh: both fetch the page every time), served by
/// a thread of its own so that its CPU can be left out of the bench's.
struct Fixtures {
    addr: SocketAddr,
    tid: i64,
}

fn start_fixtures(landing: &'static str) -> anyhow::Result<Fixtures> {
    let (tx, rx) = std::sync::mpsc::channel::<anyhow::Result<(SocketAddr, i64)>>();
    std::thread::Builder::new()
        .name("fixtures".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(r) => r,
                Err(e) => {
                    let _ = tx.send(Err(e.into()));
                    return;
                }
            };
            runtime.block_on(async move {
                let page = |body: &'static str| {
                    warp::reply::with_header(warp::reply::html(body), "cache-control", "no-store")
                };
                let routes = warp::path!("landing")
                    .map(move || page(landing))
                    .or(warp::path!("tiny").map(move || page(TINY_PAGE)));
                let listener = match tokio::net::TcpListener::bind("127.0.0.1:0").await {
                    Ok(l) => l,
                    Err(e) => {
                        let _ = tx.send(Err(e.into()));
                        return;
                    }
                };
                let addr = listener.local_addr().map_err(anyhow::Error::from);
                let _ = tx.send(addr.map(|a| (a, gettid())));
                warp::serve(routes).incoming(listener).run().await;
            });
        })?;
    let (addr, tid) = rx
        .recv()
        .map_err(|_| anyhow!("the fixture thread died"))??;
    Ok(Fixtures { addr, tid })
}

struct PageDef {
    name: &'static str,
    url: String,
    bytes: usize,
}

// ---------------------------------------------------------------------------------------------
// /proc accounting: CPU and PSS of process trees
// ---------------------------------------------------------------------------------------------

/// A set of processes: the roots and all their descendants, plus every process (and its
/// descendants) whose command line contains `needle` (a profile directory: catches a helper
/// that was reparented).
#[derive(Clone, Debug)]
struct Tree {
    roots: Vec<u32>,
    needle: Option<String>,
}

fn members(tree: &Tree) -> HashMap<u32, Stat> {
    testkit::procfs::tree(&tree.roots, tree.needle.as_deref())
}

/// CPU seconds of a tree: (everything, the roots' own utime + stime).
fn tree_cpu(tree: &Tree) -> (f64, f64) {
    let members = members(tree);
    let total: u64 = members.values().map(|s| s.cpu_ticks + s.reaped_ticks).sum();
    let roots: u64 = tree
        .roots
        .iter()
        .filter_map(|p| members.get(p))
        .map(|s| s.cpu_ticks)
        .sum();
    (total as f64 / clock_ticks(), roots as f64 / clock_ticks())
}

/// Sum of PSS over a tree, in KiB.
fn tree_pss_kb(tree: &Tree) -> u64 {
    members(tree)
        .keys()
        .filter_map(|&pid| testkit::procfs::pss_kb(pid))
        .sum()
}

/// This process' own CPU seconds (utime + stime, not its reaped children: those are browsers
/// counted in their trees, and redis-server), minus the `excluded` threads'.
fn bench_cpu(excluded: &[i64]) -> f64 {
    let own = read_stat_file("/proc/self/stat").map_or(0, |s| s.cpu_ticks);
    let left_out: u64 = excluded
        .iter()
        .filter_map(|tid| read_stat_file(&format!("/proc/self/task/{tid}/stat")))
        .map(|s| s.cpu_ticks)
        .sum();
    own.saturating_sub(left_out) as f64 / clock_ticks()
}

/// Where a cell's CPU is read.
enum CpuSource {
    /// The daemon's tree; the part is the daemon process itself.
    Daemon(Tree),
    /// The browsers' trees plus this bench (the CDP driver); the part is the driver.
    Driver { browsers: Tree, excluded: Vec<i64> },
}

impl CpuSource {
    /// (total, part) CPU seconds so far. The bench's own CPU is read last at the start of a cell
    /// and first at its end, so the /proc scan itself stays out of it.
    fn mark(&self, at_start: bool) -> (f64, f64) {
        match self {
            CpuSource::Daemon(tree) => tree_cpu(tree),
            CpuSource::Driver { browsers, excluded } => {
                if at_start {
                    let (b, _) = tree_cpu(browsers);
                    let d = bench_cpu(excluded);
                    (b + d, d)
                } else {
                    let d = bench_cpu(excluded);
                    let (b, _) = tree_cpu(browsers);
                    (b + d, d)
                }
            }
        }
    }
}

/// Samples the PSS of one tree every 200 ms on a thread of its own, keeping the peak.
#[derive(Default)]
struct SamplerState {
    tree: Option<Tree>,
    peak_kb: u64,
    samples: usize,
}

struct PssSampler {
    state: Arc<Mutex<SamplerState>>,
    tid: i64,
}

impl PssSampler {
    fn start() -> anyhow::Result<PssSampler> {
        let state = Arc::new(Mutex::new(SamplerState::default()));
        let (tx, rx) = std::sync::mpsc::channel();
        let shared = state.clone();
        std::thread::Builder::new()
            .name("pss-sampler".into())
            .spawn(move || {
                let _ = tx.send(gettid());
                loop {
                    std::thread::sleep(Duration::from_millis(200));
                    let Ok(mut s) = shared.lock() else { return };
                    if let Some(tree) = s.tree.clone() {
                        let kb = tree_pss_kb(&tree);
                        s.peak_kb = s.peak_kb.max(kb);
                        s.samples += 1;
                    }
                }
            })?;
        let tid = rx
            .recv()
            .map_err(|_| anyhow!("the PSS sampler thread died"))?;
        Ok(PssSampler { state, tid })
    }

    fn begin(&self, tree: &Tree) -> anyhow::Result<()> {
        let mut s = self.state.lock().map_err(|_| anyhow!("sampler poisoned"))?;
        *s = SamplerState {
            tree: Some(tree.clone()),
            peak_kb: tree_pss_kb(tree),
            samples: 1,
        };
        Ok(())
    }

    /// The peak since `begin`, in KiB, and the number of samples.
    fn end(&self) -> anyhow::Result<(u64, usize)> {
        let mut s = self.state.lock().map_err(|_| anyhow!("sampler poisoned"))?;
        let out = (s.peak_kb, s.samples);
        s.tree = None;
        Ok(out)
    }
}

// ---------------------------------------------------------------------------------------------
// Measurement
// ---------------------------------------------------------------------------------------------

/// `Server-Timing` of one response: (name, ms).
type Timing = Vec<(String, f64)>;

#[derive(Clone)]
struct Stats {
    count: usize,
    wall: Duration,
    /// Sorted.
    lat: Vec<Duration>,
}

impl Stats {
    fn thr(&self) -> f64 {
        self.count as f64 / self.wall.as_secs_f64()
    }
    fn pct(&self, p: f64) -> Duration {
        // Nearest rank.
        let rank = ((p / 100.0) * self.lat.len() as f64).ceil() as usize;
        self.lat
            .get(rank.clamp(1, self.lat.len().max(1)) - 1)
            .copied()
            .unwrap_or_default()
    }
    fn p50(&self) -> Duration {
        self.pct(50.0)
    }
}

/// One (fleet, page, concurrency) measurement.
struct Cell {
    concurrency: usize,
    stats: Stats,
    /// CPU ms per capture: everything, and the daemon's / the driver's part.
    cpu_ms: f64,
    part_ms: f64,
    /// Peak PSS during the cell, in KiB (only at [`PSS_LEVEL`]).
    pss_kb: Option<u64>,
    timings: Vec<Timing>,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Runs `count` operations with `concurrency` workers; each latency counts from issue to done.
async fn run_level<F, Fut>(
    concurrency: usize,
    count: usize,
    op: F,
) -> anyhow::Result<(Stats, Vec<Timing>)>
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<Option<Timing>>> + Send + 'static,
{
    let op = Arc::new(op);
    let remaining = Arc::new(AtomicUsize::new(count));
    let results = Arc::new(Mutex::new(Vec::with_capacity(count)));
    let start = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (op, remaining, results) = (op.clone(), remaining.clone(), results.clone());
        workers.push(tokio::spawn(async move {
            while remaining
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
            {
                let t = Instant::now();
                let timing = tokio::time::timeout(OP_TIMEOUT, op())
                    .await
                    .map_err(|_| anyhow!("a capture took longer than {OP_TIMEOUT:?}"))??;
                results
                    .lock()
                    .map_err(|_| anyhow!("poisoned"))?
                    .push((t.elapsed(), timing));
            }
            Ok::<_, anyhow::Error>(())
        }));
    }
    for w in workers {
        w.await??;
    }
    let wall = start.elapsed();
    let results = std::mem::take(&mut *results.lock().map_err(|_| anyhow!("poisoned"))?);
    let mut lat: Vec<Duration> = results.iter().map(|(d, _)| *d).collect();
    lat.sort();
    let timings = results.into_iter().filter_map(|(_, t)| t).collect();
    Ok((Stats { count, wall, lat }, timings))
}

/// A measured cell: CPU marks around [`run_level`], PSS sampled at [`PSS_LEVEL`].
async fn measure<F, Fut>(
    source: &CpuSource,
    sampler: &PssSampler,
    pss_tree: &Tree,
    concurrency: usize,
    count: usize,
    op: F,
) -> anyhow::Result<Cell>
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<Option<Timing>>> + Send + 'static,
{
    let sample = concurrency == PSS_LEVEL;
    if sample {
        sampler.begin(pss_tree)?;
    }
    let (cpu0, part0) = source.mark(true);
    let run = run_level(concurrency, count, op).await;
    let (cpu1, part1) = source.mark(false);
    let pss = if sample { Some(sampler.end()?) } else { None };
    let (stats, timings) = run?;
    let per = |s: f64| s * 1000.0 / count as f64;
    let cell = Cell {
        concurrency,
        stats,
        cpu_ms: per(cpu1 - cpu0),
        part_ms: per(part1 - part0),
        pss_kb: pss.map(|(kb, _)| kb),
        timings,
    };
    eprintln!(
        "  [c={concurrency} n={count}] {:.2}/s p50 {:.0} ms p95 {:.0} ms, {:.0} CPU ms/capture{}",
        cell.stats.thr(),
        ms(cell.stats.p50()),
        ms(cell.stats.pct(95.0)),
        cell.cpu_ms,
        pss.map_or(String::new(), |(kb, n)| format!(
            ", peak PSS {:.0} MB ({n} samples)",
            mb(kb)
        ))
    );
    Ok(cell)
}

/// Warm-up, then every level, for each page: `cells[page][level]`.
async fn run_pages<M, F, Fut>(
    label: &str,
    pages: &[PageDef],
    warmup: usize,
    source: &CpuSource,
    sampler: &PssSampler,
    pss_tree: &Tree,
    make_op: M,
) -> anyhow::Result<Vec<Vec<Cell>>>
where
    M: Fn(&str) -> F,
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<Option<Timing>>> + Send + 'static,
{
    let mut out = Vec::new();
    for page in pages {
        eprintln!("{label}, {} page:", page.name);
        run_level(warmup, warmup, make_op(&page.url))
            .await
            .with_context(|| format!("{label}: warm-up on {}", page.name))?;
        let mut cells = Vec::new();
        for c in LEVELS {
            cells.push(
                measure(
                    source,
                    sampler,
                    pss_tree,
                    c,
                    count_for(c)?,
                    make_op(&page.url),
                )
                .await
                .with_context(|| format!("{label}: {} page, c={c}", page.name))?,
            );
        }
        out.push(cells);
    }
    Ok(out)
}

fn check_png(bytes: &[u8]) -> anyhow::Result<()> {
    if !bytes.starts_with(PNG_MAGIC) {
        bail!("not a PNG ({} bytes)", bytes.len());
    }
    Ok(())
}

fn mb(kb: u64) -> f64 {
    kb as f64 / 1024.0
}

// ---------------------------------------------------------------------------------------------
// Raw chromiumoxide fleets
// ---------------------------------------------------------------------------------------------

struct RawBrowser {
    process: ChromiumProcess,
    browser: Arc<Browser>,
    handler: tokio::task::JoinHandle<()>,
}

/// As users run Chromium: on the host's network, sandboxed unless running as root (as the
/// daemon's default `chromium.sandbox = auto` decides).
fn raw_placement() -> Placement {
    Placement {
        namespace: None,
        sandbox: ChromiumConfig::default().sandbox.enabled(),
    }
}

async fn connect(
    chromium: &ChromiumConfig,
    placement: &Placement,
    label: &str,
    lean_pages: bool,
) -> anyhow::Result<RawBrowser> {
    let process = ChromiumProcess::launch(chromium, placement, label)
        .await
        .with_context(|| format!("launching {}", chromium.executable.display()))?;
    let (browser, mut handler) = Browser::connect_with_config(
        process.ws_url.clone(),
        HandlerConfig {
            viewport: None,
            lean_pages,
            ..Default::default()
        },
    )
    .await
    .context("devtools connection")?;
    // The handler must be polled continuously for any command to complete.
    let handler = tokio::spawn(async move { while handler.next().await.is_some() {} });
    Ok(RawBrowser {
        process,
        browser: Arc::new(browser),
        handler,
    })
}

impl RawBrowser {
    async fn close(self) {
        drop(self.browser);
        self.handler.abort();
        self.process.kill().await;
    }
}

/// Navigate (waits for `load`) and capture with Chromium's default PNG encoding.
async fn raw_capture(page: &Page, url: &str) -> anyhow::Result<()> {
    page.goto(url).await.context("navigate")?;
    let shot = page
        .execute(CaptureScreenshotParams {
            format: Some(CaptureScreenshotFormat::Png),
            ..Default::default()
        })
        .await
        .context("Page.captureScreenshot")?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(AsRef::<str>::as_ref(&shot.result.data))
        .context("screenshot data is not base64")?;
    check_png(&bytes)
}

/// Slots shared by workers (warm tabs, or browsers with room for one more fresh context); a
/// worker waits (FIFO) when all are busy.
struct Pool<T> {
    tx: mpsc::UnboundedSender<T>,
    rx: tokio::sync::Mutex<mpsc::UnboundedReceiver<T>>,
}

impl<T> Pool<T> {
    async fn take(&self) -> anyhow::Result<T> {
        self.rx
            .lock()
            .await
            .recv()
            .await
            .ok_or_else(|| anyhow!("the pool is closed"))
    }
    fn put(&self, slot: T) {
        let _ = self.tx.send(slot);
    }
}

/// How a raw fleet captures.
#[derive(Clone, Copy, PartialEq, Eq)]
enum RawMode {
    /// One context and page per tab, made once and reused (no isolation); Chromium's default PNG.
    WarmTabs,
    /// A fresh context and page per capture, disposed after it (isolated, as ours), pages set up
    /// as lean as ours, `optimizeForSpeed` PNG: the floor of an isolated capture on an engine.
    FreshContexts,
}

/// One isolated capture: a fresh context and page, viewport, navigate (waits for `load`), a
/// fast PNG, then the context is disposed.
async fn fresh_capture(browser: &Browser, url: &str) -> anyhow::Result<()> {
    let tab = tab::prepare_sized(browser, WIDTH as u32, HEIGHT as u32).await?;
    let shot = async {
        tab.page.goto(url).await.context("navigate")?;
        let shot = tab
            .page
            .execute(CaptureScreenshotParams {
                format: Some(CaptureScreenshotFormat::Png),
                optimize_for_speed: Some(true),
                ..Default::default()
            })
            .await
            .context("Page.captureScreenshot")?;
        base64::engine::general_purpose::STANDARD
            .decode(AsRef::<str>::as_ref(&shot.result.data))
            .context("screenshot data is not base64")
    }
    .await;
    tab::dispose(browser, tab).await?;
    check_png(&shot?)
}

struct RawFleet {
    browsers: Vec<RawBrowser>,
    /// Warm tabs ([`RawMode::WarmTabs`]) ...
    tabs: Arc<Pool<Page>>,
    /// ... or a browser handle per slot ([`RawMode::FreshContexts`]).
    slots: Arc<Pool<Arc<Browser>>>,
    tree: Tree,
    product: String,
    _profiles: tempfile::TempDir,
}

async fn start_raw_fleet(
    engine: Engine,
    mode: RawMode,
    browsers: usize,
    tabs: usize,
    label: &str,
) -> anyhow::Result<RawFleet> {
    let (profiles, chromium) = raw_chromium(engine, label)?;
    let placement = raw_placement();
    let mut list = Vec::new();
    for i in 0..browsers {
        let lean = mode == RawMode::FreshContexts;
        list.push(connect(&chromium, &placement, &format!("{label}{i}"), lean).await?);
    }
    let product = match list.first() {
        Some(raw) => {
            raw.browser
                .version()
                .await
                .context("Browser.getVersion")?
                .product
        }
        None => bail!("a fleet of 0 browsers"),
    };
    let (tx, rx) = mpsc::unbounded_channel();
    let (slot_tx, slot_rx) = mpsc::unbounded_channel();
    for raw in &list {
        for _ in 0..tabs {
            if mode == RawMode::FreshContexts {
                let _ = slot_tx.send(raw.browser.clone());
                continue;
            }
            // Its own context, made once and kept: in new headless, a window of its own (never
            // a background tab); the page is then reused for every capture.
            let page = tab::prepare(&raw.browser).await?.page;
            page.execute(SetDeviceMetricsOverrideParams::new(
                WIDTH, HEIGHT, 1.0, false,
            ))
            .await
            .context("Emulation.setDeviceMetricsOverride")?;
            let _ = tx.send(page);
        }
    }
    let tree = Tree {
        roots: list.iter().map(|r| r.process.pid).collect(),
        needle: Some(profiles.path().to_string_lossy().into_owned()),
    };
    Ok(RawFleet {
        browsers: list,
        tabs: Arc::new(Pool {
            tx,
            rx: tokio::sync::Mutex::new(rx),
        }),
        slots: Arc::new(Pool {
            tx: slot_tx,
            rx: tokio::sync::Mutex::new(slot_rx),
        }),
        tree,
        product,
        _profiles: profiles,
    })
}

struct FleetRun {
    label: String,
    product: String,
    /// `cells[page][level]`.
    cells: Vec<Vec<Cell>>,
}

async fn run_raw(
    engine: Engine,
    mode: RawMode,
    label: String,
    fleet_size: (usize, usize),
    pages: &[PageDef],
    sampler: &PssSampler,
    excluded: &[i64],
) -> anyhow::Result<FleetRun> {
    let phase = Instant::now();
    let fleet = start_raw_fleet(engine, mode, fleet_size.0, fleet_size.1, engine.name()).await?;
    let source = CpuSource::Driver {
        browsers: fleet.tree.clone(),
        excluded: excluded.to_vec(),
    };
    let tabs = fleet_size.0 * fleet_size.1;
    let (pool, slots) = (fleet.tabs.clone(), fleet.slots.clone());
    let result = run_pages(
        &label,
        pages,
        tabs,
        &source,
        sampler,
        &fleet.tree,
        |url: &str| {
            let (pool, slots, url) = (pool.clone(), slots.clone(), url.to_string());
            move || {
                let (pool, slots, url) = (pool.clone(), slots.clone(), url.clone());
                async move {
                    let result = match mode {
                        RawMode::WarmTabs => {
                            let page = pool.take().await?;
                            let result = raw_capture(&page, &url).await;
                            pool.put(page);
                            result
                        }
                        RawMode::FreshContexts => {
                            let browser = slots.take().await?;
                            let result = fresh_capture(&browser, &url).await;
                            slots.put(browser);
                            result
                        }
                    };
                    result.map(|()| None)
                }
            }
        },
    )
    .await;
    drop((pool, slots));
    let RawFleet {
        browsers, product, ..
    } = fleet;
    for raw in browsers {
        raw.close().await;
    }
    eprintln!("phase {label}: {:.1} s", phase.elapsed().as_secs_f64());
    Ok(FleetRun {
        label,
        product,
        cells: result?,
    })
}

// ---------------------------------------------------------------------------------------------
// Ours: the daemon binary
// ---------------------------------------------------------------------------------------------

/// A funded account with an API key, made through the operator code path (before any tokio
/// runtime runs on this thread: `ops::block_on` starts its own actix system).
fn provision(redis_url: &str) -> anyhow::Result<String> {
    let config = testkit::accounts::on_redis(redis_url);
    let funded = testkit::accounts::provision(
        &config,
        "capture-load@bench.example",
        None,
        10_000_000,
        "capture-load",
    )?;
    Ok(funded.key)
}

/// `CAPTURE_LOAD_OURS_ENV="KEY=V,KEY=V"`. A piece without `NAME=` continues the previous value,
/// so a list such as `SHOTFARM_EGRESS__ALLOW=["a","b"]` survives the split.
fn ours_overrides() -> anyhow::Result<Vec<(String, String)>> {
    let Ok(raw) = std::env::var("CAPTURE_LOAD_OURS_ENV") else {
        return Ok(Vec::new());
    };
    let mut out: Vec<(String, String)> = Vec::new();
    for piece in raw.split(',') {
        let named = piece.split_once('=').filter(|(k, _)| {
            let k = k.trim();
            !k.is_empty()
                && k.chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        });
        match (named, out.last_mut()) {
            (Some((k, v)), _) => out.push((k.trim().to_string(), v.to_string())),
            (None, Some((_, v))) => {
                v.push(',');
                v.push_str(piece);
            }
            (None, None) if piece.trim().is_empty() => {}
            (None, None) => bail!("CAPTURE_LOAD_OURS_ENV: {piece:?} is not KEY=VALUE"),
        }
    }
    Ok(out)
}

fn override_of<'a>(overrides: &'a [(String, String)], key: &str) -> Option<&'a str> {
    overrides
        .iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.trim())
}

struct Ours {
    daemon: ServeProcess,
    api: SocketAddr,
    tree: Tree,
}

impl Ours {
    /// Call from the main thread (the death signal follows the thread that forked).
    fn spawn(redis_url: &str, overrides: &[(String, String)], logs: &Path) -> anyhow::Result<Ours> {
        let binary = Path::new(env!("CARGO_BIN_EXE_shotfarm"));
        let daemon = ServeProcess::spawn(
            binary,
            "capture-load-ours",
            &logs.join("daemon.log"),
            |cmd| {
                cmd.args(["--redis-url", redis_url]);
                // The daemon's defaults, not whatever SHOTFARM_… this shell exports (`make test`
                // sets the engine, for one): only the bench's own settings and the overrides.
                let set: HashSet<OsString> =
                    cmd.get_envs().map(|(k, _)| k.to_os_string()).collect();
                for (name, _) in std::env::vars_os() {
                    if name.to_str().is_some_and(|n| n.starts_with("SHOTFARM_"))
                        && !set.contains(&name)
                    {
                        cmd.env_remove(&name);
                    }
                }
                for (k, v) in overrides {
                    cmd.env(k, v);
                }
            },
        )?;
        let tree = Tree {
            roots: vec![daemon.pid()],
            needle: Some(daemon.profiles.path().to_string_lossy().into_owned()),
        };
        Ok(Ours {
            api: daemon.api,
            daemon,
            tree,
        })
    }

    /// Until every browser can take work (listening is not enough).
    async fn wait_ready(&mut self, client: &reqwest::Client) -> anyhow::Result<()> {
        common::wait_browsers_ready(&mut self.daemon, client).await
    }

    /// SIGTERM, then a bounded wait for the graceful exit.
    fn stop(&mut self) {
        self.daemon.process.sigterm();
        if let Err(e) = self.daemon.process.wait_exit(Duration::from_secs(60)) {
            eprintln!("warning: daemon shutdown: {e:#}");
        }
    }
}

fn parse_timing(header: &str) -> Timing {
    header
        .split(',')
        .filter_map(|part| {
            let mut fields = part.trim().split(';');
            let name = fields.next()?.trim().to_string();
            let dur = fields.find_map(|f| f.trim().strip_prefix("dur=")?.parse().ok())?;
            Some((name, dur))
        })
        .collect()
}

async fn ours_capture(
    client: &reqwest::Client,
    api: SocketAddr,
    page_url: &str,
) -> anyhow::Result<Option<Timing>> {
    let url = url::Url::parse_with_params(
        &format!("http://{api}/api/v1/screenshot"),
        &[
            ("url", page_url),
            ("width", &WIDTH.to_string()),
            ("height", &HEIGHT.to_string()),
        ],
    )?;
    let response = client.get(url).send().await.context("request")?;
    let status = response.status();
    let timing = response
        .headers()
        .get("server-timing")
        .and_then(|v| v.to_str().ok())
        .map(parse_timing);
    let body = response.bytes().await.context("response body")?;
    if status != reqwest::StatusCode::OK {
        bail!(
            "status {status}: {}",
            String::from_utf8_lossy(&body[..body.len().min(300)])
        );
    }
    check_png(&body)?;
    Ok(timing)
}

async fn run_ours(
    ours: &mut Ours,
    label: String,
    key: &str,
    pages: &[PageDef],
    warmup: usize,
    sampler: &PssSampler,
) -> anyhow::Result<FleetRun> {
    let phase = Instant::now();
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        "x-api-key",
        reqwest::header::HeaderValue::from_str(key).context("the API key as a header")?,
    );
    let client = reqwest::Client::builder()
        .no_proxy()
        .default_headers(headers)
        .pool_max_idle_per_host(16)
        .timeout(OP_TIMEOUT)
        .build()?;
    ours.wait_ready(&client).await?;
    let source = CpuSource::Daemon(ours.tree.clone());
    let api = ours.api;
    let cells = run_pages(
        &label,
        pages,
        warmup,
        &source,
        sampler,
        &ours.tree,
        |url: &str| {
            let (client, url) = (client.clone(), url.to_string());
            move || {
                let (client, url) = (client.clone(), url.clone());
                async move { ours_capture(&client, api, &url).await }
            }
        },
    )
    .await?;
    eprintln!("phase {label}: {:.1} s", phase.elapsed().as_secs_f64());
    Ok(FleetRun {
        label,
        product: String::new(),
        cells,
    })
}

// ---------------------------------------------------------------------------------------------
// Naive baseline
// ---------------------------------------------------------------------------------------------

/// Launch, open a page, set the viewport, navigate, capture. Returns the latency (until the PNG
/// is in hand; the kill after is not timed, which favours the baseline) and the CPU seconds of
/// the browser's whole tree, read just before the kill.
async fn naive_capture(
    chromium: &ChromiumConfig,
    placement: &Placement,
    url: &str,
) -> anyhow::Result<(Duration, f64)> {
    let t = Instant::now();
    let raw = connect(chromium, placement, "naive", false).await?;
    let result = async {
        let page = raw.browser.new_page("about:blank").await?;
        page.execute(SetDeviceMetricsOverrideParams::new(
            WIDTH, HEIGHT, 1.0, false,
        ))
        .await?;
        raw_capture(&page, url).await
    }
    .await;
    let elapsed = t.elapsed();
    let tree = Tree {
        roots: vec![raw.process.pid],
        needle: raw
            .process
            .profile_dir()
            .map(|p| p.to_string_lossy().into_owned()),
    };
    let (cpu, _) = tree_cpu(&tree);
    raw.close().await;
    result.map(|()| (elapsed, cpu))
}

/// A fresh profile directory and the Chromium settings of a raw fleet on `engine`.
fn raw_chromium(
    engine: Engine,
    label: &str,
) -> anyhow::Result<(tempfile::TempDir, ChromiumConfig)> {
    let profiles = tempfile::Builder::new()
        .prefix(&format!("capture-load-{label}-"))
        .tempdir()?;
    let chromium = ChromiumConfig {
        executable: engine.binary().to_path_buf(),
        profile_dir: profiles.path().to_path_buf(),
        ..ChromiumConfig::default()
    };
    Ok((profiles, chromium))
}

async fn run_naive(
    engine: Engine,
    pages: &[PageDef],
    excluded: &[i64],
) -> anyhow::Result<Vec<Cell>> {
    let phase = Instant::now();
    let (_profiles, chromium) = raw_chromium(engine, "naive")?;
    let placement = raw_placement();
    let count = scaled(5, 2)?;
    let mut out = Vec::new();
    for (i, page) in pages.iter().enumerate() {
        if i == 0 {
            naive_capture(&chromium, &placement, &page.url)
                .await
                .context("naive warm-up")?;
        }
        let bench0 = bench_cpu(excluded);
        let mut browsers_cpu = 0.0;
        let mut lat = Vec::new();
        let start = Instant::now();
        for _ in 0..count {
            let (d, cpu) = naive_capture(&chromium, &placement, &page.url)
                .await
                .with_context(|| format!("naive on {}", page.name))?;
            lat.push(d);
            browsers_cpu += cpu;
        }
        let wall = start.elapsed();
        let driver = bench_cpu(excluded) - bench0;
        lat.sort();
        let per = |s: f64| s * 1000.0 / count as f64;
        let cell = Cell {
            concurrency: 1,
            stats: Stats { count, wall, lat },
            cpu_ms: per(browsers_cpu + driver),
            part_ms: per(driver),
            pss_kb: None,
            timings: Vec::new(),
        };
        eprintln!(
            "naive, {} page: p50 {:.0} ms, {:.0} CPU ms/capture",
            page.name,
            ms(cell.stats.p50()),
            cell.cpu_ms
        );
        out.push(cell);
    }
    eprintln!("phase naive: {:.1} s", phase.elapsed().as_secs_f64());
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Counts and report
// ---------------------------------------------------------------------------------------------

fn scale() -> anyhow::Result<f64> {
    match std::env::var("CAPTURE_LOAD_SCALE") {
        Ok(s) => {
            let v: f64 = s
                .trim()
                .parse()
                .with_context(|| format!("CAPTURE_LOAD_SCALE={s} is not a number"))?;
            if !(v > 0.0 && v.is_finite()) {
                bail!("CAPTURE_LOAD_SCALE={s} must be positive");
            }
            Ok(v)
        }
        Err(_) => Ok(1.0),
    }
}

fn scaled(n: usize, min: usize) -> anyhow::Result<usize> {
    Ok(((n as f64 * scale()?).round() as usize).max(min))
}

fn count_for(concurrency: usize) -> anyhow::Result<usize> {
    scaled(if concurrency == 1 { 16 } else { 24 }, concurrency.max(4))
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "PASS"
    } else {
        "FAIL"
    }
}

fn row(c: &str, label: &str, cell: &Cell, part: &str) -> String {
    format!(
        "{c:>3}  {label:<44} {:>3} {:>7.2} {:>6.0} {:>6.0} {:>6.0} {:>8.0} {:>8.1} {part:<6} {}",
        cell.stats.count,
        cell.stats.thr(),
        ms(cell.stats.p50()),
        ms(cell.stats.pct(95.0)),
        ms(cell.stats.pct(99.0)),
        cell.cpu_ms,
        cell.part_ms,
        cell.pss_kb
            .map_or(String::new(), |kb| format!("{:>7.0}", mb(kb)))
    )
    .trim_end()
    .to_string()
}

struct Report<'a> {
    pages: &'a [PageDef],
    ours: &'a FleetRun,
    raw_new: &'a FleetRun,
    raw_same: &'a FleetRun,
    raw_fresh: &'a FleetRun,
    naive: &'a [Cell],
    naive_label: String,
}

impl Report<'_> {
    /// Prints the tables and ratios; returns the goal verdicts (all pass).
    fn print(&self) -> bool {
        let mut all_pass = true;
        let mut ours_peak_kb = 0u64;
        for (p, page) in self.pages.iter().enumerate() {
            println!();
            println!(
                "== {} page ({} bytes), {WIDTH}x{HEIGHT} PNG ==",
                page.name, page.bytes
            );
            println!(
                "thr = captures/s; latency ms from issue to PNG in hand; CPU = ms per capture, all processes (own = the daemon process / the CDP driver); PSS = peak MB at c={PSS_LEVEL}"
            );
            println!(
                "{:>3}  {:<44} {:>3} {:>7} {:>6} {:>6} {:>6} {:>8} {:>8} {:<6} {:>7}",
                "c", "fleet", "n", "thr", "p50", "p95", "p99", "CPU", "own", "", "PSS"
            );
            for (l, c) in LEVELS.iter().enumerate() {
                let mut first = true;
                let mut c_label = || {
                    if std::mem::take(&mut first) {
                        c.to_string()
                    } else {
                        String::new()
                    }
                };
                println!(
                    "{}",
                    row(
                        &c_label(),
                        &self.ours.label,
                        &self.ours.cells[p][l],
                        "daemon"
                    )
                );
                for fleet in [self.raw_new, self.raw_same, self.raw_fresh] {
                    println!(
                        "{}",
                        row(&c_label(), &fleet.label, &fleet.cells[p][l], "driver")
                    );
                }
                if *c == 1 {
                    println!(
                        "{}",
                        row(&c_label(), &self.naive_label, &self.naive[p], "driver")
                    );
                }
            }

            let ours = &self.ours.cells[p];
            let new = &self.raw_new.cells[p];
            let same = &self.raw_same.cells[p];
            let fresh = &self.raw_fresh.cells[p];
            let (c1, c8) = (0, LEVELS.len() - 1);
            debug_assert_eq!(ours[c8].concurrency, 8);
            let thr8 = ours[c8].stats.thr() / new[c8].stats.thr();
            let p50_1 = ms(ours[c1].stats.p50()) / ms(new[c1].stats.p50());
            all_pass &= thr8 >= 1.0 && p50_1 <= 1.0;
            println!("ours / {}:", self.raw_new.label);
            println!(
                "  c=8 throughput {thr8:.3}x (goal >= 1.0: {}); c=1 p50 {p50_1:.3}x (goal <= 1.0: {}); CPU per capture at c=8 {:.2}x",
                verdict(thr8 >= 1.0),
                verdict(p50_1 <= 1.0),
                ours[c8].cpu_ms / new[c8].cpu_ms
            );
            println!(
                "ours / {} (the next frontier, aim >= 0.7):",
                self.raw_same.label
            );
            let per_level: Vec<String> = LEVELS
                .iter()
                .enumerate()
                .map(|(l, c)| format!("c={c} {:.3}x", ours[l].stats.thr() / same[l].stats.thr()))
                .collect();
            println!(
                "  throughput {}; c=1 p50 {:.3}x; CPU per capture at c=8 {:.2}x",
                per_level.join(", "),
                ms(ours[c1].stats.p50()) / ms(same[c1].stats.p50()),
                ours[c8].cpu_ms / same[c8].cpu_ms
            );
            println!(
                "ours / {} (the isolation floor: a fresh context per capture, no HTTP, ledger, egress proxy or daemon-side encoding):",
                self.raw_fresh.label
            );
            println!(
                "  c=8 throughput {:.3}x, c=1 p50 {:.3}x, CPU per capture at c=8 {:.2}x; the floor / {}: c=8 throughput {:.3}x",
                ours[c8].stats.thr() / fresh[c8].stats.thr(),
                ms(ours[c1].stats.p50()) / ms(fresh[c1].stats.p50()),
                ours[c8].cpu_ms / fresh[c8].cpu_ms,
                self.raw_new.label,
                fresh[c8].stats.thr() / new[c8].stats.thr()
            );
            println!(
                "ours / naive: c=1 p50 {:.3}x (naive p50 {:.0} ms)",
                ms(ours[c1].stats.p50()) / ms(self.naive[p].stats.p50()),
                ms(self.naive[p].stats.p50())
            );
            let phases: Vec<String> = PHASES
                .iter()
                .map(|name| {
                    let values: Vec<f64> = ours[c1]
                        .timings
                        .iter()
                        .filter_map(|t| t.iter().find(|(n, _)| n == name).map(|(_, v)| *v))
                        .collect();
                    format!("{name} {:.1}", median(values))
                })
                .collect();
            println!(
                "ours at c=1, median Server-Timing (ms, n={}): {}",
                ours[c1].timings.len(),
                phases.join(", ")
            );
            ours_peak_kb = ours_peak_kb.max(ours[c8].pss_kb.unwrap_or(0));
        }

        println!();
        let pss_ok = mb(ours_peak_kb) <= PSS_GOAL_MB;
        all_pass &= pss_ok;
        let peak = |fleet: &FleetRun| {
            fleet
                .cells
                .iter()
                .filter_map(|cells| cells.last().and_then(|c| c.pss_kb))
                .max()
                .map_or(f64::NAN, mb)
        };
        println!(
            "peak PSS at c={PSS_LEVEL}, both pages (ours = daemon + its Chromium; raw = the Chromium processes): ours {:.0} MB, {} {:.0} MB, {} {:.0} MB, {} {:.0} MB",
            mb(ours_peak_kb),
            self.raw_new.label,
            peak(self.raw_new),
            self.raw_same.label,
            peak(self.raw_same),
            self.raw_fresh.label,
            peak(self.raw_fresh)
        );
        println!(
            "ours' peak PSS {:.0} MB vs an isolated puppeteer server (~{PSS_GOAL_MB:.0} MB): {}",
            mb(ours_peak_kb),
            verdict(pss_ok)
        );
        all_pass
    }
}

fn main() -> anyhow::Result<()> {
    if !common::invoked_by_cargo_bench() {
        return Ok(());
    }
    let bench_start = Instant::now();
    let defaults = Config::default();
    let overrides = ours_overrides()?;
    let engine = match override_of(&overrides, "SHOTFARM_FARM__ENGINE") {
        None => defaults.farm.engine,
        Some("chromium") => Engine::Chromium,
        Some("headless-shell") => Engine::HeadlessShell,
        Some(other) => {
            bail!("CAPTURE_LOAD_OURS_ENV: SHOTFARM_FARM__ENGINE={other} is not an engine")
        }
    };
    let size = |key: &str, default: usize| -> anyhow::Result<usize> {
        override_of(&overrides, key).map_or(Ok(default), |v| {
            v.parse()
                .with_context(|| format!("CAPTURE_LOAD_OURS_ENV: {key}={v} is not a number"))
        })
    };
    let fleet_size = (
        size("SHOTFARM_FARM__BROWSERS", defaults.farm.browsers)?,
        size(
            "SHOTFARM_FARM__TABS_PER_BROWSER",
            defaults.farm.tabs_per_browser,
        )?,
    );
    let warmup = fleet_size.0 * fleet_size.1;
    for e in [Engine::Chromium, engine] {
        if !e.binary().is_file() {
            bail!(
                "{} is missing: install Debian's {} package (scripts/install-deps.sh)",
                e.binary().display(),
                e.package()
            );
        }
    }
    // Fail on a bad scale now rather than after minutes of work.
    scale()?;

    let landing: &'static str = Box::leak(common::landing_page().into_boxed_str());
    let fixtures = start_fixtures(landing)?;
    let sampler = PssSampler::start()?;
    let excluded = [fixtures.tid, sampler.tid];
    let pages = [
        PageDef {
            name: "tiny",
            url: format!("http://{}/tiny", fixtures.addr),
            bytes: TINY_PAGE.len(),
        },
        PageDef {
            name: "landing",
            url: format!("http://{}/landing", fixtures.addr),
            bytes: landing.len(),
        },
    ];
    let logs = tempfile::Builder::new()
        .prefix("capture-load-logs-")
        .tempdir()?;
    // Children are forked from the main thread: their death signal follows it.
    let redis = RedisServer::start(Persistence::None)?;
    let key = provision(&redis.url).context("provisioning an account and API key")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;

    let overrides_note = if overrides.is_empty() {
        "none".to_string()
    } else {
        overrides
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    println!(
        "capture_load: fixtures on {}; cores: {}; load average at start: {}",
        fixtures.addr,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load_average()
    );
    println!(
        "ours: {} serve, default config (engine {}, {} browsers x {} tabs, png_encoder {:?}), Redis ledger (no AOF); overrides: {overrides_note}",
        env!("CARGO_BIN_EXE_shotfarm"),
        engine.name(),
        fleet_size.0,
        fleet_size.1,
        defaults.capture.png_encoder
    );

    // ---- ours -----------------------------------------------------------------------------
    let ours_label = format!("ours ({}, HTTP + ledger)", engine.name());
    let mut daemon = Ours::spawn(&redis.url, &overrides, logs.path())?;
    let ours = runtime.block_on(run_ours(
        &mut daemon,
        ours_label,
        &key,
        &pages,
        warmup,
        &sampler,
    ));
    if ours.is_err() {
        eprintln!(
            "daemon log (last lines):\n{}",
            daemon.daemon.process.log_tail(30)
        );
    }
    daemon.stop();
    drop(daemon);
    let ours = ours?;

    // ---- raw warm tabs: new-headless Chromium, then our engine ----------------------------
    let raw_label = |e: Engine| match e {
        Engine::Chromium => "raw warm tabs, chromium (new headless)".to_string(),
        other => format!("raw warm tabs, {}", other.name()),
    };
    let raw_new = runtime.block_on(run_raw(
        Engine::Chromium,
        RawMode::WarmTabs,
        raw_label(Engine::Chromium),
        fleet_size,
        &pages,
        &sampler,
        &excluded,
    ))?;
    let raw_same_run;
    let raw_same = if engine == Engine::Chromium {
        &raw_new
    } else {
        raw_same_run = runtime.block_on(run_raw(
            engine,
            RawMode::WarmTabs,
            raw_label(engine),
            fleet_size,
            &pages,
            &sampler,
            &excluded,
        ))?;
        &raw_same_run
    };

    // ---- raw fresh contexts: the isolation floor on our engine ----------------------------
    let raw_fresh = runtime.block_on(run_raw(
        engine,
        RawMode::FreshContexts,
        format!("raw fresh context per capture, {}", engine.name()),
        fleet_size,
        &pages,
        &sampler,
        &excluded,
    ))?;

    // ---- naive: a fresh browser per capture, on our engine --------------------------------
    let naive = runtime.block_on(run_naive(engine, &pages, &excluded))?;
    drop(runtime);
    drop(redis);

    // ---- report ---------------------------------------------------------------------------
    println!();
    println!(
        "engines: chromium = {} ({})",
        raw_new.product,
        Engine::Chromium.binary().display()
    );
    println!(
        "         ours and same-engine raw = {} ({}, {})",
        engine.name(),
        raw_same.product,
        engine.binary().display()
    );
    println!(
        "fleets: {} browsers x {} tabs for ours and raw; raw tabs each keep one context and page (viewport set once), Chromium's default PNG encoding; sandbox {}",
        fleet_size.0,
        fleet_size.1,
        if raw_placement().sandbox { "on" } else { "off (root)" }
    );
    let report = Report {
        pages: &pages,
        ours: &ours,
        raw_new: &raw_new,
        raw_same,
        raw_fresh: &raw_fresh,
        naive: &naive,
        naive_label: format!("naive, {} (launch per capture)", engine.name()),
    };
    let pass = report.print();
    println!();
    println!(
        "goals (ours vs raw warm tabs on new-headless chromium, both pages; peak PSS): {}",
        if pass { "all PASS" } else { "some FAIL" }
    );
    println!(
        "ratios are of this one run; the machine's load average at the end: {}",
        load_average()
    );
    println!(
        "total bench time: {:.1} s",
        bench_start.elapsed().as_secs_f64()
    );
    Ok(())
}
