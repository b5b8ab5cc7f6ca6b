//! Chaos: load while Chromium, the daemon and Redis fail; the ledger must stay exact.
//!
//! One test, bounded in time and on loopback only. A private redis-server (append-only, fsync
//! always) and the real daemon binary (its own profile directory, short holds) serve several
//! accounts with a known number of credits, each driven by a few clients. Every capture carries
//! a unique `Idempotency-Key`; a client retries the same key after a lost connection, a 5xx, a
//! 409 or a 429, so that a charge whose response was lost is still delivered as a replay.
//! Meanwhile a schedule SIGKILLs Chromium browsers and renderers, SIGKILLs and restarts the
//! daemon, and kills and restarts Redis, while an auditor checks the ledger invariants of every
//! account on atomic snapshots.
//!
//! Afterwards, for every account: the invariants hold, no hold is open (none past its expiry,
//! the sweep indexes are empty), no `Idempotency-Key` is stuck in flight, `granted` is what was
//! granted, and every charge is one of our keys that delivered an image (each `usage`
//! transaction is the hold recorded by exactly one key whose image we received). An image
//! delivered without a charge is only accepted where the daemon logged that the commit of that
//! very request could not land (the documented "error in the customer's favour"). Once the
//! daemon is stopped, no process remains under its profile directory.
//!
//! `CHAOS_SEED=<n>` replays a run's choices (pages, targets, jitter); the daemon logs of a
//! failing run (of every run with `CHAOS_KEEP_LOGS=1`) are kept, in the directory the report
//! names.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use shotfarm::ledger::keys::{self, AccountKeys};
use shotfarm::ledger::TxKind;

use crate::redis_server::{start_redis, RedisServer};
use crate::support::{
    browser_pids, enc, eventually, page, processes_under, provision_on, spawn_binary_on,
    wait_ready_at, ChildGuard, Rng,
};

/// How long clients start new keys.
const LOAD: Duration = Duration::from_secs(40);
/// How long a client keeps retrying one key before it gives up on it (reported as a problem).
const KEY_PATIENCE: Duration = Duration::from_secs(45);
/// The capture timeout (the daemon's default; requests do not set it).
const CAPTURE_TIMEOUT_MS: u64 = 8_000;
const HOLD_GRACE_MS: u64 = 1_000;
const SWEEP_INTERVAL_MS: u64 = 200;
/// Credits of each account: the first one runs dry under load (402s), the others do not.
const CREDITS: [i64; 4] = [12, 300, 300, 300];
const CLIENTS_PER_ACCOUNT: usize = 3;
const BROWSERS: usize = 2;
/// Share of attempts whose client hangs up after 0.3–1.5 s.
const IMPATIENT_PERCENT: u64 = 12;
/// How long Redis stays down when it is restarted.
const REDIS_OUTAGE: Duration = Duration::from_millis(1_500);

/// The schedule: when (from the start of the load) each fault is injected; each gets up to
/// 800 ms of seeded jitter.
const PLAN: &[(u64, Fault)] = &[
    (3_000, Fault::KillBrowser),
    (6_000, Fault::KillRenderer),
    (9_000, Fault::KillBrowser),
    (12_000, Fault::KillDaemon),
    (19_000, Fault::KillBrowser),
    (22_000, Fault::RestartRedis),
    (26_000, Fault::KillBrowser),
    (26_100, Fault::KillBrowser),
    (28_500, Fault::KillRenderer),
    (30_000, Fault::KillDaemon),
    (35_000, Fault::RestartRedis),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Fault {
    KillBrowser,
    KillRenderer,
    KillDaemon,
    RestartRedis,
}

impl Fault {
    fn name(self) -> &'static str {
        match self {
            Fault::KillBrowser => "SIGKILL a Chromium browser",
            Fault::KillRenderer => "SIGKILL a Chromium renderer",
            Fault::KillDaemon => "SIGKILL the daemon and restart it",
            Fault::RestartRedis => "kill Redis and restart it",
        }
    }
}

/// What a key asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// The plain fixture page, 200×150.
    Plain,
    /// A page that arrives after 300 ms, 160×120.
    Slow,
    /// A script that throws: 400 `script_error` after the capture started (never charged).
    Throws,
}

