//! What `ledger.replica_acks = 1` costs: reserve→commit pairs per second through the ledger
//! actor against a primary with one replica, with 0 and with 1 replica acks, in one run.
//!
//! Two private `redis-server`s on loopback (appendonly no: replication, not fsync, is measured),
//! the second a replica of the first. 64 funded accounts. At each concurrency in
//! `REPLICA_BENCH_C` (default `1,16,64`), C client tasks loop `Op::Reserve` then `Op::Commit`
//! through `Ledger::run` for `REPLICA_BENCH_SECS` (default 3) after a 0.5 s warm-up, once with
//! each setting (the order alternating from one C to the next). Printed: pairs/s and p50/p99 of
//! a pair with 0 and 1 acks, and the ratio 1 ÷ 0. At the end every account is audited, on the
//! primary and on the replica, and its `spent` must equal the pairs the bench saw committed.

#[allow(dead_code)]
mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};
use shotfarm::config::Config;
use shotfarm::ledger::{audit, new_id, store, Ledger, Op, Outcome};
use shotfarm::ops::Operator;
use testkit::redis::{Persistence, RedisServer};

const ACCOUNTS: usize = 64;
const WARMUP: Duration = Duration::from_millis(500);

fn config(url: &str, acks: u32) -> Config {
    let mut c = Config::default();
    c.redis.url = url.to_string();
    c.ledger.replica_acks = acks;
    c.ledger.replica_ack_timeout_ms = 1_000;
    c
}

/// One measured point: pairs completed in the window and each pair's latency.
async fn point(
    ledger: &Ledger,
    accounts: &[String],
    committed: &[AtomicU64],
    c: usize,
    window: Duration,
) -> anyhow::Result<(f64, Vec<Duration>)> {
    let measuring = AtomicBool::new(false);
    let stop = AtomicBool::new(false);
    let clients = (0..c).map(|i| {
        let (measuring, stop) = (&measuring, &stop);
        async move {
            let mut took = Vec::new();
            let mut n = i;
            while !stop.load(Ordering::Relaxed) {
                let slot = n % accounts.len();
                n += c;
                let account = accounts[slot].clone();
                let hold = new_id();
                let t = Instant::now();
                let reserved = ledger
                    .run(Op::Reserve {
                        account: account.clone(),
                        hold: hold.clone(),
                        amount: 1,
                        ttl: Duration::from_secs(60),
                        idempotency: None,
                        description: "replica bench".into(),
                        max_held: 0,
                    })
                    .await
                    .map_err(|e| anyhow!("reserve: {e}"))?;
                if !matches!(reserved, Outcome::Reserved { .. }) {
                    bail!("reserve: {reserved:?}");
                }
                let done = ledger
                    .run(Op::Commit {
                        account,
                        hold,
                        idempotency: None,
                        result: None,
                        result_ttl: Duration::from_secs(60),
                    })
                    .await
                    .map_err(|e| anyhow!("commit: {e}"))?;
                if !matches!(done, Outcome::Committed { .. }) {
                    bail!("commit: {done:?}");
                }
                committed[slot].fetch_add(1, Ordering::Relaxed);
                if measuring.load(Ordering::Relaxed) {
                    took.push(t.elapsed());
                }
            }
            Ok::<_, anyhow::Error>(took)
        }
    });
    let clock = async {
        tokio::time::sleep(WARMUP).await;
        measuring.store(true, Ordering::Relaxed);
        let t = Instant::now();
        tokio::time::sleep(window).await;
        stop.store(true, Ordering::Relaxed);
        t.elapsed()
    };
    let (results, measured) = futures::join!(futures::future::join_all(clients), clock);
    let mut all = Vec::new();
    for r in results {
        all.extend(r?);
    }
    all.sort();
    Ok((all.len() as f64 / measured.as_secs_f64(), all))
}

