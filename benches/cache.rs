//! Cache bench: what a cache hit costs against the same capture uncached, in one run.
//!
//! The daemon binary (`target/release/shotfarm serve`, default fleet and disk cache), a private
//! redis-server, and a fixture site on loopback serving the ~50 KB landing page. At each
//! concurrency in `CACHE_CONCURRENCY` (default `1,8`), `CACHE_REQUESTS` (default 40) requests
//! of each variant:
//!
//! - **uncached**: the landing page captured each time (one credit each);
//! - **cache hit**: the same capture with `cache=true`, its entry filled once before (free);
//! - **static file**: the same image bytes from a trivial in-memory HTTP server on loopback —
//!   the limit of answering an image over HTTP, what a hit could at best cost.
//!
//! Printed: throughput and p50/p95 of each, and the ratios hit ÷ uncached (throughput, p50)
//! and hit ÷ static file (throughput).

#[allow(dead_code)]
mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::Bytes;
use testkit::process::ServeProcess;
use testkit::redis::{Persistence, RedisServer};
use warp::Filter;

/// Serves `body` at every path on its own thread; returns its address.
fn serve(body: Bytes, content_type: &'static str) -> anyhow::Result<SocketAddr> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("fixture".into())
        .spawn(move || {
            let run = || -> anyhow::Result<()> {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                rt.block_on(async move {
                    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
                    let _ = tx.send(listener.local_addr());
                    let routes = warp::any().map(move || {
                        warp::reply::with_header(body.to_vec(), "content-type", content_type)
                    });
                    warp::serve(routes).incoming(listener).run().await;
                    Ok::<_, anyhow::Error>(())
                })
            };
            if let Err(e) = run() {
                eprintln!("fixture server failed: {e:#}");
            }
        })?;
    Ok(rx.recv_timeout(Duration::from_secs(10))??)
}

/// `n` GETs of `url` with `c` in flight: each one's latency, and the whole run's wall time.
async fn drive(
    client: &reqwest::Client,
    url: &str,
    key: Option<&str>,
    n: usize,
    c: usize,
) -> anyhow::Result<(Vec<Duration>, Duration)> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let started = Instant::now();
    let workers = (0..c).map(|_| async {
        let mut took = Vec::new();
        while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < n {
            let t = Instant::now();
            let mut req = client.get(url);
            if let Some(key) = key {
                req = req.header("x-api-key", key);
            }
            let r = req.send().await?;
            let status = r.status();
            let body = r.bytes().await?;
            if status != 200 {
                bail!("{url}: {status} {}", String::from_utf8_lossy(&body));
            }
            took.push(t.elapsed());
        }
        Ok::<_, anyhow::Error>(took)
    });
    let mut all = Vec::new();
    for r in futures::future::join_all(workers).await {
        all.extend(r?);
    }
    all.sort();
    Ok((all, started.elapsed()))
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)].as_secs_f64() * 1000.0
}

fn main() -> anyhow::Result<()> {
    if !common::invoked_by_cargo_bench() {
        return Ok(());
    }
    let n = common::env_usize("CACHE_REQUESTS", 40)?.max(2);
    let levels: Vec<usize> = std::env::var("CACHE_CONCURRENCY")
        .unwrap_or_else(|_| "1,8".into())
        .split(',')
        .map(|s| {
            s.trim()
                .parse::<usize>()
                .context("CACHE_CONCURRENCY: numbers")
        })
        .collect::<anyhow::Result<_>>()?;
    let dir = tempfile::Builder::new().prefix("cache-bench-").tempdir()?;
    let site = serve(Bytes::from(common::landing_page()), "text/html")?;
    let redis = RedisServer::start(Persistence::None)?;
    let config = testkit::accounts::on_redis(&redis.url);
    let funded =
        testkit::accounts::provision(&config, "cache@bench.example", None, 1_000_000, "cache")?;
    let binary = Path::new(env!("CARGO_BIN_EXE_shotfarm"));
    let log = dir.path().join("daemon.log");
    let mut daemon = ServeProcess::spawn(binary, "cache", &log, |cmd| {
        cmd.args(["--redis-url", &redis.url]);
    })?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let result = runtime.block_on(async {
        let client = reqwest::Client::new();
        common::wait_browsers_ready(&mut daemon, &client).await?;
        let page = format!("http://{site}/landing");
        let capture = format!(
            "http://{}/api/v1/screenshot?url={}",
            daemon.api,
            form_urlencoded::byte_serialize(page.as_bytes()).collect::<String>()
        );
        let cached = format!("{capture}&cache=true");
        // Warm-up, and the entry the hits are served from.
        drive(&client, &capture, Some(&funded.key), 2, 1).await?;
        let image = client
            .get(&cached)
            .header("x-api-key", &funded.key)
            .send()
            .await?
            .bytes()
            .await?;
        let file = serve(image.clone(), "image/png")?;
        let file = format!("http://{file}/shot.png");
        let mut rows = Vec::new();
        for &c in &levels {
            let uncached = drive(&client, &capture, Some(&funded.key), n, c).await?;
            let hits = drive(&client, &cached, Some(&funded.key), n, c).await?;
            let static_file = drive(&client, &file, None, n, c).await?;
            rows.push((c, uncached, hits, static_file));
        }
        Ok::<_, anyhow::Error>((rows, image.len()))
    });
    let (rows, bytes) = match result {
        Ok(r) => r,
        Err(e) => {
            eprintln!("daemon log (last lines):\n{}", daemon.process.log_tail(40));
            return Err(e);
        }
    };
    println!("\ncache bench: landing page ({bytes}-byte PNG), {n} requests per cell, one run\n");
    println!("| c | variant | req/s | p50 ms | p95 ms |");
    println!("|---|---|---|---|---|");
    let rate = |r: &(Vec<Duration>, Duration)| r.0.len() as f64 / r.1.as_secs_f64();
    for (c, uncached, hits, file) in &rows {
        for (label, r) in [
            ("uncached", uncached),
            ("cache hit", hits),
            ("static file", file),
        ] {
            println!(
                "| {c} | {label} | {:.1} | {:.1} | {:.1} |",
                rate(r),
                pct(&r.0, 0.5),
                pct(&r.0, 0.95)
            );
        }
    }
    println!();
    for (c, uncached, hits, file) in &rows {
        println!(
            "c={c}: hit ÷ uncached throughput {:.1}×, p50 {:.3}×; hit ÷ static file throughput {:.2}×",
            rate(hits) / rate(uncached),
            pct(&hits.0, 0.5) / pct(&uncached.0, 0.5),
            rate(hits) / rate(file)
        );
    }
    Ok(())
}