impl Kind {
    fn pick(rng: &mut Rng) -> Kind {
        match rng.below(100) {
            0..=64 => Kind::Plain,
            65..=84 => Kind::Slow,
            _ => Kind::Throws,
        }
    }

    fn query(self) -> String {
        match self {
            Kind::Plain => format!("url={}&width=200&height=150", enc(&page("/plain"))),
            Kind::Slow => format!("url={}&width=160&height=120", enc(&page("/slow/300"))),
            Kind::Throws => format!(
                "url={}&width=120&height=90&js={}",
                enc(&page("/plain")),
                enc("throw new Error('chaos')")
            ),
        }
    }

    /// The image size a delivered capture must have.
    fn size(self) -> Option<(u32, u32)> {
        match self {
            Kind::Plain => Some((200, 150)),
            Kind::Slow => Some((160, 120)),
            Kind::Throws => None,
        }
    }
}

/// How one key ended.
#[derive(Debug, Clone)]
enum Settled {
    /// A valid PNG arrived; `fresh` names the request that captured it (None: a replay).
    Delivered { fresh: Option<String> },
    /// A definitive refusal: 402, or the thrown script's 400.
    Refused { status: u16 },
    /// An answer the test does not expect (a problem).
    Unexpected(String),
    /// Still no definitive answer after `KEY_PATIENCE` (a problem).
    GaveUp(String),
}

#[derive(Debug, Clone)]
struct KeyLog {
    account: usize,
    key: String,
    kind: Kind,
    attempts: u32,
    settled: Settled,
}

#[derive(Default)]
struct Stats {
    requests: u64,
    responses: BTreeMap<String, u64>,
}

/// What clients and the fault injector share.
struct Ctx {
    /// The base URL of the daemon incarnation currently running.
    base: RwLock<String>,
    load_end: Instant,
    stats: Mutex<Stats>,
}

impl Ctx {
    fn base(&self) -> String {
        self.base.read().expect("base lock").clone()
    }

    fn count(&self, what: String) {
        let mut stats = self.stats.lock().expect("stats lock");
        stats.requests += 1;
        *stats.responses.entry(what).or_default() += 1;
    }
}

/// The error code of a JSON error body (the 402 body has it at the top level).
fn error_code(body: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
    v["error"]["code"]
        .as_str()
        .or_else(|| v["code"].as_str())
        .unwrap_or("?")
        .to_string()
}

/// Whether `body` is a PNG of `size`.
fn check_png(body: &[u8], size: (u32, u32)) -> Result<(), String> {
    if !body.starts_with(b"\x89PNG\r\n\x1a\n") {
        return Err(format!("not PNG bytes ({} bytes)", body.len()));
    }
    let img = image::load_from_memory_with_format(body, image::ImageFormat::Png)
        .map_err(|e| format!("undecodable PNG: {e}"))?;
    if (img.width(), img.height()) != size {
        return Err(format!(
            "a {}x{} image, {}x{} expected",
            img.width(),
            img.height(),
            size.0,
            size.1
        ));
    }
    Ok(())
}