fn ms(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

async fn linked(url: &str) -> anyhow::Result<()> {
    let client = redis::Client::open(url)?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let start = Instant::now();
    loop {
        let info: String = redis::cmd("INFO")
            .arg("replication")
            .query_async(&mut conn)
            .await?;
        if info.contains("master_link_status:up") {
            return Ok(());
        }
        if start.elapsed() > Duration::from_secs(10) {
            bail!("the replica never linked: {info}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn main() -> anyhow::Result<()> {
    if !common::invoked_by_cargo_bench() {
        return Ok(());
    }
    let window = Duration::from_secs_f64(
        std::env::var("REPLICA_BENCH_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(3.0),
    );
    let levels: Vec<usize> = std::env::var("REPLICA_BENCH_C")
        .unwrap_or_else(|_| "1,16,64".into())
        .split(',')
        .map(|s| {
            s.trim()
                .parse::<usize>()
                .context("REPLICA_BENCH_C: numbers")
        })
        .collect::<anyhow::Result<_>>()?;
    let primary = RedisServer::start(Persistence::None)?;
    let port = primary.port.to_string();
    let replica = RedisServer::start_with(Persistence::None, &["--replicaof", "127.0.0.1", &port])?;
    let (primary_url, replica_url) = (primary.url.clone(), replica.url.clone());
    let rows = shotfarm::ops::block_on(|| async move {
        linked(&replica_url).await?;
        let fast = Operator::connect(&config(&primary_url, 0)).await?;
        let durable = Operator::connect(&config(&primary_url, 1)).await?;
        let mut accounts = Vec::new();
        for i in 0..ACCOUNTS {
            let a = durable
                .accounts
                .create(&format!("replica{i}@bench.example"), None)
                .await
                .map_err(|e| anyhow!("create account: {e}"))?;
            durable
                .grant(&a.id, 50_000_000, "replica bench funding")
                .await?;
            accounts.push(a.id);
        }
        let committed: Vec<AtomicU64> = accounts.iter().map(|_| AtomicU64::new(0)).collect();
        let mut rows = Vec::new();
        for (i, &c) in levels.iter().enumerate() {
            let mut got = [None, None];
            for k in 0..2 {
                let acks = (i + k) % 2;
                let ledger = if acks == 0 {
                    &fast.ledger
                } else {
                    &durable.ledger
                };
                got[acks] = Some(point(ledger, &accounts, &committed, c, window).await?);
            }
            rows.push((c, got[0].take(), got[1].take()));
        }
        // Every pair is in the ledger, on the primary and (replicated) on the replica.
        let wait = redis::Client::open(primary_url.as_str())?;
        let mut conn = wait.get_multiplexed_async_connection().await?;
        let _: i64 = redis::cmd("WAIT")
            .arg(1)
            .arg(5_000)
            .query_async(&mut conn)
            .await?;
        for url in [&primary_url, &replica_url] {
            let client = redis::Client::open(url.as_str())?;
            let mut conn = client.get_multiplexed_async_connection().await?;
            for (account, n) in accounts.iter().zip(&committed) {
                let s = store::snapshot(&mut conn, account)
                    .await?
                    .ok_or_else(|| anyhow!("account {account} missing on {url}"))?;
                let problems = audit::violations(&s);
                if !problems.is_empty() {
                    bail!("{account} on {url}: {problems:?}");
                }
                if s.balance.spent != n.load(Ordering::Relaxed) as i64 {
                    bail!(
                        "{account} on {url}: spent {} != {} committed",
                        s.balance.spent,
                        n.load(Ordering::Relaxed)
                    );
                }
            }
        }
        Ok::<_, anyhow::Error>(rows)
    })?;
    drop((primary, replica));
    println!("\nreplica_acks bench: a primary with one replica on loopback, {ACCOUNTS} accounts, {:.1} s per point, one run\n", window.as_secs_f64());
    println!("| C | acks 0 pairs/s | p50 ms | p99 ms | acks 1 pairs/s | p50 ms | p99 ms | 1 ÷ 0 |");
    println!("|---|---|---|---|---|---|---|---|");
    for (c, fast, durable) in &rows {
        let (Some((f, fl)), Some((d, dl))) = (fast, durable) else {
            continue;
        };
        println!(
            "| {c} | {f:.0} | {:.2} | {:.2} | {d:.0} | {:.2} | {:.2} | {:.2} |",
            ms(fl, 0.5),
            ms(fl, 0.99),
            ms(dl, 0.5),
            ms(dl, 0.99),
            d / f
        );
    }
    println!("\nevery account audited on the primary and the replica: spent = the pairs committed");
    Ok(())
}
