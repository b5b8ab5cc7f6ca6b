//! Blocking bench: what the filter lists cost and save, in one run.
//!
//! The daemon binary (`target/release/shotfarm serve`, default fleet), a private redis-server,
//! and a fixture site on loopback serving two pages under a public-looking name
//! (`news.example`, pinned to 127.0.0.1 with `egress.hosts`, as the ad and tracker hosts are):
//!
//! - **news page with ads** (the kit's `news_page`): an ad server's script and banner, two
//!   trackers, an ad slot EasyList hides, a consent dialog. The ad and tracker hosts answer after
//!   `BLOCKING_AD_DELAY_MS` (default 150 ms; ad auctions are slow) — that is what blocking saves.
//! - **landing page** (~50 KB, no external requests): nothing to block, so blocking can only
//!   cost (every request paused and judged, the page's classes and ids read for element hiding).
//!
//! Variants, captured in interleaved rounds (one of each per round, so drift hits all alike),
//! `BLOCKING_ROUNDS` (default 20) rounds at one capture in flight: the news page plain, with
//! `block_ads`, and with all three lists; the landing page plain and with all three lists.
//! Printed: p50 latency and image bytes of each, and the ratios blocked ÷ plain on each page.

#[allow(dead_code)]
mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use testkit::pages::{news_asset, news_page, AD_HOSTS, TRACKER_HOSTS};
use testkit::process::ServeProcess;
use testkit::redis::{Persistence, RedisServer};
use warp::Filter;

const SITE_HOST: &str = "news.example";

/// (label, page path, options)
const VARIANTS: &[(&str, &str, &str)] = &[
    ("news, plain", "/news", ""),
    ("news, block_ads", "/news", "&block_ads=true"),
    (
        "news, all three lists",
        "/news",
        "&block_ads=true&block_trackers=true&block_cookie_banners=true",
    ),
    ("landing, plain", "/landing", ""),
    (
        "landing, all three lists",
        "/landing",
        "&block_ads=true&block_trackers=true&block_cookie_banners=true",
    ),
];

fn env_number(name: &str, default: u64) -> anyhow::Result<u64> {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .with_context(|| format!("{name} must be a number")),
        Err(_) => Ok(default),
    }
}

/// The fixture site on its own thread and runtime; ad and tracker hosts answer after `delay`.
fn start_site(delay: Duration) -> anyhow::Result<SocketAddr> {
    let (tx, rx) = std::sync::mpsc::channel();
    let landing: &'static str = Box::leak(common::landing_page().into_boxed_str());
    std::thread::Builder::new()
        .name("fixtures".into())
        .spawn(move || {
            let run = || -> anyhow::Result<()> {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                rt.block_on(async move {
                    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
                    let addr = listener.local_addr()?;
                    let port = addr.port();
                    let _ = tx.send(Ok(addr));
                    let routes = warp::get()
                        .and(warp::header::optional::<String>("host"))
                        .and(warp::path::full())
                        .then(
                            move |host: Option<String>, path: warp::path::FullPath| async move {
                                let host = host.unwrap_or_default();
                                let host = host.split(':').next().unwrap_or_default();
                                let third_party =
                                    AD_HOSTS.contains(&host) || TRACKER_HOSTS.contains(&host);
                                if third_party {
                                    tokio::time::sleep(delay).await;
                                }
                                let (body, kind) = match path.as_str() {
                                    "/news" => (news_page(port), "text/html"),
                                    "/landing" => (landing.to_string(), "text/html"),
                                    other => {
                                        let (body, kind) = news_asset(other);
                                        (body.to_string(), kind)
                                    }
                                };
                                warp::reply::with_header(
                                    warp::reply::with_header(body, "content-type", kind),
                                    "cache-control",
                                    "no-store",
                                )
                            },
                        );
                    warp::serve(routes).incoming(listener).run().await;
                    Ok::<_, anyhow::Error>(())
                })
            };
            if let Err(e) = run() {
                eprintln!("fixture site failed: {e:#}");
            }
        })?;
    rx.recv_timeout(Duration::from_secs(10))
        .map_err(|_| anyhow::anyhow!("the fixture site did not start"))?
}

/// A config file pinning the site's, the ad and the tracker hosts to loopback.
fn write_config(dir: &Path) -> anyhow::Result<std::path::PathBuf> {
    let mut toml = String::from("[egress.hosts]\n");
    for host in AD_HOSTS.iter().chain(TRACKER_HOSTS).chain([&SITE_HOST]) {
        toml.push_str(&format!("\"{host}\" = \"127.0.0.1\"\n"));
    }
    let path = dir.join("blocking.toml");
    std::fs::write(&path, toml)?;
    Ok(path)
}