/// Sends one key until it has a definitive answer, retrying the same key (and options) after
/// a lost connection, a 5xx, a 409 or a 429.
async fn settle(
    ctx: &Ctx,
    http: &reqwest::Client,
    rng: &mut Rng,
    account: usize,
    key: String,
    kind: Kind,
) -> KeyLog {
    let started = Instant::now();
    let query = kind.query();
    let mut attempts = 0;
    let settled = loop {
        attempts += 1;
        let request_id = format!("{key}-r{attempts:03}");
        let url = format!("{}/api/v1/screenshot?{query}", ctx.base());
        let mut request = http
            .get(url)
            .header("idempotency-key", &key)
            .header("x-request-id", &request_id);
        // Some attempts hang up early: a response lost on the way, which the settlement must
        // survive (the retry finds the key in flight, then replays it).
        let impatient = rng.percent(IMPATIENT_PERCENT);
        if impatient {
            request = request.timeout(Duration::from_millis(300 + rng.below(1_200) as u64));
        }
        let sent = request.send().await;
        let mut retry_after = None;
        let last = match sent {
            Err(e) if impatient && e.is_timeout() => {
                ctx.count("client hung up".into());
                format!("hung up: {e}")
            }
            Err(e) => {
                ctx.count("transport error".into());
                format!("transport error: {e}")
            }
            Ok(r) => {
                let status = r.status().as_u16();
                let replayed = r
                    .headers()
                    .get("idempotent-replayed")
                    .is_some_and(|v| v == "true");
                let png = r
                    .headers()
                    .get("content-type")
                    .is_some_and(|v| v == "image/png");
                retry_after = r
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
                match (status, r.bytes().await) {
                    (_, Err(e)) if impatient && e.is_timeout() => {
                        ctx.count("client hung up".into());
                        format!("{status}, then hung up: {e}")
                    }
                    (_, Err(e)) => {
                        ctx.count("transport error (body)".into());
                        format!("{status}, then the body was lost: {e}")
                    }
                    (200, Ok(body)) => {
                        ctx.count(if replayed { "200 replayed" } else { "200" }.into());
                        let checked = match kind.size() {
                            Some(size) if png => check_png(&body, size),
                            Some(_) => Err("not image/png".to_string()),
                            None => Err("an image for a script that throws".to_string()),
                        };
                        break match checked {
                            Ok(()) => Settled::Delivered {
                                fresh: (!replayed).then_some(request_id),
                            },
                            Err(why) => Settled::Unexpected(format!("{request_id}: 200 but {why}")),
                        };
                    }
                    (_, Ok(body)) => {
                        let text = String::from_utf8_lossy(&body).to_string();
                        let code = error_code(&text);
                        ctx.count(format!("{status} {code}"));
                        match (status, code.as_str()) {
                            (402, "insufficient_credits") => break Settled::Refused { status },
                            (400, "script_error") if kind == Kind::Throws => {
                                break Settled::Refused { status }
                            }
                            // A renderer the schedule SIGKILLs mid-capture is answered as the
                            // daemon answers any renderer death: 422 `page_crashed`, free and not
                            // retried on its side (it cannot tell a kill from the page's own
                            // crash). The pages here are benign, so the client tries again.
                            (409, "idempotency_in_flight")
                            | (422, "page_crashed")
                            | (429, _)
                            | (500..=599, _) => {
                                format!("{status} {code}")
                            }
                            _ => {
                                break Settled::Unexpected(format!("{request_id}: {status} {text}"))
                            }
                        }
                    }
                }
            }
        };
        if started.elapsed() > KEY_PATIENCE {
            break Settled::GaveUp(format!("{attempts} attempts, last: {last}"));
        }
        let pause = match retry_after {
            Some(secs) => Duration::from_secs(secs.min(1)),
            None => Duration::from_millis(150 + rng.below(450) as u64),
        };
        tokio::time::sleep(pause).await;
    };
    KeyLog {
        account,
        key,
        kind,
        attempts,
        settled,
    }
}

/// One client of one account: new keys until the load ends or the account runs dry.
async fn client(
    ctx: Arc<Ctx>,
    account: usize,
    api_key: String,
    no: usize,
    seed: u64,
) -> Vec<KeyLog> {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        "x-api-key",
        reqwest::header::HeaderValue::from_str(&api_key).expect("key header"),
    );
    let http = reqwest::Client::builder()
        .default_headers(headers)
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client");
    let mut rng = Rng(seed);
    let mut out = Vec::new();
    let mut n = 0;
    while Instant::now() < ctx.load_end {
        let kind = Kind::pick(&mut rng);
        let key = format!("chaos-a{account}-c{no}-k{n}");
        let log = settle(&ctx, &http, &mut rng, account, key, kind).await;
        let dry = matches!(log.settled, Settled::Refused { status: 402 });
        out.push(log);
        if dry {
            break;
        }
        n += 1;
    }
    out
}

/// What the fault injector did and saw.
#[derive(Default)]
struct FaultLog {
    injected: BTreeMap<Fault, u32>,
    skipped: Vec<String>,
    problems: Vec<String>,
    daemon_logs: Vec<PathBuf>,
}

