//! Async jobs against synchronous captures, at the same concurrency, in one run.
//!
//! One daemon binary (`target/release/shotfarm`, its default fleet) on a private redis-server,
//! a tiny page and a webhook receiver on loopback. **sync**: `JOBS_CAPTURES` captures (default
//! 48), `JOBS_CONCURRENCY` (default 8) in flight, each `GET /api/v1/screenshot` until its PNG is
//! in hand. **async**: the same number of `async=true` jobs, submitted with the same concurrency,
//! timed from the first submission until the receiver has every job's webhook; `jobs.workers` =
//! the concurrency. Prints both throughputs and async ÷ sync (the issue asks ≥ 0.95).

#[allow(dead_code)]
mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use testkit::process::ServeProcess;
use testkit::redis::{Persistence, RedisServer};
use warp::Filter;

const PAGE: &str = "<!doctype html><html><body style='margin:0;background:#2a6'><h1>async bench</h1></body></html>";

/// Serves the page at `/page` and counts POSTs to `/hook`.
fn serve_fixtures(hooks: Arc<AtomicUsize>) -> anyhow::Result<SocketAddr> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("fixture runtime");
        runtime.block_on(async move {
            let page = warp::path!("page").map(|| warp::reply::html(PAGE));
            let hook = warp::path!("hook").and(warp::post()).map(move || {
                hooks.fetch_add(1, Ordering::SeqCst);
                warp::reply::with_status("", warp::http::StatusCode::NO_CONTENT)
            });
            let routes = page.or(hook);
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind fixtures");
            let _ = tx.send(listener.local_addr().expect("addr"));
            warp::serve(routes).incoming(listener).run().await;
        });
    });
    rx.recv_timeout(Duration::from_secs(10))
        .context("the fixture server did not start")
}

async fn run_sync(
    client: &reqwest::Client,
    api: SocketAddr,
    page: &str,
    n: usize,
    c: usize,
) -> anyhow::Result<Duration> {
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..c {
        let (client, next, page) = (client.clone(), next.clone(), page.to_string());
        tasks.push(tokio::spawn(async move {
            while next.fetch_add(1, Ordering::SeqCst) < n {
                let r = client
                    .get(format!("http://{api}/api/v1/screenshot"))
                    .query(&[("url", page.as_str())])
                    .send()
                    .await?;
                if !r.status().is_success() {
                    bail!("sync capture answered {}", r.status());
                }
                r.bytes().await?;
            }
            Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(start.elapsed())
}

async fn run_async(
    client: &reqwest::Client,
    api: SocketAddr,
    page: &str,
    hook: &str,
    hooks: &AtomicUsize,
    n: usize,
    c: usize,
) -> anyhow::Result<Duration> {
    let before = hooks.load(Ordering::SeqCst);
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..c {
        let (client, next, page, hook) = (
            client.clone(),
            next.clone(),
            page.to_string(),
            hook.to_string(),
        );
        tasks.push(tokio::spawn(async move {
            while next.fetch_add(1, Ordering::SeqCst) < n {
                let r = client
                    .post(format!("http://{api}/api/v1/screenshot"))
                    .json(&serde_json::json!({"url": page, "async": true, "webhook_url": hook}))
                    .send()
                    .await?;
                if r.status().as_u16() != 202 {
                    bail!("async submission answered {}", r.status());
                }
            }
            Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let limit = Instant::now() + Duration::from_secs(600);
    while hooks.load(Ordering::SeqCst) < before + n {
        if Instant::now() > limit {
            bail!("not every async job was delivered within 10 minutes");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(start.elapsed())
}

fn main() -> anyhow::Result<()> {
    if !common::invoked_by_cargo_bench() {
        return Ok(());
    }
    let n = common::env_usize("JOBS_CAPTURES", 48)?.max(1);
    let c = common::env_usize("JOBS_CONCURRENCY", 8)?.max(1);
    let redis = RedisServer::start(Persistence::AppendOnly)?;
    let hooks = Arc::new(AtomicUsize::new(0));
    let fixtures = serve_fixtures(hooks.clone())?;
    let page = format!("http://{fixtures}/page");
    let hook = format!("http://{fixtures}/hook");
    let logs = tempfile::Builder::new()
        .prefix("async-jobs-logs-")
        .tempdir()?;
    let log = logs.path().join("daemon.log");
    let binary = std::path::Path::new(env!("CARGO_BIN_EXE_shotfarm"));
    let mut daemon = ServeProcess::spawn(binary, "async-jobs", &log, |cmd| {
        cmd.args(["--redis-url", &redis.url])
            .env("SHOTFARM_JOBS__WORKERS", c.to_string())
            .env("SHOTFARM_LEDGER__MAX_IN_FLIGHT_PER_ACCOUNT", "0")
            .env("SHOTFARM_JOBS__MAX_QUEUED_PER_ACCOUNT", (n + 1).to_string());
    })?;
    let funded = testkit::accounts::provision(
        &testkit::accounts::on_redis(&redis.url),
        "async-bench@bench.example",
        None,
        (3 * n + 16) as i64,
        "bench",
    )?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert("x-api-key", funded.key.parse()?);
        let client = reqwest::Client::builder()
            .default_headers(headers)
            .pool_max_idle_per_host(c)
            .build()?;
        common::wait_browsers_ready(&mut daemon, &client).await?;
        // Warm-up: one of each.
        run_sync(&client, daemon.api, &page, c, c).await?;
        run_async(&client, daemon.api, &page, &hook, &hooks, c, c).await?;
        let sync = run_sync(&client, daemon.api, &page, n, c).await?;
        let asynchronous = run_async(&client, daemon.api, &page, &hook, &hooks, n, c).await?;
        let per_s = |d: Duration| n as f64 / d.as_secs_f64();
        println!(
            "{n} captures at c={c}: sync {:.2}/s ({:.1} s), async {:.2}/s ({:.1} s, until every webhook arrived); async ÷ sync = {:.2}",
            per_s(sync),
            sync.as_secs_f64(),
            per_s(asynchronous),
            asynchronous.as_secs_f64(),
            per_s(asynchronous) / per_s(sync)
        );
        Ok::<_, anyhow::Error>(())
    })
}