/// One capture: its latency and image size.
async fn capture(
    client: &reqwest::Client,
    api: SocketAddr,
    key: &str,
    url: &str,
    options: &str,
) -> anyhow::Result<(Duration, usize)> {
    let started = Instant::now();
    let r = client
        .get(format!(
            "http://{api}/api/v1/screenshot?url={}{options}",
            form_urlencoded::byte_serialize(url.as_bytes()).collect::<String>()
        ))
        .header("x-api-key", key)
        .send()
        .await?;
    let status = r.status();
    let body = r.bytes().await?;
    if status != 200 {
        bail!(
            "{url}{options}: {status} {}",
            String::from_utf8_lossy(&body)
        );
    }
    Ok((started.elapsed(), body.len()))
}

fn p50(samples: &mut [Duration]) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() -> anyhow::Result<()> {
    if !common::invoked_by_cargo_bench() {
        return Ok(());
    }
    let rounds = env_number("BLOCKING_ROUNDS", 20)?.max(1) as usize;
    let delay = Duration::from_millis(env_number("BLOCKING_AD_DELAY_MS", 150)?);
    let dir = tempfile::Builder::new()
        .prefix("blocking-bench-")
        .tempdir()?;
    let site = start_site(delay)?;
    let redis = RedisServer::start(Persistence::None)?;
    let config = testkit::accounts::on_redis(&redis.url);
    let funded = testkit::accounts::provision(
        &config,
        "blocking@bench.example",
        None,
        1_000_000,
        "blocking",
    )?;
    let config_file = write_config(dir.path())?;
    let binary = Path::new(env!("CARGO_BIN_EXE_shotfarm"));
    let log = dir.path().join("daemon.log");
    let mut daemon = ServeProcess::spawn(binary, "blocking", &log, |cmd| {
        cmd.args(["--config", &config_file.to_string_lossy()])
            .args(["--redis-url", &redis.url]);
    })?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let result = runtime.block_on(async {
        let client = reqwest::Client::new();
        common::wait_browsers_ready(&mut daemon, &client).await?;
        let base = format!("http://{SITE_HOST}:{}", site.port());
        // Warm-up: one of each (the filter engines are built by then).
        for (_, path, options) in VARIANTS {
            capture(
                &client,
                daemon.api,
                &funded.key,
                &format!("{base}{path}"),
                options,
            )
            .await?;
        }
        let mut latencies: Vec<Vec<Duration>> = vec![Vec::new(); VARIANTS.len()];
        let mut bytes: Vec<usize> = vec![0; VARIANTS.len()];
        for _ in 0..rounds {
            for (i, (_, path, options)) in VARIANTS.iter().enumerate() {
                let url = format!("{base}{path}");
                let (took, size) = capture(&client, daemon.api, &funded.key, &url, options).await?;
                latencies[i].push(took);
                bytes[i] = size;
            }
        }
        Ok::<_, anyhow::Error>((latencies, bytes))
    });
    let (mut latencies, bytes) = match result {
        Ok(r) => r,
        Err(e) => {
            eprintln!("daemon log (last lines):\n{}", daemon.process.log_tail(40));
            return Err(e);
        }
    };
    let p50s: Vec<Duration> = latencies.iter_mut().map(|l| p50(l)).collect();
    println!(
        "\nblocking bench: {rounds} rounds at c=1, ad and tracker hosts answer after {} ms\n",
        delay.as_millis()
    );
    println!("| variant | p50 ms | image bytes | p50 ÷ plain | bytes ÷ plain |");
    println!("|---|---|---|---|---|");
    for (i, (label, _, _)) in VARIANTS.iter().enumerate() {
        let plain = if i < 3 { 0 } else { 3 };
        println!(
            "| {label} | {:.0} | {} | {:.2} | {:.2} |",
            ms(p50s[i]),
            bytes[i],
            ms(p50s[i]) / ms(p50s[plain]),
            bytes[i] as f64 / bytes[plain] as f64
        );
    }
    println!(
        "\nnews page: block_ads ÷ plain {:.2}× time; landing page (nothing to block): all lists ÷ plain {:.2}× time",
        ms(p50s[1]) / ms(p50s[0]),
        ms(p50s[4]) / ms(p50s[3])
    );
    Ok(())
}