/// The environment of every daemon incarnation.
fn daemon_env() -> Vec<(&'static str, String)> {
    vec![
        ("SHOTFARM_FARM__BROWSERS", BROWSERS.to_string()),
        ("SHOTFARM_LEDGER__HOLD_GRACE_MS", HOLD_GRACE_MS.to_string()),
        (
            "SHOTFARM_LEDGER__SWEEP_INTERVAL_MS",
            SWEEP_INTERVAL_MS.to_string(),
        ),
        ("SHOTFARM_REDIS__RESPONSE_TIMEOUT_MS", "500".to_string()),
        ("SHOTFARM_REDIS__CONNECT_TIMEOUT_MS", "500".to_string()),
        (
            "SHOTFARM_CAPTURE__DEFAULT_TIMEOUT_MS",
            CAPTURE_TIMEOUT_MS.to_string(),
        ),
        ("SHOTFARM_FARM__RESTART_BACKOFF_MAX_MS", "2000".to_string()),
    ]
}

/// Starts a daemon incarnation logging to `logs/daemon-<n>.log` (not waiting until it is ready).
fn start_daemon(
    profiles: &Path,
    redis_url: &str,
    logs: &Path,
    fault_log: &mut FaultLog,
) -> (ChildGuard, String) {
    let log = logs.join(format!("daemon-{}.log", fault_log.daemon_logs.len() + 1));
    let env = daemon_env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (child, base) = spawn_binary_on(profiles, redis_url, &env, Some(&log));
    fault_log.daemon_logs.push(log);
    (child, base)
}

fn sigkill(pid: u32) -> bool {
    // SAFETY: kill(2) on a process found under this test's own profile directory.
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) == 0 }
}

/// Chromium renderers under `dir`.
fn renderer_pids(dir: &Path) -> Vec<u32> {
    processes_under(dir)
        .into_iter()
        .filter(|(_, cmd)| cmd.contains("--type=renderer"))
        .map(|(pid, _)| pid)
        .collect()
}

/// Runs the schedule; returns the daemon and Redis running at its end.
#[allow(clippy::too_many_arguments)]
async fn inject_faults(
    ctx: Arc<Ctx>,
    start: Instant,
    seed: u64,
    mut daemon: ChildGuard,
    mut redis: RedisServer,
    profiles: PathBuf,
    logs: PathBuf,
    mut log: FaultLog,
) -> (ChildGuard, RedisServer, FaultLog) {
    let mut rng = Rng(seed);
    for &(at_ms, fault) in PLAN {
        let at = start + Duration::from_millis(at_ms + rng.below(800) as u64);
        tokio::time::sleep_until(at.into()).await;
        match fault {
            Fault::KillBrowser | Fault::KillRenderer => {
                let find = |dir: &Path| match fault {
                    Fault::KillBrowser => browser_pids(dir),
                    _ => renderer_pids(dir),
                };
                let mut victims = Vec::new();
                let dir = profiles.clone();
                eventually(Duration::from_secs(10), || {
                    victims = find(&dir);
                    !victims.is_empty()
                })
                .await;
                if victims.is_empty() {
                    log.skipped.push(format!("{}: none found", fault.name()));
                    continue;
                }
                let pid = victims[rng.below(victims.len())];
                if sigkill(pid) {
                    *log.injected.entry(fault).or_default() += 1;
                } else {
                    log.skipped
                        .push(format!("{}: pid {pid} already gone", fault.name()));
                }
            }
            Fault::KillDaemon => {
                if let Ok(Some(status)) = daemon.try_wait() {
                    log.problems
                        .push(format!("the daemon exited on its own: {status}"));
                }
                daemon.kill().expect("SIGKILL the daemon");
                let _ = daemon.wait();
                *log.injected.entry(fault).or_default() += 1;
                let dir = profiles.clone();
                let gone =
                    eventually(Duration::from_secs(10), || processes_under(&dir).is_empty()).await;
                if !gone {
                    log.problems.push(format!(
                        "Chromium outlived the SIGKILLed daemon {}: {:?}",
                        daemon.id(),
                        processes_under(&profiles)
                    ));
                }
                let (next, base) = start_daemon(&profiles, &redis.url, &logs, &mut log);
                daemon = next;
                // Clients move to it at once (refused or 503 until it is ready).
                *ctx.base.write().expect("base lock") = base.clone();
                wait_ready_at(&base, BROWSERS as u64).await;
            }
            Fault::RestartRedis => {
                redis = tokio::task::spawn_blocking(move || {
                    redis.kill();
                    std::thread::sleep(REDIS_OUTAGE);
                    redis.restart().expect("restart redis-server")
                })
                .await
                .expect("Redis restart");
                *log.injected.entry(fault).or_default() += 1;
            }
        }
    }
    (daemon, redis, log)
}

/// An account's snapshot on `url` (`None`: no such account), or why it could not be read
/// (Redis down).
async fn try_snapshot(
    url: &str,
    account: &str,
) -> Result<Option<shotfarm::ledger::store::Snapshot>, String> {
    let read = async {
        let client = redis::Client::open(url).map_err(|e| e.to_string())?;
        let mut conn = client
            .get_multiplexed_async_connection()
            .await
            .map_err(|e| e.to_string())?;
        shotfarm::ledger::store::snapshot(&mut conn, account)
            .await
            .map_err(|e| e.to_string())
    };
    tokio::time::timeout(Duration::from_secs(2), read)
        .await
        .map_err(|_| "timed out".to_string())?
}

/// Checks every account's invariants on atomic snapshots until `stop`.
async fn audit_during_load(
    url: String,
    accounts: Vec<String>,
    stop: Arc<AtomicBool>,
    audits: Arc<AtomicU64>,
) -> Vec<String> {
    let mut problems = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        for account in &accounts {
            match try_snapshot(&url, account).await {
                Ok(Some(snapshot)) => {
                    audits.fetch_add(1, Ordering::Relaxed);
                    let broken = shotfarm::ledger::audit::violations(&snapshot);
                    if !broken.is_empty() {
                        problems.push(format!("during load, {account}: {broken:?}"));
                    }
                }
                Ok(None) => problems.push(format!("during load, account {account} is gone")),
                // Unreadable while Redis is down: the next round checks again.
                Err(_) => {}
            }
        }
        tokio::time::sleep(Duration::from_millis(1_500)).await;
    }
    problems
}

/// Lines of the daemon logs that mention `request_id` (ids are `<key>-rNNN`: none is a prefix
/// of another).
fn log_lines(logs: &[PathBuf], request_id: &str) -> Vec<String> {
    logs.iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .flat_map(|text| {
            text.lines()
                .filter(|l| l.contains(request_id))
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_keeps_every_ledger_exact_and_leaves_no_chromium() {
    let seed = std::env::var("CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        });
    eprintln!("chaos: seed {seed} (CHAOS_SEED={seed} replays its choices)");
    let logs = tempfile::tempdir().expect("log dir").keep();
    let profiles = tempfile::tempdir().expect("profile dir");
    let profiles_dir = profiles.path().to_path_buf();

    // A Redis of its own: restarting the shared one would break the tests running beside us.
    let redis = tokio::task::spawn_blocking(start_redis)
        .await
        .expect("start Redis");
    let redis_url = redis.url.clone();
    let funded = {
        let url = redis_url.clone();
        tokio::task::spawn_blocking(move || {
            CREDITS
                .iter()
                .map(|&credits| provision_on(&url, credits))
                .collect::<Vec<_>>()
        })
        .await
        .expect("provision accounts")
    };
    let mut fault_log = FaultLog::default();
    let (daemon, base) = start_daemon(&profiles_dir, &redis_url, &logs, &mut fault_log);
    wait_ready_at(&base, BROWSERS as u64).await;

    let start = Instant::now();
    let ctx = Arc::new(Ctx {
        base: RwLock::new(base),
        load_end: start + LOAD,
        stats: Mutex::new(Stats::default()),
    });
    let stop_audit = Arc::new(AtomicBool::new(false));
    let audits = Arc::new(AtomicU64::new(0));
    let auditor = tokio::spawn(audit_during_load(
        redis_url.clone(),
        funded.iter().map(|f| f.account.clone()).collect(),
        stop_audit.clone(),
        audits.clone(),
    ));
    let mut clients = Vec::new();
    for (a, f) in funded.iter().enumerate() {
        for c in 0..CLIENTS_PER_ACCOUNT {
            let client_seed =
                seed ^ ((a * CLIENTS_PER_ACCOUNT + c + 1) as u64).wrapping_mul(0x9e37);
            clients.push(tokio::spawn(client(
                ctx.clone(),
                a,
                f.key.clone(),
                c,
                client_seed,
            )));
        }
    }
    let faults = tokio::spawn(inject_faults(
        ctx.clone(),
        start,
        seed,
        daemon,
        redis,
        profiles_dir.clone(),
        logs.clone(),
        fault_log,
    ));

    let (mut daemon, redis, fault_log) = faults.await.expect("the fault schedule ran");
    let mut keys: Vec<KeyLog> = Vec::new();
    for c in clients {
        keys.extend(c.await.expect("a client ran"));
    }
    let load_time = start.elapsed();
    stop_audit.store(true, Ordering::Relaxed);
    let mut problems = auditor.await.expect("the auditor ran");
    problems.extend(fault_log.problems.iter().cloned());

    // Holds of killed daemons and of commits that never landed come back through the sweeper
    // of the running daemon: after the longest hold (timeout + 0.5 s + grace) at the latest.
    let hold_life = Duration::from_millis(CAPTURE_TIMEOUT_MS + 500 + HOLD_GRACE_MS);
    let settle_by = Instant::now() + hold_life + Duration::from_secs(5);
    let mut snapshots = loop {
        let mut all = Vec::new();
        for f in &funded {
            match try_snapshot(&redis_url, &f.account).await {
                Ok(Some(s)) => all.push(s),
                Ok(None) => panic!("account {} is gone after the chaos", f.account),
                Err(e) => panic!("Redis is up after the chaos, yet {}: {e}", f.account),
            }
        }
        if all.iter().all(|s| s.holds.is_empty()) || Instant::now() > settle_by {
            break all;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };

    // No hold is open, so none is past its expiry, and no index entry is left behind.
    let client = redis::Client::open(redis_url.as_str()).expect("redis url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("Redis answers after the chaos");
    let (now_s, _): (i64, i64) = redis::cmd("TIME")
        .query_async(&mut conn)
        .await
        .expect("Redis TIME");
    for (f, s) in funded.iter().zip(&snapshots) {
        for h in &s.holds {
            problems.push(format!(
                "{}: hold {} still open, {} s past its expiry",
                f.account,
                h.id,
                now_s - h.expires_ms / 1000
            ));
        }
    }
    let due = shotfarm::ledger::store::due_holds(&mut conn, 1000)
        .await
        .expect("read the sweep indexes");
    if !due.is_empty() {
        problems.push(format!("holds due in the sweep indexes: {due:?}"));
    }
    let mut pipe = redis::pipe();
    for shard in 0..keys::SHARDS {
        pipe.cmd("ZCARD").arg(keys::sweep(shard));
    }
    let indexed: Vec<u64> = pipe
        .query_async(&mut conn)
        .await
        .expect("count the sweep indexes");
    let indexed: u64 = indexed.iter().sum();
    if indexed != 0 {
        problems.push(format!("{indexed} entries left in the sweep indexes"));
    }

    // Per account: the invariants, the balance, and every charge matched to a delivered key.
    let mut explained_free = Vec::new();
    let mut credits_checked = 0;
    let mut charged_total = 0;
    let mut delivered_total = 0;
    for (a, (f, s)) in funded.iter().zip(&mut snapshots).enumerate() {
        // Re-read after the wait, so the checks see the settled state.
        *s = try_snapshot(&redis_url, &f.account)
            .await
            .expect("Redis answers the final snapshot")
            .expect("the account still exists");
        let broken = shotfarm::ledger::audit::violations(s);
        if !broken.is_empty() {
            problems.push(format!("{}: invariants broken: {broken:?}", f.account));
        }
        let b = &s.balance;
        credits_checked += b.granted;
        if b.granted != CREDITS[a] {
            problems.push(format!(
                "{}: granted {} but {} were granted",
                f.account, b.granted, CREDITS[a]
            ));
        }
        if b.reserved != 0 || b.available + b.spent != b.granted {
            problems.push(format!(
                "{}: available {} + spent {} (reserved {}) != granted {}",
                f.account, b.available, b.spent, b.reserved, b.granted
            ));
        }
        let usage: HashSet<&str> = s
            .transactions
            .iter()
            .filter(|t| t.kind == TxKind::Usage)
            .map(|t| t.id.as_str())
            .collect();
        let account_keys = AccountKeys::new(&f.account);
        let mut charged_holds: HashMap<String, String> = HashMap::new();
        let mut delivered = 0;
        for k in keys.iter().filter(|k| k.account == a) {
            let idem = account_keys
                .idempotency(&shotfarm::accounts::secrets::sha256_hex(k.key.as_bytes()));
            let (state, hold): (Option<String>, Option<String>) = redis::cmd("HMGET")
                .arg(&idem)
                .arg("state")
                .arg("hold")
                .query_async(&mut conn)
                .await
                .expect("read an idempotency record");
            let is_delivered = matches!(k.settled, Settled::Delivered { .. });
            delivered += usize::from(is_delivered);
            match state.as_deref() {
                None => {
                    if let Settled::Delivered { fresh } = &k.settled {
                        // An image without a charge: only where the commit could not land.
                        let Some(rid) = fresh else {
                            problems.push(format!(
                                "{}: a replay was delivered, yet the key has no record",
                                k.key
                            ));
                            continue;
                        };
                        let lines = log_lines(&fault_log.daemon_logs, rid);
                        let why = lines.iter().find(|l| {
                            l.contains("commit failed") || l.contains("commit did not apply")
                        });
                        match why {
                            Some(line) => explained_free.push(format!("{}: {line}", k.key)),
                            None => problems.push(format!(
                                "{}: image delivered by {rid:?} but never charged, and the daemon \
                                 logged no failed commit for it: {lines:?}",
                                k.key
                            )),
                        }
                    }
                }
                Some("done") | Some("done_large") => {
                    let hold = hold.unwrap_or_default();
                    if !is_delivered {
                        problems.push(format!(
                            "{}: charged (hold {hold}) but no image was delivered: {:?} after {} attempts",
                            k.key, k.settled, k.attempts
                        ));
                    }
                    if !usage.contains(hold.as_str()) {
                        problems.push(format!(
                            "{}: marked done with hold {hold}, which has no usage transaction",
                            k.key
                        ));
                    }
                    if let Some(other) = charged_holds.insert(hold.clone(), k.key.clone()) {
                        problems.push(format!("hold {hold} charged for {other} and {}", k.key));
                    }
                }
                Some(other) => problems.push(format!(
                    "{}: Idempotency-Key left {other:?} after every hold settled ({:?})",
                    k.key, k.settled
                )),
            }
        }
        for hold in &usage {
            if !charged_holds.contains_key(*hold) {
                problems.push(format!(
                    "{}: usage transaction {hold} matches no key of ours",
                    f.account
                ));
            }
        }
        let spent = usize::try_from(b.spent).unwrap_or(usize::MAX);
        let free_here = explained_free
            .iter()
            .filter(|l| l.starts_with(&format!("chaos-a{a}-")))
            .count();
        if spent + free_here != delivered {
            problems.push(format!(
                "{}: spent {spent}, but {delivered} keys delivered an image ({free_here} of them \
                 free because their commit could not land)",
                f.account
            ));
        }
        charged_total += spent;
        delivered_total += delivered;
    }

    // Stop the daemon gracefully: nothing may remain under its profile directory.
    // SAFETY: signalling our own child.
    unsafe {
        libc::kill(daemon.id() as libc::pid_t, libc::SIGTERM);
    }
    let exited = tokio::task::spawn_blocking(move || {
        let limit = Instant::now() + Duration::from_secs(30);
        loop {
            match daemon.try_wait() {
                Ok(Some(status)) => return Some(status),
                Ok(None) if Instant::now() < limit => std::thread::sleep(Duration::from_millis(50)),
                _ => return None,
            }
        }
    })
    .await
    .expect("join");
    match exited {
        Some(status) if status.success() => {}
        other => problems.push(format!(
            "the daemon did not exit cleanly on SIGTERM: {other:?}"
        )),
    }
    let dir = profiles_dir.clone();
    if !eventually(Duration::from_secs(10), || processes_under(&dir).is_empty()).await {
        problems.push(format!(
            "orphan Chromium after the daemon stopped: {:?}",
            processes_under(&profiles_dir)
        ));
    }

    // Keys that never got a definitive answer, or got one the test does not expect.
    for k in &keys {
        match &k.settled {
            Settled::Unexpected(what) => problems.push(format!("{}: unexpected {what}", k.key)),
            Settled::GaveUp(what) => problems.push(format!("{}: no answer: {what}", k.key)),
            _ => {}
        }
    }
    for (fault, least) in [
        (Fault::KillBrowser, 3),
        (Fault::KillDaemon, 1),
        (Fault::RestartRedis, 1),
    ] {
        let n = fault_log.injected.get(&fault).copied().unwrap_or(0);
        if n < least {
            problems.push(format!(
                "only {n} × {} (at least {least} planned)",
                fault.name()
            ));
        }
    }

    // The report.
    let (requests, responses) = {
        let stats = ctx.stats.lock().expect("stats lock");
        (stats.requests, stats.responses.clone())
    };
    eprintln!(
        "chaos: load {load_time:.1?}, seed {seed}, daemon logs in {}",
        logs.display()
    );
    eprintln!("chaos: {requests} requests sent");
    for (what, n) in &responses {
        eprintln!("chaos:   {n:>5} × {what}");
    }
    let count = |f: &dyn Fn(&KeyLog) -> bool| keys.iter().filter(|k| f(k)).count();
    eprintln!(
        "chaos: {} keys: {} delivered ({} fresh, {} as replays), {} refused with 402, {} thrown \
         scripts refused with 400, {} unexpected, {} gave up; {} needed more than one attempt",
        keys.len(),
        count(&|k| matches!(k.settled, Settled::Delivered { .. })),
        count(&|k| matches!(k.settled, Settled::Delivered { fresh: Some(_) })),
        count(&|k| matches!(k.settled, Settled::Delivered { fresh: None })),
        count(&|k| matches!(k.settled, Settled::Refused { status: 402 })),
        count(&|k| k.kind == Kind::Throws && matches!(k.settled, Settled::Refused { status: 400 })),
        count(&|k| matches!(k.settled, Settled::Unexpected(_))),
        count(&|k| matches!(k.settled, Settled::GaveUp(_))),
        count(&|k| k.attempts > 1),
    );
    eprintln!(
        "chaos: faults injected: {}",
        fault_log
            .injected
            .iter()
            .map(|(f, n)| format!("{n} × {}", f.name()))
            .collect::<Vec<_>>()
            .join(", ")
    );
    if !fault_log.skipped.is_empty() {
        eprintln!("chaos: faults skipped: {:?}", fault_log.skipped);
    }
    eprintln!(
        "chaos: {} accounts and {credits_checked} credits checked ({} audits during the load); \
         {charged_total} charged, {delivered_total} delivered, {} free because a commit could \
         not land",
        funded.len(),
        audits.load(Ordering::Relaxed),
        explained_free.len()
    );
    for (f, s) in funded.iter().zip(&snapshots) {
        let b = &s.balance;
        eprintln!(
            "chaos:   {}: granted {}, available {}, spent {}, reserved {}",
            f.account, b.granted, b.available, b.spent, b.reserved
        );
    }
    for line in &explained_free {
        eprintln!("chaos:   free image: {line}");
    }

    tokio::task::spawn_blocking(move || redis.kill())
        .await
        .expect("stop Redis");
    assert!(
        problems.is_empty(),
        "chaos (seed {seed}; daemon logs kept in {}) found {} problem(s):\n  - {}",
        logs.display(),
        problems.len(),
        problems.join("\n  - ")
    );
    if std::env::var_os("CHAOS_KEEP_LOGS").is_none() {
        let _ = std::fs::remove_dir_all(&logs);
    }
    drop(profiles);
}
